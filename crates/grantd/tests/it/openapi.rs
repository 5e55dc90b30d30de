//! `/openapi.json` against what grantd actually answers: the served document parses as OpenAPI
//! 3.1 (`oas3`'s model, every reference resolved), and real answers of a live grantd + emulator
//! — integrations, providers, connect and picker sessions, connections with credentials,
//! metadata, records, sync status and commands, errors in Nango's envelope, and the webhooks
//! grantd sends — validate against the schema the document gives for their path, method and
//! status.
//!
//! The validator is this file's own, for the JSON Schema that utoipa writes, and it is stricter
//! than JSON Schema where a drift matters: an object may carry only the properties its schema
//! names (unless the schema says `additionalProperties`), so a field the server sends but the
//! document lacks fails; and a schema keyword it does not know fails the test instead of being
//! skipped. (The `jsonschema` crate would accept unknown fields by default and skip nothing we
//! need; this keeps the check strict and adds no dependency.)

use std::collections::BTreeSet;

use grantd::config::LifecycleConfig;
use grantd_emulator::seed;
use serde_json::{Value, json};

use crate::support::app::{Opts, TestApp};
use crate::support::webhook_receiver::Receiver;

const KEY: &str = "one-drive";

/// A JSON Schema checker over the document's `components/schemas`.
struct Schemas<'a> {
    doc: &'a Value,
}

impl<'a> Schemas<'a> {
    fn resolve(&self, s: &'a Value) -> &'a Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unexpected $ref {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "$ref {r} does not resolve");
                self.resolve(target)
            }
            None => s,
        }
    }

    /// The property names an object under `s` may have; `None` when any name is allowed.
    fn known(&self, s: &'a Value) -> Option<BTreeSet<String>> {
        let s = self.resolve(s);
        if s.get("additionalProperties").is_some_and(|a| a != false) {
            return None;
        }
        let mut names: BTreeSet<String> = match s.get("properties") {
            Some(p) => p.as_object().unwrap().keys().cloned().collect(),
            None if s.get("allOf").is_none() => return None,
            None => BTreeSet::new(),
        };
        for m in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            names.extend(self.known(m)?);
        }
        Some(names)
    }

    /// Checks `v` against `s`; `strict`: no property the schema does not name.
    fn check(&self, v: &Value, s: &'a Value, at: &str, strict: bool) -> Result<(), String> {
        let s = self.resolve(s);
        let Some(obj) = s.as_object() else {
            return match s {
                Value::Bool(true) => Ok(()),
                _ => Err(format!("{at}: schema {s} is not an object")),
            };
        };
        for (k, kw) in obj {
            match k.as_str() {
                "description" | "title" | "example" | "examples" | "default" | "deprecated"
                | "format" | "discriminator" | "readOnly" | "writeOnly" | "contentMediaType" => {}
                "type" => {
                    let types: Vec<&str> = match kw {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => return Err(format!("{at}: odd type {kw}")),
                    };
                    let ok = types.iter().any(|t| match *t {
                        "null" => v.is_null(),
                        "boolean" => v.is_boolean(),
                        "object" => v.is_object(),
                        "array" => v.is_array(),
                        "string" => v.is_string(),
                        "number" => v.is_number(),
                        "integer" => v.is_i64() || v.is_u64(),
                        other => panic!("{at}: unknown type {other}"),
                    });
                    if !ok {
                        return Err(format!("{at}: {v} is not of type {kw}"));
                    }
                }
                "enum" => {
                    if !kw.as_array().unwrap().contains(v) {
                        return Err(format!("{at}: {v} is not one of {kw}"));
                    }
                }
                "const" => {
                    if kw != v {
                        return Err(format!("{at}: {v} is not {kw}"));
                    }
                }
                "minimum" => {
                    if v.as_f64().is_some_and(|n| n < kw.as_f64().unwrap()) {
                        return Err(format!("{at}: {v} < {kw}"));
                    }
                }
                "maximum" => {
                    if v.as_f64().is_some_and(|n| n > kw.as_f64().unwrap()) {
                        return Err(format!("{at}: {v} > {kw}"));
                    }
                }
                "items" => {
                    for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                        self.check(item, kw, &format!("{at}[{i}]"), true)?;
                    }
                }
                "properties" => {
                    let Some(o) = v.as_object() else { continue };
                    for (name, sub) in kw.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            self.check(x, sub, &format!("{at}.{name}"), true)?;
                        }
                    }
                }
                "required" => {
                    let Some(o) = v.as_object() else { continue };
                    for name in kw.as_array().unwrap() {
                        if !o.contains_key(name.as_str().unwrap()) {
                            return Err(format!("{at}: required {name} is missing"));
                        }
                    }
                }
                "additionalProperties" => {
                    let Some(o) = v.as_object() else { continue };
                    let named: BTreeSet<&str> = obj
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    for (name, x) in o.iter().filter(|(n, _)| !named.contains(n.as_str())) {
                        if kw == false {
                            return Err(format!("{at}: {name} is not allowed"));
                        }
                        self.check(x, kw, &format!("{at}.{name}"), true)?;
                    }
                }
                "propertyNames" => {
                    for name in v.as_object().into_iter().flat_map(|o| o.keys()) {
                        self.check(&json!(name), kw, &format!("{at} key {name}"), true)?;
                    }
                }
                "allOf" => {
                    for m in kw.as_array().unwrap() {
                        self.check(v, m, at, false)?;
                    }
                }
                "oneOf" => {
                    let errs: Vec<String> = kw
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|m| self.check(v, m, at, strict).err())
                        .collect();
                    let matched = kw.as_array().unwrap().len() - errs.len();
                    if matched != 1 {
                        return Err(format!(
                            "{at}: {v} matches {matched} of oneOf (not 1): {errs:?}"
                        ));
                    }
                }
                "anyOf" => {
                    let errs: Vec<String> = kw
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|m| self.check(v, m, at, strict).err())
                        .collect();
                    if errs.len() == kw.as_array().unwrap().len() {
                        return Err(format!("{at}: {v} matches no anyOf: {errs:?}"));
                    }
                }
                other => panic!("{at}: the validator does not know the keyword {other:?}"),
            }
        }
        if let (true, Some(o), Some(known)) = (strict, v.as_object(), self.known(s)) {
            if let Some(extra) = o.keys().find(|k| !known.contains(k.as_str())) {
                return Err(format!("{at}: {extra} is not in the document"));
            }
        }
        Ok(())
    }
}

