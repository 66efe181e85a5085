//! [`AccountStore`] on SQLite and on PostgreSQL: an account is a row of `accounts` and rows of
//! `account_queues`, `account_numbers` and `account_people`, written in one transaction. A
//! business number is the primary key of `account_numbers`, so two accounts can never both have
//! it, whichever node writes.

use serde::de::DeserializeOwned;

use super::sqlite::to_json;
use super::{AccountStore, PostgresStore, SqliteStore, StoreError};
use crate::accounts::{
    Account, AccountSlug, ApiKeyDef, AuditEntry, CallSettings, EndpointDef, NumberRoute, PersonDef,
    QueueDef, QueuePolicy, SealedToken,
};
use crate::config::{PasswordHash, Role};
use crate::ids::AgentId;

/// The accounts' tables (SQLite's migration 3).
pub(super) const SQLITE_SCHEMA: &str = "CREATE TABLE accounts (
        slug          TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL,
        waba_id       TEXT,
        default_queue TEXT NOT NULL,
        away_reasons  TEXT NOT NULL,
        settings      TEXT NOT NULL,
        access_token  BLOB
    );
    CREATE TABLE account_queues (
        account  TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id       TEXT NOT NULL,
        position INTEGER NOT NULL,
        policy   TEXT NOT NULL,
        PRIMARY KEY (account, id)
    ) WITHOUT ROWID;
    CREATE TABLE account_numbers (
        phone_number_id TEXT PRIMARY KEY NOT NULL,
        account         TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        queue           TEXT
    );
    CREATE INDEX account_numbers_by_account ON account_numbers (account, position);
    CREATE TABLE account_people (
        account       TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id            TEXT NOT NULL,
        position      INTEGER NOT NULL,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        queues        TEXT NOT NULL,
        disabled      INTEGER NOT NULL,
        PRIMARY KEY (account, id)
    ) WITHOUT ROWID;";

/// Each account's version, the audit log of changes, and the API keys (SQLite's migration 4).
pub(super) const SQLITE_VERSION: &str =
    "ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE accounts ADD COLUMN hold_audio BLOB;
    ALTER TABLE accounts ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE account_audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        before  TEXT,
        after   TEXT
    );
    CREATE INDEX account_audit_by_account ON account_audit (account, id);
    CREATE TABLE account_api_keys (
        account    TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id         TEXT NOT NULL,
        position   INTEGER NOT NULL,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        hash       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (account, id)
    );";

/// Each account's version, the audit log of changes, and the API keys (PostgreSQL's
/// migration 4).
pub(super) const POSTGRES_VERSION: &str =
    "ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE accounts ADD COLUMN hold_audio BYTEA;
    ALTER TABLE accounts ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE account_audit (
        id      BIGSERIAL PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        at      BIGINT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        before  TEXT,
        after   TEXT
    );
    CREATE INDEX account_audit_by_account ON account_audit (account, id);
    CREATE TABLE account_api_keys (
        account    TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id         TEXT NOT NULL,
        position   INTEGER NOT NULL,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        hash       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (account, id)
    );";

/// The accounts' tables (PostgreSQL's migration 3).
pub(super) const POSTGRES_SCHEMA: &str = "CREATE TABLE accounts (
        slug          TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL,
        waba_id       TEXT,
        default_queue TEXT NOT NULL,
        away_reasons  TEXT NOT NULL,
        settings      TEXT NOT NULL,
        access_token  BYTEA
    );
    CREATE TABLE account_queues (
        account  TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id       TEXT NOT NULL,
        position INTEGER NOT NULL,
        policy   TEXT NOT NULL,
        PRIMARY KEY (account, id)
    );
    CREATE TABLE account_numbers (
        phone_number_id TEXT PRIMARY KEY NOT NULL,
        account         TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        queue           TEXT
    );
    CREATE INDEX account_numbers_by_account ON account_numbers (account, position);
    CREATE TABLE account_people (
        account       TEXT NOT NULL REFERENCES accounts (slug) ON DELETE CASCADE,
        id            TEXT NOT NULL,
        position      INTEGER NOT NULL,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        queues        TEXT NOT NULL,
        disabled      BOOLEAN NOT NULL,
        PRIMARY KEY (account, id)
    );";

