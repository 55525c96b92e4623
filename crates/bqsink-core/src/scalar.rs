//! The coercion rules, once: a JSON-shaped scalar borrowed from input (a string, a number, a
//! bool) converted to a column's type without allocating where the result fits on the stack.
//!
//! [`Value::coerce`] applies these rules to loose [`Value`]s, the `Record` encoder applies them
//! to a record's values, and the input transcoders (NDJSON, CSV) to values they read straight out
//! of the input buffer; so a value is accepted, converted and refused the same way, with the same
//! message, whichever way it came in.

use std::fmt::{self, Write as _};

use crate::civil::{Date, DateTime, Time, Timestamp};
use crate::decimal::{canonical_into, DecimalShape};
use crate::error::ValueError;
use crate::schema::FieldType;
use crate::value::{float_text_into, Value};

/// A loose value borrowed from input: the scalar shapes JSON has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(&'a str),
    /// An integer within INT64.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// An exact decimal in canonical text (JSON integers beyond INT64, NUMERIC values).
    Decimal(&'a str),
}

/// A value converted to its column's type, ready for the wire.
#[derive(Debug)]
#[non_exhaustive]
pub enum Coerced<'a> {
    /// INT64.
    Int64(i64),
    /// FLOAT64.
    Float64(f64),
    /// BOOL.
    Bool(bool),
    /// TIMESTAMP.
    Timestamp(Timestamp),
    /// DATE.
    Date(Date),
    /// TIME.
    Time(Time),
    /// DATETIME.
    DateTime(DateTime),
    /// STRING or GEOGRAPHY text taken as it is.
    Str(&'a str),
    /// Text made on the stack: a number or bool as STRING.
    Short(ShortText),
    /// NUMERIC or BIGNUMERIC: the canonical text is in the caller's buffer.
    Decimal(DecimalShape),
    /// JSON text (a scalar rendered as JSON).
    Json(String),
    /// BYTES: the decoded bytes are in the caller's buffer.
    Bytes,
}

/// Up to 32 bytes of ASCII text on the stack.
#[derive(Clone, Copy)]
pub struct ShortText {
    buf: [u8; 32],
    len: u8,
}

impl ShortText {
    pub(crate) fn new() -> Self {
        Self { buf: [0; 32], len: 0 }
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[at..end].copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Scalar<'_> {
    /// The kind of value, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "STRING",
            Scalar::Int(_) => "INT64",
            Scalar::Float(_) => "FLOAT64",
            Scalar::Bool(_) => "BOOL",
            Scalar::Decimal(_) => "NUMERIC",
        }
    }

    /// The same value as an owned loose [`Value`] (for messages and the `Record` API).
    pub fn to_value(&self) -> Value {
        match *self {
            Scalar::Str(s) => Value::String(s.to_owned()),
            Scalar::Int(i) => Value::Int64(i),
            Scalar::Float(f) => Value::Float64(f),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Decimal(d) => match crate::decimal::Decimal::parse(d) {
                Ok(d) => Value::Numeric(d),
                Err(_) => Value::String(d.to_owned()),
            },
        }
    }

    fn mismatch(&self, expected: FieldType, detail: Option<&'static str>) -> ValueError {
        let v = self.to_value();
        ValueError { expected, got: self.kind(), preview: v.preview(), detail }
    }
}

