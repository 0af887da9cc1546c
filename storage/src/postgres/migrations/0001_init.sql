-- Version 1: one table per storage::Table.
-- Every table keeps the exact key and value bytes (`key`, `value`), so reads return
-- what was written, compare-and-set compares bytes, and ORDER BY key is the byte order
-- redb iterates in. Next to them, typed columns, filled by storage/src/postgres/tables.rs
-- from the key and the record, hold everything that is queried or constrained.
-- Record bodies are kept as bytea rather than JSONB: JSONB rewrites the text (key order,
-- spacing) and cannot hold \u0000, which would break byte-exact compare-and-set and
-- byte-identical copies between backends; `convert_from(value, 'UTF8')::jsonb` reads one.

CREATE TABLE sessions (
    key bytea PRIMARY KEY,
    principal text,
    issued_at_ms bigint,
    expires_at_ms bigint,
    last_seen_ms bigint,
    value bytea NOT NULL
);
CREATE INDEX sessions_expires_at_ms ON sessions (expires_at_ms);

CREATE TABLE handoffs (
    key bytea PRIMARY KEY,
    principal text,
    expires_at_ms bigint,
    value bytea NOT NULL
);
CREATE INDEX handoffs_expires_at_ms ON handoffs (expires_at_ms);

CREATE TABLE vault (
    key bytea PRIMARY KEY,
    vault_ref text NOT NULL,
    key_id text,
    value bytea NOT NULL
);

CREATE TABLE vault_meta (
    key bytea PRIMARY KEY,
    name text NOT NULL,
    key_id text,
    value bytea NOT NULL
);

CREATE TABLE auth_profiles (
    key bytea PRIMARY KEY,
    profile_id text NOT NULL,
    provider text,
    profile_name text,
    updated_at timestamptz,
    value bytea NOT NULL
);
CREATE INDEX auth_profiles_provider ON auth_profiles (provider);

-- The value is the default profile's id (UTF-8, not a record envelope).
CREATE TABLE auth_defaults (
    key bytea PRIMARY KEY,
    default_key text NOT NULL,
    provider text,
    profile_id text,
    value bytea NOT NULL
);
CREATE INDEX auth_defaults_profile_id ON auth_defaults (profile_id);

CREATE TABLE oauth_attempts (
    key bytea PRIMARY KEY,
    attempt_id text NOT NULL,
    provider text,
    profile_id text,
    state_digest text,
    status text,
    expires_at_ms bigint,
    value bytea NOT NULL
);
CREATE INDEX oauth_attempts_expires_at_ms ON oauth_attempts (expires_at_ms);
CREATE INDEX oauth_attempts_state_digest ON oauth_attempts (state_digest);

CREATE TABLE agents (
    key bytea PRIMARY KEY,
    agent_id text NOT NULL,
    default_model_profile text,
    updated_at timestamptz,
    value bytea NOT NULL
);

CREATE TABLE objectives (
    key bytea PRIMARY KEY,
    objective_id text NOT NULL,
    agent_id text,
    kind text,
    state text,
    next_run_at timestamptz,
    run_seq bigint,
    value bytea NOT NULL
);
CREATE INDEX objectives_state_next_run_at ON objectives (state, next_run_at);
CREATE INDEX objectives_agent_id ON objectives (agent_id);

-- The key is objective_id, a NUL byte and seq (u64 big-endian): (objective_id, seq)
-- identifies the same row, so both are unique.
CREATE TABLE runs (
    key bytea NOT NULL UNIQUE,
    objective_id text NOT NULL,
    seq bigint NOT NULL,
    run_id text,
    trigger text,
    status text,
    scheduled_for timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    value bytea NOT NULL,
    PRIMARY KEY (objective_id, seq)
);
CREATE INDEX runs_objective_scheduled_for ON runs (objective_id, scheduled_for);
CREATE INDEX runs_status ON runs (status);

-- The key is at_ms (i64 big-endian) and seq (u64 big-endian).
CREATE TABLE audit (
    key bytea PRIMARY KEY,
    at_ms bigint NOT NULL,
    seq bigint NOT NULL,
    kind text,
    actor text,
    outcome text,
    value bytea NOT NULL
);
CREATE INDEX audit_at_ms ON audit (at_ms);
CREATE INDEX audit_kind_at_ms ON audit (kind, at_ms);
