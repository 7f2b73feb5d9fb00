-- What people (and agents, with `ctl block`) said to a task is read from its events for each
-- prompt. This partial index holds only those events, so that the engine can learn at its
-- start which tasks have any and skip the read for every other task.
CREATE INDEX events_remarks ON events (entity_id)
    WHERE entity = 'task'
      AND (type = 'task_commented' OR type = 'task_feedback_given'
           OR type = 'task_answered' OR type = 'task_approval_decided');
