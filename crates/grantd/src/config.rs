//! The configuration tree: defaults, then `GRANTD_…` environment variables (every secret also
//! accepts `…_FILE`), then command-line flags applied by `cli`. `Config::from_env` validates
//! everything at once and lists each problem with its fix; `Config::redacted` prints it safely.

use std::time::Duration;

use url::Url;

use crate::model::ApiKey;

/// Where grantd finds Microsoft. Defaults are the global cloud; dev mode and tests point all three
/// at the emulator, and sovereign clouds override them.
#[derive(Debug, Clone)]
pub struct MicrosoftHosts {
    /// Identity platform base, e.g. `https://login.microsoftonline.com`.
    pub login_url: Url,
    /// Graph base, e.g. `https://graph.microsoft.com`.
    pub graph_url: Url,
    /// How a SharePoint host is reached; `{host}` is replaced, e.g. `https://{host}` or
    /// `http://127.0.0.1:4100/_sharepoint/{host}` for the emulator.
    pub sharepoint_url_template: String,
}

impl Default for MicrosoftHosts {
    fn default() -> Self {
        Self {
            login_url: Url::parse("https://login.microsoftonline.com").expect("static URL"),
            graph_url: Url::parse("https://graph.microsoft.com").expect("static URL"),
            sharepoint_url_template: "https://{host}".into(),
        }
    }
}

impl MicrosoftHosts {
    /// All three pointed at one emulator base URL.
    pub fn emulator(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            login_url: Url::parse(base).expect("emulator base URL is valid"),
            graph_url: Url::parse(base).expect("emulator base URL is valid"),
            sharepoint_url_template: format!("{base}/_sharepoint/{{host}}"),
        }
    }

    pub fn sharepoint_base(&self, host: &str) -> String {
        self.sharepoint_url_template.replace("{host}", host)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The backend API key (`Authorization: Bearer …`).
    pub secret_key: ApiKey,
    /// Base64 of 32 bytes; seals new data.
    pub encryption_key: secrecy::SecretString,
    /// Older keys that may still open data sealed before a rotation.
    pub old_encryption_keys: Vec<secrecy::SecretString>,
    pub database_url: String,
    /// Address to bind.
    pub host: String,
    pub port: u16,
    /// Public base URL; the OAuth callback is `{public_url}/oauth/callback`.
    pub public_url: Url,
    pub microsoft: MicrosoftHosts,
    /// Tokens expiring within this margin are refreshed on read (Nango's default is 15 minutes).
    pub refresh_margin: Duration,
    /// Lifetime of connect session tokens.
    pub connect_session_ttl: Duration,
    /// Lifetime of an OAuth flow between the redirect to Microsoft and the callback.
    pub oauth_flow_ttl: Duration,
    /// Upper bound for one proxied call including retries.
    pub proxy_deadline: Duration,
    /// Longest a proxied call waits for its throttled tenant (`GRANTD_THROTTLE_MAX_WAIT_SECS`,
    /// default 10) before it is answered 429 with `Retry-After` instead; never past the deadline.
    pub throttle_max_wait: Duration,
    /// Extra hosts `Base-Url-Override` may target, beyond the provider's own.
    pub proxy_allowed_hosts: Vec<String>,
    /// Token lifecycle: background refresh and auth webhooks.
    pub lifecycle: LifecycleConfig,
    /// Dashboard login besides the secret key (`GRANTD_ADMIN_USER` + `GRANTD_ADMIN_PASSWORD`).
    pub admin: Option<AdminLogin>,
    /// A bearer token that may read `/metrics` besides the secret key (`GRANTD_METRICS_TOKEN`),
    /// so a scraper need not hold the API key.
    pub metrics_token: Option<ApiKey>,
    /// Connection cap and header-read / idle timeout (`crate::listener`).
    pub limits: Limits,
    /// Which threads answer requests (`GRANTD_RUNTIME`, `GRANTD_WORKER_THREADS`,
    /// `GRANTD_EVENT_INTERVAL`; `crate::runtime`).
    pub runtime: crate::runtime::Shape,
}

