//! The drive read surface over real HTTP: query options honoured or refused with 400, search,
//! thumbnails, permissions and sharing links, versions, approot, sharedWithMe and recent;
//! throttling bodies, `client-request-id` on every response and fault-answered requests in the
//! counters; links minted for the scheme a TLS-terminating proxy reports.

mod common;

use common::*;
use grantd_emulator::faults::{FaultScope, FaultSpec};
use grantd_emulator::seed::*;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const RW: &str = "openid profile offline_access User.Read Files.ReadWrite.All Sites.Read.All";

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
    bytes: Vec<u8>,
}

async fn send(emu: &Emu, req: reqwest::RequestBuilder) -> Resp {
    let _ = emu;
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body").to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        bytes,
    }
}

fn url(emu: &Emu, path: &str) -> String {
    if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", emu.base())
    }
}

async fn get(emu: &Emu, t: &str, path: &str) -> Resp {
    send(emu, emu.http.get(url(emu, path)).bearer_auth(t)).await
}

async fn put(emu: &Emu, t: &str, path: &str, body: Vec<u8>) -> Resp {
    send(emu, emu.http.put(url(emu, path)).bearer_auth(t).body(body)).await
}

async fn post(emu: &Emu, t: &str, path: &str, body: Value) -> Resp {
    send(
        emu,
        emu.http.post(url(emu, path)).bearer_auth(t).json(&body),
    )
    .await
}

async fn token(emu: &Emu, upn: &str) -> String {
    emu.tokens_for(upn, RW).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value: {v}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn assert_400(r: &Resp) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalidRequest", "{}", r.body);
}