/// A stored column of `account` read back; an unreadable one is [`StoreError::Corrupt`].
/// A queue's `policy` column: its policy and, in the same JSON object, whether its lost callers
/// become call-back tasks (absent in rows written before call-backs: `false`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredQueue {
    #[serde(flatten)]
    policy: QueuePolicy,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    callbacks: bool,
}

impl StoredQueue {
    fn of(q: &QueueDef) -> StoredQueue {
        StoredQueue {
            policy: q.policy,
            callbacks: q.callbacks,
        }
    }

    fn def(self, id: String) -> QueueDef {
        QueueDef {
            id,
            policy: self.policy,
            callbacks: self.callbacks,
        }
    }
}

fn read<T, E: std::fmt::Display>(
    account: &str,
    column: &'static str,
    value: Result<T, E>,
) -> Result<T, StoreError> {
    value.map_err(|e| StoreError::Corrupt {
        call_id: format!("account {account}"),
        column,
        reason: e.to_string(),
    })
}

fn from_json<T: DeserializeOwned>(
    account: &str,
    column: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    read(account, column, serde_json::from_str(text))
}

fn role_of(account: &str, text: &str) -> Result<Role, StoreError> {
    read(
        account,
        "role",
        match text {
            "agent" => Ok(Role::Agent),
            "supervisor" => Ok(Role::Supervisor),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}")),
        },
    )
}

/// An account's own row, before its queues, numbers and people are attached.
struct Head {
    slug: String,
    name: String,
    waba_id: Option<String>,
    default_queue: String,
    away_reasons: String,
    settings: String,
    access_token: Option<Vec<u8>>,
    version: i64,
    hold_audio: Option<Vec<u8>>,
    allowed_origins: String,
    endpoints: String,
}

impl Head {
    fn account(self) -> Result<Account, StoreError> {
        let slug = read(&self.slug, "slug", AccountSlug::try_from(self.slug.clone()))?;
        let settings: CallSettings = from_json(&self.slug, "settings", &self.settings)?;
        Ok(Account {
            name: self.name,
            waba_id: self.waba_id,
            access_token: self.access_token.map(SealedToken::from_bytes),
            numbers: vec![],
            queues: vec![],
            default_queue: self.default_queue,
            people: vec![],
            away_reasons: from_json(&self.slug, "away_reasons", &self.away_reasons)?,
            settings,
            version: read(&self.slug, "version", u64::try_from(self.version))?,
            api_keys: vec![],
            hold_audio: self.hold_audio,
            allowed_origins: from_json(&self.slug, "allowed_origins", &self.allowed_origins)?,
            endpoints: from_json::<Vec<StoredEndpoint>>(&self.slug, "endpoints", &self.endpoints)?
                .into_iter()
                .map(|e| e.def(&self.slug))
                .collect::<Result<_, _>>()?,
            slug,
        })
    }
}

/// An event endpoint as the `endpoints` column keeps it (JSON), its sealed secret in base64.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEndpoint {
    id: String,
    url: String,
    description: String,
    types: Vec<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    secret: String,
    created_at: i64,
    created_by: String,
}

impl StoredEndpoint {
    fn of(e: &EndpointDef) -> StoredEndpoint {
        use base64::prelude::{Engine as _, BASE64_STANDARD};
        StoredEndpoint {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            types: e.types.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            secret: BASE64_STANDARD.encode(e.secret.as_bytes()),
            created_at: e.created_at,
            created_by: e.created_by.clone(),
        }
    }

