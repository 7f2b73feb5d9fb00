-- The engine carries out workflow runs. A run records the commands it began for each visit
-- (so that none is carried out twice, a restart included) and, for a sub-workflow, the visit
-- of the parent run that started it. A gate's approval has the source `workflow`.
ALTER TABLE workflow_runs ADD COLUMN begun TEXT NOT NULL DEFAULT '[]';
ALTER TABLE workflow_runs ADD COLUMN parent TEXT;

-- A sub-workflow runs on its parent's task beside the parent: one unfinished top-level run
-- per task, as before.
DROP INDEX workflow_runs_one_running;
CREATE UNIQUE INDEX workflow_runs_one_running ON workflow_runs (task_id)
    WHERE status = 'running' AND parent IS NULL;

-- SQLite changes a CHECK only by rebuilding the table.
CREATE TABLE approvals_new (
    id           INTEGER PRIMARY KEY,
    task_id      INTEGER NOT NULL REFERENCES tasks (id),
    source       TEXT    NOT NULL
                 CHECK (source = 'policy' OR source = 'agent' OR source = 'workflow'),
    execution_id INTEGER REFERENCES executions (id),
    summary      TEXT    NOT NULL,
    state        TEXT    NOT NULL
                 CHECK (state = 'pending' OR state = 'approved' OR state = 'rejected'),
    requested_at INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT,
    feedback     TEXT
);
INSERT INTO approvals_new SELECT id, task_id, source, execution_id, summary, state,
    requested_at, decided_at, decided_by, feedback FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE UNIQUE INDEX approvals_one_pending ON approvals (task_id) WHERE state = 'pending';
CREATE INDEX approvals_by_state ON approvals (state, id);
CREATE INDEX approvals_by_task ON approvals (task_id, id);
