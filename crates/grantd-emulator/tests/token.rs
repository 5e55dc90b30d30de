//! Token endpoint over real HTTP: code redemption, refresh rotation and its failure modes,
//! other resources (SharePoint), client authentication errors, discovery + JWKS verification.

mod common;

use base64::Engine as _;
use common::*;
use grantd_emulator::control::NewSecret;
use grantd_emulator::seed::*;
use grantd_emulator::tokens::{Audience, BearerError, validate_bearer};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const SCOPE: &str = "openid profile email offline_access User.Read Files.Read";

#[tokio::test]
async fn code_redemption_returns_microsoft_shaped_tokens() {
    let emu = spawn().await;
    let t = emu.tokens_for(ADELE_UPN, SCOPE).await;
    assert_eq!(t["token_type"], "Bearer");
    let exp = t["expires_in"].as_i64().unwrap();
    assert!((3600..=5399).contains(&exp), "{exp}");
    assert_eq!(t["ext_expires_in"], t["expires_in"]);
    let scope = t["scope"].as_str().unwrap();
    for s in ["User.Read", "Files.Read", "openid", "profile", "email"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }
    assert!(
        !scope.contains("https://graph.microsoft.com/"),
        "Graph scopes are bare: {scope}"
    );
    assert!(t["refresh_token"].is_string() && t["id_token"].is_string());
    let at = t["access_token"].as_str().unwrap();
    let h = header(at);
    assert_eq!(h["alg"], "RS256");
    assert!(h["kid"].is_string() && h["x5t"].is_string());
    let c = claims(at);
    assert_eq!(c["aud"], "00000003-0000-0000-c000-000000000000");
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{CONTOSO_TENANT_ID}/")
    );
    assert_eq!(c["ver"], "1.0");
    assert_eq!(c["tid"], CONTOSO_TENANT_ID);
    assert_eq!(c["oid"], ADELE_ID);
    assert_eq!(c["upn"], ADELE_UPN);
    assert_eq!(c["unique_name"], ADELE_UPN);
    assert_eq!(c["appid"], DEV_CLIENT_ID);
    assert_eq!(c["idtyp"], "user");
    assert!(c["roles"].is_null());
    assert!(
        c["scp"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "Files.Read")
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), exp);
    // The resource side accepts it; SharePoint does not.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {at}").parse().unwrap(),
    );
    let ok = validate_bearer(&emu.handle.state, &headers, &Audience::Graph).unwrap();
    assert_eq!(ok.upn.as_deref(), Some(ADELE_UPN));
    assert!(matches!(
        validate_bearer(
            &emu.handle.state,
            &headers,
            &Audience::SharePoint(CONTOSO_SHAREPOINT_HOST.into())
        ),
        Err(BearerError::WrongAudience(_))
    ));
    emu.control.advance_clock(exp + 1).await.unwrap();
    assert!(matches!(
        validate_bearer(&emu.handle.state, &headers, &Audience::Graph),
        Err(BearerError::Expired)
    ));
    let mut tampered = http::HeaderMap::new();
    tampered.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {at}x").parse().unwrap(),
    );
    assert!(matches!(
        validate_bearer(&emu.handle.state, &tampered, &Audience::Graph),
        Err(BearerError::Invalid)
    ));
    assert!(matches!(
        validate_bearer(&emu.handle.state, &http::HeaderMap::new(), &Audience::Graph),
        Err(BearerError::Missing)
    ));
}

#[tokio::test]
async fn no_refresh_token_without_offline_access_and_no_id_token_without_openid() {
    let emu = spawn().await;
    let t = emu.tokens_for(ADELE_UPN, "User.Read").await;
    assert!(
        t.get("refresh_token").is_none() && t.get("id_token").is_none(),
        "{t}"
    );
}

