//! The policy of runs' tools, built from the settings at start: what no tool may
//! reach (the data dir, the config file, the daemon's own listeners), the egress
//! policy `http_fetch` shares with browser sessions, and the per-call timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use palyra_actors::browser::UrlPolicy;
use palyra_actors::tools::ToolsPolicy;
use palyra_actors::tools::fetch::FetchPolicy;

use crate::settings::Settings;

/// One tool call at most this long; the run's `deadline_s` bounds them all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The tools' policy of a daemon with `settings` on `data_dir`, listening on
/// `listeners`; `urls` is the browser sessions' policy (and its one resolver).
pub fn policy(
    settings: &Settings,
    data_dir: &Path,
    urls: UrlPolicy,
    listeners: Vec<SocketAddr>,
    browser: palyra_actors::browser::BrowserHandle,
) -> ToolsPolicy {
    let mut protected = vec![data_dir.to_owned()];
    protected.extend(settings.config_file.clone());
    ToolsPolicy {
        protected,
        call_timeout: CALL_TIMEOUT,
        fetch: FetchPolicy {
            urls,
            own_listeners: listeners,
        },
        browser: Some(browser),
    }
}
