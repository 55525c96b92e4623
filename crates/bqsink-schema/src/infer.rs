//! Type inference: the BigQuery schema that holds a set of records, in two modes.
//!
//! - [`InferMode::Generic`] keeps the shape of the data: objects become RECORD columns, arrays
//!   REPEATED columns.
//! - [`InferMode::Segment`] follows Segment's warehouses: nested objects are flattened into
//!   `parent_child` columns, arrays are stored as their JSON text in a STRING column, and names
//!   are snake_cased.
//!
//! Inference works on *normalised* records: [`normalize_record`] renames keys to legal column
//! names and reshapes values (dropping nulls, flattening, stringifying) exactly the way
//! [`infer_schema`] assumes, so a normalised record fits the inferred schema. The rules are in one
//! table in the crate README.

use std::fmt;

use bqsink_core::{Field, FieldType, Mode, Record, Schema, Timestamp, Value};

use crate::evolution::is_widening;
use crate::naming::{sanitize_column_name, snake_case, NameSet};

/// How objects and arrays become columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InferMode {
    /// Objects → RECORD, arrays → REPEATED; keys sanitised as they are.
    #[default]
    Generic,
    /// Objects flattened with `_`, arrays → STRING holding JSON text; keys snake_cased.
    Segment,
}

/// Whether a string is an ISO-8601 / RFC 3339 date-time: a date, `T` (or a space), a time, and an
/// optional zone (none means UTC). A date alone is not a date-time and stays a STRING.
pub fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 16
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && Timestamp::parse(s).is_some()
}

/// The type a string is inferred as: TIMESTAMP for a date-time, else STRING.
pub fn string_type(s: &str) -> FieldType {
    if is_date_time(s) {
        FieldType::Timestamp
    } else {
        FieldType::String
    }
}

/// The column type of one scalar value; `None` for NULL, records and arrays.
pub fn scalar_type(value: &Value) -> Option<FieldType> {
    Some(match value {
        Value::Null | Value::Record(_) | Value::Array(_) => return None,
        Value::Bool(_) => FieldType::Bool,
        Value::Int64(_) => FieldType::Int64,
        Value::Float64(_) => FieldType::Float64,
        Value::Numeric(d) if d.fits_numeric() && d.scale() == 0 => FieldType::Numeric,
        Value::Numeric(_) => FieldType::Float64,
        Value::BigNumeric(_) => FieldType::BigNumeric,
        Value::String(s) => string_type(s),
        Value::Bytes(_) => FieldType::Bytes,
        Value::Timestamp(_) => FieldType::Timestamp,
        Value::Date(_) => FieldType::Date,
        Value::Time(_) => FieldType::Time,
        Value::DateTime(_) => FieldType::DateTime,
        Value::Geography(_) => FieldType::Geography,
        Value::Json(_) => FieldType::Json,
        _ => return None,
    })
}

/// How an array is stored in the generic mode, decided from its non-null elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrayShape {
    /// No non-null element: no column (like NULL).
    Empty,
    /// Only scalars: a REPEATED scalar column.
    Scalars,
    /// Only objects: a REPEATED RECORD column.
    Records,
    /// An array inside the array, or objects mixed with scalars: BigQuery has no such column, so
    /// the whole array is one JSON value.
    Json,
}

/// The shape of an array (see [`ArrayShape`]).
pub fn array_shape(items: &[Value]) -> ArrayShape {
    let (mut scalars, mut records) = (false, false);
    for item in items {
        match item {
            Value::Null => {}
            Value::Array(_) => return ArrayShape::Json,
            Value::Record(_) => records = true,
            _ => scalars = true,
        }
    }
    match (scalars, records) {
        (false, false) => ArrayShape::Empty,
        (true, false) => ArrayShape::Scalars,
        (false, true) => ArrayShape::Records,
        (true, true) => ArrayShape::Json,
    }
}

/// The type two observations of one column share, if any (the merge rule of the README table).
///
/// Numeric types widen the way BigQuery widens a column (INT64 → NUMERIC / BIGNUMERIC / FLOAT64,
/// NUMERIC → BIGNUMERIC / FLOAT64), in either order; a TIMESTAMP and a STRING (both came from
/// strings) share STRING; JSON holds anything. Everything else does not merge.
pub fn merge_types(a: FieldType, b: FieldType) -> Option<FieldType> {
    use FieldType::*;
    if a == b {
        Some(a)
    } else if is_widening(a, b) {
        Some(b)
    } else if is_widening(b, a) {
        Some(a)
    } else {
        match (a, b) {
            (Timestamp, String) | (String, Timestamp) => Some(String),
            (Json, _) | (_, Json) => Some(Json),
            _ => None,
        }
    }
}

