-- Area leases: an execution's time-limited hold on a path of the repository, for its own task
-- or one of its sub-tasks (not the claim leases of migration 11). The projection of the
-- `execution_area_lease_*` events of the holder execution, written in their transaction.
CREATE TABLE area_leases (
    id           INTEGER PRIMARY KEY,
    path         TEXT    NOT NULL,
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    holder_task  INTEGER NOT NULL REFERENCES tasks (id),
    agent        TEXT    NOT NULL,
    task_id      INTEGER NOT NULL REFERENCES tasks (id),
    taken_at     INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    state        TEXT    NOT NULL
                 CHECK (state = 'held' OR state = 'released' OR state = 'expired'),
    ended_at     INTEGER,
    end_reason   TEXT
);

-- The held ones, which every take reads (few: bounded per execution), by holder and by expiry.
CREATE INDEX area_leases_held ON area_leases (execution_id) WHERE state = 'held';
CREATE INDEX area_leases_held_expiring ON area_leases (expires_at) WHERE state = 'held';

-- Agency metrics measure handoffs from their events; a partial index finds those few among
-- every event without costing the other appends anything.
CREATE INDEX events_handed_off ON events (entity_id, at) WHERE type = 'task_handed_off';

-- And the answered escalations of a task, without reading every message.
CREATE INDEX messages_escalations_by_task ON messages (task_id, state) WHERE type = 'ESCALATION';
