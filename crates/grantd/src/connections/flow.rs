//! The OAuth connect flow. `start` checks the connect session and integration, stores the flow
//! (state, PKCE verifier, connection id) and returns the authorize URL; `callback` takes the flow
//! (single use), exchanges the code, records the tenant and identity, obtains the SharePoint token
//! where granted, and stores the connection — new, or the reconnected one in place.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde_json::{Map, Value, json};

use super::{Core, Error};
use crate::catalog::Provider;
use crate::microsoft::{self, TokenIdentity};
use crate::model::{
    AuthCode, ConfigKey, ConnectSession, Connection, ConnectionId, Credentials, FlowKind,
    Integration, NewConnection, OAuthFlow, ProviderConfigKey,
};
use crate::oauth::{self, AuthorizeRequest, ClientAuth};

/// What the browser sent to `GET /oauth/connect/{key}`.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub key: String,
    pub session_token: Option<String>,
    pub ws_client_id: Option<String>,
    /// `params[k]=v`: connection config.
    pub params: BTreeMap<String, String>,
    /// `authorization_params[k]=v`: extra authorize parameters.
    pub authorization_params: Vec<(String, String)>,
    pub user_scope: Option<String>,
    pub connection_id: Option<String>,
}

/// A failure the browser sees: reported over the WebSocket (`error_type`, `message`) and on an
/// HTML page that says what happened and what to do.
#[derive(Debug, Clone)]
pub struct FlowFailure {
    pub error_type: &'static str,
    pub message: String,
    pub what_to_do: String,
    pub provider_config_key: Option<String>,
    pub connection_id: Option<String>,
    pub ws_client_id: Option<String>,
}

#[derive(Debug)]
pub enum StartError {
    /// 401 JSON: the session token is missing, malformed or unknown. No WebSocket message.
    Unauthorized(&'static str, &'static str),
    /// 400 JSON, no WebSocket message (`integration_not_allowed`, `invalid_connection`,
    /// `invalid_query_params`).
    Rejected(&'static str, String),
    /// WebSocket error + HTML page.
    Flow(FlowFailure),
    Internal(Error),
}

#[derive(Debug)]
pub enum CallbackError {
    /// No usable `state`: an HTML page, no WebSocket message (there is nobody to tell).
    BadState(String),
    Flow(FlowFailure),
    Internal(Error),
}

/// What a successful callback produced.
#[derive(Debug)]
pub struct Connected {
    pub connection: Connection,
    pub created: bool,
    pub ws_client_id: Option<String>,
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError::Internal(e)
    }
}
impl From<Error> for CallbackError {
    fn from(e: Error) -> Self {
        CallbackError::Internal(e)
    }
}
impl From<crate::store::Error> for CallbackError {
    fn from(e: crate::store::Error) -> Self {
        CallbackError::Internal(e.into())
    }
}
impl From<crate::store::Error> for StartError {
    fn from(e: crate::store::Error) -> Self {
        StartError::Internal(e.into())
    }
}

