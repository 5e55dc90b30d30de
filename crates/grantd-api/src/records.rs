//! `GET /records`: the change feed's records, each with `_nango_metadata`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The model of the whole-drive sync (`user-files`).
pub const MODEL_ONE_DRIVE_FILE: &str = "OneDriveFile";
/// The model of the picked-files sync.
pub const MODEL_ONE_DRIVE_FILE_SELECTION: &str = "OneDriveFileSelection";

/// One page of records, ascending by modification; `next_cursor` is `null` at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordsPage<T = Value> {
    pub records: Vec<Record<T>>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A record: the model's own fields and grantd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record<T = Value> {
    #[serde(flatten)]
    pub data: T,
    #[serde(rename = "_nango_metadata")]
    pub nango_metadata: NangoMetadata,
}

/// `_nango_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NangoMetadata {
    pub first_seen_at: String,
    pub last_modified_at: String,
    pub last_action: LastAction,
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// Pass as `cursor` to read the records after this one.
    pub cursor: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum LastAction {
    Added,
    Updated,
    Deleted,
}

/// A record of the `OneDriveFile` and `OneDriveFileSelection` models: a drive item.
/// Deleted records keep only `id` (and whatever they had when deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OneDriveFile {
    /// The drive item id.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(rename = "cTag", default)]
    pub c_tag: Option<String>,
    #[serde(default)]
    pub is_folder: Option<bool>,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// `/folder/name`, from the drive root (or the picked folder).
    #[serde(default)]
    pub path: Option<String>,
    /// The Graph drive item as received.
    #[serde(default)]
    pub raw_source: Option<Value>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub download_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub blob_size: Option<u64>,
    #[serde(default)]
    pub drive_id: Option<String>,
}

/// `GET /records` query (headers `Connection-Id` and `Provider-Config-Key` name the connection).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RecordsQuery {
    /// Required: `OneDriveFile` or `OneDriveFileSelection`.
    pub model: String,
    /// A `next_cursor` (or a record's `_nango_metadata.cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// ISO 8601; alias `delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_after: Option<String>,
    /// 1–10000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `added`, `updated`, `deleted`, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Only these record ids (repeatable, at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// `base` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}
