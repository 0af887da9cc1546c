//! `BrowserError`: what a browser session can answer instead of a result. A file of
//! its own that imports nothing, so the crate's error type can name it without a
//! chain of imports leading back to the browser actor.

/// What the browser actor can answer instead of a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrowserError {
    /// Browser sessions are turned off in the configuration.
    #[error("browser sessions are disabled (browser.enabled = false)")]
    Disabled,
    /// Chromium could not be started; the message says why (a missing binary, ...).
    #[error("{0}")]
    Unavailable(String),
    /// No live session has this id.
    #[error("no browser session with id {0:?}")]
    SessionNotFound(String),
    /// All allowed sessions are live.
    #[error("all {max} browser sessions are in use; close one or wait for one to expire")]
    SessionLimit { max: usize },
    /// A field of the request is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A URL that does not parse.
    #[error("{field} is not a valid URL: {message}")]
    InvalidUrl {
        field: &'static str,
        message: String,
    },
    /// A scheme other than http and https.
    #[error("the {scheme}: scheme is refused; only http and https URLs can be opened")]
    SchemeRefused { scheme: String },
    /// A destination the policy refuses (private network, not on the allow-list).
    #[error("{url} is refused: {reason}")]
    DestinationRefused { url: String, reason: String },
    /// The host name resolves to no address.
    #[error("the host {host:?} does not resolve to any address")]
    Unresolvable { host: String },
    /// The selector matches no element.
    #[error("no element matches the selector {0:?}")]
    SelectorNotFound(String),
    /// The selector is not valid CSS.
    #[error("{0:?} is not a valid CSS selector")]
    InvalidSelector(String),
    /// The element exists but cannot take the action.
    #[error("the element matching {selector:?} cannot be {action}: {reason}")]
    NotInteractable {
        selector: String,
        action: &'static str,
        reason: String,
    },
    /// The page did not finish loading within the navigation timeout.
    #[error("the page did not finish loading within {0} s")]
    NavigationTimeout(u64),
    /// The page could not be loaded (connection refused, TLS error, ...).
    #[error("the page could not be loaded: {0}")]
    NavigationFailed(String),
    /// The browser did not answer a command in time (a page stuck in a script).
    #[error("the browser did not answer in time ({0})")]
    Unresponsive(String),
    /// The browser process exited or crashed; the session has been removed.
    #[error("the browser of session {0:?} exited or crashed; the session is closed")]
    Gone(String),
    /// A script of ours failed in the page (the page's own scripts can make it
    /// throw); the message is the page's exception.
    #[error("a script failed in the page: {0}")]
    PageScript(String),
    /// The browser answered something this daemon does not understand.
    #[error("unexpected DevTools answer: {0}")]
    Protocol(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}
