-- Small documents the server keeps about itself (not about one pipeline),
-- by name: the poller's last-seen branch heads ("poller").
CREATE TABLE server_state (
    name        TEXT PRIMARY KEY NOT NULL,
    value_json  TEXT NOT NULL,
    update_ms   INTEGER NOT NULL
);
