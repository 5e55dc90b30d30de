//! `GET /openapi.json`: the OpenAPI 3.1 document of grantd's HTTP API, assembled here from the
//! route table (a test reads the routers' source and fails if a route is missing from it).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::edge::AppState;

/// One documented operation: (path, method, summary, tag, has JSON body).
struct Op {
    path: &'static str,
    method: &'static str,
    summary: &'static str,
    tag: &'static str,
    body: bool,
    auth: Auth,
}

#[derive(Clone, Copy)]
enum Auth {
    SecretKey,
    SessionToken,
    /// A picker session token, sent by grantd's own picker page only.
    PickerSession,
    None,
}

const fn op(
    path: &'static str,
    method: &'static str,
    tag: &'static str,
    auth: Auth,
    body: bool,
    summary: &'static str,
) -> Op {
    Op {
        path,
        method,
        summary,
        tag,
        body,
        auth,
    }
}

use Auth::{None as Public, PickerSession as Picker, SecretKey as Key, SessionToken as Session};

const OPS: &[Op] = &[
    op(
        "/integrations",
        "get",
        "Integrations",
        Key,
        false,
        "List integrations",
    ),
    op(
        "/integrations",
        "post",
        "Integrations",
        Key,
        true,
        "Create an integration (provider, unique_key, credentials {client_id, client_secret, scopes})",
    ),
    op(
        "/integrations/{key}",
        "get",
        "Integrations",
        Key,
        false,
        "Show an integration (?include=credentials for the client secret)",
    ),
    op(
        "/integrations/{key}",
        "patch",
        "Integrations",
        Key,
        true,
        "Update an integration",
    ),
    op(
        "/integrations/{key}",
        "delete",
        "Integrations",
        Key,
        false,
        "Delete an integration and its connections",
    ),
    op(
        "/providers",
        "get",
        "Integrations",
        Key,
        false,
        "List the provider catalog",
    ),
    op(
        "/providers/{provider}",
        "get",
        "Integrations",
        Key,
        false,
        "Show one provider",
    ),
    op(
        "/connect/sessions",
        "post",
        "Connect sessions",
        Key,
        true,
        "Create a connect session (end_user, allowed_integrations…); returns token and connect_link",
    ),
    op(
        "/picker/sessions",
        "post",
        "File picker",
        Key,
        true,
        "Create a picker session for one connection (connection_id, provider_config_key, options {origin, entry, site_url, mode, multi_select, filters, save_selection}); returns token, url, expires_at, ready and, when the connection cannot open the picker, problem {code, message, reconnect_link}",
    ),
    op(
        "/picker",
        "get",
        "File picker",
        Public,
        false,
        "The hosted File Picker page (?session_token=…): frames Microsoft's File Picker v8 and posts {type:'picked', items} / {type:'close'} to the session's origin",
    ),
    op(
        "/picker/token",
        "post",
        "File picker",
        Picker,
        true,
        "For grantd's picker page: a SharePoint token for {resource} (one of the connection's SharePoint hosts only)",
    ),
    op(
        "/picker/picked",
        "post",
        "File picker",
        Picker,
        true,
        "For grantd's picker page: record the picked {items} (metadata selection when asked, picker webhook); returns the items as the app receives them",
    ),
    op(
        "/picker/sdk.js",
        "get",
        "File picker",
        Public,
        false,
        "The frontend helper: grantdPicker.open({url}) → Promise of picked items",
    ),
    op(
        "/connect/sessions/reconnect",
        "post",
        "Connect sessions",
        Key,
        true,
        "Create a reconnect session for an existing connection",
    ),
    op(
        "/connect/session",
        "get",
        "Connect sessions",
        Session,
        false,
        "Show the presented connect session",
    ),
    op(
        "/connect/session",
        "delete",
        "Connect sessions",
        Session,
        false,
        "Delete the presented connect session",
    ),
    op(
        "/connections",
        "get",
        "Connections",
        Key,
        false,
        "List connections (connectionId, search, endUserId, endUserOrganizationId, integrationId, tags, limit, page)",
    ),
    op(
        "/connections",
        "post",
        "Connections",
        Key,
        true,
        "Import a connection with existing credentials",
    ),
    op(
        "/connection",
        "get",
        "Connections",
        Key,
        false,
        "List connections (legacy path)",
    ),
    op(
        "/connection",
        "post",
        "Connections",
        Key,
        true,
        "Import a connection (legacy flat body)",
    ),
    op(
        "/records",
        "get",
        "Records",
        Key,
        false,
        "Records of a connection's sync (headers Connection-Id, Provider-Config-Key; model, cursor, modified_after, limit, filter, ids)",
    ),
    op(
        "/records/",
        "get",
        "Records",
        Key,
        false,
        "Records (the trailing-slash form listRecords calls)",
    ),
    op(
        "/sync/trigger",
        "post",
        "Syncs",
        Key,
        true,
        "Run a connection's sync now (opts.reset / full_resync: a full resync); without connection_id, every watched connection of the integration",
    ),
    op(
        "/sync/status",
        "get",
        "Syncs",
        Key,
        false,
        "Sync status (syncs, provider_config_key, optional connection_id: without it, every watched connection of the integration)",
    ),
    op(
        "/sync/pause",
        "post",
        "Syncs",
        Key,
        true,
        "Pause a connection's sync (without connection_id: every watched connection of the integration)",
    ),
    op(
        "/sync/start",
        "post",
        "Syncs",
        Key,
        true,
        "Start a paused sync again (runs it at once; without connection_id: every watched connection of the integration)",
    ),
    op(
        "/sync/notifications",
        "post",
        "Syncs",
        Public,
        true,
        "Microsoft Graph change notifications (validation handshake; verified by clientState)",
    ),
    op(
        "/sync/lifecycle",
        "post",
        "Syncs",
        Public,
        true,
        "Microsoft Graph lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed)",
    ),
    op(
        "/connections/metadata",
        "post",
        "Connections",
        Key,
        true,
        "Replace metadata of connections",
    ),
    op(
        "/connections/metadata",
        "patch",
        "Connections",
        Key,
        true,
        "Merge metadata of connections",
    ),
    op(
        "/connection/metadata",
        "post",
        "Connections",
        Key,
        true,
        "Replace metadata (legacy path)",
    ),
    op(
        "/connection/metadata",
        "patch",
        "Connections",
        Key,
        true,
        "Merge metadata (legacy path)",
    ),
    op(
        "/connections/{id}",
        "get",
        "Connections",
        Key,
        false,
        "Show a connection with fresh credentials (?provider_config_key=…&force_refresh=true&refresh_token=true)",
    ),
    op(
        "/connections/{id}",
        "patch",
        "Connections",
        Key,
        true,
        "Update a connection's end user, tags or webhook override",
    ),
    op(
        "/connections/{id}",
        "delete",
        "Connections",
        Key,
        false,
        "Delete a connection (?provider_config_key=…)",
    ),
    op(
        "/connection/{id}",
        "get",
        "Connections",
        Key,
        false,
        "Show a connection (legacy path)",
    ),
    op(
        "/connection/{id}",
        "delete",
        "Connections",
        Key,
        false,
        "Delete a connection (legacy path)",
    ),
    op(
        "/connection/{id}/metadata",
        "post",
        "Connections",
        Key,
        true,
        "Replace metadata (deprecated path)",
    ),
    op(
        "/connection/{id}/metadata",
        "patch",
        "Connections",
        Key,
        true,
        "Merge metadata (deprecated path)",
    ),
    op(
        "/proxy/{path}",
        "get",
        "Proxy",
        Key,
        false,
        "Forward a call to Graph with the connection's token (headers Connection-Id, Provider-Config-Key; optional Retries, Retry-On, Base-Url-Override, Grantd-Resource: sharepoint). All methods are accepted.",
    ),
    op(
        "/proxy",
        "get",
        "Proxy",
        Key,
        false,
        "Forward a call to the provider's API root",
    ),
    op(
        "/oauth/connect/{key}",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "Start the OAuth flow: 302 to Microsoft (?connect_session_token=…&ws_client_id=…&params[tenant]=…)",
    ),
    op(
        "/oauth/callback",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "OAuth redirect URI: finishes the flow and renders the outcome page",
    ),
    op(
        "/connect",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "The hosted Connect UI (?session_token=…)",
    ),
    op(
        "/connect/",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "The Connect UI that @nangohq/frontend's openConnectUI frames (ready / session_token handshake; ?lang=)",
    ),
    op(
        "/",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "WebSocket used by @nangohq/frontend to learn the outcome of a flow",
    ),
    op(
        "/images/template-logos/{file}",
        "get",
        "OAuth (browser)",
        Public,
        false,
        "An integration's or provider's logo (`{provider}.svg`), the `logo`/`logo_url` URLs",
    ),
    op("/health", "get", "Operations", Public, false, "Liveness"),
    op(
        "/ready",
        "get",
        "Operations",
        Public,
        false,
        "Readiness (database reachable)",
    ),
    op(
        "/metrics",
        "get",
        "Operations",
        Public,
        false,
        "Prometheus metrics (text format)",
    ),
    op(
        "/openapi.json",
        "get",
        "Operations",
        Public,
        false,
        "This document",
    ),
];

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "errors": {"type": "array"}
        }, "required": ["code", "message"]}}
    })
}

