-- `no_progress`, an execution's own outcome when the evidence says it is stuck (the same
-- validation failure twice in a row, or an iteration after a failed validation that changed
-- nothing), rather than a `failed` with a telling summary.
--
-- The execution state is checked by a CHECK constraint, which cannot be altered in place, so
-- the table is rebuilt as in migration 3: rows, ids and the id sequence kept, conditions
-- written as comparisons, foreign keys switched off while it runs and checked at the end.

CREATE TABLE executions_v4 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    kind       TEXT    NOT NULL CHECK (kind = 'work' OR kind = 'resume'),
    agent      TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    iteration  INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state = 'queued' OR state = 'preparing'
                   OR state = 'running' OR state = 'validating' OR state = 'succeeded'
                   OR state = 'failed' OR state = 'timed_out' OR state = 'stalled'
                   OR state = 'cancelled' OR state = 'budget_exceeded'
                   OR state = 'no_progress' OR state = 'lost'),
    queued_at  INTEGER NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    pid        INTEGER,
    exit_code  INTEGER,
    score      REAL,
    wall_ms    INTEGER NOT NULL DEFAULT 0,
    cpu_ms     INTEGER NOT NULL DEFAULT 0,
    summary    TEXT,
    log_path   TEXT
);

INSERT INTO executions_v4 SELECT * FROM executions;
DELETE FROM sqlite_sequence WHERE name = 'executions_v4';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'executions_v4', seq FROM sqlite_sequence WHERE name = 'executions';
DROP TABLE executions;
ALTER TABLE executions_v4 RENAME TO executions;

CREATE INDEX executions_task ON executions (task_id);

-- The claim: at most one active execution per task (see migration 3 for why it is written so).
CREATE UNIQUE INDEX executions_one_active ON executions (task_id)
    WHERE (state = 'queued' OR state = 'preparing' OR state = 'running' OR state = 'validating');
