//! Change-feed persistence (migration `0005_sync`): per-drive sync state with its delta
//! checkpoint and lease, and the records `GET /records` serves. Statements are written once (see
//! `db.rs`); the one per-database difference here is `Db::json_text_set` (the `ids` filter).
//!
//! A page of delta results is committed by `commit_sync_page` in one transaction: the records
//! it changes (each change takes the next cursor of its connection and model), the checkpoint
//! that follows the page, the reconciliation that ends a resync, and the `sync` webhook in the
//! outbox. The transaction first checks that the caller still holds the drive's lease (a fencing
//! check), so an instance whose lease expired cannot overwrite a newer checkpoint.

use chrono::{DateTime, Utc};

use super::db::{Begin, Claim, Db, Ts, execute, fetch, on_pool};
use super::{Error, Store, micros};

/// Record actions, as Nango names them.
pub const ADDED: &str = "ADDED";
pub const UPDATED: &str = "UPDATED";
pub const DELETED: &str = "DELETED";

/// One watched drive of a connection.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncDrive {
    pub id: i64,
    pub connection_id: i64,
    /// `me` for the user's own drive.
    pub drive_key: String,
    pub drive_id: Option<String>,
    pub model: String,
    /// Where the next run continues (a nextLink mid-round, else the deltaLink).
    pub next_link: Option<String>,
    pub resync_generation: i64,
    pub in_resync: bool,
    pub paused: bool,
    pub run_requested: bool,
    /// The next run enumerates from scratch (full resync).
    pub resync_requested: bool,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The Graph subscription delivering change notifications for this drive, and its expiry.
    pub subscription_id: Option<String>,
    pub subscription_expires_at: Option<DateTime<Utc>>,
    pub last_added: i64,
    pub last_updated: i64,
    pub last_deleted: i64,
    pub created_at: DateTime<Utc>,
    /// For a drive of picked items: the ids it was enumerated with (sorted JSON array).
    pub selection: Option<String>,
    /// When a verified change notification for this drive last arrived.
    pub last_notification_at: Option<DateTime<Utc>>,
    /// Set when the run was leased: a notification arrived since the previous lease.
    pub run_notified: bool,
    /// Since when notifications seem to have stopped arriving (a run not started by one found
    /// changes): the drive is polled until one arrives.
    pub push_stale_since: Option<DateTime<Utc>>,
}

const DRIVE_COLS: &str = "id, connection_id, drive_key, drive_id, model, next_link, \
    resync_generation, in_resync, paused, run_requested, resync_requested, lease_until, last_run_at, \
    last_success_at, last_error, subscription_id, subscription_expires_at, last_added, last_updated, last_deleted, created_at, selection, \
    last_notification_at, run_notified, push_stale_since";

/// One change to write.
#[derive(Debug, Clone)]
pub enum RecordChange {
    /// The record as it is now: its JSON object text and what identifies its version.
    Upsert {
        record_id: String,
        payload: String,
        version_key: String,
        /// The record's `path` (as in its payload).
        path: String,
        /// A folder: when its stored path differs, its stored live descendants (of the same
        /// watched drive) get the new path too — delta does not report them.
        is_folder: bool,
    },
    /// The item is gone (a delta tombstone). Unknown ids are ignored.
    Delete { record_id: String },
}

/// A committed page: the changes it applied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageCounts {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl PageCounts {
    pub fn is_empty(&self) -> bool {
        self.added + self.updated + self.deleted == 0
    }
}

/// One page of delta results to commit.
#[derive(Debug)]
pub struct SyncPage<'a> {
    pub drive: i64,
    /// The lease the caller holds (fencing: nothing is written if it changed).
    pub lease_until: DateTime<Utc>,
    pub connection_id: i64,
    pub model: &'a str,
    pub drive_id: Option<&'a str>,
    pub changes: &'a [RecordChange],
    /// The checkpoint after this page.
    pub next_link: &'a str,
    /// This page ends a round (its link is a deltaLink): a resync in progress is reconciled —
    /// records its enumeration did not see are deleted — and ends.
    pub final_page: bool,
    pub at: DateTime<Utc>,
}

/// One stored record as served.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub record_id: String,
    /// The record's JSON object text.
    pub payload: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_modified_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_action: String,
    pub cursor_seq: i64,
}

/// A `GET /records` page request.
#[derive(Debug, Clone)]
pub struct RecordsQuery<'a> {
    pub connection_id: i64,
    pub model: &'a str,
    /// Only records with a larger cursor.
    pub after_cursor: i64,
    pub modified_after: Option<DateTime<Utc>>,
    /// Which `last_action`s to return (ADDED, UPDATED, DELETED).
    pub actions: [bool; 3],
    /// Only these record ids (JSON array text), when given.
    pub ids_json: Option<String>,
    pub limit: u32,
}

impl Db {
    /// `SELECT` of the strings of the JSON array bound at `param` (text): the `ids` filter.
    /// SQLite reads it with `json_each`, PostgreSQL with `jsonb_array_elements_text`.
    pub(super) fn json_text_set(&self, param: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("SELECT value FROM json_each({param})"),
            Db::Postgres(_) => format!("SELECT jsonb_array_elements_text(CAST({param} AS JSONB))"),
        }
    }
}

