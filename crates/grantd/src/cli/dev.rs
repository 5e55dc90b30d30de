//! `grantd dev`: one process with grantd on SQLite (under `.grantd/`), the Microsoft emulator,
//! and a ready `one-drive` integration registered with the emulator's app. Prints what a
//! developer needs next: the dashboard URL, the secret key, a Connect link and a copy-paste curl.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::{Config, MicrosoftHosts};
use crate::connections::sessions::SessionRequest;
use crate::crypto::Cipher;
use crate::model::{ApiKey, ClientSecret, EndUser, NewIntegration, ProviderConfigKey};
use crate::server::{self, AppState};

/// Scopes of the dev integration: `Sites.Read.All` makes the SharePoint token appear.
pub const DEV_SCOPES: &[&str] = &[
    "offline_access",
    "User.Read",
    "Files.ReadWrite.All",
    "Sites.Read.All",
];

#[derive(Debug, Args)]
pub struct DevArgs {
    /// grantd's port.
    #[arg(long, default_value_t = 3003)]
    pub port: u16,
    /// The emulator's port.
    #[arg(long, default_value_t = 4100)]
    pub emulator_port: u16,
    /// Where the SQLite database and the dev keys live.
    #[arg(long, default_value = ".grantd")]
    pub data_dir: PathBuf,
}

/// Keys kept across `grantd dev` restarts so the database stays readable.
#[derive(Serialize, Deserialize)]
struct DevKeys {
    secret_key: String,
    encryption_key: String,
}

