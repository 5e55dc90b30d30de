//! The change feed's use cases (issue 12): delta runs of a connection's drive into records,
//! `GET /records` pages, and sync status / trigger / pause / start.
//!
//! A run holds the drive's lease (`store::sync`), so instances never run one drive at once; a
//! trigger that finds the drive busy asks for another run, which the holder performs when it
//! ends (a burst of triggers is one more run). A run pages through Graph's delta one page at a
//! time (constant memory): each page is mapped to `OneDriveFile` records and committed with the
//! checkpoint that follows it and its `sync` webhook, then the outbox is delivered at once. A
//! `410 Gone` (resyncRequired) restarts the enumeration from its `Location`; when that finishes,
//! records it did not see are deleted — and only those.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::{Core, CredentialsOpts, Error};
use crate::model::{ConnectionId, ProviderConfigKey};
use crate::store::{PageCounts, RecordChange, RecordRow, RecordsQuery, SyncDrive, SyncPage};
use crate::webhooks::{self, SyncEvent};

/// The model of a user's files, and its sync, as Nango's OneDrive templates name them.
pub const MODEL: &str = "OneDriveFile";
pub const SYNC_NAME: &str = "user-files";
/// The model and sync of what a connection's metadata selects (Nango's selection shape).
pub const SELECTION_MODEL: &str = "OneDriveFileSelection";
pub const SELECTION_SYNC_NAME: &str = "user-files-selection";
/// The drive watched by default: the user's own.
const OWN_DRIVE: &str = "me";
/// Drive keys of a selection: a whole drive, or picked items (with subtrees) of a drive.
const WHOLE: &str = "drive:";
const PICKED: &str = "picked:";
/// Drive and item ids named in metadata (Graph's are URL-safe: letters, digits, `!-_.`).
const MAX_ID: usize = 256;
// How long a run may hold a drive before another instance may take it over is
// `sync_lease` (`GRANTD_SYNC_LEASE_SECS`, 15 minutes by default). A running run extends it
// (heartbeat) once less than two thirds remain, checked before each Graph request and each
// commit (a throttling wait is at most a third of the lease), so a live run never loses its
// drive while a killed instance's lease still expires.
/// Delta page size asked of Graph.
const PAGE_SIZE: u32 = 200;
/// Throttling answers (429/503) retried per page; a `Retry-After` window is the tenant's
/// (`connections::throttle`), waited out up to `throttle::BACKGROUND_MAX_WAIT`.
const THROTTLE_RETRIES: u32 = 5;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Restarts (410) accepted within one run before it gives up for now.
const MAX_RESYNCS_PER_RUN: u32 = 2;
/// When a drive is found to miss its change notifications, the other subscribed drives are
/// run once to check theirs (`changes_unannounced`), at most this often.
const SWEEP_EVERY: TimeDelta = TimeDelta::hours(12);
/// Folder paths remembered within a run (bounded; misses are read from Graph).
const PATH_CACHE: usize = 10_000;
/// Folders above an item read from Graph, at most, when its parent is neither in the run nor
/// stored (OneDrive nests at most a few hundred levels; a longer chain is an error).
const MAX_LOOKUP_DEPTH: usize = 512;

/// A connection's sync, for `GET /sync/status` and the CLI.
#[derive(Debug, Clone)]
pub struct SyncState {
    /// The watched drives folded into one view: paused when all are, leased while any runs,
    /// the first error, summed counts, the oldest last success.
    pub drive: SyncDrive,
    /// Each watched drive.
    pub drives: Vec<SyncDrive>,
    /// The model and sync name the connection's records have.
    pub model: &'static str,
    pub sync_name: &'static str,
    /// Live records.
    pub records: u64,
    /// How changes are noticed: every drive pushed, or polled (and why).
    pub push: PushState,
    /// The polling interval of drives without working push.
    pub poll_interval: Duration,
}

/// How a watched drive's changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushState {
    /// A live Graph subscription whose notifications arrive.
    Healthy,
    /// Subscribed, but notifications stopped arriving (a run found changes none announced):
    /// polled until one arrives again.
    Stale,
    /// No live subscription (push off, not yet set up, or failing): polled.
    Off,
}

impl PushState {
    pub fn of(d: &SyncDrive, now: DateTime<Utc>) -> PushState {
        let live =
            d.subscription_id.is_some() && d.subscription_expires_at.is_some_and(|e| e > now);
        match (live, d.push_stale_since) {
            (false, _) => PushState::Off,
            (true, Some(_)) => PushState::Stale,
            (true, None) => PushState::Healthy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Healthy => "healthy",
            PushState::Stale => "stale",
            PushState::Off => "off",
        }
    }
}

/// A watched connection's sync for the dashboard.
#[derive(Debug, Clone)]
pub struct SyncPanel {
    pub model: &'static str,
    pub sync_name: &'static str,
    /// Live records.
    pub records: u64,
    pub drives: Vec<PanelDrive>,
}

/// One watched drive in the dashboard.
#[derive(Debug, Clone)]
pub struct PanelDrive {
    pub drive: SyncDrive,
    pub running: bool,
    /// A live Graph subscription whose notifications arrive (push); otherwise the drive is polled.
    pub push: bool,
    /// Subscribed, but notifications stopped arriving: polled meanwhile.
    pub push_stale: bool,
    /// When the schedule runs it next (`None` while paused); notifications run it sooner.
    pub next_run: Option<DateTime<Utc>>,
}

