//! `[notifications]`: how webhook deliveries are made (receivers' URLs, timeouts,
//! retries, concurrency, retention).

use std::time::Duration;

use serde::Deserialize;

/// Notification channels and the delivery of the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// http to receivers other than loopback (https otherwise).
    pub allow_insecure_urls: bool,
    /// Receivers on private, link-local and loopback addresses (the browser's rules).
    pub allow_private_networks: bool,
    /// One POST to a receiver as a whole.
    pub request_timeout_s: u64,
    /// The wait before the first retry; each next one doubles, up to `retry_cap_ms`.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// How long a delivery is retried before it fails.
    pub retry_window_s: u64,
    /// How often the outbox is looked at when nothing wakes the delivery actor.
    pub poll_interval_ms: u64,
    /// Sends in flight to one channel, and in all, on this node.
    pub per_channel_in_flight: usize,
    pub max_in_flight: usize,
    /// Finished deliveries are listed this long, then deleted.
    pub retention_days: u64,
    /// `certificate_expiring` is raised (at start, then daily) this close to expiry.
    pub certificate_warning_days: u64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            allow_insecure_urls: false,
            allow_private_networks: false,
            request_timeout_s: 10,
            retry_base_ms: 1000,
            retry_cap_ms: 3_600_000,
            retry_window_s: 24 * 3600,
            poll_interval_ms: 1000,
            per_channel_in_flight: 4,
            max_in_flight: 64,
            retention_days: 7,
            certificate_warning_days: 14,
        }
    }
}

impl NotificationSettings {
    /// The delivery actor's policy; `urls` carries the browser's resolver settings.
    pub fn policy(
        &self,
        resolver: palyra_actors::browser::Resolver,
    ) -> palyra_actors::notifications::NotificationPolicy {
        palyra_actors::notifications::NotificationPolicy {
            allow_insecure_urls: self.allow_insecure_urls,
            urls: palyra_actors::browser::UrlPolicy {
                allow_private_networks: self.allow_private_networks,
                allowed_hosts: Vec::new(),
                resolver,
            },
            request_timeout: Duration::from_secs(self.request_timeout_s),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_cap: Duration::from_millis(self.retry_cap_ms),
            retry_window: Duration::from_secs(self.retry_window_s),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            per_channel_in_flight: self.per_channel_in_flight,
            max_in_flight: self.max_in_flight,
            retention: Duration::from_secs(self.retention_days * 24 * 3600),
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.request_timeout_s) {
            return Err("notifications.request_timeout_s must be 1 to 300".into());
        }
        if self.retry_base_ms == 0 || self.retry_cap_ms < self.retry_base_ms {
            return Err(
                "notifications.retry_base_ms must be at least 1 and retry_cap_ms at least retry_base_ms"
                    .into(),
            );
        }
        if !(1..=7 * 24 * 3600).contains(&self.retry_window_s) {
            return Err("notifications.retry_window_s must be 1 to 604800 (7 days)".into());
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err("notifications.poll_interval_ms must be 10 to 60000".into());
        }
        if !(1..=64).contains(&self.per_channel_in_flight)
            || !(1..=1024).contains(&self.max_in_flight)
        {
            return Err(
                "notifications.per_channel_in_flight must be 1 to 64 and max_in_flight 1 to 1024"
                    .into(),
            );
        }
        if !(1..=365).contains(&self.retention_days) {
            return Err("notifications.retention_days must be 1 to 365".into());
        }
        if self.certificate_warning_days > 365 {
            return Err("notifications.certificate_warning_days must be at most 365".into());
        }
        Ok(())
    }
}
