//! The sink's own model of a BigQuery table schema: parsed from the REST JSON shape
//! (`{"fields":[{"name","type","mode","fields","description"}]}`, legacy or standard type names),
//! rendered back to it and to the Storage API's `TableSchema`, and the rules for `tables.patch`.
//!
//! Sources: "REST reference: TableFieldSchema" (types and their legacy aliases, modes, 15 levels of
//! nesting, column names ≤ 300 characters, unique ignoring case, reserved prefixes) and "Modifying
//! table schemas" (an existing table's schema may only gain NULLABLE or REPEATED columns, also inside
//! RECORDs, and relax REQUIRED → NULLABLE through `tables.patch`; every other change is refused).

use serde_json::{json, Map, Value as Json};

use super::proto::storage as pb;

/// Deepest RECORD nesting BigQuery allows.
const MAX_DEPTH: usize = 15;
/// Longest column name.
const MAX_NAME_CHARS: usize = 300;
/// Column-name prefixes BigQuery reserves (compared ignoring case).
const RESERVED_PREFIXES: [&str; 7] =
    ["_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER", "_CHANGE_"];

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColType {
    String,
    Bytes,
    Int64,
    Float64,
    Numeric,
    BigNumeric,
    Bool,
    Timestamp,
    Date,
    Time,
    DateTime,
    Geography,
    Json,
    Record,
}

impl ColType {
    /// Parses a REST type name, standard or legacy, ignoring case.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "STRING" => Self::String,
            "BYTES" => Self::Bytes,
            "INTEGER" | "INT64" => Self::Int64,
            "FLOAT" | "FLOAT64" => Self::Float64,
            "NUMERIC" | "DECIMAL" => Self::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => Self::BigNumeric,
            "BOOLEAN" | "BOOL" => Self::Bool,
            "TIMESTAMP" => Self::Timestamp,
            "DATE" => Self::Date,
            "TIME" => Self::Time,
            "DATETIME" => Self::DateTime,
            "GEOGRAPHY" => Self::Geography,
            "JSON" => Self::Json,
            "RECORD" | "STRUCT" => Self::Record,
            _ => return None,
        })
    }

    /// The GoogleSQL name (used in messages).
    pub(crate) fn name(self) -> &'static str {
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

    /// The name `tables.get` reports (BigQuery answers with the legacy names).
    fn rest_name(self) -> &'static str {
        match self {
            Self::Int64 => "INTEGER",
            Self::Float64 => "FLOAT",
            Self::Bool => "BOOLEAN",
            other => other.name(),
        }
    }

    fn storage(self) -> pb::table_field_schema::Type {
        use pb::table_field_schema::Type as T;
        match self {
            Self::String => T::String,
            Self::Bytes => T::Bytes,
            Self::Int64 => T::Int64,
            Self::Float64 => T::Double,
            Self::Numeric => T::Numeric,
            Self::BigNumeric => T::Bignumeric,
            Self::Bool => T::Bool,
            Self::Timestamp => T::Timestamp,
            Self::Date => T::Date,
            Self::Time => T::Time,
            Self::DateTime => T::Datetime,
            Self::Geography => T::Geography,
            Self::Json => T::Json,
            Self::Record => T::Struct,
        }
    }
}

/// A column mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColMode {
    Nullable,
    Required,
    Repeated,
}

impl ColMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "" | "NULLABLE" => Self::Nullable,
            "REQUIRED" => Self::Required,
            "REPEATED" => Self::Repeated,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Nullable => "NULLABLE",
            Self::Required => "REQUIRED",
            Self::Repeated => "REPEATED",
        }
    }
}

/// One column (or sub-column of a RECORD).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: ColType,
    pub(crate) mode: ColMode,
    pub(crate) fields: Vec<Column>,
    pub(crate) description: Option<String>,
}

/// Parses `{"fields":[…]}` (or a bare array of fields; `null` or `{}` is an empty schema).
pub(crate) fn parse_schema(json: &Json) -> Result<Vec<Column>, String> {
    let fields = match json {
        Json::Null => return Ok(Vec::new()),
        Json::Array(_) => json,
        Json::Object(o) => match o.get("fields") {
            None | Some(Json::Null) => return Ok(Vec::new()),
            Some(f) => f,
        },
        _ => return Err("the schema must be an object with `fields`".into()),
    };
    parse_fields(fields, "", 1)
}

