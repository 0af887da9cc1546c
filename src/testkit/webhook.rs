//! A fake webhook receiver: verifies every signed delivery (`palyra-signature` over
//! the body, timestamp within 5 minutes, the way the README tells receivers to),
//! answers from a script of statuses (then 200) and records what it received. It can
//! be stopped and started again on the same port (a receiver that is down).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use palyra_actors::notifications::sign::{SIGNATURE_HEADER, verify};
use serde_json::Value;

use super::served::Served;

/// Receivers should refuse deliveries signed longer ago than this.
pub const TOLERANCE_S: i64 = 300;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// The `palyra-signature` header verified under the secret, in the window; `None`
    /// without a header.
    pub signature: Option<Result<(), String>>,
    pub event_id: Option<String>,
    /// What the receiver answered.
    pub status: u16,
    /// The request's path and query, as the receiver got them.
    pub uri: String,
}

#[derive(Default)]
struct Shared {
    /// While true, requests wait (a slow receiver) and are counted in `waiting`.
    hold: tokio::sync::watch::Sender<bool>,
    waiting: std::sync::atomic::AtomicUsize,
    secret: Mutex<Option<String>>,
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
}

pub struct WebhookReceiver {
    shared: Arc<Shared>,
    served: Option<Served>,
    port: u16,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// A receiver on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let mut receiver = Self {
            shared: Arc::new(Shared::default()),
            served: None,
            port: listener.local_addr().expect("its address").port(),
        };
        receiver.serve(listener);
        receiver
    }

    /// A receiver that is down: it has a port (free now) but does not listen until
    /// [`Self::resume`].
    pub fn down() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port")
            .port();
        Self {
            shared: Arc::new(Shared::default()),
            served: None,
            port,
        }
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        let shared = Arc::clone(&self.shared);
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let shared = Arc::clone(&shared);
            async move {
                let mut held = shared.hold.subscribe();
                if *held.borrow() {
                    shared
                        .waiting
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = held.wait_for(|hold| !*hold).await;
                    shared
                        .waiting
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                receive(&shared, &uri, &headers, &body)
            }
        };
        let app = axum::Router::new()
            .route("/", axum::routing::post(handler.clone()))
            .route("/{*path}", axum::routing::post(handler));
        self.served =
            Some(Served::start_on("fake-webhook", listener, app).expect("the fake starts"));
    }

    /// Stops listening (connections are refused until [`Self::resume`]).
    pub fn pause(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop().expect("the fake stops");
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the same port");
        self.serve(listener);
    }

    /// `http://127.0.0.1:port/hook`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The signing secret the channel was created with.
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// The statuses of the next answers (then 200).
    pub fn script(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// Holds every request until [`Self::release`]: a receiver that does not answer.
    pub fn hold(&self) {
        self.shared.hold.send_replace(true);
    }

    pub fn release(&self) {
        self.shared.hold.send_replace(false);
    }

    /// Requests waiting for an answer now.
    pub fn waiting(&self) -> usize {
        self.shared
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

fn receive(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, &'static str) {
    let secret = shared.secret.lock().unwrap().clone();
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|header| {
            let now = chrono::Utc::now().timestamp();
            match &secret {
                Some(secret) => {
                    verify(secret.as_bytes(), header, body, now, TOLERANCE_S).map_err(str::to_owned)
                }
                None => Err("the receiver has no secret".to_owned()),
            }
        });
    let forged = matches!(signature, Some(Err(_)));
    let status = if forged {
        401
    } else {
        shared.script.lock().unwrap().pop_front().unwrap_or(200)
    };
    shared.received.lock().unwrap().push(Received {
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        signature,
        event_id: headers
            .get("palyra-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status,
        uri: uri.to_string(),
    });
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "")
}
