//! Console authentication: login, the current session, logout and browser handoff.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use palyra_actors::SecretString;
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::auth::admin_token_matches;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::request::{Caller, peer_ip};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::ConsoleSession;
use palyra_actors::audit::AuditKind;

/// Principal of a login that names none.
pub const DEFAULT_PRINCIPAL: &str = "admin:local";
/// Device id of a login that names none.
pub const DEFAULT_DEVICE_ID: &str = "unnamed-device";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The daemon's admin token.
    #[schema(value_type = String)]
    pub admin_token: SecretString,
    /// `admin:` followed by 1 to 64 of `A-Z a-z 0-9 . _ @ -`; default `admin:local`.
    #[schema(pattern = r"^admin:[A-Za-z0-9._@-]{1,64}$")]
    pub principal: Option<String>,
    /// 1 to 128 of `A-Z a-z 0-9 . _ : -`; default `unnamed-device`.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub device_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// Same-origin path the browser lands on; default `/`. It starts with `/`, not
    /// `//`, and holds no backslash or control character.
    #[schema(
        pattern = r"^/([^/\\\x00-\x1f\x7f-\x9f][^\\\x00-\x1f\x7f-\x9f]*)?$",
        max_length = 2048
    )]
    pub redirect_path: Option<String>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct HandoffResponse {
    /// Open this URL in a browser within `expires_at`; it works once.
    pub handoff_url: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for HandoffResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the token.
        f.debug_struct("HandoffResponse")
            .field("handoff_url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsumeQuery {
    /// The handoff token from `handoff_url`.
    #[param(value_type = Option<String>)]
    pub token: Option<SecretString>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffSessionRequest {
    /// The handoff token from `handoff_url`.
    #[schema(value_type = String)]
    pub token: SecretString,
}

fn session_cookie_header(state: &AppState, token: &SecretString) -> HeaderValue {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
        state.config.session_cookie_name(),
        token.expose()
    );
    // Tokens are base64url, always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie_header(state: &AppState) -> HeaderValue {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}",
        state.config.session_cookie_name()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Exchanges the admin token for a console session (cookie plus CSRF token).
#[utoipa::path(post, path = "/console/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = ConsoleSession),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong admin token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let peer = peer_ip(&extensions);
    let principal = req
        .principal
        .unwrap_or_else(|| DEFAULT_PRINCIPAL.to_owned());
    // Refused while throttled, before the token is even looked at: not audited one by
    // one (the failures that caused the throttle are), so a flood adds nothing.
    state
        .auth_throttle
        .check(peer)
        .map_err(|retry_after_s| ApiError::TooManyRequests { retry_after_s })?;
    let audit = Audit::from_parts(&extensions, &state);
    if !admin_token_matches(&state, req.admin_token.expose()) {
        state.auth_throttle.record_failure(peer);
        tracing::warn!(%peer, "console login failed: wrong admin token");
        // The principal is only the caller's claim: the actor stays anonymous.
        let claimed = if palyra_actors::sessions::validate_principal(&principal).is_ok() {
            principal.as_str()
        } else {
            "an invalid principal"
        };
        audit
            .failure(
                AuditKind::LoginFailed,
                claimed,
                format!("wrong admin token; claimed {claimed}"),
            )
            .await;
        return Err(ApiError::Unauthorized("wrong admin token"));
    }
    let audit = audit.as_actor(&principal);
    let device_id = req
        .device_id
        .unwrap_or_else(|| DEFAULT_DEVICE_ID.to_owned());
    let issued = state
        .sessions
        .create(principal, device_id, Vec::new())
        .await?;
    tracing::info!(%peer, principal = %issued.session.principal, "console login");
    audit
        .success(AuditKind::Login, &issued.session.principal, "admin token")
        .await;
    let mut response = Json(issued.session).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&state, &issued.token),
    );
    Ok(response)
}

