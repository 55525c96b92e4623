//! Values and records.
//!
//! A [`Value`] either already has a BigQuery type (`Timestamp`, `Date`, …) or is *loose* — the
//! shapes JSON has (`String`, `Int64`, `Float64`, `Bool`, `Record`, `Array`). Loose values are
//! converted to a column's type by [`Value::coerce`] following the conventions of BigQuery's
//! newline-delimited JSON loads; see that function for the table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;

use crate::civil::{Date, DateTime, Time, Timestamp};
use crate::decimal::Decimal;
use crate::error::ValueError;
use crate::scalar::{coerce_scalar, Scalar};
use crate::schema::FieldType;

/// A column name inside a [`Record`]: borrowed for literal names, owned for parsed input.
pub type Name = Cow<'static, str>;

/// Columns from which [`Record::insert_indexed`] looks names up in an index rather than in order.
const INDEX_FROM_COLUMNS: usize = 32;

/// One BigQuery value.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL (or a missing value).
    #[default]
    Null,
    /// BOOL.
    Bool(bool),
    /// INT64.
    Int64(i64),
    /// FLOAT64.
    Float64(f64),
    /// NUMERIC.
    Numeric(Decimal),
    /// BIGNUMERIC.
    BigNumeric(Decimal),
    /// STRING.
    String(String),
    /// BYTES.
    Bytes(Vec<u8>),
    /// TIMESTAMP.
    Timestamp(Timestamp),
    /// DATE.
    Date(Date),
    /// TIME.
    Time(Time),
    /// DATETIME.
    DateTime(DateTime),
    /// GEOGRAPHY as WKT.
    Geography(String),
    /// JSON as canonical text.
    Json(String),
    /// RECORD (STRUCT).
    Record(Record),
    /// REPEATED values (an ARRAY).
    Array(Vec<Value>),
}

/// A row or a RECORD value: named values in insertion order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Record {
    entries: Vec<(Name, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }
    /// An empty record with room for `n` columns.
    pub fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n) }
    }
    /// Appends a column (builder style).
    pub fn with(mut self, name: impl Into<Name>, value: impl Into<Value>) -> Self {
        self.insert(name, value);
        self
    }
    /// Sets a column, replacing an earlier value of the same name.
    pub fn insert(&mut self, name: impl Into<Name>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.entries.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.entries.push((name, value));
        }
    }
    /// Sets a column as [`Record::insert`] does, finding an earlier one of the same name through
    /// `index` (name → position, built and kept here) once the record has many columns: a record
    /// read from a JSON object with many keys takes linear time, not quadratic.
    pub(crate) fn insert_indexed(&mut self, name: String, value: Value, index: &mut HashMap<String, usize>) {
        if index.is_empty() {
            if self.entries.len() < INDEX_FROM_COLUMNS {
                self.insert(name, value);
                return;
            }
            index.extend(self.entries.iter().enumerate().map(|(i, (n, _))| (n.to_string(), i)));
        }
        match index.get(&name) {
            Some(&at) => self.entries[at].1 = value,
            None => {
                index.insert(name.clone(), self.entries.len());
                self.entries.push((Name::Owned(name), value));
            }
        }
    }
    /// Appends a column without checking for an earlier one of the same name.
    pub fn push(&mut self, name: impl Into<Name>, value: impl Into<Value>) {
        self.entries.push((name.into(), value.into()));
    }
    /// The value of a column (exact name first, then ignoring ASCII case as BigQuery does).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    }
    /// Removes a column, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let pos = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(pos).1)
    }
    /// Columns in insertion order, as a slice (for encoders that index into it).
    pub fn entries(&self) -> &[(Name, Value)] {
        &self.entries
    }
    /// Columns in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (n.as_ref(), v))
    }
    /// Number of columns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether the record has no columns.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The record as JSON text (for dead-letter files and messages).
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        Value::write_record_json(self, &mut out);
        out
    }
}

impl FromIterator<(Name, Value)> for Record {
    fn from_iter<I: IntoIterator<Item = (Name, Value)>>(iter: I) -> Self {
        Self { entries: iter.into_iter().collect() }
    }
}