/// A dashboard user name and password; the password compares in constant time.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    pub user: String,
    pub password: ApiKey,
}

/// Background refresh and webhook settings (`GRANTD_WEBHOOK_URL`, `GRANTD_WEBHOOK_SIGNING_KEY`,
/// `GRANTD_IDLE_REFRESH_SECS`, `GRANTD_PROACTIVE_REFRESH_SECS`, `GRANTD_JOBS_INTERVAL_SECS`,
/// `GRANTD_REFRESH_CONCURRENCY`).
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Where auth webhooks go (a connection's `webhook_url_override` replaces it). None: no
    /// webhooks, except to connections with an override.
    pub webhook_url: Option<Url>,
    /// Signs webhooks (`X-Nango-Hmac-Sha256`, `X-Nango-Signature`); defaults to the secret key,
    /// as Nango did before signing keys existed.
    pub webhook_signing_key: Option<secrecy::SecretString>,
    /// Refresh every connection whose refresh token has not been used for this long (Microsoft
    /// expires them after 90 days idle). Default 30 days.
    pub idle_refresh_after: Duration,
    /// When set, also refresh access tokens expiring within this window ahead of time.
    pub proactive_refresh_window: Option<Duration>,
    /// How often the background jobs run.
    pub jobs_interval: Duration,
    /// Refreshes in flight at once per instance (background job).
    pub refresh_concurrency: usize,
    /// Deliver webhooks to loopback and private addresses too (`GRANTD_WEBHOOK_ALLOW_PRIVATE`,
    /// local development; `grantd dev` sets it). Off: webhooks go through the SSRF guard.
    pub webhook_allow_private: bool,
    /// Change feed: subscribe to Graph change notifications at `{public_url}/sync/notifications`
    /// (`GRANTD_SYNC_PUSH`). `None`: when the public URL is `https` (Graph posts only there).
    pub sync_push: Option<bool>,
    /// Change feed: how often a watched drive without working push is polled
    /// (`GRANTD_SYNC_POLL_SECS`, default 300).
    pub sync_poll_interval: Duration,
    /// Change feed: how long a run holds its drive (`GRANTD_SYNC_LEASE_SECS`, default 900, at
    /// least 30). The run extends it while it works; it bounds how long a killed instance's
    /// run keeps the drive from the others.
    pub sync_lease: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_signing_key: None,
            idle_refresh_after: Duration::from_secs(30 * 86400),
            proactive_refresh_window: None,
            jobs_interval: Duration::from_secs(60),
            refresh_concurrency: 4,
            webhook_allow_private: false,
            sync_push: None,
            sync_poll_interval: Duration::from_secs(300),
            sync_lease: Duration::from_secs(900),
        }
    }
}

impl Config {
    /// A config for tests and dev mode: everything explicit, nothing read from the environment.
    pub fn for_local(
        secret_key: ApiKey,
        encryption_key: String,
        database_url: String,
        port: u16,
        microsoft: MicrosoftHosts,
    ) -> Self {
        Self {
            secret_key,
            encryption_key: encryption_key.into(),
            old_encryption_keys: vec![],
            database_url,
            host: "127.0.0.1".into(),
            port,
            public_url: Url::parse(&format!("http://localhost:{port}")).expect("valid URL"),
            microsoft,
            refresh_margin: Duration::from_secs(15 * 60),
            connect_session_ttl: Duration::from_secs(30 * 60),
            oauth_flow_ttl: Duration::from_secs(15 * 60),
            proxy_deadline: Duration::from_secs(120),
            throttle_max_wait: Duration::from_secs(10),
            proxy_allowed_hosts: vec![],
            lifecycle: LifecycleConfig::default(),
            admin: None,
            metrics_token: None,
            limits: Limits::default(),
            runtime: crate::runtime::Shape::default(),
        }
    }

