--@postgres
-- Cache invalidation across instances (PostgreSQL): every meaningful change of a connection or
-- integration row is announced on the channel `grantd_cache` (payload `c:<connection row id>` or
-- `i:<integration unique key>`), and every instance drops its cached copy (store/cache.rs).
-- Changes of bookkeeping columns only (last_fetched_at, refresh leases and retry state) are not
-- announced: they do not change what a cached copy is used for.
CREATE FUNCTION grantd_cache_notify() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'connections' THEN
        PERFORM pg_notify('grantd_cache', 'c:' || OLD.id::text);
    ELSE
        PERFORM pg_notify('grantd_cache', 'i:' || OLD.unique_key);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER connections_cache_update AFTER UPDATE ON connections FOR EACH ROW
    WHEN ((OLD.version, OLD.deleted_at, OLD.credentials, OLD.connection_config, OLD.metadata,
           OLD.end_user, OLD.tags, OLD.webhook_url_override, OLD.auth_failure,
           OLD.provider_config_key, OLD.connection_id)
          IS DISTINCT FROM
          (NEW.version, NEW.deleted_at, NEW.credentials, NEW.connection_config, NEW.metadata,
           NEW.end_user, NEW.tags, NEW.webhook_url_override, NEW.auth_failure,
           NEW.provider_config_key, NEW.connection_id))
    EXECUTE FUNCTION grantd_cache_notify();
CREATE TRIGGER connections_cache_delete AFTER DELETE ON connections FOR EACH ROW
    EXECUTE FUNCTION grantd_cache_notify();
CREATE TRIGGER integrations_cache AFTER UPDATE OR DELETE ON integrations FOR EACH ROW
    EXECUTE FUNCTION grantd_cache_notify();
--@end
--@sqlite
-- Cache invalidation across instances is PostgreSQL only (LISTEN/NOTIFY, see the PostgreSQL
-- migration of the same name). SQLite serves one instance, whose Store forgets what it writes.
-- This file keeps the two migration lists identical.
SELECT 1;
--@end
