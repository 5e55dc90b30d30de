-- grantd initial schema (PostgreSQL). Connection JSON that queries look into is JSONB; other JSON
-- is text. Sealed values are AES-256-GCM ciphertext (BYTEA) next to the id of the key that sealed
-- them.

CREATE TABLE integrations (
    id                    BIGSERIAL   PRIMARY KEY,
    unique_key            TEXT        NOT NULL UNIQUE,
    provider              TEXT        NOT NULL,
    display_name          TEXT,
    client_id             TEXT        NOT NULL,
    client_secret         BYTEA       NOT NULL,
    client_secret_key_id  TEXT        NOT NULL,
    scopes                TEXT        NOT NULL, -- JSON array of strings
    forward_webhooks      BOOLEAN     NOT NULL DEFAULT FALSE,
    integration_config    TEXT        NOT NULL, -- JSON object of strings
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE TABLE connect_sessions (
    id                            BIGSERIAL   PRIMARY KEY,
    token_hash                    TEXT        NOT NULL UNIQUE,
    end_user                      TEXT,                 -- JSON EndUser
    organization                  TEXT,                 -- JSON Organization
    allowed_integrations          TEXT,                 -- JSON array of keys
    integrations_config_defaults  TEXT        NOT NULL, -- JSON as sent
    reconnect_provider_config_key TEXT,
    reconnect_connection_id       TEXT,
    tags                          TEXT        NOT NULL, -- JSON object of strings
    webhook_url_override          TEXT,
    expires_at                    TIMESTAMPTZ NOT NULL,
    created_at                    TIMESTAMPTZ NOT NULL
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE oauth_flows (
    state                TEXT        PRIMARY KEY,
    provider_config_key  TEXT        NOT NULL,
    connection_id        TEXT        NOT NULL,
    connect_session_id   BIGINT,
    ws_client_id         TEXT,
    code_verifier        BYTEA       NOT NULL,
    code_verifier_key_id TEXT        NOT NULL,
    connection_config    TEXT        NOT NULL, -- JSON object
    redirect_uri         TEXT        NOT NULL,
    kind                 TEXT        NOT NULL,
    expires_at           TIMESTAMPTZ NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_flows_expires_at ON oauth_flows (expires_at);

CREATE TABLE connections (
    id                       BIGSERIAL   PRIMARY KEY,
    connection_id            TEXT        NOT NULL,
    provider_config_key      TEXT        NOT NULL,
    provider                 TEXT        NOT NULL,
    credentials              BYTEA       NOT NULL, -- sealed JSON of model::Credentials
    credentials_key_id       TEXT        NOT NULL,
    expires_at               TIMESTAMPTZ,          -- copy of credentials.expires_at, for refresh scheduling
    connection_config        JSONB       NOT NULL,
    metadata                 JSONB       NOT NULL,
    end_user                 JSONB,
    end_user_id              TEXT,                 -- end_user.id, for filtering
    end_user_organization_id TEXT,                 -- end_user.organization.id, for filtering
    search_text              TEXT        NOT NULL, -- lowercased connection id + end user id/email/name
    tags                     JSONB       NOT NULL,
    webhook_url_override     TEXT,
    auth_failure             JSONB,
    version                  BIGINT      NOT NULL DEFAULT 1,
    last_fetched_at          TIMESTAMPTZ,
    last_refreshed_at        TIMESTAMPTZ,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL,
    deleted_at               TIMESTAMPTZ
);
CREATE UNIQUE INDEX connections_live_key_id ON connections (provider_config_key, connection_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_live_created ON connections (created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_id ON connections (end_user_id) WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_organization_id ON connections (end_user_organization_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_expires_at ON connections (expires_at) WHERE deleted_at IS NULL;
CREATE INDEX connections_tags ON connections USING GIN (tags jsonb_path_ops) WHERE deleted_at IS NULL;