/// What a connection watches: `(drive key, model)` per drive.
fn watch_plan(metadata: &Value, app_only: bool) -> Result<Vec<(String, &'static str)>, Error> {
    let drives = metadata.get("drives");
    let picked = metadata.get("pickedFiles");
    if drives.is_none() && picked.is_none() {
        if app_only {
            return Err(Error::Invalid(
                "an app-only connection has no drive of its own: name the drives to watch in its \
                 metadata ({\"drives\": [driveId…]})"
                    .into(),
            ));
        }
        return Ok(vec![(OWN_DRIVE.to_owned(), MODEL)]);
    }
    let mut plan: Vec<(String, &'static str)> = Vec::new();
    for d in drive_ids(drives, "drives")? {
        let key = format!("{WHOLE}{d}");
        if !plan.iter().any(|(k, _)| *k == key) {
            plan.push((key, SELECTION_MODEL));
        }
    }
    for (d, _) in picked_files(picked)? {
        let whole = format!("{WHOLE}{d}");
        let key = format!("{PICKED}{d}");
        if !plan.iter().any(|(k, _)| *k == whole || *k == key) {
            plan.push((key, SELECTION_MODEL));
        }
    }
    Ok(plan)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'!' | b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

fn drive_ids(v: Option<&Value>, field: &str) -> Result<Vec<String>, Error> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v
        .as_array()
        .ok_or_else(|| Error::Invalid(format!("metadata.{field} must be an array of drive ids")))?;
    list.iter()
        .map(|d| match d.as_str() {
            Some(s) if valid_id(s) => Ok(s.to_owned()),
            _ => Err(Error::Invalid(format!(
                "metadata.{field} holds something that is not a drive id"
            ))),
        })
        .collect()
}

/// `pickedFiles`: `[{driveId, fileIds: […]}]`, merged per drive.
fn picked_files(v: Option<&Value>) -> Result<Vec<(String, Vec<String>)>, Error> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let bad = || {
        Error::Invalid(
            "metadata.pickedFiles must be an array of {\"driveId\", \"fileIds\": [itemId…]}".into(),
        )
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for entry in v.as_array().ok_or_else(bad)? {
        let drive = entry
            .get("driveId")
            .and_then(Value::as_str)
            .filter(|s| valid_id(s))
            .ok_or_else(bad)?;
        let files = entry
            .get("fileIds")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|f| f.as_str().filter(|s| valid_id(s)).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        match out.iter_mut().find(|(d, _)| d == drive) {
            Some((_, ids)) => ids.extend(files),
            None => out.push((drive.to_owned(), files)),
        }
    }
    Ok(out)
}

/// The sync name records of `model` belong to.
fn sync_name_of(model: &str) -> &'static str {
    if model == SELECTION_MODEL {
        SELECTION_SYNC_NAME
    } else {
        SYNC_NAME
    }
}

fn model_of(model: &str) -> &'static str {
    if model == SELECTION_MODEL {
        SELECTION_MODEL
    } else {
        MODEL
    }
}

/// The Graph resource path of a watched drive's root (`/me/drive/root`, `/drives/{id}/root`).
pub(super) fn drive_root(drive_key: &str) -> String {
    match drive_key
        .strip_prefix(WHOLE)
        .or_else(|| drive_key.strip_prefix(PICKED))
    {
        Some(id) => format!("/drives/{id}/root"),
        None => "/me/drive/root".to_owned(),
    }
}

/// A `GET /records` request, validated by the edge.
#[derive(Debug, Clone)]
pub struct RecordsRequest {
    pub model: String,
    pub cursor: Option<i64>,
    pub modified_after: Option<DateTime<Utc>>,
    pub limit: u32,
    /// ADDED, UPDATED, DELETED.
    pub actions: [bool; 3],
    pub ids: Vec<String>,
}

/// One page of records: each a JSON object text with `_nango_metadata`, and the next cursor.
#[derive(Debug, Clone)]
pub struct RecordsPage {
    pub records: Vec<String>,
    pub next_cursor: Option<String>,
}

