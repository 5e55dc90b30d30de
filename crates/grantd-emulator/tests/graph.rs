//! Graph drive API over real HTTP against a spawned emulator, with tokens from the identity
//! endpoints: listing and paging, path addressing, downloads (incl. 1 GiB with Range), simple
//! and chunked uploads, delta, error JSON, app-only rules and SharePoint audiences.

mod common;

use common::*;
use futures::StreamExt;
use grantd_emulator::graph::content::QuickXor;
use grantd_emulator::graph::generated_byte;
use grantd_emulator::seed::*;
use grantd_emulator::{EmulatorConfig, graph};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;

const RW: &str = "openid profile offline_access User.Read Files.ReadWrite.All Sites.Read.All";

/// An emulator whose `big.bin` has `large` bytes (the common helper fixes 1 MiB).
async fn spawn_large(large: u64) -> Emu {
    let config = EmulatorConfig {
        large_file_size: large,
        ..EmulatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = grantd_emulator::spawn(config, listener)
        .await
        .expect("spawn emulator");
    let control = handle.control();
    // Redirects are checked by hand: the 302 to the download URL is part of the contract.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Emu {
        handle,
        http,
        control,
    }
}

async fn access_token(emu: &Emu, upn: &str, scope: &str) -> String {
    emu.tokens_for(upn, scope).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn call(
    emu: &Emu,
    method: reqwest::Method,
    token: Option<&str>,
    url: &str,
    body: Option<Vec<u8>>,
) -> Resp {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", emu.base())
    };
    let mut req = emu.http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(emu: &Emu, token: &str, url: &str) -> Resp {
    call(emu, reqwest::Method::GET, Some(token), url, None).await
}

fn assert_graph_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    assert!(r.body["error"]["message"].is_string(), "{}", r.body);
    let inner = &r.body["error"]["innerError"];
    assert_eq!(
        inner["request-id"],
        r.headers["request-id"].to_str().expect("ascii"),
        "{}",
        r.body
    );
    assert!(inner["date"].is_string());
}

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn drives_listing_and_children_paging() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;

    let me = get(&emu, &t, "/v1.0/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["id"], ADELE_ID);
    assert_eq!(me.body["userPrincipalName"], ADELE_UPN);
    assert!(me.headers.contains_key("request-id"));

    let req = emu
        .http
        .get(format!("{}/v1.0/me/drive", emu.base()))
        .bearer_auth(&t)
        .header("client-request-id", "abc-123");
    let resp = req.send().await.expect("send");
    assert_eq!(resp.headers()["client-request-id"], "abc-123");
    let drive: Value = resp.json().await.expect("json");
    let drive_id = drive["id"].as_str().expect("id").to_owned();
    assert!(
        drive_id.starts_with("b!") && drive_id.len() > 40,
        "{drive_id}"
    );
    assert_eq!(drive["driveType"], "business");
    assert_eq!(drive["owner"]["user"]["id"], ADELE_ID);
    assert_eq!(
        drive["webUrl"],
        "https://contoso-my.sharepoint.com/personal/adele_contoso_onmicrosoft_com/Documents"
    );
    assert!(drive["quota"]["used"].as_u64().expect("used") >= 1 << 20);

    let drives = get(&emu, &t, "/v1.0/me/drives").await;
    assert_eq!(drives.body["value"][0]["id"], drive_id.as_str());
    assert_eq!(
        get(&emu, &t, &format!("/v1.0/drives/{drive_id}"))
            .await
            .body["id"],
        drive_id.as_str()
    );

    let root = get(&emu, &t, &format!("/v1.0/drives/{drive_id}/root")).await;
    assert!(
        root.body["root"].is_object() && root.body["folder"]["childCount"].as_u64() == Some(4),
        "{}",
        root.body
    );
    assert_eq!(root.body["parentReference"]["driveType"], "business");

    let children = get(&emu, &t, &format!("/v1.0/drives/{drive_id}/root/children")).await;
    assert_eq!(
        names(&children.body),
        vec!["Archive", "big.bin", "Documents", "Photos"]
    );
    let big = &children.body["value"][1];
    assert_eq!(big["size"], 1 << 20);
    assert_eq!(big["file"]["mimeType"], "application/octet-stream");
    assert!(
        big["@microsoft.graph.downloadUrl"]
            .as_str()
            .expect("downloadUrl")
            .contains("/_download/")
    );
    assert!(big["cTag"].is_string() && big["eTag"].is_string());
    let docs = &children.body["value"][2];
    assert!(
        docs["folder"]["childCount"].as_u64() == Some(3) && docs.get("cTag").is_none(),
        "{docs}"
    );

    // $top paging through the 30-file folder, following @odata.nextLink.
    let archive = get(
        &emu,
        &t,
        &format!("/v1.0/me/drive/root:/{}", graph::PAGING_FOLDER),
    )
    .await;
    let archive_id = archive.body["id"].as_str().expect("id").to_owned();
    let mut url = format!("/v1.0/me/drive/items/{archive_id}/children?$top=7&$select=id,name");
    let (mut all, mut pages) = (Vec::new(), 0);
    loop {
        let page = get(&emu, &t, &url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        let first = &page.body["value"][0];
        assert!(
            first.get("size").is_none() && first["id"].is_string(),
            "$select keeps only id,name: {first}"
        );
        all.extend(names(&page.body));
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.contains("$skiptoken=") && next.starts_with(emu.base()),
                    "{next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let expected: Vec<String> = (1..=graph::PAGING_FILES)
        .map(|n| format!("file-{n:02}.txt"))
        .collect();
    assert_eq!(all, expected);

    let counters = emu.control.counters().await.expect("counters");
    assert_eq!(
        counters
            .graph_requests
            .get("GET /v1.0/me/drive/items/{item-id}/children"),
        Some(&5)
    );
    assert!(
        counters
            .graph_requests
            .contains_key("GET /v1.0/drives/{drive-id}/root/children")
    );
}

#[tokio::test]
async fn path_addressing_and_small_downloads() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;
    let drive_id = get(&emu, &t, "/v1.0/me/drive").await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let report = get(&emu, &t, "/v1.0/me/drive/root:/Documents/Report.docx").await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["name"], "Report.docx");
    assert_eq!(
        report.body["file"]["mimeType"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    assert_eq!(
        report.body["parentReference"]["path"],
        format!("/drives/{drive_id}/root:/Documents")
    );
    assert_eq!(
        report.body["webUrl"],
        "https://contoso-my.sharepoint.com/personal/adele_contoso_onmicrosoft_com/Documents/Documents/Report.docx"
    );
    let docs_id = report.body["parentReference"]["id"]
        .as_str()
        .expect("parent id")
        .to_owned();

    // Percent-encoded segments, the closing colon, and `items/{id}:/name:` forms.
    let notes = get(
        &emu,
        &t,
        &format!("/v1.0/drives/{drive_id}/root:/Documents/Meeting%20Notes.txt:"),
    )
    .await;
    assert_eq!(notes.body["name"], "Meeting Notes.txt");
    let listed = get(&emu, &t, "/v1.0/me/drive/root:/Documents:/children").await;
    assert_eq!(
        names(&listed.body),
        vec!["Budget.xlsx", "Meeting Notes.txt", "Report.docx"]
    );
    let by_parent = get(
        &emu,
        &t,
        &format!("/v1.0/me/drive/items/{docs_id}:/Meeting%20Notes.txt"),
    )
    .await;
    assert_eq!(by_parent.body["id"], notes.body["id"]);
    assert_graph_error(
        &get(&emu, &t, "/v1.0/me/drive/root:/Documents/nope.txt").await,
        404,
        "itemNotFound",
    );
    assert_graph_error(
        &get(&emu, &t, "/v1.0/me/drive/items/01NOPE").await,
        404,
        "itemNotFound",
    );

    // …/content → 302 to a URL that needs no Authorization.
    let r = call(
        &emu,
        reqwest::Method::GET,
        Some(&t),
        &format!("/v1.0/me/drive/items/{docs_id}:/Meeting%20Notes.txt:/content"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let location = r.headers[header::LOCATION]
        .to_str()
        .expect("location")
        .to_owned();
    let body = emu.http.get(&location).send().await.expect("download");
    assert_eq!(body.status(), 200);
    assert_eq!(body.headers()[header::ACCEPT_RANGES], "bytes");
    let text = body.text().await.expect("text");
    assert!(
        text.starts_with("Meeting Notes.txt: seeded by grantd-emulator for adele@"),
        "{text}"
    );
    let len = text.len() as u64;
    assert_eq!(notes.body["size"], len);
    assert_eq!(
        notes.body["file"]["hashes"]["quickXorHash"],
        QuickXor::of(text.as_bytes())
    );

    let part = emu
        .http
        .get(&location)
        .header(header::RANGE, "bytes=0-9")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()[header::CONTENT_RANGE],
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(part.text().await.expect("text"), &text[..10]);
    let suffix = emu
        .http
        .get(&location)
        .header(header::RANGE, "bytes=-5")
        .send()
        .await
        .expect("range");
    assert_eq!(suffix.status(), 206);
    assert_eq!(suffix.text().await.expect("text"), &text[text.len() - 5..]);
    for bad in [
        format!("bytes={len}-"),
        "bytes=9-3".to_owned(),
        "bytes=-0".to_owned(),
    ] {
        let r = emu
            .http
            .get(&location)
            .header(header::RANGE, &bad)
            .send()
            .await
            .expect("range");
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes */{len}").as_str()
        );
    }
    let head = emu.http.head(&location).send().await.expect("head");
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        len.to_string().as_str()
    );

    // Download URLs are short-lived, on the emulator clock.
    emu.control.advance_clock(2 * 3600).await.expect("advance");
    let expired = emu.http.get(&location).send().await.expect("download");
    assert_eq!(expired.status(), 401);
    let forged = emu
        .http
        .get(format!("{location}x"))
        .send()
        .await
        .expect("download");
    assert_eq!(forged.status(), 401);
}

/// Checks a downloaded range against the generator.
fn assert_generated(bytes: &[u8], start: u64) {
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(
            *b,
            generated_byte(start + i as u64),
            "byte at offset {}",
            start + i as u64
        );
    }
}

#[tokio::test]
async fn one_gib_download_with_ranges() {
    const SIZE: u64 = 1 << 30;
    let emu = spawn_large(SIZE).await;
    let t = access_token(&emu, MEGAN_UPN, RW).await;
    let item = get(&emu, &t, "/v1.0/me/drive/root:/big.bin").await;
    assert_eq!(item.body["size"], SIZE);
    let r = call(
        &emu,
        reqwest::Method::GET,
        Some(&t),
        "/v1.0/me/drive/root:/big.bin:/content",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let url = r.headers[header::LOCATION]
        .to_str()
        .expect("location")
        .to_owned();

    let mid = SIZE / 2 - 3; // unaligned on purpose
    for (range, start, len) in [
        ("bytes=0-4095".to_owned(), 0, 4096),
        (format!("bytes={mid}-{}", mid + 70_000), mid, 70_001),
        ("bytes=-1000".to_owned(), SIZE - 1000, 1000),
        (format!("bytes={}-", SIZE - 10), SIZE - 10, 10),
    ] {
        let resp = emu
            .http
            .get(&url)
            .header(header::RANGE, &range)
            .send()
            .await
            .expect("range");
        assert_eq!(resp.status(), 206, "{range}");
        let want = format!("bytes {start}-{}/{SIZE}", start + len - 1);
        assert_eq!(resp.headers()[header::CONTENT_RANGE], want.as_str());
        let bytes = resp.bytes().await.expect("bytes");
        assert_eq!(bytes.len() as u64, len, "{range}");
        assert_generated(&bytes, start);
    }
    let r = emu
        .http
        .get(&url)
        .header(header::RANGE, format!("bytes={SIZE}-"))
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 416);

    // The whole file, streamed: count every byte, check each chunk's first and last byte.
    let resp = emu.http.get(&url).send().await.expect("download");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(SIZE));
    let mut stream = resp.bytes_stream();
    let mut pos: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        if let (Some(first), Some(last)) = (chunk.first(), chunk.last()) {
            assert_eq!(*first, generated_byte(pos), "offset {pos}");
            assert_eq!(*last, generated_byte(pos + chunk.len() as u64 - 1));
        }
        pos += chunk.len() as u64;
    }
    assert_eq!(pos, SIZE);
}