    /// Reads `GRANTD_…` variables through `get` (the environment in production, a map in tests)
    /// and validates them. On failure, the error lists every problem with its fix.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let secret = |name: &str, problems: &mut Vec<String>| -> Option<String> {
            if let Some(v) = get(name) {
                return Some(v);
            }
            let file_var = format!("{name}_FILE");
            let path = get(&file_var)?;
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(s.trim().to_owned()),
                Err(e) => {
                    problems.push(format!("{file_var}: cannot read {path}: {e}"));
                    None
                }
            }
        };

        let (secret_key, encryption_key, old_encryption_keys) = key_vars(&secret, &mut problems);

        let port = match get("GRANTD_PORT") {
            None => 3003,
            Some(p) => p.parse().unwrap_or_else(|_| {
                problems.push(format!("GRANTD_PORT: {p:?} is not a port number (1-65535)"));
                0
            }),
        };
        let host = get("GRANTD_HOST").unwrap_or_else(|| "0.0.0.0".into());
        let public_url = url_var(
            &get,
            "GRANTD_PUBLIC_URL",
            &format!("http://localhost:{port}"),
            &mut problems,
        );
        let database_url = get("GRANTD_DATABASE_URL")
            .unwrap_or_else(|| "sqlite://./data/grantd.db?mode=rwc".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            problems.push("GRANTD_DATABASE_URL: must start with sqlite: (embedded, the default) or postgres://".into());
        }
        let microsoft = microsoft_vars(&get, &mut problems);
        problems.extend(cleartext_problems(&microsoft));
        let refresh_margin = secs_var(&get, "GRANTD_REFRESH_MARGIN_SECS", 15 * 60, &mut problems);
        let proxy_deadline = secs_var(&get, "GRANTD_PROXY_DEADLINE_SECS", 120, &mut problems);
        let throttle_max_wait = secs_var(&get, "GRANTD_THROTTLE_MAX_WAIT_SECS", 10, &mut problems);
        let proxy_allowed_hosts = get("GRANTD_PROXY_ALLOWED_HOSTS")
            .map(|s| {
                s.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();

        let admin = admin_vars(&get, &secret, &mut problems);

        let lifecycle = lifecycle_vars(&get, &secret, &mut problems);
        let limits = Limits::from_vars(&get, &mut problems);
        let runtime = crate::runtime::Shape::from_vars(&get, &mut problems);

        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Self {
            secret_key: secret_key.expect("checked above"),
            encryption_key: encryption_key.expect("checked above").into(),
            old_encryption_keys: old_encryption_keys.into_iter().map(Into::into).collect(),
            database_url,
            host,
            port,
            public_url,
            microsoft,
            refresh_margin,
            connect_session_ttl: Duration::from_secs(30 * 60),
            oauth_flow_ttl: Duration::from_secs(15 * 60),
            proxy_deadline,
            throttle_max_wait,
            proxy_allowed_hosts,
            lifecycle,
            admin,
            metrics_token: secret("GRANTD_METRICS_TOKEN", &mut problems).map(ApiKey::new),
            limits,
            runtime,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// `{public_url}/oauth/callback`, the redirect URI to register in Entra.
    pub fn callback_url(&self) -> String {
        format!(
            "{}/oauth/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// The effective configuration with secrets shown as `***` (for `grantd config check`).
    pub fn redacted(&self) -> String {
        let db = crate::validate::redacted_url(&self.database_url);
        format!(
            "secret_key = ***\nencryption_key = *** (+{} old)\ndatabase_url = {db}\nlisten = {}:{}\npublic_url = {}\ncallback_url = {}\nmicrosoft.login_url = {}\nmicrosoft.graph_url = {}\nmicrosoft.sharepoint_url = {}\nrefresh_margin_secs = {}\nproxy_deadline_secs = {}\nthrottle_max_wait_secs = {}\nproxy_allowed_hosts = {:?}\nruntime = {}\n",
            self.old_encryption_keys.len(),
            self.host,
            self.port,
            self.public_url,
            self.callback_url(),
            self.microsoft.login_url,
            self.microsoft.graph_url,
            self.microsoft.sharepoint_url_template,
            self.refresh_margin.as_secs(),
            self.proxy_deadline.as_secs(),
            self.throttle_max_wait.as_secs(),
            self.proxy_allowed_hosts,
            self.runtime.describe(),
        )
    }
}

/// The API key, the encryption key and the old encryption keys; each problem listed.
fn key_vars(
    secret: &impl Fn(&str, &mut Vec<String>) -> Option<String>,
    problems: &mut Vec<String>,
) -> (Option<ApiKey>, Option<String>, Vec<String>) {
    let secret_key = match secret("GRANTD_SECRET_KEY", problems) {
        Some(k) if k.trim().len() >= 16 => Some(ApiKey::new(k.trim())),
        Some(_) => {
            problems.push("GRANTD_SECRET_KEY: must be at least 16 characters; a UUID v4 is what Nango's SDKs expect (e.g. `uuidgen`)".into());
            None
        }
        None => {
            problems.push("GRANTD_SECRET_KEY is not set: the API key clients send as `Authorization: Bearer …` (e.g. `export GRANTD_SECRET_KEY=$(uuidgen)`)".into());
            None
        }
    };
    let encryption_key = match secret("GRANTD_ENCRYPTION_KEY", problems) {
        Some(k) => {
            if !is_encryption_key(&k) {
                problems.push("GRANTD_ENCRYPTION_KEY: encryption key must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)".into());
            }
            Some(k)
        }
        None => {
            problems.push("GRANTD_ENCRYPTION_KEY is not set: base64 of 32 random bytes that encrypts credentials at rest (e.g. `openssl rand -base64 32`); keep it safe, data cannot be read without it".into());
            None
        }
    };
    let old_encryption_keys: Vec<String> = secret("GRANTD_ENCRYPTION_KEYS_OLD", problems)
        .map(|s| {
            s.split(',')
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if old_encryption_keys.iter().any(|k| !is_encryption_key(k)) {
        problems.push(
            "GRANTD_ENCRYPTION_KEYS_OLD: every entry must be base64 of 32 bytes, comma separated"
                .into(),
        );
    }
    (secret_key, encryption_key, old_encryption_keys)
}

/// Microsoft's login, Graph and SharePoint URLs (the emulator's or a sovereign cloud's when set).
fn microsoft_vars(
    get: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> MicrosoftHosts {
    let defaults = MicrosoftHosts::default();
    let sharepoint_url_template =
        get("GRANTD_MICROSOFT_SHAREPOINT_URL").unwrap_or(defaults.sharepoint_url_template);
    if !sharepoint_url_template.contains("{host}") {
        problems.push(
            "GRANTD_MICROSOFT_SHAREPOINT_URL: must contain {host}, e.g. https://{host}".into(),
        );
    }
    MicrosoftHosts {
        login_url: url_var(
            get,
            "GRANTD_MICROSOFT_LOGIN_URL",
            defaults.login_url.as_str(),
            problems,
        ),
        graph_url: url_var(
            get,
            "GRANTD_MICROSOFT_GRAPH_URL",
            defaults.graph_url.as_str(),
            problems,
        ),
        sharepoint_url_template,
    }
}

/// The dashboard's admin sign-in: both variables or neither.
fn admin_vars(
    get: &impl Fn(&str) -> Option<String>,
    secret: &impl Fn(&str, &mut Vec<String>) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<AdminLogin> {
    match (
        get("GRANTD_ADMIN_USER"),
        secret("GRANTD_ADMIN_PASSWORD", problems),
    ) {
        (Some(user), Some(pw)) if pw.len() >= 12 => Some(AdminLogin {
            user,
            password: ApiKey::new(pw),
        }),
        (Some(_), Some(_)) => {
            problems.push("GRANTD_ADMIN_PASSWORD: must be at least 12 characters".into());
            None
        }
        (None, None) => None,
        _ => {
            problems.push("GRANTD_ADMIN_USER and GRANTD_ADMIN_PASSWORD go together: set both (or neither, and sign in to the dashboard with the secret key)".into());
            None
        }
    }
}

fn url_var(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: &str,
    problems: &mut Vec<String>,
) -> Url {
    let raw = get(name).unwrap_or_else(|| default.to_owned());
    match Url::parse(&raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            problems.push(format!("{name}: {raw:?} is not an absolute http(s) URL"));
            Url::parse("http://invalid.invalid").expect("static URL")
        }
    }
}

/// The `LifecycleConfig` variables.
fn lifecycle_vars(
    get: &impl Fn(&str) -> Option<String>,
    secret: &impl Fn(&str, &mut Vec<String>) -> Option<String>,
    problems: &mut Vec<String>,
) -> LifecycleConfig {
    let d = LifecycleConfig::default();
    let webhook_url = get("GRANTD_WEBHOOK_URL").map(|_| {
        url_var(
            get,
            "GRANTD_WEBHOOK_URL",
            "http://invalid.invalid",
            problems,
        )
    });
    if let Some(Err(e)) = get("GRANTD_WEBHOOK_URL").map(|s| crate::validate::webhook_url(&s)) {
        problems.push(format!("GRANTD_WEBHOOK_URL: {e}"));
    }
    let webhook_allow_private = match get("GRANTD_WEBHOOK_ALLOW_PRIVATE").as_deref() {
        None | Some("false" | "0" | "") => false,
        Some("true" | "1") => true,
        Some(v) => {
            problems.push(format!(
                "GRANTD_WEBHOOK_ALLOW_PRIVATE: {v:?} must be true or false"
            ));
            false
        }
    };
    let webhook_signing_key = secret("GRANTD_WEBHOOK_SIGNING_KEY", problems).map(Into::into);
    let idle_refresh_after = secs_var(
        get,
        "GRANTD_IDLE_REFRESH_SECS",
        d.idle_refresh_after.as_secs(),
        problems,
    );
    if idle_refresh_after.as_secs() >= 90 * 86400 || idle_refresh_after.is_zero() {
        problems.push("GRANTD_IDLE_REFRESH_SECS: must be more than 0 and less than 90 days (7776000), or refresh tokens expire unused".into());
    }
    let proactive_refresh_window = get("GRANTD_PROACTIVE_REFRESH_SECS")
        .map(|_| secs_var(get, "GRANTD_PROACTIVE_REFRESH_SECS", 0, problems))
        .filter(|w| !w.is_zero());
    let jobs_interval = secs_var(
        get,
        "GRANTD_JOBS_INTERVAL_SECS",
        d.jobs_interval.as_secs(),
        problems,
    )
    .max(Duration::from_secs(1));
    let refresh_concurrency = match get("GRANTD_REFRESH_CONCURRENCY") {
        None => d.refresh_concurrency,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "GRANTD_REFRESH_CONCURRENCY: {v:?} must be a number from 1 to 64"
                ));
                d.refresh_concurrency
            }
        },
    };
    let sync_push = match get("GRANTD_SYNC_PUSH").as_deref() {
        None | Some("") | Some("auto") => None,
        Some("true") | Some("on") | Some("1") => Some(true),
        Some("false") | Some("off") | Some("0") => Some(false),
        Some(v) => {
            problems.push(format!("GRANTD_SYNC_PUSH: {v:?} must be auto, on or off"));
            None
        }
    };
    let sync_poll_interval = secs_var(
        get,
        "GRANTD_SYNC_POLL_SECS",
        d.sync_poll_interval.as_secs(),
        problems,
    )
    .max(Duration::from_secs(10));
    let sync_lease = secs_var(
        get,
        "GRANTD_SYNC_LEASE_SECS",
        d.sync_lease.as_secs(),
        problems,
    )
    .max(Duration::from_secs(30));
    LifecycleConfig {
        webhook_url,
        webhook_signing_key,
        idle_refresh_after,
        proactive_refresh_window,
        jobs_interval,
        refresh_concurrency,
        webhook_allow_private,
        sync_push,
        sync_poll_interval,
        sync_lease,
    }
}

fn secs_var(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    problems: &mut Vec<String>,
) -> Duration {
    match get(name) {
        None => Duration::from_secs(default),
        Some(v) => match v.parse::<u64>() {
            Ok(s) => Duration::from_secs(s),
            Err(_) => {
                problems.push(format!("{name}: {v:?} is not a whole number of seconds"));
                Duration::from_secs(default)
            }
        },
    }
}

/// Every configuration problem found, each with what to set.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "grantd cannot start; fix the configuration:")?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The shape of an encryption key: standard base64 of exactly 32 bytes (43 characters, the last
/// carrying 2 bits, then one `=`). Checked here, without decoding, so every problem is listed at
/// once while `crypto` stays the only code that sees key bytes.
fn is_encryption_key(b64: &str) -> bool {
    let b = b64.trim().as_bytes();
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    b.len() == 44
        && b[43] == b'='
        && b[..43].iter().all(alphabet)
        && b"AEIMQUYcgkosw048".contains(&b[42])
}

/// Connection, authentication and WebSocket limits (docs/security.md lists each with its threat).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must arrive within this; also the idle keep-alive timeout
    /// (`GRANTD_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed (`GRANTD_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Failed sign-ins or wrong API keys an address may make before it is throttled; an account
    /// gets four times as many (`GRANTD_AUTH_FREE_FAILURES`).
    pub auth_free_failures: u32,
    /// The first throttling delay; each further failure doubles it (not a variable: tests set it).
    pub auth_base_delay: Duration,
    /// The longest throttling delay (`GRANTD_AUTH_MAX_DELAY_SECS`).
    pub auth_max_delay: Duration,
    /// A WebSocket at `/` that no connect flow has claimed within this is closed
    /// (`GRANTD_WS_CLAIM_SECS`).
    pub ws_claim_timeout: Duration,
    /// A claimed WebSocket whose flow has not ended within this is closed (`GRANTD_WS_IDLE_SECS`).
    pub ws_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            auth_free_failures: 5,
            auth_base_delay: Duration::from_secs(1),
            auth_max_delay: Duration::from_secs(60),
            ws_claim_timeout: Duration::from_secs(120),
            // An OAuth flow expires after 15 minutes.
            ws_idle_timeout: Duration::from_secs(20 * 60),
        }
    }
}