    fn def(self, slug: &str) -> Result<EndpointDef, StoreError> {
        use base64::prelude::{Engine as _, BASE64_STANDARD};
        let secret = read(slug, "endpoints", BASE64_STANDARD.decode(&self.secret))?;
        Ok(EndpointDef {
            id: self.id,
            url: self.url,
            description: self.description,
            types: self.types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            secret: SealedToken::from_bytes(secret),
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

fn endpoints_json(account: &Account) -> String {
    to_json(
        &account
            .endpoints
            .iter()
            .map(StoredEndpoint::of)
            .collect::<Vec<_>>(),
    )
}

/// Attaches rows read for `slug` to its account in `accounts` (sorted by slug).
fn attach<'a>(accounts: &'a mut [Account], slug: &str) -> Option<&'a mut Account> {
    accounts
        .binary_search_by(|a| a.slug.as_str().cmp(slug))
        .ok()
        .map(|i| &mut accounts[i])
}

impl AccountStore for SqliteStore {
    fn accounts(&mut self) -> Result<Vec<Account>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut accounts = {
            let mut q = tx.prepare(
                "SELECT slug, name, waba_id, default_queue, away_reasons, settings, access_token,
                     version, hold_audio, allowed_origins, endpoints
                 FROM accounts ORDER BY slug",
            )?;
            let heads = q.query_map([], |r| {
                Ok(Head {
                    slug: r.get(0)?,
                    name: r.get(1)?,
                    waba_id: r.get(2)?,
                    default_queue: r.get(3)?,
                    away_reasons: r.get(4)?,
                    settings: r.get(5)?,
                    access_token: r.get(6)?,
                    version: r.get(7)?,
                    hold_audio: r.get(8)?,
                    allowed_origins: r.get(9)?,
                    endpoints: r.get(10)?,
                })
            })?;
            heads
                .map(|h| h.map_err(StoreError::from).and_then(Head::account))
                .collect::<Result<Vec<_>, _>>()?
        };
        {
            let mut q = tx.prepare(
                "SELECT account, id, policy FROM account_queues ORDER BY account, position",
            )?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (slug, id, policy) = row?;
                let q: StoredQueue = from_json(&slug, "policy", &policy)?;
                if let Some(a) = attach(&mut accounts, &slug) {
                    a.queues.push(q.def(id));
                }
            }
        }
        {
            let mut q = tx.prepare(
                "SELECT account, phone_number_id, queue FROM account_numbers
                 ORDER BY account, position",
            )?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            for row in rows {
                let (slug, phone_number_id, queue) = row?;
                if let Some(a) = attach(&mut accounts, &slug) {
                    a.numbers.push(NumberRoute {
                        phone_number_id,
                        queue,
                    });
                }
            }
        }
        {
            let mut q = tx.prepare(
                "SELECT account, id, name, role, password_hash, queues, disabled
                 FROM account_people ORDER BY account, position",
            )?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })?;
            for row in rows {
                let (slug, id, name, role, hash, queues, disabled) = row?;
                let person = PersonDef {
                    id: AgentId(id),
                    name,
                    role: role_of(&slug, &role)?,
                    password_hash: read(&slug, "password_hash", PasswordHash::parse(&hash))?,
                    queues: from_json(&slug, "queues", &queues)?,
                    disabled,
                };
                if let Some(a) = attach(&mut accounts, &slug) {
                    a.people.push(person);
                }
            }
        }
        {
            let mut q = tx.prepare(
                "SELECT account, id, name, role, hash, created_at, created_by
                 FROM account_api_keys ORDER BY account, position",
            )?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            for row in rows {
                let (slug, id, name, role, hash, created_at, created_by) = row?;
                let key = ApiKeyDef {
                    id,
                    name,
                    role: role_of(&slug, &role)?,
                    hash,
                    created_at,
                    created_by,
                };
                if let Some(a) = attach(&mut accounts, &slug) {
                    a.api_keys.push(key);
                }
            }
        }
        tx.commit()?;
        Ok(accounts)
    }

    fn create_account(&mut self, account: &Account) -> Result<(), StoreError> {
        account.validate()?;
        let slug = account.slug.as_str();
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO accounts (slug, name, waba_id, default_queue, away_reasons, settings,
                 access_token, version, hold_audio, allowed_origins, endpoints)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?10) ON CONFLICT (slug) DO NOTHING",
            rusqlite::params![
                slug,
                account.name,
                account.waba_id,
                account.default_queue,
                to_json(&account.away_reasons),
                to_json(&account.settings),
                account.access_token.as_ref().map(SealedToken::as_bytes),
                account.hold_audio,
                to_json(&account.allowed_origins),
                endpoints_json(account),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AccountExists(slug.to_owned()));
        }
        insert_parts_sqlite(&tx, account)?;
        tx.commit()?;
        Ok(())
    }

    fn replace_account(
        &mut self,
        account: &Account,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        account.validate()?;
        let slug = account.slug.as_str();
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            "UPDATE accounts SET name = ?2, waba_id = ?3, default_queue = ?4, away_reasons = ?5,
                 settings = ?6, access_token = ?7, hold_audio = ?9, allowed_origins = ?10,
                 endpoints = ?11, version = version + 1
             WHERE slug = ?1 AND version = ?8",
            rusqlite::params![
                slug,
                account.name,
                account.waba_id,
                account.default_queue,
                to_json(&account.away_reasons),
                to_json(&account.settings),
                account.access_token.as_ref().map(SealedToken::as_bytes),
                i64::try_from(account.version).unwrap_or(i64::MAX),
                account.hold_audio,
                to_json(&account.allowed_origins),
                endpoints_json(account),
            ],
        )?;
        if updated == 0 {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE slug = ?1)",
                [slug],
                |r| r.get(0),
            )?;
            return Err(if exists {
                StoreError::Stale(slug.to_owned())
            } else {
                StoreError::NoAccount(slug.to_owned())
            });
        }
        for table in [
            "account_queues",
            "account_numbers",
            "account_people",
            "account_api_keys",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE account = ?1"), [slug])?;
        }
        insert_parts_sqlite(&tx, account)?;
        append_sqlite(&tx, slug, audit)?;
        tx.commit()?;
        Ok(account.version + 1)
    }

    fn append_audit(&mut self, slug: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        append_sqlite(&tx, slug, entry)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_log(
        &mut self,
        slug: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT id, at, actor, action, target, before, after FROM account_audit
             WHERE account = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = q.query_map(
            rusqlite::params![slug, before.unwrap_or(i64::MAX), i64::from(limit)],
            |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    before: r.get(5)?,
                    after: r.get(6)?,
                })
            },
        )?;
        rows.map(|r| r.map_err(StoreError::from).and_then(|r| r.entry(slug)))
            .collect()
    }
}

