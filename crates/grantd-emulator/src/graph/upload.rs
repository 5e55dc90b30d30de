//! Receiving file bytes: simple uploads (`PUT …/content`, kept in memory up to 4 MiB, spilled to
//! a temp file beyond) and upload sessions (always spilled, fragment by fragment), and
//! committing either into the drive model.
//!
//! Uploaded bytes are never held in memory beyond one body chunk once they pass 4 MiB: they go to
//! a temp file under `std::env::temp_dir()/grantd-emulator-{pid}/`, which is deleted when the
//! item is replaced, deleted, or the emulator is reset (see `content::SpillFile`).

use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

use super::content::{Content, QuickXor, SpillFile};
use super::drives::{Conflict, FileData, Identity, ItemMeta, Model};
use super::error::GraphError;
use super::seed::mime_for;

/// Largest simple upload (`PUT …/content`) accepted: 250 MB, as the current Graph docs say.
pub const SIMPLE_UPLOAD_LIMIT: u64 = 250 * 1024 * 1024;
/// Simple uploads up to this size stay in memory.
const MEMORY_LIMIT: usize = 4 * 1024 * 1024;
/// Upload-session fragments must be multiples of this (320 KiB), except the last.
pub const FRAGMENT_MULTIPLE: u64 = 320 * 1024;
/// Largest fragment per request (Microsoft: "less than 60 MiB").
pub const FRAGMENT_MAX: u64 = 60 * 1024 * 1024;
/// Upload sessions expire this long after creation or their last fragment.
pub const SESSION_LIFETIME_SECS: i64 = 3600;

/// Where an upload lands.
#[derive(Debug, Clone)]
pub enum UploadTarget {
    /// A name in a folder (created, or handled per `conflict` when it exists).
    Child {
        parent: String,
        /// Folders to create below `parent` first (path-based simple uploads create missing
        /// parents, as Graph does).
        missing: Vec<String>,
        name: String,
        conflict: Conflict,
    },
    /// New content for an existing file.
    Replace { item: String },
}

/// An upload session (`/_upload/{id}`).
#[derive(Debug)]
pub struct UploadSession {
    pub id: String,
    pub drive_id: String,
    pub target: UploadTarget,
    pub by: Identity,
    pub file: Arc<SpillFile>,
    pub writer: Option<tokio::fs::File>,
    /// Total size, fixed by `item.fileSize` or the first fragment's `Content-Range`.
    pub total: Option<u64>,
    pub received: u64,
    pub hasher: QuickXor,
    pub expires: DateTime<Utc>,
    /// `{origin}` and API base at creation, for the final driveItem's links.
    pub api_base: String,
    /// Set once committed or cancelled; later requests get 404.
    pub finished: bool,
    /// `item.fileSystemInfo` / `item.description` given at creation, kept on the finished item.
    pub meta: ItemMeta,
    /// A personal drive's upload URL refuses an `Authorization` header (business ignores it).
    pub personal: bool,
}

fn io_error(e: std::io::Error) -> GraphError {
    GraphError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        format!("storage error: {e}"),
    )
}

fn too_large() -> GraphError {
    GraphError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalidRequest",
        "The request body is too large for a simple upload; use an upload session.",
    )
    .with_inner("requestTooLarge")
}

/// Reads a simple-upload body: in memory up to 4 MiB, then spilled; never more than `limit`.
pub async fn receive_body(body: Body, limit: u64, name: &str) -> Result<FileData, GraphError> {
    let mut stream = body.into_data_stream();
    let mut mem = BytesMut::new();
    let mut spill: Option<(SpillFile, tokio::fs::File)> = None;
    let mut hasher = QuickXor::new();
    let mut len: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| GraphError::invalid_request(format!("body: {e}")))?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(too_large());
        }
        hasher.update(&chunk);
        if spill.is_none() && mem.len() + chunk.len() > MEMORY_LIMIT {
            let file = SpillFile::new_path().map_err(io_error)?;
            let mut w = tokio::fs::File::create(file.path())
                .await
                .map_err(io_error)?;
            w.write_all(&mem).await.map_err(io_error)?;
            mem.clear();
            spill = Some((file, w));
        }
        match &mut spill {
            Some((_, w)) => w.write_all(&chunk).await.map_err(io_error)?,
            None => mem.extend_from_slice(&chunk),
        }
    }
    let content = match spill {
        Some((file, mut w)) => {
            w.flush().await.map_err(io_error)?;
            Content::Spilled {
                file: Arc::new(file),
                len,
            }
        }
        None => Content::Memory(Bytes::from(mem)),
    };
    Ok(FileData {
        content,
        mime: mime_for(name).to_owned(),
        quick_xor: Some(hasher.finish()),
    })
}

/// Puts received content at the target. Returns the item id and whether it was created.
pub fn commit(
    model: &mut Model,
    drive_id: &str,
    target: &UploadTarget,
    mut data: FileData,
    now: DateTime<Utc>,
    by: &Identity,
) -> Result<(String, bool), GraphError> {
    let drive = model
        .drive_mut(drive_id)
        .ok_or_else(GraphError::item_not_found)?;
    match target {
        UploadTarget::Child {
            parent,
            missing,
            name,
            conflict,
        } => {
            data.mime = mime_for(name).to_owned();
            let parent = drive.ensure_folders(parent, missing, now, by)?;
            drive.put_item(&parent, name, Some(data), *conflict, now, by)
        }
        UploadTarget::Replace { item } => {
            let name = drive
                .item(item)
                .ok_or_else(GraphError::item_not_found)?
                .name
                .clone();
            data.mime = mime_for(&name).to_owned();
            drive.replace_content(item, data, now, by)?;
            Ok((item.clone(), false))
        }
    }
}
