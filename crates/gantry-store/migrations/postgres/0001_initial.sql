-- PostgreSQL port of migrations/sqlite/0001_initial.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- Gantry's first schema: access keys, CodeBuild projects and builds, build
-- logs and the audit log. Times are epoch milliseconds.

CREATE TABLE access_keys (
    access_key_id    TEXT PRIMARY KEY NOT NULL,
    -- XChaCha20-Poly1305 under the data directory's key file; the nonce is
    -- stored beside it and the access key id is the associated data.
    secret_nonce     BYTEA NOT NULL,
    secret_cipher    BYTEA NOT NULL,
    is_admin         BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms       BIGINT NOT NULL
);

CREATE TABLE projects (
    name             TEXT PRIMARY KEY NOT NULL,
    project_json     TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    modified_ms      BIGINT NOT NULL,
    -- The last build number handed out for this project name.
    build_counter    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE builds (
    id               TEXT PRIMARY KEY NOT NULL,
    project          TEXT NOT NULL,
    number           BIGINT NOT NULL,
    status           TEXT NOT NULL,
    current_phase    TEXT NOT NULL,
    build_json       TEXT NOT NULL,
    overrides_json   TEXT NOT NULL,
    start_ms         BIGINT NOT NULL,
    end_ms           BIGINT,
    UNIQUE (project, number)
);
CREATE INDEX builds_by_status ON builds (status);

CREATE TABLE build_log_lines (
    build_id         TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    line             TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

CREATE TABLE audit_log (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms            BIGINT NOT NULL,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    target           TEXT NOT NULL,
    detail           TEXT NOT NULL DEFAULT ''
);
