//! Throttling of failed authentication (issue 14, item 8): dashboard sign-ins and wrong API keys,
//! counted by client address (IPv6 by /64) and, for sign-in, by account (the secret key or the
//! admin login). Each key gets a few free failures; after that every failure blocks it for a
//! delay that doubles, capped (`Limits::auth_max_delay`, a minute by default), and a blocked key
//! is answered 429 with `Retry-After` without looking at the credential. Failures are forgotten
//! after a quiet period.
//!
//! The real admin cannot be locked out for long: an address's budget is separate from the
//! account's, the account's budget is larger (only attempts that were looked at count, so one
//! address cannot spend it quickly), every block ends within the cap, a successful sign-in from
//! an address clears that address and the account, and an address that signed in successfully
//! since the process started is not held back by the account's block (only by its own).
//!
//! In memory, per instance: a flood of wrong keys costs a map update, never a database write;
//! behind N instances an attacker gets N budgets, which the doubling delay keeps small. The
//! client address is the TCP peer's: grantd trusts no forwarding header (see docs/security.md).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Limits;

/// What is being authenticated: each has its own budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The dashboard's sign-in form.
    SignIn,
    /// A bearer credential on the API (secret key, connect session token).
    ApiKey,
}

/// Which sign-in account an attempt was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// The secret key (empty user name).
    SecretKey,
    /// The admin login (any user name: a wrong name and a wrong password are the same failure,
    /// so a block does not reveal the admin's user name).
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Addr(Scope, Option<IpAddr>),
    Account(Account),
    /// Where new addresses count once the table is full.
    Overflow(Scope),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<DateTime<Utc>>,
    last_failure: DateTime<Utc>,
}

/// Most keys remembered; beyond, new addresses share one overflow key.
const MAX_ENTRIES: usize = 65_536;
/// Most addresses remembered as having signed in.
const MAX_GOOD: usize = 1024;
/// Failures are forgotten after this long without one.
const QUIET: TimeDelta = TimeDelta::minutes(15);
/// Failures an account gets before it is throttled, as a multiple of an address's.
const ACCOUNT_FACTOR: u32 = 4;

/// The throttle's state. One per instance (`AppState::throttle`).
pub struct Throttle {
    free: u32,
    base: Duration,
    cap: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    /// `entries.len()`, readable without the lock: an empty table costs requests nothing.
    len: AtomicUsize,
    /// Addresses that signed in successfully.
    good: Mutex<HashSet<Option<IpAddr>>>,
}

/// IPv6 clients usually hold a whole /64: counting by address would give each one 2^64 budgets.
fn addr_key(addr: Option<IpAddr>) -> Option<IpAddr> {
    addr.map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    })
}

/// Seconds to put in `Retry-After` for a block ending at `until` (at least 1).
pub fn retry_after_secs(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

impl Throttle {
    pub fn new(limits: &Limits) -> Throttle {
        Throttle {
            free: limits.auth_free_failures,
            base: limits.auth_base_delay,
            cap: limits.auth_max_delay,
            entries: Mutex::new(HashMap::new()),
            len: AtomicUsize::new(0),
            good: Mutex::new(HashSet::new()),
        }
    }

    /// Nothing remembered: no key is blocked (read without the lock).
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    fn blocked_key(&self, key: &Key, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let entries = self.entries.lock().expect("throttle lock poisoned");
        entries
            .get(key)
            .and_then(|e| e.blocked_until)
            .filter(|until| *until > now)
    }

    /// When the address's block for `scope` ends, if it is blocked.
    pub fn blocked_addr(
        &self,
        scope: Scope,
        addr: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let key = self.resolve(Key::Addr(scope, addr_key(addr)));
        self.blocked_key(&key, now)
    }

    /// When a sign-in from `addr` to `account` may be tried again, if it is blocked now.
    pub fn sign_in_blocked(
        &self,
        addr: Option<IpAddr>,
        account: Account,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let by_addr = self.blocked_addr(Scope::SignIn, addr, now);
        let known_good = self
            .good
            .lock()
            .expect("throttle lock poisoned")
            .contains(&addr_key(addr));
        let by_account = if known_good {
            None
        } else {
            self.blocked_key(&Key::Account(account), now)
        };
        by_addr.into_iter().chain(by_account).max()
    }

    /// Records a failed attempt of `scope` from `addr` (and against `account`).
    pub fn failed(
        &self,
        scope: Scope,
        addr: Option<IpAddr>,
        account: Option<Account>,
        now: DateTime<Utc>,
    ) {
        let mut entries = self.entries.lock().expect("throttle lock poisoned");
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| {
                now - e.last_failure < QUIET || e.blocked_until.is_some_and(|u| u > now)
            });
        }
        let mut addr_key = Key::Addr(scope, addr_key(addr));
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&addr_key) {
            addr_key = Key::Overflow(scope);
        }
        self.bump(&mut entries, addr_key, self.free, now);
        if let Some(account) = account {
            self.bump(
                &mut entries,
                Key::Account(account),
                self.free.saturating_mul(ACCOUNT_FACTOR),
                now,
            );
        }
        self.len.store(entries.len(), Ordering::Relaxed);
    }

    fn bump(&self, entries: &mut HashMap<Key, Entry>, key: Key, free: u32, now: DateTime<Utc>) {
        let e = entries.entry(key).or_insert(Entry {
            failures: 0,
            blocked_until: None,
            last_failure: now,
        });
        if now - e.last_failure >= QUIET {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures > free {
            let doublings = (e.failures - free - 1).min(30);
            let delay = self.base.saturating_mul(1 << doublings).min(self.cap);
            e.blocked_until = Some(now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX));
        }
    }

    /// A successful sign-in from `addr` to `account`: both are cleared, and the address is
    /// remembered as one the admin uses.
    pub fn signed_in(&self, addr: Option<IpAddr>, account: Account) {
        let addr = addr_key(addr);
        {
            let mut entries = self.entries.lock().expect("throttle lock poisoned");
            entries.remove(&Key::Addr(Scope::SignIn, addr));
            entries.remove(&Key::Account(account));
            self.len.store(entries.len(), Ordering::Relaxed);
        }
        let mut good = self.good.lock().expect("throttle lock poisoned");
        if good.len() >= MAX_GOOD {
            good.clear();
        }
        good.insert(addr);
    }

    fn resolve(&self, key: Key) -> Key {
        match key {
            Key::Addr(scope, _) if self.len.load(Ordering::Relaxed) >= MAX_ENTRIES => {
                let entries = self.entries.lock().expect("throttle lock poisoned");
                if entries.contains_key(&key) {
                    key
                } else {
                    Key::Overflow(scope)
                }
            }
            _ => key,
        }
    }
}

