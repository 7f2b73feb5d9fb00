-- Model usage: one row per request an agent made through the model gateway.
--
-- The task, its tree's root and the agent are copied from the execution when the row is written,
-- so the sums per execution, per task tree and per agent and day read one table through one
-- index each. Costs are integer millionths of a dollar.

CREATE TABLE model_usage (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id  INTEGER NOT NULL REFERENCES executions (id),
    task_id       INTEGER NOT NULL REFERENCES tasks (id),
    root          INTEGER NOT NULL,
    agent         TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL CHECK (output_tokens >= 0),
    cached_tokens INTEGER NOT NULL CHECK (cached_tokens >= 0 AND cached_tokens <= input_tokens),
    cost_micros   INTEGER NOT NULL CHECK (cost_micros >= 0)
);

CREATE INDEX model_usage_execution ON model_usage (execution_id);
CREATE INDEX model_usage_root ON model_usage (root);
CREATE INDEX model_usage_agent_at ON model_usage (agent, at);
