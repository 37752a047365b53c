-- PostgreSQL port of migrations/sqlite/0006_server_state.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- Small documents the server keeps about itself (not about one pipeline),
-- by name: the poller's last-seen branch heads ("poller").
CREATE TABLE server_state (
    name        TEXT PRIMARY KEY NOT NULL,
    value_json  TEXT NOT NULL,
    update_ms   BIGINT NOT NULL
);
