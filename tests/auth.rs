//! People and sign-in over real HTTP on 127.0.0.1: login, the token as Bearer and as cookie,
//! expiry, logout, roles, the brute-force throttle, `switchboard hash-password`, and that
//! passwords and tokens never reach the log.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Config, PasswordHash, Person, Role, Settings};
use switchboard::ids::AgentId;
use switchboard::signaling::auth::{hash_password, LoginAnswer, PersonInfo, PersonStatus};

/// Everything switchboard logs in this test binary, for the never-logged checks.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("switchboard=trace,info")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

fn person(id: &str, role: Role, password: &str) -> Person {
    Person {
        id: AgentId(id.into()),
        name: format!("Name of {id}"),
        role,
        password_hash: PasswordHash::parse(&hash_password(password).unwrap()).unwrap(),
        queues: vec!["support".into()],
    }
}

fn sandbox_config() -> Config {
    Config::from_settings(Settings {
        http_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        media_addr: Some("127.0.0.1:0".into()),
        ..Settings::default()
    })
    .unwrap()
}

/// A sandbox switchboard with alice (agent, "alice-pw"), bob (agent, "bob-pw") and carol
/// (supervisor, "carol-pw").
/// `alice` alone, behind a trusted proxy (`X-Forwarded-For` names the client), with whatever
/// `tweak` changes.
async fn behind_a_proxy(tweak: impl FnOnce(&mut Config)) -> (Running, Api) {
    log();
    let mut config = sandbox_config();
    config.auth.trust_forwarded_for = true;
    config.auth.people = vec![person("alice", Role::Agent, "alice-pw")];
    tweak(&mut config);
    let running = app::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: reqwest::Client::new(),
    };
    (running, api)
}

async fn start() -> (Running, Api) {
    log();
    let mut config = sandbox_config();
    config.auth.people = vec![
        person("alice", Role::Agent, "alice-pw"),
        person("bob", Role::Agent, "bob-pw"),
        person("carol", Role::Supervisor, "carol-pw"),
    ];
    let running = app::start(config).await.unwrap();
    assert!(
        running.sandbox_sign_ins.is_empty(),
        "configured people, no demo people"
    );
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: reqwest::Client::new(),
    };
    (running, api)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn login(&self, id: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/login", self.base))
            .json(&json!({ "id": id, "password": password }))
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, id: &str, password: &str) -> String {
        let resp = self.login(id, password).await;
        assert_eq!(resp.status(), 200, "{id} signs in");
        resp.json::<LoginAnswer>().await.unwrap().token
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }
}

