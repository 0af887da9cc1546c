//! `[usage]`: prices per model, for the usage report's cost estimates.

use std::collections::BTreeMap;

use palyra_actors::usage::{ModelPrice, Prices};
use serde::Deserialize;

/// The longest price key accepted (`provider/model`).
const MAX_KEY_LEN: usize = 200;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSettings {
    /// US dollars per million input and output tokens, keyed by `provider/model` or a
    /// model's name (for every provider). A model without a price has no cost: the
    /// report never guesses one.
    #[serde(default)]
    pub prices: BTreeMap<String, ModelPrice>,
    /// Seconds added to the clock that places periodic budgets' days and months: a
    /// test hook to cross a period's reset without waiting for midnight. Leave it 0.
    #[serde(default)]
    pub budget_clock_offset_s: i64,
}

impl UsageSettings {
    pub fn validate(&self) -> Result<(), String> {
        // About three years either way: enough for any test, far from overflow.
        if self.budget_clock_offset_s.abs() > 100_000_000 {
            return Err("usage.budget_clock_offset_s must be within 100000000 seconds of 0".into());
        }
        for (key, price) in &self.prices {
            if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
                return Err(format!(
                    "usage.prices: {key:?} must be a model name or provider/model of 1 to {MAX_KEY_LEN} characters"
                ));
            }
            for (what, n) in [
                ("input_per_million", price.input_per_million),
                ("output_per_million", price.output_per_million),
            ] {
                if !n.is_finite() || n < 0.0 {
                    return Err(format!(
                        "usage.prices.{key:?}.{what} must be a number of at least 0"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn prices(&self) -> Prices {
        Prices(self.prices.clone())
    }
}
