-- Audit records. SQLite compares text by byte (BINARY), so ordering and prefix ranges agree
-- with the Postgres engine, whose columns use the "C" collation.
CREATE TABLE events (
    tenant_id           TEXT NOT NULL,
    seq                 BIGINT NOT NULL,
    event_id            TEXT NOT NULL,
    occurred_at         TEXT NOT NULL,
    received_at         TEXT NOT NULL,
    actor_type          TEXT NOT NULL,
    actor_id            TEXT NOT NULL,
    action              TEXT NOT NULL,
    resource_type       TEXT NOT NULL,
    resource_id         TEXT NOT NULL,
    outcome             TEXT NOT NULL,
    severity            TEXT NOT NULL,
    source_service      TEXT NOT NULL,
    producer_id         TEXT,
    producer_seq        BIGINT,
    trace_id            TEXT,
    schema_version      BIGINT NOT NULL,
    payload_commitments TEXT NOT NULL,
    payload             TEXT NOT NULL,
    payload_salts       TEXT NOT NULL,
    content_hash        TEXT NOT NULL,
    leaf_hash           TEXT NOT NULL,
    chain_hash          TEXT NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (tenant_id, seq),
    CONSTRAINT events_tenant_event_id_key UNIQUE (tenant_id, event_id)
);
CREATE INDEX events_actor_idx ON events (tenant_id, actor_id, seq);
CREATE INDEX events_action_idx ON events (tenant_id, action, seq);
CREATE INDEX events_resource_idx ON events (tenant_id, resource_type, resource_id, seq);
CREATE INDEX events_trace_idx ON events (tenant_id, trace_id, seq) WHERE trace_id IS NOT NULL;
CREATE INDEX events_occurred_idx ON events (tenant_id, occurred_at);

CREATE TABLE tenants (
    tenant_id  TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- The last producer_seq seen per producer, to count gaps and refuse a sequence going backwards.
CREATE TABLE producers (
    tenant_id   TEXT NOT NULL,
    producer_id TEXT NOT NULL,
    last_seq    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, producer_id)
);

CREATE TABLE checkpoints (
    tenant_id  TEXT NOT NULL,
    size       BIGINT NOT NULL,
    chain_hash TEXT NOT NULL,
    time       TEXT NOT NULL,
    key_name   TEXT NOT NULL,
    note       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Public halves of the checkpoint signing keys (the private keys never enter the database).
CREATE TABLE signing_keys (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