/// Folder `Q` with `b.txt` (30 B), `a.txt` (10 B), `c.txt` (20 B) created in that order a minute
/// apart, and an empty folder `sub`.
async fn make_q(emu: &Emu, t: &str) {
    let r = post(
        emu,
        t,
        "/v1.0/me/drive/root/children",
        json!({"name": "Q", "folder": {}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for (name, len) in [("b.txt", 30), ("a.txt", 10), ("c.txt", 20)] {
        emu.control.advance_clock(60).await.unwrap();
        let r = put(
            emu,
            t,
            &format!("/v1.0/me/drive/root:/Q/{name}:/content"),
            vec![b'x'; len],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = post(
        emu,
        t,
        "/v1.0/me/drive/root:/Q:/children",
        json!({"name": "sub", "folder": {}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn query_options_are_honoured_or_refused() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN).await;
    make_q(&emu, &t).await;
    let list = "/v1.0/me/drive/root:/Q:/children";
    let r = get(&emu, &t, list).await;
    assert_eq!(names(&r.body), ["a.txt", "b.txt", "c.txt", "sub"]);
    let r = get(&emu, &t, &format!("{list}?$orderby=name%20desc")).await;
    assert_eq!(names(&r.body), ["sub", "c.txt", "b.txt", "a.txt"]);
    let r = get(&emu, &t, &format!("{list}?$orderby=size")).await;
    assert_eq!(names(&r.body), ["sub", "a.txt", "c.txt", "b.txt"]);
    let r = get(&emu, &t, &format!("{list}?$orderby=size desc")).await;
    assert_eq!(names(&r.body), ["b.txt", "c.txt", "a.txt", "sub"]);
    // Paging keeps the order: the nextLink carries $orderby.
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "{list}?$orderby=lastModifiedDateTime%20desc&$top=3"
    ));
    let mut pages = 0;
    while let Some(u) = next {
        let r = get(&emu, &t, &u).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(names(&r.body));
        next = r.body["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.contains("$orderby=lastModifiedDateTime"), "{n}");
        }
        pages += 1;
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, ["sub", "c.txt", "a.txt", "b.txt"]);
    // $filter on facets.
    let r = get(&emu, &t, &format!("{list}?$filter=file ne null")).await;
    assert_eq!(names(&r.body), ["a.txt", "b.txt", "c.txt"]);
    let r = get(&emu, &t, &format!("{list}?$filter=folder ne null")).await;
    assert_eq!(names(&r.body), ["sub"]);
    // $select keeps only what was asked (and annotations).
    let r = get(&emu, &t, &format!("{list}?$select=name,size")).await;
    let first = r.body["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["name", "size"]);
    // $expand=children on the folder, also with $select.
    let r = get(&emu, &t, "/v1.0/me/drive/root:/Q?$expand=children").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["children"].as_array().unwrap().len(),
        4,
        "{}",
        r.body
    );
    let r = get(
        &emu,
        &t,
        "/v1.0/me/drive/root:/Q?$select=id,name&$expand=children",
    )
    .await;
    assert!(r.body["children"].is_array() && r.body.get("size").is_none());
    // Refused, never ignored.
    for bad in [
        format!("{list}?$orderby=createdBy"),
        format!("{list}?$orderby=name sideways"),
        format!("{list}?$filter=name eq 'a.txt'"),
        format!("{list}?$skip=1"),
        format!("{list}?$count=true"),
        format!("{list}?$expand=children"),
        format!("{list}?$top=0"),
        "/v1.0/me/drive/root:/Q?$expand=permissions".to_owned(),
        "/v1.0/me/drive/root:/Q?$orderby=name".to_owned(),
        "/v1.0/me/drive/root/delta?$orderby=name".to_owned(),
    ] {
        let r = get(&emu, &t, &bad).await;
        assert_400(&r);
    }
}

#[tokio::test]
async fn search_thumbnails_permissions_versions() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN).await;
    make_q(&emu, &t).await;
    // Search below the root and below a folder.
    let r = get(&emu, &t, "/v1.0/me/drive/root/search(q='c.txt')").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(names(&r.body), ["c.txt"]);
    assert!(r.body["value"][0]["searchResult"].is_object());
    let r = get(&emu, &t, "/v1.0/me/drive/root:/Q:/search(q='txt')?$top=2").await;
    assert_eq!(names(&r.body), ["a.txt", "b.txt"]);
    let next = r.body["@odata.nextLink"].as_str().unwrap().to_owned();
    assert_eq!(names(&get(&emu, &t, &next).await.body), ["c.txt"]);
    let r = get(
        &emu,
        &t,
        "/v1.0/me/drive/root/search(q='nothing-like-this')",
    )
    .await;
    assert_eq!(names(&r.body), Vec::<String>::new());
    assert_400(&get(&emu, &t, "/v1.0/me/drive/root/search(x='a')").await);

    // Thumbnails: a set per file, none for folders; the URLs serve an image.
    let a = get(&emu, &t, "/v1.0/me/drive/root:/Q/a.txt").await.body;
    let id = a["id"].as_str().unwrap().to_owned();
    let r = get(&emu, &t, &format!("/v1.0/me/drive/items/{id}/thumbnails")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let set = &r.body["value"][0];
    assert_eq!(set["medium"]["width"], 176);
    let img = emu
        .http
        .get(set["large"]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(img.status(), 200);
    assert_eq!(img.headers()["content-type"], "image/png");
    let r = get(&emu, &t, "/v1.0/me/drive/root:/Q:/thumbnails").await;
    assert_eq!(r.body["value"], json!([]));
    let r = get(&emu, &t, "/v1.0/me/drive/root:/Q/a.txt?$expand=thumbnails").await;
    assert!(r.body["thumbnails"][0]["small"]["url"].is_string());

    // Permissions: the owner, then links (reused for the same type + scope).
    let perms = format!("/v1.0/me/drive/items/{id}/permissions");
    let r = get(&emu, &t, &perms).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["value"][0]["roles"], json!(["owner"]));
    let link = format!("/v1.0/me/drive/items/{id}/createLink");
    let r1 = post(
        &emu,
        &t,
        &link,
        json!({"type": "view", "scope": "organization"}),
    )
    .await;
    assert_eq!(r1.status, 201, "{}", r1.body);
    assert_eq!(r1.body["link"]["type"], "view");
    assert_eq!(r1.body["roles"], json!(["read"]));
    assert!(
        r1.body["link"]["webUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let r2 = post(
        &emu,
        &t,
        &link,
        json!({"type": "view", "scope": "organization"}),
    )
    .await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body["id"], r1.body["id"]);
    let r3 = post(&emu, &t, &link, json!({"type": "edit"})).await;
    assert_eq!(r3.status, 201);
    assert_eq!(r3.body["roles"], json!(["write"]));
    assert_eq!(r3.body["link"]["scope"], "organization");
    assert_400(&post(&emu, &t, &link, json!({"type": "own"})).await);
    assert_400(&post(&emu, &t, &link, json!({"type": "view", "scope": "world"})).await);
    let r = get(&emu, &t, &perms).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 3);

    // Versions: the current one.
    let r = get(&emu, &t, &format!("/v1.0/me/drive/items/{id}/versions")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["value"][0]["size"], 10);
    assert_eq!(
        r.body["value"][0]["lastModifiedDateTime"],
        a["lastModifiedDateTime"]
    );
}

#[tokio::test]
async fn approot_shared_with_me_and_recent() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN).await;
    // special/approot is created on first use, under Apps/{app name}.
    let r = get(&emu, &t, "/v1.0/me/drive/special/approot").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["folder"].is_object());
    let app_folder = r.body["name"].as_str().unwrap().to_owned();
    assert_eq!(r.body["parentReference"]["name"], "Apps", "{}", r.body);
    let again = get(&emu, &t, "/v1.0/me/drive/special/approot").await;
    assert_eq!(again.body["id"], r.body["id"]);
    let r = put(
        &emu,
        &t,
        "/v1.0/me/drive/special/approot:/state.json:/content",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = get(
        &emu,
        &t,
        &format!(
            "/v1.0/me/drive/root:/Apps/{}/state.json",
            app_folder.replace(' ', "%20")
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Recent: most recently modified files first.
    emu.control.advance_clock(60).await.unwrap();
    let r = put(
        &emu,
        &t,
        "/v1.0/me/drive/root:/latest.txt:/content",
        b"new".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = get(&emu, &t, "/v1.0/me/drive/recent").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["value"][0]["name"], "latest.txt");
    assert!(r.body["value"][0]["remoteItem"]["parentReference"]["driveId"].is_string());

    // Shared with me: Adele invites Megan to a folder; Megan sees it with a remoteItem facet.
    let shared = post(
        &emu,
        &t,
        "/v1.0/me/drive/root/children",
        json!({"name": "Shared plans", "folder": {}}),
    )
    .await
    .body;
    let adele_drive = get(&emu, &t, "/v1.0/me/drive").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = token(&emu, MEGAN_UPN).await;
    let r = get(&emu, &m, "/v1.0/me/drive/sharedWithMe").await;
    assert_eq!(r.body["value"], json!([]), "{}", r.body);
    let r = post(
        &emu,
        &t,
        &format!(
            "/v1.0/me/drive/items/{}/invite",
            shared["id"].as_str().unwrap()
        ),
        json!({"recipients": [{"email": MEGAN_UPN}], "roles": ["write"], "requireSignIn": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["value"][0]["roles"], json!(["write"]));
    let r = get(&emu, &m, "/v1.0/me/drive/sharedWithMe").await;
    assert_eq!(names(&r.body), ["Shared plans"]);
    let remote = &r.body["value"][0]["remoteItem"];
    assert_eq!(remote["id"], shared["id"]);
    assert_eq!(remote["parentReference"]["driveId"], adele_drive.as_str());
    assert_eq!(remote["parentReference"]["driveType"], "business");
    assert!(remote["folder"].is_object());
    assert!(remote["shared"]["owner"]["user"]["displayName"].is_string());
    // The remoteItem is followed on Adele's drive: the shared folder and what is below it, with
    // the invitation's role; her other items stay private.
    let remote_item = format!(
        "/v1.0/drives/{adele_drive}/items/{}",
        shared["id"].as_str().unwrap()
    );
    let r = get(&emu, &m, &remote_item).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Shared plans");
    let r = put(
        &emu,
        &m,
        &format!("{remote_item}:/from-megan.txt:/content"),
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = get(&emu, &m, &format!("{remote_item}/children")).await;
    assert_eq!(names(&r.body), ["from-megan.txt"]);
    let latest = get(&emu, &t, "/v1.0/me/drive/root:/latest.txt").await.body;
    let r = get(
        &emu,
        &m,
        &format!(
            "/v1.0/drives/{adele_drive}/items/{}",
            latest["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Adele's own listing does not include her own items.
    let r = get(&emu, &t, "/v1.0/me/drive/sharedWithMe").await;
    assert_eq!(r.body["value"], json!([]));
    // Inviting a stranger is refused.
    let r = post(
        &emu,
        &t,
        &format!(
            "/v1.0/me/drive/items/{}/invite",
            shared["id"].as_str().unwrap()
        ),
        json!({"recipients": [{"email": "diego@fabrikam.onmicrosoft.com"}]}),
    )
    .await;
    assert_400(&r);
}

#[tokio::test]
async fn throttling_bodies_request_ids_and_counted_faults() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN).await;
    emu.control.reset_counters().await.unwrap();
    emu.control
        .add_fault(&FaultSpec {
            path_prefix: Some("/v1.0/me/drive".into()),
            status: Some(429),
            retry_after: Some(3),
            count: Some(1),
            ..FaultSpec::new(FaultScope::Graph)
        })
        .await
        .unwrap();
    let children = format!("{}/v1.0/me/drive/root/children", emu.base());
    let crid = "3f1c2a9e-1111-4c5d-8e7f-0a1b2c3d4e5f";
    let r = send(
        &emu,
        emu.http
            .get(&children)
            .bearer_auth(&t)
            .header("client-request-id", crid),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(r.headers["client-request-id"], crid);
    assert!(r.headers.contains_key("request-id"));
    let e = &r.body["error"];
    assert_eq!(e["code"], "activityLimitReached", "{}", r.body);
    assert_eq!(e["innerError"]["code"], "throttledRequest");
    assert_eq!(e["innerError"]["client-request-id"], crid);
    // The retry goes through and also echoes the id.
    let r = send(
        &emu,
        emu.http
            .get(&children)
            .bearer_auth(&t)
            .header("client-request-id", crid),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["client-request-id"], crid);
    // Both were counted: "retried exactly once" is observable.
    let c = emu.control.counters().await.unwrap();
    assert_eq!(
        c.graph_requests["GET /v1.0/me/drive/root/children"], 2,
        "{c:?}"
    );

    // 503 on a drive path is throttling too; off the drive API 429 is plain TooManyRequests.
    for (prefix, status, code) in [
        ("/v1.0/me/drive", 503, "activityLimitReached"),
        ("/v1.0/me", 429, "TooManyRequests"),
    ] {
        emu.control
            .add_fault(&FaultSpec {
                path_prefix: Some(prefix.into()),
                status: Some(status),
                count: Some(1),
                ..FaultSpec::new(FaultScope::Graph)
            })
            .await
            .unwrap();
        let path = if prefix == "/v1.0/me" {
            "/v1.0/me"
        } else {
            "/v1.0/me/drive/root"
        };
        let r = get(&emu, &t, path).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{}", r.body);
        assert!(r.headers.contains_key("client-request-id"));
    }
    let c = emu.control.counters().await.unwrap();
    assert_eq!(c.graph_requests["GET /v1.0/me"], 1, "{c:?}");
    assert_eq!(c.graph_requests["GET /v1.0/me/drive/root"], 1, "{c:?}");

    // The token endpoint: a faulted request counts by grant type and client, and echoes the id.
    emu.control
        .add_fault(&FaultSpec {
            status: Some(429),
            count: Some(1),
            ..FaultSpec::new(FaultScope::Token)
        })
        .await
        .unwrap();
    let before = emu.control.counters().await.unwrap();
    let r = send(
        &emu,
        emu.http
            .post(format!("{}/common/oauth2/v2.0/token", emu.base()))
            .header("client-request-id", crid)
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", DEV_CLIENT_ID),
                ("refresh_token", "x"),
            ]),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["client-request-id"], crid);
    assert_eq!(r.body["error"], "temporarily_unavailable");
    let after = emu.control.counters().await.unwrap();
    let n = |c: &grantd_emulator::counters::CounterSnapshot| {
        c.token_requests.get("refresh_token").copied().unwrap_or(0)
    };
    assert_eq!(n(&after), n(&before) + 1);
    // Successful identity responses echo it too.
    let r = send(
        &emu,
        emu.http
            .get(format!(
                "{}/common/v2.0/.well-known/openid-configuration",
                emu.base()
            ))
            .header("client-request-id", crid),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["client-request-id"], crid);
    assert!(!r.bytes.is_empty());
}

#[tokio::test]
async fn links_follow_the_scheme_a_proxy_reports() {
    let emu = spawn().await;
    let t = token(&emu, ADELE_UPN).await;
    let host = emu.base().trim_start_matches("http://").to_owned();
    let paging = format!(
        "{}/v1.0/me/drive/root:/{}:/children?$top=5",
        emu.base(),
        grantd_emulator::graph::PAGING_FOLDER
    );
    for (header, value, scheme) in [
        (None, "", "http"),
        (Some("x-forwarded-proto"), "https", "https"),
        (Some("x-forwarded-proto"), "https, http", "https"),
        (
            Some("forwarded"),
            "for=192.0.2.60;proto=https;by=203.0.113.43",
            "https",
        ),
        (Some("forwarded"), "for=192.0.2.60", "http"),
        (Some("x-forwarded-proto"), "gopher", "http"),
    ] {
        let with = |b: reqwest::RequestBuilder| match header {
            Some(h) => b.header(h, value),
            None => b,
        };
        let want = format!("{scheme}://{host}/");
        let r = send(&emu, with(emu.http.get(&paging).bearer_auth(&t))).await;
        let next = r.body["@odata.nextLink"].as_str().unwrap();
        assert!(next.starts_with(&want), "{header:?}={value}: {next}");
        let dl = r.body["value"][0]["@microsoft.graph.downloadUrl"]
            .as_str()
            .unwrap();
        assert!(dl.starts_with(&want), "{dl}");
        let r = send(
            &emu,
            with(
                emu.http
                    .get(format!(
                        "{}/v1.0/me/drive/root/delta?token=latest",
                        emu.base()
                    ))
                    .bearer_auth(&t),
            ),
        )
        .await;
        let delta = r.body["@odata.deltaLink"].as_str().unwrap();
        assert!(delta.starts_with(&want), "{delta}");
        let r = send(
            &emu,
            with(
                emu.http
                    .post(format!(
                        "{}/v1.0/me/drive/root:/up-{scheme}.bin:/createUploadSession",
                        emu.base()
                    ))
                    .bearer_auth(&t)
                    .json(&json!({"item": {"@microsoft.graph.conflictBehavior": "replace"}})),
            ),
        )
        .await;
        let up = r.body["uploadUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", r.body));
        assert!(up.contains(&format!("{scheme}://")), "{up}");
    }
}
