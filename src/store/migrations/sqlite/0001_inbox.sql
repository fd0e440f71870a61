-- The inbox: every accepted webhook, raw, before it is acknowledged.
CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    -- Repeated deliveries of one event share it; unique per source, so the database, not a
    -- check-then-insert race, refuses the second copy.
    dedupe_id   TEXT    NOT NULL,
    -- JSON object of the headers kept (lowercase names).
    headers     TEXT    NOT NULL,
    -- The body byte for byte as it arrived (the signature covers these bytes).
    body        BLOB    NOT NULL,
    -- accepted → translated | untranslated
    status      TEXT    NOT NULL DEFAULT 'accepted',
    error       TEXT,
    -- Unix time in milliseconds.
    received_at INTEGER NOT NULL,
    UNIQUE (source, dedupe_id)
);

CREATE INDEX webhooks_received_at ON webhooks (received_at);
