-- Leases for leader election between servers sharing a database (see
-- gantry-store's leader.rs). Times are epoch milliseconds.
CREATE TABLE leadership (
    name        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    -- Counts changes of holder from 1.
    term        BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
