-- PostgreSQL port of migrations/sqlite/0007_agents.sql: INTEGER is BIGINT;
-- labels and payloads stay TEXT (documents come back byte for byte).

-- Remote agents: the tokens they authenticate with (stored as SHA-256
-- hashes, never the token), the agents registered under them, and the job
-- queue they lease work from.
CREATE TABLE agent_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT,
    revoked_ms    BIGINT
);

CREATE TABLE agents (
    id             TEXT PRIMARY KEY NOT NULL,
    token_id       TEXT NOT NULL,
    labels_json    TEXT NOT NULL,
    capacity       BIGINT NOT NULL,
    executor       TEXT NOT NULL,
    hostname       TEXT NOT NULL,
    version        TEXT NOT NULL,
    registered_ms  BIGINT NOT NULL
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
    offer_expires_ms  BIGINT NOT NULL DEFAULT 0,
    lease_id          TEXT,
    lease_epoch       BIGINT NOT NULL DEFAULT 0,
    agent_id          TEXT,
    lease_expires_ms  BIGINT NOT NULL DEFAULT 0,
    attempts          BIGINT NOT NULL DEFAULT 0,
    max_attempts      BIGINT NOT NULL,
    cancel_requested  BIGINT NOT NULL DEFAULT 0,
    error             TEXT,
    created_ms        BIGINT NOT NULL,
    update_ms         BIGINT NOT NULL
);

CREATE INDEX jobs_by_status ON jobs (status, created_ms);
