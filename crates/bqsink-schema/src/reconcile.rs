//! Deciding what one record needs from its table: nothing, a legal schema change, or the
//! dead-letter queue.
//!
//! [`reconcile`] answers [`Decision::Fits`] when every value converts losslessly to its column
//! (see [`value_fits`]), [`Decision::Evolve`] with the schema to alter the table to when the
//! record brings new columns (NULLABLE or REPEATED, also inside RECORDs) or needs a widening
//! BigQuery performs in place, and [`Decision::Conflict`] otherwise. An evolution is always one
//! that [`plan_alter`] accepts. The common case — the record fits — walks the record once and
//! allocates nothing (conversions into NUMERIC, BYTES or from numbers to decimals parse inside
//! `Value::coerce` and may allocate).
//!
//! [`reconcile_schema`] does the same for a schema inferred over a whole finite input, so a
//! table is changed at most once per load.

use std::fmt;

use bqsink_core::schema::validate_column_name;
use bqsink_core::{Field, FieldType, Mode, Record, Schema, Timestamp, Value};

use crate::evolution::{is_widening, plan_alter, Change, Refusal};
use crate::infer::{describe, infer_field, merge_types, scalar_type};

/// Longest value preview in a conflict, in characters.
pub const PREVIEW_CHARS: usize = 40;

/// What a record needs from its table.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Every value converts losslessly to its column: write it as it is.
    Fits,
    /// The table must first become this schema (what `plan_alter` produced; send it as is).
    Evolve(Schema),
    /// The record cannot be written; each entry names a column.
    Conflict(Vec<Conflict>),
}

/// A value (or a column of an inferred schema) that its table cannot take.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conflict {
    /// The table.
    pub table: String,
    /// Dotted path of the column.
    pub column: String,
    /// What the column is (`INT64`, `REPEATED STRING`, `REQUIRED TIMESTAMP`, …).
    pub expected: String,
    /// What was found (a value kind such as `STRING`, or an inferred type).
    pub got: String,
    /// The value, shortened (absent for schema-level conflicts).
    pub value: Option<String>,
    /// Why, when more than a type mismatch.
    pub reason: Option<String>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: expected {}, got {}", self.table, self.column, self.expected, self.got)?;
        if let Some(v) = &self.value {
            write!(f, " (value {v})")?;
        }
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Conflict {}

