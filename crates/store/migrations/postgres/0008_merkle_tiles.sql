-- Merkle tiles as blobs (issue 14's proof latency): a tile (C2SP tlog-tiles) is up to 256
-- hashes at tree level 8·level, indices idx·256…; kept here as one row of width·32 bytes so a
-- proof reads five rows, not five ranges of up to 256. Full tiles are written when the node
-- above them is (they never change); the partial tile at each level's right edge is written
-- at each checkpoint, one row per tile, replaced only by a wider one (a tile's first hashes
-- never change, so the widest serves every narrower request). Tiles not stored here are read
-- from events.leaf_hash and merkle_nodes as before.
CREATE TABLE merkle_tiles (
    tenant_id TEXT    NOT NULL,
    level     INTEGER NOT NULL,
    idx       BIGINT  NOT NULL,
    width     INTEGER NOT NULL,
    hashes    BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);