fn append_sqlite(
    tx: &rusqlite::Transaction<'_>,
    slug: &str,
    e: &AuditEntry,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO account_audit (account, at, actor, action, target, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            slug,
            e.at,
            e.actor,
            e.action,
            e.target,
            e.before.as_ref().map(to_json),
            e.after.as_ref().map(to_json),
        ],
    )?;
    Ok(())
}

/// A row of `account_audit`, whichever database it came from.
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
}

impl AuditRow {
    fn entry(self, slug: &str) -> Result<AuditEntry, StoreError> {
        let json = |column, v: Option<String>| {
            v.map(|t| from_json::<serde_json::Value>(slug, column, &t))
                .transpose()
        };
        Ok(AuditEntry {
            id: self.id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            before: json("before", self.before)?,
            after: json("after", self.after)?,
        })
    }
}

/// Writes `account`'s queues, numbers and people (none of its are stored); refused when one
/// of its numbers is another account's.
fn insert_parts_sqlite(
    tx: &rusqlite::Transaction<'_>,
    account: &Account,
) -> Result<(), StoreError> {
    let slug = account.slug.as_str();
    if let Some(taken) = number_taken_sqlite(tx, account)? {
        return Err(taken);
    }
    for (i, q) in account.queues.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_queues (account, id, position, policy) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![slug, q.id, i as i64, to_json(&StoredQueue::of(q))],
        )?;
    }
    for (i, n) in account.numbers.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_numbers (phone_number_id, account, position, queue)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![n.phone_number_id, slug, i as i64, n.queue],
        )?;
    }
    for (i, p) in account.people.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_people (account, id, position, name, role, password_hash,
                 queues, disabled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                slug,
                p.id.0,
                i as i64,
                p.name,
                p.role.to_string(),
                p.password_hash.as_phc(),
                to_json(&p.queues),
                p.disabled,
            ],
        )?;
    }
    for (i, k) in account.api_keys.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_api_keys (account, id, position, name, role, hash, created_at,
                 created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                slug,
                k.id,
                i as i64,
                k.name,
                k.role.to_string(),
                k.hash,
                k.created_at,
                k.created_by,
            ],
        )?;
    }
    Ok(())
}

