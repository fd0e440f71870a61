-- When each periodic job (the retention purge) last ran on this store, so that the
-- instances sharing it run the job once per period between them, not once each
-- (src/store/mod.rs, `Store::claim_run`).
CREATE TABLE periodic_runs (
    job    TEXT    PRIMARY KEY,
    -- Unix time in milliseconds, by the clock of the instance that ran it.
    ran_at INTEGER NOT NULL
);
