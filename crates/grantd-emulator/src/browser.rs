//! A headless "user agent" for tests: drives authorize (or admin consent) → sign-in form →
//! consent form with a reqwest client that does not follow redirects, keeping the session cookie,
//! and returns where the flow ended: the redirect to the client's `redirect_uri`, the `form_post`
//! page's fields, or the error page.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use http::header;

/// What to answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Accept,
    Cancel,
    /// Stop and return [`Outcome::ConsentPage`] when a consent page appears.
    Stop,
}

/// Where a flow ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A redirect to the client's redirect URI (query or fragment response mode).
    Redirect(url::Url),
    /// A `form_post` page: the fields it would POST to `action` (the redirect URI).
    FormPost {
        action: String,
        params: Vec<(String, String)>,
    },
    /// An error page on the emulator (the client or redirect could not be trusted, or the
    /// account was refused).
    ErrorPage {
        status: u16,
        code: Option<u32>,
        text: String,
    },
    /// The sign-in page came back with an error (unknown user, wrong password).
    SignInFailed { message: String },
    /// A sign-in page was shown but no credentials were given.
    SignInRequired,
    /// A consent page was shown and [`Consent::Stop`] was asked; the listed permissions.
    ConsentPage { permissions: Vec<String> },
}

impl Outcome {
    /// The parameters delivered to the client (query, fragment or form fields).
    pub fn params(&self) -> HashMap<String, String> {
        match self {
            Outcome::Redirect(u) => {
                let mut m: HashMap<String, String> = u.query_pairs().into_owned().collect();
                if let Some(f) = u.fragment() {
                    m.extend(url::form_urlencoded::parse(f.as_bytes()).into_owned());
                }
                m
            }
            Outcome::FormPost { params, .. } => params.iter().cloned().collect(),
            _ => HashMap::new(),
        }
    }

    /// The authorization code, if the flow delivered one.
    pub fn code(&self) -> Option<String> {
        self.params().get("code").cloned()
    }

    /// The `error` delivered to the client, if any.
    pub fn error(&self) -> Option<String> {
        self.params().get("error").cloned()
    }

    /// The AADSTS number in `error_description` (redirects) or on the error page.
    pub fn aadsts(&self) -> Option<u32> {
        if let Outcome::ErrorPage { code, .. } = self {
            return *code;
        }
        let d = self.params().get("error_description")?.clone();
        let rest = d.strip_prefix("AADSTS")?;
        rest.split(':').next()?.parse().ok()
    }
}

