//! An integration's app credential beyond the client secret (certificate + sealed private key,
//! the secret's recorded expiry, the last expiry warning), kept in `integration_app_credentials`
//! beside the integration row and joined onto `Integration::app_credential` on read.
//! Its SQL (written once for both databases, see `db.rs`) sits here, below the row type.

use chrono::{DateTime, Utc};

use super::db::{Begin, Db, Ts, execute, fetch, on_pool};
use super::{Error, Store, micros, now};
use crate::crypto::Sealed;
use crate::model::{AppCredential, AssertionAlg, ClientCertificate, Integration, PrivateKeyPem};

const CTX_PRIVATE_KEY: &str = "private_key";

/// A row of `integration_app_credentials`.
#[derive(Debug, sqlx::FromRow)]
struct AppCredentialRow {
    integration_id: i64,
    certificate_pem: Option<String>,
    certificate_thumbprint: Option<String>,
    certificate_not_after: Option<DateTime<Utc>>,
    private_key: Option<Vec<u8>>,
    private_key_key_id: Option<String>,
    assertion_alg: Option<String>,
    secret_expires_at: Option<DateTime<Utc>>,
    expiry_warned_days: Option<i32>,
}

const SELECT: &str = "SELECT integration_id, certificate_pem, certificate_thumbprint, \
     certificate_not_after, private_key, private_key_key_id, assertion_alg, secret_expires_at, \
     expiry_warned_days FROM integration_app_credentials";

impl Db {
    async fn get_app_credential(
        &self,
        integration_id: i64,
    ) -> Result<Option<AppCredentialRow>, Error> {
        let sql = format!("{SELECT} WHERE integration_id = $1");
        fetch!(
            self,
            fetch_optional::<AppCredentialRow>(&sql, integration_id,)
        )
    }

    async fn list_app_credentials(&self) -> Result<Vec<AppCredentialRow>, Error> {
        fetch!(self, fetch_all::<AppCredentialRow>(SELECT))
    }

    /// Inserts or replaces the row (`expiry_warned_days` included), touching the integration
    /// so caches keyed on its row (and their change notifications) see the change.
    async fn put_app_credential(
        &self,
        r: &AppCredentialRow,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE integrations SET updated_at = $1 WHERE id = $2")
                .bind(Ts(at))
                .bind(r.integration_id)
                .execute(&mut *tx)
                .await
                .map_err(Error::Database)?;
            sqlx::query(
                "INSERT INTO integration_app_credentials (integration_id, certificate_pem, \
                 certificate_thumbprint, certificate_not_after, private_key, private_key_key_id, \
                 assertion_alg, secret_expires_at, expiry_warned_days, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (integration_id) DO UPDATE SET \
                 certificate_pem = excluded.certificate_pem, \
                 certificate_thumbprint = excluded.certificate_thumbprint, \
                 certificate_not_after = excluded.certificate_not_after, \
                 private_key = excluded.private_key, private_key_key_id = excluded.private_key_key_id, \
                 assertion_alg = excluded.assertion_alg, secret_expires_at = excluded.secret_expires_at, \
                 expiry_warned_days = excluded.expiry_warned_days, updated_at = excluded.updated_at",
            )
            .bind(r.integration_id)
            .bind(&r.certificate_pem)
            .bind(&r.certificate_thumbprint)
            .bind(Ts::opt(r.certificate_not_after))
            .bind(&r.private_key)
            .bind(&r.private_key_key_id)
            .bind(&r.assertion_alg)
            .bind(Ts::opt(r.secret_expires_at))
            .bind(r.expiry_warned_days)
            .bind(Ts(at))
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?;
            tx.commit().await.map_err(Error::Database)
        })
    }

    async fn delete_app_credential(&self, integration_id: i64) -> Result<(), Error> {
        execute!(
            self,
            "DELETE FROM integration_app_credentials WHERE integration_id = $1",
            integration_id,
        )?;
        Ok(())
    }

    /// Compare-and-swap of `expiry_warned_days` from `expected` to `days`; true if this call
    /// changed it (so one instance gives each warning).
    async fn swap_expiry_warned(
        &self,
        integration_id: i64,
        expected: Option<i32>,
        days: Option<i32>,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        execute!(
            self,
            "UPDATE integration_app_credentials SET expiry_warned_days = $1, updated_at = $2 \
             WHERE integration_id = $3 AND expiry_warned_days IS NOT DISTINCT FROM $4",
            days,
            Ts(at),
            integration_id,
            expected,
        )
        .map(|n| n == 1)
    }
}

