-- Stopped change notifications are looked for on every subscribed drive at once (issue 12):
-- when one drive is found to have missed its notifications, every other drive subscribed at
-- the same notification URL runs once, at most once per 12 hours across instances. The one
-- row holds when the last such sweep began; an instance claims a sweep by moving it forward.
CREATE TABLE sync_sweep (
    id       {{int}} PRIMARY KEY,
    swept_at {{ts}}
);
INSERT INTO sync_sweep (id, swept_at) VALUES (1, NULL);
