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