/// Converts a loose scalar to a column's type, following the conventions of BigQuery's
/// newline-delimited JSON loads (the table is on [`Value::coerce`]). `bytes` receives the decoded
/// bytes of a BYTES column and the canonical text of a NUMERIC or BIGNUMERIC one (cleared
/// first), so the result stays small. RECORD columns take no scalar.
pub fn coerce_scalar<'a>(s: Scalar<'a>, ty: FieldType, bytes: &mut Vec<u8>) -> Result<Coerced<'a>, ValueError> {
    let fail = |detail| Err(s.mismatch(ty, detail));
    match (ty, s) {
        (FieldType::String, Scalar::Str(v)) => Ok(Coerced::Str(v)),
        (FieldType::String, Scalar::Decimal(v)) => Ok(Coerced::Str(v)),
        (FieldType::String, Scalar::Int(v)) => Ok(Coerced::Short(short(format_args!("{v}")))),
        (FieldType::String, Scalar::Bool(v)) => Ok(Coerced::Short(short(format_args!("{v}")))),
        (FieldType::String, Scalar::Float(v)) => {
            let mut t = ShortText::new();
            float_text_into(v, &mut t);
            Ok(Coerced::Short(t))
        }

        (FieldType::Bytes, Scalar::Str(v)) => {
            if decode_base64_into(v, bytes) {
                Ok(Coerced::Bytes)
            } else {
                fail(Some("not valid base64"))
            }
        }

        (FieldType::Int64, Scalar::Int(v)) => Ok(Coerced::Int64(v)),
        (FieldType::Int64, Scalar::Float(f)) => match float_to_i64(f) {
            Some(i) => Ok(Coerced::Int64(i)),
            None => fail(Some("has a fractional part or is out of the INT64 range")),
        },
        (FieldType::Int64, Scalar::Decimal(d)) => match (!d.contains('.')).then(|| d.parse::<i64>().ok()).flatten() {
            Some(i) => Ok(Coerced::Int64(i)),
            None => fail(Some("has a fractional part or is out of the INT64 range")),
        },
        (FieldType::Int64, Scalar::Str(v)) => match v.trim().parse::<i64>() {
            Ok(i) => Ok(Coerced::Int64(i)),
            Err(_) => fail(Some("not an integer in the INT64 range")),
        },

        (FieldType::Float64, Scalar::Float(f)) => Ok(Coerced::Float64(f)),
        (FieldType::Float64, Scalar::Int(i)) => Ok(Coerced::Float64(i as f64)),
        (FieldType::Float64, Scalar::Decimal(d)) => match d.parse::<f64>() {
            Ok(f) => Ok(Coerced::Float64(f)),
            Err(_) => fail(None),
        },
        (FieldType::Float64, Scalar::Str(v)) => match parse_float(v) {
            Some(f) => Ok(Coerced::Float64(f)),
            None => fail(Some("not a number")),
        },

        (FieldType::Numeric | FieldType::BigNumeric, _) => {
            let big = ty == FieldType::BigNumeric;
            let shape = match s {
                Scalar::Decimal(d) | Scalar::Str(d) => canonical_into(d, bytes),
                Scalar::Int(i) => canonical_into(short(format_args!("{i}")).as_str(), bytes),
                Scalar::Float(f) if !f.is_finite() => return fail(Some("NaN and infinities are not decimals")),
                Scalar::Float(f) => canonical_into(short(format_args!("{f:?}")).as_str(), bytes),
                Scalar::Bool(_) => return fail(None),
            };
            let decimal = match shape {
                Ok(d) => d,
                Err(why) => return fail(Some(why)),
            };
            let fits = if big { decimal.fits_bignumeric() } else { decimal.fits_numeric() };
            if !fits {
                return fail(Some(if big {
                    "BIGNUMERIC holds 38 digits before and 38 after the point"
                } else {
                    "NUMERIC holds 29 digits before and 9 after the point"
                }));
            }
            Ok(Coerced::Decimal(decimal))
        }

        (FieldType::Bool, Scalar::Bool(b)) => Ok(Coerced::Bool(b)),
        (FieldType::Bool, Scalar::Int(0)) => Ok(Coerced::Bool(false)),
        (FieldType::Bool, Scalar::Int(1)) => Ok(Coerced::Bool(true)),
        (FieldType::Bool, Scalar::Str(v)) => {
            let t = v.trim();
            if ["true", "t", "1"].iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Coerced::Bool(true))
            } else if ["false", "f", "0"].iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Coerced::Bool(false))
            } else {
                fail(Some("expected true or false"))
            }
        }

        (FieldType::Timestamp, Scalar::Str(v)) => match Timestamp::parse(v) {
            Some(t) => Ok(Coerced::Timestamp(t)),
            None => fail(Some("not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][zone], years 0001–9999)")),
        },
        (FieldType::Timestamp, Scalar::Int(secs)) => match secs.checked_mul(1_000_000).and_then(Timestamp::from_micros)
        {
            Some(t) => Ok(Coerced::Timestamp(t)),
            None => fail(Some("seconds since 1970 out of range")),
        },
        (FieldType::Timestamp, Scalar::Float(secs)) => match Timestamp::from_seconds_f64(secs) {
            Some(t) => Ok(Coerced::Timestamp(t)),
            None => fail(Some("seconds since 1970 out of range")),
        },

        (FieldType::Date, Scalar::Str(v)) => match Date::parse(v) {
            Some(d) => Ok(Coerced::Date(d)),
            None => fail(Some("not a date (YYYY-MM-DD, years 0001–9999)")),
        },
        (FieldType::Time, Scalar::Str(v)) => match Time::parse(v) {
            Some(t) => Ok(Coerced::Time(t)),
            None => fail(Some("not a time (HH:MM:SS[.ffffff])")),
        },
        (FieldType::DateTime, Scalar::Str(v)) => match DateTime::parse(v) {
            Some(d) => Ok(Coerced::DateTime(d)),
            None => fail(Some("not a datetime (YYYY-MM-DD HH:MM:SS[.ffffff])")),
        },
        (FieldType::Geography, Scalar::Str(v)) => {
            if v.trim().is_empty() {
                fail(Some("empty geography"))
            } else {
                Ok(Coerced::Str(v))
            }
        }
        (FieldType::Json, s) => Ok(Coerced::Json(s.to_value().to_json_string())),
        _ => fail(None),
    }
}

