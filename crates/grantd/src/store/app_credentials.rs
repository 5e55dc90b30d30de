//! An integration's app credential beyond the client secret (certificate + sealed private key,
//! the secret's recorded expiry, the last expiry warning), kept in `integration_app_credentials`
//! beside the integration row and joined onto `Integration::app_credential` on read.
//! `AppCredentialBackend` is the backend seam; its SQL lives next to each backend
//! (`sqlite/app_credentials.rs`, `postgres/app_credentials.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Error, Store, micros, now};
use crate::crypto::Sealed;
use crate::model::{AppCredential, AssertionAlg, ClientCertificate, Integration, PrivateKeyPem};

const CTX_PRIVATE_KEY: &str = "private_key";

/// A row of `integration_app_credentials`.
#[derive(Debug)]
pub(super) struct AppCredentialRow {
    pub integration_id: i64,
    pub certificate_pem: Option<String>,
    pub certificate_thumbprint: Option<String>,
    pub certificate_not_after: Option<DateTime<Utc>>,
    pub private_key: Option<Sealed>,
    pub assertion_alg: Option<String>,
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub expiry_warned_days: Option<i32>,
}

#[async_trait]
pub(super) trait AppCredentialBackend: Send + Sync {
    async fn get_app_credential(
        &self,
        integration_id: i64,
    ) -> Result<Option<AppCredentialRow>, Error>;
    async fn list_app_credentials(&self) -> Result<Vec<AppCredentialRow>, Error>;
    /// Inserts or replaces the row (`expiry_warned_days` included).
    async fn put_app_credential(
        &self,
        row: &AppCredentialRow,
        at: DateTime<Utc>,
    ) -> Result<(), Error>;
    async fn delete_app_credential(&self, integration_id: i64) -> Result<(), Error>;
    /// Compare-and-swap of `expiry_warned_days` from `expected` to `days`; true if this call
    /// changed it (so one instance gives each warning).
    async fn swap_expiry_warned(
        &self,
        integration_id: i64,
        expected: Option<i32>,
        days: Option<i32>,
        at: DateTime<Utc>,
    ) -> Result<bool, Error>;
}

impl Store {
    fn open_app_credential(&self, r: AppCredentialRow) -> Result<AppCredential, Error> {
        let certificate = match (
            r.certificate_pem,
            r.certificate_thumbprint,
            r.certificate_not_after,
            r.private_key,
        ) {
            (Some(pem), Some(thumbprint), Some(not_after), Some(key)) => Some(ClientCertificate {
                certificate_pem: pem,
                thumbprint_s256: thumbprint,
                not_after,
                private_key: PrivateKeyPem::new(self.open_string(CTX_PRIVATE_KEY, &key)?),
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
        if let Some(r) = self
            .backend
            .app_credentials()
            .get_app_credential(i.id)
            .await?
        {
            i.app_credential = self.open_app_credential(r)?;
        }
        Ok(i)
    }

    /// Fills `app_credential` on every integration of a list with one query.
    pub(super) async fn with_app_credentials(
        &self,
        mut list: Vec<Integration>,
    ) -> Result<Vec<Integration>, Error> {
        let rows = self
            .backend
            .app_credentials()
            .list_app_credentials()
            .await?;
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
        let b = self.backend.app_credentials();
        // Cached integrations carry their app credential; credential changes are rare, so the
        // whole cache goes rather than a lookup of the integration's key.
        self.cache.clear();
        if cred.is_empty() {
            return b.delete_app_credential(integration_id).await;
        }
        let c = cred.certificate.as_ref();
        let row = AppCredentialRow {
            integration_id,
            certificate_pem: c.map(|c| c.certificate_pem.clone()),
            certificate_thumbprint: c.map(|c| c.thumbprint_s256.clone()),
            certificate_not_after: c.map(|c| micros(c.not_after)),
            private_key: c
                .map(|c| self.seal(CTX_PRIVATE_KEY, c.private_key.expose_secret().as_bytes())),
            assertion_alg: c.map(|c| c.alg.as_str().to_owned()),
            secret_expires_at: cred.secret_expires_at.map(micros),
            expiry_warned_days: cred.expiry_warned_days,
        };
        let done = b.put_app_credential(&row, now()).await;
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
        self.backend
            .app_credentials()
            .swap_expiry_warned(integration_id, expected, days, now())
            .await
    }
}
