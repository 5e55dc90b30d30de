-- Cache invalidation across instances is PostgreSQL only (LISTEN/NOTIFY, see the PostgreSQL
-- migration of the same name). SQLite serves one instance, whose Store forgets what it writes.
-- This file keeps the two migration lists identical.
SELECT 1;