impl Core {
    /// The live connection's row id, or `UnknownConnection`.
    async fn sync_connection_id(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<i64, Error> {
        let conn = self
            .store
            .get_connection(key, id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        Ok(conn.id)
    }

    /// The connection's watched drives as its metadata names them now: drives new to the plan
    /// are created (their first run enumerates them), drives that stay keep their checkpoints
    /// (no resync), and drives dropped from it are removed with their records reported deleted.
    async fn watched_drives(&self, connection_id: i64) -> Result<Vec<SyncDrive>, Error> {
        let conn = self
            .store
            .get_connection_by_id(connection_id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        let (_, provider) = self.integration(&conn.provider_config_key).await?;
        let plan = watch_plan(&conn.metadata, provider.is_app_only())?;
        let now = self.clock.now();
        for old in self.store.sync_drives(connection_id).await? {
            if plan
                .iter()
                .any(|(k, m)| *k == old.drive_key && *m == old.model)
            {
                continue;
            }
            let target = webhooks::target_url(&self.config, conn.webhook_url_override.as_deref());
            let (key, cid) = (
                conn.provider_config_key.as_str(),
                conn.connection_id.as_str(),
            );
            let model = model_of(&old.model);
            let webhook = move |c: PageCounts| {
                target.clone().map(|url| {
                    let body = SyncEvent {
                        connection_id: cid,
                        provider_config_key: key,
                        sync_name: sync_name_of(model),
                        model,
                        initial: false,
                        added: c.added,
                        updated: c.updated,
                        deleted: c.deleted,
                        at: now,
                    }
                    .body();
                    (url, body)
                })
            };
            self.drop_subscription(&old, &conn).await;
            let deleted = self.store.remove_sync_drive(&old, now, &webhook).await?;
            if deleted > 0 {
                crate::metrics::sync_records(0, 0, deleted);
                self.deliver_webhooks_now();
            }
        }
        let picked = picked_files(conn.metadata.get("pickedFiles"))?;
        let mut out = Vec::with_capacity(plan.len());
        for (key, model) in plan {
            let mut drive = self
                .store
                .ensure_sync_drive(connection_id, &key, model, now)
                .await?;
            if let Some(d) = key.strip_prefix(PICKED) {
                let mut ids = picked
                    .iter()
                    .find(|(id, _)| id == d)
                    .map(|(_, ids)| ids.clone())
                    .unwrap_or_default();
                ids.sort();
                ids.dedup();
                let selection = json!(ids).to_string();
                if drive.selection.as_deref() != Some(selection.as_str()) {
                    self.store.set_sync_selection(drive.id, &selection).await?;
                    // Other items picked in this drive: it alone is enumerated again (what
                    // stays unchanged produces nothing; what is no longer picked is deleted).
                    if drive.selection.is_some() {
                        self.store.request_sync_run(drive.id, true).await?;
                        self.spawn_sync_run(drive.id);
                    }
                    drive.selection = Some(selection);
                }
            }
            out.push(drive);
        }
        Ok(out)
    }

    /// Asks for a delta run of the connection's drive (a full resync with `full`) and starts it
    /// in the background unless one is running, which then runs again when it ends. Paused
    /// syncs record the request and run when started.
    pub async fn trigger_sync(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        full: bool,
    ) -> Result<(), Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        for drive in self.watched_drives(connection_id).await? {
            self.store.request_sync_run(drive.id, full).await?;
            self.spawn_sync_run(drive.id);
        }
        Ok(())
    }

    /// After the connection's metadata changed: when it is watched, the watch set follows the
    /// new selection (new drives run at once; see `watched_drives`).
    pub async fn sync_metadata_changed(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<(), Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        if self.store.sync_drives(connection_id).await?.is_empty() {
            return Ok(());
        }
        for drive in self.watched_drives(connection_id).await? {
            if drive.last_run_at.is_none() && !drive.paused {
                self.store.request_sync_run(drive.id, false).await?;
                self.spawn_sync_run(drive.id);
            }
        }
        Ok(())
    }

    /// The watched connections of an integration (what `/sync/trigger|pause|start` without a
    /// connection id act on, as in Nango: every connection that has the sync).
    pub async fn watched_connections(
        &self,
        key: &ProviderConfigKey,
    ) -> Result<Vec<ConnectionId>, Error> {
        self.integration(key).await?;
        Ok(self
            .store
            .watched_connection_ids(key.as_str())
            .await?
            .into_iter()
            .filter_map(|id| ConnectionId::parse(&id).ok())
            .collect())
    }

    /// Pauses (or with `paused = false` starts again) the connection's sync; starting runs it.
    pub async fn set_sync_paused(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        paused: bool,
    ) -> Result<(), Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        let drives = self.watched_drives(connection_id).await?;
        self.store.set_sync_paused(connection_id, paused).await?;
        if !paused {
            for drive in drives {
                self.store.request_sync_run(drive.id, false).await?;
                self.spawn_sync_run(drive.id);
            }
        }
        Ok(())
    }

    /// The connection's sync state.
    pub async fn sync_status(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<SyncState, Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        let drives = self.watched_drives(connection_id).await?;
        let Some(first) = drives.first() else {
            return Err(Error::Invalid(
                "the connection's metadata selects no drive".into(),
            ));
        };
        let model = model_of(&first.model);
        let records = self.store.count_sync_records(connection_id, model).await?;
        let now = self.clock.now();
        let mut push = PushState::of(first, now);
        let mut drive = first.clone();
        for d in &drives[1..] {
            push = match (push, PushState::of(d, now)) {
                (PushState::Stale, _) | (_, PushState::Stale) => PushState::Stale,
                (PushState::Off, _) | (_, PushState::Off) => PushState::Off,
                _ => PushState::Healthy,
            };
            drive.paused &= d.paused;
            drive.lease_until = drive.lease_until.max(d.lease_until);
            drive.last_error = drive.last_error.take().or_else(|| d.last_error.clone());
            drive.last_success_at = match (drive.last_success_at, d.last_success_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            drive.last_run_at = drive.last_run_at.max(d.last_run_at);
            drive.next_link = drive.next_link.take().and(d.next_link.clone());
            drive.last_added += d.last_added;
            drive.last_updated += d.last_updated;
            drive.last_deleted += d.last_deleted;
        }
        Ok(SyncState {
            drive,
            drives,
            model,
            sync_name: sync_name_of(model),
            records,
            push,
            poll_interval: self.config.lifecycle.sync_poll_interval,
        })
    }

    /// The connection's sync as the dashboard shows it, without starting to watch it: `None`
    /// when it is not watched.
    pub async fn sync_panel(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<Option<SyncPanel>, Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        let drives = self.store.sync_drives(connection_id).await?;
        let Some(first) = drives.first() else {
            return Ok(None);
        };
        let model = model_of(&first.model);
        let records = self.store.count_sync_records(connection_id, model).await?;
        let now = self.clock.now();
        let poll = TimeDelta::from_std(self.config.lifecycle.sync_poll_interval)
            .unwrap_or(TimeDelta::minutes(5));
        let rows = drives
            .into_iter()
            .map(|d| {
                let state = PushState::of(&d, now);
                let push = state == PushState::Healthy;
                let next_run = if d.paused {
                    None
                } else {
                    Some(match d.last_run_at {
                        None => now,
                        Some(t) if push => t + super::sync_push::RECONCILE_EVERY,
                        Some(t) => t + poll,
                    })
                };
                PanelDrive {
                    running: d.lease_until.is_some_and(|l| l > now),
                    push,
                    push_stale: state == PushState::Stale,
                    next_run,
                    drive: d,
                }
            })
            .collect();
        Ok(Some(SyncPanel {
            model,
            sync_name: sync_name_of(model),
            records,
            drives: rows,
        }))
    }

    /// A page of the connection's records in change order.
    pub async fn list_records(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        req: &RecordsRequest,
    ) -> Result<RecordsPage, Error> {
        let connection_id = self.sync_connection_id(key, id).await?;
        let ids_json = (!req.ids.is_empty()).then(|| json!(req.ids).to_string());
        let rows = self
            .store
            .list_sync_records(&RecordsQuery {
                connection_id,
                model: &req.model,
                after_cursor: req.cursor.unwrap_or(0),
                modified_after: req.modified_after,
                actions: req.actions,
                ids_json,
                limit: req.limit + 1,
            })
            .await?;
        let more = rows.len() > req.limit as usize;
        let rows = &rows[..rows.len().min(req.limit as usize)];
        let next_cursor = if more {
            rows.last().map(|r| r.cursor_seq.to_string())
        } else {
            None
        };
        Ok(RecordsPage {
            records: rows.iter().map(render_record).collect(),
            next_cursor,
        })
    }

    /// Runs the drive's sync in the background (see `run_sync`).
    pub fn spawn_sync_run(&self, drive: i64) {
        let core = self.clone();
        self.spawn_background(async move {
            if let Err(e) = core.run_sync(drive).await {
                tracing::error!(sync.drive = drive, error = %e, "sync run failed");
            }
        });
    }

    /// Runs delta for drive `drive` if its lease is free, again while runs were requested
    /// meanwhile; returns without doing anything when another run holds it (that run sees the
    /// request). A failed run is recorded on the drive in plain words.
    pub async fn run_sync(&self, drive: i64) -> Result<(), Error> {
        let now = self.clock.now();
        let lease = now + self.sync_lease();
        match self.store.lease_sync_drive(drive, now, lease).await? {
            Some(state) => self.run_leased_then_more(state, lease).await,
            None => Ok(()),
        }
    }

    /// Runs the leased drive, releases it, and runs again while runs were requested meanwhile.
    pub(super) async fn run_leased_then_more(
        &self,
        mut state: SyncDrive,
        mut lease: DateTime<Utc>,
    ) -> Result<(), Error> {
        loop {
            let outcome = self.run_delta(&state, &mut lease).await;
            crate::metrics::sync_run(outcome.is_ok());
            let error = outcome.as_ref().err().map(|e| e.to_string());
            if let Some(e) = &error {
                tracing::warn!(sync.drive = state.id, "sync run failed: {e}");
            }
            let again = self
                .store
                .release_sync_drive(state.id, lease, error.as_deref(), self.clock.now())
                .await?;
            if !again {
                return Ok(());
            }
            let now = self.clock.now();
            lease = now + self.sync_lease();
            match self.store.lease_sync_drive(state.id, now, lease).await? {
                Some(s) => state = s,
                None => return Ok(()),
            }
        }
    }

    /// One run under the lease: pages from the checkpoint to the end of the round.
    async fn run_delta(&self, drive: &SyncDrive, lease: &mut DateTime<Utc>) -> Result<(), Error> {
        let conn = self
            .store
            .get_connection_by_id(drive.connection_id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        let (_, provider) = self.integration(&conn.provider_config_key).await?;
        let graph = provider.proxy_base_url(&self.config.microsoft);
        let start = format!(
            "{graph}/v1.0{}/delta?$top={PAGE_SIZE}",
            drive_root(&drive.drive_key)
        );
        // Picked items of a drive: only they and their subtrees become records.
        let picked: Option<Vec<String>> = match drive.drive_key.strip_prefix(PICKED) {
            Some(d) => Some(
                picked_files(conn.metadata.get("pickedFiles"))?
                    .into_iter()
                    .find(|(id, _)| id == d)
                    .map(|(_, ids)| ids)
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let model = model_of(&drive.model);
        self.store.reset_sync_counts(drive.id).await?;
        let initial = drive.next_link.is_none();
        let mut url = match &drive.next_link {
            Some(link) if !drive.resync_requested => link.clone(),
            _ => self.begin_resync(drive.id, *lease, &start).await?,
        };
        let mut paths = PathCache::default();
        // Folders a page names as parents but neither this run nor the store knows are read
        // from Graph (`folder_path`), under this drive's items.
        let items_base = format!(
            "{graph}/v1.0{}/items",
            drive_root(&drive.drive_key).trim_end_matches("/root")
        );
        let lookup = Lookup {
            conn: &conn,
            items: &items_base,
            drive: drive.id,
        };
        let mut resyncs = 0;
        let mut first_batch = initial;
        // Continuing from a deltaLink, items are changes since the last round: their age is
        // the feed's lag (an enumeration from scratch lists old items too).
        let mut incremental = !initial && !drive.resync_requested && !drive.in_resync;
        // Changes an incremental run found (to tell whether notifications announced them).
        let mut found_changes = false;
        // Links must stay on Graph's origin: the token goes with them.
        let on_graph = |u: &str| u.starts_with(&format!("{graph}/"));
        loop {
            if !on_graph(&url) {
                return Err(Error::Invalid(
                    "the stored delta link is not a Microsoft Graph URL".into(),
                ));
            }
            let page = match self.fetch_delta_page(&conn, &url, drive.id, lease).await? {
                DeltaAnswer::Page(page) => page,
                DeltaAnswer::NotFound => {
                    return Err(Error::Invalid(
                        "Microsoft Graph answered 404 to the delta request".into(),
                    ));
                }
                DeltaAnswer::Resync(location) => {
                    resyncs += 1;
                    incremental = false;
                    if resyncs > MAX_RESYNCS_PER_RUN {
                        return Err(Error::Invalid(
                            "Microsoft Graph keeps asking for a resync; will retry later".into(),
                        ));
                    }
                    let from = location.filter(|l| on_graph(l));
                    url = self
                        .begin_resync(drive.id, *lease, from.as_deref().unwrap_or(&start))
                        .await?;
                    continue;
                }
            };
            let (next, final_page) = match (
                page.get("@odata.nextLink").and_then(Value::as_str),
                page.get("@odata.deltaLink").and_then(Value::as_str),
            ) {
                (Some(n), _) => (n.to_owned(), false),
                (None, Some(d)) => (d.to_owned(), true),
                (None, None) => {
                    return Err(Error::Invalid(
                        "Microsoft Graph's delta page has neither a next nor a delta link".into(),
                    ));
                }
            };
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut changes = Vec::with_capacity(items.len());
            let mut changed_at: Vec<DateTime<Utc>> = Vec::new();
            paths.page_moves.clear();
            let mut drive_id = None;
            for item in items {
                if drive_id.is_none() {
                    drive_id = item
                        .pointer("/parentReference/driveId")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                if let Some(c) = self
                    .to_change(
                        drive.connection_id,
                        model,
                        picked.as_deref(),
                        item,
                        &mut paths,
                        &lookup,
                        lease,
                    )
                    .await?
                {
                    if incremental && matches!(c, RecordChange::Upsert { .. }) {
                        if let Some(t) = item
                            .get("lastModifiedDateTime")
                            .and_then(Value::as_str)
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        {
                            changed_at.push(t.to_utc());
                        }
                    }
                    changes.push(c);
                }
                // A folder moved: this page's earlier changes below it were built from its old
                // path (a delta round orders items by their depth when they last changed, so a
                // folder moved deeper afterwards comes after them).
                for (old, new) in paths.seen_moves.drain(..) {
                    for c in &mut changes {
                        move_change(c, &old, &new);
                    }
                }
            }
            if final_page {
                // Subscribed (or renewed) before the round's last page commits, so its webhook
                // means push is set up; changes from now on are in the next round either way.
                // The subscription's state is read afresh (a lifecycle event may have changed it).
                let current = self.store.sync_drives(drive.connection_id).await?;
                if let Some(d) = current.iter().find(|d| d.id == drive.id) {
                    self.ensure_subscription(d, &conn, &graph).await;
                }
            }
            self.keep_lease(drive.id, lease).await?;
            let at = self.clock.now();
            let key = conn.provider_config_key.as_str();
            let cid = conn.connection_id.as_str();
            let target = webhooks::target_url(&self.config, conn.webhook_url_override.as_deref());
            let initial_batch = first_batch;
            let webhook = move |c: PageCounts| {
                target.clone().map(|url| {
                    let body = SyncEvent {
                        connection_id: cid,
                        provider_config_key: key,
                        sync_name: sync_name_of(model),
                        model,
                        initial: initial_batch,
                        added: c.added,
                        updated: c.updated,
                        deleted: c.deleted,
                        at,
                    }
                    .body();
                    (url, body)
                })
            };
            let committed = self
                .store
                .commit_sync_page(
                    &SyncPage {
                        drive: drive.id,
                        lease_until: *lease,
                        connection_id: drive.connection_id,
                        model: &drive.model,
                        drive_id: drive_id.as_deref(),
                        changes: &changes,
                        next_link: &next,
                        final_page,
                        at,
                    },
                    &webhook,
                )
                .await?;
            let Some(counts) = committed else {
                return Err(Error::Invalid(
                    "the sync lease expired during the run; another run takes over".into(),
                ));
            };
            if !counts.is_empty() {
                crate::metrics::sync_records(counts.added, counts.updated, counts.deleted);
                for t in &changed_at {
                    crate::metrics::sync_lag((at - *t).to_std().unwrap_or_default());
                }
                first_batch = false;
                found_changes |= incremental;
                self.deliver_webhooks_now();
            }
            if final_page {
                if found_changes && !drive.run_notified {
                    self.changes_unannounced(drive).await?;
                }
                return Ok(());
            }
            url = next;
        }
    }

    /// A run no notification started found changes: if the drive is subscribed, Graph's
    /// notifications stopped arriving — it is polled (and shown so) until one arrives again.
    /// Notifications of every drive go to the same URL, and a URL that stopped receiving them
    /// (blocked, misrouted, its certificate expired) loses them all at once: so every other
    /// subscribed drive that no notification announced anything to since its last run runs
    /// once too (a sweep: one delta call each, at most one sweep per `SWEEP_EVERY` across
    /// instances), rather than each waiting for its daily reconciliation. Nothing is called
    /// while notifications arrive.
    async fn changes_unannounced(&self, drive: &SyncDrive) -> Result<(), Error> {
        let now = self.clock.now();
        let current = self.store.sync_drives(drive.connection_id).await?;
        let Some(d) = current.iter().find(|d| d.id == drive.id) else {
            return Ok(());
        };
        if PushState::of(d, now) == PushState::Healthy {
            tracing::warn!(
                sync.drive = drive.id,
                "changes arrived without a change notification; polling until notifications resume"
            );
            self.store.mark_sync_push_stale(drive.id, now).await?;
            if self.store.claim_sync_sweep(now, now - SWEEP_EVERY).await? {
                let n = self.store.request_push_sweep(now, drive.id).await?;
                if n > 0 {
                    tracing::warn!(
                        sync.drive = drive.id,
                        drives = n,
                        "running every other subscribed drive once to find whether its \
                         notifications stopped too"
                    );
                }
            }
        }
        Ok(())
    }

    /// How long a run holds its drive (`GRANTD_SYNC_LEASE_SECS`).
    pub(super) fn sync_lease(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.lifecycle.sync_lease).unwrap_or(TimeDelta::minutes(15))
    }

    /// The heartbeat: extends the run's lease to a full lease from now once less than two
    /// thirds remain; an error when it was lost (another run took the drive).
    async fn keep_lease(&self, drive: i64, lease: &mut DateTime<Utc>) -> Result<(), Error> {
        let now = self.clock.now();
        let full = self.sync_lease();
        if *lease - now >= full * 2 / 3 {
            return Ok(());
        }
        let longer = now + full;
        if self.store.extend_sync_lease(drive, *lease, longer).await? {
            *lease = longer;
            Ok(())
        } else {
            Err(Error::Invalid(
                "the sync lease expired during the run; another run takes over".into(),
            ))
        }
    }

    async fn begin_resync(
        &self,
        drive: i64,
        lease: DateTime<Utc>,
        from: &str,
    ) -> Result<String, Error> {
        match self.store.begin_resync(drive, lease, from).await? {
            Some(_) => Ok(from.to_owned()),
            None => Err(Error::Invalid(
                "the sync lease expired during the run; another run takes over".into(),
            )),
        }
    }

    /// Delivers due webhooks in the background, now rather than on the next jobs tick.
    fn deliver_webhooks_now(&self) {
        let core = self.clone();
        self.spawn_background(async move {
            if let Err(e) = core.deliver_due_webhooks(core.clock.now()).await {
                tracing::warn!(error = %e, "immediate webhook delivery failed");
            }
        });
    }

    /// One delta page (or, for `folder_path`, one item) with fresh credentials: throttling
    /// answers are retried after their `Retry-After`, a 401 once after a forced refresh; 410
    /// asks for a resync, 404 says the item is gone.
    async fn fetch_delta_page(
        &self,
        conn: &crate::model::Connection,
        url: &str,
        drive: i64,
        lease: &mut DateTime<Utc>,
    ) -> Result<DeltaAnswer, Error> {
        let mut force_refresh = false;
        let mut throttled = 0;
        let tenant = super::throttle::tenant_key(conn);
        loop {
            // Background work: waits behind interactive calls, gives the run up when the
            // tenant stays throttled longer (the next run resumes from the checkpoint).
            self.throttle_admit(
                &tenant,
                crate::throttle::Priority::Background,
                super::throttle::BACKGROUND_MAX_WAIT,
            )
            .await?;
            self.keep_lease(drive, lease).await?;
            let fresh = self
                .credentials(
                    &conn.provider_config_key,
                    &conn.connection_id,
                    CredentialsOpts {
                        force_refresh,
                        note_fetched: false,
                    },
                )
                .await?;
            let token = fresh
                .connection
                .credentials
                .access_token
                .expose_secret()
                .to_owned();
            let mut req = self.http.get(url).bearer_auth(token);
            if let Some(ua) = self.user_agent(&conn.provider_config_key).await {
                req = req.header(reqwest::header::USER_AGENT, ua);
            }
            let resp = req
                .send()
                .await
                .map_err(|_| Error::Invalid("Microsoft Graph could not be reached".into()))?;
            let status = resp.status().as_u16();
            let window = self.throttle_observe(&tenant, status, resp.headers()).await;
            match status {
                200 => {
                    let page: Value = resp.json().await.map_err(|_| {
                        Error::Invalid("Microsoft Graph's answer is not JSON".into())
                    })?;
                    return Ok(DeltaAnswer::Page(page));
                }
                410 => {
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    return Ok(DeltaAnswer::Resync(location));
                }
                404 => return Ok(DeltaAnswer::NotFound),
                401 if !force_refresh => force_refresh = true,
                429 | 503 if throttled < THROTTLE_RETRIES => {
                    throttled += 1;
                    // A `Retry-After` window is waited out by `throttle_admit` (the whole
                    // tenant's, on every instance); a bare 503 backs off here.
                    if window.is_none() {
                        tokio::time::sleep(
                            Duration::from_secs(1 << throttled).min(MAX_RETRY_AFTER),
                        )
                        .await;
                    }
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "Microsoft Graph answered {status} to the delta request"
                    )));
                }
            }
        }
    }

    /// The record change for one delta item; `None` for the drive's root. With `picked` (the
    /// ids a selection names in this drive), only those items and what lies below them are
    /// records: their paths start at the picked item (`/Report.docx`, `/Folder/child`), and an
    /// item moved out of a picked subtree is deleted.
    #[allow(clippy::too_many_arguments)]
    async fn to_change(
        &self,
        connection_id: i64,
        model: &str,
        picked: Option<&[String]>,
        item: &Value,
        paths: &mut PathCache,
        lookup: &Lookup<'_>,
        lease: &mut DateTime<Utc>,
    ) -> Result<Option<RecordChange>, Error> {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return Ok(None);
        };
        if item.get("root").is_some() {
            paths.root = Some(id.to_owned());
            return Ok(None);
        }
        if item.get("deleted").is_some() {
            paths.forget(id);
            return Ok(Some(RecordChange::Delete {
                record_id: id.to_owned(),
            }));
        }
        let name = item.get("name").and_then(Value::as_str).unwrap_or("");
        let parent = item.pointer("/parentReference/id").and_then(Value::as_str);
        let parent_path = match (picked, parent) {
            (Some(ids), _) if ids.iter().any(|p| p == id) => String::new(),
            (Some(_), Some(p)) => match self
                .kept_folder_path(connection_id, model, p, paths)
                .await?
            {
                Some(path) => path,
                // Outside every picked subtree: not a record (any more).
                None => {
                    paths.forget(id);
                    return Ok(Some(RecordChange::Delete {
                        record_id: id.to_owned(),
                    }));
                }
            },
            (Some(_), None) => {
                return Ok(Some(RecordChange::Delete {
                    record_id: id.to_owned(),
                }));
            }
            (None, Some(p)) => {
                match self.folder_path(p, paths, lookup, lease).await? {
                    Some(path) => path,
                    // Its folder is gone since the page was read: so is the item, and a later
                    // round reports it as it is then (deleted, or moved out first). Nothing is
                    // guessed meanwhile.
                    None => return Ok(None),
                }
            }
            (None, None) => String::new(),
        };
        let path = format!("{parent_path}/{name}");
        let is_folder = item.get("folder").is_some();
        if is_folder {
            // A renamed or moved folder: delta does not report what lies below it (OneDrive for
            // Business), so the store rewrites its stored descendants when the page commits
            // (`commit_sync_page`), and this run's view of them follows now: folders remembered
            // below it, and stored paths read before the commit (`PathCache::page_moved`).
            let stored = self.stored_path(connection_id, model, id).await?;
            let current = match paths.folders.get(id) {
                Some(p) => Some(p.clone()),
                None => stored.as_deref().map(|p| paths.page_moved(p)),
            };
            if let Some(old) = stored.filter(|old| *old != path) {
                paths.page_moves.push((old, path.clone()));
            }
            if let Some(old) = current.filter(|old| *old != path) {
                paths.moved(&old, &path);
                paths.seen_moves.push((old, path.clone()));
            }
            paths.remember(id, &path);
        }
        let etag = item.get("eTag").and_then(Value::as_str);
        // Serialized straight from the delta item (no copy of it): the fields in key order, as
        // a `json!` object would write them.
        let record = FileRecord {
            blob_size: item.get("size").and_then(Value::as_u64),
            c_tag: item.get("cTag").and_then(Value::as_str),
            created_at: item.get("createdDateTime").and_then(Value::as_str),
            download_url: item
                .get("@microsoft.graph.downloadUrl")
                .and_then(Value::as_str),
            drive_id: item
                .pointer("/parentReference/driveId")
                .and_then(Value::as_str),
            etag,
            id,
            is_folder,
            mime_type: item.pointer("/file/mimeType").and_then(Value::as_str),
            name,
            path: &path,
            raw_source: item,
            updated_at: item.get("lastModifiedDateTime").and_then(Value::as_str),
        };
        let payload = serde_json::to_string(&record)
            .map_err(|_| Error::Invalid("a delta item could not be written as a record".into()))?;
        Ok(Some(RecordChange::Upsert {
            record_id: id.to_owned(),
            payload,
            version_key: format!("{}\u{1f}{path}", etag.unwrap_or("")),
            path,
            is_folder,
        }))
    }

    /// The stored path of live record `id`, as the store has it (before the page being read is
    /// committed).
    async fn stored_path(
        &self,
        connection_id: i64,
        model: &str,
        id: &str,
    ) -> Result<Option<String>, Error> {
        let stored = self
            .store
            .sync_record_payload(connection_id, model, id)
            .await?;
        Ok(stored
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v.get("path").and_then(Value::as_str).map(str::to_owned)))
    }

