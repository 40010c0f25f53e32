-- Time index (issue 15): per tenant and minute, hour and day of occurred_at, the lowest and
-- highest seq of the records that occurred then and how many there are. A time-window query
-- reads a handful of these rows to learn which seqs can hold its records, then walks the
-- primary key newest first over just those — instead of fetching every record in the window
-- and sorting them by seq. Kept in the same transaction as the records it describes.
CREATE TABLE event_time_index (
    tenant_id TEXT NOT NULL,
    level     INTEGER NOT NULL,
    bucket    TEXT NOT NULL,
    min_seq   BIGINT  NOT NULL,
    max_seq   BIGINT  NOT NULL,
    n         BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, level, bucket)
);
INSERT INTO event_time_index (tenant_id, level, bucket, min_seq, max_seq, n)
SELECT tenant_id, 0, substr(occurred_at, 1, 16), MIN(seq), MAX(seq), COUNT(*)
FROM events GROUP BY tenant_id, substr(occurred_at, 1, 16);
INSERT INTO event_time_index (tenant_id, level, bucket, min_seq, max_seq, n)
SELECT tenant_id, 1, substr(occurred_at, 1, 13), MIN(seq), MAX(seq), COUNT(*)
FROM events GROUP BY tenant_id, substr(occurred_at, 1, 13);
INSERT INTO event_time_index (tenant_id, level, bucket, min_seq, max_seq, n)
SELECT tenant_id, 2, substr(occurred_at, 1, 10), MIN(seq), MAX(seq), COUNT(*)
FROM events GROUP BY tenant_id, substr(occurred_at, 1, 10);
