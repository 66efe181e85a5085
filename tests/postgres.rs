//! Call records in a real PostgreSQL shared by two nodes (issue 16's first step): a server of
//! its own is started in a temporary directory (see `common::Postgres`), two stores (two nodes)
//! migrate and write to it, and `GET /api/calls` on either node lists both nodes' records.

mod common;

use std::time::Duration;

use switchboard::accounts::{
    Account, AccountSlug, CallSettings, NumberRoute, PersonDef, QueueDef, QueuePolicy,
};
use switchboard::ids::WaCallId;
use switchboard::store::{
    http, AccountStore, CallPage, CallQuery, CallRecord, CallStore, LiveCall, Outcome,
    PostgresStore, Recorded, StoreError, StoreHandle,
};

const WAIT: Duration = Duration::from_secs(10);

fn live(r: &CallRecord) -> LiveCall {
    LiveCall {
        call_id: r.call_id.clone(),
        business_number: r.business_number.clone(),
        started_at: r.started_at,
        known: None,
    }
}

fn ids(page: &CallPage) -> Vec<String> {
    page.calls.iter().map(|c| c.call_id.0.clone()).collect()
}

/// An account with one queue, `numbers`, and one agent.
fn account(slug: &str, numbers: &[&str]) -> Account {
    let agent = common::person("alice", switchboard::config::Role::Agent, &["support"]);
    Account {
        slug: AccountSlug::try_from(slug.to_owned()).unwrap(),
        name: slug.to_uppercase(),
        waba_id: None,
        access_token: None,
        numbers: numbers
            .iter()
            .map(|n| NumberRoute {
                phone_number_id: (*n).into(),
                queue: None,
            })
            .collect(),
        queues: vec![QueueDef {
            id: "support".into(),
            policy: QueuePolicy::Queue {
                max_wait_ms: 90_000,
            },
            callbacks: true,
        }],
        default_queue: "support".into(),
        people: vec![PersonDef {
            id: agent.id,
            name: agent.name,
            role: agent.role,
            password_hash: agent.password_hash,
            queues: agent.queues,
            disabled: false,
        }],
        away_reasons: vec!["Lunch".into()],
        settings: CallSettings {
            ring_timeout_ms: 15_000,
            wrap_up_ms: 5_000,
            grace_ms: 30_000,
            answer_deadline_ms: 25_000,
        },
        version: 1,
        api_keys: vec![],
        hold_audio: None,
        allowed_origins: vec![],
        endpoints: vec![],
    }
}

/// Accounts on PostgreSQL: what one node stores the other reads; a number is one account's,
/// whichever node asks; a refused account leaves nothing behind.
#[test]
fn two_nodes_share_accounts_and_a_number_belongs_to_one() {
    let pg = common::Postgres::start();
    let url = pg.database("accounts");
    let mut a = PostgresStore::connect(&url, "node-a").unwrap();
    let mut b = PostgresStore::connect(&url, "node-b").unwrap();
    let acme = account("acme", &["1001", "1002"]);
    a.create_account(&acme).unwrap();
    assert_eq!(b.accounts().unwrap(), vec![acme.clone()]);
    match b.create_account(&account("rival", &["2001", "1002"])) {
        Err(StoreError::NumberTaken { number, account }) => {
            assert_eq!((number.as_str(), account.as_str()), ("1002", "acme"));
        }
        other => panic!("expected NumberTaken, got {other:?}"),
    }
    assert!(matches!(
        b.create_account(&account("acme", &["3001"])),
        Err(StoreError::AccountExists(_))
    ));
    assert_eq!(a.accounts().unwrap(), vec![acme.clone()]);
    // Two nodes change acme from the same version: the first is written, the second is told
    // it is stale and changes nothing.
    let mut first = acme.clone();
    first.name = "Acme on A".into();
    first.numbers.push(NumberRoute {
        phone_number_id: "1003".into(),
        queue: None,
    });
    let mut second = acme.clone();
    second.name = "Acme on B".into();
    let audit = switchboard::accounts::AuditEntry {
        id: 0,
        at: 1,
        actor: "operator".into(),
        action: "account.update".into(),
        target: String::new(),
        before: None,
        after: None,
    };
    assert_eq!(a.replace_account(&first, &audit).unwrap(), 2);
    assert!(matches!(
        b.replace_account(&second, &audit),
        Err(StoreError::Stale(s)) if s == "acme"
    ));
    let stored = b.accounts().unwrap();
    assert_eq!(stored[0].name, "Acme on A");
    assert_eq!(stored[0].version, 2);
    assert_eq!(stored[0].numbers.len(), 3);
    // Only the change written is in the audit log, on either node.
    assert_eq!(b.audit_log("acme", None, 10).unwrap().len(), 1);
}

