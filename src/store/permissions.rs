//! Users' call permissions (issue 25, reference §4.6): what each user last told each business
//! number, so that a business-initiated call is placed only to a user who allows it and a
//! request is not sent to one who just refused. One row per (business number, user), written
//! over on every change ([`PermissionStore::put_permission`]).
//!
//! The row is switchboard's memory of what Meta reported, never the authority: Meta sends no
//! webhook when a temporary permission expires, nor (reliably) when it is revoked, so a caller
//! that is about to call still asks `GET /{phone-number-id}/call_permissions`; the row says
//! whether asking is worth it and what to show an agent meanwhile.

use rusqlite::{params, OptionalExtension};

use super::{PostgresStore, SqliteStore, StoreError};

/// The table (SQLite's migration 6).
pub(super) const SQLITE_SCHEMA: &str = "CREATE TABLE call_permissions (
        business_number TEXT NOT NULL,
        user_number     TEXT NOT NULL,
        status          TEXT NOT NULL,
        permanent       INTEGER NOT NULL DEFAULT 0,
        expires_at      INTEGER,
        source          TEXT,
        requested_by    TEXT,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (business_number, user_number)
    ) WITHOUT ROWID;";

/// PostgreSQL's migration 6: the same.
pub(super) const POSTGRES_SCHEMA: &str = "CREATE TABLE call_permissions (
        business_number TEXT NOT NULL,
        user_number     TEXT NOT NULL,
        status          TEXT NOT NULL,
        permanent       BOOLEAN NOT NULL DEFAULT FALSE,
        expires_at      BIGINT,
        source          TEXT,
        requested_by    TEXT,
        updated_at      BIGINT NOT NULL,
        PRIMARY KEY (business_number, user_number)
    );";

/// Where a user's permission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionState {
    /// The user allowed calls (until `expires_at`, or for good when `permanent`).
    Granted,
    /// The user declined, or Meta revoked the permission.
    Rejected,
    /// A request was sent and not answered yet.
    Requested,
}

