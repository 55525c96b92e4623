//! A writer's schema, as the sink understands it, independently of bqsink's encoder:
//!
//! 1. the raw `DescriptorProto` bytes are decoded as a prost-reflect `DynamicMessage` of
//!    `google.protobuf.DescriptorProto` (with the `column_name` extension known), giving names,
//!    numbers, labels, types, type names, nested types, enums and the column-name option;
//! 2. type names are resolved by protobuf's scoping rules (a simple name is looked up in the
//!    referring message, then outwards), and a proto2 `FileDescriptorProto` is built around the
//!    messages with fully qualified names, so rows decode with `DynamicMessage::decode`;
//! 3. every field is matched to a column (the `column_name` option if present, else the field
//!    name, ignoring case) and checked against the sink's own compatibility table;
//! 4. rows are decoded and each value checked and rendered into the cells [`super::RefSink::rows`]
//!    returns.
//!
//! The compatibility table is BigQuery's "Supported protocol buffer data types" (page "Supported
//! protocol buffer and Arrow data types"). One extrapolation, documented on [`compatible`]: the
//! zigzag and fixed-width encodings of an accepted integer type are accepted too.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, Kind, MessageDescriptor, Value};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value as Json};

use super::schema::{join, ColMode, ColType, Column};
use super::values;

/// `google/protobuf/descriptor.proto` and the sink's `column_name` extension (see build.rs).
static META_POOL_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/refsink_descriptor_pool.bin"));
/// Package the writer's messages are placed in.
const WRITER_PACKAGE: &str = "refsink.writer";

struct MetaPool {
    descriptor_proto: MessageDescriptor,
    column_name: ExtensionDescriptor,
}

