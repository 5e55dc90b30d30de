//! `/connections` (and the deprecated `/connection` forms the SDK still uses): list, fetch with
//! fresh credentials, import, patch, delete, metadata.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use grantd_api as wire;
use serde_json::{Value, json};

use super::{ApiError, JsonBody, Query, SecretKey, parse_bool, render};
use crate::catalog::Provider;
use crate::connections::{ConnectionPatch, CredentialsOpts, StoreError};
use crate::edge::AppState;
use crate::model::{
    AccessToken, Connection, ConnectionFilter, ConnectionId, Credentials, Integration,
    NewConnection, ProviderConfigKey, RefreshToken, Tags,
};

fn key_param(s: Option<&str>) -> Result<ProviderConfigKey, ApiError> {
    let s = s.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::validation(
            "invalid_query_params",
            &["provider_config_key"],
            "provider_config_key is required",
        )
    })?;
    ProviderConfigKey::parse(s).map_err(|e| {
        ApiError::validation(
            "invalid_query_params",
            &["provider_config_key"],
            e.to_string(),
        )
    })
}

fn connection_id(s: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(s)
        .map_err(|e| ApiError::validation("invalid_uri_params", &["connectionId"], e.to_string()))
}

/// `GET /connections` with Nango's filters; `tags[k]=v` pairs are read from the raw query.
pub async fn list(
    State(st): State<AppState>,
    _: SecretKey,
    parts: Parts,
) -> Result<Json<wire::ConnectionList>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::validation("invalid_query_params", &[], e.to_string()))?;
    let mut f = ConnectionFilter {
        limit: 10_000,
        ..Default::default()
    };
    let mut page: u64 = 0;
    for (k, v) in pairs {
        match k.as_str() {
            "connectionId" => f.connection_id = Some(v),
            "search" => f.search = Some(v),
            "endUserId" => f.end_user_id = Some(v),
            "endUserOrganizationId" => f.end_user_organization_id = Some(v),
            "integrationId" => f
                .integration_keys
                .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned)),
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| {
                        ApiError::validation(
                            "invalid_query_params",
                            &["limit"],
                            "limit must be a number from 1 to 10000",
                        )
                    })?
            }
            "page" => {
                page = v.parse().map_err(|_| {
                    ApiError::validation(
                        "invalid_query_params",
                        &["page"],
                        "page must be a whole number",
                    )
                })?
            }
            other => match other
                .strip_prefix("tags[")
                .and_then(|r| r.strip_suffix(']'))
            {
                Some(tag) => {
                    f.tags.insert(tag.to_ascii_lowercase(), v);
                }
                None => {
                    return Err(ApiError::validation(
                        "invalid_query_params",
                        &[other],
                        format!("Unknown query parameter {other}"),
                    ));
                }
            },
        }
    }
    f.offset = page * u64::from(f.limit);
    let conns = st.core.list_connections(&f).await?;
    Ok(Json(wire::ConnectionList {
        connections: conns.iter().map(render::connection_item).collect(),
    }))
}

/// `GET /connections/{id}`: the connection with credentials valid for at least the margin.
pub async fn show(
    State(st): State<AppState>,
    _: SecretKey,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let q = fetch_query(uri.query().unwrap_or(""))?;
    let key = key_param(q.provider_config_key.as_deref())?;
    let cid = connection_id(&id)?;
    let force = parse_bool(q.force_refresh.as_deref())?;
    let with_rt = parse_bool(q.refresh_token.as_deref())?;
    parse_bool(q.refresh_github_app_jwt_token.as_deref())?;
    let opts = CredentialsOpts {
        force_refresh: force,
        note_fetched: true,
    };
    let fresh = match st.core.credentials(&key, &cid, opts).await {
        Ok(f) => f,
        Err(e) => return Err(with_connection(&st, &key, &cid, e.into()).await),
    };
    // Written in the background (`store::touch`); the caller sees the time of this call.
    let now = fresh.fetched_at.unwrap_or_else(|| st.core.clock.now());
    Ok(super::fetch_body::respond(&fresh, with_rt, &now))
}

/// `GET /connections/{id}`'s query (`wire::GetConnectionQuery`, borrowed where it can be).
#[derive(Debug, Default, PartialEq)]
struct FetchQuery<'a> {
    provider_config_key: Option<Cow<'a, str>>,
    force_refresh: Option<Cow<'a, str>>,
    refresh_token: Option<Cow<'a, str>>,
    refresh_github_app_jwt_token: Option<Cow<'a, str>>,
}

