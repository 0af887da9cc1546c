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
//! - [`registry`]: the registry actor owns auth profiles, defaults and the vault; a
//!   folder: `model.rs`, `handle.rs`, `actor.rs`, `attempts.rs`, `oauth_flow.rs`.
//! - [`objectives`]: the objectives actor owns agents, objectives and runs; a folder:
//!   `model.rs` (the records, the lifecycle table), `input.rs` (requests and their
//!   validation), `handle.rs` (`ObjectivesHandle`), `actor.rs` (state, recovery,
//!   commit), `firing.rs` (the firing decision, starting and finishing runs),
//!   `agents.rs` and `lifecycle.rs` (CRUD), `runner.rs` (one run: the agent's
//!   candidates in order, failover, attempts, tokens).
//! - [`operators`]: operators, their roles and passwords, and API tokens; every check
//!   reads its row, so every node honours a revocation on the next request.
//! - [`notifications`]: channels (webhooks), the durable outbox and the delivery
//!   actor that sends it, signed, with retries.
//! - [`scheduler`]: the scheduler actor fires due objectives from one timer heap.
//! - [`schedule`]: cron patterns in IANA time zones.
//! - [`tools`]: the tools a run offers its model (workspace files) and their
//!   execution within the daemon's policies.
//! - [`refresher`]: the refresher actor keeps OAuth tokens fresh, one timer for all.
//! - [`refresh_schedule`]: the schedule events the registry sends the refresher.
//! - `due_heap`: the min-heap of due times the scheduler and the refresher share;
//!   `due_timer`: the one timer each arms for its earliest entry.
//! - [`oauth`]: PKCE, code exchange, the refresh grant and its backoff.
//! - [`outbound`]: the one outbound HTTP client and its timeouts.
//! - [`vault`]: secrets sealed with XChaCha20-Poly1305 under a rotatable master key.
//! - [`provider`]: provider settings and the API-key check.
//! - [`adapter`]: one model call in the provider's own API (OpenAI chat completions,
//!   the Anthropic Messages API) and the one classification of its answer.
//! - [`ids`]: validation of profile and agent ids.
//! - [`secret`]: the secret string type and token helpers.
//! - [`snapshot`]: the rows actors load their state from, read before they start.
//! - `reload`: how the registry and the objectives actor reload after a failed commit.
//! - [`error`]: the one error type this crate returns.
//! - [`audit`]: the append-only audit log, its queries and its pruning.
//! - [`metrics`]: the actors' counters and histograms, shared with `/metrics`.
//! - [`usage`]: the usage rollup (tokens per 15-minute bucket, agent, objective,
//!   profile, provider and model), its report per local day, and cost estimates.
//! - `time`: Unix-millisecond clock helpers.
//! - `paging`: page sizes and cursors shared by every list; `wire`: enum names as on the wire.
//!
//! actix types never leave this crate: every actor is reached through a cloneable
//! handle with `async fn` methods, and every message and result is `Send`.

pub mod adapter;
pub mod audit;
pub mod browser;
pub mod cluster;
mod due_heap;
mod due_timer;
pub mod error;
pub mod handoffs;
pub mod ids;
pub mod metrics;
pub mod notifications;
pub mod oauth;
pub mod objectives;
pub mod operators;
pub mod outbound;
mod paging;
pub mod provider;
pub mod refresh_schedule;
pub mod refresher;
pub mod registry;
mod reload;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod sessions;
pub mod snapshot;
mod time;
pub mod tools;
pub mod usage;
pub mod vault;
mod wire;

pub use error::ActorError;
pub use paging::MAX_PAGE;
pub use wire::wire_name;

pub use handoffs::{HandoffPolicy, HandoffsHandle, MintedHandoff};
pub use palyra_storage::Storage;
pub use registry::RegistryHandle;
pub use secret::SecretString;
pub use sessions::{Authenticated, ConsoleSession, IssuedSession, SessionPolicy, SessionsHandle};
pub use time::{now_ms, to_datetime};
