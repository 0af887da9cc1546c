//! Auth profiles: list, create or replace, show, delete, set default, health, resolve;
//! and the vault's key rotation.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::error::{ApiError, ErrorBody, SecuredJsonWrite, SecuredRead, SecuredWrite};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;
use palyra_actors::audit::AuditKind;
use palyra_actors::error::ActorError;
use palyra_actors::registry::{
    AuthHealthReport, AuthProfile, AuthProfileScope, NewCredential, NewProfile, ProfileFilter,
    ProfilePage, ResolveAnswer, RotationReport, validate_profile_id,
};

/// Body of `POST /auth/profiles`. Serialize is for the typed client, which sends it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProfileRequest {
    /// Lowercase `a-z 0-9 . _ -`, at most 128; generated when absent. An existing id is replaced.
    #[schema(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub profile_id: Option<String>,
    /// `openai`, `anthropic` or `custom:<name>`.
    #[schema(pattern = r"^(openai|anthropic|custom:[a-z0-9._-]{1,64})$")]
    pub provider: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub profile_name: String,
    /// Default: global.
    pub scope: Option<AuthProfileScope>,
    pub credential: NewCredential,
    /// Make it the default of its provider and scope.
    #[serde(default)]
    pub set_default: bool,
    /// Check the key with `GET {api_base_url}/v1/models` first (default true).
    pub validate: Option<bool>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this provider.
    pub provider: Option<String>,
    /// `global` or `agent`.
    pub scope: Option<String>,
    /// Only profiles scoped to this agent.
    pub agent_id: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    /// Without it, the agent's candidates in the order its runs try them
    /// (`agent_id` is then required).
    #[param(pattern = r"^(openai|anthropic|custom:[a-z0-9._-]{1,64})$")]
    pub provider: Option<String>,
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProfilePath {
    /// The profile id.
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub profile_id: String,
}

