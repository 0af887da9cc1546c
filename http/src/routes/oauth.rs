//! OAuth sign-in (bootstrap, the provider's callback, its state, the headless manual
//! completion, device sign-in) and manual refresh.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palyra_actors::SecretString;
use palyra_actors::refresher::RefreshReport;
use palyra_actors::registry::oauth_device::DeviceSignInStarted;
use palyra_actors::registry::oauth_flow::{
    AttemptStatus, CallbackParams, SignInOutcome, SignInRequest, SignInStarted,
};
use palyra_actors::registry::{AuthProfileScope, validate_profile_id, validate_provider};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProviderPath {
    /// `openai`, `anthropic` or `custom:<name>`.
    #[param(pattern = r"^(openai|anthropic|custom:[a-z0-9._-]{1,64})$")]
    pub provider: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RefreshPath {
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub profile_id: String,
}

/// Body of `bootstrap`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub profile_name: String,
    /// Lowercase id of the profile to create or replace; generated when absent.
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub profile_id: Option<String>,
    /// Default: global.
    pub scope: Option<AuthProfileScope>,
    /// Default: the provider's configured scopes.
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub set_default: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    #[param(value_type = Option<String>)]
    pub code: Option<SecretString>,
    #[param(value_type = Option<String>)]
    pub state: Option<SecretString>,
    /// Set by the provider when the sign-in was refused (`access_denied`, ...).
    pub error: Option<String>,
    /// The provider's explanation of `error`, shown on the page.
    pub error_description: Option<String>,
    /// RFC 9207: the issuer of the answer; checked against the provider's.
    pub iss: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    pub attempt_id: String,
}

/// Body of `manual-callback`: the URL the browser was redirected to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualCallbackRequest {
    /// The whole redirect URL (with `code` and `state`), pasted from the browser.
    #[schema(value_type = String)]
    pub redirect_url: SecretString,
}

fn provider_path(provider: &str) -> Result<(), ApiError> {
    validate_provider(provider).map_err(ApiError::from)
}

/// The daemon's callback URL for a provider.
pub fn redirect_uri(state: &AppState, provider: &str) -> Result<String, ApiError> {
    let base = state.config.oauth_redirect_base.as_ref().ok_or_else(|| {
        ApiError::from(palyra_actors::ActorError::invalid(
            "provider",
            "the daemon listens on no loopback address: set server.public_base_url or oauth.public_base_url (https) to sign in",
        ))
    })?;
    Ok(format!(
        "{base}/console/v1/auth/providers/{provider}/callback"
    ))
}

/// Starts an OAuth sign-in with PKCE; open `authorization_url` in a browser.
#[utoipa::path(post, path = "/console/v1/auth/providers/{provider}/bootstrap", tag = "oauth",
    params(ProviderPath),
    request_body = BootstrapRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Open the authorization URL", body = SignInStarted),
        (status = 400, description = "Invalid field, or the provider is not configured for OAuth", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn bootstrap(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiJson(req): ApiJson<BootstrapRequest>,
) -> Result<Json<SignInStarted>, ApiError> {
    provider_path(&path.provider)?;
    let path_provider = path.provider.clone();
    let redirect = redirect_uri(&state, &path.provider)?;
    let started = state
        .registry
        .begin_sign_in(
            SignInRequest {
                provider: path.provider,
                profile_id: req.profile_id,
                profile_name: req.profile_name,
                scope: req.scope.unwrap_or(AuthProfileScope::Global),
                scopes: req.scopes,
                set_default: req.set_default,
            },
            redirect,
            state.config.oauth_attempt_ttl,
        )
        .await?;
    audit
        .success(
            AuditKind::SigninStarted,
            &started.attempt_id,
            format!("provider {}", path_provider),
        )
        .await;
    Ok(Json(started))
}

/// Starts a device sign-in (RFC 8628) for a headless daemon: enter `user_code` at
/// `verification_uri` on any device; the daemon polls the provider, and
/// `callback-state` reports the outcome.
#[utoipa::path(post, path = "/console/v1/auth/providers/{provider}/device", tag = "oauth",
    params(ProviderPath),
    request_body = BootstrapRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Enter the user code at the verification URI", body = DeviceSignInStarted),
        (status = 400, description = "Invalid field, the provider has no device authorization endpoint, or it refused", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn device_sign_in(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiJson(req): ApiJson<BootstrapRequest>,
) -> Result<Json<DeviceSignInStarted>, ApiError> {
    provider_path(&path.provider)?;
    let provider = path.provider.clone();
    let started = state
        .registry
        .begin_device_sign_in(
            SignInRequest {
                provider: path.provider,
                profile_id: req.profile_id,
                profile_name: req.profile_name,
                scope: req.scope.unwrap_or(AuthProfileScope::Global),
                scopes: req.scopes,
                set_default: req.set_default,
            },
            state.config.oauth_attempt_ttl,
        )
        .await?;
    audit
        .success(
            AuditKind::SigninStarted,
            &started.attempt_id,
            format!("provider {provider}, device"),
        )
        .await;
    Ok(Json(started))
}

/// Where the provider sends the browser after sign-in. Answers a small HTML page that
/// also tells the window that opened it.
#[utoipa::path(get, path = "/console/v1/auth/providers/{provider}/callback", tag = "oauth",
    params(ProviderPath, CallbackQuery),
    responses(
        (status = 200, description = "Signed in", content_type = "text/html"),
        (status = 400, description = "Unknown, expired or used state, or the sign-in failed", content_type = "text/html"),
        (status = 503, description = "The daemon is shutting down", content_type = "text/html")))]
