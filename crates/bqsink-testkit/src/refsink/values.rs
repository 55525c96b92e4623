//! Value checks and canonical text for the types whose wire form needs interpreting: dates, times,
//! timestamps, decimals, JSON, geography. Written from BigQuery's documentation only:
//!
//! - "Supported protocol buffer and Arrow data types": DATE as days since 1970-01-01 within
//!   -719162 (0001-01-01) ..= 2932896 (9999-12-31); TIMESTAMP as µs since the epoch; DATETIME/TIME as
//!   literals or as `CivilTimeEncoder` packed int64; NUMERIC/BIGNUMERIC as `BigDecimalByteStringEncoder`
//!   bytes (little-endian two's complement of the value scaled by 10^9 / 10^38).
//! - "GoogleSQL data types": TIMESTAMP range 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC;
//!   NUMERIC precision 38, scale 9; BIGNUMERIC precision 76.76, scale 38, range
//!   ±5.7896044618658097711785492504343953926634992332820282019728792003956564819967E+38
//!   (the negative bound ends in …968).
//! - "Lexical structure": DATE `YYYY-[M]M-[D]D`, TIME `[H]H:[M]M:[S]S[.F]` (F up to 6 digits),
//!   DATETIME `date[( |T)time]`.

/// Days from 1970-01-01 to 0001-01-01 and to 9999-12-31.
pub(crate) const MIN_DATE_DAYS: i64 = -719_162;
pub(crate) const MAX_DATE_DAYS: i64 = 2_932_896;
/// µs since the epoch of 0001-01-01 00:00:00 and 9999-12-31 23:59:59.999999 UTC.
pub(crate) const MIN_TIMESTAMP_MICROS: i64 = -62_135_596_800_000_000;
pub(crate) const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;

const BIGNUMERIC_MAX_SCALED: &str = "57896044618658097711785492504343953926634992332820282019728792003956564819967";
const BIGNUMERIC_MIN_SCALED: &str = "57896044618658097711785492504343953926634992332820282019728792003956564819968";

