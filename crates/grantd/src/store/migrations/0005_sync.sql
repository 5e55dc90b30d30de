-- The change feed (issue 12): per-drive sync state and the records served by GET /records.
--
-- sync_drives: one row per watched drive of a connection. `next_link` is the checkpoint, the
--   Graph URL to continue from (a nextLink inside a round, the deltaLink after one), written in
--   the transaction that commits the page it follows. `resync_generation` counts enumerations
--   from scratch (410 resyncRequired, a full resync): records not seen by the finished one are
--   deleted. `lease_until` is held by the instance running the drive's delta; `run_requested`
--   coalesces triggers that arrive meanwhile; `resync_requested` makes the next run enumerate
--   from scratch (a full resync).
CREATE TABLE sync_drives (
    id                {{id}},
    connection_id     {{bigint}} NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    drive_key         {{text}} NOT NULL,   -- 'me' = the user's own drive
    drive_id          {{text}},
    model             {{text}} NOT NULL,
    next_link         {{text}},
    resync_generation {{bigint}} NOT NULL DEFAULT 0,
    in_resync         {{bool}} NOT NULL DEFAULT {{false}},
    paused            {{bool}} NOT NULL DEFAULT {{false}},
    run_requested     {{bool}} NOT NULL DEFAULT {{false}},
    resync_requested  {{bool}} NOT NULL DEFAULT {{false}},
    lease_until       {{ts}},
    last_run_at       {{ts}},
    last_success_at   {{ts}},
    last_error        {{text}},
    subscription_id   {{text}},            -- Graph change-notification subscription, if any
    subscription_expires_at {{ts}},
    last_added        {{bigint}} NOT NULL DEFAULT 0,
    last_updated      {{bigint}} NOT NULL DEFAULT 0,
    last_deleted      {{bigint}} NOT NULL DEFAULT 0,
    created_at        {{ts}} NOT NULL,
    UNIQUE (connection_id, drive_key)
);
CREATE INDEX sync_drives_subscription ON sync_drives (subscription_id);

-- sync_records: one row per (connection, model, record id). `payload` is the record's JSON
--   object as text, served as is (no per-record parse on the read path). `cursor_seq` is taken from
--   a per-(connection, model) counter on every change, so `cursor_seq > $n ORDER BY cursor_seq` pages
--   through changes in order; `version_key` tells a real change from a repeat;
--   `seen_generation` is the drive's resync generation that last saw the record.
CREATE TABLE sync_records (
    id               {{id}},
    connection_id    {{bigint}} NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    model            {{text}} NOT NULL,
    record_id        {{text}} NOT NULL,
    payload          {{text}} NOT NULL,
    version_key      {{text}} NOT NULL,
    first_seen_at    {{ts}} NOT NULL,
    last_modified_at {{ts}} NOT NULL,
    deleted_at       {{ts}},
    last_action      {{text}} NOT NULL,   -- ADDED | UPDATED | DELETED
    cursor_seq       {{bigint}} NOT NULL,
    seen_generation  {{bigint}} NOT NULL,
    UNIQUE (connection_id, model, record_id)
);
CREATE UNIQUE INDEX sync_records_cursor ON sync_records (connection_id, model, cursor_seq);
