-- State checks written as comparisons, and no index on the task state.
--
-- SQLite evaluates a constant `IN (...)` list of more than two values by building a temporary
-- b-tree each time a statement runs. The CHECK constraints on the task and execution states and
-- the WHERE clause of the partial index on active executions were such lists, so every state
-- change and every new execution built two or three of them: most of the cost of the write.
-- The same conditions written as chains of comparisons cost nothing of the kind. A CHECK
-- constraint cannot be altered in place, so both tables are rebuilt (their rows, ids and id
-- sequences kept); the migration runs with foreign keys switched off and checked at the end.
--
-- The index on tasks (state) goes: no query the engine repeats reads it, the engine keeps the
-- tasks in memory, and every state change paid for it with index pages in the log.

CREATE TABLE tasks_v3 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    title         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    -- A JSON array of strings.
    labels        TEXT    NOT NULL CHECK (json_valid(labels)),
    priority      INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state = 'open' OR state = 'running'
                      OR state = 'waiting' OR state = 'blocked' OR state = 'done'
                      OR state = 'failed' OR state = 'cancelled'),
    parent        INTEGER REFERENCES tasks (id),
    root          INTEGER NOT NULL,
    depth         INTEGER NOT NULL CHECK (depth >= 0),
    agent         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    nudged_at     INTEGER,
    not_before    INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    continuations INTEGER NOT NULL DEFAULT 0,
    executions    INTEGER NOT NULL DEFAULT 0,
    summary       TEXT,
    branch        TEXT
);

INSERT INTO tasks_v3 SELECT * FROM tasks;
-- Ids are never handed out twice: the new table continues the old one's sequence.
DELETE FROM sqlite_sequence WHERE name = 'tasks_v3';
INSERT INTO sqlite_sequence (name, seq) SELECT 'tasks_v3', seq FROM sqlite_sequence WHERE name = 'tasks';
DROP TABLE tasks;
ALTER TABLE tasks_v3 RENAME TO tasks;

CREATE INDEX tasks_parent ON tasks (parent);
CREATE INDEX tasks_root ON tasks (root);

CREATE TABLE executions_v3 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    kind       TEXT    NOT NULL CHECK (kind = 'work' OR kind = 'resume'),
    agent      TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    iteration  INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state = 'queued' OR state = 'preparing'
                   OR state = 'running' OR state = 'validating' OR state = 'succeeded'
                   OR state = 'failed' OR state = 'timed_out' OR state = 'stalled'
                   OR state = 'cancelled' OR state = 'budget_exceeded' OR state = 'lost'),
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

INSERT INTO executions_v3 SELECT * FROM executions;
DELETE FROM sqlite_sequence WHERE name = 'executions_v3';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'executions_v3', seq FROM sqlite_sequence WHERE name = 'executions';
DROP TABLE executions;
ALTER TABLE executions_v3 RENAME TO executions;

CREATE INDEX executions_task ON executions (task_id);

-- The claim: at most one active execution per task, even with several writers. The condition
-- is domain::ExecutionState::ACTIVE, written exactly as queries must write it (ACTIVE_SQL in
-- the store) for SQLite to use this index for them.
CREATE UNIQUE INDEX executions_one_active ON executions (task_id)
    WHERE (state = 'queued' OR state = 'preparing' OR state = 'running' OR state = 'validating');