/// A cookie-keeping, non-redirecting HTTP client that fills in the emulator's forms.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    cookies: Mutex<HashMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser::from_builder(reqwest::Client::builder()).expect("building a reqwest client")
    }

    /// A browser that trusts the emulator's CA (for its HTTPS listener).
    pub fn with_ca(ca_pem: &str) -> anyhow::Result<Browser> {
        let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
        Browser::from_builder(reqwest::Client::builder().add_root_certificate(cert))
    }

    /// From a client builder (redirects are turned off here).
    pub fn from_builder(b: reqwest::ClientBuilder) -> anyhow::Result<Browser> {
        Ok(Browser {
            http: b.redirect(reqwest::redirect::Policy::none()).build()?,
            cookies: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets the session (as a fresh browser profile).
    pub fn clear_cookies(&self) {
        self.cookies.lock().expect("cookie lock").clear();
    }

    fn cookie_header(&self) -> Option<String> {
        let c = self.cookies.lock().expect("cookie lock");
        (!c.is_empty()).then(|| {
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn store_cookies(&self, resp: &reqwest::Response) {
        let mut c = self.cookies.lock().expect("cookie lock");
        for v in resp.headers().get_all(header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or("");
            let Some((k, val)) = first.split_once('=') else {
                continue;
            };
            if val.is_empty() || v.contains("Max-Age=0") {
                c.remove(k.trim());
            } else {
                c.insert(k.trim().to_owned(), val.to_owned());
            }
        }
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let req = match self.cookie_header() {
            Some(c) => req.header(header::COOKIE, c),
            None => req,
        };
        let resp = req.send().await?;
        self.store_cookies(&resp);
        Ok(resp)
    }

    /// Opens `url` (an authorize or admin-consent URL), signs in with `login` (UPN, password) when
    /// asked, answers consent with `consent`, and returns where it ended.
    pub async fn authorize(
        &self,
        url: &str,
        login: Option<(&str, &str)>,
        consent: Consent,
    ) -> anyhow::Result<Outcome> {
        let start = url::Url::parse(url).context("authorize URL")?;
        let mut resp = self.request(self.http.get(start.clone())).await?;
        let mut signed_in = false;
        for _ in 0..8 {
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .context("redirect without Location")?;
                return Ok(Outcome::Redirect(start.join(loc)?));
            }
            let page_url = resp.url().clone();
            let html = resp.text().await?;
            if html.contains("id=\"error\"") {
                let code = attr(&html, "id=\"error\"", "data-code").and_then(|c| c.parse().ok());
                return Ok(Outcome::ErrorPage {
                    status: status.as_u16(),
                    code,
                    text: strip_tags(&html),
                });
            }
            if html.contains("name=\"hiddenform\"") {
                let action = attr(&html, "name=\"hiddenform\"", "action")
                    .context("form_post without action")?;
                return Ok(Outcome::FormPost {
                    action,
                    params: inputs(&html),
                });
            }
            if html.contains("id=\"signin\"") {
                if signed_in {
                    let message = between(&html, "id=\"error-text\">", "<")
                        .map(unescape)
                        .unwrap_or_default();
                    return Ok(Outcome::SignInFailed { message });
                }
                let Some((upn, password)) = login else {
                    return Ok(Outcome::SignInRequired);
                };
                let action =
                    attr(&html, "id=\"signin\"", "action").context("sign-in form action")?;
                let ctx = attr(&html, "name=\"ctx\"", "value").context("sign-in ctx")?;
                let form = [("ctx", ctx.as_str()), ("login", upn), ("passwd", password)];
                signed_in = true;
                resp = self
                    .request(self.http.post(page_url.join(&action)?).form(&form))
                    .await?;
                continue;
            }
            let (marker, answer) = if html.contains("id=\"consent\"") {
                ("id=\"consent\"", consent)
            } else if html.contains("id=\"needadmin\"") {
                ("id=\"needadmin\"", Consent::Cancel)
            } else {
                bail!("unexpected page (HTTP {status}): {}", strip_tags(&html));
            };
            if answer == Consent::Stop {
                let permissions = html
                    .split("<li>")
                    .skip(1)
                    .filter_map(|s| s.split("</li>").next())
                    .map(unescape)
                    .collect();
                return Ok(Outcome::ConsentPage { permissions });
            }
            let action = attr(&html, marker, "action").context("consent form action")?;
            let ctx = attr(&html, "name=\"ctx\"", "value").context("consent ctx")?;
            let a = if answer == Consent::Accept {
                "accept"
            } else {
                "cancel"
            };
            resp = self
                .request(
                    self.http
                        .post(page_url.join(&action)?)
                        .form(&[("ctx", ctx.as_str()), ("action", a)]),
                )
                .await?;
        }
        bail!("too many steps in the sign-in flow")
    }
}

/// Signs in with `upn`/`password` and accepts consent: the usual happy path.
pub async fn sign_in(url: &str, upn: &str, password: &str) -> anyhow::Result<Outcome> {
    Browser::new()
        .authorize(url, Some((upn, password)), Consent::Accept)
        .await
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// The value of `name` in the tag that contains `marker`.
fn attr(html: &str, marker: &str, name: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("{name}=\"");
    let v = between(tag, &key, "\"")?;
    Some(unescape(v))
}

fn inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|t| {
            let tag = t.split('>').next()?;
            if !tag.contains("type=\"hidden\"") {
                return None;
            }
            let n = between(tag, "name=\"", "\"")?;
            let v = between(tag, "value=\"", "\"").unwrap_or("");
            Some((unescape(n), unescape(v)))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn strip_tags(html: &str) -> String {
    let body = html.split("</style>").last().unwrap_or(html);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(&out.split_whitespace().collect::<Vec<_>>().join(" "))
}
