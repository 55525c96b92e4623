//! The typed path's contract: random schemas (nested included) and random `Serialize` values
//! (every shape of serde's data model: options, structs and maps, sequences, unit and other
//! enum variants, numbers at the edges, strings needing escapes, unknown and duplicate fields,
//! missing REQUIRED columns) give through `TypedEncoder` exactly the bytes, or exactly the
//! error, that their JSON text gives through `JsonTranscoder`.

use std::cell::RefCell;
use std::collections::HashMap;

use bqsink_core::{Field, FieldType, Mode, Schema};
use bqsink_formats::{Cut, JsonTranscoder, TypedEncoder};
use bqsink_transport::{RowDescriptor, UnknownFields};
use proptest::prelude::*;
use serde::ser::{
    SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple, SerializeTupleVariant,
};
use serde::{Serialize, Serializer};

/// A value of any shape serde knows.
#[derive(Clone, Debug)]
enum Gen {
    Bool(bool),
    I8(i8),
    I32(i32),
    I64(i64),
    I128(i128),
    U8(u8),
    U64(u64),
    U128(u128),
    F32(f32),
    F64(f64),
    Char(char),
    Str(String),
    Bytes(Vec<u8>),
    None,
    Some(Box<Gen>),
    Unit,
    UnitStruct,
    UnitVariant(&'static str),
    NewtypeStruct(Box<Gen>),
    NewtypeVariant(&'static str, Box<Gen>),
    Seq(Vec<Gen>),
    Tuple(Vec<Gen>),
    Map(Vec<(Gen, Gen)>),
    Struct(Vec<(&'static str, Gen)>),
    TupleVariant(Vec<Gen>),
    StructVariant(Vec<(&'static str, Gen)>),
}

impl Serialize for Gen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Gen::Bool(v) => s.serialize_bool(*v),
            Gen::I8(v) => s.serialize_i8(*v),
            Gen::I32(v) => s.serialize_i32(*v),
            Gen::I64(v) => s.serialize_i64(*v),
            Gen::I128(v) => s.serialize_i128(*v),
            Gen::U8(v) => s.serialize_u8(*v),
            Gen::U64(v) => s.serialize_u64(*v),
            Gen::U128(v) => s.serialize_u128(*v),
            Gen::F32(v) => s.serialize_f32(*v),
            Gen::F64(v) => s.serialize_f64(*v),
            Gen::Char(v) => s.serialize_char(*v),
            Gen::Str(v) => s.serialize_str(v),
            Gen::Bytes(v) => s.serialize_bytes(v),
            Gen::None => s.serialize_none(),
            Gen::Some(v) => s.serialize_some(v),
            Gen::Unit => s.serialize_unit(),
            Gen::UnitStruct => s.serialize_unit_struct("Nothing"),
            Gen::UnitVariant(v) => s.serialize_unit_variant("Kind", 0, v),
            Gen::NewtypeStruct(v) => s.serialize_newtype_struct("Wrapped", v),
            Gen::NewtypeVariant(name, v) => s.serialize_newtype_variant("Kind", 1, name, v),
            Gen::Seq(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    q.serialize_element(i)?;
                }
                q.end()
            }
            Gen::Tuple(items) => {
                let mut q = s.serialize_tuple(items.len())?;
                for i in items {
                    q.serialize_element(i)?;
                }
                q.end()
            }
            Gen::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Gen::Struct(fields) => {
                let mut m = s.serialize_struct("Row", fields.len())?;
                for (k, v) in fields {
                    m.serialize_field(k, v)?;
                }
                m.end()
            }
            Gen::TupleVariant(items) => {
                let mut q = s.serialize_tuple_variant("Kind", 2, "Pair", items.len())?;
                for i in items {
                    q.serialize_field(i)?;
                }
                q.end()
            }
            Gen::StructVariant(fields) => {
                let mut m = s.serialize_struct_variant("Kind", 3, "Shape", fields.len())?;
                for (k, v) in fields {
                    m.serialize_field(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// A small deterministic generator driven by proptest's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

thread_local! {
    static NAMES: RefCell<HashMap<String, &'static str>> = RefCell::new(HashMap::new());
}

/// Struct field names are `&'static str`: each name made once.
fn name(s: &str) -> &'static str {
    NAMES.with(|n| *n.borrow_mut().entry(s.to_owned()).or_insert_with(|| Box::leak(s.to_owned().into_boxed_str())))
}

const TYPES: &[FieldType] = &[
    FieldType::String,
    FieldType::Bytes,
    FieldType::Int64,
    FieldType::Float64,
    FieldType::Numeric,
    FieldType::BigNumeric,
    FieldType::Bool,
    FieldType::Timestamp,
    FieldType::Date,
    FieldType::Time,
    FieldType::DateTime,
    FieldType::Geography,
    FieldType::Json,
];

fn schema(r: &mut Rng, depth: usize) -> Vec<Field> {
    let n = 1 + r.below(6) as usize;
    (0..n)
        .map(|i| {
            let name = format!("{}{}", r.pick(&["a", "B", "col", "x_y"]), i);
            let mut f = if depth < 2 && r.chance(20) {
                Field::record(name, schema(r, depth + 1))
            } else {
                Field::new(name, r.pick(TYPES))
            };
            match r.below(10) {
                0..=1 => f = f.required(),
                2..=3 => f = f.repeated(),
                _ => {}
            }
            f
        })
        .collect()
}

fn s(v: &str) -> Gen {
    Gen::Str(v.to_owned())
}

fn scalar(r: &mut Rng, ty: FieldType) -> Gen {
    let good: Vec<Gen> = match ty {
        FieldType::Int64 => vec![
            Gen::I64(0),
            Gen::I64(-7),
            Gen::I64(i64::MAX),
            Gen::I64(i64::MIN),
            Gen::U64(u64::MAX),
            Gen::U64(1 << 63),
            Gen::I128(-(1 << 70)),
            Gen::U8(7),
            Gen::I8(-5),
            Gen::I32(i32::MIN),
            s("12"),
            Gen::F64(3.0),
            Gen::F32(2.5),
        ],
        FieldType::Float64 => vec![
            Gen::F64(1.5),
            Gen::F64(-0.0),
            Gen::F64(1e300),
            Gen::F64(f64::NAN),
            Gen::F64(f64::INFINITY),
            Gen::F32(0.1),
            Gen::F32(f32::NAN),
            Gen::F32(3.4e38),
            Gen::I64(2),
            s("NaN"),
            s("3.25"),
            Gen::U128(u128::MAX),
        ],
        FieldType::Numeric | FieldType::BigNumeric => vec![
            s("123.456"),
            Gen::F64(1.25),
            Gen::I64(7),
            s("1e3"),
            Gen::U64(u64::MAX),
            s("0.0000000001"),
            Gen::F64(1e40),
            Gen::F32(0.1),
            Gen::I128(i128::MIN),
        ],
        FieldType::Bool => vec![Gen::Bool(true), Gen::Bool(false), s("T"), Gen::I64(0), Gen::U8(1), s("no")],
        FieldType::Timestamp => vec![
            s("2024-05-01T12:00:00Z"),
            s("2024-05-01 12:00:00.123456+02:00"),
            Gen::I64(1_714_564_800),
            Gen::F64(1.5),
            Gen::I64(i64::MAX),
        ],
        FieldType::Date => vec![s("2024-02-29"), s("2023-02-29"), s("0001-01-01")],
        FieldType::Time => vec![s("12:34:56.789"), s("25:00:00"), s("7:05")],
        FieldType::DateTime => vec![s("2024-05-01T12:00:00"), s("2024-05-01 01:02:03.5"), s("2024-05-01")],
        FieldType::Bytes => vec![s("aGVsbG8="), s("aGk"), s("!!"), Gen::Bytes(vec![1, 2, 255])],
        FieldType::Geography => vec![s("POINT(1 2)"), s(" ")],
        FieldType::Json => vec![
            Gen::Struct(vec![(name("k"), Gen::Seq(vec![Gen::I64(1), Gen::F64(2.5), Gen::None]))]),
            s("s\"\n"),
            Gen::I64(12),
            Gen::Seq(vec![Gen::Bool(true)]),
            Gen::F64(1.0),
            Gen::F64(f64::NAN),
            Gen::Map(vec![]),
            Gen::Map(vec![(Gen::I64(3), s("x")), (Gen::Bool(true), Gen::Unit)]),
            Gen::Map(vec![(Gen::Seq(vec![]), s("bad key"))]),
            Gen::UnitVariant("Active"),
            Gen::NewtypeVariant("V", Box::new(Gen::I64(1))),
            Gen::StructVariant(vec![(name("w"), Gen::U8(2))]),
            deep(r.pick(&[3, 127, 128, 129, 140])),
        ],
        _ => vec![
            s("text"),
            s("café 😀"),
            s("tab\tquote\"back\\slash\u{1}"),
            Gen::I64(5),
            Gen::F64(2.5),
            Gen::F32(0.1),
            Gen::Bool(true),
            s(""),
            Gen::Char('é'),
            Gen::UnitVariant("Active"),
            Gen::NewtypeStruct(Box::new(s("wrapped"))),
            Gen::U128(u128::MAX),
            Gen::I128(1 << 64),
        ],
    };
    let wrong = [
        s("oops"),
        Gen::Struct(vec![(name("q"), Gen::I64(1))]),
        Gen::Seq(vec![Gen::I64(1), Gen::I64(2)]),
        Gen::F64(-1.5e3),
        Gen::Bool(true),
        s(""),
        Gen::Unit,
        Gen::UnitStruct,
        Gen::NewtypeVariant("V", Box::new(Gen::I64(1))),
        Gen::TupleVariant(vec![Gen::I64(1), s("x")]),
        Gen::Bytes(vec![104, 105]),
        deep(130),
    ];
    if r.chance(80) {
        r.pick(&good)
    } else {
        r.pick(&wrong)
    }
}

/// Arrays nested `n` deep.
fn deep(n: usize) -> Gen {
    (0..n).fold(Gen::I64(1), |g, _| Gen::Seq(vec![g]))
}

fn value(r: &mut Rng, f: &Field, depth: usize) -> Gen {
    if r.chance(6) {
        return r.pick(&[Gen::None, Gen::Unit]);
    }
    let one = |r: &mut Rng| -> Gen {
        if f.field_type == FieldType::Record {
            if r.chance(90) {
                object(r, &f.fields, depth + 1)
            } else {
                s("not a record")
            }
        } else {
            scalar(r, f.field_type)
        }
    };
    let v = if f.mode == Mode::Repeated && r.chance(90) {
        let n = r.below(4);
        let mut items: Vec<Gen> = (0..n).map(|_| one(r)).collect();
        if r.chance(5) {
            items.push(Gen::None);
        }
        if r.chance(3) {
            items.push(Gen::Seq(vec![Gen::I64(1)]));
        }
        if r.chance(20) {
            Gen::Tuple(items)
        } else {
            Gen::Seq(items)
        }
    } else {
        one(r)
    };
    match r.below(20) {
        0 => Gen::Some(Box::new(v)),
        1 => Gen::NewtypeStruct(Box::new(v)),
        _ => v,
    }
}

fn object(r: &mut Rng, fields: &[Field], depth: usize) -> Gen {
    let mut members: Vec<(String, Gen)> = Vec::new();
    for f in fields {
        if r.chance(12) {
            continue;
        }
        let key = if r.chance(5) { f.name.to_uppercase() } else { f.name.clone() };
        members.push((key.clone(), value(r, f, depth)));
        if r.chance(4) {
            let again = if r.chance(50) { key } else { f.name.to_lowercase() };
            members.push((again, value(r, f, depth)));
        }
    }
    if r.chance(6) {
        let v = if r.chance(50) { deep(r.pick(&[2, 128, 129])) } else { Gen::Struct(vec![(name("deep"), s("x"))]) };
        members.push(("unknown_key".into(), v));
    }
    if r.chance(25) {
        for i in (1..members.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            members.swap(i, j);
        }
    }
    if r.chance(30) {
        let keyed = |r: &mut Rng, k: String| match r.below(8) {
            0 => Gen::Char(k.chars().next().unwrap_or('k')),
            1 => Gen::NewtypeStruct(Box::new(Gen::Str(k))),
            _ => Gen::Str(k),
        };
        let mut entries = Vec::new();
        for (k, v) in members {
            let key = if k.chars().count() == 1 { keyed(r, k) } else { Gen::Str(k) };
            entries.push((key, v));
        }
        if r.chance(5) {
            entries.push((Gen::I64(7), Gen::I64(1)));
        }
        Gen::Map(entries)
    } else if depth == 0 && r.chance(3) {
        Gen::NewtypeVariant(name(fields.first().map_or("x", |f| f.name.as_str())), Box::new(Gen::I64(1)))
    } else {
        Gen::Struct(members.into_iter().map(|(k, v)| (name(&k), v)).collect())
    }
}

fn oracle(t: &mut JsonTranscoder, row: &Gen) -> Result<Vec<u8>, String> {
    let text = serde_json::to_string(row).map_err(|e| format!("|cannot serialise: {e}"))?;
    let mut out = Vec::new();
    t.transcode(&text, &mut out).map_err(|e| format!("{}|{}", e.column, e.message))?;
    Ok(out)
}

fn typed(t: &mut TypedEncoder, row: &Gen) -> Result<Vec<u8>, String> {
    let mut out = vec![0xEE];
    let r = t.encode(row, &mut out).map_err(|e| format!("{}|{}", e.column, e.message));
    if r.is_err() {
        assert_eq!(out, [0xEE], "a refused row leaves the buffer as it was");
    }
    r.map(|()| out[1..].to_vec())
}

fn check(seed: u64) {
    let mut r = Rng(seed | 1);
    let fields = schema(&mut r, 0);
    let Ok(d) = RowDescriptor::new(&Schema::new(fields.clone())) else { return };
    let unknown = if r.chance(50) { UnknownFields::Reject } else { UnknownFields::Ignore };
    let mut json = JsonTranscoder::new(d.clone()).with_unknown_fields(unknown);
    let mut enc = TypedEncoder::new(d).with_unknown_fields(unknown);
    let mut rows = Vec::new();
    for _ in 0..8 {
        let row = match r.below(40) {
            0 => Gen::I64(5),
            1 => Gen::Some(Box::new(object(&mut r, &fields, 0))),
            _ => object(&mut r, &fields, 0),
        };
        let want = oracle(&mut json, &row);
        let got = typed(&mut enc, &row);
        assert_eq!(got, want, "row {}", serde_json::to_string(&row).unwrap_or_default());
        rows.push((row, want));
    }
    // The same rows through batches: written rows in order, refused ones with their JSON text.
    let cut = Cut { max_rows: 3, max_bytes: 9_500_000 };
    let mut it = rows.iter().map(|(g, _)| g);
    let mut position = 0;
    loop {
        let batches = enc.encode_batches(&mut it, position, cut);
        if batches.is_empty() {
            break;
        }
        for b in batches {
            let mut start = 0;
            for (end, p) in b.ends.iter().zip(&b.positions) {
                let Ok(want) = &rows[*p as usize].1 else { panic!("row {p} was written but refused alone") };
                // Entry: key, length varint, message.
                let entry = &b.rows[start..*end];
                assert!(entry.ends_with(want), "row {p}");
                start = *end;
            }
            for refused in &b.refused {
                let (row, want) = &rows[refused.position as usize];
                assert_eq!(Err(format!("{}|{}", refused.error.column, refused.error.message)), *want);
                assert_eq!(refused.raw, serde_json::to_string(row).unwrap_or_default());
            }
            position += b.rows_read() as u64;
        }
    }
    assert_eq!(position, rows.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]
    #[test]
    fn typed_rows_are_their_json_text_transcoded(seed in any::<u64>()) {
        check(seed);
    }
}