/// The change feed's routes name their fields: `connection_id` is optional everywhere (the
/// integration's watched connections without it, as in Nango).
fn sync_details(path: &str, operation: &mut Value) {
    let query = |name: &str, required: bool, description: &str| json!({"name": name, "in": "query", "required": required, "schema": {"type": "string"}, "description": description});
    match path {
        "/sync/status" => {
            operation["parameters"] = json!([
                query(
                    "syncs",
                    true,
                    "Comma-separated sync names (user-files, user-files-selection)"
                ),
                query("provider_config_key", true, "The integration"),
                query(
                    "connection_id",
                    false,
                    "One connection; without it, every watched connection of the integration"
                ),
            ]);
        }
        "/sync/trigger" | "/sync/pause" | "/sync/start" => {
            let mut props = json!({
                "syncs": {"type": "array", "description": "Sync names (or {name, variant} objects)"},
                "provider_config_key": {"type": "string", "description": "The integration (or the Provider-Config-Key header)"},
                "connection_id": {"type": "string", "description": "One connection (or the Connection-Id header); without it, every watched connection of the integration"},
            });
            if path == "/sync/trigger" {
                props["opts"] = json!({"type": "object", "properties": {"reset": {"type": "boolean"}, "emptyCache": {"type": "boolean"}}});
                props["full_resync"] = json!({"type": "boolean"});
                props["sync_mode"] = json!({"type": "string", "enum": ["incremental", "full_refresh", "full_refresh_and_clear_cache"]});
            }
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": props}}}});
        }
        _ => {}
    }
}