/// The store's contract on PostgreSQL, with two nodes on one database: one migration, records
/// written once whoever writes them, each node's live calls its own, listing, filters and
/// paging as on SQLite.
#[test]
fn two_nodes_share_records_and_keep_their_own_live_calls() {
    let pg = common::Postgres::start();
    let url = pg.database("contract");
    let mut a = PostgresStore::connect(&url, "node-a").unwrap();
    let mut b = PostgresStore::connect(&url, "node-b").unwrap();
    assert_eq!(a.schema_version().unwrap(), 8);
    assert_eq!(b.schema_version().unwrap(), 8);
    // A third connection finds the schema done and changes nothing.
    PostgresStore::connect(&url, "node-a").unwrap();
    assert_eq!(a.schema_version().unwrap(), 8);

    let r1 = common::call_record(1, Outcome::Answered, "sales", &["ann"]);
    let r2 = common::call_record(2, Outcome::Abandoned, "support", &[]);
    let r3 = common::call_record(3, Outcome::Answered, "support", &["bob", "ann"]);
    // A record without a node is named after the node that writes it.
    let named = |r: &CallRecord, node: &str| CallRecord {
        node: Some(node.into()),
        ..r.clone()
    };
    // A call-back, with who placed it and its task.
    let r3 = CallRecord {
        direction: switchboard::store::Direction::Outbound,
        dialled_by: Some("bob".into()),
        task_id: Some("task-9".into()),
        ..named(&r3, "node-b")
    };
    a.mark_live(&live(&r1)).unwrap();
    a.mark_live(&live(&r1)).unwrap();
    b.mark_live(&live(&r2)).unwrap();
    b.mark_live(&live(&r3)).unwrap();
    assert_eq!(a.live_calls().unwrap(), vec![live(&r1)]);
    assert_eq!(b.live_calls().unwrap(), vec![live(&r2), live(&r3)]);

    assert_eq!(a.finish(&r1).unwrap(), Recorded::New);
    assert_eq!(b.finish(&r1).unwrap(), Recorded::Duplicate);
    assert_eq!(b.finish(&r2).unwrap(), Recorded::New);
    assert_eq!(b.finish(&r3).unwrap(), Recorded::New);
    assert!(a.live_calls().unwrap().is_empty());
    assert!(b.live_calls().unwrap().is_empty());
    b.mark_live(&live(&common::call_record(
        9,
        Outcome::Failed,
        "sales",
        &[],
    )))
    .unwrap();
    b.clear_live(&common::call_record(9, Outcome::Failed, "sales", &[]).call_id)
        .unwrap();
    assert!(b.live_calls().unwrap().is_empty());

    // Everything round-trips, newest first, from either node.
    for store in [&mut a, &mut b] {
        let all = store.list(&CallQuery::default()).unwrap();
        assert_eq!(
            all.calls,
            vec![r3.clone(), named(&r2, "node-b"), named(&r1, "node-a")]
        );
        assert_eq!(all.next, None);
    }
    let outbound = a
        .list(&CallQuery {
            direction: Some(switchboard::store::Direction::Outbound),
            ..CallQuery::default()
        })
        .unwrap();
    assert_eq!(outbound.calls, vec![r3.clone()]);
    let by_agent = a
        .list(&CallQuery {
            agent: Some("ann".into()),
            ..CallQuery::default()
        })
        .unwrap();
    assert_eq!(
        ids(&by_agent),
        vec![r3.call_id.0.clone(), r1.call_id.0.clone()]
    );
    let by_queue_and_outcome = a
        .list(&CallQuery {
            queue: Some("support".into()),
            outcome: Some(Outcome::Answered),
            ..CallQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&by_queue_and_outcome), vec![r3.call_id.0.clone()]);
    let in_window = b
        .list(&CallQuery {
            from: Some(r2.started_at),
            to: Some(r3.started_at),
            ..CallQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&in_window), vec![r2.call_id.0.clone()]);

    // Pages of one walk every record once.
    let mut walked = Vec::new();
    let mut q = CallQuery {
        limit: Some(1),
        ..CallQuery::default()
    };
    loop {
        let page = a.list(&q).unwrap();
        walked.extend(ids(&page));
        match page.next {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        walked,
        vec![
            r3.call_id.0.clone(),
            r2.call_id.0.clone(),
            r1.call_id.0.clone()
        ]
    );

    a.check_writable().unwrap();
    assert!(matches!(
        a.finish(&CallRecord {
            call_id: WaCallId(String::new()),
            ..r1.clone()
        }),
        Err(StoreError::InvalidRecord { .. })
    ));
}

/// Records written by two nodes are listed together by `GET /api/calls` on either; a node
/// restarted finds the calls it left live, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_both_nodes_are_listed_over_http_on_either() {
    let pg = common::Postgres::start();
    let url = pg.database("cluster");
    let open = |node: &'static str| {
        let url = url.clone();
        StoreHandle::spawn(move || PostgresStore::connect(&url, node))
    };
    let (a, a_driver) = open("node-a").await.unwrap();
    let (b, b_driver) = open("node-b").await.unwrap();
    let on_a = [
        common::call_record(1, Outcome::Answered, "sales", &["ann"]),
        common::call_record(3, Outcome::TimedOut, "sales", &[]),
    ];
    let on_b = [
        common::call_record(2, Outcome::Answered, "support", &["bob"]),
        common::call_record(4, Outcome::Declined, "support", &[]),
    ];
    for (store, records) in [(&a, &on_a), (&b, &on_b)] {
        for r in records {
            store.mark_live(live(r)).await.unwrap();
            assert_eq!(store.finish(r.clone()).await.unwrap(), Recorded::New);
        }
    }
    let dangling = live(&common::call_record(5, Outcome::Failed, "sales", &[]));
    a.mark_live(dangling.clone()).await.unwrap();

    let client = reqwest::Client::new();
    let mut servers = Vec::new();
    for store in [&a, &b] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = http::router(store.clone());
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }));
        let page: CallPage =
            tokio::time::timeout(WAIT, client.get(format!("{base}/api/calls")).send())
                .await
                .unwrap()
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(
            ids(&page),
            [
                "wacid.HBgL0004=",
                "wacid.HBgL0003=",
                "wacid.HBgL0002=",
                "wacid.HBgL0001="
            ],
            "{base} lists both nodes' calls"
        );
        let support: CallPage = client
            .get(format!("{base}/api/calls?queue=support"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ids(&support), ["wacid.HBgL0004=", "wacid.HBgL0002="]);
    }
    for s in servers {
        s.abort();
    }

    // node-a "restarts": it finds its own dangling call; node-b finds none of it.
    drop(a);
    tokio::time::timeout(WAIT, a_driver.join())
        .await
        .unwrap()
        .unwrap();
    let (a, _a_driver) = open("node-a").await.unwrap();
    assert_eq!(a.live_calls().await.unwrap(), vec![dangling]);
    assert!(b.live_calls().await.unwrap().is_empty());
    drop(b);
    tokio::time::timeout(WAIT, b_driver.join())
        .await
        .unwrap()
        .unwrap();
}

