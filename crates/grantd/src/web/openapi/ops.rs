//! The route list of `/openapi.json`: one `#[utoipa::path]` declaration per public (path,
//! method) the routers serve, with its tag, security, parameters, request body and answers as
//! `grantd-api` types. The functions are declarations only (never called): several routes share
//! one handler (the legacy `/connection…` forms, the proxy's methods), and an operation is
//! documented once per path and method. `every_route_is_documented` (in `openapi.rs`) checks
//! this list against the routers both ways; `tests/it/openapi.rs` checks live answers against it.
//!
//! Errors in Nango's envelope (400/401/404/429) are added to every operation by
//! `openapi::ErrorResponses`; only answers particular to an operation are listed here.

use grantd_api as wire;
use utoipa::ToSchema;

pub const INTEGRATIONS: &str = "Integrations";
pub const SESSIONS: &str = "Connect sessions";
pub const CONNECTIONS: &str = "Connections";
pub const PICKER: &str = "File picker";
pub const RECORDS: &str = "Records";
pub const SYNCS: &str = "Syncs";
pub const PROXY: &str = "Proxy";
pub const BROWSER: &str = "OAuth (browser)";
pub const OPERATIONS: &str = "Operations";

/// Deprecated `POST /connection`: the credentials flat at the top level. The answer echoes the
/// body with the `connection_id` used.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LegacyImport {
    provider_config_key: String,
    /// Default: a new UUID.
    connection_id: Option<String>,
    access_token: String,
    refresh_token: Option<String>,
    /// One of `expires_at` (ISO 8601), `expires_in` (seconds) or `no_expiration: true` is
    /// required.
    expires_at: Option<String>,
    expires_in: Option<i64>,
    no_expiration: Option<bool>,
    #[schema(value_type = Option<Object>)]
    connection_config: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// `POST /connections`: the `credentials` depend on the integration's auth mode.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ImportBody {
    /// A delegated (`OAUTH2`) integration: the tokens to import.
    Delegated(wire::ImportConnection<wire::ImportCredentials>),
    /// An app-only (`OAUTH2_CC`) integration: grantd obtains the token (give
    /// `connection_config.tenantId`).
    AppOnly(wire::ImportConnection<Option<wire::ImportCcCredentials>>),
}

/// A batch of Microsoft Graph change (or lifecycle) notifications.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NotificationBatch {
    value: Vec<Notification>,
}

/// One notification; grantd reads these fields (and ignores the rest).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Notification {
    #[serde(rename = "subscriptionId")]
    subscription_id: String,
    /// Checked against the secret grantd gave the subscription.
    #[serde(rename = "clientState")]
    client_state: Option<String>,
    /// `reauthorizationRequired`, `subscriptionRemoved` or `missed` (lifecycle notifications).
    #[serde(rename = "lifecycleEvent")]
    lifecycle_event: Option<String>,
}

/// `GET /health`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok`.
    result: String,
}

/// `GET /ready`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    /// `ready` or `unavailable`.
    result: String,
    /// `sqlite` or `postgres` (when ready).
    database: Option<String>,
    /// Why not (when unavailable).
    reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Integrations and providers

/// List integrations
#[utoipa::path(get, path = "/integrations", tag = INTEGRATIONS,
    security(("secretKey" = [])),
    responses((status = 200, description = "Every integration", body = wire::Data<Vec<wire::Integration>>)))]
pub fn list_integrations() {}

/// Create an integration
///
/// `provider`, `unique_key` and `credentials {type, client_id, client_secret, scopes}` (or a
/// certificate and private key instead of the secret).
#[utoipa::path(post, path = "/integrations", tag = INTEGRATIONS,
    security(("secretKey" = [])),
    request_body = wire::CreateIntegration,
    responses((status = 200, description = "The new integration", body = wire::Data<wire::Integration>)))]
pub fn create_integration() {}

/// Show an integration
///
/// `?include=credentials` (secret key only) adds the client secret; a connect session token
/// may read the integrations its session allows.
#[utoipa::path(get, path = "/integrations/{key}", tag = INTEGRATIONS,
    security(("secretKey" = []), ("connectSessionToken" = [])),
    params(("key" = String, Path, description = "The integration key"), wire::IntegrationQuery),
    responses(
        (status = 200, description = "The integration", body = wire::Data<wire::Integration>),
        (status = 403, description = "`include=credentials` with a connect session token", body = wire::ErrorResponse)))]
pub fn show_integration() {}

