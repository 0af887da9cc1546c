//! The checks of the server section's connection limits
//! (`server.max_connections_per_peer`, `server.max_connections_per_loopback_peer`,
//! `server.loopback_reserved_connections`, `server.body_read_timeout_s`).

use super::ServerSettings;
use crate::serve::MAX_CONNECTIONS;

/// Refuses limits that would lock every peer out, or leave remote peers no slot.
pub(super) fn validate(server: &ServerSettings) -> Result<(), String> {
    for (name, value) in [
        ("max_connections_per_peer", server.max_connections_per_peer),
        (
            "max_connections_per_loopback_peer",
            server.max_connections_per_loopback_peer,
        ),
    ] {
        if !(1..=MAX_CONNECTIONS).contains(&value) {
            return Err(format!("server.{name} must be 1 to {MAX_CONNECTIONS}"));
        }
    }
    // Half the listener at most: remote peers keep the other half.
    if server.loopback_reserved_connections > MAX_CONNECTIONS / 2 {
        return Err(format!(
            "server.loopback_reserved_connections must be at most {}",
            MAX_CONNECTIONS / 2
        ));
    }
    if !(1..=3600).contains(&server.body_read_timeout_s) {
        return Err("server.body_read_timeout_s must be 1 to 3600".into());
    }
    Ok(())
}
