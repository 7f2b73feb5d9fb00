-- Approvals: a person's decision on a task's work, asked for by the project's policy or by the
-- agent. The log holds every request, question and decision (as events of the task); this
-- table is their projection, written in the transaction of the event that changes it.
--
-- One pending approval per task at most, held by the database as well as by the rules: two
-- processes that both ask at once cannot both succeed.
CREATE TABLE approvals (
    id           INTEGER PRIMARY KEY,
    task_id      INTEGER NOT NULL REFERENCES tasks (id),
    source       TEXT    NOT NULL CHECK (source = 'policy' OR source = 'agent'),
    execution_id INTEGER REFERENCES executions (id),
    summary      TEXT    NOT NULL,
    state        TEXT    NOT NULL
                 CHECK (state = 'pending' OR state = 'approved' OR state = 'rejected'),
    requested_at INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT,
    feedback     TEXT
);

CREATE UNIQUE INDEX approvals_one_pending ON approvals (task_id) WHERE state = 'pending';
-- The queue (`approvals list`, `status`) walks the pending ones; the newest decisions of a
-- task (its latest rejection's feedback) are found by task.
CREATE INDEX approvals_by_state ON approvals (state, id);
CREATE INDEX approvals_by_task ON approvals (task_id, id);