/// Two observations of one column that do not merge; the first type is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferConflict {
    /// Dotted path of the column.
    pub column: String,
    /// The type kept (`INT64`, `REPEATED STRING`, …).
    pub kept: String,
    /// The type found later.
    pub found: String,
    /// Index (0-based) of the record where it was found.
    pub record: usize,
}

impl fmt::Display for InferConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: kept {}, found {} in record {}", self.column, self.kept, self.found, self.record)
    }
}

/// A column's type and mode as text for messages: `INT64`, `REPEATED STRING`, `REQUIRED DATE`.
pub fn describe(field_type: FieldType, mode: Mode) -> String {
    match mode {
        Mode::Nullable => field_type.name().to_owned(),
        other => format!("{other} {field_type}"),
    }
}

/// Rewrites a record into the shape the inferred schema describes (see the module docs): keys
/// sanitised (two keys of one object that sanitise alike, ignoring case, get `_2`, `_3`, … in
/// order of appearance), NULLs dropped; in the generic mode NULL elements of arrays are dropped
/// and arrays of arrays or of mixed objects and scalars become one JSON value; in the Segment mode
/// objects are flattened and arrays become their JSON text.
pub fn normalize_record(record: &Record, mode: InferMode) -> Record {
    let mut out = Record::with_capacity(record.len());
    match mode {
        InferMode::Generic => {
            let mut names = NameSet::new();
            for (key, value) in record.iter() {
                if let Some(v) = normalize_generic(value) {
                    let column = names.column_for(key, sanitize_column_name(key));
                    out.push(column, v);
                }
            }
        }
        InferMode::Segment => {
            let mut names = NameSet::new();
            flatten_into(record, "", &mut names, &mut out);
        }
    }
    out
}

/// [`normalize_record`] of a JSON object; any other JSON value is refused with its kind.
pub fn normalize_json(value: &serde_json::Value, mode: InferMode) -> Result<Record, &'static str> {
    match Value::from(value.clone()) {
        Value::Record(r) => Ok(normalize_record(&r, mode)),
        other => Err(other.kind()),
    }
}

fn normalize_generic(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Record(r) => {
            let inner = normalize_record(r, InferMode::Generic);
            (!inner.is_empty()).then_some(Value::Record(inner))
        }
        Value::Array(items) => match array_shape(items) {
            ArrayShape::Empty => None,
            ArrayShape::Json => Some(Value::Json(value.to_json_string())),
            ArrayShape::Scalars => Some(Value::Array(items.iter().filter(|v| !v.is_null()).cloned().collect())),
            ArrayShape::Records => {
                // Objects with no non-null value add nothing (as an empty object alone adds no column).
                let records: Vec<Value> = items
                    .iter()
                    .filter_map(|v| match v {
                        Value::Record(r) => Some(normalize_record(r, InferMode::Generic)),
                        _ => None,
                    })
                    .filter(|r| !r.is_empty())
                    .map(Value::Record)
                    .collect();
                (!records.is_empty()).then_some(Value::Array(records))
            }
        },
        other => Some(other.clone()),
    }
}

/// The flattened key of `key` inside the object at `prefix` (`""` at the top): its snake_case,
/// joined to the prefix with `_`. The column is its [`sanitize_column_name`].
pub fn flattened_key(prefix: &str, key: &str) -> String {
    let snake = snake_case(key);
    if prefix.is_empty() {
        snake
    } else {
        format!("{prefix}_{snake}")
    }
}

/// The column type a scalar read from input infers, as [`scalar_type`] of its loose value.
pub fn scalar_type_of(s: bqsink_core::Scalar<'_>) -> Option<FieldType> {
    use bqsink_core::Scalar;
    Some(match s {
        Scalar::Str(s) => string_type(s),
        Scalar::Int(_) => FieldType::Int64,
        Scalar::Float(_) => FieldType::Float64,
        Scalar::Bool(_) => FieldType::Bool,
        Scalar::Decimal(_) => return scalar_type(&s.to_value()),
    })
}

