//! Civil (calendar) time: the DATE, TIME, DATETIME and TIMESTAMP representations BigQuery uses,
//! with parsers for the text forms BigQuery's JSON loads accept and canonical formatters.
//!
//! Days are counted from 1970-01-01 (proleptic Gregorian), times in microseconds.

use std::fmt;

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// First day BigQuery accepts (0001-01-01), in days since the epoch.
pub const MIN_DATE_DAYS: i32 = -719_162;
/// Last day BigQuery accepts (9999-12-31), in days since the epoch.
pub const MAX_DATE_DAYS: i32 = 2_932_896;

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = (y - era * 400) as u32;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era as i32 - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub const fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let day_of_era = (z - era * 146_097) as u32;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era as i32 + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// A DATE: days since 1970-01-01, within 0001-01-01 ..= 9999-12-31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    /// A date from days since the epoch; `None` outside BigQuery's range.
    pub const fn from_days(days: i32) -> Option<Self> {
        if days < MIN_DATE_DAYS || days > MAX_DATE_DAYS {
            None
        } else {
            Some(Self(days))
        }
    }
    /// A date from its calendar parts; `None` when the parts are not a real date.
    pub const fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 {
            return None;
        }
        if day > days_in_month(year, month) {
            return None;
        }
        Some(Self(days_from_civil(year, month, day)))
    }
    /// Days since 1970-01-01 (what the Storage Write API takes for DATE).
    pub const fn days(self) -> i32 {
        self.0
    }
    /// Parses `YYYY-[M]M-[D]D`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut c = Cursor::new(text.trim());
        let date = c.date()?;
        c.end().then_some(date)
    }
}

impl Date {
    /// Writes `YYYY-MM-DD` into `out` (years of four digits); `None` for a year outside
    /// 0000–9999.
    fn write_canonical(self, out: &mut [u8]) -> Option<usize> {
        let (y, m, d) = civil_from_days(self.0);
        let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
        put2(&mut out[0..2], y / 100);
        put2(&mut out[2..4], y % 100);
        out[4] = b'-';
        put2(&mut out[5..7], m);
        out[7] = b'-';
        put2(&mut out[8..10], d);
        Some(10)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 10];
        match self.write_canonical(&mut buf) {
            // Only ASCII digits and separators were written.
            Some(n) => f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?),
            None => {
                let (y, m, d) = civil_from_days(self.0);
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
        }
    }
}

/// A date and a time of day written as one text: `date` `sep` `time` `end`.
fn write_date_time(f: &mut fmt::Formatter<'_>, date: Date, time: Time, sep: u8, end: Option<u8>) -> fmt::Result {
    let mut buf = [0u8; 27];
    let Some(n) = date.write_canonical(&mut buf) else {
        write!(f, "{date}{}{time}", char::from(sep))?;
        return match end {
            Some(e) => write!(f, "{}", char::from(e)),
            None => Ok(()),
        };
    };
    buf[n] = sep;
    let mut t = [0u8; 15];
    let k = time.write_canonical(&mut t);
    buf[n + 1..n + 1 + k].copy_from_slice(&t[..k]);
    let mut len = n + 1 + k;
    if let Some(e) = end {
        buf[len] = e;
        len += 1;
    }
    // Only ASCII digits and separators were written.
    f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// A TIME of day in microseconds since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    /// 00:00:00.
    pub const MIDNIGHT: Time = Time(0);
    /// A time from microseconds since midnight; `None` outside a day.
    pub const fn from_micros(micros: i64) -> Option<Self> {
        if micros < 0 || micros >= MICROS_PER_DAY {
            None
        } else {
            Some(Self(micros))
        }
    }
    /// A time from its parts.
    pub const fn from_hms_micro(hour: u32, minute: u32, second: u32, micro: u32) -> Option<Self> {
        if hour > 23 || minute > 59 || second > 59 || micro > 999_999 {
            return None;
        }
        Some(Self(((hour as i64 * 60 + minute as i64) * 60 + second as i64) * 1_000_000 + micro as i64))
    }
    /// Microseconds since midnight.
    pub const fn micros(self) -> i64 {
        self.0
    }
    /// Parses `[H]H:[M]M[:[S]S[.F]]` (up to 9 fractional digits; beyond 6 truncated to µs).
    pub fn parse(text: &str) -> Option<Self> {
        let mut c = Cursor::new(text.trim());
        let time = c.time()?;
        c.end().then_some(time)
    }
    /// Writes the canonical `HH:MM:SS[.ffffff]` form into `out`, returning the bytes written.
    pub fn write_canonical(self, out: &mut [u8; 15]) -> usize {
        let secs = self.0 / 1_000_000;
        let micro = (self.0 % 1_000_000) as u32;
        let (h, m, s) = ((secs / 3600) as u32, ((secs / 60) % 60) as u32, (secs % 60) as u32);
        put2(&mut out[0..2], h);
        out[2] = b':';
        put2(&mut out[3..5], m);
        out[5] = b':';
        put2(&mut out[6..8], s);
        if micro == 0 {
            return 8;
        }
        out[8] = b'.';
        let mut v = micro;
        for i in (9..15).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        15
    }
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 15];
        let n = self.write_canonical(&mut buf);
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// A DATETIME: a civil date and time without a time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// The date part.
    pub date: Date,
    /// The time part.
    pub time: Time,
}

