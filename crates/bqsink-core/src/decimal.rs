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

/// Longest canonical text: every digit, a sign, a point and a leading zero.
const MAX_TEXT: usize = MAX_DIGITS + 3;

/// A decimal in canonical text built on the stack: what encoders write for NUMERIC and
/// BIGNUMERIC without allocating. [`Decimal::parse`] is this parse, kept.
#[derive(Clone, Copy)]
pub struct DecimalText {
    buf: [u8; MAX_TEXT],
    len: u8,
    int_digits: u8,
    scale: u8,
}

impl DecimalText {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` into canonical form.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
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
        // The digits are int_part ++ frac_part; the point sits before digit `point` (which may
        // be outside them: zeros are implied on either side).
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
        let first_nonzero = (0..total).find(|i| digit(*i) != b'0');
        let mut out = Self { buf: [0; MAX_TEXT], len: 0, int_digits: 0, scale: 0 };
        let Some(first) = first_nonzero else {
            out.buf[0] = b'0';
            out.len = 1;
            return Ok(out);
        };
        let last = (0..total).rev().find(|i| digit(*i) != b'0').unwrap_or(first);
        let int_digits = (point - first).max(0);
        let scale = (last + 1 - point).max(0);
        if int_digits + scale > MAX_DIGITS as i64 {
            return Err("decimal has too many digits");
        }
        let mut n = 0;
        if negative {
            out.buf[n] = b'-';
            n += 1;
        }
        if int_digits == 0 {
            out.buf[n] = b'0';
            n += 1;
        } else {
            for i in point - int_digits..point {
                out.buf[n] = digit(i);
                n += 1;
            }
        }
        if scale > 0 {
            out.buf[n] = b'.';
            n += 1;
            for i in point..point + scale {
                out.buf[n] = digit(i);
                n += 1;
            }
        }
        out.len = n as u8;
        out.int_digits = int_digits as u8;
        out.scale = scale as u8;
        Ok(out)
    }

    /// Canonical text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, `-` and `.` are written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("0")
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

impl fmt::Debug for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecimalText({})", self.as_str())
    }
}

impl From<DecimalText> for Decimal {
    fn from(t: DecimalText) -> Self {
        Self { text: t.as_str().to_owned(), int_digits: u16::from(t.int_digits), scale: u16::from(t.scale) }
    }
}

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        DecimalText::parse(input).map(Decimal::from)
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
