-- The open escalations, found by receiver and age without reading the receiver's other mail:
-- `status` shows them and the engine's tick looks at the oldest ones every second.
CREATE INDEX messages_open_escalations ON messages (receiver, id)
    WHERE type = 'ESCALATION' AND (state = 'pending' OR state = 'delivered');
