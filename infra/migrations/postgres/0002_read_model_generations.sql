-- Bookkeeping of the read models: every generation of every projection, its state and its
-- checkpoint. The projection tables themselves (`feed_g<n>`, ...) are created per generation
-- at run time, and views (`feed`, ...) point at the live one.
CREATE TABLE IF NOT EXISTS generations (
    projection TEXT NOT NULL,
    number     INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    position   BIGINT NOT NULL DEFAULT 0,
    state      TEXT NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    PRIMARY KEY (projection, number)
);
