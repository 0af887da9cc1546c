//! Operators: the people who sign in, their roles, their tokens and their sessions.
//! Admin only. An edit that takes rights away (disabled, a new role or password)
//! ends the operator's sessions once it is durable, before the answer.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiPath};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;
use palyra_actors::operators::{
    MintedToken, NewOperator, NewToken, Operator, OperatorPatch, validate_operator_id,
};
use palyra_actors::sessions::OPERATOR_PREFIX;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperatorPath {
    #[param(pattern = r"^[a-z0-9][a-z0-9._@-]{0,63}$")]
    pub operator_id: String,
}

/// The list of operators.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorList {
    pub operators: Vec<Operator>,
}

/// What a revocation ended.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revoked {
    pub sessions_revoked: usize,
    pub tokens_revoked: usize,
}

/// Ends every session of `operator_id` (on every node: the rows go).
pub(crate) async fn revoke_sessions_of(
    state: &AppState,
    operator_id: &str,
) -> Result<usize, ApiError> {
    let principal = format!("{OPERATOR_PREFIX}{operator_id}");
    Ok(state
        .sessions
        .revoke_matching(|p, _| p == principal)
        .await?)
}

/// Every operator, by id.
#[utoipa::path(get, path = "/console/v1/operators", tag = "operators",
    responses(SecuredRead, (status = 200, body = OperatorList)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<OperatorList>, ApiError> {
    Ok(Json(OperatorList {
        operators: state.operators.list().await?,
    }))
}

/// Creates an operator.
#[utoipa::path(post, path = "/console/v1/operators", tag = "operators",
    request_body = NewOperator,
    responses(
        SecuredJsonWrite,
        (status = 201, body = Operator),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<NewOperator>,
) -> Result<(StatusCode, Json<Operator>), ApiError> {
    let operator = state.operators.create(req).await?;
    audit
        .success(
            AuditKind::OperatorCreated,
            &operator.operator_id,
            format!("role {}", operator.role.name()),
        )
        .await;
    Ok((StatusCode::CREATED, Json(operator)))
}

/// One operator.
#[utoipa::path(get, path = "/console/v1/operators/{operator_id}", tag = "operators",
    params(OperatorPath),
    responses(SecuredRead, (status = 200, body = Operator), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<OperatorPath>,
) -> Result<Json<Operator>, ApiError> {
    validate_operator_id(&p.operator_id)?;
    Ok(Json(state.operators.get(&p.operator_id).await?))
}

/// Changes an operator. Disabling revokes their sessions and tokens; a new role or
/// password revokes their sessions (and lowers tokens above the new role).
#[utoipa::path(patch, path = "/console/v1/operators/{operator_id}", tag = "operators",
    params(OperatorPath), request_body = OperatorPatch,
    responses(
        SecuredJsonWrite,
        (status = 200, body = Operator),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<OperatorPath>,
    ApiJson(req): ApiJson<OperatorPatch>,
) -> Result<Json<Operator>, ApiError> {
    validate_operator_id(&p.operator_id)?;
    let change = state.operators.update(&p.operator_id, req).await?;
    let sessions = match change.revoke_sessions {
        true => revoke_sessions_of(&state, &p.operator_id).await?,
        false => 0,
    };
    audit
        .success(
            AuditKind::OperatorUpdated,
            &p.operator_id,
            format!(
                "role {}, {}; {sessions} sessions and {} tokens revoked",
                change.operator.role.name(),
                if change.operator.disabled {
                    "disabled"
                } else {
                    "enabled"
                },
                change.tokens_revoked
            ),
        )
        .await;
    Ok(Json(change.operator))
}

/// Deletes an operator with their tokens and sessions.
#[utoipa::path(delete, path = "/console/v1/operators/{operator_id}", tag = "operators",
    params(OperatorPath),
    responses(SecuredWrite, (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<OperatorPath>,
) -> Result<StatusCode, ApiError> {
    validate_operator_id(&p.operator_id)?;
    state.operators.delete(&p.operator_id).await?;
    let sessions = revoke_sessions_of(&state, &p.operator_id).await?;
    audit
        .success(
            AuditKind::OperatorDeleted,
            &p.operator_id,
            format!("{sessions} sessions revoked"),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Mints an API token for the operator; the token is in this answer only.
#[utoipa::path(post, path = "/console/v1/operators/{operator_id}/tokens", tag = "operators",
    params(OperatorPath), request_body = NewToken,
    responses(
        SecuredJsonWrite,
        (status = 201, body = MintedToken),
        (status = 400, description = "A role above the operator's, or a bad field", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The operator is disabled", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn mint_token(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<OperatorPath>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    validate_operator_id(&p.operator_id)?;
    let minted = state.operators.mint_token(&p.operator_id, req).await?;
    tracing::info!(operator_id = %p.operator_id, token_id = %minted.view.token_id, "API token minted");
    audit
        .success(
            AuditKind::TokenCreated,
            &format!("token:{}", minted.view.token_id),
            format!(
                "for {OPERATOR_PREFIX}{}, role {}",
                p.operator_id,
                minted.view.role.name()
            ),
        )
        .await;
    Ok((StatusCode::CREATED, Json(minted)))
}

/// Revokes every session and every token of the operator.
#[utoipa::path(post, path = "/console/v1/operators/{operator_id}/revoke-sessions", tag = "operators",
    params(OperatorPath),
    responses(SecuredWrite, (status = 200, body = Revoked), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<OperatorPath>,
) -> Result<Json<Revoked>, ApiError> {
    validate_operator_id(&p.operator_id)?;
    state.operators.get(&p.operator_id).await?;
    let tokens = state.operators.revoke_tokens_of(&p.operator_id).await?;
    let sessions = revoke_sessions_of(&state, &p.operator_id).await?;
    audit
        .success(
            AuditKind::SessionRevoked,
            &format!("{OPERATOR_PREFIX}{}", p.operator_id),
            format!("all: {sessions} sessions and {} tokens", tokens.len()),
        )
        .await;
    Ok(Json(Revoked {
        sessions_revoked: sessions,
        tokens_revoked: tokens.len(),
    }))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Admin;
    vec![
        route(Method::GET, "/console/v1/operators", Admin, list),
        route(Method::POST, "/console/v1/operators", Admin, create),
        route(
            Method::GET,
            "/console/v1/operators/{operator_id}",
            Admin,
            show,
        ),
        route(
            Method::PATCH,
            "/console/v1/operators/{operator_id}",
            Admin,
            update,
        ),
        route(
            Method::DELETE,
            "/console/v1/operators/{operator_id}",
            Admin,
            delete,
        ),
        route(
            Method::POST,
            "/console/v1/operators/{operator_id}/tokens",
            Admin,
            mint_token,
        ),
        route(
            Method::POST,
            "/console/v1/operators/{operator_id}/revoke-sessions",
            Admin,
            revoke_sessions,
        ),
    ]
}
