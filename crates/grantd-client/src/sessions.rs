//! Connect sessions (`/connect/sessions`): a short-lived token and link that lets one end user
//! connect an account through grantd's Connect UI, or reconnect an existing connection; and File
//! Picker sessions (`/picker/sessions`), which open grantd's hosted picker for one connection.

use http::Method;

use crate::GrantdClient;
use crate::error::Error;
use crate::types::{
    ConnectSessionCreated, CreateConnectSession, CreatePickerSession, Data, PickerSessionCreated,
    ReconnectSession,
};

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

impl GrantdClient {
    /// `POST /picker/sessions`: a short-lived session that opens grantd's hosted File Picker
    /// for one connection. Open its `url` with grantd's `/picker/sdk.js` from the page whose
    /// origin is `options.origin`; when the connection cannot open the picker yet, `ready` is
    /// `false` and `problem` says why (with a `reconnect_link` when reconnecting fixes it).
    pub async fn create_picker_session(
        &self,
        body: &CreatePickerSession,
    ) -> Result<PickerSessionCreated, Error> {
        let d: Data<PickerSessionCreated> = self
            .call(
                "create picker session",
                Method::POST,
                self.url(&["picker", "sessions"]),
                None,
                Some(body),
            )
            .await?;
        Ok(d.data)
    }
}
