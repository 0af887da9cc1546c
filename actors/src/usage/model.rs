//! The rollup row and its key.
//!
//! Rows are summed per 15-minute UTC bucket rather than per UTC day: every time zone
//! offset in use today is a whole number of quarter hours (India +5:30, Nepal +5:45,
//! Chatham +12:45), so the days of any zone are exact sums of buckets, where UTC days
//! would split a local day in two for all but UTC.

use chrono::{DateTime, Utc};
use palyra_storage::{StoredRecord, Table};
use serde::{Deserialize, Serialize};

/// The width of a bucket: 15 minutes.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Tokens and answered calls of one bucket for one agent, objective, profile, provider
/// and model. Written only by `WriteOp::Add`, which sums the counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub bucket_start: DateTime<Utc>,
    pub agent_id: String,
    pub objective_id: String,
    pub profile_id: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Answered provider calls.
    pub calls: i64,
}

impl StoredRecord for UsageRow {
    const TABLE: Table = Table::UsageRollup;
    const VERSION: u32 = 1;
}

/// The start of the bucket holding `ms` (Unix milliseconds).
pub(crate) fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// The bucket's start (big-endian, so key order is time order) and the row's five
/// names, NUL-separated (ids and names never hold NUL).
pub fn usage_key(row: &UsageRow) -> Vec<u8> {
    let start = u64::try_from(row.bucket_start.timestamp_millis()).unwrap_or(0);
    let mut key = start.to_be_bytes().to_vec();
    for (i, part) in [
        &row.agent_id,
        &row.objective_id,
        &row.profile_id,
        &row.provider,
        &row.model,
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The bucket start a key begins with.
pub(crate) fn key_start_ms(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(bytes)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_quarter_hours_and_keys_sort_by_time() {
        assert_eq!(bucket_of(BUCKET_MS + 5), BUCKET_MS);
        assert_eq!(bucket_of(BUCKET_MS - 1), 0);
        let row = |ms: i64, agent: &str| UsageRow {
            bucket_start: crate::time::to_datetime(ms),
            agent_id: agent.into(),
            objective_id: "o".into(),
            profile_id: "p".into(),
            provider: "openai".into(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 2,
            calls: 1,
        };
        let early = usage_key(&row(BUCKET_MS, "zz"));
        let late = usage_key(&row(2 * BUCKET_MS, "aa"));
        assert!(early < late);
        assert_eq!(key_start_ms(&late), Some(2 * BUCKET_MS));
        assert!(early.ends_with(b"zz\0o\0p\0openai\0m"));
    }
}
