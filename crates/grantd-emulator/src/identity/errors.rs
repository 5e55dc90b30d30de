//! AADSTS errors in Microsoft's wire shapes: the token endpoint's JSON body, the parameters
//! redirected to a client's `redirect_uri`, and the text shown on error pages.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use crate::state::AppState;

/// One AADSTS error: the OAuth `error`, the AADSTS number and its message.
#[derive(Debug, Clone)]
pub struct AadError {
    pub error: &'static str,
    pub code: u32,
    pub message: String,
    pub suberror: Option<&'static str>,
    /// A claims challenge (JSON text) for the client to send back on its next authorize request.
    pub claims: Option<String>,
    pub status: StatusCode,
}

/// Trace id, correlation id and timestamp of one error occurrence.
pub struct Occurrence {
    pub trace_id: String,
    pub correlation_id: String,
    pub timestamp: String,
}

impl Occurrence {
    pub fn new(state: &AppState, correlation: Option<&str>) -> Occurrence {
        Occurrence {
            trace_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: correlation
                .filter(|c| uuid::Uuid::parse_str(c).is_ok())
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            timestamp: state.clock.now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        }
    }
}

impl AadError {
    /// HTTP 401 for `invalid_client` (as Microsoft answers), 400 otherwise.
    pub fn new(error: &'static str, code: u32, message: impl Into<String>) -> AadError {
        AadError {
            error,
            code,
            message: message.into(),
            suberror: None,
            claims: None,
            status: if error == "invalid_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            },
        }
    }

    pub fn status(mut self, status: StatusCode) -> AadError {
        self.status = status;
        self
    }

    pub fn suberror(mut self, suberror: &'static str) -> AadError {
        self.suberror = Some(suberror);
        self
    }

    pub fn claims_challenge(mut self, claims: &str) -> AadError {
        self.claims = Some(claims.to_owned());
        self
    }

    /// `AADSTSnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`.
    pub fn description(&self, o: &Occurrence) -> String {
        format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code, self.message, o.trace_id, o.correlation_id, o.timestamp
        )
    }

    pub fn error_uri(&self) -> String {
        format!("https://login.microsoftonline.com/error?code={}", self.code)
    }

    /// The token endpoint's error body and headers.
    pub fn json_response(&self, state: &AppState, correlation: Option<&str>) -> Response {
        let o = Occurrence::new(state, correlation);
        let mut body = serde_json::json!({
            "error": self.error,
            "error_description": self.description(&o),
            "error_codes": [self.code],
            "timestamp": o.timestamp,
            "trace_id": o.trace_id,
            "correlation_id": o.correlation_id,
            "error_uri": self.error_uri(),
        });
        if let Some(s) = self.suberror {
            body["suberror"] = serde_json::Value::from(s);
        }
        if let Some(c) = &self.claims {
            body["claims"] = serde_json::Value::from(c.as_str());
        }
        let mut resp = (self.status, Json(body)).into_response();
        no_store(&mut resp);
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&o.trace_id) {
            h.insert("x-ms-request-id", v);
        }
        resp
    }

    /// Parameters sent to the client's redirect URI.
    pub fn redirect_params(
        &self,
        state: &AppState,
        client_state: Option<&str>,
    ) -> Vec<(String, String)> {
        let o = Occurrence::new(state, None);
        let mut p = vec![
            ("error".to_owned(), self.error.to_owned()),
            ("error_description".to_owned(), self.description(&o)),
            ("error_uri".to_owned(), self.error_uri()),
        ];
        if let Some(s) = self.suberror {
            p.push(("error_subcode".to_owned(), s.to_owned()));
        }
        if let Some(s) = client_state {
            p.push(("state".to_owned(), s.to_owned()));
        }
        p
    }
}

/// `Cache-Control: no-store, no-cache` and `Pragma: no-cache`, as on every token response.
pub fn no_store(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
}

// Constructors for the errors the emulator produces, with Microsoft's texts.

pub fn missing_param(name: &str) -> AadError {
    AadError::new(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

pub fn tenant_not_found(segment: &str) -> AadError {
    AadError::new(
        "invalid_tenant",
        90002,
        format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

pub fn app_not_found(client_id: &str, directory: &str) -> AadError {
    AadError::new(
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{directory}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

pub fn redirect_mismatch(redirect_uri: &str, client_id: &str) -> AadError {
    AadError::new(
        "invalid_request",
        50011,
        format!(
            "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
        ),
    )
}

pub fn consent_required(client_id: &str, app_name: &str) -> AadError {
    AadError::new(
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' named '{app_name}'. Send an interactive authorization request for this user and resource."
        ),
    )
    .suberror("consent_required")
}

pub fn mfa_required(resource: &str) -> AadError {
    AadError::new(
        "invalid_grant",
        50076,
        format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{resource}'."
        ),
    )
    .suberror("basic_action")
    .claims_challenge(MFA_POLICY_CLAIMS)
}

/// The Conditional Access policy id the emulator's "MFA required" switch stands for.
pub const MFA_POLICY_ID: &str = "9c0b1c41-6e3d-4b8a-a1f2-5d7e3c2b1a90";

/// The claims challenge Entra sends with 50076 from a Conditional Access MFA policy: the
/// policy ids (`capolids`) the next sign-in must satisfy, as a JSON string.
const MFA_POLICY_CLAIMS: &str = r#"{"access_token":{"capolids":{"essential":true,"values":["9c0b1c41-6e3d-4b8a-a1f2-5d7e3c2b1a90"]}}}"#;

pub fn invalid_scope(scope: &str) -> AadError {
    AadError::new(
        "invalid_scope",
        70011,
        format!(
            "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid."
        ),
    )
}

pub fn resource_not_found(resource: &str, tenant: &str) -> AadError {
    AadError::new(
        "invalid_resource",
        500011,
        format!(
            "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

pub fn malformed_grant() -> AadError {
    AadError::new(
        "invalid_grant",
        9002313,
        "Invalid request. Request is malformed or invalid.",
    )
}
