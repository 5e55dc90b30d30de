-- Per-tenant throttling: when Microsoft answers 429/503 with `Retry-After` for a tenant, the
-- instant until which no instance sends that tenant another call. Every instance reads the live
-- rows at start (and when its PostgreSQL listener reconnects) and hears new ones at once through
-- `NOTIFY grantd_throttle`; the row outlives a restart. The key is the tenant id (`tid`), or
-- `connection:<id>` for personal accounts (one consumers tenant for everyone).
CREATE TABLE tenant_throttle (
    tenant        {{text}} PRIMARY KEY,
    blocked_until {{ts}} NOT NULL,
    updated_at    {{ts}} NOT NULL
);
