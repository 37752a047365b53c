-- PostgreSQL port of migrations/sqlite/0005_executions.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- Pipeline executions: each whole, as the engine's JSON; one row per
-- action attempt; one runtime meta row per pipeline; manual approvals.
-- Times are epoch milliseconds.

CREATE TABLE pipeline_executions (
    id               TEXT PRIMARY KEY NOT NULL,
    pipeline         TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    status           TEXT NOT NULL,
    active           BIGINT NOT NULL,
    start_ms         BIGINT NOT NULL,
    update_ms        BIGINT NOT NULL,
    body_json        TEXT NOT NULL
);
CREATE INDEX pipeline_executions_by_pipeline ON pipeline_executions (pipeline, seq);
CREATE INDEX pipeline_executions_active ON pipeline_executions (active, pipeline);

CREATE TABLE action_executions (
    id               TEXT PRIMARY KEY NOT NULL,
    pipeline         TEXT NOT NULL,
    execution_id     TEXT NOT NULL,
    stage            TEXT NOT NULL,
    action           TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    start_ms         BIGINT NOT NULL,
    update_ms        BIGINT NOT NULL,
    body_json        TEXT NOT NULL
);
CREATE INDEX action_executions_by_pipeline ON action_executions (pipeline, start_ms);

CREATE TABLE pipeline_runtimes (
    pipeline         TEXT PRIMARY KEY NOT NULL,
    meta_json        TEXT NOT NULL
);

CREATE TABLE approvals (
    token               TEXT PRIMARY KEY NOT NULL,
    pipeline            TEXT NOT NULL,
    execution_id        TEXT NOT NULL,
    stage               TEXT NOT NULL,
    action              TEXT NOT NULL,
    action_execution_id TEXT NOT NULL UNIQUE,
    expires_ms          BIGINT NOT NULL,
    result              TEXT,
    answered_by         TEXT,
    answered_ms         BIGINT
);
