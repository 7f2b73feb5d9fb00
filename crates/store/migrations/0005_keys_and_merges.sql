-- Idempotency keys of agents' control calls, and merges of sub-tasks into their parents as
-- recorded steps.
--
-- A call made under a key a task already used changes nothing: a planner that runs again finds
-- the sub-tasks (and comments) it made before instead of making them twice. `result` is the
-- sub-task a `subtask_create` made.
CREATE TABLE call_keys (
    task_id    INTEGER NOT NULL REFERENCES tasks (id),
    op         TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    result     INTEGER REFERENCES tasks (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, op, key)
) WITHOUT ROWID;

-- One row per done sub-task: its branch is to be merged into its parent's. Written in the
-- transaction that makes the child done, so that a crash before or during the merge leaves the
-- step on record; `done` once merged (or found to have nothing to merge), `failed` with the
-- reason while a merge could not be made.
CREATE TABLE merges (
    child      INTEGER PRIMARY KEY REFERENCES tasks (id),
    parent     INTEGER NOT NULL REFERENCES tasks (id),
    state      TEXT    NOT NULL CHECK (state = 'pending' OR state = 'done' OR state = 'failed'),
    reason     TEXT,
    updated_at INTEGER NOT NULL
);

CREATE INDEX merges_unfinished ON merges (parent) WHERE state <> 'done';

-- Why merges into the task failed, while any does: a task with one is never done.
ALTER TABLE tasks ADD COLUMN merge_failed TEXT;
