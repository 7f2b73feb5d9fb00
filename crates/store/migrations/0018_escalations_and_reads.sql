-- The open escalations, found by receiver and age without reading the receiver's other mail:
-- `status` shows them and the engine's tick looks at the oldest ones every second.
CREATE INDEX messages_open_escalations ON messages (receiver, id)
    WHERE type = 'ESCALATION' AND (state = 'pending' OR state = 'delivered');

-- Who read an announcement (a message to a topic or to everyone): each reading agent
-- acknowledges one for itself, once, and its inbox no longer shows it; the message stays open
-- for the others until its time to live ends. The projection of `message_reader_acked`.
CREATE TABLE message_reads (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    reader     TEXT    NOT NULL,
    acked_by   TEXT    NOT NULL,
    acked_at   INTEGER NOT NULL,
    PRIMARY KEY (message_id, reader)
) WITHOUT ROWID;