    /// The path of folder `id` when it is a record of a selection (a picked folder or below
    /// one): remembered in this run, else its live record; `None` when it is not.
    async fn kept_folder_path(
        &self,
        connection_id: i64,
        model: &str,
        id: &str,
        paths: &mut PathCache,
    ) -> Result<Option<String>, Error> {
        if let Some(p) = paths.folders.get(id) {
            return Ok(Some(p.clone()));
        }
        let path = self
            .stored_path(connection_id, model, id)
            .await?
            .map(|p| paths.page_moved(&p));
        if let Some(p) = &path {
            paths.remember(id, p);
        }
        Ok(path)
    }

    /// The path of folder `id` (`""` for the root) as it is now: remembered in this run, else
    /// read from Graph (`resolve_folder_path`). `None` when Graph says the folder is gone. A path
    /// is never guessed, nor taken from a stored record: a delta round holds the items changed
    /// in its range as they are when paged, so an item's folder may be missing from it (it
    /// changed again after the round began, e.g. something was created in it, and moved to the
    /// next round) while what is stored of it is not yet there (new folder), deleted (restored
    /// since), or has the path it had before a move that this round holds.
    async fn folder_path(
        &self,
        id: &str,
        paths: &mut PathCache,
        lookup: &Lookup<'_>,
        lease: &mut DateTime<Utc>,
    ) -> Result<Option<String>, Error> {
        if let Some(p) = paths.seen(id) {
            return Ok(Some(p));
        }
        self.resolve_folder_path(id, paths, lookup, lease).await
    }

