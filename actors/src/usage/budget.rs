//! Periodic budgets: daily and monthly token limits of an objective or an agent, read
//! against the usage rollup (the same table on every node, so a limit holds across a
//! cluster), with a soft threshold whose crossing is reported once.
//!
//! A period is a local day or month of the subject's time zone (an objective's
//! automation time zone, an agent's `budget.timezone`), so it resets at local midnight.
//! The rollup's 15-minute buckets line up with every local midnight in use, so a
//! period is an exact sum of buckets.
//!
//! Cost limits (US dollars) are read from the same rows with `usage.prices`.
//! No price, no cost, never a guess: a cost limit is refused when no price is
//! configured at all, and tokens of a model without a price count towards no cost;
//! they are named beside the cost in a refusal and a threshold's detail instead.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::usage::model::UsageRow;
use crate::usage::price::Prices;
use crate::usage::query::local_midnight;

/// The soft threshold when none is set: 80% of a limit.
pub const DEFAULT_NOTIFY_AT_PERCENT: u8 = 80;

/// The most a cost limit may be, in US dollars.
pub const MAX_COST_USD: f64 = 1_000_000_000.0;

/// A cost limit in US dollars: a JSON number, compared bit for bit (a limit is
/// finite, so that is equality of values).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CostUsd(pub f64);

impl PartialEq for CostUsd {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for CostUsd {}

/// An agent's periodic budget: every run of any of its objectives counts.
/// Read only from a JSON object: a derived struct would also take an array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, try_from = "serde_json::Value")]
pub struct AgentBudget {
    /// Tokens per local day, at most; over it new runs are `skipped_budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub daily_tokens: Option<u64>,
    /// Tokens per local calendar month, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub monthly_tokens: Option<u64>,
    /// US dollars per local day, at most, from `usage.prices` (which must set a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1000000000)]
    pub daily_cost_usd: Option<CostUsd>,
    /// US dollars per local calendar month, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1000000000)]
    pub monthly_cost_usd: Option<CostUsd>,
    /// The soft threshold, 1 to 100 percent of a limit (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub notify_at_percent: Option<u8>,
    /// IANA time zone whose midnight starts a period (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// [`AgentBudget`]'s fields, derived.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBudgetFields {
    #[serde(default)]
    daily_tokens: Option<u64>,
    #[serde(default)]
    monthly_tokens: Option<u64>,
    #[serde(default)]
    daily_cost_usd: Option<CostUsd>,
    #[serde(default)]
    monthly_cost_usd: Option<CostUsd>,
    #[serde(default)]
    notify_at_percent: Option<u8>,
    #[serde(default)]
    timezone: Option<String>,
}

impl TryFrom<serde_json::Value> for AgentBudget {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("budget must be an object".into());
        }
        let f: AgentBudgetFields = serde_json::from_value(value).map_err(|e| e.to_string())?;
        Ok(Self {
            daily_tokens: f.daily_tokens,
            monthly_tokens: f.monthly_tokens,
            daily_cost_usd: f.daily_cost_usd,
            monthly_cost_usd: f.monthly_cost_usd,
            notify_at_percent: f.notify_at_percent,
            timezone: f.timezone,
        })
    }
}

/// A subject's daily and monthly limits, in tokens or in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits<T> {
    pub daily: Option<T>,
    pub monthly: Option<T>,
}

impl<T> Limits<T> {
    fn is_empty(&self) -> bool {
        self.daily.is_none() && self.monthly.is_none()
    }
}

/// The limits of one subject, as the check needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodLimits {
    /// `objective <id>` or `agent <id>`: what a message names.
    pub subject: String,
    pub tz: Tz,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    pub daily_cost_usd: Option<f64>,
    pub monthly_cost_usd: Option<f64>,
    pub notify_at_percent: u8,
}

