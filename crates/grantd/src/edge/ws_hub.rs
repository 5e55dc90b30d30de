//! `WsHub`: the open WebSockets of `@nangohq/frontend` by `ws_client_id`, shared by the socket
//! handler (`web::ws`) that registers them, the connect flow's start that claims them
//! (`ws_limits`), and the OAuth callback that sends the final frame.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One open socket: where its final frame goes, and its place in the limits.
struct Client {
    tx: mpsc::UnboundedSender<String>,
    slot: super::ws_limits::Slot,
}

/// Open WebSockets by `ws_client_id`.
#[derive(Default)]
pub struct WsHub {
    clients: Mutex<HashMap<String, Client>>,
    /// Socket slots per instance and per client address (`ws_limits`).
    pub(crate) slots: super::ws_limits::Slots,
    /// Where a final frame for a socket held by another instance goes (`server` forwards it
    /// through `NOTIFY`); unset: dropped.
    remote: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl WsHub {
    pub(crate) fn register(
        &self,
        id: String,
        tx: mpsc::UnboundedSender<String>,
        slot: super::ws_limits::Slot,
    ) {
        self.clients
            .lock()
            .expect("ws hub lock poisoned")
            .insert(id, Client { tx, slot });
    }

    /// A connect flow started with `id` as its `ws_client_id`: if the socket is held here it is
    /// claimed (no longer closed at the claim deadline, no longer counted as unclaimed).
    pub fn claim(&self, id: &str) -> bool {
        match self
            .clients
            .lock()
            .expect("ws hub lock poisoned")
            .get_mut(id)
        {
            Some(c) => {
                c.slot.claim();
                true
            }
            None => false,
        }
    }

    /// Whether the socket `id` is held here and claimed.
    pub fn is_claimed(&self, id: &str) -> bool {
        self.clients
            .lock()
            .expect("ws hub lock poisoned")
            .get(id)
            .is_some_and(|c| c.slot.is_claimed())
    }

    pub(crate) fn remove(&self, id: &str) {
        self.clients
            .lock()
            .expect("ws hub lock poisoned")
            .remove(id);
    }

    /// Sends the final frame to `id` if it is connected here and forgets it; otherwise hands it
    /// to the remote sink (another instance may hold it). `true` when delivered here.
    pub fn finish(&self, id: &str, frame: Value) -> bool {
        if self.finish_local(id, &frame) {
            return true;
        }
        if let Some(remote) = self.remote.lock().expect("ws hub lock poisoned").as_ref() {
            let _ = remote.send(json!({"id": id, "frame": frame}).to_string());
        }
        false
    }

    /// Delivers a frame only if `id` is connected here (an outcome announced by another instance).
    pub fn finish_local(&self, id: &str, frame: &Value) -> bool {
        let tx = self
            .clients
            .lock()
            .expect("ws hub lock poisoned")
            .remove(id);
        tx.is_some_and(|c| c.tx.send(frame.to_string()).is_ok())
    }

    /// Sets where frames for sockets not held here go (`server::start`).
    pub fn set_remote(&self, tx: mpsc::UnboundedSender<String>) {
        *self.remote.lock().expect("ws hub lock poisoned") = Some(tx);
    }

    pub fn success(&self, id: &str, provider_config_key: &str, connection_id: &str) -> bool {
        self.finish(
            id,
            json!({"message_type": "success", "provider_config_key": provider_config_key, "connection_id": connection_id, "is_pending": false}),
        )
    }

    pub fn error(
        &self,
        id: &str,
        provider_config_key: Option<&str>,
        connection_id: Option<&str>,
        error_type: &str,
        desc: &str,
    ) -> bool {
        self.finish(
            id,
            json!({"message_type": "error", "provider_config_key": provider_config_key, "connection_id": connection_id, "error_type": error_type, "error_desc": desc}),
        )
    }
}