impl Limits {
    /// Reads the variables, adding each problem to `problems`.
    pub fn from_vars(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Limits {
        let d = Limits::default();
        let mut num = |name: &str, default: u64, max: u64| match get(name) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    problems.push(format!("{name}: {v:?} must be a number from 1 to {max}"));
                    default
                }
            },
        };
        Limits {
            header_read_timeout: Duration::from_secs(num(
                "GRANTD_HEADER_READ_TIMEOUT_SECS",
                d.header_read_timeout.as_secs(),
                3600,
            )),
            max_connections: num("GRANTD_MAX_CONNECTIONS", d.max_connections as u64, 1 << 20)
                as usize,
            auth_free_failures: num(
                "GRANTD_AUTH_FREE_FAILURES",
                u64::from(d.auth_free_failures),
                1000,
            ) as u32,
            auth_base_delay: d.auth_base_delay,
            auth_max_delay: Duration::from_secs(num(
                "GRANTD_AUTH_MAX_DELAY_SECS",
                d.auth_max_delay.as_secs(),
                3600,
            )),
            ws_claim_timeout: Duration::from_secs(num(
                "GRANTD_WS_CLAIM_SECS",
                d.ws_claim_timeout.as_secs(),
                3600,
            )),
            ws_idle_timeout: Duration::from_secs(num(
                "GRANTD_WS_IDLE_SECS",
                d.ws_idle_timeout.as_secs(),
                24 * 3600,
            )),
        }
    }
}

