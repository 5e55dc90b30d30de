-- Dashboard sign-in sessions (issue 14, item 10), server-side so that signing out and changing
-- the secret key (or the admin login) end them at once on every instance. The cookie holds a
-- random 256-bit session id; only its SHA-256 is stored. `key_check` is an HMAC of the id under
-- a key derived from the secret key and the admin login: an instance running another key finds
-- it does not match and refuses (and deletes) the session. Without the id, the row tells nothing
-- about the secret key.
CREATE TABLE dashboard_sessions (
    id_hash    {{text}} PRIMARY KEY,
    key_check  {{text}} NOT NULL,
    created_at {{ts}} NOT NULL,
    expires_at {{ts}} NOT NULL
);
CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);
