//! The delivery actor: fans outbox events out to the channels subscribed to them
//! (taking the event and inserting its deliveries in one transaction, so exactly one
//! node does it), claims due deliveries by compare-and-set with a lease (so each is
//! sent by one node at a time), sends them, and records the outcome against the
//! claimed bytes. Everything is in storage, so nothing is lost to a SIGKILL: an
//! unfinished claim expires and the delivery is sent again (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use palyra_storage::record::{decode_record, encode_record};
use palyra_storage::{Table, WriteOp, WriteOutcome};
use url::Url;

use super::model::{
    ChannelFormat, ChannelRecord, DeliveryClaim, DeliveryRecord, DeliveryStatus, EventPayload,
    NotificationEvent,
};
use super::sign::{SIGNATURE_HEADER, body, signature_header};
use super::state::Inner;
use super::url::check_before_send;
use crate::time::{now_ms, to_datetime};

/// Events fanned out per pass, and deliveries read per page.
const BATCH: usize = 500;
/// A claim outlives the send's timeout by this much, so a slow send is not taken over.
const CLAIM_MARGIN_MS: i64 = 10_000;

pub(super) async fn run(inner: Arc<Inner>) {
    let mut stopping = inner.stopping.subscribe();
    loop {
        if *stopping.borrow() || !inner.writer.is_alive() {
            break;
        }
        if let Err(e) = pass(&inner).await {
            tracing::warn!(error = %e, "a notification delivery pass failed; retrying at the next");
        }
        tokio::select! {
            () = tokio::time::sleep(inner.policy.poll_interval) => {}
            () = inner.wake.notified() => {}
            _ = stopping.changed() => {}
        }
    }
}

type Channels = HashMap<String, (Vec<u8>, ChannelRecord)>;

