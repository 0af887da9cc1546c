//! Wall-clock helpers. Stored times are Unix milliseconds; the API shows RFC 3339.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Unix milliseconds as a UTC timestamp.
pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Serializes a UTC instant exactly as chrono does (RFC 3339 with `Z`, the fraction
/// in 0, 3, 6 or 9 digits as needed), but written into a buffer first: chrono's
/// `Serialize` goes through `Display`, and serde_json escapes every fragment it
/// writes, which made the records' timestamps a fifth of a firing's time in the
/// objectives actor (scheduler-10k's profile, session 7). Used on the hot records'
/// fields with `serialize_with`; they deserialize as chrono does.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match write(t, &mut buf) {
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
            None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }

    /// For `Option` fields: `None` as null, as serde writes it.
    pub(crate) fn option<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Writes `t` into `buf`; `None` for what chrono writes differently (a year
    /// outside 0..=9999, a leap second), left to chrono.
    fn write(t: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        let mut n = 0;
        digits(buf, &mut n, year, 4);
        let fields = [
            (b'-', t.month()),
            (b'-', t.day()),
            (b'T', t.hour()),
            (b':', t.minute()),
            (b':', t.second()),
        ];
        for (separator, value) in fields {
            buf[n] = separator;
            n += 1;
            digits(buf, &mut n, value, 2);
        }
        let (fraction, width) = if nanos == 0 {
            (0, 0)
        } else if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        if width > 0 {
            buf[n] = b'.';
            n += 1;
            digits(buf, &mut n, fraction, width);
        }
        buf[n] = b'Z';
        Some(n + 1)
    }

    /// Writes the `width` lowest decimal digits of `value` at `buf[*n..]`.
    fn digits(buf: &mut [u8; 30], n: &mut usize, value: u32, width: u32) {
        for i in (0..width).rev() {
            buf[*n] = b'0' + (value / 10u32.pow(i) % 10) as u8;
            *n += 1;
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::TimeZone;

        use super::*;

        #[derive(serde::Serialize)]
        struct Fast(#[serde(serialize_with = "serialize")] DateTime<Utc>);

        #[test]
        fn writes_what_chrono_writes() {
            let base = Utc.with_ymd_and_hms(2026, 12, 1, 9, 5, 7).unwrap();
            let mut cases = vec![
                base,
                Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
                Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(-5, 3, 1, 0, 0, 0).unwrap(),
            ];
            for nanos in [1, 7_000, 120_000_000, 999_999_999, 40_000] {
                cases.push(base.with_nanosecond(nanos).unwrap());
            }
            // A leap second (chrono's nanoseconds past 10^9, at :59).
            let before_leap = Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap();
            cases.push(before_leap.with_nanosecond(1_000_500_000).unwrap());
            for ms in [0i64, 1, 999, 1_764_581_234_567, -1] {
                cases.push(crate::time::to_datetime(ms));
            }
            for t in cases {
                assert_eq!(
                    serde_json::to_string(&Fast(t)).unwrap(),
                    serde_json::to_string(&t).unwrap(),
                    "{t:?}"
                );
            }
        }
    }
}