/// The current console session, including its CSRF token.
#[utoipa::path(get, path = "/console/v1/auth/session", tag = "auth",
    responses(
        SecuredRead,
        (status = 200, description = "The session", body = ConsoleSession),
        (status = 401, description = "No valid session (bearer requests have none)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn session(
    Extension(caller): Extension<Caller>,
) -> Result<Json<ConsoleSession>, ApiError> {
    match caller {
        Caller::Session(auth) => Ok(Json(auth.session)),
        // The bearer token is valid but is not a console session.
        Caller::Bearer => Err(palyra_actors::ActorError::NoSession.into()),
    }
}

/// Revokes the current session and clears the cookie.
#[utoipa::path(post, path = "/console/v1/auth/logout", tag = "auth",
    responses(
        SecuredWrite,
        (status = 204, description = "Logged out; the cookie is cleared")),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    audit: Audit,
) -> Result<Response, ApiError> {
    if let Caller::Session(auth) = &caller {
        match state.sessions.revoke(auth.digest).await {
            // Revoked concurrently: the outcome the caller asked for.
            Ok(()) | Err(palyra_actors::ActorError::NoSession) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(principal = %auth.session.principal, "console logout");
        audit
            .success(
                AuditKind::SessionRevoked,
                &auth.session.principal,
                format!("logout of device {}", auth.session.device_id),
            )
            .await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie_header(&state));
    Ok(response)
}

/// Mints a single-use link that logs a browser in (valid 60 seconds).
#[utoipa::path(post, path = "/console/v1/auth/browser-handoff", tag = "auth",
    request_body(content = Option<HandoffRequest>, description = "Optional; an empty body means redirect to /"),
    responses(
        SecuredJsonWrite,
        (status = 200, description = "The handoff link", body = HandoffResponse),
        (status = 400, description = "Invalid redirect path or malformed body", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn mint_handoff(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    audit: Audit,
    OptionalJson(req): OptionalJson<HandoffRequest>,
) -> Result<Json<HandoffResponse>, ApiError> {
    let redirect_path = req.redirect_path.unwrap_or_else(|| "/".to_owned());
    let minted = state
        .handoffs
        .mint(caller.principal().to_owned(), redirect_path)
        .await?;
    tracing::info!(principal = %caller.principal(), "browser handoff minted");
    audit
        .success(
            AuditKind::HandoffMinted,
            caller.principal(),
            format!("expires {}", minted.expires_at.to_rfc3339()),
        )
        .await;
    Ok(Json(HandoffResponse {
        handoff_url: format!(
            "{}/console/v1/auth/browser-handoff/consume?token={}",
            state
                .config
                .public_base_url
                .as_deref()
                .unwrap_or(&state.config.loopback_base_url),
            minted.token.expose()
        ),
        expires_at: minted.expires_at,
    }))
}

/// Consumes a handoff link: sets the session cookie and redirects (303).
#[utoipa::path(get, path = "/console/v1/auth/browser-handoff/consume", tag = "auth",
    params(ConsumeQuery),
    responses(
        (status = 303, description = "Logged in; redirect to the handoff's path"),
        (status = 400, description = "Malformed query (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Unknown, expired or used token (a browser, which accepts text/html, gets an HTML page)", content(
            (ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn consume_handoff(
    State(state): State<AppState>,
    audit: Audit,
    method: axum::http::Method,
    request_headers: HeaderMap,
    query: Result<ApiQuery<ConsumeQuery>, ApiError>,
) -> Response {
    // axum answers HEAD with the GET handler; a link checker's HEAD must not use up
    // the link.
    if method == axum::http::Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    match consume(&state, &audit, query).await {
        Ok(response) => response,
        // A browser that opens a used or expired link gets a page it can read, with
        // the way to the login form; scripts keep the JSON error.
        Err(e) if crate::console::wants_html(&request_headers) => {
            crate::console::handoff_failed_page(e)
        }
        Err(e) => e.into_response(),
    }
}

async fn consume(
    state: &AppState,
    audit: &Audit,
    query: Result<ApiQuery<ConsumeQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiQuery(query) = query?;
    let Some(token) = query.token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::Unauthorized("the handoff token is missing"));
    };
    let consumed = consume_audited(state, audit, token.expose(), "link").await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        session_cookie_header(state, &consumed.issued.token),
    );
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&consumed.redirect_path).unwrap_or(HeaderValue::from_static("/")),
    );
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

/// Consumes a handoff token for a script client: sets the cookie, returns the session.
#[utoipa::path(post, path = "/console/v1/auth/browser-handoff/session", tag = "auth",
    request_body = HandoffSessionRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = ConsoleSession),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Unknown, expired or used token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody)))]
pub async fn handoff_session(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<HandoffSessionRequest>,
) -> Result<Response, ApiError> {
    let consumed = consume_audited(&state, &audit, req.token.expose(), "script").await?;
    let mut response = Json(consumed.issued.session).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&state, &consumed.issued.token),
    );
    Ok(response)
}

/// Consumes a handoff token and audits it. A refused token is logged but not audited:
/// anyone can present one, and unauthenticated requests must not be able to fill the
/// audit log (and push real events out of its retention).
async fn consume_audited(
    state: &AppState,
    audit: &Audit,
    token: &str,
    via: &str,
) -> Result<palyra_actors::handoffs::ConsumedHandoff, ApiError> {
    let consumed = state.handoffs.consume(token).await.inspect_err(|e| {
        if matches!(e, palyra_actors::ActorError::HandoffRejected) {
            tracing::warn!(via, "refused a handoff token: unknown, expired or used");
        }
    })?;
    let principal = &consumed.issued.session.principal;
    tracing::info!(%principal, "browser handoff consumed");
    audit
        .clone()
        .as_actor(principal)
        .success(AuditKind::HandoffConsumed, principal, format!("via {via}"))
        .await;
    Ok(consumed)
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::{Authenticated, Public};
    vec![
        route(Method::POST, "/console/v1/auth/login", Public, login),
        route(
            Method::GET,
            "/console/v1/auth/session",
            Authenticated,
            session,
        ),
        route(
            Method::POST,
            "/console/v1/auth/logout",
            Authenticated,
            logout,
        ),
        route(
            Method::POST,
            "/console/v1/auth/browser-handoff",
            Authenticated,
            mint_handoff,
        ),
        route(
            Method::GET,
            "/console/v1/auth/browser-handoff/consume",
            Public,
            consume_handoff,
        ),
        route(
            Method::POST,
            "/console/v1/auth/browser-handoff/session",
            Public,
            handoff_session,
        ),
    ]
}
