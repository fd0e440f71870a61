-- The `serve` instances running on this schema, as the SQLite store's migration 0008: each
-- writes its row when it starts, refreshes `seen_at` every few seconds and removes the row
-- when it stops cleanly (src/store/heartbeat.rs). `storehook copy-store` refuses a source
-- with a fresh one. An instance that was killed leaves its row; it goes stale, and another
-- instance forgets it.
CREATE TABLE heartbeats (
    -- Made by the instance when it starts: host, process id and a random part.
    instance   TEXT    PRIMARY KEY,
    host       TEXT    NOT NULL,
    pid        BIGINT  NOT NULL,
    -- Unix time in milliseconds, by the instance's clock.
    started_at BIGINT  NOT NULL,
    seen_at    BIGINT  NOT NULL
);
