//! The actors of palyrad and the handles the rest of the daemon talks to them through.
//!
//! Layout:
//! - [`browser`]: the browser actor owns headless Chromium sessions driven through
//!   the DevTools protocol; one folder: `error.rs`, `model.rs`, `handle.rs`,
//!   `actor.rs` (the table of live sessions), `session.rs`, `page.rs` (page
//!   operations), `interceptor.rs` (the Fetch-domain request check), `cdp.rs`,
//!   `policy.rs`, `process.rs`.
//! - [`sessions`]: the sessions actor owns console sessions; it publishes a read-only
//!   index so that validating a cookie costs no actor hop.
//! - [`handoffs`]: the handoffs actor owns single-use browser handoff tokens and asks
//!   the sessions actor for a session when one is consumed.
//! - [`registry`]: the registry actor owns auth profiles, defaults and the vault; one
//!   folder: `model.rs`, `handle.rs`, `actor.rs`, `attempts.rs`, `oauth_flow.rs`.
//! - [`objectives`]: the objectives actor owns agents, objectives and runs.
//! - [`scheduler`]: the scheduler actor fires due objectives from one timer heap.
//! - [`runner`]: one run: credential, chat completion, tokens.
//! - [`schedule`]: cron patterns in IANA time zones.
//! - [`refresher`]: the refresher actor keeps OAuth tokens fresh, one timer for all.
//! - [`refresh_schedule`]: the schedule events the registry sends the refresher.
//! - `due_heap`: the min-heap of due times the scheduler and the refresher share.
//! - [`oauth`]: PKCE, code exchange, the refresh grant and its backoff.
//! - [`outbound`]: the one outbound HTTP client and its timeouts.
//! - [`vault`]: secrets sealed with XChaCha20-Poly1305 under a rotatable master key.
//! - [`provider`]: provider settings and the API-key check.
//! - [`ids`]: validation of profile and agent ids.
//! - [`secret`]: the secret string type and token helpers.
//! - [`error`]: the one error type this crate returns.
//!
//! actix types never leave this crate: every actor is reached through a cloneable
//! handle with `async fn` methods, and every message and result is `Send`.

pub mod audit;
pub mod browser;
mod due_heap;
pub mod error;
pub mod handoffs;
pub mod ids;
pub mod metrics;
pub mod oauth;
pub mod objectives;
pub mod outbound;
pub mod provider;
pub mod refresh_schedule;
pub mod refresher;
pub mod registry;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod sessions;
mod time;
pub mod vault;

pub use error::ActorError;

/// The name a unit enum has on the wire (`needs_reauth`, `login_failed`): its serde
/// name, for messages, labels and the CLI's text output.
pub fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Largest page of any list.
pub const MAX_PAGE: usize = 500;

/// Checks a page size.
pub(crate) fn check_page_limit(limit: usize) -> Result<(), ActorError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ActorError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(())
}

/// One page of `items` (already past the cursor and filtered): at most `limit`
/// items, and the cursor of the next page when more remain.
pub(crate) fn page_of<T>(
    mut items: impl Iterator<Item = T>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let page: Vec<T> = items.by_ref().take(limit).collect();
    let next = items.next().and_then(|_| page.last().map(&key));
    (page, next)
}
pub use handoffs::{HandoffPolicy, HandoffsHandle, MintedHandoff};
pub use palyra_storage::Storage;
pub use registry::RegistryHandle;
pub use secret::SecretString;
pub use sessions::{Authenticated, ConsoleSession, IssuedSession, SessionPolicy, SessionsHandle};
pub use time::{now_ms, to_datetime};