fn load_or_create_keys(dir: &std::path::Path) -> anyhow::Result<DevKeys> {
    let path = dir.join("dev-keys.json");
    let mut keys = match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s).with_context(|| {
            format!(
                "{} is corrupt; delete the folder to start over",
                path.display()
            )
        })?,
        Err(_) => {
            let k = DevKeys {
                secret_key: uuid::Uuid::new_v4().to_string(),
                encryption_key: Cipher::generate_key(),
            };
            std::fs::write(&path, serde_json::to_string_pretty(&k)?)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            k
        }
    };
    if let Ok(k) = std::env::var("GRANTD_SECRET_KEY") {
        if !k.is_empty() {
            keys.secret_key = k;
        }
    }
    Ok(keys)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    super::init_tracing();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let keys = load_or_create_keys(&args.data_dir)?;

    let emu_listener = TcpListener::bind(("127.0.0.1", args.emulator_port))
        .await
        .with_context(|| {
            format!(
                "port {} (emulator) is busy; pass --emulator-port",
                args.emulator_port
            )
        })?;
    let emulator =
        grantd_emulator::spawn(grantd_emulator::EmulatorConfig::default(), emu_listener).await?;

    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("port {} is busy; pass --port", args.port))?;
    let db = args.data_dir.join("grantd.db");
    let mut config = Config::for_local(
        ApiKey::new(keys.secret_key.clone()),
        keys.encryption_key,
        format!("sqlite://{}?mode=rwc", db.display()),
        args.port,
        MicrosoftHosts::emulator(&emulator.base_url),
    );
    // Webhooks in dev go to receivers on this machine.
    config.lifecycle.webhook_allow_private = true;
    webhook_env(&mut config, |name| std::env::var(name).ok())?;
    let webhooks = config.lifecycle.webhook_url.as_ref().map_or_else(
        || "off (set GRANTD_WEBHOOK_URL)".to_owned(),
        |u| u.to_string(),
    );
    let state = AppState::build(config, None).await?;
    let key = ProviderConfigKey::parse("one-drive").expect("static key is valid");
    if state.core.get_integration(&key).await?.is_none() {
        state
            .core
            .create_integration(
                NewIntegration {
                    unique_key: key.clone(),
                    provider: "one-drive".into(),
                    display_name: Some("OneDrive for Business (emulator)".into()),
                    client_id: grantd_emulator::seed::DEV_CLIENT_ID.into(),
                    client_secret: ClientSecret::new(grantd_emulator::seed::DEV_CLIENT_SECRET),
                    scopes: DEV_SCOPES.iter().map(|s| s.to_string()).collect(),
                    forward_webhooks: true,
                    integration_config: Default::default(),
                },
                Default::default(),
            )
            .await?;
    }
    let (token, _) = state
        .core
        .create_connect_session(SessionRequest {
            end_user: Some(EndUser {
                id: "dev-user".into(),
                email: Some("adele@contoso.onmicrosoft.com".into()),
                display_name: Some("Adele (dev)".into()),
                tags: None,
                organization: None,
            }),
            allowed_integrations: Some(vec!["one-drive".into()]),
            integrations_config_defaults: serde_json::Value::Null,
            ..Default::default()
        })
        .await?;
    let base = format!("http://localhost:{}", args.port);
    println!(
        r#"
grantd dev is running.

  grantd       {base}
  dashboard    {base}/dashboard   (sign in with the secret key)
  emulator     {emu}   (Entra ID + Graph + SharePoint)
  database     {db}
  secret key   {secret}
  webhooks     {webhooks}

1. Connect a OneDrive for Business account (sign in as adele@contoso.onmicrosoft.com, password "emulator"):
   {link}

2. List her drives through the proxy (the connection id is on the success page, or GET /connections):
   curl -s {base}/proxy/v1.0/me/drives \
     -H "Authorization: Bearer {secret}" \
     -H "Provider-Config-Key: one-drive" \
     -H "Connection-Id: $(curl -s {base}/connections -H 'Authorization: Bearer {secret}' | sed -E 's/.*"connection_id":"([^"]+)".*/\1/')"

The connect link is valid for 30 minutes; restart grantd dev for a new one. Ctrl-C stops everything.
"#,
        emu = emulator.base_url,
        db = db.display(),
        secret = keys.secret_key,
        link = state.core.connect_link(&token),
    );
    // The same background jobs as `serve`: proactive refresh and webhook delivery.
    let jobs = crate::jobs::spawn(state.core.clone());
    server::start(state, listener, super::shutdown_signal()).await?;
    jobs.abort();
    Ok(())
}

/// Auth webhooks go where `serve` would send them: `GRANTD_WEBHOOK_URL` and
/// `GRANTD_WEBHOOK_SIGNING_KEY` apply to `grantd dev` too.
fn webhook_env(config: &mut Config, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    if let Some(url) = get("GRANTD_WEBHOOK_URL").filter(|u| !u.is_empty()) {
        let url = url::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .context("GRANTD_WEBHOOK_URL must be an http(s) URL")?;
        config.lifecycle.webhook_url = Some(url);
    }
    if let Some(key) = get("GRANTD_WEBHOOK_SIGNING_KEY").filter(|k| !k.is_empty()) {
        config.lifecycle.webhook_signing_key = Some(key.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_local(
            ApiKey::new("k"),
            Cipher::generate_key(),
            "sqlite::memory:".into(),
            3003,
            MicrosoftHosts::emulator("http://127.0.0.1:4100"),
        )
    }

    #[test]
    fn dev_honours_the_webhook_variables() {
        let mut c = config();
        webhook_env(&mut c, |n| match n {
            "GRANTD_WEBHOOK_URL" => Some("http://127.0.0.1:9000/hooks".into()),
            "GRANTD_WEBHOOK_SIGNING_KEY" => Some("whsec".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.lifecycle.webhook_url.as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:9000/hooks")
        );
        assert!(c.lifecycle.webhook_signing_key.is_some());

        let mut unset = config();
        webhook_env(&mut unset, |_| None).unwrap();
        assert!(unset.lifecycle.webhook_url.is_none());

        let mut bad = config();
        let e = webhook_env(&mut bad, |n| {
            (n == "GRANTD_WEBHOOK_URL").then(|| "ftp://x".to_owned())
        });
        assert!(e.is_err());
    }
}
