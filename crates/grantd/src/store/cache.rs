//! Read-through cache of live connections (decrypted) and integrations, so the hot paths — the
//! proxy and `GET /connections/{id}` — do no database work while a cached token is fresh.
//!
//! Invalidation, three ways:
//! - `Store`'s own writes forget what they change before returning (refresh, reconnect, delete,
//!   metadata, integration changes), so this process never reads its own stale data. New `Store`
//!   methods that write connections must call `Cache::forget_connection_id` (or the key form).
//! - On PostgreSQL, triggers (migration `0003_cache_notify`) `NOTIFY grantd_cache` on every
//!   meaningful change of a connection or integration row, by any instance; `listen` forwards
//!   them here. While the listener is disconnected the cache is bypassed, and it is cleared on
//!   reconnect, so a missed notification cannot leave stale entries.
//! - Every entry expires after `TTL`, a backstop for writes that bypass `Store`.
//!
//! A read that raced with an invalidation never stores its (possibly older) row: inserts carry
//! the generation seen before the database read and are dropped when it moved.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::model::{Connection, Integration};

/// Longest an entry is served without being read again.
pub const TTL: Duration = Duration::from_secs(10);
/// Most entries kept per kind; beyond, an arbitrary entry makes room.
const CAPACITY: usize = 10_000;
/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "grantd_cache";
/// The channel on which an instance announces a newly queued webhook (no payload).
pub const OUTBOX_CHANNEL: &str = "grantd_outbox";
/// The channel on which the instance that handled an OAuth callback announces its outcome for a
/// WebSocket it does not hold (payload: JSON `{"id", "frame"}`).
pub const WS_CHANNEL: &str = "grantd_ws";
/// The channel on which an instance announces that a tenant is throttled (payload:
/// `<tenant>|<RFC 3339 end of the window>`; a tenant id is not a secret).
pub const THROTTLE_CHANNEL: &str = "grantd_throttle";

/// A connection's cache key: (integration key, connection id).
#[derive(Clone, PartialEq, Eq)]
struct ConnKey {
    key: String,
    id: String,
}

/// A `ConnKey` borrowed, to look one up without allocating its two `String`s (hashbrown finds a
/// key by an `Equivalent` that hashes alike: both hash the `(&str, &str)` pair, as the upstream
/// pool's `KeyRef` does).
struct ConnRef<'a>(&'a str, &'a str);

impl Hash for ConnKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.key.as_str(), self.id.as_str()).hash(h);
    }
}

impl Hash for ConnRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.0, self.1).hash(h);
    }
}

impl hashbrown::Equivalent<ConnKey> for ConnRef<'_> {
    fn equivalent(&self, k: &ConnKey) -> bool {
        self.0 == k.key && self.1 == k.id
    }
}

/// The maps' hasher: foldhash, seeded per map from the OS's randomness (through std's
/// `RandomState`, whose keys come from it). SipHash on these `String` keys was ~440 instructions
/// of every proxied request and credential fetch; foldhash is a fraction of that and, with a
/// seed an attacker cannot learn, keeps colliding keys expensive to find — and keys only enter
/// these maps from rows that exist (created by secret-key holders or the OAuth flow).
#[derive(Clone)]
struct Seeded(foldhash::fast::SeedableRandomState);

