//! Dashboard sign-in sessions, held server-side (issue 14, item 10): signing in records a session,
//! signing out deletes it, and every dashboard request looks it up, so a copied cookie stops
//! working the moment its session ends, on every instance (the row is in the shared database;
//! there is no per-instance cache to invalidate).
//!
//! The cookie value is a random 256-bit id (64 hex). The store keeps its SHA-256 and a key
//! check: HMAC-SHA-256 of the id under a key derived from the secret key and the admin login.
//! An instance started with another secret key or admin password computes another check, so
//! changing either ends every session; the mismatching row is deleted when it is presented, so
//! an instance still running the old key stops accepting it too. Expiry is absolute: 12 hours
//! after sign-in.

use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Core, Error};

/// How long a dashboard session lasts after sign-in.
pub const DASHBOARD_SESSION_SECS: i64 = 12 * 3600;

/// A session id: 64 lowercase hex digits.
fn is_well_formed(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Core {
    /// The key dashboard sessions and their CSRF tokens are bound to: derived from the secret key
    /// and the admin login, so changing any of them signs every browser out.
    pub fn dashboard_key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"grantd dashboard session v2\0");
        h.update(self.config.secret_key.expose_secret().as_bytes());
        h.update(b"\0");
        if let Some(a) = &self.config.admin {
            h.update(a.user.as_bytes());
            h.update(b"\0");
            h.update(a.password.expose_secret().as_bytes());
        }
        h.finalize().into()
    }

    /// HMAC-SHA-256 (hex) of `purpose` and `msg` under the dashboard key.
    pub fn dashboard_mac(&self, purpose: &str, msg: &str) -> String {
        let mut m =
            Hmac::<Sha256>::new_from_slice(&self.dashboard_key()).expect("HMAC takes any key");
        m.update(purpose.as_bytes());
        m.update(b"\0");
        m.update(msg.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Records a new session and returns its id (the cookie value).
    pub async fn start_dashboard_session(&self) -> Result<String, Error> {
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        let id = hex::encode(id);
        let now = self.clock.now();
        self.store
            .insert_dashboard_session(
                &hash_id(&id),
                &self.dashboard_mac("session", &id),
                now,
                now + TimeDelta::seconds(DASHBOARD_SESSION_SECS),
            )
            .await?;
        Ok(id)
    }

    /// Whether `id` names a live session made under this instance's dashboard key. A session
    /// made under another key is deleted (the key changed: it is over everywhere).
    pub async fn dashboard_session_valid(&self, id: &str) -> Result<bool, Error> {
        if !is_well_formed(id) {
            return Ok(false);
        }
        let id_hash = hash_id(id);
        let Some(stored) = self
            .store
            .dashboard_session_key_check(&id_hash, self.clock.now())
            .await?
        else {
            return Ok(false);
        };
        let expected = self.dashboard_mac("session", id);
        if bool::from(stored.as_bytes().ct_eq(expected.as_bytes())) {
            return Ok(true);
        }
        self.store.delete_dashboard_session(&id_hash).await?;
        Ok(false)
    }

    /// Ends the session `id` (sign-out).
    pub async fn end_dashboard_session(&self, id: &str) -> Result<(), Error> {
        if is_well_formed(id) {
            self.store.delete_dashboard_session(&hash_id(id)).await?;
        }
        Ok(())
    }
}