    /// Reads folder `id` and, while not seen in this run, its ancestors from Graph
    /// (`GET …/items/{id}?$select=id,name,parentReference,root`) up to the root or a folder
    /// seen in this run, and remembers the paths found. `None` when one of them is gone (404).
    /// A run calls it at most once per folder (they are remembered).
    async fn resolve_folder_path(
        &self,
        id: &str,
        paths: &mut PathCache,
        lookup: &Lookup<'_>,
        lease: &mut DateTime<Utc>,
    ) -> Result<Option<String>, Error> {
        // (id, name) from `id` upwards, until the folder above is known.
        let mut chain: Vec<(String, String)> = Vec::new();
        let mut cur = id.to_owned();
        let base = loop {
            if chain.len() >= MAX_LOOKUP_DEPTH || !valid_id(&cur) {
                return Err(Error::Invalid(
                    "a delta item's folder could not be placed in the drive".into(),
                ));
            }
            let url = format!(
                "{}/{cur}?$select=id,name,parentReference,root",
                lookup.items
            );
            let item = match self
                .fetch_delta_page(lookup.conn, &url, lookup.drive, lease)
                .await?
            {
                DeltaAnswer::Page(item) => item,
                DeltaAnswer::NotFound => return Ok(None),
                DeltaAnswer::Resync(_) => {
                    return Err(Error::Invalid(
                        "Microsoft Graph answered 410 to reading a folder".into(),
                    ));
                }
            };
            if item.get("root").is_some() {
                paths.root = Some(cur);
                break String::new();
            }
            let (Some(name), Some(parent)) = (
                item.get("name").and_then(Value::as_str),
                item.pointer("/parentReference/id").and_then(Value::as_str),
            ) else {
                return Err(Error::Invalid(
                    "Microsoft Graph's folder has no name or parent".into(),
                ));
            };
            let parent = parent.to_owned();
            chain.push((cur, name.to_owned()));
            if let Some(p) = paths.seen(&parent) {
                break p;
            }
            cur = parent;
        };
        tracing::info!(
            sync.drive = lookup.drive,
            folders = chain.len(),
            "a delta item's folder was not in this run: its path was read from Graph"
        );
        let mut path = base;
        for (folder, name) in chain.iter().rev() {
            path = format!("{path}/{name}");
            paths.remember(folder, &path);
        }
        Ok(Some(path))
    }
}