/// A value as JSON, cut to [`PREVIEW_CHARS`] characters with `…`.
pub fn preview(value: &Value) -> String {
    let text = value.to_json_string();
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Whether values inferred as `inferred` convert losslessly into a column of type `column`
/// (the type-level half of the coercion table in the crate README).
pub fn fits_column(column: FieldType, inferred: FieldType) -> bool {
    use FieldType::*;
    column == inferred
        || matches!(
            (column, inferred),
            (String, Int64 | Float64 | Numeric | BigNumeric | Bool | Timestamp)
                | (Float64, Int64 | Numeric)
                | (Numeric, Int64)
                | (BigNumeric, Int64 | Numeric)
                | (Json, _)
        )
}

/// Whether one non-null scalar converts losslessly to a column type: the same kind; any number or
/// bool into STRING; an int into FLOAT64; a float without fraction into INT64; a number into
/// NUMERIC / BIGNUMERIC within range; a date-time string into TIMESTAMP; a string of a number or
/// of `true`/`false` into its type; anything but bytes into JSON. Numbers are never read as
/// seconds since 1970 here (`Value::coerce` would): that is a guess, not a lossless conversion.
pub fn scalar_fits(ty: FieldType, value: &Value) -> bool {
    use FieldType as T;
    match (ty, value) {
        (_, Value::Null) => true,
        (_, Value::Record(_) | Value::Array(_)) => ty == T::Json,
        (T::String, Value::String(_) | Value::Int64(_) | Value::Float64(_) | Value::Bool(_)) => true,
        (T::String, Value::Numeric(_) | Value::BigNumeric(_)) => true,
        (T::String, Value::Timestamp(_) | Value::Date(_) | Value::Time(_) | Value::DateTime(_)) => true,
        (T::Int64, Value::Int64(_)) | (T::Float64, Value::Int64(_) | Value::Float64(_)) => true,
        (T::Bool, Value::Bool(_)) => true,
        (T::Timestamp, Value::Timestamp(_)) => true,
        (T::Timestamp, Value::String(s)) => Timestamp::parse(s).is_some(),
        (T::Timestamp | T::Date | T::Time | T::DateTime, Value::Int64(_) | Value::Float64(_)) => false,
        (T::Json, Value::Bytes(_)) => false,
        (T::Json, _) => true,
        (T::Record, _) => false,
        (T::Bool, Value::Int64(_)) => false,
        // The string conversions below check without allocating; `coerce` agrees with them.
        (T::Bool, Value::String(s)) => {
            ["true", "false", "t", "f", "1", "0"].iter().any(|w| s.trim().eq_ignore_ascii_case(w))
        }
        (T::Int64, Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        (T::Int64, Value::Float64(f)) => {
            f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(f)
        }
        (T::Float64, Value::String(s)) => {
            let t = s.trim();
            t.parse::<f64>().is_ok_and(f64::is_finite)
                || ["nan", "infinity", "-infinity", "inf", "-inf", "+inf", "+infinity"]
                    .iter()
                    .any(|w| t.eq_ignore_ascii_case(w))
        }
        _ => value.coerce(ty).is_ok(),
    }
}

/// Whether a value fits a column: REPEATED takes an array of non-null fitting elements (or
/// NULL), RECORD a record that fits its sub-fields, JSON anything but bytes, a scalar column what
/// [`scalar_fits`] accepts.
pub fn value_fits(field: &Field, value: &Value) -> bool {
    if value.is_null() {
        return true;
    }
    if field.mode == Mode::Repeated {
        return match value {
            Value::Array(items) => items.iter().all(|item| !item.is_null() && element_fits(field, item)),
            _ => false,
        };
    }
    element_fits(field, value)
}

fn element_fits(field: &Field, value: &Value) -> bool {
    match (field.field_type, value) {
        (FieldType::Record, Value::Record(r)) => record_fits(&field.fields, r),
        (FieldType::Record, _) => false,
        (FieldType::Json, Value::Array(items)) if field.mode == Mode::Repeated => {
            items.iter().all(|i| !matches!(i, Value::Bytes(_)))
        }
        (ty, v) => scalar_fits(ty, v),
    }
}

/// Whether a record fits these columns: every non-null value has a column it fits, and every
/// REQUIRED column has a value.
pub fn record_fits(fields: &[Field], record: &Record) -> bool {
    for (name, value) in record.iter() {
        if value.is_null() {
            continue;
        }
        match find(fields, name) {
            Some(f) if value_fits(f, value) => {}
            _ => return false,
        }
    }
    fields.iter().filter(|f| f.mode == Mode::Required).all(|f| record.get(&f.name).is_some_and(|v| !v.is_null()))
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name).or_else(|| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
}

fn find_mut<'a>(fields: &'a mut [Field], name: &str) -> Option<&'a mut Field> {
    fields.iter_mut().find(|f| f.name.eq_ignore_ascii_case(name))
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Decides what `record` needs from `table`, whose schema is `current` (see the module docs).
///
/// The record's names are used as they are (normalise it first with
/// [`crate::infer::normalize_record`] when it comes straight from JSON); a name BigQuery refuses
/// is a conflict.
pub fn reconcile(table: &str, current: &Schema, record: &Record) -> Decision {
    if record_fits(&current.fields, record) {
        return Decision::Fits;
    }
    let mut planner = Planner { table, conflicts: Vec::new() };
    let mut desired = current.fields.clone();
    planner.record(&current.fields, &mut desired, record, "");
    if !planner.conflicts.is_empty() {
        return Decision::Conflict(planner.conflicts);
    }
    if desired == current.fields {
        return Decision::Fits;
    }
    match plan_alter(current, &Schema::new(desired)) {
        Ok((schema, _)) => Decision::Evolve(schema),
        Err(refusals) => Decision::Conflict(refusals.into_iter().map(|r| refusal_conflict(table, r)).collect()),
    }
}

fn refusal_conflict(table: &str, r: Refusal) -> Conflict {
    Conflict {
        table: table.to_owned(),
        column: r.column,
        expected: "a change BigQuery accepts".into(),
        got: "a change it refuses".into(),
        value: None,
        reason: Some(r.reason),
    }
}

struct Planner<'t> {
    table: &'t str,
    conflicts: Vec<Conflict>,
}