/// Segment's flattening: `{"a":{"bC":1}}` → `a_b_c`; the NameSet key is the dotted original path.
fn flatten_into(record: &Record, prefix: &str, names: &mut NameSet, out: &mut Record) {
    for (key, value) in record.iter() {
        let joined = flattened_key(prefix, key);
        match value {
            Value::Null => {}
            Value::Record(inner) => flatten_into(inner, &joined, names, out),
            Value::Array(items) if items.is_empty() => {}
            Value::Array(_) => {
                let column = names.column_for(&joined, sanitize_column_name(&joined));
                out.push(column, Value::String(value.to_json_string()));
            }
            other => {
                let column = names.column_for(&joined, sanitize_column_name(&joined));
                out.push(column, other.clone());
            }
        }
    }
}

/// The column a value of an already normalised record needs, or `None` when it creates none
/// (NULL, an empty record or array). Elements of an array of objects that do not merge keep the
/// first type (see [`SchemaInference`] for the report).
pub fn infer_field(name: &str, value: &Value) -> Option<Field> {
    infer_field_reporting(name, value, "", 0, &mut Vec::new())
}

fn infer_field_reporting(
    name: &str,
    value: &Value,
    prefix: &str,
    record: usize,
    out: &mut Vec<InferConflict>,
) -> Option<Field> {
    match value {
        Value::Null => None,
        Value::Record(r) => {
            let path = join_path(prefix, name);
            let mut fields = Vec::new();
            for (k, v) in r.iter() {
                if let Some(f) = infer_field_reporting(k, v, &path, record, out) {
                    merge_fields(&mut fields, vec![f], &path, record, out);
                }
            }
            (!fields.is_empty()).then(|| Field::record(name, fields))
        }
        Value::Array(items) => match array_shape(items) {
            ArrayShape::Empty => None,
            ArrayShape::Json => Some(Field::new(name, FieldType::Json)),
            ArrayShape::Records => {
                let path = join_path(prefix, name);
                let mut fields: Vec<Field> = Vec::new();
                for item in items {
                    if let Value::Record(r) = item {
                        for (k, v) in r.iter() {
                            if let Some(f) = infer_field_reporting(k, v, &path, record, out) {
                                merge_fields(&mut fields, vec![f], &path, record, out);
                            }
                        }
                    }
                }
                (!fields.is_empty()).then(|| Field::record(name, fields).repeated())
            }
            ArrayShape::Scalars => {
                let mut ty: Option<FieldType> = None;
                for t in items.iter().filter_map(scalar_type) {
                    ty = Some(match ty {
                        None => t,
                        // Scalars that share no type are all written as text.
                        Some(prev) => merge_types(prev, t).unwrap_or(FieldType::String),
                    });
                }
                ty.map(|t| Field::new(name, t).repeated())
            }
        },
        other => scalar_type(other).map(|t| Field::new(name, t)),
    }
}

fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The columns of one normalised record (NULLs create none).
pub fn infer_fields(record: &Record) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::with_capacity(record.len());
    let mut conflicts = Vec::new();
    for (k, v) in record.iter() {
        if let Some(f) = infer_field_reporting(k, v, "", 0, &mut conflicts) {
            merge_fields(&mut fields, vec![f], "", 0, &mut conflicts);
        }
    }
    fields
}

/// Merges newly observed columns into `into`: new names are appended, known ones merged by
/// [`merge_types`]; what does not merge keeps the first type and is reported.
fn merge_fields(into: &mut Vec<Field>, new: Vec<Field>, prefix: &str, record: usize, out: &mut Vec<InferConflict>) {
    for field in new {
        let Some(existing) = into.iter_mut().find(|f| f.name.eq_ignore_ascii_case(&field.name)) else {
            into.push(field);
            continue;
        };
        let path = join_path(prefix, &existing.name);
        if existing.field_type == FieldType::Json || field.field_type == FieldType::Json {
            existing.field_type = FieldType::Json;
            existing.mode = Mode::Nullable;
            existing.fields.clear();
            continue;
        }
        let conflict = |out: &mut Vec<InferConflict>, existing: &Field| {
            out.push(InferConflict {
                column: path.clone(),
                kept: describe(existing.field_type, existing.mode),
                found: describe(field.field_type, field.mode),
                record,
            })
        };
        if existing.mode != field.mode {
            conflict(out, existing);
            continue;
        }
        match merge_types(existing.field_type, field.field_type) {
            Some(FieldType::Record) => {
                let sub = field.fields.clone();
                merge_fields(&mut existing.fields, sub, &path, record, out);
            }
            Some(t) => existing.field_type = t,
            None => conflict(out, existing),
        }
    }
}

