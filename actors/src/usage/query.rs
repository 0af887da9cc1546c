//! [`UsageHandle`]: the usage report, read from the rollup on request (no actor: the
//! rows are never held in memory, and every node reads the same table).

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use palyra_storage::{Storage, Table, decode_record};
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::usage::model::{UsageRow, key_start_ms};
use crate::usage::price::Prices;

/// The longest window one report covers, in days.
pub const MAX_DAYS: u64 = 400;

/// Rows read per storage round trip.
const PAGE: usize = 1000;

/// What the report's groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Agent,
    Profile,
    Model,
    Objective,
}

/// A report's window: the local days `from` to `to` (both included) in `tz`.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub group_by: GroupBy,
    /// Default: [`DEFAULT_DAYS`] days up to `to`.
    pub from: Option<NaiveDate>,
    /// Default: today in `tz`.
    pub to: Option<NaiveDate>,
    /// An IANA time zone name.
    pub tz: String,
}

/// The days a report covers when `from` is not given (the last day included).
pub const DEFAULT_DAYS: u64 = 30;

/// One group's usage on one local day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageDay {
    /// The local day (`YYYY-MM-DD` in the report's time zone).
    pub day: NaiveDate,
    /// The agent, profile, objective id or model (`provider/model`).
    pub key: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    /// Estimated US dollars; absent unless every model of it is priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// One group's usage over the whole window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageGroup {
    pub key: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    /// Estimated US dollars; absent unless every model of it is priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tokens of models without a price (why `cost_usd` is absent).
    pub unpriced_tokens: i64,
}

/// `GET /console/v1/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub group_by: GroupBy,
    /// The IANA time zone days are counted in.
    pub tz: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Per group and day with any usage, by day then key.
    pub days: Vec<UsageDay>,
    /// Per group, most tokens first.
    pub groups: Vec<UsageGroup>,
}

/// Reads the rollup. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct UsageHandle {
    storage: Storage,
    prices: std::sync::Arc<Prices>,
}

/// Sums with the cost known so far (`None` once an unpriced model is in).
#[derive(Debug, Default)]
struct Sum {
    input: i64,
    output: i64,
    calls: i64,
    cost: f64,
    unpriced: i64,
}

impl Sum {
    fn add(&mut self, row: &UsageRow, cost: Option<f64>) {
        self.input = self.input.saturating_add(row.input_tokens);
        self.output = self.output.saturating_add(row.output_tokens);
        self.calls = self.calls.saturating_add(row.calls);
        match cost {
            Some(c) => self.cost += c,
            None => {
                self.unpriced = self
                    .unpriced
                    .saturating_add(row.input_tokens.saturating_add(row.output_tokens));
            }
        }
    }

    fn cost(&self) -> Option<f64> {
        (self.unpriced == 0).then_some(self.cost)
    }
}

impl UsageHandle {
    pub fn new(storage: Storage, prices: Prices) -> Self {
        Self {
            storage,
            prices: std::sync::Arc::new(prices),
        }
    }

    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// The usage of `query`'s window, per group and local day.
    pub async fn report(&self, query: &UsageQuery) -> Result<UsageReport, ActorError> {
        let tz: Tz = query
            .tz
            .parse()
            .map_err(|_| ActorError::invalid("tz", "not an IANA time zone name"))?;
        let to = query
            .to
            .unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
        let from = match query.from {
            Some(from) => from,
            None => to
                .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
                .ok_or_else(|| ActorError::invalid("to", "out of range"))?,
        };
        if from > to {
            return Err(ActorError::invalid("from", "must not be after `to`"));
        }
        let days = (to - from).num_days() as u64 + 1;
        if days > MAX_DAYS {
            return Err(ActorError::invalid(
                "from",
                format!("a report covers at most {MAX_DAYS} days"),
            ));
        }
        let start = local_midnight(tz, from)?;
        let end = local_midnight(
            tz,
            to.checked_add_days(Days::new(1))
                .ok_or_else(|| ActorError::invalid("to", "out of range"))?,
        )?;
        let rows = self.rows_between(start, end).await?;
        let (days, groups) = summarize(rows, tz, query.group_by, &self.prices);
        Ok(UsageReport {
            group_by: query.group_by,
            tz: tz.name().to_owned(),
            from,
            to,
            days,
            groups,
        })
    }

