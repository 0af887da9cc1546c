//! The daemon's one outbound HTTP client, built once at start-up and handed to the
//! registry (API-key checks), OAuth (code exchange, refresh, revocation) and the
//! runner (provider calls), so connections and TLS sessions to a provider are reused
//! and the policy below holds for every call the daemon makes.

use std::time::Duration;

/// Connecting to a provider (TCP and TLS) takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An API-key check (`GET /v1/models`) as a whole.
pub const KEY_CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// One OAuth request (token, refresh, revocation) as a whole.
pub const OAUTH_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the client: redirects are never followed (a provider's answer is taken as
/// it comes, and a credential is never sent on to another host); every request sets
/// its own overall timeout from the constants above or the run's deadline.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// The objectives' runs' client: the same policy, and a pool that keeps at most
/// `max_runs` idle connections per host. With at most `max_runs` runs going, each
/// making one call at a time, no more connections are ever in use either.
pub fn runs_client(max_runs: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(max_runs)
        .build()
}
