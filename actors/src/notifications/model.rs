//! The records of notifications: channels, outbox events and deliveries, their wire
//! views, and [`event_op`], the one way other code adds an event to a write batch.

use chrono::{DateTime, Utc};
use palyra_storage::record::StoredRecord;
use palyra_storage::{Table, WriteOp};
use serde::{Deserialize, Serialize};

use crate::time::{now_ms, to_datetime};

/// What happened: the kinds a channel subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run succeeded; `detail.output` is its answer, capped.
    RunCompleted,
    /// A run failed; `detail.error` says why.
    RunFailed,
    /// An objective paused itself (`detail.reason`: `budget_exhausted`,
    /// `consecutive_failures`).
    ObjectivePaused,
    /// A soft budget threshold was crossed.
    BudgetThreshold,
    /// An auth profile needs a new sign-in (or a new API key).
    ProfileNeedsReauth,
    /// Background refreshes of a profile keep failing for transient reasons.
    RefreshFailing,
    /// The daemon's TLS certificate expires soon.
    CertificateExpiring,
    /// A node of the cluster stopped beating.
    NodeLost,
    /// Sent by `POST /notifications/channels/{id}/test`, to that channel only.
    Test,
}

impl EventKind {
    /// Every kind a channel may subscribe to (`test` is sent to one channel on request).
    pub const SUBSCRIBABLE: [EventKind; 8] = [
        EventKind::RunCompleted,
        EventKind::RunFailed,
        EventKind::ObjectivePaused,
        EventKind::BudgetThreshold,
        EventKind::ProfileNeedsReauth,
        EventKind::RefreshFailing,
        EventKind::CertificateExpiring,
        EventKind::NodeLost,
    ];

    pub fn name(self) -> String {
        crate::wire_name(self)
    }
}

/// What an event is about, for channels that subscribe to one agent or objective.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilters {
    pub agent_id: Option<String>,
    pub objective_id: Option<String>,
}

/// An event waiting in the outbox to be fanned out to the channels subscribed to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationEvent {
    pub id: String,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub detail: serde_json::Value,
    #[serde(default)]
    pub filters: EventFilters,
    /// Only this channel (a test event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
}

impl StoredRecord for NotificationEvent {
    const TABLE: Table = Table::NotificationEvents;
    const VERSION: u32 = 1;
}

/// Longest `subject`, in characters.
const MAX_SUBJECT_CHARS: usize = 256;

/// The write that puts an event into the outbox. Put it into the same write request
/// as the change it reports (one request is one transaction on both backends), so the
/// event exists if and only if the change does (and some channel did when it was
/// written); the delivery actor fans it out to the subscribed channels and delivers
/// it at least once.
pub fn event_op(
    kind: EventKind,
    subject: impl Into<String>,
    detail: serde_json::Value,
    filters: EventFilters,
) -> WriteOp {
    new_event_op(kind, subject.into(), detail, filters, None).1
}

pub(crate) fn new_event_op(
    kind: EventKind,
    mut subject: String,
    detail: serde_json::Value,
    filters: EventFilters,
    channel_id: Option<String>,
) -> (String, WriteOp) {
    let at_ms = now_ms();
    // The time first, so the outbox is oldest first; the random half keeps ids of
    // several nodes (and of one millisecond) apart.
    let id = format!("{:016x}{:016x}", at_ms.max(0), rand::random::<u64>());
    if let Some((cut, _)) = subject.char_indices().nth(MAX_SUBJECT_CHARS) {
        subject.truncate(cut);
    }
    let event = NotificationEvent {
        id: id.clone(),
        kind,
        at: to_datetime(at_ms),
        subject,
        detail,
        filters,
        channel_id,
    };
    let op = if event.channel_id.is_some() {
        WriteOp::put(id.clone().into_bytes(), &event)
    } else {
        // Written only if some channel exists, decided in the write's own transaction:
        // with none, a run's event would be an insert, a read and a delete for
        // nothing. A channel made after the write never gets the event in any case.
        WriteOp::put_if_any(Table::NotificationChannels, id.clone().into_bytes(), &event)
    };
    (id, op)
}

