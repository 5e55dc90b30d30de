//! The hosted File Picker: `POST /picker/sessions` (secret key), and `POST /picker/token` /
//! `POST /picker/picked`, which only grantd's own picker page calls (picker session token).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `options` of a picker session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PickerOptionsInput {
    /// Required: the http(s) origin of the app page that opens the picker
    /// (`https://app.example.com`); picked items are posted to it only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `oneDrive` (default), `recent`, `shared` or `sharePoint` (with `site_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// With `entry: sharePoint` only: an https URL of a site on the connection's SharePoint host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
    /// `files` (default), `folders` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_select: Option<bool>,
    /// At most 20 of `.ext` or `folder`, `file`, `photo`, `video`, `audio`, `document`, `media`,
    /// `onenote`, `site`, `documentLibrary`, `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<String>>,
    /// Merge the picked items into the connection's metadata (Nango's `drives`/`pickedFiles`
    /// selection, which the change feed then watches). Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_selection: Option<bool>,
}

/// `POST /picker/sessions`: a picker session for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatePickerSession {
    pub connection_id: String,
    pub provider_config_key: String,
    pub options: PickerOptionsInput,
}

/// The `data` of a created picker session (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickerSessionCreated {
    /// `grantd_picker_session_…`: single-purpose, short-lived.
    pub token: String,
    /// The hosted picker page for this session (`/picker?session_token=…`); open it with
    /// `/picker/sdk.js`.
    pub url: String,
    pub expires_at: String,
    /// `false` when the connection cannot open the picker yet (see `problem`).
    pub ready: bool,
    /// Why the connection cannot open the picker, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<PickerProblem>,
}

/// Why a connection cannot open the picker (e.g. no SharePoint token: `Sites.Read.All` missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickerProblem {
    pub code: String,
    pub message: String,
    /// A Connect UI link that reconnects the account, when reconnecting fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_link: Option<String>,
}

/// `POST /picker/token` (picker page only): a SharePoint token for one of the connection's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PickerTokenRequest {
    /// `https://{host}`, as Microsoft's picker asks for it.
    pub resource: String,
}

/// The `data` of `POST /picker/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickerToken {
    pub token: String,
    pub expires_at: String,
}

/// `POST /picker/picked` (picker page only): the items Microsoft's picker returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PickedRequest {
    /// Graph drive items (`id`, `parentReference.driveId`, `name`, `folder`/`file`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Value,
}

/// One picked item, as the app receives it (page message, `picker` webhook, `/picker/picked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickedItem {
    /// The drive item id.
    pub id: String,
    #[serde(rename = "driveId")]
    pub drive_id: String,
    /// `file` or `folder`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(rename = "mimeType", default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(rename = "webUrl", default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
}

/// The `data` of `POST /picker/picked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PickedItems {
    pub items: Vec<PickedItem>,
}