/// The query as the `Query` extractor reads it into `wire::GetConnectionQuery`, errors included.
/// The usual query (known keys once each, `key=value`, nothing percent- or plus-encoded) is read
/// in place; anything else goes through `serde_urlencoded` as before. serde_urlencoded
/// allocated every key and value (~1.5k instructions of a credential fetch).
fn fetch_query(q: &str) -> Result<FetchQuery<'_>, ApiError> {
    if let Some(f) = plain_fetch_query(q) {
        return Ok(f);
    }
    let w: wire::GetConnectionQuery = serde_urlencoded::from_str(q)
        .map_err(|e| ApiError::validation("invalid_query_params", &[], e.to_string()))?;
    Ok(FetchQuery {
        provider_config_key: w.provider_config_key.map(Cow::Owned),
        force_refresh: w.force_refresh.map(Cow::Owned),
        refresh_token: w.refresh_token.map(Cow::Owned),
        refresh_github_app_jwt_token: w.refresh_github_app_jwt_token.map(Cow::Owned),
    })
}

/// `None` unless every pair is `known_key=value` with no `%` or `+` (which decode to something
/// else) and no key twice: then decoding is the identity and the answer is serde_urlencoded's.
fn plain_fetch_query(q: &str) -> Option<FetchQuery<'_>> {
    let mut f = FetchQuery::default();
    if q.is_empty() {
        return Some(f);
    }
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=')?;
        if v.contains(['%', '+']) {
            return None;
        }
        let slot = match k {
            "provider_config_key" => &mut f.provider_config_key,
            "force_refresh" => &mut f.force_refresh,
            "refresh_token" => &mut f.refresh_token,
            "refresh_github_app_jwt_token" => &mut f.refresh_github_app_jwt_token,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(Cow::Borrowed(v));
    }
    Some(f)
}

/// The answer of `GET /connections/{id}` as a value, the plain way: `fetch_body` serves its
/// bytes, rendered once per connection version with `last_fetched_at` written in per call (and
/// `tests/it/connections_fetch.rs` compares the two over HTTP).
pub fn fetch_value(
    conn: &Connection,
    integration: &Integration,
    provider: &Provider,
    with_rt: bool,
    last_fetched_at: Option<String>,
) -> wire::Connection {
    let mut v = render::connection(conn, with_rt, provider.sharepoint_token);
    v.last_fetched_at = last_fetched_at;
    if provider.is_app_only() {
        v.credentials = Some(super::app_only::cc_credentials(
            conn,
            &integration.client_id,
        ));
    }
    v
}

/// Nango's `invalid_credentials` carries the connection (without credentials) in its payload.
/// Read again rather than kept on every call: failures are rare.
async fn with_connection(
    st: &AppState,
    key: &ProviderConfigKey,
    cid: &ConnectionId,
    mut err: ApiError,
) -> ApiError {
    if err.code != "invalid_credentials" {
        return err;
    }
    let (Ok((_, provider)), Ok(Some(conn))) = (
        st.core.integration_cached(key).await,
        st.core.cached_connection(key, cid).await,
    ) else {
        return err;
    };
    let mut payload = err.payload.take().unwrap_or_else(|| json!({}));
    let mut c = render::connection(&conn, false, provider.sharepoint_token);
    c.credentials = None;
    payload["connection"] = serde_json::to_value(c).unwrap_or_default();
    err.payload = Some(payload);
    err
}

pub async fn delete(
    State(st): State<AppState>,
    _: SecretKey,
    Path(id): Path<String>,
    Query(q): Query<wire::ProviderConfigKeyQuery>,
) -> Result<Json<wire::Success>, ApiError> {
    let key = key_param(q.provider_config_key.as_deref())?;
    let cid = connection_id(&id)?;
    if !st.core.delete_connection(&key, &cid).await? {
        return Err(ApiError::code_only(
            StatusCode::BAD_REQUEST,
            "unknown_connection",
        ));
    }
    tracing::info!(connection.id = %cid, integration.key = %key, "connection {cid} deleted");
    Ok(Json(wire::Success::TRUE))
}

