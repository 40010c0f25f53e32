-- The outbox is the auth service's audit producer: each event gets its tenant's next
-- producer_seq in the transaction that records it, under one producer id per database.
CREATE TABLE audit_outbox_producer (
    tenant_id   TEXT PRIMARY KEY,
    last_seq    BIGINT NOT NULL
);
CREATE TABLE audit_outbox_meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
