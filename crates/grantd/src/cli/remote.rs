//! CLI commands that talk to a running grantd over its HTTP API (`--url`/`GRANTD_URL`,
//! `--secret-key`/`GRANTD_SECRET_KEY`): `integrations list|create|show|delete`,
//! `connections list|show|refresh|delete` and `connect-link`. Human tables by default, `--json`
//! for scripts. Tokens are never printed unless `--reveal-tokens` is given.
//!
//! Exit codes (also in `docs/cli.md`): 0 success, 1 unexpected error, 2 invalid input (usage or
//! HTTP 400/409/422), 3 not found, 4 authentication failed, 5 grantd unreachable or failing (5xx),
//! 6 the connection's credentials could not be refreshed (the user must reconnect or the app is
//! misconfigured).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// An error carrying the process exit code.
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

pub const EXIT_INVALID: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_AUTH: u8 = 4;
pub const EXIT_UNAVAILABLE: u8 = 5;
pub const EXIT_REFRESH_FAILED: u8 = 6;

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    ExitError {
        code,
        message: message.into(),
    }
    .into()
}

#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// grantd's base URL.
    #[arg(
        long,
        env = "GRANTD_URL",
        default_value = "http://localhost:3003",
        global = true
    )]
    pub url: String,
    /// The secret key (Authorization: Bearer …).
    #[arg(long, env = "GRANTD_SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// List integrations.
    List,
    /// Show one integration (with its setup: the redirect URI to register in Entra).
    Show { key: String },
    /// Create an integration.
    Create {
        /// Its unique key (what apps send as provider_config_key).
        key: String,
        /// Provider from the catalog.
        #[arg(long, default_value = "one-drive")]
        provider: String,
        /// Application (client) id from Entra.
        #[arg(long)]
        client_id: String,
        /// Client secret value from Entra.
        #[arg(long, env = "GRANTD_CLIENT_SECRET", hide_env_values = true)]
        client_secret: String,
        /// Scopes, comma or space separated.
        #[arg(
            long,
            default_value = "offline_access,User.Read,Files.ReadWrite.All,Sites.Read.All"
        )]
        scopes: String,
        /// Account type / authority: organizations, common, or a tenant id.
        #[arg(long)]
        tenant: Option<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Delete an integration and its connections.
    Delete { key: String },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections.
    List {
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
        /// Search connection ids and end users.
        #[arg(long)]
        search: Option<String>,
    },
    /// Show one connection (status, token expiry, errors).
    Show {
        id: String,
        #[arg(long)]
        integration: String,
        /// Also print the access and refresh tokens.
        #[arg(long)]
        reveal_tokens: bool,
    },
    /// Refresh a connection's credentials now.
    Refresh {
        id: String,
        #[arg(long)]
        integration: String,
    },
    /// Delete a connection.
    Delete {
        id: String,
        #[arg(long)]
        integration: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Show the change-feed sync (state, last run, counts, last error) of a connection, or of
    /// every watched connection of the integration without one.
    Status {
        id: Option<String>,
        #[arg(long)]
        integration: String,
    },
    /// Run the sync now (`--full`: a full resync, reconciling deletions); without a connection
    /// id, for every watched connection of the integration.
    Trigger {
        id: Option<String>,
        #[arg(long)]
        integration: String,
        #[arg(long)]
        full: bool,
    },
    /// Pause the sync (without a connection id: every watched connection of the integration).
    Pause {
        id: Option<String>,
        #[arg(long)]
        integration: String,
    },
    /// Start a paused sync again (runs it at once); without a connection id, every watched
    /// connection of the integration.
    Start {
        id: Option<String>,
        #[arg(long)]
        integration: String,
    },
}

#[derive(Debug, Args)]
pub struct ConnectLinkArgs {
    /// The integration to connect.
    pub integration: String,
    /// The end user's id in your app.
    #[arg(long, default_value = "cli-user")]
    pub end_user_id: String,
    #[arg(long)]
    pub end_user_email: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    fn new(r: &Remote) -> anyhow::Result<Client> {
        let key = r
            .secret_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                fail(
                    EXIT_INVALID,
                    "no secret key: pass --secret-key or set GRANTD_SECRET_KEY",
                )
            })?;
        let base = r.url.trim_end_matches('/').to_owned();
        if url::Url::parse(&base).is_err() {
            return Err(fail(EXIT_INVALID, format!("--url {base:?} is not a URL")));
        }
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
            base,
            key,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            fail(
                EXIT_UNAVAILABLE,
                format!("cannot reach grantd at {}: {e}", self.base),
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let code = v["error"]["code"].as_str().unwrap_or("");
        let msg = v["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let exit = match status.as_u16() {
            401 | 403 => EXIT_AUTH,
            404 => EXIT_NOT_FOUND,
            _ if code == "invalid_credentials" => EXIT_REFRESH_FAILED,
            400 | 409 | 422 => EXIT_INVALID,
            s if s >= 500 => EXIT_UNAVAILABLE,
            _ => 1,
        };
        Err(fail(exit, format!("{msg} ({code})")))
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("a Value always serialises")
    );
}

