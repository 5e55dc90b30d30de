//! `POST /picker/sessions` (secret key): a short-lived session that lets a browser open the
//! hosted File Picker (`/picker?session_token=…`, `web::picker`) for one connection.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use grantd_api as wire;

use super::{ApiError, JsonBody, SecretKey, render};
use crate::edge::AppState;
use crate::model::{ConnectionId, PickerEntry, PickerMode, PickerOptions, ProviderConfigKey};

fn invalid(path: &[&str], message: &str) -> ApiError {
    ApiError::validation("invalid_body", path, message)
}

/// An http(s) origin, serialised as browsers send it (`https://app.example.com[:port]`).
pub(crate) fn origin(s: &str) -> Option<String> {
    let u = url::Url::parse(s).ok()?;
    if !matches!(u.scheme(), "http" | "https")
        || !u.username().is_empty()
        || u.password().is_some()
        || !matches!(u.path(), "" | "/")
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return None;
    }
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

fn filter_ok(f: &str) -> bool {
    const KINDS: &[&str] = &[
        "folder",
        "file",
        "photo",
        "video",
        "audio",
        "document",
        "media",
        "onenote",
        "site",
        "documentLibrary",
        "list",
    ];
    KINDS.contains(&f)
        || f.strip_prefix('.').is_some_and(|ext| {
            !ext.is_empty() && ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

pub(crate) fn options(b: wire::PickerOptionsInput) -> Result<PickerOptions, ApiError> {
    let entry = match b.entry.as_deref().unwrap_or("oneDrive") {
        "oneDrive" => PickerEntry::OneDrive,
        "recent" => PickerEntry::Recent,
        "shared" => PickerEntry::Shared,
        "sharePoint" => PickerEntry::SharePoint {
            site_url: b.site_url.clone().ok_or_else(|| {
                invalid(
                    &["options", "site_url"],
                    "site_url is required with entry sharePoint",
                )
            })?,
        },
        _ => {
            return Err(invalid(
                &["options", "entry"],
                "entry must be oneDrive, recent, shared or sharePoint",
            ));
        }
    };
    if b.site_url.is_some() && !matches!(entry, PickerEntry::SharePoint { .. }) {
        return Err(invalid(
            &["options", "site_url"],
            "site_url goes with entry sharePoint only",
        ));
    }
    let mode = match b.mode.as_deref().unwrap_or("files") {
        "files" => PickerMode::Files,
        "folders" => PickerMode::Folders,
        "all" => PickerMode::All,
        _ => {
            return Err(invalid(
                &["options", "mode"],
                "mode must be files, folders or all",
            ));
        }
    };
    let filters = b.filters.unwrap_or_default();
    if filters.len() > 20 || !filters.iter().all(|f| filter_ok(f)) {
        return Err(invalid(
            &["options", "filters"],
            "filters: at most 20 of .ext (letters and digits) or folder, file, photo, video, \
             audio, document, media, onenote, site, documentLibrary, list",
        ));
    }
    let origin = b.origin.as_deref().and_then(origin).ok_or_else(|| {
        invalid(
            &["options", "origin"],
            "origin is required: the http(s) origin of the app page that opens the picker \
             (e.g. https://app.example.com)",
        )
    })?;
    Ok(PickerOptions {
        entry,
        mode,
        multi_select: b.multi_select.unwrap_or(false),
        filters,
        save_selection: b.save_selection.unwrap_or(false),
        origin,
    })
}

pub async fn create(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::CreatePickerSession>,
) -> Result<(StatusCode, Json<wire::Data<wire::PickerSessionCreated>>), ApiError> {
    let key = ProviderConfigKey::parse(&b.provider_config_key).map_err(|_| {
        invalid(
            &["provider_config_key"],
            "provider_config_key is not an integration key",
        )
    })?;
    let id = ConnectionId::parse(&b.connection_id)
        .map_err(|_| invalid(&["connection_id"], "connection_id is not a connection id"))?;
    let options = options(b.options)?;
    let (token, session, problem) = st.core.create_picker_session(&key, &id, options).await?;
    let problem = match problem {
        Some(p) => Some(wire::PickerProblem {
            code: p.code.to_owned(),
            message: p.message,
            reconnect_link: if p.reconnect {
                Some(st.core.picker_reconnect_link(&session).await?)
            } else {
                None
            },
        }),
        None => None,
    };
    let data = wire::PickerSessionCreated {
        token: token.expose_secret().to_owned(),
        url: st.core.picker_link(&token),
        expires_at: render::ts(&session.expires_at),
        ready: problem.is_none(),
        problem,
    };
    Ok((StatusCode::CREATED, Json(wire::Data { data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://app.example.com").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:3000/").as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(origin("https://app.example.com/page"), None);
        assert_eq!(origin("javascript:alert(1)"), None);
        assert_eq!(origin("*"), None);
    }

    #[test]
    fn filters() {
        assert!(filter_ok(".docx") && filter_ok("folder"));
        assert!(!filter_ok(".") && !filter_ok("docx") && !filter_ok(".d/x"));
    }
}
