//! What a receiver is posted: the body of each format and the `palyra-signature`
//! header (Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).

use hmac::{Hmac, KeyInit, Mac};

use super::model::{ChannelFormat, EventPayload};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "palyra-signature";

type HmacSha256 = Hmac<hmac_sha2::Sha256>;

/// The hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `palyra-signature` header's value.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", signature(secret, t, body))
}

/// Checks a `palyra-signature` header as a receiver should: the signature over the
/// body at its timestamp, and the timestamp within `tolerance_s` of `now_s` (so an
/// old delivery replayed is refused). For the fake receiver and for receivers to copy.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), &'static str> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value),
            _ => {}
        }
    }
    let t = t.ok_or("no timestamp")?;
    if (now_s - t).abs() > tolerance_s {
        return Err("the timestamp is outside the tolerance");
    }
    let expected = signature(secret, t, body);
    let matches = v1.iter().any(|candidate| {
        use subtle::ConstantTimeEq;
        candidate.len() == expected.len()
            && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err("no signature matches")
    }
}

/// The body of `payload` in `format`.
pub fn body(format: ChannelFormat, payload: &EventPayload) -> Vec<u8> {
    let value = match format {
        ChannelFormat::Palyra => serde_json::to_value(payload).unwrap_or_default(),
        ChannelFormat::Slack => serde_json::json!({ "text": summary(payload) }),
        ChannelFormat::Discord => serde_json::json!({ "content": summary(payload) }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One readable message: the kind, the subject and the detail's main field.
fn summary(payload: &EventPayload) -> String {
    let mut text = format!("[palyra] {}: {}", payload.kind.name(), payload.subject);
    for field in ["output", "error", "reason", "message"] {
        if let Some(value) = payload.detail.get(field).and_then(|v| v.as_str()) {
            text.push('\n');
            text.push_str(value);
            break;
        }
    }
    // Discord refuses content over 2,000 characters.
    if let Some((cut, _)) = text.char_indices().nth(1900) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        let header = signature_header(b"k", 1000, b"{}");
        assert!(verify(b"k", &header, b"{}", 1010, 300).is_ok());
        assert!(verify(b"x", &header, b"{}", 1010, 300).is_err());
        assert!(verify(b"k", &header, b"{ }", 1010, 300).is_err());
        assert!(verify(b"k", &header, b"{}", 1400, 300).is_err());
        // RFC 4231 test case 2 ("Jefe"), as the scheme's HMAC.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
