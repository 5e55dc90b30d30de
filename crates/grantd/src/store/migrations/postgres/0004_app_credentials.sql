-- App credentials beyond the client secret (issue 7): an integration's certificate + sealed
-- private key for client assertions, the client secret's recorded expiry, and which expiry
-- warning (30/14/3/0 days) was last given. One optional row per integration, removed with it.

CREATE TABLE integration_app_credentials (
    integration_id         BIGINT      PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    certificate_pem        TEXT,
    certificate_thumbprint TEXT,                 -- base64url SHA-256 of the DER (x5t#S256)
    certificate_not_after  TIMESTAMPTZ,
    private_key            BYTEA,                -- sealed PEM
    private_key_key_id     TEXT,
    assertion_alg          TEXT,                 -- PS256 | RS256
    secret_expires_at      TIMESTAMPTZ,
    expiry_warned_days     INTEGER,
    updated_at             TIMESTAMPTZ NOT NULL
);