/// Marks the page's unchanged records (ids: JSON array `$5`) as seen by `generation` (no new
/// cursor); the `IN` list is `Db::json_text_set`.
const TOUCH_UNCHANGED: &str = "UPDATE sync_records SET seen_generation = $1, sync_drive = $2 \
     WHERE connection_id = $3 AND model = $4 AND record_id IN ({ids})";

/// The page's records as stored before it (ids: JSON array `$3`): id, version key, live, path.
const PAGE_STORED: &str = "SELECT record_id, version_key, deleted_at IS NULL, path \
     FROM sync_records WHERE connection_id = $1 AND model = $2 AND record_id IN ({ids})";

/// Up to `$8` live records of watched drive `$3` below a folder: `path` in [`$4`, `$5`) (the
/// folder's path + `/`, + `0`: bytewise, exactly the paths under it), after (`$6`, `$7`) in
/// (path, record id) order. Served by the index `sync_records_path` (migration 0018).
const DESCENDANTS: &str = "SELECT record_id, payload, version_key, path FROM sync_records \
     WHERE connection_id = $1 AND model = $2 AND deleted_at IS NULL \
     AND COALESCE(sync_drive, $3) = $3 AND path >= $4 AND path < $5 \
     AND (path > $6 OR (path = $6 AND record_id > $7)) ORDER BY path, record_id LIMIT $8";

/// A descendant of a moved folder with its new path (payload, version key), as UPDATED.
const MOVE_DESCENDANT: &str = "UPDATE sync_records SET payload = $1, path = $2, \
     version_key = $3, last_modified_at = $4, last_action = 'UPDATED', cursor_seq = $5 \
     WHERE connection_id = $6 AND model = $7 AND record_id = $8";

/// Descendants read per statement when a folder moved (memory stays bounded for any subtree).
const DESCENDANT_BATCH: i64 = 500;

/// `payload` and `version_key` of a record moved to `path`: the payload's `path` replaced, and
/// the path part of the version key (`etag \u{1f} path`).
fn moved_record(payload: &str, version_key: &str, path: &str) -> Option<(String, String)> {
    let mut v: serde_json::Value = serde_json::from_str(payload).ok()?;
    *v.get_mut("path")? = serde_json::Value::String(path.to_owned());
    let etag = version_key.split('\u{1f}').next().unwrap_or("");
    Some((v.to_string(), format!("{etag}\u{1f}{path}")))
}

/// The first string after every string that starts with `prefix` (which ends with `/`): the
/// prefix with its last byte `/` replaced by `0`.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.strip_suffix('/').unwrap_or(prefix).to_owned();
    end.push('0');
    end
}

/// Writes changed (or new, or restored) records, each with its own next cursor, in one
/// statement: `$1`–`$5` are shared (connection, model, time, generation, drive), then five
/// parameters per row (record id, payload, version key, path, cursor) from `$6` on.
const UPSERT_HEAD: &str = "INSERT INTO sync_records (connection_id, model, record_id, payload, \
     version_key, path, first_seen_at, last_modified_at, deleted_at, last_action, cursor_seq, \
     seen_generation, sync_drive) VALUES ";
const UPSERT_TAIL: &str = " ON CONFLICT (connection_id, model, record_id) DO UPDATE SET \
     payload = excluded.payload, version_key = excluded.version_key, path = excluded.path, \
     last_modified_at = excluded.last_modified_at, \
     last_action = CASE WHEN sync_records.deleted_at IS NULL THEN 'UPDATED' ELSE 'ADDED' END, \
     deleted_at = NULL, cursor_seq = excluded.cursor_seq, \
     seen_generation = excluded.seen_generation, sync_drive = excluded.sync_drive";
/// Rows per upsert statement (5 parameters each, well below both databases' limits).
const UPSERT_ROWS: usize = 250;

/// The multi-row upsert of `rows` records (see `UPSERT_HEAD`).
fn upsert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(UPSERT_HEAD.len() + UPSERT_TAIL.len() + rows * 48);
    sql.push_str(UPSERT_HEAD);
    for r in 0..rows {
        let p = 6 + 5 * r;
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "($1, $2, ${}, ${}, ${}, ${}, $3, $3, NULL, 'ADDED', ${}, $4, $5)",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4
        ));
    }
    sql.push_str(UPSERT_TAIL);
    sql
}

