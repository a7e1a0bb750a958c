-- Crypto-shredding: each user's data key, wrapped under the key-encryption key derived from the
-- server secret, and the handles (author tokens, reservation handles) that name a user's key
-- without naming the user in the log. Never copied into an event; destroyed on unregistering.
CREATE TABLE IF NOT EXISTS data_keys (
    user_id    UUID        PRIMARY KEY,
    wrapped    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS key_handles (
    handle  TEXT PRIMARY KEY,
    user_id UUID NOT NULL,
    -- What the handle is about: the post of an author token, the stream of a reservation.
    subject TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS key_handles_user ON key_handles (user_id);
