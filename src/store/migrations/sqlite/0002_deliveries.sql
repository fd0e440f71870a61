-- The outbox: one row per translated payload on its way to one destination, written in the
-- same transaction as its webhook.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks (id),
    mapping         TEXT    NOT NULL,
    -- The mapping's business key: (mapping, key) is unique, so however often a shop repeats
    -- an order, the database keeps one delivery of it per mapping.
    key             TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    operation       TEXT    NOT NULL,
    -- JSON payload, validated against the operation's schema at translation.
    payload         TEXT    NOT NULL,
    -- The delivery this one waits for (a Scalef status update waits for its conversion).
    needs_mapping   TEXT,
    needs_key       TEXT,
    -- pending | waiting → in_flight → delivered | dead | skipped | dry_run
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Unix time in milliseconds.
    next_attempt_at INTEGER NOT NULL,
    -- While in_flight: when the lease ends; a worker that died leaves an expired lease,
    -- and the delivery is claimed again.
    lease_until     INTEGER,
    -- A Scalef create's answer; a status update waiting for it copies it.
    conversion_id   TEXT,
    -- The last failure, or for dry_run the request that would have been sent.
    last_error      TEXT,
    request         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (mapping, key)
);

CREATE INDEX deliveries_due ON deliveries (destination, status, next_attempt_at);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id);

-- Every HTTP try of a delivery.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    -- delivered | retry | dead | dry_run
    outcome     TEXT    NOT NULL,
    http_status INTEGER,
    response    TEXT
);

CREATE INDEX attempts_delivery ON attempts (delivery_id);
