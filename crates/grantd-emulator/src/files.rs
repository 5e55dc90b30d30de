//! Pre-authenticated URLs, served without any `Authorization` header like Microsoft's:
//! `/_download/{token}` (what `…/content` redirects to and `@microsoft.graph.downloadUrl` holds;
//! streams bytes with Range → 206/416 and HEAD) and `/_upload/{session}` (upload sessions: chunked
//! `PUT` with `Content-Range` in 320 KiB multiples, `GET` status, `DELETE` cancel).
//!
//! Download tokens are stateless: `base64url(generation, drive, item, content version, expiry)`
//! plus a keyed SHA-256 tag, so listing thousands of items costs no memory. They live
//! [`DOWNLOAD_URL_LIFETIME_SECS`] on the emulator clock and die on reset or when the content
//! changes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::graph::content::Content;
use crate::graph::drives::{FileData, Item};
use crate::graph::error::{GraphError, request_ids};
use crate::graph::json::{self, Render};
use crate::graph::path::encode;
use crate::graph::routes::origin;
use crate::graph::upload::{
    self, FRAGMENT_MAX, FRAGMENT_MULTIPLE, SESSION_LIFETIME_SECS, UploadSession,
};
use crate::state::AppState;

/// How long a download URL works (the driveItem docs say about an hour).
pub const DOWNLOAD_URL_LIFETIME_SECS: i64 = 3600;

/// Mints and checks download tokens.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    key: [u8; 32],
    generation: u64,
}

impl Default for UrlSigner {
    fn default() -> UrlSigner {
        UrlSigner::new(0)
    }
}

/// What a valid download token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadClaim {
    pub drive_id: String,
    pub item_id: String,
    pub content_version: u32,
    pub expires: i64,
}

impl UrlSigner {
    pub fn new(generation: u64) -> UrlSigner {
        UrlSigner {
            key: rand::random(),
            generation,
        }
    }

    fn tag(&self, payload: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(payload.as_bytes());
        h.update(self.key);
        hex::encode(&h.finalize()[..16])
    }

    /// `{origin}/_download/{token}` for the item's current content.
    pub fn download_url(
        &self,
        origin: &str,
        drive_id: &str,
        item: &Item,
        now: DateTime<Utc>,
    ) -> String {
        let expires = (now + TimeDelta::seconds(DOWNLOAD_URL_LIFETIME_SECS)).timestamp();
        let payload = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.generation, drive_id, item.id, item.content_version, expires
        );
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&payload);
        format!("{origin}/_download/{b}.{}", self.tag(&payload))
    }

    /// The claim of a genuine token of this generation (expiry not checked).
    pub fn verify(&self, token: &str) -> Option<DownloadClaim> {
        let (b, tag) = token.split_once('.')?;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b)
            .ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let genuine: bool = subtle_eq(self.tag(&payload).as_bytes(), tag.as_bytes());
        if !genuine {
            return None;
        }
        let p: Vec<&str> = payload.split('\n').collect();
        if p.len() != 5 || p[0].parse::<u64>().ok()? != self.generation {
            return None;
        }
        Some(DownloadClaim {
            drive_id: p[1].to_owned(),
            item_id: p[2].to_owned(),
            content_version: p[3].parse().ok()?,
            expires: p[4].parse().ok()?,
        })
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/_download/{token}` and `/_upload/{session}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_download/{token}", get(download))
        .route(
            "/_upload/{session}",
            get(session_status)
                .put(upload_fragment)
                .delete(cancel_session),
        )
        .layer(axum::middleware::from_fn(request_ids))
}

fn unauthenticated(message: &str) -> GraphError {
    GraphError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

/// The requested byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) Range header: the whole content.
    Full,
    /// `start..end`, end exclusive.
    Part(u64, u64),
    /// Not satisfiable → 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range against `len`. Other units and multi-range requests are
/// ignored (200 with everything), as RFC 9110 allows.
pub fn parse_range(value: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end && start < len => {
            ByteRange::Part(start, end.min(len - 1) + 1)
        }
        (Ok(start), Err(_)) if b.is_empty() && start < len => ByteRange::Part(start, len),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 && len > 0 => {
            ByteRange::Part(len.saturating_sub(n), len)
        }
        _ => ByteRange::Unsatisfiable,
    }
}

