-- Handoffs between agencies and roles (`ctl handoff`): the part of a task open now, which
-- routing honours (JSON `{agency, role}`, NULL to route by labels), and how many handoffs the
-- task has had, which its budget bounds. Each handoff itself is a `task_handed_off` event.
ALTER TABLE tasks ADD COLUMN handoff TEXT;
ALTER TABLE tasks ADD COLUMN handoffs INTEGER NOT NULL DEFAULT 0 CHECK (handoffs >= 0);
