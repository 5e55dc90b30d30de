//! The hosted File Picker (Microsoft's File Picker v8) for one connection: picker sessions
//! (`grantd_picker_session_` + 64 hex; only the SHA-256 is stored), the SharePoint tokens the
//! picker asks for (`authenticate` per `resource`), and what the user picked (stored in Nango's
//! selection shape when asked, and a `picker` webhook).
//!
//! Tokens for the picker are minted here for exactly the host the picker names, and only for the
//! connection's own hosts: the tenant's root SharePoint host (discovered from Graph's
//! `/sites/root` when the SharePoint token was obtained) and the user's OneDrive host (the host of
//! `/me/drive`'s `webUrl`). Anything else is refused. A minted token is cached per (connection,
//! host) until five minutes before it expires, and minted once however many requests ask at the
//! same time (single flight). A mint redeems the connection's refresh token under the same locks
//! as a refresh (`Flights`, then the database's `lock_for_refresh`) and commits the refresh token
//! it returns compare-and-swap on the version, as a refresh does: a provider that rotates
//! strictly never sees a redeemed token again (docs/picker.md).
//!
//! Personal accounts (`one-drive-personal`) get Microsoft's consumer picker
//! (`https://onedrive.live.com/picker`): one token for the consumer OneDrive API (`OneDrive.
//! ReadWrite`, or `OneDrive.ReadOnly` when only reading was granted) from the `consumers`
//! authority answers every `authenticate`, as Microsoft's consumer samples do.
//!
//! A session accepts one pick: the pick stamps the session in the transaction that writes the
//! metadata and queues the webhook, and a used session is refused (`SessionUsed`), for picks and
//! tokens alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use serde_json::{Map, Value, json};

use super::sessions::{SessionRequest, hash_token};
use super::{Core, Error};
use crate::microsoft::{self, Classified, sharepoint};
use crate::model::{
    AccessToken, ConfigKey, Connection, ConnectionId, Integration, PickerEntry, PickerOptions,
    PickerSession, ProviderConfigKey, SessionToken,
};
use crate::oauth::{self, ClientAuth};
use crate::webhooks::{self, canonical_json};

pub const TOKEN_PREFIX: &str = "grantd_picker_session_";
/// How long a picker session lives.
pub const SESSION_TTL: TimeDelta = TimeDelta::minutes(30);
/// A cached picker token is handed out until this long before it expires.
const TOKEN_MARGIN: TimeDelta = TimeDelta::minutes(5);
/// Items accepted in one pick.
pub const MAX_ITEMS: usize = 500;
/// Drive and item ids (Graph's are URL-safe: letters, digits, `!-_.`).
const MAX_ID: usize = 256;

/// The host of Microsoft's consumer picker (`https://onedrive.live.com/picker`).
pub const CONSUMER_PICKER_HOST: &str = "onedrive.live.com";
/// The cache key of a connection's consumer OneDrive token (not a host name).
const CONSUMER_KEY: &str = "consumer:onedrive";

/// Which of Microsoft's pickers a connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickerKind {
    /// Work or school: `{SharePoint host}/_layouts/15/FilePicker.aspx`, a token per host.
    Business,
    /// Personal account: `https://onedrive.live.com/picker`, one consumer OneDrive token.
    Consumer,
}

/// Why a picker request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PickerError {
    #[error("the picker session token is unknown or expired")]
    UnknownSession,
    /// The session's one pick was already recorded.
    #[error("the picker session was already used for a pick")]
    SessionUsed,
    #[error("the connection does not exist")]
    UnknownConnection,
    #[error("{0}")]
    NotSupported(String),
    #[error("{0}")]
    Invalid(String),
    /// The picker asked for a token for a host that is not one of the connection's.
    #[error("the resource is not a SharePoint host of this connection")]
    ForeignResource,
    /// The connection has no SharePoint token (no `Sites.Read.All`, or it could not be obtained).
    #[error("{}", .0.message)]
    NotReady(Problem),
    /// Microsoft refused to issue the token.
    #[error("a token for the picker could not be obtained: {}", .0.cause)]
    Token(Classified),
    #[error(transparent)]
    Core(#[from] Error),
}

/// Why a connection cannot open the picker, in words for its user, and whether reconnecting helps.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    /// Reconnecting the account (with `Sites.Read.All` granted) fixes it; otherwise the app's
    /// integration must first ask for `Sites.Read.All`.
    pub reconnect: bool,
}

