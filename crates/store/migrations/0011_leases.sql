-- Claims that several engines can share the store with: the node that holds an execution, until
-- when its lease holds, and the execution's fencing token (its task's claim count when it was
-- claimed). A lease is renewed by its holder and, once it has run out, lets any engine record the
-- execution lost; the token lets the rules refuse the late writes of a worker that lost its claim.
--
-- Executions claimed before this version have no lease (only a restart of an engine recovers
-- them, as before) and get the token they would have had: their rank among their task's claims.
ALTER TABLE executions ADD COLUMN lease_node TEXT;
ALTER TABLE executions ADD COLUMN lease_until INTEGER;
ALTER TABLE executions ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;

UPDATE executions
SET fence = (
    SELECT COUNT(*) FROM executions AS earlier
    WHERE earlier.task_id = executions.task_id AND earlier.id <= executions.id
);
