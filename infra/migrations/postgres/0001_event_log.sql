-- The event log of record (ARCHITECTURE.md §2, §3).
CREATE TABLE IF NOT EXISTS events (
    position    BIGINT      PRIMARY KEY CHECK (position >= 1),
    event_id    UUID        NOT NULL UNIQUE,
    stream      TEXT        NOT NULL,
    version     BIGINT      NOT NULL CHECK (version >= 1),
    type        TEXT        NOT NULL,
    schema      INT         NOT NULL CHECK (schema >= 0),
    occurred_at TIMESTAMPTZ NOT NULL,
    data        JSON        NOT NULL,
    metadata    JSON        NOT NULL,
    UNIQUE (stream, version)
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT NOT NULL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    results     JSON NOT NULL
);
