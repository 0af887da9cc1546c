//! `NotificationsHandle`: channels (create, list, delete, test), the deliveries
//! list, and the start of the delivery actor (`delivery.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palyra_storage::record::decode_record;
use palyra_storage::{Storage, Table, WriteOp, Writer};
use tokio::sync::Notify;

use super::model::{
    ChannelRecord, CreatedChannel, Delivery, DeliveryRecord, DeliveryStatus, EventFilters,
    EventKind, NewChannel, NotificationChannel, NotificationPolicy, new_event_op,
};
use super::state::Inner;
use super::url::check_channel_url;
use crate::error::ActorError;
use crate::ids::validate_agent_id;
use crate::registry::RegistryHandle;
use crate::secret::random_token;
use crate::time::{now_ms, to_datetime};

/// Handle to notifications. Cloning is shallow.
#[derive(Clone)]
pub struct NotificationsHandle {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for NotificationsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsHandle")
            .finish_non_exhaustive()
    }
}

/// Most deliveries one list answers.
const MAX_LIST: usize = 500;

impl NotificationsHandle {
    /// Starts the delivery actor on the current tokio runtime.
    pub fn start(
        storage: &Storage,
        writer: Writer,
        registry: RegistryHandle,
        policy: NotificationPolicy,
        (node_id, clustered): (String, bool),
    ) -> Result<Self, ActorError> {
        let client = super::url::delivery_client(&policy.urls)?;
        let handle = Self {
            inner: Arc::new(Inner {
                storage: storage.clone(),
                writer,
                registry,
                policy,
                node_id,
                clustered,
                client,
                wake: Notify::new(),
                in_flight: Mutex::new(HashMap::new()),
                stopping: tokio::sync::watch::channel(false).0,
            }),
        };
        tokio::spawn(super::delivery::run(Arc::clone(&handle.inner)));
        Ok(handle)
    }

    pub fn policy(&self) -> &NotificationPolicy {
        &self.inner.policy
    }

    /// Stops taking deliveries; sends in flight finish or are retried after a restart.
    pub fn stop(&self) {
        self.inner.stopping.send_replace(true);
        self.inner.wake.notify_one();
    }

    /// Creates a channel; its signing secret is sealed in the same transaction and
    /// answered this once.
    pub async fn create_channel(&self, req: NewChannel) -> Result<CreatedChannel, ActorError> {
        check_channel_url(&self.inner.policy, &req.url).await?;
        if req.events.is_empty() {
            return Err(ActorError::invalid(
                "events",
                "name at least one event kind",
            ));
        }
        if req.events.contains(&EventKind::Test) {
            return Err(ActorError::invalid(
                "events",
                "test events are sent to a channel on request, not subscribed to",
            ));
        }
        if let Some(id) = &req.agent_id {
            validate_agent_id(id)
                .map_err(|_| ActorError::invalid("agent_id", "use 1 to 128 of a-z 0-9 . _ -"))?;
        }
        if let Some(id) = &req.objective_id {
            validate_agent_id(id).map_err(|_| {
                ActorError::invalid("objective_id", "use 1 to 128 of a-z 0-9 . _ -")
            })?;
        }
        let mut events = req.events.clone();
        events.sort_by_key(|k| EventKind::SUBSCRIBABLE.iter().position(|s| s == k));
        events.dedup();
        let channel_id = format!("ch_{:016x}", rand::random::<u64>());
        let record = ChannelRecord {
            secret_ref: format!("vault://notifications/{channel_id}"),
            channel_id: channel_id.clone(),
            url: req.url,
            format: req.format,
            events,
            agent_id: req.agent_id,
            objective_id: req.objective_id,
            created_at: to_datetime(now_ms()),
            disabled_at: None,
            disabled_reason: None,
        };
        let secret = random_token();
        let ops = vec![WriteOp::insert_if_absent(channel_id.into_bytes(), &record)];
        self.inner
            .registry
            .seal_with(&record.secret_ref, &secret, ops)
            .await?;
        tracing::info!(channel_id = %record.channel_id, format = ?record.format, "notification channel created");
        Ok(CreatedChannel {
            channel: record.view(),
            secret: secret.expose().to_owned(),
        })
    }

    /// Every channel, oldest first.
    pub async fn list_channels(&self) -> Result<Vec<NotificationChannel>, ActorError> {
        let rows = self
            .inner
            .storage
            .read_table(Table::NotificationChannels)
            .await?;
        let mut channels = Vec::with_capacity(rows.len());
        for (_, value) in rows {
            channels.push(decode_record::<ChannelRecord>(&value)?.view());
        }
        channels.sort_by_key(|c| c.created_at);
        Ok(channels)
    }

    async fn channel(&self, channel_id: &str) -> Result<ChannelRecord, ActorError> {
        let not_found = || ActorError::NotFound {
            what: "notification channel",
            id: channel_id.to_owned(),
        };
        let value = self
            .inner
            .storage
            .read_row(Table::NotificationChannels, channel_id.as_bytes())
            .await?
            .ok_or_else(not_found)?;
        Ok(decode_record(&value)?)
    }

    /// Deletes a channel and its secret; its pending deliveries fail.
    pub async fn delete_channel(&self, channel_id: &str) -> Result<(), ActorError> {
        let record = self.channel(channel_id).await?;
        let ops = vec![WriteOp::delete(
            Table::NotificationChannels,
            channel_id.as_bytes().to_vec(),
        )];
        self.inner
            .registry
            .delete_with(&record.secret_ref, ops)
            .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Queues a `test` event for this channel only; answers its id once it is durable.
    pub async fn test_channel(&self, channel_id: &str) -> Result<String, ActorError> {
        let record = self.channel(channel_id).await?;
        if record.disabled_at.is_some() {
            return Err(ActorError::Conflict(
                "the channel is disabled (its receiver answered 410 Gone)".into(),
            ));
        }
        let (id, op) = new_event_op(
            EventKind::Test,
            format!("test of channel {channel_id}"),
            serde_json::json!({ "message": "a test notification from palyra" }),
            EventFilters::default(),
            Some(channel_id.to_owned()),
        );
        self.inner.writer.write(vec![op]).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Deliveries, newest first, optionally of one channel or in one status.
    pub async fn deliveries(
        &self,
        channel_id: Option<&str>,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, ActorError> {
        let limit = limit.clamp(1, MAX_LIST);
        let mut out = Vec::new();
        let mut before: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .inner
                .storage
                .read_prefix_rev(Table::NotificationDeliveries, &[], before.as_deref(), 500)
                .await?;
            let full = rows.len() == 500;
            for (_, value) in &rows {
                let record: DeliveryRecord = decode_record(value)?;
                if channel_id.is_some_and(|c| c != record.channel_id)
                    || status.is_some_and(|s| s != record.status)
                {
                    continue;
                }
                out.push(record.view());
                if out.len() == limit {
                    return Ok(out);
                }
            }
            if !full {
                return Ok(out);
            }
            before = rows.last().map(|(k, _)| k.clone());
        }
    }

    /// Follows the cluster's nodes and raises `node_lost` (on a shared database).
    pub fn watch_nodes(&self, cluster: crate::cluster::ClusterHandle) {
        tokio::spawn(super::nodes::watch(Arc::clone(&self.inner), cluster));
    }

    /// Wakes the delivery actor now (after a write that queued events).
    pub fn kick(&self) {
        self.inner.wake.notify_one();
    }
}
