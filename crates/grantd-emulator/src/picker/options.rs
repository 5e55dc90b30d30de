//! The `filePicker` query parameter of `FilePicker.aspx`: Microsoft's v8 configuration JSON
//! (learn.microsoft.com "Picker Configuration Schema", `v8-schema.md`), checked and reduced to
//! what the emulator's picker page acts on. Anything the page could not honour is a 400 with a
//! sentence naming the field, never silently ignored; fields that only change Microsoft's UI
//! chrome (`leftNav`, `tray`, `accessibility`, `theme`, `search`…) are accepted and ignored.

use serde::Serialize;
use serde_json::{Map, Value};

/// The `typesAndSources.filters` words of the schema's `ExtFilter` (besides `.{ext}`).
const KNOWN_FILTERS: &[&str] = &[
    "folder",
    "site",
    "documentLibrary",
    "list",
    "onenote",
    "file",
    "media",
    "photo",
    "video",
    "audio",
    "document",
    "listItem",
    "playlist",
    "syntexTemplate",
    "syntexSnippet",
    "syntexField",
];

/// Where the picker opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// `entry.oneDrive` / `entry.oneDrive.files{folder, fallbackToRoot}`: the user's OneDrive.
    #[serde(rename_all = "camelCase")]
    OneDrive {
        folder: Option<String>,
        fallback_to_root: bool,
    },
    /// `entry.oneDrive.recent`.
    Recent,
    /// `entry.oneDrive.sharedWithMe`.
    Shared,
    /// `entry.sharePoint.byPath{web, list, folder, fallbackToRoot}`.
    #[serde(rename_all = "camelCase")]
    SharePoint {
        web: Option<String>,
        list: Option<String>,
        folder: Option<String>,
        fallback_to_root: bool,
    },
    /// `entry.site` or `entry.myOrganization`: the Sites pivot.
    Sites,
}

/// The options the page acts on (serialised into the page as its configuration).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PickerOptions {
    pub channel_id: String,
    /// `messaging.origin`: the host's origin, the `targetOrigin` of `initialize`.
    pub origin: String,
    pub acknowledge_timeout: u64,
    pub result_timeout: u64,
    pub entry: Entry,
    /// `typesAndSources.mode`: `files` (default), `folders` or `all`.
    pub mode: String,
    pub filters: Vec<String>,
    pub pivots: Pivots,
    /// `selection.mode`: `single` (default), `multiple` or `pick`.
    pub selection: String,
    pub maximum_count: Option<u64>,
    /// `selection.enablePersistence`: keep the selection across folders and pivots. The schema
    /// gives no default; the emulator keeps it unless the host says `false`.
    pub persistence: bool,
    /// `commands.pick.select.urls.download`: add `@microsoft.graph.downloadUrl` to picked files.
    pub download_urls: bool,
    pub pick_label: String,
    pub close_label: String,
}

/// `typesAndSources.pivots`: which navigation entries are shown (all unless `false`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pivots {
    pub one_drive: bool,
    pub recent: bool,
    pub shared: bool,
    pub site: bool,
}

type Res<T> = Result<T, String>;

fn object<'a>(v: &'a Value, field: &str) -> Res<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{field} must be a JSON object."))
}

fn opt_object<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Res<Option<&'a Map<String, Value>>> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v, field).map(Some),
    }
}

fn opt_str(parent: &Map<String, Value>, key: &str, field: &str) -> Res<Option<String>> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{field} must be a string.")),
    }
}

fn opt_bool(parent: &Map<String, Value>, key: &str, field: &str) -> Res<Option<bool>> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{field} must be true or false.")),
    }
}

fn opt_count(parent: &Map<String, Value>, key: &str, field: &str) -> Res<Option<u64>> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("{field} must be a positive integer.")),
    }
}

fn one_of(value: Option<String>, field: &str, allowed: &[&str], default: &str) -> Res<String> {
    match value {
        None => Ok(default.to_owned()),
        Some(v) if allowed.contains(&v.as_str()) => Ok(v),
        Some(v) => Err(format!(
            "{field} '{v}' is not one of {}.",
            allowed.join(", ")
        )),
    }
}

/// An origin as `postMessage` takes it: `http(s)://host[:port]`, nothing after (a trailing `/`
/// is dropped).
fn parse_origin(s: &str) -> Res<String> {
    let bad = || {
        format!(
            "messaging.origin '{s}' is not an origin (scheme://host[:port], e.g. https://app.example.com)."
        )
    };
    let u = url::Url::parse(s).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none()
        || u.path() != "/"
        || u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
    {
        return Err(bad());
    }
    Ok(u.origin().ascii_serialization())
}

