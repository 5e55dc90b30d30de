//! Connections (`/connections`): list, fetch with fresh credentials (refreshed by grantd when
//! due, or on demand), import, patch, delete, and their metadata.

use http::Method;
use serde_json::Value;

use crate::GrantdClient;
use crate::error::Error;
use crate::types::{
    Connection, ConnectionIds, ConnectionList, ConnectionListItem, GetConnectionQuery,
    ImportConnection, ListConnectionsQuery, MetadataRequest, PatchConnection,
    ProviderConfigKeyQuery, Success,
};

/// Options of [`GrantdClient::get_connection_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GetConnection {
    /// Refresh the access token now, even if it is not due (`force_refresh=true`).
    pub force_refresh: bool,
    /// Include the refresh token in the credentials (`refresh_token=true`).
    pub refresh_token: bool,
}

impl GetConnection {
    pub fn force_refresh(mut self, yes: bool) -> Self {
        self.force_refresh = yes;
        self
    }

    pub fn refresh_token(mut self, yes: bool) -> Self {
        self.refresh_token = yes;
        self
    }
}

fn ids(connection_ids: &[&str]) -> ConnectionIds {
    match connection_ids {
        [one] => ConnectionIds::One((*one).to_owned()),
        many => ConnectionIds::Many(many.iter().map(|s| (*s).to_owned()).collect()),
    }
}

impl GrantdClient {
    /// `GET /connections`: newest first, filtered by the query (end user, integration…).
    pub async fn list_connections(
        &self,
        query: &ListConnectionsQuery,
    ) -> Result<Vec<ConnectionListItem>, Error> {
        let l: ConnectionList = self
            .call(
                "list connections",
                Method::GET,
                self.url(&["connections"]),
                Some(query),
                None,
            )
            .await?;
        Ok(l.connections)
    }

    /// `GET /connections/{id}`: the connection with fresh credentials (grantd refreshes them
    /// when they are about to expire).
    pub async fn get_connection(
        &self,
        provider_config_key: &str,
        connection_id: &str,
    ) -> Result<Connection, Error> {
        self.get_connection_with(provider_config_key, connection_id, GetConnection::default())
            .await
    }

    /// `GET /connections/{id}` with options.
    pub async fn get_connection_with(
        &self,
        provider_config_key: &str,
        connection_id: &str,
        opts: GetConnection,
    ) -> Result<Connection, Error> {
        let flag = |b: bool| Some(if b { "true" } else { "false" }.to_owned());
        let q = GetConnectionQuery {
            provider_config_key: Some(provider_config_key.to_owned()),
            force_refresh: flag(opts.force_refresh),
            refresh_token: flag(opts.refresh_token),
            ..Default::default()
        };
        self.call(
            "get connection",
            Method::GET,
            self.url(&["connections", connection_id]),
            Some(&q),
            None,
        )
        .await
    }

    /// Refreshes the connection's access token now and returns the connection.
    pub async fn refresh_connection(
        &self,
        provider_config_key: &str,
        connection_id: &str,
    ) -> Result<Connection, Error> {
        self.get_connection_with(
            provider_config_key,
            connection_id,
            GetConnection::default().force_refresh(true),
        )
        .await
    }

    /// A fresh access token for the connection (Graph's, for Microsoft providers).
    pub async fn access_token(
        &self,
        provider_config_key: &str,
        connection_id: &str,
    ) -> Result<String, Error> {
        let c = self
            .get_connection(provider_config_key, connection_id)
            .await?;
        c.credentials
            .map(|c| c.access_token().to_owned())
            .ok_or_else(|| Error::InvalidInput("the connection has no credentials".into()))
    }

    /// `POST /connections`: imports a connection with credentials obtained elsewhere.
    pub async fn import_connection(&self, body: &ImportConnection) -> Result<Connection, Error> {
        self.call(
            "import connection",
            Method::POST,
            self.url(&["connections"]),
            None,
            Some(body),
        )
        .await
    }

    /// `PATCH /connections/{id}`: end user, tags, webhook URL override.
    pub async fn patch_connection(
        &self,
        provider_config_key: &str,
        connection_id: &str,
        body: &PatchConnection,
    ) -> Result<(), Error> {
        let q = ProviderConfigKeyQuery {
            provider_config_key: Some(provider_config_key.to_owned()),
        };
        let _: Success = self
            .call(
                "patch connection",
                Method::PATCH,
                self.url(&["connections", connection_id]),
                Some(&q),
                Some(body),
            )
            .await?;
        Ok(())
    }

    /// `DELETE /connections/{id}`.
    pub async fn delete_connection(
        &self,
        provider_config_key: &str,
        connection_id: &str,
    ) -> Result<(), Error> {
        let q = ProviderConfigKeyQuery {
            provider_config_key: Some(provider_config_key.to_owned()),
        };
        let _: Success = self
            .call(
                "delete connection",
                Method::DELETE,
                self.url(&["connections", connection_id]),
                Some(&q),
                None,
            )
            .await?;
        Ok(())
    }

    /// `POST /connections/metadata`: replaces the metadata of every connection named.
    pub async fn set_metadata(
        &self,
        provider_config_key: &str,
        connection_ids: &[&str],
        metadata: &Value,
    ) -> Result<(), Error> {
        self.metadata(Method::POST, provider_config_key, connection_ids, metadata)
            .await
    }

    /// `PATCH /connections/metadata`: merges `metadata`'s top-level keys into each
    /// connection's metadata.
    pub async fn update_metadata(
        &self,
        provider_config_key: &str,
        connection_ids: &[&str],
        metadata: &Value,
    ) -> Result<(), Error> {
        self.metadata(Method::PATCH, provider_config_key, connection_ids, metadata)
            .await
    }

    async fn metadata(
        &self,
        method: Method,
        provider_config_key: &str,
        connection_ids: &[&str],
        metadata: &Value,
    ) -> Result<(), Error> {
        if connection_ids.is_empty() {
            return Err(Error::InvalidInput("no connection id given".into()));
        }
        let body = MetadataRequest {
            connection_id: ids(connection_ids),
            provider_config_key: provider_config_key.to_owned(),
            metadata: metadata.clone(),
        };
        // The answer echoes the request.
        self.call_raw(
            method,
            self.url(&["connections", "metadata"]),
            &http::HeaderMap::new(),
            None,
            Some(&body),
        )
        .await?;
        Ok(())
    }
}