fn meta_pool() -> Result<&'static MetaPool, String> {
    static POOL: OnceLock<Result<MetaPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool = DescriptorPool::decode(META_POOL_BYTES).map_err(|e| format!("descriptor pool: {e}"))?;
        Ok(MetaPool {
            descriptor_proto: pool
                .get_message_by_name("google.protobuf.DescriptorProto")
                .ok_or("google.protobuf.DescriptorProto is missing from the pool")?,
            column_name: pool
                .get_extension_by_name("bqsink.testkit.refsink.column_name")
                .ok_or("the column_name extension is missing from the pool")?,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// 1. The raw descriptor.

#[derive(Debug)]
struct RawMessage {
    name: String,
    fields: Vec<RawField>,
    nested: Vec<RawMessage>,
    enums: Vec<RawEnum>,
}

#[derive(Debug)]
struct RawField {
    name: String,
    number: i32,
    label: Option<i32>,
    ty: Option<i32>,
    type_name: String,
    column_name: Option<String>,
}

#[derive(Debug)]
struct RawEnum {
    name: String,
    values: Vec<(String, i32)>,
}

fn str_field(m: &DynamicMessage, name: &str) -> String {
    m.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn int_field(m: &DynamicMessage, name: &str) -> Option<i32> {
    if !m.has_field_by_name(name) {
        return None;
    }
    m.get_field_by_name(name).and_then(|v| v.as_i32().or_else(|| v.as_enum_number()))
}

fn messages(m: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    m.get_field_by_name(name)
        .and_then(|v| v.as_list().map(|l| l.iter().filter_map(|x| x.as_message().cloned()).collect()))
        .unwrap_or_default()
}

fn read_message(m: &DynamicMessage, meta: &MetaPool) -> RawMessage {
    RawMessage {
        name: str_field(m, "name"),
        fields: messages(m, "field").iter().map(|f| read_field(f, meta)).collect(),
        nested: messages(m, "nested_type").iter().map(|n| read_message(n, meta)).collect(),
        enums: messages(m, "enum_type")
            .iter()
            .map(|e| RawEnum {
                name: str_field(e, "name"),
                values: messages(e, "value")
                    .iter()
                    .map(|v| (str_field(v, "name"), int_field(v, "number").unwrap_or(0)))
                    .collect(),
            })
            .collect(),
    }
}

fn read_field(f: &DynamicMessage, meta: &MetaPool) -> RawField {
    let column_name = f
        .get_field_by_name("options")
        .and_then(|o| o.as_message().cloned())
        .filter(|o| o.has_extension(&meta.column_name))
        .and_then(|o| o.get_extension(&meta.column_name).as_str().map(str::to_owned));
    RawField {
        name: str_field(f, "name"),
        number: int_field(f, "number").unwrap_or(0),
        label: int_field(f, "label"),
        ty: int_field(f, "type"),
        type_name: str_field(f, "type_name"),
        column_name,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Name resolution and the row-decoding pool.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Symbol {
    Message,
    Enum,
}

fn collect_symbols(m: &RawMessage, scope: &str, out: &mut HashMap<String, Symbol>) {
    let path = join(scope, &m.name);
    out.insert(path.clone(), Symbol::Message);
    for e in &m.enums {
        out.insert(join(&path, &e.name), Symbol::Enum);
    }
    for n in &m.nested {
        collect_symbols(n, &path, out);
    }
}

/// Resolves a type name used in message `scope` (a dotted path from the root message's name):
/// a relative name is tried in `scope`, then in each enclosing message; a fully qualified one
/// (leading `.`) as written, then without its leading components (the writer's package is not
/// part of a `DescriptorProto`).
fn resolve(type_name: &str, scope: &str, symbols: &HashMap<String, Symbol>) -> Option<(String, Symbol)> {
    if let Some(abs) = type_name.strip_prefix('.') {
        let parts: Vec<&str> = abs.split('.').collect();
        return (0..parts.len()).find_map(|i| {
            let cand = parts[i..].join(".");
            symbols.get(&cand).map(|s| (cand, *s))
        });
    }
    let mut scope = scope.to_owned();
    loop {
        let cand = join(&scope, type_name);
        if let Some(s) = symbols.get(&cand) {
            return Some((cand, *s));
        }
        if scope.is_empty() {
            return None;
        }
        scope = scope.rsplit_once('.').map(|(p, _)| p.to_owned()).unwrap_or_default();
    }
}

fn proto_message(
    m: &RawMessage,
    scope: &str,
    symbols: &HashMap<String, Symbol>,
    column_names: &mut HashMap<(String, u32), String>,
) -> Result<DescriptorProto, String> {
    let path = join(scope, &m.name);
    let mut fields = Vec::with_capacity(m.fields.len());
    for f in &m.fields {
        let mut ty = f.ty.and_then(|t| Type::try_from(t).ok());
        let mut type_name = None;
        if !f.type_name.is_empty() || matches!(ty, Some(Type::Message | Type::Enum | Type::Group)) {
            let (full, sym) = resolve(&f.type_name, &path, symbols).ok_or_else(|| {
                format!(
                    "field `{}` of message `{path}` refers to type `{}`, which the descriptor does not declare \
                     (the writer schema must be self-contained, nested types declared inside the row message)",
                    f.name, f.type_name
                )
            })?;
            let sym_ty = if sym == Symbol::Enum { Type::Enum } else { Type::Message };
            if ty == Some(Type::Group) {
                return Err(format!("field `{}` of message `{path}` is a group, which is not supported", f.name));
            }
            if ty.is_some_and(|t| t != sym_ty) {
                return Err(format!("field `{}` of message `{path}`: `{}` is not of its declared type", f.name, full));
            }
            ty = Some(sym_ty);
            type_name = Some(format!(".{WRITER_PACKAGE}.{full}"));
        }
        let ty = ty.ok_or_else(|| format!("field `{}` of message `{path}` has no type", f.name))?;
        let label = match f.label.and_then(|l| Label::try_from(l).ok()) {
            Some(Label::Repeated) => Label::Repeated,
            Some(Label::Required) => Label::Required,
            _ => Label::Optional,
        };
        if f.number <= 0 {
            return Err(format!("field `{}` of message `{path}` has no valid number", f.name));
        }
        if let Some(c) = &f.column_name {
            column_names.insert((format!("{WRITER_PACKAGE}.{path}"), f.number as u32), c.clone());
        }
        fields.push(FieldDescriptorProto {
            name: Some(f.name.clone()),
            number: Some(f.number),
            label: Some(label as i32),
            r#type: Some(ty as i32),
            type_name,
            ..Default::default()
        });
    }
    let mut nested = Vec::with_capacity(m.nested.len());
    for n in &m.nested {
        nested.push(proto_message(n, &path, symbols, column_names)?);
    }
    Ok(DescriptorProto {
        name: Some(m.name.clone()),
        field: fields,
        nested_type: nested,
        enum_type: m
            .enums
            .iter()
            .map(|e| EnumDescriptorProto {
                name: Some(e.name.clone()),
                value: e
                    .values
                    .iter()
                    .map(|(n, v)| EnumValueDescriptorProto { name: Some(n.clone()), number: Some(*v), options: None })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// 3. The compatibility check.

/// Whether a proto field kind may be written to a column type — BigQuery's table "Supported
/// protocol buffer data types":
///
/// | column | proto types |
/// |---|---|
/// | BOOL | bool, int32, int64, uint32, uint64 |
/// | BYTES | bytes, string |
/// | DATE | int32, int64, string |
/// | DATETIME, TIME | string, int64 (CivilTimeEncoder packed) |
/// | FLOAT64 | double, float |
/// | GEOGRAPHY, JSON | string |
/// | INT64 | int32, int64, uint32, enum |
/// | NUMERIC, BIGNUMERIC | int32, int64, uint32, uint64, double, float, string, bytes |
/// | STRING | string, enum |
/// | TIMESTAMP | int64, int32, uint32 (µs since the epoch) |
/// | RECORD | message |
///
/// Extrapolation (not in the table, same values in another wire encoding): sint32 and sfixed32
/// count as int32, sint64 and sfixed64 as int64, fixed32 as uint32, fixed64 as uint64. The
/// `google.protobuf.*Value` wrappers and `google.protobuf.Timestamp` are not supported (they are
/// not self-contained in a writer's descriptor); nor are INTERVAL and RANGE columns.
fn compatible(col: ColType, kind: &Kind) -> bool {
    #[derive(PartialEq)]
    enum K {
        I32,
        I64,
        U32,
        U64,
        F32,
        F64,
        Bool,
        Str,
        Bytes,
        Enum,
        Msg,
    }
    let k = match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => K::I32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => K::I64,
        Kind::Uint32 | Kind::Fixed32 => K::U32,
        Kind::Uint64 | Kind::Fixed64 => K::U64,
        Kind::Float => K::F32,
        Kind::Double => K::F64,
        Kind::Bool => K::Bool,
        Kind::String => K::Str,
        Kind::Bytes => K::Bytes,
        Kind::Enum(_) => K::Enum,
        Kind::Message(_) => K::Msg,
    };
    match col {
        ColType::Bool => matches!(k, K::Bool | K::I32 | K::I64 | K::U32 | K::U64),
        ColType::Bytes => matches!(k, K::Bytes | K::Str),
        ColType::Date => matches!(k, K::I32 | K::I64 | K::Str),
        ColType::DateTime | ColType::Time => matches!(k, K::Str | K::I64),
        ColType::Float64 => matches!(k, K::F64 | K::F32),
        ColType::Geography | ColType::Json => k == K::Str,
        ColType::Int64 => matches!(k, K::I32 | K::I64 | K::U32 | K::Enum),
        ColType::Numeric | ColType::BigNumeric => {
            matches!(k, K::I32 | K::I64 | K::U32 | K::U64 | K::F64 | K::F32 | K::Str | K::Bytes)
        }
        ColType::String => matches!(k, K::Str | K::Enum),
        ColType::Timestamp => matches!(k, K::I64 | K::I32 | K::U32),
        ColType::Record => k == K::Msg,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => format!("message {}", m.name()),
        Kind::Enum(e) => format!("enum {}", e.name()),
    }
}

/// How one message's fields map to one (sub-)schema.
#[derive(Debug)]
struct MessagePlan {
    desc: MessageDescriptor,
    /// The (sub-)schema, as it was when the plan was compiled (plans are recompiled when the
    /// table's schema changes).
    columns: Vec<Column>,
    /// Per column of the (sub-)schema, in schema order: the field writing it, if any.
    by_column: Vec<Option<FieldPlan>>,
}

#[derive(Debug)]
struct FieldPlan {
    field: prost_reflect::FieldDescriptor,
    /// Path of the field in the writer's message, for messages (`outer.inner`).
    path: String,
    sub: Option<Box<MessagePlan>>,
}

/// A writer schema checked against a table schema; decodes and checks rows.
#[derive(Debug)]
pub(crate) struct WriterPlan {
    root: MessagePlan,
}

/// Why a writer schema was refused (the AppendRows call fails with INVALID_ARGUMENT).
pub(crate) type SchemaError = String;

impl WriterPlan {
    /// Decodes a writer's `DescriptorProto` and checks it against the table's columns.
    pub(crate) fn compile(descriptor: &[u8], columns: &[Column]) -> Result<Self, SchemaError> {
        let meta = meta_pool()?;
        let dm = DynamicMessage::decode(meta.descriptor_proto.clone(), descriptor)
            .map_err(|e| format!("the writer schema is not a valid DescriptorProto: {e}"))?;
        let raw = read_message(&dm, meta);
        if raw.name.is_empty() {
            return Err("the writer schema's DescriptorProto has no name".into());
        }
        let mut symbols = HashMap::new();
        collect_symbols(&raw, "", &mut symbols);
        let mut column_names = HashMap::new();
        let message = proto_message(&raw, "", &symbols, &mut column_names)?;
        let file = FileDescriptorProto {
            name: Some("refsink_writer.proto".into()),
            package: Some(WRITER_PACKAGE.into()),
            syntax: Some("proto2".into()),
            message_type: vec![message],
            ..Default::default()
        };
        let set = FileDescriptorSet { file: vec![file] };
        let pool = DescriptorPool::decode(set.encode_to_vec().as_slice())
            .map_err(|e| format!("the writer schema is not a valid descriptor: {e}"))?;
        let desc = pool
            .get_message_by_name(&format!("{WRITER_PACKAGE}.{}", raw.name))
            .ok_or("the writer schema's root message is missing")?;
        let root = check_message(&desc, columns, "", "", &column_names)?;
        Ok(Self { root })
    }

    /// Decodes one serialised row and checks it: returns the row's cells (every column of the
    /// table, absent NULLABLE as `null`, absent REPEATED as `[]`), or why it is refused.
    pub(crate) fn decode_row(&self, bytes: &[u8]) -> Result<Map<String, Json>, String> {
        let msg = DynamicMessage::decode(self.root.desc.clone(), bytes)
            .map_err(|e| format!("the row cannot be decoded with the writer schema: {e}"))?;
        convert_message(&msg, &self.root, "")
    }
}

fn field_path(parent: &str, name: &str) -> String {
    join(parent, name)
}

fn check_message(
    desc: &MessageDescriptor,
    columns: &[Column],
    field_parent: &str,
    column_parent: &str,
    column_names: &HashMap<(String, u32), String>,
) -> Result<MessagePlan, SchemaError> {
    let mut by_column: Vec<Option<FieldPlan>> = columns.iter().map(|_| None).collect();
    for field in desc.fields() {
        let fpath = field_path(field_parent, field.name());
        let target = column_names
            .get(&(desc.full_name().to_owned(), field.number()))
            .cloned()
            .unwrap_or_else(|| field.name().to_owned());
        let Some(i) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(&target)) else {
            return Err(format!(
                "Input schema has more fields than BigQuery schema, extra fields: '{}'",
                join(column_parent, &target)
            ));
        };
        let col = &columns[i];
        let cpath = join(column_parent, &col.name);
        if let Some(prev) = &by_column[i] {
            return Err(format!("fields `{}` and `{fpath}` both write to column `{cpath}`", prev.path));
        }
        let kind = field.kind();
        if field.is_map() {
            return Err(format!("field `{fpath}` is a map, which BigQuery does not accept (column `{cpath}`)"));
        }
        let label = if field.is_list() { "repeated " } else { "" };
        let mismatch = || {
            format!(
                "field `{fpath}` has proto type {label}{} which cannot be written to column `{cpath}` of type {} {}",
                kind_name(&kind),
                col.mode.name(),
                col.ty.name()
            )
        };
        if !compatible(col.ty, &kind) || field.is_list() != (col.mode == ColMode::Repeated) {
            return Err(mismatch());
        }
        let sub = match &kind {
            Kind::Message(m) => {
                if col.fields.is_empty() {
                    return Err(mismatch());
                }
                Some(Box::new(check_message(m, &col.fields, &fpath, &cpath, column_names)?))
            }
            _ => None,
        };
        by_column[i] = Some(FieldPlan { field, path: fpath, sub });
    }
    for (col, plan) in columns.iter().zip(&by_column) {
        if col.mode == ColMode::Required && plan.is_none() {
            return Err(format!(
                "the writer schema has no field for REQUIRED column `{}`",
                join(column_parent, &col.name)
            ));
        }
    }
    Ok(MessagePlan { desc: desc.clone(), columns: columns.to_vec(), by_column })
}

// ---------------------------------------------------------------------------------------------
// 4. Rows.

fn convert_message(msg: &DynamicMessage, plan: &MessagePlan, parent: &str) -> Result<Map<String, Json>, String> {
    if let Some(u) = msg.unknown_fields().next() {
        let where_ = if parent.is_empty() { "the row".to_owned() } else { format!("`{parent}`") };
        return Err(format!("{where_} has field number {}, which the writer schema does not declare", u.number()));
    }
    let mut out = Map::with_capacity(plan.columns.len());
    for (col, fp) in plan.columns.iter().zip(&plan.by_column) {
        let cpath = join(parent, &col.name);
        let cell = match fp {
            None if col.mode == ColMode::Repeated => Json::Array(Vec::new()),
            None => Json::Null,
            Some(fp) if col.mode == ColMode::Repeated => {
                let value = msg.get_field(&fp.field);
                let items = value.as_list().unwrap_or_default();
                let mut cells = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    cells.push(convert_value(item, col, fp, &format!("{cpath}[{i}]"))?);
                }
                Json::Array(cells)
            }
            Some(fp) if !msg.has_field(&fp.field) => {
                if col.mode == ColMode::Required {
                    return Err(format!("REQUIRED field `{cpath}` is missing"));
                }
                Json::Null
            }
            Some(fp) => convert_value(&msg.get_field(&fp.field), col, fp, &cpath)?,
        };
        out.insert(col.name.clone(), cell);
    }
    Ok(out)
}

fn convert_value(v: &Value, col: &Column, fp: &FieldPlan, path: &str) -> Result<Json, String> {
    if let (Some(sub), Some(m)) = (&fp.sub, v.as_message()) {
        return convert_message(m, sub, path).map(Json::Object);
    }
    if let (ColType::String, Kind::Enum(e), Some(n)) = (col.ty, fp.field.kind(), v.as_enum_number()) {
        return match e.get_value(n) {
            Some(value) => Ok(Json::String(value.name().to_owned())),
            None => Err(format!("field `{path}`: {n} is not a value of enum {}", e.name())),
        };
    }
    scalar_cell(col.ty, v).map_err(|e| format!("field `{path}` (column type {}): {e}", col.ty.name()))
}

/// Renders a cell from a decoded value, per column type.
pub(crate) fn scalar_cell(ty: ColType, v: &Value) -> Result<Json, String> {
    let int = || -> Option<i128> {
        match v {
            Value::I32(x) => Some(i128::from(*x)),
            Value::I64(x) => Some(i128::from(*x)),
            Value::U32(x) => Some(i128::from(*x)),
            Value::U64(x) => Some(i128::from(*x)),
            Value::EnumNumber(x) => Some(i128::from(*x)),
            _ => None,
        }
    };
    let wrong = || format!("unexpected value {v:?} for a {} column", ty.name());
    Ok(match ty {
        ColType::Bool => match v {
            Value::Bool(b) => Json::Bool(*b),
            _ => Json::Bool(int().ok_or_else(wrong)? != 0),
        },
        ColType::Bytes => match v {
            Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::String(s) => Json::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
            _ => return Err(wrong()),
        },
        ColType::Date => match v {
            Value::String(s) => Json::String(values::parse_date(s)?),
            _ => {
                let days = i64::try_from(int().ok_or_else(wrong)?).map_err(|_| wrong())?;
                Json::String(values::date_from_days(days)?)
            }
        },
        ColType::DateTime => match v {
            Value::String(s) => Json::String(values::parse_datetime(s)?),
            Value::I64(x) => Json::String(values::packed_datetime(*x)?),
            _ => return Err(wrong()),
        },
        ColType::Time => match v {
            Value::String(s) => Json::String(values::parse_time(s)?),
            Value::I64(x) => Json::String(values::packed_time(*x)?),
            _ => return Err(wrong()),
        },
        ColType::Float64 => {
            let f = match v {
                Value::F64(x) => *x,
                Value::F32(x) => f64::from(*x),
                _ => return Err(wrong()),
            };
            float_cell(f)
        }
        ColType::Geography => Json::String(values::geography(v.as_str().ok_or_else(wrong)?)?),
        ColType::Json => Json::String(values::json_text(v.as_str().ok_or_else(wrong)?)?),
        ColType::Int64 => Json::String(i64::try_from(int().ok_or_else(wrong)?).map_err(|_| wrong())?.to_string()),
        ColType::Numeric | ColType::BigNumeric => {
            let big = ty == ColType::BigNumeric;
            Json::String(match v {
                Value::String(s) => values::decimal(s, big)?,
                Value::Bytes(b) => values::decimal_from_bytes(b, big)?,
                Value::F64(x) => float_decimal(*x, x.is_finite(), big)?,
                // The float's own shortest decimal form (0.1f32 is "0.1", not 0.100000001…).
                Value::F32(x) => float_decimal(*x, x.is_finite(), big)?,
                _ => values::decimal(&int().ok_or_else(wrong)?.to_string(), big)?,
            })
        }
        ColType::String => match v {
            Value::String(s) => Json::String(s.clone()),
            _ => return Err(wrong()),
        },
        ColType::Timestamp => {
            let micros = i64::try_from(int().ok_or_else(wrong)?).map_err(|_| wrong())?;
            Json::String(values::timestamp_micros(micros)?)
        }
        ColType::Record => return Err(wrong()),
    })
}

/// A float as NUMERIC / BIGNUMERIC: its shortest round-trip decimal text, checked like a string
/// (so a float needing more than 9 / 38 fractional digits is refused, never rounded).
fn float_decimal(x: impl std::fmt::Display, finite: bool, big: bool) -> Result<String, String> {
    if !finite {
        return Err(format!("{x} is not a {} value", if big { "BIGNUMERIC" } else { "NUMERIC" }));
    }
    values::decimal(&format!("{x}"), big)
}

/// FLOAT64 cells: numbers, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub(crate) fn float_cell(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refsink::schema::parse_schema;
    use prost_types::EnumDescriptorProto;

    fn field(name: &str, number: i32, label: Label, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(label as i32),
            r#type: Some(ty as i32),
            type_name: type_name.map(str::to_owned),
            ..Default::default()
        }
    }

    fn compile(
        fields: Vec<FieldDescriptorProto>,
        enums: Vec<EnumDescriptorProto>,
        schema: Json,
    ) -> Result<WriterPlan, String> {
        let d = DescriptorProto { name: Some("R".into()), field: fields, enum_type: enums, ..Default::default() };
        WriterPlan::compile(&d.encode_to_vec(), &parse_schema(&schema).expect("schema"))
    }

    #[test]
    fn the_compatibility_table() {
        let one = |ty: Type, col: &str| {
            compile(
                vec![field("c", 1, Label::Optional, ty, None)],
                vec![],
                serde_json::json!({"fields": [{"name": "c", "type": col}]}),
            )
        };
        for (ty, col) in [
            (Type::Int32, "BOOL"),
            (Type::Uint64, "BOOL"),
            (Type::String, "BYTES"),
            (Type::Int64, "DATE"),
            (Type::String, "DATE"),
            (Type::Int64, "TIME"),
            (Type::Int64, "DATETIME"),
            (Type::Float, "FLOAT64"),
            (Type::Uint32, "INT64"),
            (Type::Sint64, "INT64"),
            (Type::Bytes, "BIGNUMERIC"),
            (Type::Double, "NUMERIC"),
            (Type::Int32, "TIMESTAMP"),
        ] {
            assert!(one(ty, col).is_ok(), "{ty:?} → {col} is legal");
        }
        for (ty, col) in [
            (Type::Uint64, "INT64"),
            (Type::Double, "INT64"),
            (Type::String, "INT64"),
            (Type::String, "TIMESTAMP"),
            (Type::Double, "DATE"),
            (Type::Int32, "TIME"),
            (Type::Bytes, "STRING"),
            (Type::Int64, "STRING"),
            (Type::String, "BOOL"),
            (Type::Int64, "FLOAT64"),
            (Type::Bytes, "JSON"),
        ] {
            let e = one(ty, col).expect_err("illegal");
            assert!(e.contains(col) && e.contains("`c`"), "{ty:?} → {col}: {e}");
        }
    }

    #[test]
    fn enums_write_names_to_string_and_numbers_to_int64() {
        let colour = EnumDescriptorProto {
            name: Some("Colour".into()),
            value: vec![
                EnumValueDescriptorProto { name: Some("RED".into()), number: Some(0), options: None },
                EnumValueDescriptorProto { name: Some("BLUE".into()), number: Some(7), options: None },
            ],
            ..Default::default()
        };
        let plan = compile(
            vec![
                field("s", 1, Label::Optional, Type::Enum, Some("Colour")),
                field("i", 2, Label::Optional, Type::Enum, Some(".R.Colour")),
            ],
            vec![colour],
            serde_json::json!({"fields": [{"name": "s", "type": "STRING"}, {"name": "i", "type": "INTEGER"}]}),
        )
        .expect("plan");
        let row = [8u8, 7, 16, 7]; // s = 7, i = 7
        let cells = plan.decode_row(&row).expect("row");
        assert_eq!(Json::Object(cells), serde_json::json!({"s": "BLUE", "i": "7"}));
        assert!(plan.decode_row(&[8u8, 9]).expect_err("undeclared value").contains("enum"));
    }

    #[test]
    fn values_from_alternative_encodings() {
        let plan = compile(
            vec![
                field("b", 1, Label::Optional, Type::Int32, None),
                field("n", 2, Label::Optional, Type::Bytes, None),
                field("t", 3, Label::Optional, Type::Int64, None),
                field("f", 4, Label::Optional, Type::Float, None),
            ],
            vec![],
            serde_json::json!({"fields": [{"name": "b", "type": "BOOL"}, {"name": "n", "type": "NUMERIC"},
                {"name": "t", "type": "TIME"}, {"name": "f", "type": "NUMERIC"}]}),
        )
        .expect("plan");
        let mut row = Vec::new();
        prost::encoding::int32::encode(1, &2, &mut row);
        prost::encoding::bytes::encode(2, &(-1_500_000_000i64).to_le_bytes().to_vec(), &mut row);
        prost::encoding::int64::encode(3, &((13i64 << 32) | (5 << 26)), &mut row);
        prost::encoding::float::encode(4, &0.1f32, &mut row);
        let cells = plan.decode_row(&row).expect("row");
        assert_eq!(Json::Object(cells), serde_json::json!({"b": true, "n": "-1.5", "t": "13:05:00", "f": "0.1"}));
    }
}
