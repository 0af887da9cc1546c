//! The cluster's rows in PostgreSQL: node heartbeats and shard leases.
//!
//! Every statement here is one autocommit statement on the read pool, timed by the
//! server's clock (`now()`), so nodes whose clocks disagree still agree on who holds a
//! lease. A lease is taken only when it is free or expired, and every acquisition
//! bumps its epoch: the fencing token ([`crate::Fence`]) a node's writes carry and the
//! database checks. redb has no cluster: every call answers
//! [`StorageError::Unsupported`](crate::StorageError).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::StorageError;
use crate::storage::Storage;

/// A node as its heartbeat row shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Set when the node stopped cleanly (it released its leases).
    pub stopped_at: Option<DateTime<Utc>>,
    /// The admin API address the node listens on.
    pub listen: Option<String>,
    /// Heartbeat within the lease TTL and not stopped, by the server's clock.
    pub alive: bool,
}

/// A shard's lease row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: u32,
    pub owner: Option<String>,
    pub epoch: u64,
    pub expires_at: DateTime<Utc>,
    /// Unexpired by the server's clock.
    pub live: bool,
}

/// Nodes and leases read together, with the server's time.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub nodes: Vec<NodeRow>,
    pub leases: Vec<LeaseRow>,
    pub now: DateTime<Utc>,
}