/// What `folder_path` needs to read a folder from Graph: the run's connection, the drive's
/// items URL (`…/v1.0/me/drive/items`, `…/v1.0/drives/{id}/items`) and the leased drive.
struct Lookup<'a> {
    conn: &'a crate::model::Connection,
    items: &'a str,
    drive: i64,
}

/// A `OneDriveFile` record as stored (fields in the order `GET /records` has always shown).
#[derive(serde::Serialize)]
struct FileRecord<'a> {
    blob_size: Option<u64>,
    #[serde(rename = "cTag")]
    c_tag: Option<&'a str>,
    created_at: Option<&'a str>,
    download_url: Option<&'a str>,
    drive_id: Option<&'a str>,
    etag: Option<&'a str>,
    id: &'a str,
    is_folder: bool,
    mime_type: Option<&'a str>,
    name: &'a str,
    path: &'a str,
    raw_source: &'a Value,
    updated_at: Option<&'a str>,
}

enum DeltaAnswer {
    Page(Value),
    /// 404: the item asked for is gone.
    NotFound,
    /// 410: restart from this `Location` (or the initial URL).
    Resync(Option<String>),
}

/// Rewrites `change` to lie below `new` when it lies below `old` (a folder of the page moved).
fn move_change(change: &mut RecordChange, old: &str, new: &str) {
    let RecordChange::Upsert {
        payload,
        version_key,
        path,
        ..
    } = change
    else {
        return;
    };
    let Some(rest) = path
        .strip_prefix(old)
        .and_then(|r| r.strip_prefix('/'))
        .map(str::to_owned)
    else {
        return;
    };
    let moved = format!("{new}/{rest}");
    let Ok(mut v) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    if let Some(p) = v.get_mut("path") {
        *p = Value::String(moved.clone());
    }
    *payload = v.to_string();
    let etag = version_key.split('\u{1f}').next().unwrap_or("").to_owned();
    *version_key = format!("{etag}\u{1f}{moved}");
    *path = moved;
}

