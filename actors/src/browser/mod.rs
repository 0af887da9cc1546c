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
//! Every request the page makes (navigations, redirects, subresources) is paused by
//! the Fetch domain and checked against the [`policy::UrlPolicy`] before it may go on.
//!
//! Layout: `error.rs` ([`BrowserError`]), `model.rs` (configuration and answers),
//! `handle.rs` ([`BrowserHandle`]), `actor.rs` (the table of live sessions),
//! `session.rs` (one session: start and end), `page.rs` (page operations),
//! `interceptor.rs` (the page's events and the request interceptor), `cdp.rs`,
//! [`policy`] and `process.rs`. Inside the crate, import from the defining file, not
//! through the re-exports below.

mod actor;
mod cdp;
pub(crate) mod error;
mod handle;
mod interceptor;
mod model;
mod page;
pub mod policy;
mod process;
mod session;

pub use error::BrowserError;
pub use handle::BrowserHandle;
pub use model::{
    BrowserPolicy, BrowserSessionInfo, BrowserSessionList, NavigationResult, NewBrowserSession,
    PageContent, PageState, VIEWPORT_MAX, VIEWPORT_MIN, Viewport,
};
pub use policy::UrlPolicy;