/// The schema the document gives for an answer, or why there is none.
fn answer_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
) -> Result<Option<&'a Value>, String> {
    let op = &doc["paths"][path][method];
    if !op.is_object() {
        return Err(format!("{method} {path} is not in the document"));
    }
    let responses = &op["responses"];
    let status_s = status.to_string();
    let range = format!("{}XX", status / 100);
    let r = [status_s.as_str(), range.as_str(), "default"]
        .into_iter()
        .map(|k| &responses[k])
        .find(|r| r.is_object())
        .ok_or_else(|| format!("{method} {path}: status {status} is not documented"))?;
    Ok(r["content"]["application/json"].get("schema"))
}

/// Sends `req` and asserts that the answer matches what the document says of `path` (the
/// templated path) for the request's method; returns its body.
async fn sent(doc: &Value, path: &str, req: reqwest::RequestBuilder) -> Value {
    let (client, req) = req.build_split();
    let req = req.unwrap();
    let method = req.method().as_str().to_ascii_lowercase();
    valid(doc, &method, path, client.execute(req).await.unwrap()).await
}

/// Asserts that a live answer matches the document; returns its body.
async fn valid(doc: &Value, method: &str, path: &str, r: reqwest::Response) -> Value {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let schema = answer_schema(doc, method, path, status).unwrap_or_else(|e| panic!("{e}: {text}"));
    let Some(schema) = schema else {
        assert!(
            text.is_empty() || serde_json::from_str::<Value>(&text).is_err(),
            "{method} {path} {status}: a JSON answer without a documented schema: {text}"
        );
        return Value::Null;
    };
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"));
    if let Err(e) = (Schemas { doc }).check(&v, schema, "body", true) {
        panic!("{method} {path} {status} does not match the document: {e}\n{v:#}");
    }
    v
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "{name} is in components/schemas");
    s
}