/// Update an integration
#[utoipa::path(patch, path = "/integrations/{key}", tag = INTEGRATIONS,
    security(("secretKey" = [])),
    params(("key" = String, Path, description = "The integration key")),
    request_body = wire::UpdateIntegration,
    responses((status = 200, description = "The integration as updated", body = wire::Data<wire::Integration>)))]
pub fn update_integration() {}

/// Delete an integration and its connections
#[utoipa::path(delete, path = "/integrations/{key}", tag = INTEGRATIONS,
    security(("secretKey" = [])),
    params(("key" = String, Path, description = "The integration key")),
    responses((status = 200, description = "Deleted", body = wire::Success)))]
pub fn delete_integration() {}

/// List the provider catalog
#[utoipa::path(get, path = "/providers", tag = INTEGRATIONS,
    security(("secretKey" = []), ("connectSessionToken" = [])),
    params(wire::ProvidersQuery),
    responses((status = 200, description = "The providers", body = wire::Data<Vec<wire::Provider>>)))]
pub fn list_providers() {}

/// Show one provider
#[utoipa::path(get, path = "/providers/{provider}", tag = INTEGRATIONS,
    security(("secretKey" = [])),
    params(("provider" = String, Path, description = "The catalog name, e.g. `one-drive`")),
    responses((status = 200, description = "The provider", body = wire::Data<wire::Provider>)))]
pub fn show_provider() {}

// ---------------------------------------------------------------------------------------------
// Connect sessions

/// Create a connect session
///
/// A token and `connect_link` (valid 30 minutes) with which one end user connects an account.
#[utoipa::path(post, path = "/connect/sessions", tag = SESSIONS,
    security(("secretKey" = [])),
    request_body = wire::CreateConnectSession,
    responses((status = 201, description = "The session", body = wire::Data<wire::ConnectSessionCreated>)))]
pub fn create_connect_session() {}

/// Create a reconnect session for an existing connection
#[utoipa::path(post, path = "/connect/sessions/reconnect", tag = SESSIONS,
    security(("secretKey" = [])),
    request_body = wire::ReconnectSession,
    responses((status = 201, description = "The session", body = wire::Data<wire::ConnectSessionCreated>)))]
pub fn create_reconnect_session() {}

/// Show the presented connect session
#[utoipa::path(get, path = "/connect/session", tag = SESSIONS,
    security(("connectSessionToken" = [])),
    responses((status = 200, description = "The session", body = wire::Data<wire::ConnectSessionInfo>)))]
pub fn show_connect_session() {}

/// Delete the presented connect session
#[utoipa::path(delete, path = "/connect/session", tag = SESSIONS,
    security(("connectSessionToken" = [])),
    responses((status = 204, description = "Deleted")))]
pub fn delete_connect_session() {}

// ---------------------------------------------------------------------------------------------
// File picker

/// Create a picker session for one connection
///
/// `problem` (with `ready: false`) says when the connection cannot open the picker yet, and
/// gives a `reconnect_link` when reconnecting fixes it.
#[utoipa::path(post, path = "/picker/sessions", tag = PICKER,
    security(("secretKey" = [])),
    request_body = wire::CreatePickerSession,
    responses((status = 201, description = "The session", body = wire::Data<wire::PickerSessionCreated>)))]
pub fn create_picker_session() {}

/// The hosted File Picker page
///
/// Frames Microsoft's File Picker v8 and posts `{type:'picked', items}` / `{type:'close'}` to the
/// session's origin.
#[utoipa::path(get, path = "/picker", tag = PICKER,
    params(("session_token" = String, Query, description = "A picker session token")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub fn picker_page() {}

/// A SharePoint token for the picker page
///
/// For grantd's own picker page (its `Origin` only): a token for one of the connection's
/// SharePoint hosts.
#[utoipa::path(post, path = "/picker/token", tag = PICKER,
    security(("pickerSessionToken" = [])),
    request_body = wire::PickerTokenRequest,
    responses(
        (status = 200, description = "The token", body = wire::Data<wire::PickerToken>),
        (status = 403, description = "Not grantd's origin, or not one of the connection's hosts", body = wire::ErrorResponse)))]
pub fn picker_token() {}

/// Record picked items
///
/// For grantd's own picker page: merges the items into the metadata selection when the session
/// asked for it, sends the `picker` webhook, and returns the items as the app receives them.
#[utoipa::path(post, path = "/picker/picked", tag = PICKER,
    security(("pickerSessionToken" = [])),
    request_body = wire::PickedRequest,
    responses(
        (status = 200, description = "The items", body = wire::Data<wire::PickedItems>),
        (status = 403, description = "Not grantd's origin", body = wire::ErrorResponse)))]
