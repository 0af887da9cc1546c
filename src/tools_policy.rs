//! The policy of runs' tools, built from the settings at start: what no tool may
//! reach (the data dir, the config file, the daemon's own listeners), the egress
//! policy `http_fetch` shares with browser sessions, and the per-call timeout.

use std::path::Path;
use std::time::Duration;

use palyra_actors::browser::BrowserHandle;
use palyra_actors::tools::ToolsPolicy;
use palyra_actors::tools::fetch::FetchPolicy;

use crate::settings::Settings;

/// One tool call at most this long; the run's `deadline_s` bounds them all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The tools' policy of a daemon with `settings` on `data_dir`, listening on
/// `listeners`; `http_fetch` shares the browser sessions' egress policy and their one
/// resolver, and the browser tools drive sessions through `browser`.
pub fn policy<const N: usize>(
    settings: &Settings,
    data_dir: &Path,
    browser: &BrowserHandle,
    listeners: [Option<&tokio::net::TcpListener>; N],
) -> ToolsPolicy {
    let mut protected = vec![data_dir.to_owned()];
    protected.extend(settings.config_file.clone());
    ToolsPolicy {
        protected,
        call_timeout: CALL_TIMEOUT,
        fetch: FetchPolicy {
            urls: browser.url_policy(),
            own_listeners: listeners
                .into_iter()
                .flatten()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
        },
        browser: Some(browser.clone()),
    }
}