impl Coerced<'_> {
    /// The converted value as an owned [`Value`] of the column type `ty`; `bytes` is the buffer
    /// given to [`coerce_scalar`].
    pub fn into_value(self, ty: FieldType, bytes: &[u8]) -> Value {
        match self {
            Coerced::Int64(v) => Value::Int64(v),
            Coerced::Float64(v) => Value::Float64(v),
            Coerced::Bool(v) => Value::Bool(v),
            Coerced::Timestamp(v) => Value::Timestamp(v),
            Coerced::Date(v) => Value::Date(v),
            Coerced::Time(v) => Value::Time(v),
            Coerced::DateTime(v) => Value::DateTime(v),
            Coerced::Str(s) if ty == FieldType::Geography => Value::Geography(s.to_owned()),
            Coerced::Str(s) => Value::String(s.to_owned()),
            Coerced::Short(t) => Value::String(t.as_str().to_owned()),
            Coerced::Decimal(_) => {
                let d = std::str::from_utf8(bytes).ok().and_then(|t| crate::decimal::Decimal::parse(t).ok());
                match d {
                    Some(d) if ty == FieldType::BigNumeric => Value::BigNumeric(d),
                    Some(d) => Value::Numeric(d),
                    None => Value::Null,
                }
            }
            Coerced::Json(s) => Value::Json(s),
            Coerced::Bytes => Value::Bytes(bytes.to_vec()),
        }
    }
}

/// Formats into a [`ShortText`]; what is formatted here always fits.
fn short(args: fmt::Arguments<'_>) -> ShortText {
    let mut t = ShortText::new();
    let _ = t.write_fmt(args);
    t
}

pub(crate) fn float_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything at or above it does not fit.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        Some(f as i64)
    } else {
        None
    }
}

pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("nan") {
        Some(f64::NAN)
    } else if is("infinity") || is("inf") || is("+infinity") || is("+inf") {
        Some(f64::INFINITY)
    } else if is("-infinity") || is("-inf") {
        Some(f64::NEG_INFINITY)
    } else {
        t.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

/// Decodes base64 (standard or URL-safe, padding optional) into `out`; false when it is none.
pub(crate) fn decode_base64_into(s: &str, out: &mut Vec<u8>) -> bool {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let t = s.trim();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.clear();
        if engine.decode_vec(t, out).is_ok() {
            return true;
        }
    }
    out.clear();
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_coerce_like_values() {
        let mut b = Vec::new();
        let cases: &[(Scalar<'_>, FieldType)] = &[
            (Scalar::Int(7), FieldType::String),
            (Scalar::Float(1e300), FieldType::String),
            (Scalar::Float(0.1), FieldType::Numeric),
            (Scalar::Str("2024-01-02T03:04:05Z"), FieldType::Timestamp),
            (Scalar::Str("oops"), FieldType::Int64),
            (Scalar::Decimal("18446744073709551615"), FieldType::Int64),
            (Scalar::Str("aGk="), FieldType::Bytes),
            (Scalar::Bool(true), FieldType::Date),
        ];
        for (s, ty) in cases {
            let via_value = s.to_value().coerce(*ty).map(|v| v.into_owned());
            let via_scalar = coerce_scalar(*s, *ty, &mut b).map(|c| c.into_value(*ty, &b));
            assert_eq!(via_value, via_scalar, "{s:?} as {ty}");
        }
        assert_eq!(
            coerce_scalar(Scalar::Str("oops"), FieldType::Int64, &mut b).map(|_| ()).map_err(|e| e.to_string()),
            Err("expected INT64, got STRING (\"oops\"): not an integer in the INT64 range".to_owned())
        );
    }
}
