//! Exact decimals for NUMERIC and BIGNUMERIC, kept as canonical text (what the Storage Write API
//! takes for both types), so no value is ever rounded through a float.

use std::fmt;

/// Integer digits a NUMERIC holds (precision 38, scale 9).
pub const NUMERIC_INT_DIGITS: usize = 29;
/// Fractional digits a NUMERIC holds.
pub const NUMERIC_SCALE: usize = 9;
/// Integer digits a BIGNUMERIC holds (precision 76.76, scale 38).
pub const BIGNUMERIC_INT_DIGITS: usize = 38;
/// Fractional digits a BIGNUMERIC holds.
pub const BIGNUMERIC_SCALE: usize = 38;
/// Longest decimal accepted at all, so an exponent like `1e999999999` cannot exhaust memory.
const MAX_DIGITS: usize = 160;

/// A decimal number in canonical form: no exponent, no leading zeros, no trailing fractional
/// zeros, no `-0`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: String,
    int_digits: u16,
    scale: u16,
}

/// The shape of a canonical decimal: digits before and after the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalShape {
    /// Digits before the point (0 for |x| < 1).
    pub int_digits: usize,
    /// Digits after the point.
    pub scale: usize,
}

impl DecimalShape {
    /// Whether a NUMERIC column holds such a value exactly.
    pub fn fits_numeric(&self) -> bool {
        self.int_digits <= NUMERIC_INT_DIGITS && self.scale <= NUMERIC_SCALE
    }
    /// Whether a BIGNUMERIC column holds such a value exactly.
    pub fn fits_bignumeric(&self) -> bool {
        self.int_digits <= BIGNUMERIC_INT_DIGITS && self.scale <= BIGNUMERIC_SCALE
    }
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` and writes its canonical text into `out`
/// (cleared first): what encoders write for NUMERIC and BIGNUMERIC, into a buffer they keep.
/// [`Decimal::parse`] is this parse, kept.
pub fn canonical_into(input: &str, out: &mut Vec<u8>) -> Result<DecimalShape, &'static str> {
    out.clear();
    if let Some(shape) = already_canonical(input.as_bytes()) {
        out.extend_from_slice(input.as_bytes());
        return Ok(shape);
    }
    let s = input.trim().as_bytes();
    let (negative, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mantissa_end = s.iter().position(|b| *b == b'e' || *b == b'E').unwrap_or(s.len());
    let (mantissa, exponent) = s.split_at(mantissa_end);
    let exponent: i64 = if exponent.is_empty() {
        0
    } else {
        let e = std::str::from_utf8(&exponent[1..]).map_err(|_| "not a decimal number")?;
        e.parse::<i64>().map_err(|_| "not a decimal number")?
    };
    let (int_part, frac_part) = match mantissa.iter().position(|b| *b == b'.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("not a decimal number");
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return Err("not a decimal number");
    }
    if exponent.unsigned_abs() > MAX_DIGITS as u64 {
        return Err("decimal exponent out of range");
    }
    // The digits are int_part ++ frac_part; the point sits before digit `point` (which may be
    // outside them: zeros are implied on either side).
    let total = (int_part.len() + frac_part.len()) as i64;
    let digit = |i: i64| -> u8 {
        if i < 0 || i >= total {
            b'0'
        } else if (i as usize) < int_part.len() {
            int_part[i as usize]
        } else {
            frac_part[i as usize - int_part.len()]
        }
    };
    let point = int_part.len() as i64 + exponent;
    let Some(first) = (0..total).find(|i| digit(*i) != b'0') else {
        out.push(b'0');
        return Ok(DecimalShape { int_digits: 0, scale: 0 });
    };
    let last = (0..total).rev().find(|i| digit(*i) != b'0').unwrap_or(first);
    let int_digits = (point - first).max(0);
    let scale = (last + 1 - point).max(0);
    if int_digits + scale > MAX_DIGITS as i64 {
        return Err("decimal has too many digits");
    }
    if negative {
        out.push(b'-');
    }
    if int_digits == 0 {
        out.push(b'0');
    } else {
        out.extend((point - int_digits..point).map(digit));
    }
    if scale > 0 {
        out.push(b'.');
        out.extend((point..point + scale).map(digit));
    }
    Ok(DecimalShape { int_digits: int_digits as usize, scale: scale as usize })
}

/// The shape of text that is already canonical (`-`? digits without a leading zero, or `0`;
/// then `.` and digits not ending in `0`), the common case read in one pass; `None` for
/// anything else, which the general parse handles.
#[inline]
fn already_canonical(b: &[u8]) -> Option<DecimalShape> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let point = digits.iter().position(|c| *c == b'.');
    let (int, frac) = match point {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    let int_ok = int == b"0" || (!int.is_empty() && int[0] != b'0');
    let frac_ok = point.is_none() || (!frac.is_empty() && frac.last() != Some(&b'0'));
    let all_digits = int.iter().chain(frac).all(u8::is_ascii_digit);
    // `-0` is written `0`; zero with a fraction (`0.5`) is fine.
    let negative_zero = digits.len() < b.len() && int == b"0" && frac.is_empty();
    if !(int_ok && frac_ok && all_digits) || negative_zero || int.len() + frac.len() > MAX_DIGITS {
        return None;
    }
    let int_digits = if int == b"0" { 0 } else { int.len() };
    Some(DecimalShape { int_digits, scale: frac.len() })
}

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let mut text = Vec::with_capacity(input.len() + 2);
        let shape = canonical_into(input, &mut text)?;
        Ok(Self {
            // Only ASCII digits, `-` and `.` are written.
            text: String::from_utf8(text).unwrap_or_default(),
            int_digits: shape.int_digits as u16,
            scale: shape.scale as u16,
        })
    }

    /// The exact decimal of an integer.
    pub fn from_i64(v: i64) -> Self {
        let text = v.to_string();
        let int_digits = if v == 0 { 0 } else { text.trim_start_matches('-').len() as u16 };
        Self { text, int_digits, scale: 0 }
    }

    /// The shortest decimal that reads back as this float; `None` for NaN and infinities.
    pub fn from_f64(v: f64) -> Option<Self> {
        if !v.is_finite() {
            return None;
        }
        Self::parse(&format!("{v:?}")).ok()
    }

    /// Canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// Digits before the point (0 for |x| < 1).
    pub fn int_digits(&self) -> usize {
        usize::from(self.int_digits)
    }
    /// Digits after the point.
    pub fn scale(&self) -> usize {
        usize::from(self.scale)
    }
    /// Whether a NUMERIC column holds this value exactly.
    pub fn fits_numeric(&self) -> bool {
        self.int_digits() <= NUMERIC_INT_DIGITS && self.scale() <= NUMERIC_SCALE
    }
    /// Whether a BIGNUMERIC column holds this value exactly.
    pub fn fits_bignumeric(&self) -> bool {
        self.int_digits() <= BIGNUMERIC_INT_DIGITS && self.scale() <= BIGNUMERIC_SCALE
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_already_canonical_is_read_as_the_general_parse_does() {
        for t in ["1234.56", "0", "-0", "0.5", "-0.50", "007", "10", "1.", ".5", "-12.3400", "1e3", "12a", "-", ""] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            // A leading space is not canonical: the general parse (which trims) reads it.
            assert_eq!(canonical_into(t, &mut a), canonical_into(&format!(" {t}"), &mut b), "{t}");
            assert_eq!(a, b, "{t}");
        }
    }

    #[test]
    fn canonicalises() {
        let c = |s: &str| Decimal::parse(s).map(|d| d.to_string());
        assert_eq!(c("0012.3400"), Ok("12.34".into()));
        assert_eq!(c("-0.0"), Ok("0".into()));
        assert_eq!(c("1.5e3"), Ok("1500".into()));
        assert_eq!(c("1.5E-3"), Ok("0.0015".into()));
        assert_eq!(c(".5"), Ok("0.5".into()));
        assert_eq!(c("+7."), Ok("7".into()));
        assert!(c("1e999999999").is_err());
        assert!(c("abc").is_err());
        assert!(c("").is_err());
        assert!(c("1.2.3").is_err());
    }

    #[test]
    fn numeric_limits() {
        let max = "99999999999999999999999999999.999999999";
        assert!(Decimal::parse(max).map(|d| d.fits_numeric()).unwrap_or(false));
        assert!(!Decimal::parse("1.0000000001").map(|d| d.fits_numeric()).unwrap_or(true));
        assert!(!Decimal::parse("100000000000000000000000000000").map(|d| d.fits_numeric()).unwrap_or(true));
        assert_eq!(Decimal::from_i64(i64::MIN).as_str(), "-9223372036854775808");
        assert_eq!(Decimal::from_f64(0.1).map(|d| d.to_string()), Some("0.1".into()));
    }
}
