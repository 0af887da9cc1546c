//! Prices per model from the config, and the cost estimates they give.
//!
//! A price is looked up as `provider/model` first, then as the model's name alone; a
//! model with neither has no cost, and a sum that includes its tokens has none either:
//! an estimate missing some of its calls would read as the whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Every configured price, by `provider/model` or model name.
#[derive(Debug, Clone, Default)]
pub struct Prices(pub BTreeMap<String, ModelPrice>);

impl Prices {
    pub fn find(&self, provider: &str, model: &str) -> Option<ModelPrice> {
        self.0
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.0.get(model))
            .copied()
    }

    /// The cost of `input` and `output` tokens of one model, if it is priced.
    pub fn cost(&self, provider: &str, model: &str, input: i64, output: i64) -> Option<f64> {
        let price = self.find(provider, model)?;
        Some(
            (input as f64 * price.input_per_million + output as f64 * price.output_per_million)
                / 1_000_000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_specific_price_wins_and_an_unpriced_model_costs_nothing_known() {
        let mut prices = BTreeMap::new();
        let p = |i, o| ModelPrice {
            input_per_million: i,
            output_per_million: o,
        };
        prices.insert("m".to_owned(), p(1.0, 2.0));
        prices.insert("anthropic/m".to_owned(), p(10.0, 20.0));
        let prices = Prices(prices);
        assert_eq!(prices.cost("openai", "m", 1_000_000, 500_000), Some(2.0));
        assert_eq!(prices.cost("anthropic", "m", 100_000, 0), Some(1.0));
        assert_eq!(prices.cost("openai", "other", 5, 5), None);
    }
}
