//! The names values have on the wire, shared by messages, metric labels and the CLI.

/// The name a unit enum has on the wire (`needs_reauth`, `login_failed`): its serde
/// name, for messages, labels and the CLI's text output.
pub fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
