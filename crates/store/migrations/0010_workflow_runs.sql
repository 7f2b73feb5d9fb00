-- Workflow runs: one run of a `kind: Workflow` on a task. The log holds the start (with the
-- definition as it was) and every input the run took, as events of the task; this table is
-- their projection, written in the transaction of each event: where the run is, how it ended,
-- and the whole instance (blackboard, budgets used, history) as JSON.
--
-- One unfinished run per task at most, held by the database as well as by the rules: a start
-- by label and one from the command line at the same moment cannot both succeed.
CREATE TABLE workflow_runs (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL
                CHECK (status = 'running' OR status = 'succeeded' OR status = 'failed'),
    position    TEXT,
    steps       INTEGER NOT NULL,
    definition  TEXT    NOT NULL,
    instance    TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE UNIQUE INDEX workflow_runs_one_running ON workflow_runs (task_id) WHERE status = 'running';
-- The engine walks the running ones at every turn; `task show` reads a task's runs.
CREATE INDEX workflow_runs_by_status ON workflow_runs (status, id);
CREATE INDEX workflow_runs_by_task ON workflow_runs (task_id, id);
