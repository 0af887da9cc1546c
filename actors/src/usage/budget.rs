//! Periodic budgets: daily and monthly token limits of an objective or an agent, read
//! against the usage rollup (the same table on every node, so a limit holds across a
//! cluster), with a soft threshold whose crossing is reported once.
//!
//! A period is a local day or month of the subject's time zone (an objective's
//! automation time zone, an agent's `budget.timezone`), so it resets at local midnight.
//! The rollup's 15-minute buckets line up with every local midnight in use, so a
//! period is an exact sum of buckets.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::usage::model::UsageRow;
use crate::usage::query::local_midnight;

/// The soft threshold when none is set: 80% of a limit.
pub const DEFAULT_NOTIFY_AT_PERCENT: u8 = 80;

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
            notify_at_percent: f.notify_at_percent,
            timezone: f.timezone,
        })
    }
}

/// The limits of one subject, as the check needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodLimits {
    /// `objective <id>` or `agent <id>`: what a message names.
    pub subject: String,
    pub tz: Tz,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    pub notify_at_percent: u8,
}

impl PeriodLimits {
    /// Limits from their parts; `None` when neither limit is set.
    pub fn new(
        subject: String,
        timezone: Option<&str>,
        daily_tokens: Option<u64>,
        monthly_tokens: Option<u64>,
        notify_at_percent: Option<u8>,
    ) -> Option<Self> {
        if daily_tokens.is_none() && monthly_tokens.is_none() {
            return None;
        }
        Some(Self {
            subject,
            // Validated when set; a stored name this build does not know counts as UTC.
            tz: timezone.and_then(|t| t.parse().ok()).unwrap_or(Tz::UTC),
            daily_tokens,
            monthly_tokens,
            notify_at_percent: notify_at_percent.unwrap_or(DEFAULT_NOTIFY_AT_PERCENT),
        })
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

/// Tokens a subject used in its current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodUsage {
    pub day: u64,
    pub month: u64,
}

impl PeriodUsage {
    /// Sums the rows `matches` picks of `rows` into `periods`.
    pub fn sum<'a>(
        rows: impl IntoIterator<Item = &'a UsageRow>,
        periods: &Periods,
        matches: impl Fn(&UsageRow) -> bool,
    ) -> Self {
        let mut usage = Self::default();
        for row in rows.into_iter().filter(|r| matches(r)) {
            let tokens =
                u64::try_from(row.input_tokens.saturating_add(row.output_tokens)).unwrap_or(0);
            if row.bucket_start >= periods.month_start && row.bucket_start < periods.month_end {
                usage.month = usage.month.saturating_add(tokens);
            }
            if row.bucket_start >= periods.day_start && row.bucket_start < periods.day_end {
                usage.day = usage.day.saturating_add(tokens);
            }
        }
        usage
    }
}

/// A subject's limits and its usage as read before a run started: what the run's
/// finish needs to tell whether it crossed the soft threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodSeen {
    pub limits: PeriodLimits,
    pub usage: PeriodUsage,
}

/// Why a new run may not start: a limit reached, with its usage and the reset.
pub fn over_limit(limits: &PeriodLimits, usage: PeriodUsage, periods: &Periods) -> Option<String> {
    let hit = |name: &str, used: u64, limit: u64, reset: DateTime<Utc>| {
        format!(
            "the {name} token budget of {} is used up ({used} of {limit} tokens); runs resume at {}",
            limits.subject,
            reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    };
    if let Some(limit) = limits.daily_tokens
        && usage.day >= limit
    {
        return Some(hit("daily", usage.day, limit, periods.day_end));
    }
    if let Some(limit) = limits.monthly_tokens
        && usage.month >= limit
    {
        return Some(hit("monthly", usage.month, limit, periods.month_end));
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

/// The soft threshold a run of `tokens` crosses, given the period usage before it:
/// only the run that takes the usage from below the threshold to at or over it, so
/// a period reports it once (usage only grows within a period). The daily limit wins
/// when both are crossed.
pub fn threshold_crossed(
    limits: &PeriodLimits,
    before: PeriodUsage,
    tokens: u64,
) -> Option<BudgetThreshold> {
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
    crossed("daily", before.day, limits.daily_tokens)
        .or_else(|| crossed("monthly", before.month, limits.monthly_tokens))
}

/// Where a budget's fields are in a request: `budget.daily_tokens` and so on.
pub const BUDGET_FIELDS: [&str; 4] = [
    "budget.daily_tokens",
    "budget.monthly_tokens",
    "budget.notify_at_percent",
    "budget.timezone",
];

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
        PeriodLimits::new("agent a".into(), Some("Asia/Kolkata"), daily, monthly, None).unwrap()
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
        assert_eq!(over_limit(&l, PeriodUsage { day: 99, month: 99 }, &p), None);
        let why = over_limit(
            &l,
            PeriodUsage {
                day: 100,
                month: 100,
            },
            &p,
        )
        .unwrap();
        assert!(
            why.contains("daily") && why.contains("2026-03-03T18:30:00Z"),
            "{why}"
        );
        let why = over_limit(
            &l,
            PeriodUsage {
                day: 5,
                month: 1000,
            },
            &p,
        )
        .unwrap();
        assert!(
            why.contains("monthly") && why.contains("2026-03-31T18:30:00Z"),
            "{why}"
        );
    }

    #[test]
    fn the_threshold_is_crossed_by_one_run_only() {
        let l = limits(Some(100), None);
        assert_eq!(threshold_crossed(&l, PeriodUsage::default(), 79), None);
        let t = threshold_crossed(&l, PeriodUsage { day: 79, month: 79 }, 1).unwrap();
        assert_eq!(t.kind, "budget_threshold");
        assert_eq!(t.subject, "agent a");
        assert!(t.detail.contains("80 of 100 daily"), "{}", t.detail);
        assert_eq!(
            threshold_crossed(&l, PeriodUsage { day: 80, month: 80 }, 50),
            None
        );
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
        let u = PeriodUsage::sum(&rows, &p, |r| r.agent_id == "a");
        assert_eq!(u, PeriodUsage { day: 7, month: 14 });
        assert!(validate(Some(0), None, None, None).is_err());
        assert!(validate(None, Some(1 << 63), None, None).is_err());
        assert!(validate(None, None, Some(101), None).is_err());
        assert!(validate(None, None, None, Some("Mars/Base")).is_err());
        assert!(validate(Some(1), Some(2), Some(50), Some("UTC")).is_ok());
    }
}
