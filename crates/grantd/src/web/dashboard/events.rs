//! The overview's "Recent auth events" and "Webhook deliveries" tables, read from the webhook
//! outbox (`Store::recent_webhooks`): each auth webhook is an event (creation / override /
//! refresh, success or failure with its error) and each row is a delivery (status, attempts, the
//! receiver's last HTTP status, the next attempt). Webhook URLs show without their query string,
//! which may carry a receiver's token.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::Value;

use crate::connections::OutboxEntry;

/// How many outbox rows the overview reads.
pub const RECENT: u32 = 50;

/// Where a webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Not tried yet.
    Queued,
    /// Failed at least once; tried again at `next_attempt_at`.
    Retrying,
    /// Failed too often; no more attempts.
    Abandoned,
}

impl Delivery {
    pub fn of(e: &OutboxEntry) -> Delivery {
        if e.delivered_at.is_some() {
            Delivery::Delivered
        } else if e.abandoned_at.is_some() {
            Delivery::Abandoned
        } else if e.attempts == 0 {
            Delivery::Queued
        } else {
            Delivery::Retrying
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Queued => "queued",
            Delivery::Retrying => "retrying",
            Delivery::Abandoned => "abandoned",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Delivery::Delivered => "status s-healthy",
            Delivery::Queued | Delivery::Retrying => "status s-refreshing",
            Delivery::Abandoned => "status s-reconnect",
        }
    }

    fn badge(self) -> Markup {
        html! { span class=(self.class()) data-delivery=(self.label()) { (self.label()) } }
    }
}

/// The receiver's HTTP status from the last failure (`receiver answered HTTP 500`), if it
/// answered at all.
pub fn last_http_status(e: &OutboxEntry) -> Option<u16> {
    e.last_error
        .as_deref()?
        .strip_prefix("receiver answered HTTP ")?
        .parse()
        .ok()
}

/// The URL without query or fragment (they may hold a receiver's secret).
fn safe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(invalid URL)".into(),
    }
}