#[tokio::test]
async fn simple_upload_create_replace_and_conflicts() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;
    let put = |url: &'static str, body: &'static [u8]| {
        let (emu, t) = (&emu, &t);
        async move { call(emu, reqwest::Method::PUT, Some(t), url, Some(body.to_vec())).await }
    };
    let created = put(
        "/v1.0/me/drive/root:/Documents/hello.txt:/content",
        b"hello",
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["size"], 5);
    assert_eq!(created.body["file"]["mimeType"], "text/plain");
    assert_eq!(
        created.body["file"]["hashes"]["quickXorHash"],
        QuickXor::of(b"hello")
    );
    let replaced = put(
        "/v1.0/me/drive/root:/Documents/hello.txt:/content",
        b"hello, world",
    )
    .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.body["id"], created.body["id"]);
    assert_ne!(replaced.body["eTag"], created.body["eTag"]);
    let fail = put(
        "/v1.0/me/drive/root:/Documents/hello.txt:/content?@microsoft.graph.conflictBehavior=fail",
        b"x",
    )
    .await;
    assert_graph_error(&fail, 409, "nameAlreadyExists");
    let renamed = put("/v1.0/me/drive/root:/Documents/hello.txt:/content?@microsoft.graph.conflictBehavior=rename", b"x").await;
    assert_eq!(
        (renamed.status.as_u16(), renamed.body["name"].as_str()),
        (201, Some("hello 1.txt"))
    );
    // Missing parent folders on the path are created (item 7); an id that does not exist is 404.
    let deep = put("/v1.0/me/drive/root:/Nope/deeper/hello.txt:/content", b"x").await;
    assert_eq!(deep.status, 201, "{}", deep.body);
    assert_eq!(
        deep.body["parentReference"]["path"],
        format!(
            "/drives/{}/root:/Nope/deeper",
            deep.body["parentReference"]["driveId"]
                .as_str()
                .expect("driveId")
        )
    );
    let nope = get(&emu, &t, "/v1.0/me/drive/root:/Nope").await;
    assert_eq!(nope.status, 200, "{}", nope.body);
    assert!(nope.body["folder"].is_object(), "{}", nope.body);
    assert_graph_error(
        &put("/v1.0/me/drive/items/NOPE:/hello.txt:/content", b"x").await,
        404,
        "itemNotFound",
    );
    // A file in the way of a parent folder is refused.
    assert_graph_error(
        &put(
            "/v1.0/me/drive/root:/Documents/hello.txt/x.txt:/content",
            b"x",
        )
        .await,
        400,
        "invalidRequest",
    );
    assert_graph_error(
        &put("/v1.0/me/drive/root:/Documents/a%3Fb.txt:/content", b"x").await,
        400,
        "invalidRequest",
    );

    let url = replaced.body["@microsoft.graph.downloadUrl"]
        .as_str()
        .expect("downloadUrl");
    assert_eq!(
        emu.http
            .get(url)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text"),
        "hello, world"
    );

    // A read-only token may not write (Megan consented to reading only: a token carries every
    // scope its user consented to, so Adele's would be read-write).
    let ro = access_token(&emu, MEGAN_UPN, "openid User.Read Files.Read").await;
    let r = call(
        &emu,
        reqwest::Method::PUT,
        Some(&ro),
        "/v1.0/me/drive/root:/x.txt:/content",
        Some(b"x".to_vec()),
    )
    .await;
    assert_graph_error(&r, 403, "accessDenied");
}