impl PeriodLimits {
    /// Limits from their parts; `None` when no limit is set (`subject` is named only
    /// then: most objectives have no limit, and every firing asks).
    pub fn new(
        subject: impl FnOnce() -> String,
        timezone: Option<&str>,
        tokens: Limits<u64>,
        cost: Limits<CostUsd>,
        notify_at_percent: Option<u8>,
    ) -> Option<Self> {
        if tokens.is_empty() && cost.is_empty() {
            return None;
        }
        Some(Self {
            subject: subject(),
            // Validated when set; a stored name this build does not know counts as UTC.
            tz: timezone.and_then(|t| t.parse().ok()).unwrap_or(Tz::UTC),
            daily_tokens: tokens.daily,
            monthly_tokens: tokens.monthly,
            daily_cost_usd: cost.daily.map(|c| c.0),
            monthly_cost_usd: cost.monthly.map(|c| c.0),
            notify_at_percent: notify_at_percent.unwrap_or(DEFAULT_NOTIFY_AT_PERCENT),
        })
    }

    /// Whether a monthly limit is set (the usage read then reaches back a month).
    pub fn has_monthly(&self) -> bool {
        self.monthly_tokens.is_some() || self.monthly_cost_usd.is_some()
    }

    /// The starts of the local day and month holding `now`, and of the next day and
    /// month (when the periods reset).
    pub fn periods(&self, now: DateTime<Utc>) -> Result<Periods, ActorError> {
        let today = now.with_timezone(&self.tz).date_naive();
        let first = today.with_day(1).unwrap_or(today);
        let next_month = if first.month() == 12 {
            NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        }
        .unwrap_or(first);
        Ok(Periods {
            day_start: local_midnight(self.tz, today)?,
            day_end: local_midnight(self.tz, today.succ_opt().unwrap_or(today))?,
            month_start: local_midnight(self.tz, first)?,
            month_end: local_midnight(self.tz, next_month)?,
        })
    }
}

/// The current day and month of a subject, as UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
    pub month_start: DateTime<Utc>,
    pub month_end: DateTime<Utc>,
}

/// What a subject used in one period: tokens, the cost of its priced tokens, and
/// the tokens of models without a price (which have no cost).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub tokens: u64,
    pub cost_usd: f64,
    pub unpriced_tokens: u64,
}

impl Spent {
    fn add(&mut self, other: Spent) {
        self.tokens = self.tokens.saturating_add(other.tokens);
        self.cost_usd += other.cost_usd;
        self.unpriced_tokens = self.unpriced_tokens.saturating_add(other.unpriced_tokens);
    }

    /// What `input` and `output` tokens of one model add.
    pub fn of(prices: &Prices, provider: &str, model: &str, input: i64, output: i64) -> Self {
        let tokens = u64::try_from(input.saturating_add(output)).unwrap_or(0);
        match prices.cost(provider, model, input, output) {
            Some(cost_usd) => Self {
                tokens,
                cost_usd,
                unpriced_tokens: 0,
            },
            None => Self {
                tokens,
                cost_usd: 0.0,
                unpriced_tokens: tokens,
            },
        }
    }
}

/// What a subject used in its current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeriodUsage {
    pub day: Spent,
    pub month: Spent,
}

impl PeriodUsage {
    /// Sums the rows `matches` picks of `rows` into `periods`, priced with `prices`.
    pub fn sum<'a>(
        rows: impl IntoIterator<Item = &'a UsageRow>,
        periods: &Periods,
        prices: &Prices,
        matches: impl Fn(&UsageRow) -> bool,
    ) -> Self {
        let mut usage = Self::default();
        for row in rows.into_iter().filter(|r| matches(r)) {
            let spent = Spent::of(
                prices,
                &row.provider,
                &row.model,
                row.input_tokens,
                row.output_tokens,
            );
            if row.bucket_start >= periods.month_start && row.bucket_start < periods.month_end {
                usage.month.add(spent);
            }
            if row.bucket_start >= periods.day_start && row.bucket_start < periods.day_end {
                usage.day.add(spent);
            }
        }
        usage
    }
}

/// `$1.25`; an amount under a cent with its six decimals.
fn dollars(amount: f64) -> String {
    let mut s = format!("${amount:.2}");
    if amount < 0.01 && amount > 0.0 {
        s = format!("${amount:.6}");
    }
    s
}

fn unpriced_note(spent: &Spent) -> String {
    if spent.unpriced_tokens == 0 {
        String::new()
    } else {
        format!(
            "; {} tokens of models without a price in usage.prices have no cost and are not counted",
            spent.unpriced_tokens
        )
    }
}

/// A subject's limits and its usage as read before a run started: what the run's
/// finish needs to tell whether it crossed the soft threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodSeen {
    pub limits: PeriodLimits,
    pub usage: PeriodUsage,
}

