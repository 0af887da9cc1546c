//! A small Chrome DevTools Protocol client: the pipe of one browser (its fds 3 and 4,
//! `--remote-debugging-pipe`, one JSON message per NUL-terminated frame), commands
//! matched to their answers by id, and every event handed to one channel.
//!
//! Only the dozen commands the browser actor uses are needed, so this speaks the
//! protocol's JSON directly instead of pulling in a generated binding of all of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// The largest message read: screenshots arrive as one base64 message.
const MAX_MESSAGE: u64 = 256 << 20;

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
    /// Speaks DevTools over a browser's pipe; events arrive on the receiver.
    pub fn over_pipe(
        commands: pipe::Sender,
        answers: pipe::Receiver,
    ) -> (Self, mpsc::UnboundedReceiver<CdpEvent>) {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(commands, answers, out_rx, event_tx));
        (
            Self {
                outgoing: out_tx,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            event_rx,
        )
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
async fn run(
    mut commands: pipe::Sender,
    answers: pipe::Receiver,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::UnboundedSender<CdpEvent>,
) {
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(64);
    // Reading runs apart from writing: a frame half read must not be lost when a
    // command is sent meanwhile (a select! would drop the read in progress).
    tokio::spawn(read_frames(answers, frames_tx));
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    loop {
        tokio::select! {
            command = outgoing.recv() => {
                let Some(command) = command else { break };
                pending.insert(command.id, command.reply);
                let mut frame = command.text.into_bytes();
                frame.push(0);
                if commands.write_all(&frame).await.is_err() {
                    break;
                }
            }
            frame = frames.recv() => match frame {
                Some(frame) => match std::str::from_utf8(&frame) {
                    Ok(text) => dispatch(text, &mut pending, &events),
                    Err(_) => tracing::debug!("a DevTools message that is not UTF-8 ignored"),
                },
                None => break,
            },
        }
    }
    // Dropping `pending` and `outgoing` tells every caller, present and future.
}

/// Reads NUL-terminated frames until the pipe ends (the browser exited) or a frame
/// is larger than [`MAX_MESSAGE`].
async fn read_frames(answers: pipe::Receiver, frames: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::with_capacity(64 << 10, answers);
    loop {
        let mut frame = Vec::new();
        let read = (&mut reader)
            .take(MAX_MESSAGE + 1)
            .read_until(0, &mut frame)
            .await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) if frame.last() != Some(&0) => {
                tracing::warn!(
                    "the browser's DevTools pipe ended mid-message or sent one too large"
                );
                return;
            }
            Ok(_) => {
                frame.pop();
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
        }
    }
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
