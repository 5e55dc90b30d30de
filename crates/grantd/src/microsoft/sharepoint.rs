//! The SharePoint-audience token that OneDrive File Picker v8 and SharePoint REST need
//! (`connection_config.sharepointAccessToken`). The tenant's SharePoint host is discovered from
//! Graph (`GET /v1.0/sites/root` → `siteCollection.hostname`), never guessed from the tenant id,
//! and the token is minted from the connection's refresh token for `https://{host}/.default`.

use serde_json::Value;

use crate::model::AccessToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Graph could not be reached to discover the SharePoint host")]
    Network(#[source] reqwest::Error),
    #[error("Graph answered HTTP {status} when asked for the root site ({code})")]
    Graph {
        status: u16,
        code: String,
        /// The answer's headers (`Retry-After`, `RateLimit-*` for the tenant's throttle).
        headers: Box<reqwest::header::HeaderMap>,
    },
    #[error("the root site has no SharePoint hostname")]
    NoHost,
    #[error("Microsoft is throttling the tenant; not asked (retry after {0} s)")]
    Throttled(u64),
}

/// The scope string asking for a SharePoint token for `host` (plus a new refresh token).
pub fn scope_for(host: &str) -> String {
    format!("https://{host}/.default offline_access")
}

/// `GET {graph_base}/v1.0/{path}` with a Graph token: the JSON body of a 200, else the status,
/// Graph's error code and the headers (for the tenant's throttle).
async fn graph_get(
    http: &reqwest::Client,
    graph_base: &str,
    path: &str,
    token: &AccessToken,
) -> Result<Value, Error> {
    let url = format!("{}/v1.0/{path}", graph_base.trim_end_matches('/'));
    let resp = http
        .get(url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(Error::Network)?;
    let status = resp.status().as_u16();
    let headers = Box::new(resp.headers().clone());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        let code = body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        return Err(Error::Graph {
            status,
            code,
            headers,
        });
    }
    Ok(body)
}

/// The lowercase host of a `webUrl`.
fn web_url_host(body: &Value) -> Option<String> {
    let web = body.get("webUrl")?.as_str()?;
    url::Url::parse(web)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

/// Discovers the tenant's root SharePoint host (e.g. `contoso.sharepoint.com`) with a Graph token.
pub async fn discover_host(
    http: &reqwest::Client,
    graph_base: &str,
    token: &AccessToken,
) -> Result<String, Error> {
    let body = graph_get(http, graph_base, "sites/root", token).await?;
    body.pointer("/siteCollection/hostname")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .or_else(|| web_url_host(&body))
        .filter(|h| !h.is_empty())
        .ok_or(Error::NoHost)
}

/// Discovers the user's OneDrive host (e.g. `contoso-my.sharepoint.com`) with a Graph token:
/// `GET /v1.0/me/drive` → the host of `webUrl` (needs only `Files.Read`).
pub async fn discover_onedrive_host(
    http: &reqwest::Client,
    graph_base: &str,
    token: &AccessToken,
) -> Result<String, Error> {
    let body = graph_get(http, graph_base, "me/drive", token).await?;
    web_url_host(&body)
        .filter(|h| !h.is_empty())
        .ok_or(Error::NoHost)
}

/// Whether `host` is a plain SharePoint Online host name (`{name}.sharepoint.com` or a sovereign
/// cloud's equivalent): lowercase letters, digits, `-` and dots, no port, no user info.
pub fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
}
