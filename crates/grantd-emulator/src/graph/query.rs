//! OData query options on driveItem reads, honoured or refused the way Graph does: `$orderby`
//! (`name`, `lastModifiedDateTime`, `size`, each `asc`/`desc`), `$filter` (the `file ne null` /
//! `folder ne null` facet tests OneDrive accepts on children), `$expand` (`children`,
//! `thumbnails`), `$select`, `$top`, `$skiptoken`. An option a path does not support answers
//! 400 `invalidRequest` instead of being silently ignored.

use std::cmp::Ordering;

use super::drives::{Drive, Item};
use super::error::GraphError;
use super::routes::ApiCtx;

/// Refuses `$`-options not in `allowed` (lower-case names, e.g. `"$top"`).
pub fn check_allowed(ctx: &ApiCtx, allowed: &[&str]) -> Result<(), GraphError> {
    let mut keys: Vec<&String> = ctx.query.keys().filter(|k| k.starts_with('$')).collect();
    keys.sort();
    match keys.into_iter().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(GraphError::invalid_request(format!(
            "The query option '{k}' is not supported on this resource."
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKey {
    Name,
    LastModified,
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub key: OrderKey,
    pub desc: bool,
}

impl Order {
    /// Name ascending: the default listing order.
    pub const DEFAULT: Order = Order {
        key: OrderKey::Name,
        desc: false,
    };
}

/// Parses `$orderby` (one property, optional `asc`/`desc`).
pub fn order(ctx: &ApiCtx) -> Result<Order, GraphError> {
    let Some(raw) = ctx.q("$orderby") else {
        return Ok(Order::DEFAULT);
    };
    let bad = || {
        GraphError::invalid_request(format!(
            "Invalid $orderby value '{raw}': order by name, lastModifiedDateTime or size, asc or desc."
        ))
    };
    if raw.contains(',') {
        return Err(bad());
    }
    let mut parts = raw.split_whitespace();
    let key = match parts.next().map(str::to_ascii_lowercase).as_deref() {
        Some("name") => OrderKey::Name,
        Some("lastmodifieddatetime") => OrderKey::LastModified,
        Some("size") => OrderKey::Size,
        _ => return Err(bad()),
    };
    let desc = match parts.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Order { key, desc })
}

/// Sorts items; ties fall back to the name so pages are stable.
pub fn sort(drive: &Drive, items: &mut [&Item], order: Order) {
    let by_name = |a: &Item, b: &Item| a.name.to_lowercase().cmp(&b.name.to_lowercase());
    items.sort_by(|a, b| {
        let primary = match order.key {
            OrderKey::Name => Ordering::Equal,
            OrderKey::LastModified => a.modified.cmp(&b.modified),
            OrderKey::Size => drive.size_of(&a.id).cmp(&drive.size_of(&b.id)),
        };
        let o = primary.then_with(|| by_name(a, b));
        if order.desc { o.reverse() } else { o }
    });
}

/// A `$filter` OneDrive accepts on children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    FilesOnly,
    FoldersOnly,
}

impl Filter {
    pub fn keeps(self, i: &Item) -> bool {
        match self {
            Filter::FilesOnly => !i.is_folder(),
            Filter::FoldersOnly => i.is_folder(),
        }
    }
}

pub fn filter(ctx: &ApiCtx) -> Result<Option<Filter>, GraphError> {
    let Some(raw) = ctx.q("$filter") else {
        return Ok(None);
    };
    let norm: Vec<String> = raw
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let norm: Vec<&str> = norm.iter().map(String::as_str).collect();
    match norm.as_slice() {
        ["file", "ne", "null"] | ["folder", "eq", "null"] => Ok(Some(Filter::FilesOnly)),
        ["folder", "ne", "null"] | ["file", "eq", "null"] => Ok(Some(Filter::FoldersOnly)),
        _ => Err(GraphError::invalid_request(format!(
            "Invalid filter clause: '{raw}' is not supported; filter children with 'file ne null' or 'folder ne null'."
        ))),
    }
}

/// What `$expand` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expand {
    pub children: bool,
    pub thumbnails: bool,
}

/// Parses `$expand`; `allow_children` is false where Graph does not expand children (lists).
pub fn expand(ctx: &ApiCtx, allow_children: bool) -> Result<Expand, GraphError> {
    let mut e = Expand::default();
    let Some(raw) = ctx.q("$expand") else {
        return Ok(e);
    };
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // `children($select=id,name)` style options are not supported by the emulator.
        match part.to_ascii_lowercase().as_str() {
            "children" if allow_children => e.children = true,
            "thumbnails" => e.thumbnails = true,
            _ => {
                return Err(GraphError::invalid_request(format!(
                    "Parsing OData Select and Expand failed: Could not find a property named '{part}' to expand here."
                )));
            }
        }
    }
    Ok(e)
}

/// Keeps `$select`ed properties plus the expanded ones (Graph returns expansions regardless).
pub fn select_keep_expanded(
    v: serde_json::Value,
    select: Option<&str>,
    e: Expand,
) -> serde_json::Value {
    let Some(sel) = select.filter(|s| !s.trim().is_empty()) else {
        return v;
    };
    let mut s = sel.to_owned();
    if e.children {
        s.push_str(",children");
    }
    if e.thumbnails {
        s.push_str(",thumbnails");
    }
    super::json::select(v, Some(&s))
}