/// The first of `account`'s numbers another account has already, as the error to answer.
fn number_taken_sqlite(
    tx: &rusqlite::Transaction<'_>,
    account: &Account,
) -> Result<Option<StoreError>, StoreError> {
    let mut q = tx.prepare("SELECT account FROM account_numbers WHERE phone_number_id = ?1")?;
    for n in &account.numbers {
        let owner: Option<String> = q
            .query_row([&n.phone_number_id], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        if let Some(owner) = owner {
            return Ok(Some(StoreError::NumberTaken {
                number: n.phone_number_id.clone(),
                account: owner,
            }));
        }
    }
    Ok(None)
}

impl AccountStore for PostgresStore {
    fn accounts(&mut self) -> Result<Vec<Account>, StoreError> {
        let mut tx = self.client()?.transaction()?;
        let mut accounts = tx
            .query(
                "SELECT slug, name, waba_id, default_queue, away_reasons, settings, access_token,
                     version, hold_audio, allowed_origins, endpoints
                 FROM accounts ORDER BY slug",
                &[],
            )?
            .into_iter()
            .map(|r| {
                Head {
                    slug: r.get(0),
                    name: r.get(1),
                    waba_id: r.get(2),
                    default_queue: r.get(3),
                    away_reasons: r.get(4),
                    settings: r.get(5),
                    access_token: r.get(6),
                    version: r.get(7),
                    hold_audio: r.get(8),
                    allowed_origins: r.get(9),
                    endpoints: r.get(10),
                }
                .account()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in tx.query(
            "SELECT account, id, policy FROM account_queues ORDER BY account, position",
            &[],
        )? {
            let slug: String = r.get(0);
            let q: StoredQueue = from_json(&slug, "policy", r.get(2))?;
            if let Some(a) = attach(&mut accounts, &slug) {
                a.queues.push(q.def(r.get(1)));
            }
        }
        for r in tx.query(
            "SELECT account, phone_number_id, queue FROM account_numbers ORDER BY account, position",
            &[],
        )? {
            let slug: String = r.get(0);
            if let Some(a) = attach(&mut accounts, &slug) {
                a.numbers.push(NumberRoute {
                    phone_number_id: r.get(1),
                    queue: r.get(2),
                });
            }
        }
        for r in tx.query(
            "SELECT account, id, name, role, password_hash, queues, disabled
             FROM account_people ORDER BY account, position",
            &[],
        )? {
            let slug: String = r.get(0);
            let person = PersonDef {
                id: AgentId(r.get(1)),
                name: r.get(2),
                role: role_of(&slug, r.get(3))?,
                password_hash: read(&slug, "password_hash", PasswordHash::parse(r.get(4)))?,
                queues: from_json(&slug, "queues", r.get(5))?,
                disabled: r.get(6),
            };
            if let Some(a) = attach(&mut accounts, &slug) {
                a.people.push(person);
            }
        }
        for r in tx.query(
            "SELECT account, id, name, role, hash, created_at, created_by
             FROM account_api_keys ORDER BY account, position",
            &[],
        )? {
            let slug: String = r.get(0);
            let key = ApiKeyDef {
                id: r.get(1),
                name: r.get(2),
                role: role_of(&slug, r.get(3))?,
                hash: r.get(4),
                created_at: r.get(5),
                created_by: r.get(6),
            };
            if let Some(a) = attach(&mut accounts, &slug) {
                a.api_keys.push(key);
            }
        }
        tx.commit()?;
        Ok(accounts)
    }

    fn create_account(&mut self, account: &Account) -> Result<(), StoreError> {
        account.validate()?;
        let slug = account.slug.as_str();
        let mut tx = self.client()?.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO accounts (slug, name, waba_id, default_queue, away_reasons, settings,
                 access_token, version, hold_audio, allowed_origins, endpoints)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10) ON CONFLICT (slug) DO NOTHING",
            &[
                &slug,
                &account.name,
                &account.waba_id,
                &account.default_queue,
                &to_json(&account.away_reasons),
                &to_json(&account.settings),
                &account.access_token.as_ref().map(SealedToken::as_bytes),
                &account.hold_audio,
                &to_json(&account.allowed_origins),
                &endpoints_json(account),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AccountExists(slug.to_owned()));
        }
        insert_parts_postgres(&mut tx, account)?;
        tx.commit()?;
        Ok(())
    }

    fn replace_account(
        &mut self,
        account: &Account,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        account.validate()?;
        let slug = account.slug.as_str();
        let mut tx = self.client()?.transaction()?;
        let version = i64::try_from(account.version).unwrap_or(i64::MAX);
        // The row stays locked to the end of the transaction: a second node's change of the same
        // version waits, then finds it gone.
        let updated = tx.execute(
            "UPDATE accounts SET name = $2, waba_id = $3, default_queue = $4, away_reasons = $5,
                 settings = $6, access_token = $7, hold_audio = $9, allowed_origins = $10,
                 endpoints = $11, version = version + 1
             WHERE slug = $1 AND version = $8",
            &[
                &slug,
                &account.name,
                &account.waba_id,
                &account.default_queue,
                &to_json(&account.away_reasons),
                &to_json(&account.settings),
                &account.access_token.as_ref().map(SealedToken::as_bytes),
                &version,
                &account.hold_audio,
                &to_json(&account.allowed_origins),
                &endpoints_json(account),
            ],
        )?;
        if updated == 0 {
            let exists = tx
                .query_opt("SELECT 1 FROM accounts WHERE slug = $1", &[&slug])?
                .is_some();
            return Err(if exists {
                StoreError::Stale(slug.to_owned())
            } else {
                StoreError::NoAccount(slug.to_owned())
            });
        }
        for table in [
            "account_queues",
            "account_numbers",
            "account_people",
            "account_api_keys",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE account = $1"), &[&slug])?;
        }
        insert_parts_postgres(&mut tx, account)?;
        append_postgres(&mut tx, slug, audit)?;
        tx.commit()?;
        Ok(account.version + 1)
    }

    fn append_audit(&mut self, slug: &str, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction()?;
        append_postgres(&mut tx, slug, entry)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_log(
        &mut self,
        slug: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id, at, actor, action, target, before, after FROM account_audit
             WHERE account = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            &[&slug, &before.unwrap_or(i64::MAX), &i64::from(limit)],
        )?;
        rows.into_iter()
            .map(|r| {
                AuditRow {
                    id: r.get(0),
                    at: r.get(1),
                    actor: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    before: r.get(5),
                    after: r.get(6),
                }
                .entry(slug)
            })
            .collect()
    }
}

fn append_postgres(
    tx: &mut ::postgres::Transaction<'_>,
    slug: &str,
    e: &AuditEntry,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO account_audit (account, at, actor, action, target, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &slug,
            &e.at,
            &e.actor,
            &e.action,
            &e.target,
            &e.before.as_ref().map(to_json),
            &e.after.as_ref().map(to_json),
        ],
    )?;
    Ok(())
}

