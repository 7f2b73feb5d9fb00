-- Messages: durable, typed mail between agents, their coordinators and people. Each message is
-- an entity of the log of its own (`message`), so the events table is rebuilt to accept the
-- new kind (SQLite cannot change a CHECK in place); rows, sequence numbers and the uniqueness
-- of (entity, entity_id, entity_seq) are kept as they were.
CREATE TABLE events_new (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    entity     TEXT    NOT NULL
               CHECK (entity = 'task' OR entity = 'execution' OR entity = 'message'),
    entity_id  INTEGER NOT NULL,
    entity_seq INTEGER NOT NULL CHECK (entity_seq >= 1),
    actor      TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    data       TEXT    NOT NULL CHECK (json_valid(data)),
    UNIQUE (entity, entity_id, entity_seq)
);
INSERT INTO events_new (seq, at, entity, entity_id, entity_seq, actor, type, data)
    SELECT seq, at, entity, entity_id, entity_seq, actor, type, data FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

-- The projection of the messages' events, written in the transaction of each event.
-- `receiver` is the envelope's receiver as written (`agent:NAME`, `execution:7`, `broadcast`);
-- `receiver_execution` repeats the id of an execution receiver for the inbox's index.
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    sender             TEXT    NOT NULL,
    sender_execution   INTEGER REFERENCES executions (id),
    task_id            INTEGER REFERENCES tasks (id),
    receiver           TEXT    NOT NULL,
    receiver_execution INTEGER REFERENCES executions (id),
    type               TEXT    NOT NULL,
    payload            TEXT    NOT NULL CHECK (json_valid(payload)),
    correlation        TEXT,
    priority           INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER,
    state              TEXT    NOT NULL CHECK (state = 'pending' OR state = 'delivered'
                                               OR state = 'acked' OR state = 'dead'),
    deliveries         INTEGER NOT NULL DEFAULT 0,
    delivered_to       INTEGER REFERENCES executions (id),
    delivered_at       INTEGER,
    acked_at           INTEGER,
    acked_by           TEXT,
    dead_reason        TEXT,
    coalesced          INTEGER NOT NULL DEFAULT 0,
    fingerprint        TEXT,
    updated_at         INTEGER NOT NULL
);

-- Open messages (pending or delivered) by receiver, for inboxes and sweeps; one open alert per
-- fingerprint, held by the database as well as by the rules, so that identical alerts sent
-- by two processes at once cannot both open; the counts of an execution's messages.
CREATE INDEX messages_open_by_receiver ON messages (receiver, priority, id)
    WHERE state = 'pending' OR state = 'delivered';
CREATE INDEX messages_open_by_execution ON messages (receiver_execution)
    WHERE receiver_execution IS NOT NULL AND (state = 'pending' OR state = 'delivered');
CREATE INDEX messages_open_expiring ON messages (expires_at)
    WHERE expires_at IS NOT NULL AND (state = 'pending' OR state = 'delivered');
CREATE UNIQUE INDEX messages_one_open_alert ON messages (fingerprint)
    WHERE fingerprint IS NOT NULL AND (state = 'pending' OR state = 'delivered');
CREATE INDEX messages_by_sender ON messages (sender_execution, state)
    WHERE sender_execution IS NOT NULL;
CREATE INDEX messages_by_state ON messages (state, id);
