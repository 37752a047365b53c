-- PostgreSQL port of migrations/sqlite/0003_workflows.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- Step Functions: state machines, executions, each execution's journal (the
-- interpreter's input events) and history (the AWS-shaped events derived from
-- them), pending timers and task tokens. Times are epoch milliseconds.

CREATE TABLE sfn_state_machines (
    arn              TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    definition       TEXT NOT NULL,
    role_arn         TEXT NOT NULL,
    -- STANDARD or EXPRESS.
    machine_type     TEXT NOT NULL,
    -- Counts updates from 1; revision_id changes with each.
    revision         BIGINT NOT NULL,
    revision_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);

CREATE TABLE sfn_executions (
    arn              TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    machine_arn      TEXT NOT NULL,
    -- The definition the execution runs: an update of the state machine does
    -- not change running executions (nor their replay after a restart).
    definition       TEXT NOT NULL,
    revision         BIGINT NOT NULL,
    role_arn         TEXT NOT NULL,
    status           TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    cause            TEXT,
    start_ms         BIGINT NOT NULL,
    stop_ms          BIGINT
);
CREATE INDEX sfn_executions_by_machine ON sfn_executions (machine_arn, start_ms);
CREATE INDEX sfn_executions_by_status ON sfn_executions (status);

-- The interpreter's input events, in order: replaying them rebuilds the execution.
-- The primary key makes each sequence number appendable once.
CREATE TABLE sfn_journal (
    execution_arn    TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    at_ms            BIGINT NOT NULL,
    event_json       TEXT NOT NULL,
    PRIMARY KEY (execution_arn, seq)
);

-- GetExecutionHistory's events, written with the journal entry that caused them.
CREATE TABLE sfn_history (
    execution_arn    TEXT NOT NULL,
    id               BIGINT NOT NULL,
    at_ms            BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    previous_id      BIGINT,
    details_json     TEXT NOT NULL,
    PRIMARY KEY (execution_arn, id)
);

-- Timers that have not fired nor been cancelled (Wait states, retry intervals,
-- task and execution timeouts, heartbeats).
CREATE TABLE sfn_timers (
    execution_arn    TEXT NOT NULL,
    timer_id         TEXT NOT NULL,
    fire_ms          BIGINT NOT NULL,
    PRIMARY KEY (execution_arn, timer_id)
);

-- Task tokens, by their SHA-256 only. status: PENDING until the task's
-- outcome is journalled, then CLOSED. handle: what the task started (e.g. a
-- CodeBuild build id), so a restart resumes it instead of starting another.
CREATE TABLE sfn_task_tokens (
    token_hash       TEXT PRIMARY KEY NOT NULL,
    execution_arn    TEXT NOT NULL,
    state_name       TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    handle           TEXT,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX sfn_task_tokens_by_execution ON sfn_task_tokens (execution_arn);
