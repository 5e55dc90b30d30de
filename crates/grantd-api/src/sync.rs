//! `POST /sync/trigger`, `/sync/pause`, `/sync/start` and `GET /sync/status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole-drive sync.
pub const SYNC_USER_FILES: &str = "user-files";

/// A sync named in a request: `"name"` (or `"name::variant"`), or `{name, variant}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SyncRef {
    Name(String),
    Variant {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
}

impl SyncRef {
    /// The sync's name, without a `::variant` suffix.
    pub fn name(&self) -> &str {
        match self {
            SyncRef::Name(n) => n.split("::").next().unwrap_or(""),
            SyncRef::Variant { name, .. } => name,
        }
    }
}

/// `opts` of `POST /sync/trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerOpts {
    /// A full resync (reconciles deletions).
    #[serde(default)]
    pub reset: bool,
    /// Same as `reset` in grantd.
    #[serde(default, rename = "emptyCache")]
    pub empty_cache: bool,
}

/// `POST /sync/trigger`: run now. The key and connection may come from the
/// `Provider-Config-Key` / `Connection-Id` headers instead; without a connection, every watched
/// connection of the integration runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerSync {
    /// Empty: all.
    #[serde(default)]
    pub syncs: Vec<SyncRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_config_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opts: Option<TriggerOpts>,
    /// Deprecated: `incremental`, `full_refresh` or `full_refresh_and_clear_cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_mode: Option<String>,
    /// Deprecated: `true` is a full resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_resync: Option<bool>,
}

/// `POST /sync/pause` and `POST /sync/start`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PauseSync {
    #[serde(default)]
    pub syncs: Vec<SyncRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_config_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
}

/// `GET /sync/status` query.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SyncStatusQuery {
    /// Required: `*` or comma-separated names.
    #[serde(default)]
    pub syncs: Option<String>,
    /// Required.
    #[serde(default)]
    pub provider_config_key: Option<String>,
    /// Required.
    #[serde(default)]
    pub connection_id: Option<String>,
}

/// `GET /sync/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStatusResponse {
    pub syncs: Vec<SyncStatus>,
}

/// One sync of one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStatus {
    pub id: String,
    #[serde(default)]
    pub connection_id: Option<String>,
    pub name: String,
    pub variant: String,
    /// `RUNNING`, `SUCCESS`, `ERROR` or `PAUSED`.
    pub status: String,
    /// `INITIAL` until the first full pass is done, then `INCREMENTAL`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "finishedAt", default)]
    pub finished_at: Option<String>,
    #[serde(rename = "nextScheduledSyncAt", default)]
    pub next_scheduled_sync_at: Option<String>,
    pub frequency: String,
    /// Per model: the last run's counts.
    #[serde(rename = "latestResult")]
    pub latest_result: BTreeMap<String, SyncResult>,
    /// `success` or `failure`.
    #[serde(rename = "latestExecutionStatus")]
    pub latest_execution_status: String,
    /// Per model: live records.
    #[serde(rename = "recordCount")]
    pub record_count: BTreeMap<String, u64>,
    #[serde(default)]
    pub checkpoint: Option<serde_json::Value>,
    /// grantd extension: the last run's error.
    #[serde(default)]
    pub error: Option<String>,
}

/// Record counts of one run (also the `responseResults` of a sync webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResult {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
}