impl Store {
    fn open_app_credential(&self, r: AppCredentialRow) -> Result<AppCredential, Error> {
        let certificate = match (
            r.certificate_pem,
            r.certificate_thumbprint,
            r.certificate_not_after,
            r.private_key.zip(r.private_key_key_id),
        ) {
            (Some(pem), Some(thumbprint), Some(not_after), Some(key)) => Some(ClientCertificate {
                certificate_pem: pem,
                thumbprint_s256: thumbprint,
                not_after,
                private_key: PrivateKeyPem::new(self.open_string(
                    CTX_PRIVATE_KEY,
                    &Sealed {
                        bytes: key.0,
                        key_id: key.1,
                    },
                )?),
                alg: r
                    .assertion_alg
                    .as_deref()
                    .and_then(AssertionAlg::parse)
                    .unwrap_or_default(),
            }),
            (None, _, _, None) => None,
            _ => {
                return Err(Error::Corrupt(
                    "integration certificate is incomplete".into(),
                ));
            }
        };
        Ok(AppCredential {
            certificate,
            secret_expires_at: r.secret_expires_at,
            expiry_warned_days: r.expiry_warned_days,
        })
    }

    /// Fills `integration.app_credential` from its row (empty when there is none).
    pub(super) async fn with_app_credential(
        &self,
        mut i: Integration,
    ) -> Result<Integration, Error> {
        if let Some(r) = self.db.get_app_credential(i.id).await? {
            i.app_credential = self.open_app_credential(r)?;
        }
        Ok(i)
    }

    /// Fills `app_credential` on every integration of a list with one query.
    pub(super) async fn with_app_credentials(
        &self,
        mut list: Vec<Integration>,
    ) -> Result<Vec<Integration>, Error> {
        let rows = self.db.list_app_credentials().await?;
        for r in rows {
            let id = r.integration_id;
            if let Some(i) = list.iter_mut().find(|i| i.id == id) {
                i.app_credential = self.open_app_credential(r)?;
            }
        }
        Ok(list)
    }

    /// Replaces the integration's app credential (the private key is sealed); an empty one
    /// removes the row. The expiry warning state restarts when the credential changes.
    pub async fn set_app_credential(
        &self,
        integration_id: i64,
        cred: &AppCredential,
    ) -> Result<(), Error> {
        // Cached integrations carry their app credential; credential changes are rare, so the
        // whole cache goes rather than a lookup of the integration's key.
        self.cache.clear();
        if cred.is_empty() {
            return self.db.delete_app_credential(integration_id).await;
        }
        let c = cred.certificate.as_ref();
        let sealed =
            c.map(|c| self.seal(CTX_PRIVATE_KEY, c.private_key.expose_secret().as_bytes()));
        let row = AppCredentialRow {
            integration_id,
            certificate_pem: c.map(|c| c.certificate_pem.clone()),
            certificate_thumbprint: c.map(|c| c.thumbprint_s256.clone()),
            certificate_not_after: c.map(|c| micros(c.not_after)),
            private_key: sealed.as_ref().map(|s| s.bytes.clone()),
            private_key_key_id: sealed.map(|s| s.key_id),
            assertion_alg: c.map(|c| c.alg.as_str().to_owned()),
            secret_expires_at: cred.secret_expires_at.map(micros),
            expiry_warned_days: cred.expiry_warned_days,
        };
        let done = self.db.put_app_credential(&row, now()).await;
        self.cache.clear();
        done
    }

    /// Records that the expiry warning for `days` ahead was given, if the stored state is still
    /// `expected`; true when this caller made the change (and so should give the warning).
    pub async fn mark_expiry_warned(
        &self,
        integration_id: i64,
        expected: Option<i32>,
        days: Option<i32>,
    ) -> Result<bool, Error> {
        self.db
            .swap_expiry_warned(integration_id, expected, days, now())
            .await
    }
}
