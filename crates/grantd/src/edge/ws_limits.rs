//! Bounds for the SDK's WebSocket hub at `/`, which needs no credential: inbound frames and
//! messages are capped (the protocol only sends server → client), sockets are counted per
//! instance and per client address, and a socket idle longer than an OAuth flow may last is
//! closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest inbound WebSocket frame or message (a client has nothing to say but close/pong).
pub const MAX_INBOUND_BYTES: usize = 4096;
/// Open sockets per instance.
pub const MAX_SOCKETS: usize = 4096;
/// Open sockets per client address (a browser tab opens one per connect attempt).
pub const MAX_SOCKETS_PER_ADDR: usize = 32;
/// A socket whose flow has not ended after this long is closed (an OAuth flow expires after
/// 15 minutes).
pub const IDLE: Duration = Duration::from_secs(20 * 60);

/// Open sockets, in total and by client address.
#[derive(Default)]
pub struct Slots {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<Option<IpAddr>, usize>,
}

/// One open socket's place; released when dropped.
pub struct Slot {
    inner: Arc<Mutex<Counts>>,
    addr: Option<IpAddr>,
}

impl Slots {
    /// A place for a socket from `addr`, or `None` when the instance or that address is full.
    pub fn acquire(&self, addr: Option<IpAddr>) -> Option<Slot> {
        self.acquire_within(addr, MAX_SOCKETS, MAX_SOCKETS_PER_ADDR)
    }

    fn acquire_within(&self, addr: Option<IpAddr>, total: usize, per_addr: usize) -> Option<Slot> {
        let mut c = self.inner.lock().expect("ws slots lock poisoned");
        let mine = c.by_addr.get(&addr).copied().unwrap_or(0);
        if c.total >= total || mine >= per_addr {
            return None;
        }
        c.total += 1;
        c.by_addr.insert(addr, mine + 1);
        Some(Slot {
            inner: self.inner.clone(),
            addr,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.inner.lock().expect("ws slots lock poisoned");
        c.total -= 1;
        if let Some(n) = c.by_addr.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                c.by_addr.remove(&self.addr);
            }
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

    #[test]
    fn slots_are_bounded_per_instance_and_address_and_released() {
        let s = Slots::default();
        let a: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let b: Option<IpAddr> = Some("10.0.0.2".parse().unwrap());
        let held: Vec<Slot> = (0..2).filter_map(|_| s.acquire_within(a, 3, 2)).collect();
        assert_eq!(held.len(), 2);
        assert!(s.acquire_within(a, 3, 2).is_none(), "per address");
        let third = s.acquire_within(b, 3, 2).expect("another address");
        assert!(s.acquire_within(b, 3, 2).is_none(), "per instance");
        drop(third);
        drop(held);
        assert!(s.acquire_within(a, 3, 2).is_some(), "released");
    }
}