/// What [`infer_schema`] found: the schema and the observations that did not fit it.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Inferred {
    /// Columns in order of first appearance; empty when no record had a non-null value.
    pub schema: Schema,
    /// Columns seen with types that do not merge (the first type is kept).
    pub conflicts: Vec<InferConflict>,
    /// Records observed.
    pub records: usize,
}

/// Schema inference over many records, one at a time (for inputs read as a stream).
#[derive(Clone, Debug, Default)]
pub struct SchemaInference {
    mode: InferMode,
    fields: Vec<Field>,
    conflicts: Vec<InferConflict>,
    records: usize,
}

impl SchemaInference {
    /// An inference in this mode, having seen nothing.
    pub fn new(mode: InferMode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// Observes one record as it comes from the input (it is normalised first).
    pub fn observe(&mut self, record: &Record) {
        let normalised = normalize_record(record, self.mode);
        self.observe_normalized(&normalised);
    }

    /// Observes one record already normalised in this mode (e.g. a Segment row).
    pub fn observe_normalized(&mut self, record: &Record) {
        for (k, v) in record.iter() {
            if let Some(f) = infer_field_reporting(k, v, "", self.records, &mut self.conflicts) {
                merge_fields(&mut self.fields, vec![f], "", self.records, &mut self.conflicts);
            }
        }
        self.records += 1;
    }

    /// Observes one scalar column of record number `record` (0-based) without building the
    /// record: what a flattened Segment row is made of. Records observed this way are counted
    /// with [`SchemaInference::add_records`].
    pub fn observe_column(&mut self, name: &str, field_type: FieldType, record: usize) {
        let field = Field::new(name, field_type);
        merge_fields(&mut self.fields, vec![field], "", record, &mut self.conflicts);
    }

    /// Counts `n` records observed column by column.
    pub fn add_records(&mut self, n: usize) {
        self.records += n;
    }

    /// Records observed so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Observes one JSON value; anything but an object is reported as a conflict of the row.
    pub fn observe_json(&mut self, value: &serde_json::Value) {
        match normalize_json(value, self.mode) {
            Ok(r) => self.observe_normalized(&r),
            Err(kind) => {
                self.conflicts.push(InferConflict {
                    column: String::new(),
                    kept: "RECORD".into(),
                    found: kind.into(),
                    record: self.records,
                });
                self.records += 1;
            }
        }
    }

    /// The schema so far.
    pub fn schema(&self) -> Schema {
        Schema::new(self.fields.clone())
    }

    /// The result.
    pub fn finish(self) -> Inferred {
        Inferred { schema: Schema::new(self.fields), conflicts: self.conflicts, records: self.records }
    }
}

/// The schema holding all `records` (see the crate README for the rules).
pub fn infer_schema<'a>(records: impl IntoIterator<Item = &'a Record>, mode: InferMode) -> Inferred {
    let mut inference = SchemaInference::new(mode);
    for r in records {
        inference.observe(r);
    }
    inference.finish()
}

