//! The admin dashboard over plain HTTP (reqwest, cookies by hand): `GET /` for browsers, sign-in
//! with the secret key or the admin login, the login form's double-submit CSRF cookie, CSRF on
//! dashboard POSTs, creating and editing an integration through its forms (with the credential
//! expiry badges), connection statuses (healthy / must reconnect / app misconfigured) and the
//! overview's auth events and webhook deliveries read from the outbox, and the change feed's
//! panel with its resync button.

use chrono::TimeDelta;
use grantd::clock::Clock;
use grantd::config::{AdminLogin, LifecycleConfig};
use grantd::jobs;
use grantd::model::ApiKey;
use grantd_emulator::control::NewSecret;
use grantd_emulator::seed;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{Opts, SECRET, TestApp};
use crate::support::db::DbKind;
use crate::support::webhook_receiver::Receiver;

const ADMIN_USER: &str = "ops";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

async fn spawn(lifecycle: Option<LifecycleConfig>) -> TestApp {
    spawn_on(DbKind::SqliteFile, lifecycle)
        .await
        .expect("SQLite is always available")
}

/// `None` when the database kind is unavailable (the skip was printed).
async fn spawn_on(db: DbKind, lifecycle: Option<LifecycleConfig>) -> Option<TestApp> {
    TestApp::spawn_configured(
        Opts {
            db,
            lifecycle,
            ..Default::default()
        },
        |c| {
            c.admin = Some(AdminLogin {
                user: ADMIN_USER.into(),
                password: ApiKey::new(ADMIN_PASSWORD),
            })
        },
    )
    .await
}

/// The value of cookie `name` set by a response, if any.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The first hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("the page has a CSRF field")
        + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// The `<tr …>` row whose opening tag contains `marker`, up to its `</tr>`.
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no row {marker} in {html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

/// GETs the login page: (its form token, its `grantd_login_csrf` cookie).
async fn login_page(app: &TestApp) -> (String, String) {
    let r = app
        .http
        .get(format!("{}/dashboard/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = set_cookie(&r, "grantd_login_csrf").expect("the login page sets its CSRF cookie");
    (csrf_field(&r.text().await.unwrap()), cookie)
}

async fn post_login<F: serde::Serialize + ?Sized>(
    app: &TestApp,
    cookie: Option<&str>,
    form: &F,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(format!("{}/dashboard/login", app.url))
        .form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("grantd_login_csrf={c}"));
    }
    req.send().await.unwrap()
}

/// A signed-in dashboard session.
struct Dash<'a> {
    app: &'a TestApp,
    cookie: String,
}

