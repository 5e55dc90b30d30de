//! The in-memory drive model: drives (OneDrive business/personal, SharePoint libraries), their
//! items as a parent-linked map, sites, and the change sequence that delta reads.
//!
//! Every mutation stamps the changed item and all its ancestors (root first) with the drive's next
//! sequence number, so "changes since token N" is "items with seq > N" and parents precede
//! children. Deleted items stay as tombstones (`deleted = true`) for delta.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::content::Content;
use super::error::GraphError;

/// Which kind of drive, as Graph's `driveType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveType {
    /// OneDrive for Business.
    Business,
    /// Consumer OneDrive of a personal Microsoft account.
    Personal,
    /// SharePoint document library.
    DocumentLibrary,
}

impl DriveType {
    pub fn as_str(self) -> &'static str {
        match self {
            DriveType::Business => "business",
            DriveType::Personal => "personal",
            DriveType::DocumentLibrary => "documentLibrary",
        }
    }
}

/// An identity as Graph's identitySet `user` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub display_name: String,
    pub email: Option<String>,
}

impl Identity {
    pub fn system() -> Identity {
        Identity {
            id: String::new(),
            display_name: "System Account".into(),
            email: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub name: String,
    /// `None` for the root.
    pub parent: Option<String>,
    /// `None` for folders.
    pub file: Option<FileData>,
    pub created: DateTime<Utc>,
    pub created_by: Identity,
    pub modified: DateTime<Utc>,
    pub modified_by: Identity,
    /// Stable per item; the GUID inside eTag/cTag.
    pub guid: String,
    /// Bumped on every change (eTag).
    pub version: u32,
    /// Bumped on content changes (cTag, download URLs).
    pub content_version: u32,
    /// Drive sequence number of the last change (delta).
    pub seq: u64,
    /// The item's depth when `seq` was stamped: with `ordinal`, its place in a delta round. It
    /// changes only with `seq`, so a descendant of a moved folder (not stamped, as on OneDrive
    /// for Business) keeps its place in the round it belongs to.
    pub seq_depth: u64,
    /// Creation order within the drive; with the depth, orders delta pages parents-first.
    pub ordinal: u64,
    pub deleted: bool,
    /// For a deleted item: the item whose delete removed it (itself when it was deleted on its
    /// own; a folder's id for what went with it) — the recycle bin entry that restores it.
    pub recycled_with: Option<String>,
    /// Client-settable properties (`PATCH`, upload sessions).
    pub meta: ItemMeta,
}

/// What clients set on an item besides its name and place: `description` and the
/// `fileSystemInfo` times (which default to the server's times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemMeta {
    pub description: Option<String>,
    pub fs_created: Option<DateTime<Utc>>,
    pub fs_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct FileData {
    pub content: Content,
    pub mime: String,
    /// base64 QuickXorHash; `None` for generated content (not worth hashing 1 GiB at seed time;
    /// OneDrive for Business also omits hashes at times).
    pub quick_xor: Option<String>,
}

impl Item {
    pub fn is_folder(&self) -> bool {
        self.file.is_none()
    }
    pub fn size_of_file(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.content.len())
    }
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub id: String,
    pub drive_type: DriveType,
    pub name: String,
    pub description: String,
    pub tenant_id: String,
    /// The user whose OneDrive this is; `None` for libraries.
    pub owner_user: Option<String>,
    pub owner: Identity,
    pub site_id: Option<String>,
    pub web_url: String,
    pub created: DateTime<Utc>,
    pub quota_total: u64,
    pub root_id: String,
    pub items: HashMap<String, Item>,
    /// parent id → child ids (tombstones included; filtered on read), so listings and folder
    /// sizes do not scan the whole drive.
    children_index: HashMap<String, Vec<String>>,
    /// Last change sequence number handed out.
    pub seq: u64,
    next_item: u64,
    /// item id → sharing links and invitations made on it (`createLink`, `invite`).
    pub permissions: HashMap<String, Vec<super::extra::Permission>>,
    /// Bumped by the control API to make this drive's delta tokens stale (`410
    /// resyncRequired` on their next use), as Graph does when it cannot serve changes.
    pub resync_epoch: u64,
    /// The parents-first order of the delta rounds being paged (see `delta.rs`), so a page
    /// costs O(page) rather than a scan and sort of the whole drive.
    pub delta_rounds: super::delta::RoundOrders,
}

/// A SharePoint site (only tenant root sites are seeded).
#[derive(Debug, Clone)]
pub struct Site {
    /// `{hostname},{siteCollectionGuid},{webGuid}`.
    pub id: String,
    pub tenant_id: String,
    pub host: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    pub created: DateTime<Utc>,
    pub drive_ids: Vec<String>,
}

/// What to do when the target name exists (`@microsoft.graph.conflictBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    pub fn parse(s: Option<&str>, default: Conflict) -> Result<Conflict, GraphError> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("fail") => Ok(Conflict::Fail),
            Some("replace") => Ok(Conflict::Replace),
            Some("rename") => Ok(Conflict::Rename),
            Some(other) => Err(GraphError::invalid_request(format!(
                "Invalid value '{other}' for @microsoft.graph.conflictBehavior."
            ))),
        }
    }
}

