//! Connect sessions (`/connect/sessions`): a short-lived token and link that lets one end user
//! connect an account through grantd's Connect UI, or reconnect an existing connection.

use http::Method;

use crate::GrantdClient;
use crate::error::Error;
use crate::types::{ConnectSessionCreated, CreateConnectSession, Data, ReconnectSession};

impl GrantdClient {
    /// `POST /connect/sessions`: a token and `connect_link` (valid 30 minutes) for the end user.
    pub async fn create_connect_session(
        &self,
        body: &CreateConnectSession,
    ) -> Result<ConnectSessionCreated, Error> {
        let d: Data<ConnectSessionCreated> = self
            .call(
                "create connect session",
                Method::POST,
                self.url(&["connect", "sessions"]),
                None,
                Some(body),
            )
            .await?;
        Ok(d.data)
    }

    /// `POST /connect/sessions/reconnect`: a session that re-authorizes an existing connection.
    pub async fn create_reconnect_session(
        &self,
        body: &ReconnectSession,
    ) -> Result<ConnectSessionCreated, Error> {
        let d: Data<ConnectSessionCreated> = self
            .call(
                "create reconnect session",
                Method::POST,
                self.url(&["connect", "sessions", "reconnect"]),
                None,
                Some(body),
            )
            .await?;
        Ok(d.data)
    }
}
