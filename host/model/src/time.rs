//! RFC 3339 timestamps as Prometheus and Thanos write them (Go's `time.RFC3339Nano`, UTC), without a date library.

/// `secs.nanos` since the Unix epoch as `2006-01-02T15:04:05.999999999Z`: the fraction has trailing zeros trimmed
/// and is left out when zero, as Go prints it.
pub fn rfc3339_nanos(secs: i64, nanos: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", nanos.min(999_999_999))
            .trim_end_matches('0')
            .to_string()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `t` as RFC 3339 with nanoseconds (UTC).
pub fn rfc3339_system(t: std::time::SystemTime) -> String {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => rfc3339_nanos(d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                rfc3339_nanos(-s, 0)
            } else {
                rfc3339_nanos(-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into seconds and nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits.min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset, nanos))
}

/// Howard Hinnant's days-to-civil conversion: (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_426), (2025, 12, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for d in [-800_000, -1, 0, 1, 11_016, 20_426, 2_000_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_764_806_400, 120_000_000),
            "2025-12-04T00:00:00.12Z"
        );
        assert_eq!(rfc3339_nanos(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_what_prometheus_writes() {
        assert_eq!(
            parse_rfc3339("2025-12-04T00:00:00.12Z"),
            Some((1_764_806_400, 120_000_000))
        );
        assert_eq!(
            parse_rfc3339("2025-12-04T01:30:00.123456789+01:30"),
            Some((1_764_806_400, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            Some((-62_135_596_800, 0))
        );
        for bad in [
            "",
            "2025-12-04",
            "2025-13-04T00:00:00Z",
            "2025-12-04T00:00:00",
            "2025-12-04T00:00:00.Z",
            "x025-12-04T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        let (s, n) = parse_rfc3339(&rfc3339_nanos(1_796_446_357, 350_000_001)).unwrap();
        assert_eq!((s, n), (1_796_446_357, 350_000_001));
    }
}

/// Milliseconds since the Unix epoch (negative before it), saturating.
pub fn system_to_millis(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// Times and durations are clamped to ±this many ms (about 73 million
/// years), so that sums of a time, an offset, a range and a lookback never
/// overflow.
pub const MAX_TIME_MS: i64 = 1 << 61;

/// A Prometheus API time, as ms: float Unix seconds (the far past and future
/// clamped to [`MAX_TIME_MS`], as Prometheus treats them as its min and max
/// time) or RFC 3339.
pub fn parse_api_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("invalid time {s:?}"));
        }
        let max = MAX_TIME_MS as f64;
        return Ok((f * 1000.0).round().clamp(-max, max) as i64);
    }
    parse_rfc3339(s)
        .and_then(|(secs, nanos)| {
            secs.checked_mul(1000)?
                .checked_add(i64::from(nanos / 1_000_000))
        })
        .ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}
