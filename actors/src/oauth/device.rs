//! The OAuth device authorization grant (RFC 8628): how a headless daemon signs in.
//! The daemon asks the provider for a device code and a user code, the operator enters
//! the user code at the verification URI on any device, and the daemon polls the token
//! endpoint at the interval the provider gives (longer after each `slow_down`).

use serde::Deserialize;

use super::token_request::{self, Param};
use super::types::{OAuthError, OAuthSettings, TokenRequestFormat};
use super::{TokenSet, rejected, sanitize_code, token_set};
use crate::secret::SecretString;

/// The grant type of a device code redemption.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device authorization endpoint's answer.
#[derive(Debug)]
pub struct DeviceAuthorization {
    /// Redeemed at the token endpoint; never shown to the operator.
    pub device_code: SecretString,
    /// What the operator types at the verification URI.
    pub user_code: String,
    pub verification_uri: String,
    /// The verification URI with the user code in it, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    /// Seconds between polls (RFC 8628: 5 when absent).
    pub interval: u64,
}

#[derive(Deserialize)]
struct DeviceResponse {
    device_code: SecretString,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// What one poll of the token endpoint came to.
#[derive(Debug)]
pub enum DevicePoll {
    Tokens(TokenSet),
    /// `authorization_pending`: the operator has not finished; poll again.
    Pending,
    /// `slow_down`: poll again, 5 seconds less often from now on.
    SlowDown,
    /// Refused (`access_denied`, `expired_token`, ...) or broken: the attempt ends.
    Failed(String),
    /// The endpoint could not be reached: poll again at the interval.
    Unreachable(String),
}

/// Asks for a device code (RFC 8628 section 3.1).
pub async fn start_device_authorization(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    endpoint: &str,
    scopes: &[String],
) -> Result<DeviceAuthorization, OAuthError> {
    let scope = scopes.join(" ");
    let mut params = vec![Param::Plain("scope", &scope)];
    let audience = settings.audience.clone().unwrap_or_default();
    if !audience.is_empty() {
        params.push(Param::Plain("audience", &audience));
    }
    let answer =
        token_request::send(http, settings, endpoint, TokenRequestFormat::Form, &params).await?;
    if !(200..300).contains(&answer.status) {
        return Err(rejected(&answer));
    }
    let parsed: DeviceResponse = serde_json::from_slice(&answer.body)
        .map_err(|_| OAuthError::Incomplete("a device code, user code and verification URI"))?;
    let uri_ok = |u: &str| {
        url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) && u.len() <= 2048
    };
    let user_code_ok = !parsed.user_code.is_empty()
        && parsed.user_code.len() <= 64
        && parsed
            .user_code
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    if parsed.device_code.is_empty() || !user_code_ok || !uri_ok(&parsed.verification_uri) {
        return Err(OAuthError::Incomplete(
            "a usable device code, user code and verification URI",
        ));
    }
    Ok(DeviceAuthorization {
        device_code: parsed.device_code,
        user_code: parsed.user_code,
        verification_uri: parsed.verification_uri,
        verification_uri_complete: parsed.verification_uri_complete.filter(|u| uri_ok(u)),
        expires_in: parsed.expires_in.clamp(1, 3_600),
        interval: parsed.interval.unwrap_or(5).clamp(1, 60),
    })
}

/// One poll of the token endpoint with the device code (RFC 8628 section 3.4).
pub async fn poll_device_token(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    device_code: &SecretString,
) -> DevicePoll {
    let answer = match super::token_request(
        http,
        settings,
        vec![
            Param::Plain("grant_type", DEVICE_CODE_GRANT),
            Param::Secret("device_code", device_code),
        ],
    )
    .await
    {
        Ok(a) => a,
        Err(e @ (OAuthError::Network(_) | OAuthError::TooLarge)) => {
            return DevicePoll::Unreachable(e.to_string());
        }
        Err(e) => return DevicePoll::Failed(e.to_string()),
    };
    if (200..300).contains(&answer.status) {
        return match token_set(&answer) {
            Ok(tokens) => DevicePoll::Tokens(tokens),
            Err(e) => DevicePoll::Failed(e.to_string()),
        };
    }
    let code = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(sanitize_code));
    match code.as_deref() {
        Some("authorization_pending") => DevicePoll::Pending,
        Some("slow_down") => DevicePoll::SlowDown,
        Some("access_denied") => DevicePoll::Failed("the operator refused the sign-in".into()),
        Some("expired_token") => {
            DevicePoll::Failed("the device code expired before the sign-in completed".into())
        }
        _ if answer.status >= 500 || answer.status == 429 => {
            DevicePoll::Unreachable(rejected(&answer).to_string())
        }
        _ => DevicePoll::Failed(rejected(&answer).to_string()),
    }
}