impl DateTime {
    /// Parses `YYYY-[M]M-[D]D[( |T)[H]H:[M]M[:[S]S[.F]]]`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut c = Cursor::new(text.trim());
        let date = c.date()?;
        let time = if c.at_end() {
            Time(0)
        } else {
            c.date_time_separator()?;
            c.time()?
        };
        c.end().then_some(Self { date, time })
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_date_time(f, self.date, self.time, b'T', None)
    }
}

/// A TIMESTAMP: an absolute instant in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Smallest TIMESTAMP BigQuery accepts (0001-01-01 00:00:00 UTC), in µs.
pub const MIN_TIMESTAMP_MICROS: i64 = MIN_DATE_DAYS as i64 * MICROS_PER_DAY;
/// Largest TIMESTAMP BigQuery accepts (9999-12-31 23:59:59.999999 UTC), in µs.
pub const MAX_TIMESTAMP_MICROS: i64 = (MAX_DATE_DAYS as i64 + 1) * MICROS_PER_DAY - 1;

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// A timestamp from µs since the epoch; `None` outside BigQuery's range.
    pub const fn from_micros(micros: i64) -> Option<Self> {
        if micros < MIN_TIMESTAMP_MICROS || micros > MAX_TIMESTAMP_MICROS {
            None
        } else {
            Some(Self(micros))
        }
    }
    /// A timestamp from (possibly fractional) seconds since the epoch, rounded to µs.
    pub fn from_seconds_f64(seconds: f64) -> Option<Self> {
        let micros = (seconds * 1e6).round();
        if !micros.is_finite() || micros.abs() > 9.2e18 {
            return None;
        }
        Self::from_micros(micros as i64)
    }
    /// Microseconds since the epoch (what the Storage Write API takes for TIMESTAMP).
    pub const fn micros(self) -> i64 {
        self.0
    }
    /// Parses `YYYY-[M]M-[D]D[( |T)[H]H:[M]M[:[S]S[.F]]][ ][Z|UTC|±H[H][:MM]]`; no zone means UTC.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(t) = Self::parse_rfc3339_utc(text.as_bytes()) {
            return t;
        }
        let mut c = Cursor::new(text.trim());
        let date = c.date()?;
        let mut time = Time(0);
        if !c.at_end() && (c.peek() == Some(b'T') || c.peek() == Some(b't') || c.peek() == Some(b' ')) {
            let save = c.pos;
            c.pos += 1;
            match c.time() {
                Some(t) => time = t,
                None => c.pos = save,
            }
        }
        let offset_secs = c.zone()?;
        if !c.end() {
            return None;
        }
        let micros = date.0 as i64 * MICROS_PER_DAY + time.0 - offset_secs * 1_000_000;
        Self::from_micros(micros)
    }
}

