//! One throttle budget per tenant: what this instance knows about each tenant's throttling, and
//! whether a call may go now. Pure and in memory; `connections::throttle` feeds it (Microsoft's
//! answers, other instances' notices through the database) and waits on its verdicts.
//!
//! Microsoft throttles per app per tenant, and a throttled tenant answers every caller with
//! 429/503 and `Retry-After`. Two signals are kept per tenant:
//! - a **window**: after a 429 (or a 503 with `Retry-After`) no call is sent to the tenant until
//!   the window ends; every instance learns it (shared by `connections::throttle`);
//! - a **near limit** state from `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`
//!   (SharePoint and OneDrive send them once an app has used 80 % of its budget): until the
//!   reset, interactive calls are paced (remaining calls spread over the seconds left) and
//!   background calls do not start at all — the reserve is the interactive callers'. This state
//!   is per instance (each sees the headers on its own answers).
//!
//! Priorities: `Interactive` (the proxy) waits only out the window; `Background` (change feed,
//! proactive refresh's Graph calls) also waits `BACKGROUND_GRACE` after the window so waiting
//! interactive calls go first, and is held for the whole near-limit period. A caller whose wait
//! would exceed its budget is **shed**: told to come back after the wait instead of waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Who is asking; decides who goes first when a tenant is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A caller waiting on the answer (the proxy).
    Interactive,
    /// Work nobody waits on (change feed, proactive refresh's Graph calls).
    Background,
}

impl Priority {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Background => "background",
        }
    }
}

/// What a caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send now.
    Go,
    /// The tenant is throttled: wait this long, then ask again (the window may have grown).
    Wait(Duration),
    /// A paced slot was reserved for this call: wait this long, then send without asking again.
    Paced(Duration),
    /// The wait exceeds the caller's budget: do not send; try again after this long.
    Shed(Duration),
}

/// Background work waits this long after a window ends, so interactive calls go first.
pub const BACKGROUND_GRACE: Duration = Duration::from_secs(1);
/// A 429 without `Retry-After` throttles the tenant this long.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);
/// The longest window believed (`Retry-After` values beyond are capped).
pub const MAX_WINDOW: Duration = Duration::from_secs(600);
/// `RateLimit-Remaining` at or below this share of `RateLimit-Limit` means "near the limit".
const NEAR_SHARE: f64 = 0.2;

#[derive(Debug, Default)]
struct Tenant {
    blocked_until: Option<DateTime<Utc>>,
    near: Option<Near>,
}

#[derive(Debug, Clone, Copy)]
struct Near {
    /// When the budget resets (`RateLimit-Reset`).
    until: DateTime<Utc>,
    /// Spacing of interactive calls until then.
    interval: TimeDelta,
    /// The next free interactive slot.
    next_slot: DateTime<Utc>,
}

/// What Microsoft's `RateLimit-*` headers said on one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset: Duration,
}

