//! Integrations (`/integrations`) and the provider catalog (`/providers`).

use http::Method;

use crate::GrantdClient;
use crate::error::Error;
use crate::types::{
    CreateIntegration, Data, Integration, IntegrationQuery, Provider, ProvidersQuery, Success,
    UpdateIntegration,
};

/// What [`GrantdClient::get_integration`] adds to the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Include {
    /// Nothing more.
    #[default]
    None,
    /// The OAuth app's credentials (`include=credentials`).
    Credentials,
    /// The incoming-webhook URL (`include=webhook`).
    Webhook,
}

impl GrantdClient {
    /// `GET /integrations`: every integration, without credentials.
    pub async fn list_integrations(&self) -> Result<Vec<Integration>, Error> {
        let d: Data<Vec<Integration>> = self
            .call(
                "list integrations",
                Method::GET,
                self.url(&["integrations"]),
                None,
                None,
            )
            .await?;
        Ok(d.data)
    }

    /// `GET /integrations/{key}`.
    pub async fn get_integration(&self, key: &str, include: Include) -> Result<Integration, Error> {
        let q = IntegrationQuery {
            include: match include {
                Include::None => None,
                Include::Credentials => Some("credentials".into()),
                Include::Webhook => Some("webhook".into()),
            },
        };
        let d: Data<Integration> = self
            .call(
                "get integration",
                Method::GET,
                self.url(&["integrations", key]),
                Some(&q),
                None,
            )
            .await?;
        Ok(d.data)
    }

    /// `POST /integrations`: registers an OAuth app for a provider.
    pub async fn create_integration(&self, body: &CreateIntegration) -> Result<Integration, Error> {
        let d: Data<Integration> = self
            .call(
                "create integration",
                Method::POST,
                self.url(&["integrations"]),
                None,
                Some(body),
            )
            .await?;
        Ok(d.data)
    }

    /// `PATCH /integrations/{key}`: renames it, or replaces its credentials, display name…
    pub async fn update_integration(
        &self,
        key: &str,
        body: &UpdateIntegration,
    ) -> Result<Integration, Error> {
        let d: Data<Integration> = self
            .call(
                "update integration",
                Method::PATCH,
                self.url(&["integrations", key]),
                None,
                Some(body),
            )
            .await?;
        Ok(d.data)
    }

    /// `DELETE /integrations/{key}` (its connections go with it).
    pub async fn delete_integration(&self, key: &str) -> Result<(), Error> {
        let _: Success = self
            .call(
                "delete integration",
                Method::DELETE,
                self.url(&["integrations", key]),
                None,
                None,
            )
            .await?;
        Ok(())
    }

    /// `GET /providers[?search=]`: the catalog grantd can connect to.
    pub async fn list_providers(&self, search: Option<&str>) -> Result<Vec<Provider>, Error> {
        let q = ProvidersQuery {
            search: search.map(str::to_owned),
        };
        let d: Data<Vec<Provider>> = self
            .call(
                "list providers",
                Method::GET,
                self.url(&["providers"]),
                Some(&q),
                None,
            )
            .await?;
        Ok(d.data)
    }

    /// `GET /providers/{name}`.
    pub async fn get_provider(&self, name: &str) -> Result<Provider, Error> {
        let d: Data<Provider> = self
            .call(
                "get provider",
                Method::GET,
                self.url(&["providers", name]),
                None,
                None,
            )
            .await?;
        Ok(d.data)
    }
}
