//! The test kit: the fake services and the daemon launchers that the integration tests
//! (tests/api) and palyra-bench share, compiled only with the feature `testkit`, so
//! palyrad's release build does not carry them.
//!
//! - [`served`]: an axum router on a loopback port, on its own thread and runtime.
//! - [`oauth`]: a fake OAuth 2.0 provider (token endpoint with a real PKCE check,
//!   refresh-token rotation, revocation, token validation).
//! - [`model`]: a fake OpenAI-compatible chat-completions provider.
//! - [`scripted`]: a fake model provider scripted per key (429 with Retry-After,
//!   5xx, 529, 401, 402, 400, a hang, a slow answer), speaking OpenAI chat
//!   completions and the Anthropic Messages API.
//! - [`provider`]: a fake provider's `GET /v1/models`, the API-key check.
//! - [`daemon`]: palyrad in this process, on its own thread.
//! - [`child`]: the palyrad binary as a child process.
//! - [`postgres`]: the backend switch of the tests and a fresh database per test.
//! - [`cluster`]: several palyrad processes on one PostgreSQL database, and the faults
//!   a test inflicts on them.
//! - [`firings`]: the checker of the cluster's run rows and provider calls.
//! - [`dns`]: a tiny DNS server on loopback that plays a rebinding domain.
//! - [`webhook`]: a fake webhook receiver that verifies `palyra-signature` and its
//!   timestamp window, answers a script of statuses and records what it received.

pub mod child;
pub mod cluster;
pub mod daemon;
pub mod dns;
pub mod firings;
pub mod model;
pub mod oauth;
pub mod postgres;
pub mod provider;
pub mod scripted;
pub mod served;
pub mod webhook;
