-- PostgreSQL port of migrations/sqlite/0010_job_results.sql.

-- What an agent reported at a job's end, kept for jobs whose waiter reads it
-- from the store rather than from an in-process channel: a Step Functions
-- `gantry:agent:runCommand` task follows its `command` job across a server
-- restart and reads the exit code and output tails from here.
ALTER TABLE jobs ADD COLUMN result_json TEXT;
