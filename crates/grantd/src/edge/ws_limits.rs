//! Bounds for the SDK's WebSocket hub at `/`, which needs no credential: inbound frames and
//! messages are capped (the protocol only sends server → client), sockets are counted per
//! instance and per client address, and a socket is tied to a real connect flow: until a flow
//! started with its `ws_client_id` claims it, it is *unclaimed* — counted against much smaller
//! bounds and closed when no flow has claimed it within `Limits::ws_claim_timeout` (on any
//! instance: the deadline asks the database). A claimed socket whose flow has not ended within
//! `Limits::ws_idle_timeout` is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Largest inbound WebSocket frame or message (a client has nothing to say but close/pong).
pub const MAX_INBOUND_BYTES: usize = 4096;
/// Open sockets per instance.
pub const MAX_SOCKETS: usize = 4096;
/// Open sockets per client address (a browser tab opens one per connect attempt).
pub const MAX_SOCKETS_PER_ADDR: usize = 32;
/// Unclaimed sockets per instance.
pub const MAX_UNCLAIMED: usize = 512;
/// Unclaimed sockets per client address: a browser opens the popup right after the socket's
/// acknowledgement, so a real user holds one or two at a time.
pub const MAX_UNCLAIMED_PER_ADDR: usize = 4;

/// The bounds one `Slots` enforces.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    total: usize,
    per_addr: usize,
    unclaimed: usize,
    unclaimed_per_addr: usize,
}

const BOUNDS: Bounds = Bounds {
    total: MAX_SOCKETS,
    per_addr: MAX_SOCKETS_PER_ADDR,
    unclaimed: MAX_UNCLAIMED,
    unclaimed_per_addr: MAX_UNCLAIMED_PER_ADDR,
};

/// Open sockets, in total and by client address, and how many of them are unclaimed.
#[derive(Default)]
pub struct Slots {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<Option<IpAddr>, usize>,
    unclaimed: usize,
    unclaimed_by_addr: HashMap<Option<IpAddr>, usize>,
}

fn dec(map: &mut HashMap<Option<IpAddr>, usize>, addr: &Option<IpAddr>) {
    if let Some(n) = map.get_mut(addr) {
        *n -= 1;
        if *n == 0 {
            map.remove(addr);
        }
    }
}

/// One open socket's place; released when dropped.
pub struct Slot {
    inner: Arc<Mutex<Counts>>,
    addr: Option<IpAddr>,
    claimed: bool,
}

impl Slots {
    /// An unclaimed place for a socket from `addr`, or `None` when the instance or that address
    /// is full.
    pub fn acquire(&self, addr: Option<IpAddr>) -> Option<Slot> {
        self.acquire_within(addr, BOUNDS)
    }

    fn acquire_within(&self, addr: Option<IpAddr>, b: Bounds) -> Option<Slot> {
        let mut c = self.inner.lock().expect("ws slots lock poisoned");
        let mine = c.by_addr.get(&addr).copied().unwrap_or(0);
        let mine_unclaimed = c.unclaimed_by_addr.get(&addr).copied().unwrap_or(0);
        if c.total >= b.total
            || mine >= b.per_addr
            || c.unclaimed >= b.unclaimed
            || mine_unclaimed >= b.unclaimed_per_addr
        {
            return None;
        }
        c.total += 1;
        c.by_addr.insert(addr, mine + 1);
        c.unclaimed += 1;
        c.unclaimed_by_addr.insert(addr, mine_unclaimed + 1);
        Some(Slot {
            inner: self.inner.clone(),
            addr,
            claimed: false,
        })
    }
}

impl Slot {
    /// A flow claimed the socket: it no longer counts as unclaimed.
    pub fn claim(&mut self) {
        if self.claimed {
            return;
        }
        self.claimed = true;
        let mut c = self.inner.lock().expect("ws slots lock poisoned");
        c.unclaimed -= 1;
        dec(&mut c.unclaimed_by_addr, &self.addr);
    }

    pub fn is_claimed(&self) -> bool {
        self.claimed
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.inner.lock().expect("ws slots lock poisoned");
        c.total -= 1;
        dec(&mut c.by_addr, &self.addr);
        if !self.claimed {
            c.unclaimed -= 1;
            dec(&mut c.unclaimed_by_addr, &self.addr);
        }
    }
}

/// The client's address, when the server was started with connect info.
pub fn client_addr(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Bounds = Bounds {
        total: 3,
        per_addr: 2,
        unclaimed: 3,
        unclaimed_per_addr: 2,
    };

    #[test]
    fn slots_are_bounded_per_instance_and_address_and_released() {
        let s = Slots::default();
        let a: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let b: Option<IpAddr> = Some("10.0.0.2".parse().unwrap());
        let held: Vec<Slot> = (0..2).filter_map(|_| s.acquire_within(a, SMALL)).collect();
        assert_eq!(held.len(), 2);
        assert!(s.acquire_within(a, SMALL).is_none(), "per address");
        let third = s.acquire_within(b, SMALL).expect("another address");
        assert!(s.acquire_within(b, SMALL).is_none(), "per instance");
        drop(third);
        drop(held);
        assert!(s.acquire_within(a, SMALL).is_some(), "released");
    }

    #[test]
    fn unclaimed_sockets_have_their_own_smaller_bound() {
        let s = Slots::default();
        let a: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let bounds = Bounds {
            total: 10,
            per_addr: 5,
            unclaimed: 10,
            unclaimed_per_addr: 2,
        };
        let mut held: Vec<Slot> = (0..2).filter_map(|_| s.acquire_within(a, bounds)).collect();
        assert!(
            s.acquire_within(a, bounds).is_none(),
            "two unclaimed at most"
        );
        held[0].claim();
        held[0].claim();
        held.push(
            s.acquire_within(a, bounds)
                .expect("a claimed socket frees its place"),
        );
        assert!(s.acquire_within(a, bounds).is_none());
        drop(held);
        let c = s.inner.lock().unwrap();
        assert_eq!((c.total, c.unclaimed), (0, 0));
        assert!(c.by_addr.is_empty() && c.unclaimed_by_addr.is_empty());
    }
}
