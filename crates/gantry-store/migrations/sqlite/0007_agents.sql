-- Remote agents: the tokens they authenticate with (stored as SHA-256
-- hashes, never the token), the agents registered under them, and the job
-- queue they lease work from.
CREATE TABLE agent_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_ms    INTEGER NOT NULL,
    last_used_ms  INTEGER,
    revoked_ms    INTEGER
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY NOT NULL,
    token_id       TEXT NOT NULL,
    labels_json    TEXT NOT NULL,
    capacity       INTEGER NOT NULL,
    executor       TEXT NOT NULL,
    hostname       TEXT NOT NULL,
    version        TEXT NOT NULL,
    registered_ms  INTEGER NOT NULL
);

-- One row per unit of agent work. lease_epoch is the fencing token: it
-- grows with every lease, and a message carrying an older epoch is refused.
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    kind              TEXT NOT NULL,
    labels_json       TEXT NOT NULL,
    payload_json      TEXT NOT NULL,
    status            TEXT NOT NULL,
    offer_nonce       TEXT,
    offer_expires_ms  INTEGER NOT NULL DEFAULT 0,
    lease_id          TEXT,
    lease_epoch       INTEGER NOT NULL DEFAULT 0,
    agent_id          TEXT,
    lease_expires_ms  INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    created_ms        INTEGER NOT NULL,
    update_ms         INTEGER NOT NULL
);

CREATE INDEX jobs_by_status ON jobs (status, created_ms);
