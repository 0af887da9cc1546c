//! A small Chrome DevTools Protocol client: one WebSocket to one browser, commands
//! matched to their answers by id, and every event handed to one channel.
//!
//! Only the dozen commands the browser actor uses are needed, so this speaks the
//! protocol's JSON directly instead of pulling in a generated binding of all of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long one DevTools command other than a navigation may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// An event the browser sent: `session_id` names the attached target it is about
/// (none for browser-level events).
#[derive(Debug)]
pub(crate) struct CdpEvent {
    pub session_id: Option<String>,
    pub method: String,
    pub params: Value,
}

/// Why a command has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CdpError {
    /// The connection is gone: the browser exited or crashed.
    #[error("the browser connection is closed")]
    Closed,
    /// No answer in time.
    #[error("{method} got no answer in time")]
    Timeout { method: String },
    /// The browser answered with an error.
    #[error("{method}: {message}")]
    Command { method: String, message: String },
}

type Reply = oneshot::Sender<Result<Value, String>>;

/// One command on its way to the connection task.
struct Outgoing {
    id: u64,
    text: String,
    reply: Reply,
}

/// The sending side of a connection. Cloning is shallow; the connection closes when
/// the browser closes it (the browser actor always ends the process).
#[derive(Clone)]
pub(crate) struct Cdp {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Cdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdp")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Cdp {
    /// Connects to the browser's DevTools WebSocket; events arrive on the receiver.
    pub async fn connect(
        ws_url: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<CdpEvent>), String> {
        // Screenshots arrive as one base64 message: allow large ones.
        let config = WebSocketConfig::default()
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, Some(config), false)
            .await
            .map_err(|e| e.to_string())?;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(ws, out_rx, event_tx));
        Ok((
            Self {
                outgoing: out_tx,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            event_rx,
        ))
    }

    /// True once the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.outgoing.is_closed()
    }

    /// Sends `method` (to the attached target `session`, or to the browser) and waits
    /// at most `timeout` for its answer.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::String(session.to_owned());
        }
        let (reply, answer) = oneshot::channel();
        self.outgoing
            .send(Outgoing {
                id,
                text: message.to_string(),
                reply,
            })
            .map_err(|_| CdpError::Closed)?;
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(CdpError::Timeout {
                method: method.to_owned(),
            }),
            Ok(Err(_)) => Err(CdpError::Closed),
            Ok(Ok(Err(message))) => Err(CdpError::Command {
                method: method.to_owned(),
                message,
            }),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }
}

/// The connection task: writes commands, routes answers to their callers and events
/// to the channel. When it ends, every waiting caller sees [`CdpError::Closed`].
async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::UnboundedSender<CdpEvent>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    loop {
        tokio::select! {
            command = outgoing.recv() => {
                let Some(command) = command else { break };
                pending.insert(command.id, command.reply);
                if sink.send(Message::text(command.text)).await.is_err() {
                    break;
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => dispatch(text.as_str(), &mut pending, &events),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // Dropping `pending` and `outgoing` tells every caller, present and future.
}

fn dispatch(
    text: &str,
    pending: &mut HashMap<u64, Reply>,
    events: &mpsc::UnboundedSender<CdpEvent>,
) {
    let Ok(mut message) = serde_json::from_str::<Value>(text) else {
        tracing::debug!("unreadable DevTools message ignored");
        return;
    };
    if let Some(id) = message.get("id").and_then(Value::as_u64) {
        if let Some(reply) = pending.remove(&id) {
            let answer = match message.get_mut("error") {
                Some(error) => Err(error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_owned()),
                None => Ok(message
                    .get_mut("result")
                    .map(Value::take)
                    .unwrap_or_default()),
            };
            let _ = reply.send(answer);
        }
        return;
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return;
    };
    let event = CdpEvent {
        session_id: message
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        method: method.to_owned(),
        params: message
            .get_mut("params")
            .map(Value::take)
            .unwrap_or_default(),
    };
    let _ = events.send(event);
}
