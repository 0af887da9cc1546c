//! Agents, objectives, their lifecycle and their runs.

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
use palyra_actors::objectives::{
    AgentPage, AgentPatch, AgentRecord, LifecycleAction, NewAgent, NewObjective, ObjectiveFilter,
    ObjectiveKind, ObjectivePage, ObjectivePatch, ObjectiveRecord, ObjectiveState, RunPage,
    RunRecord,
};
use palyra_actors::wire_name;

#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveQuery {
    pub kind: Option<ObjectiveKind>,
    pub state: Option<ObjectiveState>,
    pub agent_id: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    pub after: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_before` of the previous page.
    pub before: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub agent_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ObjectivePath {
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub objective_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    #[param(pattern = r"^[a-z0-9._-]{1,128}$")]
    pub objective_id: String,
    /// `{objective_id}-{sequence}`, as in the run list.
    #[param(pattern = r"^[a-z0-9._-]{1,160}$")]
    pub run_id: String,
}

/// Body of `lifecycle`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    pub action: LifecycleAction,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub reason: Option<String>,
}

const DEFAULT_PAGE: usize = 100;

/// Agents, paged by id.
#[utoipa::path(get, path = "/console/v1/agents", tag = "objectives", params(PageQuery),
    responses(
        SecuredRead,
        (status = 200, body = AgentPage),
        (status = 400, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list_agents(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AgentPage>, ApiError> {
    Ok(Json(
        state
            .objectives
            .list_agents(q.limit.unwrap_or(DEFAULT_PAGE), q.after)
            .await?,
    ))
}

/// Creates an agent.
#[utoipa::path(post, path = "/console/v1/agents", tag = "objectives", request_body = NewAgent,
    responses(
        SecuredJsonWrite,
        (status = 200, body = AgentRecord),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The agent exists", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create_agent(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<NewAgent>,
) -> Result<Json<AgentRecord>, ApiError> {
    let agent = state.objectives.create_agent(req).await?;
    audit
        .success(AuditKind::AgentCreated, &agent.agent_id, "")
        .await;
    Ok(Json(agent))
}

/// One agent.
#[utoipa::path(get, path = "/console/v1/agents/{agent_id}", tag = "objectives", params(AgentPath),
    responses(
        SecuredRead,
        (status = 200, body = AgentRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn get_agent(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<AgentPath>,
) -> Result<Json<AgentRecord>, ApiError> {
    palyra_actors::registry::validate_agent_id(&p.agent_id)?;
    Ok(Json(state.objectives.get_agent(&p.agent_id).await?))
}

/// Changes an agent.
#[utoipa::path(patch, path = "/console/v1/agents/{agent_id}", tag = "objectives", params(AgentPath),
    request_body = AgentPatch,
    responses(
        SecuredJsonWrite,
        (status = 200, body = AgentRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn update_agent(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<AgentPath>,
    ApiJson(patch): ApiJson<AgentPatch>,
) -> Result<Json<AgentRecord>, ApiError> {
    palyra_actors::registry::validate_agent_id(&p.agent_id)?;
    let agent = state.objectives.update_agent(&p.agent_id, patch).await?;
    audit
        .success(AuditKind::AgentUpdated, &agent.agent_id, "")
        .await;
    Ok(Json(agent))
}

/// Deletes an agent; refused while objectives reference it.
#[utoipa::path(delete, path = "/console/v1/agents/{agent_id}", tag = "objectives", params(AgentPath),
    responses(
        SecuredWrite,
        (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Objectives reference the agent", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn delete_agent(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<AgentPath>,
) -> Result<StatusCode, ApiError> {
    palyra_actors::registry::validate_agent_id(&p.agent_id)?;
    state.objectives.delete_agent(&p.agent_id).await?;
    audit
        .success(AuditKind::AgentDeleted, &p.agent_id, "")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Objectives, filtered and paged by id.
#[utoipa::path(get, path = "/console/v1/objectives", tag = "objectives", params(ObjectiveQuery),
    responses(
        SecuredRead,
        (status = 200, body = ObjectivePage),
        (status = 400, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn list_objectives(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ObjectiveQuery>,
) -> Result<Json<ObjectivePage>, ApiError> {
    let filter = ObjectiveFilter {
        kind: q.kind,
        state: q.state,
        agent_id: q.agent_id,
    };
    Ok(Json(
        state
            .objectives
            .list_objectives(filter, q.limit.unwrap_or(DEFAULT_PAGE), q.after)
            .await?,
    ))
}

/// Creates an objective (draft, or active with `"activate": true`).
#[utoipa::path(post, path = "/console/v1/objectives", tag = "objectives", request_body = NewObjective,
    responses(
        SecuredJsonWrite,
        (status = 200, body = ObjectiveRecord),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The objective exists", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn create_objective(
    State(state): State<AppState>,
    audit: Audit,
    ApiJson(req): ApiJson<NewObjective>,
) -> Result<Json<ObjectiveRecord>, ApiError> {
    let objective = state.objectives.create_objective(req).await?;
    audit
        .success(
            AuditKind::ObjectiveCreated,
            &objective.objective_id,
            format!(
                "agent {}, state {}",
                objective.agent_id,
                wire_name(objective.state)
            ),
        )
        .await;
    Ok(Json(objective))
}

/// One objective.
#[utoipa::path(get, path = "/console/v1/objectives/{objective_id}", tag = "objectives", params(ObjectivePath),
    responses(
        SecuredRead,
        (status = 200, body = ObjectiveRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn get_objective(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<ObjectivePath>,
) -> Result<Json<ObjectiveRecord>, ApiError> {
    Ok(Json(state.objectives.get_objective(&p.objective_id).await?))
}

/// Changes an objective's fields (not its state: see lifecycle).
#[utoipa::path(patch, path = "/console/v1/objectives/{objective_id}", tag = "objectives", params(ObjectivePath),
    request_body = ObjectivePatch,
    responses(
        SecuredJsonWrite,
        (status = 200, body = ObjectiveRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Archived", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn update_objective(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<ObjectivePath>,
    ApiJson(patch): ApiJson<ObjectivePatch>,
) -> Result<Json<ObjectiveRecord>, ApiError> {
    let objective = state
        .objectives
        .update_objective(&p.objective_id, patch)
        .await?;
    audit
        .success(AuditKind::ObjectiveUpdated, &objective.objective_id, "")
        .await;
    Ok(Json(objective))
}

/// Activate, pause, resume, cancel, archive, or fire (run now, within budget).
#[utoipa::path(post, path = "/console/v1/objectives/{objective_id}/lifecycle", tag = "objectives",
    params(ObjectivePath), request_body = LifecycleRequest,
    responses(
        SecuredJsonWrite,
        (status = 200, body = ObjectiveRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not allowed from the current state (named in the message)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn lifecycle(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<ObjectivePath>,
    ApiJson(req): ApiJson<LifecycleRequest>,
) -> Result<Json<ObjectiveRecord>, ApiError> {
    let action = wire_name(req.action);
    let objective = state
        .objectives
        .lifecycle(&p.objective_id, req.action, req.reason)
        .await?;
    audit
        .success(
            AuditKind::ObjectiveLifecycle,
            &objective.objective_id,
            format!("{action}: now {}", wire_name(objective.state)),
        )
        .await;
    Ok(Json(objective))
}

/// An objective's runs, newest first.
#[utoipa::path(get, path = "/console/v1/objectives/{objective_id}/runs", tag = "objectives",
    params(ObjectivePath, RunQuery),
    responses(
        SecuredRead,
        (status = 200, body = RunPage),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<ObjectivePath>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<Json<RunPage>, ApiError> {
    Ok(Json(
        state
            .objectives
            .runs(&p.objective_id, q.limit.unwrap_or(DEFAULT_PAGE), q.before)
            .await?,
    ))
}

/// Cancels one run: a run going is stopped at once (its provider call is dropped), a
/// queued one never starts; answers the run, recorded `cancelled`, once durable.
/// A run going on another node answers 409 naming that node (pausing the objective
/// stops its run on any node).
#[utoipa::path(post, path = "/console/v1/objectives/{objective_id}/runs/{run_id}/cancel", tag = "objectives",
    params(RunPath),
    responses(
        SecuredWrite,
        (status = 200, body = RunRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The run is finished, or going on another node (named in the message)", body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn cancel_run(
    State(state): State<AppState>,
    audit: Audit,
    ApiPath(p): ApiPath<RunPath>,
) -> Result<Json<RunRecord>, ApiError> {
    let run = state
        .objectives
        .cancel_run(&p.objective_id, &p.run_id)
        .await?;
    audit
        .success(
            AuditKind::ObjectiveLifecycle,
            &p.objective_id,
            format!("cancel run {}: now {}", run.run_id, wire_name(run.status)),
        )
        .await;
    Ok(Json(run))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::{Operator, Viewer};
    vec![
        route(Method::GET, "/console/v1/agents", Viewer, list_agents),
        route(Method::POST, "/console/v1/agents", Operator, create_agent),
        route(
            Method::GET,
            "/console/v1/agents/{agent_id}",
            Viewer,
            get_agent,
        ),
        route(
            Method::PATCH,
            "/console/v1/agents/{agent_id}",
            Operator,
            update_agent,
        ),
        route(
            Method::DELETE,
            "/console/v1/agents/{agent_id}",
            Operator,
            delete_agent,
        ),
        route(
            Method::GET,
            "/console/v1/objectives",
            Viewer,
            list_objectives,
        ),
        route(
            Method::POST,
            "/console/v1/objectives",
            Operator,
            create_objective,
        ),
        route(
            Method::GET,
            "/console/v1/objectives/{objective_id}",
            Viewer,
            get_objective,
        ),
        route(
            Method::PATCH,
            "/console/v1/objectives/{objective_id}",
            Operator,
            update_objective,
        ),
        route(
            Method::POST,
            "/console/v1/objectives/{objective_id}/lifecycle",
            Operator,
            lifecycle,
        ),
        route(
            Method::GET,
            "/console/v1/objectives/{objective_id}/runs",
            Viewer,
            runs,
        ),
        route(
            Method::POST,
            "/console/v1/objectives/{objective_id}/runs/{run_id}/cancel",
            Operator,
            cancel_run,
        ),
    ]
}