/// Deterministic GUID-shaped string from a seed.
pub fn guid_from(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// RFC 4648 base32 (no padding), uppercase.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A business/SharePoint drive id: `b!` + base64url of 48 bytes derived from `seed` (66 chars).
pub fn business_drive_id(seed: &str) -> String {
    let a = Sha256::digest(format!("drive:{seed}").as_bytes());
    let b = Sha256::digest(a);
    let mut bytes = a.to_vec();
    bytes.extend_from_slice(&b[..16]);
    format!(
        "b!{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A personal drive id: 16 lowercase hex chars derived from `seed`.
pub fn personal_drive_id(seed: &str) -> String {
    hex::encode(&Sha256::digest(format!("cid:{seed}").as_bytes())[..8])
}

impl Drive {
    pub fn new(
        id: String,
        drive_type: DriveType,
        name: &str,
        tenant_id: &str,
        owner: Identity,
        web_url: String,
        created: DateTime<Utc>,
    ) -> Drive {
        let mut d = Drive {
            id,
            drive_type,
            name: name.into(),
            description: String::new(),
            tenant_id: tenant_id.into(),
            owner_user: None,
            owner: owner.clone(),
            site_id: None,
            web_url,
            created,
            quota_total: 1 << 40,
            root_id: String::new(),
            items: HashMap::new(),
            children_index: HashMap::new(),
            seq: 0,
            next_item: 0,
            permissions: HashMap::new(),
            resync_epoch: 0,
            delta_rounds: super::delta::RoundOrders::default(),
        };
        let root_id = d.new_item_id();
        d.seq += 1;
        let root = Item {
            id: root_id.clone(),
            name: "root".into(),
            parent: None,
            file: None,
            created,
            created_by: owner.clone(),
            modified: created,
            modified_by: owner,
            guid: guid_from(&root_id),
            version: 1,
            content_version: 1,
            seq: d.seq,
            seq_depth: 0,
            ordinal: d.next_item,
            deleted: false,
            recycled_with: None,
            meta: ItemMeta::default(),
        };
        d.items.insert(root_id.clone(), root);
        d.root_id = root_id;
        d
    }

    fn new_item_id(&mut self) -> String {
        self.next_item += 1;
        match self.drive_type {
            DriveType::Personal => format!("{}!{}", self.id.to_uppercase(), 100 + self.next_item),
            _ => {
                let h = Sha256::digest(format!("{}:{}", self.id, self.next_item).as_bytes());
                format!("01{}", base32(&h[..20]))
            }
        }
    }

    /// A live (not deleted) item.
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.get(id).filter(|i| !i.deleted)
    }

    pub fn root(&self) -> &Item {
        self.items
            .get(&self.root_id)
            .expect("every drive has a root")
    }

    /// Live children, sorted by name (case-insensitive).
    pub fn children(&self, id: &str) -> Vec<&Item> {
        let mut v: Vec<&Item> = self
            .children_index
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|c| self.item(c))
            .collect();
        v.sort_by_cached_key(|i| i.name.to_lowercase());
        v
    }

    pub fn child_by_name(&self, parent: &str, name: &str) -> Option<&Item> {
        let lower = name.to_lowercase();
        self.children_index
            .get(parent)?
            .iter()
            .filter_map(|c| self.item(c))
            .find(|i| i.name.to_lowercase() == lower)
    }

    /// Walks `segments` (decoded names) down from `from`.
    pub fn resolve_path(&self, from: &str, segments: &[String]) -> Option<&Item> {
        let mut cur = self.item(from)?;
        for s in segments {
            cur = self.child_by_name(&cur.id, s)?;
        }
        Some(cur)
    }

    /// Names from the root (exclusive) down to `id` (inclusive).
    pub fn path_names(&self, id: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut cur = self.items.get(id);
        while let Some(i) = cur {
            if i.parent.is_none() {
                break;
            }
            names.push(i.name.clone());
            cur = i.parent.as_deref().and_then(|p| self.items.get(p));
        }
        names.reverse();
        names
    }

    /// Number of ancestors (0 for the root); tombstones keep their parent link.
    pub fn depth(&self, id: &str) -> u64 {
        let mut n = 0;
        let mut cur = self.items.get(id).and_then(|i| i.parent.as_deref());
        while let Some(p) = cur {
            n += 1;
            cur = self.items.get(p).and_then(|i| i.parent.as_deref());
        }
        n
    }

    /// Stamps `id` and its ancestors with fresh sequence numbers, root first.
    fn touch(&mut self, id: &str, now: DateTime<Utc>, by: &Identity, content_changed: bool) {
        let mut chain = vec![id.to_owned()];
        let mut cur = self.items.get(id).and_then(|i| i.parent.clone());
        while let Some(p) = cur {
            cur = self.items.get(&p).and_then(|i| i.parent.clone());
            chain.push(p);
        }
        for (n, item_id) in chain.iter().rev().enumerate() {
            self.seq += 1;
            let seq = self.seq;
            let is_target = n == chain.len() - 1;
            if let Some(i) = self.items.get_mut(item_id) {
                i.seq = seq;
                i.seq_depth = n as u64;
                i.version += 1;
                if is_target {
                    i.modified = now;
                    i.modified_by = by.clone();
                }
                if !is_target || content_changed {
                    i.content_version += 1;
                }
            }
        }
    }

    /// `name` made unique in `parent` the way OneDrive renames: `name 1.ext`, `name 2.ext`…
    fn unique_name(&self, parent: &str, name: &str) -> String {
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        (1..)
            .map(|n| format!("{stem} {n}{ext}"))
            .find(|c| self.child_by_name(parent, c).is_none())
            .expect("an unused name exists")
    }

    /// Creates an item under `parent`, or replaces the file of the same name. Returns the item
    /// id and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn put_item(
        &mut self,
        parent: &str,
        name: &str,
        file: Option<FileData>,
        conflict: Conflict,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<(String, bool), GraphError> {
        validate_name(name)?;
        let parent_item = self.item(parent).ok_or_else(GraphError::item_not_found)?;
        if !parent_item.is_folder() {
            return Err(GraphError::invalid_request(
                "The parent item is not a folder.",
            ));
        }
        let mut name = name.to_owned();
        if let Some(existing) = self.child_by_name(parent, &name) {
            match conflict {
                Conflict::Fail => return Err(GraphError::name_already_exists()),
                Conflict::Rename => name = self.unique_name(parent, &name),
                Conflict::Replace => {
                    let id = existing.id.clone();
                    if existing.is_folder() != file.is_none() {
                        return Err(GraphError::name_already_exists());
                    }
                    if let Some(f) = file {
                        self.replace_content(&id, f, now, by)?;
                    }
                    return Ok((id, false));
                }
            }
        }
        Ok((self.insert_new(parent, name, file, now, by), true))
    }

    /// Creates an item under `parent` that the caller knows to be a folder without a child of
    /// that name (bulk seeding checks names once per folder); returns its id.
    pub fn insert_new(
        &mut self,
        parent: &str,
        name: String,
        file: Option<FileData>,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> String {
        let id = self.new_item_id();
        let item = Item {
            id: id.clone(),
            name,
            parent: Some(parent.to_owned()),
            file,
            created: now,
            created_by: by.clone(),
            modified: now,
            modified_by: by.clone(),
            guid: guid_from(&id),
            version: 0,
            content_version: 0,
            seq: 0,
            seq_depth: 0,
            ordinal: self.next_item,
            deleted: false,
            recycled_with: None,
            meta: ItemMeta::default(),
        };
        self.items.insert(id.clone(), item);
        self.children_index
            .entry(parent.to_owned())
            .or_default()
            .push(id.clone());
        self.touch(&id, now, by, true);
        id
    }

    pub fn replace_content(
        &mut self,
        id: &str,
        file: FileData,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<(), GraphError> {
        let item = self
            .items
            .get_mut(id)
            .filter(|i| !i.deleted)
            .ok_or_else(GraphError::item_not_found)?;
        if item.is_folder() {
            return Err(GraphError::invalid_request(
                "Cannot upload content to a folder.",
            ));
        }
        item.file = Some(file);
        // New content without client times: fileSystemInfo follows the server again.
        item.meta.fs_modified = None;
        self.touch(id, now, by, true);
        Ok(())
    }

    /// Deletes an item and everything below it (tombstones stay for delta).
    pub fn delete(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<(), GraphError> {
        let item = self.item(id).ok_or_else(GraphError::item_not_found)?;
        let Some(parent) = item.parent.clone() else {
            return Err(GraphError::new(
                http::StatusCode::FORBIDDEN,
                "accessDenied",
                "The root of a drive cannot be deleted.",
            ));
        };
        // Descendants first, then the item, so tombstones of children precede the parent.
        let mut order = Vec::new();
        let mut stack = vec![id.to_owned()];
        while let Some(cur) = stack.pop() {
            stack.extend(self.children(&cur).iter().map(|c| c.id.clone()));
            order.push(cur);
        }
        self.touch(&parent, now, by, false);
        for item_id in order.iter().rev() {
            self.seq += 1;
            let seq = self.seq;
            let depth = self.depth(item_id);
            if let Some(i) = self.items.get_mut(item_id) {
                i.deleted = true;
                i.recycled_with = Some(id.to_owned());
                i.seq = seq;
                i.seq_depth = depth;
                i.version += 1;
                i.modified = now;
                i.modified_by = by.clone();
            }
        }
        Ok(())
    }

    /// Restores a deleted item from the recycle bin, as OneDrive does: back into its old folder
    /// (deleted folders above it come back too, without their other contents), under a unique
    /// name when a live item took its name meanwhile, together with everything its own delete
    /// removed (a folder's subtree; items deleted on their own before stay in the bin). Each
    /// restored item gets a new version and sequence number, parents first, so delta reports
    /// them as items again (not tombstones). Returns the ids restored, top first.
    pub fn restore(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<Vec<String>, GraphError> {
        let item = self.items.get(id).ok_or_else(GraphError::item_not_found)?;
        if !item.deleted {
            return Err(GraphError::invalid_request(
                "The item is not in the recycle bin.",
            ));
        }
        // Deleted ancestors first (root side first), then the item.
        let mut chain = vec![id.to_owned()];
        let mut cur = item.parent.clone();
        while let Some(p) = cur {
            let Some(pi) = self.items.get(&p) else { break };
            if !pi.deleted {
                break;
            }
            cur = pi.parent.clone();
            chain.push(p);
        }
        chain.reverse();
        for cur in &chain {
            self.revive(cur, now, by);
        }
        // What went with it, parents first.
        let mut out = vec![id.to_owned()];
        let mut queue = std::collections::VecDeque::from([id.to_owned()]);
        while let Some(cur) = queue.pop_front() {
            let mut kids: Vec<String> = self
                .children_index
                .get(&cur)
                .into_iter()
                .flatten()
                .filter(|c| {
                    self.items
                        .get(*c)
                        .is_some_and(|i| i.deleted && i.recycled_with.as_deref() == Some(id))
                })
                .cloned()
                .collect();
            kids.sort_by_key(|k| self.items[k].ordinal);
            for k in kids {
                self.seq += 1;
                let seq = self.seq;
                let depth = self.depth(&k);
                if let Some(i) = self.items.get_mut(&k) {
                    i.deleted = false;
                    i.recycled_with = None;
                    i.seq = seq;
                    i.seq_depth = depth;
                    i.version += 1;
                }
                out.push(k.clone());
                queue.push_back(k);
            }
        }
        Ok(out)
    }

    /// Brings one deleted item back in its parent (which is live), renamed when its name is
    /// taken, and stamps it (and its ancestors).
    fn revive(&mut self, id: &str, now: DateTime<Utc>, by: &Identity) {
        let Some((name, parent)) = self
            .items
            .get(id)
            .map(|i| (i.name.clone(), i.parent.clone()))
        else {
            return;
        };
        let name = match &parent {
            Some(p) if self.child_by_name(p, &name).is_some() => self.unique_name(p, &name),
            _ => name,
        };
        if let Some(i) = self.items.get_mut(id) {
            i.deleted = false;
            i.recycled_with = None;
            i.name = name;
        }
        self.touch(id, now, by, false);
    }

    /// Whether `id` is `ancestor` or below it.
    pub fn is_within(&self, id: &str, ancestor: &str) -> bool {
        let mut cur = Some(id.to_owned());
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            cur = self.items.get(&c).and_then(|i| i.parent.clone());
        }
        false
    }

    /// Renames and/or moves an item and sets its client metadata (`PATCH`). A move stamps the
    /// old parent chain and the item with its new ancestors; descendants are not stamped (delta
    /// does not report them, as on OneDrive for Business and, here, personal drives too).
    #[allow(clippy::too_many_arguments)]
    pub fn update_item(
        &mut self,
        id: &str,
        new_name: Option<&str>,
        new_parent: Option<&str>,
        meta: ItemMeta,
        conflict: Conflict,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<(), GraphError> {
        let item = self.item(id).ok_or_else(GraphError::item_not_found)?;
        let Some(old_parent) = item.parent.clone() else {
            if new_name.is_some() || new_parent.is_some() {
                return Err(GraphError::invalid_request(
                    "The root of a drive cannot be renamed or moved.",
                ));
            }
            return Err(GraphError::invalid_request(
                "The root of a drive cannot be changed.",
            ));
        };
        let parent = new_parent.unwrap_or(&old_parent).to_owned();
        let mut name = new_name.unwrap_or(&item.name).to_owned();
        validate_name(&name)?;
        let target = self.item(&parent).ok_or_else(GraphError::item_not_found)?;
        if !target.is_folder() {
            return Err(GraphError::invalid_request(
                "The parent item is not a folder.",
            ));
        }
        if self.is_within(&parent, id) {
            return Err(GraphError::invalid_request(
                "An item cannot be moved into itself or one of its descendants.",
            ));
        }
        let moved = parent != old_parent;
        if let Some(existing) = self.child_by_name(&parent, &name)
            && existing.id != id
        {
            match conflict {
                Conflict::Rename => name = self.unique_name(&parent, &name),
                Conflict::Replace if existing.is_folder() == self.items[id].is_folder() => {
                    let victim = existing.id.clone();
                    self.delete(&victim, now, by)?;
                }
                _ => return Err(GraphError::name_already_exists()),
            }
        }
        if moved {
            if let Some(v) = self.children_index.get_mut(&old_parent) {
                v.retain(|c| c != id);
            }
            self.children_index
                .entry(parent.clone())
                .or_default()
                .push(id.to_owned());
            self.touch(&old_parent, now, by, false);
        }
        let item = self.items.get_mut(id).expect("checked above");
        item.name = name;
        item.parent = Some(parent);
        if let Some(d) = meta.description {
            item.meta.description = Some(d);
        }
        if meta.fs_created.is_some() {
            item.meta.fs_created = meta.fs_created;
        }
        if meta.fs_modified.is_some() {
            item.meta.fs_modified = meta.fs_modified;
        }
        // Only the item and its ancestors (old and new chain): like OneDrive for Business, delta
        // does not report the descendants of a renamed or moved folder ("the children technically
        // don't have a metadata change", OneDrive/onedrive-api-docs#1155); a client derives
        // their new paths from the folder's. Their delta place (`seq_depth`) stays put, so a
        // round being paged still reports those that changed before.
        self.touch(id, now, by, false);
        Ok(())
    }

    /// Sets client metadata on an item without touching its name or place.
    pub fn set_meta(&mut self, id: &str, meta: ItemMeta) {
        if let Some(i) = self.items.get_mut(id) {
            if meta.description.is_some() {
                i.meta.description = meta.description;
            }
            if meta.fs_created.is_some() {
                i.meta.fs_created = meta.fs_created;
            }
            if meta.fs_modified.is_some() {
                i.meta.fs_modified = meta.fs_modified;
            }
        }
    }

    /// Walks `names` below `parent`, creating missing folders; returns the last folder's id.
    /// A file in the way answers 409.
    pub fn ensure_folders(
        &mut self,
        parent: &str,
        names: &[String],
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<String, GraphError> {
        let mut cur = parent.to_owned();
        for n in names {
            cur = match self.child_by_name(&cur, n) {
                Some(i) if i.is_folder() => i.id.clone(),
                Some(_) => return Err(GraphError::name_already_exists()),
                None => self.put_item(&cur, n, None, Conflict::Fail, now, by)?.0,
            };
        }
        Ok(cur)
    }

    /// A copy of the subtree at `id`: (relative parent index, name, file, meta), parents first.
    pub fn snapshot(&self, id: &str) -> Vec<(Option<usize>, String, Option<FileData>, ItemMeta)> {
        let mut out = Vec::new();
        let Some(root) = self.item(id) else {
            return out;
        };
        out.push((
            None,
            root.name.clone(),
            root.file.clone(),
            root.meta.clone(),
        ));
        let mut queue = vec![(0usize, id.to_owned())];
        while let Some((idx, cur)) = queue.pop() {
            for c in self.children(&cur) {
                out.push((Some(idx), c.name.clone(), c.file.clone(), c.meta.clone()));
                queue.push((out.len() - 1, c.id.clone()));
            }
        }
        out
    }

    /// Recreates a [`Drive::snapshot`] under `parent` (the top item named `name`); returns the
    /// new top item's id.
    pub fn paste(
        &mut self,
        parent: &str,
        name: &str,
        snapshot: Vec<(Option<usize>, String, Option<FileData>, ItemMeta)>,
        conflict: Conflict,
        now: DateTime<Utc>,
        by: &Identity,
    ) -> Result<String, GraphError> {
        let mut ids: Vec<String> = Vec::with_capacity(snapshot.len());
        for (rel, n, file, meta) in snapshot {
            let (p, n, c) = match rel {
                None => (parent.to_owned(), name.to_owned(), conflict),
                Some(r) => (ids[r].clone(), n, Conflict::Fail),
            };
            let (id, _) = self.put_item(&p, &n, file, c, now, by)?;
            self.set_meta(&id, meta);
            ids.push(id);
        }
        ids.into_iter()
            .next()
            .ok_or_else(GraphError::item_not_found)
    }

    /// Bytes used by live files.
    pub fn used(&self) -> u64 {
        self.items
            .values()
            .filter(|i| !i.deleted)
            .map(Item::size_of_file)
            .sum()
    }

    /// Size of an item: file length, or the sum of a folder's descendants.
    pub fn size_of(&self, id: &str) -> u64 {
        let Some(item) = self.item(id) else { return 0 };
        if !item.is_folder() {
            return item.size_of_file();
        }
        self.children(id).iter().map(|c| self.size_of(&c.id)).sum()
    }
}

/// OneDrive's rules for names: not empty, no `"*:<>?/\|`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), GraphError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 400
        || name
            .chars()
            .any(|c| "\"*:<>?/\\|".contains(c) || c.is_control());
    if bad {
        return Err(GraphError::invalid_request(format!(
            "The provided name '{name}' is not valid."
        )));
    }
    Ok(())
}

/// Everything `Drives` holds behind its lock.
#[derive(Debug, Default)]
pub struct Model {
    /// Random per seed/reset; stale delta tokens and download URLs from before a reset fail.
    pub generation: u64,
    /// Signs download URLs; a new key per seed/reset.
    pub signer: crate::files::UrlSigner,
    pub large_file_size: u64,
    pub drives: BTreeMap<String, Drive>,
    /// user id → drive id.
    pub user_drives: HashMap<String, String>,
    pub sites: BTreeMap<String, Site>,
    pub sessions: HashMap<String, Arc<tokio::sync::Mutex<super::upload::UploadSession>>>,
    /// Copy operations by monitor id.
    pub copy_jobs: HashMap<String, super::write::CopyJob>,
}

impl Model {
    /// Drive ids are matched exactly, then case-insensitively (personal drive ids show up in
    /// either case).
    pub fn drive(&self, id: &str) -> Option<&Drive> {
        self.drives.get(id).or_else(|| {
            let lower = id.to_ascii_lowercase();
            self.drives
                .values()
                .find(|d| d.id.to_ascii_lowercase() == lower)
        })
    }

    pub fn drive_mut(&mut self, id: &str) -> Option<&mut Drive> {
        let key = self.drive(id)?.id.clone();
        self.drives.get_mut(&key)
    }

    pub fn site(&self, key: &str) -> Option<&Site> {
        let lower = key.to_ascii_lowercase();
        self.sites
            .values()
            .find(|s| s.id.to_ascii_lowercase() == lower || s.host == lower)
    }

    pub fn root_site_of(&self, tenant_id: &str) -> Option<&Site> {
        self.sites.values().find(|s| s.tenant_id == tenant_id)
    }
}
