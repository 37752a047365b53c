-- PostgreSQL port of migrations/sqlite/0004_events.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- EventBridge: buses, rules, targets, connections, API destinations, the
-- delivery outbox and dead letters. Times are epoch milliseconds. JSON
-- columns hold the API's own shapes (botocore member names).

CREATE TABLE event_buses (
    name             TEXT PRIMARY KEY NOT NULL,
    created_ms       BIGINT NOT NULL
);
-- The default bus always exists.
INSERT INTO event_buses (name, created_ms) VALUES ('default', 0);

CREATE TABLE event_rules (
    bus              TEXT NOT NULL REFERENCES event_buses (name),
    name             TEXT NOT NULL,
    state            TEXT NOT NULL,
    event_pattern    TEXT,
    schedule         TEXT,
    description      TEXT,
    role_arn         TEXT,
    created_ms       BIGINT NOT NULL,
    -- Scheduled rules: the last fire time, or the anchor a rate counts from
    -- (when the schedule was set) before the first fire.
    last_fire_ms     BIGINT,
    PRIMARY KEY (bus, name)
);

CREATE TABLE event_targets (
    bus              TEXT NOT NULL,
    rule             TEXT NOT NULL,
    id               TEXT NOT NULL,
    arn              TEXT NOT NULL,
    target_json      TEXT NOT NULL,
    PRIMARY KEY (bus, rule, id),
    FOREIGN KEY (bus, rule) REFERENCES event_rules (bus, name)
);

CREATE TABLE event_connections (
    name             TEXT PRIMARY KEY NOT NULL,
    -- The connection as DescribeConnection shows it, secrets left out.
    connection_json  TEXT NOT NULL,
    -- The secret parameters (API key value, password), XChaCha20-Poly1305
    -- under the key file with the connection's name as associated data.
    secret_nonce     BYTEA NOT NULL,
    secret_cipher    BYTEA NOT NULL,
    created_ms       BIGINT NOT NULL
);

CREATE TABLE event_api_destinations (
    name             TEXT PRIMARY KEY NOT NULL,
    connection       TEXT NOT NULL REFERENCES event_connections (name),
    destination_json TEXT NOT NULL,
    created_ms       BIGINT NOT NULL
);

-- One row per (event, target): written in the transaction that accepts the
-- event, so an accepted event is never lost; a worker delivers due rows.
CREATE TABLE event_outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         TEXT NOT NULL,
    event_json       TEXT NOT NULL,
    bus              TEXT NOT NULL,
    rule             TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    -- The target as it was when the event was accepted.
    target_json      TEXT NOT NULL,
    -- PENDING, DELIVERED or DEAD.
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    finished_ms      BIGINT,
    last_error       TEXT
);
CREATE INDEX event_outbox_due ON event_outbox (status, next_attempt_ms);

CREATE TABLE event_dead_letters (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    event_json       TEXT NOT NULL,
    bus              TEXT NOT NULL,
    rule             TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    target_arn       TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    reason           TEXT NOT NULL,
    at_ms            BIGINT NOT NULL
);
