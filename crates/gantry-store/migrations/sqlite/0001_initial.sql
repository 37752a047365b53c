-- Gantry's first schema: access keys, CodeBuild projects and builds, build
-- logs and the audit log. Times are epoch milliseconds.

CREATE TABLE access_keys (
    access_key_id    TEXT PRIMARY KEY NOT NULL,
    -- XChaCha20-Poly1305 under the data directory's key file; the nonce is
    -- stored beside it and the access key id is the associated data.
    secret_nonce     BLOB NOT NULL,
    secret_cipher    BLOB NOT NULL,
    is_admin         INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL
);

CREATE TABLE projects (
    name             TEXT PRIMARY KEY NOT NULL,
    project_json     TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    modified_ms      INTEGER NOT NULL,
    -- The last build number handed out for this project name.
    build_counter    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE builds (
    id               TEXT PRIMARY KEY NOT NULL,
    project          TEXT NOT NULL,
    number           INTEGER NOT NULL,
    status           TEXT NOT NULL,
    current_phase    TEXT NOT NULL,
    build_json       TEXT NOT NULL,
    overrides_json   TEXT NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER,
    UNIQUE (project, number)
);
CREATE INDEX builds_by_status ON builds (status);

CREATE TABLE build_log_lines (
    build_id         TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    line             TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms            INTEGER NOT NULL,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    target           TEXT NOT NULL,
    detail           TEXT NOT NULL DEFAULT ''
);