fn ttl_param(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

fn unsupported() -> StorageError {
    StorageError::Config("a cluster needs the PostgreSQL backend".into())
}

impl Storage {
    /// True when several nodes may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.postgres().is_some()
    }

    /// Records that `node_id` is alive now (inserting its row at its first beat).
    pub async fn cluster_heartbeat(
        &self,
        node_id: &str,
        listen: &str,
        first: bool,
    ) -> Result<(), StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        let sql = if first {
            "INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at, listen) \
             VALUES ($1, now(), now(), $2) ON CONFLICT (node_id) DO UPDATE \
             SET started_at = now(), heartbeat_at = now(), stopped_at = NULL, listen = $2"
        } else {
            "INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at, listen) \
             VALUES ($1, now(), now(), $2) ON CONFLICT (node_id) DO UPDATE \
             SET heartbeat_at = now(), stopped_at = NULL, listen = $2"
        };
        pg.query(sql, &[&node_id, &listen]).await.map(|_| ())
    }

    /// Every node and lease, and the server's time; `ttl` decides who is alive.
    pub async fn cluster_view(&self, ttl: Duration) -> Result<ClusterView, StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        let ttl = ttl_param(ttl);
        let nodes = pg
            .query(
                "SELECT node_id, started_at, heartbeat_at, stopped_at, listen, \
                 stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1) \
                 FROM cluster_nodes ORDER BY node_id",
                &[&ttl],
            )
            .await?
            .into_iter()
            .map(|r| NodeRow {
                node_id: r.get(0),
                started_at: r.try_get(1).unwrap_or(DateTime::UNIX_EPOCH),
                heartbeat_at: r.try_get(2).unwrap_or(DateTime::UNIX_EPOCH),
                stopped_at: r.try_get(3).ok().flatten(),
                listen: r.get(4),
                alive: r.get(5),
            })
            .collect();
        let leases = pg
            .query(
                "SELECT shard, owner, epoch, expires_at, expires_at > now() \
                 FROM cluster_leases ORDER BY shard",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| LeaseRow {
                shard: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                owner: r.get(1),
                epoch: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                // Never a panic on a value chrono cannot hold (an infinite timestamp).
                expires_at: r.try_get(3).unwrap_or(DateTime::UNIX_EPOCH),
                live: r.get(4),
            })
            .collect();
        let now: DateTime<Utc> = pg.query("SELECT now()", &[]).await?[0].get(0);
        Ok(ClusterView { nodes, leases, now })
    }

    /// Takes `shard`'s lease for `node_id` if it is free, expired or already this
    /// node's (a node restarted on its data dir, whose previous life is dead): the new
    /// epoch, which fences out anything written under the old one, or `None` when
    /// another node holds it.
    pub async fn lease_acquire(
        &self,
        shard: u32,
        node_id: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        let shard = i32::try_from(shard).map_err(|_| unsupported())?;
        // SKIP LOCKED: a lease row a writer of the previous owner still holds locked
        // (its fence, in a transaction not yet committed) is not taken until that
        // transaction ends, and waiting for it must not stall this node's beat.
        let found = pg
            .query(
                "WITH free AS (SELECT shard FROM cluster_leases \
                 WHERE shard = $1 AND (expires_at <= now() OR owner = $2) \
                 FOR UPDATE SKIP LOCKED) \
                 UPDATE cluster_leases l SET owner = $2, epoch = l.epoch + 1, \
                 expires_at = now() + make_interval(secs => $3), acquired_at = now() \
                 FROM free WHERE l.shard = free.shard RETURNING l.epoch",
                &[&shard, &node_id, &ttl_param(ttl)],
            )
            .await?;
        Ok(found
            .first()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// Extends the unexpired leases `node_id` holds at the given epochs by `ttl`;
    /// answers the shards renewed (a lease missing from the answer is lost).
    ///
    /// One statement (one transaction) per lease: a writer's group holds its fences'
    /// lease rows `FOR SHARE` until it commits (taken first, in the order they first
    /// appear in the group), so one
    /// UPDATE over every lease row could hold one row while waiting for another that
    /// the group holds, while the group waits for the first: a deadlock, which the
    /// server broke by failing the beat, and the leases lapsed (seen in scheduler-10k
    /// on PostgreSQL). Renewed one at a time, a beat only ever waits for a group.
    pub async fn lease_renew(
        &self,
        node_id: &str,
        held: &[(u32, u64)],
        ttl: Duration,
    ) -> Result<Vec<u32>, StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        let ttl = ttl_param(ttl);
        let mut renewed = Vec::with_capacity(held.len());
        for &(shard, epoch) in held {
            let (Ok(shard_param), Ok(epoch_param)) = (i32::try_from(shard), i64::try_from(epoch))
            else {
                continue;
            };
            let found = pg
                .query(
                    "UPDATE cluster_leases SET expires_at = now() + make_interval(secs => $4) \
                     WHERE shard = $2 AND epoch = $3 AND owner = $1 AND expires_at > now() \
                     RETURNING shard",
                    &[&node_id, &shard_param, &epoch_param, &ttl],
                )
                .await?;
            if !found.is_empty() {
                renewed.push(shard);
            }
        }
        Ok(renewed)
    }

    /// Gives up leases at once (expired now), so another node may take them; only
    /// those `node_id` still holds at the given epochs. One statement per lease, as
    /// renewals are: one UPDATE over several rows deadlocked with this node's writer
    /// group holding some of them `FOR SHARE` for its fences (seen with renewals).
    pub async fn lease_release(
        &self,
        node_id: &str,
        held: &[(u32, u64)],
    ) -> Result<(), StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        for &(shard, epoch) in held {
            let (Ok(shard), Ok(epoch)) = (i32::try_from(shard), i64::try_from(epoch)) else {
                continue;
            };
            pg.query(
                "UPDATE cluster_leases SET expires_at = now() \
                 WHERE shard = $2 AND epoch = $3 AND owner = $1",
                &[&node_id, &shard, &epoch],
            )
            .await?;
        }
        Ok(())
    }

    /// Marks `node_id` stopped (after it released its leases).
    pub async fn cluster_leave(&self, node_id: &str) -> Result<(), StorageError> {
        let pg = self.postgres().ok_or_else(unsupported)?;
        pg.query(
            "UPDATE cluster_nodes SET stopped_at = now() WHERE node_id = $1",
            &[&node_id],
        )
        .await
        .map(|_| ())
    }
}
