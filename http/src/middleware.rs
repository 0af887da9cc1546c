//! The request pipeline around every route: one tower layer, [`PipelineLayer`], whose
//! service does in order what used to be five stacked middlewares:
//! - the request context: a request id (taken from a sane `x-request-id` or made up)
//!   echoed in the response, a tracing span carrying it, the request metrics, the
//!   posture's last remote admin access, and the request log line (method and path
//!   only: query strings carry handoff tokens, headers carry credentials);
//! - the Host check: a request naming none of the daemon's names is refused with 421
//!   before anything else (DNS rebinding of the daemon itself);
//! - security headers: nosniff, no framing, no referrer, a default CSP, HSTS under TLS,
//!   `Cache-Control: no-store` on the admin API;
//! - the rate limit: per-peer request rates on the admin API, 429 with Retry-After;
//! - [`run_to_completion`]: a state-changing request's handler runs to its end even if
//!   the client goes away, so a change and its audit event are never split by a
//!   disconnect.
//!
//! It is one hand-written service with one concrete future rather than a stack of
//! `from_fn` layers: each of those boxed its future and cloned the service below it on
//! every request, which cost session checks about a fifth of their throughput.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tower::{Layer, Service};

use crate::error::{ApiError, InternalCause};
use crate::request::{REQUEST_ID, RequestId, peer_ip};
use crate::state::{AppState, RemoteAccess};

/// Paths of the admin API (rate-limited, no-store, remote access noted).
fn is_admin_path(path: &str) -> bool {
    path.starts_with("/console/") || path == "/metrics"
}

/// The method as a metric label: the standard methods by name, anything else (a
/// client can send any token) as `other`, so clients cannot add series.
fn method_label(method: &Method) -> &'static str {
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

/// True when the request names one of the daemon's own hosts (or none: browsers always
/// send one, so a request without is not a rebound page). A page on an attacker's name
/// that DNS-rebinds to this daemon still sends its own name, and is refused.
fn host_allowed(config: &crate::state::HttpConfig, req: &Request) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    config.allowed_hosts.contains(&name) || (config.any_ip_host && name.parse::<IpAddr>().is_ok())
}

/// True for a request whose handler may stop where the client leaves it.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSP of responses that set none (JSON, errors): nothing may load or frame them.
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

fn add_security_headers(response: &mut Response, admin: bool, tls: bool) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page may loosen it for itself (the handoff link's page, `console.rs`).
    if !headers.contains_key(header::REFERRER_POLICY) {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if admin {
        // Sessions, CSRF tokens and handoff links must not sit in any cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Runs the handler of a state-changing request on its own task. hyper drops a
/// request's future when its client disconnects; an actor may already have committed
/// the change by then, and the handler's audit event would be lost with the future.
fn run_to_completion<S>(inner: &mut S, req: Request) -> Stage<S::Future>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    if is_safe(req.method()) {
        Stage::Running {
            future: inner.call(req),
        }
    } else {
        Stage::Spawned {
            handle: tokio::spawn(inner.call(req)),
        }
    }
}

/// Puts [`Pipeline`] around a service.
#[derive(Debug, Clone)]
pub struct PipelineLayer {
    state: AppState,
}

impl PipelineLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for PipelineLayer {
    type Service = Pipeline<S>;

    fn layer(&self, inner: S) -> Pipeline<S> {
        Pipeline {
            state: self.state.clone(),
            inner,
        }
    }
}

/// The pipeline's service (see the module documentation).
#[derive(Debug, Clone)]
pub struct Pipeline<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Pipeline<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = PipelineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
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
        let admin = is_admin_path(&path);
        let stage = span.in_scope(|| {
            if !host_allowed(&self.state.config, &req) {
                tracing::warn!(%peer, "refused a request for another host name (421)");
                return Stage::Answered {
                    response: Some(ApiError::MisdirectedHost.into_response()),
                };
            }
            if let Some(limits) = &self.state.rate_limits
                && admin
                && let Err(retry_after_s) = limits.check(peer)
            {
                return Stage::Answered {
                    response: Some(ApiError::RateLimited { retry_after_s }.into_response()),
                };
            }
            run_to_completion(&mut self.inner, req)
        });
        PipelineFuture {
            stage,
            request: RequestContext {
                state: self.state.clone(),
                id,
                method,
                path,
                matched,
                peer,
                admin,
                span,
                started,
            },
        }
    }
}

/// What the pipeline keeps of a request to finish its response.
#[derive(Debug)]
struct RequestContext {
    state: AppState,
    id: String,
    method: Method,
    path: String,
    matched: Option<MatchedPath>,
    peer: IpAddr,
    admin: bool,
    span: tracing::Span,
    started: Instant,
}

impl RequestContext {
    /// The work after the handler: security headers, then metrics, the remote
    /// access, the log line and the request id header.
    fn finish(&self, mut response: Response) -> Response {
        add_security_headers(&mut response, self.admin, self.state.config.cookie_secure);
        let elapsed = self.started.elapsed();
        let status = response.status().as_u16();
        self.state.metrics.observe_request(
            self.matched.as_ref().map(|m| m.as_str()),
            method_label(&self.method),
            status,
            elapsed,
        );
        if !self.peer.is_loopback() && self.admin {
            let access = RemoteAccess {
                at: palyra_actors::to_datetime(palyra_actors::now_ms()),
                peer: self.peer.to_string(),
                method: self.method.to_string(),
                // Bounded: the path is the client's to choose.
                path: self.path.chars().take(256).collect(),
                status,
            };
            *self
                .state
                .last_remote_access
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(access);
        }
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let path = &self.path;
        self.span.in_scope(|| {
            if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
                tracing::error!(%path, status, elapsed_ms, cause = %cause, "request failed");
            } else {
                tracing::debug!(%path, status, elapsed_ms, "request");
            }
        });
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert(REQUEST_ID.clone(), value);
        }
        response
    }
}

pin_project! {
    /// Where a request is: answered by the pipeline itself (rate-limited), running in
    /// the caller's task, or running on its own task.
    #[project = StageProj]
    enum Stage<F> {
        Answered { response: Option<Response> },
        Running { #[pin] future: F },
        Spawned { handle: JoinHandle<Result<Response, Infallible>> },
    }
}

pin_project! {
    /// The pipeline's future: the inner service's, inside the request's span, and then
    /// the work of [`RequestContext::finish`].
    #[derive(Debug)]
    pub struct PipelineFuture<F> {
        #[pin]
        stage: Stage<F>,
        request: RequestContext,
    }
}

impl<F> std::fmt::Debug for Stage<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Answered { .. } => "Answered",
            Stage::Running { .. } => "Running",
            Stage::Spawned { .. } => "Spawned",
        })
    }
}

impl<F> Future for PipelineFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = {
            let _entered = this.request.span.enter();
            match this.stage.project() {
                StageProj::Answered { response } => response
                    .take()
                    .unwrap_or_else(|| panic!("the request pipeline polled after it answered")),
                StageProj::Running { future } => match ready!(future.poll(cx)) {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                StageProj::Spawned { handle } => match ready!(Pin::new(handle).poll(cx)) {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(e) => {
                        ApiError::Internal(format!("handler task failed: {e}")).into_response()
                    }
                },
            }
        };
        Poll::Ready(Ok(this.request.finish(response)))
    }
}
