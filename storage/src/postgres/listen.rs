//! The node's listening connection: `LISTEN palyra_changes`, turned into [`Change`]s.
//!
//! It runs as long as the database is open, reconnecting with doubling waits. A lost
//! connection is announced at once ([`Change::Lost`]) and a new one with
//! [`Change::Resync`] (what changed in between was not heard). A connection that
//! stops answering is found by a ping every few seconds, bounded by the connect
//! timeout, so a silent partition is a loss too, not a deaf node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use crate::changes::Change;
use crate::postgres::connect::Connector;
use crate::schema::Table;

/// Channel the triggers of migration 0002 notify.
const CHANNEL: &str = "palyra_changes";
/// How often an idle listening connection is checked.
const PING: Duration = Duration::from_secs(3);

/// Listens until `closed` is set (the database was closed).
pub(crate) async fn listen(
    connector: Connector,
    feed: broadcast::Sender<Change>,
    closed: Arc<AtomicBool>,
) {
    let mut backoff = connector.config.connect_backoff;
    loop {
        let heard = listen_once(&connector, &feed, &closed).await;
        let _ = feed.send(Change::Lost);
        if heard {
            backoff = connector.config.connect_backoff;
        }
        if closed.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(target_db = %connector.config.describe(), retry_in_ms = backoff.as_millis() as u64, "the change feed's connection is down; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(connector.config.max_backoff);
    }
}

/// One connection's life; true if it got as far as listening.
async fn listen_once(
    connector: &Connector,
    feed: &broadcast::Sender<Change>,
    closed: &AtomicBool,
) -> bool {
    let config = &connector.config;
    let attempt = connector.pg.connect(connector.tls.clone());
    let Ok(Ok((client, mut connection))) =
        tokio::time::timeout(config.connect_timeout, attempt).await
    else {
        return false;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection is driven here, so its notifications are not dropped.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let listening = tokio::time::timeout(
        config.connect_timeout,
        client.batch_execute(&format!("LISTEN {CHANNEL}")),
    )
    .await;
    if !matches!(listening, Ok(Ok(()))) {
        driver.abort();
        return false;
    }
    let _ = feed.send(Change::Resync);
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(payload) => {
                    if let Some(change) = parse(&payload, &config.node_id) {
                        let _ = feed.send(change);
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                let alive = tokio::time::timeout(config.connect_timeout, client.simple_query("SELECT 1")).await;
                if !matches!(alive, Ok(Ok(_))) || closed.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    driver.abort();
    true
}

/// `"<table> <node id> <key hex>"` to a change, unless this node wrote it.
fn parse(payload: &str, own_node: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ' ');
    let table = Table::from_name(parts.next()?)?;
    let node = parts.next()?;
    if !own_node.is_empty() && node == own_node {
        return None;
    }
    let hex = parts.next()?;
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    Some(Change::Row { table, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_own_writes_are_left_out() {
        assert_eq!(
            parse("objectives node-b 6f31", "node-a"),
            Some(Change::Row {
                table: Table::Objectives,
                key: b"o1".to_vec()
            })
        );
        assert_eq!(parse("objectives node-a 6f31", "node-a"), None);
        assert_eq!(parse("nope node-b 6f31", "node-a"), None);
        assert_eq!(parse("objectives node-b 6f3", "node-a"), None);
    }
}
