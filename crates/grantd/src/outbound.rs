//! Outbound HTTP for proxied calls: the pooled client and the SSRF guard.
//!
//! Hosts grantd is configured to talk to (the Microsoft login, Graph and SharePoint hosts — the
//! emulator on loopback in dev and tests) are trusted. Every other host — a `Base-Url-Override`
//! extra, a redirect target — must resolve only to public addresses: loopback, private,
//! link-local (169.254.0.0/16, the cloud metadata service), CGNAT, multicast and unspecified
//! addresses are refused. The check runs before a request is built (so the caller gets a clear
//! 4xx) and again inside the client's DNS resolver (so DNS rebinding between the two finds
//! nothing).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} resolves to a non-public address")]
    NonPublic(String),
    #[error("{0} could not be resolved")]
    Unresolvable(String),
    #[error("only http and https URLs can be called")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// The hosts grantd trusts without address checks.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    trusted: Arc<HashSet<String>>,
}

impl Guard {
    /// Trusts the configured Microsoft hosts.
    pub fn from_config(config: &Config) -> Guard {
        let m = &config.microsoft;
        let mut trusted = HashSet::new();
        for u in [&m.login_url, &m.graph_url] {
            if let Some(h) = u.host_str() {
                trusted.insert(normalise(h));
            }
        }
        if !m.sharepoint_url_template.contains("://{host}") {
            if let Some(h) = Url::parse(&m.sharepoint_url_template.replace("{host}", "x"))
                .ok()
                .as_ref()
                .and_then(Url::host_str)
            {
                trusted.insert(normalise(h));
            }
        }
        Guard {
            trusted: Arc::new(trusted),
        }
    }

    pub fn is_trusted(&self, host: &str) -> bool {
        self.trusted.contains(&normalise(host))
    }

    /// Refuses a URL whose host is not trusted and is, or resolves to, a non-public address.
    pub async fn check(&self, url: &Url) -> Result<(), Error> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Scheme);
        }
        let host = url.host().ok_or(Error::NoHost)?;
        let name = url.host_str().ok_or(Error::NoHost)?;
        if self.is_trusted(name) {
            return Ok(());
        }
        match host {
            url::Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => {
                Err(Error::NonPublic(name.to_owned()))
            }
            url::Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => {
                Err(Error::NonPublic(name.to_owned()))
            }
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => Ok(()),
            url::Host::Domain(d) => resolve_public(d).await.map(|_| ()),
        }
    }
}

fn normalise(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| Error::Unresolvable(host.to_owned()))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Unresolvable(host.to_owned()));
    }
    if addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(Error::NonPublic(host.to_owned()));
    }
    Ok(addrs)
}

/// The client's resolver: trusted names resolve normally, others only to public addresses.
struct CheckedResolver(Guard);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str();
            let addrs = if guard.is_trusted(host) {
                tokio::net::lookup_host((host, 0))
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                    .collect()
            } else {
                resolve_public(host).await.map_err(Box::new)?
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether a client error was the guard refusing an address (DNS changed after the check).
pub fn is_refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The proxy's client: pooled, no automatic redirects (the proxy decides, see `proxy`), guarded
/// DNS, connect and idle-read timeouts. No `HTTP(S)_PROXY` forward proxy: it would resolve names
/// itself, out of reach of the guard (and reqwest's per-request proxy matching is measurable).
pub fn proxy_client(guard: &Guard) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(CheckedResolver(guard.clone())))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()
        .expect("static client configuration is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in ["20.190.151.68", "40.126.1.1", "2603:1006::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn guard_refuses_untrusted_local_targets() {
        let guard = Guard {
            trusted: Arc::new(["127.0.0.1".to_owned()].into_iter().collect()),
        };
        assert!(
            guard
                .check(&Url::parse("http://127.0.0.1:9/x").unwrap())
                .await
                .is_ok()
        );
        for u in [
            "http://localhost:9/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:80/",
            "http://10.0.0.1/",
            "file:///etc/passwd",
        ] {
            assert!(guard.check(&Url::parse(u).unwrap()).await.is_err(), "{u}");
        }
    }
}