/// Deterministic pseudo-random test data.
fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn chunked_upload_session() {
    const FRAG: usize = 320 * 1024;
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;
    let total = 3 * FRAG + 12_345;
    let bytes = data(total);

    let s = call(
        &emu,
        reqwest::Method::POST,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/upload.bin:/createUploadSession",
        Some(br#"{"item":{"@microsoft.graph.conflictBehavior":"fail"}}"#.to_vec()),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["nextExpectedRanges"][0], "0-");
    assert!(s.body["expirationDateTime"].is_string());
    let upload_url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();

    let put = |start: usize, end: usize, auth: bool| {
        let (emu, upload_url, bytes, t) = (&emu, &upload_url, &bytes, &t);
        async move {
            let mut req = emu
                .http
                .put(upload_url)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{total}", end - 1),
                )
                .body(bytes[start..end].to_vec());
            if auth {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("put");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The upload URL is on the other loopback name (a different origin from Graph, as
    // production's SharePoint host is); a business drive ignores an Authorization header there.
    assert!(
        upload_url.starts_with(&emu.base().replace("127.0.0.1", "localhost")),
        "{upload_url}"
    );
    let (st, b) = put(0, 2 * FRAG, true).await;
    assert_eq!(st, 202, "{b}");
    assert_eq!(
        b["nextExpectedRanges"][0],
        format!("{}-{}", 2 * FRAG, total - 1)
    );
    // Already received → 416 fragmentOverlap; a gap → 416; not a 320 KiB multiple → 400.
    let (st, b) = put(FRAG, 2 * FRAG, false).await;
    assert_eq!(
        (st, b["error"]["innerError"]["code"].as_str()),
        (416, Some("fragmentOverlap")),
        "{b}"
    );
    assert_eq!(put(3 * FRAG, total, false).await.0, 416);
    assert_eq!(put(2 * FRAG, 2 * FRAG + 1000, false).await.0, 400);
    let status: Value = emu
        .http
        .get(&upload_url)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(
        status["nextExpectedRanges"][0],
        format!("{}-{}", 2 * FRAG, total - 1)
    );
    assert_eq!(put(2 * FRAG, 3 * FRAG, false).await.0, 202);
    let (st, item) = put(3 * FRAG, total, false).await;
    assert_eq!(st, 201, "{item}");
    assert_eq!(item["name"], "upload.bin");
    assert_eq!(item["size"], total);
    assert_eq!(item["file"]["hashes"]["quickXorHash"], QuickXor::of(&bytes));
    // The session is gone once committed.
    assert_eq!(
        emu.http
            .get(&upload_url)
            .send()
            .await
            .expect("status")
            .status(),
        404
    );

    let r = call(
        &emu,
        reqwest::Method::GET,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/upload.bin:/content",
        None,
    )
    .await;
    let url = r.headers[header::LOCATION].to_str().expect("location");
    let downloaded = emu
        .http
        .get(url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert!(
        downloaded.as_ref() == bytes.as_slice(),
        "downloaded content differs from the upload"
    );

    // conflictBehavior=fail on an existing name; cancel with DELETE.
    let again = call(
        &emu,
        reqwest::Method::POST,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/upload.bin:/createUploadSession",
        Some(br#"{"item":{"@microsoft.graph.conflictBehavior":"fail"}}"#.to_vec()),
    )
    .await;
    assert_graph_error(&again, 409, "nameAlreadyExists");
    let s = call(
        &emu,
        reqwest::Method::POST,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/other.bin:/createUploadSession",
        None,
    )
    .await;
    let other = s.body["uploadUrl"].as_str().expect("uploadUrl");
    assert_eq!(
        emu.http
            .delete(other)
            .send()
            .await
            .expect("delete")
            .status(),
        204
    );
    assert_eq!(
        emu.http
            .put(other)
            .header(header::CONTENT_RANGE, "bytes 0-0/1")
            .body("x")
            .send()
            .await
            .expect("put")
            .status(),
        404
    );
}

async fn delta_all(emu: &Emu, t: &str, mut url: String) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    loop {
        let page = get(emu, t, &url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        items.extend(
            page.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .cloned(),
        );
        if let Some(next) = page.body["@odata.nextLink"].as_str() {
            assert!(page.body.get("@odata.deltaLink").is_none());
            url = next.to_owned();
        } else {
            return (
                items,
                page.body["@odata.deltaLink"]
                    .as_str()
                    .expect("deltaLink")
                    .to_owned(),
            );
        }
    }
}

#[tokio::test]
async fn delta_round_with_changes_and_tombstones() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;
    let (initial, delta_link) =
        delta_all(&emu, &t, "/v1.0/me/drive/root/delta?$top=10".into()).await;
    // root + Documents(3) + Photos(Vacation(2), profile) + Archive(30) + big.bin
    assert_eq!(initial.len(), 1 + 4 + 5 + 31 + 1);
    assert!(
        initial[0]["root"].is_object(),
        "parents first: {}",
        initial[0]
    );
    assert!(
        initial
            .iter()
            .all(|i| i["parentReference"].get("path").is_none()),
        "no path in delta"
    );

    let victim = get(&emu, &t, "/v1.0/me/drive/root:/Archive/file-01.txt")
        .await
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = call(
        &emu,
        reqwest::Method::PUT,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/new.txt:/content",
        Some(b"new".to_vec()),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = call(
        &emu,
        reqwest::Method::DELETE,
        Some(&t),
        &format!("/v1.0/me/drive/items/{victim}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_graph_error(
        &get(&emu, &t, &format!("/v1.0/me/drive/items/{victim}")).await,
        404,
        "itemNotFound",
    );

    let (changes, next_link) = delta_all(&emu, &t, delta_link).await;
    let mut changed: Vec<String> = changes
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("<deleted>").to_owned())
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        vec!["<deleted>", "Archive", "Documents", "new.txt", "root"],
        "{changes:?}"
    );
    let tomb = changes
        .iter()
        .find(|i| i["id"] == victim.as_str())
        .expect("tombstone");
    assert_eq!(tomb["deleted"]["state"], "deleted");

    let (none, _) = delta_all(&emu, &t, next_link.clone()).await;
    assert!(none.is_empty(), "{none:?}");

    let latest = get(&emu, &t, "/v1.0/me/drive/root/delta?token=latest").await;
    assert!(latest.body["value"].as_array().expect("value").is_empty());
    assert!(latest.body["@odata.deltaLink"].is_string());

    let bogus = get(&emu, &t, "/v1.0/me/drive/root/delta?token=bm90LWEtdG9rZW4").await;
    assert_graph_error(&bogus, 410, "resyncRequired");
    assert!(
        bogus.headers[header::LOCATION]
            .to_str()
            .expect("location")
            .ends_with("/v1.0/me/drive/root/delta")
    );

    // Tokens expire (30 days on the emulator clock).
    emu.control
        .advance_clock(31 * 24 * 3600)
        .await
        .expect("advance");
    let t = access_token(&emu, ADELE_UPN, RW).await;
    assert_graph_error(&get(&emu, &t, &next_link).await, 410, "resyncRequired");
}

#[tokio::test]
async fn graph_error_responses() {
    let emu = spawn_large(1 << 20).await;
    let none = call(&emu, reqwest::Method::GET, None, "/v1.0/me/drive", None).await;
    assert_graph_error(&none, 401, "InvalidAuthenticationToken");
    assert!(
        none.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer ")
    );
    assert_graph_error(
        &get(&emu, "not.a.jwt", "/v1.0/me").await,
        401,
        "InvalidAuthenticationToken",
    );

    // Tokens carry every scope the user consented to: separate users keep the consents apart.
    let files_only = access_token(&emu, ADELE_UPN, "openid Files.Read").await;
    assert_graph_error(
        &get(&emu, &files_only, "/v1.0/me").await,
        403,
        "accessDenied",
    );
    assert_eq!(get(&emu, &files_only, "/v1.0/me/drive").await.status, 200);
    let user_only = access_token(&emu, MEGAN_UPN, "openid User.Read").await;
    assert_graph_error(
        &get(&emu, &user_only, "/v1.0/me/drive").await,
        403,
        "accessDenied",
    );
    assert_graph_error(
        &get(&emu, &user_only, "/v1.0/me/bogus").await,
        400,
        "BadRequest",
    );

    // A SharePoint token is not a Graph token.
    let rt = emu.tokens_for(ADELE_UPN, RW).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    let (_, sp) = emu
        .refresh(
            CONTOSO_TENANT_ID,
            &rt,
            Some(&format!("https://{CONTOSO_SHAREPOINT_HOST}/.default")),
        )
        .await;
    let sp = sp["access_token"].as_str().expect("sp token");
    assert_graph_error(
        &get(&emu, sp, "/v1.0/me/drive").await,
        401,
        "InvalidAuthenticationToken",
    );

    // Expired on the emulator clock (Microsoft's lifetimes are under 90 minutes).
    emu.control.advance_clock(2 * 3600).await.expect("advance");
    let expired = get(&emu, &files_only, "/v1.0/me/drive").await;
    assert_graph_error(&expired, 401, "InvalidAuthenticationToken");
    assert!(
        expired.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("expired")
    );
}

#[tokio::test]
async fn app_only_tokens_where_microsoft_accepts_them() {
    let emu = spawn_large(1 << 20).await;
    emu.control
        .grant_admin_consent(CONTOSO_TENANT_ID, DEV_CLIENT_ID)
        .await
        .expect("consent");
    let (s, b) = emu
        .token(
            CONTOSO_TENANT_ID,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEV_CLIENT_ID),
                ("client_secret", DEV_CLIENT_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let app = b["access_token"].as_str().expect("token").to_owned();

    let me = get(&emu, &app, "/v1.0/me").await;
    assert_graph_error(&me, 400, "BadRequest");
    assert_eq!(
        me.body["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );
    assert_eq!(get(&emu, &app, "/v1.0/me/drive").await.status, 400);

    let drive = get(&emu, &app, &format!("/v1.0/users/{ADELE_UPN}/drive")).await;
    assert_eq!(drive.status, 200, "{}", drive.body);
    assert_eq!(drive.body["owner"]["user"]["id"], ADELE_ID);
    let id = drive.body["id"].as_str().expect("id");
    let kids = get(&emu, &app, &format!("/v1.0/drives/{id}/root/children")).await;
    assert_eq!(kids.status, 200);
    assert_eq!(
        get(&emu, &app, &format!("/v1.0/users/{MEGAN_ID}/drive"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&emu, &app, &format!("/v1.0/users/{ADELE_UPN}"))
            .await
            .body["id"],
        ADELE_ID
    );
    // Other tenants do not exist for this token.
    assert_eq!(
        get(&emu, &app, &format!("/v1.0/users/{DIEGO_UPN}/drive"))
            .await
            .status,
        404
    );

    let site = get(&emu, &app, "/v1.0/sites/root").await;
    assert_eq!(site.status, 200, "{}", site.body);
    assert_eq!(
        site.body["siteCollection"]["hostname"],
        CONTOSO_SHAREPOINT_HOST
    );
    let site_id = site.body["id"].as_str().expect("site id");
    assert!(site_id.starts_with("contoso.sharepoint.com,"));
    let libs = get(&emu, &app, &format!("/v1.0/sites/{site_id}/drives")).await;
    assert_eq!(libs.body["value"][0]["driveType"], "documentLibrary");
    assert_eq!(
        libs.body["value"][0]["webUrl"],
        "https://contoso.sharepoint.com/Shared%20Documents"
    );
    let lib = get(
        &emu,
        &app,
        &format!("/v1.0/sites/{CONTOSO_SHAREPOINT_HOST}/drive"),
    )
    .await;
    assert_eq!(lib.body["id"], libs.body["value"][0]["id"]);

    // Delegated: own drive yes, a colleague's OneDrive no.
    let adele = access_token(&emu, ADELE_UPN, RW).await;
    assert_graph_error(
        &get(&emu, &adele, &format!("/v1.0/users/{MEGAN_UPN}/drive")).await,
        403,
        "accessDenied",
    );
    assert_eq!(
        get(&emu, &adele, &format!("/v1.0/users/{ADELE_UPN}/drive"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn personal_account_drive() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, SAM_UPN, "openid offline_access User.Read Files.Read").await;
    let drive = get(&emu, &t, "/v1.0/me/drive").await;
    assert_eq!(drive.status, 200, "{}", drive.body);
    assert_eq!(drive.body["driveType"], "personal");
    let id = drive.body["id"].as_str().expect("id");
    assert_eq!(id.len(), 16);
    let kids = get(&emu, &t, "/v1.0/me/drive/root/children").await;
    let first = kids.body["value"][0]["id"].as_str().expect("item id");
    assert!(
        first.starts_with(&format!("{}!", id.to_uppercase())),
        "{first}"
    );
}

#[tokio::test]
async fn sharepoint_accepts_only_its_own_audience() {
    let emu = spawn_large(1 << 20).await;
    let tokens = emu.tokens_for(ADELE_UPN, RW).await;
    let graph = tokens["access_token"].as_str().expect("graph token");
    let rt = tokens["refresh_token"].as_str().expect("rt");
    let sp_token = |host: &'static str| {
        let emu = &emu;
        async move {
            let (s, b) = emu
                .refresh(
                    CONTOSO_TENANT_ID,
                    rt,
                    Some(&format!("https://{host}/.default")),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            b["access_token"].as_str().expect("token").to_owned()
        }
    };
    let root_tok = sp_token(CONTOSO_SHAREPOINT_HOST).await;
    let my_tok = sp_token(CONTOSO_MY_HOST).await;
    let web = format!("/_sharepoint/{CONTOSO_SHAREPOINT_HOST}/_api/web");

    let ok = get(&emu, &root_tok, &web).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["Url"], "https://contoso.sharepoint.com");

    for (tok, aud) in [
        (graph, None),
        (my_tok.as_str(), Some("https://contoso-my.sharepoint.com")),
    ] {
        let r = get(&emu, tok, &web).await;
        assert_eq!(r.status, 401, "{}", r.body);
        let www = r.headers[header::WWW_AUTHENTICATE].to_str().expect("ascii");
        assert!(www.starts_with(&format!(r#"Bearer realm="{CONTOSO_TENANT_ID}",client_id="00000003-0000-0ff1-ce00-000000000000""#)), "{www}");
        let diag = r.headers["x-ms-diagnostics"].to_str().expect("ascii");
        assert!(
            diag.starts_with("3000003;reason=\"Invalid audience Uri '")
                && diag.ends_with("'.\";category=\"invalid_client\""),
            "{diag}"
        );
        if let Some(aud) = aud {
            assert!(diag.contains(&format!("'{aud}'")), "{diag}");
        }
    }
    let anon = call(&emu, reqwest::Method::GET, None, &web, None).await;
    assert_eq!(anon.status, 401);
    assert!(anon.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        get(
            &emu,
            &root_tok,
            "/_sharepoint/nowhere.sharepoint.com/_api/web"
        )
        .await
        .status,
        404
    );

    // The v2.0 drive API: libraries on the root host, the user's OneDrive on the -my host.
    let libs = get(
        &emu,
        &root_tok,
        &format!("/_sharepoint/{CONTOSO_SHAREPOINT_HOST}/_api/v2.0/drives"),
    )
    .await;
    assert_eq!(libs.status, 200, "{}", libs.body);
    assert_eq!(libs.body["value"][0]["driveType"], "documentLibrary");
    let mine = get(
        &emu,
        &my_tok,
        &format!("/_sharepoint/{CONTOSO_MY_HOST}/_api/v2.0/me/drive"),
    )
    .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["owner"]["user"]["id"], ADELE_ID);
    let kids = get(
        &emu,
        &my_tok,
        &format!("/_sharepoint/{CONTOSO_MY_HOST}/_api/v2.0/me/drive/root:/Documents:/children"),
    )
    .await;
    assert_eq!(
        names(&kids.body),
        vec!["Budget.xlsx", "Meeting Notes.txt", "Report.docx"]
    );
    // The OneDrive is not on the root host.
    let wrong = get(
        &emu,
        &root_tok,
        &format!("/_sharepoint/{CONTOSO_SHAREPOINT_HOST}/_api/v2.0/me/drive"),
    )
    .await;
    assert_eq!(wrong.status, 404);

    let c = emu.control.counters().await.expect("counters");
    assert!(
        c.sharepoint_requests
            .keys()
            .any(|k| k == "GET contoso.sharepoint.com /_api/web"),
        "{:?}",
        c.sharepoint_requests
    );
}

#[tokio::test]
async fn sessions_expire_and_reset_restores_the_seed() {
    let emu = spawn_large(1 << 20).await;
    let t = access_token(&emu, ADELE_UPN, RW).await;
    let s = call(
        &emu,
        reqwest::Method::POST,
        Some(&t),
        "/v1.0/me/drive/root:/late.bin:/createUploadSession",
        None,
    )
    .await;
    let upload_url = s.body["uploadUrl"].as_str().expect("uploadUrl").to_owned();
    let r = call(
        &emu,
        reqwest::Method::PUT,
        Some(&t),
        "/v1.0/me/drive/root:/Documents/kept.txt:/content",
        Some(b"x".to_vec()),
    )
    .await;
    assert_eq!(r.status, 201);
    let delta_link = delta_all(&emu, &t, "/v1.0/me/drive/root/delta".into())
        .await
        .1;

    emu.control.advance_clock(2 * 3600).await.expect("advance");
    let late = emu
        .http
        .put(&upload_url)
        .header(header::CONTENT_RANGE, "bytes 0-0/1")
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(late.status(), 404);

    emu.control.reset().await.expect("reset");
    let t = access_token(&emu, ADELE_UPN, RW).await;
    assert_graph_error(
        &get(&emu, &t, "/v1.0/me/drive/root:/Documents/kept.txt").await,
        404,
        "itemNotFound",
    );
    assert_eq!(
        get(&emu, &t, "/v1.0/me/drive/root:/Documents/Report.docx")
            .await
            .status,
        200
    );
    assert_graph_error(&get(&emu, &t, &delta_link).await, 410, "resyncRequired");
}