pub async fn callback(
    State(state): State<AppState>,
    audit: Audit,
    method: Method,
    axum::extract::Path(provider): axum::extract::Path<String>,
    query: Result<axum::extract::Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // axum answers HEAD with the GET handler; a link checker's or prefetcher's HEAD
    // must not use up the sign-in's state.
    if method == Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let outcome = match (provider_path(&provider), query) {
        (Err(e), _) => Err(e),
        (_, Err(_)) => Err(ApiError::BadRequest {
            code: "invalid_query",
            message: "the callback query is malformed".to_owned(),
        }),
        (Ok(()), Ok(axum::extract::Query(q))) => {
            let params = CallbackParams {
                code: q.code,
                state: q.state,
                error: q.error,
                error_description: q.error_description,
                iss: q.iss,
            };
            let outcome = state.registry.complete_sign_in(&provider, params).await;
            // Only outcomes of a real attempt: an unknown or used state is anyone's to
            // send to this public page, and must not fill the audit log.
            if outcome.is_ok() {
                audit_sign_in(&audit, &provider, &outcome).await;
            }
            outcome.map_err(ApiError::from)
        }
    };
    let outcome = outcome.map_err(|e| {
        let (status, _) = e.status_and_code();
        if status.is_server_error() {
            // The cause goes to the log, never to an unauthenticated page.
            tracing::error!(cause = %e, "OAuth callback failed");
            (
                status,
                "the daemon could not complete the sign-in; see its log".to_owned(),
            )
        } else {
            (StatusCode::BAD_REQUEST, e.to_string())
        }
    });
    callback_page(&outcome)
}

/// Completes a sign-in on a headless server from the redirect URL the operator pasted.
#[utoipa::path(post, path = "/console/v1/auth/providers/{provider}/manual-callback", tag = "oauth",
    params(ProviderPath),
    request_body = ManualCallbackRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "The attempt's outcome", body = SignInOutcome),
        (status = 400, description = "Not a callback URL, or unknown, expired or used state", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn manual_callback(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiJson(req): ApiJson<ManualCallbackRequest>,
) -> Result<Json<SignInOutcome>, ApiError> {
    provider_path(&path.provider)?;
    let url = url::Url::parse(req.redirect_url.expose()).map_err(|_| ApiError::BadRequest {
        code: "invalid_field",
        message: "redirect_url: not a URL".into(),
    })?;
    let mut params = CallbackParams::default();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "code" => params.code = Some(SecretString::new(value.into_owned())),
            "state" => params.state = Some(SecretString::new(value.into_owned())),
            "error" => params.error = Some(value.into_owned()),
            "error_description" => params.error_description = Some(value.into_owned()),
            "iss" => params.iss = Some(value.into_owned()),
            _ => {}
        }
    }
    let outcome = state
        .registry
        .complete_sign_in(&path.provider, params)
        .await;
    audit_sign_in(&audit, &path.provider, &outcome).await;
    Ok(Json(outcome?))
}