/// What the picker page needs to launch Microsoft's picker.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Where the form is POSTed (the SharePoint host mapped by `GRANTD_MICROSOFT_SHAREPOINT_URL`),
    /// with `filePicker=` and `locale=` in its query.
    pub action: String,
    /// The origin of `action` (for the page's CSP and message checks).
    pub picker_origin: String,
    /// `https://{host}`: the resource the first token is for.
    pub resource: String,
    pub channel_id: String,
}

/// The picker page for a session: launch it, or explain why not.
#[derive(Debug, Clone)]
pub struct PickerPage {
    pub session: PickerSession,
    pub launch: Result<Launch, Problem>,
}

/// One picked item, as the app receives it (page message, webhook, API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickedItem {
    pub id: String,
    pub drive_id: String,
    pub name: Option<String>,
    pub folder: bool,
    pub size: Option<u64>,
    pub mime_type: Option<String>,
    pub web_url: Option<String>,
}

impl PickedItem {
    /// The item as the app receives it.
    pub fn to_wire(&self) -> grantd_api::PickedItem {
        grantd_api::PickedItem {
            id: self.id.clone(),
            drive_id: self.drive_id.clone(),
            kind: if self.folder { "folder" } else { "file" }.to_owned(),
            name: self.name.clone(),
            size: self.size,
            mime_type: self.mime_type.clone(),
            web_url: self.web_url.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_wire()).unwrap_or(Value::Null)
    }
}

/// The outcome of a pick.
#[derive(Debug, Clone)]
pub struct Picked {
    pub items: Vec<PickedItem>,
    /// The connection's metadata after the pick (unchanged unless `save_selection`).
    pub metadata: Value,
}

/// Per-process picker state: cached tokens per (connection, host), OneDrive hosts per
/// connection, and the single-flight locks of token mints.
#[derive(Default)]
pub struct PickerState {
    tokens: Mutex<HashMap<HostKey, (AccessToken, DateTime<Utc>)>>,
    onedrive_hosts: Mutex<HashMap<i64, String>>,
    flights: Mutex<HashMap<HostKey, Weak<tokio::sync::Mutex<()>>>>,
}

/// (connection row id, SharePoint host).
type HostKey = (i64, String);

impl PickerState {
    fn flight(&self, key: &(i64, String)) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.flights.lock().expect("picker flights poisoned");
        if let Some(l) = map.get(key).and_then(Weak::upgrade) {
            return l;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.clone(), Arc::downgrade(&l));
        l
    }

    fn cached(&self, key: &(i64, String), now: DateTime<Utc>) -> Option<AccessToken> {
        let map = self.tokens.lock().expect("picker tokens poisoned");
        map.get(key)
            .filter(|(_, exp)| *exp > now + TOKEN_MARGIN)
            .map(|(t, _)| t.clone())
    }
}

/// Whether `token` has the picker-session format.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'!' | b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// The host of an `https://host[/]` resource, lowercased; `None` for anything else.
pub fn resource_host(resource: &str) -> Option<String> {
    let u = url::Url::parse(resource).ok()?;
    if u.scheme() != "https"
        || u.port().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !matches!(u.path(), "" | "/")
    {
        return None;
    }
    let host = u.host_str()?.to_ascii_lowercase();
    sharepoint::is_host_name(&host).then_some(host)
}

