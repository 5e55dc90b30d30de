-- App credentials beyond the client secret (issue 7): an integration's certificate + sealed
-- private key for client assertions, the client secret's recorded expiry, and which expiry
-- warning (30/14/3/0 days) was last given. One optional row per integration, removed with it.

CREATE TABLE integration_app_credentials (
    integration_id         {{bigint}} PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    certificate_pem        {{text}},
    certificate_thumbprint {{text}},          -- base64url SHA-256 of the DER (x5t#S256)
    certificate_not_after  {{ts}},
    private_key            {{bytes}},          -- sealed PEM
    private_key_key_id     {{text}},
    assertion_alg          {{text}},          -- PS256 | RS256
    secret_expires_at      {{ts}},
    expiry_warned_days     {{int}},
    updated_at             {{ts}} NOT NULL
);
