//! `/usage`: tokens (and cost estimates) per agent, profile, model or objective, per
//! local day, from the usage rollup.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use chrono::NaiveDate;
use palyra_actors::usage::{GroupBy, UsageQuery, UsageReport};
use serde::Deserialize;

use crate::error::{ApiError, ErrorBody, SecuredRead};
use crate::extract::ApiQuery;
use crate::route::{Access, RouteSpec, route};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// What the groups are (default `agent`).
    pub group_by: Option<GroupBy>,
    /// First local day (`YYYY-MM-DD`, included); default 29 days before `to`.
    pub from: Option<NaiveDate>,
    /// Last local day (included); default today in `tz`.
    pub to: Option<NaiveDate>,
    /// IANA time zone the days are counted in (default `UTC`).
    #[param(example = "Europe/Paris")]
    pub tz: Option<String>,
}

/// Usage per group and local day over a window of at most 400 days.
///
/// Tokens are summed in 15-minute UTC buckets, so the days of every time zone in use
/// (offsets such as +5:30 and +5:45 included) are exact. `cost_usd` is present only
/// where every model counted has a price in the config (`usage.prices`).
#[utoipa::path(get, path = "/console/v1/usage", tag = "usage", params(UsageParams),
    responses(SecuredRead, (status = 200, body = UsageReport), (status = 400, body = ErrorBody)),
    security(("session_cookie" = []), ("admin_bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let query = UsageQuery {
        group_by: q.group_by.unwrap_or(GroupBy::Agent),
        from: q.from,
        to: q.to,
        tz: q.tz.unwrap_or_else(|| "UTC".to_owned()),
    };
    Ok(Json(state.usage.report(&query).await?))
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    vec![route(
        Method::GET,
        "/console/v1/usage",
        Access::Viewer,
        report,
    )]
}
