-- Version 5: the usage rollup (tokens per 15-minute UTC bucket and per agent,
-- objective, profile, provider and model).
-- Rows only grow, by an additive upsert (`input_tokens = usage_rollup.input_tokens +
-- EXCLUDED.input_tokens`), so nodes finishing runs at once never lose an increment.
-- No change-feed trigger: no actor keeps these rows in memory; they are read on request.

CREATE TABLE usage_rollup (
    key bytea PRIMARY KEY,
    bucket_start timestamptz,
    agent_id text,
    objective_id text,
    profile_id text,
    provider text,
    model text,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    calls bigint NOT NULL DEFAULT 0,
    value bytea NOT NULL
);
CREATE INDEX usage_rollup_bucket_start ON usage_rollup (bucket_start);
