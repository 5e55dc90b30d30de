//! The WebSocket `@nangohq/frontend` opens at `/`: on open the server sends
//! `{"message_type":"connection_ack","ws_client_id":…}`; when the flow started with that id ends,
//! exactly one `success` or `error` frame follows and the id is forgotten. A socket no connect
//! flow claims in time is closed (`edge::ws_limits`).

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Redirect, Response};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::edge::AppState;

/// `GET /`: a WebSocket upgrade for the SDK, otherwise the dashboard.
pub async fn root(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    use crate::edge::ws_limits::{MAX_INBOUND_BYTES, client_addr};
    match ws {
        Ok(ws) => {
            let Some(slot) = st.ws.slots.acquire(client_addr(&ext)) else {
                return crate::edge::ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_sockets",
                    "Too many open WebSockets; close some and try again",
                )
                .into_response();
            };
            ws.max_frame_size(MAX_INBOUND_BYTES)
                .max_message_size(MAX_INBOUND_BYTES)
                .on_upgrade(move |socket| serve(st, socket, slot))
                .into_response()
        }
        // A browser opening the server's address lands on the dashboard (its login if signed out).
        Err(_) => Redirect::to("/dashboard").into_response(),
    }
}

async fn serve(st: AppState, socket: WebSocket, slot: crate::edge::ws_limits::Slot) {
    let id = uuid::Uuid::new_v4().to_string();
    let (mut sink, mut stream) = socket.split();
    let ack = json!({"message_type": "connection_ack", "ws_client_id": id}).to_string();
    if sink.send(Message::Text(ack.into())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    st.ws.register(id.clone(), tx, slot);
    let limits = &st.core.config.limits;
    // Closed when no flow claimed it in time (here or on another instance), or when its flow
    // has not ended within the idle bound.
    let claim_deadline = tokio::time::sleep(limits.ws_claim_timeout);
    let idle = tokio::time::sleep(limits.ws_idle_timeout);
    tokio::pin!(claim_deadline, idle);
    let mut claim_checked = false;
    loop {
        tokio::select! {
            () = &mut claim_deadline, if !claim_checked => {
                claim_checked = true;
                if st.ws.is_claimed(&id) {
                    continue;
                }
                match st.core.ws_client_has_flow(&id).await {
                    // Started on another instance.
                    Ok(true) => {
                        st.ws.claim(&id);
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %crate::edge::error_chain(&e), "could not check a WebSocket's flow; closing it");
                        break;
                    }
                }
            }
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