fn parse_fields(json: &Json, parent: &str, depth: usize) -> Result<Vec<Column>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("Field {parent}: RECORDs may be nested at most {MAX_DEPTH} levels deep"));
    }
    let items = json.as_array().ok_or_else(|| format!("`fields` of {} must be an array", or_root(parent)))?;
    let mut out: Vec<Column> = Vec::with_capacity(items.len());
    for item in items {
        let obj = item.as_object().ok_or("each field must be an object")?;
        let name = obj.get("name").and_then(Json::as_str).unwrap_or_default().to_owned();
        let path = join(parent, &name);
        check_name(&name, &path)?;
        if out.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
            return Err(format!("Field {path} is duplicated (column names are unique ignoring case)"));
        }
        let type_name = obj.get("type").and_then(Json::as_str).unwrap_or_default();
        let ty = ColType::parse(type_name)
            .ok_or_else(|| format!("Field {path}: type `{type_name}` is not supported by the reference sink"))?;
        let mode_name = obj.get("mode").and_then(Json::as_str).unwrap_or_default();
        let mode = ColMode::parse(mode_name).ok_or_else(|| format!("Field {path}: invalid mode `{mode_name}`"))?;
        let sub = obj.get("fields").filter(|f| !f.is_null());
        let fields = match (ty, sub) {
            (ColType::Record, Some(sub)) => parse_fields(sub, &path, depth + 1)?,
            (ColType::Record, None) => Vec::new(),
            (_, Some(sub)) if sub.as_array().is_some_and(|a| !a.is_empty()) => {
                return Err(format!("Field {path}: only RECORD columns may have sub-fields"))
            }
            _ => Vec::new(),
        };
        if ty == ColType::Record && fields.is_empty() {
            return Err(format!("Field {path} is type RECORD but has no schema"));
        }
        let description = obj.get("description").and_then(Json::as_str).map(str::to_owned);
        out.push(Column { name, ty, mode, fields, description });
    }
    Ok(out)
}

fn check_name(name: &str, path: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a field of {} has no name", or_root(path.rsplit_once('.').map_or("", |p| p.0))));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("Field name {path} is longer than {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(|c| c.is_control() || c == '.') {
        return Err(format!("Invalid field name \"{name}\": control characters and `.` are not allowed"));
    }
    let upper = name.to_uppercase();
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| upper.starts_with(*p)) {
        return Err(format!("Invalid field name \"{name}\": the prefix {p} is reserved"));
    }
    Ok(())
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "the schema"
    } else {
        path
    }
}

pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The REST JSON form, `{"fields":[…]}`.
pub(crate) fn schema_json(columns: &[Column]) -> Json {
    json!({ "fields": fields_json(columns) })
}

fn fields_json(columns: &[Column]) -> Json {
    Json::Array(
        columns
            .iter()
            .map(|c| {
                let mut o = Map::new();
                o.insert("name".into(), json!(c.name));
                o.insert("type".into(), json!(c.ty.rest_name()));
                o.insert("mode".into(), json!(c.mode.name()));
                if !c.fields.is_empty() {
                    o.insert("fields".into(), fields_json(&c.fields));
                }
                if let Some(d) = &c.description {
                    o.insert("description".into(), json!(d));
                }
                Json::Object(o)
            })
            .collect(),
    )
}

/// The Storage API form (`WriteStream.table_schema`, `AppendRowsResponse.updated_schema`).
pub(crate) fn storage_schema(columns: &[Column]) -> pb::TableSchema {
    pb::TableSchema { fields: columns.iter().map(storage_field).collect() }
}