pub async fn integrations(r: &Remote, cmd: IntegrationsCommand) -> anyhow::Result<()> {
    let c = Client::new(r)?;
    match cmd {
        IntegrationsCommand::List => {
            let v = c.call(reqwest::Method::GET, "/integrations", None).await?;
            if r.json {
                print_json(&v["data"]);
            } else {
                let rows: Vec<Vec<String>> = v["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        vec![
                            s(&i["unique_key"]),
                            s(&i["provider"]),
                            s(&i["display_name"]),
                            s(&i["created_at"]),
                        ]
                    })
                    .collect();
                table(&["key", "provider", "display name", "created"], &rows);
            }
        }
        IntegrationsCommand::Show { key } => {
            let v = c
                .call(
                    reqwest::Method::GET,
                    &format!("/integrations/{}", enc(&key)),
                    None,
                )
                .await?;
            let d = &v["data"];
            if r.json {
                print_json(d);
            } else {
                println!("key           {}", s(&d["unique_key"]));
                println!("provider      {}", s(&d["provider"]));
                println!("display name  {}", s(&d["display_name"]));
                println!("created       {}", s(&d["created_at"]));
                println!("redirect URI  {}/oauth/callback", c.base);
            }
        }
        IntegrationsCommand::Create {
            key,
            provider,
            client_id,
            client_secret,
            scopes,
            tenant,
            display_name,
        } => {
            let mut body = json!({
                "unique_key": key,
                "provider": provider,
                "display_name": display_name,
                "credentials": {"type": "OAUTH2", "client_id": client_id, "client_secret": client_secret, "scopes": scopes.replace(' ', ",")},
            });
            if let Some(t) = tenant {
                body["integration_config"] = json!({"tenant": t});
            }
            let v = c
                .call(reqwest::Method::POST, "/integrations", Some(body))
                .await?;
            if r.json {
                print_json(&v["data"]);
            } else {
                println!("created integration {}", s(&v["data"]["unique_key"]));
                println!(
                    "register this redirect URI in Entra: {}/oauth/callback",
                    c.base
                );
            }
        }
        IntegrationsCommand::Delete { key } => {
            c.call(
                reqwest::Method::DELETE,
                &format!("/integrations/{}", enc(&key)),
                None,
            )
            .await?;
            if r.json {
                print_json(&json!({"deleted": key}));
            } else {
                println!("deleted integration {key}");
            }
        }
    }
    Ok(())
}

/// Redacts tokens in a connection unless asked to reveal them.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if matches!(k.as_str(), "access_token" | "refresh_token" | "id_token") {
                    *val = json!("***");
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn status_of(c: &Value) -> String {
    let errors = c["errors"].as_array().map(|a| a.len()).unwrap_or(0);
    if errors > 0 {
        return "error".into();
    }
    match c["connection_config"]["sharepointTokenStatus"].as_str() {
        Some(s) if s != "ok" && !s.starts_with("not_requested") => {
            "sharepoint token missing".into()
        }
        _ => "ok".into(),
    }
}

fn print_connection(c: &Value) {
    println!("connection id     {}", s(&c["connection_id"]));
    println!("integration       {}", s(&c["provider_config_key"]));
    println!("end user          {}", s(&c["end_user"]["id"]));
    println!("created           {}", s(&c["created_at"]));
    println!("last refresh      {}", s(&c["last_refreshed_at"]));
    println!("token expires     {}", s(&c["credentials"]["expires_at"]));
    if let Some(sp) = c["connection_config"]["sharepointTokenStatus"].as_str() {
        println!("sharepoint token  {sp}");
    }
    for e in c["errors"].as_array().into_iter().flatten() {
        println!("error             {}", s(&e["message"]));
    }
}

fn connection_path(id: &str, integration: &str, extra: &str) -> String {
    format!(
        "/connections/{}?provider_config_key={}{extra}",
        enc(id),
        enc(integration)
    )
}

