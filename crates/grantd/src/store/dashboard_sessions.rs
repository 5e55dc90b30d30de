//! Dashboard sign-in sessions: one row per signed-in browser, keyed by the SHA-256 of the
//! session id (the id itself is only in the cookie). Written once for both databases; no cache,
//! so a sign-out or a refused key check is seen by every instance on its next request.

use chrono::{DateTime, Utc};

use super::db::{Ts, execute, fetch};
use super::{Error, Store, micros};

impl Store {
    /// Records a new session.
    pub async fn insert_dashboard_session(
        &self,
        id_hash: &str,
        key_check: &str,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        execute!(
            &self.db,
            "INSERT INTO dashboard_sessions (id_hash, key_check, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
            id_hash,
            key_check,
            Ts(micros(created_at)),
            Ts(micros(expires_at)),
        )?;
        Ok(())
    }

    /// The `key_check` of the session whose id hashes to `id_hash`, if it exists and has not
    /// expired at `now`.
    pub async fn dashboard_session_key_check(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Error> {
        fetch!(
            &self.db,
            scalar fetch_optional::<String>(
                "SELECT key_check FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > $2",
                id_hash,
                Ts(micros(now)),
            )
        )
    }

    /// Ends one session; `false` if there was none.
    pub async fn delete_dashboard_session(&self, id_hash: &str) -> Result<bool, Error> {
        Ok(execute!(
            &self.db,
            "DELETE FROM dashboard_sessions WHERE id_hash = $1",
            id_hash
        )? > 0)
    }
}