impl IntoIterator for Record {
    type Item = (Name, Value);
    type IntoIter = std::vec::IntoIter<(Name, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

macro_rules! from_impl {
    ($($t:ty => $variant:ident $(as $conv:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$variant(v $(as $conv)?) }
        }
    )*};
}
from_impl!(bool => Bool, i64 => Int64, i32 => Int64 as i64, u32 => Int64 as i64, i16 => Int64 as i64,
    u16 => Int64 as i64, i8 => Int64 as i64, u8 => Int64 as i64, f64 => Float64, f32 => Float64 as f64,
    String => String, Vec<u8> => Bytes, Timestamp => Timestamp, Date => Date, Time => Time,
    DateTime => DateTime, Record => Record, Vec<Value> => Array);

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Shortest preview of a value kept in error messages.
const PREVIEW_CHARS: usize = 64;

impl Value {
    /// The kind of this value, as a type name for messages (`STRING`, `ARRAY`, `NULL`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "BOOL",
            Value::Int64(_) => "INT64",
            Value::Float64(_) => "FLOAT64",
            Value::Numeric(_) => "NUMERIC",
            Value::BigNumeric(_) => "BIGNUMERIC",
            Value::String(_) => "STRING",
            Value::Bytes(_) => "BYTES",
            Value::Timestamp(_) => "TIMESTAMP",
            Value::Date(_) => "DATE",
            Value::Time(_) => "TIME",
            Value::DateTime(_) => "DATETIME",
            Value::Geography(_) => "GEOGRAPHY",
            Value::Json(_) => "JSON",
            Value::Record(_) => "RECORD",
            Value::Array(_) => "ARRAY",
        }
    }

    /// Whether the value is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short JSON rendering for error messages.
    pub fn preview(&self) -> String {
        let mut s = self.to_json_string();
        if s.chars().count() > PREVIEW_CHARS {
            s = s.chars().take(PREVIEW_CHARS).collect::<String>() + "…";
        }
        s
    }

    /// The value as JSON text.
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn mismatch(&self, expected: FieldType, detail: Option<&'static str>) -> ValueError {
        ValueError { expected, got: self.kind(), preview: self.preview(), detail }
    }

    /// Converts a (possibly loose) value to the canonical value of a column type, borrowing when
    /// it already has that type. NULL is returned as is; arrays are the caller's business.
    ///
    /// | column | accepts |
    /// |---|---|
    /// | STRING | string; int, float, bool, NUMERIC, dates and times as their canonical text |
    /// | BYTES | bytes; a base64 string (standard or URL-safe, padding optional) |
    /// | INT64 | int; a float or decimal with no fractional part in range; a string of an integer |
    /// | FLOAT64 | float; int; decimal; a string of a number, `NaN`, `Infinity`, `-Infinity` |
    /// | NUMERIC / BIGNUMERIC | decimal, int, float, or a string of a number, within precision and scale (never rounded) |
    /// | BOOL | bool; `true`/`false`/`t`/`f`/`1`/`0` (any case); int 0 or 1 |
    /// | TIMESTAMP | timestamp; `YYYY-MM-DD[ T]HH:MM[:SS[.F]][zone]` (no zone = UTC); int or float seconds since 1970 |
    /// | DATE | date; `YYYY-MM-DD` |
    /// | TIME | time; `HH:MM[:SS[.F]]` |
    /// | DATETIME | datetime; date (midnight); `YYYY-MM-DD[( |T)HH:MM[:SS[.F]]]` |
    /// | GEOGRAPHY | geography; a WKT string |
    /// | JSON | JSON text as is; any other value as its JSON (a string becomes a JSON string) |
    /// | RECORD | record |
    pub fn coerce(&self, ty: FieldType) -> Result<Cow<'_, Value>, ValueError> {
        use Cow::{Borrowed, Owned};
        if self.is_null() {
            return Ok(Borrowed(self));
        }
        // Values that already have the column's type are borrowed as they are.
        match (ty, self) {
            (FieldType::String, Value::String(_))
            | (FieldType::Int64, Value::Int64(_))
            | (FieldType::Float64, Value::Float64(_))
            | (FieldType::Bool, Value::Bool(_))
            | (FieldType::Bytes, Value::Bytes(_))
            | (FieldType::Timestamp, Value::Timestamp(_))
            | (FieldType::Date, Value::Date(_))
            | (FieldType::Time, Value::Time(_))
            | (FieldType::DateTime, Value::DateTime(_))
            | (FieldType::Geography, Value::Geography(_))
            | (FieldType::Json, Value::Json(_))
            | (FieldType::Record, Value::Record(_)) => return Ok(Borrowed(self)),
            (FieldType::Numeric, Value::Numeric(d)) if d.fits_numeric() => return Ok(Borrowed(self)),
            (FieldType::BigNumeric, Value::BigNumeric(d)) if d.fits_bignumeric() => return Ok(Borrowed(self)),
            _ => {}
        }
        // Loose values (the shapes JSON has) follow the shared rules of `coerce_scalar`.
        if let Some(s) = self.as_scalar() {
            let mut bytes = Vec::new();
            return coerce_scalar(s, ty, &mut bytes).map(|c| Owned(c.into_value(ty, &bytes)));
        }
        let fail = |detail| Err(self.mismatch(ty, detail));
        match (ty, self) {
            (FieldType::String, Value::BigNumeric(d)) => Ok(Owned(Value::String(d.to_string()))),
            (FieldType::String, Value::Timestamp(v)) => Ok(Owned(Value::String(v.to_string()))),
            (FieldType::String, Value::Date(v)) => Ok(Owned(Value::String(v.to_string()))),
            (FieldType::String, Value::Time(v)) => Ok(Owned(Value::String(v.to_string()))),
            (FieldType::String, Value::DateTime(v)) => Ok(Owned(Value::String(v.to_string()))),
            (FieldType::String, Value::Geography(v) | Value::Json(v)) => Ok(Owned(Value::String(v.clone()))),
            (FieldType::Int64, Value::BigNumeric(d)) => {
                match (d.scale() == 0).then(|| d.as_str().parse::<i64>().ok()).flatten() {
                    Some(i) => Ok(Owned(Value::Int64(i))),
                    None => fail(Some("has a fractional part or is out of the INT64 range")),
                }
            }
            (FieldType::Float64, Value::BigNumeric(d)) => match d.as_str().parse::<f64>() {
                Ok(f) => Ok(Owned(Value::Float64(f))),
                Err(_) => fail(None),
            },
            (FieldType::Numeric | FieldType::BigNumeric, Value::BigNumeric(d)) => {
                let big = ty == FieldType::BigNumeric;
                if !(if big { d.fits_bignumeric() } else { d.fits_numeric() }) {
                    return fail(Some(if big {
                        "BIGNUMERIC holds 38 digits before and 38 after the point"
                    } else {
                        "NUMERIC holds 29 digits before and 9 after the point"
                    }));
                }
                let d = d.clone();
                Ok(Owned(if big { Value::BigNumeric(d) } else { Value::Numeric(d) }))
            }
            (FieldType::DateTime, Value::Date(d)) => {
                Ok(Owned(Value::DateTime(DateTime { date: *d, time: Time::MIDNIGHT })))
            }
            (FieldType::Json, Value::Bytes(_)) => fail(None),
            (FieldType::Json, other) => Ok(Owned(Value::Json(other.to_json_string()))),
            _ => fail(None),
        }
    }

    /// The value as a loose [`Scalar`] when it has one of JSON's scalar shapes (NUMERIC counts:
    /// it is what JSON integers beyond INT64 become).
    pub fn as_scalar(&self) -> Option<Scalar<'_>> {
        match self {
            Value::String(s) => Some(Scalar::Str(s)),
            Value::Int64(i) => Some(Scalar::Int(*i)),
            Value::Float64(f) => Some(Scalar::Float(*f)),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Numeric(d) => Some(Scalar::Decimal(d.as_str())),
            _ => None,
        }
    }

    /// Writes the value as JSON: TIMESTAMP/DATE/TIME/DATETIME as strings, BYTES as base64,
    /// NUMERIC as a bare number, JSON columns inline, non-finite floats as strings.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int64(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float64(f) if f.is_finite() => out.push_str(&float_text(*f)),
            Value::Float64(f) => write_json_str(out, &float_text(*f)),
            Value::Numeric(d) | Value::BigNumeric(d) => out.push_str(d.as_str()),
            Value::String(s) | Value::Geography(s) => write_json_str(out, s),
            Value::Bytes(b) => write_json_str(out, &base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Timestamp(t) => write_json_str(out, &t.to_string()),
            Value::Date(d) => write_json_str(out, &d.to_string()),
            Value::Time(t) => write_json_str(out, &t.to_string()),
            Value::DateTime(d) => write_json_str(out, &d.to_string()),
            Value::Json(j) => out.push_str(j),
            Value::Record(r) => Self::write_record_json(r, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
        }
    }

    fn write_record_json(r: &Record, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in r.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(out, k);
            out.push(':');
            v.write_json(out);
        }
        out.push('}');
    }
}

