use super::*;
use crate::config::Settings;

/// A valid argon2id PHC string (of no password anyone uses).
const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8L9yhCRq2iVJ9rUIfD1oQ3vlXKw2mi6x5HkG2y1kQ3I";

/// A valid account: two queues, a number each, an agent and a supervisor.
pub(crate) fn account(slug: &str, numbers: &[&str]) -> Account {
    let hash = PasswordHash::parse(PHC).unwrap();
    Account {
        slug: AccountSlug::try_from(slug.to_owned()).unwrap(),
        name: format!("Business {slug}"),
        waba_id: Some("200000000000002".into()),
        access_token: None,
        numbers: numbers
            .iter()
            .enumerate()
            .map(|(i, n)| NumberRoute {
                phone_number_id: (*n).into(),
                queue: (i == 0).then(|| "sales".into()),
            })
            .collect(),
        queues: vec![
            QueueDef {
                id: "support".into(),
                policy: QueuePolicy::Queue {
                    max_wait_ms: 120_000,
                },
                callbacks: true,
            },
            QueueDef {
                id: "sales".into(),
                policy: QueuePolicy::Decline,
                callbacks: false,
            },
        ],
        default_queue: "support".into(),
        people: vec![
            PersonDef {
                id: AgentId("alice".into()),
                name: "Alice Martin".into(),
                role: Role::Agent,
                password_hash: hash.clone(),
                queues: vec!["support".into(), "sales".into()],
                disabled: false,
            },
            PersonDef {
                id: AgentId("sam".into()),
                name: "Sam Okafor".into(),
                role: Role::Supervisor,
                password_hash: hash,
                queues: vec!["support".into()],
                disabled: true,
            },
        ],
        away_reasons: vec!["Lunch".into(), "Training".into()],
        settings: CallSettings {
            ring_timeout_ms: 15_000,
            wrap_up_ms: 0,
            grace_ms: 30_000,
            answer_deadline_ms: 25_000,
        },
        version: 1,
        api_keys: vec![ApiKeyDef {
            id: "0123456789ab".into(),
            name: "CRM sync".into(),
            role: Role::Admin,
            hash: "ab".repeat(32),
            created_at: 1_000,
            created_by: "operator".into(),
        }],
        hold_audio: None,
        allowed_origins: vec!["https://inbox.example.com".into()],
        endpoints: vec![],
    }
}

#[test]
fn a_slug_is_short_lower_case_and_starts_with_a_letter_or_digit() {
    for ok in ["default", "acme-support", "a", "9lives"] {
        assert!(AccountSlug::try_from(ok.to_owned()).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "-acme",
        "Acme",
        "acme support",
        "acme_support",
        &"a".repeat(41),
    ] {
        let e = AccountSlug::try_from(bad.to_owned()).unwrap_err();
        assert_eq!(e.field, "slug", "{bad:?}");
    }
}

#[test]
fn every_broken_rule_is_refused_naming_its_field() {
    assert_eq!(account("acme", &["1001", "1002"]).validate(), Ok(()));
    let refused = |change: &dyn Fn(&mut Account)| {
        let mut a = account("acme", &["1001", "1002"]);
        change(&mut a);
        a.validate().unwrap_err().field
    };
    assert_eq!(refused(&|a| a.name = String::new()), "name");
    assert_eq!(refused(&|a| a.name = "x".repeat(129)), "name");
    assert_eq!(refused(&|a| a.waba_id = Some("waba".into())), "waba_id");
    assert_eq!(
        refused(&|a| a.queues[1].id = "support".into()),
        "queues[1].id"
    );
    assert_eq!(
        refused(&|a| a.queues[0].id = "x".repeat(65)),
        "queues[0].id"
    );
    assert_eq!(
        refused(&|a| a.queues[1].id = "sales@acme".into()),
        "queues[1].id"
    );
    assert_eq!(
        refused(&|a| a.api_keys[0].role = Role::Agent),
        "api_keys[0].role"
    );
    for bad in [
        "inbox.example.com",
        "https://inbox.example.com/",
        "https://Inbox.example.com",
        "ftp://inbox.example.com",
        "https://inbox.example.com:0",
        "https://inbox.example.com:99999",
        "https://",
    ] {
        assert_eq!(
            refused(&|a| a.allowed_origins.push(bad.into())),
            "allowed_origins[1]",
            "{bad}"
        );
    }
    assert!(is_origin("http://127.0.0.1:8080"));
    assert!(is_origin("http://[::1]:8080"));
    assert_eq!(
        refused(&|a| a.api_keys.push(a.api_keys[0].clone())),
        "api_keys[1].id"
    );
    assert_eq!(
        refused(&|a| a.api_keys[0].hash = "secret".into()),
        "api_keys[0].hash"
    );
    assert_eq!(
        refused(&|a| a.queues[0].policy = QueuePolicy::Queue { max_wait_ms: 0 }),
        "queues[0].max_wait_ms"
    );
    assert_eq!(
        refused(&|a| a.default_queue = "billing".into()),
        "default_queue"
    );
    assert_eq!(
        refused(&|a| a.numbers[1].phone_number_id = "1001".into()),
        "numbers[1].phone_number_id"
    );
    assert_eq!(
        refused(&|a| a.numbers[0].phone_number_id = "10 01".into()),
        "numbers[0].phone_number_id"
    );
    assert_eq!(
        refused(&|a| a.numbers[0].queue = Some("billing".into())),
        "numbers[0].queue"
    );
    assert_eq!(
        refused(&|a| a.people[1].id = AgentId("alice".into())),
        "people[1].id"
    );
    assert_eq!(
        refused(&|a| a.people[0].id = AgentId("Alice".into())),
        "people[0].id"
    );
    assert_eq!(
        refused(&|a| a.people[0].name = "A\u{7}".into()),
        "people[0].name"
    );
    assert_eq!(
        refused(&|a| a.people[0].queues[1] = "billing".into()),
        "people[0].queues[1]"
    );
    assert_eq!(refused(&|a| a.away_reasons.clear()), "away_reasons");
    assert_eq!(
        refused(&|a| a.away_reasons[1] = "x".repeat(41)),
        "away_reasons[1]"
    );
    assert_eq!(
        refused(&|a| a.settings.ring_timeout_ms = 0),
        "settings.ring_timeout_ms"
    );
    assert_eq!(
        refused(&|a| a.settings.answer_deadline_ms = 3_600_001),
        "settings.answer_deadline_ms"
    );
}

#[test]
fn todays_example_configuration_becomes_a_valid_default_account() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/switchboard.example.toml"
    );
    let config = Config::load(Some(std::path::Path::new(path)), Settings::default()).unwrap();
    let a = Account::from_config(&config);
    assert_eq!(a.slug.as_str(), DEFAULT_ACCOUNT);
    assert_eq!(a.validate(), Ok(()));
    assert_eq!(a.default_queue, config.calls.default_queue.0);
    assert_eq!(a.queues.len(), config.calls.queues.len());
    assert_eq!(a.away_reasons, config.calls.away_reasons);
    assert_eq!(
        Duration::from_millis(a.settings.ring_timeout_ms),
        config.calls.ring_timeout
    );
    // Its policies come back as the routing floor knows them.
    for (q, c) in a.queues.iter().zip(&config.calls.queues) {
        assert_eq!(NoAgentPolicy::from(q.policy), c.policy);
    }
}
