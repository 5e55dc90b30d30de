//! Store conformance: one suite, run on in-memory SQLite, a SQLite file, and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; see `support::db`). Each section gets a fresh database, so the
//! sections run in parallel and assert on exact contents.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use grantd::crypto::Cipher;
use grantd::model::{
    AccessToken, AuthFailure, ClientSecret, CodeVerifier, ConnectionFilter, ConnectionId,
    Credentials, EndUser, NewConnectSession, NewConnection, NewIntegration, OAuthFlow,
    Organization, ProviderConfigKey, RefreshToken, ResourceToken, Tags,
};
use grantd::store::{
    ConnectionPatch, Error, PageCounts, RecordChange, RecordsQuery, Store, SyncDrive, SyncPage,
};
use serde_json::json;

use crate::support::db::{DbKind, TestDb};

// ---- fixtures ----

fn pk(s: &str) -> ProviderConfigKey {
    ProviderConfigKey::parse(s).expect("valid key")
}

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).expect("valid connection id")
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cipher(key: &str, old: &[&str]) -> Cipher {
    let old: Vec<String> = old.iter().map(|s| s.to_string()).collect();
    Cipher::new(key, &old).expect("valid key")
}

async fn open(db: &TestDb, cipher: Cipher) -> Store {
    Store::connect(db.url(), cipher)
        .await
        .expect("store connects and migrates")
}

async fn store(db: &TestDb) -> Store {
    open(db, cipher(&Cipher::generate_key(), &[])).await
}

fn new_integration(key: &str) -> NewIntegration {
    NewIntegration {
        unique_key: pk(key),
        provider: "one-drive".into(),
        display_name: Some(format!("{key} display")),
        client_id: format!("{key}-client-id"),
        client_secret: ClientSecret::new(format!("{key}-client-secret")),
        scopes: vec!["offline_access".into(), "Files.Read".into()],
        forward_webhooks: true,
        integration_config: BTreeMap::from([("tenant".to_string(), "common".to_string())]),
    }
}

fn creds(access: &str, refresh: Option<&str>, expires_at: Option<DateTime<Utc>>) -> Credentials {
    Credentials {
        access_token: AccessToken::new(access),
        refresh_token: refresh.map(RefreshToken::new),
        expires_at,
        raw: json!({"access_token": access, "token_type": "Bearer"}),
        sharepoint: None,
    }
}

fn end_user(id: &str, email: Option<&str>, name: Option<&str>, org: Option<&str>) -> EndUser {
    EndUser {
        id: id.into(),
        email: email.map(Into::into),
        display_name: name.map(Into::into),
        tags: None,
        organization: org.map(|o| Organization {
            id: o.into(),
            display_name: None,
        }),
    }
}

fn new_connection(key: &str, id: &str) -> NewConnection {
    NewConnection {
        connection_id: cid(id),
        provider_config_key: pk(key),
        provider: "one-drive".into(),
        credentials: creds(&format!("at-{id}"), Some(&format!("rt-{id}")), Some(soon())),
        connection_config: json!({"tenantId": "t-1"}),
        metadata: None,
        end_user: Some(end_user(&format!("user-{id}"), None, None, None)),
        tags: Tags::new(),
        webhook_url_override: None,
    }
}

/// A whole number of seconds from now, so it survives the microsecond truncation unchanged.
fn soon() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).expect("valid timestamp")
}

fn failure() -> AuthFailure {
    AuthFailure {
        kind: grantd::model::FailureKind::Reconnect,
        description: "the refresh token expired".into(),
        aadsts: Some(700082),
        error: Some("invalid_grant".into()),
        at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp"),
    }
}

fn ids(list: &[grantd::model::Connection]) -> Vec<&str> {
    list.iter().map(|c| c.connection_id.as_str()).collect()
}

// ---- sections ----

async fn basics(db: &TestDb) {
    let s = store(db).await;
    s.ping().await.expect("ping");
    let expected = if db.kind().is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(s.backend_name(), expected);
    assert_eq!(s.count_connections().await.expect("count"), 0);
    assert!(s.list_integrations().await.expect("list").is_empty());
    // A second connect to the same database finds the migrations applied.
    if db.kind().is_persistent() {
        let again = store(db).await;
        again.ping().await.expect("ping");
    }
}