impl Default for Seeded {
    fn default() -> Self {
        static SHARED: std::sync::LazyLock<foldhash::SharedSeed> = std::sync::LazyLock::new(|| {
            foldhash::SharedSeed::from_u64(std::hash::RandomState::new().hash_one(0u64))
        });
        let per_map = std::hash::RandomState::new().hash_one(1u64);
        Seeded(foldhash::fast::SeedableRandomState::with_seed(
            per_map, &SHARED,
        ))
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = foldhash::fast::FoldHasher;
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

type Map<K, V> = hashbrown::HashMap<K, V, Seeded>;

struct Entry<T> {
    value: T,
    at: Instant,
}

#[derive(Default)]
struct Maps {
    /// Shared, so a hit costs a reference count, not a deep copy of the credentials.
    connections: Map<ConnKey, Entry<Arc<Connection>>>,
    by_id: Map<i64, ConnKey>,
    integrations: Map<String, Entry<Arc<Integration>>>,
}

pub struct Cache {
    maps: RwLock<Maps>,
    generation: AtomicU64,
    /// False while a PostgreSQL listener is (re)connecting: lookups then miss.
    live: AtomicBool,
    /// Counts listener events (connected, notification applied), so tests can wait for them.
    events: tokio::sync::watch::Sender<u64>,
    /// Wakes the webhook outbox runner: signalled after this instance queues a webhook and, on
    /// PostgreSQL, when another instance announces one (`NOTIFY grantd_outbox`).
    pub(super) outbox_wake: tokio::sync::Notify,
    /// Wakes the change feed's schedule: signalled when a sync run of this instance ends, so the
    /// drive's next poll is planned from its start.
    pub(super) sync_wake: tokio::sync::Notify,
    /// WebSocket outcomes announced by any instance (`NOTIFY grantd_ws`), for the instance that
    /// holds the socket.
    pub(super) ws_outcomes: tokio::sync::broadcast::Sender<String>,
    /// Throttled tenants announced by any instance (`NOTIFY grantd_throttle`); an empty payload
    /// means "the listener (re)connected: notices may have been missed, read the table again".
    pub(super) throttle_notices: tokio::sync::broadcast::Sender<String>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            maps: RwLock::new(Maps::default()),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(true),
            events: tokio::sync::watch::Sender::new(0),
            outbox_wake: tokio::sync::Notify::new(),
            sync_wake: tokio::sync::Notify::new(),
            ws_outcomes: tokio::sync::broadcast::Sender::new(256),
            throttle_notices: tokio::sync::broadcast::Sender::new(1024),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

impl Cache {
    /// The generation to pass to `put_*` after reading the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn connection(&self, key: &str, connection_id: &str) -> Option<Arc<Connection>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let maps = self.maps.read().expect("cache lock poisoned");
        let hit = maps
            .connections
            .get(&ConnRef(key, connection_id))
            .filter(|e| e.at.elapsed() < TTL)
            .map(|e| Arc::clone(&e.value));
        crate::metrics::cache_lookup("connection", hit.is_some());
        hit
    }

    pub fn put_connection(&self, generation: u64, c: Arc<Connection>) {
        let mut maps = self.maps.write().expect("cache lock poisoned");
        if self.generation() != generation || !self.live.load(Ordering::Acquire) {
            return;
        }
        let k = ConnKey {
            key: c.provider_config_key.as_str().to_owned(),
            id: c.connection_id.as_str().to_owned(),
        };
        if maps.connections.len() >= CAPACITY && !maps.connections.contains_key(&k) {
            if let Some(old) = maps.connections.keys().next().cloned() {
                if let Some(e) = maps.connections.remove(&old) {
                    maps.by_id.remove(&e.value.id);
                }
            }
        }
        maps.by_id.insert(c.id, k.clone());
        maps.connections.insert(
            k,
            Entry {
                value: c,
                at: Instant::now(),
            },
        );
    }

    pub fn integration(&self, key: &str) -> Option<Arc<Integration>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let maps = self.maps.read().expect("cache lock poisoned");
        let hit = maps
            .integrations
            .get(key)
            .filter(|e| e.at.elapsed() < TTL)
            .map(|e| Arc::clone(&e.value));
        crate::metrics::cache_lookup("integration", hit.is_some());
        hit
    }

    pub fn put_integration(&self, generation: u64, i: Arc<Integration>) {
        let mut maps = self.maps.write().expect("cache lock poisoned");
        if self.generation() != generation || !self.live.load(Ordering::Acquire) {
            return;
        }
        if maps.integrations.len() >= CAPACITY {
            maps.integrations.clear();
        }
        maps.integrations.insert(
            i.unique_key.as_str().to_owned(),
            Entry {
                value: i,
                at: Instant::now(),
            },
        );
    }

    pub fn forget_connection(&self, key: &str, connection_id: &str) {
        self.bump();
        let mut maps = self.maps.write().expect("cache lock poisoned");
        if let Some(e) = maps.connections.remove(&ConnRef(key, connection_id)) {
            maps.by_id.remove(&e.value.id);
        }
    }

    pub fn forget_connection_id(&self, id: i64) {
        self.bump();
        let mut maps = self.maps.write().expect("cache lock poisoned");
        if let Some(k) = maps.by_id.remove(&id) {
            maps.connections.remove(&k);
        }
    }

    /// Forgets the integration and every cached connection of it.
    pub fn forget_integration(&self, key: &str) {
        self.bump();
        let mut maps = self.maps.write().expect("cache lock poisoned");
        maps.integrations.remove(key);
        let Maps {
            connections, by_id, ..
        } = &mut *maps;
        connections.retain(|k, e| {
            let keep = k.key != key;
            if !keep {
                by_id.remove(&e.value.id);
            }
            keep
        });
    }

    pub fn clear(&self) {
        self.bump();
        let mut maps = self.maps.write().expect("cache lock poisoned");
        *maps = Maps::default();
    }

    /// Applies one notification payload: `c:<id>` or `i:<integration key>`.
    fn apply(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("c", id)) => match id.parse() {
                Ok(id) => self.forget_connection_id(id),
                Err(_) => self.clear(),
            },
            Some(("i", key)) => self.forget_integration(key),
            _ => self.clear(),
        }
        self.events.send_modify(|n| *n += 1);
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.clear();
        self.events.send_modify(|n| *n += 1);
    }
}