pub fn picker_picked() {}

/// The frontend helper
///
/// `grantdPicker.open({url})` → a Promise of the picked items.
#[utoipa::path(get, path = "/picker/sdk.js", tag = PICKER,
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)))]
pub fn picker_sdk() {}

// ---------------------------------------------------------------------------------------------
// Connections

/// List connections
///
/// `tags[<key>]=<value>` pairs filter by tag (every one must match).
#[utoipa::path(get, path = "/connections", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(wire::ListConnectionsQuery),
    responses((status = 200, description = "The connections", body = wire::ConnectionList)))]
pub fn list_connections() {}

/// Import a connection with existing credentials
#[utoipa::path(post, path = "/connections", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = ImportBody,
    responses((status = 201, description = "The connection", body = wire::Connection)))]
pub fn import_connection() {}

/// List connections (legacy path)
#[utoipa::path(get, path = "/connection", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(wire::ListConnectionsQuery),
    responses((status = 200, description = "The connections", body = wire::ConnectionList)))]
pub fn list_connections_legacy() {}

/// Import a connection (legacy flat body)
#[utoipa::path(post, path = "/connection", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = LegacyImport,
    responses((status = 201, description = "The body, with the connection id used", body = Object)))]
pub fn import_connection_legacy() {}

/// Replace metadata of connections
#[utoipa::path(post, path = "/connections/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = wire::MetadataRequest,
    responses((status = 201, description = "The request, echoed", body = wire::MetadataRequest)))]
pub fn set_metadata() {}

/// Merge metadata of connections
#[utoipa::path(patch, path = "/connections/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = wire::MetadataRequest,
    responses((status = 200, description = "The request, echoed", body = wire::MetadataRequest)))]
pub fn update_metadata() {}

/// Replace metadata (legacy path)
#[utoipa::path(post, path = "/connection/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = wire::MetadataRequest,
    responses((status = 201, description = "The request, echoed", body = wire::MetadataRequest)))]
pub fn set_metadata_legacy() {}

/// Merge metadata (legacy path)
#[utoipa::path(patch, path = "/connection/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    request_body = wire::MetadataRequest,
    responses((status = 200, description = "The request, echoed", body = wire::MetadataRequest)))]
pub fn update_metadata_legacy() {}

/// Show a connection with fresh credentials
///
/// The token is refreshed first when it expires within the refresh margin (or with
/// `force_refresh=true`).
#[utoipa::path(get, path = "/connections/{id}", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"), wire::GetConnectionQuery),
    responses(
        (status = 200, description = "The connection and its credentials", body = wire::Connection),
        (status = 424, description = "`connection_refresh_backoff`: a refresh failed recently; retried later", body = wire::ErrorResponse)))]
pub fn show_connection() {}

/// Update a connection's end user, tags or webhook override
#[utoipa::path(patch, path = "/connections/{id}", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"), wire::ProviderConfigKeyQuery),
    request_body = wire::PatchConnection,
    responses((status = 200, description = "Updated", body = wire::Success)))]
pub fn patch_connection() {}

/// Delete a connection
#[utoipa::path(delete, path = "/connections/{id}", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"), wire::ProviderConfigKeyQuery),
    responses((status = 200, description = "Deleted", body = wire::Success)))]
pub fn delete_connection() {}

/// Show a connection (legacy path)
#[utoipa::path(get, path = "/connection/{id}", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"), wire::GetConnectionQuery),
    responses(
        (status = 200, description = "The connection and its credentials", body = wire::Connection),
        (status = 424, description = "`connection_refresh_backoff`", body = wire::ErrorResponse)))]
pub fn show_connection_legacy() {}

/// Delete a connection (legacy path)
#[utoipa::path(delete, path = "/connection/{id}", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"), wire::ProviderConfigKeyQuery),
    responses((status = 200, description = "Deleted", body = wire::Success)))]
pub fn delete_connection_legacy() {}

/// Replace metadata (deprecated path)
///
/// The body is the metadata object; the integration is `?provider_config_key=` or the
/// `Provider-Config-Key` header.
#[utoipa::path(post, path = "/connection/{id}/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"),
        ("provider_config_key" = Option<String>, Query, description = "The integration (or the header)"),
        ("Provider-Config-Key" = Option<String>, Header, description = "The integration (or the query)")),
    request_body = Object,
    responses((status = 201, description = "The metadata, echoed", body = Object)))]