/// [`infer_schema`] over JSON objects.
pub fn infer_schema_json<'a>(values: impl IntoIterator<Item = &'a serde_json::Value>, mode: InferMode) -> Inferred {
    let mut inference = SchemaInference::new(mode);
    for v in values {
        inference.observe_json(v);
    }
    inference.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn infer(values: &[serde_json::Value], mode: InferMode) -> Inferred {
        infer_schema_json(values.iter(), mode)
    }

    fn ty(schema: &Schema, name: &str) -> Option<(FieldType, Mode)> {
        schema.field(name).map(|f| (f.field_type, f.mode))
    }

    #[test]
    fn scalars_follow_the_table() {
        let r = infer(
            &[json!({
                "b": true, "i": 42, "big": 18446744073709551615u64, "f": 1.5, "ts": "2024-05-01T10:00:00Z",
                "ts2": "2024-05-01 10:00:00.123+02:00", "day": "2024-05-01", "s": "hello", "n": null,
            })],
            InferMode::Generic,
        );
        let s = &r.schema;
        assert_eq!(ty(s, "b"), Some((FieldType::Bool, Mode::Nullable)));
        assert_eq!(ty(s, "i"), Some((FieldType::Int64, Mode::Nullable)));
        assert_eq!(ty(s, "big"), Some((FieldType::Numeric, Mode::Nullable)));
        assert_eq!(ty(s, "f"), Some((FieldType::Float64, Mode::Nullable)));
        assert_eq!(ty(s, "ts"), Some((FieldType::Timestamp, Mode::Nullable)));
        assert_eq!(ty(s, "ts2"), Some((FieldType::Timestamp, Mode::Nullable)));
        assert_eq!(ty(s, "day"), Some((FieldType::String, Mode::Nullable)));
        assert_eq!(ty(s, "s"), Some((FieldType::String, Mode::Nullable)));
        assert_eq!(s.field("n"), None, "a null never creates a column");
        assert!(r.conflicts.is_empty());
    }

    #[test]
    fn numbers_beyond_numeric_are_float() {
        let huge = Value::Numeric(bqsink_core::Decimal::parse(&"9".repeat(35)).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(scalar_type(&huge), Some(FieldType::Float64));
        let frac = Value::Numeric(bqsink_core::Decimal::parse("1.25").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(scalar_type(&frac), Some(FieldType::Float64));
        assert_eq!(scalar_type(&Value::Float64(1e300)), Some(FieldType::Float64));
        assert!(!is_date_time("2024-13-01T00:00:00Z"));
        assert!(!is_date_time("20240501T000000Z"));
        assert!(is_date_time("2024-05-01T00:00"));
    }

    #[test]
    fn generic_objects_are_records_and_arrays_repeated() {
        let r = infer(
            &[json!({
                "addr": {"zip": "123", "geo": {"lat": 1.5}},
                "tags": ["a", null, "b"],
                "nums": [1, 2.5],
                "mixed": [1, "x", true],
                "items": [{"sku": "a"}, {"qty": 2}, null],
                "nested": [[1, 2], [3]],
                "objs_and_scalars": [{"a": 1}, 2],
                "empty": [],
                "nulls": [null],
                "empty_obj": {},
            })],
            InferMode::Generic,
        );
        let s = &r.schema;
        let addr = s.field("addr").unwrap_or_else(|| panic!("addr"));
        assert_eq!(addr.field_type, FieldType::Record);
        let geo = addr.fields.iter().find(|f| f.name == "geo").map(|g| g.fields[0].field_type);
        assert_eq!(geo, Some(FieldType::Float64));
        assert_eq!(ty(s, "tags"), Some((FieldType::String, Mode::Repeated)));
        assert_eq!(ty(s, "nums"), Some((FieldType::Float64, Mode::Repeated)));
        assert_eq!(ty(s, "mixed"), Some((FieldType::String, Mode::Repeated)));
        let items = s.field("items").unwrap_or_else(|| panic!("items"));
        assert_eq!((items.field_type, items.mode, items.fields.len()), (FieldType::Record, Mode::Repeated, 2));
        assert_eq!(ty(s, "nested"), Some((FieldType::Json, Mode::Nullable)));
        assert_eq!(ty(s, "objs_and_scalars"), Some((FieldType::Json, Mode::Nullable)));
        for absent in ["empty", "nulls", "empty_obj"] {
            assert_eq!(s.field(absent), None, "{absent}");
        }
        assert!(s.validate().is_ok());
    }

    #[test]
    fn normalised_records_drop_nulls_and_rename_keys() {
        let raw = Record::from_json_str(r#"{"first name":"a","first-name":"b","x":null,"t":[1,null,2],"n":[[1]]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let n = normalize_record(&raw, InferMode::Generic);
        let keys: Vec<&str> = n.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["first_name", "first_name_2", "t", "n"]);
        assert_eq!(n.get("t"), Some(&Value::Array(vec![Value::Int64(1), Value::Int64(2)])));
        assert_eq!(n.get("n"), Some(&Value::Json("[[1]]".into())));
    }

    #[test]
    fn segment_mode_flattens_and_stringifies() {
        let r = infer(
            &[json!({
                "productId": 7,
                "Shipping Address": {"zipCode": "123", "geo": {"lat": 1.5}},
                "tags": ["a", "b"],
                "empty": [],
            })],
            InferMode::Segment,
        );
        let names: Vec<&str> = r.schema.fields.iter().map(|f| f.name.as_str()).collect();
        // serde_json objects iterate in key order.
        assert_eq!(names, ["shipping_address_geo_lat", "shipping_address_zip_code", "product_id", "tags"]);
        assert_eq!(ty(&r.schema, "tags"), Some((FieldType::String, Mode::Nullable)));
        let raw = Record::from_json_str(r#"{"tags":["a",1]}"#).unwrap_or_else(|e| panic!("{e}"));
        let n = normalize_record(&raw, InferMode::Segment);
        assert_eq!(n.get("tags"), Some(&Value::String(r#"["a",1]"#.into())));
    }

    #[test]
    fn merging_widens_and_reports_conflicts() {
        let r = infer(
            &[
                json!({"n": 1, "f": 1, "when": "2024-01-01T00:00:00Z", "flag": true, "r": {"a": 1}}),
                json!({"n": 2.5, "f": 18446744073709551615u64, "when": "later", "flag": "yes", "r": {"a": 2.0, "b": "x"}}),
                json!({"n": 3, "f": 1.5, "r": 5}),
            ],
            InferMode::Generic,
        );
        let s = &r.schema;
        assert_eq!(ty(s, "n"), Some((FieldType::Float64, Mode::Nullable)));
        assert_eq!(ty(s, "f"), Some((FieldType::Float64, Mode::Nullable)));
        assert_eq!(ty(s, "when"), Some((FieldType::String, Mode::Nullable)));
        assert_eq!(ty(s, "flag"), Some((FieldType::Bool, Mode::Nullable)), "a true conflict keeps the first type");
        let rec = s.field("r").unwrap_or_else(|| panic!("r"));
        assert_eq!(rec.fields.len(), 2);
        assert_eq!(rec.fields[0].field_type, FieldType::Float64);
        let text: Vec<String> = r.conflicts.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["flag: kept BOOL, found STRING in record 1", "r: kept RECORD, found INT64 in record 2"]);
        assert_eq!(r.records, 3);
    }

    #[test]
    fn repeated_against_nullable_is_a_conflict() {
        let r = infer(&[json!({"a": 1}), json!({"a": [1, 2]}), json!("text")], InferMode::Generic);
        assert_eq!(ty(&r.schema, "a"), Some((FieldType::Int64, Mode::Nullable)));
        assert_eq!(r.conflicts.len(), 2);
        assert_eq!(r.conflicts[0].found, "REPEATED INT64");
        assert_eq!(r.conflicts[1].to_string(), ": kept RECORD, found STRING in record 2");
    }

    #[test]
    fn merge_types_is_symmetric_where_it_widens() {
        for a in FieldType::ALL {
            for b in FieldType::ALL {
                assert_eq!(merge_types(a, b), merge_types(b, a), "{a} {b}");
            }
        }
        assert_eq!(merge_types(FieldType::Int64, FieldType::Float64), Some(FieldType::Float64));
        assert_eq!(merge_types(FieldType::Int64, FieldType::Numeric), Some(FieldType::Numeric));
        assert_eq!(merge_types(FieldType::Numeric, FieldType::Float64), Some(FieldType::Float64));
        assert_eq!(merge_types(FieldType::Bool, FieldType::String), None);
        assert_eq!(merge_types(FieldType::BigNumeric, FieldType::Float64), None);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            "[a-z ]{0,8}".prop_map(serde_json::Value::from),
            Just(json!("2024-01-02T03:04:05Z")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-zA-Z -]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn inferred_schemas_are_valid_and_hold_their_records(
            objs in prop::collection::vec(prop::collection::btree_map("[a-zA-Z _-]{1,6}", json_value(), 0..5), 1..4),
            segment in any::<bool>(),
        ) {
            let mode = if segment { InferMode::Segment } else { InferMode::Generic };
            let values: Vec<serde_json::Value> =
                objs.into_iter().map(|m| serde_json::Value::Object(m.into_iter().collect())).collect();
            let r = infer(&values, mode);
            if !r.schema.fields.is_empty() {
                prop_assert!(r.schema.validate().is_ok(), "{:?}", r.schema);
            }
            if r.conflicts.is_empty() {
                for v in &values {
                    let rec = normalize_json(v, mode).map_err(TestCaseError::fail)?;
                    let decision = crate::reconcile::reconcile("t", &r.schema, &rec);
                    prop_assert!(matches!(decision, crate::reconcile::Decision::Fits), "{:?} {:?}", rec, decision);
                }
            }
            if segment {
                prop_assert!(r.schema.fields.iter().all(|f| f.field_type != FieldType::Record && f.mode != Mode::Repeated));
            }
        }
    }
}
