//! When a proxied call is tried again, and after how long. Pure: the handler asks, this answers.
//!
//! - 429 and 503 (throttling) honour `Retry-After` (seconds or an HTTP date); without it they back
//!   off like 5xx. Throttled requests were not processed, so any replayable request is retried.
//! - Other 5xx and network errors back off exponentially with full jitter, for idempotent methods
//!   by default and for others only when the caller asked (`Retries` > 0).
//! - A status listed in `Retry-On` is retried like a 5xx.
//! - The budget is `Retries` when the caller set more than the default, else 3 for the safe cases.
//! - Nothing is retried once the deadline would pass, and nothing whose body cannot be replayed.

use std::time::Duration;

use axum::http::Method;

/// Retries granted without the caller asking (throttling, idempotent 5xx and network errors).
pub const DEFAULT_RETRIES: u32 = 3;
/// First backoff step; doubled per attempt.
const BACKOFF_BASE_MS: u64 = 200;
/// Longest single backoff.
const BACKOFF_CAP_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct Policy {
    /// The caller's `Retries` (0 when absent).
    pub retries: u32,
    /// The caller's `Retry-On` statuses.
    pub retry_on: Vec<u16>,
    pub idempotent: bool,
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
    pub fn new(method: &Method, retries: u32, retry_on: Vec<u16>, replayable: bool) -> Policy {
        Policy {
            retries,
            retry_on,
            idempotent: matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
            ),
            replayable,
        }
    }

    /// After `attempt` retries so far, the upstream answered `status`.
    pub fn on_status(&self, attempt: u32, status: u16, retry_after: Option<Duration>) -> Decision {
        if !self.replayable {
            return Decision::Stop;
        }
        let throttled = status == 429 || status == 503;
        let asked = self.retry_on.contains(&status);
        let server_error = status >= 500;
        let (allowed, reason) = if throttled {
            (true, "throttled")
        } else if asked {
            (true, "retry_on")
        } else if server_error {
            (self.idempotent || self.retries > 0, "server_error")
        } else {
            (false, "")
        };
        let budget = if throttled || (server_error && self.idempotent) {
            self.retries.max(DEFAULT_RETRIES)
        } else {
            self.retries.max(u32::from(asked) * DEFAULT_RETRIES)
        };
        if !allowed || attempt >= budget {
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
        if !self.replayable {
            return Decision::Stop;
        }
        let budget = if self.idempotent {
            self.retries.max(DEFAULT_RETRIES)
        } else {
            self.retries
        };
        if attempt >= budget {
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
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
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

    fn get() -> Policy {
        Policy::new(&Method::GET, 0, vec![], true)
    }

    #[test]
    fn throttling_honours_retry_after_for_any_replayable_method() {
        let post = Policy::new(&Method::POST, 0, vec![], true);
        for p in [get(), post] {
            assert_eq!(
                p.on_status(0, 429, Some(Duration::from_secs(2))),
                Decision::Retry(Duration::from_secs(2), "throttled")
            );
            assert!(matches!(p.on_status(2, 503, None), Decision::Retry(_, _)));
            assert_eq!(p.on_status(3, 429, None), Decision::Stop);
        }
    }

    #[test]
    fn server_errors_retry_only_idempotent_unless_asked() {
        assert!(matches!(
            get().on_status(0, 500, None),
            Decision::Retry(_, "server_error")
        ));
        let post = Policy::new(&Method::POST, 0, vec![], true);
        assert_eq!(post.on_status(0, 500, None), Decision::Stop);
        assert_eq!(post.on_network_error(0), Decision::Stop);
        let asked = Policy::new(&Method::POST, 2, vec![], true);
        assert!(matches!(
            asked.on_status(1, 502, None),
            Decision::Retry(_, _)
        ));
        assert_eq!(asked.on_status(2, 502, None), Decision::Stop);
        assert!(matches!(asked.on_network_error(0), Decision::Retry(_, _)));
    }

    #[test]
    fn retry_on_and_plain_4xx() {
        assert_eq!(get().on_status(0, 404, None), Decision::Stop);
        let p = Policy::new(&Method::GET, 0, vec![404], true);
        assert!(matches!(
            p.on_status(0, 404, None),
            Decision::Retry(_, "retry_on")
        ));
    }

    #[test]
    fn streamed_bodies_are_never_retried() {
        let p = Policy::new(&Method::PUT, 5, vec![500], false);
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
        let mut h = reqwest::header::HeaderMap::new();
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