impl Timestamp {
    /// The layout most inputs use, `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, read at once; `None` when
    /// the text has another layout (the general grammar of [`Timestamp::parse`] reads it, to the
    /// same value), `Some(None)` when it has this layout but is not a valid timestamp.
    #[inline]
    fn parse_rfc3339_utc(b: &[u8]) -> Option<Option<Self>> {
        let d = |i: usize| -> Option<u32> { b.get(i).filter(|c| c.is_ascii_digit()).map(|c| u32::from(c - b'0')) };
        let two = |i: usize| -> Option<u32> { Some(d(i)? * 10 + d(i + 1)?) };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let year = two(0)? * 100 + two(2)?;
        let (month, day, hour, minute, second) = (two(5)?, two(8)?, two(11)?, two(14)?, two(17)?);
        let mut at = 19;
        let mut micro = 0u32;
        if b[at] == b'.' {
            at += 1;
            let start = at;
            while at < b.len() && b[at].is_ascii_digit() {
                at += 1;
            }
            let n = at - start;
            if n == 0 || n > 9 {
                return None;
            }
            for i in 0..6 {
                micro = micro * 10 + if i < n { u32::from(b[start + i] - b'0') } else { 0 };
            }
        }
        if at + 1 != b.len() || b[at] != b'Z' {
            return None;
        }
        let date = Date::from_ymd(year as i32, month, day);
        let time = Time::from_hms_micro(hour, minute, second, micro);
        Some(match (date, time) {
            (Some(date), Some(time)) => Self::from_micros(date.0 as i64 * MICROS_PER_DAY + time.0),
            _ => None,
        })
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with µs when present: `2024-01-02T03:04:05.000006Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MICROS_PER_DAY) as i32;
        let micros = self.0.rem_euclid(MICROS_PER_DAY);
        write_date_time(f, Date(days), Time(micros), b'T', Some(b'Z'))
    }
}

/// A tiny byte cursor for the date/time grammars above.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { bytes: text.as_bytes(), pos: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
    fn end(&self) -> bool {
        self.at_end()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// Between `min` and `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let mut value: u32 = 0;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    self.pos += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        (n >= min).then_some((value, n))
    }
    fn date(&mut self) -> Option<Date> {
        let (y, _) = self.digits(4, 4)?;
        if !self.eat(b'-') {
            return None;
        }
        let (m, _) = self.digits(1, 2)?;
        if !self.eat(b'-') {
            return None;
        }
        let (d, _) = self.digits(1, 2)?;
        Date::from_ymd(y as i32, m, d)
    }
    fn date_time_separator(&mut self) -> Option<()> {
        match self.peek()? {
            b'T' | b't' | b' ' => {
                self.pos += 1;
                Some(())
            }
            _ => None,
        }
    }
    fn time(&mut self) -> Option<Time> {
        let (h, _) = self.digits(1, 2)?;
        if !self.eat(b':') {
            return None;
        }
        let (mi, _) = self.digits(1, 2)?;
        let mut s = 0;
        let mut micro = 0;
        if self.eat(b':') {
            s = self.digits(1, 2)?.0;
            if self.eat(b'.') {
                let start = self.pos;
                let (_, n) = self.digits(1, 9)?;
                // Re-read the first six digits as µs; digits beyond µs are truncated.
                let frac = &self.bytes[start..start + n];
                for i in 0..6 {
                    micro = micro * 10 + frac.get(i).map_or(0, |b| u32::from(b - b'0'));
                }
            }
        }
        Time::from_hms_micro(h, mi, s, micro)
    }
    /// A zone suffix as seconds east of UTC; absent means UTC.
    fn zone(&mut self) -> Option<i64> {
        let rest = &self.bytes[self.pos..];
        let rest_trimmed = rest.strip_prefix(b" ").unwrap_or(rest);
        let skip = rest.len() - rest_trimmed.len();
        match rest_trimmed.first() {
            None => {
                self.pos = self.bytes.len();
                Some(0)
            }
            Some(b'Z') | Some(b'z') => {
                self.pos += skip + 1;
                Some(0)
            }
            Some(b'U') if rest_trimmed.starts_with(b"UTC") => {
                self.pos += skip + 3;
                if self.at_end() {
                    Some(0)
                } else {
                    self.zone_offset()
                }
            }
            Some(b'+') | Some(b'-') => {
                self.pos += skip;
                self.zone_offset()
            }
            _ => None,
        }
    }
    fn zone_offset(&mut self) -> Option<i64> {
        let sign: i64 = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.pos += 1;
        let (h, n) = self.digits(1, 2)?;
        let mut m = 0;
        if self.eat(b':') {
            m = self.digits(2, 2)?.0;
        } else if n == 2 {
            if let Some((mm, _)) = self.digits(2, 2) {
                m = mm;
            }
        }
        if h > 14 || m > 59 {
            return None;
        }
        Some(sign * (i64::from(h) * 3600 + i64::from(m) * 60))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_common_timestamp_layout_reads_as_the_general_grammar_does() {
        // A leading space takes the general grammar (it trims); the value must be the same.
        for t in [
            "2023-11-14T22:13:20.000000Z",
            "2023-11-14T22:13:20Z",
            "2024-02-29T23:59:59.9999999Z",
            "2023-02-29T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567890Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20.5z",
        ] {
            assert_eq!(Timestamp::parse(t), Timestamp::parse(&format!(" {t}")), "{t}");
        }
    }

    use super::*;

    #[test]
    fn civil_round_trip_over_the_whole_range() {
        for days in (MIN_DATE_DAYS..=MAX_DATE_DAYS).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(MIN_DATE_DAYS), (1, 1, 1));
        assert_eq!(civil_from_days(MAX_DATE_DAYS), (9999, 12, 31));
    }

