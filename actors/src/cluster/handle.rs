//! [`ClusterHandle`]: the leases this node holds, read by every actor without a hop.
//!
//! A lease counts only until its local deadline: the instant its last renewal was
//! sent plus the TTL, less a margin, on the monotonic clock. So a node that was
//! paused (SIGSTOP) or cut off stops acting on its shards the moment that passes,
//! before it has talked to the database again; the database's fence check stays the
//! guarantee, this only keeps a stale node from trying.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use palyra_storage::{Fence, WriteOp};
use tokio::sync::watch;

use super::shard::{SHARDS, shard_of};

/// What entitles this node to act on a key's shard now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// One node (redb): everything is this node's, nothing to prove.
    Single,
    /// A lease, proven by the database at commit time through its fence.
    Leased(Fence),
}

impl Claim {
    /// The op a write adds so the database refuses it unless the lease still holds.
    pub fn fence_op(&self) -> Option<WriteOp> {
        match self {
            Claim::Single => None,
            Claim::Leased(fence) => Some(WriteOp::Fence(fence.clone())),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) epoch: u64,
    pub(super) valid_until: Instant,
}

/// A node as `GET /cluster` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub node_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub alive: bool,
    pub stopped_at: Option<chrono::DateTime<chrono::Utc>>,
    pub listen: Option<String>,
    /// Shards whose live lease names this node.
    pub shards: Vec<u32>,
}

/// A shard's lease as `GET /cluster` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ShardStatus {
    pub shard: u32,
    pub owner: Option<String>,
    pub epoch: u64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub live: bool,
}

/// `GET /cluster`: this node, every node and every lease.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// `single` (redb: one node) or `cluster` (PostgreSQL).
    pub mode: String,
    pub node_id: String,
    pub shards_total: u32,
    /// Shards this node holds by its own (local) reckoning.
    pub shards_held: Vec<u32>,
    pub lease_ttl_s: u64,
    pub nodes: Vec<NodeStatus>,
    pub leases: Vec<ShardStatus>,
}

pub(super) struct Inner {
    pub(super) node_id: String,
    pub(super) clustered: bool,
    pub(super) ttl: Duration,
    pub(super) late_fire_threshold: Duration,
    pub(super) held: RwLock<BTreeMap<u32, Held>>,
    /// Shard -> epoch, published whenever the set of held leases changes.
    pub(super) owned: watch::Sender<BTreeMap<u32, u64>>,
    /// Set by the lease actor once it runs; `status` and `leave` ask it.
    pub(super) status: RwLock<Option<actix::Recipient<Status>>>,
    pub(super) leave: RwLock<Option<actix::Recipient<Leave>>>,
    /// Nodes whose heartbeat was live at the last beat (this one included), with
    /// when each started (its current life).
    pub(super) live: RwLock<BTreeMap<String, chrono::DateTime<chrono::Utc>>>,
    /// Set at shutdown: no lease is taken or counted any more.
    pub(super) leaving: std::sync::atomic::AtomicBool,
}

/// Asks the lease actor for [`ClusterStatus`].
#[derive(actix::Message)]
#[rtype(result = "Result<ClusterStatus, crate::error::ActorError>")]
pub(super) struct Status;

/// Tells the lease actor to give every lease up and stop beating.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(super) struct Leave;

/// Cloneable; shared by every actor of this node.
#[derive(Clone)]
pub struct ClusterHandle {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("node_id", &self.inner.node_id)
            .field("clustered", &self.inner.clustered)
            .finish_non_exhaustive()
    }
}

impl ClusterHandle {
    pub(super) fn new(
        node_id: String,
        clustered: bool,
        ttl: Duration,
        late_fire_threshold: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id,
                clustered,
                ttl,
                late_fire_threshold,
                held: RwLock::new(BTreeMap::new()),
                owned: watch::channel(BTreeMap::new()).0,
                status: RwLock::new(None),
                leave: RwLock::new(None),
                leaving: std::sync::atomic::AtomicBool::new(false),
                live: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// One node on redb: every key is this node's.
    pub fn single(node_id: impl Into<String>) -> Self {
        Self::new(
            node_id.into(),
            false,
            Duration::from_secs(15),
            Duration::ZERO,
        )
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// True when this node shares its database with others (PostgreSQL).
    pub fn is_clustered(&self) -> bool {
        self.inner.clustered
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// How late a firing found after a takeover may still run.
    pub fn late_fire_threshold(&self) -> Duration {
        self.inner.late_fire_threshold
    }

    /// What lets this node act on `key`'s shard now; `None`: another node's work.
    pub fn claim(&self, key: &[u8]) -> Option<Claim> {
        if !self.inner.clustered {
            return Some(Claim::Single);
        }
        self.claim_shard(shard_of(key))
    }

    /// [`Self::claim`] for a shard.
    pub fn claim_shard(&self, shard: u32) -> Option<Claim> {
        if !self.inner.clustered {
            return Some(Claim::Single);
        }
        let held = self.inner.held.read().ok()?;
        let lease = held.get(&shard)?;
        (lease.valid_until > Instant::now()).then(|| {
            Claim::Leased(Fence {
                shard,
                node_id: self.inner.node_id.clone(),
                epoch: lease.epoch,
            })
        })
    }

    /// True if `node_id` is this node or beat within the TTL at the last look; on one
    /// node, only this node is alive.
    pub fn is_alive(&self, node_id: &str) -> bool {
        node_id == self.inner.node_id
            || self
                .inner
                .live
                .read()
                .is_ok_and(|live| live.contains_key(node_id))
    }

    /// When a live node started its current life (a node restarted on its data dir
    /// keeps its id; what it did before that instant is dead). `None`: not alive.
    pub fn started_at(&self, node_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.inner.live.read().ok()?.get(node_id).copied()
    }

    /// True once the lease actor has seen the cluster at least once (who is alive is
    /// known), always on one node.
    pub fn has_view(&self) -> bool {
        !self.inner.clustered || self.inner.live.read().is_ok_and(|live| !live.is_empty())
    }

    /// True when this node may act on `key`'s shard now.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.claim(key).is_some()
    }

    /// Follows the shards this node holds (shard -> epoch); every shard, at once and
    /// for good, on one node.
    pub fn watch_owned(&self) -> watch::Receiver<BTreeMap<u32, u64>> {
        if !self.inner.clustered {
            let all = (0..SHARDS).map(|s| (s, 0)).collect();
            return watch::channel(all).1;
        }
        self.inner.owned.subscribe()
    }

    /// Nodes, leases and what this node holds; on one node, just this node.
    pub async fn status(&self) -> Result<ClusterStatus, crate::error::ActorError> {
        let recipient = self.inner.status.read().ok().and_then(|r| r.clone());
        match recipient {
            Some(r) if self.inner.clustered => r
                .send(Status)
                .await
                .map_err(|_| crate::error::ActorError::Stopped("cluster"))?,
            _ => Ok(ClusterStatus {
                mode: if self.inner.clustered {
                    "cluster".into()
                } else {
                    "single".into()
                },
                node_id: self.inner.node_id.clone(),
                shards_total: SHARDS,
                shards_held: if self.inner.clustered {
                    Vec::new()
                } else {
                    (0..SHARDS).collect()
                },
                lease_ttl_s: self.inner.ttl.as_secs(),
                nodes: Vec::new(),
                leases: Vec::new(),
            }),
        }
    }
}
