//! Shared emulator state handed to every handler: the clock, counters, fault plan, directory,
//! the identity side's grants (codes, refresh tokens, consents, sessions), settings and the drives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::counters::Counters;
use crate::directory::Directory;
use crate::faults::Faults;
use crate::seed::Seed;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub clock: Clock,
    pub counters: Counters,
    pub directory: RwLock<Directory>,
    /// Drives and items (owned by `graph`).
    pub drives: crate::graph::Drives,
    /// Fixed settings from [`crate::EmulatorConfig`].
    pub settings: Settings,
    /// What `reset` restores.
    pub seed: Seed,
    /// Codes, refresh tokens, consents, sessions and switches of the identity side.
    pub grants: Mutex<Grants>,
    pub faults: Faults,
    /// Change-notification subscriptions and deliveries.
    pub notifier: crate::notify::Notifier,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Settings fixed for the emulator's lifetime.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: random 3600–5399 s like Microsoft; `Some(n)`: always `n` seconds.
    pub access_token_lifetime: Option<u64>,
    pub refresh_token_inactivity: u64,
    pub code_lifetime: u64,
    /// Overrides the request origin in issuers and discovery URLs.
    pub public_base_url: Option<String>,
    pub large_file_size: u64,
    /// Mint upload/monitor URLs on the request's origin instead of the other loopback name.
    pub same_origin_upload_urls: bool,
}

/// An authorization code waiting to be redeemed.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    /// The tenant path segment of the authorize request (resolved tenant id or the alias).
    pub authority: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    pub session_id: String,
    pub issued_at: i64,
    pub redeemed: bool,
    pub client_info: bool,
    /// Whether the sign-in behind the code satisfied MFA.
    pub mfa_done: bool,
}

/// A refresh token the emulator issued.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub client_id: String,
    pub user_id: String,
    /// Scopes of the original request (the default resource when a refresh names none).
    pub scopes: Vec<String>,
    pub session_id: String,
    pub issued_at: i64,
    /// Last time this token was redeemed (or issued); drives the 90-day inactivity rule.
    pub last_used: i64,
    pub redeemed: bool,
    /// The user's revocation generation when issued; a later revoke invalidates it.
    pub generation: u64,
    /// Whether the sign-in behind it satisfied MFA.
    pub mfa_done: bool,
}

/// A browser sign-in session (the `ESTSAUTH` cookie).
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub auth_time: i64,
    pub mfa_done: bool,
    pub generation: u64,
}

/// An admin consent recorded for a tenant.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdminConsent {
    pub tenant_id: String,
    pub client_id: String,
    /// The application permissions granted (app roles).
    pub roles: Vec<String>,
    pub granted_at: i64,
}

/// An authorize or admin-consent request between the sign-in and consent pages.
#[derive(Debug, Clone)]
pub struct Pending {
    pub request: crate::identity::authorize::AuthRequest,
    /// Set once the user signed in.
    pub user_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Default)]
pub struct Grants {
    pub codes: HashMap<String, CodeGrant>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    /// (user id, client id) → consented scopes (canonical spelling).
    pub consents: HashMap<(String, String), BTreeSet<String>>,
    /// (tenant id, client id) → admin consent.
    pub admin_consents: BTreeMap<(String, String), AdminConsent>,
    pub sessions: HashMap<String, Session>,
    pub pending: HashMap<String, Pending>,
    /// user id → revocation generation (bumped by "revoke user").
    pub user_generation: HashMap<String, u64>,
    /// user id → when revoked (unix seconds), for error messages.
    pub revoked_at: HashMap<String, i64>,
    /// Users that must do MFA: silent requests and refresh tokens without MFA fail.
    pub mfa_required: BTreeSet<String>,
    /// Reject refresh tokens that were already redeemed (emulator-only switch).
    pub strict_rotation: bool,
}

impl Grants {
    pub fn generation(&self, user_id: &str) -> u64 {
        self.user_generation.get(user_id).copied().unwrap_or(0)
    }
}

impl AppState {
    pub fn new(settings: Settings, seed: Seed) -> anyhow::Result<AppState> {
        let directory = seed.directory()?;
        let drives = crate::graph::Drives::seed(&directory, settings.large_file_size);
        let state = AppState(Arc::new(Inner {
            clock: Clock::default(),
            counters: Counters::default(),
            directory: RwLock::new(directory),
            drives,
            settings,
            seed,
            grants: Mutex::new(Grants::default()),
            faults: Faults::default(),
            notifier: crate::notify::Notifier::default(),
        }));
        state.seed_admin_consents();
        Ok(state)
    }

    pub fn grants(&self) -> MutexGuard<'_, Grants> {
        self.grants.lock().expect("grants lock poisoned")
    }

    pub fn dir(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read().expect("directory lock poisoned")
    }

    pub fn dir_mut(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.directory.write().expect("directory lock poisoned")
    }

    fn seed_admin_consents(&self) {
        let dir = self.dir();
        let mut g = self.grants();
        for c in &self.seed.admin_consents {
            let (Some(t), Some(app)) = (dir.tenant(&c.tenant), dir.apps.get(&c.client_id)) else {
                continue;
            };
            g.admin_consents.insert(
                (t.id.clone(), app.client_id.clone()),
                AdminConsent {
                    tenant_id: t.id.clone(),
                    client_id: app.client_id.clone(),
                    roles: app.application_permissions.clone(),
                    granted_at: self.clock.unix(),
                },
            );
        }
    }

    /// Restores the seed: directory, grants, consents, switches, clock, counters, faults, drives.
    pub fn reset(&self) -> anyhow::Result<()> {
        let directory = self.seed.directory()?;
        self.drives.reset(&directory, self.settings.large_file_size);
        *self.dir_mut() = directory;
        *self.grants() = Grants::default();
        self.clock.reset();
        self.counters.reset();
        self.faults.clear();
        self.notifier.reset();
        self.seed_admin_consents();
        Ok(())
    }

    /// Lifetime of the next access token, in seconds.
    pub fn access_token_lifetime(&self) -> i64 {
        match self.settings.access_token_lifetime {
            Some(n) => n as i64,
            None => rand::Rng::gen_range(&mut rand::thread_rng(), 3600..=5399),
        }
    }
}
