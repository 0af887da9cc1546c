//! Browser sessions: headless Chromium driven through the DevTools protocol.
//!
//! Each session is one Chromium process with its own fresh profile directory, started
//! on demand (never at daemon start, so a host without Chromium still runs the
//! daemon) and ended on close, idle expiry or shutdown: one process per session keeps
//! profiles apart and makes a crash end one session, not all of them.
//!
//! The actor owns the table of live sessions (the limit, idle expiry, shutdown); the
//! DevTools work of one request runs on the caller's task through [`BrowserHandle`],
//! never inside the actor, and one request at a time per session. Every DevTools call
//! is bounded, and a session whose process or connection died answers
//! [`BrowserError::Gone`] at once and leaves the table.
//!
//! Every request of a session (any page, frame, worker or socket) leaves through the
//! session's egress proxy (`proxy.rs`), which resolves the host once, checks every
//! address against [`policy::UrlPolicy`] and connects to an address it checked; the
//! page's own requests are also paused by the Fetch domain, which checks the scheme
//! and the host name so a refused navigation gets its answer. Chromium speaks DevTools
//! over a pipe, gets an environment built from nothing, and never runs as root
//! (`isolation.rs`).
//!
//! Layout: `error.rs` ([`BrowserError`]), `model.rs` (configuration and answers),
//! `handle.rs` ([`BrowserHandle`]), `actor.rs` (the table of live sessions),
//! `session.rs` (one session: start and end), `page.rs` (page operations),
//! `interceptor.rs` (the page's events and the request interceptor), `cdp.rs`,
//! [`policy`], [`resolver`], `proxy.rs` and `peer.rs` (the egress proxy and who may use
//! it), `isolation.rs` and `process.rs`. Inside the crate, import from the defining file, not
//! through the re-exports below.

mod actor;
mod cdp;
pub(crate) mod error;
mod handle;
mod interceptor;
mod isolation;
mod model;
mod page;
mod peer;
pub mod policy;
mod process;
mod proxy;
pub mod resolver;
mod session;

pub use error::BrowserError;
pub use handle::BrowserHandle;
pub use isolation::{BrowserIsolation, SandboxState};
pub use model::{
    BrowserPolicy, BrowserSessionInfo, BrowserSessionList, NavigationResult, NewBrowserSession,
    PageContent, PageState, VIEWPORT_MAX, VIEWPORT_MIN, Viewport,
};
pub use policy::UrlPolicy;
pub use resolver::Resolver;
