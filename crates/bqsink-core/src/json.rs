//! JSON in and out: `serde_json::Value` and JSON text into loose [`Value`]s, any `Serialize`
//! type into a [`Record`], and [`Value`] / [`Record`] back out as JSON.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

use crate::decimal::Decimal;
use crate::error::RowError;
use crate::value::{Record, Value};

impl From<serde_json::Value> for Value {
    /// Loose conversion: integers that fit i64 → INT64, larger integers → NUMERIC, other
    /// numbers → FLOAT64, objects → RECORD, arrays → ARRAY.
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => number_value(&n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Record(o.into_iter().map(|(k, v)| (k.into(), Value::from(v))).collect())
            }
        }
    }
}

fn number_value(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int64(i)
    } else if let Some(u) = n.as_u64() {
        Value::Numeric(Decimal::from_i64(0)).with_u64(u)
    } else {
        Value::Float64(n.as_f64().unwrap_or(f64::NAN))
    }
}

impl Value {
    fn with_u64(self, u: u64) -> Value {
        match Decimal::parse(&u.to_string()) {
            Ok(d) => Value::Numeric(d),
            Err(_) => self,
        }
    }
}

impl Record {
    /// A record from one JSON object's text (one line of newline-delimited JSON).
    pub fn from_json_str(text: &str) -> Result<Record, RowError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Record(r)) => Ok(r),
            Ok(other) => Err(RowError::new("", format!("expected a JSON object, got {}", other.kind()))),
            Err(e) => Err(RowError::new("", format!("invalid JSON: {e}"))),
        }
    }

    /// A record from any serialisable value whose JSON form is an object (a struct or a map).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Record, RowError> {
        match serde_json::to_value(value) {
            Ok(json) => match Value::from(json) {
                Value::Record(r) => Ok(r),
                other => Err(RowError::new("", format!("expected a struct or map, got {}", other.kind()))),
            },
            Err(e) => Err(RowError::new("", format!("cannot serialise: {e}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    /// Reads JSON straight into loose values, without an intermediate `serde_json::Value`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int64(i),
            Err(_) => Value::Null.with_u64(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut r = Record::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        let mut index = HashMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let v: Value = map.next_value()?;
            // Later duplicates win, as in serde_json's own maps.
            r.insert_indexed(k, v, &mut index);
        }
        Ok(Value::Record(r))
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Record(r) => Ok(r),
            other => Err(de::Error::custom(format!("expected a JSON object, got {}", other.kind()))),
        }
    }
}

impl Serialize for Value {
    /// The same JSON as [`Value::write_json`].
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int64(i) => s.serialize_i64(*i),
            Value::Float64(f) if f.is_finite() => s.serialize_f64(*f),
            Value::String(v) | Value::Geography(v) => s.serialize_str(v),
            Value::Record(r) => {
                let mut m = s.serialize_map(Some(r.len()))?;
                for (k, v) in r.iter() {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    q.serialize_element(v)?;
                }
                q.end()
            }
            Value::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => v.serialize(s),
                Err(_) => s.serialize_str(text),
            },
            other => {
                // Decimals, dates, bytes and non-finite floats: their JSON text, as a string.
                let text = other.to_json_string();
                s.serialize_str(text.trim_matches('"'))
            }
        }
    }
}

/// The civil types and decimals serialise as their canonical text (what a column of their type
/// reads back to the same value), so a `#[derive(Serialize)]` row can hold them.
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serialize_as_text!(crate::civil::Timestamp, crate::civil::Date, crate::civil::Time, crate::civil::DateTime);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_text_loosely() {
        let r = Record::from_json_str(r#"{"a":1,"b":18446744073709551615,"c":1.5,"d":[true,null],"e":{"f":"x"}}"#);
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.get("a"), Some(&Value::Int64(1)));
        assert_eq!(r.get("b").map(Value::kind), Some("NUMERIC"));
        assert_eq!(r.get("c"), Some(&Value::Float64(1.5)));
        assert_eq!(r.get("d"), Some(&Value::Array(vec![Value::Bool(true), Value::Null])));
        assert_eq!(r.get("E").map(Value::kind), Some("RECORD"));
        assert!(Record::from_json_str("[1]").is_err());
        assert!(Record::from_json_str("{").is_err());
    }

    /// Found by fuzzing with a time limit: an object's keys were each looked for among the keys
    /// before them, so 40,000 keys took over a minute.
    #[test]
    fn an_object_with_many_keys_reads_in_linear_time() {
        let keys = 200_000;
        let text = format!(
            "{{{},\"k7\":\"later\",\"a\":1,\"a\":2}}",
            (0..keys).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",")
        );
        let started = std::time::Instant::now();
        let r = Record::from_json_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        assert_eq!(r.len(), keys + 1);
        // Later duplicates still win, in the place of the first.
        assert_eq!(r.entries()[7], ("k7".into(), Value::String("later".into())));
        assert_eq!(r.get("a"), Some(&Value::Int64(2)));
        assert_eq!(r.entries()[keys].0, "a");
        let small = Record::from_json_str(r#"{"x":1,"y":2,"x":3}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.entries(), &[("x".into(), Value::Int64(3)), ("y".into(), Value::Int64(2))]);
    }

    #[test]
    fn serialize_types_become_records() {
        #[derive(serde::Serialize)]
        struct Event<'a> {
            id: u64,
            name: &'a str,
            tags: Vec<&'a str>,
        }
        let r = Record::from_serialize(&Event { id: 7, name: "x", tags: vec!["a"] });
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.to_json_string(), r#"{"id":7,"name":"x","tags":["a"]}"#);
        assert!(Record::from_serialize(&5).is_err());
    }

    #[test]
    fn civil_types_serialize_as_text_their_columns_read() {
        use crate::civil::{Date, DateTime, Time, Timestamp};
        let at = Timestamp::from_micros(1_700_000_000_000_001);
        let day = Date::from_days(19_700);
        let (Some(at), Some(day)) = (at, day) else { panic!("in range") };
        let time = Time::parse("12:34:56.5");
        let dt = DateTime::parse("2024-05-01 01:02:03");
        let (Some(time), Some(dt)) = (time, dt) else { panic!("valid") };
        let amount = Decimal::parse("1234.560");
        let Ok(amount) = amount else { panic!("valid") };
        let text = serde_json::to_string(&(at, day, time, dt, &amount)).unwrap_or_default();
        let back: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back.len(), 5, "{text}");
        assert_eq!(Timestamp::parse(&back[0]), Some(at));
        assert_eq!(Date::parse(&back[1]), Some(day));
        assert_eq!(Time::parse(&back[2]), Some(time));
        assert_eq!(DateTime::parse(&back[3]), Some(dt));
        assert_eq!(back[4], amount.as_str());
    }
}
