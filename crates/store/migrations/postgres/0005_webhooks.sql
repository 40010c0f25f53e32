-- Signed webhooks (issue 12): a tenant's subscriptions and the log of their deliveries.
-- A subscription's cursor is the last seq of the tenant's chain it has been matched against:
-- the chain itself is the outbox, so a restart loses no notification and sends none twice.
-- Secrets are sealed under the service's webhook key (DATA_DIR/webhook-secret.key).
CREATE TABLE webhook_subscriptions (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    url        TEXT NOT NULL,
    kinds      TEXT NOT NULL,
    filter     TEXT NOT NULL,
    secrets    TEXT NOT NULL,
    cursor_seq BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX webhook_subscriptions_tenant_idx ON webhook_subscriptions (tenant_id);

-- One row per message and subscription; message_id is the webhook-id receivers deduplicate
-- by, the same on every attempt. status: pending (next_attempt_at, Unix ms), delivered, or
-- dead (the dead-letter queue, after the last attempt failed).
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (subscription_id, message_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, created_at);
