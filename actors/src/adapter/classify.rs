//! The one classification of provider answers: status to [`FailureClass`],
//! Retry-After in seconds or as an HTTP date, network errors, and the bounded read of
//! an answer body.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::model::{CallFailure, FailureClass};

/// The longest Retry-After taken from a provider: a larger one (or a date far ahead)
/// would park a profile for longer than any real rate limit lasts.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Largest answer read; a larger one is refused rather than buffered.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Retry-After as delta-seconds or an HTTP date (RFC 9110 section 10.2.3), relative to
/// `now`, capped at [`MAX_RETRY_AFTER`]; a date in the past is zero.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The class of a non-2xx status. `error_type` is the provider's error type or code
/// when its body named one (OpenAI's `error.code`, Anthropic's `error.type`).
fn class_of(status: u16, error_type: Option<&str>) -> FailureClass {
    match (status, error_type) {
        (402, _) => FailureClass::Billing,
        (_, Some("insufficient_quota" | "billing_error" | "billing_hard_limit_reached")) => {
            FailureClass::Billing
        }
        (429, _) => FailureClass::RateLimited,
        (401 | 403, _) => FailureClass::Auth,
        // A request timeout is the network's doing, not the request's.
        (408, _) => FailureClass::Unavailable,
        (400..=499, _) => FailureClass::BadRequest,
        _ => FailureClass::Unavailable,
    }
}

/// A sentence for a failed status, with the provider's error type when it is a plain
/// identifier (it is never the provider's message, which may quote the key).
fn status_message(status: u16, error_type: Option<&str>) -> String {
    match error_type {
        Some(t) => format!("the provider answered HTTP {status} ({t})"),
        None => format!("the provider answered HTTP {status}"),
    }
}

/// The error type or code of an error body, if it is a short identifier.
fn error_type(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = &value["error"];
    let name = error["code"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| error["type"].as_str())?;
    let plain = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    plain.then(|| name.to_owned())
}

/// A network error or timeout as a failure.
pub(super) fn network_failure(error: &reqwest::Error) -> CallFailure {
    let message = if error.is_timeout() {
        "the provider did not answer in time".to_owned()
    } else {
        // reqwest's messages name the URL at most, never the headers; the URL is
        // dropped too, since a base URL may be an internal address.
        format!("the provider could not be reached: {}", without_url(error))
    };
    CallFailure::new(FailureClass::Unavailable, message)
}

fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the provider");
    }
    text
}

/// Reads a 2xx answer as JSON, or classifies a failed one; bounded to 4 MiB.
pub(super) async fn read_answer(
    response: reqwest::Response,
) -> Result<serde_json::Value, CallFailure> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let body = read_capped(response).await?;
    if !(200..300).contains(&status) {
        let error_type = error_type(&body);
        let class = class_of(status, error_type.as_deref());
        return Err(CallFailure {
            class,
            retry_after: retry_after.filter(|_| class == FailureClass::RateLimited),
            message: status_message(status, error_type.as_deref()),
        });
    }
    serde_json::from_slice(&body).map_err(|_| {
        CallFailure::new(
            FailureClass::Unavailable,
            "the provider answered without JSON",
        )
    })
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, CallFailure> {
    let too_large = || {
        CallFailure::new(
            FailureClass::Unavailable,
            "the provider's answer is larger than 4 MiB",
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(network_failure(&e)),
            Err(_) => {
                return Err(CallFailure::new(
                    FailureClass::Unavailable,
                    "the provider's answer was cut off",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 14:00:42 GMT", now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 13:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_and_quota_errors_are_classified_once() {
        use FailureClass as C;
        assert_eq!(class_of(429, None), C::RateLimited);
        assert_eq!(class_of(429, Some("insufficient_quota")), C::Billing);
        assert_eq!(class_of(402, None), C::Billing);
        assert_eq!(class_of(401, None), C::Auth);
        assert_eq!(class_of(403, Some("permission_error")), C::Auth);
        assert_eq!(class_of(400, Some("invalid_request_error")), C::BadRequest);
        assert_eq!(class_of(404, None), C::BadRequest);
        assert_eq!(class_of(408, None), C::Unavailable);
        assert_eq!(class_of(500, None), C::Unavailable);
        assert_eq!(class_of(529, Some("overloaded_error")), C::Unavailable);
    }

    #[test]
    fn only_plain_error_types_reach_the_message() {
        assert_eq!(
            error_type(br#"{"error":{"type":"rate_limit_error","message":"key sk-123"}}"#),
            Some("rate_limit_error".into())
        );
        assert_eq!(
            error_type(br#"{"error":{"code":"Incorrect key sk-123"}}"#),
            None
        );
        assert_eq!(error_type(b"not json"), None);
    }
}