/// Follows `NOTIFY grantd_cache` on PostgreSQL for as long as the cache lives. The cache is
/// bypassed until the first `LISTEN` succeeds and whenever the connection drops.
pub fn listen(url: String, cache: &Arc<Cache>) {
    cache.set_live(false);
    let weak: Weak<Cache> = Arc::downgrade(cache);
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            match follow(&url, &weak).await {
                Ok(()) => return,
                Err(e) => {
                    if let Some(c) = weak.upgrade() {
                        c.set_live(false);
                    }
                    failures += 1;
                    tracing::warn!(error = %e, "cache invalidation listener disconnected; the cache is bypassed until it reconnects");
                    let wait = Duration::from_millis(200 << failures.min(5));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
}

/// One listener session; `Ok` when the cache is gone.
async fn follow(url: &str, weak: &Weak<Cache>) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener
        .listen_all([CHANNEL, OUTBOX_CHANNEL, WS_CHANNEL, THROTTLE_CHANNEL])
        .await?;
    match weak.upgrade() {
        Some(c) => {
            c.set_live(true);
            // Throttle notices sent while disconnected are lost: have the table read again.
            let _ = c.throttle_notices.send(String::new());
        }
        None => return Ok(()),
    }
    loop {
        // Wake up now and then to notice that the store was dropped.
        match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
            Err(_) => {
                if weak.strong_count() == 0 {
                    return Ok(());
                }
            }
            Ok(Ok(Some(n))) => match weak.upgrade() {
                Some(c) if n.channel() == OUTBOX_CHANNEL => c.outbox_wake.notify_one(),
                Some(c) if n.channel() == THROTTLE_CHANNEL => {
                    if !n.payload().is_empty() {
                        let _ = c.throttle_notices.send(n.payload().to_owned());
                    }
                }
                Some(c) if n.channel() == WS_CHANNEL => {
                    // No receiver (no server in this process) is fine.
                    let _ = c.ws_outcomes.send(n.payload().to_owned());
                }
                Some(c) => c.apply(n.payload()),
                None => return Ok(()),
            },
            // The connection dropped (notifications may be lost): start over.
            Ok(Ok(None)) => {
                return Err(sqlx::Error::Protocol("listener connection lost".into()));
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

impl super::Store {
    /// The integration, from the cache when present. For lookups that need only the provider and
    /// client settings; its `app_credential` may lag a change by up to `TTL`.
    pub async fn cached_integration(
        &self,
        key: &crate::model::ProviderConfigKey,
    ) -> Result<Option<Arc<Integration>>, super::Error> {
        if let Some(i) = self.cache.integration(key.as_str()) {
            return Ok(Some(i));
        }
        let generation = self.cache.generation();
        // Boxed: the miss path's database future would otherwise enlarge every caller's.
        let found = Box::pin(self.get_integration(key)).await?.map(Arc::new);
        if let Some(i) = &found {
            self.cache.put_integration(generation, Arc::clone(i));
        }
        Ok(found)
    }

    /// The live connection, from the cache when present (no database work on a hit).
    pub async fn cached_connection(
        &self,
        key: &crate::model::ProviderConfigKey,
        connection_id: &crate::model::ConnectionId,
    ) -> Result<Option<Connection>, super::Error> {
        Ok(self
            .cached_connection_shared(key, connection_id)
            .await?
            .map(|c| Connection::clone(&c)))
    }

    /// `cached_connection` without the copy: the cached value itself, shared (the hot paths
    /// only read it).
    pub async fn cached_connection_shared(
        &self,
        key: &crate::model::ProviderConfigKey,
        connection_id: &crate::model::ConnectionId,
    ) -> Result<Option<Arc<Connection>>, super::Error> {
        if let Some(c) = self.cache.connection(key.as_str(), connection_id.as_str()) {
            return Ok(Some(c));
        }
        let generation = self.cache.generation();
        // Boxed: the miss path's database future would otherwise enlarge every caller's.
        let found = Box::pin(self.get_connection(key, connection_id))
            .await?
            .map(Arc::new);
        if let Some(c) = &found {
            self.cache.put_connection(generation, Arc::clone(c));
        }
        Ok(found)
    }

    /// Remembers a connection just read or written (e.g. after a refresh), unless something
    /// changed it since `generation`.
    pub fn cache_connection(&self, generation: u64, c: &Connection) {
        self.cache.put_connection(generation, Arc::new(c.clone()));
    }

    /// Whether the cache is in use (on PostgreSQL: the invalidation listener is connected).
    pub fn cache_live(&self) -> bool {
        self.cache.live.load(Ordering::Acquire)
    }

    /// Changes whenever the invalidation listener connects or applies a notification.
    pub fn cache_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.cache.events.subscribe()
    }

    /// The cache generation, to pass to `cache_connection` after a read.
    pub fn cache_generation(&self) -> u64 {
        self.cache.generation()
    }
}