async fn error_of(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["error"].as_str().expect("a JSON error").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_works_as_bearer_and_as_cookie_until_logout() {
    let (running, api) = start().await;
    let resp = api.login("alice", "alice-pw").await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: LoginAnswer = resp.json().await.unwrap();
    let token = answer.token.clone();
    assert_eq!(token.len(), 64);
    assert_eq!(answer.expires_in_secs, 12 * 3600);
    assert_eq!(answer.person.id, AgentId("alice".into()));
    assert!(
        cookie.starts_with(&format!("switchboard_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // The sandbox is plain http: no Secure there (it is on by default with credentials).
    assert!(!cookie.contains("Secure"), "{cookie}");

    let me = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap() };
    let by_bearer = me(api.get("/api/me").bearer_auth(&token)).await;
    assert_eq!(by_bearer.status(), 200);
    let who: PersonInfo = by_bearer.json().await.unwrap();
    assert_eq!(
        who,
        PersonInfo {
            id: AgentId("alice".into()),
            name: "Name of alice".into(),
            role: Role::Agent,
            queues: vec!["support".into()],
        }
    );
    let by_cookie = me(api.get("/api/me").header(
        header::COOKIE,
        format!("theme=dark; switchboard_session={token}"),
    ))
    .await;
    assert_eq!(by_cookie.status(), 200);

    // No token, a made-up one, a wrong scheme: 401 with a JSON error.
    for req in [
        api.get("/api/me"),
        api.get("/api/me").bearer_auth("0".repeat(64)),
        api.get("/api/me").basic_auth("alice", Some("alice-pw")),
        api.post("/api/logout"),
    ] {
        let resp = me(req).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(error_of(resp).await.contains("sign in"));
    }

    // A second session of alice's outlives the first one's logout.
    let other = api.token("alice", "alice-pw").await;
    let out = me(api
        .post("/api/logout")
        .header(header::COOKIE, format!("switchboard_session={token}")))
    .await;
    assert_eq!(out.status(), 204);
    let cleared = out.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("switchboard_session=;") && cleared.contains("Max-Age=0"));
    assert_eq!(
        me(api.get("/api/me").bearer_auth(&token)).await.status(),
        401
    );
    assert_eq!(
        me(api.post("/api/logout").bearer_auth(&token))
            .await
            .status(),
        401
    );
    assert_eq!(
        me(api.get("/api/me").bearer_auth(&other)).await.status(),
        200
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_id_get_the_same_401() {
    let (running, api) = start().await;
    let wrong = api.login("alice", "nope").await;
    assert_eq!(wrong.status(), 401);
    let unknown = api.login("mallory", "nope").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(error_of(wrong).await, error_of(unknown).await);
    // The id is not case-sensitive.
    assert_eq!(api.login("Alice", "alice-pw").await.status(), 200);
    let stats = running.auth.stats();
    assert_eq!((stats.sign_in.failures, stats.sign_in.successes), (2, 1));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let (running, api) = start().await;
    let token = api.token("bob", "bob-pw").await;
    running
        .auth
        .advance_clock(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(
        api.get("/api/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    running.auth.advance_clock(Duration::from_secs(1));
    let resp = api.get("/api/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(running.auth.stats().sessions, 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_refused_what_only_a_supervisor_may_do() {
    let (running, api) = start().await;
    let agent = api.token("alice", "alice-pw").await;
    let resp = api
        .get("/api/people")
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(error_of(resp).await.contains("supervisor"));
    assert_eq!(api.get("/api/people").send().await.unwrap().status(), 401);

    let supervisor = api.token("carol", "carol-pw").await;
    let resp = api
        .get("/api/people")
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let people: Vec<PersonStatus> = resp.json().await.unwrap();
    let ids: Vec<_> = people
        .iter()
        .map(|p| (p.person.id.0.as_str(), p.sessions))
        .collect();
    assert_eq!(ids, [("alice", 1), ("bob", 0), ("carol", 1)]);
    // A supervisor is also everything an agent is.
    assert_eq!(
        api.get("/api/me")
            .bearer_auth(&supervisor)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_throttled_per_name_and_per_address_and_counted() {
    let (running, api) = start().await;
    // Five free failures, and the sixth starts a block on the name.
    for i in 0..6 {
        assert_eq!(api.login("alice", &format!("guess{i}")).await.status(), 401);
    }
    let blocked = api.login("alice", "guess6").await;
    assert_eq!(blocked.status(), 429);
    let retry: u64 = blocked.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(error_of(blocked).await.contains("too many failed sign-ins"));
    // Even the right password is not checked while blocked...
    assert_eq!(api.login("alice", "alice-pw").await.status(), 429);
    // ...while another name still signs in from the same address.
    assert_eq!(api.login("bob", "bob-pw").await.status(), 200);
    let s = running.auth.stats().sign_in;
    assert_eq!((s.failures, s.throttled, s.successes), (6, 2, 1));
    assert_eq!((s.names_blocked, s.addresses_blocked), (1, 0));

    // Spraying other names from this one address: 20 failures in all pass, then it is blocked.
    let mut sprayed = 0;
    while api.login(&format!("user{sprayed}"), "guess").await.status() == 401 {
        sprayed += 1;
        assert!(sprayed < 30, "the address is never blocked");
    }
    assert_eq!(sprayed, 15, "6 + 15 failures from this address");
    assert_eq!(api.login("bob", "bob-pw").await.status(), 429);
    let s = running.auth.stats().sign_in;
    assert_eq!(s.addresses_blocked, 1);
    assert_eq!(s.failures, 21);
    assert!(logged().contains("this address is blocked"));

    // Blocks lift with time, and a quiet hour forgets the failures.
    running.auth.advance_clock(Duration::from_secs(3600));
    assert_eq!(api.login("alice", "alice-pw").await.status(), 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_throttled() {
    let (running, api) = behind_a_proxy(|_| {}).await;
    let login_from = |xff: &'static str, id: String, pw: &'static str| {
        api.post("/api/login")
            .header("x-forwarded-for", xff)
            .json(&json!({ "id": id, "password": pw }))
            .send()
    };
    // The proxy appends the address it saw; what the client wrote before it is not believed.
    for i in 0..21 {
        let resp = login_from("192.0.2.99, 203.0.113.5", format!("user{i}"), "x")
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let blocked = login_from("203.0.113.5", "alice".into(), "alice-pw")
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    let other = login_from("192.0.2.99, 203.0.113.6", "alice".into(), "alice-pw")
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_login_bodies_are_refused_unchecked() {
    let (running, api) = start().await;
    let send = |body: String, json: bool| {
        let mut req = api.post("/api/login").body(body);
        if json {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.send()
    };
    for (body, json, status) in [
        ("{not json".to_owned(), true, StatusCode::BAD_REQUEST),
        (
            r#"{"id": "alice"}"#.to_owned(),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"id": "alice", "password": "x", "totp": 1}"#.to_owned(),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"id": "", "password": "x"}"#.to_owned(),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            // An id of 64, @ and a slug of 40 is the longest.
            json!({ "id": "a".repeat(106), "password": "x" }).to_string(),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"id": "alice", "password": "x"}"#.to_owned(),
            false,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json!({ "id": "alice", "password": "x".repeat(10_000) }).to_string(),
            true,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let resp = send(body.clone(), json).await.unwrap();
        assert_eq!(resp.status(), status, "{}", &body[..body.len().min(60)]);
        assert!(!error_of(resp).await.is_empty());
    }
    let s = running.auth.stats().sign_in;
    assert_eq!((s.failures, s.throttled), (0, 0), "nothing was checked");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tokens_never_reach_the_log_or_a_debug_print() {
    const PASSWORD: &str = "Zebra-Quokka-93!";
    log();
    let mut config = sandbox_config();
    config.auth.people = vec![person("dora", Role::Agent, PASSWORD)];
    let phc = config.auth.people[0].password_hash.as_phc().to_owned();
    let salt = phc.split('$').nth(4).unwrap().to_owned();
    let dbg = format!("{config:?}");
    assert!(!dbg.contains(&salt) && !dbg.contains(PASSWORD), "{dbg}");
    let running = app::start(config).await.unwrap();
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: reqwest::Client::new(),
    };
    let resp = api.login("dora", PASSWORD).await;
    let answer: LoginAnswer = resp.json().await.unwrap();
    let token = answer.token.clone();
    assert!(!format!("{answer:?}").contains(&token));
    assert_eq!(api.login("dora", "Zebra-Quokka-94!").await.status(), 401);
    // A password typed into the id box is not logged either.
    assert_eq!(api.login("Zebra-Quokka-95!", "x").await.status(), 401);
    assert_eq!(
        api.get("/api/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api.post("/api/logout")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    running.shutdown().await;
    let log = logged();
    assert!(
        log.contains("signed in") && log.contains("dora"),
        "the log was captured"
    );
    for secret in [
        PASSWORD,
        "Zebra-Quokka-94!",
        "zebra-quokka-95!",
        "Zebra-Quokka-95!",
        &token,
        &salt,
    ] {
        assert!(!log.contains(secret), "{secret} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_has_demo_people_and_says_how_to_sign_in() {
    log();
    let running = app::start(sandbox_config()).await.unwrap();
    let demo = running.sandbox_sign_ins.clone();
    let ids: Vec<_> = demo.iter().map(|d| (d.id.0.as_str(), d.role)).collect();
    assert_eq!(
        ids,
        [
            ("agent1", Role::Agent),
            ("agent2", Role::Agent),
            ("super", Role::Supervisor)
        ]
    );
    let line = logged()
        .lines()
        .find(|l| l.contains("SANDBOX:") && l.contains(&demo[0].password))
        .map(str::to_owned)
        .expect("a SANDBOX: line with the demo sign-ins");
    let api = Api {
        base: format!("http://{}", running.http_addr),
        http: reqwest::Client::new(),
    };
    for d in &demo {
        assert!(
            line.contains(&format!("{} / {} ({})", d.id, d.password, d.role)),
            "{line}"
        );
        let token = api.token(&d.id.0, &d.password).await;
        let who: PersonInfo = api
            .get("/api/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(who.role, d.role);
        assert!(!who.queues.is_empty());
    }
    running.shutdown().await;
}

#[test]
fn hash_password_prints_an_argon2id_phc_string_that_verifies() {
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("correct horse battery staple\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phc = String::from_utf8(out.stdout).unwrap();
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let hash = PasswordHash::parse(phc).unwrap();
    assert!(switchboard::signaling::password::verify(
        &hash,
        "correct horse battery staple"
    ));
    assert!(!switchboard::signaling::password::verify(
        &hash,
        "correct horse battery staple\n"
    ));
    // CRLF is a line ending too; an empty password is refused.
    let crlf = String::from_utf8(run("pw\r\n").stdout).unwrap();
    let hash = PasswordHash::parse(crlf.trim_end()).unwrap();
    assert!(switchboard::signaling::password::verify(&hash, "pw"));
    let empty = run("\n");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"));
}

/// Signs in as `id` from `addr` (a trusted proxy's `X-Forwarded-For`); the status.
async fn login_from(api: &Api, addr: &str, id: &str, password: &str) -> StatusCode {
    api.post("/api/login")
        .header("x-forwarded-for", addr)
        .json(&json!({ "id": id, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_guessing_cannot_lock_a_person_out() {
    let (running, api) = behind_a_proxy(|_| {}).await;
    const STRANGER: &str = "203.0.113.66";
    const ALICE: &str = "198.51.100.7";
    for _ in 0..6 {
        assert_eq!(login_from(&api, STRANGER, "alice", "guess").await, 401);
    }
    // The stranger is held to the block; a guess at each expiry keeps it going...
    for _ in 0..3 {
        assert_eq!(login_from(&api, STRANGER, "alice", "guess").await, 429);
        // ...and alice, from an address that never failed for her, signs in all the while.
        assert_eq!(login_from(&api, ALICE, "alice", "alice-pw").await, 200);
        running.auth.advance_clock(Duration::from_secs(900));
        assert_eq!(login_from(&api, STRANGER, "alice", "guess").await, 401);
    }
    // Her own wrong guess puts her address under the name's block too.
    assert_eq!(login_from(&api, ALICE, "alice", "typo").await, 401);
    assert_eq!(login_from(&api, ALICE, "alice", "alice-pw").await, 429);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_beyond_the_password_queue_get_503_with_retry_after() {
    let (running, api) = behind_a_proxy(|c| {
        c.auth.password_workers = std::num::NonZeroUsize::MIN;
        c.auth.password_queue = std::num::NonZeroUsize::MIN;
    })
    .await;
    let (base, http) = (api.base.clone(), api.http.clone());
    // One check running and one waiting is all there is room for: of 32 at once, some are
    // turned away at once instead of piling up.
    let attempts = (0..32).map(|i| {
        http.post(format!("{base}/api/login"))
            .header("x-forwarded-for", format!("10.9.0.{i}"))
            .json(&json!({ "id": format!("made-up-{i}"), "password": "x" }))
            .send()
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut busy = 0u64;
    for a in answers {
        let a = a.unwrap();
        match a.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(a.headers()[header::RETRY_AFTER], "1");
            }
            other => panic!("{other}"),
        }
    }
    assert!(busy > 0, "nothing was turned away");
    assert_eq!(running.auth.stats().busy, busy);
    // Turned away is not a failure of the name or the address.
    assert_eq!(
        running.auth.stats().sign_in.failures + busy,
        32,
        "every attempt either checked or turned away"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_nodes_a_stranger_cannot_lock_a_person_out_either() {
    use std::net::IpAddr;
    use switchboard::cluster::Cluster;
    use switchboard::config::AuthConfig;
    use switchboard::signaling::auth::{AuthError, AuthHandle};

    let redis = common::Redis::start();
    let people = vec![person("alice", Role::Agent, "alice-pw")];
    let config = AuthConfig::with_people(vec![], Duration::from_secs(3600));
    let a = AuthHandle::new(&config, people.clone());
    let b = AuthHandle::new(&config, people);
    a.share_with(Cluster::connect(&redis.url(), "node-a").await.unwrap());
    b.share_with(Cluster::connect(&redis.url(), "node-b").await.unwrap());
    let stranger: IpAddr = "203.0.113.66".parse().unwrap();
    let alice: IpAddr = "198.51.100.7".parse().unwrap();
    // Six wrong guesses, alternating between the nodes: neither node's own throttle blocks,
    // the shared tally does.
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert!(matches!(
            node.sign_in("alice", "guess", stranger).await,
            Err(AuthError::BadCredentials)
        ));
    }
    for node in [&a, &b] {
        assert!(matches!(
            node.sign_in("alice", "guess", stranger).await,
            Err(AuthError::Throttled { .. })
        ));
    }
    // Alice, from an address that never failed for her, signs in on either node.
    for node in [&a, &b] {
        node.sign_in("alice", "alice-pw", alice)
            .await
            .expect("alice is not locked out");
    }
    // Her sign-ins forgave nothing of the stranger's.
    assert!(matches!(
        b.sign_in("alice", "guess", stranger).await,
        Err(AuthError::Throttled { .. })
    ));
}
