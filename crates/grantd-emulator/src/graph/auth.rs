//! Who may do what on Graph (and on SharePoint's v2.0 drive API): bearer failures as Graph's 401,
//! the permission sets per operation, and the delegated vs app-only rules Microsoft applies.

use http::{HeaderMap, StatusCode, header};

use super::drives::{Drive, DriveType};
use super::error::GraphError;
use crate::state::AppState;
use crate::tokens::{AccessClaims, Audience, BearerError};

/// Delegated scopes or app roles that allow reading files. SharePoint-resource scopes
/// (`AllSites.*`, `MyFiles.*`) count when the token is for a SharePoint host.
pub const FILES_READ: &[&str] = &[
    "Files.Read",
    "Files.ReadWrite",
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "AllSites.Read",
    "AllSites.Write",
    "AllSites.Manage",
    "AllSites.FullControl",
    "MyFiles.Read",
    "MyFiles.Write",
    "OneDrive.Read",
    "OneDrive.ReadOnly",
    "OneDrive.ReadWrite",
];

pub const FILES_WRITE: &[&str] = &[
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "AllSites.Write",
    "AllSites.Manage",
    "AllSites.FullControl",
    "MyFiles.Write",
    "OneDrive.ReadWrite",
];

/// Permissions reaching beyond the signed-in user's own OneDrive (site libraries).
const BEYOND_OWN: &[&str] = &[
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "AllSites.Read",
    "AllSites.Write",
    "AllSites.Manage",
    "AllSites.FullControl",
];

pub const SITES_READ: &[&str] = &[
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "AllSites.Read",
    "AllSites.Write",
    "AllSites.Manage",
    "AllSites.FullControl",
];

/// Reading the signed-in user's own profile.
pub const USER_READ_SELF: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Reading other users' profiles.
pub const USER_READ_OTHERS: &[&str] = &[
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Graph's answer to a refused bearer token: 401 `InvalidAuthenticationToken`.
pub fn bearer_error(e: &BearerError) -> GraphError {
    let message = match e {
        BearerError::Missing => "Access token is empty.",
        BearerError::Invalid => "Access token validation failure.",
        BearerError::Expired => "Lifetime validation failed, the token is expired.",
        BearerError::WrongAudience(_) => "Access token validation failure. Invalid audience.",
    };
    GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message).with_header(
        header::WWW_AUTHENTICATE,
        r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
    )
}

/// Validates a Graph bearer token.
pub fn authenticate_graph(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<AccessClaims, GraphError> {
    crate::tokens::validate_bearer(state, headers, &Audience::Graph).map_err(|e| bearer_error(&e))
}

/// 403 unless the token carries one of `needed`.
pub fn require(claims: &AccessClaims, needed: &[&str]) -> Result<(), GraphError> {
    if claims.has_any(needed) {
        return Ok(());
    }
    let no_permissions = claims.scp.as_deref().unwrap_or_default().is_empty()
        && claims.roles.as_deref().unwrap_or_default().is_empty();
    if no_permissions {
        Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "Either scp or roles claim need to be present in the token.",
        ))
    } else {
        Err(GraphError::access_denied())
    }
}

/// `/me` with an app-only token: 400, as Microsoft answers it.
pub fn require_delegated(claims: &AccessClaims) -> Result<(), GraphError> {
    if claims.is_app_only() {
        Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ))
    } else {
        Ok(())
    }
}

/// Whether the caller may read (or write) `drive`. Other tenants' drives do not exist for the
/// caller (404); delegated callers reach their own OneDrive with `Files.Read`, site libraries
/// with the `.All`/site permissions, and never another user's OneDrive (403).
pub fn check_drive(claims: &AccessClaims, drive: &Drive, write: bool) -> Result<(), GraphError> {
    if drive.tenant_id != claims.tid {
        return Err(GraphError::item_not_found());
    }
    require(claims, if write { FILES_WRITE } else { FILES_READ })?;
    if claims.is_app_only() {
        // Application permissions: `Files.*.All` / `Sites.*.All` roles reach every drive of the
        // tenant; the role check above covers it (app roles carry no MyFiles/AllSites names).
        return require(claims, BEYOND_OWN);
    }
    let own = drive.owner_user.as_deref() == Some(claims.oid.as_str());
    if own {
        return Ok(());
    }
    if drive.drive_type == DriveType::DocumentLibrary {
        return require(claims, BEYOND_OWN);
    }
    Err(GraphError::access_denied())
}
