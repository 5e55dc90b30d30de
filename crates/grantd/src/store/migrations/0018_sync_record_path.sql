-- Descendants follow a folder rename or move (issue 12): OneDrive for Business's delta reports a
-- renamed or moved folder but not what lies below it, so grantd rewrites the stored paths of
-- the folder's live descendants itself. `path` is the record's `path` (as in its payload), kept
-- in a column so a folder's descendants are found by a range on it: `path >= 'P/' AND path <
-- 'P0'` ('0' follows '/') holds exactly the paths under 'P' for any folder name (`%`, `_`,
-- unicode) when comparison is bytewise: SQLite's default (BINARY), `COLLATE "C"` on PostgreSQL.
--@postgres
ALTER TABLE sync_records ADD COLUMN path TEXT COLLATE "C";
UPDATE sync_records SET path = CAST(payload AS JSONB) ->> 'path';
--@end
--@sqlite
ALTER TABLE sync_records ADD COLUMN path TEXT;
UPDATE sync_records SET path = json_extract(payload, '$.path');
--@end
CREATE INDEX sync_records_path ON sync_records (connection_id, model, path);