impl Core {
    pub async fn start_connect(&self, req: StartRequest) -> Result<String, StartError> {
        let session = self.start_session(&req).await?;
        let (key, integration, provider) = self.start_integration(&req, &session).await?;
        let connection_id = self.start_connection_id(&session, &key).await?;
        let merged = Merged::new(&req, &session, &key);
        let tenant = provider
            .authority(
                integration.pinned_tenant(),
                merged
                    .params
                    .get(ConfigKey::Tenant.as_str())
                    .map(String::as_str),
            )
            .ok_or_else(|| {
                fail(
                    &req,
                    "url_param_err",
                    "This integration needs the tenant (params[tenant]).".into(),
                    "Pass the directory (tenant) id or domain as params[tenant].",
                )
            })?;
        let scopes = self.scopes_for(&integration, &provider, merged.scope_override.as_deref());
        let (verifier, challenge) = oauth::pkce_pair();
        let state = uuid::Uuid::new_v4().to_string();
        let redirect_uri = self.config.callback_url();
        let authorization_url = provider.authorization_url(&self.config.microsoft, &tenant);
        let url = if provider.is_app_only() {
            self.admin_consent_url(&integration, &provider, &tenant, &redirect_uri, &state)
        } else {
            oauth::authorize_url(&AuthorizeRequest {
                authorization_url: &authorization_url,
                client_id: &integration.client_id,
                redirect_uri: &redirect_uri,
                scopes: &scopes,
                scope_separator: &provider.scope_separator,
                state: &state,
                code_challenge: (!provider.disable_pkce).then_some(challenge.as_str()),
                extra: &merged.extra,
            })
        }
        .map_err(|e| {
            fail(
                &req,
                "url_param_err",
                format!("The authorization URL is invalid: {e}"),
                "Check the integration's configuration.",
            )
        })?;

        let now = self.clock.now();
        self.store
            .put_oauth_flow(OAuthFlow {
                state,
                provider_config_key: key,
                connection_id,
                connect_session_id: Some(session.id),
                ws_client_id: req.ws_client_id.clone(),
                code_verifier: verifier,
                connection_config: merged.connection_config(),
                redirect_uri,
                kind: if provider.is_app_only() {
                    FlowKind::AdminConsent
                } else {
                    FlowKind::Delegated
                }
                .as_str()
                .into(),
                expires_at: now
                    + TimeDelta::from_std(self.config.oauth_flow_ttl)
                        .unwrap_or(TimeDelta::minutes(15)),
                created_at: now,
            })
            .await?;
        Ok(url)
    }

    /// Start, step 1: the connect session the token names (well-formed, known, unexpired).
    async fn start_session(&self, req: &StartRequest) -> Result<ConnectSession, StartError> {
        let token = req
            .session_token
            .as_deref()
            .ok_or(StartError::Unauthorized(
                "missing_connect_session_token",
                "A connect session token is required (connect_session_token).",
            ))?;
        if !super::sessions::is_well_formed(token) {
            return Err(StartError::Unauthorized(
                "invalid_connect_session_token_format",
                "The connect session token is malformed.",
            ));
        }
        let session = self
            .connect_session(token)
            .await?
            .ok_or(StartError::Unauthorized(
                "unknown_connect_session_token",
                "The connect session token is unknown or expired.",
            ))?;
        if req.connection_id.is_some() {
            return Err(StartError::Rejected(
                "invalid_query_params",
                "connection_id cannot be set when using a connect session".into(),
            ));
        }
        Ok(session)
    }