fn when(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn connection_href(key: &str, id: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("/dashboard/connections/{}/{}", enc(key), enc(id))
}

/// The event's connection id, linked unless it is a failed creation (no connection exists).
fn connection_link(body: &Value) -> Markup {
    let (key, id) = (
        str_of(body, "providerConfigKey"),
        str_of(body, "connectionId"),
    );
    let failed_creation = body["operation"] == "creation" && body["success"] != true;
    html! {
        @if failed_creation { (id) } @else { a href=(connection_href(key, id)) { (id) } }
    }
}

/// A one-line description of what a webhook is about.
fn subject(body: &Value) -> Markup {
    match str_of(body, "type") {
        "auth" => {
            html! { (str_of(body, "operation")) " of " (connection_link(body)) " (" (str_of(body, "providerConfigKey")) ")" }
        }
        "credentials_expiry" => {
            html! { "credential expiry: " (str_of(body, "providerConfigKey")) " " (str_of(body, "state")) }
        }
        other => html! { (other) },
    }
}

/// "Recent auth events": the auth webhooks in the outbox, newest first.
pub fn auth_events(entries: &[OutboxEntry], webhooks_configured: bool) -> Markup {
    let events: Vec<(&OutboxEntry, Value)> = entries
        .iter()
        .filter_map(|e| Some((e, serde_json::from_str::<Value>(&e.body).ok()?)))
        .filter(|(_, b)| b["type"] == "auth")
        .collect();
    html! {
        h2 #auth-events { "Recent auth events" }
        p.hint { "Connections created, overridden (reconnected) and refreshed, as sent in auth webhooks; newest first." }
        @if events.is_empty() {
            @if webhooks_configured {
                p.muted { "No auth events yet." }
            } @else {
                p.muted { "Auth events are recorded with their webhooks. Set " code { "GRANTD_WEBHOOK_URL" } " (or a connection's webhook URL override) to record them." }
            }
        } @else {
            table aria-labelledby="auth-events" {
                thead { tr { th scope="col" { "When" } th scope="col" { "Operation" } th scope="col" { "Connection" } th scope="col" { "Integration" } th scope="col" { "Result" } th scope="col" { "Error" } } }
                tbody {
                    @for (e, b) in &events {
                        @let ok = b["success"].as_bool().unwrap_or(false);
                        tr data-event-id=(e.id) {
                            td { (when(e.created_at)) }
                            td { (str_of(b, "operation")) }
                            td { (connection_link(b)) }
                            td { (str_of(b, "providerConfigKey")) }
                            td {
                                @if ok { span.status.s-healthy data-result="success" { "success" } }
                                @else { span.status.s-reconnect data-result="failure" { "failure" } }
                            }
                            td {
                                @if !ok {
                                    code { (str_of(&b["error"], "type")) } " " (str_of(&b["error"], "description"))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// "Webhook deliveries": every outbox row with its delivery state, newest first.
pub fn deliveries(entries: &[OutboxEntry]) -> Markup {
    html! {
        h2 #webhook-deliveries { "Webhook deliveries" }
        p.hint { "Failed deliveries are retried with backoff and abandoned after repeated failures." }
        @if entries.is_empty() {
            p.muted { "No webhooks sent yet." }
        } @else {
            table aria-labelledby="webhook-deliveries" {
                thead { tr { th scope="col" { "Queued" } th scope="col" { "About" } th scope="col" { "To" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last response" } th scope="col" { "Next attempt" } } }
                tbody {
                    @for e in entries {
                        @let d = Delivery::of(e);
                        tr data-delivery-id=(e.id) {
                            td { (when(e.created_at)) }
                            td {
                                @match serde_json::from_str::<Value>(&e.body) {
                                    Ok(b) => (subject(&b)),
                                    Err(_) => span.muted { "(unreadable body)" },
                                }
                            }
                            td { code { (safe_url(&e.url)) } }
                            td { (d.badge()) }
                            td { (e.attempts) }
                            td {
                                @if d == Delivery::Delivered { "2xx" }
                                @else if let Some(s) = last_http_status(e) { "HTTP " (s) }
                                @else if let Some(err) = &e.last_error { (err) }
                                @else { span.muted { "—" } }
                            }
                            td {
                                @if matches!(d, Delivery::Queued | Delivery::Retrying) { (when(e.next_attempt_at)) }
                                @else { span.muted { "—" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> OutboxEntry {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        OutboxEntry {
            id: 1,
            url: "https://user:pw@hooks.example/in?token=s3cret#x".into(),
            body: r#"{"type":"auth","operation":"refresh","success":false,"connectionId":"c/1","providerConfigKey":"one-drive","error":{"type":"refresh_token_external_error","description":"revoked"}}"#.into(),
            attempts: 2,
            next_attempt_at: t,
            last_error: Some("receiver answered HTTP 503".into()),
            created_at: t,
            delivered_at: None,
            abandoned_at: None,
        }
    }

    #[test]
    fn delivery_state_and_last_status() {
        let mut e = entry();
        assert_eq!(Delivery::of(&e), Delivery::Retrying);
        assert_eq!(last_http_status(&e), Some(503));
        e.last_error = Some("timed out".into());
        assert_eq!(last_http_status(&e), None);
        e.attempts = 0;
        assert_eq!(Delivery::of(&e), Delivery::Queued);
        e.abandoned_at = Some(e.created_at);
        assert_eq!(Delivery::of(&e), Delivery::Abandoned);
        e.delivered_at = Some(e.created_at);
        assert_eq!(Delivery::of(&e), Delivery::Delivered);
    }

    #[test]
    fn urls_lose_their_secrets() {
        let html = deliveries(&[entry()]).into_string();
        assert!(html.contains("https://hooks.example/in"), "{html}");
        assert!(!html.contains("s3cret") && !html.contains("pw@"), "{html}");
        assert!(html.contains("HTTP 503"));
        let events = auth_events(&[entry()], true).into_string();
        assert!(events.contains("refresh_token_external_error"), "{events}");
        assert!(
            events.contains("/dashboard/connections/one-drive/c%2F1"),
            "{events}"
        );
    }
}
