//! The bench's use of the test kit's fakes: the OAuth provider `refresh-10k` signs in
//! with, and the model calls `scheduler-10k` attributes to its objectives.

use palyra::settings::{ProviderConfig, Validation};
use palyra::testkit::model::ModelCall;

use crate::objectives::objective_number;

/// The OAuth provider of `refresh-10k`, served by the fake OAuth provider.
pub const BENCH_PROVIDER: &str = "custom:bench";

/// The custom provider's name and settings for the fake at `base`.
pub fn oauth_provider(base: &str) -> (String, ProviderConfig) {
    let name = BENCH_PROVIDER
        .strip_prefix("custom:")
        .unwrap_or(BENCH_PROVIDER)
        .to_owned();
    let provider = ProviderConfig {
        api_base_url: base.to_owned(),
        api_style: None,
        authorization_endpoint: Some(format!("{base}/authorize")),
        token_endpoint: Some(format!("{base}/token")),
        revocation_endpoint: None,
        client_id: Some("palyra-bench".into()),
        scopes: vec!["offline_access".into()],
        validation: Validation::None,
        backoff_base_ms: 15_000,
        backoff_cap_ms: 300_000,
        ..ProviderConfig::default()
    };
    (name, provider)
}

/// The calls the fake model provider answered, as (objective number, arrival in Unix
/// ns): the prompt of a bench objective is its id. Also how many named no objective.
pub fn model_calls(answered: Vec<ModelCall>) -> (Vec<(u32, i64)>, u64) {
    let mut unreadable = 0;
    let calls = answered
        .into_iter()
        .filter_map(|call| {
            let number = objective_number(&call.prompt);
            if number.is_none() {
                unreadable += 1;
            }
            Some((number?, call.at_unix_ns))
        })
        .collect();
    (calls, unreadable)
}