/// What a page does to one record, decided against what is stored (the last change of an id
/// in a page wins: the app sees the record's final state once).
enum PageWrite<'a> {
    /// Same version, live: only marked as seen.
    Unchanged(&'a str),
    /// New, changed or restored; `added` when it was not live.
    Upsert {
        record_id: &'a str,
        payload: &'a str,
        version_key: &'a str,
        path: &'a str,
        added: bool,
    },
    /// A live record deleted.
    Delete(&'a str),
}

/// The writes of `changes` given `stored` (record id → (version key, live)), in page order of
/// each id's last change.
fn plan_page<'a>(
    changes: &'a [RecordChange],
    stored: &std::collections::HashMap<String, (String, bool, Option<String>)>,
) -> Vec<PageWrite<'a>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes.iter().rev() {
        let id = match change {
            RecordChange::Upsert { record_id, .. } | RecordChange::Delete { record_id } => {
                record_id.as_str()
            }
        };
        if !seen.insert(id) {
            continue;
        }
        let now = stored.get(id);
        let live = now.is_some_and(|(_, live, _)| *live);
        match change {
            RecordChange::Upsert {
                record_id,
                payload,
                version_key,
                path,
                ..
            } => {
                if live && now.is_some_and(|(v, _, _)| v == version_key) {
                    out.push(PageWrite::Unchanged(record_id));
                } else {
                    out.push(PageWrite::Upsert {
                        record_id,
                        payload,
                        version_key,
                        path,
                        added: !live,
                    });
                }
            }
            RecordChange::Delete { record_id } if live => out.push(PageWrite::Delete(record_id)),
            RecordChange::Delete { .. } => {}
        }
    }
    out.reverse();
    out
}

const DELETE_RECORD: &str = "UPDATE sync_records SET deleted_at = $1, last_modified_at = $1, \
     last_action = 'DELETED', cursor_seq = $2, seen_generation = $3 \
     WHERE connection_id = $4 AND model = $5 AND record_id = $6 AND deleted_at IS NULL";

/// Live records of watched drive `$4` a finished resync enumeration (generation `$3`) did not
/// see (rows from before `sync_drive` existed belong to the only drive of their time).
const VANISHED: &str = "SELECT record_id FROM sync_records WHERE connection_id = $1 \
     AND model = $2 AND seen_generation < $3 AND deleted_at IS NULL \
     AND COALESCE(sync_drive, $4) = $4 ORDER BY record_id";

/// Live records written by watched drive `$3`.
const OF_DRIVE: &str = "SELECT record_id FROM sync_records WHERE connection_id = $1 \
     AND model = $2 AND sync_drive = $3 AND deleted_at IS NULL ORDER BY record_id";

const MAX_CURSOR: &str =
    "SELECT COALESCE(MAX(cursor_seq), 0) FROM sync_records WHERE connection_id = $1 AND model = $2";

const SAVE_CHECKPOINT: &str = "UPDATE sync_drives SET next_link = $1, \
     drive_id = COALESCE($2, drive_id), \
     in_resync = CASE WHEN $3 THEN FALSE ELSE in_resync END, \
     last_added = last_added + $4, last_updated = last_updated + $5, \
     last_deleted = last_deleted + $6 WHERE id = $7";

const INSERT_WEBHOOK: &str = "INSERT INTO webhook_outbox (url, body, next_attempt_at, created_at) \
     VALUES ($1, $2, $3, $3)";

/// Runs `$body` in a write transaction of `$pool`, committing when it returns `Ok`.
macro_rules! in_tx {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        let mut $tx = $pool.begin_write().await?;
        let out: Result<_, Error> = $body;
        match out {
            Ok(v) => {
                $tx.commit().await.map_err(Error::Database)?;
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }};
}