pub async fn patch(
    State(st): State<AppState>,
    _: SecretKey,
    Path(id): Path<String>,
    Query(q): Query<wire::ProviderConfigKeyQuery>,
    JsonBody(mut b): JsonBody<wire::PatchConnection>,
) -> Result<Json<wire::Success>, ApiError> {
    let key = key_param(q.provider_config_key.as_deref())?;
    let cid = connection_id(&id)?;
    b.tags = super::sessions::tags_opt(b.tags, "tags")?;
    if let Some(u) = b.end_user.as_mut() {
        u.tags = super::sessions::tags_opt(u.tags.take(), "end_user")?;
    }
    st.core.integration(&key).await?;
    let patch = ConnectionPatch {
        end_user: b.end_user.map(|u| crate::model::EndUser {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            tags: u.tags,
            organization: None,
        }),
        tags: b.tags,
        webhook_url_override: b
            .webhook_url_override
            .map(|s| crate::edge::extract::webhook_url_override(Some(s)))
            .transpose()?,
    };
    if !st.core.patch_connection(&key, &cid, patch).await? {
        return Err(ApiError::not_found("Failed to find connection"));
    }
    Ok(Json(wire::Success::TRUE))
}

fn parse_date(s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map(|d| d.and_utc())
        })
        .map_err(|_| {
            ApiError::validation(
                "invalid_body",
                &["credentials", "expires_at"],
                "expires_at must be an ISO 8601 date",
            )
        })
}

struct Import {
    key: ProviderConfigKey,
    connection_id: Option<String>,
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    raw: Value,
    connection_config: serde_json::Map<String, Value>,
    metadata: Option<Value>,
    end_user: Option<wire::EndUserInput>,
    tags: Option<Tags>,
    webhook_url_override: Option<String>,
}

async fn do_import(st: &AppState, mut i: Import) -> Result<crate::model::Connection, ApiError> {
    i.tags = super::sessions::tags_opt(i.tags, "tags")?;
    if let Some(u) = i.end_user.as_mut() {
        u.tags = super::sessions::tags_opt(u.tags.take(), "end_user")?;
    }
    let (integration, _) = st.core.integration(&i.key).await.map_err(|e| match e {
        crate::connections::Error::UnknownIntegration(_) => {
            ApiError::not_found("Integration does not exist")
        }
        other => other.into(),
    })?;
    if i.access_token.is_empty() {
        return Err(ApiError::validation(
            "invalid_body",
            &["credentials", "access_token"],
            "access_token must not be empty",
        ));
    }
    let cid = match &i.connection_id {
        Some(c) => ConnectionId::parse(c)
            .map_err(|e| ApiError::validation("invalid_body", &["connection_id"], e.to_string()))?,
        None => ConnectionId::new_random(),
    };
    let (conn, created) = st
        .core
        .import_connection(NewConnection {
            connection_id: cid,
            provider_config_key: i.key,
            provider: integration.provider,
            credentials: Credentials {
                access_token: AccessToken::new(i.access_token),
                refresh_token: i
                    .refresh_token
                    .filter(|s| !s.is_empty())
                    .map(RefreshToken::new),
                expires_at: i.expires_at,
                raw: i.raw,
                sharepoint: None,
            },
            connection_config: Value::Object(i.connection_config),
            metadata: i.metadata,
            end_user: i.end_user.map(|u| crate::model::EndUser {
                id: u.id,
                email: u.email,
                display_name: u.display_name,
                tags: u.tags,
                organization: None,
            }),
            tags: i.tags.unwrap_or_default(),
            webhook_url_override: crate::edge::extract::webhook_url_override(
                i.webhook_url_override,
            )?,
        })
        .await?;
    tracing::info!(connection.id = %conn.connection_id, integration.key = %conn.provider_config_key, created, "connection {} imported", conn.connection_id);
    st.core.import_webhook(&conn, created).await;
    Ok(conn)
}

