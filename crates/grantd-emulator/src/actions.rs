//! Acting as a user in the OneDrive web UI, without a token: create, edit, rename, move,
//! delete and restore (from the recycle bin) items in a user's drive (`POST /_emulator/users/{user}/drive/actions`), also in bulk
//! with a seeded RNG (`POST /_emulator/users/{user}/drive/random-edits`), so tests produce real
//! changes (delta, change notifications) the way a person would. Plus the typed
//! [`crate::control::Control`] methods for these and for `crate::notify`'s control routes.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::Control;
use crate::counters::CounterSnapshot;
use crate::graph::drives::{Conflict, Drive, Identity};
use crate::graph::seed::{identity_of, memory_file, provision_user};
use crate::notify::{Delivery, LifecycleTrigger, NotificationSettings, Subscription};
use crate::state::AppState;

/// One web-UI action. Paths are `/`-separated names below the drive root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UserAction {
    /// Creates (or overwrites) a file; missing parent folders are created.
    CreateFile {
        path: String,
        content: String,
    },
    /// Creates a folder (and missing parents).
    CreateFolder {
        path: String,
    },
    /// New content for an existing file.
    Edit {
        path: String,
        content: String,
    },
    Rename {
        path: String,
        name: String,
    },
    /// Moves the item into the folder at `to` (`""` = the root).
    Move {
        path: String,
        to: String,
    },
    Delete {
        path: String,
    },
    /// Restores a deleted item from the recycle bin by its id (a deleted item has no path):
    /// into its old folder, with the subtree its delete removed (`Drive::restore`).
    Restore {
        id: String,
    },
}

/// What an action left behind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    pub id: String,
    /// Path of the item after the action (before it, for deletes).
    pub path: String,
    pub deleted: bool,
}

/// Bulk random edits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RandomEdits {
    pub count: u32,
    /// Same seed, same drive state → same edits.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomEditsResult {
    pub actions: Vec<UserAction>,
}

/// Bulk seeding of a large drive (benchmarks): `files` small files under `folder`, spread over
/// subfolders of at most `per_folder` files each (`{folder}/part-00000/file-0000000.txt`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkCreate {
    pub folder: String,
    pub files: u32,
    #[serde(default = "default_per_folder")]
    pub per_folder: u32,
}

fn default_per_folder() -> u32 {
    1_000
}

