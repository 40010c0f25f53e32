-- Login throttling (NIST SP 800-63B §5.2.2): failure counters per (account, source), per source
-- address and per account, each with the time it is locked until; and the sources (addresses,
-- known devices by the hash of their cookie) that have logged in to an account before.
CREATE TABLE login_throttle (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL
);
CREATE TABLE login_known_sources (
    tenant_id     TEXT NOT NULL,
    username      TEXT NOT NULL,
    source        TEXT NOT NULL,
    last_success  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, username, source)
);
