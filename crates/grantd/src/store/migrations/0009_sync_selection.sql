-- The change feed watches several drives per connection (Nango's selection metadata): each record
-- remembers the watched drive (`sync_drives.id`) that wrote it, so a resync reconciles only its
-- own drive's records and a drive dropped from the selection deletes only its own. NULL on rows
-- written before (the connection's own drive, then the only one).
ALTER TABLE sync_records ADD COLUMN sync_drive {{bigint}};
CREATE INDEX sync_records_drive ON sync_records (sync_drive);
-- The picked item ids (a sorted JSON array) a `picked:` drive was enumerated with: when the
-- selection changes, that drive alone is enumerated again.
ALTER TABLE sync_drives ADD COLUMN selection {{text}};
