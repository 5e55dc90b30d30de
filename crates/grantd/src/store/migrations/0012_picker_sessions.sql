-- File picker sessions (`POST /picker/sessions`): a short-lived token (only its SHA-256 is
-- stored) that lets a browser open the hosted File Picker for one connection, with the options
-- the app chose and the app page's origin picked items are posted to.
CREATE TABLE picker_sessions (
    id                  {{id}},
    token_hash          {{text}} NOT NULL UNIQUE,
    provider_config_key {{text}} NOT NULL,
    connection_id       {{text}} NOT NULL,
    options             {{text}} NOT NULL, -- JSON PickerOptions
    expires_at          {{ts}} NOT NULL,
    created_at          {{ts}} NOT NULL
);
CREATE INDEX picker_sessions_expires_at ON picker_sessions (expires_at);
