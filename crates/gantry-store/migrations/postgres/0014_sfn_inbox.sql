-- Events for a Step Functions execution received by a server that does not
-- hold it in memory (SendTaskSuccess/Failure/Heartbeat, StopExecution): the
-- receiving server records them here and the execution's owner applies them
-- (see gantry-store's workflows.rs, "inbox"). Times are epoch milliseconds.
CREATE TABLE sfn_inbox (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_arn  TEXT NOT NULL,
    -- The token hash of a SendTaskSuccess/Failure: one such callback per
    -- token is recorded (NULL for heartbeats and stops, which may repeat).
    dedup          TEXT,
    -- The event as the journal stores it (a token only by its hash).
    event_json     TEXT NOT NULL,
    actor          TEXT NOT NULL,
    audit_action   TEXT,
    created_ms     BIGINT NOT NULL,
    -- NULL until the owner applied it (APPLIED, written with the journal
    -- entry it caused) or found it too late (REFUSED).
    outcome        TEXT,
    done_ms        BIGINT
);
CREATE UNIQUE INDEX sfn_inbox_once ON sfn_inbox (dedup);
CREATE INDEX sfn_inbox_pending ON sfn_inbox (execution_arn) WHERE outcome IS NULL;
-- The executions a server drives (its inbox, what it still owns).
CREATE INDEX sfn_executions_by_owner ON sfn_executions (owner) WHERE status = 'RUNNING';
