-- Version 3: operators and their API tokens.
-- Both are read by every node on every check (a disabled operator or a revoked token
-- is refused by all nodes at once), and announced on the change feed like sessions.

CREATE TABLE operators (
    key bytea PRIMARY KEY,
    operator_id text NOT NULL,
    role text,
    disabled boolean,
    value bytea NOT NULL
);

CREATE TABLE api_tokens (
    key bytea PRIMARY KEY,
    token_id text NOT NULL,
    operator_id text,
    role text,
    expires_at_ms bigint,
    value bytea NOT NULL
);
CREATE INDEX api_tokens_operator_id ON api_tokens (operator_id);

CREATE TRIGGER operators_changes AFTER INSERT OR UPDATE OR DELETE ON operators
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER api_tokens_changes AFTER INSERT OR UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
