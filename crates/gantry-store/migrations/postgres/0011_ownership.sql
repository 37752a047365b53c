-- Which server owns which in-flight work (see gantry-store's servers.rs).
-- Every server process has a row, renewed every few seconds; work whose
-- owner's row is stale (or gone) is taken over by another server with a
-- conditional UPDATE on the previous owner. Times are epoch milliseconds.
CREATE TABLE servers (
    id            TEXT PRIMARY KEY NOT NULL,
    hostname      TEXT NOT NULL,
    started_ms    BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL
);

-- The server waiting for the build (NULL: written before servers had ids,
-- or by `gantry pipeline run`; such a build has no live owner).
ALTER TABLE builds ADD COLUMN owner TEXT;
-- The server driving the Step Functions execution.
ALTER TABLE sfn_executions ADD COLUMN owner TEXT;
-- The server running the pipeline execution's actions.
ALTER TABLE pipeline_executions ADD COLUMN owner TEXT;

-- A remote agent's job: the last log chunk stored under the current lease
-- (so any server can take the next chunk). The result its agent sent (so
-- the build's owner finishes the build whichever server received it) goes
-- in `result_json`, added by 0010.
ALTER TABLE jobs ADD COLUMN log_acked BIGINT NOT NULL DEFAULT 0;
