//! Authentication of every protected route, its role check, and CSRF enforcement, in
//! one middleware.
//!
//! A request is authenticated by `Authorization: Bearer <token>` (the admin token,
//! which is `root`, or an operator's API token `palyra_...`; scripts, the CLI; no CSRF
//! needed because browsers never attach it by themselves) or by the session cookie.
//! The caller's role (root: admin; a session or token: its own) must be at least the
//! role the route declared in the route table, else 403.
//! A root session is refused once the admin token is not the one it was created with.
//! Every cookie-authenticated request, reads included, must carry `x-palyra-csrf-token`
//! equal to the session's token: cookies are shared by every port of a host, so a
//! server on another localhost port that the operator's browser visits receives the
//! cookie, and the cookie alone must not read anything. The token is answered only by
//! login and handoff redemption (never by a request made with the cookie), and the
//! console keeps it in sessionStorage. Because the check sits here and every protected
//! route is layered with it, no route can forget it.
//! A cookie is checked against the sessions index without waiting; only when the index
//! cannot vouch for it alone (a database other nodes share: a session it has not seen,
//! or one it may no longer believe) does the request wait for a read of its row.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use palyra_actors::Authenticated;
use palyra_actors::operators::{Role, TOKEN_PREFIX, TokenCheck};
use palyra_actors::sessions::SessionCheck;
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::audit::Audit;
use crate::error::ApiError;
use crate::request::{Caller, peer_ip};
use crate::state::AppState;

// The cookie names belong to the request; they are also named here, next to the check
// that reads them, where the CLI finds them.
pub use crate::request::{SECURE_SESSION_COOKIE, SESSION_COOKIE};

/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-palyra-csrf-token";

/// Constant-time comparison of a presented admin token with the configured one.
/// Both sides are hashed first, so neither the length nor the content leaks.
pub fn admin_token_matches(state: &AppState, presented: &str) -> bool {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    digest.ct_eq(&state.admin_token_digest).into()
}

/// Every value of the session cookie the request carries (another app on a different
/// localhost port can set a cookie of the same name; it must not hide ours).
pub fn session_cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Puts [`Authenticate`], the middleware of every protected route, around a route.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    state: AppState,
    need: Role,
}

impl AuthLayer {
    /// The middleware of a route that needs at least `need`.
    pub fn new(state: AppState, need: Role) -> Self {
        Self { state, need }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            state: self.state.clone(),
            need: self.need,
            inner,
        }
    }
}

/// The middleware on every protected route: the route runs with the [`Caller`] in
/// its extensions, or the request is answered with the refusal. A hand-written service
/// with a concrete future, as the request pipeline is, because it runs on nearly every
/// request.
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    state: AppState,
    need: Role,
    inner: S,
}

impl<S> Service<Request> for Authenticate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let need = self.need;
        match authorize(&self.state, &req).and_then(|v| permit(v, need)) {
            Ok(Verdict::Caller(caller)) => {
                req.extensions_mut().insert(caller);
                AuthFuture::Allowed {
                    future: self.inner.call(req),
                }
            }
            Ok(later) => {
                // The service that was polled ready goes with the request; a clone
                // takes its place for the next one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let state = self.state.clone();
                AuthFuture::Rereading {
                    future: Box::pin(async move {
                        // The parts only: a request's body is not `Sync`.
                        let (mut parts, body) = req.into_parts();
                        let authorized = resolve(&state, later, &parts)
                            .await
                            .and_then(|caller| permit(Verdict::Caller(caller), need));
                        match authorized {
                            Ok(Verdict::Caller(caller)) => {
                                parts.extensions.insert(caller);
                                inner.call(Request::from_parts(parts, body)).await
                            }
                            Ok(_) => {
                                Ok(ApiError::Internal("unresolved caller".into()).into_response())
                            }
                            Err(e) => Ok(refuse(&state, &parts, e)),
                        }
                    }),
                }
            }
            Err(e) => {
                let (parts, _) = req.into_parts();
                AuthFuture::Refused {
                    response: Some(refuse(&self.state, &parts, e)),
                }
            }
        }
    }
}

/// The answer to a refused request; a wrong bearer token is also a failed login.
fn refuse(state: &AppState, req: &Parts, e: ApiError) -> Response {
    if matches!(e, ApiError::Unauthorized(_)) && req.headers.contains_key(header::AUTHORIZATION) {
        // A wrong token is a failed login, whichever way it came. The route
        // template, not the path: a path can be long and is the client's to choose.
        let route = req
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("an unknown route", |m| m.as_str());
        Audit::from_parts(&req.extensions, state).submit_unauthenticated_failure(
            &state.auth_audit_budget,
            "bearer",
            format!("wrong bearer token for {} {route}", req.method),
        );
    }
    e.into_response()
}

/// Refuses a caller whose role is below the route's; anything undecided passes on.
fn permit(verdict: Verdict, need: Role) -> Result<Verdict, ApiError> {
    if let Verdict::Caller(caller) = &verdict
        && caller.role() < need
    {
        return Err(ApiError::Forbidden {
            need: need.name(),
            have: caller.role().name(),
        });
    }
    Ok(verdict)
}

/// The future of a request that waits for a read of its session's row.
type Rereading = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

