-- Version 2: several palyrad nodes on one database.

-- Membership: every node upserts its row on an interval; a node whose heartbeat is
-- older than the lease TTL is gone. Times are the server's clock, so nodes with
-- skewed clocks still agree.
CREATE TABLE cluster_nodes (
    node_id text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stopped_at timestamptz,
    listen text
);

-- One row per shard. `epoch` grows by one at every acquisition: it is the fencing
-- token a node's writes carry (storage's `WriteOp::Fence`), so a node that lost a
-- lease cannot write as its owner even before it notices.
CREATE TABLE cluster_leases (
    shard integer PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    acquired_at timestamptz
);
-- Every shard's row exists from the start, so taking a lease is one conditional UPDATE
-- (palyra-actors' cluster::SHARDS is 64).
INSERT INTO cluster_leases (shard) SELECT generate_series(0, 63);

-- A scheduled instant of an objective has at most one run row, whichever node claims
-- it: a second claim's insert is refused (the writer's insert-if-absent is ON CONFLICT
-- DO NOTHING over every unique index). Manual runs have no scheduled instant.
DROP INDEX runs_objective_scheduled_for;
-- Before version 2 a catch-up run shared its instant with that instant's `missed`
-- record; the catch-up keeps the instant in its record, not in the constrained column.
UPDATE runs r SET scheduled_for = NULL
 WHERE r.trigger = 'catch_up' AND EXISTS (
     SELECT 1 FROM runs m
      WHERE m.objective_id = r.objective_id AND m.scheduled_for = r.scheduled_for
        AND m.seq <> r.seq);
CREATE UNIQUE INDEX runs_one_per_firing ON runs (objective_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;

-- Change notifications: every change to a table nodes keep in memory is announced on
-- the channel `palyra_changes` as "<table> <node id of the writer> <key as hex>", sent
-- at commit. Nodes ignore their own and reread the row; a node that lost its listening
-- connection rereads everything instead (it may have missed some).
CREATE FUNCTION palyra_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bytea;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.key;
    ELSE
        changed := NEW.key;
    END IF;
    PERFORM pg_notify('palyra_changes', TG_TABLE_NAME || ' '
        || coalesce(nullif(current_setting('palyra.node_id', true), ''), '-') || ' '
        || encode(changed, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_changes AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER vault_changes AFTER INSERT OR UPDATE OR DELETE ON vault
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER vault_meta_changes AFTER INSERT OR UPDATE OR DELETE ON vault_meta
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER auth_profiles_changes AFTER INSERT OR UPDATE OR DELETE ON auth_profiles
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
-- Sign-in attempts: a callback may reach another node than the one the sign-in began on.
CREATE TRIGGER oauth_attempts_changes AFTER INSERT OR UPDATE OR DELETE ON oauth_attempts
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER auth_defaults_changes AFTER INSERT OR UPDATE OR DELETE ON auth_defaults
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER agents_changes AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
CREATE TRIGGER objectives_changes AFTER INSERT OR UPDATE OR DELETE ON objectives
    FOR EACH ROW EXECUTE FUNCTION palyra_notify_change();
