-- Model providers' standing with the model gateway: paused after a used-up quota until a time,
-- and their lowered limit on requests under way. One row per provider the engine ever paused
-- or throttled; written with the `provider_*` events, read by `agentgrid status`.

CREATE TABLE providers (
    name         TEXT    PRIMARY KEY,
    -- NULL when not paused; a time already past is a pause that ended without the engine there.
    paused_until INTEGER,
    pause_reason TEXT,
    -- The execution whose request started the pause; its end is recorded there.
    paused_by    INTEGER REFERENCES executions (id),
    -- NULL when no burst of rate limits lowered it.
    concurrency  INTEGER CHECK (concurrency >= 1),
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
