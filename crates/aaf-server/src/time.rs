//! Timestamps as the API and the audit log write them.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in UTC, as RFC 3339 with exactly six fractional digits (microseconds), e.g.
/// `2026-11-21T05:35:00.123456Z`. Strings of this format sort in time order.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats `t` (converted to UTC) like [`now_rfc3339`].
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t);
    let s = t.format(&Rfc3339).unwrap_or_default();
    // time's RFC 3339 output drops trailing zeros of the fraction; pad to six digits.
    match s.strip_suffix('Z').and_then(|body| body.split_once('.')) {
        Some((secs, frac)) => format!("{secs}.{frac:0<6}Z"),
        None => match s.strip_suffix('Z') {
            Some(secs) => format!("{secs}.000000Z"),
            None => s,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fraction_digits() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_120_000_000).unwrap();
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20.120000Z");
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20.000000Z");
        assert_eq!(now_rfc3339().len(), 27);
    }
}
