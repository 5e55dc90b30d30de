//! Request counters exposed at `GET /_emulator/counters`: token requests by grant type and by
//! client, and Graph/SharePoint requests by route template (e.g. `GET /v1.0/me/drives`), each
//! including requests a fault answered; those are also listed on their own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    /// grant_type → count of token requests (successful or not).
    pub token_requests: BTreeMap<String, u64>,
    /// client_id → count of token requests.
    pub token_requests_by_client: BTreeMap<String, u64>,
    /// "METHOD /route/template" → count of Graph requests.
    pub graph_requests: BTreeMap<String, u64>,
    /// "METHOD host /route" → count of SharePoint requests.
    pub sharepoint_requests: BTreeMap<String, u64>,
    /// Requests a fault answered (also counted above): "graph METHOD /route",
    /// "sharepoint METHOD host /route" or "token grant_type" → count.
    #[serde(default)]
    pub faulted_requests: BTreeMap<String, u64>,
    /// Tenant id (`tid` of the bearer token) → Graph and SharePoint requests for it, faulted
    /// ones included.
    #[serde(default)]
    pub tenant_requests: BTreeMap<String, u64>,
    /// Tenant id → of those, the ones a fault answered (e.g. a tenant's 429s).
    #[serde(default)]
    pub tenant_faulted: BTreeMap<String, u64>,
    /// Change and lifecycle notifications (filled from `crate::notify` when read).
    #[serde(default)]
    pub notifications: crate::notify::NotificationCounters,
}

#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<CounterSnapshot>,
}

impl Counters {
    pub fn token(&self, grant_type: &str, client_id: &str) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.token_requests.entry(grant_type.to_owned()).or_default() += 1;
        *c.token_requests_by_client
            .entry(client_id.to_owned())
            .or_default() += 1;
    }

    pub fn graph(&self, method: &str, route: &str) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.graph_requests
            .entry(format!("{method} {route}"))
            .or_default() += 1;
    }

    pub fn sharepoint(&self, method: &str, host: &str, route: &str) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.sharepoint_requests
            .entry(format!("{method} {host} {route}"))
            .or_default() += 1;
    }

    pub fn tenant(&self, tid: &str) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.tenant_requests
            .entry(tid.to_ascii_lowercase())
            .or_default() += 1;
    }

    pub fn tenant_faulted(&self, tid: &str) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.tenant_faulted
            .entry(tid.to_ascii_lowercase())
            .or_default() += 1;
    }

    pub fn faulted(&self, key: String) {
        let mut c = self.inner.lock().expect("counters lock poisoned");
        *c.faulted_requests.entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        self.inner.lock().expect("counters lock poisoned").clone()
    }

    pub fn reset(&self) {
        *self.inner.lock().expect("counters lock poisoned") = CounterSnapshot::default();
    }
}
