-- The first schema: the event log and the projections of tasks, dependencies and executions.
--
-- Timestamps are integer milliseconds since the Unix epoch. Enumerations are stored as their
-- snake_case names so the database can be read by hand.

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    entity     TEXT    NOT NULL CHECK (entity IN ('task', 'execution')),
    entity_id  INTEGER NOT NULL,
    entity_seq INTEGER NOT NULL CHECK (entity_seq >= 1),
    actor      TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    -- The serde_json encoding of domain::EventKind; `type` repeats its tag for querying.
    data       TEXT    NOT NULL CHECK (json_valid(data)),
    UNIQUE (entity, entity_id, entity_seq)
);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    title         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    -- A JSON array of strings.
    labels        TEXT    NOT NULL CHECK (json_valid(labels)),
    priority      INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN
                      ('open', 'running', 'waiting', 'blocked', 'done', 'failed', 'cancelled')),
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

CREATE INDEX tasks_parent ON tasks (parent);
CREATE INDEX tasks_root ON tasks (root);
CREATE INDEX tasks_state ON tasks (state);

-- `task_id` cannot start before `blocked_by` is done.
CREATE TABLE task_deps (
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    blocked_by INTEGER NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, blocked_by),
    CHECK (task_id <> blocked_by)
) WITHOUT ROWID;

CREATE INDEX task_deps_blocked_by ON task_deps (blocked_by);

CREATE TABLE executions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('work', 'resume')),
    agent      TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    iteration  INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN
                   ('queued', 'preparing', 'running', 'validating', 'succeeded', 'failed',
                    'timed_out', 'stalled', 'cancelled', 'budget_exceeded', 'lost')),
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

CREATE INDEX executions_task ON executions (task_id);

-- The claim: at most one active execution per task, even with several writers. The list of
-- states is domain::ExecutionState::ACTIVE.
CREATE UNIQUE INDEX executions_one_active ON executions (task_id)
    WHERE state IN ('queued', 'preparing', 'running', 'validating');
