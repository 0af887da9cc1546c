//! `[cluster]`: this node among the nodes sharing one PostgreSQL database.

use serde::Deserialize;

/// Several nodes on one PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Empty: generated at start.
    pub node_id: String,
    pub lease_ttl_s: u64,
    pub late_fire_threshold_s: u64,
    pub session_cache_ms: u64,
}

impl ClusterSettings {
    /// The configured id, or a new one: the host name and six random hex digits.
    pub fn resolve_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(48)
            .collect();
        let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
        if host.is_empty() {
            format!("node-{suffix:06x}")
        } else {
            format!("{host}-{suffix:06x}")
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let id_ok = self.node_id.len() <= 64
            && self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err("cluster.node_id must be 1-64 of [A-Za-z0-9._-] (or empty)".into());
        }
        if !(3..=600).contains(&self.lease_ttl_s) {
            return Err("cluster.lease_ttl_s must be 3 to 600".into());
        }
        if self.session_cache_ms > 1000 {
            return Err(
                "cluster.session_cache_ms must be at most 1000 (revocation within 1 s)".into(),
            );
        }
        Ok(())
    }
}
