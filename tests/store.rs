//! Call records survive a restart, and supervisors read them over HTTP: records are written
//! through a `StoreHandle` on a file, the store is closed and reopened, and `GET /api/calls` is
//! queried on a real socket.

mod common;

use std::time::Duration;

use switchboard::ids::WaCallId;
use switchboard::store::{http, CallPage, LiveCall, Outcome, Recorded, StoreHandle};

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

const WAIT: Duration = Duration::from_secs(10);

/// Serves `router` on 127.0.0.1; returns its base URL and a sender that stops it.
async fn serve(
    store: StoreHandle,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, http::router(store))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (format!("http://{addr}"), stop, task)
}

#[tokio::test]
async fn records_survive_a_restart_and_are_listed_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");

    // First run: six calls end, one is still live when the process "dies".
    let (store, driver) = StoreHandle::open(&path).await.unwrap();
    let records = [
        common::call_record(1, Outcome::Answered, "sales", &["ann"]),
        common::call_record(2, Outcome::Abandoned, "sales", &[]),
        common::call_record(3, Outcome::Answered, "support", &["bob", "ann"]),
        common::call_record(4, Outcome::TimedOut, "support", &[]),
        common::call_record(5, Outcome::Declined, "sales", &[]),
        common::call_record(6, Outcome::Failed, "sales", &["bob"]),
    ];
    for r in &records {
        store
            .mark_live(LiveCall {
                call_id: r.call_id.clone(),
                business_number: r.business_number.clone(),
                started_at: r.started_at,
                known: None,
            })
            .await
            .unwrap();
        assert_eq!(store.finish(r.clone()).await.unwrap(), Recorded::New);
    }
    let dangling = LiveCall {
        call_id: WaCallId("wacid.dangling".into()),
        business_number: "115017831530658".into(),
        started_at: 1_700_000_100_000,
        known: None,
    };
    store.mark_live(dangling.clone()).await.unwrap();
    drop(store);
    tokio::time::timeout(WAIT, driver.join())
        .await
        .unwrap()
        .unwrap();

    // Second run: everything is still there, and the dangling call is reported live.
    let (store, driver) = StoreHandle::open(&path).await.unwrap();
    assert_eq!(store.live_calls().await.unwrap(), vec![dangling.clone()]);
    assert_eq!(
        store.finish(records[0].clone()).await.unwrap(),
        Recorded::Duplicate
    );

    let (base, stop, server) = serve(store.clone()).await;
    let client = reqwest::Client::new();
    let get = |query: &str| {
        let req = client.get(format!("{base}/api/calls{query}")).send();
        async move { tokio::time::timeout(WAIT, req).await.unwrap().unwrap() }
    };

    let all: CallPage = get("").await.json().await.unwrap();
    let mut newest_first = records.to_vec();
    newest_first.reverse();
    assert_eq!(all.calls, newest_first);
    assert_eq!(all.next, None);

    let names = |page: &CallPage| -> Vec<String> {
        page.calls.iter().map(|c| c.call_id.0.clone()).collect()
    };
    let by_agent: CallPage = get("?agent=ann").await.json().await.unwrap();
    assert_eq!(names(&by_agent), ["wacid.HBgL0003=", "wacid.HBgL0001="]);
    let answered: CallPage = get("?outcome=answered&queue=support")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&answered), ["wacid.HBgL0003="]);
    let window: CallPage = get("?from=1700000002000&to=1700000004000")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&window), ["wacid.HBgL0003=", "wacid.HBgL0002="]);

    // Paging with the cursor, two at a time, filtered by queue.
    let mut seen = Vec::new();
    let mut query = "?queue=sales&limit=2".to_owned();
    for _ in 0..5 {
        let page: CallPage = get(&query).await.json().await.unwrap();
        assert!(page.calls.len() <= 2);
        seen.extend(names(&page));
        match page.next {
            Some(next) => query = format!("?queue=sales&limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "wacid.HBgL0006=",
            "wacid.HBgL0005=",
            "wacid.HBgL0002=",
            "wacid.HBgL0001="
        ]
    );

    // Bad queries are the caller's fault, said in JSON.
    for bad in [
        "?limit=0",
        "?limit=many",
        "?outcome=lost",
        "?from=yesterday",
        "?cursor=zz",
        "?from=5&to=1",
        "?agnet=ann",
    ] {
        let res = get(bad).await;
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST, "{bad}");
        let body: ErrorBody = res.json().await.unwrap();
        assert!(!body.error.is_empty(), "{bad}");
    }

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    store.clear_live(dangling.call_id).await.unwrap();
    assert_eq!(store.live_calls().await.unwrap(), vec![]);
    drop(store);
    tokio::time::timeout(WAIT, driver.join())
        .await
        .unwrap()
        .unwrap();
}

/// Issue 23: the configuration file seeds the `default` account in the database on first start
/// (its queues, numbers and people); later starts keep what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_seeds_the_default_account_on_first_start_only() {
    use switchboard::app;
    use switchboard::config::{Config, Role, Settings};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let config = |people: Vec<switchboard::config::Person>| {
        let mut c = Config::from_settings(common::loopback(Settings::default())).unwrap();
        c.store.path = Some(db.clone());
        c.auth.people = people;
        c
    };
    let alice = common::person("alice", Role::Agent, &["support"]);
    let sam = common::person("sam", Role::Supervisor, &["support"]);

    let first = app::start(config(vec![alice.clone()])).await.unwrap();
    let accounts = first.store.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    let seeded = &accounts[0];
    assert_eq!(seeded.slug.as_str(), switchboard::accounts::DEFAULT_ACCOUNT);
    let people: Vec<&str> = seeded.people.iter().map(|p| p.id.0.as_str()).collect();
    assert_eq!(people, ["alice"]);
    assert!(seeded.queues.iter().any(|q| q.id == "support"));
    assert_eq!(seeded.default_queue, config(vec![]).calls.default_queue.0);
    first.shutdown().await;

    // The file changed meanwhile: what is stored stands (accounts change through the admin API
    // from now on), and nothing is seeded twice.
    let second = app::start(config(vec![alice, sam])).await.unwrap();
    let again = second.store.accounts().await.unwrap();
    assert_eq!(again, accounts);
    second.shutdown().await;
}

/// A file the accounts' rules refuse (here a queue id longer than they take; the file takes any)
/// still starts, with no account seeded: the call centre runs from the file today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_the_account_rules_refuse_still_starts() {
    use switchboard::app;
    use switchboard::config::{Config, Settings};
    use switchboard::routing::{NoAgentPolicy, QueueConfig};

    let mut config = Config::from_settings(common::loopback(Settings::default())).unwrap();
    config.calls.queues.push(QueueConfig {
        id: switchboard::ids::QueueId("q".repeat(80)),
        policy: NoAgentPolicy::Decline,
    });
    let running = app::start(config).await.unwrap();
    assert_eq!(running.store.accounts().await.unwrap(), vec![]);
    running.shutdown().await;
}
