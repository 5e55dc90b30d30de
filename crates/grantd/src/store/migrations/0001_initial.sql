--@postgres
-- grantd initial schema (PostgreSQL). Connection JSON that queries look into is JSONB; other JSON
-- is text. Sealed values are AES-256-GCM ciphertext (BYTEA) next to the id of the key that sealed
-- them.
--@end
--@sqlite
-- grantd initial schema (SQLite). Timestamps are fixed-width RFC 3339 UTC text with microseconds
-- ("2025-01-31T12:00:00.000000Z") so that text order is time order. JSON is stored as text.
-- Sealed values are AES-256-GCM ciphertext (BLOB) next to the id of the key that sealed them.
--@end

CREATE TABLE integrations (
    id                    {{id}},
    unique_key            {{text}} NOT NULL UNIQUE,
    provider              {{text}} NOT NULL,
    display_name          {{text}},
    client_id             {{text}} NOT NULL,
    client_secret         {{bytes}} NOT NULL,
    client_secret_key_id  {{text}} NOT NULL,
    scopes                {{text}} NOT NULL, -- JSON array of strings
    forward_webhooks      {{bool}} NOT NULL DEFAULT {{false}},
    integration_config    {{text}} NOT NULL, -- JSON object of strings
    created_at            {{ts}} NOT NULL,
    updated_at            {{ts}} NOT NULL
);

CREATE TABLE connect_sessions (
    id                            {{id}},
    token_hash                    {{text}} NOT NULL UNIQUE,
    end_user                      {{text}},          -- JSON EndUser
    organization                  {{text}},          -- JSON Organization
    allowed_integrations          {{text}},          -- JSON array of keys
    integrations_config_defaults  {{text}} NOT NULL, -- JSON as sent
    reconnect_provider_config_key {{text}},
    reconnect_connection_id       {{text}},
    tags                          {{text}} NOT NULL, -- JSON object of strings
    webhook_url_override          {{text}},
    expires_at                    {{ts}} NOT NULL,
    created_at                    {{ts}} NOT NULL
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE oauth_flows (
--@postgres     state                TEXT        PRIMARY KEY,
--@sqlite     state                TEXT    PRIMARY KEY NOT NULL,
    provider_config_key  {{text}} NOT NULL,
    connection_id        {{text}} NOT NULL,
    connect_session_id   {{bigint}},
    ws_client_id         {{text}},
    code_verifier        {{bytes}} NOT NULL,
    code_verifier_key_id {{text}} NOT NULL,
    connection_config    {{text}} NOT NULL, -- JSON object
    redirect_uri         {{text}} NOT NULL,
    kind                 {{text}} NOT NULL,
    expires_at           {{ts}} NOT NULL,
    created_at           {{ts}} NOT NULL
);
CREATE INDEX oauth_flows_expires_at ON oauth_flows (expires_at);

CREATE TABLE connections (
    id                       {{id}},
    connection_id            {{text}} NOT NULL,
    provider_config_key      {{text}} NOT NULL,
    provider                 {{text}} NOT NULL,
    credentials              {{bytes}} NOT NULL, -- sealed JSON of model::Credentials
    credentials_key_id       {{text}} NOT NULL,
    expires_at               {{ts}},          -- copy of credentials.expires_at, for refresh scheduling
--@postgres
    connection_config        JSONB       NOT NULL,
    metadata                 JSONB       NOT NULL,
    end_user                 JSONB,
--@end
--@sqlite
    connection_config        TEXT    NOT NULL, -- JSON object
    metadata                 TEXT    NOT NULL, -- JSON object
    end_user                 TEXT,             -- JSON EndUser
--@end
    end_user_id              {{text}},          -- end_user.id, for filtering
    end_user_organization_id {{text}},          -- end_user.organization.id, for filtering
    search_text              {{text}} NOT NULL, -- lowercased connection id + end user id/email/name
--@postgres
    tags                     JSONB       NOT NULL,
    webhook_url_override     TEXT,
    auth_failure             JSONB,
--@end
--@sqlite
    tags                     TEXT    NOT NULL, -- JSON object of strings
    webhook_url_override     TEXT,
    auth_failure             TEXT,             -- JSON AuthFailure
--@end
    version                  {{bigint}} NOT NULL DEFAULT 1,
    last_fetched_at          {{ts}},
    last_refreshed_at        {{ts}},
    created_at               {{ts}} NOT NULL,
    updated_at               {{ts}} NOT NULL,
    deleted_at               {{ts}}
);
CREATE UNIQUE INDEX connections_live_key_id ON connections (provider_config_key, connection_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_live_created ON connections (created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_id ON connections (end_user_id) WHERE deleted_at IS NULL;
CREATE INDEX connections_end_user_organization_id ON connections (end_user_organization_id)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_expires_at ON connections (expires_at) WHERE deleted_at IS NULL;
--@postgres CREATE INDEX connections_tags ON connections USING GIN (tags jsonb_path_ops) WHERE deleted_at IS NULL;
