-- Views that cost what they show. `status` counts tasks by state and lists the newest blocked,
-- failed and merge-failed tasks; on a store of 100,000 tasks each of these read the whole table.
--
-- Migration 3 dropped the index on state because no query the engine repeats read it. `status`
-- now does, and a person runs it while the engine works; the index is on (state, id) so that a
-- count by state reads the index alone and a list of one state's newest tasks walks it
-- backwards and stops at its limit. A state change pays for it with one index entry.
CREATE INDEX tasks_by_state ON tasks (state, id);

-- The few tasks whose sub-task could not be merged. Queries must say `merge_failed IS NOT NULL`
-- for SQLite to use it; rows without a failed merge are not in it.
CREATE INDEX tasks_merge_failed ON tasks (id) WHERE merge_failed IS NOT NULL;
