-- Per-tenant retention (issue 11): how many days a tenant's payload values are kept. A tenant
-- without a row follows the service's AUDIT_RETENTION_DAYS.
CREATE TABLE retention_policies (
    tenant_id  TEXT PRIMARY KEY,
    days       BIGINT NOT NULL CHECK (days >= 1),
    updated_at TEXT NOT NULL
);

-- Data subjects (issue 11): a record's personal payload members are stored encrypted under
-- its subject's data key (payload_sealed: member -> envelope); subject_ref is the keyed hash
-- of the subject id, never the id itself.
ALTER TABLE events ADD COLUMN subject_ref TEXT;
ALTER TABLE events ADD COLUMN payload_sealed TEXT NOT NULL DEFAULT '{}';
CREATE INDEX events_subject_idx ON events (tenant_id, subject_ref, seq) WHERE subject_ref IS NOT NULL;

-- Each subject's data key, wrapped under the service's key-encryption key. Erasure deletes
-- the row: what was sealed under it can no longer be opened.
CREATE TABLE subject_keys (
    tenant_id   TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, subject_ref)
);
