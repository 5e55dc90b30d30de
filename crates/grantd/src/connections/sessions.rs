//! Connect sessions: short-lived bearer tokens (`nango_connect_session_` + 64 hex) that let a
//! browser connect one end user to the integrations the session names. Only the token's SHA-256
//! is stored, so a database leak does not leak usable tokens.

use chrono::TimeDelta;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Core, Error};
use crate::model::{
    ConnectSession, ConnectionId, EndUser, NewConnectSession, Organization, ProviderConfigKey,
    SessionToken, Tags,
};

pub const TOKEN_PREFIX: &str = "nango_connect_session_";

/// What the API validated from a create-session request.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    pub end_user: Option<EndUser>,
    pub organization: Option<Organization>,
    pub allowed_integrations: Option<Vec<String>>,
    pub integrations_config_defaults: Value,
    pub tags: Tags,
    pub webhook_url_override: Option<String>,
    pub reconnect: Option<(ProviderConfigKey, ConnectionId)>,
    /// Nango's `overrides`, validated by the API; `Null` when none.
    pub overrides: Value,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the connect-session format.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Core {
    /// Creates a session; every allowed integration and reconnect target must exist.
    pub async fn create_connect_session(
        &self,
        req: SessionRequest,
    ) -> Result<(SessionToken, ConnectSession), Error> {
        if let Some(keys) = &req.allowed_integrations {
            for k in keys {
                let key = ProviderConfigKey::parse(k)
                    .map_err(|_| Error::UnknownIntegration(k.clone()))?;
                if self.store.get_integration(&key).await?.is_none() {
                    return Err(Error::UnknownIntegration(k.clone()));
                }
            }
        }
        if let Some((key, cid)) = &req.reconnect {
            if self.store.get_connection(key, cid).await?.is_none() {
                return Err(Error::UnknownConnection);
            }
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = SessionToken::new(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)));

        // Session tags: end user and organization fields, then the end user's tags, then the
        // request's top-level tags (Nango's precedence).
        let mut tags = Tags::new();
        if let Some(u) = &req.end_user {
            tags.insert("end_user_id".into(), u.id.clone());
            if let Some(e) = &u.email {
                tags.insert("end_user_email".into(), e.clone());
            }
            if let Some(d) = &u.display_name {
                tags.insert("end_user_display_name".into(), d.clone());
            }
        }
        if let Some(o) = &req.organization {
            tags.insert("organization_id".into(), o.id.clone());
            if let Some(d) = &o.display_name {
                tags.insert("organization_display_name".into(), d.clone());
            }
        }
        if let Some(t) = req.end_user.as_ref().and_then(|u| u.tags.clone()) {
            tags.extend(t);
        }
        tags.extend(req.tags);

        let end_user = req.end_user.map(|mut u| {
            if u.organization.is_none() {
                u.organization = req.organization.clone();
            }
            u
        });
        let session = self
            .store
            .create_connect_session(NewConnectSession {
                token_hash: hash_token(token.expose_secret()),
                end_user,
                organization: req.organization,
                allowed_integrations: req.allowed_integrations,
                integrations_config_defaults: req.integrations_config_defaults,
                reconnect: req.reconnect,
                tags,
                webhook_url_override: req.webhook_url_override,
                overrides: req.overrides,
                expires_at: self.clock.now()
                    + TimeDelta::from_std(self.config.connect_session_ttl)
                        .unwrap_or(TimeDelta::minutes(30)),
            })
            .await?;
        Ok((token, session))
    }

    /// The live session for a presented token, or `None` (malformed, unknown or expired).
    pub async fn connect_session(&self, token: &str) -> Result<Option<ConnectSession>, Error> {
        if !is_well_formed(token) {
            return Ok(None);
        }
        Ok(self
            .store
            .get_connect_session(&hash_token(token), self.clock.now())
            .await?)
    }

    pub async fn delete_connect_session(&self, token: &str) -> Result<bool, Error> {
        Ok(self
            .store
            .delete_connect_session(&hash_token(token))
            .await?)
    }

    /// The connect link for a session token: the hosted Connect UI.
    pub fn connect_link(&self, token: &SessionToken) -> String {
        format!(
            "{}/connect?session_token={}",
            self.config.public_url.as_str().trim_end_matches('/'),
            token.expose_secret()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format() {
        assert!(is_well_formed(&format!(
            "{TOKEN_PREFIX}{}",
            "a1".repeat(32)
        )));
        assert!(!is_well_formed(&format!(
            "{TOKEN_PREFIX}{}",
            "A1".repeat(32)
        )));
        assert!(!is_well_formed("nango_connect_session_short"));
        assert!(!is_well_formed("0c6e9a4e-7f1b-4c7e-9d55-3a8f7b2e1c90"));
    }
}
