//! An integration's app credential beyond the client secret: an optional certificate + private key
//! (the client authenticates with a signed assertion instead of the secret), the secret's expiry
//! as entered by the admin, and which expiry warning was last given. Plain data.

use chrono::{DateTime, Utc};

use super::PrivateKeyPem;

/// The JWS algorithm of client assertions. Microsoft documents PS256; RS256 is what older MSAL
/// versions send and is still accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssertionAlg {
    #[default]
    PS256,
    RS256,
}

impl AssertionAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlg::PS256 => "PS256",
            AssertionAlg::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PS256" => Some(AssertionAlg::PS256),
            "RS256" => Some(AssertionAlg::RS256),
            _ => None,
        }
    }
}

/// A certificate registered on the app and its private key.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The certificate, PEM (public).
    pub certificate_pem: String,
    /// base64url SHA-256 of the certificate's DER (`x5t#S256`).
    pub thumbprint_s256: String,
    /// The certificate's notAfter.
    pub not_after: DateTime<Utc>,
    pub private_key: PrivateKeyPem,
    pub alg: AssertionAlg,
}

#[derive(Debug, Clone, Default)]
pub struct AppCredential {
    pub certificate: Option<ClientCertificate>,
    /// When the client secret expires, as entered by the admin.
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// The last expiry warning given, in days ahead (30, 14, 3; 0 = expired), so each is given once.
    pub expiry_warned_days: Option<i32>,
}

impl AppCredential {
    /// The credential in use expires at: the certificate's notAfter when a certificate is used,
    /// else the secret's recorded expiry.
    pub fn expires_at(&self) -> Option<(DateTime<Utc>, &'static str)> {
        match &self.certificate {
            Some(c) => Some((c.not_after, "certificate")),
            None => self.secret_expires_at.map(|t| (t, "client_secret")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.certificate.is_none() && self.secret_expires_at.is_none()
    }
}
