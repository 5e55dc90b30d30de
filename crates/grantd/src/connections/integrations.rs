//! Integrations: create, read, update, delete — one implementation for every door (the API and
//! the dashboard), so each consequence of a change is applied whichever way it came in:
//! - new app credentials (client id, secret or certificate) clear the connections' "app
//!   misconfigured" state, so the next read tries again;
//! - a changed credential expiry restarts the expiry warnings (30/14/3 days).

use super::{Core, Error};
use crate::model::{
    AppCredential, ClientCertificate, Integration, NewIntegration, ProviderConfigKey,
};

impl Core {
    /// Ordered by creation time, oldest first.
    pub async fn list_integrations(&self) -> Result<Vec<Integration>, Error> {
        Ok(self.store.list_integrations().await?)
    }

    pub async fn get_integration(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<Option<Integration>, Error> {
        Ok(self.store.get_integration(key).await?)
    }

    /// Creates the integration with its app credential (certificate, secret expiry) if any.
    /// `Error::Store(Conflict)` when the key is taken.
    pub async fn create_integration(
        &self,
        new: NewIntegration,
        app_credential: AppCredential,
    ) -> Result<Integration, Error> {
        let mut created = self.store.create_integration(new).await?;
        if !app_credential.is_empty() {
            self.store
                .set_app_credential(created.id, &app_credential)
                .await?;
            created.app_credential = app_credential;
        }
        Ok(created)
    }

    /// Replaces the integration `key` with `new`, and its app credential with `app_credential`
    /// when given. `Ok(None)` when `key` does not exist.
    pub async fn update_integration(
        &self,
        key: &ProviderConfigKey,
        new: NewIntegration,
        app_credential: Option<AppCredential>,
    ) -> Result<Option<Integration>, Error> {
        let Some(cur) = self.store.get_integration(key).await? else {
            return Ok(None);
        };
        let credentials_changed = new.client_id != cur.client_id
            || !new.client_secret.ct_eq(cur.client_secret.expose_secret())
            || app_credential.as_ref().is_some_and(|ac| {
                thumbprint(&ac.certificate) != thumbprint(&cur.app_credential.certificate)
            });
        let Some(mut updated) = self.store.update_integration(key, new).await? else {
            return Ok(None);
        };
        if let Some(mut ac) = app_credential {
            // The same expiry keeps the warnings already given; a new one starts them over.
            ac.expiry_warned_days = if ac.expires_at() == cur.app_credential.expires_at() {
                cur.app_credential.expiry_warned_days
            } else {
                None
            };
            self.store.set_app_credential(updated.id, &ac).await?;
            updated.app_credential = ac;
        }
        if credentials_changed {
            self.app_credentials_updated(&updated.unique_key).await?;
        }
        Ok(Some(updated))
    }

    /// Deletes the integration and soft-deletes its connections; `false` if it did not exist.
    pub async fn delete_integration(&self, key: &ProviderConfigKey) -> Result<bool, Error> {
        Ok(self.store.delete_integration(key).await?)
    }
}

fn thumbprint(c: &Option<ClientCertificate>) -> Option<&str> {
    c.as_ref().map(|c| c.thumbprint_s256.as_str())
}
