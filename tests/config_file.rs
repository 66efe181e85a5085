//! The example configuration in deploy/ is valid and documents every key the loader knows.

mod common;

use switchboard::config::{Config, Settings};

#[test]
fn the_example_config_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/switchboard.example.toml"
    );
    let c = Config::load(Some(std::path::Path::new(path)), Settings::default()).unwrap();
    assert!(c.is_sandbox());
    assert_eq!(
        c.media.ports,
        switchboard::media::Ports::Range {
            first: 50000,
            last: 50999
        }
    );
    assert_eq!(c.limits.max_calls_per_number.get(), 1000);
    assert_eq!(c.limits.sandbox_max_calls.get(), 4);
    // The example has no credentials: the sandbox, whose records stay in memory.
    assert_eq!(c.store.path, None);
}

#[test]
fn the_example_config_names_every_setting() {
    let text = include_str!("../deploy/switchboard.example.toml");
    for key in common::SETTING_VARS {
        assert!(text.contains(key), "{key} is not documented");
    }
}

#[test]
fn a_config_file_with_a_typo_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[media]\nidle_timout = 3\n").unwrap();
    let e = Config::load(Some(&path), Settings::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("idle_timout"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_documented_people_entries_load_with_a_real_hash() {
    let text = include_str!("../deploy/switchboard.example.toml");
    let phc = switchboard::signaling::auth::hash_password("s3cret").unwrap();
    // The commented [[people]] tables at the end of the example, uncommented, with a real hash.
    let start = text.find("# [[people]]").expect("an example [[people]]");
    let people: String = text[start..]
        .lines()
        .map(|l| l.trim_start_matches('#').trim_start())
        .map(|l| l.replace("$argon2id$v=19$m=19456,t=2,p=1$...", &phc))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("sb-people-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("people.toml");
    std::fs::write(&path, &people).unwrap();
    let c = Config::load(Some(&path), Settings::default()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ids: Vec<_> = c
        .auth
        .people
        .iter()
        .map(|p| (p.id.0.as_str(), p.role))
        .collect();
    use switchboard::config::Role;
    assert_eq!(ids, [("alice", Role::Agent), ("sam", Role::Supervisor)]);
    assert_eq!(c.auth.people[0].queues, ["support", "sales"]);
}

/// Today's example configuration, unchanged but for loopback addresses, starts and takes a
/// call as before accounts: in the sandbox with its demo people, and with its `[[people]]`
/// (uncommented) on a database file, twice — the second start keeps the default account the
/// first seeded.
#[tokio::test]
async fn the_example_config_starts_and_takes_a_call_as_before() {
    use std::time::Duration;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/switchboard.example.toml"
    );
    let loopback = |db: Option<std::path::PathBuf>| {
        common::loopback(Settings {
            media_addr: Some("127.0.0.1".into()),
            media_ports: Some("ephemeral:4".into()),
            db,
            ..Settings::default()
        })
    };
    let answered = |running: switchboard::app::Running, id: &'static str| async move {
        let mut agent = common::sign_in(&running, id).await;
        let sim = running.simulator.clone().expect("the sandbox");
        let call = common::held_call(&sim).await;
        let ringing = agent.ringing(Duration::from_secs(10)).await.unwrap();
        assert_eq!(ringing, call.call_id.0);
        agent
            .answer(&ringing, Duration::from_secs(10))
            .await
            .unwrap();
        running.shutdown().await;
    };
    // As shipped: the sandbox with its demo people.
    let c = Config::load(Some(std::path::Path::new(path)), loopback(None)).unwrap();
    let running = switchboard::app::start(c).await.unwrap();
    let demo = running.sandbox_sign_ins[0].id.0.clone();
    assert_eq!(demo, "agent1");
    answered(running, "agent1").await;

    // With its [[people]], on a database file: seeded on the first start, kept on the next.
    let text = std::fs::read_to_string(path).unwrap();
    let phc = switchboard::signaling::auth::hash_password(common::PASSWORD).unwrap();
    let start = text.find("# [[people]]").unwrap();
    let uncommented: String = text[start..]
        .lines()
        .map(|l| l.trim_start_matches('#').trim_start())
        .map(|l| l.replace("$argon2id$v=19$m=19456,t=2,p=1$...", &phc))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, format!("{}\n{uncommented}\n", &text[..start])).unwrap();
    let db = dir.path().join("calls.db");
    for _ in 0..2 {
        let c = Config::load(Some(&file), loopback(Some(db.clone()))).unwrap();
        let running = switchboard::app::start(c).await.unwrap();
        assert!(running.sandbox_sign_ins.is_empty());
        answered(running, "alice").await;
    }
}
