//! The WebSocket `@nangohq/frontend` opens at `/`: on open the server sends
//! `{"message_type":"connection_ack","ws_client_id":…}`; when the flow started with that id ends,
//! exactly one `success` or `error` frame follows and the id is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Redirect, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::server::AppState;

/// Open WebSockets by `ws_client_id`.
#[derive(Default)]
pub struct WsHub {
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    slots: super::ws_limits::Slots,
}

impl WsHub {
    fn register(&self, id: String, tx: mpsc::UnboundedSender<String>) {
        self.clients
            .lock()
            .expect("ws hub lock poisoned")
            .insert(id, tx);
    }

    fn remove(&self, id: &str) {
        self.clients
            .lock()
            .expect("ws hub lock poisoned")
            .remove(id);
    }

    /// Sends the final frame to `id` (if it is connected here) and forgets it.
    pub fn finish(&self, id: &str, frame: Value) -> bool {
        let tx = self
            .clients
            .lock()
            .expect("ws hub lock poisoned")
            .remove(id);
        tx.is_some_and(|tx| tx.send(frame.to_string()).is_ok())
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

/// `GET /`: a WebSocket upgrade for the SDK, otherwise the dashboard.
pub async fn root(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    use super::ws_limits::{MAX_INBOUND_BYTES, client_addr};
    match ws {
        Ok(ws) => {
            let Some(slot) = st.ws.slots.acquire(client_addr(&ext)) else {
                return crate::api::ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_sockets",
                    "Too many open WebSockets; close some and try again",
                )
                .into_response();
            };
            ws.max_frame_size(MAX_INBOUND_BYTES)
                .max_message_size(MAX_INBOUND_BYTES)
                .on_upgrade(move |socket| async move {
                    let _slot = slot;
                    serve(st, socket).await;
                })
                .into_response()
        }
        // A browser opening the server's address lands on the dashboard (its login if signed out).
        Err(_) => Redirect::to("/dashboard").into_response(),
    }
}

async fn serve(st: AppState, socket: WebSocket) {
    let id = uuid::Uuid::new_v4().to_string();
    let (mut sink, mut stream) = socket.split();
    let ack = json!({"message_type": "connection_ack", "ws_client_id": id}).to_string();
    if sink.send(Message::Text(ack.into())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    st.ws.register(id.clone(), tx);
    // Closed when no flow ended on it within the idle bound.
    let idle = tokio::time::sleep(super::ws_limits::IDLE);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            () = &mut idle => break,
            frame = rx.recv() => {
                if let Some(text) = frame {
                    let _ = sink.send(Message::Text(text.into())).await;
                }
                break;
            }
            incoming = stream.next() => {
                // The protocol is server → client only; a close or error ends it.
                match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    st.ws.remove(&id);
    let _ = sink.close().await;
}
