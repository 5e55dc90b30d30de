//! Drive writes over real HTTP: `PATCH` items (rename, move, fileSystemInfo, description,
//! conflicts, If-Match) and what delta reports after them, `copy` with its monitor URL, upload
//! sessions replacing by default and keeping `fileSystemInfo`, path-based simple uploads creating
//! parents, and upload URLs on another origin with production's `Authorization` rules.

mod common;

use common::*;
use grantd_emulator::seed::*;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const RW: &str = "openid profile offline_access User.Read Files.ReadWrite.All Sites.Read.All";

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn call(
    emu: &Emu,
    method: Method,
    token: &str,
    url: &str,
    body: Option<Vec<u8>>,
    extra: &[(&str, &str)],
) -> Resp {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", emu.base())
    };
    let mut req = no_redirects().request(method, url).bearer_auth(token);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    Resp {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn json_call(emu: &Emu, method: Method, t: &str, url: &str, body: Value) -> Resp {
    call(
        emu,
        method,
        t,
        url,
        Some(body.to_string().into_bytes()),
        &[("content-type", "application/json")],
    )
    .await
}

async fn token(emu: &Emu, upn: &str, scope: &str) -> String {
    emu.tokens_for(upn, scope).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn upload(emu: &Emu, t: &str, path: &str, bytes: &[u8]) -> Value {
    let r = call(
        emu,
        Method::PUT,
        t,
        &format!("/v1.0/me/drive/root:/{path}:/content"),
        Some(bytes.to_vec()),
        &[],
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    r.body
}

/// `GET url`.
async fn get(emu: &Emu, t: &str, url: &str) -> Resp {
    call(emu, Method::GET, t, url, None, &[]).await
}

/// `PATCH url` with a JSON body.
async fn patch(emu: &Emu, t: &str, url: &str, body: Value) -> Resp {
    json_call(emu, Method::PATCH, t, url, body).await
}

/// The deltaLink of `token=latest`: delta from now on.
async fn latest_delta_link(emu: &Emu, t: &str) -> String {
    let latest = get(emu, t, "/v1.0/me/drive/root/delta?token=latest").await;
    latest.body["@odata.deltaLink"]
        .as_str()
        .expect("deltaLink")
        .to_owned()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Every page of a delta round from `url`; returns the items and the next deltaLink.
async fn delta_round(emu: &Emu, t: &str, mut url: String) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    loop {
        let page = get(emu, t, &url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        items.extend(page.body["value"].as_array().expect("value").clone());
        if let Some(next) = page.body["@odata.nextLink"].as_str() {
            url = next.to_owned();
        } else {
            let link = page.body["@odata.deltaLink"].as_str().expect("deltaLink");
            return (items, link.to_owned());
        }
    }
}

#[tokio::test]
async fn patch_renames_moves_sets_metadata_and_delta_follows() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let a = upload(&emu, &t, "W/a.txt", b"alpha").await;
    let b = upload(&emu, &t, "W/b.txt", b"beta").await;
    let sub = upload(&emu, &t, "W/sub/inner.txt", b"inner").await;
    let sub_id = sub["parentReference"]["id"]
        .as_str()
        .expect("parent")
        .to_owned();
    let w_id = a["parentReference"]["id"]
        .as_str()
        .expect("parent")
        .to_owned();
    let delta_link = latest_delta_link(&emu, &t).await;
    let item_url = |i: &str| format!("/v1.0/me/drive/items/{i}");

    // Rename: new eTag, same cTag (content unchanged).
    let r = patch(&emu, &t, &item_url(&id(&a)), json!({"name": "a2.txt"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "a2.txt");
    assert_ne!(r.body["eTag"], a["eTag"]);
    assert_eq!(r.body["cTag"], a["cTag"]);
    let renamed = r.body.clone();

    // Conflicts: fail by default, rename on request.
    let clash = patch(&emu, &t, &item_url(&id(&a)), json!({"name": "b.txt"})).await;
    assert_eq!(clash.status, 409, "{}", clash.body);
    assert_eq!(clash.body["error"]["code"], "nameAlreadyExists");
    let r = patch(
        &emu,
        &t,
        &format!(
            "{}?@microsoft.graph.conflictBehavior=rename",
            item_url(&id(&a))
        ),
        json!({"name": "b.txt"}),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["name"].as_str()),
        (200, Some("b 1.txt")),
        "{}",
        r.body
    );
    let current_etag = r.body["eTag"].as_str().expect("eTag").to_owned();

    // If-Match: a stale eTag → 412, the current one → 200.
    let stale = call(
        &emu,
        Method::PATCH,
        &t,
        &item_url(&id(&a)),
        Some(json!({"name": "c.txt"}).to_string().into_bytes()),
        &[
            ("content-type", "application/json"),
            ("if-match", renamed["eTag"].as_str().expect("eTag")),
        ],
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(stale.body["error"]["code"], "resourceModified");
    let ok = call(
        &emu,
        Method::PATCH,
        &t,
        &item_url(&id(&a)),
        Some(json!({"name": "c.txt"}).to_string().into_bytes()),
        &[
            ("content-type", "application/json"),
            ("if-match", &current_etag),
        ],
    )
    .await;
    assert_eq!(
        (ok.status.as_u16(), ok.body["name"].as_str()),
        (200, Some("c.txt")),
        "{}",
        ok.body
    );

    // Move by parentReference.id, then back by parentReference.path.
    let r = patch(
        &emu,
        &t,
        &item_url(&id(&a)),
        json!({"parentReference": {"id": sub_id}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["parentReference"]["id"], sub_id.as_str());
    assert!(
        r.body["parentReference"]["path"]
            .as_str()
            .expect("path")
            .ends_with("root:/W/sub"),
        "{}",
        r.body
    );
    let r = patch(
        &emu,
        &t,
        &item_url(&id(&a)),
        json!({"parentReference": {"path": "/drive/root:/W"}, "name": "moved.txt"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["parentReference"]["id"], w_id.as_str());
    assert_eq!(r.body["name"], "moved.txt");

    // fileSystemInfo and description are the client's; the server times stay the server's.
    let r = patch(
        &emu,
        &t,
        &item_url(&id(&b)),
        json!({
            "fileSystemInfo": {
                "createdDateTime": "2019-05-06T07:08:09Z",
                "lastModifiedDateTime": "2020-01-02T03:04:05Z"
            },
            "description": "quarterly numbers"
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["fileSystemInfo"]["createdDateTime"],
        "2019-05-06T07:08:09Z"
    );
    assert_eq!(
        r.body["fileSystemInfo"]["lastModifiedDateTime"],
        "2020-01-02T03:04:05Z"
    );
    assert_ne!(r.body["lastModifiedDateTime"], "2020-01-02T03:04:05Z");
    assert_eq!(r.body["description"], "quarterly numbers");
    let bad = patch(
        &emu,
        &t,
        &item_url(&id(&b)),
        json!({"fileSystemInfo": {"lastModifiedDateTime": "yesterday"}}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A folder cannot go into itself; the root cannot be renamed.
    let r = patch(
        &emu,
        &t,
        &item_url(&w_id),
        json!({"parentReference": {"id": sub_id}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = patch(&emu, &t, "/v1.0/me/drive/root", json!({"name": "x"})).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Move the folder `sub` (with a file) to the root, delete b.txt.
    let r = patch(
        &emu,
        &t,
        &item_url(&sub_id),
        json!({"parentReference": {"path": "/drive/root:"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let del = call(&emu, Method::DELETE, &t, &item_url(&id(&b)), None, &[]).await;
    assert_eq!(del.status, 204);

    // Delta since `latest` shows every write: the renamed+moved file, the moved folder (not its
    // content, which did not change: as on OneDrive for Business), and the tombstone.
    let (items, _) = delta_round(&emu, &t, delta_link).await;
    let find = |item_id: &str| {
        items
            .iter()
            .find(|i| i["id"] == item_id)
            .unwrap_or_else(|| panic!("{item_id} not in delta: {items:?}"))
            .clone()
    };
    let moved = find(&id(&a));
    assert_eq!(moved["name"], "moved.txt");
    assert_eq!(moved["parentReference"]["id"], w_id.as_str());
    let folder = find(&sub_id);
    let root_id = folder["parentReference"]["id"].as_str().expect("root id");
    let root = find(root_id);
    assert!(root["root"].is_object(), "{root}");
    assert!(
        items.iter().all(|i| i["id"] != id(&sub).as_str()),
        "a moved folder's content is not reported: {items:?}"
    );
    assert_eq!(find(&id(&b))["deleted"]["state"], "deleted");
    let meta = find(&id(&b));
    assert!(meta["deleted"].is_object());
}

#[tokio::test]
async fn copy_answers_202_with_a_monitor_that_reports_progress_then_the_item() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let f = upload(&emu, &t, "C/one.txt", b"one").await;
    upload(&emu, &t, "C/deep/two.txt", b"two").await;
    let folder = f["parentReference"]["id"].as_str().expect("C").to_owned();
    let drive_id = f["parentReference"]["driveId"]
        .as_str()
        .expect("drive")
        .to_owned();
    let root = get(&emu, &t, "/v1.0/me/drive/root").await;
    let r = json_call(
        &emu,
        Method::POST,
        &t,
        &format!("/v1.0/me/drive/items/{folder}/copy"),
        json!({"parentReference": {"driveId": drive_id, "id": id(&root.body)}, "name": "C copy"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let monitor = r.headers[header::LOCATION]
        .to_str()
        .expect("location")
        .to_owned();
    // The monitor lives on another origin and needs no token.
    assert!(
        monitor.starts_with(&emu.base().replace("127.0.0.1", "localhost")),
        "{monitor}"
    );
    let first: Value = no_redirects()
        .get(&monitor)
        .send()
        .await
        .expect("monitor")
        .json()
        .await
        .expect("json");
    assert_eq!(first["status"], "inProgress", "{first}");
    assert!(first["percentageComplete"].as_f64().expect("percent") < 100.0);
    let done: Value = no_redirects()
        .get(&monitor)
        .send()
        .await
        .expect("monitor")
        .json()
        .await
        .expect("json");
    assert_eq!(done["status"], "completed", "{done}");
    let new_id = done["resourceId"].as_str().expect("resourceId");
    let copy = get(&emu, &t, &format!("/v1.0/me/drive/items/{new_id}")).await;
    assert_eq!(copy.body["name"], "C copy");
    assert_ne!(new_id, folder);
    let two = get(
        &emu,
        &t,
        "/v1.0/me/drive/root:/C copy/deep/two.txt:/content",
    )
    .await;
    assert_eq!(two.status, 302);
    let url = two.headers[header::LOCATION].to_str().expect("location");
    assert_eq!(
        no_redirects()
            .get(url)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
        "two"
    );
    // The original is untouched; copying onto an existing name fails by default.
    let again = json_call(
        &emu,
        Method::POST,
        &t,
        &format!("/v1.0/me/drive/items/{folder}/copy"),
        json!({"parentReference": {"driveId": drive_id, "id": id(&root.body)}, "name": "C copy"}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(
        no_redirects()
            .get(format!("{}/_monitor/nope", emu.base()))
            .send()
            .await
            .expect("m")
            .status(),
        404
    );
}

async fn session(emu: &Emu, t: &str, path: &str, body: Value) -> Resp {
    json_call(
        emu,
        Method::POST,
        t,
        &format!("/v1.0/me/drive/root:/{path}:/createUploadSession"),
        body,
    )
    .await
}

async fn put_all(url: &str, bytes: &[u8], auth: Option<&str>) -> (u16, Value) {
    let mut req = no_redirects()
        .put(url)
        .header(
            header::CONTENT_RANGE,
            format!("bytes 0-{}/{}", bytes.len() - 1, bytes.len()),
        )
        .body(bytes.to_vec());
    if let Some(t) = auth {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("put fragment");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn upload_sessions_replace_by_default_and_keep_file_system_info() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let original = upload(&emu, &t, "S/report.txt", b"version one").await;

    // No conflictBehavior: the existing file is replaced (same id, 200).
    let s = session(
        &emu,
        &t,
        "S/report.txt",
        json!({"item": {"fileSystemInfo": {
            "createdDateTime": "2018-01-01T00:00:00Z",
            "lastModifiedDateTime": "2021-06-07T08:09:10Z"
        }}}),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let (st, item) = put_all(&url, b"version two!", None).await;
    assert_eq!(st, 200, "{item}");
    assert_eq!(item["id"], original["id"]);
    assert_eq!(item["size"], 12);
    assert_ne!(item["cTag"], original["cTag"]);
    assert_eq!(
        item["fileSystemInfo"]["createdDateTime"],
        "2018-01-01T00:00:00Z"
    );
    assert_eq!(
        item["fileSystemInfo"]["lastModifiedDateTime"],
        "2021-06-07T08:09:10Z"
    );

    // `rename` keeps both; `fail` refuses.
    let s = session(
        &emu,
        &t,
        "S/report.txt",
        json!({"item": {"@microsoft.graph.conflictBehavior": "rename"}}),
    )
    .await;
    let url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let (st, item) = put_all(&url, b"third", None).await;
    assert_eq!(
        (st, item["name"].as_str()),
        (201, Some("report 1.txt")),
        "{item}"
    );
    let s = session(
        &emu,
        &t,
        "S/report.txt",
        json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}}),
    )
    .await;
    assert_eq!(s.status, 409, "{}", s.body);
    assert_eq!(s.body["error"]["code"], "nameAlreadyExists");
}

#[tokio::test]
async fn path_based_simple_upload_creates_missing_parents() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let r = call(
        &emu,
        Method::PUT,
        &t,
        "/v1.0/me/drive/root:/a/b/c.txt:/content",
        Some(b"abc".to_vec()),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body["parentReference"]["path"]
            .as_str()
            .expect("path")
            .ends_with("root:/a/b"),
        "{}",
        r.body
    );
    for folder in ["a", "a/b"] {
        let f = get(&emu, &t, &format!("/v1.0/me/drive/root:/{folder}")).await;
        assert_eq!(f.status, 200, "{}", f.body);
        assert_eq!(f.body["folder"]["childCount"], 1, "{}", f.body);
    }
}

#[tokio::test]
async fn upload_urls_live_elsewhere_and_apply_authorization_rules_per_drive_type() {
    let emu = spawn().await;
    // Business: a bearer token on the upload URL is ignored.
    let t = token(&emu, ADELE_UPN, RW).await;
    let s = session(&emu, &t, "Documents/biz.bin", json!({})).await;
    let url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let graph_host = url::Url::parse(emu.base())
        .expect("base")
        .host_str()
        .map(str::to_owned);
    let upload_host = url::Url::parse(&url)
        .expect("url")
        .host_str()
        .map(str::to_owned);
    assert_ne!(graph_host, upload_host, "{url}");
    assert_eq!(upload_host.as_deref(), Some("localhost"));
    let (st, item) = put_all(&url, &[7u8; 1000], Some(&t)).await;
    assert_eq!(st, 201, "{item}");

    // Personal: refused with 401, and the client reads the 401 (the body was drained first).
    let sam = token(
        &emu,
        SAM_UPN,
        "openid offline_access User.Read Files.ReadWrite",
    )
    .await;
    let s = session(&emu, &sam, "personal.bin", json!({})).await;
    assert_eq!(s.status, 200, "{}", s.body);
    let url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let body = vec![1u8; 2 * 1024 * 1024];
    let (st, err) = put_all(&url, &body, Some(&sam)).await;
    assert_eq!(st, 401, "{err}");
    assert_eq!(err["error"]["code"], "unauthenticated");
    let (st, item) = put_all(&url, &body, None).await;
    assert_eq!(st, 201, "{item}");
    assert_eq!(item["size"], body.len());
}

#[tokio::test]
async fn control_acts_as_the_user_and_random_edits_are_reproducible() {
    use grantd_emulator::actions::UserAction;
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let delta_link = latest_delta_link(&emu, &t).await;
    let act = |a: UserAction| {
        let emu = &emu;
        async move { emu.control.user_action(ADELE_UPN, &a).await }
    };
    let file = act(UserAction::CreateFile {
        path: "Web/ui.txt".into(),
        content: "typed in the browser".into(),
    })
    .await
    .expect("create");
    act(UserAction::CreateFolder {
        path: "Web/Archive".into(),
    })
    .await
    .expect("folder");
    act(UserAction::Edit {
        path: "Web/ui.txt".into(),
        content: "edited".into(),
    })
    .await
    .expect("edit");
    act(UserAction::Rename {
        path: "Web/ui.txt".into(),
        name: "renamed.txt".into(),
    })
    .await
    .expect("rename");
    let moved = act(UserAction::Move {
        path: "Web/renamed.txt".into(),
        to: "Web/Archive".into(),
    })
    .await
    .expect("move");
    assert_eq!(moved.path, "Web/Archive/renamed.txt");
    assert_eq!(moved.id, file.id);
    // Unknown paths are a clear 404 from the control API.
    assert!(
        act(UserAction::Delete {
            path: "Web/nope.txt".into()
        })
        .await
        .is_err()
    );
    let item = get(&emu, &t, "/v1.0/me/drive/root:/Web/Archive/renamed.txt").await;
    assert_eq!(item.status, 200, "{}", item.body);
    assert_eq!(item.body["size"], 6);
    assert_eq!(item.body["lastModifiedBy"]["user"]["id"], ADELE_ID);
    act(UserAction::Delete {
        path: "Web/Archive/renamed.txt".into(),
    })
    .await
    .expect("delete");
    let (items, _) = delta_round(&emu, &t, delta_link).await;
    let tomb = items
        .iter()
        .find(|i| i["id"] == file.id.as_str())
        .expect("file in delta");
    assert_eq!(tomb["deleted"]["state"], "deleted");

    // Same seed on a fresh drive → the same edits.
    let a = emu
        .control
        .random_edits(MEGAN_UPN, 25, 7)
        .await
        .expect("edits");
    let other = spawn().await;
    let b = other
        .control
        .random_edits(MEGAN_UPN, 25, 7)
        .await
        .expect("edits");
    assert_eq!(a.actions, b.actions);
    assert!(a.actions.len() >= 20, "{:?}", a.actions);
    let c = other
        .control
        .random_edits(MEGAN_UPN, 25, 8)
        .await
        .expect("edits");
    assert_ne!(a.actions, c.actions);
}

#[tokio::test]
async fn restore_brings_back_an_item_and_the_subtree_its_delete_removed() {
    use grantd_emulator::actions::UserAction;
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN, RW).await;
    let act = |a: UserAction| {
        let emu = &emu;
        async move { emu.control.user_action(ADELE_UPN, &a).await }
    };
    let create = |path: &str| UserAction::CreateFile {
        path: path.into(),
        content: path.into(),
    };
    let inner = act(create("R/Sub/inner.txt")).await.expect("create");
    let early = act(create("R/early.txt")).await.expect("create");
    let folder = act(UserAction::CreateFolder { path: "R".into() })
        .await
        .expect("folder");
    // Deleted on its own first: a recycle bin entry of its own, not restored with R.
    act(UserAction::Delete {
        path: "R/early.txt".into(),
    })
    .await
    .expect("delete");
    act(UserAction::Delete { path: "R".into() })
        .await
        .expect("delete");
    let link = latest_delta_link(&emu, &t).await;
    let back = act(UserAction::Restore {
        id: folder.id.clone(),
    })
    .await
    .expect("restore");
    assert_eq!(
        (back.id.as_str(), back.path.as_str()),
        (folder.id.as_str(), "R")
    );
    let got = get(&emu, &t, "/v1.0/me/drive/root:/R/Sub/inner.txt").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["id"], inner.id.as_str(), "same id after restore");
    let gone = get(&emu, &t, "/v1.0/me/drive/root:/R/early.txt").await;
    assert_eq!(gone.status, 404, "deleted before R: still in the bin");
    // Delta reports the restored items as items again, parents first.
    let (items, _) = delta_round(&emu, &t, link).await;
    let pos = |id: &str| {
        items
            .iter()
            .position(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} in delta: {items:?}"))
    };
    for i in [&folder.id, &inner.id] {
        assert!(
            items[pos(i)].get("deleted").is_none(),
            "{i} not a tombstone"
        );
    }
    assert!(pos(&folder.id) < pos(&inner.id));
    // Restored where its name is taken: renamed, as OneDrive does.
    act(create("R/early.txt")).await.expect("create");
    let renamed = act(UserAction::Restore {
        id: early.id.clone(),
    })
    .await
    .expect("restore");
    assert_eq!(renamed.path, "R/early 1.txt");
    // Only deleted items can be restored.
    assert!(act(UserAction::Restore { id: inner.id }).await.is_err());

    // Graph's restore: OneDrive personal only (as documented); business drives answer 400.
    act(UserAction::Delete {
        path: "R/early 1.txt".into(),
    })
    .await
    .expect("delete");
    let refused = json_call(
        &emu,
        Method::POST,
        &t,
        &format!("/v1.0/me/drive/items/{}/restore", early.id),
        json!({}),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let sam = token(
        &emu,
        SAM_UPN,
        "openid offline_access User.Read Files.ReadWrite",
    )
    .await;
    let put = call(
        &emu,
        Method::PUT,
        &sam,
        "/v1.0/me/drive/root:/note.txt:/content",
        Some(b"note".to_vec()),
        &[],
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let note = put.body["id"].as_str().unwrap().to_owned();
    let del = call(
        &emu,
        Method::DELETE,
        &sam,
        &format!("/v1.0/me/drive/items/{note}"),
        None,
        &[],
    )
    .await;
    assert_eq!(del.status, 204);
    let back = json_call(
        &emu,
        Method::POST,
        &sam,
        &format!("/v1.0/me/drive/items/{note}/restore"),
        json!({"name": "restored.txt"}),
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["id"], note.as_str());
    assert_eq!(back.body["name"], "restored.txt");
    let again = json_call(
        &emu,
        Method::POST,
        &sam,
        &format!("/v1.0/me/drive/items/{note}/restore"),
        json!({}),
    )
    .await;
    assert_eq!(again.status, 404, "not in the recycle bin any more");

    // Random edits restore too, and delete folders with their subtrees.
    let r = emu
        .control
        .random_edits(MEGAN_UPN, 300, 3)
        .await
        .expect("edits");
    assert!(
        r.actions
            .iter()
            .any(|a| matches!(a, UserAction::Restore { .. })),
        "{:?}",
        r.actions
    );
}
