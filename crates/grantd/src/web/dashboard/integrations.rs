//! Dashboard integrations: list, create, edit and delete, with the Entra setup guide beside the
//! form (the exact redirect URI, the account type, a checklist of common scopes saying what each
//! grants, and the client secret's expiry with a warning badge 30, 14 and 3 days before it lapses).
//! The expiry is the integration's app credential (`AppCredential::secret_expires_at`, as set by
//! the API's `credentials.client_secret_expires_at`); `expiry.rs` renders it.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};

use super::auth::Admin;
use super::error::{AdminPost, PageError};
use super::layout::{csrf_field, page};
use crate::connections::{Error as CoreError, StoreError};
use crate::edge::AppState;
use crate::model::{AppCredential, ClientSecret, Integration, NewIntegration, ProviderConfigKey};

/// Where an older dashboard kept the expiry; read as a fallback and dropped on save.
const LEGACY_EXPIRES_KEY: &str = "client_secret_expires_at";
/// The first warning, in days ahead (then 14 and 3).
const WARN_DAYS: i32 = crate::connections::credential_expiry::WARN_DAYS[0];

/// Common delegated Microsoft Graph scopes and what each grants.
pub const SCOPES: &[(&str, &str)] = &[
    (
        "offline_access",
        "A refresh token, so grantd can keep the connection alive for months. Always requested.",
    ),
    ("User.Read", "Sign-in and the user's basic profile."),
    (
        "Files.Read",
        "Read the user's own OneDrive files (not files shared with them).",
    ),
    (
        "Files.ReadWrite",
        "Read and write the user's own OneDrive files.",
    ),
    (
        "Files.Read.All",
        "Read every file the user can access, including shared files and SharePoint libraries.",
    ),
    (
        "Files.ReadWrite.All",
        "Read and write every file the user can access.",
    ),
    (
        "Sites.Read.All",
        "Read SharePoint sites the user can access. Needed for the SharePoint token (SharePoint REST API).",
    ),
    (
        "Sites.ReadWrite.All",
        "Read and write SharePoint sites the user can access.",
    ),
];

/// Account types, as `integration_config.tenant` values.
const ACCOUNT_TYPES: &[(&str, &str)] = &[
    (
        "organizations",
        "Work or school accounts in any organization (multitenant) — the usual choice for a SaaS app",
    ),
    (
        "common",
        "Work or school accounts and personal Microsoft accounts",
    ),
    (
        "single",
        "Only my organization (single tenant) — enter the directory (tenant) id below",
    ),
];

fn internal(e: impl std::error::Error) -> Response {
    PageError::internal(&e).into_response()
}

pub async fn list(State(st): State<AppState>, admin: Admin) -> Response {
    let all = match st.core.list_integrations().await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let now = st.core.clock.now();
    Html(
        page(
            "Integrations",
            Some(&admin.csrf),
            html! {
                h1 { "Integrations" }
                p { a.button href="/dashboard/integrations/new" { "New integration" } }
                @if all.is_empty() {
                    p { "No integrations yet. Create one to let your users connect their Microsoft 365 accounts." }
                } @else {
                    table {
                        caption.muted { "Each integration is one app registration in Microsoft Entra." }
                        thead { tr { th scope="col" { "Key" } th scope="col" { "Name" } th scope="col" { "Provider" } th scope="col" { "Client id" } th scope="col" { "Scopes" } th scope="col" { "Credential expiry" } } }
                        tbody {
                            @for i in &all {
                                tr {
                                    td { a href=(format!("/dashboard/integrations/{}", i.unique_key)) { (i.unique_key.as_str()) } }
                                    td { (st.core.catalog.display_name(i)) }
                                    td { (i.provider) }
                                    td { code { (i.client_id) } }
                                    td { (i.scopes.join(" ")) }
                                    td { (super::expiry::badge(i, now)) }
                                }
                            }
                        }
                    }
                }
            },
        )
        .into_string(),
    )
    .into_response()
}

