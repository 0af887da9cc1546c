//! The OpenAPI 3 document of the admin API, generated from the handlers' annotations.

use axum::http::Method;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::route::{Access, RouteSpec, route};
use crate::routes::{
    browser, cluster, console_auth, deployment, handoff_redeem, metrics, notifications, oauth,
    oauth_client_secret, objectives, operators, ops, profiles, tokens,
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Palyra admin API", description = "The /console/v1 admin API of palyrad."),
    paths(
        ops::healthz,
        ops::readyz,
        console_auth::login,
        console_auth::session,
        console_auth::logout,
        console_auth::mint_handoff,
        handoff_redeem::handoff_page,
        handoff_redeem::redeem_handoff,
        console_auth::handoff_session,
        profiles::list_profiles,
        profiles::create_profile,
        profiles::get_profile,
        profiles::delete_profile,
        profiles::set_default,
        profiles::health,
        profiles::resolve,
        profiles::rotate_key,
        oauth::bootstrap,
        oauth::device_sign_in,
        oauth::callback,
        oauth::manual_callback,
        oauth::callback_state,
        oauth::refresh,
        oauth_client_secret::set_client_secret,
        oauth_client_secret::delete_client_secret,
        objectives::list_agents,
        objectives::create_agent,
        objectives::get_agent,
        objectives::update_agent,
        objectives::delete_agent,
        objectives::list_objectives,
        objectives::create_objective,
        objectives::get_objective,
        objectives::update_objective,
        objectives::lifecycle,
        objectives::runs,
        objectives::cancel_run,
        deployment::posture,
        deployment::audit,
        cluster::cluster,
        metrics::metrics,
        browser::create_session,
        browser::list_sessions,
        browser::get_session,
        browser::close_session,
        browser::navigate,
        browser::click,
        browser::type_text,
        browser::screenshot,
        browser::content,
        operators::list,
        operators::create,
        operators::show,
        operators::update,
        operators::delete,
        operators::mint_token,
        operators::revoke_sessions,
        tokens::list,
        tokens::revoke,
        notifications::list_channels,
        notifications::create_channel,
        notifications::delete_channel,
        notifications::test_channel,
        notifications::deliveries,
        crate::routes::usage::report,
        openapi_json,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&SecuritySchemes),
    tags((name = "auth", description = "Console authentication and browser handoff"),
         (name = "auth-profiles", description = "Credentials for model providers and the vault"),
         (name = "oauth", description = "OAuth sign-in with PKCE and token refresh"),
         (name = "objectives", description = "Agents, objectives (standing orders, heartbeats, programs) and their runs"),
         (name = "browser", description = "Headless Chromium sessions: open, navigate, click, type, screenshot, content"),
         (name = "operators", description = "Operators, their roles, API tokens and sessions (admin only)"),
         (name = "notifications", description = "Notification channels (signed webhooks) and their deliveries (admin only)"),
         (name = "usage", description = "Tokens and cost estimates per agent, profile, model or objective, per day"),
         (name = "deployment", description = "The deployment's security posture and the audit log"),
         (name = "operations", description = "Probes, metrics and the API document"))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::request::SESSION_COOKIE,
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/console/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The routes of this resource, for the route table.
pub(crate) fn routes() -> Vec<RouteSpec> {
    use Access::Public;
    vec![route(
        Method::GET,
        "/console/v1/openapi.json",
        Public,
        openapi_json,
    )]
}