/// Writes `account`'s queues, numbers and people (none of its are stored); refused when one
/// of its numbers is another account's.
fn insert_parts_postgres(
    tx: &mut ::postgres::Transaction<'_>,
    account: &Account,
) -> Result<(), StoreError> {
    let slug = account.slug.as_str();
    for n in &account.numbers {
        if let Some(r) = tx.query_opt(
            "SELECT account FROM account_numbers WHERE phone_number_id = $1",
            &[&n.phone_number_id],
        )? {
            return Err(StoreError::NumberTaken {
                number: n.phone_number_id.clone(),
                account: r.get(0),
            });
        }
    }
    for (i, q) in account.queues.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_queues (account, id, position, policy) VALUES ($1, $2, $3, $4)",
            &[&slug, &q.id, &(i as i32), &to_json(&StoredQueue::of(q))],
        )?;
    }
    for (i, n) in account.numbers.iter().enumerate() {
        // Another node may have claimed the number since the check: the key refuses it.
        tx.execute(
            "INSERT INTO account_numbers (phone_number_id, account, position, queue)
             VALUES ($1, $2, $3, $4)",
            &[&n.phone_number_id, &slug, &(i as i32), &n.queue],
        )
        .map_err(|e| {
            if e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION) {
                StoreError::NumberTaken {
                    number: n.phone_number_id.clone(),
                    account: "another account".into(),
                }
            } else {
                StoreError::Postgres(e)
            }
        })?;
    }
    for (i, p) in account.people.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_people (account, id, position, name, role, password_hash,
                 queues, disabled)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &slug,
                &p.id.0,
                &(i as i32),
                &p.name,
                &p.role.to_string(),
                &p.password_hash.as_phc(),
                &to_json(&p.queues),
                &p.disabled,
            ],
        )?;
    }
    for (i, k) in account.api_keys.iter().enumerate() {
        tx.execute(
            "INSERT INTO account_api_keys (account, id, position, name, role, hash, created_at,
                 created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &slug,
                &k.id,
                &(i as i32),
                &k.name,
                &k.role.to_string(),
                &k.hash,
                &k.created_at,
                &k.created_by,
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::tests::account;

    #[test]
    fn an_account_comes_back_as_it_was_stored_and_stays_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        let mut acme = account("acme", &["1001", "1002"]);
        acme.access_token = Some(SealedToken::from_bytes((0..60).collect()));
        let zed = account("zed", &["2001"]);
        {
            let mut store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.accounts().unwrap(), vec![]);
            store.create_account(&zed).unwrap();
            store.create_account(&acme).unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        // By slug, each with its queues, numbers and people in the order given.
        assert_eq!(store.accounts().unwrap(), vec![acme, zed]);
    }

    #[test]
    fn a_refused_account_leaves_nothing_behind() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let acme = account("acme", &["1001", "1002"]);
        store.create_account(&acme).unwrap();
        // The same slug again.
        let again = account("acme", &["1001"]);
        assert!(matches!(
            store.create_account(&again),
            Err(StoreError::AccountExists(s)) if s == "acme"
        ));
        // A number acme has: refused naming both, and none of the new account is written.
        let rival = account("rival", &["4001", "1002"]);
        match store.create_account(&rival) {
            Err(StoreError::NumberTaken { number, account }) => {
                assert_eq!((number.as_str(), account.as_str()), ("1002", "acme"));
            }
            other => panic!("expected NumberTaken, got {other:?}"),
        }
        // Breaking a rule: refused naming the field, before anything is written.
        let mut bad = account("bad", &["5001"]);
        bad.people[0].queues.push("billing".into());
        match store.create_account(&bad) {
            Err(StoreError::InvalidAccount(e)) => assert_eq!(e.field, "people[0].queues[2]"),
            other => panic!("expected InvalidAccount, got {other:?}"),
        }
        assert_eq!(store.accounts().unwrap(), vec![acme]);
        let numbers: i64 = store
            .conn
            .query_row("SELECT count(*) FROM account_numbers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(numbers, 2);
    }

    fn audit() -> AuditEntry {
        AuditEntry {
            id: 0,
            at: 1_000,
            actor: "sam".into(),
            action: "person.update".into(),
            target: "alice".into(),
            before: Some(serde_json::json!({"disabled": true})),
            after: Some(serde_json::json!({"disabled": false})),
        }
    }

    #[test]
    fn a_change_is_written_only_over_the_version_it_was_made_from() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let acme = account("acme", &["1001", "1002"]);
        store.create_account(&acme).unwrap();
        store.create_account(&account("zed", &["2001"])).unwrap();
        // Two changes made from version 1: the first is written, the second is stale.
        let mut first = acme.clone();
        first.people[1].disabled = false;
        first.queues[1].policy = QueuePolicy::Queue { max_wait_ms: 1_000 };
        first.numbers.remove(0);
        let mut second = acme.clone();
        second.name = "Too late".into();
        assert_eq!(store.replace_account(&first, &audit()).unwrap(), 2);
        assert!(matches!(
            store.replace_account(&second, &audit()),
            Err(StoreError::Stale(s)) if s == "acme"
        ));
        let stored = store.accounts().unwrap().remove(0);
        assert_eq!(
            stored,
            Account {
                version: 2,
                ..first.clone()
            }
        );
        // A number zed has, a broken rule, a slug nobody has: refused, nothing written.
        let mut taken = stored.clone();
        taken.numbers[0].phone_number_id = "2001".into();
        assert!(matches!(
            store.replace_account(&taken, &audit()),
            Err(StoreError::NumberTaken { account, .. }) if account == "zed"
        ));
        let mut broken = stored.clone();
        broken.default_queue = "nowhere".into();
        assert!(matches!(
            store.replace_account(&broken, &audit()),
            Err(StoreError::InvalidAccount(e)) if e.field == "default_queue"
        ));
        let mut gone = stored.clone();
        gone.slug = AccountSlug::try_from("gone".to_owned()).unwrap();
        assert!(matches!(
            store.replace_account(&gone, &audit()),
            Err(StoreError::NoAccount(s)) if s == "gone"
        ));
        assert_eq!(store.accounts().unwrap().remove(0), stored);
        // The number acme gave up is free for another account.
        store.create_account(&account("new", &["1001"])).unwrap();
        // The one change written is in acme's audit log, with its before and after.
        let log = store.audit_log("acme", None, 10).unwrap();
        assert_eq!(
            log,
            [AuditEntry {
                id: log[0].id,
                ..audit()
            }]
        );
        store
            .append_audit(
                "acme",
                &AuditEntry {
                    action: "queue.update".into(),
                    ..audit()
                },
            )
            .unwrap();
        let log = store.audit_log("acme", None, 10).unwrap();
        assert_eq!(
            log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["queue.update", "person.update"]
        );
        assert_eq!(
            store.audit_log("acme", Some(log[0].id), 10).unwrap().len(),
            1
        );
        assert!(store.audit_log("zed", None, 10).unwrap().is_empty());
    }
}