async fn download(
    State(state): State<AppState>,
    method: Method,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    state.counters.graph(method.as_str(), "/_download/{token}");
    serve_download(&state, &method, &token, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve_download(
    state: &AppState,
    method: &Method,
    token: &str,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let (content, mime, name, ctag) = {
        let model = state.drives.lock();
        let claim = model
            .signer
            .verify(token)
            .ok_or_else(|| unauthenticated("The download URL is not valid."))?;
        if claim.expires < state.clock.unix() {
            return Err(unauthenticated("The download URL has expired."));
        }
        let drive = model
            .drive(&claim.drive_id)
            .ok_or_else(GraphError::item_not_found)?;
        let item = drive
            .item(&claim.item_id)
            .ok_or_else(GraphError::item_not_found)?;
        let file = item.file.as_ref().ok_or_else(GraphError::item_not_found)?;
        if item.content_version != claim.content_version {
            return Err(GraphError::item_not_found());
        }
        (
            file.content.clone(),
            file.mime.clone(),
            item.name.clone(),
            json::ctag(drive, item),
        )
    };
    let len = content.len();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, start, end) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        ByteRange::Unsatisfiable => {
            return Err(GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                "The requested range is not satisfiable.",
            )
            .with_header(header::CONTENT_RANGE, format!("bytes */{len}")));
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let stream = content.stream(start, end).await.map_err(|e| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "generalException",
                format!("storage error: {e}"),
            )
        })?;
        Body::from_stream(stream)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, mime);
    set(header::CONTENT_LENGTH, (end - start).to_string());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, ctag);
    set(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename*=UTF-8''{}", encode(&name)),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    Ok(resp)
}

fn session_not_found() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "The upload session was not found.",
    )
    .with_inner("uploadSessionNotFound")
}

/// The live session, or 404 (unknown, finished, or expired on the emulator clock).
fn find_session(
    state: &AppState,
    id: &str,
) -> Result<Arc<tokio::sync::Mutex<UploadSession>>, GraphError> {
    state
        .drives
        .lock()
        .sessions
        .get(id)
        .cloned()
        .ok_or_else(session_not_found)
}

fn status_json(s: &UploadSession) -> serde_json::Value {
    let ranges = match s.total {
        Some(t) if s.received < t => vec![format!("{}-{}", s.received, t - 1)],
        _ => vec![format!("{}-", s.received)],
    };
    json!({"expirationDateTime": json::time(s.expires), "nextExpectedRanges": ranges})
}

async fn session_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    state.counters.graph("GET", "/_upload/{session}");
    let result = async {
        let session = find_session(&state, &id)?;
        let s = session.lock().await;
        if s.finished || s.expires < state.clock.now() {
            return Err(session_not_found());
        }
        Ok((StatusCode::OK, axum::Json(status_json(&s))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn cancel_session(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    state.counters.graph("DELETE", "/_upload/{session}");
    let removed = state.drives.lock().sessions.remove(&id);
    match removed {
        Some(session) => {
            session.lock().await.finished = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => session_not_found().into_response(),
    }
}

/// `bytes {start}-{end}/{total}` → (start, end inclusive, total).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, total) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (a <= b && b < total).then_some((a, b, total))
}

async fn upload_fragment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: http::Uri,
    body: Body,
) -> Response {
    state.counters.graph("PUT", "/_upload/{session}");
    receive_fragment(&state, &id, &headers, &uri, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn fragment_error(
    status: StatusCode,
    code: &'static str,
    inner: &'static str,
    message: &str,
) -> GraphError {
    GraphError::new(status, code, message).with_inner(inner)
}

async fn receive_fragment(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    uri: &http::Uri,
    body: Body,
) -> Result<Response, GraphError> {
    let session = find_session(state, id)?;
    let mut s = session.lock().await;
    // The upload URL carries its own credential. A business (SharePoint) upload URL ignores an
    // `Authorization` header; a personal one (1drv) refuses it with 401 — after reading the body,
    // so the client sees the 401 instead of a reset connection.
    if s.personal && headers.contains_key(header::AUTHORIZATION) {
        drop(s);
        let mut stream = body.into_data_stream();
        let mut drained: u64 = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
            if drained > FRAGMENT_MAX {
                break;
            }
        }
        return Err(unauthenticated(
            "The upload URL is pre-authenticated; do not send an Authorization header.",
        ));
    }
    if s.finished || s.expires < state.clock.now() {
        return Err(session_not_found());
    }
    let (start, end, total) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
        .ok_or_else(|| {
            GraphError::invalid_request(
                "A valid Content-Range header (bytes start-end/total) is required.",
            )
        })?;
    let len = end - start + 1;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|d| d != len) {
        return Err(fragment_error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "fragmentLengthMismatch",
            "The Content-Range length does not match the Content-Length.",
        ));
    }
    if len > FRAGMENT_MAX {
        return Err(fragment_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalidRequest",
            "fragmentTooLarge",
            "A fragment must be smaller than 60 MiB.",
        ));
    }
    if s.total.is_some_and(|t| t != total) {
        return Err(fragment_error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "fragmentLengthMismatch",
            "The total size in Content-Range differs from the upload session's.",
        ));
    }
    if start < s.received {
        return Err(fragment_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "fragmentOverlap",
            "The uploaded fragment overlaps with data that has already been received.",
        ));
    }
    if start > s.received {
        return Err(fragment_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "fragmentOutOfOrder",
            "The uploaded fragment is out of order; see nextExpectedRanges.",
        ));
    }
    let last = end + 1 == total;
    if !last && len % FRAGMENT_MULTIPLE != 0 {
        return Err(GraphError::invalid_request(
            "Fragments other than the last must be a multiple of 320 KiB (327,680 bytes).",
        ));
    }
    write_fragment(&mut s, body, len).await?;
    s.total = Some(total);
    s.expires = state.clock.now() + TimeDelta::seconds(SESSION_LIFETIME_SECS);
    if !last {
        return Ok((StatusCode::ACCEPTED, axum::Json(status_json(&s))).into_response());
    }
    finish(state, &mut s, uri, headers).await
}