/// Auth profiles, filtered and paged by profile id.
#[utoipa::path(get, path = "/console/v1/auth/profiles", tag = "auth-profiles",
    params(ListQuery),
    responses(
        SecuredRead,
        (status = 200, description = "One page of profiles", body = ProfilePage),
        (status = 400, description = "Invalid filter", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list_profiles(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProfilePage>, ApiError> {
    let filter = ProfileFilter {
        provider: q.provider,
        scope_kind: q.scope,
        agent_id: q.agent_id,
    };
    Ok(Json(state.registry.list(filter, q.limit, q.after).await?))
}

/// Creates or replaces a profile. The API key goes in once; no response carries it.
#[utoipa::path(post, path = "/console/v1/auth/profiles", tag = "auth-profiles",
    request_body = CreateProfileRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, description = "Saved", body = AuthProfile),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 422, description = "The provider rejected the key", body = ErrorBody),
        (status = 424, description = "The provider could not validate the key (unreachable, rate-limited, error)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create_profile(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<CreateProfileRequest>,
) -> Result<Json<AuthProfile>, ApiError> {
    let subject = req.profile_id.clone().unwrap_or_else(|| "new".to_owned());
    let provider = req.provider.clone();
    let created = state
        .registry
        .create(NewProfile {
            profile_id: req.profile_id,
            provider: req.provider,
            profile_name: req.profile_name,
            scope: req.scope.unwrap_or(AuthProfileScope::Global),
            credential: req.credential,
            set_default: req.set_default,
            validate: req.validate.unwrap_or(true),
        })
        .await;
    let profile = match created {
        Ok(profile) => profile,
        Err(e) => {
            if let palyra_actors::ActorError::KeyCheck(k) = &e {
                // A key the provider refused is worth knowing about; other refusals
                // are malformed requests.
                audit
                    .failure(
                        AuditKind::ProfileCreated,
                        &subject,
                        format!("{provider}: {k}"),
                    )
                    .await;
            }
            return Err(e.into());
        }
    };
    audit
        .success(
            AuditKind::ProfileCreated,
            &profile.record.profile_id,
            format!("provider {}, api key", profile.record.provider),
        )
        .await;
    Ok(Json(profile))
}

/// One profile.
#[utoipa::path(get, path = "/console/v1/auth/profiles/{profile_id}", tag = "auth-profiles",
    params(ProfilePath),
    responses(
        SecuredRead,
        (status = 200, description = "The profile", body = AuthProfile),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn get_profile(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProfilePath>,
) -> Result<Json<AuthProfile>, ApiError> {
    validate_profile_id(&path.profile_id)?;
    Ok(Json(state.registry.get(&path.profile_id).await?))
}

/// Deletes a profile and its secrets, in one transaction.
#[utoipa::path(delete, path = "/console/v1/auth/profiles/{profile_id}", tag = "auth-profiles",
    params(ProfilePath),
    responses(
        SecuredWrite,
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn delete_profile(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProfilePath>,
) -> Result<StatusCode, ApiError> {
    validate_profile_id(&path.profile_id)?;
    state.registry.delete(&path.profile_id).await?;
    audit
        .success(
            AuditKind::ProfileDeleted,
            &path.profile_id,
            "profile and secrets removed",
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a profile the default of its provider and scope.
#[utoipa::path(post, path = "/console/v1/auth/profiles/{profile_id}/default", tag = "auth-profiles",
    params(ProfilePath),
    responses(
        SecuredWrite,
        (status = 200, description = "Now the default", body = AuthProfile),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "No such profile", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn set_default(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(path): ApiPath<ProfilePath>,
) -> Result<Json<AuthProfile>, ApiError> {
    validate_profile_id(&path.profile_id)?;
    let profile = state.registry.set_default(&path.profile_id).await?;
    audit
        .success(
            AuditKind::ProfileUpdated,
            &profile.record.profile_id,
            "set as default",
        )
        .await;
    Ok(Json(profile))
}

/// Health of every credential (`AuthHealthReport`); never calls a provider.
#[utoipa::path(get, path = "/console/v1/auth/health", tag = "auth-profiles",
    responses(
        SecuredRead,
        (status = 200, description = "Health per profile and counts per state", body = AuthHealthReport)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn health(State(state): State<AppState>) -> Result<Json<AuthHealthReport>, ApiError> {
    Ok(Json(state.registry.health().await?))
}

/// Which profile an agent (or the global scope) would use for a provider, and why;
/// without a provider, which of the agent's candidates its runs would try first.
/// Profiles passed over (needs reauth, cooling down, rate-limited, missing) are listed
/// in `skipped` with their reasons.
#[utoipa::path(get, path = "/console/v1/auth/resolve", tag = "auth-profiles",
    params(ResolveQuery),
    responses(
        SecuredRead,
        (status = 200, description = "The answer, possibly none with a reason", body = ResolveAnswer),
        (status = 400, description = "Invalid provider or agent id, or neither given", body = ErrorBody),
        (status = 404, description = "No such agent (without a provider)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ResolveQuery>,
) -> Result<Json<ResolveAnswer>, ApiError> {
    if let Some(provider) = q.provider {
        return Ok(Json(state.registry.resolve(provider, q.agent_id).await?));
    }
    let Some(agent_id) = q.agent_id else {
        return Err(
            ActorError::invalid("provider", "give a provider, an agent_id, or both").into(),
        );
    };
    palyra_actors::registry::validate_agent_id(&agent_id)?;
    let agent = state.objectives.get_agent(&agent_id).await?;
    let candidates = agent.candidates();
    // The one-element case without a profile is the agent's `openai` resolution, as
    // its runs do it.
    if let [(None, _)] = candidates.as_slice() {
        return Ok(Json(
            state
                .registry
                .resolve("openai".into(), Some(agent_id))
                .await?,
        ));
    }
    let candidates = candidates
        .into_iter()
        .filter_map(|(profile, model)| Some((profile?, model)))
        .collect();
    Ok(Json(
        state
            .registry
            .resolve_candidates(agent_id, candidates)
            .await?,
    ))
}

/// Re-seals every secret under a new master key (key file only).
#[utoipa::path(post, path = "/console/v1/vault/rotate-key", tag = "auth-profiles",
    responses(
        SecuredWrite,
        (status = 200, description = "Rotated", body = RotationReport),
        (status = 409, description = "The key comes from PALYRA_VAULT_KEY and cannot be rotated by the daemon", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    audit: Audit,
) -> Result<Json<RotationReport>, ApiError> {
    let report = state.registry.rotate_key().await;
    match &report {
        Ok(r) => {
            audit
                .success(
                    AuditKind::VaultKeyRotated,
                    &r.key_id,
                    format!(
                        "from key {}; {} secrets resealed",
                        r.previous_key_id, r.secrets_resealed
                    ),
                )
                .await;
        }
        Err(e) => {
            audit
                .failure(AuditKind::VaultKeyRotated, "vault", e.to_string())
                .await;
        }
    }
    Ok(Json(report?))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::{Admin, Operator, Viewer};
    vec![
        route(
            Method::GET,
            "/console/v1/auth/profiles",
            Viewer,
            list_profiles,
        ),
        route(
            Method::POST,
            "/console/v1/auth/profiles",
            Operator,
            create_profile,
        ),
        route(
            Method::GET,
            "/console/v1/auth/profiles/{profile_id}",
            Viewer,
            get_profile,
        ),
        route(
            Method::DELETE,
            "/console/v1/auth/profiles/{profile_id}",
            Operator,
            delete_profile,
        ),
        route(
            Method::POST,
            "/console/v1/auth/profiles/{profile_id}/default",
            Operator,
            set_default,
        ),
        route(Method::GET, "/console/v1/auth/health", Viewer, health),
        route(Method::GET, "/console/v1/auth/resolve", Viewer, resolve),
        route(
            Method::POST,
            "/console/v1/vault/rotate-key",
            Admin,
            rotate_key,
        ),
    ]
}