fn storage_field(c: &Column) -> pb::TableFieldSchema {
    use pb::table_field_schema::Mode as M;
    pb::TableFieldSchema {
        name: c.name.clone(),
        r#type: c.ty.storage() as i32,
        mode: match c.mode {
            ColMode::Nullable => M::Nullable,
            ColMode::Required => M::Required,
            ColMode::Repeated => M::Repeated,
        } as i32,
        fields: c.fields.iter().map(storage_field).collect(),
        description: c.description.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// Checks that `new` may replace `old` through `tables.patch` ("Modifying table schemas"):
/// every existing column kept with its name, type and mode (REQUIRED → NULLABLE allowed), RECORDs
/// checked recursively, and new columns NULLABLE or REPEATED. The message names the table and the
/// column, in the words BigQuery uses for these refusals.
pub(crate) fn check_patch(table: &str, old: &[Column], new: &[Column]) -> Result<(), String> {
    check_patch_at(old, new, "").map_err(|why| format!("Provided Schema does not match Table {table}. {why}"))
}

fn check_patch_at(old: &[Column], new: &[Column], parent: &str) -> Result<(), String> {
    for o in old {
        let path = join(parent, &o.name);
        let Some(n) = new.iter().find(|n| n.name.eq_ignore_ascii_case(&o.name)) else {
            return Err(format!("Field {path} is missing in new schema"));
        };
        if n.name != o.name {
            return Err(format!("Field {path} cannot be renamed to {}", n.name));
        }
        if n.ty != o.ty {
            return Err(format!("Field {path} has changed type from {} to {}", o.ty.name(), n.ty.name()));
        }
        let relaxed = o.mode == ColMode::Required && n.mode == ColMode::Nullable;
        if n.mode != o.mode && !relaxed {
            return Err(format!("Field {path} has changed mode from {} to {}", o.mode.name(), n.mode.name()));
        }
        if o.ty == ColType::Record {
            check_patch_at(&o.fields, &n.fields, &path)?;
        }
    }
    for n in new {
        if old.iter().any(|o| o.name.eq_ignore_ascii_case(&n.name)) {
            continue;
        }
        if n.mode == ColMode::Required {
            return Err(format!(
                "Cannot add required fields to an existing schema. (field: {})",
                join(parent, &n.name)
            ));
        }
        if let Some(path) = required_inside(&n.fields, &join(parent, &n.name)) {
            return Err(format!("Cannot add required fields to an existing schema. (field: {path})"));
        }
    }
    Ok(())
}

/// A REQUIRED sub-column anywhere inside a newly added RECORD.
fn required_inside(fields: &[Column], parent: &str) -> Option<String> {
    fields.iter().find_map(|f| {
        let path = join(parent, &f.name);
        if f.mode == ColMode::Required {
            Some(path)
        } else {
            required_inside(&f.fields, &path)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(j: Json) -> Vec<Column> {
        parse_schema(&j).expect("schema")
    }

    #[test]
    fn legacy_and_standard_names_parse_alike() {
        let a = schema(
            json!({"fields":[{"name":"a","type":"INTEGER"},{"name":"r","type":"RECORD","fields":[{"name":"x","type":"BOOLEAN"}]}]}),
        );
        let b = schema(
            json!({"fields":[{"name":"a","type":"int64"},{"name":"r","type":"STRUCT","fields":[{"name":"x","type":"BOOL"}]}]}),
        );
        assert_eq!(a, b);
        assert_eq!(schema_json(&a)["fields"][0]["type"], "INTEGER");
    }

    #[test]
    fn bad_schemas_are_refused() {
        for bad in [
            json!({"fields":[{"name":"a","type":"STRING"},{"name":"A","type":"STRING"}]}),
            json!({"fields":[{"name":"r","type":"RECORD"}]}),
            json!({"fields":[{"name":"_PARTITIONTIME","type":"STRING"}]}),
            json!({"fields":[{"name":"a","type":"VARCHAR"}]}),
            json!({"fields":[{"name":"a","type":"STRING","mode":"OPTIONAL"}]}),
        ] {
            assert!(parse_schema(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_rules() {
        let old = schema(json!({"fields":[{"name":"a","type":"STRING","mode":"REQUIRED"},
            {"name":"r","type":"RECORD","fields":[{"name":"x","type":"INT64"}]}]}));
        let ok = schema(json!({"fields":[{"name":"a","type":"STRING"},
            {"name":"r","type":"RECORD","fields":[{"name":"x","type":"INT64"},{"name":"y","type":"STRING","mode":"REPEATED"}]},
            {"name":"b","type":"DATE"}]}));
        check_patch("p:d.t", &old, &ok).expect("legal");
        let retyped = schema(json!({"fields":[{"name":"a","type":"INT64","mode":"REQUIRED"},
            {"name":"r","type":"RECORD","fields":[{"name":"x","type":"INT64"}]}]}));
        let e = check_patch("p:d.t", &old, &retyped).expect_err("type change");
        assert!(e.contains("Field a has changed type from STRING to INT64"), "{e}");
        let dropped = schema(json!({"fields":[{"name":"a","type":"STRING","mode":"REQUIRED"}]}));
        assert!(check_patch("p:d.t", &old, &dropped).is_err());
        let required = schema(json!({"fields":[{"name":"a","type":"STRING","mode":"REQUIRED"},
            {"name":"r","type":"RECORD","fields":[{"name":"x","type":"INT64"},{"name":"z","type":"INT64","mode":"REQUIRED"}]}]}));
        assert!(check_patch("p:d.t", &old, &required).expect_err("required").contains("r.z"));
        let tightened = schema(json!({"fields":[{"name":"a","type":"STRING","mode":"REQUIRED"},
            {"name":"r","type":"RECORD","mode":"REQUIRED","fields":[{"name":"x","type":"INT64"}]}]}));
        assert!(check_patch("p:d.t", &old, &tightened).is_err());
    }
}
