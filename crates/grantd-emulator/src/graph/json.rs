//! Wire JSON of Graph resources: user, drive, driveItem (incl. delta and tombstone shapes) and
//! site, with Microsoft's field names, plus `$select`.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::drives::{Drive, DriveType, Identity, Item, Site};
use super::path::encode;
use crate::directory::{AccountKind, User};

/// What rendering needs besides the model: where links point and the time.
pub struct Render<'a> {
    /// `http://host:port` of the emulator as the client reached it.
    pub origin: &'a str,
    /// Base of API links: `{origin}/v1.0` or `{origin}/_sharepoint/{host}/_api/v2.0`.
    pub api_base: &'a str,
    pub now: DateTime<Utc>,
    /// Signs `@microsoft.graph.downloadUrl`s.
    pub signer: &'a crate::files::UrlSigner,
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn identity(i: &Identity) -> Value {
    let mut user = json!({"displayName": i.display_name});
    if !i.id.is_empty() {
        user["id"] = json!(i.id);
    }
    if let Some(e) = &i.email {
        user["email"] = json!(e);
    }
    json!({ "user": user })
}

pub fn user_json(u: &User) -> Value {
    let personal = u.kind == AccountKind::Personal;
    json!({
        "businessPhones": [],
        "displayName": u.display_name,
        "givenName": u.given_name,
        "jobTitle": Value::Null,
        "mail": if personal || u.upn.contains('@') { json!(u.upn) } else { Value::Null },
        "mobilePhone": Value::Null,
        "officeLocation": Value::Null,
        "preferredLanguage": if personal { json!("en-US") } else { Value::Null },
        "surname": u.surname,
        "userPrincipalName": u.upn,
        "id": u.id,
    })
}