/// The served document is OpenAPI 3.1 as a model crate reads it, with every reference resolved.
#[tokio::test]
async fn served_document_is_openapi_3_1() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    let version = spec.validate_version().expect("an OpenAPI 3.1 version");
    assert_eq!((version.major, version.minor), (3, 1));
    assert_eq!(
        spec.servers.first().map(|s| s.url.as_str()),
        Some(app.url.as_str())
    );
    let mut ops = 0;
    let mut ids = BTreeSet::new();
    for (path, method, op) in spec.operations() {
        ops += 1;
        let what = format!("{method} {path}");
        assert!(
            ids.insert(op.operation_id.clone().expect("an operationId")),
            "{what}: duplicate operationId"
        );
        assert!(op.summary.is_some(), "{what}: a summary");
        assert!(!op.tags.is_empty(), "{what}: a tag");
        op.parameters(&spec)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        op.request_body(&spec)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for (status, resp) in op.responses(&spec) {
            for (media, content) in &resp.content {
                if let Some(s) = &content.schema {
                    s.resolve(&spec)
                        .unwrap_or_else(|e| panic!("{what} {status} {media}: {e}"));
                }
            }
        }
        // Path parameters are declared, by the names in the template.
        for seg in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = seg.trim_end_matches('}');
            let p = op
                .parameter(name, &spec)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(p.is_some(), "{what}: path parameter {name} declared");
        }
        // Authenticated operations name a scheme the document defines.
        for req in &op.security {
            for scheme in req.0.keys() {
                assert!(
                    spec.components
                        .as_ref()
                        .is_some_and(|c| c.security_schemes.contains_key(scheme)),
                    "{what}: security scheme {scheme} defined"
                );
            }
        }
    }
    assert!(ops >= 55, "only {ops} operations");
    // Every `$ref` in the raw document resolves (the webhooks' included).
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{} refs", refs.len());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }
    for hook in ["auth", "sync", "credentials_expiry", "picker"] {
        assert!(
            doc["webhooks"][hook]["post"]["requestBody"].is_object(),
            "{hook}"
        );
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Real answers of every API group, and the webhooks grantd sends, match the document.
#[tokio::test]
async fn live_answers_match_the_document() {
    let rx = Receiver::spawn().await;
    let app = TestApp::spawn_with(Opts {
        lifecycle: Some(LifecycleConfig {
            webhook_url: Some(url::Url::parse(&rx.url).unwrap()),
            webhook_signing_key: Some("whsec-openapi".to_owned().into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("SQLite is always available");
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Integrations and providers.
    sent(
        &doc,
        "/integrations",
        app.post(
            "/integrations",
            &json!({"provider": "one-drive", "unique_key": KEY, "display_name": "Files",
                "credentials": {"type": "OAUTH2", "client_id": seed::DEV_CLIENT_ID,
                    "client_secret": seed::DEV_CLIENT_SECRET,
                    "scopes": "offline_access,User.Read,Files.Read.All,Sites.Read.All"}}),
        ),
    )
    .await;
    sent(&doc, "/integrations", app.get("/integrations")).await;
    for q in ["", "?include=credentials,webhook"] {
        sent(
            &doc,
            "/integrations/{key}",
            app.get(&format!("/integrations/{KEY}{q}")),
        )
        .await;
    }
    sent(
        &doc,
        "/integrations/{key}",
        app.patch(
            &format!("/integrations/{KEY}"),
            &json!({"display_name": "OneDrive files"}),
        ),
    )
    .await;
    let providers = sent(&doc, "/providers", app.get("/providers")).await;
    assert!(providers["data"].as_array().unwrap().len() >= 5);
    sent(
        &doc,
        "/providers/{provider}",
        app.get("/providers/one-drive-app"),
    )
    .await;

    // Connect sessions, read with the session token; a connection through the flow.
    let session = sent(
        &doc,
        "/connect/sessions",
        app.post(
            "/connect/sessions",
            &json!({"end_user": {"id": "u1", "email": "u1@example.com", "display_name": "U"},
                "organization": {"id": "o1"}, "allowed_integrations": [KEY], "tags": {"team": "a"}}),
        ),
    )
    .await;
    let token = session["data"]["token"].as_str().unwrap();
    sent(
        &doc,
        "/connect/session",
        app.with_bearer(reqwest::Method::GET, "/connect/session", token),
    )
    .await;
    let id = app.connect(KEY, "u2", seed::ADELE_UPN).await;
    sent(
        &doc,
        "/connect/sessions/reconnect",
        app.post(
            "/connect/sessions/reconnect",
            &json!({"connection_id": id, "integration_id": KEY}),
        ),
    )
    .await;

    // Connections: list, fresh credentials (with the SharePoint token), forced refresh,
    // patch, metadata, an import.
    sent(&doc, "/connections", app.get("/connections")).await;
    sent(
        &doc,
        "/connection",
        app.get(&format!("/connection?connectionId={id}")),
    )
    .await;
    let show = |q: &str| app.get(&format!("/connections/{id}?provider_config_key={KEY}{q}"));
    let conn = sent(&doc, "/connections/{id}", show("")).await;
    assert!(
        conn["connection_config"]["sharepointAccessToken"].is_object(),
        "the SharePoint token is covered: {conn}"
    );
    sent(
        &doc,
        "/connections/{id}",
        show("&force_refresh=true&refresh_token=true"),
    )
    .await;
    sent(
        &doc,
        "/connections/{id}",
        app.patch(
            &format!("/connections/{id}?provider_config_key={KEY}"),
            &json!({"tags": {"team": "b"}, "end_user": {"id": "u2", "email": "u2@example.com"}}),
        ),
    )
    .await;
    let meta = json!({"connection_id": id, "provider_config_key": KEY, "metadata": {"a": 1}});
    sent(
        &doc,
        "/connections/metadata",
        app.post("/connections/metadata", &meta),
    )
    .await;
    sent(
        &doc,
        "/connections/metadata",
        app.patch("/connections/metadata", &meta),
    )
    .await;
    sent(
        &doc,
        "/connections",
        app.post(
            "/connections",
            &json!({"provider_config_key": KEY, "connection_id": "imported",
                "end_user": {"id": "u3"}, "tags": {"src": "import"},
                "credentials": {"type": "OAUTH2", "access_token": "at-imported",
                    "refresh_token": "rt-imported", "expires_at": "2099-01-01T00:00:00Z"}}),
        ),
    )
    .await;
    sent(
        &doc,
        "/connections/{id}",
        app.delete(&format!("/connections/imported?provider_config_key={KEY}")),
    )
    .await;

    // Picker: a session, a SharePoint token for the page, a pick.
    let picker = sent(
        &doc,
        "/picker/sessions",
        app.post(
            "/picker/sessions",
            &json!({"connection_id": id, "provider_config_key": KEY,
                "options": {"origin": "https://app.example.com", "mode": "all", "multi_select": true}}),
        ),
    )
    .await;
    assert_eq!(picker["data"]["ready"], true, "{picker}");
    let picker_token = picker["data"]["token"].as_str().unwrap();
    sent(
        &doc,
        "/picker/token",
        app.picker_page_post(
            "/picker/token",
            picker_token,
            &json!({"resource": format!("https://{}", seed::CONTOSO_MY_HOST)}),
        ),
    )
    .await;
    let children = app
        .proxy_json("/v1.0/me/drive/root/children", KEY, &id)
        .await;
    let item = children["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("file").is_some())
        .expect("a file in the drive")
        .clone();
    let picked = sent(
        &doc,
        "/picker/picked",
        app.picker_page_post("/picker/picked", picker_token, &json!({"items": [item]})),
    )
    .await;
    assert_eq!(picked["data"]["items"].as_array().unwrap().len(), 1);

    // The change feed: a run, its records, its status.
    sent(
        &doc,
        "/sync/trigger",
        app.post(
            "/sync/trigger",
            &json!({"syncs": ["user-files"], "provider_config_key": KEY, "connection_id": id}),
        ),
    )
    .await;
    let hooks = rx
        .wait_until(|got| got.iter().any(|h| h.json()["type"] == "sync"))
        .await;
    let records = sent(
        &doc,
        "/records",
        app.get("/records?model=OneDriveFile&limit=5")
            .header("Connection-Id", &id)
            .header("Provider-Config-Key", KEY),
    )
    .await;
    assert!(
        !records["records"].as_array().unwrap().is_empty(),
        "{records}"
    );
    sent(
        &doc,
        "/sync/status",
        app.get(&format!(
            "/sync/status?syncs=*&provider_config_key={KEY}&connection_id={id}"
        )),
    )
    .await;
    sent(
        &doc,
        "/sync/pause",
        app.post(
            "/sync/pause",
            &json!({"provider_config_key": KEY, "connection_id": id}),
        ),
    )
    .await;

    // The webhooks grantd sent: an auth creation, the picker's, the sync's.
    let hooks = rx
        .wait_until(|got| {
            ["auth", "picker", "sync"]
                .iter()
                .all(|t| got.iter().any(|h| h.json()["type"] == *t))
        })
        .await
        .into_iter()
        .chain(hooks)
        .collect::<Vec<_>>();
    let webhook = schema(&doc, "Webhook");
    let mut kinds = BTreeSet::new();
    for h in &hooks {
        let body = h.json();
        (Schemas { doc: &doc })
            .check(&body, webhook, "webhook", true)
            .unwrap_or_else(|e| panic!("a webhook does not match the document: {e}\n{body:#}"));
        kinds.insert(body["type"].as_str().unwrap().to_owned());
    }
    assert!(kinds.is_superset(&["auth", "picker", "sync"].map(String::from).into()));

    // Errors, in Nango's envelope.
    let r = app
        .http
        .get(format!("{}/integrations", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    valid(&doc, "get", "/integrations", r).await;
    let r = app
        .post(
            "/integrations",
            &json!({"provider": "one-drive", "colour": "red"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e = valid(&doc, "post", "/integrations", r).await;
    assert_eq!(e["error"]["code"], "invalid_body");
    let r = app
        .get(&format!("/connections/nope?provider_config_key={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    valid(&doc, "get", "/connections/{id}", r).await;
    sent(&doc, "/health", app.get("/health")).await;
    sent(&doc, "/ready", app.get("/ready")).await;
    sent(
        &doc,
        "/integrations/{key}",
        app.delete(&format!("/integrations/{KEY}")),
    )
    .await;

    // The check can fail: an undocumented field, a missing required one, a wrong type.
    let s = Schemas { doc: &doc };
    let conn_schema = schema(&doc, "Connection");
    s.check(&conn, conn_schema, "conn", true)
        .expect("the real answer passes");
    let mut extra = conn.clone();
    extra["surprise"] = json!(1);
    assert!(s.check(&extra, conn_schema, "conn", true).is_err());
    let mut nested = conn.clone();
    nested["credentials"]["surprise"] = json!(1);
    assert!(s.check(&nested, conn_schema, "conn", true).is_err());
    let mut missing = conn.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("provider_config_key");
    assert!(s.check(&missing, conn_schema, "conn", true).is_err());
    let mut wrong = conn.clone();
    wrong["id"] = json!("1");
    assert!(s.check(&wrong, conn_schema, "conn", true).is_err());
    assert!(answer_schema(&doc, "get", "/connections/{id}", 418).is_err());
}
