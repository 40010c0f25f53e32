-- Per-tenant redaction policies (issue 11): the policy as JSON, and when it was last set.
-- A tenant without a row follows the fleet's policy.
CREATE TABLE redaction_policies (
    tenant_id  TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
