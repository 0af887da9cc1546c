//! Wiring of notifications into the daemon: the delivery actor's start and the
//! certificate watch (kept out of `application.rs`).

use std::time::Duration;

use palyra_actors::RegistryHandle;
use palyra_actors::cluster::ClusterHandle;
use palyra_actors::notifications::NotificationsHandle;
use palyra_storage::{Storage, Writer};

use crate::settings::Settings;
use crate::tls::TlsMaterial;

/// Starts the delivery actor, and the watch of the TLS certificate's expiry (at
/// start, then daily) when the daemon serves TLS. A refused start stops the writer,
/// like every refused start after it began.
pub(crate) async fn start(
    settings: &Settings,
    (storage, writer): (&Storage, &Writer),
    registry: &RegistryHandle,
    cluster: &ClusterHandle,
    tls: &Option<TlsMaterial>,
) -> Result<NotificationsHandle, palyra_actors::ActorError> {
    match start_actor(settings, (storage, writer), registry, cluster) {
        Ok(handle) => {
            handle.watch_nodes(cluster.clone());
            if let Some(not_after) = tls.as_ref().and_then(|t| t.not_after) {
                palyra_actors::notifications::events::watch_certificate(
                    writer.clone(),
                    not_after,
                    Duration::from_secs(
                        settings.notifications.certificate_warning_days * 24 * 3600,
                    ),
                );
            }
            Ok(handle)
        }
        Err(e) => {
            writer.shutdown().await;
            Err(e)
        }
    }
}

fn start_actor(
    settings: &Settings,
    (storage, writer): (&Storage, &Writer),
    registry: &RegistryHandle,
    cluster: &ClusterHandle,
) -> Result<NotificationsHandle, palyra_actors::ActorError> {
    let resolver = palyra_actors::browser::Resolver::new(
        settings
            .browser
            .dns_servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    );
    NotificationsHandle::start(
        storage,
        writer.clone(),
        registry.clone(),
        settings.notifications.policy(resolver),
        (cluster.node_id().to_owned(), cluster.is_clustered()),
    )
}
