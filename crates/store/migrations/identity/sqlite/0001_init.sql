-- Signing keys: 'next' is published before it signs, 'current' signs, 'previous' is still
-- published until retire_after, 'retired' is neither.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_der  TEXT NOT NULL,   -- base64 PKCS#8; never served, never logged
    public_jwk   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('next', 'current', 'previous', 'retired')),
    created_at   BIGINT NOT NULL,
    activated_at BIGINT,
    retire_after BIGINT,
    retired_at   BIGINT
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

CREATE TABLE users (
    tenant_id       TEXT NOT NULL,
    username        TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    roles           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    failed_logins   BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, username)
);

CREATE TABLE clients (
    client_id    TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    roles        TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    roles        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    replaced_by  TEXT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

-- Audit events written in the same transaction as the change they record, sent to the audit
-- service by the drainer and deleted once it has them.
CREATE TABLE audit_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    event       TEXT NOT NULL
);