    /// Start, step 2: the integration, allowed by the session and with app credentials.
    async fn start_integration(
        &self,
        req: &StartRequest,
        session: &ConnectSession,
    ) -> Result<(ProviderConfigKey, Integration, Provider), StartError> {
        let key = ProviderConfigKey::parse(&req.key).map_err(|e| {
            fail(
                req,
                "provider_config_err",
                format!("Invalid integration key: {e}"),
                "Check the integration name.",
            )
        })?;
        let (integration, provider) = match self.integration(&key).await {
            Ok(x) => x,
            Err(Error::UnknownIntegration(_)) => {
                return Err(fail(
                    req,
                    "provider_config_err",
                    format!("Integration {key} does not exist."),
                    "Ask the app's developers to set up this integration.",
                ));
            }
            Err(Error::UnknownProvider(p)) => {
                return Err(fail(
                    req,
                    "unknown_config_key",
                    format!("Provider {p} is not supported."),
                    "Ask the app's developers to fix the integration.",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(allowed) = &session.allowed_integrations {
            if !allowed.iter().any(|a| a == key.as_str()) {
                return Err(StartError::Rejected(
                    "integration_not_allowed",
                    format!("Integration {key} is not allowed by this connect session"),
                ));
            }
        }
        if integration.client_id.is_empty()
            || (integration.client_secret.expose_secret().is_empty()
                && integration.app_credential.certificate.is_none())
        {
            return Err(fail(
                req,
                "provider_config_err",
                "The integration has no client id or secret.".into(),
                "Ask the app's developers to finish setting up the integration.",
            ));
        }
        Ok((key, integration, provider))
    }

    /// Start, step 3: the connection the flow will write — the one the session reconnects (which
    /// must still exist), or a new id.
    async fn start_connection_id(
        &self,
        session: &ConnectSession,
        key: &ProviderConfigKey,
    ) -> Result<ConnectionId, StartError> {
        match &session.reconnect {
            Some((rkey, rcid)) => {
                if rkey != key || self.store.get_connection(rkey, rcid).await?.is_none() {
                    return Err(StartError::Rejected(
                        "invalid_connection",
                        "The connection this session reconnects no longer exists".into(),
                    ));
                }
                Ok(rcid.clone())
            }
            None => Ok(ConnectionId::new_random()),
        }
    }

    /// Handles `GET /oauth/callback` with its query parameters, then queues the auth webhook
    /// (`creation` / `override`, success or failure; see `super::events`).
    pub async fn finish_connect(
        &self,
        query: &BTreeMap<String, String>,
    ) -> Result<Connected, CallbackError> {
        let result = self.finish_connect_inner(query).await;
        self.restart_idle_clock(&result).await;
        self.connect_webhook(&result).await;
        result
    }

    async fn finish_connect_inner(
        &self,
        query: &BTreeMap<String, String>,
    ) -> Result<Connected, CallbackError> {
        let flow = self.take_flow(query).await?;
        let now = self.clock.now();
        if flow.expires_at < now {
            return Err(flow_fail(
                &flow,
                "state_err",
                "The sign-in took too long and expired.".into(),
                "Start the connection again.".into(),
            ));
        }
        if flow.flow_kind() == FlowKind::AdminConsent {
            return self.finish_admin_consent(flow, query).await;
        }
        let code = authorization_code(query)
            .map_err(|(what, todo)| flow_fail(&flow, "callback_err", what, todo))?;
        let (integration, provider) =
            self.integration(&flow.provider_config_key)
                .await
                .map_err(|e| match e {
                    Error::UnknownIntegration(_) | Error::UnknownProvider(_) => flow_fail(
                        &flow,
                        "provider_config_err",
                        e.to_string(),
                        "The integration was removed while you were signing in.".into(),
                    ),
                    other => CallbackError::Internal(other),
                })?;
        let connection_tenant = flow
            .connection_config
            .get(ConfigKey::Tenant.as_str())
            .and_then(Value::as_str);
        let tenant = provider
            .authority(integration.pinned_tenant(), connection_tenant)
            .unwrap_or_else(|| "common".into());
        let token_url = provider.token_url(&self.config.microsoft, &tenant);
        let tokens = oauth::token_request(
            &self.http,
            &token_url,
            &integration.client_id,
            ClientAuth::of(&integration),
            oauth::code_grant(&AuthCode::new(code.to_owned()), &flow.redirect_uri, (!provider.disable_pkce).then_some(&flow.code_verifier)),
            now,
        )
        .await
        .map_err(|e| {
            let c = microsoft::classify(&e);
            tracing::warn!(integration.key = %flow.provider_config_key, aadsts = ?c.aadsts, class = c.class.as_str(), "code exchange failed for integration {}", flow.provider_config_key);
            flow_fail(&flow, "token_err", format!("The sign-in could not be completed: {}", c.cause), "Start the connection again; if it keeps failing, the app's administrator should check the integration.".into())
        })?;

        let mut connection_config = identity_config(&flow, &provider, &tokens);
        let mut credentials = Credentials {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            expires_at: tokens.expires_at,
            raw: tokens.raw,
            sharepoint: None,
        };
        if provider.sharepoint_token {
            self.obtain_sharepoint_token(
                &integration,
                &provider,
                &tenant,
                &mut credentials,
                &mut connection_config,
                tokens.scope.as_deref(),
            )
            .await;
        }

        let (connection, created) = self
            .store_flow_connection(&flow, &integration.provider, credentials, connection_config)
            .await?;
        tracing::info!(
            connection.id = %connection.connection_id,
            integration.key = %connection.provider_config_key,
            created,
            "connection {} {}",
            connection.connection_id,
            if created { "created" } else { "reconnected" }
        );
        Ok(Connected {
            connection,
            created,
            ws_client_id: flow.ws_client_id,
        })
    }

    /// Callback, step 1: the flow its `state` names, taken (single use).
    async fn take_flow(
        &self,
        query: &BTreeMap<String, String>,
    ) -> Result<OAuthFlow, CallbackError> {
        let state = query
            .get("state")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallbackError::BadState("The callback has no state parameter.".into())
            })?;
        self.store.take_oauth_flow(state).await?.ok_or_else(|| {
            CallbackError::BadState(
                "This sign-in link was already used or is unknown. Start the connection again."
                    .into(),
            )
        })
    }
}

/// A callback failure the user sees, about `flow`'s connection.
fn flow_fail(
    flow: &OAuthFlow,
    error_type: &'static str,
    message: String,
    what_to_do: String,
) -> CallbackError {
    CallbackError::Flow(FlowFailure {
        error_type,
        message,
        what_to_do,
        provider_config_key: Some(flow.provider_config_key.to_string()),
        connection_id: Some(flow.connection_id.to_string()),
        ws_client_id: flow.ws_client_id.clone(),
    })
}

/// The callback's `code`, or Microsoft's `error` in plain words: what happened and what to do
/// (a `callback_err` for the flow).
fn authorization_code(query: &BTreeMap<String, String>) -> Result<&str, (String, String)> {
    if let Some(error) = query.get("error") {
        return Err(microsoft::aadsts::explain_authorize_error(
            error,
            query.get("error_description").map(String::as_str),
        ));
    }
    query
        .get("code")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            (
                "Microsoft sent no authorization code.".into(),
                "Start the connection again.".into(),
            )
        })
}

