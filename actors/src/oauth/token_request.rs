//! How the daemon talks to a provider's token, revocation and device endpoints: the
//! client authentication (`none`, `client_secret_basic`, `client_secret_post`), the
//! body format (form as RFC 6749 says, or JSON for providers that want it), answers
//! read with a size cap, and `Retry-After` as seconds or an HTTP date.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::types::{
    ClientAuth, OAuthError, OAuthSettings, TOKEN_ANSWER_CAP_BYTES, TokenRequestFormat,
};
use crate::outbound::OAUTH_TIMEOUT;
use crate::secret::SecretString;

/// One parameter of a request body; secrets stay wrapped until the body is built.
pub(crate) enum Param<'a> {
    Plain(&'static str, &'a str),
    Secret(&'static str, &'a SecretString),
}

impl Param<'_> {
    fn pair(&self) -> (&'static str, &str) {
        match self {
            Param::Plain(k, v) => (k, v),
            Param::Secret(k, v) => (k, v.expose()),
        }
    }
}

/// A provider's answer, read whole (up to the cap).
pub(crate) struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds from now, when the provider sent one.
    pub retry_after_s: Option<u64>,
    pub body: Vec<u8>,
}

fn network_error(e: reqwest::Error) -> OAuthError {
    OAuthError::Network(if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.without_url().to_string()
    })
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Every OAuth request goes through here: on the daemon's one outbound client (which
/// follows no redirect), bounded by [`OAUTH_TIMEOUT`], authenticated as the provider
/// is configured, and its answer read up to [`TOKEN_ANSWER_CAP_BYTES`].
/// `format` is the provider's for the token endpoint; revocation is always a form.
pub(crate) async fn send(
    http: &reqwest::Client,
    settings: &OAuthSettings,
    endpoint: &str,
    format: TokenRequestFormat,
    params: &[Param<'_>],
) -> Result<Answer, OAuthError> {
    let mut pairs: Vec<(&str, &str)> = params.iter().map(Param::pair).collect();
    let secret = settings.client_secret.as_ref();
    let mut request = http
        .post(endpoint)
        .timeout(OAUTH_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json");
    match (settings.client_auth, secret) {
        (ClientAuth::None, _) => pairs.push(("client_id", &settings.client_id)),
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            let credentials = format!(
                "{}:{}",
                form_encode(&settings.client_id),
                form_encode(secret.expose())
            );
            let header = SecretString::new(format!("Basic {}", STANDARD.encode(credentials)));
            let mut value = reqwest::header::HeaderValue::from_str(header.expose())
                .map_err(|_| OAuthError::Config("the client secret is not usable".into()))?;
            // Kept out of any header dump.
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            pairs.push(("client_id", &settings.client_id));
            pairs.push(("client_secret", secret.expose()));
        }
        (_, None) => return Err(OAuthError::NoClientSecret),
    }
    request = match format {
        TokenRequestFormat::Form => request.form(&pairs),
        TokenRequestFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
                .collect();
            request.json(&object)
        }
    };
    let mut response = request.send().await.map_err(network_error)?;
    let status = response.status().as_u16();
    let retry_after_s = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    if response
        .content_length()
        .is_some_and(|n| n > TOKEN_ANSWER_CAP_BYTES as u64)
    {
        return Err(OAuthError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network_error)? {
        if body.len() + chunk.len() > TOKEN_ANSWER_CAP_BYTES {
            return Err(OAuthError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        retry_after_s,
        body,
    })
}

/// `Retry-After` (RFC 9110 section 10.2.3): delay seconds or an HTTP date, as seconds
/// from `now` (a date in the past is 0).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some(u64::try_from((at - now).num_seconds()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 120 ", now), Some(120));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 14:01:30 GMT", now),
            Some(90)
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 13:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