pub fn set_metadata_deprecated() {}

/// Merge metadata (deprecated path)
#[utoipa::path(patch, path = "/connection/{id}/metadata", tag = CONNECTIONS,
    security(("secretKey" = [])),
    params(("id" = String, Path, description = "The connection id"),
        ("provider_config_key" = Option<String>, Query, description = "The integration (or the header)"),
        ("Provider-Config-Key" = Option<String>, Header, description = "The integration (or the query)")),
    request_body = Object,
    responses((status = 200, description = "The metadata, echoed", body = Object)))]
pub fn update_metadata_deprecated() {}

// ---------------------------------------------------------------------------------------------
// Records and syncs

/// Records of a connection's sync
///
/// Ascending by modification; pass `next_cursor` back as `cursor` for the next page.
#[utoipa::path(get, path = "/records", tag = RECORDS,
    security(("secretKey" = [])),
    params(wire::RecordsQuery,
        ("Connection-Id" = String, Header, description = "The connection id"),
        ("Provider-Config-Key" = String, Header, description = "The integration key")),
    responses((status = 200, description = "One page", body = wire::RecordsPage<wire::OneDriveFile>)))]
pub fn records() {}

/// Records (the trailing-slash form `listRecords` calls)
#[utoipa::path(get, path = "/records/", tag = RECORDS,
    security(("secretKey" = [])),
    params(wire::RecordsQuery,
        ("Connection-Id" = String, Header, description = "The connection id"),
        ("Provider-Config-Key" = String, Header, description = "The integration key")),
    responses((status = 200, description = "One page", body = wire::RecordsPage<wire::OneDriveFile>)))]
pub fn records_slash() {}

/// Run a connection's sync now
///
/// `opts.reset` (or `full_resync`) runs a full resync; without `connection_id`, every watched
/// connection of the integration runs.
#[utoipa::path(post, path = "/sync/trigger", tag = SYNCS,
    security(("secretKey" = [])),
    request_body = wire::TriggerSync,
    responses((status = 200, description = "Started", body = wire::Success)))]
pub fn sync_trigger() {}

/// Sync status
///
/// Without `connection_id`: every watched connection of the integration.
#[utoipa::path(get, path = "/sync/status", tag = SYNCS,
    security(("secretKey" = [])),
    params(wire::SyncStatusQuery),
    responses((status = 200, description = "The syncs", body = wire::SyncStatusResponse)))]
pub fn sync_status() {}

/// Pause a connection's sync
///
/// Without `connection_id`: every watched connection of the integration.
#[utoipa::path(post, path = "/sync/pause", tag = SYNCS,
    security(("secretKey" = [])),
    request_body = wire::PauseSync,
    responses((status = 200, description = "Paused", body = wire::Success)))]
pub fn sync_pause() {}

/// Start a paused sync again
///
/// Runs it at once; without `connection_id`: every watched connection of the integration.
#[utoipa::path(post, path = "/sync/start", tag = SYNCS,
    security(("secretKey" = [])),
    request_body = wire::PauseSync,
    responses((status = 200, description = "Started", body = wire::Success)))]
pub fn sync_start() {}

/// Microsoft Graph change notifications
///
/// Called by Microsoft: the validation handshake (`?validationToken=` answered as text), then
/// notification batches, each verified by its `clientState`.
#[utoipa::path(post, path = "/sync/notifications", tag = SYNCS,
    params(("validationToken" = Option<String>, Query, description = "Graph's validation handshake")),
    request_body = NotificationBatch,
    responses(
        (status = 200, description = "The validation token, echoed", content_type = "text/plain", body = String),
        (status = 202, description = "Accepted")))]
pub fn sync_notifications() {}

/// Microsoft Graph lifecycle notifications
///
/// `reauthorizationRequired`, `subscriptionRemoved`, `missed`.
#[utoipa::path(post, path = "/sync/lifecycle", tag = SYNCS,
    params(("validationToken" = Option<String>, Query, description = "Graph's validation handshake")),
    request_body = NotificationBatch,
    responses(
        (status = 200, description = "The validation token, echoed", content_type = "text/plain", body = String),
        (status = 202, description = "Accepted")))]
pub fn sync_lifecycle() {}

// ---------------------------------------------------------------------------------------------
// Proxy: every method is forwarded; the common ones are documented one by one.

