//! Usage accounting: every finished run's tokens summed into a rollup table, read back
//! per day in any time zone, with cost estimates where the config prices a model.
//!
//! - `model.rs`: the rollup row ([`UsageRow`]), its key, and the 15-minute bucket.
//! - `rollup.rs`: the rows a finished run adds to (written in the same request as the
//!   run's finish record) and the Prometheus token counters.
//! - `query.rs`: [`UsageHandle`], the report by agent, profile, model or objective.
//! - `price.rs`: [`ModelPrice`] and cost estimates (no price, no cost).
//! - `budget.rs`: periodic (daily, monthly) token budgets read against the rollup, and
//!   their soft threshold ([`budget::threshold_crossed`]).

pub mod budget;
mod model;
mod price;
mod query;
mod rollup;

pub use model::{BUCKET_MS, UsageRow, usage_key};
pub use price::{ModelPrice, Prices};
pub use query::{
    DEFAULT_DAYS, GroupBy, MAX_DAYS, UsageDay, UsageGroup, UsageHandle, UsageQuery, UsageReport,
};
pub use rollup::{count_tokens, rollup_ops};