/// The body a channel's receiver is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelFormat {
    /// `{id, kind, at, subject, detail}`, signed (`palyra-signature`).
    #[default]
    Palyra,
    /// `{text}`: Slack's and Mattermost's incoming webhooks.
    Slack,
    /// `{content}`: Discord's webhooks.
    Discord,
}

/// A channel as stored. `Debug` shows the URL as lists do (a Slack or Discord URL
/// carries its credential).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub channel_id: String,
    pub url: String,
    pub format: ChannelFormat,
    pub events: Vec<EventKind>,
    pub agent_id: Option<String>,
    pub objective_id: Option<String>,
    /// Where the signing secret is sealed.
    pub secret_ref: String,
    pub created_at: DateTime<Utc>,
    /// Set when the receiver answered 410 Gone: nothing more is sent to it.
    #[serde(default)]
    pub disabled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

impl StoredRecord for ChannelRecord {
    const TABLE: Table = Table::NotificationChannels;
    const VERSION: u32 = 1;
}

impl ChannelRecord {
    /// Whether `event` goes to this channel.
    pub fn wants(&self, event: &NotificationEvent) -> bool {
        if self.disabled_at.is_some() {
            return false;
        }
        if let Some(only) = &event.channel_id {
            return *only == self.channel_id;
        }
        let by = |mine: &Option<String>, theirs: &Option<String>| {
            mine.as_ref().is_none_or(|m| theirs.as_ref() == Some(m))
        };
        self.events.contains(&event.kind)
            && by(&self.agent_id, &event.filters.agent_id)
            && by(&self.objective_id, &event.filters.objective_id)
    }

    pub fn view(&self) -> NotificationChannel {
        NotificationChannel {
            channel_id: self.channel_id.clone(),
            url: shown_url(self.format, &self.url),
            format: self.format,
            events: self.events.clone(),
            agent_id: self.agent_id.clone(),
            objective_id: self.objective_id.clone(),
            created_at: self.created_at,
            disabled: self.disabled_at.is_some(),
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason.clone(),
        }
    }
}

/// The URL as lists show it: a Slack or Discord webhook URL carries its credential
/// in the path, so only its origin is shown; any other receiver's by its origin and
/// path, without the query (where a token would be), `?…` marking one.
fn shown_url(format: ChannelFormat, url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "…".to_owned();
    };
    let origin = parsed.origin().ascii_serialization();
    match format {
        ChannelFormat::Palyra => {
            let query = if parsed.query().is_some() { "?…" } else { "" };
            format!("{origin}{}{query}", parsed.path())
        }
        ChannelFormat::Slack | ChannelFormat::Discord => format!("{origin}/…"),
    }
}

/// A channel as the API shows it (never its secret; a Slack or Discord URL by its
/// origin only, any other without its query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationChannel {
    pub channel_id: String,
    pub url: String,
    pub format: ChannelFormat,
    pub events: Vec<EventKind>,
    pub agent_id: Option<String>,
    pub objective_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// A new channel with its signing secret, shown this once (never by `Debug`).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: NotificationChannel,
    /// The HMAC-SHA256 key of `palyra-signature`; never shown again.
    pub secret: String,
}

/// A channel to create. `Debug` shows the URL as lists do.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// https (http only to loopback, or with `notifications.allow_insecure_urls`).
    #[schema(max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub format: ChannelFormat,
    /// The kinds to send; at least one.
    pub events: Vec<EventKind>,
    /// Only events of this agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only events of this objective.
    #[serde(default)]
    pub objective_id: Option<String>,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("channel_id", &self.channel_id)
            .field("url", &shown_url(self.format, &self.url))
            .field("format", &self.format)
            .field("events", &self.events)
            .field("agent_id", &self.agent_id)
            .field("objective_id", &self.objective_id)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CreatedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedChannel")
            .field("channel", &self.channel)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl std::fmt::Debug for NewChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChannel")
            .field("url", &shown_url(self.format, &self.url))
            .field("format", &self.format)
            .field("events", &self.events)
            .field("agent_id", &self.agent_id)
            .field("objective_id", &self.objective_id)
            .finish()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up: retried for the whole retry window, the channel answered 410 or
    /// was deleted.
    Failed,
}