async fn pass(inner: &Arc<Inner>) -> Result<(), palyra_storage::StorageError> {
    let mut channels: Channels = HashMap::new();
    for (key, value) in inner
        .storage
        .read_table(Table::NotificationChannels)
        .await?
    {
        if let Ok(record) = decode_record::<ChannelRecord>(&value) {
            channels.insert(record.channel_id.clone(), (key, record));
        }
    }
    fan_out(inner, &channels).await?;
    let now = now_ms();
    let mut after: Option<Vec<u8>> = None;
    let mut writes = Vec::new();
    loop {
        let rows = inner
            .storage
            .read_forward(Table::NotificationDeliveries, after.as_deref(), BATCH)
            .await?;
        let full = rows.len() == BATCH;
        after = rows.last().map(|(k, _)| k.clone());
        for (key, value) in rows {
            let Ok(record) = decode_record::<DeliveryRecord>(&value) else {
                continue;
            };
            if let Some(write) = decide(inner, &channels, key, value, record, now) {
                writes.push(write);
            }
        }
        if !full {
            break;
        }
    }
    // Every claim is queued before any is awaited: they ride one group commit.
    let mut claims = Vec::new();
    for write in writes {
        match write {
            Decision::Prune(op) | Decision::Finish(op) => {
                let ack = inner.writer.submit_checked(vec![op]);
                claims.push((ack, None));
            }
            Decision::Claim { op, claimed } => {
                let ack = inner.writer.submit_checked(vec![op]);
                claims.push((ack, Some(claimed)));
            }
        }
    }
    for (ack, claimed) in claims {
        let outcome = ack.await;
        let Some(claimed) = claimed else {
            continue;
        };
        let (key, bytes, record, channel) = *claimed;
        match outcome {
            Ok(WriteOutcome::Applied { .. }) => {
                let inner = Arc::clone(inner);
                tokio::spawn(async move { send(inner, key, bytes, record, channel).await });
            }
            // Another node claimed it first.
            Ok(WriteOutcome::Refused { .. }) => release(inner, &record.channel_id),
            Err(e) => {
                release(inner, &record.channel_id);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Fans the oldest events out: each event is taken (consumed once, whichever node
/// gets it) in the transaction that inserts its deliveries. The events no channel
/// wants (most run events, when nobody subscribes to them) are deleted together in
/// one unconditional request: deleting one another node took already changes
/// nothing, and on PostgreSQL a request per event was a round trip per finished run.
async fn fan_out(inner: &Inner, channels: &Channels) -> Result<(), palyra_storage::StorageError> {
    let events = inner
        .storage
        .read_forward(Table::NotificationEvents, None, BATCH)
        .await?;
    let mut acks = Vec::new();
    let mut unwanted = Vec::new();
    for (key, value) in events {
        let mut ops = vec![WriteOp::take(Table::NotificationEvents, key.clone())];
        if let Ok(event) = decode_record::<NotificationEvent>(&value) {
            let created_at_ms = now_ms();
            for (_, channel) in channels.values() {
                if !channel.wants(&event) {
                    continue;
                }
                let delivery = DeliveryRecord {
                    delivery_id: format!("{}.{}", event.id, channel.channel_id),
                    channel_id: channel.channel_id.clone(),
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    last_status_code: None,
                    last_error: None,
                    created_at_ms,
                    next_attempt_ms: created_at_ms,
                    finished_at_ms: None,
                    claim: None,
                    event: EventPayload {
                        id: event.id.clone(),
                        kind: event.kind,
                        at: event.at,
                        subject: event.subject.clone(),
                        detail: event.detail.clone(),
                    },
                };
                ops.push(WriteOp::insert_if_absent(
                    delivery.delivery_id.clone().into_bytes(),
                    &delivery,
                ));
            }
        }
        if ops.len() == 1 {
            unwanted.push(WriteOp::delete(Table::NotificationEvents, key));
        } else {
            acks.push(inner.writer.submit_checked(ops));
        }
    }
    if !unwanted.is_empty() {
        acks.push(inner.writer.submit_checked(unwanted));
    }
    for ack in acks {
        // Refused: another node took the event (or inserted a delivery) first.
        ack.await?;
    }
    Ok(())
}

/// A claimed delivery: its key, the claimed bytes, the record and its channel.
type Claimed = (Vec<u8>, Vec<u8>, DeliveryRecord, ChannelRecord);

enum Decision {
    Prune(WriteOp),
    Finish(WriteOp),
    Claim { op: WriteOp, claimed: Box<Claimed> },
}

fn decide(
    inner: &Inner,
    channels: &Channels,
    key: Vec<u8>,
    value: Vec<u8>,
    mut record: DeliveryRecord,
    now: i64,
) -> Option<Decision> {
    let policy = &inner.policy;
    if record.status != DeliveryStatus::Pending {
        let retention = i64::try_from(policy.retention.as_millis()).unwrap_or(i64::MAX);
        let old = record
            .finished_at_ms
            .is_some_and(|at| at.saturating_add(retention) < now);
        return old.then(|| Decision::Prune(WriteOp::delete(Table::NotificationDeliveries, key)));
    }
    let held =
        |c: &DeliveryClaim| c.until_ms > now && (inner.clustered || c.node_id == inner.node_id);
    if record.claim.as_ref().is_some_and(held) {
        return None;
    }
    let give_up = |record: &mut DeliveryRecord, why: &str| {
        record.status = DeliveryStatus::Failed;
        record.last_error = Some(why.to_owned());
        record.finished_at_ms = Some(now);
        record.claim = None;
    };
    let channel = match channels.get(&record.channel_id) {
        None => {
            give_up(&mut record, "the channel was deleted");
            None
        }
        Some((_, c)) if c.disabled_at.is_some() => {
            give_up(&mut record, "the channel is disabled");
            None
        }
        Some((_, c)) => Some(c.clone()),
    };
    let Some(channel) = channel else {
        return Some(Decision::Finish(cas(key, value, &record)));
    };
    if record.next_attempt_ms > now || !reserve(inner, &record.channel_id) {
        return None;
    }
    let timeout = i64::try_from(policy.request_timeout.as_millis()).unwrap_or(i64::MAX);
    record.claim = Some(DeliveryClaim {
        node_id: inner.node_id.clone(),
        until_ms: now.saturating_add(timeout).saturating_add(CLAIM_MARGIN_MS),
    });
    let claimed_bytes = encode_record(&record);
    Some(Decision::Claim {
        op: WriteOp::CompareAndSet {
            table: Table::NotificationDeliveries,
            key: key.clone(),
            expected: Some(value),
            value: claimed_bytes.clone(),
        },
        claimed: Box::new((key, claimed_bytes, record, channel)),
    })
}

fn cas(key: Vec<u8>, expected: Vec<u8>, record: &DeliveryRecord) -> WriteOp {
    WriteOp::CompareAndSet {
        table: Table::NotificationDeliveries,
        key,
        expected: Some(expected),
        value: encode_record(record),
    }
}

/// Takes a place for one send to `channel_id`: at most `per_channel_in_flight` per
/// channel (a slow receiver holds only its own places) and `max_in_flight` in all.
fn reserve(inner: &Inner, channel_id: &str) -> bool {
    let mut in_flight = inner.in_flight.lock().unwrap_or_else(|e| e.into_inner());
    let total: usize = in_flight.values().sum();
    let mine = in_flight.get(channel_id).copied().unwrap_or(0);
    if total >= inner.policy.max_in_flight || mine >= inner.policy.per_channel_in_flight {
        return false;
    }
    *in_flight.entry(channel_id.to_owned()).or_default() += 1;
    true
}

fn release(inner: &Inner, channel_id: &str) {
    let mut in_flight = inner.in_flight.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = in_flight.get_mut(channel_id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            in_flight.remove(channel_id);
        }
    }
}

/// What one attempt came to: the receiver's status, or why there was none.
async fn attempt(
    inner: &Inner,
    channel: &ChannelRecord,
    record: &DeliveryRecord,
) -> Result<u16, String> {
    let url = Url::parse(&channel.url).map_err(|e| format!("the channel's URL: {e}"))?;
    // The refusal's reason only: its URL is the channel's, which may be a credential
    // (the delivery's error is answered to admins and must not show it).
    check_before_send(&inner.policy.urls, &url)
        .await
        .map_err(|e| match e {
            crate::ActorError::Browser(crate::browser::BrowserError::DestinationRefused {
                reason,
                ..
            }) => {
                format!("the destination is refused: {reason}")
            }
            other => other.to_string(),
        })?;
    let payload = body(channel.format, &record.event);
    let mut request = inner
        .client
        .post(url)
        .timeout(inner.policy.request_timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("palyra-event-id", &record.event.id)
        .header("palyra-delivery-attempt", (record.attempts + 1).to_string());
    if channel.format == ChannelFormat::Palyra {
        let secret = inner
            .registry
            .open_sealed(&channel.secret_ref)
            .await
            .map_err(|e| format!("the channel's secret: {e}"))?
            .ok_or("the channel's secret is missing from the vault")?;
        let t = now_ms() / 1000;
        request = request.header(
            SIGNATURE_HEADER,
            signature_header(secret.expose().as_bytes(), t, &payload),
        );
    }
    match request.body(payload).send().await {
        Ok(response) => Ok(response.status().as_u16()),
        // Without the URL: a Slack or Discord webhook URL is itself a credential.
        Err(e) => Err(describe(&e.without_url())),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer in time".into()
    } else if e.is_connect() {
        use std::error::Error;
        let mut cause = e.source();
        while let Some(inner) = cause {
            if let Some(refused) = inner.downcast_ref::<crate::browser::BrowserError>() {
                return refused.to_string();
            }
            cause = inner.source();
        }
        "could not connect to the receiver".into()
    } else {
        "the request to the receiver failed".into()
    }
}

/// How long to wait before attempt `attempts + 1`.
pub(super) fn backoff(base: Duration, cap: Duration, attempts: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    doubled.min(cap)
}

async fn send(
    inner: Arc<Inner>,
    key: Vec<u8>,
    claimed: Vec<u8>,
    mut record: DeliveryRecord,
    channel: ChannelRecord,
) {
    let outcome = attempt(&inner, &channel, &record).await;
    let now = now_ms();
    record.attempts = record.attempts.saturating_add(1);
    record.claim = None;
    let mut gone = false;
    let retry = |record: &mut DeliveryRecord, why: String| {
        record.last_error = Some(why);
        let window = i64::try_from(inner.policy.retry_window.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(record.created_at_ms) >= window {
            record.status = DeliveryStatus::Failed;
            record.finished_at_ms = Some(now);
        } else {
            let wait = backoff(
                inner.policy.retry_base,
                inner.policy.retry_cap,
                record.attempts,
            );
            record.next_attempt_ms =
                now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        }
    };
    match outcome {
        Ok(code) if (200..300).contains(&code) => {
            record.status = DeliveryStatus::Delivered;
            record.last_status_code = Some(code);
            record.last_error = None;
            record.finished_at_ms = Some(now);
        }
        Ok(410) => {
            record.status = DeliveryStatus::Failed;
            record.last_status_code = Some(410);
            record.last_error =
                Some("the receiver answered 410 Gone; the channel is disabled".into());
            record.finished_at_ms = Some(now);
            gone = true;
        }
        Ok(code) => {
            record.last_status_code = Some(code);
            retry(&mut record, format!("the receiver answered HTTP {code}"));
        }
        Err(why) => retry(&mut record, why),
    }
    tracing::info!(delivery_id = %record.delivery_id, status = ?record.status, attempts = record.attempts, code = ?record.last_status_code, "notification delivery attempt");
    match inner
        .writer
        .submit_checked(vec![cas(key, claimed, &record)])
        .await
    {
        Ok(WriteOutcome::Applied { .. }) => {}
        Ok(WriteOutcome::Refused { .. }) => {
            tracing::info!(delivery_id = %record.delivery_id, "another node took this delivery over; its outcome stands");
        }
        Err(e) => {
            tracing::warn!(error = %e, "recording a delivery's outcome failed; it will be sent again")
        }
    }
    if gone {
        disable(&inner, &channel.channel_id).await;
    }
    release(&inner, &channel.channel_id);
    inner.wake.notify_one();
}

/// Marks a channel disabled after its receiver answered 410 (compare-and-set on the
/// row as read, a few times, so an edit elsewhere is not overwritten).
async fn disable(inner: &Inner, channel_id: &str) {
    for _ in 0..3 {
        let Ok(Some(value)) = inner
            .storage
            .read_row(Table::NotificationChannels, channel_id.as_bytes())
            .await
        else {
            return;
        };
        let Ok(mut record) = decode_record::<ChannelRecord>(&value) else {
            return;
        };
        if record.disabled_at.is_some() {
            return;
        }
        record.disabled_at = Some(to_datetime(now_ms()));
        record.disabled_reason = Some("the receiver answered 410 Gone".into());
        let op = WriteOp::CompareAndSet {
            table: Table::NotificationChannels,
            key: channel_id.as_bytes().to_vec(),
            expected: Some(value),
            value: encode_record(&record),
        };
        match inner.writer.submit_checked(vec![op]).await {
            Ok(WriteOutcome::Applied { .. }) => {
                tracing::warn!(
                    channel_id,
                    "the receiver answered 410 Gone; channel disabled"
                );
                return;
            }
            Ok(WriteOutcome::Refused { .. }) => continue,
            Err(e) => {
                tracing::warn!(error = %e, channel_id, "disabling a channel failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(3600);
        assert_eq!(backoff(base, cap, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, cap, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, cap, 5), Duration::from_secs(16));
        assert_eq!(backoff(base, cap, 40), cap);
    }
}
