//! The lease actor: this node's heartbeat and its shard leases.
//!
//! Every third of the TTL it beats, renews what it holds, reads who is alive and
//! takes or gives up leases so each live node holds its fair share (the shard count
//! over the live nodes, rounded up). A free or expired lease is taken with a new
//! epoch; one this node holds beyond its share is given up after it stopped acting on
//! it. At shutdown it gives everything up, so the others take over at their next beat
//! instead of after a TTL.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use palyra_storage::{ClusterView, Storage};

use super::handle::{ClusterHandle, ClusterStatus, Held, Leave, NodeStatus, ShardStatus, Status};
use super::shard::SHARDS;
use crate::error::ActorError;

/// Settings of the lease actor.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    pub node_id: String,
    pub lease_ttl: Duration,
    pub late_fire_threshold: Duration,
    /// The admin API address, shown to the other nodes.
    pub listen: String,
}

/// A lease counts locally until this fraction of its TTL after its renewal was sent:
/// a margin for the time the renewal took to reach the server and for clock drift.
const LOCAL_SHARE: f64 = 0.8;

struct ClusterActor {
    handle: ClusterHandle,
    storage: Storage,
    listen: String,
    beats: u64,
    busy: bool,
    last_view: Option<ClusterView>,
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Tick);
        ctx.run_interval(self.handle.inner.ttl / 3, |_, ctx| ctx.notify(Tick));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

impl ClusterHandle {
    /// Starts the lease actor for a node on a shared database (on redb, use
    /// [`ClusterHandle::single`]). It takes its first leases at once; the handle
    /// holds none until then.
    pub fn start(storage: Storage, policy: ClusterPolicy) -> Self {
        let handle = ClusterHandle::new(
            policy.node_id,
            storage.is_shared(),
            policy.lease_ttl,
            policy.late_fire_threshold,
        );
        if !handle.is_clustered() {
            return handle;
        }
        let addr = ClusterActor {
            handle: handle.clone(),
            storage,
            listen: policy.listen,
            beats: 0,
            busy: false,
            last_view: None,
        }
        .start();
        if let Ok(mut status) = handle.inner.status.write() {
            *status = Some(addr.clone().recipient());
        }
        if let Ok(mut leave) = handle.inner.leave.write() {
            *leave = Some(addr.recipient());
        }
        handle
    }

    /// Stops acting on every shard and gives the leases up (shutdown), so the other
    /// nodes take over at their next beat.
    pub async fn leave(&self) {
        let recipient = self.inner.leave.read().ok().and_then(|l| l.clone());
        match recipient {
            Some(r) => {
                let _ = r.send(Leave).await;
            }
            None => {
                self.drop_all();
            }
        }
    }

    /// Forgets every lease locally and publishes it; returns what was held.
    fn drop_all(&self) -> Vec<(u32, u64)> {
        let held: Vec<(u32, u64)> = match self.inner.held.write() {
            Ok(mut held) => std::mem::take(&mut *held)
                .into_iter()
                .map(|(s, h)| (s, h.epoch))
                .collect(),
            Err(_) => Vec::new(),
        };
        self.publish();
        held
    }

    /// Publishes the shards held now, if they changed.
    fn publish(&self) {
        let now = Instant::now();
        let owned: BTreeMap<u32, u64> = self
            .inner
            .held
            .read()
            .map(|held| {
                held.iter()
                    .filter(|(_, h)| h.valid_until > now)
                    .map(|(s, h)| (*s, h.epoch))
                    .collect()
            })
            .unwrap_or_default();
        self.inner.owned.send_if_modified(|current| {
            if *current == owned {
                false
            } else {
                *current = owned;
                true
            }
        });
    }
}

impl Handler<Tick> for ClusterActor {
    type Result = ();

    fn handle(&mut self, _msg: Tick, ctx: &mut Self::Context) {
        // Leases past their local deadline stop counting now, even if the database is
        // away and this tick cannot finish.
        self.handle.publish();
        if self.busy || self.handle.inner.leaving.load(Ordering::SeqCst) {
            return;
        }
        self.busy = true;
        let handle = self.handle.clone();
        let storage = self.storage.clone();
        let listen = self.listen.clone();
        let first = self.beats == 0;
        ctx.spawn(
            async move { tick(&handle, &storage, &listen, first).await }
                .into_actor(self)
                .map(|result, act, _| {
                    // After a leave no beat may run again (it would clear stopped_at).
                    act.busy = act.handle.inner.leaving.load(Ordering::SeqCst);
                    match result {
                        Ok(view) => {
                            act.beats += 1;
                            act.last_view = Some(view);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cluster heartbeat failed; leases lapse unless renewed in time");
                        }
                    }
                    act.handle.publish();
                }),
        );
    }
}