async fn integrations(db: &TestDb) {
    let s = store(db).await;
    let a = s
        .create_integration(new_integration("alpha"))
        .await
        .expect("create");
    assert_eq!(a.unique_key, pk("alpha"));
    assert_eq!(a.provider, "one-drive");
    assert_eq!(a.display_name.as_deref(), Some("alpha display"));
    assert_eq!(a.client_id, "alpha-client-id");
    assert!(a.client_secret.ct_eq("alpha-client-secret"));
    assert_eq!(a.scopes, vec!["offline_access", "Files.Read"]);
    assert!(a.forward_webhooks);
    assert_eq!(
        a.integration_config.get("tenant").map(String::as_str),
        Some("common")
    );

    let got = s
        .get_integration(&pk("alpha"))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.id, a.id);
    assert!(got.client_secret.ct_eq("alpha-client-secret"));
    assert_eq!(got.created_at, a.created_at);
    assert!(s.get_integration(&pk("nope")).await.expect("get").is_none());

    assert!(matches!(
        s.create_integration(new_integration("alpha")).await,
        Err(Error::Conflict("integration"))
    ));

    s.create_integration(new_integration("beta"))
        .await
        .expect("create");
    s.create_integration(new_integration("gamma"))
        .await
        .expect("create");
    let keys: Vec<String> = s
        .list_integrations()
        .await
        .expect("list")
        .iter()
        .map(|i| i.unique_key.to_string())
        .collect();
    assert_eq!(keys, ["alpha", "beta", "gamma"], "oldest first");

    // Update in place.
    let mut changed = new_integration("alpha");
    changed.display_name = None;
    changed.client_secret = ClientSecret::new("rotated-secret");
    changed.scopes = vec!["Sites.Read.All".into()];
    changed.forward_webhooks = false;
    changed.integration_config = BTreeMap::new();
    let u = s
        .update_integration(&pk("alpha"), changed)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(u.id, a.id);
    assert_eq!(u.display_name, None);
    assert!(u.client_secret.ct_eq("rotated-secret"));
    assert_eq!(u.scopes, vec!["Sites.Read.All"]);
    assert!(!u.forward_webhooks);
    assert!(u.integration_config.is_empty());
    assert_eq!(u.created_at, a.created_at);
    assert!(u.updated_at >= a.updated_at);
    let reread = s
        .get_integration(&pk("alpha"))
        .await
        .expect("get")
        .expect("exists");
    assert!(reread.client_secret.ct_eq("rotated-secret"));

    assert!(
        s.update_integration(&pk("nope"), new_integration("nope"))
            .await
            .expect("ok")
            .is_none()
    );

    // Rename onto a taken key.
    assert!(matches!(
        s.update_integration(&pk("alpha"), new_integration("beta"))
            .await,
        Err(Error::Conflict("integration"))
    ));
    // Rename without connections.
    let r = s
        .update_integration(&pk("gamma"), new_integration("delta"))
        .await
        .expect("rename");
    assert_eq!(r.expect("exists").unique_key, pk("delta"));
    assert!(
        s.get_integration(&pk("gamma"))
            .await
            .expect("get")
            .is_none()
    );
    // Rename with a live connection is refused; after deleting it, allowed.
    s.upsert_connection(new_connection("beta", "c1"))
        .await
        .expect("upsert");
    assert!(matches!(
        s.update_integration(&pk("beta"), new_integration("epsilon"))
            .await,
        Err(Error::Refused(_))
    ));
    assert!(s.get_integration(&pk("beta")).await.expect("get").is_some());
    // Same key with live connections is fine.
    s.update_integration(&pk("beta"), new_integration("beta"))
        .await
        .expect("update")
        .expect("exists");
    s.delete_connection(&pk("beta"), &cid("c1"))
        .await
        .expect("delete");
    s.update_integration(&pk("beta"), new_integration("epsilon"))
        .await
        .expect("rename")
        .expect("exists");

    // Delete soft-deletes the connections.
    s.upsert_connection(new_connection("alpha", "a1"))
        .await
        .expect("upsert");
    s.upsert_connection(new_connection("alpha", "a2"))
        .await
        .expect("upsert");
    s.upsert_connection(new_connection("delta", "d1"))
        .await
        .expect("upsert");
    assert_eq!(s.count_connections().await.expect("count"), 3);
    assert!(s.delete_integration(&pk("alpha")).await.expect("delete"));
    assert!(!s.delete_integration(&pk("alpha")).await.expect("delete"));
    assert!(
        s.get_integration(&pk("alpha"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        s.get_connection(&pk("alpha"), &cid("a1"))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(s.count_connections().await.expect("count"), 1);
    // Re-creating the integration does not resurrect them.
    s.create_integration(new_integration("alpha"))
        .await
        .expect("re-create");
    assert!(
        s.get_connection(&pk("alpha"), &cid("a1"))
            .await
            .expect("get")
            .is_none()
    );
    let all = s
        .list_connections(&ConnectionFilter::default())
        .await
        .expect("list");
    assert_eq!(ids(&all), ["d1"]);
}

async fn connect_sessions(db: &TestDb) {
    let s = store(db).await;
    let now = Utc::now();
    let eu = EndUser {
        tags: Some(tags(&[("plan", "pro")])),
        ..end_user(
            "u-1",
            Some("u1@example.com"),
            Some("User One"),
            Some("org-1"),
        )
    };
    let new = NewConnectSession {
        overrides: serde_json::Value::Null,
        token_hash: "hash-1".into(),
        end_user: Some(eu.clone()),
        organization: Some(Organization {
            id: "org-1".into(),
            display_name: Some("Org".into()),
        }),
        allowed_integrations: Some(vec!["one-drive".into()]),
        integrations_config_defaults: json!({"one-drive": {"connection_config": {"x": 1}}}),
        reconnect: Some((pk("one-drive"), cid("conn-1"))),
        tags: tags(&[("k", "v")]),
        webhook_url_override: Some("https://hooks.example/x".into()),
        expires_at: now + Duration::minutes(30),
    };
    let created = s.create_connect_session(new.clone()).await.expect("create");
    assert_eq!(created.end_user.as_ref(), Some(&eu));
    assert_eq!(
        created.organization.as_ref().map(|o| o.id.as_str()),
        Some("org-1")
    );
    assert_eq!(
        created.allowed_integrations,
        Some(vec!["one-drive".to_string()])
    );
    assert_eq!(
        created.integrations_config_defaults,
        new.integrations_config_defaults
    );
    assert_eq!(created.reconnect, Some((pk("one-drive"), cid("conn-1"))));
    assert_eq!(created.tags, tags(&[("k", "v")]));
    assert_eq!(
        created.webhook_url_override.as_deref(),
        Some("https://hooks.example/x")
    );
    assert!(
        (created.expires_at - new.expires_at)
            .num_microseconds()
            .expect("small")
            .abs()
            < 1
    );

    let got = s
        .get_connect_session("hash-1", now)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(got.id, created.id);
    assert_eq!(got.expires_at, created.expires_at);
    assert_eq!(got.created_at, created.created_at);
    assert!(
        s.get_connect_session("other", now)
            .await
            .expect("get")
            .is_none()
    );
    // Expired at or after expires_at; still readable by id.
    assert!(
        s.get_connect_session("hash-1", created.expires_at)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        s.get_connect_session("hash-1", now + Duration::hours(1))
            .await
            .expect("get")
            .is_none()
    );
    let by_id = s
        .get_connect_session_by_id(created.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(by_id.end_user.as_ref(), Some(&eu));
    assert!(
        s.get_connect_session_by_id(created.id + 1000)
            .await
            .expect("get")
            .is_none()
    );

    assert!(matches!(
        s.create_connect_session(new.clone()).await,
        Err(Error::Conflict("connect session"))
    ));

    // Minimal session: every optional field empty.
    let minimal = NewConnectSession {
        overrides: serde_json::Value::Null,
        token_hash: "hash-2".into(),
        end_user: None,
        organization: None,
        allowed_integrations: None,
        integrations_config_defaults: json!({}),
        reconnect: None,
        tags: Tags::new(),
        webhook_url_override: None,
        expires_at: now + Duration::minutes(30),
    };
    let m = s.create_connect_session(minimal).await.expect("create");
    assert_ne!(m.id, created.id);
    assert!(m.end_user.is_none() && m.organization.is_none() && m.allowed_integrations.is_none());
    assert!(m.reconnect.is_none() && m.tags.is_empty() && m.webhook_url_override.is_none());

    assert!(s.delete_connect_session("hash-1").await.expect("delete"));
    assert!(!s.delete_connect_session("hash-1").await.expect("delete"));
    assert!(
        s.get_connect_session("hash-1", now)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        s.get_connect_session_by_id(created.id)
            .await
            .expect("get")
            .is_none()
    );
}

fn flow(state: &str, expires_at: DateTime<Utc>) -> OAuthFlow {
    OAuthFlow {
        state: state.into(),
        provider_config_key: pk("one-drive"),
        connection_id: cid("conn-1"),
        connect_session_id: Some(7),
        ws_client_id: Some("ws-1".into()),
        code_verifier: CodeVerifier::new(format!("verifier-{state}")),
        connection_config: json!({"tenantId": "common"}),
        redirect_uri: "https://grantd.example/oauth/callback".into(),
        kind: "delegated".into(),
        expires_at,
        created_at: Utc::now(),
    }
}

async fn oauth_flows(db: &TestDb) {
    let s = store(db).await;
    let now = Utc::now();
    s.put_oauth_flow(flow("st-1", now + Duration::minutes(10)))
        .await
        .expect("put");
    assert!(matches!(
        s.put_oauth_flow(flow("st-1", now + Duration::minutes(10)))
            .await,
        Err(Error::Conflict("oauth flow"))
    ));
    let f = s
        .take_oauth_flow("st-1")
        .await
        .expect("take")
        .expect("exists");
    assert_eq!(f.state, "st-1");
    assert_eq!(f.provider_config_key, pk("one-drive"));
    assert_eq!(f.connection_id, cid("conn-1"));
    assert_eq!(f.connect_session_id, Some(7));
    assert_eq!(f.ws_client_id.as_deref(), Some("ws-1"));
    assert!(f.code_verifier.ct_eq("verifier-st-1"));
    assert_eq!(f.connection_config, json!({"tenantId": "common"}));
    assert_eq!(f.redirect_uri, "https://grantd.example/oauth/callback");
    assert_eq!(f.kind, "delegated");
    // Single use.
    assert!(s.take_oauth_flow("st-1").await.expect("take").is_none());
    assert!(s.take_oauth_flow("never").await.expect("take").is_none());

    // Expired flows are still returned (the caller says "expired").
    let mut old = flow("st-old", now - Duration::minutes(1));
    old.connect_session_id = None;
    old.ws_client_id = None;
    s.put_oauth_flow(old).await.expect("put");
    let f = s
        .take_oauth_flow("st-old")
        .await
        .expect("take")
        .expect("expired but returned");
    assert!(f.expires_at < now && f.connect_session_id.is_none() && f.ws_client_id.is_none());

    // Concurrent takes: exactly one wins.
    s.put_oauth_flow(flow("st-race", now + Duration::minutes(10)))
        .await
        .expect("put");
    let takes = (0..4).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.take_oauth_flow("st-race").await.expect("take") })
    });
    let mut won = 0;
    for t in takes {
        won += usize::from(t.await.expect("join").is_some());
    }
    assert_eq!(won, 1);

    // Housekeeping removes expired sessions and flows only.
    s.put_oauth_flow(flow("st-expired", now - Duration::hours(2)))
        .await
        .expect("put");
    s.put_oauth_flow(flow("st-live", now + Duration::hours(2)))
        .await
        .expect("put");
    for (hash, exp) in [
        ("h-expired", now - Duration::hours(2)),
        ("h-live", now + Duration::hours(2)),
    ] {
        s.create_connect_session(NewConnectSession {
            overrides: serde_json::Value::Null,
            token_hash: hash.into(),
            end_user: None,
            organization: None,
            allowed_integrations: None,
            integrations_config_defaults: json!({}),
            reconnect: None,
            tags: Tags::new(),
            webhook_url_override: None,
            expires_at: exp,
        })
        .await
        .expect("create");
    }
    let options = grantd::model::PickerOptions {
        entry: grantd::model::PickerEntry::OneDrive,
        mode: grantd::model::PickerMode::Files,
        multi_select: false,
        filters: vec![],
        save_selection: false,
        origin: "https://app.example.com".into(),
    };
    for (hash, exp) in [
        ("p-expired", now - Duration::hours(2)),
        ("p-live", now + Duration::hours(2)),
    ] {
        s.create_picker_session(
            hash,
            &grantd::model::ProviderConfigKey::parse("one-drive").unwrap(),
            &grantd::model::ConnectionId::parse("c-1").unwrap(),
            &options,
            exp,
        )
        .await
        .expect("create picker session");
    }
    assert_eq!(s.purge_expired(now).await.expect("purge"), 3);
    assert!(
        s.get_picker_session("p-expired", now - Duration::hours(3))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        s.get_picker_session("p-live", now)
            .await
            .expect("get")
            .expect("kept")
            .options,
        options
    );
    assert!(
        s.take_oauth_flow("st-expired")
            .await
            .expect("take")
            .is_none()
    );
    assert!(s.take_oauth_flow("st-live").await.expect("take").is_some());
    assert!(
        s.get_connect_session("h-live", now)
            .await
            .expect("get")
            .is_some()
    );
}