/// The flow's `connection_config` plus, for Microsoft, the tenant and user the token names.
fn identity_config(
    flow: &OAuthFlow,
    provider: &Provider,
    tokens: &oauth::TokenResponse,
) -> Map<String, Value> {
    let mut config = match flow.connection_config.clone() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if provider.is_microsoft() {
        if let Some(id) = TokenIdentity::from_jwt(tokens.access_token.expose_secret()) {
            if let Some(tid) = &id.tid {
                config.insert(ConfigKey::TenantId.as_str().into(), json!(tid));
            }
            if let Some(oid) = &id.oid {
                config.insert(ConfigKey::UserId.as_str().into(), json!(oid));
            }
            if let Some(u) = id.username() {
                config.insert(ConfigKey::UserPrincipalName.as_str().into(), json!(u));
            }
        }
    }
    config
}

impl Core {
    /// Stores the connection an OAuth flow produced (new, or the reconnected one in place), with
    /// the end user, tags and webhook override of the connect session that started it.
    pub(crate) async fn store_flow_connection(
        &self,
        flow: &OAuthFlow,
        provider: &str,
        credentials: Credentials,
        connection_config: Map<String, Value>,
    ) -> Result<(Connection, bool), crate::store::Error> {
        let session = match flow.connect_session_id {
            Some(id) => self.store.get_connect_session_by_id(id).await?,
            None => None,
        };
        let stored = self
            .store
            .upsert_connection(NewConnection {
                connection_id: flow.connection_id.clone(),
                provider_config_key: flow.provider_config_key.clone(),
                provider: provider.to_owned(),
                credentials,
                connection_config: Value::Object(connection_config),
                metadata: None,
                end_user: session.as_ref().and_then(|s| s.end_user.clone()),
                tags: session.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
                webhook_url_override: session
                    .as_ref()
                    .and_then(|s| s.webhook_url_override.clone()),
            })
            .await?;
        // A session is one-shot: a successful connect ends it, so its token starts no further
        // flow (issue 14, item 13; docs/api.md). Flows it already started still complete.
        if let Some(s) = &session {
            self.store
                .end_connect_session(s.id, self.clock.now())
                .await?;
        }
        Ok(stored)
    }
}

/// A failure the user sees on the connect page (and the WebSocket), about `req`'s integration.
fn fail(req: &StartRequest, error_type: &'static str, message: String, todo: &str) -> StartError {
    StartError::Flow(FlowFailure {
        error_type,
        message,
        what_to_do: todo.to_owned(),
        provider_config_key: Some(req.key.clone()),
        connection_id: None,
        ws_client_id: req.ws_client_id.clone(),
    })
}

/// The query's connection parameters, authorization parameters and user scopes merged with the
/// session's defaults for the integration; the session's win (Nango's rules).
struct Merged {
    params: BTreeMap<String, String>,
    scope_override: Option<String>,
    extra: Vec<(String, String)>,
    user_scope: Option<String>,
}