/// Marks a response that refused a wrong bearer credential (set by `ApiError`).
#[derive(Debug, Clone, Copy)]
pub struct WrongCredential;

/// The 429 every throttled API request gets, in Nango's error envelope.
pub fn too_many_attempts(retry_after: u64) -> Response {
    let mut r = super::ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!(
            "Too many failed authentication attempts from this address; retry in {retry_after} s."
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free: u32, base: u64, cap: u64) -> Throttle {
        Throttle::new(&Limits {
            auth_free_failures: free,
            auth_base_delay: Duration::from_secs(base),
            auth_max_delay: Duration::from_secs(cap),
            ..Limits::default()
        })
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn free_failures_then_a_doubling_delay_capped() {
        let t = throttle(2, 1, 8);
        let a = Some("10.0.0.1".parse().unwrap());
        for _ in 0..2 {
            t.failed(Scope::ApiKey, a, None, at(0));
        }
        assert_eq!(t.blocked_addr(Scope::ApiKey, a, at(0)), None);
        let mut delays = vec![];
        for _ in 0..6 {
            t.failed(Scope::ApiKey, a, None, at(0));
            delays.push((t.blocked_addr(Scope::ApiKey, a, at(0)).unwrap() - at(0)).num_seconds());
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(
            t.blocked_addr(Scope::ApiKey, a, at(8)),
            None,
            "the cap bounds a block"
        );
        assert_eq!(
            t.blocked_addr(Scope::SignIn, a, at(0)),
            None,
            "scopes are apart"
        );
        assert_eq!(retry_after_secs(at(8), at(0)), 8);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_period() {
        let t = throttle(1, 1, 60);
        let a = Some("10.0.0.1".parse().unwrap());
        t.failed(Scope::ApiKey, a, None, at(0));
        t.failed(Scope::ApiKey, a, None, at(1000));
        assert_eq!(t.blocked_addr(Scope::ApiKey, a, at(1000)), None);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let t = throttle(1, 60, 60);
        t.failed(
            Scope::ApiKey,
            Some("2001:db8::1".parse().unwrap()),
            None,
            at(0),
        );
        t.failed(
            Scope::ApiKey,
            Some("2001:db8::2".parse().unwrap()),
            None,
            at(0),
        );
        assert!(
            t.blocked_addr(
                Scope::ApiKey,
                Some("2001:db8::ffff".parse().unwrap()),
                at(0)
            )
            .is_some()
        );
        assert!(
            t.blocked_addr(
                Scope::ApiKey,
                Some("2001:db8:0:1::1".parse().unwrap()),
                at(0)
            )
            .is_none()
        );
        t.failed(
            Scope::ApiKey,
            Some("::ffff:10.0.0.9".parse().unwrap()),
            None,
            at(0),
        );
        t.failed(
            Scope::ApiKey,
            Some("10.0.0.9".parse().unwrap()),
            None,
            at(0),
        );
        assert!(
            t.blocked_addr(Scope::ApiKey, Some("10.0.0.9".parse().unwrap()), at(0))
                .is_some()
        );
    }

    #[test]
    fn an_account_block_spares_addresses_that_signed_in_and_success_clears() {
        let t = throttle(1, 60, 60);
        let admin_home = Some("10.0.0.1".parse().unwrap());
        t.signed_in(admin_home, Account::Admin);
        // Many addresses, one failure each: the account's budget (4) runs out, no address's does.
        for i in 2..8 {
            let a = Some(format!("10.0.1.{i}").parse().unwrap());
            t.failed(Scope::SignIn, a, Some(Account::Admin), at(0));
        }
        let fresh = Some("10.0.2.1".parse().unwrap());
        assert!(t.sign_in_blocked(fresh, Account::Admin, at(0)).is_some());
        assert!(
            t.sign_in_blocked(fresh, Account::SecretKey, at(0))
                .is_none()
        );
        assert!(
            t.sign_in_blocked(admin_home, Account::Admin, at(0))
                .is_none()
        );
        t.signed_in(admin_home, Account::Admin);
        assert!(t.sign_in_blocked(fresh, Account::Admin, at(0)).is_none());
    }
}