impl<'a> Dash<'a> {
    async fn sign_in(app: &'a TestApp, user: &str, password: &str) -> Dash<'a> {
        let (token, cookie) = login_page(app).await;
        let r = post_login(
            app,
            Some(&cookie),
            &[("username", user), ("password", password), ("csrf", &token)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/dashboard");
        let session = set_cookie(&r, "grantd_dashboard").expect("a session cookie");
        Dash {
            app,
            cookie: format!("grantd_dashboard={session}"),
        }
    }

    async fn get(&self, path: &str) -> String {
        let r = self
            .app
            .http
            .get(format!("{}{path}", self.app.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    /// The CSRF token of the signed-in session (from any page).
    async fn csrf(&self) -> String {
        csrf_field(&self.get("/dashboard").await)
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.app
            .http
            .post(format!("{}{path}", self.app.url))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_browser_at_the_root_goes_to_the_dashboard() {
    let app = spawn(None).await;
    let r = app.http.get(format!("{}/", app.url)).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/dashboard");
    // Signed out, the dashboard sends it on to the login page.
    let r = app
        .http
        .get(format!("{}/dashboard", app.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/dashboard/login");
}

#[tokio::test]
async fn admin_user_and_secret_key_sign_in_wrong_password_is_refused() {
    let app = spawn(None).await;
    // Wrong password: 401, the form again (with a fresh token), no session.
    let (token, cookie) = login_page(&app).await;
    let r = post_login(
        &app,
        Some(&cookie),
        &[
            ("username", ADMIN_USER),
            ("password", "not the password"),
            ("csrf", &token),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&r, "grantd_dashboard").is_none());
    assert!(set_cookie(&r, "grantd_login_csrf").is_some());
    assert!(r.text().await.unwrap().contains("not valid"));
    // The secret key is not the admin's password.
    let (token, cookie) = login_page(&app).await;
    let r = post_login(
        &app,
        Some(&cookie),
        &[
            ("username", ADMIN_USER),
            ("password", SECRET),
            ("csrf", &token),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let admin = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    assert!(admin.get("/dashboard").await.contains("<h1>Overview</h1>"));
    let by_key = Dash::sign_in(&app, "", SECRET).await;
    assert!(
        by_key
            .get("/dashboard/integrations")
            .await
            .contains("<h1>Integrations</h1>")
    );
    // A forged session cookie is not a session.
    let r = app
        .http
        .get(format!("{}/dashboard", app.url))
        .header("cookie", "grantd_dashboard=99999999999.00.00")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/dashboard/login");
}

#[tokio::test]
async fn login_form_needs_its_double_submit_token() {
    let app = spawn(None).await;
    let with = |token: &str| {
        vec![
            ("username", ADMIN_USER.to_owned()),
            ("password", ADMIN_PASSWORD.to_owned()),
            ("csrf", token.to_owned()),
        ]
    };
    let (token, cookie) = login_page(&app).await;
    let (other_token, _) = login_page(&app).await;
    let cases = [
        // A cross-site form: no cookie (SameSite=Strict) and no token.
        (None, with("")),
        // The token without its cookie.
        (None, with(&token)),
        // The cookie without the token.
        (Some(cookie.as_str()), with("")),
        // The token of another page load.
        (Some(cookie.as_str()), with(&other_token)),
    ];
    for (c, form) in &cases {
        let r = post_login(&app, *c, form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "cookie {c:?}");
        assert!(set_cookie(&r, "grantd_dashboard").is_none());
    }
    // The matching pair signs in and the token is spent.
    let r = post_login(&app, Some(&cookie), &with(&token)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(set_cookie(&r, "grantd_login_csrf").as_deref(), Some(""));
}

#[tokio::test]
async fn dashboard_posts_without_the_right_csrf_token_are_refused() {
    let app = spawn(None).await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let form = |csrf: &'static str| {
        vec![
            ("unique_key", "forged"),
            ("provider", "one-drive"),
            ("client_id", seed::DEV_CLIENT_ID),
            ("client_secret", seed::DEV_CLIENT_SECRET),
            ("account_type", "organizations"),
            ("scope", "User.Read"),
            ("csrf", csrf),
        ]
    };
    let mut no_token = form("");
    no_token.pop();
    for f in [no_token, form("0000"), form("")] {
        let r = dash.post("/dashboard/integrations", &f).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // Another session's token does not fit this one.
    let other = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let other_csrf = other.csrf().await;
    let mut f = form("");
    f.pop();
    f.push(("csrf", &other_csrf));
    assert_eq!(
        dash.post("/dashboard/integrations", &f).await.status(),
        StatusCode::FORBIDDEN
    );
    let r = dash
        .post("/dashboard/logout", &[("csrf", "nope")])
        .await
        .status();
    assert_eq!(r, StatusCode::FORBIDDEN);
    // Nothing was created.
    let list: Value = app
        .get("/integrations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn integration_forms_create_edit_and_show_expiry_badges() {
    let app = spawn(None).await;
    let dash = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let csrf = dash.csrf().await;
    let new_form = dash.get("/dashboard/integrations/new").await;
    assert!(new_form.contains(&app.state.core.config.callback_url().to_string()));
    let today = app.clock.now();
    let in_days = |d: i64| (today + TimeDelta::days(d)).format("%Y-%m-%d").to_string();
    let far = in_days(200);
    let r = dash
        .post(
            "/dashboard/integrations",
            &[
                ("csrf", &csrf),
                ("unique_key", "od"),
                ("provider", "one-drive"),
                ("display_name", "OneDrive"),
                ("client_id", seed::DEV_CLIENT_ID),
                ("client_secret", seed::DEV_CLIENT_SECRET),
                ("client_secret_expires_at", &far),
                ("account_type", "organizations"),
                ("scope", "offline_access"),
                ("scope", "User.Read"),
                ("scope", "Files.Read"),
                ("extra_scopes", "Mail.Read"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/dashboard/integrations/od");
    // The API sees what the form entered, including the expiry as the app credential's.
    let api: Value = app
        .get("/integrations/od?include=credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &api["data"];
    assert_eq!(d["display_name"], "OneDrive", "{api}");
    assert_eq!(d["credentials_expiry"]["state"], "ok", "{api}");
    assert_eq!(d["credentials_expiry"]["credential"], "client_secret");
    let list = dash.get("/dashboard/integrations").await;
    assert!(list.contains(r#"data-expiry="ok""#), "{list}");

    // Edit: 10 days left (the 14-day stage), secret kept, scopes changed, single tenant.
    let soon = in_days(10);
    let r = dash
        .post(
            "/dashboard/integrations/od",
            &[
                ("csrf", &csrf),
                ("display_name", "OneDrive for Business"),
                ("client_id", seed::DEV_CLIENT_ID),
                ("client_secret", ""),
                ("client_secret_expires_at", &soon),
                ("account_type", "single"),
                ("tenant_id", seed::CONTOSO_TENANT_ID),
                ("scope", "offline_access"),
                ("scope", "Files.ReadWrite.All"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let show = dash.get("/dashboard/integrations/od").await;
    assert!(show.contains(r#"data-stage="14""#), "{show}");
    // Whole days left, rounded down from now to the date's midnight (UTC).
    let left = ((today + TimeDelta::days(10))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - today)
        .num_days();
    let soon_text = format!("expires in {left} days");
    assert!(show.contains(&soon_text), "{show}");
    assert!(show.contains(&format!(r#"value="{}""#, seed::CONTOSO_TENANT_ID)));
    let overview = dash.get("/dashboard").await;
    assert!(
        overview.contains(r#"data-integration="od""#) && overview.contains(&soon_text),
        "{overview}"
    );
    let api: Value = app
        .get("/integrations/od?include=credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &api["data"];
    assert_eq!(d["display_name"], "OneDrive for Business", "{api}");
    assert_eq!(d["credentials_expiry"]["state"], "expiring", "{api}");
    assert_eq!(d["credentials"]["client_secret"], seed::DEV_CLIENT_SECRET);
    let scopes = d["credentials"]["scopes"].as_str().unwrap_or_default();
    assert!(
        scopes.contains("Files.ReadWrite.All") && !scopes.contains("Mail.Read"),
        "{api}"
    );

    // Three days on the clock later it is at the 3-day stage; after the date, expired.
    app.clock.advance(7 * 86_400);
    // Sessions last 12 hours: sign in again on the later day.
    let dash = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let show = dash.get("/dashboard/integrations/od").await;
    assert!(show.contains(r#"data-stage="3""#), "{show}");
    app.clock.advance(4 * 86_400);
    let dash = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let csrf = dash.csrf().await;
    let list = dash.get("/dashboard/integrations").await;
    assert!(list.contains(r#"data-expiry="expired""#), "{list}");
    assert!(list.contains("client secret expired"), "{list}");
    let show = dash.get("/dashboard/integrations/od").await;
    assert!(show.contains("App misconfigured"), "{show}");

    // A bad date is refused with a message, and nothing changes.
    let r = dash
        .post(
            "/dashboard/integrations/od",
            &[
                ("csrf", &csrf),
                ("client_id", seed::DEV_CLIENT_ID),
                ("client_secret_expires_at", "next year"),
                ("account_type", "organizations"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("must be a date"));
}

/// The `data-status` of a connection's row on the connections page.
async fn status_of(dash: &Dash<'_>, id: &str) -> String {
    let page = dash.get("/dashboard/connections").await;
    let r = row(&page, &format!(r#"data-connection-id="{id}""#));
    let at = r.find(r#"data-status=""#).unwrap() + r#"data-status=""#.len();
    r[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn connection_statuses_healthy_must_reconnect_and_misconfigured() {
    let app = spawn(None).await;
    app.create_integration("od", "User.Read,Files.Read").await;
    let adele = app.connect("od", "u-adele", seed::ADELE_UPN).await;
    let megan = app.connect("od", "u-megan", seed::MEGAN_UPN).await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let csrf = dash.csrf().await;
    assert_eq!(status_of(&dash, &adele).await, "healthy");
    assert_eq!(status_of(&dash, &megan).await, "healthy");

    // Adele's grant is revoked: the dashboard's refresh finds it out.
    app.emu
        .control()
        .revoke_user(seed::ADELE_UPN)
        .await
        .unwrap();
    let r = dash
        .post(
            &format!("/dashboard/connections/od/{adele}/refresh"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Refresh failed"), "{page}");
    assert_eq!(status_of(&dash, &adele).await, "must reconnect");
    assert_eq!(status_of(&dash, &megan).await, "healthy");

    // The app's secret expires: the app is misconfigured, which is not the user's to fix.
    app.emu
        .control()
        .expire_secret(seed::DEV_CLIENT_ID, None)
        .await
        .unwrap();
    let r = dash
        .post(
            &format!("/dashboard/connections/od/{megan}/refresh"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("AADSTS7000222"), "{page}");
    assert_eq!(status_of(&dash, &megan).await, "app misconfigured");
    assert_eq!(status_of(&dash, &adele).await, "must reconnect");
    let filtered = dash
        .get("/dashboard/connections?status=app+misconfigured")
        .await;
    assert!(
        filtered.contains(&megan)
            && !filtered.contains(&format!(r#"data-connection-id="{adele}""#))
    );
    let overview = dash.get("/dashboard").await;
    assert!(
        overview.contains("Connections needing attention"),
        "{overview}"
    );

    // A new secret pasted into the integration clears "app misconfigured" (not "must reconnect").
    let secret = app
        .emu
        .control()
        .add_secret(
            seed::DEV_CLIENT_ID,
            &NewSecret {
                value: None,
                expires_at: None,
                expires_in_seconds: None,
            },
        )
        .await
        .unwrap()
        .value;
    let r = dash
        .post(
            "/dashboard/integrations/od",
            &[
                ("csrf", csrf.as_str()),
                ("client_id", seed::DEV_CLIENT_ID),
                ("client_secret", secret.as_str()),
                ("account_type", "organizations"),
                ("scope", "User.Read"),
                ("scope", "Files.Read"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&dash, &megan).await, "healthy");
    assert_eq!(status_of(&dash, &adele).await, "must reconnect");
    let r = dash
        .post(
            &format!("/dashboard/connections/od/{megan}/refresh"),
            &[("csrf", &csrf)],
        )
        .await;
    assert!(r.text().await.unwrap().contains("Refreshed."));
    assert_eq!(status_of(&dash, &megan).await, "healthy");
}

#[tokio::test]
async fn overview_lists_auth_events_and_webhook_deliveries_from_the_outbox() {
    outbox_view(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn overview_lists_auth_events_and_webhook_deliveries_on_postgres() {
    outbox_view(DbKind::Postgres).await;
}

async fn outbox_view(kind: DbKind) {
    let rx = Receiver::spawn().await;
    let Some(app) = spawn_on(
        kind,
        Some(LifecycleConfig {
            webhook_url: Some(
                url::Url::parse(&format!("{}?token=receiver-secret", rx.url)).unwrap(),
            ),
            ..Default::default()
        }),
    )
    .await
    else {
        return;
    };
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let empty = dash.get("/dashboard").await;
    assert!(empty.contains("No auth events yet."), "{empty}");
    assert!(empty.contains("No webhooks sent yet."), "{empty}");

    app.create_integration("od", "User.Read,Files.Read").await;
    let id = app.connect("od", "u-1", seed::ADELE_UPN).await;
    // Queued, not yet sent.
    let page = dash.get("/dashboard").await;
    let event = row(&page, "data-event-id=");
    assert!(
        event.contains("creation")
            && event.contains(&id)
            && event.contains(r#"data-result="success""#),
        "{event}"
    );
    let delivery = row(&page, "data-delivery-id=");
    assert!(delivery.contains(r#"data-delivery="queued""#), "{delivery}");
    assert!(
        !page.contains("receiver-secret"),
        "the webhook URL's query is not shown"
    );

    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(run.delivered, 1, "{run:?}");
    let page = dash.get("/dashboard").await;
    assert!(row(&page, "data-delivery-id=").contains(r#"data-delivery="delivered""#));

    // A failed refresh is an event; the receiver answers 503, so its delivery is retried.
    app.emu
        .control()
        .revoke_user(seed::ADELE_UPN)
        .await
        .unwrap();
    let (status, _) = app.connection("od", &id, "&force_refresh=true").await;
    assert_eq!(status, 400);
    rx.set_down(true);
    let run = jobs::outbox::run_once(&app.state.core, app.clock.now())
        .await
        .unwrap();
    assert_eq!(run.failed, 1, "{run:?}");
    let page = dash.get("/dashboard").await;
    // Newest first: the refresh failure, then the creation.
    let event = row(&page, "data-event-id=");
    assert!(
        event.contains("refresh") && event.contains(r#"data-result="failure""#),
        "{event}"
    );
    assert!(event.contains("refresh_token_external_error"), "{event}");
    let delivery = row(&page, "data-delivery-id=");
    assert!(
        delivery.contains(r#"data-delivery="retrying""#),
        "{delivery}"
    );
    assert!(delivery.contains("HTTP 503"), "{delivery}");
    assert!(delivery.contains("<time"), "next attempt shown: {delivery}");
    assert!(page.contains(r#"data-delivery="delivered""#));
}

/// The change feed's panel on a connection's page: "not watched" until a sync starts; the
/// resync button is CSRF-protected, starts a full resync, and the panel then shows the record
/// count, the drive polling (push off), its last run's counts and next run; a selection the feed
/// cannot read is explained in plain words instead of starting anything.
async fn sync_panel(kind: DbKind) {
    let rx = Receiver::spawn().await;
    let Some(app) = spawn_on(
        kind,
        Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
            sync_push: Some(false),
            ..Default::default()
        }),
    )
    .await
    else {
        return;
    };
    app.create_integration("od", "User.Read,Files.Read").await;
    let id = app.connect("od", "u-1", seed::ADELE_UPN).await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let page_path = format!("/dashboard/connections/od/{id}");
    let page = dash.get(&page_path).await;
    assert!(
        page.contains("Change feed") && page.contains("Not watched"),
        "{page}"
    );

    let resync = format!("{page_path}/resync");
    let r = dash.post(&resync, &[("csrf", "forged")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "CSRF-protected");
    let page = dash.get(&page_path).await;
    assert!(
        page.contains("Not watched"),
        "a refused post starts nothing"
    );

    let csrf = dash.csrf().await;
    let r = dash.post(&resync, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Full resync started."), "{page}");
    let got = rx
        .wait_until(|g| g.iter().any(|r| r.json()["type"] == "sync"))
        .await;
    let added: u64 = got
        .iter()
        .filter(|r| r.json()["type"] == "sync")
        .map(|r| r.json()["responseResults"]["added"].as_u64().unwrap())
        .sum();
    assert!(added > 0);
    let page = dash.get(&page_path).await;
    let drive = row(&page, r#"data-drive="me""#);
    assert!(drive.contains(r#"data-push="polling""#), "{drive}");
    assert!(drive.contains(&format!("{added} added")), "{drive}");
    assert!(drive.contains(r#"data-error="""#), "no error: {drive}");
    assert!(
        page.contains(&format!(r#"data-records="{added}""#)),
        "record count shown"
    );

    // A selection the feed cannot read: the button says why, in plain words.
    let r = app
        .post(
            "/connections/metadata",
            &serde_json::json!({"connection_id": id, "provider_config_key": "od", "metadata": {"drives": "not-a-list"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = dash.post(&resync, &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Resync not started: metadata.drives must be an array of drive ids"),
        "{page}"
    );
}

#[tokio::test]
async fn sync_panel_on_sqlite() {
    sync_panel(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn sync_panel_on_postgres() {
    sync_panel(DbKind::Postgres).await;
}

/// Whether `cookie` still opens the dashboard (200), or is sent to sign in (303 to the login).
async fn session_works(http: &reqwest::Client, base: &str, cookie: &str) -> bool {
    let r = http
        .get(format!("{base}/dashboard"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => true,
        s if s.is_redirection() => {
            assert_eq!(r.headers()["location"], "/dashboard/login");
            false
        }
        s => panic!("GET /dashboard answered {s}"),
    }
}

/// Another grantd instance on `app`'s database, with `change` applied to its config (e.g. a new
/// secret key); returns its base URL and the sender that stops it.
async fn second_instance(
    app: &TestApp,
    change: impl FnOnce(&mut grantd::config::Config),
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut config = app.state.core.config.clone();
    change(&mut config);
    let state = grantd::server::AppState::build(config, None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantd::server::start(state, listener, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

#[tokio::test]
async fn sign_out_ends_the_session_and_its_cookie_no_longer_works() {
    let app = spawn(None).await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    assert!(session_works(&app.http, &app.url, &dash.cookie).await);
    let other = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let csrf = dash.csrf().await;
    let r = dash.post("/dashboard/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/dashboard/login");
    // The copied cookie is refused at once, for pages and for forms.
    assert!(!session_works(&app.http, &app.url, &dash.cookie).await);
    let r = dash.post("/dashboard/logout", &[("csrf", &csrf)]).await;
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/dashboard/login");
    // Other sessions go on.
    assert!(session_works(&app.http, &app.url, &other.cookie).await);
    // A made-up or tampered cookie is refused like a missing one.
    // (The last hex digit is changed to one it is not: a fixed replacement would leave the
    // cookie as it was one time in sixteen.)
    let (head, last) = other.cookie.split_at(other.cookie.len() - 1);
    let tampered = format!("{head}{}", if last == "0" { "1" } else { "0" });
    for bad in [
        tampered.as_str(),
        "grantd_dashboard=1.2.3",
        "grantd_dashboard=%00",
    ] {
        assert!(!session_works(&app.http, &app.url, bad).await, "{bad}");
    }
}

#[tokio::test]
async fn a_session_expires_after_twelve_hours() {
    let app = spawn(None).await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    app.clock.advance(12 * 3600 - 60);
    assert!(session_works(&app.http, &app.url, &dash.cookie).await);
    app.clock.advance(120);
    assert!(!session_works(&app.http, &app.url, &dash.cookie).await);
}

/// Sessions are shared by the instances on one database: signing out on B ends the session on
/// A; an instance started with a new secret key (or admin password) refuses every older session,
/// and once one has been presented to it, the instances still on the old key refuse it too.
async fn sessions_across_instances(db: DbKind) {
    let Some(app) = spawn_on(db, None).await else {
        return;
    };
    let (b_url, _stop_b) = second_instance(&app, |_| {}).await;
    let http = &app.http;

    let dash = Dash::sign_in(&app, "", SECRET).await;
    assert!(
        session_works(http, &b_url, &dash.cookie).await,
        "B honours A's session"
    );
    // Sign out on B (the CSRF token is the same on every instance).
    let csrf = dash.csrf().await;
    let r = http
        .post(format!("{b_url}/dashboard/logout"))
        .header("cookie", &dash.cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        !session_works(http, &app.url, &dash.cookie).await,
        "ended on A too"
    );

    // Rotation: C runs with a new secret key.
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let admin = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let (c_url, _stop_c) = second_instance(&app, |c| {
        c.secret_key = ApiKey::new("0b5f3c7e-1d2a-4f6b-9c8d-7e6f5a4b3c2d");
    })
    .await;
    assert!(!session_works(http, &c_url, &dash.cookie).await);
    assert!(
        !session_works(http, &app.url, &dash.cookie).await,
        "gone everywhere"
    );
    assert!(!session_works(http, &c_url, &admin.cookie).await);
    // A new admin password ends sessions the same way.
    let admin = Dash::sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let (d_url, _stop_d) = second_instance(&app, |c| {
        c.admin = Some(AdminLogin {
            user: ADMIN_USER.into(),
            password: ApiKey::new("a new password"),
        })
    })
    .await;
    assert!(!session_works(http, &d_url, &admin.cookie).await);
}

#[tokio::test]
async fn sessions_across_instances_on_sqlite() {
    sessions_across_instances(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn sessions_across_instances_on_postgres() {
    sessions_across_instances(DbKind::Postgres).await;
}

#[tokio::test]
async fn open_picker_from_a_connection_and_see_its_selection() {
    let app = spawn(None).await;
    app.create_integration(
        "one-drive",
        "offline_access,User.Read,Files.Read.All,Sites.Read.All",
    )
    .await;
    let id = app
        .connect("one-drive", "u-dash-picker", seed::ADELE_UPN)
        .await;
    let dash = Dash::sign_in(&app, "", SECRET).await;
    let path = format!("/dashboard/connections/one-drive/{id}");
    let page = dash.get(&path).await;
    assert!(page.contains("Open picker"), "{page}");
    assert!(page.contains("Nothing picked yet"), "{page}");

    // "Open picker" → the hosted picker page for this connection, framed by nobody but grantd.
    let csrf = dash.csrf().await;
    let r = dash
        .post(&format!("{path}/picker"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let prefix = format!("{}/picker?session_token=", app.url);
    assert!(location.starts_with(&prefix), "{location}");
    let token = location[prefix.len()..].to_owned();
    let r = app.http.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains(&format!("frame-ancestors {}", app.url))
    );

    // A pick (as the page posts it) shows up as the connection's selection.
    let r = app
        .http
        .post(format!("{}/picker/picked", app.url))
        .bearer_auth(&token)
        .header("Origin", &app.url)
        .json(&serde_json::json!({"items": [{"id": "01PICKEDITEM", "name": "x.docx", "parentReference": {"driveId": "b!drive"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = dash.get(&path).await;
    let selection = row(&page, r#"data-drive="b!drive""#);
    assert!(selection.contains("01PICKEDITEM"), "{selection}");
    // A forged post (no CSRF token) opens nothing.
    let r = dash.post(&format!("{path}/picker"), &[]).await;
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
}