pub fn drive_json(d: &Drive) -> Value {
    let used = d.used();
    let total = match d.drive_type {
        DriveType::Personal => d.quota_total.min(5 << 30).max(used + (1 << 30)),
        _ => d.quota_total,
    };
    let remaining = total.saturating_sub(used);
    let state = match remaining * 100 / total.max(1) {
        0 => "exceeded",
        1..=5 => "critical",
        6..=10 => "nearing",
        _ => "normal",
    };
    let mut v = json!({
        "id": d.id,
        "driveType": d.drive_type.as_str(),
        "name": d.name,
        "description": d.description,
        "createdDateTime": time(d.created),
        "lastModifiedDateTime": time(d.root().modified),
        "webUrl": d.web_url,
        "createdBy": identity(&Identity::system()),
        "owner": identity(&d.owner),
        "quota": {
            "deleted": 0,
            "remaining": remaining,
            "state": state,
            "total": total,
            "used": used,
        },
    });
    if d.drive_type == DriveType::Personal {
        v.as_object_mut().expect("object").remove("createdBy");
    }
    v
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

pub fn etag(d: &Drive, i: &Item) -> String {
    match d.drive_type {
        DriveType::Personal => format!("\"a{}\"", b64(&format!("{}.{}", i.id, i.version))),
        _ => format!("\"{{{}}},{}\"", i.guid.to_uppercase(), i.version),
    }
}

pub fn ctag(d: &Drive, i: &Item) -> String {
    match d.drive_type {
        DriveType::Personal => format!("\"ad{}\"", b64(&format!("{}.{}", i.id, i.content_version))),
        _ => format!("\"c:{{{}}},{}\"", i.guid.to_uppercase(), i.content_version),
    }
}

fn web_url(d: &Drive, i: &Item) -> String {
    if i.parent.is_none() {
        return d.web_url.clone();
    }
    match d.drive_type {
        DriveType::Personal => format!(
            "https://onedrive.live.com/?cid={}&id={}",
            d.id,
            encode(&i.id)
        ),
        _ => {
            let names: Vec<String> = d.path_names(&i.id).iter().map(|n| encode(n)).collect();
            format!("{}/{}", d.web_url, names.join("/"))
        }
    }
}

/// `parentReference.path` of the children of `folder`: `/drives/{id}/root:/A/B`.
pub fn folder_path(d: &Drive, folder: &str) -> String {
    let names: Vec<String> = d.path_names(folder).iter().map(|n| encode(n)).collect();
    if names.is_empty() {
        format!("/drives/{}/root:", d.id)
    } else {
        format!("/drives/{}/root:/{}", d.id, names.join("/"))
    }
}

fn parent_reference(d: &Drive, i: &Item, with_path: bool) -> Value {
    let mut p = json!({"driveType": d.drive_type.as_str(), "driveId": d.id});
    if let Some(parent) = &i.parent {
        p["id"] = json!(parent);
        if let Some(pi) = d.items.get(parent) {
            if pi.parent.is_some() {
                p["name"] = json!(pi.name);
            }
        }
        if with_path {
            p["path"] = json!(folder_path(d, parent));
        }
    }
    if let Some(site) = &d.site_id {
        p["siteId"] = json!(site);
    }
    p
}

/// A driveItem. `delta` drops what delta responses omit (`parentReference.path`, ODB `cTag`).
pub fn item_json(r: &Render, d: &Drive, i: &Item, delta: bool) -> Value {
    let business = d.drive_type != DriveType::Personal;
    if i.deleted {
        let mut v = json!({
            "id": i.id,
            "lastModifiedDateTime": time(i.modified),
            "parentReference": parent_reference(d, i, false),
            "deleted": {"state": "deleted"},
        });
        if i.is_folder() {
            v["folder"] = json!({"childCount": 0});
        } else {
            v["file"] = json!({});
        }
        if !business {
            v["name"] = json!(i.name);
        }
        return v;
    }
    let mut v = json!({
        "createdDateTime": time(i.created),
        "eTag": etag(d, i),
        "id": i.id,
        "lastModifiedDateTime": time(i.modified),
        "name": i.name,
        "webUrl": web_url(d, i),
        "size": d.size_of(&i.id),
        "createdBy": identity(&i.created_by),
        "lastModifiedBy": identity(&i.modified_by),
        "parentReference": parent_reference(d, i, !delta),
        "fileSystemInfo": {
            "createdDateTime": time(i.meta.fs_created.unwrap_or(i.created)),
            "lastModifiedDateTime": time(i.meta.fs_modified.unwrap_or(i.modified)),
        },
    });
    let obj = v.as_object_mut().expect("object");
    if let Some(d) = &i.meta.description {
        obj.insert("description".into(), json!(d));
    }
    let with_ctag = !business || (!i.is_folder() && !delta);
    if with_ctag {
        obj.insert("cTag".into(), json!(ctag(d, i)));
    }
    match &i.file {
        Some(f) => {
            let mut file = json!({"mimeType": f.mime});
            if let Some(h) = &f.quick_xor {
                file["hashes"] = json!({"quickXorHash": h});
            }
            obj.insert("file".into(), file);
            let url = r.signer.download_url(r.origin, &d.id, i, r.now);
            obj.insert("@microsoft.graph.downloadUrl".into(), json!(url));
        }
        None => {
            let count = d.children(&i.id).len();
            obj.insert("folder".into(), json!({"childCount": count}));
        }
    }
    if i.parent.is_none() {
        obj.insert("root".into(), json!({}));
    }
    v
}

pub fn site_json(s: &Site) -> Value {
    json!({
        "createdDateTime": time(s.created),
        "description": "",
        "id": s.id,
        "lastModifiedDateTime": time(s.created),
        "name": s.name,
        "webUrl": s.web_url,
        "displayName": s.display_name,
        "root": {},
        "siteCollection": {"hostname": s.host},
    })
}

/// Keeps only the `$select`ed top-level properties (and `@odata.*` annotations).
pub fn select(v: Value, select: Option<&str>) -> Value {
    let Some(sel) = select.filter(|s| !s.trim().is_empty()) else {
        return v;
    };
    let wanted: Vec<&str> = sel.split(',').map(str::trim).collect();
    match v {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .into_iter()
                .filter(|(k, _)| {
                    k.starts_with("@odata") || wanted.iter().any(|w| w.eq_ignore_ascii_case(k))
                })
                .collect();
            Value::Object(kept)
        }
        other => other,
    }
}

/// Adds `@odata.context` first.
pub fn with_context(v: Value, context: String) -> Value {
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!(context));
    if let Value::Object(map) = v {
        out.extend(map);
    }
    Value::Object(out)
}
