//! The change feed: records (`GET /records`, paged by cursor, also as a `Stream` that follows
//! the cursor) and the syncs that fill them (`/sync/status`, `/sync/trigger`, `/sync/pause`,
//! `/sync/start`).

use futures::Stream;
use http::{HeaderMap, HeaderValue, Method};
use serde::de::DeserializeOwned;

use crate::GrantdClient;
use crate::error::Error;
use crate::types::{
    PauseSync, Record, RecordsPage, RecordsQuery, Success, SyncRef, SyncStatus, SyncStatusQuery,
    SyncStatusResponse, TriggerOpts, TriggerSync,
};

fn connection_headers(provider_config_key: &str, connection_id: &str) -> Result<HeaderMap, Error> {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("connection-id", connection_id),
        ("provider-config-key", provider_config_key),
    ] {
        let v = HeaderValue::from_str(value)
            .map_err(|_| Error::InvalidInput(format!("{name} is not a header value")))?;
        h.insert(name, v);
    }
    Ok(h)
}

impl GrantdClient {
    /// `GET /records`: one page of a connection's records of `query.model` (e.g.
    /// `OneDriveFile`), from `query.cursor`. `T` is the record's own fields
    /// (e.g. [`OneDriveFile`](crate::types::OneDriveFile), or `serde_json::Value`).
    pub async fn list_records<T: DeserializeOwned>(
        &self,
        provider_config_key: &str,
        connection_id: &str,
        query: &RecordsQuery,
    ) -> Result<RecordsPage<T>, Error> {
        let headers = connection_headers(provider_config_key, connection_id)?;
        self.call_with(
            "list records",
            Method::GET,
            self.url(&["records"]),
            &headers,
            Some(query),
            None,
        )
        .await
    }

    /// Every record from `query.cursor` on, page after page, as a `Stream`; it ends when the
    /// server says there is no next cursor. Keep the last record's `_nango_metadata.cursor` to
    /// resume later.
    pub fn records<T: DeserializeOwned + Send + 'static>(
        &self,
        provider_config_key: &str,
        connection_id: &str,
        query: RecordsQuery,
    ) -> impl Stream<Item = Result<Record<T>, Error>> + Send + 'static {
        let client = self.clone();
        let key = provider_config_key.to_owned();
        let id = connection_id.to_owned();
        let pages = futures::stream::try_unfold(Some(query), move |q| {
            let client = client.clone();
            let key = key.clone();
            let id = id.clone();
            async move {
                let Some(mut q) = q else {
                    return Ok(None);
                };
                let page: RecordsPage<T> = client.list_records(&key, &id, &q).await?;
                let next = page.next_cursor.map(|c| {
                    q.cursor = Some(c);
                    q
                });
                Ok::<_, Error>(Some((
                    futures::stream::iter(page.records.into_iter().map(Ok)),
                    next,
                )))
            }
        });
        futures::TryStreamExt::try_flatten(pages)
    }

    /// `GET /sync/status` for the named syncs (e.g. `user-files`) of one connection.
    pub async fn sync_status(
        &self,
        provider_config_key: &str,
        connection_id: &str,
        syncs: &[&str],
    ) -> Result<Vec<SyncStatus>, Error> {
        let q = SyncStatusQuery {
            syncs: Some(syncs.join(",")),
            provider_config_key: Some(provider_config_key.to_owned()),
            connection_id: Some(connection_id.to_owned()),
        };
        let r: SyncStatusResponse = self
            .call(
                "sync status",
                Method::GET,
                self.url(&["sync", "status"]),
                Some(&q),
                None,
            )
            .await?;
        Ok(r.syncs)
    }

    /// `POST /sync/trigger`: runs the syncs now for one connection (`None`: every watched
    /// connection of the integration); `reset` asks for a full resync.
    pub async fn trigger_sync(
        &self,
        provider_config_key: &str,
        connection_id: Option<&str>,
        syncs: &[&str],
        reset: bool,
    ) -> Result<(), Error> {
        let body = TriggerSync {
            syncs: sync_refs(syncs),
            provider_config_key: Some(provider_config_key.to_owned()),
            connection_id: connection_id.map(str::to_owned),
            opts: reset.then_some(TriggerOpts {
                reset: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.sync_command("trigger", &body).await
    }

    /// `POST /sync/pause`: no runs until [`start_sync`](Self::start_sync).
    pub async fn pause_sync(
        &self,
        provider_config_key: &str,
        connection_id: Option<&str>,
        syncs: &[&str],
    ) -> Result<(), Error> {
        self.sync_command(
            "pause",
            &pause_body(provider_config_key, connection_id, syncs),
        )
        .await
    }

    /// `POST /sync/start`: resumes paused syncs and runs them.
    pub async fn start_sync(
        &self,
        provider_config_key: &str,
        connection_id: Option<&str>,
        syncs: &[&str],
    ) -> Result<(), Error> {
        self.sync_command(
            "start",
            &pause_body(provider_config_key, connection_id, syncs),
        )
        .await
    }

    async fn sync_command<B: serde::Serialize + Sync>(
        &self,
        command: &'static str,
        body: &B,
    ) -> Result<(), Error> {
        let _: Success = self
            .call(
                "sync command",
                Method::POST,
                self.url(&["sync", command]),
                None,
                Some(body),
            )
            .await?;
        Ok(())
    }
}

fn sync_refs(syncs: &[&str]) -> Vec<SyncRef> {
    syncs
        .iter()
        .map(|s| SyncRef::Name((*s).to_owned()))
        .collect()
}

fn pause_body(provider_config_key: &str, connection_id: Option<&str>, syncs: &[&str]) -> PauseSync {
    PauseSync {
        syncs: sync_refs(syncs),
        provider_config_key: Some(provider_config_key.to_owned()),
        connection_id: connection_id.map(str::to_owned),
    }
}