/// A node's claim on a delivery it is sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryClaim {
    pub node_id: String,
    pub until_ms: i64,
}

/// The JSON body of a `palyra` delivery, and what every format is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPayload {
    pub id: String,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub detail: serde_json::Value,
}

/// One event's delivery to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    /// When the next attempt is due (pending).
    pub next_attempt_ms: i64,
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub claim: Option<DeliveryClaim>,
    pub event: EventPayload,
}

impl StoredRecord for DeliveryRecord {
    const TABLE: Table = Table::NotificationDeliveries;
    const VERSION: u32 = 1;
}

impl DeliveryRecord {
    pub fn view(&self) -> Delivery {
        Delivery {
            delivery_id: self.delivery_id.clone(),
            channel_id: self.channel_id.clone(),
            event_id: self.event.id.clone(),
            kind: self.event.kind,
            subject: self.event.subject.clone(),
            status: self.status,
            attempts: self.attempts,
            last_status_code: self.last_status_code,
            last_error: self.last_error.clone(),
            created_at: to_datetime(self.created_at_ms),
            next_attempt_at: (self.status == DeliveryStatus::Pending)
                .then(|| to_datetime(self.next_attempt_ms)),
            finished_at: self.finished_at_ms.map(to_datetime),
        }
    }
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub delivery_id: String,
    pub channel_id: String,
    pub event_id: String,
    pub kind: EventKind,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct NotificationPolicy {
    /// http to hosts other than loopback.
    pub allow_insecure_urls: bool,
    /// Which addresses receivers may be on (the browser's rules and resolver).
    pub urls: crate::browser::UrlPolicy,
    /// One POST as a whole.
    pub request_timeout: std::time::Duration,
    /// The first retry's wait; each next one doubles, up to `retry_cap`.
    pub retry_base: std::time::Duration,
    pub retry_cap: std::time::Duration,
    /// How long a delivery is retried before it fails.
    pub retry_window: std::time::Duration,
    /// How often the outbox is looked at when nothing wakes the actor.
    pub poll_interval: std::time::Duration,
    /// Sends in flight to one channel, and in all.
    pub per_channel_in_flight: usize,
    pub max_in_flight: usize,
    /// Finished deliveries are kept this long for `GET /notifications/deliveries`.
    pub retention: std::time::Duration,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            allow_insecure_urls: false,
            urls: crate::browser::UrlPolicy::default(),
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(3600),
            retry_window: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
            per_channel_in_flight: 4,
            max_in_flight: 64,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_the_signing_secret_nor_a_webhook_urls_credential() {
        let record = ChannelRecord {
            channel_id: "c1".into(),
            url: "https://hooks.slack.com/services/T000/B000/credential-in-path".into(),
            format: ChannelFormat::Slack,
            events: vec![EventKind::RunFailed],
            agent_id: None,
            objective_id: None,
            secret_ref: "vault://global/notification-channel/c1".into(),
            created_at: DateTime::UNIX_EPOCH,
            disabled_at: None,
            disabled_reason: None,
        };
        let created = CreatedChannel {
            channel: record.view(),
            secret: "signing-secret-shown-once".into(),
        };
        let shown = format!("{record:?} {created:?}");
        assert!(!shown.contains("credential-in-path"), "{shown}");
        assert!(!shown.contains("signing-secret-shown-once"), "{shown}");
        assert!(shown.contains("https://hooks.slack.com"), "{shown}");
    }
}