/// `POST /connections`: import existing credentials. 201 with the full connection.
pub async fn import(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<wire::Connection>), ApiError> {
    if super::app_only::is_app_only_import(&body) {
        return super::app_only::import(&st, body).await;
    }
    let b: wire::ImportConnection = serde_json::from_value(body)
        .map_err(|e| ApiError::validation("invalid_body", &[], e.to_string()))?;
    if b.credentials.kind != "OAUTH2" {
        return Err(ApiError::validation(
            "invalid_body",
            &["credentials", "type"],
            "credentials.type must be OAUTH2 for this provider",
        ));
    }
    let key = ProviderConfigKey::parse(&b.provider_config_key).map_err(|e| {
        ApiError::validation("invalid_body", &["provider_config_key"], e.to_string())
    })?;
    let expires_at = b
        .credentials
        .expires_at
        .as_deref()
        .map(parse_date)
        .transpose()?;
    let raw = b.credentials.raw.clone().unwrap_or_else(|| {
        let mut r = json!({ "type": "OAUTH2", "access_token": b.credentials.access_token });
        if let Some(rt) = &b.credentials.refresh_token {
            r["refresh_token"] = json!(rt);
        }
        if let Some(e) = &b.credentials.expires_at {
            r["expires_at"] = json!(e);
        }
        if let Some(c) = &b.credentials.config_override {
            r["config_override"] = c.clone();
        }
        r
    });
    let conn = do_import(
        &st,
        Import {
            key,
            connection_id: b.connection_id,
            access_token: b.credentials.access_token,
            refresh_token: b.credentials.refresh_token,
            expires_at,
            raw,
            connection_config: b.connection_config.unwrap_or_default(),
            metadata: b.metadata,
            end_user: b.end_user,
            tags: b.tags,
            webhook_url_override: b.webhook_url_override,
        },
    )
    .await?;
    let sharepoint = st
        .core
        .catalog
        .get(&conn.provider)
        .is_some_and(|p| p.sharepoint_token);
    Ok((
        StatusCode::CREATED,
        Json(render::connection(&conn, true, sharepoint)),
    ))
}

/// Deprecated `POST /connection`: flat body with the credential fields at the top level.
pub async fn import_flat(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<serde_json::Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    let key =
        ProviderConfigKey::parse(&s("provider_config_key").unwrap_or_default()).map_err(|e| {
            ApiError::validation("invalid_body", &["provider_config_key"], e.to_string())
        })?;
    let access_token = s("access_token").filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_access_token",
            "access_token is required",
        )
    })?;
    let now = st.core.clock.now();
    let expires_at = match (
        s("expires_at"),
        b.get("expires_in").and_then(Value::as_i64),
        b.get("no_expiration").and_then(Value::as_bool),
    ) {
        (Some(at), _, _) => Some(parse_date(&at)?),
        (None, Some(secs), _) => Some(now + TimeDelta::seconds(secs)),
        (None, None, Some(true)) => None,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_expires_at",
                "One of expires_at, expires_in or no_expiration:true is required",
            ));
        }
    };
    let conn = do_import(
        &st,
        Import {
            key,
            connection_id: s("connection_id"),
            access_token,
            refresh_token: s("refresh_token"),
            expires_at,
            raw: Value::Object(b.clone()),
            connection_config: b
                .get("connection_config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            metadata: b.get("metadata").cloned(),
            end_user: None,
            tags: None,
            webhook_url_override: None,
        },
    )
    .await?;
    let mut echo = Value::Object(b);
    echo["connection_id"] = json!(conn.connection_id.as_str());
    Ok((StatusCode::CREATED, Json(echo)))
}

