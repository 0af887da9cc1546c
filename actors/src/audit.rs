//! The audit log: an append-only, persisted record of security-relevant events.
//!
//! Events are keyed by their Unix milliseconds and a sequence number, so the log is one
//! ordered range in the `audit` table and a page is one range scan. Several nodes
//! append to one log on a shared database: each process counts its sequence from a
//! random start, so two nodes' events of the same millisecond do not share a key (and
//! so never overwrite each other) while each node's keys still grow with time.
//! Actors put their events into the same write as the change they record (one
//! transaction: both or neither); HTTP handlers record theirs once the change is
//! durable. A background task prunes the log by count and by age.
//!
//! An event never carries a secret: every field is built by this daemon from ids,
//! names, error codes and addresses, never from a credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use palyra_storage::{Storage, StoredRecord, Table, WriteOp, Writer, decode_record};
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::time::{now_ms, to_datetime};

/// What happened. The names are the API's `kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Login,
    LoginFailed,
    SessionRevoked,
    HandoffMinted,
    HandoffConsumed,
    ProfileCreated,
    ProfileUpdated,
    ProfileDeleted,
    ProfileRefreshed,
    ProfileNeedsReauth,
    SigninStarted,
    SigninCompleted,
    SigninFailed,
    AgentCreated,
    AgentUpdated,
    AgentDeleted,
    ObjectiveCreated,
    ObjectiveUpdated,
    ObjectiveLifecycle,
    BudgetExhausted,
    VaultKeyRotated,
    BrowserSessionCreated,
    BrowserNavigated,
    BrowserSessionClosed,
    OperatorCreated,
    OperatorUpdated,
    OperatorDeleted,
    TokenCreated,
    TokenRevoked,
    /// A provider's OAuth client secret sealed into the vault or removed from it.
    ClientSecretChanged,
    NotificationChannelCreated,
    NotificationChannelDeleted,
    /// A run's tool wrote: `workspace_write`, or an `http_fetch` other than GET.
    ToolWrite,
    /// A periodic budget's soft threshold crossed (once per period).
    BudgetThreshold,
}

impl AuditKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [AuditKind; 34] = [
        AuditKind::Login,
        AuditKind::LoginFailed,
        AuditKind::SessionRevoked,
        AuditKind::HandoffMinted,
        AuditKind::HandoffConsumed,
        AuditKind::ProfileCreated,
        AuditKind::ProfileUpdated,
        AuditKind::ProfileDeleted,
        AuditKind::ProfileRefreshed,
        AuditKind::ProfileNeedsReauth,
        AuditKind::SigninStarted,
        AuditKind::SigninCompleted,
        AuditKind::SigninFailed,
        AuditKind::AgentCreated,
        AuditKind::AgentUpdated,
        AuditKind::AgentDeleted,
        AuditKind::ObjectiveCreated,
        AuditKind::ObjectiveUpdated,
        AuditKind::ObjectiveLifecycle,
        AuditKind::BudgetExhausted,
        AuditKind::VaultKeyRotated,
        AuditKind::BrowserSessionCreated,
        AuditKind::BrowserNavigated,
        AuditKind::BrowserSessionClosed,
        AuditKind::OperatorCreated,
        AuditKind::OperatorUpdated,
        AuditKind::OperatorDeleted,
        AuditKind::TokenCreated,
        AuditKind::TokenRevoked,
        AuditKind::ClientSecretChanged,
        AuditKind::NotificationChannelCreated,
        AuditKind::NotificationChannelDeleted,
        AuditKind::ToolWrite,
        AuditKind::BudgetThreshold,
    ];
}

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
}

/// Who acted, from where, on what: the part of an event its recorder supplies.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// A principal (`admin:...`), or `system` for the daemon's own actions.
    pub actor: String,
    /// The peer address of the request, when there was one.
    pub peer: Option<String>,
    pub kind: AuditKind,
    /// What was acted on: a profile id, an objective id, a principal.
    pub subject: String,
    pub outcome: AuditOutcome,
    /// A short, secret-free explanation (an error code, a transition).
    pub detail: String,
    /// The `x-request-id` of the request, to find its log lines.
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// An event the daemon caused by itself (refresher, scheduler, budgets).
    pub fn system(
        kind: AuditKind,
        subject: impl Into<String>,
        outcome: AuditOutcome,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            actor: "system".into(),
            peer: None,
            kind,
            subject: subject.into(),
            outcome,
            detail: detail.into(),
            request_id: None,
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The event's key in hex: ordered like the events, usable as a cursor.
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub peer: Option<String>,
    pub kind: AuditKind,
    pub subject: String,
    pub outcome: AuditOutcome,
    pub detail: String,
    /// The request's `x-request-id` (none for the daemon's own actions).
    #[serde(default)]
    pub request_id: Option<String>,
}

