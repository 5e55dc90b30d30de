//! Plain words for the admin-consent flow: the errors Microsoft sends back to the callback when an
//! administrator declines or the person signing in is not an administrator, and the
//! client-credentials failures seen when grantd confirms a tenant's consent.

use super::{Classified, aadsts};
use crate::oauth::OAuthErrorBody;

/// What happened and what to do, for `error` / `error_description` on an admin-consent callback.
/// Microsoft sends `access_denied` + AADSTS90094 for a non-administrator, `access_denied` (v2:
/// `consent_required`) + AADSTS65004 when the administrator declines, and (older docs)
/// `permission_denied` "The admin canceled the request".
pub fn explain_error(error: &str, description: Option<&str>) -> (String, String) {
    let code = aadsts::aadsts_code(&OAuthErrorBody {
        error: error.to_owned(),
        error_description: description.map(str::to_owned),
        ..Default::default()
    });
    let (what, todo) = match (error, code) {
        (_, Some(90094)) | (_, Some(90008)) => (
            "You are not an administrator of your organization, so you cannot approve this app for everyone: an administrator must approve it.",
            "Ask a Global Administrator (or Cloud Application Administrator) of your Microsoft 365 organization to connect instead.",
        ),
        (_, Some(65004)) | ("permission_denied", _) | ("access_denied", None) => (
            "The administrator declined to approve the app, so nothing was connected.",
            "Start again and choose Accept on Microsoft's permission page to connect your organization.",
        ),
        (_, Some(50020)) | (_, Some(50034)) | (_, Some(16000)) => (
            "This account is not part of the organization being connected.",
            "Sign in with an administrator account of that organization.",
        ),
        _ => return aadsts::explain_authorize_error(error, description),
    };
    let mut what = what.to_owned();
    if let Some(c) = code {
        what.push_str(&format!(" (AADSTS{c})"));
    }
    (what, todo.to_owned())
}

/// Why the client-credentials token that confirms a consent could not be obtained, in plain words.
pub fn explain_confirmation(c: &Classified) -> String {
    match c.aadsts {
        Some(7000229) | Some(700016) => {
            "Microsoft has no record that an administrator of this organization approved the app, so it cannot act there yet.".to_owned()
        }
        _ => format!("The approval could not be confirmed: {}", c.cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_consent_errors_in_plain_words() {
        let (w, _) = explain_error(
            "access_denied",
            Some("AADSTS90094: The grant requires admin permission."),
        );
        assert!(w.contains("not an administrator"), "{w}");
        let (w, _) = explain_error(
            "access_denied",
            Some("AADSTS65004: User declined to consent to access the app."),
        );
        assert!(w.contains("declined"), "{w}");
        let (w, _) = explain_error("permission_denied", Some("The admin canceled the request"));
        assert!(w.contains("declined"), "{w}");
    }
}