#[tokio::test]
async fn code_is_single_use_pkce_checked_redirect_checked_tenant_bound_and_expires() {
    let emu = spawn().await;
    let (code, verifier) = emu.code_for("common", ADELE_UPN, SCOPE).await;
    let (s, b) = emu
        .redeem(
            "common",
            &code,
            "wrong-verifier-wrong-verifier-wrong-verifier",
        )
        .await;
    assert_aad(s, &b, 400, "invalid_grant", 501481);
    let (s, b) = emu
        .token(
            "common",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_aad(s, &b, 400, "invalid_grant", 501481);
    let (s, b) = emu
        .token(
            "common",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("code", &code),
                ("redirect_uri", "http://localhost:3003/other"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "invalid_grant");
    // Another tenant's path: AADSTS700005.
    let (s, b) = emu.redeem(FABRIKAM_TENANT_ID, &code, &verifier).await;
    assert_aad(s, &b, 400, "invalid_grant", 700005);
    let (s, b) = emu
        .redeem("contoso.onmicrosoft.com", &code, &verifier)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = emu.redeem("common", &code, &verifier).await;
    assert_aad(s, &b, 400, "invalid_grant", 54005);
    let (s, b) = emu.redeem("common", "garbage", &verifier).await;
    assert_aad(s, &b, 400, "invalid_grant", 9002313);
    // Ten minutes later a code is dead.
    let (code, verifier) = emu.code_for("common", ADELE_UPN, SCOPE).await;
    emu.control.advance_clock(601).await.unwrap();
    let (s, b) = emu.redeem("common", &code, &verifier).await;
    assert_aad(s, &b, 400, "invalid_grant", 70008);
}

#[tokio::test]
async fn plain_pkce_is_accepted() {
    let emu = spawn().await;
    let verifier = "plain-verifier-plain-verifier-plain-verifier-0123";
    let url = emu.authorize_url("common", &[("code_challenge", verifier)]);
    let out = grantd_emulator::browser::sign_in(&url, ADELE_UPN, PASSWORD)
        .await
        .unwrap();
    let (s, b) = emu.redeem("common", &out.code().unwrap(), verifier).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn refresh_rotates_and_old_tokens_stay_valid_unless_strict() {
    let emu = spawn().await;
    let t = emu.tokens_for(ADELE_UPN, SCOPE).await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let (s, r2) = emu.refresh("common", &rt1, None).await;
    assert_eq!(s, 200, "{r2}");
    let rt2 = r2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert!(r2["id_token"].is_string(), "openid in the original scopes");
    // Microsoft keeps the old one valid.
    let (s, b) = emu.refresh("common", &rt1, None).await;
    assert_eq!(s, 200, "{b}");
    // Strict mode: a redeemed token is refused.
    emu.control.set_strict_rotation(true).await.unwrap();
    let (s, b) = emu.refresh("common", &rt1, None).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "invalid_grant");
    let (s, r3) = emu
        .refresh("common", &rt2, Some("Files.Read offline_access"))
        .await;
    assert_eq!(s, 200, "{r3}");
    let (s, _) = emu.refresh("common", &rt2, None).await;
    assert_eq!(s, 400);
    let counters = emu.control.counters().await.unwrap();
    assert_eq!(counters.token_requests["refresh_token"], 5);
    assert_eq!(counters.token_requests["authorization_code"], 1);
    assert_eq!(counters.token_requests_by_client[DEV_CLIENT_ID], 6);
}

#[tokio::test]
async fn refresh_failure_modes() {
    let emu = spawn().await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not consented scope.
    let (s, b) = emu.refresh("common", &rt, Some("Mail.Read")).await;
    assert_aad(s, &b, 400, "invalid_grant", 65001);
    assert_eq!(b["suberror"], "consent_required");
    // MFA now required: tokens from a sign-in without MFA fail.
    emu.control.set_mfa_required(ADELE_UPN, true).await.unwrap();
    let (s, b) = emu.refresh("common", &rt, None).await;
    assert_aad(s, &b, 400, "invalid_grant", 50076);
    assert_eq!(b["suberror"], "basic_action");
    // A sign-in made while MFA is required satisfies it.
    let rt_mfa = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = emu.refresh("common", &rt_mfa, None).await;
    assert_eq!(s, 200, "{b}");
    emu.control
        .set_mfa_required(ADELE_UPN, false)
        .await
        .unwrap();
    // Garbage.
    let (s, b) = emu.refresh("common", "not-a-token", None).await;
    assert_aad(s, &b, 400, "invalid_grant", 9002313);
    // Inactivity: 90 days without use.
    let (s, b) = emu.refresh("common", &rt, None).await;
    assert_eq!(s, 200, "{b}");
    emu.control.advance_clock(89 * 86400).await.unwrap();
    let (s, fresh) = emu.refresh("common", &rt, None).await;
    assert_eq!(s, 200, "used within 90 days: {fresh}");
    emu.control.advance_clock(90 * 86400 + 1).await.unwrap();
    let (s, b) = emu.refresh("common", &rt, None).await;
    assert_aad(s, &b, 400, "invalid_grant", 700082);
    // Revocation kills every token of the user.
    let rt_new = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    emu.control.revoke_user(ADELE_UPN).await.unwrap();
    let (s, b) = emu.refresh("common", &rt_new, None).await;
    assert_aad(s, &b, 400, "invalid_grant", 50173);
    // Megan is unaffected.
    let rt_m = emu.tokens_for(MEGAN_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(emu.refresh("common", &rt_m, None).await.0, 200);
}

#[tokio::test]
async fn sharepoint_resource_tokens_from_a_refresh_token() {
    let emu = spawn().await;
    let rt = emu.tokens_for(ADELE_UPN, SCOPE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for scope in [
        format!("https://{CONTOSO_MY_HOST}/.default offline_access"),
        format!("https://{CONTOSO_SHAREPOINT_HOST}/AllSites.Read"),
        format!("https://{CONTOSO_SHAREPOINT_HOST}/Sites.Read.All"),
    ] {
        let (s, b) = emu.refresh(CONTOSO_TENANT_ID, &rt, Some(&scope)).await;
        assert_eq!(s, 200, "{scope}: {b}");
        let host = scope
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let c = claims(b["access_token"].as_str().unwrap());
        assert_eq!(c["aud"], format!("https://{host}"));
        assert!(
            b["scope"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{host}/")),
            "{b}"
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", b["access_token"].as_str().unwrap())
                .parse()
                .unwrap(),
        );
        assert!(
            validate_bearer(
                &emu.handle.state,
                &headers,
                &Audience::SharePoint(host.clone())
            )
            .is_ok()
        );
        assert!(validate_bearer(&emu.handle.state, &headers, &Audience::Graph).is_err());
    }
    for scope in [
        format!("https://{FABRIKAM_SHAREPOINT_HOST}/.default"),
        "https://nowhere.sharepoint.com/.default".to_owned(),
    ] {
        let (s, b) = emu.refresh("common", &rt, Some(&scope)).await;
        assert_aad(s, &b, 400, "invalid_resource", 500011);
    }
}

#[tokio::test]
async fn client_authentication_errors() {
    let emu = spawn().await;
    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", DEV_CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (s, b) = emu
        .token(
            "fabrikam",
            &[&base[..], &[("client_secret", "wrong")]].concat(),
        )
        .await;
    assert_aad(s, &b, 401, "invalid_client", 7000215);
    let (s, b) = emu.token("fabrikam", &base).await;
    assert_aad(s, &b, 401, "invalid_client", 7000218);
    let (s, b) = emu
        .token(
            "fabrikam",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "00000000-1111-2222-3333-444444444444"),
                ("client_secret", "x"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_aad(s, &b, 400, "unauthorized_client", 700016);
    let (s, b) = emu
        .token(
            "nowhere.example",
            &[&base[..], &[("client_secret", DEV_CLIENT_SECRET)]].concat(),
        )
        .await;
    assert_aad(s, &b, 400, "invalid_tenant", 90002);
    let (s, b) = emu
        .token(
            "fabrikam",
            &[
                ("grant_type", "password"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
            ],
        )
        .await;
    assert_aad(s, &b, 400, "unsupported_grant_type", 70003);
    let (s, b) = emu.token("fabrikam", &[("client_id", DEV_CLIENT_ID)]).await;
    assert_aad(s, &b, 400, "invalid_request", 900144);
    // GET is refused.
    let resp = emu
        .http
        .get(format!("{}/common/oauth2/v2.0/token", emu.base()))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let b: serde_json::Value = resp.json().await.unwrap();
    assert_aad(status, &b, 400, "invalid_request", 900561);
    // HTTP Basic works; an expired secret is AADSTS7000222.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{DEV_CLIENT_ID}:{}",
        DEV_CLIENT_SECRET.replace('~', "%7E")
    ));
    let resp = emu
        .http
        .post(format!("{}/fabrikam/oauth2/v2.0/token", emu.base()))
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let extra = emu
        .control
        .add_secret(
            DEV_CLIENT_ID,
            &NewSecret {
                value: Some("second~secret".into()),
                expires_in_seconds: Some(3600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    emu.control.advance_clock(3601).await.unwrap();
    let (s, b) = emu
        .token(
            "fabrikam",
            &[&base[..], &[("client_secret", extra.value.as_str())]].concat(),
        )
        .await;
    assert_aad(s, &b, 401, "invalid_client", 7000222);
    emu.control
        .expire_secret(DEV_CLIENT_ID, Some(DEV_CLIENT_SECRET))
        .await
        .unwrap();
    let (s, b) = emu
        .token(
            "fabrikam",
            &[&base[..], &[("client_secret", DEV_CLIENT_SECRET)]].concat(),
        )
        .await;
    assert_aad(s, &b, 401, "invalid_client", 7000222);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains(DEV_CLIENT_ID)
    );
}

#[tokio::test]
async fn discovery_jwks_and_id_token_verification() {
    let emu = spawn().await;
    let doc: serde_json::Value = emu
        .http
        .get(format!(
            "{}/contoso/v2.0/.well-known/openid-configuration",
            emu.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["issuer"],
        format!("{}/{CONTOSO_TENANT_ID}/v2.0", emu.base())
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/contoso/oauth2/v2.0/token", emu.base())
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/contoso/oauth2/v2.0/authorize", emu.base())
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic"
        ])
    );
    let common: serde_json::Value = emu
        .http
        .get(format!(
            "{}/common/v2.0/.well-known/openid-configuration",
            emu.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        common["issuer"],
        format!("{}/{{tenantid}}/v2.0", emu.base())
    );
    let resp = emu
        .http
        .get(format!(
            "{}/nowhere.example/v2.0/.well-known/openid-configuration",
            emu.base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let jwks: serde_json::Value = emu
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert!(key["x5c"][0].is_string());

    let t = emu.tokens_for(ADELE_UPN, SCOPE).await;
    let id = t["id_token"].as_str().unwrap();
    assert_eq!(header(id)["kid"], key["kid"]);
    let dk =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[DEV_CLIENT_ID]);
    v.set_issuer(&[doc["issuer"].as_str().unwrap()]);
    let c = jsonwebtoken::decode::<serde_json::Value>(id, &dk, &v)
        .expect("id_token verifies against the JWKS")
        .claims;
    assert_eq!(c["ver"], "2.0");
    assert_eq!(c["nonce"], "n-1");
    assert_eq!(c["preferred_username"], ADELE_UPN);
    assert_eq!(c["oid"], ADELE_ID);
    assert_eq!(c["tid"], CONTOSO_TENANT_ID);
    assert_eq!(c["name"], "Adele Vance");
    assert!(c["sub"].as_str().unwrap().len() > 20);
    // The access token verifies with the same key.
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(t["access_token"].as_str().unwrap(), &dk, &{
            let mut v = Validation::new(Algorithm::RS256);
            v.validate_aud = false;
            v
        })
        .is_ok()
    );
}
