//! The cluster as this node sees it: `GET /console/v1/cluster`.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use palyra_actors::cluster::ClusterStatus;

use crate::error::{ApiError, SecuredRead};
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

/// Nodes (last heartbeat, alive, shards), every shard's lease (owner, epoch, expiry)
/// and the shards this node holds. On redb: one node holding every shard.
#[utoipa::path(get, path = "/console/v1/cluster", tag = "deployment",
    responses(
        SecuredRead,
        (status = 200, description = "The cluster", body = ClusterStatus)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterStatus>, ApiError> {
    Ok(Json(state.cluster.status().await?))
}

pub(crate) fn routes() -> Vec<RouteSpec> {
    vec![route(
        Method::GET,
        "/console/v1/cluster",
        Access::Viewer,
        cluster,
    )]
}
