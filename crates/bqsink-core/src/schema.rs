//! BigQuery's table schema: `Schema` / `Field` / `FieldType` / `Mode`, in the JSON shape of the
//! REST API's `TableSchema` (what `bq show --schema` prints and `bq load --schema` reads).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

use crate::error::SchemaError;

/// A column type, in GoogleSQL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// Raw bytes (base64 in JSON).
    Bytes,
    /// 64-bit signed integer.
    Int64,
    /// IEEE-754 double.
    Float64,
    /// Decimal, precision 38, scale 9.
    Numeric,
    /// Decimal, precision 76.76, scale 38.
    BigNumeric,
    /// true / false.
    Bool,
    /// An absolute instant, µs precision.
    Timestamp,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// A calendar date and time of day, no zone.
    DateTime,
    /// A point, line or polygon in WKT.
    Geography,
    /// A JSON document.
    Json,
    /// A nested record (STRUCT).
    Record,
}

impl FieldType {
    /// The GoogleSQL name (`INT64`, `RECORD`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Bytes => "BYTES",
            Self::Int64 => "INT64",
            Self::Float64 => "FLOAT64",
            Self::Numeric => "NUMERIC",
            Self::BigNumeric => "BIGNUMERIC",
            Self::Bool => "BOOL",
            Self::Timestamp => "TIMESTAMP",
            Self::Date => "DATE",
            Self::Time => "TIME",
            Self::DateTime => "DATETIME",
            Self::Geography => "GEOGRAPHY",
            Self::Json => "JSON",
            Self::Record => "RECORD",
        }
    }

    /// The name the REST API uses in `tables.get` answers (legacy SQL names); sent on writes
    /// too because every BigQuery front end accepts them.
    pub const fn rest_name(self) -> &'static str {
        match self {
            Self::Int64 => "INTEGER",
            Self::Float64 => "FLOAT",
            Self::Bool => "BOOLEAN",
            other => other.name(),
        }
    }

    /// Every type, for tests and tables of rules.
    pub const ALL: [FieldType; 14] = [
        Self::String,
        Self::Bytes,
        Self::Int64,
        Self::Float64,
        Self::Numeric,
        Self::BigNumeric,
        Self::Bool,
        Self::Timestamp,
        Self::Date,
        Self::Time,
        Self::DateTime,
        Self::Geography,
        Self::Json,
        Self::Record,
    ];
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FieldType {
    type Err = SchemaError;
    /// Accepts GoogleSQL and legacy names, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "STRING" => Self::String,
            "BYTES" => Self::Bytes,
            "INT64" | "INTEGER" | "INT" | "SMALLINT" | "BIGINT" | "TINYINT" | "BYTEINT" => Self::Int64,
            "FLOAT64" | "FLOAT" => Self::Float64,
            "NUMERIC" | "DECIMAL" => Self::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => Self::BigNumeric,
            "BOOL" | "BOOLEAN" => Self::Bool,
            "TIMESTAMP" => Self::Timestamp,
            "DATE" => Self::Date,
            "TIME" => Self::Time,
            "DATETIME" => Self::DateTime,
            "GEOGRAPHY" => Self::Geography,
            "JSON" => Self::Json,
            "RECORD" | "STRUCT" => Self::Record,
            _ => return Err(SchemaError::UnknownType(s.to_owned())),
        })
    }
}

impl Serialize for FieldType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.rest_name())
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A column's mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    /// May be NULL (the default).
    #[default]
    Nullable,
    /// Must be present.
    Required,
    /// An array; NULL is written as an empty array.
    Repeated,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nullable => "NULLABLE",
            Self::Required => "REQUIRED",
            Self::Repeated => "REPEATED",
        })
    }
}

/// One column (`TableFieldSchema`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Field {
    /// Column name as BigQuery stores it.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Column mode.
    #[serde(default, deserialize_with = "mode_or_default")]
    pub mode: Mode,
    /// Sub-fields of a RECORD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn mode_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("NULLABLE") => Ok(Mode::Nullable),
        Some("REQUIRED") => Ok(Mode::Required),
        Some("REPEATED") => Ok(Mode::Repeated),
        Some(other) => {
            Err(serde::de::Error::custom(format!("unknown mode `{other}` (expected NULLABLE, REQUIRED or REPEATED)")))
        }
    }
}

impl Field {
    /// A NULLABLE column.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> Self {
        Self { name: name.into(), field_type, mode: Mode::Nullable, fields: Vec::new(), description: None }
    }
    /// A NULLABLE RECORD column with sub-fields.
    pub fn record(name: impl Into<String>, fields: Vec<Field>) -> Self {
        Self { fields, ..Self::new(name, FieldType::Record) }
    }
    /// The same column with another mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// The same column REQUIRED.
    pub fn required(self) -> Self {
        self.with_mode(Mode::Required)
    }
    /// The same column REPEATED.
    pub fn repeated(self) -> Self {
        self.with_mode(Mode::Repeated)
    }
    /// The same column with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A table schema (`TableSchema`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Schema {
    /// Top-level columns, in table order.
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// Longest column name BigQuery accepts.
pub const MAX_COLUMN_NAME_LEN: usize = 300;
/// Deepest RECORD nesting BigQuery accepts.
pub const MAX_NESTING_DEPTH: usize = 15;
/// Column-name prefixes BigQuery reserves (compared case-insensitively).
pub const RESERVED_PREFIXES: [&str; 7] =
    ["_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER", "_CHANGE_"];