/// Most files one bulk request creates.
pub const MAX_BULK_FILES: u32 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkCreateResult {
    pub folders: u32,
    pub files: u32,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_emulator/users/{user}/drive/actions", post(act))
        .route("/_emulator/users/{user}/drive/random-edits", post(random))
        .route("/_emulator/users/{user}/drive/bulk", post(bulk))
        .route(
            "/_emulator/users/{user}/drive/resync-required",
            post(resync_required),
        )
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The user's drive id (provisioned if needed) and their identity.
fn user_drive(state: &AppState, user: &str) -> Option<(String, Identity)> {
    let dir = state.dir();
    let u = dir.user(user)?.clone();
    let mut model = state.drives.lock();
    let id = provision_user(&mut model, &dir, &u);
    Some((id, identity_of(&u)))
}

fn path_of(d: &Drive, id: &str) -> String {
    d.path_names(id).join("/")
}

/// Applies one action to a drive.
pub fn apply(
    d: &mut Drive,
    action: &UserAction,
    now: chrono::DateTime<chrono::Utc>,
    by: &Identity,
) -> Result<ActionResult, (StatusCode, String)> {
    let graph = |e: crate::graph::error::GraphError| (e.status, e.message);
    let find = |d: &Drive, path: &str| -> Result<String, (StatusCode, String)> {
        d.resolve_path(&d.root_id, &segments(path))
            .map(|i| i.id.clone())
            .ok_or((StatusCode::NOT_FOUND, format!("no item at '{path}'")))
    };
    let root = d.root_id.clone();
    let id = match action {
        UserAction::CreateFile { path, content } | UserAction::Edit { path, content } => {
            let segs = segments(path);
            let Some((name, dirs)) = segs.split_last() else {
                return Err((StatusCode::BAD_REQUEST, "a file path is required".into()));
            };
            let data = memory_file(name, Bytes::from(content.clone().into_bytes()));
            if matches!(action, UserAction::Edit { .. }) {
                let id = find(d, path)?;
                d.replace_content(&id, data, now, by).map_err(graph)?;
                id
            } else {
                let parent = d.ensure_folders(&root, dirs, now, by).map_err(graph)?;
                d.put_item(&parent, name, Some(data), Conflict::Replace, now, by)
                    .map_err(graph)?
                    .0
            }
        }
        UserAction::CreateFolder { path } => d
            .ensure_folders(&root, &segments(path), now, by)
            .map_err(graph)?,
        UserAction::Rename { path, name } => {
            let id = find(d, path)?;
            d.update_item(
                &id,
                Some(name),
                None,
                Default::default(),
                Conflict::Fail,
                now,
                by,
            )
            .map_err(graph)?;
            id
        }
        UserAction::Move { path, to } => {
            let id = find(d, path)?;
            let folder = find(d, to)?;
            d.update_item(
                &id,
                None,
                Some(&folder),
                Default::default(),
                Conflict::Fail,
                now,
                by,
            )
            .map_err(graph)?;
            id
        }
        UserAction::Delete { path } => {
            let id = find(d, path)?;
            let before = path_of(d, &id);
            d.delete(&id, now, by).map_err(graph)?;
            return Ok(ActionResult {
                id,
                path: before,
                deleted: true,
            });
        }
        UserAction::Restore { id } => {
            d.restore(id, now, by).map_err(graph)?;
            id.clone()
        }
    };
    Ok(ActionResult {
        path: path_of(d, &id),
        id,
        deleted: false,
    })
}

async fn act(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Json(action): Json<UserAction>,
) -> Response {
    let Some((drive_id, by)) = user_drive(&state, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let now = state.clock.now();
    let mut model = state.drives.lock();
    let Some(d) = model.drive_mut(&drive_id) else {
        return err(StatusCode::NOT_FOUND, "no drive");
    };
    match apply(d, &action, now, &by) {
        Ok(r) => Json(r).into_response(),
        Err((status, msg)) => err(status, msg),
    }
}

/// Picks one random edit for the drive's current state: creates (files, folders), edits,
/// renames, moves, deletes (files, and now and then a folder with its subtree) and restores from
/// the recycle bin. Candidates are taken in creation order (deterministic for a seed) and only
/// the chosen item's path is built, so a pick costs one pass over the drive's items.
fn pick(d: &Drive, rng: &mut StdRng, n: u32) -> UserAction {
    let mut folders: Vec<(u64, &str)> = Vec::new();
    let mut files: Vec<(u64, &str)> = Vec::new();
    let mut bin: Vec<(u64, &str)> = Vec::new();
    for i in d.items.values() {
        if i.parent.is_none() {
            continue;
        }
        if i.deleted {
            if i.recycled_with.as_deref() == Some(i.id.as_str()) {
                bin.push((i.ordinal, &i.id));
            }
        } else if i.is_folder() {
            folders.push((i.ordinal, &i.id));
        } else if i.size_of_file() <= 1 << 20 {
            files.push((i.ordinal, &i.id));
        }
    }
    folders.sort_unstable();
    files.sort_unstable();
    bin.sort_unstable();
    let any = |rng: &mut StdRng, v: &[(u64, &str)]| v[rng.gen_range(0..v.len())].1.to_owned();
    // A folder to put something in: the root or any live folder.
    let folder = |rng: &mut StdRng| match rng.gen_range(0..=folders.len()) {
        0 => String::new(),
        k => path_of(d, folders[k - 1].1),
    };
    let file = |rng: &mut StdRng| path_of(d, &any(rng, &files));
    let join = |dir: &str, name: &str| {
        if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        }
    };
    let tag: u32 = rng.r#gen();
    // Weights out of 16: create file 3, create folder 2, edit 2, rename 2, move 2,
    // delete file 2, delete folder 1, restore 2 (what is not possible yet creates a file).
    let mut kind = rng.gen_range(0..16);
    if (files.is_empty() && (3..13).contains(&kind))
        || (folders.is_empty() && kind == 13)
        || (bin.is_empty() && kind >= 14)
    {
        kind = 0;
    }
    match kind {
        0..=2 => UserAction::CreateFile {
            path: join(&folder(rng), &format!("edit-{n}-{tag:08x}.txt")),
            content: format!("random edit {n} ({tag:08x})\n"),
        },
        3..=4 => UserAction::CreateFolder {
            path: join(&folder(rng), &format!("folder-{n}-{tag:08x}")),
        },
        5..=6 => UserAction::Edit {
            path: file(rng),
            content: format!("edited {n} ({tag:08x})\n"),
        },
        7..=8 => UserAction::Rename {
            path: file(rng),
            name: format!("renamed-{n}-{tag:08x}.txt"),
        },
        9..=10 => UserAction::Move {
            path: file(rng),
            to: folder(rng),
        },
        11..=12 => UserAction::Delete { path: file(rng) },
        13 => UserAction::Delete {
            path: path_of(d, &any(rng, &folders)),
        },
        _ => UserAction::Restore { id: any(rng, &bin) },
    }
}

async fn random(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Json(b): Json<RandomEdits>,
) -> Response {
    if b.count > 10_000 {
        return err(StatusCode::BAD_REQUEST, "count must be at most 10000");
    }
    let Some((drive_id, by)) = user_drive(&state, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let now = state.clock.now();
    let mut rng = StdRng::seed_from_u64(b.seed);
    let mut actions = Vec::new();
    let mut model = state.drives.lock();
    let Some(d) = model.drive_mut(&drive_id) else {
        return err(StatusCode::NOT_FOUND, "no drive");
    };
    for n in 0..b.count {
        let a = pick(d, &mut rng, n);
        // A move into the item's own folder (or a clash) is skipped, not an error.
        if apply(d, &a, now, &by).is_ok() {
            actions.push(a);
        }
    }
    Json(RandomEditsResult { actions }).into_response()
}

async fn bulk(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Json(b): Json<BulkCreate>,
) -> Response {
    if b.files > MAX_BULK_FILES || b.per_folder == 0 {
        return err(
            StatusCode::BAD_REQUEST,
            format!("files must be at most {MAX_BULK_FILES} and per_folder at least 1"),
        );
    }
    let Some((drive_id, by)) = user_drive(&state, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let now = state.clock.now();
    let mut model = state.drives.lock();
    let Some(d) = model.drive_mut(&drive_id) else {
        return err(StatusCode::NOT_FOUND, "no drive");
    };
    let root = d.root_id.clone();
    let graph = |e: crate::graph::error::GraphError| err(e.status, e.message);
    let top = match d.ensure_folders(&root, &segments(&b.folder), now, &by) {
        Ok(id) => id,
        Err(e) => return graph(e),
    };
    let mut folders = 0;
    let mut parent = top.clone();
    // The names already in the current folder, read once per folder (checking each new name
    // against the folder's children would be quadratic in `per_folder`).
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    for n in 0..b.files {
        if n % b.per_folder == 0 {
            let name = format!("part-{:05}", n / b.per_folder);
            parent = match d.ensure_folders(&top, &[name], now, &by) {
                Ok(id) => id,
                Err(e) => return graph(e),
            };
            taken = d
                .children(&parent)
                .iter()
                .map(|c| c.name.to_lowercase())
                .collect();
            folders += 1;
        }
        let name = format!("file-{n:07}.txt");
        let data = memory_file(&name, Bytes::from(format!("bulk file {n}\n").into_bytes()));
        if taken.contains(&name) {
            if let Err(e) = d.put_item(&parent, &name, Some(data), Conflict::Replace, now, &by) {
                return graph(e);
            }
        } else {
            d.insert_new(&parent, name, Some(data), now, &by);
        }
    }
    Json(BulkCreateResult {
        folders,
        files: b.files,
    })
    .into_response()
}

/// Makes the user's drive's delta tokens stale: their next use answers `410 resyncRequired`.
async fn resync_required(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let Some((drive_id, _)) = user_drive(&state, &user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    let mut model = state.drives.lock();
    let Some(d) = model.drive_mut(&drive_id) else {
        return err(StatusCode::NOT_FOUND, "no drive");
    };
    d.resync_epoch += 1;
    Json(json!({"resync_epoch": d.resync_epoch})).into_response()
}

impl Control {
    /// Makes `user`'s drive's delta tokens stale (`410 resyncRequired` on their next use).
    pub async fn force_resync(&self, user: &str) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(self.url(&format!("/users/{user}/drive/resync-required"))),
        )
        .await
        .map(drop)
    }

    /// Creates `files` small files below `folder` in `user`'s drive at once (benchmarks).
    pub async fn bulk_create(
        &self,
        user: &str,
        folder: &str,
        files: u32,
        per_folder: u32,
    ) -> anyhow::Result<BulkCreateResult> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/users/{user}/drive/bulk")))
                    .json(&BulkCreate {
                        folder: folder.to_owned(),
                        files,
                        per_folder,
                    }),
            )
            .await?
            .json()
            .await?)
    }

    /// Performs a web-UI action in `user`'s drive (`user` = object id or UPN).
    pub async fn user_action(
        &self,
        user: &str,
        action: &UserAction,
    ) -> anyhow::Result<ActionResult> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/users/{user}/drive/actions")))
                    .json(action),
            )
            .await?
            .json()
            .await?)
    }

    /// `count` random edits in `user`'s drive, reproducible for a given `seed`.
    pub async fn random_edits(
        &self,
        user: &str,
        count: u32,
        seed: u64,
    ) -> anyhow::Result<RandomEditsResult> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/users/{user}/drive/random-edits")))
                    .json(&RandomEdits { count, seed }),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn subscriptions(&self) -> anyhow::Result<Vec<Subscription>> {
        Ok(self
            .send(self.http.get(self.url("/subscriptions")))
            .await?
            .json()
            .await?)
    }

    /// Removes a subscription as Microsoft would (sends `subscriptionRemoved`).
    pub async fn remove_subscription(&self, id: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(&format!("/subscriptions/{id}"))))
            .await
            .map(drop)
    }

    /// Sends a lifecycle event now; true when the receiver answered 2xx.
    pub async fn send_lifecycle(&self, id: &str, event: &str) -> anyhow::Result<bool> {
        let v: serde_json::Value = self
            .send(
                self.http
                    .post(self.url(&format!("/subscriptions/{id}/lifecycle")))
                    .json(&LifecycleTrigger {
                        event: event.to_owned(),
                    }),
            )
            .await?
            .json()
            .await?;
        Ok(v["delivered"].as_bool().unwrap_or(false))
    }

    pub async fn deliveries(&self) -> anyhow::Result<Vec<Delivery>> {
        Ok(self
            .send(self.http.get(self.url("/notifications/deliveries")))
            .await?
            .json()
            .await?)
    }

    /// The delivery log once at least `n` deliveries were recorded since start or reset
    /// (the emulator waits up to 30 s; check the length).
    pub async fn deliveries_after(&self, n: usize) -> anyhow::Result<Vec<Delivery>> {
        Ok(self
            .send(
                self.http
                    .get(self.url(&format!("/notifications/deliveries?min={n}"))),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn notification_settings(&self) -> anyhow::Result<NotificationSettings> {
        Ok(self
            .send(self.http.get(self.url("/notifications/settings")))
            .await?
            .json()
            .await?)
    }

    pub async fn set_notification_settings(
        &self,
        s: &NotificationSettings,
    ) -> anyhow::Result<NotificationSettings> {
        Ok(self
            .send(self.http.put(self.url("/notifications/settings")).json(s))
            .await?
            .json()
            .await?)
    }

    /// The notification counters (part of [`Control::counters`]).
    pub async fn notification_counters(
        &self,
    ) -> anyhow::Result<crate::notify::NotificationCounters> {
        let c: CounterSnapshot = self.counters().await?;
        Ok(c.notifications)
    }
}
