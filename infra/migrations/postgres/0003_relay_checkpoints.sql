-- The Kafka relay's checkpoint: the last position the broker acknowledged (per topic).
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