impl Planner<'_> {
    fn conflict(&mut self, column: String, expected: String, got: &str, value: Option<&Value>, reason: Option<String>) {
        self.conflicts.push(Conflict {
            table: self.table.to_owned(),
            column,
            expected,
            got: got.to_owned(),
            value: value.map(preview),
            reason,
        });
    }

    /// Walks `record` against the live columns `current`, growing `desired` (a copy of them).
    fn record(&mut self, current: &[Field], desired: &mut Vec<Field>, record: &Record, prefix: &str) {
        for (name, value) in record.iter() {
            if value.is_null() {
                continue;
            }
            let p = path(prefix, name);
            match find(current, name) {
                Some(col) => {
                    if value_fits(col, value) {
                        continue;
                    }
                    let Some(want) = find_mut(desired, name) else { continue };
                    self.existing(col, want, value, &p);
                }
                None => self.added(desired, name, value, &p),
            }
        }
        for f in current.iter().filter(|f| f.mode == Mode::Required) {
            if matches!(record.get(&f.name), None | Some(Value::Null)) {
                self.conflict(
                    path(prefix, &f.name),
                    describe(f.field_type, f.mode),
                    "NULL",
                    None,
                    Some("the column is REQUIRED and the record has no value for it".into()),
                );
            }
        }
    }

    fn added(&mut self, desired: &mut Vec<Field>, name: &str, value: &Value, p: &str) {
        if let Err(reason) = validate_column_name(name) {
            self.conflict(p.to_owned(), "a valid column name".into(), value.kind(), Some(value), Some(reason.into()));
            return;
        }
        let Some(field) = infer_field(name, value) else { return };
        if !value_fits(&field, value) {
            let why = match value {
                Value::Array(_) => "arrays cannot hold NULL elements",
                _ => "the value fits no column type",
            };
            self.conflict(
                p.to_owned(),
                describe(field.field_type, field.mode),
                value.kind(),
                Some(value),
                Some(why.into()),
            );
            return;
        }
        // Two keys of one record differing only in case land in one column.
        match find_mut(desired, name) {
            None => desired.push(field),
            Some(prev) => match (prev.mode == field.mode, merge_types(prev.field_type, field.field_type)) {
                (true, Some(t)) if t != FieldType::Record => prev.field_type = t,
                (true, Some(_)) if *prev == field => {}
                _ => self.conflict(
                    p.to_owned(),
                    describe(prev.field_type, prev.mode),
                    &describe(field.field_type, field.mode),
                    Some(value),
                    Some("another key of this record names the same column".into()),
                ),
            },
        }
    }

    fn existing(&mut self, col: &Field, want: &mut Field, value: &Value, p: &str) {
        match (col.field_type, col.mode, value) {
            (FieldType::Record, Mode::Repeated, Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Record(r) => self.record(&col.fields, &mut want.fields, r, p),
                        other => self.mismatch(col, other, p, "expected an array of records"),
                    }
                }
            }
            (FieldType::Record, Mode::Nullable | Mode::Required, Value::Record(r)) => {
                self.record(&col.fields, &mut want.fields, r, p)
            }
            (_, Mode::Repeated, Value::Array(items)) => {
                for item in items {
                    if item.is_null() {
                        self.mismatch(col, item, p, "arrays cannot hold NULL elements");
                    } else if !scalar_fits(col.field_type, item) {
                        self.widen(col, want, item, p);
                    }
                }
            }
            (FieldType::Record, _, _) | (_, Mode::Repeated, _) => self.mismatch(col, value, p, ""),
            (_, _, Value::Record(_) | Value::Array(_)) => self.mismatch(col, value, p, ""),
            _ => self.widen(col, want, value, p),
        }
    }

    /// A scalar that does not fit: widen the column when BigQuery can, else a conflict.
    fn widen(&mut self, col: &Field, want: &mut Field, value: &Value, p: &str) {
        let Some(found) = scalar_type(value) else {
            return self.mismatch(col, value, p, "");
        };
        let target = match merge_types(want.field_type, found) {
            Some(t) if t == want.field_type => t,
            Some(t) if is_widening(col.field_type, t) => t,
            _ => return self.mismatch(col, value, p, ""),
        };
        if scalar_fits(target, value) {
            want.field_type = target;
        } else {
            self.mismatch(col, value, p, "");
        }
    }

    fn mismatch(&mut self, col: &Field, value: &Value, p: &str, reason: &str) {
        let reason = match value.coerce(col.field_type) {
            _ if !reason.is_empty() => Some(reason.to_owned()),
            Err(e) => e.detail.map(str::to_owned),
            Ok(_) => None,
        };
        self.conflict(p.to_owned(), describe(col.field_type, col.mode), value.kind(), Some(value), reason);
    }
}

