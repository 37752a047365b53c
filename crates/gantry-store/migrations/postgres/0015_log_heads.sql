-- The highest line number written to each build's log. An append takes the
-- row's lock (INSERT ... ON CONFLICT DO UPDATE, which under READ COMMITTED
-- locks and reads the newest committed row, whatever the statement's
-- snapshot), so two writers to one log (two servers, or a remote agent's
-- chunk and the server's own lines) get disjoint numbers; and it does so
-- within a single statement, where the advisory lock it replaces needed a
-- statement of its own before the lines' INSERT. The row outlives the lines
-- when the log is archived, so a later line would be numbered after them.
CREATE TABLE build_log_heads (
    build_id         TEXT PRIMARY KEY NOT NULL,
    last_seq         BIGINT NOT NULL
);

INSERT INTO build_log_heads (build_id, last_seq)
SELECT build_id, MAX(seq) FROM build_log_lines GROUP BY build_id;