impl StoredRecord for AuditEvent {
    const TABLE: Table = Table::Audit;
    const VERSION: u32 = 1;
}

/// How long the log is kept.
#[derive(Debug, Clone, Copy)]
pub struct AuditRetention {
    /// Most events kept; the oldest go first.
    pub max_events: u64,
    /// Events older than this are removed (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// How often the pruning runs.
    pub prune_interval: Duration,
}

/// A filter and page of the log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub kind: Option<AuditKind>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The `id` of the last event of the previous page.
    pub cursor: Option<String>,
}

/// A page of events and the cursor of the next one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// Most rows one page request examines when a filter skips most of them; the page
/// then ends early with a cursor, so a query never scans the whole log at once.
const MAX_SCANNED: usize = 10_000;

/// The audit log. Cloning is shallow.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    writer: Writer,
    /// This process's next sequence number, counted from a random start (see
    /// [`first_seq`]).
    seq: AtomicU64,
    /// The newest event time handed out: event times never go backwards, even when
    /// the wall clock does, so a newer event never sorts (or is pruned) as older.
    last_ms: std::sync::atomic::AtomicI64,
    /// Events added since the last pruning; at `prune_every` the pruner runs at once,
    /// so a flood (logins, evictions) is cut back to `max_events` as it comes, not
    /// once per `prune_interval`.
    added: AtomicU64,
    prune_every: u64,
    prune_now: tokio::sync::Notify,
}

/// Longest `subject` and `detail`, in characters; longer ones are cut.
const MAX_FIELD_CHARS: usize = 256;

