//! Access-control wiring of the daemon beside `application.rs`: its own host names,
//! which requests must name in `Host` (DNS rebinding of the daemon itself is refused
//! with 421 before authentication); the per-operator login throttle; the global budget
//! of audit events for unauthenticated failures and its summaries; the pruning of the
//! rate limiters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use palyra_http::AppState;
use palyra_http::throttle::{
    AuditBudget, FAILURE_EVENTS_PER_WINDOW, FAILURE_EVENTS_WINDOW, KeyedThrottle,
};

use crate::settings::Settings;

/// Failed password logins per operator id, with the per-peer throttle's budget.
pub fn operator_throttle(settings: &Settings) -> Arc<KeyedThrottle<String>> {
    Arc::new(KeyedThrottle::new(
        settings.auth.max_failures,
        Duration::from_secs(settings.auth.failure_window_s),
    ))
}

/// The global budget of audit events for wrong tokens and passwords.
pub fn audit_budget() -> Arc<AuditBudget> {
    Arc::new(AuditBudget::new(
        FAILURE_EVENTS_PER_WINDOW,
        FAILURE_EVENTS_WINDOW,
    ))
}

/// Once a window has passed, the failures folded in it become one summary event (the
/// next failure would also write it; this covers a flood that simply stops).
pub fn spawn_audit_budget_summaries(state: &AppState) {
    let budget = Arc::downgrade(&state.auth_audit_budget);
    let audit = state.audit.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FAILURE_EVENTS_WINDOW);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(budget) = budget.upgrade() else {
                break;
            };
            let folded = budget.take_folded();
            if folded > 0 {
                audit.submit(palyra_http::audit::folded_summary(folded, &budget));
            }
        }
    });
}

/// Peers whose quota has refilled are forgotten off the request path, every minute,
/// for as long as the state lives.
pub fn spawn_rate_limit_pruning(state: &AppState) {
    let Some(limits) = &state.rate_limits else {
        return;
    };
    let limits = Arc::downgrade(limits);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(limits) = limits.upgrade() else {
                break;
            };
            limits.forget_idle_peers();
        }
    });
}

/// The names a request may use for the daemon bound at `addr`, lower-case and without
/// brackets or port, and whether any IP literal is one of them (an unspecified bind
/// listens on every address): loopback names, the bound address, `server.public_hosts`
/// and the hosts of the public base URLs (links the daemon hands out point there).
pub fn allowed_hosts(addr: SocketAddr, settings: &Settings) -> (Vec<String>, bool) {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.push(addr.ip().to_string());
    names.extend(
        settings
            .server
            .public_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase()),
    );
    let bases = [
        &settings.server.public_base_url,
        &settings.oauth.public_base_url,
    ];
    names.extend(bases.into_iter().flatten().filter_map(|base| {
        let url = url::Url::parse(base).ok()?;
        Some(
            url.host_str()?
                .trim_matches(['[', ']'])
                .to_ascii_lowercase(),
        )
    }));
    names.sort();
    names.dedup();
    (names, addr.ip().is_unspecified())
}

/// `http(s)://<loopback>:<port>` for handoff links: the bound address when it is a
/// specific one, the loopback address of its family when it is unspecified; https
/// when the listener speaks TLS.
pub fn loopback_base_url(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}
