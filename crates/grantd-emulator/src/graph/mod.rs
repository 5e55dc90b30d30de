//! Graph drive subset (`/v1.0/...`): users, drives, driveItems (ids, paths, children, content,
//! uploads, delta) and sites, over an in-memory model seeded from the directory.
//!
//! Files: `drives.rs` the model, `seed.rs` the seeded trees, `content.rs` where bytes live
//! (generated / memory / temp file) and QuickXorHash, `path.rs` the URL grammar, `routes.rs` the
//! entry point and dispatcher (shared with SharePoint's `/_api/v2.0`), `items.rs` item
//! operations, `upload.rs` receiving bytes, `delta.rs` the change feed, `json.rs` wire shapes,
//! `auth.rs` permissions, `error.rs` Graph error JSON and request ids, `query.rs` OData query
//! options, `extra.rs` search, thumbnails, sharing, versions, approot, sharedWithMe and recent. The pre-authenticated
//! download and upload-session URLs are served by `crate::files`.

pub mod auth;
pub mod content;
pub mod delta;
pub mod drives;
pub mod error;
pub mod extra;
pub mod items;
pub mod json;
pub mod path;
pub mod query;
pub mod routes;
pub mod seed;
pub mod upload;
pub mod write;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tokio::sync::mpsc::UnboundedSender;

pub use content::generated_byte;
pub use routes::router;
pub use seed::{BIG_FILE, PAGING_FILES, PAGING_FOLDER};

use crate::directory::Directory;

/// Default size of the generated `big.bin` in every user's drive (1 GiB).
pub const DEFAULT_LARGE_FILE_SIZE: u64 = 1 << 30;

/// All drives, items, sites and upload sessions. Cheap to lock; never held across `.await`.
///
/// Every lock that changed a drive (its sequence number moved) reports the drive's id to the
/// change sink when released, so change notifications see every write, whoever made it.
#[derive(Debug, Default)]
pub struct Drives {
    model: Mutex<drives::Model>,
    /// drive id → sequence number last reported to the sink.
    seen: Mutex<HashMap<String, u64>>,
    sink: OnceLock<UnboundedSender<String>>,
}

impl Drives {
    /// Seeds a OneDrive per directory user (with a `big.bin` of `large_file_size` bytes) and a
    /// root site with a `Shared Documents` library per tenant.
    pub fn seed(dir: &Directory, large_file_size: u64) -> Drives {
        let model = seed::seed_model(dir, large_file_size);
        let seen = model
            .drives
            .values()
            .map(|d| (d.id.clone(), d.seq))
            .collect();
        Drives {
            model: Mutex::new(model),
            seen: Mutex::new(seen),
            sink: OnceLock::new(),
        }
    }

    /// Where changed drive ids go (set once, by the notification dispatcher).
    pub fn set_change_sink(&self, tx: UnboundedSender<String>) {
        let _ = self.sink.set(tx);
    }

    /// Back to the seed: uploads, deletes and sessions are dropped (their temp files with them);
    /// delta tokens and download URLs issued before stop working.
    pub fn reset(&self, dir: &Directory, large_file_size: u64) {
        let fresh = seed::seed_model(dir, large_file_size);
        // Same lock order as `DrivesGuard::drop`: the model, then `seen`.
        let mut model = self.model.lock().expect("drives lock poisoned");
        let mut seen = self.seen.lock().expect("drives lock poisoned");
        *seen = fresh
            .drives
            .values()
            .map(|d| (d.id.clone(), d.seq))
            .collect();
        *model = fresh;
    }

    pub fn lock(&self) -> DrivesGuard<'_> {
        DrivesGuard {
            guard: self.model.lock().expect("drives lock poisoned"),
            owner: self,
            mutated: false,
        }
    }
}

/// The locked model; on release after a mutable use, reports drives whose sequence moved.
pub struct DrivesGuard<'a> {
    guard: MutexGuard<'a, drives::Model>,
    owner: &'a Drives,
    mutated: bool,
}

impl std::ops::Deref for DrivesGuard<'_> {
    type Target = drives::Model;
    fn deref(&self) -> &drives::Model {
        &self.guard
    }
}

impl std::ops::DerefMut for DrivesGuard<'_> {
    fn deref_mut(&mut self) -> &mut drives::Model {
        self.mutated = true;
        &mut self.guard
    }
}

impl Drop for DrivesGuard<'_> {
    fn drop(&mut self) {
        if !self.mutated {
            return;
        }
        let mut seen = self.owner.seen.lock().expect("drives lock poisoned");
        for d in self.guard.drives.values() {
            match seen.insert(d.id.clone(), d.seq) {
                // A drive seen for the first time was just provisioned: nothing subscribed yet.
                None => {}
                Some(before) if before != d.seq => {
                    if let Some(tx) = self.owner.sink.get() {
                        let _ = tx.send(d.id.clone());
                    }
                }
                Some(_) => {}
            }
        }
    }
}
