//! File picker sessions: what the app's backend chose for one picker opening (`POST
//! /picker/sessions`), stored as JSON next to the token's hash.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConnectionId, ProviderConfigKey};

/// Where the picker opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PickerEntry {
    /// The user's own OneDrive (the `-my` host).
    OneDrive,
    /// The user's recent files (OneDrive's "Recent" view, on the `-my` host).
    Recent,
    /// Files shared with the user (on the `-my` host).
    Shared,
    /// A SharePoint site on the tenant's root host, e.g. `https://contoso.sharepoint.com/sites/dev`.
    SharePoint { site_url: String },
}

/// What may be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PickerMode {
    #[default]
    Files,
    Folders,
    All,
}

impl PickerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PickerMode::Files => "files",
            PickerMode::Folders => "folders",
            PickerMode::All => "all",
        }
    }
}

/// The options of one picker session, as validated by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickerOptions {
    pub entry: PickerEntry,
    pub mode: PickerMode,
    pub multi_select: bool,
    /// Microsoft's `typesAndSources.filters` (`.docx`, `folder`, `photo`, …).
    pub filters: Vec<String>,
    /// Merge what is picked into the connection's metadata (Nango's selection shape).
    pub save_selection: bool,
    /// The app page's origin (`https://app.example.com`): picked items are posted to it, and
    /// only it may frame the picker page.
    pub origin: String,
}

/// A live picker session.
#[derive(Debug, Clone)]
pub struct PickerSession {
    pub id: i64,
    pub provider_config_key: ProviderConfigKey,
    pub connection_id: ConnectionId,
    pub options: PickerOptions,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When the session's one pick was recorded (a session accepts one pick).
    pub picked_at: Option<DateTime<Utc>>,
}