async fn upsert(db: &TestDb) {
    let s = store(db).await;
    let mut new = new_connection("one-drive", "conn-1");
    new.credentials.sharepoint = Some(ResourceToken {
        access_token: AccessToken::new("sp-token"),
        expires_at: Some(soon()),
        token_type: "Bearer".into(),
        scope: Some("AllSites.Read".into()),
        host: "contoso.sharepoint.com".into(),
    });
    new.tags = tags(&[("team", "a")]);
    new.webhook_url_override = Some("https://hooks.example/1".into());
    let (c, created) = s.upsert_connection(new.clone()).await.expect("create");
    assert!(created);
    assert_eq!(c.version, 1);
    assert_eq!(c.connection_id, cid("conn-1"));
    assert_eq!(c.provider_config_key, pk("one-drive"));
    assert_eq!(c.provider, "one-drive");
    assert_eq!(
        c.metadata,
        json!({}),
        "metadata defaults to an empty object"
    );
    assert_eq!(c.connection_config, json!({"tenantId": "t-1"}));
    assert_eq!(c.end_user, new.end_user);
    assert_eq!(c.tags, tags(&[("team", "a")]));
    assert_eq!(
        c.webhook_url_override.as_deref(),
        Some("https://hooks.example/1")
    );
    assert!(
        c.auth_failure.is_none() && c.last_fetched_at.is_none() && c.last_refreshed_at.is_none()
    );
    assert!(c.credentials.access_token.ct_eq("at-conn-1"));
    assert!(
        c.credentials
            .refresh_token
            .as_ref()
            .expect("refresh")
            .ct_eq("rt-conn-1")
    );
    assert_eq!(c.credentials.expires_at, new.credentials.expires_at);
    assert_eq!(c.credentials.raw, new.credentials.raw);
    let sp = c.credentials.sharepoint.as_ref().expect("sharepoint token");
    assert!(sp.access_token.ct_eq("sp-token"));
    assert_eq!(sp.host, "contoso.sharepoint.com");

    let got = s
        .get_connection(&pk("one-drive"), &cid("conn-1"))
        .await
        .expect("get")
        .expect("live");
    assert_eq!(got.id, c.id);
    assert_eq!(got.created_at, c.created_at);
    assert_eq!(got.updated_at, c.updated_at);
    assert!(got.credentials.access_token.ct_eq("at-conn-1"));
    let by_id = s
        .get_connection_by_id(c.id)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(by_id.connection_id, cid("conn-1"));
    assert!(
        s.get_connection(&pk("other"), &cid("conn-1"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        s.get_connection(&pk("one-drive"), &cid("conn-2"))
            .await
            .expect("get")
            .is_none()
    );

    // Overwrite: same row, version bumped, auth failure cleared, metadata kept when None.
    s.set_metadata(
        &pk("one-drive"),
        &[cid("conn-1")],
        &json!({"keep": true}),
        false,
    )
    .await
    .expect("meta");
    s.set_auth_failure(c.id, Some(&failure()))
        .await
        .expect("fail");
    let mut again = new_connection("one-drive", "conn-1");
    again.credentials = creds("at-2", Some("rt-2"), None);
    again.connection_config = json!({"tenantId": "t-2"});
    again.end_user = None;
    again.tags = tags(&[("team", "b")]);
    let (c2, created) = s.upsert_connection(again).await.expect("overwrite");
    assert!(!created);
    assert_eq!(c2.id, c.id);
    assert_eq!(c2.version, 2);
    assert_eq!(c2.created_at, c.created_at);
    assert!(c2.updated_at >= c.updated_at);
    assert!(c2.auth_failure.is_none());
    assert_eq!(c2.metadata, json!({"keep": true}));
    assert!(c2.credentials.access_token.ct_eq("at-2"));
    assert_eq!(c2.credentials.expires_at, None);
    assert_eq!(c2.connection_config, json!({"tenantId": "t-2"}));
    assert_eq!(c2.end_user, None);
    assert_eq!(c2.tags, tags(&[("team", "b")]));
    assert_eq!(
        c2.webhook_url_override.as_deref(),
        Some("https://hooks.example/1"),
        "kept when None"
    );

    // Metadata given on overwrite replaces.
    let mut third = new_connection("one-drive", "conn-1");
    third.metadata = Some(json!({"new": 1}));
    let (c3, created) = s.upsert_connection(third).await.expect("overwrite");
    assert!(!created);
    assert_eq!(c3.version, 3);
    assert_eq!(c3.metadata, json!({"new": 1}));

    // Same connection id under another integration is another connection.
    let (o, created) = s
        .upsert_connection(new_connection("sharepoint", "conn-1"))
        .await
        .expect("create");
    assert!(created);
    assert_ne!(o.id, c.id);
    assert_eq!(s.count_connections().await.expect("count"), 2);

    // Concurrent first writes of one id: one creates, the others overwrite, none fails.
    let writes = (0..4).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let mut n = new_connection("one-drive", "raced");
            n.credentials = creds(&format!("at-race-{i}"), None, None);
            s.upsert_connection(n).await.expect("upsert")
        })
    });
    let mut creations = 0;
    for w in writes {
        creations += usize::from(w.await.expect("join").1);
    }
    assert_eq!(creations, 1);
    let raced = s
        .get_connection(&pk("one-drive"), &cid("raced"))
        .await
        .expect("get")
        .expect("live");
    assert_eq!(raced.version, 4);
}

