//! Classification of token-endpoint failures. Microsoft's rule of thumb, refined by AADSTS code:
//! `invalid_grant` / `interaction_required` / `consent_required` mean the stored grant is dead and
//! the user must reconnect; `invalid_client` / `unauthorized_client` / `invalid_scope` /
//! `invalid_resource` mean the app registration or our configuration is wrong (reconnecting will
//! not help); 5xx, 429, network errors and `temporarily_unavailable` are transient.

use crate::oauth::{OAuthErrorBody, TokenError};

/// The classes are the kinds recorded on a connection (`model::FailureKind`).
pub use crate::model::FailureKind as Class;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: Class,
    /// The first AADSTS code, from `error_codes` or the description.
    pub aadsts: Option<u32>,
    /// The OAuth `error` value.
    pub error: Option<String>,
    /// A plain-language cause with what to do.
    pub cause: String,
}

/// The AADSTS code: `error_codes[0]`, else the `AADSTSnnnn` prefix of the description.
pub fn aadsts_code(body: &OAuthErrorBody) -> Option<u32> {
    body.error_codes.first().copied().or_else(|| {
        let d = body.error_description.as_deref()?;
        let rest = &d[d.find("AADSTS")? + 6..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn cause_for(code: Option<u32>, error: &str) -> (Class, &'static str) {
    use Class::*;
    match code {
        Some(700082) => (
            Reconnect,
            "The refresh token expired after 90 days without use; the user must reconnect.",
        ),
        Some(700084) => (
            Reconnect,
            "The single-page-app refresh token reached its 24-hour limit; the user must reconnect.",
        ),
        Some(50173) | Some(70008) => (
            Reconnect,
            "The user's grant was revoked (password change, session revocation or expiry); the user must reconnect.",
        ),
        Some(65001) => (
            Reconnect,
            "Consent is missing or was revoked; the user (or an administrator) must consent again by reconnecting.",
        ),
        Some(50076) | Some(50079) | Some(50074) | Some(50072) | Some(50078) => (
            Reconnect,
            "Multi-factor authentication is required; the user must reconnect interactively.",
        ),
        Some(53003) | Some(53000) | Some(53001) | Some(530003) => (
            Reconnect,
            "Blocked by a Conditional Access policy; the user or their administrator must act, then reconnect.",
        ),
        Some(70043) => (
            Reconnect,
            "The sign-in frequency policy requires a fresh sign-in; the user must reconnect.",
        ),
        Some(50126) | Some(50055) | Some(50057) | Some(50053) | Some(50056) => (
            Reconnect,
            "The user's account cannot sign in (password expired, disabled or locked); the user must fix it and reconnect.",
        ),
        Some(16000) | Some(50020) | Some(50034) | Some(500200) => (
            Reconnect,
            "The account is not allowed for this app (wrong tenant or account type); reconnect with another account.",
        ),
        Some(54005) => (
            Reconnect,
            "The authorization code was already redeemed; start the connection again.",
        ),
        Some(70000) | Some(9002313) | Some(50089) => (
            Reconnect,
            "The stored grant is invalid; the user must reconnect.",
        ),
        Some(7000215) => (
            Misconfigured,
            "Invalid client secret: the integration's secret is wrong (often the secret ID was pasted instead of its value).",
        ),
        Some(7000222) => (
            Misconfigured,
            "App misconfigured: client secret expired. Create a new secret in Entra ID and update the integration.",
        ),
        Some(700027) => (
            Misconfigured,
            "App misconfigured: Microsoft refused the client certificate assertion (the certificate is not registered on the app, or its key does not match).",
        ),
        Some(7000229) => (
            Misconfigured,
            "App misconfigured: the app has no service principal in this tenant (an administrator of the tenant has not granted admin consent).",
        ),
        Some(7000218) | Some(700025) | Some(50012) => (
            Misconfigured,
            "The integration's client credential is missing or invalid (secret or certificate).",
        ),
        Some(700016) => (
            Misconfigured,
            "The application was not found in the directory: check the client id, or an administrator of that tenant must consent to the app.",
        ),
        Some(70001) | Some(7000112) => (Misconfigured, "The application is disabled."),
        Some(50011) => (
            Misconfigured,
            "The redirect URI does not match one registered on the app: register grantd's callback URL in Entra.",
        ),
        Some(50194) | Some(9001023) | Some(90124) | Some(90130) => (
            Misconfigured,
            "Wrong authority for this app: a single-tenant app cannot use /common; set the integration's tenant.",
        ),
        Some(90002) => (
            Misconfigured,
            "The tenant was not found (typo, wrong cloud, or deleted).",
        ),
        Some(70011) | Some(700022) | Some(700023) | Some(28002) | Some(650053) => (
            Misconfigured,
            "A requested scope is invalid or does not exist; fix the integration's scopes.",
        ),
        Some(500011) | Some(65005) | Some(650056) | Some(650057) => (
            Misconfigured,
            "The resource or permission is not configured on the app or not available in the tenant.",
        ),
        Some(90055) | Some(50033) | Some(50087) | Some(90006) | Some(90033) | Some(90090)
        | Some(70012) | Some(90024) => (
            Transient,
            "Microsoft's identity service had a temporary problem; grantd will retry.",
        ),
        _ => match error {
            "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => (
                Reconnect,
                "The stored grant no longer works; the user must reconnect.",
            ),
            "invalid_client"
            | "unauthorized_client"
            | "invalid_scope"
            | "invalid_resource"
            | "unsupported_grant_type"
            | "invalid_request"
            | "invalid_tenant" => (
                Misconfigured,
                "The token endpoint rejected the app's request; check the integration's client id, secret and scopes.",
            ),
            _ => (
                Transient,
                "Microsoft's identity service had a temporary problem; grantd will retry.",
            ),
        },
    }
}

pub fn classify(err: &TokenError) -> Classified {
    match err {
        TokenError::Refused { status, body } => {
            let code = aadsts_code(body);
            let (mut class, cause) = cause_for(code, &body.error);
            if *status >= 500
                || body.error == "temporarily_unavailable"
                || body.error == "server_error"
            {
                class = Class::Transient;
            }
            Classified {
                class,
                aadsts: code,
                error: Some(body.error.clone()),
                cause: cause.to_owned(),
            }
        }
        TokenError::Unexpected { status, .. } => Classified {
            class: if *status >= 500 || *status == 429 || *status == 408 {
                Class::Transient
            } else {
                Class::Misconfigured
            },
            aadsts: None,
            error: None,
            cause: format!("The token endpoint answered HTTP {status} without an OAuth error."),
        },
        TokenError::Network(_) => Classified {
            class: Class::Transient,
            aadsts: None,
            error: None,
            cause: "The token endpoint could not be reached; grantd will retry.".into(),
        },
        TokenError::Assertion(e) => Classified {
            class: Class::Misconfigured,
            aadsts: None,
            error: None,
            cause: format!("The integration's certificate credential cannot be used: {e}."),
        },
        TokenError::NoAccessToken => Classified {
            class: Class::Misconfigured,
            aadsts: None,
            error: None,
            cause: "The token endpoint answered without an access token.".into(),
        },
    }
}

/// Plain words for an error Microsoft sent back to the OAuth callback (`error`,
/// `error_description`): what happened, and what the user or an administrator should do.
pub fn explain_authorize_error(error: &str, description: Option<&str>) -> (String, String) {
    let code = aadsts_code(&OAuthErrorBody {
        error: error.to_owned(),
        error_description: description.map(str::to_owned),
        ..Default::default()
    });
    let (what, todo) = match (error, code) {
        (_, Some(65004)) | ("access_denied", None) => (
            "The connection was cancelled: consent was not given.",
            "Start again and choose Accept on Microsoft's consent page to connect.",
        ),
        (_, Some(90094)) | (_, Some(90008)) | ("consent_required", _) | (_, Some(65001)) => (
            "An administrator must approve this app for your organization.",
            "Ask your Microsoft 365 administrator to grant admin consent for the app, then connect again.",
        ),
        (_, Some(500200)) | (_, Some(9002332)) => (
            "This kind of account is not allowed for this app.",
            "Use a work or school account (or a personal account, if the app is set up for those).",
        ),
        (_, Some(50020)) | (_, Some(50034)) | (_, Some(16000)) => (
            "This account is not part of the organization the app is set up for.",
            "Sign in with an account from that organization, or ask its administrator to invite you.",
        ),
        (_, Some(700016)) => (
            "The app is not available in your organization.",
            "Your administrator must add (consent to) the app in your tenant; check the client id too.",
        ),
        (_, Some(50076)) | (_, Some(50079)) | ("interaction_required", _) => (
            "Microsoft needs an extra sign-in step (for example multi-factor authentication).",
            "Connect again and complete the sign-in steps Microsoft asks for.",
        ),
        (_, Some(53003)) => (
            "Your organization's access policy blocked the sign-in.",
            "Ask your administrator about the Conditional Access policy, then connect again.",
        ),
        ("login_required", _) => (
            "You are not signed in to Microsoft.",
            "Connect again and sign in.",
        ),
        ("temporarily_unavailable", _) | ("server_error", _) => (
            "Microsoft's sign-in service had a temporary problem.",
            "Wait a moment and connect again.",
        ),
        _ => (
            "Microsoft refused the connection.",
            "Try again; if it keeps failing, send the error code below to the app's support.",
        ),
    };
    let mut what = what.to_owned();
    if let Some(c) = code {
        what.push_str(&format!(" (AADSTS{c})"));
    }
    (what, todo.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, error: &str, codes: &[u32], desc: &str) -> TokenError {
        TokenError::Refused {
            status,
            body: OAuthErrorBody {
                error: error.into(),
                error_description: Some(desc.into()),
                error_codes: codes.to_vec(),
                suberror: None,
            },
        }
    }

    #[test]
    fn classes_by_code() {
        let c = classify(&refused(
            400,
            "invalid_grant",
            &[700082],
            "AADSTS700082: expired",
        ));
        assert_eq!((c.class, c.aadsts), (Class::Reconnect, Some(700082)));
        let c = classify(&refused(
            401,
            "invalid_client",
            &[7000222],
            "AADSTS7000222: expired secret",
        ));
        assert_eq!((c.class, c.aadsts), (Class::Misconfigured, Some(7000222)));
        let c = classify(&refused(400, "invalid_grant", &[50173], ""));
        assert_eq!(c.class, Class::Reconnect);
        let c = classify(&refused(503, "temporarily_unavailable", &[], ""));
        assert_eq!(c.class, Class::Transient);
        let c = classify(&TokenError::Unexpected {
            status: 502,
            retry_after: None,
        });
        assert_eq!(c.class, Class::Transient);
    }

    #[test]
    fn code_from_description_when_no_error_codes() {
        let body = OAuthErrorBody {
            error: "invalid_grant".into(),
            error_description: Some(
                "AADSTS50076: Due to a configuration change…\r\nTrace ID: x".into(),
            ),
            ..Default::default()
        };
        assert_eq!(aadsts_code(&body), Some(50076));
        let c = classify(&TokenError::Refused { status: 400, body });
        assert_eq!(c.class, Class::Reconnect);
    }

    #[test]
    fn unknown_codes_fall_back_on_error_value() {
        let c = classify(&refused(400, "invalid_grant", &[1234567], ""));
        assert_eq!(c.class, Class::Reconnect);
        let c = classify(&refused(400, "unauthorized_client", &[1234567], ""));
        assert_eq!(c.class, Class::Misconfigured);
    }
}