/// The create/edit form; `existing` is `None` when creating.
fn form(
    st: &AppState,
    csrf: &str,
    existing: Option<&Integration>,
    error: Option<&str>,
    values: &FormValues,
) -> Markup {
    let redirect_uri = st.core.config.callback_url();
    let action = match existing {
        Some(i) => format!("/dashboard/integrations/{}", i.unique_key),
        None => "/dashboard/integrations".into(),
    };
    let now = st.core.clock.now();
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        section.card aria-labelledby="guide" {
            h2 #guide { "Setup guide: register the app in Microsoft Entra" }
            ol {
                li { "In the " a href="https://entra.microsoft.com/#view/Microsoft_AAD_RegisteredApps/ApplicationsListBlade" { "Entra admin center" } ", open " em { "App registrations → New registration" } "." }
                li { "Choose the " strong { "supported account types" } " matching the account type below." }
                li { "Under " em { "Redirect URI" } ", pick " strong { "Web" } " and paste exactly:" pre #redirect-uri { (redirect_uri) } }
                li { "Copy the " strong { "Application (client) ID" } " into Client id below." }
                li { "Under " em { "Certificates & secrets" } ", create a " strong { "client secret" } "; copy its " em { "Value" } " (not its id) and its expiry date below." }
                li { "Under " em { "API permissions" } ", add the " strong { "delegated" } " Microsoft Graph permissions you tick below. Tenants that block user consent need an admin to grant consent." }
            }
            p.hint { "The full guide: docs/onedrive-for-business-setup.md." }
        }
        form.card method="post" action=(action) {
            (csrf_field(csrf))
            @if existing.is_none() {
                label for="unique_key" { "Integration key" }
                p.hint id="key-hint" { "What apps send as provider_config_key, e.g. one-drive. Letters, digits, - and _." }
                input #unique_key type="text" name="unique_key" required value=(values.unique_key) aria-describedby="key-hint";
                label for="provider" { "Provider" }
                select #provider name="provider" {
                    @for p in st.core.catalog.all() {
                        option value=(p.name) selected[p.name == values.provider] { (p.display_name) " (" (p.name) ")" }
                    }
                }
            }
            label for="display_name" { "Display name" }
            input #display_name type="text" name="display_name" value=(values.display_name);
            label for="client_id" { "Client id (Application id)" }
            input #client_id type="text" name="client_id" required value=(values.client_id);
            label for="client_secret" { "Client secret value" }
            @if existing.is_some() { p.hint id="secret-hint" { "Leave empty to keep the stored secret." } }
            input #client_secret type="password" name="client_secret" autocomplete="off" required[existing.is_none()] aria-describedby="secret-hint";
            label for="client_secret_expires_at" { "Client secret expires on" }
            p.hint id="exp-hint" { "From Entra's Certificates & secrets page. The dashboard warns " (WARN_DAYS) ", 14 and 3 days before." }
            input #client_secret_expires_at type="date" name="client_secret_expires_at" value=(values.expires_at) aria-describedby="exp-hint";
            @if let Some(i) = existing { div #credential-expiry { (super::expiry::note(i, now)) } }
            fieldset {
                legend { "Account type" }
                @for (value, text) in ACCOUNT_TYPES {
                    div.check {
                        input type="radio" name="account_type" id=(format!("at-{value}")) value=(value) checked[values.account_type == *value];
                        " " label for=(format!("at-{value}")) { (text) }
                    }
                }
                label for="tenant_id" { "Directory (tenant) id, for single tenant" }
                input #tenant_id type="text" name="tenant_id" value=(values.tenant_id);
            }
            fieldset {
                legend { "Scopes (delegated permissions)" }
                p.hint { strong { "Sites.Read.All" } " is needed for the SharePoint token (SharePoint REST calls through the proxy)." }
                @for (scope, what) in SCOPES {
                    div.check {
                        input type="checkbox" name="scope" id=(format!("scope-{scope}")) value=(scope) checked[values.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))];
                        " " label for=(format!("scope-{scope}")) { code { (scope) } " — " (what) }
                    }
                }
                label for="extra_scopes" { "Other scopes (space separated)" }
                input #extra_scopes type="text" name="extra_scopes" value=(values.extra_scopes);
            }
            p { button type="submit" { @if existing.is_some() { "Save changes" } @else { "Create integration" } } }
        }
    }
}

/// What the form shows (on first render, or re-rendered after an error).
#[derive(Default)]
struct FormValues {
    unique_key: String,
    provider: String,
    display_name: String,
    client_id: String,
    expires_at: String,
    account_type: String,
    tenant_id: String,
    scopes: Vec<String>,
    extra_scopes: String,
}