/// The civil date of a day number (days since 1970-01-01), proleptic Gregorian.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of a civil date (tests check `civil_from_days` against it).
#[cfg(test)]
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A DATE from its day number: canonical `YYYY-MM-DD`, within BigQuery's range.
pub(crate) fn date_from_days(days: i64) -> Result<String, String> {
    if !(MIN_DATE_DAYS..=MAX_DATE_DAYS).contains(&days) {
        return Err(format!(
            "DATE day number {days} is outside {MIN_DATE_DAYS} (0001-01-01) ..= {MAX_DATE_DAYS} (9999-12-31)"
        ));
    }
    let (y, m, d) = civil_from_days(days);
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A DATE literal `YYYY-[M]M-[D]D` → canonical `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not a DATE (YYYY-[M]M-[D]D, years 0001..9999)");
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4, 4), digits(m, 1, 2), digits(d, 1, 2)) else {
        return Err(bad());
    };
    let y = i64::from(y);
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

fn format_time(h: u32, mi: u32, s: u32, micros: u32) -> String {
    if micros == 0 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{h:02}:{mi:02}:{s:02}.{micros:06}")
    }
}

/// A TIME literal `[H]H:[M]M:[S]S[.F]` → canonical `HH:MM:SS[.ffffff]`.
pub(crate) fn parse_time(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not a TIME ([H]H:[M]M:[S]S[.F], up to 6 fractional digits)");
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (Some(h), Some(mi), Some(sec)) = (digits(h, 1, 2), digits(mi, 1, 2), digits(sec, 1, 2)) else {
        return Err(bad());
    };
    if h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    let micros = match frac {
        None => 0,
        Some(f) => {
            let v = digits(f, 1, 6).ok_or_else(bad)?;
            v * 10u32.pow(6 - f.len() as u32)
        }
    };
    Ok(format_time(h, mi, sec, micros))
}

/// A DATETIME literal `date[( |T)time]` → canonical `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
pub(crate) fn parse_datetime(s: &str) -> Result<String, String> {
    let split = s.find([' ', 'T', 't']);
    let (date, time) = match split {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let wrap = |e: String| format!("`{s}` is not a DATETIME: {e}");
    let date = parse_date(date).map_err(wrap)?;
    let time = match time {
        Some(t) => parse_time(t).map_err(wrap)?,
        None => "00:00:00".to_owned(),
    };
    Ok(format!("{date}T{time}"))
}

/// `CivilTimeEncoder` packed TIME: `hour << 32 | minute << 26 | second << 20 | micros`.
pub(crate) fn packed_time(v: i64) -> Result<String, String> {
    let bad = || format!("{v} is not a packed TIME (CivilTimeEncoder)");
    if v < 0 || v >> 37 != 0 {
        return Err(bad());
    }
    let micros = (v & 0xF_FFFF) as u32;
    let s = ((v >> 20) & 0x3F) as u32;
    let mi = ((v >> 26) & 0x3F) as u32;
    let h = ((v >> 32) & 0x1F) as u32;
    if h > 23 || mi > 59 || s > 59 || micros > 999_999 {
        return Err(bad());
    }
    Ok(format_time(h, mi, s, micros))
}

/// `CivilTimeEncoder` packed DATETIME: `year << 46 | month << 42 | day << 37 | hour << 32 |
/// minute << 26 | second << 20 | micros`.
pub(crate) fn packed_datetime(v: i64) -> Result<String, String> {
    let bad = || format!("{v} is not a packed DATETIME (CivilTimeEncoder)");
    if v < 0 || v >> 60 != 0 {
        return Err(bad());
    }
    let time = packed_time(v & ((1 << 37) - 1)).map_err(|_| bad())?;
    let d = ((v >> 37) & 0x1F) as u32;
    let m = ((v >> 42) & 0xF) as u32;
    let y = (v >> 46) & 0x3FFF;
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok(format!("{y:04}-{m:02}-{d:02}T{time}"))
}

/// A TIMESTAMP in µs since the epoch, within BigQuery's range.
pub(crate) fn timestamp_micros(v: i64) -> Result<String, String> {
    if !(MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(&v) {
        return Err(format!("TIMESTAMP {v} µs is outside 0001-01-01 00:00:00 ..= 9999-12-31 23:59:59.999999 UTC"));
    }
    Ok(v.to_string())
}

/// NUMERIC (`big = false`) or BIGNUMERIC from decimal text: `[+-]digits[.digits][(e|E)[+-]digits]`.
/// Returns the canonical text (no exponent, no leading or trailing zeros, no `-0`). Values are
/// never rounded: more fractional digits than the scale allows is an error.
pub(crate) fn decimal(s: &str, big: bool) -> Result<String, String> {
    let ty = if big { "BIGNUMERIC" } else { "NUMERIC" };
    let bad = || format!("`{s}` is not a {ty} value");
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e = &rest[i + 1..];
            let body = e.strip_prefix(['+', '-']).unwrap_or(e);
            if body.is_empty() || body.len() > 4 || !body.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (&rest[..i], e.parse::<i64>().map_err(|_| bad())?)
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !(int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    // All digits, and where the decimal point falls in them.
    let all: String = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    let (mut int_digits, mut frac_digits) = if point <= 0 {
        (String::new(), format!("{}{all}", "0".repeat((-point) as usize)))
    } else if point as usize >= all.len() {
        (format!("{all}{}", "0".repeat(point as usize - all.len())), String::new())
    } else {
        (all[..point as usize].to_owned(), all[point as usize..].to_owned())
    };
    int_digits = int_digits.trim_start_matches('0').to_owned();
    frac_digits = frac_digits.trim_end_matches('0').to_owned();
    let (max_int, max_scale) = if big { (39, 38) } else { (29, 9) };
    if frac_digits.len() > max_scale {
        return Err(format!("`{s}` has more than {max_scale} digits after the decimal point ({ty} scale)"));
    }
    if int_digits.len() > max_int {
        return Err(format!("`{s}` is out of the {ty} range"));
    }
    if big && int_digits.len() == max_int {
        let scaled = format!("{int_digits}{frac_digits:0<38}");
        let bound = if neg { BIGNUMERIC_MIN_SCALED } else { BIGNUMERIC_MAX_SCALED };
        if scaled.as_str() > bound {
            return Err(format!("`{s}` is out of the {ty} range"));
        }
    }
    let zero = int_digits.is_empty() && frac_digits.is_empty();
    let mut out = String::with_capacity(int_digits.len() + frac_digits.len() + 3);
    if neg && !zero {
        out.push('-');
    }
    out.push_str(if int_digits.is_empty() { "0" } else { &int_digits });
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok(out)
}

/// NUMERIC / BIGNUMERIC from `BigDecimalByteStringEncoder` bytes: the little-endian two's
/// complement of the value × 10^scale (9 or 38).
pub(crate) fn decimal_from_bytes(b: &[u8], big: bool) -> Result<String, String> {
    let (max_len, scale) = if big { (32, 38) } else { (16, 9) };
    if b.is_empty() || b.len() > max_len {
        return Err(format!("{} bytes cannot encode a {}", b.len(), if big { "BIGNUMERIC" } else { "NUMERIC" }));
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    // Big-endian magnitude.
    let mut mag: Vec<u8> = b.iter().rev().copied().collect();
    if neg {
        for x in &mut mag {
            *x = !*x;
        }
        for x in mag.iter_mut().rev() {
            let (v, carry) = x.overflowing_add(1);
            *x = v;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10.
    let mut dec = Vec::new();
    while mag.iter().any(|&x| x != 0) {
        let mut rem = 0u32;
        for x in &mut mag {
            let cur = (rem << 8) | u32::from(*x);
            *x = (cur / 10) as u8;
            rem = cur % 10;
        }
        dec.push(char::from(b'0' + rem as u8));
    }
    let mut digits: String = dec.iter().rev().collect();
    if digits.is_empty() {
        digits.push('0');
    }
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let (i, f) = digits.split_at(digits.len() - scale);
    let text = format!("{}{i}.{f}", if neg { "-" } else { "" });
    decimal(&text, big)
}

/// A JSON column value: any valid JSON document.
pub(crate) fn json_text(s: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(s).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(s.to_owned())
}

/// A GEOGRAPHY value: WKT (a geometry keyword with balanced parentheses, or `… EMPTY`) or a GeoJSON
/// object with a `type`. This is a shape check, not a geometry validation.
pub(crate) fn geography(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| format!("invalid GeoJSON: {e}"))?;
        return if v.get("type").and_then(|x| x.as_str()).is_some() {
            Ok(s.to_owned())
        } else {
            Err("GeoJSON without a `type`".into())
        };
    }
    const KEYWORDS: [&str; 7] =
        ["POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"];
    let upper = t.to_ascii_uppercase();
    let kw = KEYWORDS.iter().filter(|k| upper.starts_with(*k)).max_by_key(|k| k.len());
    let Some(kw) = kw else { return Err(format!("`{s}` is not WKT or GeoJSON")) };
    let rest = upper[kw.len()..].trim();
    let mut depth = 0i32;
    for c in rest.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    let shaped = (rest.starts_with('(') && rest.ends_with(')') && depth == 0) || rest == "EMPTY";
    if shaped {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not WKT or GeoJSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_from_days(0).as_deref(), Ok("1970-01-01"));
        assert_eq!(date_from_days(MIN_DATE_DAYS).as_deref(), Ok("0001-01-01"));
        assert_eq!(date_from_days(MAX_DATE_DAYS).as_deref(), Ok("9999-12-31"));
        assert!(date_from_days(MAX_DATE_DAYS + 1).is_err());
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(parse_date("2024-2-9").as_deref(), Ok("2024-02-09"));
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("0000-01-01").is_err());
        assert_eq!(parse_datetime("2024-05-01 12:00:00.5").as_deref(), Ok("2024-05-01T12:00:00.500000"));
        assert!(parse_time("24:00:00").is_err());
    }

    #[test]
    fn packed_civil_times() {
        let t = (13i64 << 32) | (14 << 26) | (15 << 20) | 123_456;
        assert_eq!(packed_time(t).as_deref(), Ok("13:14:15.123456"));
        let dt = (2024i64 << 46) | (5 << 42) | (1 << 37) | t;
        assert_eq!(packed_datetime(dt).as_deref(), Ok("2024-05-01T13:14:15.123456"));
        assert!(packed_time(24i64 << 32).is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("00012.3400", false).as_deref(), Ok("12.34"));
        assert_eq!(decimal("-0.0", false).as_deref(), Ok("0"));
        assert_eq!(decimal("1.5e3", false).as_deref(), Ok("1500"));
        assert_eq!(decimal(".5", false).as_deref(), Ok("0.5"));
        assert!(decimal("0.0000000001", false).is_err());
        assert!(decimal(&"9".repeat(30), false).is_err());
        assert!(decimal(&format!("{}.{}", "9".repeat(29), "9".repeat(9)), false).is_ok());
        assert!(
            decimal("5.7896044618658097711785492504343953926634992332820282019728792003956564819967E+38", true).is_ok()
        );
        assert!(decimal("5.7896044618658097711785492504343953926634992332820282019728792003956564819968E+38", true)
            .is_err());
        assert!(decimal("-5.7896044618658097711785492504343953926634992332820282019728792003956564819968E+38", true)
            .is_ok());
        assert!(decimal("1.2.3", false).is_err());
        assert!(decimal("NaN", false).is_err());
        // 1.5 × 10^9 little-endian; and -1.
        assert_eq!(decimal_from_bytes(&1_500_000_000u64.to_le_bytes(), false).as_deref(), Ok("1.5"));
        assert_eq!(decimal_from_bytes(&(-1_000_000_000i64).to_le_bytes(), false).as_deref(), Ok("-1"));
    }

    #[test]
    fn geography_shapes() {
        assert!(geography("POINT(1 2)").is_ok());
        assert!(geography("MULTIPOLYGON(((0 0,1 0,1 1,0 0)))").is_ok());
        assert!(geography("POINT EMPTY").is_ok());
        assert!(geography(r#"{"type":"Point","coordinates":[1,2]}"#).is_ok());
        assert!(geography("hello").is_err());
        assert!(geography("POINT(1 2").is_err());
    }
}