impl Schema {
    /// A schema of these columns.
    pub fn new(fields: Vec<Field>) -> Self {
        Self { fields }
    }

    /// Reads a schema from BigQuery JSON: either a bare array of fields (the `bq` CLI's schema
    /// file) or an object with `fields`.
    pub fn from_json(text: &str) -> Result<Self, SchemaError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        let schema = if value.is_array() {
            Schema { fields: serde_json::from_value(value).map_err(|e| SchemaError::Json(e.to_string()))? }
        } else {
            serde_json::from_value(value).map_err(|e| SchemaError::Json(e.to_string()))?
        };
        schema.validate()?;
        Ok(schema)
    }

    /// Finds a top-level column by name, as BigQuery does: case-insensitively.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Checks what BigQuery checks on a schema: names, uniqueness ignoring case, RECORDs with
    /// sub-fields, nesting depth.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        validate_fields(&self.fields, "", 1)
    }
}

fn validate_fields(fields: &[Field], prefix: &str, depth: usize) -> Result<(), SchemaError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(SchemaError::TooDeep(prefix.to_owned()));
    }
    let mut seen = std::collections::HashSet::new();
    for f in fields {
        let path = if prefix.is_empty() { f.name.clone() } else { format!("{prefix}.{}", f.name) };
        validate_column_name(&f.name).map_err(|reason| SchemaError::InvalidName { path: path.clone(), reason })?;
        if !seen.insert(f.name.to_lowercase()) {
            return Err(SchemaError::Duplicate(path));
        }
        match (f.field_type, f.fields.is_empty()) {
            (FieldType::Record, true) => return Err(SchemaError::EmptyRecord(path)),
            (FieldType::Record, false) => validate_fields(&f.fields, &path, depth + 1)?,
            (other, false) => return Err(SchemaError::FieldsOnScalar { path, field_type: other }),
            (_, true) => {}
        }
    }
    Ok(())
}

/// Checks a column name against BigQuery's rules (flexible column names: any characters except
/// a few, ≤ 300 bytes, not a reserved prefix). Returns the reason when it is refused.
pub fn validate_column_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a column name cannot be empty");
    }
    if name.len() > MAX_COLUMN_NAME_LEN {
        return Err("a column name is at most 300 characters");
    }
    if name.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '.' | '!'
                    | '"'
                    | '$'
                    | '('
                    | ')'
                    | '*'
                    | ','
                    | '/'
                    | ';'
                    | '['
                    | '\\'
                    | ']'
                    | '^'
                    | '`'
                    | '{'
                    | '}'
                    | '~'
            )
    }) {
        return Err("a column name cannot hold control characters or any of . ! \" $ ( ) * , / ; [ \\ ] ^ ` { } ~");
    }
    let upper = name.to_ascii_uppercase();
    if RESERVED_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return Err("a column name cannot start with a reserved prefix (_TABLE_, _FILE_, _PARTITION, _ROW_TIMESTAMP, __ROOT__, _COLIDENTIFIER, _CHANGE_)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bq_cli_schema_files() {
        let s = Schema::from_json(
            r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},
                {"name":"tags","type":"STRING","mode":"REPEATED"},
                {"name":"addr","type":"STRUCT","fields":[{"name":"zip","type":"string"}]}]"#,
        );
        let s = match s {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.fields[0].field_type, FieldType::Int64);
        assert_eq!(s.fields[0].mode, Mode::Required);
        assert_eq!(s.fields[2].fields[0].field_type, FieldType::String);
        assert_eq!(s.field("ADDR").map(|f| f.field_type), Some(FieldType::Record));
        let json = serde_json::to_value(&s).map(|v| v.to_string()).unwrap_or_default();
        assert!(json.contains(r#""type":"INTEGER""#), "{json}");
    }

    #[test]
    fn refuses_what_bigquery_refuses() {
        let bad = |j: &str| Schema::from_json(j).is_err();
        assert!(bad(r#"[{"name":"a","type":"INT64"},{"name":"A","type":"STRING"}]"#));
        assert!(bad(r#"[{"name":"_PARTITIONTIME","type":"INT64"}]"#));
        assert!(bad(r#"[{"name":"r","type":"RECORD"}]"#));
        assert!(bad(r#"[{"name":"a","type":"WHAT"}]"#));
        assert!(bad(r#"[{"name":"a.b","type":"INT64"}]"#));
        assert!(!bad(
            r#"[{"name":"first name","type":"STRING"},{"name":"événement","type":"STRING"},{"name":"1st","type":"INT64"},{"name":"a-b","type":"INT64"}]"#
        ));
    }
}