impl FormValues {
    fn from_integration(i: &Integration) -> Self {
        let tenant = i.integration_config.get("tenant").cloned();
        let (account_type, tenant_id) = match tenant.as_deref() {
            None | Some("organizations") => ("organizations".to_owned(), String::new()),
            Some("common") => ("common".to_owned(), String::new()),
            Some(t) => ("single".to_owned(), t.to_owned()),
        };
        let known = |s: &str| SCOPES.iter().any(|(k, _)| k.eq_ignore_ascii_case(s));
        FormValues {
            unique_key: i.unique_key.to_string(),
            provider: i.provider.clone(),
            display_name: i.display_name.clone().unwrap_or_default(),
            client_id: i.client_id.clone(),
            expires_at: i
                .app_credential
                .secret_expires_at
                .map(|t| t.format("%Y-%m-%d").to_string())
                .or_else(|| i.integration_config.get(LEGACY_EXPIRES_KEY).cloned())
                .unwrap_or_default(),
            account_type,
            tenant_id,
            scopes: i.scopes.iter().filter(|s| known(s)).cloned().collect(),
            extra_scopes: i
                .scopes
                .iter()
                .filter(|s| !known(s))
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Parses the submitted form (repeated `scope` fields, so not serde).
    fn parse(body: &[u8]) -> (Self, String, String) {
        let mut v = FormValues::default();
        let (mut csrf, mut secret) = (String::new(), String::new());
        for (k, val) in form_urlencoded::parse(body) {
            let val = val.trim().to_owned();
            match &*k {
                "csrf" => csrf = val,
                "unique_key" => v.unique_key = val,
                "provider" => v.provider = val,
                "display_name" => v.display_name = val,
                "client_id" => v.client_id = val,
                "client_secret" => secret = val,
                "client_secret_expires_at" => v.expires_at = val,
                "account_type" => v.account_type = val,
                "tenant_id" => v.tenant_id = val,
                "scope" => v.scopes.push(val),
                "extra_scopes" => v.extra_scopes = val,
                _ => {}
            }
        }
        (v, csrf, secret)
    }

    /// The entered client secret expiry (midnight UTC of the date), or a message for the user.
    fn expires_at(&self) -> Result<Option<DateTime<Utc>>, String> {
        if self.expires_at.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(&self.expires_at, "%Y-%m-%d")
            .map(|d| Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()))
            .map_err(|_| "The client secret expiry must be a date (YYYY-MM-DD).".into())
    }

    /// Validates into (scopes, integration_config changes), or a message for the user.
    fn validate(
        &self,
        st: &AppState,
        base_config: &BTreeMap<String, String>,
    ) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
        if self.client_id.is_empty() {
            return Err("Client id is required.".into());
        }
        let mut config = base_config.clone();
        match self.account_type.as_str() {
            "organizations" | "common" => {
                config.insert("tenant".into(), self.account_type.clone());
            }
            "single" => {
                let t = &self.tenant_id;
                if t.is_empty()
                    || !t
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err("A single-tenant integration needs the directory (tenant) id (a GUID) or its domain.".into());
                }
                config.insert("tenant".into(), t.clone());
            }
            "" => {}
            _ => return Err("Choose an account type.".into()),
        }
        config.remove(LEGACY_EXPIRES_KEY);
        self.expires_at()?;
        let mut scopes: Vec<String> = Vec::new();
        for s in self
            .scopes
            .iter()
            .map(String::as_str)
            .chain(self.extra_scopes.split([' ', ',']))
            .filter(|s| !s.is_empty())
        {
            if !s
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '<')
            {
                return Err(format!("{s:?} is not a valid scope."));
            }
            if !scopes.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                scopes.push(s.to_owned());
            }
        }
        if !self.provider.is_empty() && st.core.catalog.get(&self.provider).is_none() {
            return Err(format!("Unknown provider {:?}.", self.provider));
        }
        Ok((scopes, config))
    }
}

pub async fn new_form(State(st): State<AppState>, admin: Admin) -> Response {
    let values = FormValues {
        provider: "one-drive".into(),
        account_type: "organizations".into(),
        scopes: [
            "offline_access",
            "User.Read",
            "Files.ReadWrite.All",
            "Sites.Read.All",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    Html(
        page(
            "New integration",
            Some(&admin.csrf),
            html! { h1 { "New integration" } (form(&st, &admin.csrf, None, None, &values)) },
        )
        .into_string(),
    )
    .into_response()
}

fn form_error(
    st: &AppState,
    admin: &Admin,
    existing: Option<&Integration>,
    values: &FormValues,
    msg: &str,
) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(
            page(
                "Check the form",
                Some(&admin.csrf),
                html! { h1 { "Check the form" } (form(st, &admin.csrf, existing, Some(msg), values)) },
            )
            .into_string(),
        ),
    )
        .into_response()
}

