-- grantd initial schema (SQLite). Timestamps are fixed-width RFC 3339 UTC text with microseconds
-- ("2025-01-31T12:00:00.000000Z") so that text order is time order. JSON is stored as text.
-- Sealed values are AES-256-GCM ciphertext (BLOB) next to the id of the key that sealed them.

CREATE TABLE integrations (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    unique_key            TEXT    NOT NULL UNIQUE,
    provider              TEXT    NOT NULL,
    display_name          TEXT,
    client_id             TEXT    NOT NULL,
    client_secret         BLOB    NOT NULL,
    client_secret_key_id  TEXT    NOT NULL,
    scopes                TEXT    NOT NULL, -- JSON array of strings
    forward_webhooks      INTEGER NOT NULL DEFAULT 0,
    integration_config    TEXT    NOT NULL, -- JSON object of strings
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);

CREATE TABLE connect_sessions (
    id                            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash                    TEXT    NOT NULL UNIQUE,
    end_user                      TEXT,             -- JSON EndUser
    organization                  TEXT,             -- JSON Organization
    allowed_integrations          TEXT,             -- JSON array of keys
    integrations_config_defaults  TEXT    NOT NULL, -- JSON as sent
    reconnect_provider_config_key TEXT,
    reconnect_connection_id       TEXT,
    tags                          TEXT    NOT NULL, -- JSON object of strings
    webhook_url_override          TEXT,
    expires_at                    TEXT    NOT NULL,
    created_at                    TEXT    NOT NULL
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE oauth_flows (
    state                TEXT    PRIMARY KEY NOT NULL,
    provider_config_key  TEXT    NOT NULL,
    connection_id        TEXT    NOT NULL,
    connect_session_id   INTEGER,
    ws_client_id         TEXT,
    code_verifier        BLOB    NOT NULL,
    code_verifier_key_id TEXT    NOT NULL,
    connection_config    TEXT    NOT NULL, -- JSON object
    redirect_uri         TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    expires_at           TEXT    NOT NULL,
    created_at           TEXT    NOT NULL
);
CREATE INDEX oauth_flows_expires_at ON oauth_flows (expires_at);

CREATE TABLE connections (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id            TEXT    NOT NULL,
    provider_config_key      TEXT    NOT NULL,
    provider                 TEXT    NOT NULL,
    credentials              BLOB    NOT NULL, -- sealed JSON of model::Credentials
    credentials_key_id       TEXT    NOT NULL,
    expires_at               TEXT,             -- copy of credentials.expires_at, for refresh scheduling
    connection_config        TEXT    NOT NULL, -- JSON object
    metadata                 TEXT    NOT NULL, -- JSON object
    end_user                 TEXT,             -- JSON EndUser
    end_user_id              TEXT,             -- end_user.id, for filtering
    end_user_organization_id TEXT,             -- end_user.organization.id, for filtering
    search_text              TEXT    NOT NULL, -- lowercased connection id + end user id/email/name
    tags                     TEXT    NOT NULL, -- JSON object of strings
    webhook_url_override     TEXT,
    auth_failure             TEXT,             -- JSON AuthFailure
    version                  INTEGER NOT NULL DEFAULT 1,
    last_fetched_at          TEXT,
    last_refreshed_at        TEXT,
    created_at               TEXT    NOT NULL,
    updated_at               TEXT    NOT NULL,
    deleted_at               TEXT
);
CREATE UNIQUE INDEX connections_live_key_id ON connections (provider_config_key, connection_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_live_created ON connections (created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_id ON connections (end_user_id) WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_organization_id ON connections (end_user_organization_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_expires_at ON connections (expires_at) WHERE deleted_at IS NULL;