/// A table's plan for a whole finite input: the schema to give the table, the changes that makes,
/// and the columns whose inferred type the table cannot take (their rows will be dead-lettered).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SchemaPlan {
    /// The schema to alter (or create) the table with; the current one when nothing changes.
    pub schema: Schema,
    /// What changes, in `plan_alter`'s words; empty when the table stays as it is.
    pub changes: Vec<Change>,
    /// Inferred columns the table cannot take.
    pub conflicts: Vec<Conflict>,
}

impl SchemaPlan {
    /// Whether the table stays as it is.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Plans `table` (schema `current`; empty for a table still to create) for data whose inferred
/// schema is `desired`: new columns are added (NULLABLE even when `desired` says REQUIRED),
/// REQUIRED columns the data leaves empty are relaxed, legal widenings are made, columns whose
/// inferred values fit the current type are left alone ([`fits_column`]); anything else is a
/// conflict and the column stays as it is.
pub fn reconcile_schema(table: &str, current: &Schema, desired: &Schema) -> SchemaPlan {
    let mut conflicts = Vec::new();
    let target = plan_columns(table, &current.fields, &desired.fields, "", &mut conflicts);
    match plan_alter(current, &Schema::new(target)) {
        Ok((schema, changes)) => SchemaPlan { schema, changes, conflicts },
        Err(refusals) => {
            conflicts.extend(refusals.into_iter().map(|r| refusal_conflict(table, r)));
            SchemaPlan { schema: current.clone(), changes: Vec::new(), conflicts }
        }
    }
}

fn plan_columns(
    table: &str,
    current: &[Field],
    desired: &[Field],
    prefix: &str,
    out: &mut Vec<Conflict>,
) -> Vec<Field> {
    let mut target = current.to_vec();
    for want in desired {
        let p = path(prefix, &want.name);
        let conflict = |out: &mut Vec<Conflict>, expected: String, reason: Option<String>| {
            out.push(Conflict {
                table: table.to_owned(),
                column: p.clone(),
                expected,
                got: describe(want.field_type, want.mode),
                value: None,
                reason,
            })
        };
        let Some(t) = find_mut(&mut target, &want.name) else {
            if let Err(reason) = validate_column_name(&want.name) {
                conflict(out, "a valid column name".into(), Some(reason.into()));
                continue;
            }
            let mut added = want.clone();
            relax_required(&mut added);
            target.push(added);
            continue;
        };
        let repeated = (t.mode == Mode::Repeated, want.mode == Mode::Repeated);
        if repeated.0 != repeated.1 {
            conflict(
                out,
                describe(t.field_type, t.mode),
                Some("BigQuery cannot change a column to or from REPEATED".into()),
            );
            continue;
        }
        if t.mode == Mode::Required && want.mode == Mode::Nullable {
            t.mode = Mode::Nullable;
        }
        if t.field_type == FieldType::Record && want.field_type == FieldType::Record {
            let cur = t.fields.clone();
            t.fields = plan_columns(table, &cur, &want.fields, &p, out);
        } else if is_widening(t.field_type, want.field_type) {
            t.field_type = want.field_type;
        } else if !fits_column(t.field_type, want.field_type) {
            conflict(out, describe(t.field_type, t.mode), None);
        }
    }
    target
}

fn relax_required(field: &mut Field) {
    if field.mode == Mode::Required {
        field.mode = Mode::Nullable;
    }
    field.fields.iter_mut().for_each(relax_required);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(json: &str) -> Record {
        Record::from_json_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", FieldType::Int64).required(),
            Field::new("name", FieldType::String),
            Field::new("score", FieldType::Float64),
            Field::new("n", FieldType::Int64),
            Field::new("amount", FieldType::Numeric),
            Field::new("at", FieldType::Timestamp),
            Field::new("ok", FieldType::Bool),
            Field::new("tags", FieldType::String).repeated(),
            Field::record("addr", vec![Field::new("zip", FieldType::String)]),
            Field::record("items", vec![Field::new("sku", FieldType::String)]).repeated(),
        ])
    }

    fn conflicts(d: Decision) -> Vec<String> {
        match d {
            Decision::Conflict(c) => c.iter().map(ToString::to_string).collect(),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    fn evolved(d: Decision) -> Schema {
        match d {
            Decision::Evolve(s) => s,
            other => panic!("expected an evolution, got {other:?}"),
        }
    }

    #[test]
    fn lossless_coercions_fit() {
        let r = rec(r#"{"id": 1, "name": 42, "score": 3, "n": 4.0, "amount": 12, "at": "2024-01-01T00:00:00+02:00",
                "ok": "true", "tags": ["a", 1, true], "addr": {"zip": 12345}, "items": [{"sku": "x"}], "extra": null}"#);
        assert_eq!(reconcile("t", &schema(), &r), Decision::Fits);
        let r = rec(r#"{"id": 1, "name": false, "score": 1.5, "n": "17"}"#);
        assert_eq!(reconcile("t", &schema(), &r), Decision::Fits);
    }

    #[test]
    fn new_columns_evolve_also_inside_records() {
        let r =
            rec(r#"{"id": 1, "plan": "pro", "addr": {"zip": "1", "city": "X"}, "items": [{"sku": "a", "qty": 2}]}"#);
        let s = evolved(reconcile("t", &schema(), &r));
        assert_eq!(s.field("plan").map(|f| f.field_type), Some(FieldType::String));
        let addr = s.field("addr").map(|f| f.fields.len());
        assert_eq!(addr, Some(2));
        let items = s.field("items").map(|f| f.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>());
        assert_eq!(items, Some(vec!["sku".to_string(), "qty".to_string()]));
        assert!(plan_alter(&schema(), &s).is_ok());
        assert_eq!(reconcile("t", &s, &r), Decision::Fits);
    }

    #[test]
    fn legal_widenings_evolve() {
        let s = evolved(reconcile("t", &schema(), &rec(r#"{"id": 1, "n": 2.5}"#)));
        assert_eq!(s.field("n").map(|f| f.field_type), Some(FieldType::Float64));
        let s = evolved(reconcile("t", &schema(), &rec(r#"{"id": 1, "n": 18446744073709551615}"#)));
        assert_eq!(s.field("n").map(|f| f.field_type), Some(FieldType::Numeric));
        let s = evolved(reconcile("t", &schema(), &rec(r#"{"id": 1, "amount": 0.1234567890123}"#)));
        assert_eq!(s.field("amount").map(|f| f.field_type), Some(FieldType::Float64));
        let ints = Schema::new(vec![Field::new("v", FieldType::Int64).repeated()]);
        let s = evolved(reconcile("t", &ints, &rec(r#"{"v": [1, 2.5]}"#)));
        assert_eq!(s.fields[0].field_type, FieldType::Float64);
    }

    #[test]
    fn conflicts_name_table_column_type_and_value() {
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "ok": "yes"}"#)));
        assert_eq!(got, [r#"events.ok: expected BOOL, got STRING (value "yes"): expected true or false"#]);
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "at": "soon", "score": "fast"}"#)));
        assert!(got[0].starts_with(r#"events.at: expected TIMESTAMP, got STRING (value "soon")"#), "{got:?}");
        assert!(got[1].starts_with(r#"events.score: expected FLOAT64, got STRING (value "fast")"#), "{got:?}");
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"name": "x"}"#)));
        assert!(got[0].starts_with("events.id: expected REQUIRED INT64, got NULL"), "{got:?}");
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "addr": {"zip": [1]}}"#)));
        assert_eq!(got, ["events.addr.zip: expected STRING, got ARRAY (value [1])"]);
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "at": 1700000000}"#)));
        assert!(got[0].starts_with("events.at: expected TIMESTAMP, got INT64 (value 1700000000)"), "{got:?}");
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "tags": ["a", null]}"#)));
        assert!(got[0].contains("NULL elements"), "{got:?}");
        let got = conflicts(reconcile("events", &schema(), &rec(r#"{"id": 1, "_PARTITIONTIME": 1}"#)));
        assert!(got[0].starts_with("events._PARTITIONTIME: expected a valid column name"), "{got:?}");
    }

    #[test]
    fn never_widens_what_bigquery_refuses() {
        let s = Schema::new(vec![Field::new("b", FieldType::BigNumeric), Field::new("s", FieldType::String)]);
        let got = conflicts(reconcile("t", &s, &rec(r#"{"b": 1e300}"#)));
        assert!(got[0].starts_with("t.b: expected BIGNUMERIC, got FLOAT64"), "{got:?}");
        let got = conflicts(reconcile("t", &s, &rec(r#"{"s": {"a": 1}}"#)));
        assert!(got[0].starts_with("t.s: expected STRING, got RECORD"), "{got:?}");
    }

    #[test]
    fn previews_are_short() {
        let long = "x".repeat(500);
        let p = preview(&Value::String(long));
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        let got = conflicts(reconcile("t", &schema(), &Record::new().with("id", 1).with("ok", "y".repeat(200))));
        assert!(got[0].len() < 120, "{got:?}");
    }

    #[test]
    fn whole_file_plans_change_a_table_once() {
        let desired = Schema::new(vec![
            Field::new("id", FieldType::Int64),
            Field::new("name", FieldType::Int64),
            Field::new("n", FieldType::Float64),
            Field::new("ok", FieldType::String),
            Field::new("fresh", FieldType::Date).required(),
            Field::new("tags", FieldType::String),
            Field::record("addr", vec![Field::new("city", FieldType::String)]),
        ]);
        let plan = reconcile_schema("t", &schema(), &desired);
        let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            ["relax id to NULLABLE", "widen n from INT64 to FLOAT64", "add column addr.city", "add column fresh"]
        );
        let conflicts: Vec<String> = plan.conflicts.iter().map(ToString::to_string).collect();
        assert_eq!(
            conflicts,
            [
                "t.ok: expected BOOL, got STRING",
                "t.tags: expected REPEATED STRING, got STRING: BigQuery cannot change a column to or from REPEATED"
            ]
        );
        assert_eq!(plan.schema.field("fresh").map(|f| f.mode), Some(Mode::Nullable));
        let again = reconcile_schema("t", &plan.schema, &desired);
        assert!(again.is_unchanged());
        let fresh = reconcile_schema("new", &Schema::default(), &desired);
        assert_eq!(fresh.schema.fields.len(), desired.fields.len());
        assert!(fresh.conflicts.is_empty());
    }

    #[test]
    fn fast_string_checks_agree_with_coerce() {
        let texts =
            ["true", " F ", "1", "0", "yes", "42", "-7", "4.0", "1e3", "NaN", "-Infinity", "inf", "x", "", "9e999"];
        for t in texts {
            let v = Value::String(t.into());
            for ty in [FieldType::Bool, FieldType::Int64, FieldType::Float64] {
                assert_eq!(scalar_fits(ty, &v), v.coerce(ty).is_ok(), "{t:?} into {ty}");
            }
        }
        for f in [0.0, -3.0, 2.5, 9.3e18, -9.223_372_036_854_776e18, f64::NAN, f64::INFINITY] {
            let v = Value::Float64(f);
            assert_eq!(scalar_fits(FieldType::Int64, &v), v.coerce(FieldType::Int64).is_ok(), "{f}");
        }
    }

    #[test]
    fn fits_column_agrees_with_scalar_fits() {
        let samples = [
            Value::Bool(true),
            Value::Int64(7),
            Value::Float64(1.5),
            Value::String("x".into()),
            Value::String("2024-01-01T00:00:00Z".into()),
        ];
        for column in FieldType::ALL {
            if column == FieldType::Record {
                continue;
            }
            for v in &samples {
                let Some(t) = scalar_type(v) else { continue };
                if fits_column(column, t) {
                    assert!(scalar_fits(column, v), "{column} should take {v:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn evolutions_are_always_legal_and_then_fit(
            keys in prop::collection::vec("[a-e]", 1..6),
            vals in prop::collection::vec(prop_oneof![
                any::<i64>().prop_map(Value::Int64),
                (-1e6f64..1e6).prop_map(Value::Float64),
                any::<bool>().prop_map(Value::Bool),
                "[a-z]{0,4}".prop_map(Value::String),
                Just(Value::String("2024-02-03T04:05:06Z".into())),
                Just(Value::Null),
            ], 1..6),
            start in prop::collection::vec(("[a-e]", prop::sample::select(vec![
                FieldType::Int64, FieldType::Float64, FieldType::Numeric, FieldType::String, FieldType::Bool,
                FieldType::Timestamp,
            ])), 0..4),
        ) {
            let mut fields: Vec<Field> = Vec::new();
            for (name, ty) in start {
                if !fields.iter().any(|f| f.name == name) {
                    fields.push(Field::new(name, ty));
                }
            }
            let current = Schema::new(fields);
            let mut record = Record::new();
            for (k, v) in keys.into_iter().zip(vals) {
                record.insert(k, v);
            }
            match reconcile("t", &current, &record) {
                Decision::Fits => prop_assert!(record_fits(&current.fields, &record)),
                Decision::Evolve(s) => {
                    prop_assert!(plan_alter(&current, &s).is_ok());
                    prop_assert_eq!(reconcile("t", &s, &record), Decision::Fits);
                }
                Decision::Conflict(c) => {
                    prop_assert!(!c.is_empty());
                    prop_assert!(c.iter().all(|c| c.to_string().starts_with("t.")));
                }
            }
        }
    }
}