/// A JSON array of strings, for `Db::json_text_set`.
fn json_ids(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// The sync state of drive `drive_key` of connection `connection_id`, created on first use
    /// (unpaused, no checkpoint).
    pub async fn ensure_sync_drive(
        &self,
        connection_id: i64,
        drive_key: &str,
        model: &str,
        at: DateTime<Utc>,
    ) -> Result<SyncDrive, Error> {
        execute!(
            &self.db,
            "INSERT INTO sync_drives (connection_id, drive_key, model, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (connection_id, drive_key) DO NOTHING",
            connection_id,
            drive_key,
            model,
            Ts(micros(at)),
        )?;
        let sql = format!(
            "SELECT {DRIVE_COLS} FROM sync_drives WHERE connection_id = $1 AND drive_key = $2"
        );
        fetch!(
            &self.db,
            fetch_one::<SyncDrive>(&sql, connection_id, drive_key)
        )
    }

    /// The watched drives of a connection, oldest first.
    pub async fn sync_drives(&self, connection_id: i64) -> Result<Vec<SyncDrive>, Error> {
        let sql =
            format!("SELECT {DRIVE_COLS} FROM sync_drives WHERE connection_id = $1 ORDER BY id");
        fetch!(&self.db, fetch_all::<SyncDrive>(&sql, connection_id))
    }

    /// Watched drives of live connections by subscription state at `now`: (active, expired,
    /// none).
    pub async fn sync_subscription_states(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64, u64), Error> {
        let (active, expired, none): (i64, i64, i64) = fetch!(
            &self.db,
            fetch_one::<(i64, i64, i64)>(
                "SELECT \
                 COALESCE(SUM(CASE WHEN subscription_id IS NOT NULL AND subscription_expires_at > $1 THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN subscription_id IS NOT NULL AND (subscription_expires_at IS NULL OR subscription_expires_at <= $1) THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN subscription_id IS NULL THEN 1 ELSE 0 END), 0) \
                 FROM sync_drives WHERE connection_id IN \
                 (SELECT id FROM connections WHERE deleted_at IS NULL)",
                Ts(micros(now)),
            )
        )?;
        let u = |n: i64| n.max(0) as u64;
        Ok((u(active), u(expired), u(none)))
    }

    /// The connection ids of integration `key`'s live connections with a watched drive.
    pub async fn watched_connection_ids(&self, key: &str) -> Result<Vec<String>, Error> {
        fetch!(
            &self.db,
            scalar fetch_all::<String>(
                "SELECT c.connection_id FROM connections c WHERE c.provider_config_key = $1 \
                 AND c.deleted_at IS NULL \
                 AND EXISTS (SELECT 1 FROM sync_drives d WHERE d.connection_id = c.id) \
                 ORDER BY c.connection_id",
                key,
            )
        )
    }

    /// Takes the lease of drive `id` until `lease_until` if it is unpaused and free (or its
    /// lease expired) at `now`; clears `run_requested`. `None` when another run holds it (or it
    /// is paused): the caller then asks for a run with `request_sync_run` instead.
    pub async fn lease_sync_drive(
        &self,
        id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<SyncDrive>, Error> {
        let sql = format!(
            "UPDATE sync_drives SET lease_until = $1, run_requested = FALSE, last_run_at = $2, \
             run_notified = notified, notified = FALSE \
             WHERE id = $3 AND paused = FALSE AND (lease_until IS NULL OR lease_until <= $2) \
             RETURNING {DRIVE_COLS}"
        );
        fetch!(
            &self.db,
            fetch_optional::<SyncDrive>(&sql, Ts(micros(lease_until)), Ts(micros(now)), id)
        )
    }

    /// The heartbeat of a long run: moves the lease of drive `id` from `lease_until` (the
    /// caller's, fencing) to `longer`. False when the caller no longer holds it.
    pub async fn extend_sync_lease(
        &self,
        id: i64,
        lease_until: DateTime<Utc>,
        longer: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let n = execute!(
            &self.db,
            "UPDATE sync_drives SET lease_until = $1 WHERE id = $2 AND lease_until = $3",
            Ts(micros(longer)),
            id,
            Ts(micros(lease_until)),
        )?;
        Ok(n > 0)
    }

    /// Asks for another run of drive `id` once the current one ends (coalesced: many requests
    /// are one run).
    /// With `full`, that run enumerates from scratch and reconciles (a full resync).
    pub async fn request_sync_run(&self, id: i64, full: bool) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET run_requested = TRUE, \
             resync_requested = (resync_requested OR $1) WHERE id = $2",
            full,
            id
        )?;
        Ok(())
    }

    /// Ends the run holding lease `lease_until` on drive `id`, recording its error (plain
    /// words) or success at `at`. Returns whether another run was requested meanwhile.
    /// `last_run_at` stays the run's start (set when it was leased): the schedule plans the next
    /// poll from it, so a drive is polled every interval, not every interval plus a run.
    pub async fn release_sync_drive(
        &self,
        id: i64,
        lease_until: DateTime<Utc>,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let requested: Option<bool> = fetch!(
            &self.db,
            scalar fetch_optional::<bool>(
                "UPDATE sync_drives SET lease_until = NULL, last_error = $1, \
                 last_success_at = CASE WHEN $1 IS NULL THEN $2 ELSE last_success_at END \
                 WHERE id = $3 AND lease_until = $4 RETURNING run_requested",
                error,
                Ts(micros(at)),
                id,
                Ts(micros(lease_until)),
            )
        )?;
        self.cache.sync_wake.notify_one();
        Ok(requested.unwrap_or(false))
    }

    /// Leases up to `limit` unpaused, unleased drives of live connections due for a scheduled run at `now`: a run
    /// was asked for (and its holder died, or it was paused), a run's holder died (its lease
    /// expired unreleased: the interrupted run continues from its checkpoint), never run, or last run before `poll_before` while push is not working (no live subscription),
    /// or before `reconcile_before` even when it is. Instances sharing a PostgreSQL database
    /// split the work (`FOR UPDATE SKIP LOCKED`).
    pub async fn claim_due_sync_drives(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        poll_before: DateTime<Utc>,
        reconcile_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SyncDrive>, Error> {
        let sql = self.db.claim_sql(Claim {
            table: "sync_drives",
            // (SET expressions read the row as it was: `notified` moves into `run_notified`.)
            lease: "run_notified = notified, notified = FALSE, run_requested = FALSE, \
                last_run_at = $2, lease_until",
            filter: "paused = FALSE AND (lease_until IS NULL OR lease_until <= $2) \
                AND connection_id IN (SELECT id FROM connections WHERE deleted_at IS NULL) \
                AND (run_requested = TRUE OR resync_requested = TRUE OR lease_until IS NOT NULL \
                  OR last_run_at IS NULL OR last_run_at <= CASE \
                  WHEN subscription_id IS NOT NULL AND subscription_expires_at > $2 \
                    AND push_stale_since IS NULL THEN $4 \
                  ELSE $3 END)",
            order: "last_run_at, id",
            limit: "$5",
            returning: DRIVE_COLS,
        });
        fetch!(
            &self.db,
            fetch_all::<SyncDrive>(
                &sql,
                Ts(micros(lease_until)),
                Ts(micros(now)),
                Ts(micros(poll_before)),
                Ts(micros(reconcile_before)),
                i64::from(limit),
            )
        )
    }

    /// When the schedule has work next, seen at `now` (`claim_due_sync_drives` with the same
    /// intervals): `now` when a drive is due already, else the earliest of a polled drive's last
    /// start + `poll`, a pushed one's + `reconcile`, and a running drive's lease expiry (a dead
    /// holder's drive is taken over then); `None` without watched drives.
    pub async fn next_sync_due(
        &self,
        now: DateTime<Utc>,
        poll: chrono::TimeDelta,
        reconcile: chrono::TimeDelta,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        type Row = (
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            i64,
        );
        let (leased, pushed, polled, due): Row = fetch!(
            &self.db,
            fetch_one::<Row>(
                "SELECT \
                 MIN(CASE WHEN lease_until > $1 THEN lease_until END), \
                 MIN(CASE WHEN (lease_until IS NULL OR lease_until <= $1) \
                   AND subscription_id IS NOT NULL AND subscription_expires_at > $1 \
                   AND push_stale_since IS NULL THEN last_run_at END), \
                 MIN(CASE WHEN (lease_until IS NULL OR lease_until <= $1) \
                   AND NOT (subscription_id IS NOT NULL AND subscription_expires_at > $1 \
                   AND push_stale_since IS NULL) THEN last_run_at END), \
                 COALESCE(SUM(CASE WHEN (lease_until IS NULL OR lease_until <= $1) \
                   AND (run_requested = TRUE OR resync_requested = TRUE \
                   OR lease_until IS NOT NULL OR last_run_at IS NULL) THEN 1 ELSE 0 END), 0) \
                 FROM sync_drives WHERE paused = FALSE \
                 AND connection_id IN (SELECT id FROM connections WHERE deleted_at IS NULL)",
                Ts(micros(now)),
            )
        )?;
        if due > 0 {
            return Ok(Some(now));
        }
        Ok([
            leased,
            pushed.map(|t| t + reconcile),
            polled.map(|t| t + poll),
        ]
        .into_iter()
        .flatten()
        .min())
    }

    /// Resolves when a sync run of this instance ended since the last call (the schedule then
    /// plans again).
    pub async fn sync_run_ended(&self) {
        self.cache.sync_wake.notified().await;
    }

    /// The drive a Graph subscription belongs to.
    pub async fn sync_drive_by_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Option<SyncDrive>, Error> {
        let sql = format!("SELECT {DRIVE_COLS} FROM sync_drives WHERE subscription_id = $1");
        fetch!(&self.db, fetch_optional::<SyncDrive>(&sql, subscription_id))
    }

    /// Records (or with `None` forgets) the drive's Graph subscription.
    pub async fn set_sync_subscription(
        &self,
        id: i64,
        subscription: Option<(&str, DateTime<Utc>)>,
    ) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET subscription_id = $1, subscription_expires_at = $2 \
             WHERE id = $3",
            subscription.map(|s| s.0),
            Ts::opt(subscription.map(|s| micros(s.1))),
            id,
        )?;
        Ok(())
    }

    /// A verified change notification for drive `id` arrived at `at`: push works (again).
    pub async fn note_sync_notification(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET last_notification_at = $1, notified = TRUE, \
             push_stale_since = NULL \
             WHERE id = $2",
            Ts(micros(at)),
            id,
        )?;
        Ok(())
    }

    /// Notifications for drive `id` seem to have stopped arriving (since `at`, unless already
    /// marked): it is polled until the next one.
    pub async fn mark_sync_push_stale(&self, id: i64, at: DateTime<Utc>) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET push_stale_since = COALESCE(push_stale_since, $1) \
             WHERE id = $2",
            Ts(micros(at)),
            id,
        )?;
        Ok(())
    }

    /// Claims the stale-push sweep at `now` unless one began after `since` (shared by every
    /// instance: one wins). True when the caller is to sweep.
    pub async fn claim_sync_sweep(
        &self,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let n = execute!(
            &self.db,
            "UPDATE sync_sweep SET swept_at = $1 WHERE id = 1 \
             AND (swept_at IS NULL OR swept_at <= $2)",
            Ts(micros(now)),
            Ts(micros(since)),
        )?;
        Ok(n > 0)
    }

    /// Asks for one run of every unpaused, idle drive other than `except` whose push looks
    /// healthy (a live subscription, not marked stale) and that no notification announced a
    /// change to since its last run: if notifications stopped for all of them, that run finds
    /// the changes and switches the drive to polling. Returns how many.
    pub async fn request_push_sweep(&self, now: DateTime<Utc>, except: i64) -> Result<u64, Error> {
        let n = execute!(
            &self.db,
            "UPDATE sync_drives SET run_requested = TRUE \
             WHERE id <> $1 AND paused = FALSE AND run_requested = FALSE \
             AND (lease_until IS NULL OR lease_until <= $2) \
             AND subscription_id IS NOT NULL AND subscription_expires_at > $2 \
             AND push_stale_since IS NULL AND notified = FALSE",
            except,
            Ts(micros(now)),
        )?;
        self.cache.sync_wake.notify_one();
        Ok(n)
    }

    /// Records the picked item ids drive `id` is enumerated with.
    pub async fn set_sync_selection(&self, id: i64, selection: &str) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET selection = $1 WHERE id = $2",
            selection,
            id,
        )?;
        Ok(())
    }

    /// Pauses or resumes every watched drive of a connection; returns how many.
    pub async fn set_sync_paused(&self, connection_id: i64, paused: bool) -> Result<u64, Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET paused = $1 WHERE connection_id = $2",
            paused,
            connection_id,
        )
    }

    /// Starts an enumeration from scratch at `from` (a 410's `Location`, or the initial delta
    /// URL for a full resync), under the lease `lease_until`: the next generation begins, and
    /// records it does not see are deleted when it finishes. `None` if the lease was lost.
    pub async fn begin_resync(
        &self,
        id: i64,
        lease_until: DateTime<Utc>,
        from: &str,
    ) -> Result<Option<i64>, Error> {
        fetch!(
            &self.db,
            scalar fetch_optional::<i64>(
                "UPDATE sync_drives SET resync_generation = resync_generation + 1, \
                 in_resync = TRUE, resync_requested = FALSE, next_link = $1 WHERE id = $2 AND lease_until = $3 \
                 RETURNING resync_generation",
                from,
                id,
                Ts(micros(lease_until)),
            )
        )
    }

    /// Commits one page (see the module docs). `webhook` builds the `sync` webhook (url, body)
    /// from the page's counts; it is queued in the same transaction when the page changed
    /// something. `None` if the lease was lost (nothing written).
    pub async fn commit_sync_page(
        &self,
        page: &SyncPage<'_>,
        webhook: &(dyn Fn(PageCounts) -> Option<(String, String)> + Sync),
    ) -> Result<Option<PageCounts>, Error> {
        let check_lease = format!(
            "SELECT resync_generation, in_resync FROM sync_drives WHERE id = $1 \
             AND lease_until = $2{}",
            self.db.for_update()
        );
        let at = Ts(micros(page.at));
        let page_stored = PAGE_STORED.replace("{ids}", &self.db.json_text_set("$3"));
        let touch_unchanged = TOUCH_UNCHANGED.replace("{ids}", &self.db.json_text_set("$5"));
        on_pool!(&self.db, |pool| {
            in_tx!(pool, |tx| {
                async {
                    let state: Option<(i64, bool)> = sqlx::query_as(&check_lease)
                        .bind(page.drive)
                        .bind(Ts(micros(page.lease_until)))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    let Some((generation, in_resync)) = state else {
                        return Ok(None);
                    };
                    let mut cursor: i64 = sqlx::query_scalar(MAX_CURSOR)
                        .bind(page.connection_id)
                        .bind(page.model)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    let mut counts = PageCounts::default();
                    // One read of what the page's records are now, then one statement per kind
                    // of write (not two per record).
                    let ids: Vec<&str> = page
                        .changes
                        .iter()
                        .map(|c| match c {
                            RecordChange::Upsert { record_id, .. }
                            | RecordChange::Delete { record_id } => record_id.as_str(),
                        })
                        .collect();
                    type Stored = std::collections::HashMap<String, (String, bool, Option<String>)>;
                    let stored: Stored = if ids.is_empty() {
                        Default::default()
                    } else {
                        let rows: Vec<(String, String, bool, Option<String>)> =
                            sqlx::query_as(&page_stored)
                                .bind(page.connection_id)
                                .bind(page.model)
                                .bind(json_ids(&ids))
                                .fetch_all(&mut *tx)
                                .await
                                .map_err(Error::Database)?;
                        rows.into_iter()
                            .map(|(id, v, live, path)| (id, (v, live, path)))
                            .collect()
                    };
                    // Folders of the page whose stored live record has another path (renamed
                    // or moved): their stored live descendants follow, before the page's own
                    // writes (which then win for the records in the page, so those are not
                    // rewritten here), deepest old path first (a subfolder moved in the same
                    // page is rewritten from where it was, then what is left below its
                    // ancestor). Each rewritten descendant takes a cursor and counts as updated.
                    let mut moves: Vec<(&str, &str)> = page
                        .changes
                        .iter()
                        .filter_map(|c| match c {
                            RecordChange::Upsert {
                                record_id,
                                path,
                                is_folder: true,
                                ..
                            } => match stored.get(record_id.as_str()) {
                                Some((_, true, Some(old))) if old != path => {
                                    Some((old.as_str(), path.as_str()))
                                }
                                _ => None,
                            },
                            _ => None,
                        })
                        .collect();
                    moves.sort_by_key(|(old, _)| std::cmp::Reverse(old.len()));
                    let in_page: std::collections::HashSet<&str> = ids.iter().copied().collect();
                    for (old, new) in moves {
                        let from = format!("{old}/");
                        let to = format!("{new}/");
                        let end = prefix_end(&from);
                        let (mut after_path, mut after_id) = (from.clone(), String::new());
                        loop {
                            let rows: Vec<(String, String, String, String)> =
                                sqlx::query_as(DESCENDANTS)
                                    .bind(page.connection_id)
                                    .bind(page.model)
                                    .bind(page.drive)
                                    .bind(&from)
                                    .bind(&end)
                                    .bind(&after_path)
                                    .bind(&after_id)
                                    .bind(DESCENDANT_BATCH)
                                    .fetch_all(&mut *tx)
                                    .await
                                    .map_err(Error::Database)?;
                            let Some(last) = rows.last() else { break };
                            (after_path, after_id) = (last.3.clone(), last.0.clone());
                            let full = rows.len() as i64 == DESCENDANT_BATCH;
                            for (record_id, payload, version_key, path) in &rows {
                                if in_page.contains(record_id.as_str()) {
                                    continue;
                                }
                                let Some(rest) = path.strip_prefix(&from) else {
                                    continue;
                                };
                                let path = format!("{to}{rest}");
                                let Some((payload, version_key)) =
                                    moved_record(payload, version_key, &path)
                                else {
                                    continue;
                                };
                                cursor += 1;
                                sqlx::query(MOVE_DESCENDANT)
                                    .bind(payload)
                                    .bind(&path)
                                    .bind(version_key)
                                    .bind(at)
                                    .bind(cursor)
                                    .bind(page.connection_id)
                                    .bind(page.model)
                                    .bind(record_id)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(Error::Database)?;
                                counts.updated += 1;
                            }
                            if !full {
                                break;
                            }
                        }
                    }
                    let writes = plan_page(page.changes, &stored);
                    let unchanged: Vec<&str> = writes
                        .iter()
                        .filter_map(|w| match w {
                            PageWrite::Unchanged(id) => Some(*id),
                            _ => None,
                        })
                        .collect();
                    if !unchanged.is_empty() {
                        sqlx::query(&touch_unchanged)
                            .bind(generation)
                            .bind(page.drive)
                            .bind(page.connection_id)
                            .bind(page.model)
                            .bind(json_ids(&unchanged))
                            .execute(&mut *tx)
                            .await
                            .map_err(Error::Database)?;
                    }
                    // Cursors follow the page's order; upserts are written in batches, each
                    // delete on its own (rare in a page).
                    let mut batch: Vec<(&str, &str, &str, &str, i64)> = Vec::new();
                    let mut deletes: Vec<(&str, i64)> = Vec::new();
                    for w in &writes {
                        match w {
                            PageWrite::Unchanged(_) => {}
                            PageWrite::Upsert {
                                record_id,
                                payload,
                                version_key,
                                path,
                                added,
                            } => {
                                cursor += 1;
                                batch.push((record_id, payload, version_key, path, cursor));
                                if *added {
                                    counts.added += 1;
                                } else {
                                    counts.updated += 1;
                                }
                            }
                            PageWrite::Delete(record_id) => {
                                cursor += 1;
                                deletes.push((record_id, cursor));
                                counts.deleted += 1;
                            }
                        }
                    }
                    for rows in batch.chunks(UPSERT_ROWS) {
                        let sql = upsert_sql(rows.len());
                        let mut q = sqlx::query(&sql)
                            .bind(page.connection_id)
                            .bind(page.model)
                            .bind(at)
                            .bind(generation)
                            .bind(page.drive);
                        for (record_id, payload, version_key, path, cursor) in rows {
                            q = q
                                .bind(*record_id)
                                .bind(*payload)
                                .bind(*version_key)
                                .bind(*path)
                                .bind(*cursor);
                        }
                        q.execute(&mut *tx).await.map_err(Error::Database)?;
                    }
                    for (record_id, cursor) in deletes {
                        sqlx::query(DELETE_RECORD)
                            .bind(at)
                            .bind(cursor)
                            .bind(generation)
                            .bind(page.connection_id)
                            .bind(page.model)
                            .bind(record_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(Error::Database)?;
                    }
                    if page.final_page && in_resync {
                        let gone: Vec<String> = sqlx::query_scalar(VANISHED)
                            .bind(page.connection_id)
                            .bind(page.model)
                            .bind(generation)
                            .bind(page.drive)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(Error::Database)?;
                        for record_id in &gone {
                            cursor += 1;
                            sqlx::query(DELETE_RECORD)
                                .bind(at)
                                .bind(cursor)
                                .bind(generation)
                                .bind(page.connection_id)
                                .bind(page.model)
                                .bind(record_id)
                                .execute(&mut *tx)
                                .await
                                .map_err(Error::Database)?;
                            counts.deleted += 1;
                        }
                    }
                    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    sqlx::query(SAVE_CHECKPOINT)
                        .bind(page.next_link)
                        .bind(page.drive_id)
                        .bind(page.final_page)
                        .bind(as_i64(counts.added))
                        .bind(as_i64(counts.updated))
                        .bind(as_i64(counts.deleted))
                        .bind(page.drive)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    if !counts.is_empty() {
                        if let Some((url, body)) = webhook(counts) {
                            sqlx::query(INSERT_WEBHOOK)
                                .bind(url)
                                .bind(body)
                                .bind(at)
                                .execute(&mut *tx)
                                .await
                                .map_err(Error::Database)?;
                        }
                    }
                    Ok(Some(counts))
                }
                .await
            })
        })
    }

    /// Stops watching drive `id` (dropped from the connection's selection): its live records
    /// are deleted (each with a new cursor), the `sync` webhook built by `webhook` is queued when
    /// there were any, and the drive's row goes, all in one transaction. Returns the deletions.
    pub async fn remove_sync_drive(
        &self,
        drive: &SyncDrive,
        at: DateTime<Utc>,
        webhook: &(dyn Fn(PageCounts) -> Option<(String, String)> + Sync),
    ) -> Result<u64, Error> {
        let when = Ts(micros(at));
        on_pool!(&self.db, |pool| {
            in_tx!(pool, |tx| {
                async {
                    let gone: Vec<String> = sqlx::query_scalar(OF_DRIVE)
                        .bind(drive.connection_id)
                        .bind(&drive.model)
                        .bind(drive.id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    let mut cursor: i64 = sqlx::query_scalar(MAX_CURSOR)
                        .bind(drive.connection_id)
                        .bind(&drive.model)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    for record_id in &gone {
                        cursor += 1;
                        sqlx::query(DELETE_RECORD)
                            .bind(when)
                            .bind(cursor)
                            .bind(drive.resync_generation)
                            .bind(drive.connection_id)
                            .bind(&drive.model)
                            .bind(record_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(Error::Database)?;
                    }
                    let counts = PageCounts {
                        deleted: gone.len() as u64,
                        ..PageCounts::default()
                    };
                    if !counts.is_empty() {
                        if let Some((url, body)) = webhook(counts) {
                            sqlx::query(INSERT_WEBHOOK)
                                .bind(url)
                                .bind(body)
                                .bind(when)
                                .execute(&mut *tx)
                                .await
                                .map_err(Error::Database)?;
                        }
                    }
                    sqlx::query("DELETE FROM sync_drives WHERE id = $1")
                        .bind(drive.id)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::Database)?;
                    Ok(counts.deleted)
                }
                .await
            })
        })
    }

    /// Resets the per-run counters shown by the status (at the start of a run).
    pub async fn reset_sync_counts(&self, id: i64) -> Result<(), Error> {
        execute!(
            &self.db,
            "UPDATE sync_drives SET last_added = 0, last_updated = 0, last_deleted = 0 \
             WHERE id = $1",
            id,
        )?;
        Ok(())
    }

    /// One page of records in cursor order (see `RecordsQuery`).
    pub async fn list_sync_records(&self, q: &RecordsQuery<'_>) -> Result<Vec<RecordRow>, Error> {
        let sql = format!(
            "SELECT record_id, payload, first_seen_at, last_modified_at, deleted_at, \
             last_action, cursor_seq FROM sync_records \
             WHERE connection_id = $1 AND model = $2 AND cursor_seq > $3 \
             AND ($4 IS NULL OR last_modified_at >= $4) \
             AND ((last_action = 'ADDED' AND $5) OR (last_action = 'UPDATED' AND $6) \
                  OR (last_action = 'DELETED' AND $7)) \
             AND ($8 IS NULL OR record_id IN ({ids})) \
             ORDER BY cursor_seq LIMIT $9",
            ids = self.db.json_text_set("$8"),
        );
        fetch!(
            &self.db,
            fetch_all::<RecordRow>(
                &sql,
                q.connection_id,
                q.model,
                q.after_cursor,
                Ts::opt(q.modified_after.map(micros)),
                q.actions[0],
                q.actions[1],
                q.actions[2],
                q.ids_json.as_deref(),
                i64::from(q.limit),
            )
        )
    }

    /// The payload of one live record (e.g. a folder whose path its children need).
    pub async fn sync_record_payload(
        &self,
        connection_id: i64,
        model: &str,
        record_id: &str,
    ) -> Result<Option<String>, Error> {
        fetch!(
            &self.db,
            scalar fetch_optional::<String>(
                "SELECT payload FROM sync_records WHERE connection_id = $1 AND model = $2 \
                 AND record_id = $3 AND deleted_at IS NULL",
                connection_id,
                model,
                record_id,
            )
        )
    }

    /// Live (not deleted) records of a connection and model.
    pub async fn count_sync_records(&self, connection_id: i64, model: &str) -> Result<u64, Error> {
        let n: i64 = fetch!(
            &self.db,
            scalar fetch_one::<i64>(
                "SELECT COUNT(*) FROM sync_records WHERE connection_id = $1 AND model = $2 \
                 AND deleted_at IS NULL",
                connection_id,
                model,
            )
        )?;
        Ok(n.max(0) as u64)
    }
}