/// The document, for a server at `public_url`.
pub fn document(public_url: &str) -> Value {
    let mut paths = Map::new();
    for o in OPS {
        let mut operation = json!({
            "summary": o.summary,
            "tags": [o.tag],
            "operationId": format!("{}_{}", o.method, o.path.trim_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": path_params(o.path),
            "responses": {
                "200": {"description": "Success", "content": {"application/json": {"schema": {}}}},
                "400": {"description": "Invalid input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "Missing or wrong credentials", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "Not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }
        });
        match o.auth {
            Auth::SecretKey => operation["security"] = json!([{"secretKey": []}]),
            Auth::SessionToken => operation["security"] = json!([{"connectSessionToken": []}]),
            Auth::PickerSession => operation["security"] = json!([{"pickerSessionToken": []}]),
            Auth::None => operation["security"] = json!([]),
        }
        if o.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        sync_details(o.path, &mut operation);
        paths
            .entry(o.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(o.method.into(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "grantd API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Nango-compatible auth, connections and proxy API for Microsoft 365. See docs/api.md.",
        },
        "servers": [{"url": public_url}],
        "components": {
            "securitySchemes": {
                "secretKey": {"type": "http", "scheme": "bearer", "description": "The backend secret key (GRANTD_SECRET_KEY)."},
                "connectSessionToken": {"type": "http", "scheme": "bearer", "description": "A connect session token (nango_connect_session_…)."},
                "pickerSessionToken": {"type": "http", "scheme": "bearer", "description": "A picker session token (grantd_picker_session_…); accepted only with grantd's own Origin."},
            },
            "schemas": {"Error": error_schema()},
        },
        "paths": paths,
    })
}

pub async fn serve(State(st): State<AppState>) -> Json<Value> {
    Json(document(
        st.core.config.public_url.as_str().trim_end_matches('/'),
    ))
}

#[cfg(test)]
mod tests {
    /// Every `.route("…")` in the routers (except the HTML dashboard) is documented.
    #[test]
    fn every_route_is_documented() {
        let doc = super::document("http://localhost:3003");
        let paths = doc["paths"].as_object().expect("paths object");
        let root = env!("CARGO_MANIFEST_DIR");
        let mut checked = 0;
        for file in ["src/api/mod.rs", "src/web/mod.rs", "src/server.rs"] {
            let src = std::fs::read_to_string(format!("{root}/{file}")).expect("router source");
            for chunk in src.split(".route(").skip(1) {
                let Some(path) = chunk
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|r| r.split('"').next())
                else {
                    continue;
                };
                if path.starts_with("/dashboard") {
                    continue;
                }
                let openapi_path = path.replace("{*", "{");
                assert!(
                    paths.contains_key(&openapi_path),
                    "{path} (in {file}) is missing from /openapi.json"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "found only {checked} routes; did the router move?"
        );
    }

    /// The change feed's connection_id is optional (the integration's watched connections).
    #[test]
    fn sync_connection_id_is_optional() {
        let doc = super::document("http://localhost:3003");
        let status = &doc["paths"]["/sync/status"]["get"]["parameters"];
        let cid = status
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "connection_id")
            .expect("connection_id documented");
        assert_eq!(cid["required"], false);
        for route in ["/sync/trigger", "/sync/pause", "/sync/start"] {
            let schema = &doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
                ["schema"];
            assert!(schema["properties"]["connection_id"].is_object(), "{route}");
            assert!(
                schema.get("required").is_none(),
                "{route}: nothing required"
            );
        }
    }
}
