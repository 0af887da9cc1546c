//! The policy of runs' tools, built from the settings at start: what no tool may
//! reach (the data dir, the config file) and the per-call timeout.

use std::path::Path;
use std::time::Duration;

use palyra_actors::tools::ToolsPolicy;

use crate::settings::Settings;

/// One tool call at most this long; the run's `deadline_s` bounds them all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The tools' policy of a daemon with `settings` on `data_dir`.
pub fn policy(settings: &Settings, data_dir: &Path) -> ToolsPolicy {
    let mut protected = vec![data_dir.to_owned()];
    protected.extend(settings.config_file.clone());
    ToolsPolicy {
        protected,
        call_timeout: CALL_TIMEOUT,
    }
}