/// Where a sign-in attempt stands: pending, succeeded (with the profile) or failed.
#[utoipa::path(get, path = "/console/v1/auth/providers/{provider}/callback-state", tag = "oauth",
    params(ProviderPath, AttemptQuery),
    responses(
        SecuredRead,
        (status = 200, description = "The attempt's state", body = SignInOutcome),
        (status = 400, description = "Invalid provider or query", body = ErrorBody),
        (status = 404, description = "No such attempt", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn callback_state(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiQuery(q): ApiQuery<AttemptQuery>,
) -> Result<Json<SignInOutcome>, ApiError> {
    provider_path(&path.provider)?;
    let outcome = state.registry.sign_in_state(&q.attempt_id).await?;
    if outcome.provider != path.provider {
        return Err(palyra_actors::ActorError::NotFound {
            what: "sign-in attempt",
            id: q.attempt_id,
        }
        .into());
    }
    Ok(Json(outcome))
}

/// Refreshes an OAuth profile now, or joins the refresh in flight.
#[utoipa::path(post, path = "/console/v1/auth/profiles/{profile_id}/refresh", tag = "oauth",
    params(RefreshPath),
    responses(
        SecuredWrite,
        (status = 200, description = "The refresh's outcome (which may be a failure) and the profile", body = RefreshReport),
        (status = 400, description = "Invalid id, or not an OAuth profile", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody),
        (status = 409, description = "The profile needs a new sign-in", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RefreshPath>,
) -> Result<Json<RefreshReport>, ApiError> {
    validate_profile_id(&path.profile_id)?;
    Ok(Json(state.refresher.refresh_now(&path.profile_id).await?))
}

/// Audits the end of a sign-in: completed (with the profile it made) or failed.
async fn audit_sign_in(
    audit: &Audit,
    provider: &str,
    outcome: &Result<SignInOutcome, palyra_actors::ActorError>,
) {
    match outcome {
        Ok(o) => match &o.status {
            AttemptStatus::Succeeded { profile_id } => {
                audit
                    .success(
                        AuditKind::SigninCompleted,
                        &o.attempt_id,
                        format!("provider {provider}, profile {profile_id}"),
                    )
                    .await;
                audit
                    .success(
                        AuditKind::ProfileCreated,
                        profile_id,
                        format!("{provider} oauth sign-in"),
                    )
                    .await;
            }
            AttemptStatus::Failed { reason } => {
                audit
                    .failure(
                        AuditKind::SigninFailed,
                        &o.attempt_id,
                        format!("provider {provider}: {reason}"),
                    )
                    .await;
            }
            AttemptStatus::Pending => {}
        },
        Err(e) => {
            audit
                .failure(
                    AuditKind::SigninFailed,
                    "unknown",
                    format!("provider {provider}: {e}"),
                )
                .await;
        }
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page the browser lands on: escaped text, no secrets, and a script (allowed by a
/// per-response nonce) that tells the opener window the outcome.
fn callback_page(outcome: &Result<SignInOutcome, (StatusCode, String)>) -> Response {
    let (status, title, detail, kind, attempt) = match outcome {
        Ok(o) => match &o.status {
            AttemptStatus::Succeeded { profile_id } => (
                StatusCode::OK,
                "Signed in",
                format!("Profile {profile_id} is ready. You can close this window."),
                "succeeded",
                o.attempt_id.clone(),
            ),
            AttemptStatus::Failed { reason } => (
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                reason.clone(),
                "failed",
                o.attempt_id.clone(),
            ),
            AttemptStatus::Pending => (
                StatusCode::BAD_REQUEST,
                "Sign-in pending",
                "The sign-in has not completed.".into(),
                "failed",
                o.attempt_id.clone(),
            ),
        },
        Err((status, reason)) => (
            *status,
            "Sign-in failed",
            reason.clone(),
            "failed",
            String::new(),
        ),
    };
    let nonce = palyra_actors::secret::random_token();
    let message =
        serde_json::json!({ "type": "palyra-oauth", "status": kind, "attempt_id": attempt });
    // JSON inside a script: escape `<` so no `</script>` can close it.
    let message = message.to_string().replace('<', "\\u003c");
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{detail}</p>\
         <script nonce=\"{nonce}\">if (window.opener) {{ window.opener.postMessage({message}, window.location.origin); }}</script>\
         </body></html>",
        title = escape_html(title),
        detail = escape_html(&detail),
        nonce = nonce.expose(),
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{}'; frame-ancestors 'none'",
        nonce.expose()
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::{Operator, Public, Viewer};
    vec![
        route(
            Method::POST,
            "/console/v1/auth/providers/{provider}/bootstrap",
            Operator,
            bootstrap,
        ),
        route(
            Method::POST,
            "/console/v1/auth/providers/{provider}/device",
            Operator,
            device_sign_in,
        ),
        route(
            Method::GET,
            "/console/v1/auth/providers/{provider}/callback",
            Public,
            callback,
        ),
        route(
            Method::GET,
            "/console/v1/auth/providers/{provider}/callback-state",
            Viewer,
            callback_state,
        ),
        route(
            Method::POST,
            "/console/v1/auth/providers/{provider}/manual-callback",
            Operator,
            manual_callback,
        ),
        route(
            Method::POST,
            "/console/v1/auth/profiles/{profile_id}/refresh",
            Operator,
            refresh,
        ),
    ]
}