/// A database that cannot be reached stops start-up with an error that names the setting and
/// never the password in it.
#[test]
fn an_unreachable_database_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://sb:s3cret-pw@127.0.0.1:1/records", "node-a")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("SWITCHBOARD_DATABASE_URL"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(!format!("{err:?}").contains("s3cret-pw"));
}

/// Two switchboard nodes started with `SWITCHBOARD_DATABASE_URL` (in their sandboxes): each
/// ends a call of its own, and each lists both records, written with the node that handled it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_nodes_write_to_one_database_and_each_lists_both() {
    use switchboard::app;
    use switchboard::config::{Config, Secret, Settings};

    let pg = common::Postgres::start();
    let url = pg.database("nodes");
    let mut nodes = Vec::new();
    for node in ["node-a", "node-b"] {
        let config = Config::from_settings(common::loopback(Settings {
            database_url: Some(Secret::new(url.clone())),
            node_id: Some(node.into()),
            ..Settings::default()
        }))
        .unwrap();
        assert_eq!(config.store.node_id, node);
        nodes.push(app::start(config).await.unwrap());
    }
    // Both started on an empty database: the configuration seeded one default account.
    for running in &nodes {
        let accounts = running.store.accounts().await.unwrap();
        let slugs: Vec<&str> = accounts.iter().map(|a| a.slug.as_str()).collect();
        assert_eq!(slugs, vec![switchboard::accounts::DEFAULT_ACCOUNT]);
    }
    // Nobody signed in: each node declines its call at once and records it.
    let mut placed = Vec::new();
    for running in &nodes {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/sandbox/calls", running.http_addr))
            .json(&serde_json::json!({ "hang_up_after_secs": 0 }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        placed.push(body["call_id"].as_str().unwrap().to_owned());
    }
    placed.sort();
    for running in &nodes {
        let listed = common::eventually_showing(
            "each node lists both nodes' calls",
            Duration::from_secs(10),
            || async {
                let page = running.store.list(CallQuery::default()).await.unwrap();
                let mut listed = ids(&page);
                listed.sort();
                if listed == placed {
                    Ok(listed)
                } else {
                    Err(format!("{listed:?}, not {placed:?}"))
                }
            },
        )
        .await;
        assert_eq!(listed, placed, "each node lists both nodes' calls");
    }
    // Each record names the node that handled it.
    let by_node = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut rows: Vec<(String, String)> = client
            .query("SELECT call_id, node FROM calls", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        rows.sort();
        rows
    })
    .join()
    .unwrap();
    let mut nodes_seen: Vec<&str> = by_node.iter().map(|(_, n)| n.as_str()).collect();
    nodes_seen.sort();
    assert_eq!(nodes_seen, ["node-a", "node-b"], "{by_node:?}");
    for running in nodes {
        running.shutdown().await;
    }
}

