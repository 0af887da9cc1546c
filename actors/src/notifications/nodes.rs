//! `node_lost`: every node follows the cluster's view and notes a node whose
//! heartbeat stopped without a clean stop; the holder of shard 0 reports it, with
//! the shard's fence in the event's write, so one node reports each loss under
//! normal operation (a loss noted but not reported within three lease TTLs, because
//! this node never held shard 0 meanwhile, is dropped: another node reported it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use palyra_storage::WriteOutcome;
use serde_json::json;

use super::model::{EventFilters, EventKind, event_op};
use super::state::Inner;
use crate::cluster::ClusterHandle;

pub(super) async fn watch(inner: Arc<Inner>, cluster: ClusterHandle) {
    if !cluster.is_clustered() {
        return;
    }
    let ttl = cluster.lease_ttl();
    let mut stopping = inner.stopping.subscribe();
    let mut tick = tokio::time::interval(ttl / 3);
    // Nodes seen alive, and losses noted but not reported yet.
    let mut alive: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut lost: Vec<(String, DateTime<Utc>, Instant)> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() || !inner.writer.is_alive() {
            return;
        }
        let Ok(status) = cluster.status().await else {
            continue;
        };
        for node in status.nodes {
            if node.node_id == cluster.node_id() {
                continue;
            }
            if node.alive {
                alive.insert(node.node_id.clone(), node.last_heartbeat_at);
                lost.retain(|(id, ..)| *id != node.node_id);
            } else if alive.remove(&node.node_id).is_some() && node.stopped_at.is_none() {
                lost.push((node.node_id, node.last_heartbeat_at, Instant::now()));
            }
        }
        lost.retain(|(.., noted)| noted.elapsed() < ttl * 3);
        if lost.is_empty() {
            continue;
        }
        let Some(fence) = cluster.claim_shard(0).and_then(|c| c.fence_op()) else {
            continue;
        };
        let mut ops: Vec<_> = lost
            .iter()
            .map(|(id, heartbeat, _)| {
                event_op(
                    EventKind::NodeLost,
                    format!("node {id}"),
                    json!({ "node_id": id, "last_heartbeat_at": heartbeat,
                            "message": format!("node {id} stopped beating at {heartbeat} without a clean stop") }),
                    EventFilters::default(),
                )
            })
            .collect();
        ops.push(fence);
        if let Ok(WriteOutcome::Applied { .. }) = inner.writer.submit_checked(ops).await {
            tracing::warn!(nodes = lost.len(), "node_lost raised");
            lost.clear();
            inner.wake.notify_one();
        }
    }
}
