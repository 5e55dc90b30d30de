//! Validated identifiers: holding a `ProviderConfigKey` or `ConnectionId` means it passed Nango's
//! rules, so handlers parse once at the edge and never re-check.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 255 characters")]
    TooLong,
    #[error("contains a character that is not allowed: {0:?}")]
    BadChar(char),
}

/// An integration's unique key: `^[a-zA-Z0-9~:.@ _-]+$`, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderConfigKey(String);

impl ProviderConfigKey {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check(s, |c| c.is_ascii_alphanumeric() || "~:.@ _-".contains(c))?;
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A connection id: at most 255 of letters, digits, space and `,.;:=+~[]|@${}"'\/_-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

impl ConnectionId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check(s, |c| {
            c.is_alphanumeric() || " ,.;:=+~[]|@${}\"'\\/_-".contains(c)
        })?;
        Ok(Self(s.to_owned()))
    }
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(s: &str, ok: impl Fn(char) -> bool) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.chars().count() > 255 {
        return Err(IdError::TooLong);
    }
    match s.chars().find(|c| !ok(*c)) {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! string_like {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_like!(ProviderConfigKey);
string_like!(ConnectionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(ProviderConfigKey::parse("one-drive").is_ok());
        assert!(ProviderConfigKey::parse("a b:c@d.e~f_g").is_ok());
        assert_eq!(ProviderConfigKey::parse(""), Err(IdError::Empty));
        assert_eq!(ProviderConfigKey::parse("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(
            ProviderConfigKey::parse(&"a".repeat(256)),
            Err(IdError::TooLong)
        );
    }

    #[test]
    fn connection_ids() {
        assert!(ConnectionId::parse("user-42/drive").is_ok());
        assert!(ConnectionId::parse("a\nb").is_err());
        assert!(ConnectionId::parse("a<b").is_err());
    }
}