/// Configuration problems with the Microsoft hosts: a bearer token or client secret must never
/// travel in clear text, so each must be `https` unless it is on loopback (the emulator).
fn cleartext_problems(m: &MicrosoftHosts) -> Vec<String> {
    let sharepoint = Url::parse(&m.sharepoint_url_template.replace("{host}", "x.invalid"));
    [
        ("GRANTD_MICROSOFT_LOGIN_URL", Ok(m.login_url.clone())),
        ("GRANTD_MICROSOFT_GRAPH_URL", Ok(m.graph_url.clone())),
        ("GRANTD_MICROSOFT_SHAREPOINT_URL", sharepoint),
    ]
    .into_iter()
    .filter_map(|(name, u)| {
        let u = u.ok()?;
        (u.scheme() != "https" && !is_loopback_host(&u)).then(|| {
            format!("{name}: must be an https URL (tokens would travel in clear text); http is only accepted on loopback")
        })
    })
    .collect()
}

/// Whether a host is a loopback name or address (the emulator in dev and tests).
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = Config::from_vars(vars(&[
            ("GRANTD_PORT", "http"),
            ("GRANTD_PUBLIC_URL", "nope"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("GRANTD_SECRET_KEY is not set"), "{text}");
        assert!(text.contains("GRANTD_ENCRYPTION_KEY is not set"), "{text}");
        assert!(text.contains("GRANTD_PORT"), "{text}");
        assert!(text.contains("GRANTD_PUBLIC_URL"), "{text}");
    }

    #[test]
    fn encryption_key_shape() {
        assert!(is_encryption_key(
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
        ));
        assert!(!is_encryption_key(
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJB="
        ));
        assert!(!is_encryption_key(
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeA=="
        ));
        assert!(!is_encryption_key("not a key"));
    }

    #[test]
    fn valid_config_and_redaction() {
        // base64 of 32 bytes (the key's shape is all `from_vars` checks).
        let key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=".to_owned();
        let c = Config::from_vars(vars(&[
            ("GRANTD_SECRET_KEY", "0c6e9a4e-7f1b-4c7e-9d55-3a8f7b2e1c90"),
            ("GRANTD_ENCRYPTION_KEY", &key),
            ("GRANTD_DATABASE_URL", "postgres://grantd:hunter2@db/grantd"),
            ("GRANTD_PUBLIC_URL", "https://grantd.example.com/"),
        ]))
        .unwrap();
        assert_eq!(
            c.callback_url(),
            "https://grantd.example.com/oauth/callback"
        );
        let shown = c.redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains(&key) && !shown.contains("0c6e9a4e"),
            "{shown}"
        );
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        let key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=".to_owned();
        for db in [
            "postgres://grantd@db/grantd?password=hunter2&sslmode=require",
            "postgres://grantd@db/grantd?sslmode=require&PassWord=hunter2",
            "postgresql://db/grantd?user=u&sslpassword=hunter2",
            "sqlite://./x.db?mode=rwc&key=hunter2",
        ] {
            let c = Config::from_vars(vars(&[
                ("GRANTD_SECRET_KEY", "0c6e9a4e-7f1b-4c7e-9d55-3a8f7b2e1c90"),
                ("GRANTD_ENCRYPTION_KEY", &key),
                ("GRANTD_DATABASE_URL", db),
            ]))
            .unwrap();
            let shown = c.redacted();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn microsoft_hosts_must_be_https_off_loopback() {
        let mut m = MicrosoftHosts::default();
        assert!(cleartext_problems(&m).is_empty());
        m.graph_url = Url::parse("http://graph.microsoft.com").unwrap();
        m.sharepoint_url_template = "http://{host}".into();
        assert_eq!(cleartext_problems(&m).len(), 2);
        assert!(cleartext_problems(&MicrosoftHosts::emulator("http://127.0.0.1:4100")).is_empty());
    }
}
