-- Lands of done tasks' branches on the base branch, as recorded steps.
--
-- A land is recorded as started (with the land commit already made and judged, and the ref
-- that is about to move with the commit it holds) before the ref moves, and as landed once it
-- moved; an abandoned land leaves no row. So a crash between the two leaves a `started` row,
-- which the next land of the task finishes or forgets by reading the ref: a base that holds
-- `new_commit` moved, any other did not. A sub-task landed with its tree names its `root`.
CREATE TABLE lands (
    task_id    INTEGER PRIMARY KEY REFERENCES tasks (id),
    state      TEXT    NOT NULL CHECK (state = 'started' OR state = 'landed'),
    strategy   TEXT    NOT NULL,
    base_ref   TEXT    NOT NULL,
    old_commit TEXT    NOT NULL,
    new_commit TEXT    NOT NULL,
    root       INTEGER REFERENCES tasks (id),
    updated_at INTEGER NOT NULL
);

CREATE INDEX lands_started ON lands (task_id) WHERE state = 'started';
