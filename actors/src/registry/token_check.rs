//! The check of a new OAuth access token at sign-in (`GET {api_base_url}/v1/models`,
//! unless the provider says `validation = "none"`): a refused token is refreshed once
//! and checked again, as a run does with a 401, before the sign-in is given up.

use crate::oauth::{
    OAuthRefreshAdapter, OAuthRefreshOutcome, OAuthSettings, StandardRefreshAdapter, TokenSet,
};
use crate::provider::{KeyCheckError, ProviderSettings, check_api_key};

/// `tokens` if they pass the check, else the refreshed set if that passes.
pub(super) async fn checked(
    http: &reqwest::Client,
    settings: &ProviderSettings,
    oauth: &OAuthSettings,
    tokens: TokenSet,
) -> Result<TokenSet, String> {
    if !oauth.validate_with_models {
        return Ok(tokens);
    }
    let first = check_api_key(http, "openai", settings, &tokens.access_token).await;
    let tokens = match (first, &tokens.refresh_token) {
        (Ok(()), _) => return Ok(tokens),
        (Err(KeyCheckError::Rejected { .. }), Some(refresh_token)) => {
            let adapter = StandardRefreshAdapter::new(http.clone());
            match adapter.refresh(oauth, refresh_token).await {
                OAuthRefreshOutcome::Success(mut fresh) => {
                    // A provider that does not rotate keeps the first refresh token valid.
                    if fresh.refresh_token.is_none() {
                        fresh.refresh_token = tokens.refresh_token;
                    }
                    fresh
                }
                OAuthRefreshOutcome::TransientFailure { reason, .. }
                | OAuthRefreshOutcome::PermanentFailure { reason } => {
                    return Err(format!(
                        "the new access token was refused and the refresh after it failed: {reason}"
                    ));
                }
            }
        }
        (Err(e), _) => return Err(format!("the new access token did not validate: {e}")),
    };
    check_api_key(http, "openai", settings, &tokens.access_token)
        .await
        .map_err(|e| format!("the refreshed access token did not validate either: {e}"))?;
    Ok(tokens)
}
