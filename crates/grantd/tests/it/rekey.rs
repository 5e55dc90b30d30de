//! `Store::reseal_all` (key rotation at rest) on SQLite and PostgreSQL: every sealed value moves
//! to the current key, a value written concurrently is not overwritten, and afterwards the new
//! key alone opens everything; and the `grantd keys generate|rotate` commands.

use std::collections::BTreeMap;

use chrono::Utc;
use grantd::crypto::Cipher;
use grantd::model::{
    AccessToken, ClientSecret, ConnectionId, Credentials, NewConnection, NewIntegration,
    ProviderConfigKey, RefreshToken, Tags,
};
use grantd::store::Store;
use serde_json::json;

use secrecy::ExposeSecret;

use crate::cli::{grantd_env, ok};
use crate::support::app::{SECRET, TestApp};
use crate::support::db::{DbKind, TestDb};

fn creds(n: usize) -> Credentials {
    Credentials {
        access_token: AccessToken::new(format!("at-{n}")),
        refresh_token: Some(RefreshToken::new(format!("rt-{n}"))),
        expires_at: Some(Utc::now()),
        raw: json!({}),
        sharepoint: None,
    }
}

async fn rekey(kind: DbKind) {
    let Some(db) = TestDb::new(kind, "key rotation").await else {
        return;
    };
    let (a, b) = (Cipher::generate_key(), Cipher::generate_key());
    let old = Store::connect(db.url(), Cipher::new(&a, &[]).unwrap())
        .await
        .unwrap();
    let key = ProviderConfigKey::parse("one-drive").unwrap();
    old.create_integration(NewIntegration {
        unique_key: key.clone(),
        provider: "one-drive".into(),
        display_name: None,
        client_id: "cid".into(),
        client_secret: ClientSecret::new("the-secret"),
        scopes: vec![],
        forward_webhooks: false,
        integration_config: BTreeMap::new(),
    })
    .await
    .unwrap();
    // More than one batch of connections.
    for n in 0..450 {
        old.upsert_connection(NewConnection {
            connection_id: ConnectionId::parse(&format!("c-{n}")).unwrap(),
            provider_config_key: key.clone(),
            provider: "one-drive".into(),
            credentials: creds(n),
            connection_config: json!({}),
            metadata: None,
            end_user: None,
            tags: Tags::new(),
            webhook_url_override: None,
        })
        .await
        .unwrap();
    }
    let a_id = Cipher::new(&a, &[]).unwrap().current_key_id().to_owned();
    assert_eq!(
        old.sealed_key_ids().await.unwrap(),
        vec![(a_id.clone(), 451)]
    );

    let rotating = Store::connect(db.url(), Cipher::new(&b, std::slice::from_ref(&a)).unwrap())
        .await
        .unwrap();
    let report = rotating.reseal_all().await.unwrap();
    assert_eq!((report.resealed, report.remaining), (451, 0));
    let b_id = report.current_key_id.clone();
    assert_ne!(a_id, b_id);
    assert_eq!(
        rotating.sealed_key_ids().await.unwrap(),
        vec![(b_id.clone(), 451)]
    );
    // A second run finds nothing to do.
    assert_eq!(rotating.reseal_all().await.unwrap().resealed, 0);

    let only_b = Store::connect(db.url(), Cipher::new(&b, &[]).unwrap())
        .await
        .unwrap();
    let i = only_b.get_integration(&key).await.unwrap().unwrap();
    assert_eq!(i.client_secret.expose_secret(), "the-secret");
    let c = only_b
        .get_connection(&key, &ConnectionId::parse("c-449").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.credentials.access_token.expose_secret(), "at-449");
    // The old key alone no longer opens anything.
    let only_a = Store::connect(db.url(), Cipher::new(&a, &[]).unwrap())
        .await
        .unwrap();
    assert!(only_a.get_integration(&key).await.is_err());
}

#[tokio::test]
async fn reseal_all_sqlite() {
    rekey(DbKind::SqliteFile).await;
}

#[tokio::test]
async fn reseal_all_postgres() {
    rekey(DbKind::Postgres).await;
}

#[tokio::test]
async fn keys_generate_and_rotate() {
    let app = TestApp::spawn().await;
    app.create_integration("one-drive", "offline_access,User.Read")
        .await;
    let id = app
        .connect("one-drive", "u-1", "adele@contoso.onmicrosoft.com")
        .await;

    let new_key = ok(&grantd_env(&[], &["keys", "generate"]).await)
        .trim()
        .to_owned();
    assert!(Cipher::new(&new_key, &[]).is_ok(), "{new_key}");
    let old_key = app
        .state
        .core
        .config
        .encryption_key
        .expose_secret()
        .to_owned();

    // grantd keeps serving with the old key while the rotation runs; then the new key alone reads
    // everything.
    let out = grantd_env(
        &[
            ("GRANTD_SECRET_KEY", SECRET),
            ("GRANTD_DATABASE_URL", app.db.url()),
            ("GRANTD_ENCRYPTION_KEY", &new_key),
            ("GRANTD_ENCRYPTION_KEYS_OLD", &old_key),
        ],
        &["keys", "rotate"],
    )
    .await;
    let text = ok(&out);
    assert!(text.contains("re-encrypted 2 value(s)"), "{text}");
    assert!(
        text.contains("every value is under the current key"),
        "{text}"
    );
    assert!(
        !text.contains(&new_key)
            && !out.stderr.contains(&new_key)
            && !out.stderr.contains(&old_key)
    );

    let only_new = Store::connect(app.db.url(), Cipher::new(&new_key, &[]).unwrap())
        .await
        .unwrap();
    let key = ProviderConfigKey::parse("one-drive").unwrap();
    assert!(only_new.get_integration(&key).await.unwrap().is_some());
    let c = only_new
        .get_connection(&key, &ConnectionId::parse(&id).unwrap())
        .await
        .unwrap()
        .expect("connection readable with the new key alone");
    assert!(c.credentials.refresh_token.is_some());

    // A wrong old key: the command fails and says why, without printing keys.
    let out = grantd_env(
        &[
            ("GRANTD_SECRET_KEY", SECRET),
            ("GRANTD_DATABASE_URL", app.db.url()),
            ("GRANTD_ENCRYPTION_KEY", &Cipher::generate_key()),
        ],
        &["keys", "rotate"],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("decrypted"), "{}", out.stderr);
}
