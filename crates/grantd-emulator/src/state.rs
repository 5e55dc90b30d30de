//! Shared emulator state handed to every handler: the clock, counters, fault plan, directory,
//! the identity side's grants and the drives.

use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::counters::Counters;
use crate::directory::Directory;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub clock: Clock,
    pub counters: Counters,
    pub directory: RwLock<Directory>,
    /// Drives and items (owned by `graph`).
    pub drives: crate::graph::Drives,
    // The identity side adds: signing keys, codes, refresh tokens, consents, faults, settings…
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