async fn write_metadata(
    st: &AppState,
    key: &str,
    ids: Vec<String>,
    metadata: &Value,
    merge: bool,
) -> Result<(), ApiError> {
    if !metadata.is_object() {
        return Err(ApiError::validation(
            "invalid_body",
            &["metadata"],
            "metadata must be an object",
        ));
    }
    let key = ProviderConfigKey::parse(key).map_err(|e| {
        ApiError::validation("invalid_body", &["provider_config_key"], e.to_string())
    })?;
    let ids = ids
        .iter()
        .map(|i| {
            ConnectionId::parse(i).map_err(|e| {
                ApiError::validation("invalid_body", &["connection_id"], e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    st.core
        .set_metadata(&key, &ids, metadata, merge)
        .await
        .map_err(|e| match e {
            crate::connections::Error::Store(StoreError::MissingConnection(id)) => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_connection",
                format!(
                    "Connection with connection id {id} and provider config key {key} not found"
                ),
            ),
            other => other.into(),
        })
}

fn ids_of(v: &wire::ConnectionIds) -> Result<Vec<String>, ApiError> {
    match v {
        wire::ConnectionIds::One(s) => Ok(vec![s.clone()]),
        wire::ConnectionIds::Many(a) if !a.is_empty() => Ok(a.clone()),
        wire::ConnectionIds::Many(_) => Err(ApiError::validation(
            "invalid_body",
            &["connection_id"],
            "connection_id must be a string or a non-empty array of strings",
        )),
    }
}

pub async fn set_metadata(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::MetadataRequest>,
) -> Result<(StatusCode, Json<wire::MetadataRequest>), ApiError> {
    write_metadata(
        &st,
        &b.provider_config_key,
        ids_of(&b.connection_id)?,
        &b.metadata,
        false,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(b)))
}

pub async fn update_metadata(
    State(st): State<AppState>,
    _: SecretKey,
    JsonBody(b): JsonBody<wire::MetadataRequest>,
) -> Result<Json<wire::MetadataRequest>, ApiError> {
    write_metadata(
        &st,
        &b.provider_config_key,
        ids_of(&b.connection_id)?,
        &b.metadata,
        true,
    )
    .await?;
    Ok(Json(b))
}

fn deprecated_key(q: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<String, ApiError> {
    q.get("provider_config_key")
        .cloned()
        .or_else(|| {
            headers
                .get("provider-config-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            ApiError::validation(
                "invalid_query_params",
                &["provider_config_key"],
                "provider_config_key is required",
            )
        })
}

pub async fn set_metadata_deprecated(
    State(st): State<AppState>,
    _: SecretKey,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    JsonBody(metadata): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = deprecated_key(&q, &headers)?;
    write_metadata(&st, &key, vec![id], &metadata, false).await?;
    Ok((StatusCode::CREATED, Json(metadata)))
}

pub async fn update_metadata_deprecated(
    State(st): State<AppState>,
    _: SecretKey,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    JsonBody(metadata): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let key = deprecated_key(&q, &headers)?;
    write_metadata(&st, &key, vec![id], &metadata, true).await?;
    Ok(Json(metadata))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the `Query` extractor made of `q`: the four options, or the error message.
    fn via_serde(q: &str) -> Result<[Option<String>; 4], String> {
        serde_urlencoded::from_str::<wire::GetConnectionQuery>(q)
            .map(|w| {
                [
                    w.provider_config_key,
                    w.force_refresh,
                    w.refresh_token,
                    w.refresh_github_app_jwt_token,
                ]
            })
            .map_err(|e| e.to_string())
    }

    fn via_fetch_query(q: &str) -> Result<[Option<String>; 4], String> {
        fetch_query(q)
            .map(|f| {
                [
                    f.provider_config_key,
                    f.force_refresh,
                    f.refresh_token,
                    f.refresh_github_app_jwt_token,
                ]
                .map(|v| v.map(Cow::into_owned))
            })
            .map_err(|e| e.message.unwrap_or_default())
    }

    #[test]
    fn fetch_query_reads_what_serde_urlencoded_reads() {
        for q in [
            "",
            "provider_config_key=od",
            "provider_config_key=od&refresh_token=true&force_refresh=0",
            "refresh_github_app_jwt_token=yes&provider_config_key=a-b_c.d",
            "provider_config_key=",
            "provider_config_key=a=b",
        ] {
            assert!(plain_fetch_query(q).is_some(), "{q}");
            assert_eq!(via_fetch_query(q), via_serde(q), "{q}");
        }
        for q in [
            "provider_config_key=o%64",
            "provider_config_key=a+b",
            "provider_config_key=od&provider_config_key=x",
            "provider_config_key=od&",
            "&provider_config_key=od",
            "provider_config_key",
            "provider_config_key=od&other=1",
            "provider%5Fconfig%5Fkey=od",
        ] {
            assert!(plain_fetch_query(q).is_none(), "{q}");
            assert_eq!(via_fetch_query(q).is_ok(), via_serde(q).is_ok(), "{q}");
        }
        let e = fetch_query("provider_config_key=od&x=1").unwrap_err();
        assert_eq!(e.code, "invalid_query_params");
    }

    proptest! {
        #[test]
        fn fetch_query_reads_any_query_as_serde_urlencoded(
            pairs in prop::collection::vec(
                (
                    prop_oneof![
                        Just("provider_config_key"), Just("force_refresh"), Just("refresh_token"),
                        Just("refresh_github_app_jwt_token"), Just("other"), Just(""),
                        Just("refresh%5Ftoken"), Just("force_refresh=x"),
                    ],
                    "[a-z0-9=%+&._~-]{0,8}",
                    any::<bool>(),
                ),
                0..5,
            )
        ) {
            let q = pairs
                .iter()
                .map(|(k, v, eq)| if *eq { format!("{k}={v}") } else { format!("{k}{v}") })
                .collect::<Vec<_>>()
                .join("&");
            // Errors compare by message: the same 400 `invalid_query_params` either way.
            prop_assert_eq!(via_fetch_query(&q), via_serde(&q), "{}", q);
        }
    }
}
