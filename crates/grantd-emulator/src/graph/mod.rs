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

use std::sync::{Mutex, MutexGuard};

pub use content::generated_byte;
pub use routes::router;
pub use seed::{BIG_FILE, PAGING_FILES, PAGING_FOLDER};

use crate::directory::Directory;

/// Default size of the generated `big.bin` in every user's drive (1 GiB).
pub const DEFAULT_LARGE_FILE_SIZE: u64 = 1 << 30;

/// All drives, items, sites and upload sessions. Cheap to lock; never held across `.await`.
#[derive(Debug, Default)]
pub struct Drives {
    model: Mutex<drives::Model>,
}

impl Drives {
    /// Seeds a OneDrive per directory user (with a `big.bin` of `large_file_size` bytes) and a
    /// root site with a `Shared Documents` library per tenant.
    pub fn seed(dir: &Directory, large_file_size: u64) -> Drives {
        Drives {
            model: Mutex::new(seed::seed_model(dir, large_file_size)),
        }
    }

    /// Back to the seed: uploads, deletes and sessions are dropped (their temp files with them);
    /// delta tokens and download URLs issued before stop working.
    pub fn reset(&self, dir: &Directory, large_file_size: u64) {
        let fresh = seed::seed_model(dir, large_file_size);
        *self.lock() = fresh;
    }

    pub fn lock(&self) -> MutexGuard<'_, drives::Model> {
        self.model.lock().expect("drives lock poisoned")
    }
}
