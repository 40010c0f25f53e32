-- Merkle trees (issue 14): per tenant, the hashes of complete subtrees at tree levels 8, 16,
-- 24… — the tiles above the leaves (C2SP tlog-tiles, 256 hashes wide); the leaves themselves
-- are events.leaf_hash. A node, once its 2^level leaves exist, never changes.
CREATE TABLE merkle_nodes (
    tenant_id TEXT    NOT NULL,
    level     INTEGER NOT NULL,
    idx       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);