pub async fn connections(r: &Remote, cmd: ConnectionsCommand) -> anyhow::Result<()> {
    let c = Client::new(r)?;
    match cmd {
        ConnectionsCommand::List {
            integration,
            search,
        } => {
            let mut q = vec![];
            if let Some(i) = integration {
                q.push(format!("integrationId={}", enc(&i)));
            }
            if let Some(s) = search {
                q.push(format!("search={}", enc(&s)));
            }
            let v = c
                .call(
                    reqwest::Method::GET,
                    &format!("/connections?{}", q.join("&")),
                    None,
                )
                .await?;
            if r.json {
                print_json(&v["connections"]);
            } else {
                let rows: Vec<Vec<String>> = v["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        vec![
                            s(&c["connection_id"]),
                            s(&c["provider_config_key"]),
                            s(&c["end_user"]["id"]),
                            if c["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                                "error".into()
                            } else {
                                "ok".into()
                            },
                            s(&c["created"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "connection id",
                        "integration",
                        "end user",
                        "status",
                        "created",
                    ],
                    &rows,
                );
            }
        }
        ConnectionsCommand::Show {
            id,
            integration,
            reveal_tokens,
        } => {
            let mut v = c
                .call(
                    reqwest::Method::GET,
                    &connection_path(&id, &integration, ""),
                    None,
                )
                .await?;
            if !reveal_tokens {
                redact(&mut v);
            }
            if r.json {
                print_json(&v);
            } else {
                print_connection(&v);
                println!("status            {}", status_of(&v));
            }
        }
        ConnectionsCommand::Refresh { id, integration } => {
            let mut v = c
                .call(
                    reqwest::Method::GET,
                    &connection_path(&id, &integration, "&force_refresh=true"),
                    None,
                )
                .await?;
            redact(&mut v);
            if r.json {
                print_json(&v);
            } else {
                println!(
                    "refreshed {id}; the token now expires {}",
                    s(&v["credentials"]["expires_at"])
                );
            }
        }
        ConnectionsCommand::Delete { id, integration } => {
            c.call(
                reqwest::Method::DELETE,
                &connection_path(&id, &integration, ""),
                None,
            )
            .await?;
            if r.json {
                print_json(&json!({"deleted": id}));
            } else {
                println!("deleted connection {id}");
            }
        }
    }
    Ok(())
}

/// `grantd sync …`: the change feed of one connection (or of every watched connection of the
/// integration when no connection id is given), over `/sync/*`.
pub async fn sync(r: &Remote, cmd: SyncCommand) -> anyhow::Result<()> {
    let c = Client::new(r)?;
    let (path, id, integration, body) = match cmd {
        SyncCommand::Status { id, integration } => {
            let mut q = format!(
                "/sync/status?syncs=user-files&provider_config_key={}",
                enc(&integration)
            );
            if let Some(id) = &id {
                q.push_str(&format!("&connection_id={}", enc(id)));
            }
            let v = c.call(reqwest::Method::GET, &q, None).await?;
            if r.json {
                print_json(&v);
                return Ok(());
            }
            let all = v["syncs"].as_array().cloned().unwrap_or_default();
            if all.is_empty() {
                println!("no watched connection");
            }
            for (i, st) in all.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let last = &st["latestResult"]["OneDriveFile"];
                println!("connection        {}", s(&st["connection_id"]));
                println!("sync              {}", s(&st["name"]));
                println!("status            {}", s(&st["status"]));
                println!("changes noticed   {}", s(&st["frequency"]));
                println!("last finished     {}", s(&st["finishedAt"]));
                println!(
                    "last run          +{} ~{} -{}",
                    s(&last["added"]),
                    s(&last["updated"]),
                    s(&last["deleted"])
                );
                println!(
                    "records           {}",
                    s(&st["recordCount"]["OneDriveFile"])
                );
                if !st["error"].is_null() {
                    println!("last error        {}", s(&st["error"]));
                }
            }
            return Ok(());
        }
        SyncCommand::Trigger {
            id,
            integration,
            full,
        } => ("/sync/trigger", id, integration, Some(full)),
        SyncCommand::Pause { id, integration } => ("/sync/pause", id, integration, None),
        SyncCommand::Start { id, integration } => ("/sync/start", id, integration, None),
    };
    let mut b = json!({"syncs": ["user-files"], "provider_config_key": integration});
    if let Some(id) = &id {
        b["connection_id"] = json!(id);
    }
    if let Some(full) = body {
        b["opts"] = json!({"reset": full});
    }
    let v = c.call(reqwest::Method::POST, path, Some(b)).await?;
    if r.json {
        print_json(&v);
    } else {
        match &id {
            Some(id) => println!("{} for connection {id}: ok", &path[6..]),
            None => println!(
                "{} for every watched connection of {integration}: ok",
                &path[6..]
            ),
        }
    }
    Ok(())
}

pub async fn connect_link(r: &Remote, a: ConnectLinkArgs) -> anyhow::Result<()> {
    let c = Client::new(r)?;
    let mut end_user = json!({"id": a.end_user_id});
    if let Some(e) = a.end_user_email {
        end_user["email"] = json!(e);
    }
    let v = c
        .call(
            reqwest::Method::POST,
            "/connect/sessions",
            Some(json!({"end_user": end_user, "allowed_integrations": [a.integration]})),
        )
        .await?;
    let d = &v["data"];
    if r.json {
        print_json(&json!({"connect_link": d["connect_link"], "expires_at": d["expires_at"]}));
    } else {
        println!("{}", s(&d["connect_link"]));
        eprintln!("(valid until {})", s(&d["expires_at"]));
    }
    Ok(())
}