impl PermissionState {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionState::Granted => "granted",
            PermissionState::Rejected => "rejected",
            PermissionState::Requested => "requested",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<PermissionState> {
        [
            PermissionState::Granted,
            PermissionState::Rejected,
            PermissionState::Requested,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// One user's permission towards one business number. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PermissionRow {
    /// The business number's `phone_number_id`.
    pub business_number: String,
    /// The user's WhatsApp number.
    pub user_number: String,
    /// Granted, rejected or requested.
    pub status: PermissionState,
    /// A permission that does not expire.
    pub permanent: bool,
    /// When a temporary permission ends.
    pub expires_at: Option<i64>,
    /// Meta's `response_source` (`user_action`, `automatic`) of the reply that set it.
    pub source: Option<String>,
    /// Who asked (an agent's id, or an API client), for a request.
    pub requested_by: Option<String>,
    /// When the row was last written.
    pub updated_at: i64,
}

/// The permissions' table.
pub trait PermissionStore {
    /// Writes `row` over the one of its business number and user, if any.
    fn put_permission(&mut self, row: &PermissionRow) -> Result<(), StoreError>;

    /// The row of `business_number` and `user`, if one was written.
    fn permission(
        &mut self,
        business_number: &str,
        user: &str,
    ) -> Result<Option<PermissionRow>, StoreError>;
}

const UPSERT: &str = "INSERT INTO call_permissions (business_number, user_number, status, \
     permanent, expires_at, source, requested_by, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (business_number, user_number) DO UPDATE SET status = excluded.status, \
     permanent = excluded.permanent, expires_at = excluded.expires_at, source = excluded.source, \
     requested_by = excluded.requested_by, updated_at = excluded.updated_at";

const SELECT: &str = "SELECT business_number, user_number, status, permanent, expires_at, \
     source, requested_by, updated_at FROM call_permissions \
     WHERE business_number = $1 AND user_number = $2";

fn refuse_empty(row: &PermissionRow) -> Result<(), StoreError> {
    if row.business_number.is_empty() || row.user_number.is_empty() {
        return Err(StoreError::InvalidRecord {
            call_id: String::new(),
            reason: "a call permission needs a business number and a user",
        });
    }
    Ok(())
}

fn state_of(user: &str, status: &str) -> Result<PermissionState, StoreError> {
    PermissionState::parse(status).ok_or_else(|| StoreError::Corrupt {
        call_id: format!(
            "permission of {}",
            crate::whatsapp::model::mask_number(user)
        ),
        column: "status",
        reason: format!("unknown permission status {status:?}"),
    })
}

impl PermissionStore for SqliteStore {
    fn put_permission(&mut self, row: &PermissionRow) -> Result<(), StoreError> {
        refuse_empty(row)?;
        self.conn.prepare_cached(UPSERT)?.execute(params![
            row.business_number,
            row.user_number,
            row.status.as_str(),
            row.permanent,
            row.expires_at,
            row.source,
            row.requested_by,
            row.updated_at,
        ])?;
        Ok(())
    }

    fn permission(
        &mut self,
        business_number: &str,
        user: &str,
    ) -> Result<Option<PermissionRow>, StoreError> {
        let found = self
            .conn
            .prepare_cached(SELECT)?
            .query_row(params![business_number, user], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .optional()?;
        found
            .map(|(b, u, status, permanent, expires_at, source, by, at)| {
                Ok(PermissionRow {
                    status: state_of(&u, &status)?,
                    business_number: b,
                    user_number: u,
                    permanent,
                    expires_at,
                    source,
                    requested_by: by,
                    updated_at: at,
                })
            })
            .transpose()
    }
}

impl PermissionStore for PostgresStore {
    fn put_permission(&mut self, row: &PermissionRow) -> Result<(), StoreError> {
        refuse_empty(row)?;
        self.client()?.execute(
            UPSERT,
            &[
                &row.business_number,
                &row.user_number,
                &row.status.as_str(),
                &row.permanent,
                &row.expires_at,
                &row.source,
                &row.requested_by,
                &row.updated_at,
            ],
        )?;
        Ok(())
    }

    fn permission(
        &mut self,
        business_number: &str,
        user: &str,
    ) -> Result<Option<PermissionRow>, StoreError> {
        let Some(r) = self
            .client()?
            .query_opt(SELECT, &[&business_number, &user])?
        else {
            return Ok(None);
        };
        let user_number: String = r.try_get(1)?;
        let status: String = r.try_get(2)?;
        Ok(Some(PermissionRow {
            business_number: r.try_get(0)?,
            status: state_of(&user_number, &status)?,
            user_number,
            permanent: r.try_get(3)?,
            expires_at: r.try_get(4)?,
            source: r.try_get(5)?,
            requested_by: r.try_get(6)?,
            updated_at: r.try_get(7)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: PermissionState, permanent: bool, expires_at: Option<i64>) -> PermissionRow {
        PermissionRow {
            business_number: "42".into(),
            user_number: "15551234567".into(),
            status,
            permanent,
            expires_at,
            source: Some("user_action".into()),
            requested_by: None,
            updated_at: 1_000,
        }
    }

    #[test]
    fn sqlite_round_trip_and_overwrite() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        assert_eq!(s.permission("42", "15551234567").unwrap(), None);
        let mut asked = row(PermissionState::Requested, false, None);
        asked.requested_by = Some("agent-7".into());
        asked.source = None;
        s.put_permission(&asked).unwrap();
        assert_eq!(s.permission("42", "15551234567").unwrap(), Some(asked));
        let granted = row(PermissionState::Granted, false, Some(1_745_434_800_000));
        s.put_permission(&granted).unwrap();
        assert_eq!(s.permission("42", "15551234567").unwrap(), Some(granted));
        // Another number's row is its own.
        assert_eq!(s.permission("43", "15551234567").unwrap(), None);
        let e = s
            .put_permission(&PermissionRow {
                user_number: String::new(),
                ..row(PermissionState::Granted, true, None)
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidRecord { .. }), "{e}");
    }
}