/// Folder id → path within one run, bounded.
#[derive(Default)]
struct PathCache {
    root: Option<String>,
    folders: HashMap<String, String>,
    /// Folders of the page being read whose stored path changes when it commits: (stored path,
    /// new path). Stored paths below them are still the old ones until then.
    page_moves: Vec<(String, String)>,
    /// Folders whose path just changed in this run's view (old, new), for the page's earlier
    /// changes (`move_change`).
    seen_moves: Vec<(String, String)>,
}

impl PathCache {
    /// Folders remembered below `old` now lie below `new`.
    fn moved(&mut self, old: &str, new: &str) {
        let from = format!("{old}/");
        for p in self.folders.values_mut() {
            if let Some(rest) = p.strip_prefix(&from) {
                *p = format!("{new}/{rest}");
            }
        }
    }

    /// A path read from the store before the current page commits, as that commit leaves it:
    /// the page's moves applied the way `commit_sync_page` applies them (deepest stored path
    /// first, each to what the previous left).
    fn page_moved(&self, stored: &str) -> String {
        let mut moves: Vec<&(String, String)> = self.page_moves.iter().collect();
        moves.sort_by_key(|(old, _)| std::cmp::Reverse(old.len()));
        let mut path = stored.to_owned();
        for (old, new) in moves {
            if let Some(rest) = path
                .strip_prefix(old.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                path = format!("{new}/{rest}");
            }
        }
        path
    }