macro_rules! proxy_ops {
    ($($method:ident $name:ident $root_name:ident),* $(,)?) => {$(
        /// Forward a call to the provider's API with the connection's token
        ///
        /// Headers `Connection-Id` and `Provider-Config-Key`; optional `Retries`, `Retry-On`,
        /// `Base-Url-Override`, `Grantd-Resource: sharepoint`, `Nango-Proxy-<Name>`. The upstream
        /// answer (status, headers, body) passes through unchanged.
        #[utoipa::path($method, path = "/proxy/{path}", tag = PROXY,
            security(("secretKey" = [])),
            params(("path" = String, Path, description = "The upstream path, e.g. `v1.0/me/drive`"),
                ("Connection-Id" = String, Header, description = "The connection id"),
                ("Provider-Config-Key" = String, Header, description = "The integration key")),
            responses(
                (status = "2XX", description = "The upstream answer, as received"),
                (status = 424, description = "`connection_refresh_backoff`", body = wire::ErrorResponse),
                (status = 502, description = "The upstream could not be reached", body = wire::proxy::ProxyFailure),
                (status = 504, description = "The upstream did not answer in time", body = wire::proxy::ProxyFailure)))]
        pub fn $name() {}

        /// Forward a call to the provider's API root
        #[utoipa::path($method, path = "/proxy", tag = PROXY,
            security(("secretKey" = [])),
            params(("Connection-Id" = String, Header, description = "The connection id"),
                ("Provider-Config-Key" = String, Header, description = "The integration key")),
            responses(
                (status = "2XX", description = "The upstream answer, as received"),
                (status = 502, description = "The upstream could not be reached", body = wire::proxy::ProxyFailure),
                (status = 504, description = "The upstream did not answer in time", body = wire::proxy::ProxyFailure)))]
        pub fn $root_name() {}
    )*};
}

proxy_ops!(
    get proxy_get proxy_root_get,
    post proxy_post proxy_root_post,
    put proxy_put proxy_root_put,
    patch proxy_patch proxy_root_patch,
    delete proxy_delete proxy_root_delete,
);

// ---------------------------------------------------------------------------------------------
// Browser-facing

/// Start the OAuth flow
///
/// Redirects to Microsoft (`?connect_session_token=…&ws_client_id=…&params[tenant]=…`).
#[utoipa::path(get, path = "/oauth/connect/{key}", tag = BROWSER,
    params(("key" = String, Path, description = "The integration key"),
        ("connect_session_token" = Option<String>, Query, description = "The connect session token"),
        ("ws_client_id" = Option<String>, Query, description = "The WebSocket client told the outcome")),
    responses((status = 302, description = "To Microsoft's authorize endpoint")))]
pub fn oauth_connect() {}

/// OAuth redirect URI
///
/// Finishes the flow and renders the outcome page.
#[utoipa::path(get, path = "/oauth/callback", tag = BROWSER,
    responses((status = 200, description = "The outcome page", content_type = "text/html", body = String)))]
pub fn oauth_callback() {}

/// The hosted Connect UI
#[utoipa::path(get, path = "/connect", tag = BROWSER,
    params(("session_token" = Option<String>, Query, description = "The connect session token")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub fn connect_ui() {}

/// The Connect UI that `@nangohq/frontend`'s `openConnectUI` frames
///
/// The `ready` / `session_token` message handshake; `?lang=`.
#[utoipa::path(get, path = "/connect/", tag = BROWSER,
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub fn connect_ui_framed() {}

/// WebSocket used by `@nangohq/frontend` to learn the outcome of a flow
#[utoipa::path(get, path = "/", tag = BROWSER,
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
pub fn websocket() {}

/// An integration's or provider's logo
///
/// `{provider}.svg`: the `logo` / `logo_url` URLs.
#[utoipa::path(get, path = "/images/template-logos/{file}", tag = BROWSER,
    params(("file" = String, Path, description = "`{provider}.svg`")),
    responses((status = 200, description = "The logo", content_type = "image/svg+xml", body = String)))]
pub fn logo() {}

// ---------------------------------------------------------------------------------------------
// Operations

/// Liveness
#[utoipa::path(get, path = "/health", tag = OPERATIONS,
    responses((status = 200, description = "Up", body = Health)))]
pub fn health() {}

/// Readiness (database reachable)
#[utoipa::path(get, path = "/ready", tag = OPERATIONS,
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The database is unreachable", body = Ready)))]
pub fn ready() {}

/// Prometheus metrics (text format)
#[utoipa::path(get, path = "/metrics", tag = OPERATIONS,
    security(("secretKey" = []), ("metricsToken" = [])),
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
pub fn metrics() {}

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = OPERATIONS,
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub fn openapi() {}