pub async fn create(State(st): State<AppState>, admin: Admin, body: axum::body::Bytes) -> Response {
    let (values, csrf, secret) = FormValues::parse(&body);
    if let Err(r) = admin.check_csrf(&csrf) {
        return *r;
    }
    let Ok(key) = ProviderConfigKey::parse(&values.unique_key) else {
        return form_error(
            &st,
            &admin,
            None,
            &values,
            "The integration key may use letters, digits, - and _ only.",
        );
    };
    if secret.is_empty() {
        return form_error(&st, &admin, None, &values, "The client secret is required.");
    }
    let (scopes, config) = match values.validate(&st, &BTreeMap::new()) {
        Ok(v) => v,
        Err(m) => return form_error(&st, &admin, None, &values, &m),
    };
    let new = NewIntegration {
        unique_key: key.clone(),
        provider: values.provider.clone(),
        display_name: Some(values.display_name.clone()).filter(|s| !s.is_empty()),
        client_id: values.client_id.clone(),
        client_secret: ClientSecret::new(secret),
        scopes,
        forward_webhooks: true,
        integration_config: config,
    };
    let app_credential = AppCredential {
        secret_expires_at: values.expires_at().ok().flatten(),
        ..Default::default()
    };
    match st.core.create_integration(new, app_credential).await {
        Ok(_) => Redirect::to(&format!("/dashboard/integrations/{key}")).into_response(),
        Err(CoreError::Store(StoreError::Conflict(_))) => form_error(
            &st,
            &admin,
            None,
            &values,
            "An integration with this key already exists.",
        ),
        Err(e) => internal(e),
    }
}

async fn load(st: &AppState, key: &str) -> Result<Integration, PageError> {
    let not_found = || {
        PageError::NotFound(
            "There is no integration with this key.",
            "/dashboard/integrations",
            "Back to integrations",
        )
    };
    let key = ProviderConfigKey::parse(key).map_err(|_| not_found())?;
    st.core.get_integration(&key).await?.ok_or_else(not_found)
}

pub async fn show(
    State(st): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let i = load(&st, &key).await?;
    let values = FormValues::from_integration(&i);
    Ok(Html(
        page(
            &format!("Integration {}", i.unique_key),
            Some(&admin.csrf),
            html! {
                h1 { "Integration " code { (i.unique_key.as_str()) } }
                p { a href=(format!("/dashboard/connections?integration={}", i.unique_key)) { "Its connections" } }
                (form(&st, &admin.csrf, Some(&i), None, &values))
                form.card method="post" action=(format!("/dashboard/integrations/{}/delete", i.unique_key)) {
                    (csrf_field(&admin.csrf))
                    h2 { "Delete" }
                    p { "Deleting the integration also deletes its connections. Users will have to connect again." }
                    button.danger type="submit" { "Delete integration" }
                }
            },
        )
        .into_string(),
    )
    .into_response())
}

pub async fn update(
    State(st): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (values, csrf, secret) = FormValues::parse(&body);
    if let Err(r) = admin.check_csrf(&csrf) {
        return *r;
    }
    let cur = match load(&st, &key).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let (scopes, config) = match values.validate(&st, &cur.integration_config) {
        Ok(v) => v,
        Err(m) => return form_error(&st, &admin, Some(&cur), &values, &m),
    };
    let secret_changed = !secret.is_empty();
    let new = NewIntegration {
        unique_key: cur.unique_key.clone(),
        provider: cur.provider.clone(),
        display_name: Some(values.display_name.clone()).filter(|s| !s.is_empty()),
        client_id: values.client_id.clone(),
        client_secret: if !secret_changed {
            cur.client_secret.clone()
        } else {
            ClientSecret::new(secret)
        },
        scopes,
        forward_webhooks: cur.forward_webhooks,
        integration_config: config,
    };
    // The entered secret expiry goes with the certificate the integration keeps.
    let app_credential = AppCredential {
        secret_expires_at: values.expires_at().ok().flatten(),
        ..cur.app_credential.clone()
    };
    if let Err(e) = st
        .core
        .update_integration(&cur.unique_key, new, Some(app_credential))
        .await
    {
        return internal(e);
    }
    Redirect::to(&format!("/dashboard/integrations/{}", cur.unique_key)).into_response()
}

pub async fn delete(
    State(st): State<AppState>,
    Path(key): Path<String>,
    AdminPost(_): AdminPost,
) -> Result<Response, PageError> {
    let cur = load(&st, &key).await?;
    st.core.delete_integration(&cur.unique_key).await?;
    Ok(Redirect::to("/dashboard/integrations").into_response())
}
