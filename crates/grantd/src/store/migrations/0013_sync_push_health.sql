-- The change feed notices when Graph's change notifications stop arriving (issue 12): an
-- accepted notification stamps `last_notification_at`, sets `notified` and clears
-- `push_stale_since`; leasing the drive for a run moves `notified` into `run_notified` (whether
-- a notification arrived since the previous lease). A run that no notification announced and
-- that still finds changes, while the drive's subscription is live, sets `push_stale_since`:
-- the drive is polled (and shown as polling) until notifications arrive again.
ALTER TABLE sync_drives ADD COLUMN last_notification_at {{ts}};
ALTER TABLE sync_drives ADD COLUMN notified {{bool}} NOT NULL DEFAULT {{false}};
ALTER TABLE sync_drives ADD COLUMN run_notified {{bool}} NOT NULL DEFAULT {{false}};
ALTER TABLE sync_drives ADD COLUMN push_stale_since {{ts}};
