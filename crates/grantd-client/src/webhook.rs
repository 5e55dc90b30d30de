//! Incoming webhooks: grantd signs each body with `X-Nango-Hmac-Sha256` = lowercase hex of
//! HMAC-SHA256(signing key, the exact body bytes) (it also sends Nango's legacy
//! `X-Nango-Signature`, SHA-256(key ‖ body), which this module does not accept: a plain hash of
//! key and message is open to length extension). [`WebhookVerifier`] checks the HMAC in constant
//! time over the raw body and then parses it, from plain `http` types or (feature `axum`) as the
//! `VerifiedWebhook` extractor.
//!
//! The signing key is grantd's `GRANTD_WEBHOOK_SIGNING_KEY`, or its secret key when none is set.

use std::fmt;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// The signature header grantd (and Nango) send and this module verifies.
pub const SIGNATURE_HEADER: &str = "x-nango-hmac-sha256";
/// Nango's legacy signature header (SHA-256 of key ‖ body); sent, not verified here.
pub const LEGACY_SIGNATURE_HEADER: &str = "x-nango-signature";
/// The largest webhook body `VerifiedWebhook` (feature `axum`) reads (grantd's bodies are a few KiB).
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;

/// Why an incoming webhook was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `X-Nango-Hmac-Sha256` header.
    #[error("the webhook has no X-Nango-Hmac-Sha256 signature")]
    MissingSignature,
    /// The signature does not match the body under this key.
    #[error("the webhook's signature does not match its body")]
    BadSignature,
    /// Signed, but not the JSON expected.
    #[error("the webhook body is not the expected JSON: {0}")]
    InvalidBody(#[source] serde_json::Error),
    /// The body could not be read (or is larger than [`MAX_WEBHOOK_BYTES`]).
    #[error("the webhook body could not be read")]
    UnreadableBody,
}

/// Verifies and parses webhooks signed with one signing key. Cheap to clone.
#[derive(Clone)]
pub struct WebhookVerifier {
    key: SecretString,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookVerifier(***)")
    }
}

impl WebhookVerifier {
    pub fn new(signing_key: impl Into<String>) -> Self {
        WebhookVerifier {
            key: SecretString::from(signing_key.into()),
        }
    }

    /// Whether `signature` (lowercase or uppercase hex) is HMAC-SHA256(key, `body`); compared
    /// in constant time.
    pub fn verify_signature(&self, body: &[u8], signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature.trim()) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }

    /// Checks the `X-Nango-Hmac-Sha256` header (any case) against the raw `body`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        let sig = headers
            .get(SIGNATURE_HEADER)
            .ok_or(WebhookError::MissingSignature)?
            .to_str()
            .map_err(|_| WebhookError::BadSignature)?;
        if self.verify_signature(body, sig) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }

    /// Verifies, then parses the body as `T` (e.g. [`Webhook`](crate::types::Webhook), or
    /// `serde_json::Value`).
    pub fn verify_and_parse<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<T, WebhookError> {
        self.verify(headers, body)?;
        serde_json::from_slice(body).map_err(WebhookError::InvalidBody)
    }

    /// [`verify_and_parse`](Self::verify_and_parse) for a whole `http::Request` whose body
    /// was read into bytes.
    pub fn verify_request<B: AsRef<[u8]>, T: DeserializeOwned>(
        &self,
        request: &http::Request<B>,
    ) -> Result<T, WebhookError> {
        self.verify_and_parse(request.headers(), request.body().as_ref())
    }
}

#[cfg(feature = "axum")]
mod axum_support {
    use axum::extract::{FromRef, FromRequest, Request};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use serde::de::DeserializeOwned;

    use super::{MAX_WEBHOOK_BYTES, WebhookError, WebhookVerifier};
    use crate::types::Webhook;

