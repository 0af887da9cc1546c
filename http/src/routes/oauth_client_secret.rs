//! A provider's OAuth client secret, set or removed by an admin: sealed in the vault,
//! never echoed (the answers are 204 without a body), never logged or audited.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use palyra_actors::SecretString;
use palyra_actors::audit::AuditKind;
use palyra_actors::registry::oauth_client_secret::ClientSecretChange;
use serde::Deserialize;

use super::oauth::ProviderPath;
use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredWrite};
use crate::extract::{ApiJson, ApiPath};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

/// Body of `PUT .../client-secret`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSecretRequest {
    /// The secret the provider issued with the client id; sealed in the vault and
    /// never shown again.
    #[schema(value_type = String, min_length = 1, max_length = 4096, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub client_secret: SecretString,
}

/// Seals the provider's OAuth client secret in the vault (replacing one set before),
/// for `client_secret_basic` / `client_secret_post`.
#[utoipa::path(put, path = "/console/v1/auth/providers/{provider}/client-secret", tag = "oauth",
    params(ProviderPath),
    request_body = ClientSecretRequest,
    responses(
        SecuredJsonWrite,
        (status = 204, description = "Sealed (durable)"),
        (status = 400, description = "Invalid secret, or the provider is not a confidential OAuth client", body = ErrorBody),
        (status = 409, description = "The secret comes from client_secret_env / client_secret_file in the config", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn set_client_secret(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProviderPath>,
    ApiJson(req): ApiJson<ClientSecretRequest>,
) -> Result<StatusCode, ApiError> {
    let change = state
        .registry
        .store_client_secret(&path.provider, Some(req.client_secret))
        .await?;
    let detail = match change {
        ClientSecretChange::Unchanged => "set (unchanged)",
        _ => "set",
    };
    audit
        .success(AuditKind::ClientSecretChanged, &path.provider, detail)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the provider's OAuth client secret from the vault; its token requests fail
/// until one is set again (refreshes wait for it and keep the tokens).
#[utoipa::path(delete, path = "/console/v1/auth/providers/{provider}/client-secret", tag = "oauth",
    params(ProviderPath),
    responses(
        SecuredWrite,
        (status = 204, description = "Removed (durable), or there was none"),
        (status = 400, description = "The provider is not configured for OAuth", body = ErrorBody),
        (status = 409, description = "The secret comes from client_secret_env / client_secret_file in the config", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn delete_client_secret(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProviderPath>,
) -> Result<StatusCode, ApiError> {
    let change = state
        .registry
        .store_client_secret(&path.provider, None)
        .await?;
    if change == ClientSecretChange::Removed {
        audit
            .success(AuditKind::ClientSecretChanged, &path.provider, "removed")
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Admin;
    let path = "/console/v1/auth/providers/{provider}/client-secret";
    vec![
        route(Method::PUT, path, Admin, set_client_secret),
        route(Method::DELETE, path, Admin, delete_client_secret),
    ]
}
