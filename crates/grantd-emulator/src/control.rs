//! The control API under `/_emulator/` (JSON) for tests and benchmarks — counters, faults, user
//! revocation and MFA, the clock, strict refresh-token rotation, app registrations (secrets,
//! certificates), admin consents, reset — and [`Control`], a typed client for it.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::counters::CounterSnapshot;
use crate::directory::{App, ClientSecret, SignInAudience};
use crate::faults::{FaultRule, FaultSpec};
use crate::state::{AdminConsent, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/_emulator/health",
            get(|| async { Json(json!({ "ok": true })) }),
        )
        .route("/_emulator/counters", get(counters).delete(reset_counters))
        .route("/_emulator/counters/reset", post(reset_counters))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/users/{user}/revoke", post(revoke_user))
        .route("/_emulator/users/{user}/mfa", put(set_mfa))
        .route("/_emulator/clock", get(clock))
        .route("/_emulator/clock/advance", post(advance_clock))
        .route("/_emulator/settings", get(get_settings).put(put_settings))
        .route("/_emulator/apps", get(list_apps).post(register_app))
        .route(
            "/_emulator/apps/{client_id}",
            get(get_app).delete(delete_app),
        )
        .route("/_emulator/apps/{client_id}/secrets", post(add_secret))
        .route(
            "/_emulator/apps/{client_id}/secrets/expire",
            post(expire_secret),
        )
        .route(
            "/_emulator/apps/{client_id}/certificates",
            post(add_certificate),
        )
        .route(
            "/_emulator/admin-consents",
            get(list_admin_consents).post(grant_admin_consent),
        )
        .route(
            "/_emulator/admin-consents/{tenant}/{client_id}",
            delete(revoke_admin_consent),
        )
        .route("/_emulator/reset", post(reset))
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

async fn counters(State(s): State<AppState>) -> Json<CounterSnapshot> {
    let mut c = s.counters.snapshot();
    c.notifications = s.notifier.counters();
    Json(c)
}

async fn reset_counters(State(s): State<AppState>) -> StatusCode {
    s.counters.reset();
    s.notifier.reset_counters();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(s): State<AppState>) -> Json<Vec<FaultRule>> {
    Json(s.faults.list())
}

async fn add_fault(State(s): State<AppState>, Json(spec): Json<FaultSpec>) -> Response {
    if spec.status.is_none() && spec.latency_ms.is_none() && !spec.down && spec.rate_limit.is_none()
    {
        return err(
            StatusCode::BAD_REQUEST,
            "a fault needs status, latency_ms, down or rate_limit",
        );
    }
    if spec.status.is_some_and(|st| !(400..=599).contains(&st)) {
        return err(StatusCode::BAD_REQUEST, "status must be 4xx or 5xx");
    }
    if spec.percent.is_some_and(|p| p > 100) {
        return err(StatusCode::BAD_REQUEST, "percent must be 0..=100");
    }
    (StatusCode::CREATED, Json(s.faults.add(spec))).into_response()
}