    /// Every row whose bucket starts in `[start, end)`, in key order.
    pub async fn rows_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<UsageRow>, ActorError> {
        let (start, end) = (start.timestamp_millis(), end.timestamp_millis());
        // Keys begin with the bucket's start, so the window is one key range: from
        // just below the first bucket (no key is 8 bytes long) to the end.
        let mut after = u64::try_from(start.saturating_sub(1))
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        let mut out = Vec::new();
        loop {
            let page = self
                .storage
                .read_forward(Table::UsageRollup, Some(&after), PAGE)
                .await?;
            let full = page.len() == PAGE;
            for (key, value) in page {
                if key_start_ms(&key).is_none_or(|ms| ms >= end) {
                    return Ok(out);
                }
                if key_start_ms(&key).is_some_and(|ms| ms >= start) {
                    out.push(decode_record::<UsageRow>(&value)?);
                }
                after = key;
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

/// Sums `rows` per group and local day of `tz`, and per group.
fn summarize(
    rows: Vec<UsageRow>,
    tz: Tz,
    group_by: GroupBy,
    prices: &Prices,
) -> (Vec<UsageDay>, Vec<UsageGroup>) {
    let mut per_day: BTreeMap<(NaiveDate, String), Sum> = BTreeMap::new();
    let mut per_group: BTreeMap<String, Sum> = BTreeMap::new();
    for row in rows {
        let day = row.bucket_start.with_timezone(&tz).date_naive();
        let key = match group_by {
            GroupBy::Agent => row.agent_id.clone(),
            GroupBy::Profile => row.profile_id.clone(),
            GroupBy::Objective => row.objective_id.clone(),
            GroupBy::Model => format!("{}/{}", row.provider, row.model),
        };
        let cost = prices.cost(
            &row.provider,
            &row.model,
            row.input_tokens,
            row.output_tokens,
        );
        per_day
            .entry((day, key.clone()))
            .or_default()
            .add(&row, cost);
        per_group.entry(key).or_default().add(&row, cost);
    }
    let days: Vec<UsageDay> = per_day
        .into_iter()
        .map(|((day, key), s)| UsageDay {
            day,
            key,
            input_tokens: s.input,
            output_tokens: s.output,
            calls: s.calls,
            cost_usd: s.cost(),
        })
        .collect();
    let mut groups: Vec<UsageGroup> = per_group
        .into_iter()
        .map(|(key, s)| UsageGroup {
            key,
            input_tokens: s.input,
            output_tokens: s.output,
            calls: s.calls,
            cost_usd: s.cost(),
            unpriced_tokens: s.unpriced,
        })
        .collect();
    groups.sort_by(|a, b| {
        (b.input_tokens + b.output_tokens)
            .cmp(&(a.input_tokens + a.output_tokens))
            .then_with(|| a.key.cmp(&b.key))
    });
    (days, groups)
}

/// The first instant of local day `day` in `tz` (a day that begins in a DST gap, as
/// some zones' days did, begins when the gap ends).
pub(crate) fn local_midnight(tz: Tz, day: NaiveDate) -> Result<DateTime<Utc>, ActorError> {
    let midnight = day
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| ActorError::invalid("from", "out of range"))?;
    for minutes in (0..=180).step_by(15) {
        let local = midnight + chrono::Duration::minutes(minutes);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(ActorError::invalid(
        "tz",
        "the day has no midnight in this time zone",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, agent: &str, model: &str, input: i64, output: i64) -> UsageRow {
        UsageRow {
            bucket_start: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            agent_id: agent.into(),
            objective_id: format!("{agent}-o"),
            profile_id: "p".into(),
            provider: "openai".into(),
            model: model.into(),
            input_tokens: input,
            output_tokens: output,
            calls: 1,
        }
    }

    #[test]
    fn days_are_local_days_even_on_a_quarter_hour_offset() {
        // Kathmandu is UTC+5:45: 18:00 UTC is 23:45 there, 18:15 UTC the next day.
        let rows = vec![
            row("2026-03-01T18:00:00Z", "a", "m", 1, 2),
            row("2026-03-01T18:15:00Z", "a", "m", 10, 20),
        ];
        let tz: Tz = "Asia/Kathmandu".parse().unwrap();
        let (days, groups) = summarize(rows.clone(), tz, GroupBy::Agent, &Prices::default());
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            days.iter()
                .map(|d| (d.day, d.input_tokens))
                .collect::<Vec<_>>(),
            vec![(day("2026-03-01"), 1), (day("2026-03-02"), 10)]
        );
        assert_eq!(groups[0].input_tokens, 11);
        assert_eq!(groups[0].cost_usd, None);
        assert_eq!(groups[0].unpriced_tokens, 33);
        let (utc, _) = summarize(rows, Tz::UTC, GroupBy::Agent, &Prices::default());
        assert_eq!(utc.len(), 1);
        assert_eq!(utc[0].input_tokens, 11);
    }

    #[test]
    fn a_group_has_a_cost_only_when_every_model_in_it_is_priced() {
        let mut prices = BTreeMap::new();
        prices.insert(
            "priced".to_owned(),
            crate::usage::ModelPrice {
                input_per_million: 1.0,
                output_per_million: 3.0,
            },
        );
        let prices = Prices(prices);
        let rows = vec![
            row("2026-03-01T10:00:00Z", "a", "priced", 1_000_000, 1_000_000),
            row("2026-03-01T10:00:00Z", "b", "priced", 500_000, 0),
            row("2026-03-01T10:00:00Z", "b", "free", 7, 0),
        ];
        let (_, by_agent) = summarize(rows.clone(), Tz::UTC, GroupBy::Agent, &prices);
        let a = by_agent.iter().find(|g| g.key == "a").unwrap();
        let b = by_agent.iter().find(|g| g.key == "b").unwrap();
        assert_eq!(a.cost_usd, Some(4.0));
        assert_eq!((b.cost_usd, b.unpriced_tokens), (None, 7));
        let (_, by_model) = summarize(rows, Tz::UTC, GroupBy::Model, &prices);
        let keys: Vec<(&str, Option<f64>)> = by_model
            .iter()
            .map(|g| (g.key.as_str(), g.cost_usd))
            .collect();
        assert_eq!(
            keys,
            vec![("openai/priced", Some(4.5)), ("openai/free", None)]
        );
    }
}