    fn remember(&mut self, id: &str, path: &str) {
        if self.folders.len() >= PATH_CACHE {
            self.folders.clear();
        }
        self.folders.insert(id.to_owned(), path.to_owned());
    }

    fn forget(&mut self, id: &str) {
        self.folders.remove(id);
    }

    /// The path of folder `id` when this run knows it: the root, or a folder it saw.
    fn seen(&self, id: &str) -> Option<String> {
        if self.root.as_deref() == Some(id) {
            return Some(String::new());
        }
        self.folders.get(id).cloned()
    }
}

/// A stored record as served: its payload with `_nango_metadata` spliced in (no parse).
fn render_record(r: &RecordRow) -> String {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut meta = Map::new();
    meta.insert("first_seen_at".into(), json!(ts(r.first_seen_at)));
    meta.insert("last_modified_at".into(), json!(ts(r.last_modified_at)));
    meta.insert("last_action".into(), json!(r.last_action));
    meta.insert("deleted_at".into(), json!(r.deleted_at.map(ts)));
    meta.insert("cursor".into(), json!(r.cursor_seq.to_string()));
    let meta = Value::Object(meta).to_string();
    let body = r.payload.trim_end();
    match body.strip_suffix('}') {
        Some(head) if head.trim_end().ends_with('{') => {
            format!("{head}\"_nango_metadata\":{meta}}}")
        }
        Some(head) => format!("{head},\"_nango_metadata\":{meta}}}"),
        None => format!("{{\"_nango_metadata\":{meta}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's changes built from a folder's old path follow it (`move_change`): payload,
    /// version key and path; a sibling sharing the name's prefix does not. Stored paths read
    /// before the page commits are translated as the commit rewrites them (`page_moved`):
    /// deepest stored path first.
    #[test]
    fn changes_and_stored_paths_follow_a_folder_moved_in_the_page() {
        let change = |path: &str| RecordChange::Upsert {
            record_id: "x".into(),
            payload: json!({"id": "x", "path": path}).to_string(),
            version_key: format!("e1\u{1f}{path}"),
            path: path.into(),
            is_folder: false,
        };
        let mut below = change("/A %/b/c.txt");
        move_change(&mut below, "/A %", "/Z/ü");
        let RecordChange::Upsert {
            payload,
            version_key,
            path,
            ..
        } = &below
        else {
            unreachable!()
        };
        assert_eq!(path, "/Z/ü/b/c.txt");
        assert_eq!(version_key, "e1\u{1f}/Z/ü/b/c.txt");
        let v: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(v["path"], "/Z/ü/b/c.txt");
        for other in ["/A %x/c.txt", "/A %"] {
            let mut c = change(other);
            move_change(&mut c, "/A %", "/Z");
            assert!(matches!(&c, RecordChange::Upsert { path, .. } if path == other));
        }

        let mut paths = PathCache::default();
        paths.page_moves.push(("/A".into(), "/B".into()));
        paths.page_moves.push(("/A/G".into(), "/C/G".into()));
        assert_eq!(paths.page_moved("/A/G/x"), "/C/G/x");
        assert_eq!(paths.page_moved("/A/H/x"), "/B/H/x");
        assert_eq!(paths.page_moved("/AB/x"), "/AB/x");
        paths.folders.insert("h".into(), "/B/H".into());
        paths.folders.insert("k".into(), "/BK".into());
        paths.moved("/B", "/Q");
        assert_eq!(paths.folders["h"], "/Q/H");
        assert_eq!(paths.folders["k"], "/BK");
    }

    #[test]
    fn the_watch_plan_follows_nangos_selection_shape() {
        let own = watch_plan(&json!({"other": 1}), false).unwrap();
        assert_eq!(own, vec![("me".to_owned(), MODEL)]);
        assert!(
            watch_plan(&json!({}), true).is_err(),
            "app-only connections have no own drive"
        );
        let plan = watch_plan(
            &json!({
                "drives": ["b!A", "b!A"],
                "pickedFiles": [
                    {"driveId": "b!A", "fileIds": ["1"]},
                    {"driveId": "b!B", "fileIds": ["2"]},
                    {"driveId": "b!B", "fileIds": ["3"]}
                ]
            }),
            true,
        )
        .unwrap();
        assert_eq!(
            plan,
            vec![
                ("drive:b!A".to_owned(), SELECTION_MODEL),
                ("picked:b!B".to_owned(), SELECTION_MODEL)
            ],
            "a whole drive covers its picked items; duplicates fold"
        );
        let merged = picked_files(Some(&json!([
            {"driveId": "b!B", "fileIds": ["2"]},
            {"driveId": "b!B", "fileIds": ["3"]}
        ])))
        .unwrap();
        assert_eq!(
            merged,
            vec![("b!B".to_owned(), vec!["2".to_owned(), "3".to_owned()])]
        );
        for bad in [
            json!({"drives": "b!A"}),
            json!({"drives": ["../me"]}),
            json!({"drives": [".."]}),
            json!({"pickedFiles": [{"driveId": "b!A"}]}),
            json!({"pickedFiles": [{"driveId": "b!A", "fileIds": ["a/b"]}]}),
        ] {
            assert!(watch_plan(&bad, false).is_err(), "{bad}");
        }
        assert_eq!(drive_root("me"), "/me/drive/root");
        assert_eq!(drive_root("drive:b!A"), "/drives/b!A/root");
        assert_eq!(drive_root("picked:b!B"), "/drives/b!B/root");
    }

    #[test]
    fn metadata_is_spliced_into_the_stored_object() {
        let row = RecordRow {
            record_id: "a".into(),
            payload: r#"{"id":"a"}"#.into(),
            first_seen_at: DateTime::UNIX_EPOCH,
            last_modified_at: DateTime::UNIX_EPOCH,
            deleted_at: None,
            last_action: "ADDED".into(),
            cursor_seq: 7,
        };
        let v: Value = serde_json::from_str(&render_record(&row)).unwrap();
        assert_eq!(v["id"], "a");
        assert_eq!(v["_nango_metadata"]["cursor"], "7");
        assert_eq!(v["_nango_metadata"]["last_action"], "ADDED");
        let empty = RecordRow {
            payload: "{}".into(),
            ..row
        };
        let v: Value = serde_json::from_str(&render_record(&empty)).unwrap();
        assert_eq!(v["_nango_metadata"]["deleted_at"], Value::Null);
    }
}
