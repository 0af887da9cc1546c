//! API tokens across operators: the list, and revocation (admin only). Tokens are
//! minted under their operator (`routes/operators.rs`).

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredRead, SecuredWrite};
use crate::extract::{ApiPath, ApiQuery};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;
use palyra_actors::operators::ApiToken;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Only this operator's tokens.
    pub operator_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    #[param(pattern = r"^[0-9a-f]{16}$")]
    pub token_id: String,
}

/// The list of tokens (never their secrets).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// Every API token, or one operator's.
#[utoipa::path(get, path = "/console/v1/tokens", tag = "operators", params(TokenQuery),
    responses(SecuredRead, (status = 200, body = TokenList), (status = 400, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: state
            .operators
            .list_tokens(q.operator_id.as_deref())
            .await?,
    }))
}

/// Revokes a token: refused from the next request on, on every node, with the
/// sessions handoffs minted by it.
#[utoipa::path(delete, path = "/console/v1/tokens/{token_id}", tag = "operators",
    params(TokenPath),
    responses(SecuredWrite, (status = 204, description = "Revoked"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<TokenPath>,
) -> Result<StatusCode, ApiError> {
    if p.token_id.len() != 16 || !p.token_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(palyra_actors::ActorError::invalid("token_id", "16 hex digits").into());
    }
    let token = state.operators.revoke_token(&p.token_id).await?;
    let credential = format!("token:{}", token.token_id);
    let sessions = state
        .sessions
        .revoke_matching(|_, c| c == credential)
        .await?;
    audit
        .success(
            AuditKind::TokenRevoked,
            &credential,
            format!(
                "of operator:{}; {sessions} sessions revoked",
                token.operator_id
            ),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Admin;
    vec![
        route(Method::GET, "/console/v1/tokens", Admin, list),
        route(
            Method::DELETE,
            "/console/v1/tokens/{token_id}",
            Admin,
            revoke,
        ),
    ]
}