/// Text of a float the way BigQuery prints it: shortest round-trip digits, `NaN`, `Infinity`.
fn float_text(f: f64) -> String {
    let mut s = String::new();
    float_text_into(f, &mut s);
    s
}

/// [`float_text`] into any writer (a stack buffer on the encoding path).
pub(crate) fn float_text_into(f: f64, out: &mut impl std::fmt::Write) {
    let _ = if f.is_nan() {
        out.write_str("NaN")
    } else if f.is_infinite() {
        out.write_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else if f == f.trunc() && f.abs() < 1e16 {
        write!(out, "{f:.0}")
    } else if f.abs() >= 1e16 || f.abs() < 1e-5 {
        // Shortest round-trip digits in exponent form, with an explicit exponent sign.
        let mut e = crate::scalar::ShortText::new();
        let _ = write!(e, "{f:e}");
        match e.as_str().split_once('e') {
            Some((m, x)) if !x.starts_with('-') => write!(out, "{m}e+{x}"),
            _ => out.write_str(e.as_str()),
        }
    } else {
        write!(out, "{f}")
    };
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Value, ty: FieldType) -> Value {
        match v.coerce(ty) {
            Ok(c) => c.into_owned(),
            Err(e) => panic!("{ty}: {e}"),
        }
    }

    #[test]
    fn coerces_like_bq_load() {
        assert_eq!(ok("42".into(), FieldType::Int64), Value::Int64(42));
        assert_eq!(ok(Value::Float64(3.0), FieldType::Int64), Value::Int64(3));
        assert_eq!(ok(Value::Int64(7), FieldType::String), Value::String("7".into()));
        assert_eq!(ok("T".into(), FieldType::Bool), Value::Bool(true));
        assert_eq!(ok("aGk=".into(), FieldType::Bytes), Value::Bytes(b"hi".to_vec()));
        assert_eq!(
            ok(Value::Int64(1), FieldType::Timestamp),
            Value::Timestamp(Timestamp::from_micros(1_000_000).unwrap_or_else(|| panic!()))
        );
        assert_eq!(ok("x".into(), FieldType::Json), Value::Json("\"x\"".into()));
        assert_eq!(ok(Value::Float64(1.5), FieldType::Numeric).to_json_string(), "1.5");
        assert_eq!(ok(Value::Float64(1e300), FieldType::String), Value::String("1e+300".into()));
        assert_eq!(ok(Value::Float64(-2.5e-7), FieldType::String), Value::String("-2.5e-7".into()));
        assert_eq!(ok(Value::Float64(0.25), FieldType::String), Value::String("0.25".into()));
    }

    #[test]
    fn refuses_lossy_conversions_naming_the_value() {
        let e = Value::String("soon".into()).coerce(FieldType::Timestamp).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("expected TIMESTAMP, got STRING (\"soon\")"), "{msg}");
        assert!(Value::Float64(1.5).coerce(FieldType::Int64).is_err());
        assert!(Value::String("1.0000000001".into()).coerce(FieldType::Numeric).is_err());
        assert!(Value::Record(Record::new()).coerce(FieldType::String).is_err());
        assert!(Value::Int64(2).coerce(FieldType::Bool).is_err());
    }

    #[test]
    fn json_text_escapes_control_characters() {
        let r = Record::new().with("s", "a\"b\u{1}\n").with("n", Value::Null);
        assert_eq!(r.to_json_string(), r#"{"s":"a\"b\u0001\n","n":null}"#);
    }
}
