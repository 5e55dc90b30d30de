//! When a proxied call is tried again, and after how long. Pure: the handler asks, this answers.
//!
//! As in Nango, nothing is retried unless the caller asked, whatever the method; there is no
//! deployment-wide default (`DEFAULT_RETRIES` is 0, documented in docs/proxy.md):
//! - `Retries: n` allows up to n retries of 429, 5xx and network errors, for any method (the
//!   caller knows whether its request may be repeated); 429 and 503 wait for `Retry-After`
//!   (seconds or an HTTP date) when the upstream sends one, else back off exponentially with
//!   full jitter.
//! - A status listed in `Retry-On` is retried too: up to `Retries` times, or `RETRY_ON_RETRIES`
//!   when `Retries` is absent (listing a status is asking).
//! - Nothing is retried once the deadline would pass, and nothing whose body cannot be replayed.
//!   (The one forced refresh after a 401 is not a retry of this policy: see `mod.rs`.)

use std::time::Duration;

/// Retries granted when the caller did not ask: none, as Nango.
pub const DEFAULT_RETRIES: u32 = 0;
/// Retries of a status listed in `Retry-On` when `Retries` is absent.
pub const RETRY_ON_RETRIES: u32 = 3;
/// First backoff step; doubled per attempt.
const BACKOFF_BASE_MS: u64 = 200;
/// Longest single backoff.
const BACKOFF_CAP_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct Policy {
    /// The caller's `Retries` (`DEFAULT_RETRIES` when absent).
    pub retries: u32,
    /// The caller's `Retry-On` statuses.
    pub retry_on: Vec<u16>,
    /// The request body (if any) can be sent again.
    pub replayable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again; the reason names the metric label.
    Retry(Duration, &'static str),
    Stop,
}

impl Policy {
    pub fn new(retries: u32, retry_on: Vec<u16>, replayable: bool) -> Policy {
        Policy {
            retries,
            retry_on,
            replayable,
        }
    }

    /// After `attempt` retries so far, the upstream answered `status`.
    pub fn on_status(&self, attempt: u32, status: u16, retry_after: Option<Duration>) -> Decision {
        if !self.replayable {
            return Decision::Stop;
        }
        let throttled = status == 429 || status == 503;
        let (budget, reason) = if self.retry_on.contains(&status) {
            let budget = if self.retries > 0 {
                self.retries
            } else {
                RETRY_ON_RETRIES
            };
            (budget, "retry_on")
        } else if throttled {
            (self.retries, "throttled")
        } else if status >= 500 {
            (self.retries, "server_error")
        } else {
            (0, "")
        };
        if attempt >= budget {
            return Decision::Stop;
        }
        let wait = match retry_after {
            Some(d) if throttled => d,
            _ => backoff(attempt + 1),
        };
        Decision::Retry(wait, reason)
    }

    /// After `attempt` retries so far, the request failed without a response.
    pub fn on_network_error(&self, attempt: u32) -> Decision {
        if !self.replayable || attempt >= self.retries {
            return Decision::Stop;
        }
        Decision::Retry(backoff(attempt + 1), "network")
    }
}

/// Exponential backoff with full jitter: a random wait in [cap/2, cap], cap = 200 ms × 2^(n-1)
/// up to 10 s.
pub fn backoff(n: u32) -> Duration {
    use rand::Rng;
    let cap = (BACKOFF_BASE_MS << n.saturating_sub(1).min(10)).min(BACKOFF_CAP_MS);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

/// `Retry-After` as seconds or an HTTP date (relative to `now`).
pub fn retry_after(
    headers: &axum::http::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let v = headers
        .get(axum::http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unasked() -> Policy {
        Policy::new(DEFAULT_RETRIES, vec![], true)
    }

    #[test]
    fn nothing_is_retried_unless_asked() {
        let p = unasked();
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(p.on_status(0, status, None), Decision::Stop, "{status}");
        }
        assert_eq!(
            p.on_status(0, 429, Some(Duration::from_secs(1))),
            Decision::Stop
        );
        assert_eq!(p.on_network_error(0), Decision::Stop);
    }

    #[test]
    fn asked_retries_cover_throttling_server_errors_and_network_honouring_retry_after() {
        let p = Policy::new(2, vec![], true);
        assert_eq!(
            p.on_status(0, 429, Some(Duration::from_secs(2))),
            Decision::Retry(Duration::from_secs(2), "throttled")
        );
        assert_eq!(
            p.on_status(1, 503, Some(Duration::from_secs(1))),
            Decision::Retry(Duration::from_secs(1), "throttled")
        );
        assert_eq!(p.on_status(2, 429, None), Decision::Stop);
        assert!(matches!(
            p.on_status(1, 502, None),
            Decision::Retry(_, "server_error")
        ));
        assert_eq!(p.on_status(2, 502, None), Decision::Stop);
        assert!(matches!(
            p.on_network_error(1),
            Decision::Retry(_, "network")
        ));
        assert_eq!(p.on_network_error(2), Decision::Stop);
        assert_eq!(p.on_status(0, 404, None), Decision::Stop);
    }

    #[test]
    fn retry_on_is_asking() {
        let p = Policy::new(0, vec![404, 409], true);
        assert!(matches!(
            p.on_status(0, 404, None),
            Decision::Retry(_, "retry_on")
        ));
        assert!(matches!(p.on_status(2, 409, None), Decision::Retry(_, _)));
        assert_eq!(p.on_status(RETRY_ON_RETRIES, 404, None), Decision::Stop);
        assert_eq!(p.on_status(0, 500, None), Decision::Stop, "only the listed");
        let counted = Policy::new(1, vec![404], true);
        assert_eq!(counted.on_status(1, 404, None), Decision::Stop);
    }

    #[test]
    fn streamed_bodies_are_never_retried() {
        let p = Policy::new(5, vec![500], false);
        assert_eq!(p.on_status(0, 429, None), Decision::Stop);
        assert_eq!(p.on_network_error(0), Decision::Stop);
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        for n in 1..20 {
            let d = backoff(n).as_millis() as u64;
            let cap = (BACKOFF_BASE_MS << (n - 1).min(10)).min(BACKOFF_CAP_MS);
            assert!(d >= cap / 2 && d <= cap, "attempt {n}: {d} ms");
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = chrono::Utc::now();
        let mut h = axum::http::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = (now + chrono::TimeDelta::seconds(30)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h, now).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(29));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
