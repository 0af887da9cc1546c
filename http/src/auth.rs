//! Authentication of every protected route, and CSRF enforcement, in one middleware.
//!
//! A request is authenticated by `Authorization: Bearer <admin token>` (scripts, the
//! CLI; no CSRF needed because browsers never attach it by themselves) or by the
//! session cookie. A cookie-authenticated request with any method but GET, HEAD or
//! OPTIONS must carry `x-palyra-csrf-token` equal to the session's token. Because the
//! check sits here and every protected route is layered with it, no route can forget it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware on every protected route.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authorize(&state, &req) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            if matches!(e, ApiError::Unauthorized(_))
                && req.headers().contains_key(header::AUTHORIZATION)
            {
                // A wrong admin token is a failed login, whichever way it came.
                // The route template, not the path: a path can be long and is the
                // client's to choose.
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or("an unknown route", |m| m.as_str());
                Audit::from_parts(req.extensions(), &state)
                    .failure(
                        palyra_actors::audit::AuditKind::LoginFailed,
                        "admin:bearer",
                        format!("wrong bearer token for {} {route}", req.method()),
                    )
                    .await;
            }
            e.into_response()
        }
    }
}

fn authorize(state: &AppState, req: &Request) -> Result<Caller, ApiError> {
    let headers = req.headers();
    if headers.contains_key(header::AUTHORIZATION) {
        let peer = peer_ip(req.extensions());
        state
            .auth_throttle
            .check(peer)
            .map_err(|retry_after_s| ApiError::TooManyRequests { retry_after_s })?;
        return match bearer_token(headers) {
            Some(token) if admin_token_matches(state, token) => Ok(Caller::Bearer),
            _ => {
                state.auth_throttle.record_failure(peer);
                Err(ApiError::Unauthorized("invalid bearer token"))
            }
        };
    }
    let mut cookies = session_cookies(headers, state.config.session_cookie_name()).peekable();
    if cookies.peek().is_none() {
        return Err(ApiError::Unauthorized(
            "log in first: send the session cookie or an admin bearer token",
        ));
    }
    let Some(auth) = cookies.find_map(|cookie| state.sessions.validate(cookie)) else {
        return Err(ApiError::Unauthorized(
            "the session is unknown or has expired",
        ));
    };
    if !is_safe(req.method()) {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|p| auth.csrf_matches(p)) {
            return Err(ApiError::CsrfRejected);
        }
    }
    state.sessions.touch(&auth);
    Ok(Caller::Session(auth))
}
