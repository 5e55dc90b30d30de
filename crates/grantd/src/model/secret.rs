//! Secret newtypes: tokens, client secrets and other credentials. Their `Debug` prints only the
//! type name, they have no `Display`, and the value is reached through `expose_secret()` on the line
//! that uses it — so a secret cannot end up in a log line, an error message or a panic by accident.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
            /// Compares with another value in constant time.
            pub fn ct_eq(&self, other: &str) -> bool {
                let a = self.expose_secret().as_bytes();
                let b = other.as_bytes();
                a.len() == b.len() && bool::from(a.ct_eq(b))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other.expose_secret())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.expose_secret())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::new)
            }
        }
    };
}

secret_type!(
    /// An OAuth access token.
    AccessToken
);
secret_type!(
    /// An OAuth refresh token.
    RefreshToken
);
secret_type!(
    /// An integration's OAuth client secret.
    ClientSecret
);
secret_type!(
    /// The backend API key (`Authorization: Bearer …`).
    ApiKey
);
secret_type!(
    /// A PKCE code verifier.
    CodeVerifier
);
secret_type!(
    /// A connect session token (`nango_connect_session_…`).
    SessionToken
);
secret_type!(
    /// An OAuth authorization code.
    AuthCode
);
secret_type!(
    /// A PEM private key that signs client assertions for a certificate credential.
    PrivateKeyPem
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let t = RefreshToken::new("0.ARsecret");
        assert_eq!(format!("{t:?}"), "RefreshToken(***)");
        assert!(!format!("{:?}", Some(&t)).contains("secret"));
    }

    #[test]
    fn constant_time_equality() {
        let s = ClientSecret::new("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
    }
}