impl Merged {
    fn new(req: &StartRequest, session: &ConnectSession, key: &ProviderConfigKey) -> Merged {
        let defaults = session
            .integrations_config_defaults
            .get(key.as_str())
            .cloned()
            .unwrap_or(Value::Null);
        let mut params = req.params.clone();
        params.remove("webhook_url");
        let mut scope_override: Option<String> = None;
        if let Some(cc) = defaults.get("connection_config").and_then(Value::as_object) {
            for (k, v) in cc {
                if k == "oauth_scopes_override" {
                    scope_override = v.as_str().map(str::to_owned);
                } else if let Some(s) = v.as_str() {
                    params.insert(k.clone(), s.to_owned());
                }
            }
        }
        let mut extra = req.authorization_params.clone();
        if let Some(ap) = defaults
            .get("authorization_params")
            .and_then(Value::as_object)
        {
            extra = ap
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
        }
        extra.retain(|(_, v)| v != "undefined");
        let user_scope = defaults
            .get("user_scopes")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(req.user_scope.clone());
        Merged {
            params,
            scope_override,
            extra,
            user_scope,
        }
    }

    /// The flow's `connection_config`: the parameters, plus the user scopes asked for.
    fn connection_config(&self) -> Value {
        let mut config: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(us) = &self.user_scope {
            config.insert(
                ConfigKey::UserScope.as_str().into(),
                Value::String(us.clone()),
            );
        }
        Value::Object(config)
    }
}

impl Core {
    /// Whether a flow in flight was started with this WebSocket id (on any instance).
    pub async fn ws_client_has_flow(&self, ws_client_id: &str) -> Result<bool, Error> {
        Ok(self.store.ws_client_has_flow(ws_client_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(defaults: Value) -> ConnectSession {
        ConnectSession {
            id: 1,
            end_user: None,
            organization: None,
            allowed_integrations: None,
            integrations_config_defaults: defaults,
            reconnect: None,
            tags: Default::default(),
            webhook_url_override: None,
            overrides: Value::Null,
            expires_at: chrono::Utc::now(),
            created_at: chrono::Utc::now(),
        }
    }

    fn request() -> StartRequest {
        StartRequest {
            key: "od".into(),
            params: [
                ("tenant".to_owned(), "contoso".to_owned()),
                ("webhook_url".to_owned(), "https://x".to_owned()),
            ]
            .into(),
            authorization_params: vec![
                ("prompt".into(), "login".into()),
                ("login_hint".into(), "undefined".into()),
            ],
            user_scope: Some("Files.Read".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_query_stands_when_the_session_has_no_defaults() {
        let key = ProviderConfigKey::parse("od").unwrap();
        let m = Merged::new(&request(), &session(Value::Null), &key);
        assert_eq!(m.params.get("tenant").map(String::as_str), Some("contoso"));
        assert!(
            !m.params.contains_key("webhook_url"),
            "never a flow parameter"
        );
        assert_eq!(m.extra, vec![("prompt".to_owned(), "login".to_owned())]);
        assert_eq!(m.scope_override, None);
        assert_eq!(
            m.connection_config(),
            json!({"tenant": "contoso", "user_scope": "Files.Read"})
        );
    }

    #[test]
    fn the_sessions_defaults_for_the_integration_win() {
        let key = ProviderConfigKey::parse("od").unwrap();
        let defaults = json!({
            "od": {
                "connection_config": {"tenant": "fabrikam", "oauth_scopes_override": "Sites.Read.All"},
                "authorization_params": {"prompt": "consent"},
                "user_scopes": "Mail.Read"
            },
            "other": {"connection_config": {"tenant": "ignored"}}
        });
        let m = Merged::new(&request(), &session(defaults), &key);
        assert_eq!(m.params.get("tenant").map(String::as_str), Some("fabrikam"));
        assert!(!m.params.contains_key("oauth_scopes_override"));
        assert_eq!(m.scope_override.as_deref(), Some("Sites.Read.All"));
        assert_eq!(m.extra, vec![("prompt".to_owned(), "consent".to_owned())]);
        assert_eq!(m.user_scope.as_deref(), Some("Mail.Read"));
    }
}