/// Per-tenant throttling state of this instance.
#[derive(Debug, Default)]
pub struct Throttle {
    tenants: Mutex<HashMap<String, Tenant>>,
    /// False while no tenant is known: the common case costs one atomic load, no lock.
    any: AtomicBool,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn positive(d: TimeDelta) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

impl Throttle {
    /// True while no tenant is known to be throttled or near its limit: every call may go, and
    /// callers need not even name their tenant (one atomic load).
    pub fn quiet(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Whether a call to `tenant` may go at `now`, for a caller that may wait up to `budget`.
    pub fn decide(
        &self,
        tenant: &str,
        priority: Priority,
        now: DateTime<Utc>,
        budget: Duration,
    ) -> Verdict {
        if !self.any.load(Ordering::Acquire) {
            return Verdict::Go;
        }
        let mut map = self.tenants.lock().expect("throttle lock poisoned");
        let Some(t) = map.get_mut(tenant) else {
            return Verdict::Go;
        };
        let grace = match priority {
            Priority::Interactive => TimeDelta::zero(),
            Priority::Background => delta(BACKGROUND_GRACE),
        };
        // The window, and for background work the near-limit period too.
        let mut hold_until = t.blocked_until.map(|u| u + grace);
        if priority == Priority::Background
            && let Some(n) = t.near.filter(|n| n.until > now)
        {
            hold_until = hold_until.max(Some(n.until));
        }
        if let Some(until) = hold_until.filter(|u| *u > now) {
            let wait = positive(until - now);
            return if wait <= budget {
                Verdict::Wait(wait)
            } else {
                Verdict::Shed(wait)
            };
        }
        match t.near {
            Some(n) if n.until > now && priority == Priority::Interactive => {
                let slot = n.next_slot.max(now);
                let wait = positive(slot - now);
                if wait > budget {
                    return Verdict::Shed(wait);
                }
                if let Some(near) = t.near.as_mut() {
                    near.next_slot = slot + near.interval;
                }
                if wait.is_zero() {
                    Verdict::Go
                } else {
                    Verdict::Paced(wait)
                }
            }
            _ => {
                // Nothing in force any more: forget the tenant.
                if t.blocked_until
                    .is_none_or(|u| u + delta(BACKGROUND_GRACE) <= now)
                    && t.near.is_none_or(|n| n.until <= now)
                {
                    map.remove(tenant);
                    self.any.store(!map.is_empty(), Ordering::Release);
                }
                Verdict::Go
            }
        }
    }

    /// `tenant` is throttled until `until` (a window only ever grows). True when this changed
    /// what is known.
    pub fn block(&self, tenant: &str, until: DateTime<Utc>) -> bool {
        let mut map = self.tenants.lock().expect("throttle lock poisoned");
        self.any.store(true, Ordering::Release);
        let t = map.entry(tenant.to_owned()).or_default();
        if t.blocked_until.is_some_and(|u| u >= until) {
            return false;
        }
        t.blocked_until = Some(until);
        true
    }

    /// The end of `tenant`'s window, if one is in force at `now`.
    pub fn blocked_until(&self, tenant: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let map = self.tenants.lock().expect("throttle lock poisoned");
        map.get(tenant)?.blocked_until.filter(|u| *u > now)
    }

    /// Tenants with a window in force at `now`.
    pub fn throttled_now(&self, now: DateTime<Utc>) -> usize {
        let map = self.tenants.lock().expect("throttle lock poisoned");
        map.values()
            .filter(|t| t.blocked_until.is_some_and(|u| u > now))
            .count()
    }

    /// Applies `RateLimit-*` headers seen on an answer from `tenant`. Returns true when the
    /// tenant is now near its limit (calls are paced until the reset). No remaining budget at
    /// all is a window until the reset.
    pub fn rate_limit(&self, tenant: &str, rl: RateLimit, now: DateTime<Utc>) -> bool {
        let near = match rl.limit {
            Some(limit) if limit > 0 => (rl.remaining as f64) <= (limit as f64) * NEAR_SHARE,
            // Microsoft sends the headers only once 80 % is used: their presence is the signal.
            _ => true,
        };
        if !near || rl.reset.is_zero() {
            return false;
        }
        let reset = rl.reset.min(MAX_WINDOW);
        let until = now + delta(reset);
        if rl.remaining == 0 {
            self.block(tenant, until);
            return true;
        }
        let interval = delta(reset / u32::try_from(rl.remaining).unwrap_or(u32::MAX));
        let mut map = self.tenants.lock().expect("throttle lock poisoned");
        self.any.store(true, Ordering::Release);
        let t = map.entry(tenant.to_owned()).or_default();
        let next_slot = t.near.map_or(now, |n| n.next_slot);
        t.near = Some(Near {
            until,
            interval,
            next_slot,
        });
        true
    }
}

/// The window a 429/503 answer asks for: its `Retry-After` (capped at `MAX_WINDOW`); a 429
/// without one gets `DEFAULT_WINDOW`; anything else (a 503 without `Retry-After`, other
/// statuses) is no throttling signal.
pub fn window(status: u16, retry_after: Option<Duration>) -> Option<Duration> {
    match (status, retry_after) {
        (429 | 503, Some(d)) => Some(d.min(MAX_WINDOW)),
        (429, None) => Some(DEFAULT_WINDOW),
        _ => None,
    }
}

/// `Retry-After` as seconds or an HTTP date (relative to `now`).
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    Some(positive(at.with_timezone(&Utc) - now))
}

/// `RateLimit-Limit` / `-Remaining` / `-Reset` (draft-ietf-httpapi-ratelimit-headers, as
/// SharePoint and OneDrive send them), given a header lookup. `None` without `-Remaining` and
/// `-Reset`.
pub fn parse_rate_limit<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<RateLimit> {
    let num = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
    Some(RateLimit {
        limit: num("ratelimit-limit"),
        remaining: num("ratelimit-remaining")?,
        reset: Duration::from_secs(num("ratelimit-reset")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "tenant-a";
    const LONG: Duration = Duration::from_secs(60);

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_window_holds_every_caller_and_background_a_little_longer() {
        let th = Throttle::default();
        assert_eq!(
            th.decide(T, Priority::Interactive, at(0), LONG),
            Verdict::Go
        );
        assert!(th.block(T, at(5)));
        assert!(!th.block(T, at(3)), "a window never shrinks");
        assert_eq!(
            th.decide(T, Priority::Interactive, at(1), LONG),
            Verdict::Wait(Duration::from_secs(4))
        );
        assert_eq!(
            th.decide(T, Priority::Background, at(1), LONG),
            Verdict::Wait(Duration::from_secs(4) + BACKGROUND_GRACE)
        );
        assert_eq!(
            th.decide("tenant-b", Priority::Background, at(1), LONG),
            Verdict::Go,
            "other tenants are unaffected"
        );
        assert_eq!(
            th.decide(T, Priority::Interactive, at(1), Duration::from_secs(2)),
            Verdict::Shed(Duration::from_secs(4))
        );
        assert_eq!(th.throttled_now(at(1)), 1);
        assert_eq!(
            th.decide(T, Priority::Interactive, at(5), LONG),
            Verdict::Go
        );
        assert!(matches!(
            th.decide(T, Priority::Background, at(5), LONG),
            Verdict::Wait(_)
        ));
        assert_eq!(th.throttled_now(at(5)), 0);
        assert_eq!(th.decide(T, Priority::Background, at(6), LONG), Verdict::Go);
    }

    #[test]
    fn near_the_limit_interactive_calls_are_paced_and_background_waits_for_the_reset() {
        let th = Throttle::default();
        let rl = RateLimit {
            limit: Some(100),
            remaining: 90,
            reset: Duration::from_secs(10),
        };
        assert!(!th.rate_limit(T, rl, at(0)), "90 % left is not near");
        let rl = RateLimit { remaining: 5, ..rl };
        assert!(th.rate_limit(T, rl, at(0)));
        // 5 calls over 10 s: one every 2 s.
        assert_eq!(
            th.decide(T, Priority::Interactive, at(0), LONG),
            Verdict::Go
        );
        assert_eq!(
            th.decide(T, Priority::Interactive, at(0), LONG),
            Verdict::Paced(Duration::from_secs(2))
        );
        assert_eq!(
            th.decide(T, Priority::Interactive, at(0), Duration::from_secs(1)),
            Verdict::Shed(Duration::from_secs(4)),
            "a shed call does not take the slot"
        );
        assert_eq!(
            th.decide(T, Priority::Interactive, at(0), LONG),
            Verdict::Paced(Duration::from_secs(4))
        );
        assert_eq!(
            th.decide(T, Priority::Background, at(3), LONG),
            Verdict::Wait(Duration::from_secs(7))
        );
        assert_eq!(
            th.decide(T, Priority::Background, at(10), LONG),
            Verdict::Go
        );
        // Nothing left: a window until the reset.
        let empty = RateLimit {
            limit: Some(100),
            remaining: 0,
            reset: Duration::from_secs(3),
        };
        assert!(th.rate_limit(T, empty, at(20)));
        assert_eq!(th.blocked_until(T, at(20)), Some(at(23)));
    }

    #[test]
    fn which_answers_throttle_and_headers_parse() {
        assert_eq!(
            window(429, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(window(429, None), Some(DEFAULT_WINDOW));
        assert_eq!(
            window(503, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(window(503, None), None);
        assert_eq!(window(500, Some(Duration::from_secs(1))), None);
        assert_eq!(
            window(429, Some(Duration::from_secs(99_999))),
            Some(MAX_WINDOW)
        );
        let h = [
            ("ratelimit-limit", "1000"),
            ("ratelimit-remaining", " 20"),
            ("ratelimit-reset", "55"),
        ];
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        assert_eq!(
            parse_rate_limit(get),
            Some(RateLimit {
                limit: Some(1000),
                remaining: 20,
                reset: Duration::from_secs(55)
            })
        );
        assert_eq!(parse_rate_limit(|_| None), None);
    }
}
