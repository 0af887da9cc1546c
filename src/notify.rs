//! Wiring of notifications into the daemon: the delivery actor's start and the
//! certificate watch (kept out of `application.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use palyra_actors::RegistryHandle;
use palyra_actors::notifications::NotificationsHandle;
use palyra_storage::{Storage, Writer};

use crate::settings::Settings;

/// Starts the delivery actor, and the watch of the TLS certificate's expiry (at
/// start, then daily) when the daemon serves TLS.
pub(crate) fn start(
    settings: &Settings,
    (storage, writer): (&Storage, &Writer),
    registry: &RegistryHandle,
    (node_id, clustered): (&str, bool),
    cert_not_after: Option<DateTime<Utc>>,
) -> Result<NotificationsHandle, palyra_actors::ActorError> {
    let resolver = palyra_actors::browser::Resolver::new(
        settings
            .browser
            .dns_servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    );
    let handle = NotificationsHandle::start(
        storage,
        writer.clone(),
        registry.clone(),
        settings.notifications.policy(resolver),
        (node_id.to_owned(), clustered),
    )?;
    if let Some(not_after) = cert_not_after {
        palyra_actors::notifications::events::watch_certificate(
            writer.clone(),
            not_after,
            Duration::from_secs(settings.notifications.certificate_warning_days * 24 * 3600),
        );
    }
    Ok(handle)
}