pin_project! {
    /// The route's future, the refusal, or (rarely: see the module doc) the read of a
    /// session's row and then the route.
    #[project = AuthFutureProj]
    pub enum AuthFuture<F> {
        Allowed { #[pin] future: F },
        Refused { response: Option<Response> },
        Rereading { future: Rereading },
    }
}

impl<F> std::fmt::Debug for AuthFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthFuture::Allowed { .. } => "Allowed",
            AuthFuture::Refused { .. } => "Refused",
            AuthFuture::Rereading { .. } => "Rereading",
        })
    }
}

impl<F> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthFutureProj::Allowed { future } => future.poll(cx),
            AuthFutureProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| panic!("the auth middleware polled after it refused")))),
            AuthFutureProj::Rereading { future } => future.as_mut().poll(cx),
        }
    }
}

/// What the middleware can tell at once: the caller, the sessions whose rows decide,
/// or an API token whose row decides.
enum Verdict {
    Caller(Caller),
    Reread(Vec<[u8; 32]>),
    Token {
        token: String,
        // The peer was over its failure budget: only a right token gets in.
        throttled: Option<u64>,
    },
}

fn authorize(state: &AppState, req: &Request) -> Result<Verdict, ApiError> {
    let headers = req.headers();
    if headers.contains_key(header::AUTHORIZATION) {
        let peer = peer_ip(req.extensions());
        // From the network a throttled peer is refused before its token is looked at;
        // from loopback the right token still gets in, so wrong attempts on the host
        // cannot lock its own scripts out.
        let throttled = state.auth_throttle.check(peer).err();
        if let Some(retry_after_s) = throttled
            && !peer.is_loopback()
        {
            return Err(ApiError::TooManyRequests { retry_after_s });
        }
        return match bearer_token(headers) {
            Some(token) if admin_token_matches(state, token) => Ok(Verdict::Caller(Caller::Root)),
            Some(token) if token.starts_with(TOKEN_PREFIX) => Ok(Verdict::Token {
                token: token.to_owned(),
                throttled,
            }),
            _ => Err(bearer_failed(state, peer, throttled)),
        };
    }
    let mut cookies = session_cookies(headers, state.config.session_cookie_name()).peekable();
    if cookies.peek().is_none() {
        return Err(ApiError::Unauthorized(
            "log in first: send the session cookie or a bearer token",
        ));
    }
    let mut reread = Vec::new();
    for cookie in cookies {
        match state.sessions.check(cookie) {
            SessionCheck::Valid(auth) => {
                return admit(state, headers, auth).map(Verdict::Caller);
            }
            SessionCheck::Refused => {}
            SessionCheck::Reread(digest) => reread.push(digest),
        }
    }
    if reread.is_empty() {
        return Err(unknown_session());
    }
    Ok(Verdict::Reread(reread))
}

/// A wrong bearer token: counted, and refused with 401 (or 429 while throttled).
fn bearer_failed(state: &AppState, peer: std::net::IpAddr, throttled: Option<u64>) -> ApiError {
    match throttled {
        Some(retry_after_s) => ApiError::TooManyRequests { retry_after_s },
        None => {
            state.auth_throttle.record_failure(peer);
            ApiError::Unauthorized("invalid bearer token")
        }
    }
}

/// Decides what [`authorize`] could not alone: a read of session rows or of a token's.
async fn resolve(state: &AppState, verdict: Verdict, req: &Parts) -> Result<Caller, ApiError> {
    match verdict {
        Verdict::Caller(caller) => Ok(caller),
        Verdict::Reread(digests) => reread(state, &digests, &req.headers).await,
        Verdict::Token { token, throttled } => match state.operators.check_token(&token).await? {
            Some(TokenCheck::Valid(auth)) => Ok(Caller::Token(auth)),
            Some(TokenCheck::Refused(reason)) => {
                tracing::info!(reason, "bearer token refused");
                Err(bearer_failed(state, peer_ip(&req.extensions), throttled))
            }
            None => Err(bearer_failed(state, peer_ip(&req.extensions), throttled)),
        },
    }
}

/// Reads the rows of the sessions the index could not vouch for, in cookie order. A
/// read that fails is `storage_unavailable`, not 401: the session may well be valid,
/// and a client told 401 would throw its login away.
async fn reread(
    state: &AppState,
    digests: &[[u8; 32]],
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let mut failed = None;
    for digest in digests {
        match state.sessions.reread(*digest).await {
            Ok(Some(auth)) => return admit(state, headers, auth),
            Ok(None) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    Err(failed.map_or_else(unknown_session, ApiError::from))
}

fn unknown_session() -> ApiError {
    ApiError::Unauthorized("the session is unknown or has expired")
}

/// A valid session's request: CSRF-checked whatever its method (see the module doc),
/// then the idle timeout slides.
fn admit(state: &AppState, headers: &HeaderMap, auth: Authenticated) -> Result<Caller, ApiError> {
    if auth.session.principal == palyra_actors::sessions::ROOT_PRINCIPAL
        && auth.credential != state.root_credential()
    {
        // Made under an admin token the daemon no longer has: the token was changed
        // to lock out whoever held the old one, sessions included.
        return Err(ApiError::Unauthorized(
            "the admin token changed since this session began; log in again",
        ));
    }
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !presented.is_some_and(|p| auth.csrf_matches(p)) {
        return Err(ApiError::CsrfRejected);
    }
    state.sessions.touch(&auth);
    Ok(Caller::Session(auth))
}