/// One beat: heartbeat, renew, read the view, rebalance.
async fn tick(
    handle: &ClusterHandle,
    storage: &Storage,
    listen: &str,
    first: bool,
) -> Result<ClusterView, ActorError> {
    let ttl = handle.inner.ttl;
    let node = handle.inner.node_id.clone();
    let local_ttl = ttl.mul_f64(LOCAL_SHARE);
    storage.cluster_heartbeat(&node, listen, first).await?;
    let held: Vec<(u32, u64)> = handle
        .inner
        .held
        .read()
        .map(|h| h.iter().map(|(s, h)| (*s, h.epoch)).collect())
        .unwrap_or_default();
    if !held.is_empty() {
        let sent = Instant::now();
        let renewed = storage.lease_renew(&node, &held, ttl).await?;
        if let Ok(mut map) = handle.inner.held.write() {
            map.retain(|shard, lease| {
                if renewed.contains(shard) {
                    lease.valid_until = sent + local_ttl;
                    true
                } else {
                    tracing::warn!(shard, epoch = lease.epoch, "lease lost");
                    false
                }
            });
        }
        handle.publish();
    }
    let view = storage.cluster_view(ttl).await?;
    if let Ok(mut live) = handle.inner.live.write() {
        *live = view
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| (n.node_id.clone(), n.started_at))
            .collect();
    }
    let live = view.nodes.iter().filter(|n| n.alive).count().max(1) as u32;
    let share = SHARDS.div_ceil(live) as usize;
    let mine: Vec<(u32, u64)> = handle
        .inner
        .held
        .read()
        .map(|h| h.iter().map(|(s, h)| (*s, h.epoch)).collect())
        .unwrap_or_default();
    if mine.len() > share {
        // Give up the excess: stop acting first, then free the rows.
        let excess: Vec<(u32, u64)> = mine[share..].to_vec();
        if let Ok(mut map) = handle.inner.held.write() {
            for (shard, _) in &excess {
                map.remove(shard);
            }
        }
        handle.publish();
        storage.lease_release(&node, &excess).await?;
        tracing::info!(
            released = excess.len(),
            share,
            live,
            "shards rebalanced to a joining node"
        );
    } else if mine.len() < share {
        let taken: std::collections::BTreeSet<u32> = view
            .leases
            .iter()
            // A live lease in this node's name that it does not hold is its previous
            // life's (restarted on its data dir): taken back at once, with a new epoch.
            .filter(|l| l.live && l.owner.as_deref() != Some(node.as_str()))
            .map(|l| l.shard)
            .collect();
        let mut count = mine.len();
        let mut acquired = Vec::new();
        let held: std::collections::BTreeSet<u32> = mine.iter().map(|(s, _)| *s).collect();
        // Shards this node holds are renewed above, never taken again: a new epoch
        // would fence out its own writes in flight and count twice towards its share.
        for shard in (0..SHARDS).filter(|s| !taken.contains(s) && !held.contains(s)) {
            if count >= share {
                break;
            }
            if handle.inner.leaving.load(Ordering::SeqCst) {
                break;
            }
            let sent = Instant::now();
            if let Some(epoch) = storage.lease_acquire(shard, &node, ttl).await? {
                if handle.inner.leaving.load(Ordering::SeqCst) {
                    storage.lease_release(&node, &[(shard, epoch)]).await?;
                    break;
                }
                if let Ok(mut map) = handle.inner.held.write() {
                    map.insert(
                        shard,
                        Held {
                            epoch,
                            valid_until: sent + local_ttl,
                        },
                    );
                }
                count += 1;
                acquired.push((shard, epoch));
                tracing::debug!(shard, epoch, "lease acquired");
            }
        }
        if !acquired.is_empty() {
            tracing::info!(
                taken = acquired.len(),
                held = count,
                share,
                live,
                "leases acquired"
            );
        }
        handle.publish();
    }
    Ok(view)
}

impl Handler<Status> for ClusterActor {
    type Result = ResponseActFuture<Self, Result<ClusterStatus, ActorError>>;

    fn handle(&mut self, _msg: Status, _ctx: &mut Self::Context) -> Self::Result {
        let storage = self.storage.clone();
        let handle = self.handle.clone();
        Box::pin(
            async move {
                let view = storage.cluster_view(handle.inner.ttl).await?;
                let held: Vec<u32> = handle.watch_owned().borrow().keys().copied().collect();
                let nodes = view
                    .nodes
                    .iter()
                    .map(|n| NodeStatus {
                        node_id: n.node_id.clone(),
                        started_at: n.started_at,
                        last_heartbeat_at: n.heartbeat_at,
                        alive: n.alive,
                        stopped_at: n.stopped_at,
                        listen: n.listen.clone(),
                        shards: view
                            .leases
                            .iter()
                            .filter(|l| l.live && l.owner.as_deref() == Some(&n.node_id))
                            .map(|l| l.shard)
                            .collect(),
                    })
                    .collect();
                let leases = view
                    .leases
                    .iter()
                    .map(|l| ShardStatus {
                        shard: l.shard,
                        owner: l.owner.clone(),
                        epoch: l.epoch,
                        expires_at: l.expires_at,
                        live: l.live,
                    })
                    .collect();
                Ok(ClusterStatus {
                    mode: "cluster".into(),
                    node_id: handle.inner.node_id.clone(),
                    shards_total: SHARDS,
                    shards_held: held,
                    lease_ttl_s: handle.inner.ttl.as_secs(),
                    nodes,
                    leases,
                })
            }
            .into_actor(self),
        )
    }
}

impl Handler<Leave> for ClusterActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Leave, _ctx: &mut Self::Context) -> Self::Result {
        // No more beats: a lease given up must not be taken again.
        self.busy = true;
        self.handle.inner.leaving.store(true, Ordering::SeqCst);
        let held = self.handle.drop_all();
        let storage = self.storage.clone();
        let node = self.handle.inner.node_id.clone();
        Box::pin(
            async move {
                let bound = Duration::from_secs(3);
                let _ = tokio::time::timeout(bound, async {
                    if let Err(e) = storage.lease_release(&node, &held).await {
                        tracing::warn!(error = %e, "giving up leases at shutdown failed; they lapse after the TTL");
                    }
                    let _ = storage.cluster_leave(&node).await;
                })
                .await;
            }
            .into_actor(self),
        )
    }
}
