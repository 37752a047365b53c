-- CodePipeline custom action types, the jobs their actions create for
-- job workers, and the short-lived credentials those jobs carry.
-- Times are epoch milliseconds.

-- A custom action type (owner Custom). A deleted type keeps its row:
-- CodePipeline never lets the same category/provider/version be created
-- again, and running pipelines may still name it.
CREATE TABLE custom_action_types (
    category         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    version          TEXT NOT NULL,
    definition_json  TEXT NOT NULL,
    deleted          INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    PRIMARY KEY (category, provider, version)
);

-- One job of a custom action attempt. A continuation token finishes a job
-- and queues the next one for the same attempt.
CREATE TABLE pipeline_jobs (
    id                   TEXT PRIMARY KEY NOT NULL,
    nonce                TEXT NOT NULL,
    category             TEXT NOT NULL,
    provider             TEXT NOT NULL,
    version              TEXT NOT NULL,
    query_value          TEXT,
    status               TEXT NOT NULL,
    pipeline             TEXT NOT NULL,
    execution_id         TEXT NOT NULL,
    stage                TEXT NOT NULL,
    action               TEXT NOT NULL,
    action_execution_id  TEXT NOT NULL,
    data_json            TEXT NOT NULL,
    objects_json         TEXT NOT NULL,
    result_json          TEXT,
    created_ms           INTEGER NOT NULL,
    dispatched_ms        INTEGER,
    update_ms            INTEGER NOT NULL
);
CREATE INDEX pipeline_jobs_queue ON pipeline_jobs (category, provider, version, status, created_ms);
CREATE INDEX pipeline_jobs_by_attempt ON pipeline_jobs (action_execution_id, created_ms);

-- Artifact credentials handed to a job's worker: the secret encrypted with
-- the master key, the session token as its SHA-256.
CREATE TABLE job_credentials (
    access_key_id        TEXT PRIMARY KEY NOT NULL,
    job_id               TEXT NOT NULL,
    secret_nonce         BLOB NOT NULL,
    secret_cipher        BLOB NOT NULL,
    session_token_sha256 TEXT NOT NULL,
    expires_ms           INTEGER NOT NULL
);
CREATE INDEX job_credentials_by_expiry ON job_credentials (expires_ms);
