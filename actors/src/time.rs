//! Wall-clock helpers. Stored times are Unix milliseconds; the API shows RFC 3339.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Unix milliseconds as a UTC timestamp.
pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