async fn soft_delete(db: &TestDb) {
    let s = store(db).await;
    let (c, _) = s
        .upsert_connection(new_connection("k", "conn-1"))
        .await
        .expect("create");
    s.upsert_connection(new_connection("k", "conn-2"))
        .await
        .expect("create");
    assert!(
        s.delete_connection(&pk("k"), &cid("conn-1"))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_connection(&pk("k"), &cid("conn-1"))
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_connection(&pk("k"), &cid("never"))
            .await
            .expect("delete")
    );
    assert!(
        s.get_connection(&pk("k"), &cid("conn-1"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(s.get_connection_by_id(c.id).await.expect("get").is_none());
    assert_eq!(s.count_connections().await.expect("count"), 1);
    let list = s
        .list_connections(&ConnectionFilter::default())
        .await
        .expect("list");
    assert_eq!(ids(&list), ["conn-2"]);
    // Writes to a deleted connection do nothing.
    assert!(
        s.save_refreshed(c.id, c.version, &creds("x", None, None), Utc::now())
            .await
            .expect("cas")
            .is_none()
    );
    assert!(
        !s.patch_connection(&pk("k"), &cid("conn-1"), ConnectionPatch::default())
            .await
            .expect("patch")
    );
    assert!(matches!(
        s.set_metadata(&pk("k"), &[cid("conn-1")], &json!({}), false).await,
        Err(Error::MissingConnection(id)) if id == "conn-1"
    ));

    // Re-create with the same id: a new connection, fresh version and metadata.
    let mut again = new_connection("k", "conn-1");
    again.credentials = creds("at-new", None, None);
    let (c2, created) = s.upsert_connection(again).await.expect("re-create");
    assert!(created);
    assert_ne!(c2.id, c.id);
    assert_eq!(c2.version, 1);
    assert_eq!(c2.metadata, json!({}));
    let got = s
        .get_connection(&pk("k"), &cid("conn-1"))
        .await
        .expect("get")
        .expect("live");
    assert_eq!(got.id, c2.id);
    assert!(got.credentials.access_token.ct_eq("at-new"));
    assert!(
        s.delete_connection(&pk("k"), &cid("conn-1"))
            .await
            .expect("delete again")
    );
}

async fn metadata(db: &TestDb) {
    let s = store(db).await;
    for id in ["m1", "m2", "m3"] {
        s.upsert_connection(new_connection("k", id))
            .await
            .expect("create");
    }
    let k = pk("k");
    let get = |id: &'static str| {
        let s = s.clone();
        async move {
            s.get_connection(&pk("k"), &cid(id))
                .await
                .expect("get")
                .expect("live")
                .metadata
        }
    };
    s.set_metadata(
        &k,
        &[cid("m1"), cid("m2")],
        &json!({"a": {"x": 1}, "b": 2}),
        false,
    )
    .await
    .expect("replace");
    assert_eq!(get("m1").await, json!({"a": {"x": 1}, "b": 2}));
    assert_eq!(get("m2").await, json!({"a": {"x": 1}, "b": 2}));
    assert_eq!(get("m3").await, json!({}));
    // Merge is shallow: top-level keys replaced, others kept.
    s.set_metadata(&k, &[cid("m1")], &json!({"a": {"y": 2}, "c": null}), true)
        .await
        .expect("merge");
    assert_eq!(get("m1").await, json!({"a": {"y": 2}, "b": 2, "c": null}));
    // Replace drops everything else.
    s.set_metadata(&k, &[cid("m2")], &json!({"only": "this"}), false)
        .await
        .expect("replace");
    assert_eq!(get("m2").await, json!({"only": "this"}));
    // Merge into the empty default.
    s.set_metadata(&k, &[cid("m3")], &json!({"z": 26}), true)
        .await
        .expect("merge");
    assert_eq!(get("m3").await, json!({"z": 26}));

    // All or nothing: a missing id anywhere in the list writes nothing.
    for merge in [false, true] {
        let err = s
            .set_metadata(
                &k,
                &[cid("m1"), cid("missing"), cid("m2")],
                &json!({"bad": 1}),
                merge,
            )
            .await
            .expect_err("missing id");
        assert!(
            matches!(&err, Error::MissingConnection(id) if id == "missing"),
            "{err:?}"
        );
        assert_eq!(get("m1").await, json!({"a": {"y": 2}, "b": 2, "c": null}));
        assert_eq!(get("m2").await, json!({"only": "this"}));
    }
    // Another integration's connection counts as missing.
    s.upsert_connection(new_connection("other", "o1"))
        .await
        .expect("create");
    assert!(matches!(
        s.set_metadata(&k, &[cid("o1")], &json!({}), false).await,
        Err(Error::MissingConnection(_))
    ));
    // Metadata writes do not bump the credentials version.
    let c = s
        .get_connection(&k, &cid("m1"))
        .await
        .expect("get")
        .expect("live");
    assert_eq!(c.version, 1);
}

async fn patch(db: &TestDb) {
    let s = store(db).await;
    let mut n = new_connection("k", "p1");
    n.tags = tags(&[("a", "1")]);
    n.webhook_url_override = Some("https://hooks.example/p".into());
    s.upsert_connection(n).await.expect("create");
    let (k, id) = (pk("k"), cid("p1"));

    // Empty patch changes nothing.
    assert!(
        s.patch_connection(&k, &id, ConnectionPatch::default())
            .await
            .expect("patch")
    );
    let c = s.get_connection(&k, &id).await.expect("get").expect("live");
    assert_eq!(c.tags, tags(&[("a", "1")]));
    assert_eq!(c.end_user.as_ref().map(|e| e.id.as_str()), Some("user-p1"));
    assert_eq!(
        c.webhook_url_override.as_deref(),
        Some("https://hooks.example/p")
    );

    let eu = end_user(
        "new-user",
        Some("New@Example.com"),
        Some("Ñew Üser"),
        Some("org-9"),
    );
    let p = ConnectionPatch {
        end_user: Some(eu.clone()),
        tags: Some(tags(&[("b", "2")])),
        webhook_url_override: Some(None),
    };
    assert!(s.patch_connection(&k, &id, p).await.expect("patch"));
    let c = s.get_connection(&k, &id).await.expect("get").expect("live");
    assert_eq!(c.end_user, Some(eu));
    assert_eq!(c.tags, tags(&[("b", "2")]));
    assert_eq!(c.webhook_url_override, None);
    assert_eq!(c.version, 1, "a patch is not a credentials write");
    // The extracted end-user columns follow the patch.
    let by = |f: ConnectionFilter| {
        let s = s.clone();
        async move { s.list_connections(&f).await.expect("list").len() }
    };
    assert_eq!(
        by(ConnectionFilter {
            end_user_id: Some("new-user".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(ConnectionFilter {
            end_user_id: Some("user-p1".into()),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        by(ConnectionFilter {
            end_user_organization_id: Some("org-9".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(ConnectionFilter {
            search: Some("new@example".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(ConnectionFilter {
            search: Some("ñew ü".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(ConnectionFilter {
            tags: tags(&[("b", "2")]),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(ConnectionFilter {
            tags: tags(&[("a", "1")]),
            ..Default::default()
        })
        .await,
        0
    );

    // Setting the override again.
    let p = ConnectionPatch {
        webhook_url_override: Some(Some("https://hooks.example/q".into())),
        ..Default::default()
    };
    assert!(s.patch_connection(&k, &id, p).await.expect("patch"));
    let c = s.get_connection(&k, &id).await.expect("get").expect("live");
    assert_eq!(
        c.webhook_url_override.as_deref(),
        Some("https://hooks.example/q")
    );
    assert_eq!(c.tags, tags(&[("b", "2")]), "tags untouched");

    assert!(
        !s.patch_connection(&k, &cid("missing"), ConnectionPatch::default())
            .await
            .expect("patch")
    );
    assert!(
        !s.patch_connection(&pk("other"), &id, ConnectionPatch::default())
            .await
            .expect("patch")
    );
}

async fn refresh_cas(db: &TestDb) {
    let s = store(db).await;
    let (c, _) = s
        .upsert_connection(new_connection("k", "r1"))
        .await
        .expect("create");
    s.set_auth_failure(c.id, Some(&failure()))
        .await
        .expect("fail");
    let failed = s
        .get_connection_by_id(c.id)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(failed.auth_failure, Some(failure()));
    assert_eq!(
        failed.version, 1,
        "recording a failure is not a credentials write"
    );

    let at = DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("valid timestamp");
    let exp = DateTime::from_timestamp(1_800_003_600, 0).expect("valid timestamp");
    let refreshed = s
        .save_refreshed(
            c.id,
            1,
            &creds("at-refreshed", Some("rt-refreshed"), Some(exp)),
            at,
        )
        .await
        .expect("cas")
        .expect("version matched");
    assert_eq!(refreshed.version, 2);
    assert_eq!(refreshed.last_refreshed_at, Some(at));
    assert!(refreshed.auth_failure.is_none());
    assert!(refreshed.credentials.access_token.ct_eq("at-refreshed"));
    assert_eq!(refreshed.credentials.expires_at, Some(exp));
    assert_eq!(refreshed.created_at, c.created_at);
    // The stale version loses and writes nothing.
    let stale = s
        .save_refreshed(c.id, 1, &creds("at-stale", None, None), at)
        .await
        .expect("cas");
    assert!(stale.is_none());
    let now = s
        .get_connection_by_id(c.id)
        .await
        .expect("get")
        .expect("live");
    assert!(now.credentials.access_token.ct_eq("at-refreshed"));
    assert_eq!(now.version, 2);
    assert!(
        s.save_refreshed(c.id + 1000, 1, &creds("x", None, None), at)
            .await
            .expect("cas")
            .is_none()
    );

    // Concurrent refreshes from the same version: exactly one wins.
    let racers = (0..4).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.save_refreshed(
                c.id,
                2,
                &creds(&format!("at-race-{i}"), None, None),
                Utc::now(),
            )
            .await
            .expect("cas")
        })
    });
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.expect("join").is_some());
    }
    assert_eq!(winners, 1);
    assert_eq!(
        s.get_connection_by_id(c.id)
            .await
            .expect("get")
            .expect("live")
            .version,
        3
    );

    // Clearing a failure; last_fetched_at.
    s.set_auth_failure(c.id, Some(&failure()))
        .await
        .expect("fail");
    s.set_auth_failure(c.id, None).await.expect("clear");
    let fetched_at = DateTime::from_timestamp(1_800_000_100, 5_000).expect("valid timestamp");
    s.note_fetched(c.id, fetched_at);
    assert_eq!(s.flush_fetched().await.expect("flush"), 1);
    let c = s
        .get_connection_by_id(c.id)
        .await
        .expect("get")
        .expect("live");
    assert!(c.auth_failure.is_none());
    assert_eq!(c.last_fetched_at, Some(fetched_at));
    assert_eq!(c.version, 3);
}

/// (key, connection id, end user (id, email, display name, organization), tags)
type Row = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str, &'static str, &'static str)>,
    &'static [(&'static str, &'static str)],
);

async fn list_filters(db: &TestDb) {
    let s = store(db).await;
    let rows: [Row; 6] = [
        (
            "od",
            "Alpha-1",
            Some(("u-1", "ann@contoso.com", "Ann Smith", "org-a")),
            &[("env", "prod"), ("team", "x")],
        ),
        (
            "od",
            "beta-2",
            Some(("u-2", "bob@fabrikam.com", "Bob Jones", "org-b")),
            &[("env", "dev")],
        ),
        (
            "sp",
            "gamma-3",
            Some(("u-1", "ann@contoso.com", "Ann Smith", "org-a")),
            &[("env", "prod")],
        ),
        ("sp", "delta_4", None, &[]),
        (
            "od",
            "epsilon-5",
            Some(("U-5", "eve@contoso.com", "Ève Martin", "org-a")),
            &[("env", "prod"), ("team", "y")],
        ),
        (
            "gr",
            "zeta-6",
            Some(("u-6", "zed@example.org", "Zed", "org-c")),
            &[("team", "x")],
        ),
    ];
    for (key, id, eu, t) in rows {
        let mut n = new_connection(key, id);
        n.end_user = eu.map(|(i, e, d, o)| end_user(i, Some(e), Some(d), Some(o)));
        n.tags = tags(t);
        s.upsert_connection(n).await.expect("create");
    }
    // A deleted one, never listed.
    let mut gone = new_connection("od", "deleted-7");
    gone.tags = tags(&[("env", "prod")]);
    s.upsert_connection(gone).await.expect("create");
    s.delete_connection(&pk("od"), &cid("deleted-7"))
        .await
        .expect("delete");
    // Overwriting does not move a connection in the order (created_at is kept).
    s.upsert_connection(NewConnection {
        end_user: Some(end_user(
            "u-2",
            Some("bob@fabrikam.com"),
            Some("Bob Jones"),
            Some("org-b"),
        )),
        tags: tags(&[("env", "dev")]),
        ..new_connection("od", "beta-2")
    })
    .await
    .expect("overwrite");

    let list = |f: ConnectionFilter| {
        let s = s.clone();
        async move {
            s.list_connections(&f)
                .await
                .expect("list")
                .iter()
                .map(|c| c.connection_id.to_string())
                .collect::<Vec<_>>()
        }
    };
    let all = [
        "zeta-6",
        "epsilon-5",
        "delta_4",
        "gamma-3",
        "beta-2",
        "Alpha-1",
    ];
    assert_eq!(list(ConnectionFilter::default()).await, all, "newest first");

    assert_eq!(
        list(ConnectionFilter {
            connection_id: Some("beta-2".into()),
            ..Default::default()
        })
        .await,
        ["beta-2"]
    );
    assert!(
        list(ConnectionFilter {
            connection_id: Some("beta".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        list(ConnectionFilter {
            connection_id: Some("deleted-7".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    let search = |q: &str| ConnectionFilter {
        search: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(
        list(search("ALPHA")).await,
        ["Alpha-1"],
        "connection id, case-insensitive"
    );
    assert_eq!(
        list(search("contoso")).await,
        ["epsilon-5", "gamma-3", "Alpha-1"],
        "email"
    );
    assert_eq!(list(search("bob j")).await, ["beta-2"], "display name");
    assert_eq!(
        list(search("ève")).await,
        ["epsilon-5"],
        "non-ASCII display name"
    );
    assert_eq!(
        list(search("ÈVE MAR")).await,
        ["epsilon-5"],
        "non-ASCII, case-insensitive"
    );
    assert_eq!(list(search("u-5")).await, ["epsilon-5"], "end user id");
    assert_eq!(
        list(search("_")).await,
        ["delta_4"],
        "LIKE wildcards are literal"
    );
    assert_eq!(list(search("a_4")).await, ["delta_4"]);
    assert!(list(search("%")).await.is_empty());
    assert!(list(search("nobody")).await.is_empty());

    let eu = |id: &str| ConnectionFilter {
        end_user_id: Some(id.into()),
        ..Default::default()
    };
    assert_eq!(list(eu("u-1")).await, ["gamma-3", "Alpha-1"]);
    assert!(list(eu("U-1")).await.is_empty(), "end user id is exact");
    let org = |id: &str| ConnectionFilter {
        end_user_organization_id: Some(id.into()),
        ..Default::default()
    };
    assert_eq!(
        list(org("org-a")).await,
        ["epsilon-5", "gamma-3", "Alpha-1"]
    );
    assert!(list(org("org-z")).await.is_empty());

    let keys = |k: &[&str]| ConnectionFilter {
        integration_keys: k.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(list(keys(&["sp"])).await, ["delta_4", "gamma-3"]);
    assert_eq!(
        list(keys(&["sp", "gr"])).await,
        ["zeta-6", "delta_4", "gamma-3"]
    );
    assert!(list(keys(&["none"])).await.is_empty());

    let t = |p: &[(&str, &str)]| ConnectionFilter {
        tags: tags(p),
        ..Default::default()
    };
    assert_eq!(
        list(t(&[("env", "prod")])).await,
        ["epsilon-5", "gamma-3", "Alpha-1"]
    );
    assert_eq!(
        list(t(&[("env", "prod"), ("team", "x")])).await,
        ["Alpha-1"],
        "every pair must match"
    );
    assert_eq!(list(t(&[("team", "x")])).await, ["zeta-6", "Alpha-1"]);
    assert!(list(t(&[("env", "staging")])).await.is_empty());
    assert!(list(t(&[("prod", "env")])).await.is_empty());

    // Combined filters.
    let f = ConnectionFilter {
        search: Some("contoso".into()),
        integration_keys: vec!["od".into()],
        tags: tags(&[("env", "prod")]),
        end_user_organization_id: Some("org-a".into()),
        ..Default::default()
    };
    assert_eq!(list(f).await, ["epsilon-5", "Alpha-1"]);

    // Paging.
    let page = |limit: u32, offset: u64| ConnectionFilter {
        limit,
        offset,
        ..Default::default()
    };
    assert_eq!(list(page(2, 0)).await, all[..2]);
    assert_eq!(list(page(2, 2)).await, all[2..4]);
    assert_eq!(list(page(4, 4)).await, all[4..]);
    assert!(list(page(2, 6)).await.is_empty());
    assert!(list(page(2, u64::MAX)).await.is_empty());
    assert_eq!(list(page(0, 0)).await, all, "limit 0 means the default");
    assert_eq!(list(page(0, 5)).await, all[5..]);
    let f = ConnectionFilter {
        limit: 1,
        offset: 1,
        tags: tags(&[("env", "prod")]),
        ..Default::default()
    };
    assert_eq!(list(f).await, ["gamma-3"]);

    assert_eq!(s.count_connections().await.expect("count"), 6);
}

/// Secrets are ciphertext in the database: read the raw columns through a second connection (and,
/// for SQLite, the file bytes) and look for the plaintext.
async fn encrypted_at_rest(db: &TestDb) {
    if !db.kind().is_persistent() {
        return; // a second connection cannot see an in-memory database
    }
    let key = Cipher::generate_key();
    let c = cipher(&key, &[]);
    let key_id = c.current_key_id().to_owned();
    let s = open(db, c).await;
    let secret = "CLIENT-SECRET-PLAINTEXT-d41d8cd9";
    let access = "ACCESS-TOKEN-PLAINTEXT-8f00b204";
    let refresh = "REFRESH-TOKEN-PLAINTEXT-e9800998";
    let verifier = "CODE-VERIFIER-PLAINTEXT-ecf8427e";
    let mut i = new_integration("one-drive");
    i.client_secret = ClientSecret::new(secret);
    s.create_integration(i).await.expect("create");
    let mut n = new_connection("one-drive", "c1");
    n.credentials = creds(access, Some(refresh), Some(soon()));
    s.upsert_connection(n).await.expect("create");
    let mut f = flow("st-1", Utc::now() + Duration::minutes(5));
    f.code_verifier = CodeVerifier::new(verifier);
    s.put_oauth_flow(f).await.expect("put");

    let plaintexts = [secret, access, refresh, verifier];
    let raw: Vec<(Vec<u8>, String)> = match db.kind() {
        DbKind::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.expect("raw connect");
            let mut out = Vec::new();
            for sql in [
                "SELECT client_secret, client_secret_key_id FROM integrations",
                "SELECT credentials, credentials_key_id FROM connections",
                "SELECT code_verifier, code_verifier_key_id FROM oauth_flows",
            ] {
                let row: (Vec<u8>, String) = sqlx::query_as(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("raw read");
                out.push(row);
            }
            // Every column of every row, as text.
            for sql in [
                "SELECT t::text FROM integrations t",
                "SELECT t::text FROM connections t",
                "SELECT t::text FROM oauth_flows t",
            ] {
                let rows: Vec<(String,)> = sqlx::query_as(sql)
                    .fetch_all(&pool)
                    .await
                    .expect("raw read");
                for (text,) in rows {
                    for p in plaintexts {
                        assert!(!text.contains(p), "plaintext secret in a row");
                    }
                }
            }
            pool.close().await;
            out
        }
        _ => {
            let pool = sqlx::SqlitePool::connect(db.url())
                .await
                .expect("raw connect");
            let mut out = Vec::new();
            for sql in [
                "SELECT client_secret, client_secret_key_id FROM integrations",
                "SELECT credentials, credentials_key_id FROM connections",
                "SELECT code_verifier, code_verifier_key_id FROM oauth_flows",
            ] {
                let row: (Vec<u8>, String) = sqlx::query_as(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("raw read");
                out.push(row);
            }
            pool.close().await;
            // The files themselves (database, WAL) hold no plaintext either.
            let dir = db.sqlite_dir().expect("file database");
            for entry in std::fs::read_dir(dir).expect("read dir") {
                let bytes = std::fs::read(entry.expect("entry").path()).expect("read file");
                for p in plaintexts {
                    assert!(
                        !contains(&bytes, p.as_bytes()),
                        "plaintext secret in a database file"
                    );
                }
            }
            out
        }
    };
    assert_eq!(raw.len(), 3);
    for (bytes, kid) in &raw {
        assert_eq!(kid, &key_id, "key id stored beside the ciphertext");
        assert!(bytes.len() > 28, "nonce + tag + ciphertext");
        for p in plaintexts {
            assert!(!contains(bytes, p.as_bytes()));
        }
    }

    // A store with a different key cannot open them: a crypto error, not garbage.
    let stranger = open(db, cipher(&Cipher::generate_key(), &[])).await;
    assert!(matches!(
        stranger.get_integration(&pk("one-drive")).await,
        Err(Error::Crypto(_))
    ));
    assert!(matches!(
        stranger.get_connection(&pk("one-drive"), &cid("c1")).await,
        Err(Error::Crypto(_))
    ));
    assert!(matches!(
        stranger.take_oauth_flow("st-1").await,
        Err(Error::Crypto(_))
    ));
    // Error messages carry no secrets.
    let err = stranger
        .get_connection(&pk("one-drive"), &cid("c1"))
        .await
        .expect_err("crypto");
    let shown = format!("{err} {err:?}");
    for p in plaintexts {
        assert!(!shown.contains(p));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Data sealed with an old key opens once that key is configured as old; new writes use the
/// current key.
async fn key_rotation(db: &TestDb) {
    if !db.kind().is_persistent() {
        return; // rotation means reopening the same database
    }
    let old = Cipher::generate_key();
    let s = open(db, cipher(&old, &[])).await;
    s.create_integration(new_integration("one-drive"))
        .await
        .expect("create");
    let (c, _) = s
        .upsert_connection(new_connection("one-drive", "c1"))
        .await
        .expect("create");
    s.upsert_connection(new_connection("one-drive", "c2"))
        .await
        .expect("create");
    s.put_oauth_flow(flow("st-1", Utc::now() + Duration::minutes(5)))
        .await
        .expect("put");
    drop(s);

    let new = Cipher::generate_key();
    let new_only = open(db, cipher(&new, &[])).await;
    assert!(matches!(
        new_only.get_connection(&pk("one-drive"), &cid("c1")).await,
        Err(Error::Crypto(_))
    ));

    let rotated = open(db, cipher(&new, &[old.as_str()])).await;
    let i = rotated
        .get_integration(&pk("one-drive"))
        .await
        .expect("opens")
        .expect("exists");
    assert!(i.client_secret.ct_eq("one-drive-client-secret"));
    let got = rotated
        .get_connection(&pk("one-drive"), &cid("c1"))
        .await
        .expect("opens")
        .expect("live");
    assert!(got.credentials.access_token.ct_eq("at-c1"));
    assert_eq!(
        rotated
            .list_connections(&ConnectionFilter::default())
            .await
            .expect("opens")
            .len(),
        2
    );
    let f = rotated
        .take_oauth_flow("st-1")
        .await
        .expect("opens")
        .expect("exists");
    assert!(f.code_verifier.ct_eq("verifier-st-1"));

    // Rewriting seals with the new key: then the new key alone opens it.
    rotated
        .save_refreshed(
            c.id,
            c.version,
            &creds("at-rotated", None, None),
            Utc::now(),
        )
        .await
        .expect("cas")
        .expect("version matched");
    let got = new_only
        .get_connection(&pk("one-drive"), &cid("c1"))
        .await
        .expect("new key")
        .expect("live");
    assert!(got.credentials.access_token.ct_eq("at-rotated"));
    // c2 is still under the old key.
    assert!(matches!(
        new_only.get_connection(&pk("one-drive"), &cid("c2")).await,
        Err(Error::Crypto(_))
    ));
}

// ---- change feed (sync_drives, sync_records) ----

fn upsert_change(id: &str, etag: &str) -> RecordChange {
    RecordChange::Upsert {
        record_id: id.into(),
        payload: format!(r#"{{"id":"{id}","etag":"{etag}"}}"#),
        version_key: etag.into(),
        path: format!("/{id}"),
        is_folder: false,
    }
}

/// A record at `path` as the feed writes it (payload with `path`, version key `etag␟path`).
fn at_path(id: &str, path: &str, is_folder: bool) -> RecordChange {
    RecordChange::Upsert {
        record_id: id.into(),
        payload: serde_json::json!({"id": id, "path": path}).to_string(),
        version_key: format!("1\u{1f}{path}"),
        path: path.into(),
        is_folder,
    }
}

fn records_query(connection_id: i64, after: i64) -> RecordsQuery<'static> {
    RecordsQuery {
        connection_id,
        model: "OneDriveFile",
        after_cursor: after,
        modified_after: None,
        actions: [true; 3],
        ids_json: None,
        limit: 100,
    }
}

/// A store with connection `c1` of `one-drive` and its sync drive (`me`, `OneDriveFile`), made
/// at the returned time.
async fn sync_drive_fixture(
    db: &TestDb,
) -> (Store, grantd::model::Connection, SyncDrive, DateTime<Utc>) {
    let s = store(db).await;
    s.create_integration(new_integration("one-drive"))
        .await
        .unwrap();
    let (conn, _) = s
        .upsert_connection(new_connection("one-drive", "c1"))
        .await
        .unwrap();
    let now = Utc::now();
    let drive = s
        .ensure_sync_drive(conn.id, "me", "OneDriveFile", now)
        .await
        .unwrap();
    (s, conn, drive, now)
}

/// A page of `changes` for the fixture's drive (Graph drive `d1`), written under `lease`.
fn sync_page<'a>(
    drive: &SyncDrive,
    lease: DateTime<Utc>,
    changes: &'a [RecordChange],
    next_link: &'a str,
    final_page: bool,
    at: DateTime<Utc>,
) -> SyncPage<'a> {
    SyncPage {
        drive: drive.id,
        lease_until: lease,
        connection_id: drive.connection_id,
        model: "OneDriveFile",
        drive_id: Some("d1"),
        changes,
        next_link,
        final_page,
        at,
    }
}

async fn sync_feed(db: &TestDb) {
    let (s, conn, drive, now) = sync_drive_fixture(db).await;
    assert_eq!(
        drive,
        s.ensure_sync_drive(conn.id, "me", "OneDriveFile", now)
            .await
            .unwrap()
    );
    assert!(drive.next_link.is_none() && !drive.paused && drive.lease_until.is_none());

    // The lease: one holder at a time; an expired lease can be taken over.
    let lease = now + Duration::minutes(5);
    let held = s
        .lease_sync_drive(drive.id, now, lease)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        held.lease_until.map(|t| t.timestamp()),
        Some(lease.timestamp())
    );
    assert!(
        s.lease_sync_drive(drive.id, now, lease)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    s.request_sync_run(drive.id, false).await.unwrap();
    let gen1 = s
        .begin_resync(drive.id, lease, "https://graph/delta")
        .await
        .unwrap();
    assert_eq!(gen1, Some(1));
    // A stale lease writes nothing (fencing).
    assert_eq!(s.begin_resync(drive.id, now, "x").await.unwrap(), None);

    let no_hook = |_: PageCounts| None;
    let page = |changes, link, last, at| sync_page(&drive, lease, changes, link, last, at);
    let first = [
        upsert_change("a", "1"),
        upsert_change("b", "1"),
        upsert_change("c", "1"),
    ];
    let hooked = |c: PageCounts| Some(("http://app/hook".to_owned(), format!("{}", c.added)));
    let counts = s
        .commit_sync_page(&page(&first, "next-1", true, now), &hooked)
        .await
        .unwrap();
    assert_eq!(
        counts,
        Some(PageCounts {
            added: 3,
            updated: 0,
            deleted: 0
        })
    );
    assert_eq!(
        s.webhook_counts().await.unwrap().0,
        1,
        "the sync webhook is queued with the page"
    );
    let rows = s
        .list_sync_records(&records_query(conn.id, 0))
        .await
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(rows.windows(2).all(|w| w[0].cursor_seq < w[1].cursor_seq));
    assert!(
        rows.iter()
            .all(|r| r.last_action == "ADDED" && r.deleted_at.is_none())
    );
    assert_eq!(
        rows[0].payload, r#"{"id":"a","etag":"1"}"#,
        "payload text is kept as is"
    );
    let after = rows[2].cursor_seq;

    // Repeats change nothing; a change takes a new cursor; a tombstone deletes.
    let second = [
        upsert_change("a", "1"),
        upsert_change("b", "2"),
        RecordChange::Delete {
            record_id: "c".into(),
        },
        RecordChange::Delete {
            record_id: "never-seen".into(),
        },
    ];
    let later = now + Duration::seconds(1);
    let counts = s
        .commit_sync_page(&page(&second, "next-2", true, later), &no_hook)
        .await
        .unwrap();
    assert_eq!(
        counts,
        Some(PageCounts {
            added: 0,
            updated: 1,
            deleted: 1
        })
    );
    let rows = s
        .list_sync_records(&records_query(conn.id, after))
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.record_id.as_str(), r.last_action.as_str()))
        .collect();
    assert_eq!(got, [("b", "UPDATED"), ("c", "DELETED")]);
    assert!(rows[1].deleted_at.is_some());
    assert_eq!(
        s.count_sync_records(conn.id, "OneDriveFile").await.unwrap(),
        2
    );

    // Filters: actions, ids, modified_after, limit.
    let mut q = records_query(conn.id, 0);
    q.actions = [false, false, true];
    let del = s.list_sync_records(&q).await.unwrap();
    assert_eq!(
        del.iter().map(|r| r.record_id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let mut q = records_query(conn.id, 0);
    q.ids_json = Some(r#"["a","c"]"#.into());
    let some = s.list_sync_records(&q).await.unwrap();
    assert_eq!(
        some.iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    let mut q = records_query(conn.id, 0);
    q.modified_after = Some(later);
    assert_eq!(s.list_sync_records(&q).await.unwrap().len(), 2);
    let mut q = records_query(conn.id, 0);
    q.limit = 1;
    assert_eq!(s.list_sync_records(&q).await.unwrap()[0].record_id, "a");

    // A resync that no longer sees `b` deletes it on its last page, and only it; a restored
    // item comes back ADDED.
    assert_eq!(
        s.begin_resync(drive.id, lease, "https://graph/delta")
            .await
            .unwrap(),
        Some(2)
    );
    let resync = [upsert_change("a", "1"), upsert_change("c", "1")];
    let counts = s
        .commit_sync_page(&page(&resync, "next-3", false, later), &no_hook)
        .await
        .unwrap();
    assert_eq!(
        counts,
        Some(PageCounts {
            added: 1,
            updated: 0,
            deleted: 0
        }),
        "c restored, a unchanged"
    );
    let counts = s
        .commit_sync_page(&page(&[], "delta-3", true, later), &no_hook)
        .await
        .unwrap();
    assert_eq!(
        counts,
        Some(PageCounts {
            added: 0,
            updated: 0,
            deleted: 1
        }),
        "b vanished"
    );
    let live: Vec<String> = s
        .list_sync_records(&records_query(conn.id, 0))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.deleted_at.is_none())
        .map(|r| r.record_id)
        .collect();
    assert_eq!(live, ["a", "c"]);
    let state = s.sync_drives(conn.id).await.unwrap().remove(0);
    assert_eq!(state.next_link.as_deref(), Some("delta-3"));
    assert_eq!(state.drive_id.as_deref(), Some("d1"));
    assert!(!state.in_resync);

    // Release reports the coalesced request; pause stops leasing.
    assert!(
        s.release_sync_drive(drive.id, lease, None, later)
            .await
            .unwrap()
    );
    assert!(
        !s.release_sync_drive(drive.id, lease, None, later)
            .await
            .unwrap(),
        "already released"
    );
    s.set_sync_paused(conn.id, true).await.unwrap();
    assert!(
        s.lease_sync_drive(drive.id, later, lease)
            .await
            .unwrap()
            .is_none(),
        "paused"
    );
    s.set_sync_paused(conn.id, false).await.unwrap();
    assert!(
        s.lease_sync_drive(drive.id, later, lease)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.sync_record_payload(conn.id, "OneDriveFile", "a")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.sync_record_payload(conn.id, "OneDriveFile", "b")
            .await
            .unwrap()
            .is_none()
    );

    // The schedule: a live lease is skipped; once released, a drive is due after the poll
    // interval (no subscription), claimed once; a deleted connection's drive is never due.
    let held = s
        .sync_drives(conn.id)
        .await
        .unwrap()
        .remove(0)
        .lease_until
        .unwrap();
    let t = later + Duration::minutes(1);
    let claim = |at: DateTime<Utc>| {
        let s = s.clone();
        async move {
            s.claim_due_sync_drives(
                at,
                at + Duration::minutes(15),
                at - Duration::minutes(5),
                at - Duration::days(1),
                10,
            )
            .await
            .unwrap()
        }
    };
    assert!(claim(t).await.is_empty(), "leased");
    s.release_sync_drive(drive.id, held, None, t).await.unwrap();
    assert!(
        claim(t + Duration::minutes(1)).await.is_empty(),
        "ran a minute ago"
    );
    let due = claim(t + Duration::minutes(6)).await;
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [drive.id]);
    assert!(
        claim(t + Duration::minutes(6)).await.is_empty(),
        "claimed once"
    );
    s.release_sync_drive(drive.id, due[0].lease_until.unwrap(), None, t)
        .await
        .unwrap();
    s.set_sync_subscription(drive.id, Some(("sub-1", t + Duration::days(20))))
        .await
        .unwrap();
    assert_eq!(
        s.sync_drive_by_subscription("sub-1")
            .await
            .unwrap()
            .map(|d| d.id),
        Some(drive.id)
    );
    assert!(
        claim(t + Duration::minutes(6)).await.is_empty(),
        "push works: daily only"
    );
    // The subscriptions-by-state gauge's counts: active until the expiry, expired after.
    assert_eq!(
        s.sync_subscription_states(t).await.unwrap(),
        (1, 0, 0),
        "push"
    );
    assert_eq!(
        s.sync_subscription_states(t + Duration::days(21))
            .await
            .unwrap(),
        (0, 1, 0),
        "expired"
    );
    assert_eq!(
        claim(t + Duration::hours(25)).await.len(),
        1,
        "daily reconciliation"
    );
    let lease = s
        .sync_drives(conn.id)
        .await
        .unwrap()
        .remove(0)
        .lease_until
        .unwrap();
    s.release_sync_drive(drive.id, lease, None, t)
        .await
        .unwrap();
    s.delete_connection(&pk("one-drive"), &cid("c1"))
        .await
        .unwrap();
    assert!(
        claim(t + Duration::days(3)).await.is_empty(),
        "deleted connections are not synced"
    );
    assert_eq!(
        s.sync_subscription_states(t).await.unwrap(),
        (0, 0, 0),
        "deleted connections' drives are not counted"
    );
}

/// A page that stores a folder under another path (renamed or moved) rewrites its stored live
/// descendants of the same watched drive (`commit_sync_page`): payload `path`, version key, a
/// new cursor, `UPDATED`, counted — in batches (more than one here), whatever the folder's name
/// (`%`, `_`, unicode; a sibling sharing the name's prefix is not below it), but not records of
/// another watched drive, deleted ones, nor records of the page itself (their own change wins).
/// A subfolder moved out in the same page takes its subtree with it.
async fn sync_folder_move_rewrites_descendants(db: &TestDb) {
    let s = store(db).await;
    s.create_integration(new_integration("one-drive"))
        .await
        .unwrap();
    let (conn, _) = s
        .upsert_connection(new_connection("one-drive", "c1"))
        .await
        .unwrap();
    let now = Utc::now();
    let lease = now + Duration::minutes(5);
    let mut drives = Vec::new();
    for key in ["me", "other"] {
        let d = s
            .ensure_sync_drive(conn.id, key, "OneDriveFile", now)
            .await
            .unwrap();
        s.lease_sync_drive(d.id, now, lease)
            .await
            .unwrap()
            .expect("free");
        drives.push(d.id);
    }
    let no_hook = |_: PageCounts| None;
    let commit = |drive: i64, changes: Vec<RecordChange>| {
        let s = s.clone();
        async move {
            s.commit_sync_page(
                &SyncPage {
                    drive,
                    lease_until: lease,
                    connection_id: conn.id,
                    model: "OneDriveFile",
                    drive_id: Some("d1"),
                    changes: &changes,
                    next_link: "next",
                    final_page: false,
                    at: now,
                },
                &no_hook,
            )
            .await
            .unwrap()
            .expect("lease held")
        }
    };
    let dir = "/F %_é";
    let mut first = vec![
        at_path("f", dir, true),
        at_path("sub", &format!("{dir}/Sub"), true),
        at_path("moving", &format!("{dir}/Moving"), true),
        at_path("m1", &format!("{dir}/Moving/m1"), false),
        at_path("sibling", &format!("{dir}x/s"), false),
        at_path("gone", &format!("{dir}/gone"), false),
        at_path("in-page", &format!("{dir}/in-page"), false),
    ];
    // More descendants than one read (500).
    first.extend(
        (0..600).map(|n| at_path(&format!("d{n:03}"), &format!("{dir}/Sub/d{n:03}"), false)),
    );
    assert_eq!(commit(drives[0], first).await.added, 607);
    // The same path on the other watched drive.
    commit(
        drives[1],
        vec![at_path("elsewhere", &format!("{dir}/e"), false)],
    )
    .await;
    commit(
        drives[0],
        vec![RecordChange::Delete {
            record_id: "gone".into(),
        }],
    )
    .await;
    let max = s
        .list_sync_records(&RecordsQuery {
            limit: 10_000,
            ..records_query(conn.id, 0)
        })
        .await
        .unwrap()
        .last()
        .unwrap()
        .cursor_seq;

    // `F` renamed to `G ü`; in the same page, `Moving` moves out to the root and `in-page`
    // changes itself (its path is the page's).
    let counts = commit(
        drives[0],
        vec![
            at_path("f", "/G ü", true),
            at_path("moving", "/Moving", true),
            at_path("in-page", "/G ü/in-page", false),
        ],
    )
    .await;
    // f, moving, in-page; sub and its 600; m1.
    assert_eq!(counts.updated, 3 + 601 + 1);
    let changed = s
        .list_sync_records(&RecordsQuery {
            limit: 10_000,
            ..records_query(conn.id, max)
        })
        .await
        .unwrap();
    assert_eq!(changed.len(), 605, "each rewritten record once");
    assert!(changed.iter().all(|r| r.last_action == "UPDATED"));
    let path_of = |id: &str| -> String {
        let r = changed.iter().find(|r| r.record_id == id).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        v["path"].as_str().unwrap().to_owned()
    };
    assert_eq!(path_of("sub"), "/G ü/Sub");
    assert_eq!(path_of("d599"), "/G ü/Sub/d599");
    assert_eq!(path_of("m1"), "/Moving/m1");
    assert_eq!(path_of("in-page"), "/G ü/in-page");
    for untouched in ["sibling", "elsewhere", "gone"] {
        assert!(
            changed.iter().all(|r| r.record_id != untouched),
            "{untouched} is not below the folder"
        );
    }
    // A repeat of the page (same paths) rewrites nothing more.
    let counts = commit(
        drives[0],
        vec![
            at_path("f", "/G ü", true),
            at_path("moving", "/Moving", true),
        ],
    )
    .await;
    assert_eq!(counts, PageCounts::default());
    // The version key follows the path: the next delta report of a descendant is a repeat.
    let counts = commit(drives[0], vec![at_path("d000", "/G ü/Sub/d000", false)]).await;
    assert_eq!(counts, PageCounts::default());
}

/// Pages are written with one statement per kind of write (`commit_sync_page`): a page larger
/// than one upsert batch keeps page order in its cursors, repeats only mark records as seen (a
/// resync then keeps them), and the last change of an id within a page wins.
async fn sync_page_batches(db: &TestDb) {
    let (s, conn, drive, now) = sync_drive_fixture(db).await;
    let lease = now + Duration::minutes(5);
    s.lease_sync_drive(drive.id, now, lease)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        s.begin_resync(drive.id, lease, "https://graph/delta")
            .await
            .unwrap(),
        Some(1)
    );
    let no_hook = |_: PageCounts| None;
    let commit = |changes: Vec<RecordChange>, last: bool| {
        let (s, drive) = (s.clone(), drive.clone());
        async move {
            s.commit_sync_page(
                &sync_page(&drive, lease, &changes, "next", last, now),
                &no_hook,
            )
            .await
            .unwrap()
            .expect("lease held")
        }
    };
    let all = |s: Store| async move {
        let mut q = records_query(conn.id, 0);
        q.limit = 10_000;
        s.list_sync_records(&q).await.unwrap()
    };
    // 600 new records: more than one upsert batch, cursors in page order.
    let ids: Vec<String> = (0..600).map(|n| format!("r{:03}", 599 - n)).collect();
    let counts = commit(ids.iter().map(|id| upsert_change(id, "1")).collect(), false).await;
    assert_eq!(counts.added, 600);
    let rows = all(s.clone()).await;
    assert_eq!(
        rows.iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(),
        ids,
        "cursor order is page order"
    );
    assert!(rows.windows(2).all(|w| w[0].cursor_seq < w[1].cursor_seq));
    let max = rows.last().unwrap().cursor_seq;

    // The next page: 200 repeats, 200 changes, an id twice (its last change counts), a
    // delete of a record and of an unknown id.
    let mut changes: Vec<RecordChange> = Vec::new();
    changes.extend(ids[..200].iter().map(|id| upsert_change(id, "1")));
    changes.extend(ids[200..400].iter().map(|id| upsert_change(id, "2")));
    changes.push(upsert_change(&ids[400], "2"));
    changes.push(upsert_change(&ids[400], "3"));
    changes.push(RecordChange::Delete {
        record_id: ids[401].clone(),
    });
    changes.push(RecordChange::Delete {
        record_id: "unknown".into(),
    });
    let counts = commit(changes, false).await;
    assert_eq!(
        counts,
        PageCounts {
            added: 0,
            updated: 201,
            deleted: 1
        }
    );
    let changed = s
        .list_sync_records(&RecordsQuery {
            limit: 10_000,
            ..records_query(conn.id, max)
        })
        .await
        .unwrap();
    assert_eq!(changed.len(), 202, "repeats take no cursor");
    assert_eq!(changed[200].record_id, ids[400]);
    assert_eq!(
        changed[200].payload,
        format!(r#"{{"id":"{}","etag":"3"}}"#, ids[400])
    );
    assert_eq!(changed[200].last_action, "UPDATED");
    assert_eq!(
        (
            changed[201].record_id.as_str(),
            changed[201].last_action.as_str()
        ),
        (ids[401].as_str(), "DELETED")
    );

    // A full resync sees the 200 repeats (unchanged: only marked as seen) and restores the
    // deleted record; its last page deletes the 399 live records it did not see (ids 200–400,
    // changed on the previous page, and ids 402–599).
    assert_eq!(
        s.begin_resync(drive.id, lease, "https://graph/delta")
            .await
            .unwrap(),
        Some(2)
    );
    let mut changes: Vec<RecordChange> =
        ids[..200].iter().map(|id| upsert_change(id, "1")).collect();
    changes.push(upsert_change(&ids[401], "1"));
    let counts = commit(changes, true).await;
    assert_eq!(
        counts,
        PageCounts {
            added: 1,
            updated: 0,
            deleted: 399
        }
    );
    assert_eq!(
        s.count_sync_records(conn.id, "OneDriveFile").await.unwrap(),
        201
    );
}

// ---- the matrix ----

macro_rules! conformance {
    ($($section:ident),* $(,)?) => {
        mod sqlite_memory {
            $(#[tokio::test]
            async fn $section() {
                let db = crate::support::db::TestDb::sqlite_memory();
                super::$section(&db).await;
            })*
        }
        mod sqlite_file {
            $(#[tokio::test]
            async fn $section() {
                let db = crate::support::db::TestDb::sqlite_file();
                super::$section(&db).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $section() {
                let Some(db) = crate::support::db::TestDb::postgres("PostgreSQL conformance").await
                else {
                    return;
                };
                super::$section(&db).await;
            })*
        }
    };
}

conformance!(
    basics,
    integrations,
    connect_sessions,
    oauth_flows,
    upsert,
    soft_delete,
    metadata,
    patch,
    refresh_cas,
    list_filters,
    encrypted_at_rest,
    key_rotation,
    sync_feed,
    sync_page_batches,
    sync_folder_move_rewrites_descendants,
);

#[tokio::test]
async fn unsupported_url() {
    let c = cipher(&Cipher::generate_key(), &[]);
    assert!(matches!(
        Store::connect("mysql://localhost/x", c).await,
        Err(Error::UnsupportedUrl)
    ));
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created() {
    let db = TestDb::sqlite_file();
    let dir = db.sqlite_dir().expect("dir").join("nested").join("deeper");
    let url = format!("sqlite://{}?mode=rwc", dir.join("x.db").display());
    let s = Store::connect(&url, cipher(&Cipher::generate_key(), &[]))
        .await
        .expect("connect");
    s.ping().await.expect("ping");
    assert!(dir.join("x.db").exists());
}

// ---- migration 0006: tag keys lowercased in existing rows ----

/// Rows written with mixed-case tag keys (as before 0006, which the store still accepts below
/// the API) get their keys lowercased when 0006 runs: it is rolled back in the bookkeeping and
/// the store reopened, so the real migrator applies it to these rows.
async fn tag_keys_lowercased_by_migration(db: &TestDb) {
    let key = Cipher::generate_key();
    let s = open(db, cipher(&key, &[])).await;
    s.create_integration(new_integration("one-drive"))
        .await
        .expect("integration");
    let mut c = new_connection("one-drive", "c1");
    c.tags = tags(&[("Region", "EU"), ("team", "Blue")]);
    c.end_user = Some(EndUser {
        tags: Some(tags(&[("Plan", "Pro")])),
        ..end_user("u-1", None, None, None)
    });
    s.upsert_connection(c).await.expect("connection");
    let mut plain = new_connection("one-drive", "c2");
    plain.tags = tags(&[("lower", "x")]);
    s.upsert_connection(plain).await.expect("connection");
    let now = Utc::now();
    s.create_connect_session(NewConnectSession {
        overrides: serde_json::Value::Null,
        token_hash: "hash-m".into(),
        end_user: Some(EndUser {
            tags: Some(tags(&[("Plan", "Pro")])),
            ..end_user("u-1", None, None, None)
        }),
        organization: None,
        allowed_integrations: None,
        integrations_config_defaults: json!({}),
        reconnect: None,
        tags: tags(&[("OrgId", "Acme")]),
        webhook_url_override: None,
        expires_at: now + Duration::minutes(30),
    })
    .await
    .expect("session");
    drop(s);
    let forget = "DELETE FROM _sqlx_migrations WHERE version = 6";
    if db.kind().is_postgres() {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let s = open(db, cipher(&key, &[])).await;
    let got = s
        .get_connection(&pk("one-drive"), &cid("c1"))
        .await
        .unwrap()
        .expect("live");
    assert_eq!(got.tags, tags(&[("region", "EU"), ("team", "Blue")]));
    assert_eq!(
        got.end_user.unwrap().tags,
        Some(tags(&[("plan", "Pro")])),
        "end user tag keys too; values kept"
    );
    let other = s
        .get_connection(&pk("one-drive"), &cid("c2"))
        .await
        .unwrap()
        .expect("live");
    assert_eq!(other.tags, tags(&[("lower", "x")]));
    let session = s
        .get_connect_session("hash-m", now)
        .await
        .unwrap()
        .expect("session");
    assert_eq!(session.tags, tags(&[("orgid", "Acme")]));
    assert_eq!(
        session.end_user.unwrap().tags,
        Some(tags(&[("plan", "Pro")]))
    );
}

#[tokio::test]
async fn tag_keys_lowercased_by_migration_on_sqlite() {
    tag_keys_lowercased_by_migration(&TestDb::sqlite_file()).await;
}

#[tokio::test]
async fn tag_keys_lowercased_by_migration_on_postgres() {
    let Some(db) = TestDb::postgres("migration 0006").await else {
        return;
    };
    tag_keys_lowercased_by_migration(&db).await;
}
