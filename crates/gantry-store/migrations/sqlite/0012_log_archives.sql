-- Where a finished build's log went: one object in the artifact store
-- (`logs/builds/<build-id>.log`, the log text: every line followed by
-- `\n`). The row is written in the same transaction that deletes the
-- build's `build_log_lines`, after the object was stored, so a build's log
-- is always in the lines, the object, or (after a crash between the two
-- steps) both.
CREATE TABLE build_log_archives (
    build_id         TEXT PRIMARY KEY NOT NULL,
    object_key       TEXT NOT NULL,
    size_bytes       INTEGER NOT NULL,
    line_count       INTEGER NOT NULL,
    archived_ms      INTEGER NOT NULL
) WITHOUT ROWID;