/// Why a new run may not start: a limit reached, with its usage and the reset.
pub fn over_limit(limits: &PeriodLimits, usage: PeriodUsage, periods: &Periods) -> Option<String> {
    let at = |reset: DateTime<Utc>| reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hit = |name: &str, used: u64, limit: u64, reset: DateTime<Utc>| {
        format!(
            "the {name} token budget of {} is used up ({used} of {limit} tokens); runs resume at {}",
            limits.subject,
            at(reset)
        )
    };
    let cost_hit = |name: &str, spent: &Spent, limit: f64, reset: DateTime<Utc>| {
        format!(
            "the {name} cost budget of {} is used up ({} of {} US dollars{}); runs resume at {}",
            limits.subject,
            dollars(spent.cost_usd),
            dollars(limit),
            unpriced_note(spent),
            at(reset)
        )
    };
    if let Some(limit) = limits.daily_tokens
        && usage.day.tokens >= limit
    {
        return Some(hit("daily", usage.day.tokens, limit, periods.day_end));
    }
    if let Some(limit) = limits.daily_cost_usd
        && usage.day.cost_usd >= limit
    {
        return Some(cost_hit("daily", &usage.day, limit, periods.day_end));
    }
    if let Some(limit) = limits.monthly_tokens
        && usage.month.tokens >= limit
    {
        return Some(hit("monthly", usage.month.tokens, limit, periods.month_end));
    }
    if let Some(limit) = limits.monthly_cost_usd
        && usage.month.cost_usd >= limit
    {
        return Some(cost_hit("monthly", &usage.month, limit, periods.month_end));
    }
    None
}

/// A soft threshold crossed: what a notification of it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetThreshold {
    /// Always `budget_threshold`.
    pub kind: &'static str,
    /// `objective <id>` or `agent <id>`.
    pub subject: String,
    pub detail: String,
}

/// The soft threshold a run that `spent` crosses, given the period usage before it:
/// only the run that takes the usage from below the threshold to at or over it, so
/// a period reports it once (usage only grows within a period). The daily limit wins
/// when both are crossed, and a token limit over a cost limit.
pub fn threshold_crossed(
    limits: &PeriodLimits,
    before: PeriodUsage,
    spent: Spent,
) -> Option<BudgetThreshold> {
    let tokens = spent.tokens;
    let percent = f64::from(limits.notify_at_percent) / 100.0;
    let cost_crossed = |name: &str, used: &Spent, limit: Option<f64>| {
        let limit = limit?;
        let at = limit * percent;
        let mut after = *used;
        after.add(spent);
        (used.cost_usd < at && after.cost_usd >= at).then(|| BudgetThreshold {
            kind: "budget_threshold",
            subject: limits.subject.clone(),
            detail: format!(
                "{} of {} {name} US dollars used: past the {}% threshold{}",
                dollars(after.cost_usd),
                dollars(limit),
                limits.notify_at_percent,
                unpriced_note(&after)
            ),
        })
    };
    let crossed = |name: &str, used: u64, limit: Option<u64>| {
        let limit = limit?;
        let at = limit
            .saturating_mul(u64::from(limits.notify_at_percent))
            .div_ceil(100);
        let after = used.saturating_add(tokens);
        (used < at && after >= at).then(|| BudgetThreshold {
            kind: "budget_threshold",
            subject: limits.subject.clone(),
            detail: format!(
                "{after} of {limit} {name} tokens used: past the {}% threshold",
                limits.notify_at_percent
            ),
        })
    };
    crossed("daily", before.day.tokens, limits.daily_tokens)
        .or_else(|| cost_crossed("daily", &before.day, limits.daily_cost_usd))
        .or_else(|| crossed("monthly", before.month.tokens, limits.monthly_tokens))
        .or_else(|| cost_crossed("monthly", &before.month, limits.monthly_cost_usd))
}

/// Where a budget's fields are in a request: `budget.daily_tokens` and so on.
pub const BUDGET_FIELDS: [&str; 4] = [
    "budget.daily_tokens",
    "budget.monthly_tokens",
    "budget.notify_at_percent",
    "budget.timezone",
];