async fn clear_faults(State(s): State<AppState>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

fn user_id(s: &AppState, user: &str) -> Option<String> {
    s.dir().user(user).map(|u| u.id.clone())
}

/// Revokes every refresh token and session of a user (as a password reset does): AADSTS50173.
async fn revoke_user(State(s): State<AppState>, Path(user): Path<String>) -> Response {
    let Some(id) = user_id(&s, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let now = s.clock.unix();
    let mut g = s.grants();
    *g.user_generation.entry(id.clone()).or_default() += 1;
    g.revoked_at.insert(id, now);
    drop(g);
    // Subscriptions of the user need reauthorization now.
    s.notifier.wake.notify_one();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MfaBody {
    pub required: bool,
}

async fn set_mfa(
    State(s): State<AppState>,
    Path(user): Path<String>,
    Json(b): Json<MfaBody>,
) -> Response {
    let Some(id) = user_id(&s, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let mut g = s.grants();
    if b.required {
        g.mfa_required.insert(id);
    } else {
        g.mfa_required.remove(&id);
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockView {
    /// Unix seconds on the emulator clock.
    pub now: i64,
    /// RFC 3339.
    pub now_rfc3339: String,
}

fn clock_view(s: &AppState) -> ClockView {
    let now = s.clock.now();
    ClockView {
        now: now.timestamp(),
        now_rfc3339: now.to_rfc3339(),
    }
}

async fn clock(State(s): State<AppState>) -> Json<ClockView> {
    Json(clock_view(&s))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdvanceBody {
    pub seconds: i64,
}

async fn advance_clock(State(s): State<AppState>, Json(b): Json<AdvanceBody>) -> Json<ClockView> {
    s.clock.advance(b.seconds);
    s.notifier.wake.notify_one();
    Json(clock_view(&s))
}

/// Run-time switches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsView {
    /// Reject refresh tokens that were already redeemed (Microsoft keeps them valid).
    pub strict_rotation: bool,
}

async fn get_settings(State(s): State<AppState>) -> Json<SettingsView> {
    Json(SettingsView {
        strict_rotation: s.grants().strict_rotation,
    })
}

async fn put_settings(
    State(s): State<AppState>,
    Json(b): Json<SettingsView>,
) -> Json<SettingsView> {
    s.grants().strict_rotation = b.strict_rotation;
    Json(b)
}

/// An app registration to create at run time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewApp {
    /// Default: a random GUID.
    #[serde(default)]
    pub client_id: Option<String>,
    pub display_name: String,
    /// Tenant GUID, domain or name (default `contoso`).
    #[serde(default)]
    pub home_tenant: Option<String>,
    #[serde(default = "default_audience")]
    pub sign_in_audience: SignInAudience,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<ClientSecret>,
    /// PEM certificates.
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub application_permissions: Vec<String>,
    #[serde(default)]
    pub delegated_permissions: Vec<String>,
    #[serde(default)]
    pub public_client: bool,
}

fn default_audience() -> SignInAudience {
    SignInAudience::AzureADandPersonalMicrosoftAccount
}

impl NewApp {
    pub fn new(display_name: &str) -> NewApp {
        NewApp {
            client_id: None,
            display_name: display_name.to_owned(),
            home_tenant: None,
            sign_in_audience: default_audience(),
            redirect_uris: Vec::new(),
            secrets: Vec::new(),
            certificates: Vec::new(),
            application_permissions: Vec::new(),
            delegated_permissions: Vec::new(),
            public_client: false,
        }
    }
}

async fn list_apps(State(s): State<AppState>) -> Json<Vec<App>> {
    Json(s.dir().apps.values().cloned().collect())
}

async fn register_app(State(s): State<AppState>, Json(n): Json<NewApp>) -> Response {
    let mut dir = s.dir_mut();
    let home = n.home_tenant.as_deref().unwrap_or("contoso");
    let Some(tenant) = dir.tenant(home).cloned() else {
        return err(StatusCode::BAD_REQUEST, format!("unknown tenant {home}"));
    };
    for c in &n.certificates {
        if crate::identity::client_auth::pem_to_der(c)
            .and_then(|d| crate::identity::client_auth::cert_public_key(&d))
            .is_none()
        {
            return err(
                StatusCode::BAD_REQUEST,
                "certificate is not a PEM X.509 certificate with an RSA key",
            );
        }
    }
    let client_id = n
        .client_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if dir.apps.contains_key(&client_id) {
        return err(StatusCode::CONFLICT, format!("app {client_id} exists"));
    }
    let app = App {
        client_id: client_id.clone(),
        display_name: n.display_name,
        home_tenant_id: tenant.id,
        sign_in_audience: n.sign_in_audience,
        redirect_uris: n.redirect_uris,
        secrets: n.secrets,
        certificates: n.certificates,
        application_permissions: n.application_permissions,
        delegated_permissions: n.delegated_permissions,
        public_client: n.public_client,
    };
    dir.apps.insert(client_id, app.clone());
    (StatusCode::CREATED, Json(app)).into_response()
}

async fn get_app(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.dir().apps.get(&id) {
        Some(a) => Json(a.clone()).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no app {id}")),
    }
}

async fn delete_app(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.dir_mut().apps.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no app {id}")),
    }
}

/// A secret to add; value generated when omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewSecret {
    #[serde(default)]
    pub value: Option<String>,
    /// Unix seconds (emulator clock).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Alternative to `expires_at`: seconds from now on the emulator clock.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
}

async fn add_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(n): Json<NewSecret>,
) -> Response {
    let now = s.clock.unix();
    let mut dir = s.dir_mut();
    let Some(app) = dir.apps.get_mut(&id) else {
        return err(StatusCode::NOT_FOUND, format!("no app {id}"));
    };
    let secret = ClientSecret {
        value: n.value.unwrap_or_else(|| {
            format!(
                "{}~{}",
                &uuid::Uuid::new_v4().simple().to_string()[..3],
                crate::identity::random_token(27)
            )
        }),
        expires_at: n.expires_at.or(n.expires_in_seconds.map(|d| now + d)),
    };
    app.secrets.push(secret.clone());
    (StatusCode::CREATED, Json(secret)).into_response()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExpireSecret {
    /// The secret to expire; all of the app's secrets when omitted.
    #[serde(default)]
    pub value: Option<String>,
}

async fn expire_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<ExpireSecret>,
) -> Response {
    let now = s.clock.unix();
    let mut dir = s.dir_mut();
    let Some(app) = dir.apps.get_mut(&id) else {
        return err(StatusCode::NOT_FOUND, format!("no app {id}"));
    };
    let mut n = 0;
    for sec in app
        .secrets
        .iter_mut()
        .filter(|x| b.value.as_ref().is_none_or(|v| *v == x.value))
    {
        sec.expires_at = Some(now);
        n += 1;
    }
    if n == 0 {
        return err(StatusCode::NOT_FOUND, "no such secret");
    }
    Json(app.clone()).into_response()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCertificate {
    pub pem: String,
}

async fn add_certificate(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<NewCertificate>,
) -> Response {
    if crate::identity::client_auth::pem_to_der(&b.pem)
        .and_then(|d| crate::identity::client_auth::cert_public_key(&d))
        .is_none()
    {
        return err(
            StatusCode::BAD_REQUEST,
            "certificate is not a PEM X.509 certificate with an RSA key",
        );
    }
    let mut dir = s.dir_mut();
    let Some(app) = dir.apps.get_mut(&id) else {
        return err(StatusCode::NOT_FOUND, format!("no app {id}"));
    };
    app.certificates.push(b.pem);
    Json(app.clone()).into_response()
}

async fn list_admin_consents(State(s): State<AppState>) -> Json<Vec<AdminConsent>> {
    Json(s.grants().admin_consents.values().cloned().collect())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminConsentBody {
    /// Tenant GUID, domain or name.
    pub tenant: String,
    pub client_id: String,
}

async fn grant_admin_consent(
    State(s): State<AppState>,
    Json(b): Json<AdminConsentBody>,
) -> Response {
    let (tenant, app) = {
        let dir = s.dir();
        (
            dir.tenant(&b.tenant).cloned(),
            dir.apps.get(&b.client_id).cloned(),
        )
    };
    let (Some(t), Some(app)) = (tenant, app) else {
        return err(StatusCode::NOT_FOUND, "unknown tenant or app");
    };
    let c = AdminConsent {
        tenant_id: t.id.clone(),
        client_id: app.client_id.clone(),
        roles: app.application_permissions.clone(),
        granted_at: s.clock.unix(),
    };
    s.grants()
        .admin_consents
        .insert((t.id, app.client_id), c.clone());
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn revoke_admin_consent(
    State(s): State<AppState>,
    Path((tenant, client_id)): Path<(String, String)>,
) -> Response {
    let Some(t) = s.dir().tenant(&tenant).cloned() else {
        return err(StatusCode::NOT_FOUND, format!("no tenant {tenant}"));
    };
    match s.grants().admin_consents.remove(&(t.id, client_id)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => err(StatusCode::NOT_FOUND, "no such admin consent"),
    }
}

async fn reset(State(s): State<AppState>) -> Response {
    match s.reset() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Typed client for the control API.
#[derive(Debug, Clone)]
pub struct Control {
    base: String,
    pub(crate) http: reqwest::Client,
}

async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        Ok(resp)
    } else {
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("emulator control API answered {status}: {body}")
    }
}

impl Control {
    /// `base_url` is the emulator's (`http://127.0.0.1:PORT`).
    pub fn new(base_url: &str) -> Control {
        Control::with_client(base_url, reqwest::Client::new())
    }

    pub fn with_client(base_url: &str, http: reqwest::Client) -> Control {
        Control {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/_emulator{path}", self.base)
    }

    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        check(req.send().await?).await
    }

    pub async fn counters(&self) -> anyhow::Result<CounterSnapshot> {
        Ok(self
            .send(self.http.get(self.url("/counters")))
            .await?
            .json()
            .await?)
    }

    pub async fn reset_counters(&self) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url("/counters")))
            .await
            .map(drop)
    }

    pub async fn add_fault(&self, spec: &FaultSpec) -> anyhow::Result<FaultRule> {
        Ok(self
            .send(self.http.post(self.url("/faults")).json(spec))
            .await?
            .json()
            .await?)
    }

    pub async fn faults(&self) -> anyhow::Result<Vec<FaultRule>> {
        Ok(self
            .send(self.http.get(self.url("/faults")))
            .await?
            .json()
            .await?)
    }

    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url("/faults")))
            .await
            .map(drop)
    }

    /// Revokes a user's refresh tokens and sessions (`user` = object id or UPN).
    pub async fn revoke_user(&self, user: &str) -> anyhow::Result<()> {
        self.send(self.http.post(self.url(&format!("/users/{user}/revoke"))))
            .await
            .map(drop)
    }

    pub async fn set_mfa_required(&self, user: &str, required: bool) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.url(&format!("/users/{user}/mfa")))
                .json(&MfaBody { required }),
        )
        .await
        .map(drop)
    }

    pub async fn clock(&self) -> anyhow::Result<ClockView> {
        Ok(self
            .send(self.http.get(self.url("/clock")))
            .await?
            .json()
            .await?)
    }

    pub async fn advance_clock(&self, seconds: i64) -> anyhow::Result<ClockView> {
        Ok(self
            .send(
                self.http
                    .post(self.url("/clock/advance"))
                    .json(&AdvanceBody { seconds }),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn set_strict_rotation(&self, on: bool) -> anyhow::Result<()> {
        self.send(self.http.put(self.url("/settings")).json(&SettingsView {
            strict_rotation: on,
        }))
        .await
        .map(drop)
    }

    pub async fn register_app(&self, app: &NewApp) -> anyhow::Result<App> {
        Ok(self
            .send(self.http.post(self.url("/apps")).json(app))
            .await?
            .json()
            .await?)
    }

    pub async fn app(&self, client_id: &str) -> anyhow::Result<App> {
        Ok(self
            .send(self.http.get(self.url(&format!("/apps/{client_id}"))))
            .await?
            .json()
            .await?)
    }

    pub async fn delete_app(&self, client_id: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(&format!("/apps/{client_id}"))))
            .await
            .map(drop)
    }

    pub async fn add_secret(
        &self,
        client_id: &str,
        secret: &NewSecret,
    ) -> anyhow::Result<ClientSecret> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/apps/{client_id}/secrets")))
                    .json(secret),
            )
            .await?
            .json()
            .await?)
    }

    /// Expires one secret (`Some(value)`) or all of the app's secrets now (emulator clock).
    pub async fn expire_secret(&self, client_id: &str, value: Option<&str>) -> anyhow::Result<()> {
        let body = ExpireSecret {
            value: value.map(str::to_owned),
        };
        self.send(
            self.http
                .post(self.url(&format!("/apps/{client_id}/secrets/expire")))
                .json(&body),
        )
        .await
        .map(drop)
    }

    pub async fn add_certificate(&self, client_id: &str, pem: &str) -> anyhow::Result<()> {
        let body = NewCertificate {
            pem: pem.to_owned(),
        };
        self.send(
            self.http
                .post(self.url(&format!("/apps/{client_id}/certificates")))
                .json(&body),
        )
        .await
        .map(drop)
    }

    pub async fn admin_consents(&self) -> anyhow::Result<Vec<AdminConsent>> {
        Ok(self
            .send(self.http.get(self.url("/admin-consents")))
            .await?
            .json()
            .await?)
    }

    pub async fn grant_admin_consent(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> anyhow::Result<AdminConsent> {
        let body = AdminConsentBody {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
        };
        Ok(self
            .send(self.http.post(self.url("/admin-consents")).json(&body))
            .await?
            .json()
            .await?)
    }

    pub async fn revoke_admin_consent(&self, tenant: &str, client_id: &str) -> anyhow::Result<()> {
        self.send(
            self.http
                .delete(self.url(&format!("/admin-consents/{tenant}/{client_id}"))),
        )
        .await
        .map(drop)
    }

    /// Back to the seed (directory, grants, switches, clock, counters, faults, drives).
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.send(self.http.post(self.url("/reset")))
            .await
            .map(drop)
    }
}
