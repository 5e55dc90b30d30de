//! `TestApp`: a real grantd server on an ephemeral port with its own emulator and a fresh
//! database, plus helpers that drive the public API the way an app and a user would.
#![allow(dead_code)] // shared by several test modules; each uses a part

use std::sync::Arc;

use grantd::clock::OffsetClock;
use grantd::config::{Config, MicrosoftHosts};
use grantd::crypto::Cipher;
use grantd::model::ApiKey;
use grantd::server::{self, AppState};
use grantd_emulator::browser::{Browser, Consent, Outcome};
use grantd_emulator::{EmulatorConfig, EmulatorHandle, seed};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::db::{DbKind, TestDb};

pub const SECRET: &str = "3f2c6c1e-9b7a-4d2e-8f10-5a6b7c8d9e0f";

pub struct TestApp {
    /// grantd's base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    pub emu: EmulatorHandle,
    pub http: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<OffsetClock>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Options for [`TestApp::spawn_with`].
#[derive(Debug, Clone)]
pub struct Opts {
    pub db: DbKind,
    pub emulator: EmulatorConfig,
    /// Replaces the config's lifecycle settings (webhook URL, idle period…) when set.
    pub lifecycle: Option<grantd::config::LifecycleConfig>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            db: DbKind::SqliteFile,
            // Small drives keep tests quick; the 1 GiB file is exercised by the proxy tests.
            emulator: EmulatorConfig {
                large_file_size: 8 << 20,
                ..Default::default()
            },
            lifecycle: None,
        }
    }
}

impl TestApp {
    /// grantd on a SQLite file, with an emulator.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Opts::default())
            .await
            .expect("SQLite is always available")
    }

    /// `None` when the database kind is unavailable (the skip was printed).
    pub async fn spawn_with(opts: Opts) -> Option<TestApp> {
        Self::spawn_configured(opts, |_| {}).await
    }

    /// Like `spawn_with`, with a last change to grantd's config (e.g. the dashboard admin login).
    pub async fn spawn_configured(opts: Opts, change: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let db = TestDb::new(opts.db, "grantd HTTP tests").await?;
        let emu = grantd_emulator::spawn(
            opts.emulator,
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .expect("emulator starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config::for_local(
            ApiKey::new(SECRET),
            Cipher::generate_key(),
            db.url().to_owned(),
            port,
            MicrosoftHosts::emulator(&emu.base_url),
        );
        config.public_url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        if let Some(lc) = opts.lifecycle {
            config.lifecycle = lc;
        }
        // Test receivers listen on loopback (as `grantd dev`'s do); abuse tests turn this off.
        config.lifecycle.webhook_allow_private = true;
        change(&mut config);
        let clock = Arc::new(OffsetClock::default());
        let state = AppState::build(config, Some(clock.clone()))
            .await
            .expect("grantd state builds");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server::start(state.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Some(TestApp {
            url: format!("http://127.0.0.1:{port}"),
            emu,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            state,
            clock,
            db,
            stop: Some(stop),
        })
    }

    /// The text of `GET /metrics` (with the secret key).
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(SECRET)
    }

    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(SECRET)
            .json(body)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.url))
            .bearer_auth(SECRET)
    }

    pub fn patch(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .patch(format!("{}{path}", self.url))
            .bearer_auth(SECRET)
            .json(body)
    }

    /// A request to grantd with another bearer than the secret key (a connect or picker session
    /// token, a foreign key…).
    pub fn with_bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(bearer)
    }

    /// A `POST` as grantd's picker page sends it: the picker session token, grantd's own origin.
    pub fn picker_page_post(
        &self,
        path: &str,
        session: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.with_bearer(reqwest::Method::POST, path, session)
            .header("Origin", &self.url)
            .json(body)
    }

    /// Registers a `one-drive` integration on the emulator's dev app.
    pub async fn create_integration(&self, key: &str, scopes: &str) {
        self.create_provider_integration("one-drive", key, scopes)
            .await;
    }

    /// Registers an integration of `provider` (`one-drive`, `one-drive-personal`…) on the
    /// emulator's dev app (multitenant and personal accounts).
    pub async fn create_provider_integration(&self, provider: &str, key: &str, scopes: &str) {
        let r = self
            .post(
                "/integrations",
                &json!({
                    "provider": provider,
                    "unique_key": key,
                    "credentials": {"type": "OAUTH2", "client_id": seed::DEV_CLIENT_ID, "client_secret": seed::DEV_CLIENT_SECRET, "scopes": scopes},
                }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "create integration: {}",
            r.text().await.unwrap()
        );
    }

    /// A connect session token for `end_user_id`.
    pub async fn session(&self, end_user_id: &str, allowed: &[&str]) -> String {
        let r = self
            .post("/connect/sessions", &json!({"end_user": {"id": end_user_id, "email": "user@example.com"}, "allowed_integrations": allowed}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /oauth/connect/{key}` → the authorize URL grantd redirects to.
    pub async fn start_connect(&self, key: &str, token: &str, extra_query: &str) -> String {
        let r = self
            .http
            .get(format!(
                "{}/oauth/connect/{key}?connect_session_token={token}{extra_query}",
                self.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            302,
            "start connect: {}",
            r.text().await.unwrap_or_default()
        );
        r.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Follows the emulator's outcome to grantd's callback; returns (status, html).
    pub async fn deliver(&self, outcome: &Outcome) -> (u16, String) {
        let url = match outcome {
            Outcome::Redirect(u) => u.to_string(),
            other => panic!("expected a redirect to grantd, got {other:?}"),
        };
        assert!(url.starts_with(&self.url), "callback goes to grantd: {url}");
        let r = self.http.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The whole connect flow for `upn`; returns the new connection id.
    pub async fn connect(&self, key: &str, end_user_id: &str, upn: &str) -> String {
        let token = self.session(end_user_id, &[key]).await;
        let authorize = self.start_connect(key, &token, "").await;
        let outcome = Browser::new()
            .authorize(&authorize, Some((upn, seed::PASSWORD)), Consent::Accept)
            .await
            .unwrap();
        let (status, html) = self.deliver(&outcome).await;
        assert_eq!(status, 200, "callback: {html}");
        self.connection_ids(end_user_id)
            .await
            .pop()
            .expect("a connection for the end user")
    }

    pub async fn connection_ids(&self, end_user_id: &str) -> Vec<String> {
        let list: Value = self
            .get(&format!("/connections?endUserId={end_user_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connection_id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn connection(&self, key: &str, id: &str, query: &str) -> (u16, Value) {
        let r = self
            .get(&format!(
                "/connections/{id}?provider_config_key={key}{query}"
            ))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    /// `GET {path}` through grantd's proxy for a connection, answered 200; its JSON body.
    pub async fn proxy_json(&self, path: &str, key: &str, connection_id: &str) -> Value {
        let r = self
            .proxy(reqwest::Method::GET, path, key, connection_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path} through the proxy");
        r.json().await.unwrap()
    }

    pub fn proxy(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        connection_id: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/proxy{path}", self.url))
            .bearer_auth(SECRET)
            .header("Provider-Config-Key", key)
            .header("Connection-Id", connection_id)
    }
}
