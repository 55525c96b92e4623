//! From a table schema to the proto2 `DescriptorProto` BigQuery reads rows with, and to the
//! field plan the encoder follows.
//!
//! - One message per RECORD, all declared flat as nested types of the root message and referred
//!   to by their simple name, so the descriptor is self-contained.
//! - Field numbers are the 1-based position of the column in its (sub-)schema: stable for a
//!   schema, and unchanged for existing columns when columns are appended.
//! - A column whose name is not a proto identifier gets the placeholder name `col_<hex of its
//!   UTF-8 bytes>` and carries its real name in the `column_name` field option (extension 454943157
//!   of `google.protobuf.FieldOptions`), which is how the Storage Write API maps such columns.
//! - NULLABLE → optional, REQUIRED → required, REPEATED → repeated (packed for numeric types).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bqsink_core::{Field, FieldType, Mode, Schema, SchemaError};
use bytes::{Bytes, BytesMut};

use crate::wire::{begin_len, end_len, put_len_bytes, put_varint, Tag, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT};

/// Field-option extension number that carries a column's real name.
pub const COLUMN_NAME_EXTENSION: u32 = 454_943_157;
/// Name of the root message.
pub const ROOT_MESSAGE_NAME: &str = "bqsink_row";

// FieldDescriptorProto.Type values.
const TYPE_DOUBLE: u64 = 1;
const TYPE_INT64: u64 = 3;
const TYPE_INT32: u64 = 5;
const TYPE_BOOL: u64 = 8;
const TYPE_STRING: u64 = 9;
const TYPE_MESSAGE: u64 = 11;
const TYPE_BYTES: u64 = 12;
// FieldDescriptorProto.Label values.
const LABEL_OPTIONAL: u64 = 1;
const LABEL_REQUIRED: u64 = 2;
const LABEL_REPEATED: u64 = 3;

/// How one column is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireKind {
    /// varint of the i64 (INT64, TIMESTAMP µs).
    Int64,
    /// varint of the sign-extended i32 (DATE days).
    Int32,
    /// fixed64 (FLOAT64).
    Double,
    /// varint 0/1 (BOOL).
    Bool,
    /// length-delimited UTF-8 (STRING, NUMERIC, BIGNUMERIC, TIME, DATETIME, GEOGRAPHY, JSON).
    Text,
    /// length-delimited bytes (BYTES).
    Bytes,
    /// length-delimited nested message (RECORD).
    Message,
}

impl WireKind {
    /// The wire kind of a column type.
    pub fn of(t: FieldType) -> Self {
        match t {
            FieldType::Int64 | FieldType::Timestamp => Self::Int64,
            FieldType::Date => Self::Int32,
            FieldType::Float64 => Self::Double,
            FieldType::Bool => Self::Bool,
            FieldType::Bytes => Self::Bytes,
            FieldType::Record => Self::Message,
            _ => Self::Text,
        }
    }
    fn proto_type(self) -> u64 {
        match self {
            Self::Int64 => TYPE_INT64,
            Self::Int32 => TYPE_INT32,
            Self::Double => TYPE_DOUBLE,
            Self::Bool => TYPE_BOOL,
            Self::Text => TYPE_STRING,
            Self::Bytes => TYPE_BYTES,
            Self::Message => TYPE_MESSAGE,
        }
    }
    /// Whether repeated values of this kind are packed.
    pub fn packable(self) -> bool {
        matches!(self, Self::Int64 | Self::Int32 | Self::Double | Self::Bool)
    }
    fn wire_type(self) -> u32 {
        match self {
            Self::Int64 | Self::Int32 | Self::Bool => WIRE_VARINT,
            Self::Double => WIRE_FIXED64,
            Self::Text | Self::Bytes | Self::Message => WIRE_LEN,
        }
    }
}

/// The encoder's view of one column: what transcoders follow to write a value of it.
#[derive(Debug)]
pub struct FieldPlan {
    /// The column name.
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
    /// Its mode.
    pub mode: Mode,
    /// How it is written.
    pub kind: WireKind,
    /// Key for one element (packed repeated fields use `packed_tag`).
    pub tag: Tag,
    /// Key of the packed run of a repeated numeric column.
    pub packed_tag: Option<Tag>,
    /// The sub-message of a RECORD column.
    pub message: Option<MessagePlan>,
}

/// The encoder's view of one message (the row, or a RECORD).
#[derive(Debug)]
pub struct MessagePlan {
    /// Columns in schema order (field number = index + 1).
    pub fields: Vec<FieldPlan>,
    by_name: HashMap<String, usize>,
    by_lower: HashMap<String, usize>,
    /// Offset of this message's slots in an encoder's scratch space (see
    /// [`RowDescriptor::slot_count`]).
    pub slot_base: usize,
}