/// Where a budget's cost limits are in a request.
pub const COST_FIELDS: [&str; 2] = ["budget.daily_cost_usd", "budget.monthly_cost_usd"];

/// Checks a budget's cost limits: each above 0 and at most [`MAX_COST_USD`], and
/// only when `priced` (some price is configured in `usage.prices`): without any
/// price every cost is unknown, and a limit on it would never hold.
pub fn validate_cost(cost: Limits<CostUsd>, priced: bool) -> Result<(), ActorError> {
    for (name, v) in COST_FIELDS.into_iter().zip([cost.daily, cost.monthly]) {
        let Some(CostUsd(v)) = v else { continue };
        if !(v.is_finite() && v > 0.0 && v <= MAX_COST_USD) {
            return Err(ActorError::invalid(
                name,
                "above 0 and at most 1000000000 US dollars (leave it out for no limit)",
            ));
        }
        if !priced {
            return Err(ActorError::invalid(
                name,
                "needs prices: no model has a price in usage.prices, so no run has a cost",
            ));
        }
    }
    Ok(())
}

/// Checks the fields of a periodic budget.
pub fn validate(
    daily_tokens: Option<u64>,
    monthly_tokens: Option<u64>,
    notify_at_percent: Option<u8>,
    timezone: Option<&str>,
) -> Result<(), ActorError> {
    let [daily, monthly, percent, zone] = BUDGET_FIELDS;
    for (name, v) in [(daily, daily_tokens), (monthly, monthly_tokens)] {
        // The schema's integers are 64-bit signed (and the rollup's sums are).
        if v.is_some_and(|n| n == 0 || n > i64::MAX as u64) {
            return Err(ActorError::invalid(
                name,
                "1 to 9223372036854775807 (leave it out for no limit)",
            ));
        }
    }
    if notify_at_percent.is_some_and(|p| !(1..=100).contains(&p)) {
        return Err(ActorError::invalid(percent, "1 to 100"));
    }
    if let Some(tz) = timezone
        && tz.parse::<Tz>().is_err()
    {
        return Err(ActorError::invalid(zone, "not an IANA time zone name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn limits(daily: Option<u64>, monthly: Option<u64>) -> PeriodLimits {
        PeriodLimits::new(
            || "agent a".into(),
            Some("Asia/Kolkata"),
            Limits { daily, monthly },
            Limits {
                daily: None,
                monthly: None,
            },
            None,
        )
        .unwrap()
    }

    fn used(day: u64, month: u64) -> PeriodUsage {
        let spent = |tokens| Spent {
            tokens,
            ..Spent::default()
        };
        PeriodUsage {
            day: spent(day),
            month: spent(month),
        }
    }

    #[test]
    fn periods_start_at_local_midnight() {
        // 20:00 UTC on 31 January is 01:30 on 1 February in Kolkata (+5:30).
        let now = Utc.with_ymd_and_hms(2026, 1, 31, 20, 0, 0).unwrap();
        let p = limits(Some(1), None).periods(now).unwrap();
        assert_eq!(
            p.day_start,
            Utc.with_ymd_and_hms(2026, 1, 31, 18, 30, 0).unwrap()
        );
        assert_eq!(
            p.day_end,
            Utc.with_ymd_and_hms(2026, 2, 1, 18, 30, 0).unwrap()
        );
        assert_eq!(p.month_start, p.day_start);
        assert_eq!(
            p.month_end,
            Utc.with_ymd_and_hms(2026, 2, 28, 18, 30, 0).unwrap()
        );
    }

    #[test]
    fn a_limit_reached_stops_and_names_the_reset() {
        let now = Utc.with_ymd_and_hms(2026, 3, 3, 12, 0, 0).unwrap();
        let l = limits(Some(100), Some(1000));
        let p = l.periods(now).unwrap();
        assert_eq!(over_limit(&l, used(99, 99), &p), None);
        let why = over_limit(&l, used(100, 100), &p).unwrap();
        assert!(
            why.contains("daily") && why.contains("2026-03-03T18:30:00Z"),
            "{why}"
        );
        let why = over_limit(&l, used(5, 1000), &p).unwrap();
        assert!(
            why.contains("monthly") && why.contains("2026-03-31T18:30:00Z"),
            "{why}"
        );
    }

    #[test]
    fn the_threshold_is_crossed_by_one_run_only() {
        let l = limits(Some(100), None);
        assert_eq!(
            threshold_crossed(&l, PeriodUsage::default(), used(79, 0).day),
            None
        );
        let t = threshold_crossed(&l, used(79, 79), used(1, 0).day).unwrap();
        assert_eq!(t.kind, "budget_threshold");
        assert_eq!(t.subject, "agent a");
        assert!(t.detail.contains("80 of 100 daily"), "{}", t.detail);
        assert_eq!(threshold_crossed(&l, used(80, 80), used(50, 0).day), None);
    }

    #[test]
    fn rows_sum_into_their_periods() {
        let now = Utc.with_ymd_and_hms(2026, 3, 3, 12, 0, 0).unwrap();
        let l = limits(Some(1), None);
        let p = l.periods(now).unwrap();
        let row = |at: DateTime<Utc>, agent: &str| UsageRow {
            bucket_start: at,
            agent_id: agent.into(),
            objective_id: "o".into(),
            profile_id: "p".into(),
            provider: "openai".into(),
            model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            calls: 1,
        };
        let rows = [
            row(p.day_start, "a"),
            row(p.day_start - chrono::Duration::minutes(15), "a"),
            row(p.day_start, "b"),
        ];
        let u = PeriodUsage::sum(&rows, &p, &Prices::default(), |r| r.agent_id == "a");
        assert_eq!(u.day.tokens, 7);
        assert_eq!(u.month.tokens, 14);
        assert_eq!(u.month.unpriced_tokens, 14);
        assert!(validate(Some(0), None, None, None).is_err());
        assert!(validate(None, Some(1 << 63), None, None).is_err());
        assert!(validate(None, None, Some(101), None).is_err());
        assert!(validate(None, None, None, Some("Mars/Base")).is_err());
        assert!(validate(Some(1), Some(2), Some(50), Some("UTC")).is_ok());
    }

    #[test]
    fn a_cost_limit_counts_priced_tokens_only_and_names_the_unpriced() {
        let mut prices = std::collections::BTreeMap::new();
        prices.insert(
            "m".to_owned(),
            crate::usage::ModelPrice {
                input_per_million: 1_000_000.0,
                output_per_million: 0.0,
            },
        );
        let prices = Prices(prices);
        let l = PeriodLimits::new(
            || "objective o".into(),
            None,
            Limits {
                daily: None,
                monthly: None,
            },
            Limits {
                daily: Some(CostUsd(10.0)),
                monthly: None,
            },
            None,
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 3, 12, 0, 0).unwrap();
        let p = l.periods(now).unwrap();
        let row = |model: &str, input| UsageRow {
            bucket_start: p.day_start,
            agent_id: "a".into(),
            objective_id: "o".into(),
            profile_id: "p".into(),
            provider: "openai".into(),
            model: model.into(),
            input_tokens: input,
            output_tokens: 0,
            calls: 1,
        };
        // 7 priced tokens cost $7; 1000 unpriced ones cost nothing known.
        let rows = [row("m", 7), row("unpriced", 1000)];
        let u = PeriodUsage::sum(&rows, &p, &prices, |_| true);
        assert_eq!(u.day.cost_usd, 7.0);
        assert_eq!(u.day.unpriced_tokens, 1000);
        assert_eq!(over_limit(&l, u, &p), None);
        let t = threshold_crossed(&l, u, Spent::of(&prices, "openai", "m", 1, 0)).unwrap();
        assert!(t.detail.contains("$8.00 of $10.00 daily"), "{}", t.detail);
        assert!(t.detail.contains("1000 tokens"), "{}", t.detail);
        let rows = [row("m", 10), row("unpriced", 1000)];
        let u = PeriodUsage::sum(&rows, &p, &prices, |_| true);
        let why = over_limit(&l, u, &p).unwrap();
        assert!(
            why.contains("daily cost budget") && why.contains("1000 tokens"),
            "{why}"
        );
        let cost = |d| Limits {
            daily: Some(CostUsd(d)),
            monthly: None,
        };
        assert!(validate_cost(cost(1.0), false).is_err());
        assert!(validate_cost(cost(0.0), true).is_err());
        assert!(validate_cost(cost(f64::INFINITY), true).is_err());
        assert!(validate_cost(cost(0.5), true).is_ok());
    }
}