fn entry(cfg: &Map<String, Value>) -> Res<Entry> {
    let e = object(
        cfg.get("entry").ok_or(
            "entry is required (oneDrive or sharePoint, see the v8 configuration schema).",
        )?,
        "entry",
    )?;
    let kinds: Vec<&str> = ["oneDrive", "sharePoint", "site", "myOrganization"]
        .into_iter()
        .filter(|k| e.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match kinds.as_slice() {
        [] => Err("entry must name one of oneDrive, sharePoint, site or myOrganization.".into()),
        ["site"] | ["myOrganization"] => Ok(Entry::Sites),
        ["oneDrive"] => {
            let od = object(&e["oneDrive"], "entry.oneDrive")?;
            for unsupported in ["photos", "myLists", "recentLists"] {
                if od.get(unsupported).is_some_and(|v| !v.is_null()) {
                    return Err(format!(
                        "entry.oneDrive.{unsupported} is not supported by the emulator's picker (files, recent, sharedWithMe are)."
                    ));
                }
            }
            if opt_object(od, "recent", "entry.oneDrive.recent")?.is_some() {
                return Ok(Entry::Recent);
            }
            if opt_object(od, "sharedWithMe", "entry.oneDrive.sharedWithMe")?.is_some() {
                return Ok(Entry::Shared);
            }
            let files = opt_object(od, "files", "entry.oneDrive.files")?;
            Ok(Entry::OneDrive {
                folder: match files {
                    Some(f) => opt_str(f, "folder", "entry.oneDrive.files.folder")?,
                    None => None,
                },
                fallback_to_root: match files {
                    Some(f) => {
                        opt_bool(f, "fallbackToRoot", "entry.oneDrive.files.fallbackToRoot")?
                            .unwrap_or(false)
                    }
                    None => false,
                },
            })
        }
        ["sharePoint"] => {
            let sp = object(&e["sharePoint"], "entry.sharePoint")?;
            let by = opt_object(sp, "byPath", "entry.sharePoint.byPath")?;
            let get = |k: &str| match by {
                Some(b) => opt_str(b, k, &format!("entry.sharePoint.byPath.{k}")),
                None => Ok(None),
            };
            Ok(Entry::SharePoint {
                web: get("web")?,
                list: get("list")?,
                folder: get("folder")?,
                fallback_to_root: match by {
                    Some(b) => opt_bool(
                        b,
                        "fallbackToRoot",
                        "entry.sharePoint.byPath.fallbackToRoot",
                    )?
                    .unwrap_or(false),
                    None => false,
                },
            })
        }
        many => Err(format!(
            "entry names {}: the picker works with either OneDrive or SharePoint, give only one entry section.",
            many.join(" and ")
        )),
    }
}

/// Parses and checks the `filePicker` JSON; `consumer`: for the consumer picker of personal
/// accounts, which has no SharePoint sites (a `sharePoint`/`site` entry is refused, the Sites
/// pivot is off).
pub fn parse(raw: Option<&str>, consumer: bool) -> Res<PickerOptions> {
    let raw =
        raw.ok_or("The filePicker query parameter is required (the v8 configuration JSON).")?;
    let v: Value =
        serde_json::from_str(raw).map_err(|e| format!("filePicker is not valid JSON: {e}."))?;
    let cfg = object(&v, "filePicker")?;
    match cfg.get("sdk") {
        Some(Value::String(s)) if s == "8.0" => {}
        Some(other) => {
            return Err(format!(
                "sdk {other} is not supported: this page is the File Picker v8, sdk must be \"8.0\"."
            ));
        }
        None => return Err("sdk is required and must be \"8.0\".".into()),
    }
    let messaging = object(
        cfg.get("messaging")
            .ok_or("messaging is required ({origin, channelId}).")?,
        "messaging",
    )?;
    let channel_id = opt_str(messaging, "channelId", "messaging.channelId")?
        .filter(|c| !c.trim().is_empty())
        .ok_or("messaging.channelId is required (a unique id for this picker instance).")?;
    let origin = parse_origin(
        &opt_str(messaging, "origin", "messaging.origin")?
            .ok_or("messaging.origin is required (the host page's origin).")?,
    )?;
    let acknowledge_timeout = opt_count(
        messaging,
        "acknowledgeTimeout",
        "messaging.acknowledgeTimeout",
    )?
    .unwrap_or(10_000);
    let result_timeout =
        opt_count(messaging, "resultTimeout", "messaging.resultTimeout")?.unwrap_or(60_000);
    match cfg.get("authentication") {
        Some(Value::Object(a)) => {
            if opt_bool(a, "enabled", "authentication.enabled")? == Some(false) {
                return Err(
                    "authentication.enabled is false: the emulator has no SharePoint cookies, the host must answer authenticate commands."
                        .into(),
                );
            }
        }
        Some(_) => return Err("authentication must be a JSON object ({}).".into()),
        None => {
            return Err(
                "authentication is required ({}): without it the picker relies on SharePoint cookies, which the emulator does not have."
                    .into(),
            );
        }
    }
    let entry = entry(cfg)?;
    if consumer
        && !matches!(
            entry,
            Entry::OneDrive { .. } | Entry::Recent | Entry::Shared
        )
    {
        return Err(
            "entry: OneDrive for personal accounts has no SharePoint sites; use entry.oneDrive."
                .into(),
        );
    }

    let ts = opt_object(cfg, "typesAndSources", "typesAndSources")?;
    let empty = Map::new();
    let ts = ts.unwrap_or(&empty);
    let mode = one_of(
        opt_str(ts, "mode", "typesAndSources.mode")?,
        "typesAndSources.mode",
        &["files", "folders", "all"],
        "files",
    )?;
    let filters = match ts.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| match f.as_str() {
                Some(s) if s.len() > 1 && s.starts_with('.') => Ok(s.to_ascii_lowercase()),
                Some(s) if KNOWN_FILTERS.contains(&s) => Ok(s.to_owned()),
                _ => Err(format!(
                    "typesAndSources.filters entry {f} is neither a file extension ('.docx') nor one of {}.",
                    KNOWN_FILTERS.join(", ")
                )),
            })
            .collect::<Res<Vec<_>>>()?,
        Some(_) => return Err("typesAndSources.filters must be an array of strings.".into()),
    };
    let pv = opt_object(ts, "pivots", "typesAndSources.pivots")?.unwrap_or(&empty);
    let pivot = |k: &str| -> Res<bool> {
        Ok(opt_bool(pv, k, &format!("typesAndSources.pivots.{k}"))?.unwrap_or(true))
    };
    let pivots = Pivots {
        one_drive: pivot("oneDrive")?,
        recent: pivot("recent")?,
        shared: pivot("shared")?,
        site: pivot("site")? && !consumer,
    };

    let sel = opt_object(cfg, "selection", "selection")?.unwrap_or(&empty);
    let selection = one_of(
        opt_str(sel, "mode", "selection.mode")?,
        "selection.mode",
        &["single", "multiple", "pick"],
        "single",
    )?;
    let maximum_count = opt_count(sel, "maximumCount", "selection.maximumCount")?;
    let persistence =
        opt_bool(sel, "enablePersistence", "selection.enablePersistence")?.unwrap_or(true);

    let commands = opt_object(cfg, "commands", "commands")?.unwrap_or(&empty);
    let pick = opt_object(commands, "pick", "commands.pick")?.unwrap_or(&empty);
    let close = opt_object(commands, "close", "commands.close")?.unwrap_or(&empty);
    let download_urls = opt_object(pick, "select", "commands.pick.select")?
        .and_then(|s| s.get("urls"))
        .and_then(Value::as_object)
        .map(|u| opt_bool(u, "download", "commands.pick.select.urls.download"))
        .transpose()?
        .flatten()
        .unwrap_or(false);
    Ok(PickerOptions {
        channel_id,
        origin,
        acknowledge_timeout,
        result_timeout,
        entry,
        mode,
        filters,
        pivots,
        selection,
        maximum_count,
        persistence,
        download_urls,
        pick_label: opt_str(pick, "label", "commands.pick.label")?
            .unwrap_or_else(|| "Select".into()),
        close_label: opt_str(close, "label", "commands.close.label")?
            .unwrap_or_else(|| "Cancel".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: serde_json::Value) -> PickerOptions {
        parse(Some(&v.to_string()), false).unwrap_or_else(|e| panic!("{v}: {e}"))
    }
    fn err(v: serde_json::Value) -> String {
        parse(Some(&v.to_string()), false).expect_err("should be refused")
    }
    fn base() -> serde_json::Value {
        serde_json::json!({
            "sdk": "8.0", "entry": {"oneDrive": {}}, "authentication": {},
            "messaging": {"origin": "http://127.0.0.1:3000/", "channelId": "c-1"}
        })
    }

    #[test]
    fn minimal_options_get_microsoft_defaults() {
        let o = ok(base());
        assert_eq!(o.origin, "http://127.0.0.1:3000");
        assert_eq!(o.channel_id, "c-1");
        assert_eq!(
            o.entry,
            Entry::OneDrive {
                folder: None,
                fallback_to_root: false
            }
        );
        assert_eq!((o.mode.as_str(), o.selection.as_str()), ("files", "single"));
        assert!(o.filters.is_empty() && o.persistence && !o.download_urls);
        assert_eq!(
            (o.pick_label.as_str(), o.close_label.as_str()),
            ("Select", "Cancel")
        );
    }

    #[test]
    fn entries_modes_and_filters() {
        let mut v = base();
        v["entry"] = serde_json::json!({"sharePoint": {"byPath": {"web": "https://contoso.sharepoint.com", "list": "Shared Documents", "folder": "Policies"}}});
        v["typesAndSources"] = serde_json::json!({"mode": "all", "filters": [".DOCX", "folder"], "pivots": {"recent": false}});
        v["selection"] =
            serde_json::json!({"mode": "multiple", "maximumCount": 3, "enablePersistence": false});
        v["commands"] =
            serde_json::json!({"pick": {"label": "Use", "select": {"urls": {"download": true}}}});
        let o = ok(v);
        assert!(
            matches!(o.entry, Entry::SharePoint { ref list, .. } if list.as_deref() == Some("Shared Documents"))
        );
        assert_eq!(o.filters, vec![".docx", "folder"]);
        assert!(!o.pivots.recent && o.pivots.one_drive);
        assert_eq!(o.maximum_count, Some(3));
        assert!(!o.persistence && o.download_urls);
        assert_eq!(o.pick_label, "Use");
        let mut v = base();
        v["entry"] = serde_json::json!({"oneDrive": {"recent": {}}});
        assert_eq!(ok(v).entry, Entry::Recent);
        let mut v = base();
        v["entry"] = serde_json::json!({"site": {}});
        assert_eq!(ok(v).entry, Entry::Sites);
    }

    #[test]
    fn the_consumer_picker_has_no_sites() {
        let mut v = base();
        v["entry"] = serde_json::json!({"sharePoint": {}});
        assert!(
            parse(Some(&v.to_string()), true)
                .unwrap_err()
                .contains("personal")
        );
        let o = parse(Some(&base().to_string()), true).unwrap();
        assert!(!o.pivots.site && o.pivots.one_drive);
    }

    #[test]
    fn refusals_name_the_field() {
        assert!(parse(None, false).unwrap_err().contains("filePicker"));
        assert!(
            parse(Some("{nope"), false)
                .unwrap_err()
                .contains("not valid JSON")
        );
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"sdk": "7.2"}), "sdk"),
            (serde_json::json!({"entry": null}), "entry"),
            (
                serde_json::json!({"entry": {"oneDrive": {}, "sharePoint": {}}}),
                "either OneDrive or SharePoint",
            ),
            (
                serde_json::json!({"entry": {"oneDrive": {"photos": {}}}}),
                "photos",
            ),
            (
                serde_json::json!({"authentication": null}),
                "authentication",
            ),
            (
                serde_json::json!({"messaging": {"origin": "http://a.example/path", "channelId": "c"}}),
                "messaging.origin",
            ),
            (
                serde_json::json!({"messaging": {"origin": "javascript:alert(1)", "channelId": "c"}}),
                "messaging.origin",
            ),
            (
                serde_json::json!({"messaging": {"origin": "http://a.example", "channelId": ""}}),
                "messaging.channelId",
            ),
            (
                serde_json::json!({"typesAndSources": {"mode": "everything"}}),
                "typesAndSources.mode",
            ),
            (
                serde_json::json!({"typesAndSources": {"filters": ["docx"]}}),
                "typesAndSources.filters",
            ),
            (
                serde_json::json!({"selection": {"mode": "many"}}),
                "selection.mode",
            ),
            (
                serde_json::json!({"selection": {"maximumCount": 0}}),
                "selection.maximumCount",
            ),
        ];
        for (patch, needle) in cases {
            let mut v = base();
            for (k, val) in patch.as_object().expect("object") {
                if val.is_null() {
                    v.as_object_mut().expect("object").remove(k);
                } else {
                    v[k] = val.clone();
                }
            }
            let e = err(v.clone());
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}