impl MessagePlan {
    /// Index of the column a record key names: exact, then case-insensitive (BigQuery's rule).
    /// Allocates nothing for ASCII keys of up to 128 bytes.
    #[inline]
    pub fn lookup(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.by_name.get(name) {
            return Some(*i);
        }
        let mut lower = [0u8; 128];
        if name.is_ascii() && name.len() <= lower.len() {
            let lower = &mut lower[..name.len()];
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            // Lowercased ASCII is ASCII.
            let lower = std::str::from_utf8(lower).unwrap_or(name);
            return self.by_lower.get(lower).copied();
        }
        self.by_lower.get(&name.to_lowercase()).copied()
    }
}

/// A table schema compiled for writing: the descriptor bytes BigQuery needs and the plan the
/// encoder follows. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RowDescriptor {
    inner: Arc<DescriptorInner>,
}

#[derive(Debug)]
struct DescriptorInner {
    schema: Schema,
    root: MessagePlan,
    slots: usize,
    descriptor: Bytes,
}

impl RowDescriptor {
    /// Compiles a schema. Fails on schemas BigQuery would refuse.
    pub fn new(schema: &Schema) -> Result<Self, SchemaError> {
        schema.validate()?;
        let mut slots = 0;
        let root = plan_message(&schema.fields, &mut slots);
        let mut buf = BytesMut::with_capacity(256);
        let root_names = proto_names(&schema.fields);
        let type_names = nested_type_names(&schema.fields, &root_names);
        write_descriptor(&mut buf, ROOT_MESSAGE_NAME, &schema.fields, "R", &type_names, true);
        Ok(Self { inner: Arc::new(DescriptorInner { schema: schema.clone(), root, slots, descriptor: buf.freeze() }) })
    }