fn bounded(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_FIELD_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log and starts its pruning task (on the current tokio runtime).
    pub async fn start(
        storage: &Storage,
        writer: Writer,
        retention: AuditRetention,
    ) -> Result<Self, ActorError> {
        // Keys of this process sort after every key already stored: its times start
        // a millisecond after the newest one's, whatever the sequence numbers.
        let newest = storage
            .read_prefix_rev(Table::Audit, &[], None, 1)
            .await?
            .first()
            .and_then(|(k, _)| decode_key(k));
        let log = Self {
            inner: Arc::new(Inner {
                storage: storage.clone(),
                writer,
                seq: AtomicU64::new(first_seq(rand::random())),
                last_ms: std::sync::atomic::AtomicI64::new(
                    newest.map_or(0, |(at, _)| at.saturating_add(1)),
                ),
                added: AtomicU64::new(0),
                // A hundredth of the limit (at least 100): the log holds at most 1%
                // more than `max_events` between two prunings.
                prune_every: (retention.max_events / 100).max(100),
                prune_now: tokio::sync::Notify::new(),
            }),
        };
        let pruner = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(retention.prune_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = pruner.inner.prune_now.notified() => {}
                }
                if !pruner.inner.writer.is_alive() {
                    break;
                }
                pruner.inner.added.store(0, Ordering::Relaxed);
                if let Err(e) = pruner.prune(retention).await {
                    tracing::warn!(error = %e, "pruning the audit log failed");
                }
            }
        });
        Ok(log)
    }

    /// The write that stores `entry`, for an actor to put into the same transaction as
    /// the change it records.
    pub fn op(&self, entry: AuditEntry) -> WriteOp {
        let now = now_ms();
        let at_ms = self
            .inner
            .last_ms
            .fetch_max(now, Ordering::Relaxed)
            .max(now);
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        if self.inner.added.fetch_add(1, Ordering::Relaxed) + 1 == self.inner.prune_every {
            self.inner.prune_now.notify_one();
        }
        let key = encode_key(at_ms, seq);
        let event = AuditEvent {
            id: hex(&key),
            at: to_datetime(at_ms),
            actor: entry.actor,
            peer: entry.peer,
            kind: entry.kind,
            subject: bounded(entry.subject),
            outcome: entry.outcome,
            detail: bounded(entry.detail),
            request_id: entry.request_id,
        };
        WriteOp::put(key.to_vec(), &event)
    }

    /// Queues `entry` for the writer now and returns without waiting for the commit:
    /// the writer commits everything it has queued (at shutdown too), so only a crash
    /// in the next few milliseconds can lose it. Handlers use it after the change the
    /// event reports is durable, so a request waits for one commit, not two.
    pub fn submit(&self, entry: AuditEntry) {
        let kind = entry.kind;
        let ack = self.inner.writer.submit(vec![self.op(entry)]);
        tokio::spawn(async move {
            if let Err(e) = ack.await {
                tracing::error!(error = %e, ?kind, "recording an audit event failed");
            }
        });
    }

    /// Waits until every event queued before this call is durable, so a query that
    /// follows sees every event of an action already answered.
    pub async fn settle(&self) -> Result<(), ActorError> {
        Ok(self.inner.writer.write(Vec::new()).await?)
    }

    /// One page of events, newest first.
    pub async fn query(&self, query: &AuditQuery) -> Result<AuditPage, ActorError> {
        crate::paging::check_page_limit(query.limit)?;
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since > until
        {
            return Err(ActorError::invalid("since", "must not be after until"));
        }
        // The scan starts below the cursor, or at the end of `until`'s millisecond.
        let mut before: Option<Vec<u8>> = match &query.cursor {
            Some(cursor) => Some(
                unhex(cursor)
                    .filter(|k| decode_key(k).is_some())
                    .ok_or_else(|| ActorError::invalid("cursor", "is not an audit event id"))?,
            ),
            None => query
                .until
                .map(|u| encode_key(u.timestamp_millis().saturating_add(1), 0).to_vec()),
        };
        let since_ms = query.since.map(|s| s.timestamp_millis());
        let mut events = Vec::new();
        let mut scanned = 0;
        const CHUNK: usize = 512;
        loop {
            let rows = self
                .inner
                .storage
                .read_prefix_rev(Table::Audit, &[], before.as_deref(), CHUNK)
                .await?;
            let exhausted = rows.len() < CHUNK;
            for (key, value) in rows {
                scanned += 1;
                let Some((at_ms, _)) = decode_key(&key) else {
                    before = Some(key);
                    continue;
                };
                if since_ms.is_some_and(|s| at_ms < s) {
                    return Ok(AuditPage {
                        events,
                        next_cursor: None,
                    });
                }
                before = Some(key);
                let event: AuditEvent = decode_record(&value)?;
                if query.kind.is_some_and(|k| k != event.kind) {
                    if scanned >= MAX_SCANNED {
                        return Ok(AuditPage {
                            events,
                            next_cursor: before.as_deref().map(hex),
                        });
                    }
                    continue;
                }
                events.push(event);
                if events.len() == query.limit {
                    // A next page exists only if anything older matches at all; the
                    // client learns that from an empty page at worst.
                    return Ok(AuditPage {
                        events,
                        next_cursor: before.as_deref().map(hex),
                    });
                }
            }
            if exhausted {
                return Ok(AuditPage {
                    events,
                    next_cursor: None,
                });
            }
        }
    }

    /// Removes the oldest events beyond the count limit and those past the age limit.
    async fn prune(&self, retention: AuditRetention) -> Result<(), ActorError> {
        let count = self.inner.storage.read_count(Table::Audit).await?;
        let mut excess = count.saturating_sub(retention.max_events);
        let cutoff_ms = retention
            .max_age
            .map(|age| now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .inner
                .storage
                .read_forward(Table::Audit, after.as_deref(), 1024)
                .await?;
            let mut ops = Vec::new();
            let mut done = rows.len() < 1024;
            for (key, _) in rows {
                let old = decode_key(&key)
                    .zip(cutoff_ms)
                    .is_some_and(|((at_ms, _), cutoff)| at_ms < cutoff);
                if excess == 0 && !old {
                    done = true;
                    break;
                }
                excess = excess.saturating_sub(1);
                after = Some(key.clone());
                ops.push(WriteOp::delete(Table::Audit, key));
            }
            if !ops.is_empty() {
                let removed = ops.len();
                self.inner.writer.write(ops).await?;
                tracing::debug!(removed, "audit log pruned");
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// The first sequence number of a process, from a random `draw`: below 2^62, so the
/// count has 2^62 steps of room before it would pass PostgreSQL's signed 63 bits (the
/// `seq` column) or wrap. Two processes share a key only if they stamp the same
/// millisecond and their counts meet, about one chance in 2^62 per event.
fn first_seq(draw: u64) -> u64 {
    draw >> 2
}

fn encode_key(at_ms: i64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    // Times before 1970 do not occur; clamping keeps the order of the rest.
    key[..8].copy_from_slice(&u64::try_from(at_ms).unwrap_or(0).to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn decode_key(key: &[u8]) -> Option<(i64, u64)> {
    let at: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    (key.len() == 16).then(|| {
        (
            i64::try_from(u64::from_be_bytes(at)).unwrap_or(i64::MAX),
            u64::from_be_bytes(seq),
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time_then_sequence() {
        let a = encode_key(1_700_000_000_000, 5);
        let b = encode_key(1_700_000_000_000, 6);
        let c = encode_key(1_700_000_000_001, 0);
        assert!(a < b && b < c);
        assert_eq!(decode_key(&a), Some((1_700_000_000_000, 5)));
        assert_eq!(unhex(&hex(&c)).as_deref(), Some(&c[..]));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn sequences_start_at_random_and_fit_a_signed_column() {
        assert_eq!(first_seq(0), 0);
        assert!(first_seq(u64::MAX) < 1 << 62);
        assert!(i64::try_from(first_seq(u64::MAX) + (1 << 61)).is_ok());
        assert_ne!(first_seq(rand::random()), first_seq(rand::random()));
    }
}