/// The outbox of call events on PostgreSQL with two nodes: each delivers the rows it wrote,
/// oldest first and one per call at a time; a node that takes a dead node's calls over takes its
/// undelivered rows too.
#[test]
fn each_node_delivers_its_own_events_and_takes_a_dead_nodes_over() {
    use switchboard::events::OutboxRow;
    use switchboard::store::{Attempted, DeliveryStatus, EventStore};
    let pg = common::Postgres::start();
    let url = pg.database("outbox");
    let mut a = PostgresStore::connect(&url, "node-a").unwrap();
    let mut b = PostgresStore::connect(&url, "node-b").unwrap();
    let row = |msg: &str, call: &str, at: i64| OutboxRow {
        msg_id: msg.into(),
        account: "acme".into(),
        endpoint: "ep_0000000000000001".into(),
        order_key: call.into(),
        kind: "call.offered".into(),
        payload: "{}".into(),
        created_at: at,
    };
    a.append_events(&[
        row("m1", "c1", 10),
        row("m2", "c1", 11),
        row("m3", "c2", 12),
    ])
    .unwrap();
    b.append_events(&[row("m4", "c3", 13)]).unwrap();
    // a's heads: c1's first, and c2's; never c1's second while its first is pending.
    let due: Vec<String> = a
        .claim_due("node-a", 100, 1_000, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.row.msg_id)
        .collect();
    assert_eq!(due, ["m1", "m3"]);
    // Leased: not due again before the lease ends.
    assert!(a.claim_due("node-a", 200, 1_000, 10).unwrap().is_empty());
    let (pending, next) = a.outbox_state("node-a").unwrap();
    assert_eq!((pending, next), (3, Some(1_000)));
    let first = a.claim_due("node-a", 1_000, 2_000, 10).unwrap();
    let m1 = first.iter().find(|d| d.row.msg_id == "m1").unwrap();
    a.attempted(&[Attempted {
        seq: m1.seq,
        attempts: 1,
        at: 1_000,
        status: Some(204),
        error: None,
        outcome: DeliveryStatus::Delivered,
        next_at: None,
    }])
    .unwrap();
    let due: Vec<String> = a
        .claim_due("node-a", 1_001, 3_000, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.row.msg_id)
        .collect();
    assert_eq!(due, ["m2"], "c1's next, once its first is delivered");
    // b died: a takes its rows over and delivers them.
    assert_eq!(a.adopt_events("node-b", "node-a").unwrap(), 1);
    let due: Vec<String> = a
        .claim_due("node-a", 5_000, 6_000, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.row.msg_id)
        .collect();
    assert!(due.contains(&"m4".to_owned()), "{due:?}");
    assert!(b.claim_due("node-b", 9_000, 10_000, 10).unwrap().is_empty());
}

/// Users' call permissions (issue 25) on the shared database: what one node writes the other
/// reads, a later write replaces the row, and each business number keeps its own.
#[test]
fn call_permissions_are_shared_by_the_nodes() {
    use switchboard::store::{PermissionRow, PermissionState, PermissionStore};
    let pg = common::Postgres::start();
    let url = pg.database("permissions");
    let mut a = PostgresStore::connect(&url, "node-a").unwrap();
    let mut b = PostgresStore::connect(&url, "node-b").unwrap();
    assert_eq!(b.permission("42", "15551234567").unwrap(), None);
    let asked = PermissionRow {
        business_number: "42".into(),
        user_number: "15551234567".into(),
        status: PermissionState::Requested,
        permanent: false,
        expires_at: None,
        source: None,
        requested_by: Some("agent-7".into()),
        updated_at: 1_000,
    };
    a.put_permission(&asked).unwrap();
    assert_eq!(b.permission("42", "15551234567").unwrap(), Some(asked));
    let granted = PermissionRow {
        business_number: "42".into(),
        user_number: "15551234567".into(),
        status: PermissionState::Granted,
        permanent: false,
        expires_at: Some(1_745_434_800_000),
        source: Some("user_action".into()),
        requested_by: None,
        updated_at: 2_000,
    };
    b.put_permission(&granted).unwrap();
    let read = a.permission("42", "15551234567").unwrap().unwrap();
    assert_eq!(read, granted);
    assert_eq!(a.permission("43", "15551234567").unwrap(), None);
}