    /// The schema this descriptor was compiled from.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// Whether both are the same compiled schema (clones of one `RowDescriptor`).
    pub fn same_as(&self, other: &RowDescriptor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The serialised `google.protobuf.DescriptorProto` of the row message.
    pub fn descriptor_bytes(&self) -> &Bytes {
        &self.inner.descriptor
    }

    /// The plan of the row message.
    pub fn root(&self) -> &MessagePlan {
        &self.inner.root
    }

    /// Slots an encoder needs: one per column of every message of the plan.
    pub fn slot_count(&self) -> usize {
        self.inner.slots
    }
}

/// Whether a column name is already a legal proto field name.
pub fn is_proto_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The proto field names of one message's columns: each name itself when legal, else the
/// placeholder of [`proto_field_name`], with `_` appended until it differs from every other.
pub fn proto_names(fields: &[Field]) -> Vec<String> {
    let mut taken: HashSet<String> =
        fields.iter().filter(|f| is_proto_identifier(&f.name)).map(|f| f.name.clone()).collect();
    fields
        .iter()
        .map(|f| {
            if is_proto_identifier(&f.name) {
                return f.name.clone();
            }
            let mut name = proto_field_name(&f.name);
            while !taken.insert(name.clone()) {
                name.push('_');
            }
            name
        })
        .collect()
}

/// Names of the nested message types, by tree path (`R_3_2`): all are declared in the root, so
/// each must differ from the root's field names and from each other.
fn nested_type_names(fields: &[Field], root_names: &[String]) -> HashMap<String, String> {
    fn walk(fields: &[Field], path: &str, taken: &mut HashSet<String>, out: &mut HashMap<String, String>) {
        for (i, f) in fields.iter().enumerate() {
            if f.field_type != FieldType::Record {
                continue;
            }
            let child = format!("{path}_{}", i + 1);
            let mut name = child.clone();
            while !taken.insert(name.clone()) {
                name.push('_');
            }
            out.insert(child.clone(), name);
            walk(&f.fields, &child, taken, out);
        }
    }
    let mut taken: HashSet<String> = root_names.iter().cloned().collect();
    taken.insert(ROOT_MESSAGE_NAME.to_owned());
    let mut out = HashMap::new();
    walk(fields, "R", &mut taken, &mut out);
    out
}

/// The placeholder-or-name of one column, before uniqueness within its message is ensured
/// (see [`proto_names`]).
pub fn proto_field_name(column: &str) -> String {
    if is_proto_identifier(column) {
        column.to_owned()
    } else {
        let mut s = String::with_capacity(4 + column.len() * 2);
        s.push_str("col_");
        for b in column.as_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

fn plan_message(fields: &[Field], slots: &mut usize) -> MessagePlan {
    let slot_base = *slots;
    *slots += fields.len();
    let mut plans = Vec::with_capacity(fields.len());
    let mut by_name = HashMap::with_capacity(fields.len());
    let mut by_lower = HashMap::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let number = i as u32 + 1;
        let kind = WireKind::of(f.field_type);
        let packed = f.mode == Mode::Repeated && kind.packable();
        let message = (f.field_type == FieldType::Record).then(|| plan_message(&f.fields, slots));
        plans.push(FieldPlan {
            name: f.name.clone(),
            field_type: f.field_type,
            mode: f.mode,
            kind,
            tag: Tag::new(number, kind.wire_type()),
            packed_tag: packed.then(|| Tag::new(number, WIRE_LEN)),
            message,
        });
        by_name.insert(f.name.clone(), i);
        by_lower.insert(f.name.to_lowercase(), i);
    }
    MessagePlan { fields: plans, by_name, by_lower, slot_base }
}

/// Writes a DescriptorProto. Nested messages of the whole tree are declared flat inside the
/// root, named after their path of field numbers (`R_3_2`, see [`nested_type_names`]).
fn write_descriptor(
    buf: &mut BytesMut,
    name: &str,
    fields: &[Field],
    path: &str,
    type_names: &HashMap<String, String>,
    is_root: bool,
) {
    // DescriptorProto: name = 1, field = 2, nested_type = 3.
    put_len_bytes(buf, Tag::new(1, WIRE_LEN), name.as_bytes());
    for ((i, f), proto_name) in fields.iter().enumerate().zip(proto_names(fields)) {
        let number = i as u32 + 1;
        let nested = type_names.get(&format!("{path}_{number}")).map(String::as_str);
        Tag::new(2, WIRE_LEN).put(buf);
        let start = begin_len(buf);
        write_field(buf, f, &proto_name, number, nested);
        end_len(buf, start);
    }
    if is_root {
        write_nested_types(buf, fields, path, type_names);
    }
}

fn write_nested_types(buf: &mut BytesMut, fields: &[Field], path: &str, type_names: &HashMap<String, String>) {
    for (i, f) in fields.iter().enumerate() {
        if f.field_type != FieldType::Record {
            continue;
        }
        let child = format!("{path}_{}", i + 1);
        let name = type_names.get(&child).map_or(child.as_str(), String::as_str);
        Tag::new(3, WIRE_LEN).put(buf);
        let start = begin_len(buf);
        write_descriptor(buf, name, &f.fields, &child, type_names, false);
        end_len(buf, start);
        write_nested_types(buf, &f.fields, &child, type_names);
    }
}

fn write_field(buf: &mut BytesMut, f: &Field, proto_name: &str, number: u32, nested_name: Option<&str>) {
    // FieldDescriptorProto: name = 1, number = 3, label = 4, type = 5, type_name = 6,
    // options = 8, json_name = 10.
    let kind = WireKind::of(f.field_type);
    put_len_bytes(buf, Tag::new(1, WIRE_LEN), proto_name.as_bytes());
    Tag::new(3, WIRE_VARINT).put(buf);
    put_varint(buf, u64::from(number));
    Tag::new(4, WIRE_VARINT).put(buf);
    put_varint(
        buf,
        match f.mode {
            Mode::Nullable => LABEL_OPTIONAL,
            Mode::Required => LABEL_REQUIRED,
            Mode::Repeated => LABEL_REPEATED,
        },
    );
    Tag::new(5, WIRE_VARINT).put(buf);
    put_varint(buf, kind.proto_type());
    if let (WireKind::Message, Some(nested)) = (kind, nested_name) {
        put_len_bytes(buf, Tag::new(6, WIRE_LEN), nested.as_bytes());
    }
    // An explicit JSON name: the default camel-casing makes `a_b` and `aB` collide, which
    // some descriptor validators refuse.
    put_len_bytes(buf, Tag::new(10, WIRE_LEN), proto_name.as_bytes());
    let packed = f.mode == Mode::Repeated && kind.packable();
    let renamed = !is_proto_identifier(&f.name);
    if packed || renamed {
        // FieldOptions: packed = 2; column_name = 454943157.
        Tag::new(8, WIRE_LEN).put(buf);
        let start = begin_len(buf);
        if packed {
            Tag::new(2, WIRE_VARINT).put(buf);
            put_varint(buf, 1);
        }
        if renamed {
            put_len_bytes(buf, Tag::new(COLUMN_NAME_EXTENSION, WIRE_LEN), f.name.as_bytes());
        }
        end_len(buf, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_names_are_legal_and_unique() {
        assert_eq!(proto_field_name("ok_name1"), "ok_name1");
        for odd in ["first name", "événement", "1st", "a-b"] {
            let p = proto_field_name(odd);
            assert!(is_proto_identifier(&p), "{p}");
        }
        assert_ne!(proto_field_name("a-b"), proto_field_name("a b"));
    }
}
