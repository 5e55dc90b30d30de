//! Wire types of grantd's Nango-compatible HTTP API.
//!
//! One definition of every public request and response body, shared by the server (which renders
//! and parses through them) and the Rust client. Field names, casing and optionality are the
//! wire's: the mix of `snake_case` and `camelCase` is Nango's.
//!
//! - **Requests** (`Create…`, `Update…`, `…Request`, `Import…`) refuse unknown fields, as Nango
//!   does (400 `invalid_body`).
//! - **Responses** accept unknown fields, so a client keeps working when the server adds one.
//! - Timestamps are ISO 8601 strings exactly as the server writes them.
//!
//! With the `openapi` feature every type derives `utoipa::ToSchema`.

pub mod connections;
pub mod error;
pub mod integrations;
pub mod picker;
pub mod proxy;
pub mod records;
pub mod sessions;
pub mod sync;
pub mod webhooks;

pub use connections::*;
pub use error::*;
pub use integrations::*;
pub use picker::*;
pub use records::*;
pub use sessions::*;
pub use sync::*;

use serde::{Deserialize, Serialize};

/// `{"data": …}`: the envelope of integration, provider and connect-session answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Data<T> {
    pub data: T,
}

/// `{"success": true}`: the answer of deletes, patches and sync commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Success {
    pub success: bool,
}

impl Success {
    pub const TRUE: Success = Success { success: true };
}

/// Tags: lowercase keys (at most 10, `^[a-zA-Z][a-zA-Z0-9_\-./]*$`, ≤ 64), values of 1–255 characters.
pub type Tags = std::collections::BTreeMap<String, String>;

/// `Option<Option<T>>` that tells a field sent as `null` (`Some(None)`) from a missing one (`None`).
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_refuse_unknown_fields_and_responses_accept_them() {
        let e = serde_json::from_value::<CreateIntegration>(
            json!({"provider": "one-drive", "unique_key": "k", "colour": "red"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let i: Integration = serde_json::from_value(json!({
            "unique_key": "k", "provider": "one-drive", "display_name": null,
            "logo": "http://x/images/template-logos/one-drive.svg", "forward_webhooks": true,
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "credentials_expiry": null, "a_new_field": 1
        }))
        .unwrap();
        assert_eq!(i.webhook_url, None);
        let v = serde_json::to_value(&i).unwrap();
        assert!(v.get("webhook_url").is_none() && v.get("credentials").is_none());
    }

    #[test]
    fn webhook_url_null_is_kept_apart_from_missing() {
        let i: Integration = serde_json::from_value(json!({
            "unique_key": "k", "provider": "p", "logo": "l", "forward_webhooks": false,
            "created_at": "t", "updated_at": "t", "webhook_url": null
        }))
        .unwrap();
        assert_eq!(i.webhook_url, Some(None));
        assert_eq!(
            serde_json::to_value(&i).unwrap()["webhook_url"],
            json!(null)
        );
    }

    #[test]
    fn credentials_are_tagged_by_type() {
        let c: Credentials = serde_json::from_value(json!({
            "type": "OAUTH2", "access_token": "at", "expires_at": null, "raw": {"a": 1}
        }))
        .unwrap();
        assert_eq!(c.access_token(), "at");
        let cc = Credentials::OAuth2Cc(OAuth2CcCredentials {
            token: "t".into(),
            expires_at: Some("2026-01-01T00:00:00.000Z".into()),
            client_id: "cid".into(),
            raw: json!({}),
        });
        let v = serde_json::to_value(&cc).unwrap();
        assert_eq!(v["type"], "OAUTH2_CC");
        assert_eq!(v["token"], "t");
        assert_eq!(serde_json::from_value::<Credentials>(v).unwrap(), cc);
    }

    #[test]
    fn sharepoint_token_sits_in_connection_config_next_to_other_keys() {
        let cfg: ConnectionConfig = serde_json::from_value(json!({
            "tenant": "contoso",
            "sharepointAccessToken": {"access_token": "sp", "expires_at": null,
                "token_type": "Bearer", "scope": null, "resource": "https://contoso.sharepoint.com"}
        }))
        .unwrap();
        assert_eq!(
            cfg.sharepoint_access_token.as_ref().unwrap().access_token,
            "sp"
        );
        assert_eq!(cfg.other["tenant"], "contoso");
        assert!(!cfg.other.contains_key("sharepointAccessToken"));
    }

    #[test]
    fn records_flatten_their_model() {
        let page: RecordsPage<OneDriveFile> = serde_json::from_value(json!({
            "records": [{"id": "1", "name": "a.txt", "is_folder": false,
                "_nango_metadata": {"first_seen_at": "t", "last_modified_at": "t",
                    "last_action": "ADDED", "deleted_at": null, "cursor": "7"}}],
            "next_cursor": null
        }))
        .unwrap();
        assert_eq!(page.records[0].data.name.as_deref(), Some("a.txt"));
        assert_eq!(
            page.records[0].nango_metadata.last_action,
            LastAction::Added
        );
    }

    #[test]
    fn webhooks_are_tagged_by_type() {
        let w: webhooks::Webhook = serde_json::from_value(json!({
            "from": "nango", "type": "auth", "connectionId": "c", "providerConfigKey": "k",
            "provider": "one-drive", "authMode": "OAUTH2", "environment": "prod",
            "operation": "refresh", "success": false,
            "error": {"type": "reconnect", "description": "d"}
        }))
        .unwrap();
        let webhooks::Webhook::Auth(a) = w else {
            panic!("not an auth webhook")
        };
        assert_eq!(a.operation, webhooks::AuthOperation::Refresh);
        assert_eq!(a.error.unwrap().kind, "reconnect");
    }

    #[test]
    fn metadata_connection_ids_are_one_or_many() {
        let one: MetadataRequest = serde_json::from_value(
            json!({"connection_id": "a", "provider_config_key": "k", "metadata": {}}),
        )
        .unwrap();
        assert_eq!(one.connection_id, ConnectionIds::One("a".into()));
        let many: MetadataRequest = serde_json::from_value(
            json!({"connection_id": ["a", "b"], "provider_config_key": "k", "metadata": {}}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&many).unwrap()["connection_id"],
            json!(["a", "b"])
        );
    }
}