/// Parses the items of a `pick` command (Microsoft's driveItem shape: `id`, `name`, `size`,
/// `folder`, `file.mimeType`, `parentReference.driveId`, `webUrl`).
pub fn parse_items(items: &Value) -> Result<Vec<PickedItem>, PickerError> {
    let list = items
        .as_array()
        .ok_or_else(|| PickerError::Invalid("items must be an array of driveItems".into()))?;
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(PickerError::Invalid(format!(
            "items must hold 1 to {MAX_ITEMS} driveItems"
        )));
    }
    let mut out: Vec<PickedItem> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let bad = |what: &str| PickerError::Invalid(format!("items[{i}]: {what}"));
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| valid_id(s))
            .ok_or_else(|| bad("id is missing or not a driveItem id"))?;
        let drive_id = item
            .pointer("/parentReference/driveId")
            .and_then(Value::as_str)
            .filter(|s| valid_id(s))
            .ok_or_else(|| bad("parentReference.driveId is missing or not a drive id"))?;
        let text = |v: Option<&Value>, max: usize| {
            v.and_then(Value::as_str)
                .filter(|s| s.len() <= max && !s.chars().any(char::is_control))
                .map(str::to_owned)
        };
        let web_url = text(item.get("webUrl"), 2048)
            .filter(|u| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http")));
        let parsed = PickedItem {
            id: id.to_owned(),
            drive_id: drive_id.to_owned(),
            name: text(item.get("name"), 400),
            folder: item.get("folder").is_some_and(Value::is_object),
            size: item.get("size").and_then(Value::as_u64),
            mime_type: text(item.pointer("/file/mimeType"), 255),
            web_url,
        };
        if !out
            .iter()
            .any(|o| o.id == parsed.id && o.drive_id == parsed.drive_id)
        {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// The metadata after merging `items` into Nango's selection shape: `pickedFiles` gains each
/// item id under its drive (kept once, in order), `drives` is kept (or `[]`), other keys stay.
pub fn merge_selection(metadata: &Value, items: &[PickedItem]) -> Value {
    let mut m = match metadata {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut picked: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(list) = m.get("pickedFiles").and_then(Value::as_array) {
        for entry in list {
            let (Some(d), Some(files)) = (
                entry.get("driveId").and_then(Value::as_str),
                entry.get("fileIds").and_then(Value::as_array),
            ) else {
                continue;
            };
            let files: Vec<String> = files
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            match picked.iter_mut().find(|(x, _)| x == d) {
                Some((_, ids)) => ids.extend(files),
                None => picked.push((d.to_owned(), files)),
            }
        }
    }
    for it in items {
        match picked.iter_mut().find(|(d, _)| *d == it.drive_id) {
            Some((_, ids)) => {
                if !ids.contains(&it.id) {
                    ids.push(it.id.clone());
                }
            }
            None => picked.push((it.drive_id.clone(), vec![it.id.clone()])),
        }
    }
    if !m.get("drives").is_some_and(Value::is_array) {
        m.insert("drives".into(), json!([]));
    }
    m.insert(
        "pickedFiles".into(),
        Value::Array(
            picked
                .into_iter()
                .map(|(d, ids)| json!({"driveId": d, "fileIds": ids}))
                .collect(),
        ),
    );
    Value::Object(m)
}

/// The `picker` webhook's body: compact JSON with sorted keys.
pub fn webhook_body(
    conn_key: &str,
    connection_id: &str,
    items: &[PickedItem],
    saved: bool,
) -> String {
    canonical_json(&json!({
        "from": "grantd",
        "type": "picker",
        "operation": "picked",
        "success": true,
        "connectionId": connection_id,
        "providerConfigKey": conn_key,
        "items": items.iter().map(PickedItem::to_json).collect::<Vec<_>>(),
        "selectionSaved": saved,
    }))
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Core {
    /// Creates a picker session for connection (`key`, `id`); the connection must exist and be
    /// a delegated business one (`one-drive`, `sharepoint-online`). A connection without a
    /// SharePoint token still gets a session (its page explains and offers a reconnect); the
    /// returned `Problem` says so to the API caller.
    pub async fn create_picker_session(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
        options: PickerOptions,
    ) -> Result<(SessionToken, PickerSession, Option<Problem>), PickerError> {
        let (conn, integration, kind) = self.picker_connection(key, id).await?;
        let problem = self.picker_problem(&conn, &integration, kind);
        if kind == PickerKind::Consumer && matches!(options.entry, PickerEntry::SharePoint { .. }) {
            return Err(PickerError::Invalid(
                "options.entry sharePoint needs a work or school account: OneDrive for personal \
                 accounts has no SharePoint sites (use oneDrive, recent or shared)"
                    .into(),
            ));
        }
        if let (PickerEntry::SharePoint { site_url }, None) = (&options.entry, &problem) {
            let root = self.root_host(&conn).unwrap_or_default();
            let ok = url::Url::parse(site_url).is_ok_and(|u| {
                u.scheme() == "https"
                    && u.port().is_none()
                    && u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&root))
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                return Err(PickerError::Invalid(format!(
                    "options.entry.sharePoint.site_url must be an https URL of a site on the \
                     connection's SharePoint host ({root})"
                )));
            }
        }
        let token = SessionToken::new(format!("{TOKEN_PREFIX}{}", random_hex(32)));
        let session = self
            .store
            .create_picker_session(
                &hash_token(token.expose_secret()),
                key,
                id,
                &options,
                self.clock.now() + SESSION_TTL,
            )
            .await
            .map_err(Error::from)?;
        Ok((token, session, problem))
    }

    /// The hosted picker page's URL for a session token.
    pub fn picker_link(&self, token: &SessionToken) -> String {
        format!(
            "{}/picker?session_token={}",
            self.config.public_url.as_str().trim_end_matches('/'),
            token.expose_secret()
        )
    }

    /// The live session for a presented token.
    pub async fn picker_session(&self, token: &str) -> Result<PickerSession, PickerError> {
        if !is_well_formed(token) {
            return Err(PickerError::UnknownSession);
        }
        self.store
            .get_picker_session(&hash_token(token), self.clock.now())
            .await
            .map_err(Error::from)?
            .ok_or(PickerError::UnknownSession)
    }

    /// The live session for a presented token, refused once its pick was recorded.
    async fn unused_picker_session(&self, token: &str) -> Result<PickerSession, PickerError> {
        let session = self.picker_session(token).await?;
        if session.picked_at.is_some() {
            return Err(PickerError::SessionUsed);
        }
        Ok(session)
    }

    /// What the picker page shows for a session: the form to launch Microsoft's picker, or the
    /// problem (no SharePoint token) with what fixes it.
    pub async fn picker_page(&self, token: &str) -> Result<PickerPage, PickerError> {
        let session = self.unused_picker_session(token).await?;
        let (conn, integration, kind) = self
            .picker_connection(&session.provider_config_key, &session.connection_id)
            .await?;
        if let Some(p) = self.picker_problem(&conn, &integration, kind) {
            return Ok(PickerPage {
                session,
                launch: Err(p),
            });
        }
        if kind == PickerKind::Consumer {
            return self.consumer_picker_page(session);
        }
        let o = &session.options;
        let (base_host, path) = match &o.entry {
            PickerEntry::SharePoint { site_url } => {
                let u = url::Url::parse(site_url)
                    .map_err(|_| PickerError::Invalid("the site URL is not a URL".into()))?;
                let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
                (host, u.path().trim_end_matches('/').to_owned())
            }
            _ => (self.onedrive_host(&conn).await?, String::new()),
        };
        let entry = match &o.entry {
            PickerEntry::OneDrive => json!({"oneDrive": {"files": {}}}),
            PickerEntry::Recent => json!({"oneDrive": {"recent": {}}}),
            PickerEntry::Shared => json!({"oneDrive": {"sharedWithMe": {}}}),
            PickerEntry::SharePoint { site_url } => {
                json!({"sharePoint": {"byPath": {"web": site_url}}})
            }
        };
        let (options, channel_id) = self.picker_config(o, entry);
        let base = self.config.microsoft.sharepoint_base(&base_host);
        let mut action = url::Url::parse(&format!(
            "{}{path}/_layouts/15/FilePicker.aspx",
            base.trim_end_matches('/')
        ))
        .map_err(|_| PickerError::Invalid("the SharePoint URL could not be formed".into()))?;
        action
            .query_pairs_mut()
            .append_pair("filePicker", &options.to_string())
            .append_pair("locale", "en-us");
        let picker_origin = action.origin().ascii_serialization();
        Ok(PickerPage {
            session,
            launch: Ok(Launch {
                action: action.to_string(),
                picker_origin,
                resource: format!("https://{base_host}"),
                channel_id,
            }),
        })
    }

    /// The picker's `filePicker` configuration for `entry` (business and consumer pickers take
    /// the same shape), with a fresh messaging channel id.
    fn picker_config(&self, o: &PickerOptions, entry: Value) -> (Value, String) {
        let public = self.config.public_url.origin().ascii_serialization();
        let channel_id = random_hex(16);
        let mut types = json!({"mode": o.mode.as_str()});
        if !o.filters.is_empty() {
            types["filters"] = json!(o.filters);
        }
        let options = json!({
            "sdk": "8.0",
            "entry": entry,
            "authentication": {},
            "messaging": {"origin": public, "channelId": channel_id},
            "typesAndSources": types,
            "selection": {"mode": if o.multi_select { "multiple" } else { "single" }},
        });
        (options, channel_id)
    }

    /// A token for the picker page to answer `authenticate {resource}`: for exactly that host,
    /// which must be one of the connection's SharePoint hosts.
    pub async fn picker_token(
        &self,
        token: &str,
        resource: &str,
    ) -> Result<(AccessToken, DateTime<Utc>), PickerError> {
        let session = self.unused_picker_session(token).await?;
        let (conn, integration, kind) = self
            .picker_connection(&session.provider_config_key, &session.connection_id)
            .await?;
        if kind == PickerKind::Consumer {
            // Microsoft's consumer samples answer every authenticate with the one OneDrive token,
            // whatever resource it names; the resource must still be an https URL.
            let ok = url::Url::parse(resource)
                .is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
            if !ok {
                return Err(PickerError::ForeignResource);
            }
        }
        if let Some(p) = self.picker_problem(&conn, &integration, kind) {
            return Err(PickerError::NotReady(p));
        }
        if kind == PickerKind::Consumer {
            let scope = consumer_scope(&conn, &integration);
            return self
                .cached_or_minted(&conn, CONSUMER_KEY.to_owned(), &scope)
                .await;
        }
        let host = resource_host(resource).ok_or(PickerError::ForeignResource)?;
        let root = self.root_host(&conn);
        let allowed = root.as_deref() == Some(host.as_str())
            || self.onedrive_host(&conn).await.ok().as_deref() == Some(host.as_str());
        if !allowed {
            tracing::warn!(connection.id = %conn.connection_id, "picker asked for a token for a host that is not the connection's");
            return Err(PickerError::ForeignResource);
        }
        let now = self.clock.now();
        // The stored SharePoint token, when it is for this host and fresh.
        if let Some(sp) = conn
            .credentials
            .sharepoint
            .as_ref()
            .filter(|s| s.host == host)
        {
            if let Some(exp) = sp.expires_at.filter(|e| *e > now + TOKEN_MARGIN) {
                return Ok((sp.access_token.clone(), exp));
            }
        }
        let scope = sharepoint::scope_for(&host);
        self.cached_or_minted(&conn, host, &scope).await
    }

    /// The cached token under (connection, `key`), else one minted for `scope` (once for
    /// concurrent callers) and cached.
    async fn cached_or_minted(
        &self,
        conn: &Connection,
        key: String,
        scope: &str,
    ) -> Result<(AccessToken, DateTime<Utc>), PickerError> {
        let key = (conn.id, key);
        if let Some(t) = self.picker.cached(&key, self.clock.now()) {
            return Ok((t, self.cached_expiry(&key)));
        }
        let flight = self.picker.flight(&key);
        let _held = flight.lock().await;
        if let Some(t) = self.picker.cached(&key, self.clock.now()) {
            return Ok((t, self.cached_expiry(&key)));
        }
        let minted = self.mint_picker_token(conn, scope).await?;
        self.picker
            .tokens
            .lock()
            .expect("picker tokens poisoned")
            .insert(key, minted.clone());
        Ok(minted)
    }

    fn cached_expiry(&self, key: &(i64, String)) -> DateTime<Utc> {
        self.picker
            .tokens
            .lock()
            .expect("picker tokens poisoned")
            .get(key)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| self.clock.now())
    }

    /// Records a pick: the items (validated), merged into the metadata when the session asked,
    /// and the `picker` webhook, in one transaction.
    pub async fn picker_picked(&self, token: &str, items: &Value) -> Result<Picked, PickerError> {
        let session = self.unused_picker_session(token).await?;
        let items = parse_items(items)?;
        let conn = self
            .store
            .get_connection(&session.provider_config_key, &session.connection_id)
            .await
            .map_err(Error::from)?
            .ok_or(PickerError::UnknownConnection)?;
        let save = session.options.save_selection;
        let webhook =
            webhooks::target_url(&self.config, conn.webhook_url_override.as_deref()).map(|url| {
                (
                    url,
                    webhook_body(
                        session.provider_config_key.as_str(),
                        session.connection_id.as_str(),
                        &items,
                        save,
                    ),
                )
            });
        let update = |m: &Value| save.then(|| merge_selection(m, &items));
        let metadata = self
            .store
            .record_pick(
                session.id,
                &session.provider_config_key,
                &session.connection_id,
                &update,
                webhook,
                self.clock.now(),
            )
            .await
            .map_err(|e| match e {
                crate::store::Error::MissingConnection(_) => PickerError::UnknownConnection,
                other => PickerError::Core(other.into()),
            })?
            // Another request with this session committed its pick first.
            .ok_or(PickerError::SessionUsed)?;
        if save {
            if let Err(e) = self
                .sync_metadata_changed(&session.provider_config_key, &session.connection_id)
                .await
            {
                tracing::warn!(connection.id = %session.connection_id, "sync watch set not updated after a pick: {e}");
            }
        }
        Ok(Picked { items, metadata })
    }

    /// A reconnect link (hosted Connect UI) for the session's connection.
    pub async fn picker_reconnect_link(&self, session: &PickerSession) -> Result<String, Error> {
        let conn = self
            .store
            .get_connection(&session.provider_config_key, &session.connection_id)
            .await?
            .ok_or(Error::UnknownConnection)?;
        let (token, _) = self
            .create_connect_session(SessionRequest {
                end_user: conn.end_user.clone(),
                allowed_integrations: Some(vec![session.provider_config_key.to_string()]),
                integrations_config_defaults: json!({}),
                tags: conn.tags.clone(),
                webhook_url_override: conn.webhook_url_override.clone(),
                reconnect: Some((
                    session.provider_config_key.clone(),
                    session.connection_id.clone(),
                )),
                ..Default::default()
            })
            .await?;
        Ok(self.connect_link(&token))
    }

    /// The connection with fresh credentials, if its provider can open the picker.
    async fn picker_connection(
        &self,
        key: &ProviderConfigKey,
        id: &ConnectionId,
    ) -> Result<(Arc<Connection>, Arc<Integration>, PickerKind), PickerError> {
        let fresh = match self.credentials(key, id, Default::default()).await {
            Ok(f) => f,
            Err(Error::UnknownConnection) => return Err(PickerError::UnknownConnection),
            Err(e) => return Err(e.into()),
        };
        let p = fresh.provider;
        let kind = if p.sharepoint_token {
            PickerKind::Business
        } else if p.is_microsoft()
            && !p.is_app_only()
            && p.authority.as_deref() == Some("consumers")
        {
            PickerKind::Consumer
        } else {
            return Err(PickerError::NotSupported(format!(
                "The File Picker needs a delegated OneDrive or SharePoint connection (one-drive, \
                 sharepoint-online, one-drive-personal); {} connections cannot open it",
                p.name
            )));
        };
        Ok((fresh.connection, fresh.integration, kind))
    }

    /// Why the connection cannot open the picker, if it cannot.
    fn picker_problem(
        &self,
        conn: &Connection,
        integration: &Integration,
        kind: PickerKind,
    ) -> Option<Problem> {
        if kind == PickerKind::Consumer {
            return consumer_problem(conn, integration);
        }
        if conn.credentials.sharepoint.is_some() {
            return None;
        }
        let status = conn
            .connection_config
            .get(ConfigKey::SharepointTokenStatus.as_str())
            .and_then(Value::as_str)
            .unwrap_or("");
        let integration_has_scope = microsoft::grants_sites_read(&integration.scopes.join(" "));
        Some(
            if status.starts_with("not_requested") && !integration_has_scope {
                Problem {
                    code: "missing_sites_read_all",
                    message:
                        "This connection was not granted Sites.Read.All, which the File Picker \
                          needs, and the integration does not ask for it: add Sites.Read.All to \
                          the integration's scopes, then reconnect the account."
                            .into(),
                    reconnect: false,
                }
            } else {
                Problem {
                    code: "missing_sharepoint_token",
                    message:
                        "This connection has no SharePoint token (Sites.Read.All was not granted \
                          or the token could not be obtained), which the File Picker needs: \
                          reconnect the account and grant access to SharePoint."
                            .into(),
                    reconnect: true,
                }
            },
        )
    }

    fn root_host(&self, conn: &Connection) -> Option<String> {
        conn.credentials
            .sharepoint
            .as_ref()
            .map(|s| s.host.clone())
            .or_else(|| {
                conn.connection_config
                    .get(ConfigKey::SharepointHost.as_str())
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
    }

    /// The user's OneDrive host, discovered once per connection from Graph.
    async fn onedrive_host(&self, conn: &Connection) -> Result<String, PickerError> {
        if let Some(h) = self
            .picker
            .onedrive_hosts
            .lock()
            .expect("picker hosts poisoned")
            .get(&conn.id)
        {
            return Ok(h.clone());
        }
        let host = sharepoint::discover_onedrive_host(
            &self.http,
            self.config.microsoft.graph_url.as_str(),
            &conn.credentials.access_token,
        )
        .await
        .map_err(|e| {
            tracing::warn!(connection.id = %conn.connection_id, "OneDrive host discovery failed: {e}");
            PickerError::Token(Classified {
                class: crate::model::FailureKind::Transient,
                aadsts: None,
                error: Some("onedrive_host_unknown".into()),
                cause: format!("the user's OneDrive could not be found ({e})"),
            })
        })?;
        self.picker
            .onedrive_hosts
            .lock()
            .expect("picker hosts poisoned")
            .insert(conn.id, host.clone());
        Ok(host)
    }

    /// A token for `scope` (`https://{host}/.default offline_access`, or the consumer OneDrive
    /// scope) from the connection's refresh token, redeemed as a refresh redeems it: under the
    /// connection's in-process flight and the database's refresh lock, with the refresh token
    /// read under that lock, and the refresh token the call returns committed compare-and-swap
    /// before the access token is used (a strictly rotating provider has already invalidated the
    /// one redeemed).
    async fn mint_picker_token(
        &self,
        conn: &Connection,
        scope: &str,
    ) -> Result<(AccessToken, DateTime<Utc>), PickerError> {
        let (integration, provider) = self.integration(&conn.provider_config_key).await?;
        let tenant = self.token_tenant(&integration, &provider, conn);
        let token_url = provider.token_url(&self.config.microsoft, &tenant);
        let no_refresh_token = || {
            PickerError::NotReady(Problem {
                code: "missing_refresh_token",
                message: "This connection has no refresh token (offline_access was not \
                              granted): reconnect the account."
                    .into(),
                reconnect: true,
            })
        };
        let flight = self.flights.lock_for(conn.id);
        let _in_process = flight.lock().await;
        let lock = self
            .store
            .lock_for_refresh(conn.id)
            .await
            .map_err(Error::from)?
            .ok_or(PickerError::UnknownConnection)?;
        let current = lock.connection.clone();
        let refresh_token = current
            .credentials
            .refresh_token
            .clone()
            .ok_or_else(no_refresh_token)?;
        let now = self.clock.now();
        let t = oauth::token_request(
            &self.http,
            &token_url,
            &integration.client_id,
            ClientAuth::of(&integration),
            oauth::refresh_grant(&refresh_token, Some(scope)),
            now,
        )
        .await
        .map_err(|e| {
            let c = microsoft::classify(&e);
            tracing::warn!(connection.id = %conn.connection_id, aadsts = ?c.aadsts, "picker token request failed: {}", c.cause);
            PickerError::Token(c)
        })?;
        let expires = t.expires_at.unwrap_or(now + TimeDelta::minutes(60));
        match t.refresh_token {
            Some(rt) if rt.expose_secret() != refresh_token.expose_secret() => {
                let mut credentials = current.credentials.clone();
                credentials.refresh_token = Some(rt);
                let saved = lock
                    .save(&credentials, &current.connection_config, now)
                    .await
                    .map_err(Error::from)?;
                if saved.is_none() {
                    // Only a reconnect writes without the refresh lock (SQLite's CAS): its new
                    // grant supersedes the one redeemed here.
                    tracing::warn!(connection.id = %conn.connection_id, "the connection changed during a picker token mint; its newer credentials are kept");
                }
            }
            // No rotation: nothing to store; the lock is released when dropped.
            _ => drop(lock),
        }
        Ok((t.access_token, expires))
    }

    /// The consumer picker's page: the form to `https://onedrive.live.com/picker`.
    fn consumer_picker_page(&self, session: PickerSession) -> Result<PickerPage, PickerError> {
        let o = &session.options;
        let entry = match &o.entry {
            PickerEntry::Recent => json!({"oneDrive": {"recent": {}}}),
            PickerEntry::Shared => json!({"oneDrive": {"sharedWithMe": {}}}),
            _ => json!({"oneDrive": {"files": {}}}),
        };
        let (options, channel_id) = self.picker_config(o, entry);
        let base = self.config.microsoft.sharepoint_base(CONSUMER_PICKER_HOST);
        let mut action = url::Url::parse(&format!("{}/picker", base.trim_end_matches('/')))
            .map_err(|_| {
                PickerError::Invalid("the consumer picker URL could not be formed".into())
            })?;
        action
            .query_pairs_mut()
            .append_pair("filePicker", &options.to_string());
        let picker_origin = action.origin().ascii_serialization();
        Ok(PickerPage {
            session,
            launch: Ok(Launch {
                action: action.to_string(),
                picker_origin,
                resource: format!("https://{CONSUMER_PICKER_HOST}"),
                channel_id,
            }),
        })
    }
}

/// The scopes a connection was granted (the token response's `scope`), else what its
/// integration asks for.
fn granted_scopes(conn: &Connection, integration: &Integration) -> String {
    conn.credentials
        .raw
        .get("scope")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| integration.scopes.join(" "))
}

/// The consumer OneDrive scope for a personal connection: `OneDrive.ReadWrite` when it was granted
/// `Files.ReadWrite…` (what Microsoft's consumer samples ask for), else `OneDrive.ReadOnly`.
fn consumer_scope(conn: &Connection, integration: &Integration) -> String {
    let granted = granted_scopes(conn, integration);
    let write = granted.split([' ', ',']).any(|s| {
        s.rsplit('/')
            .next()
            .unwrap_or(s)
            .to_ascii_lowercase()
            .starts_with("files.readwrite")
    });
    let scope = if write {
        "OneDrive.ReadWrite"
    } else {
        "OneDrive.ReadOnly"
    };
    format!("{scope} offline_access")
}

/// Why a personal connection cannot open the consumer picker, if it cannot.
fn consumer_problem(conn: &Connection, integration: &Integration) -> Option<Problem> {
    if conn.credentials.refresh_token.is_none() {
        return Some(Problem {
            code: "missing_refresh_token",
            message: "This connection has no refresh token (offline_access was not granted), \
                      which the File Picker needs: reconnect the account."
                .into(),
            reconnect: true,
        });
    }
    let files = |s: &str| {
        s.split([' ', ',']).any(|p| {
            p.rsplit('/')
                .next()
                .unwrap_or(p)
                .to_ascii_lowercase()
                .starts_with("files.")
        })
    };
    if files(&granted_scopes(conn, integration)) {
        return None;
    }
    let asks = files(&integration.scopes.join(" "));
    Some(Problem {
        code: "missing_files_read",
        message: if asks {
            "This connection was not granted Files.Read, which the File Picker needs: reconnect \
             the account and grant access to your files."
                .into()
        } else {
            "This connection was not granted Files.Read, which the File Picker needs, and the \
             integration does not ask for it: add Files.Read (or Files.ReadWrite) to the \
             integration's scopes, then reconnect the account."
                .into()
        },
        reconnect: asks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, drive: &str, folder: bool) -> PickedItem {
        PickedItem {
            id: id.into(),
            drive_id: drive.into(),
            name: None,
            folder,
            size: None,
            mime_type: None,
            web_url: None,
        }
    }

    #[test]
    fn resource_must_be_a_bare_https_host() {
        assert_eq!(
            resource_host("https://contoso-my.sharepoint.com").as_deref(),
            Some("contoso-my.sharepoint.com")
        );
        assert_eq!(
            resource_host("https://Contoso.SharePoint.com/").as_deref(),
            Some("contoso.sharepoint.com")
        );
        for bad in [
            "http://contoso.sharepoint.com",
            "https://contoso.sharepoint.com:8443",
            "https://contoso.sharepoint.com/sites/x",
            "https://user@contoso.sharepoint.com",
            "https://contoso.sharepoint.com?x=1",
            "contoso.sharepoint.com",
        ] {
            assert_eq!(resource_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn selection_merges_per_drive_and_keeps_other_keys() {
        let m = json!({"team": "x", "pickedFiles": [{"driveId": "b!1", "fileIds": ["a"]}]});
        let out = merge_selection(
            &m,
            &[
                item("a", "b!1", false),
                item("f", "b!1", true),
                item("z", "b!2", false),
            ],
        );
        assert_eq!(
            out,
            json!({"team": "x", "drives": [], "pickedFiles": [
                {"driveId": "b!1", "fileIds": ["a", "f"]},
                {"driveId": "b!2", "fileIds": ["z"]},
            ]})
        );
    }

    #[test]
    fn items_are_validated() {
        let ok = json!([{"id": "01A", "name": "a.docx", "file": {"mimeType": "x/y"}, "size": 3,
            "parentReference": {"driveId": "b!d"}, "@sharePoint.endpoint": "https://h/_api/v2.0"}]);
        let items = parse_items(&ok).unwrap();
        assert_eq!(items[0].mime_type.as_deref(), Some("x/y"));
        assert!(!items[0].folder);
        assert!(parse_items(&json!([])).is_err());
        assert!(
            parse_items(&json!([{"id": "../x", "parentReference": {"driveId": "b"}}])).is_err()
        );
        assert!(parse_items(&json!([{"id": "a"}])).is_err());
        assert!(parse_items(&json!({"id": "a"})).is_err());
    }

    #[test]
    fn token_format() {
        assert!(is_well_formed(&format!(
            "{TOKEN_PREFIX}{}",
            "ab".repeat(32)
        )));
        assert!(!is_well_formed(&format!(
            "nango_connect_session_{}",
            "ab".repeat(32)
        )));
    }
}
