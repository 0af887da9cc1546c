//! The cluster: several palyrad nodes on one PostgreSQL database.
//!
//! - `shard.rs`: which of the [`SHARDS`] shards a key belongs to.
//! - `handle.rs`: [`ClusterHandle`], the leases this node holds as every actor reads
//!   them (no actor hop), and the [`Claim`] a write carries.
//! - `actor.rs`: the lease actor: heartbeats, renewals, takeovers and rebalancing.
//!
//! Leases only spread the work; what must hold across nodes is enforced by the
//! database (see ARCHITECTURE.md, "Several nodes").

mod actor;
mod handle;
mod shard;

pub use actor::ClusterPolicy;
pub use handle::{Claim, ClusterHandle, ClusterStatus, NodeStatus, ShardStatus};
pub use shard::{SHARDS, shard_of};