    /// An axum extractor for a verified, parsed webhook: the state must give a
    /// [`WebhookVerifier`] (`FromRef`). A request that fails is answered 401 (signature) or 400
    /// (body) without reaching the handler.
    ///
    /// ```no_run
    /// use axum::{Router, routing::post};
    /// use grantd_client::{VerifiedWebhook, WebhookVerifier, types::Webhook};
    ///
    /// async fn hook(VerifiedWebhook(w): VerifiedWebhook) {
    ///     if let Webhook::Auth(a) = w {
    ///         println!("{} {} {}", a.operation.as_str(), a.connection_id, a.success);
    ///     }
    /// }
    /// let app: Router = Router::new()
    ///     .route("/webhooks/grantd", post(hook))
    ///     .with_state(WebhookVerifier::new("signing key"));
    /// ```
    #[derive(Debug, Clone)]
    pub struct VerifiedWebhook<T = Webhook>(pub T);

    /// Why [`VerifiedWebhook`] refused a request; answers 401 or 400.
    #[derive(Debug)]
    pub struct WebhookRejection(pub WebhookError);

    impl IntoResponse for WebhookRejection {
        fn into_response(self) -> Response {
            let status = match self.0 {
                WebhookError::MissingSignature | WebhookError::BadSignature => {
                    StatusCode::UNAUTHORIZED
                }
                WebhookError::InvalidBody(_) | WebhookError::UnreadableBody => {
                    StatusCode::BAD_REQUEST
                }
            };
            (status, self.0.to_string()).into_response()
        }
    }

    impl<S, T> FromRequest<S> for VerifiedWebhook<T>
    where
        S: Send + Sync,
        WebhookVerifier: FromRef<S>,
        T: DeserializeOwned,
    {
        type Rejection = WebhookRejection;

        async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
            let verifier = WebhookVerifier::from_ref(state);
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, MAX_WEBHOOK_BYTES)
                .await
                .map_err(|_| WebhookRejection(WebhookError::UnreadableBody))?;
            verifier
                .verify_and_parse(&parts.headers, &body)
                .map(VerifiedWebhook)
                .map_err(WebhookRejection)
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_support::{VerifiedWebhook, WebhookRejection};

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k";
    const BODY: &str = r#"{"a":1}"#;

    fn sign(key: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn good_signatures_pass_and_anything_else_fails() {
        let v = WebhookVerifier::new(KEY);
        let sig = sign(KEY, BODY.as_bytes());
        assert!(v.verify_signature(BODY.as_bytes(), &sig));
        assert!(v.verify_signature(BODY.as_bytes(), &sig.to_uppercase()));
        assert!(!v.verify_signature(br#"{"a":2}"#, &sig));
        assert!(!v.verify_signature(BODY.as_bytes(), &sign("other", BODY.as_bytes())));
        assert!(!v.verify_signature(BODY.as_bytes(), &sig[..62]));
        assert!(!v.verify_signature(BODY.as_bytes(), "zz"));
        assert!(!v.verify_signature(BODY.as_bytes(), ""));
    }

    #[test]
    fn rfc_4231_vector() {
        // The vector grantd's signer is pinned to (RFC 4231 case 2).
        let v = WebhookVerifier::new("Jefe");
        assert!(v.verify_signature(
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
    }

    #[test]
    fn headers_are_found_in_any_case_and_required() {
        let v = WebhookVerifier::new(KEY);
        let mut h = HeaderMap::new();
        assert!(matches!(
            v.verify(&h, BODY.as_bytes()),
            Err(WebhookError::MissingSignature)
        ));
        h.insert(
            http::HeaderName::from_bytes(b"X-Nango-HMAC-SHA256").unwrap(),
            sign(KEY, BODY.as_bytes()).parse().unwrap(),
        );
        let parsed: serde_json::Value = v.verify_and_parse(&h, BODY.as_bytes()).unwrap();
        assert_eq!(parsed["a"], 1);
        // Signed but not JSON.
        h.insert(SIGNATURE_HEADER, sign(KEY, b"nope").parse().unwrap());
        assert!(matches!(
            v.verify_and_parse::<serde_json::Value>(&h, b"nope"),
            Err(WebhookError::InvalidBody(_))
        ));
        // Only the legacy signature: refused.
        let mut legacy = HeaderMap::new();
        legacy.insert(LEGACY_SIGNATURE_HEADER, "00".parse().unwrap());
        assert!(matches!(
            v.verify(&legacy, BODY.as_bytes()),
            Err(WebhookError::MissingSignature)
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", WebhookVerifier::new("sekrit")),
            "WebhookVerifier(***)"
        );
    }
}