/// Appends the fragment to the session's temp file; on a short or failed body, rolls back.
async fn write_fragment(s: &mut UploadSession, body: Body, len: u64) -> Result<(), GraphError> {
    let io = |e: std::io::Error| {
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            format!("storage error: {e}"),
        )
    };
    if s.writer.is_none() {
        s.writer = Some(tokio::fs::File::create(s.file.path()).await.map_err(io)?);
    }
    let before = s.hasher.clone();
    let received = s.received;
    let mut got: u64 = 0;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    {
        let w = s.writer.as_mut().expect("writer opened above");
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(GraphError::invalid_request(format!("body: {e}")));
                    break;
                }
            };
            got += chunk.len() as u64;
            if got > len {
                break;
            }
            w.write_all(&chunk).await.map_err(io)?;
            s.hasher.update(&chunk);
        }
    }
    if failure.is_none() && got != len {
        failure = Some(fragment_error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "fragmentLengthMismatch",
            "The number of bytes received does not match the Content-Range.",
        ));
    }
    if let Some(e) = failure {
        let w = s.writer.as_mut().expect("writer opened above");
        w.set_len(received).await.map_err(io)?;
        w.seek(std::io::SeekFrom::Start(received))
            .await
            .map_err(io)?;
        s.hasher = before;
        return Err(e);
    }
    s.received += len;
    Ok(())
}

async fn finish(
    state: &AppState,
    s: &mut UploadSession,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    if let Some(mut w) = s.writer.take() {
        w.flush().await.map_err(|e| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "generalException",
                e.to_string(),
            )
        })?;
    }
    s.finished = true;
    let data = FileData {
        content: Content::Spilled {
            file: s.file.clone(),
            len: s.received,
        },
        mime: String::new(),
        quick_xor: Some(s.hasher.finish()),
    };
    let now = state.clock.now();
    let mut model = state.drives.lock();
    model.sessions.remove(&s.id);
    let (item_id, created) = upload::commit(&mut model, &s.drive_id, &s.target, data, now, &s.by)?;
    if let Some(d) = model.drive_mut(&s.drive_id) {
        d.set_meta(&item_id, s.meta.clone());
    }
    let drive = model
        .drive(&s.drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    let item = drive
        .item(&item_id)
        .ok_or_else(GraphError::item_not_found)?;
    let origin = origin(state, uri, headers);
    let r = Render {
        origin: &origin,
        api_base: &s.api_base,
        now,
        signer: &model.signer,
    };
    let v = json::with_context(
        json::item_json(&r, drive, item, false),
        format!(
            "{}/$metadata#drives('{}')/items/$entity",
            s.api_base,
            encode(&s.drive_id)
        ),
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(v)).into_response())
}
