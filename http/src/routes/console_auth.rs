//! Console authentication: login, the current session, logout and browser handoff.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use palyra_actors::SecretString;
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::auth::admin_token_matches;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, OptionalJson};
use crate::request::{Caller, peer_ip};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::ConsoleSession;
use palyra_actors::audit::AuditKind;
use palyra_actors::operators::Role;
use palyra_actors::sessions::{OPERATOR_PREFIX, SessionGrant, SessionView};
use std::net::IpAddr;

/// Device id of a login that names none.
pub const DEFAULT_DEVICE_ID: &str = "unnamed-device";

/// A login: the admin token (a `root` session), or an operator's id and password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The daemon's admin token; the session's principal is `root`. Not with
    /// `operator_id`.
    #[schema(value_type = Option<String>)]
    pub admin_token: Option<SecretString>,
    /// An operator's id; the session's principal is `operator:<id>`, with their role.
    #[schema(pattern = r"^[a-z0-9][a-z0-9._@-]{0,63}$")]
    pub operator_id: Option<String>,
    /// The operator's password (with `operator_id`).
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
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

pub(crate) fn session_cookie_header(state: &AppState, token: &SecretString) -> HeaderValue {
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

/// Exchanges the admin token, or an operator's id and password, for a console session
/// (cookie plus CSRF token).
#[utoipa::path(post, path = "/console/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = ConsoleSession),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong admin token, or wrong operator or password", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 421, description = "Not one of the daemon's host names", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let peer = peer_ip(&extensions);
    let device_id = req
        .device_id
        .unwrap_or_else(|| DEFAULT_DEVICE_ID.to_owned());
    palyra_actors::sessions::validate_device_id(&device_id)?;
    let audit = Audit::from_parts(&extensions, &state);
    let grant = match (req.admin_token, req.operator_id, req.password) {
        (Some(token), None, None) => {
            let throttled = throttled(&state, peer, None)?;
            if !admin_token_matches(&state, token.expose()) {
                return Err(login_failed(
                    &state,
                    &audit,
                    peer,
                    None,
                    throttled,
                    "wrong admin token",
                )
                .await);
            }
            SessionGrant {
                principal: palyra_actors::sessions::ROOT_PRINCIPAL.to_owned(),
                role: Role::Admin,
                credential: state.root_credential(),
            }
        }
        (None, Some(operator_id), Some(password)) => {
            let throttled = throttled(&state, peer, Some(&operator_id))?;
            match state
                .operators
                .verify_password(&operator_id, password)
                .await?
            {
                Some(operator) => SessionGrant {
                    principal: format!("{OPERATOR_PREFIX}{}", operator.operator_id),
                    role: operator.role,
                    credential: format!("password:{}", operator.operator_id),
                },
                None => {
                    return Err(login_failed(
                        &state,
                        &audit,
                        peer,
                        Some(&operator_id),
                        throttled,
                        "wrong operator id or password",
                    )
                    .await);
                }
            }
        }
        _ => {
            return Err(ApiError::BadRequest {
                code: "invalid_login",
                message: "send either admin_token, or operator_id and password".to_owned(),
            });
        }
    };
    let audit = audit.as_actor(&grant.principal);
    let how = match grant.role {
        _ if grant.principal == palyra_actors::sessions::ROOT_PRINCIPAL => "admin token",
        _ => "password",
    };
    let issued = state.sessions.create(grant, device_id, Vec::new()).await?;
    tracing::info!(%peer, principal = %issued.session.principal, "console login");
    audit
        .success(AuditKind::Login, &issued.session.principal, how)
        .await;
    let mut response = Json(issued.session).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(&state, &issued.token),
    );
    Ok(response)
}

/// The throttles a login passes first: per peer, and per operator for a password. From
/// the network a throttled attempt is refused before its credential is looked at; from
/// loopback the right credential still gets in (`Some(retry_after)`: only if right).
fn throttled(
    state: &AppState,
    peer: IpAddr,
    operator: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    let by_peer = state.auth_throttle.check(peer).err();
    let by_operator = operator.and_then(|id| state.operator_throttle.check(&id.to_owned()).err());
    let retry_after_s = by_peer.max(by_operator);
    match retry_after_s {
        Some(retry_after_s) if !peer.is_loopback() => {
            Err(ApiError::TooManyRequests { retry_after_s })
        }
        other => Ok(other),
    }
}

/// A failed login: counted (per peer, and per operator), logged and audited with an
/// anonymous actor; a throttled one is only logged, so a flood adds nothing.
async fn login_failed(
    state: &AppState,
    audit: &Audit,
    peer: IpAddr,
    operator: Option<&str>,
    throttled: Option<u64>,
    why: &'static str,
) -> ApiError {
    tracing::warn!(%peer, why, "console login failed");
    if let Some(retry_after_s) = throttled {
        return ApiError::TooManyRequests { retry_after_s };
    }
    state.auth_throttle.record_failure(peer);
    // Only a well-formed id is recorded: the claim is the client's to choose.
    let claimed = operator
        .filter(|id| palyra_actors::operators::validate_operator_id(id).is_ok())
        .map(|id| format!("{OPERATOR_PREFIX}{id}"));
    if let Some(id) =
        operator.filter(|id| palyra_actors::operators::validate_operator_id(id).is_ok())
    {
        state.operator_throttle.record_failure(id.to_owned());
    }
    let subject = claimed
        .as_deref()
        .unwrap_or(palyra_actors::sessions::ROOT_PRINCIPAL);
    audit.submit_unauthenticated_failure(
        &state.auth_audit_budget,
        subject,
        format!("{why}; claimed {subject}"),
    );
    ApiError::Unauthorized(why)
}

/// The current console session, without its CSRF token: a request made with the
/// cookie never gets the token back (see `auth`), login and handoff redemption answer it.
#[utoipa::path(get, path = "/console/v1/auth/session", tag = "auth",
    responses(
        SecuredRead,
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "No valid session (bearer requests have none)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn session(Extension(caller): Extension<Caller>) -> Result<Json<SessionView>, ApiError> {
    match caller {
        Caller::Session(auth) => Ok(Json(auth.session.into())),
        // A bearer token is valid but is not a console session.
        Caller::Root | Caller::Token(_) => Err(palyra_actors::ActorError::NoSession.into()),
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

/// Mints a single-use link that logs a browser in (valid 60 seconds): its page's button
/// redeems it (`routes/handoff_redeem.rs`).
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
        .mint(caller.grant(&state.root_credential()), redirect_path)
        .await?;
    tracing::info!(principal = %caller.principal(), "browser handoff minted");
    audit
        .success(
            AuditKind::HandoffMinted,
            &caller.principal(),
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
pub(crate) async fn consume_audited(
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
    use Access::{Public, Viewer};
    vec![
        route(Method::POST, "/console/v1/auth/login", Public, login),
        route(Method::GET, "/console/v1/auth/session", Viewer, session),
        route(Method::POST, "/console/v1/auth/logout", Viewer, logout),
        route(
            Method::POST,
            "/console/v1/auth/browser-handoff",
            Viewer,
            mint_handoff,
        ),
        route(
            Method::POST,
            "/console/v1/auth/browser-handoff/session",
            Public,
            handoff_session,
        ),
    ]
}
