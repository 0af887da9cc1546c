//! A fake model provider's `GET /v1/models` on loopback, the API-key check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::testkit::served::Served;

/// The key decides the answer:
/// `good-*` 200, `limited-*` 429 with Retry-After 7, `broken-*` 500, anything else 401.
#[derive(Debug)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    /// Calls of `/v1/models`.
    pub calls: Arc<AtomicUsize>,
    /// Every bearer token received, to prove what the daemon sent.
    pub keys_seen: Arc<Mutex<Vec<String>>>,
    served: Served,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let keys_seen = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (Arc::clone(&calls), Arc::clone(&keys_seen));
        let app = Router::new().route(
            "/v1/models",
            get(move |headers: HeaderMap| {
                let (c, k) = (Arc::clone(&c), Arc::clone(&k));
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let key = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or("")
                        .to_owned();
                    k.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(key.clone());
                    if key.starts_with("good-") {
                        (StatusCode::OK, r#"{"object":"list","data":[]}"#).into_response()
                    } else if key.starts_with("limited-") {
                        let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
                        r
                    } else if key.starts_with("broken-") {
                        (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_api_key"}"#).into_response()
                    }
                }
            }),
        );
        let served = Served::start("fake-provider", app).expect("the fake provider starts");
        Self {
            addr: served.addr(),
            calls,
            keys_seen,
            served,
        }
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}
