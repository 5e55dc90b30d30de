//! How the dashboard shows an integration's app credential expiry (issue 7): the client secret's
//! recorded expiry or the certificate's notAfter, computed by `connections::credential_expiry`
//! (the same stages as `/integrations` JSON, logs and webhooks). A badge warns 30, 14 and 3 days
//! ahead and says "expired" once it lapsed; `note` adds what to do.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::connections::credential_expiry::{Expiry, ExpiryState, expiry};
use crate::model::Integration;

fn what(e: &Expiry) -> &'static str {
    if e.credential == "certificate" {
        "certificate"
    } else {
        "client secret"
    }
}

/// The short badge: `ok`, `expires in N days` (at the 30/14/3-day stages) or `expired`.
pub fn badge(i: &Integration, now: DateTime<Utc>) -> Markup {
    match expiry(i, now) {
        None => html! { span.muted data-expiry="unknown" { "expiry not recorded" } },
        Some(e) => {
            let date = e.expires_at.format("%Y-%m-%d");
            match e.state {
                ExpiryState::Ok => html! {
                    span data-expiry="ok" { (what(&e)) " expires " (date) " (in " (e.days_left) " days)" }
                },
                ExpiryState::Expiring => html! {
                    span.status.s-refreshing data-expiry="expiring" data-stage=(e.stage.unwrap_or_default()) {
                        "⚠ " (what(&e)) " expires in " (e.days_left) (if e.days_left == 1 { " day" } else { " days" })
                    }
                    " " span.muted { (date) }
                },
                ExpiryState::Expired => html! {
                    span.status.s-misconfigured data-expiry="expired" { (what(&e)) " expired" }
                    " " span.muted { (date) }
                },
            }
        }
    }
}

/// The badge plus what to do, for the integration page and the overview.
pub fn note(i: &Integration, now: DateTime<Utc>) -> Markup {
    let Some(e) = expiry(i, now) else {
        return badge(i, now);
    };
    html! {
        @match e.state {
            ExpiryState::Ok => (badge(i, now)),
            ExpiryState::Expiring => p.warn role="status" {
                (badge(i, now)) ". Create a new " (what(&e)) " in Entra and update this integration before then."
            },
            ExpiryState::Expired => p.error role="alert" {
                (badge(i, now)) ". App misconfigured: refreshes fail (AADSTS7000222) until a new "
                (what(&e)) " is created in Entra and saved here. Users do not need to reconnect."
            },
        }
    }
}

/// Whether the overview should list the integration (a warning stage reached).
pub fn needs_attention(i: &Integration, now: DateTime<Utc>) -> bool {
    expiry(i, now).is_some_and(|e| e.state != ExpiryState::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn integration(expires_at: Option<DateTime<Utc>>) -> Integration {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Integration::for_tests("one-drive", expires_at, t)
    }

    #[test]
    fn badges_at_each_stage() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let at = |d: i64| badge(&integration(Some(now + TimeDelta::days(d))), now).into_string();
        assert!(
            badge(&integration(None), now)
                .into_string()
                .contains("not recorded")
        );
        assert!(at(45).contains(r#"data-expiry="ok""#));
        assert!(at(30).contains(r#"data-stage="30""#), "{}", at(30));
        assert!(at(14).contains(r#"data-stage="14""#));
        assert!(at(3).contains("expires in 3 days"));
        assert!(at(-1).contains("client secret expired"));
        assert!(!needs_attention(
            &integration(Some(now + TimeDelta::days(31))),
            now
        ));
        assert!(needs_attention(
            &integration(Some(now - TimeDelta::days(1))),
            now
        ));
    }
}
