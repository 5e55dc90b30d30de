//! Parses a Graph resource path (the part after `/v1.0/`, or after `/_api/v2.0/` on SharePoint)
//! from the raw, still percent-encoded URI, including path addressing
//! (`root:/a/b.txt:/content`), and names the route template used by the counters.
//!
//! axum's router cannot match `:`-delimited path addressing, so Graph requests come in through
//! one catch-all route and are parsed here.

use super::error::GraphError;

/// Whose drive(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveRef {
    Me,
    User(String),
    Id(String),
    Site(SiteRef),
    /// `/drives` without an id: the tenant root site's libraries (Graph) or the host's drives
    /// (SharePoint).
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRef {
    Root,
    /// A site id (`host,guid,guid`) or hostname.
    Key(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemBase {
    Root,
    Id(String),
    /// `special/approot`: the calling app's folder (`Apps/{app name}`), created on first use.
    AppRoot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOp {
    Item,
    Children,
    Content,
    CreateUploadSession,
    Delta,
    /// `search(q='…')`; the query text is read from the raw path.
    Search,
    Thumbnails,
    Permissions,
    CreateLink,
    Invite,
    Versions,
    /// `POST …/copy` (asynchronous, with a monitor URL).
    Copy,
    /// `POST …/items/{id}/restore`: out of the recycle bin (OneDrive personal).
    Restore,
}

/// Drive-level collections that are not a folder listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveList {
    SharedWithMe,
    Recent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Me,
    User(String),
    Drive(DriveRef),
    Drives(DriveRef),
    Item {
        drive: DriveRef,
        base: ItemBase,
        path: Vec<String>,
        op: ItemOp,
    },
    Site(SiteRef),
    /// `…/drive/sharedWithMe`, `…/drive/recent`.
    DriveList(DriveRef, DriveList),
}

/// Percent-decodes one path segment (`+` stays `+`).
pub fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a name for use in a URL path segment.
pub fn encode(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits off the first `/`-separated segment.
fn take(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

enum Prefix<'a> {
    Done(Route, String),
    /// A drive, its template, and what follows it (empty or starting with `/`).
    Drive(DriveRef, String, &'a str),
}

fn strip_slash(s: &str) -> &str {
    s.strip_prefix('/').unwrap_or(s)
}

/// The part naming a user, a drive or a site.
fn parse_prefix(rest: &str) -> Result<Prefix<'_>, GraphError> {
    let (first, after) = take(rest);
    let after = strip_slash(after);
    match first {
        "me" | "users" => {
            let (owner, tpl, after) = if first == "me" {
                (DriveRef::Me, "me".to_owned(), after)
            } else {
                let (id, a) = take(after);
                if id.is_empty() {
                    return Err(GraphError::bad_segment("users"));
                }
                (
                    DriveRef::User(decode(id)),
                    "users/{id}".to_owned(),
                    strip_slash(a),
                )
            };
            let (seg, a) = take(after);
            match seg {
                "" => {
                    let route = match owner {
                        DriveRef::User(u) => Route::User(u),
                        _ => Route::Me,
                    };
                    Ok(Prefix::Done(route, tpl))
                }
                "drive" => Ok(Prefix::Drive(owner, format!("{tpl}/drive"), a)),
                "drives" if a.is_empty() => {
                    Ok(Prefix::Done(Route::Drives(owner), format!("{tpl}/drives")))
                }
                other => Err(GraphError::bad_segment(other)),
            }
        }
        // OneDrive API style `/drive/...` (SharePoint's v2.0 API) = the signed-in user's drive.
        "drive" => {
            let remainder = &rest[first.len()..];
            Ok(Prefix::Drive(DriveRef::Me, "drive".into(), remainder))
        }
        "drives" => {
            let (id, a) = take(after);
            if id.is_empty() {
                return Ok(Prefix::Done(
                    Route::Drives(DriveRef::Default),
                    "drives".into(),
                ));
            }
            Ok(Prefix::Drive(
                DriveRef::Id(decode(id)),
                "drives/{drive-id}".into(),
                a,
            ))
        }
        "sites" => {
            let (key, a) = take(after);
            let (site, a) = match key {
                "" => return Err(GraphError::bad_segment("sites")),
                "root" => (SiteRef::Root, a),
                k => match k.split_once(':') {
                    // `{hostname}:/server/relative/path:` addresses a site by URL; only root
                    // sites are seeded, so only an empty path resolves.
                    Some((host, _)) => {
                        let p = &after[host.len() + 1..];
                        let (path, a) = match p.find(':') {
                            Some(i) => (&p[..i], &p[i + 1..]),
                            None => (p, ""),
                        };
                        if !path.trim_matches('/').is_empty() {
                            return Err(GraphError::item_not_found());
                        }
                        (SiteRef::Key(decode(host)), a)
                    }
                    None => (SiteRef::Key(decode(k)), a),
                },
            };
            let tpl = if site == SiteRef::Root {
                "sites/root"
            } else {
                "sites/{site-id}"
            };
            let (seg, a2) = take(strip_slash(a));
            match seg {
                "" => Ok(Prefix::Done(Route::Site(site), tpl.into())),
                "drives" if a2.is_empty() => Ok(Prefix::Done(
                    Route::Drives(DriveRef::Site(site)),
                    format!("{tpl}/drives"),
                )),
                "drive" => Ok(Prefix::Drive(
                    DriveRef::Site(site),
                    format!("{tpl}/drive"),
                    a2,
                )),
                other => Err(GraphError::bad_segment(other)),
            }
        }
        other => Err(GraphError::bad_segment(other)),
    }
}

/// Parses `rest` (no leading slash) into a route and its template (e.g.
/// `me/drive/items/{item-id}/children`).
pub fn parse(rest: &str) -> Result<(Route, String), GraphError> {
    let rest = rest.trim_end_matches('/');
    let (drive, mut tpl, remainder) = match parse_prefix(rest)? {
        Prefix::Done(route, tpl) => return Ok((route, tpl)),
        Prefix::Drive(d, t, r) => (d, t, r),
    };
    if remainder.is_empty() {
        return Ok((Route::Drive(drive), tpl));
    }
    let r = strip_slash(remainder);
    for (seg, list) in [
        ("sharedWithMe", DriveList::SharedWithMe),
        ("recent", DriveList::Recent),
    ] {
        if r == seg || r.strip_prefix(seg) == Some("()") {
            tpl.push('/');
            tpl.push_str(seg);
            return Ok((Route::DriveList(drive, list), tpl));
        }
    }
    let (base, r) = if let Some(r) = r.strip_prefix("special/approot") {
        tpl.push_str("/special/approot");
        (ItemBase::AppRoot, r)
    } else if let Some(r) = r.strip_prefix("root") {
        tpl.push_str("/root");
        (ItemBase::Root, r)
    } else if let Some(r) = r.strip_prefix("items/") {
        let end = r.find(['/', ':']).unwrap_or(r.len());
        tpl.push_str("/items/{item-id}");
        (ItemBase::Id(decode(&r[..end])), &r[end..])
    } else {
        return Err(GraphError::bad_segment(take(r).0));
    };
    let (path, r) = match r.strip_prefix(':') {
        Some(p) => {
            let (path, r) = match p.find(':') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, ""),
            };
            tpl.push_str(":/{path}:");
            let segs: Vec<String> = path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(decode)
                .collect();
            (segs, r)
        }
        None => (Vec::new(), r),
    };
    let op = match r {
        "" => ItemOp::Item,
        "/children" => ItemOp::Children,
        "/content" => ItemOp::Content,
        "/createUploadSession" => ItemOp::CreateUploadSession,
        "/delta" | "/delta()" => ItemOp::Delta,
        "/thumbnails" => ItemOp::Thumbnails,
        "/permissions" => ItemOp::Permissions,
        "/createLink" => ItemOp::CreateLink,
        "/invite" => ItemOp::Invite,
        "/versions" => ItemOp::Versions,
        s if s.starts_with("/search(") && s.ends_with(')') => ItemOp::Search,
        "/copy" => ItemOp::Copy,
        "/restore" => ItemOp::Restore,
        other => return Err(GraphError::bad_segment(other.trim_start_matches('/'))),
    };
    tpl.push_str(match op {
        ItemOp::Item => "",
        ItemOp::Children => "/children",
        ItemOp::Content => "/content",
        ItemOp::CreateUploadSession => "/createUploadSession",
        ItemOp::Delta => "/delta",
        ItemOp::Search => "/search",
        ItemOp::Thumbnails => "/thumbnails",
        ItemOp::Permissions => "/permissions",
        ItemOp::CreateLink => "/createLink",
        ItemOp::Invite => "/invite",
        ItemOp::Versions => "/versions",
        ItemOp::Copy => "/copy",
        ItemOp::Restore => "/restore",
    });
    Ok((
        Route::Item {
            drive,
            base,
            path,
            op,
        },
        tpl,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(rest: &str) -> (DriveRef, ItemBase, Vec<String>, ItemOp, String) {
        match parse(rest).expect("parses") {
            (
                Route::Item {
                    drive,
                    base,
                    path,
                    op,
                },
                tpl,
            ) => (drive, base, path, op, tpl),
            other => panic!("not an item route: {other:?}"),
        }
    }

    #[test]
    fn path_addressing() {
        let (d, b, p, op, tpl) = item("me/drive/root:/Documents/Report%20A.docx");
        assert_eq!((d, b, op), (DriveRef::Me, ItemBase::Root, ItemOp::Item));
        assert_eq!(p, vec!["Documents", "Report A.docx"]);
        assert_eq!(tpl, "me/drive/root:/{path}:");

        let (_, _, p, op, _) = item("drives/b!x/root:/a:/children");
        assert_eq!((p, op), (vec!["a".to_owned()], ItemOp::Children));

        let (d, b, p, op, tpl) = item("drives/b!x/items/01ABC:/new.txt:/content");
        assert_eq!(d, DriveRef::Id("b!x".into()));
        assert_eq!(b, ItemBase::Id("01ABC".into()));
        assert_eq!((p, op), (vec!["new.txt".to_owned()], ItemOp::Content));
        assert_eq!(tpl, "drives/{drive-id}/items/{item-id}:/{path}:/content");

        let (_, _, p, op, _) = item("me/drive/root:/a/b.txt:");
        assert_eq!((p.len(), op), (2, ItemOp::Item));
    }

    #[test]
    fn other_routes() {
        assert_eq!(parse("me").expect("me").0, Route::Me);
        assert_eq!(
            parse("me/drives").expect("drives").0,
            Route::Drives(DriveRef::Me)
        );
        assert_eq!(
            parse("users/adele%40contoso.onmicrosoft.com/drive")
                .expect("drive")
                .0,
            Route::Drive(DriveRef::User("adele@contoso.onmicrosoft.com".into()))
        );
        assert_eq!(
            parse("sites/root/drives").expect("s").1,
            "sites/root/drives"
        );
        assert_eq!(
            parse("sites/contoso.sharepoint.com:/:").expect("s").0,
            Route::Site(SiteRef::Key("contoso.sharepoint.com".into()))
        );
        assert_eq!(
            parse("sites/contoso.sharepoint.com:/:/drives")
                .expect("s")
                .0,
            Route::Drives(DriveRef::Site(SiteRef::Key(
                "contoso.sharepoint.com".into()
            )))
        );
        assert!(parse("sites/contoso.sharepoint.com:/sites/x").is_err());
        assert_eq!(item("me/drive/root/delta").3, ItemOp::Delta);
        assert_eq!(item("drive/items/X!1/children").0, DriveRef::Me);
        assert!(parse("nope").is_err());
        assert!(parse("me/drive/bogus").is_err());
    }

    #[test]
    fn read_surface_routes() {
        let (_, b, _, op, tpl) = item("me/drive/root/search(q='report')");
        assert_eq!((b, op), (ItemBase::Root, ItemOp::Search));
        assert_eq!(tpl, "me/drive/root/search");
        let (_, b, _, op, _) = item("me/drive/special/approot:/a.txt:/content");
        assert_eq!((b, op), (ItemBase::AppRoot, ItemOp::Content));
        assert_eq!(item("drives/x/items/1/thumbnails").3, ItemOp::Thumbnails);
        assert_eq!(item("me/drive/items/1/createLink").3, ItemOp::CreateLink);
        assert_eq!(
            parse("me/drive/sharedWithMe()").expect("swm").0,
            Route::DriveList(DriveRef::Me, DriveList::SharedWithMe)
        );
        assert_eq!(
            parse("me/drive/recent").expect("recent").1,
            "me/drive/recent"
        );
    }

    #[test]
    fn decode_handles_edges() {
        assert_eq!(decode("a%20b%2Fc"), "a b/c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
