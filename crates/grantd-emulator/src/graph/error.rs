//! Graph's error JSON (`{"error":{"code","message","innerError":{…}}}`) and the middleware that
//! stamps every response with `request-id` / `client-request-id` (echoed when the client sent one)
//! and fills those ids into error bodies.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::json;

/// A Graph error; rendered by [`request_ids`] with the request's ids.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More specific code in `innerError.code`.
    pub inner: Option<&'static str>,
    pub headers: Vec<(HeaderName, String)>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> GraphError {
        GraphError {
            status,
            code,
            message: message.into(),
            inner: None,
            headers: Vec::new(),
        }
    }

    pub fn with_inner(mut self, inner: &'static str) -> GraphError {
        self.inner = Some(inner);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> GraphError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn item_not_found() -> GraphError {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The resource could not be found.",
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }

    pub fn bad_segment(segment: &str) -> GraphError {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub fn name_already_exists() -> GraphError {
        GraphError::new(
            StatusCode::CONFLICT,
            "nameAlreadyExists",
            "The specified item name already exists.",
        )
    }

    pub fn access_denied() -> GraphError {
        GraphError::new(StatusCode::FORBIDDEN, "accessDenied", "Access denied")
    }

    pub fn method_not_allowed() -> GraphError {
        GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalidRequest",
            "The HTTP method is not allowed for this resource.",
        )
    }
}

/// The error as carried to the middleware in the response extensions.
#[derive(Debug, Clone)]
struct PendingError {
    code: &'static str,
    message: String,
    inner: Option<&'static str>,
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = self.status;
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().append(name, v);
            }
        }
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Rendered without ids when no middleware runs (e.g. a unit test calling a handler).
        let body = render(
            &PendingError {
                code: self.code,
                message: self.message.clone(),
                inner: self.inner,
            },
            "",
            "",
        );
        resp.extensions_mut().insert(PendingError {
            code: self.code,
            message: self.message,
            inner: self.inner,
        });
        *resp.body_mut() = Body::from(body);
        resp
    }
}

fn render(e: &PendingError, request_id: &str, client_request_id: &str) -> String {
    let mut inner = json!({
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": request_id,
        "client-request-id": client_request_id,
    });
    if let Some(code) = e.inner {
        inner["code"] = json!(code);
    }
    json!({"error": {"code": e.code, "message": e.message, "innerError": inner}}).to_string()
}

/// Middleware: `request-id` and `client-request-id` on every response, ids in error bodies.
pub async fn request_ids(req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let mut resp = next.run(req).await;
    if let Some(pending) = resp.extensions_mut().remove::<PendingError>() {
        *resp.body_mut() = Body::from(render(&pending, &request_id, &client_request_id));
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    let h = resp.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_request_id),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    h.insert(
        "x-ms-ags-diagnostic",
        HeaderValue::from_static(
            r#"{"ServerInfo":{"DataCenter":"Emulator","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"grantd-emulator"}}"#,
        ),
    );
    resp
}