    #[test]
    fn parses_dates_and_rejects_impossible_ones() {
        assert_eq!(Date::parse("1970-01-01").map(Date::days), Some(0));
        assert_eq!(Date::parse("2024-02-29").map(|d| d.to_string()), Some("2024-02-29".into()));
        assert_eq!(Date::parse("2023-02-29"), None);
        assert_eq!(Date::parse("2023-13-01"), None);
        assert_eq!(Date::parse("0000-01-01"), None);
        assert_eq!(Date::parse("1969-12-31").map(Date::days), Some(-1));
    }

    #[test]
    fn parses_timestamps_with_zones() {
        let t = |s: &str| Timestamp::parse(s).map(Timestamp::micros);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("1970-01-01 00:00:01 UTC"), Some(1_000_000));
        assert_eq!(t("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(t("1970-01-01T00:00:00.123456789Z"), Some(123_456));
        assert_eq!(t("1969-12-31T23:59:59.999999Z"), Some(-1));
        assert_eq!(t("2020-01-01"), Some(18_262 * MICROS_PER_DAY));
        assert_eq!(t("2020-01-01T00:00:00-0530"), Some(18_262 * MICROS_PER_DAY + 19_800_000_000));
        assert_eq!(t("not a time"), None);
        assert_eq!(t("2020-01-01T25:00:00Z"), None);
        let ts = Timestamp::parse("2150-06-01T12:30:45.5Z");
        assert_eq!(ts.map(|t| t.to_string()), Some("2150-06-01T12:30:45.500000Z".into()));
    }

    #[test]
    fn formats_times_canonically() {
        assert_eq!(Time::parse("1:2:3").map(|t| t.to_string()), Some("01:02:03".into()));
        assert_eq!(Time::parse("23:59:59.000001").map(|t| t.to_string()), Some("23:59:59.000001".into()));
        let dt = DateTime::parse("2024-05-06 07:08:09.25");
        assert_eq!(dt.map(|d| d.to_string()), Some("2024-05-06T07:08:09.250000".into()));
    }
}
