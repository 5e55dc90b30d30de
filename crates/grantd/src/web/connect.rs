//! `GET /oauth/connect/{key}` (start: 302 to Microsoft), `GET /oauth/callback` (finish) and the
//! hosted Connect UI at `/connect?session_token=…`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{connect_i18n, pages};
use crate::connections::flow::{CallbackError, FlowFailure, StartError, StartRequest};
use crate::edge::ApiError;
use crate::edge::AppState;

/// A failure page (what happened, what to do, Nango's error type) with `status`.
fn failure_page(status: StatusCode, message: &str, what_to_do: &str, error_type: &str) -> Response {
    (
        status,
        Html(pages::failure(message, what_to_do, error_type).into_string()),
    )
        .into_response()
}

/// Logs an internal error (`what` failed) and answers the generic 500 page; the details stay in
/// the log.
fn internal_failure(e: &dyn std::error::Error, what: &str) -> Response {
    tracing::error!(error = %crate::edge::error_chain(e), "{what}");
    failure_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side.",
        "Try again in a moment.",
        "unknown_err",
    )
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default()
}

fn report(st: &AppState, f: &FlowFailure) -> Response {
    if let Some(ws) = &f.ws_client_id {
        st.ws.error(
            ws,
            f.provider_config_key.as_deref(),
            f.connection_id.as_deref(),
            f.error_type,
            &f.message,
        );
    }
    failure_page(
        StatusCode::BAD_REQUEST,
        &f.message,
        &f.what_to_do,
        f.error_type,
    )
}

pub async fn start(State(st): State<AppState>, Path(key): Path<String>, parts: Parts) -> Response {
    let mut req = StartRequest {
        key,
        ..Default::default()
    };
    for (k, v) in query_pairs(&parts) {
        match k.as_str() {
            "connect_session_token" => req.session_token = Some(v),
            "ws_client_id" => req.ws_client_id = Some(v),
            "user_scope" => req.user_scope = Some(v),
            "connection_id" => req.connection_id = Some(v),
            _ => {
                if let Some(p) = k.strip_prefix("params[").and_then(|r| r.strip_suffix(']')) {
                    req.params.insert(p.to_owned(), v);
                } else if let Some(p) = k
                    .strip_prefix("authorization_params[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    req.authorization_params.push((p.to_owned(), v));
                }
            }
        }
    }
    if let Err(msg) = crate::validate::browser_authorization_params(&req.authorization_params) {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_authorization_params", msg)
            .into_response();
    }
    let ws_client_id = req.ws_client_id.clone();
    match st.core.start_connect(req).await {
        Ok(url) => {
            // A real flow now uses the socket (if it is held here; else its instance finds the
            // flow in the database at its claim deadline).
            if let Some(ws) = &ws_client_id {
                st.ws.claim(ws);
            }
            (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
        }
        Err(StartError::Unauthorized(code, msg)) => ApiError::auth(code, msg).into_response(),
        Err(StartError::Rejected(code, msg)) => {
            ApiError::new(StatusCode::BAD_REQUEST, code, msg).into_response()
        }
        Err(StartError::Flow(f)) => report(&st, &f),
        Err(StartError::Internal(e)) => internal_failure(&e, "connect start failed"),
    }
}

pub async fn callback(State(st): State<AppState>, parts: Parts) -> Response {
    let query: BTreeMap<String, String> = query_pairs(&parts).into_iter().collect();
    match st.core.finish_connect(&query).await {
        Ok(done) => {
            let c = &done.connection;
            if let Some(ws) = &done.ws_client_id {
                st.ws
                    .success(ws, c.provider_config_key.as_str(), c.connection_id.as_str());
            }
            Html(
                pages::success(
                    c.provider_config_key.as_str(),
                    c.connection_id.as_str(),
                    done.created,
                )
                .into_string(),
            )
            .into_response()
        }
        Err(CallbackError::BadState(msg)) => failure_page(
            StatusCode::BAD_REQUEST,
            &msg,
            "Close this window and start the connection again from the app.",
            "state_err",
        ),
        Err(CallbackError::Flow(f)) => report(&st, &f),
        Err(CallbackError::Internal(e)) => internal_failure(&e, "connect callback failed"),
    }
}

/// The hosted Connect UI, at `/connect` and `/connect/`: with `?session_token=` (the
/// `connect_link`, or the embedded page after the handshake) the session's integrations; without
/// one, when `@nangohq/frontend`'s `openConnectUI` frames it (`?apiURL=…`, path `/connect/`), the
/// shell that speaks Nango's `ready` / `session_token` handshake. Localised (`connect_i18n`).
pub async fn connect_ui(State(st): State<AppState>, parts: Parts) -> Response {
    let q = query_pairs(&parts);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let t = connect_i18n::pick(get("lang").as_deref(), &parts.headers);
    let embedded = get("embedded").is_some_and(|v| v == "1");
    let Some(token) = get("session_token") else {
        if parts.uri.path().ends_with('/') || get("apiURL").is_some() {
            return Html(pages::connect_shell(t).into_string()).into_response();
        }
        return failure_page(
            StatusCode::BAD_REQUEST,
            "This connect link is incomplete.",
            "Ask the app for a new connect link.",
            "missing_connect_session_token",
        );
    };
    let session = match st.core.connect_session(&token).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return failure_page(
                StatusCode::UNAUTHORIZED,
                "This connect link has expired or is invalid.",
                "Go back to the app and start again to get a new link.",
                "unknown_connect_session_token",
            );
        }
        Err(e) => return internal_failure(&e, "connect UI failed"),
    };
    let public = st.core.config.public_url.as_str().trim_end_matches('/');
    // A reconnect session offers only the connection's integration.
    let only = session
        .reconnect
        .as_ref()
        .map(|(k, _)| k.as_str().to_owned());
    let integrations = match st.core.list_integrations().await {
        Ok(all) => all
            .into_iter()
            .filter(|i| {
                session
                    .allowed_integrations
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|k| k == i.unique_key.as_str()))
                    && only.as_ref().is_none_or(|k| k == i.unique_key.as_str())
            })
            .map(|i| {
                let name = st.core.catalog.display_name(&i);
                // Nango's `overrides[key].docs_connect`: the docs link shown beside it.
                let docs = session.overrides[i.unique_key.as_str()]["docs_connect"]
                    .as_str()
                    .map(str::to_owned);
                let logo = format!("{public}/images/template-logos/{}.svg", i.provider);
                (i.unique_key.to_string(), name, docs, logo)
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::error!(error = %e, "connect UI failed to list integrations");
            vec![]
        }
    };
    Html(
        pages::connect_ui(
            t,
            &token,
            &integrations,
            session.reconnect.is_some(),
            embedded,
        )
        .into_string(),
    )
    .into_response()
}
