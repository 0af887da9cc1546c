//! The middleware around every route, outermost first:
//! - [`request_context`]: a request id (taken from a sane `x-request-id` or made up)
//!   echoed in the response, a tracing span carrying it, the request metrics, the
//!   posture's last remote admin access, and the request log line (method and path
//!   only: query strings carry handoff tokens, headers carry credentials).
//! - [`security_headers`]: nosniff, no framing, no referrer, a default CSP, HSTS
//!   under TLS, `Cache-Control: no-store` on the admin API.
//! - [`rate_limit`]: per-peer request rates on the admin API, 429 with Retry-After.
//! - [`run_to_completion`]: a state-changing request's handler runs to its end even if
//!   the client goes away, so a change and its audit event are never split by a
//!   disconnect.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::auth::peer_ip;
use crate::error::{ApiError, InternalCause};
use crate::routes::deployment::RemoteAccess;

/// The request id header, read and echoed.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Paths of the admin API (rate-limited, no-store, remote access noted).
fn is_admin_path(path: &str) -> bool {
    path.starts_with("/console/") || path == "/metrics"
}

/// The method as a metric label: the standard methods by name, anything else (a
/// client can send any token) as `other`, so clients cannot add series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A client's request id is kept when it is short and plain; otherwise one is made.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let bytes: [u8; 8] = rand::random();
            let mut id = String::with_capacity(16);
            for b in bytes {
                id.push(char::from(HEX[usize::from(b >> 4)]));
                id.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            id
        })
}

/// The request's id, in its extensions for handlers (the audit log records it).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route template, not the path: ids in paths would explode the label space.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let peer = peer_ip(req.extensions());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe_request(
        matched.as_ref().map(|m| m.as_str()),
        method_label(&method),
        status,
        elapsed,
    );
    if !peer.is_loopback() && is_admin_path(&path) {
        let access = RemoteAccess {
            at: palyra_actors::to_datetime(palyra_actors::now_ms()),
            peer: peer.to_string(),
            method: method.to_string(),
            // Bounded: the path is the client's to choose.
            path: path.chars().take(256).collect(),
            status,
        };
        *state
            .last_remote_access
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(access);
    }
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
            tracing::error!(%path, status, elapsed_ms, cause = %cause, "request failed");
        } else {
            tracing::debug!(%path, status, elapsed_ms, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

/// The CSP of responses that set none (JSON, errors): nothing may load or frame them.
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let admin = is_admin_path(req.uri().path());
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    if state.config.cookie_secure {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if admin {
        // Sessions, CSRF tokens and handoff links must not sit in any cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limits) = &state.rate_limits
        && is_admin_path(req.uri().path())
        && let Err(retry_after_s) = limits.check(peer_ip(req.extensions()))
    {
        return ApiError::RateLimited { retry_after_s }.into_response();
    }
    next.run(req).await
}

/// Runs the handler of a state-changing request on its own task. hyper drops a
/// request's future when its client disconnects; an actor may already have committed
/// the change by then, and the handler's audit event would be lost with the future.
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("handler task failed: {e}")).into_response(),
    }
}
