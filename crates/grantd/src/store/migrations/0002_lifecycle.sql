--@postgres -- Token lifecycle (PostgreSQL): refresh scheduling state on connections and the webhook outbox.
--@sqlite -- Token lifecycle (SQLite): refresh scheduling state on connections and the webhook outbox.
--
--@postgres -- refresh_lease_until: a proactive-refresh worker claimed the connection until then
--@postgres --   (claimed with FOR UPDATE SKIP LOCKED, so instances never take the same work).
--@sqlite -- refresh_lease_until: a proactive-refresh worker claimed the connection until then.
-- refresh_failures / refresh_retry_at: consecutive transient refresh failures and when the next
--   attempt may run (backoff); reset by a successful refresh or a reconnect.
ALTER TABLE connections ADD COLUMN refresh_lease_until {{ts}};
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN refresh_retry_at {{ts}};
--@postgres CREATE INDEX connections_refresh_idle ON connections ((COALESCE(last_refreshed_at, created_at)))
--@sqlite CREATE INDEX connections_refresh_idle ON connections (COALESCE(last_refreshed_at, created_at))
    WHERE deleted_at IS NULL AND auth_failure IS NULL;

-- Auth webhooks waiting to be delivered (at least once). The body is the exact signed JSON.
CREATE TABLE webhook_outbox (
    id              {{id}},
    url             {{text}} NOT NULL,
    body            {{text}} NOT NULL,
    attempts        {{int}} NOT NULL DEFAULT 0,
    next_attempt_at {{ts}} NOT NULL,
    lease_until     {{ts}},
    last_error      {{text}},
    created_at      {{ts}} NOT NULL,
    delivered_at    {{ts}},
    abandoned_at    {{ts}}
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
