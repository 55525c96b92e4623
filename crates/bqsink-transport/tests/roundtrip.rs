//! Round trip through an independent protobuf implementation: random schemas and rows are
//! encoded by bqsink, then decoded by prost-reflect using bqsink's own descriptor, and every
//! field is compared with the wire value BigQuery expects, computed here from the generated row.
//!
//! Plus unit tests of the descriptor bytes (positional numbers, `column_name` options) and of
//! the encoder's refusals (unknown keys, missing REQUIRED, NULL array elements), which must leave
//! the output buffer untouched and name the column path.

use bqsink_core::civil::{MAX_DATE_DAYS, MAX_TIMESTAMP_MICROS, MICROS_PER_DAY, MIN_DATE_DAYS, MIN_TIMESTAMP_MICROS};
use bqsink_core::{Date, DateTime, Field, FieldType, Mode, Record, RowError, Schema, Time, Timestamp, Value};
use bqsink_transport::descriptor::{COLUMN_NAME_EXTENSION, ROOT_MESSAGE_NAME};
use bqsink_transport::{RowDescriptor, RowEncoder, UnknownFields};
use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage as _, Value as PValue};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

// ---------------------------------------------------------------------------------------------
// Decoding with our descriptor.

const PACKAGE: &str = "roundtrip";

/// Qualifies the simple nested-type names bqsink uses (`R_3_1`) as `.roundtrip.bqsink_row.R_3_1`,
/// which is how a `FileDescriptorProto` refers to nested types.
fn qualify(msg: &mut DescriptorProto) {
    for field in &mut msg.field {
        if let Some(name) = field.type_name.as_mut() {
            if !name.starts_with('.') {
                *name = format!(".{PACKAGE}.{ROOT_MESSAGE_NAME}.{name}");
            }
        }
    }
    for nested in &mut msg.nested_type {
        qualify(nested);
    }
}

fn message_descriptor(desc: &RowDescriptor) -> MessageDescriptor {
    let mut root =
        DescriptorProto::decode(desc.descriptor_bytes().as_ref()).expect("descriptor_bytes() is a DescriptorProto");
    qualify(&mut root);
    let file = FileDescriptorProto {
        name: Some("bqsink_row.proto".into()),
        package: Some(PACKAGE.into()),
        syntax: Some("proto2".into()),
        message_type: vec![root],
        ..Default::default()
    };
    let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
        .expect("prost-reflect accepts bqsink's descriptor");
    pool.get_message_by_name(&format!("{PACKAGE}.{ROOT_MESSAGE_NAME}")).expect("the root message is declared")
}

// ---------------------------------------------------------------------------------------------
// Expected wire values.

/// What one proto field should decode to.
#[derive(Clone, Debug)]
enum Exp {
    I64(i64),
    I32(i32),
    F64(f64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    Msg(Vec<Slot>),
}

/// What a field of a message should hold (by position: slot `i` is field number `i + 1`).
#[derive(Clone, Debug)]
enum Slot {
    Absent,
    One(Exp),
    Many(Vec<Exp>),
}

/// How a column appears in the generated record.
#[derive(Clone, Debug)]
enum Entry {
    Missing,
    Null,
    Set(Value),
}

fn check_value(got: &PValue, want: &Exp, path: &str) -> Result<(), TestCaseError> {
    match (got, want) {
        (PValue::I64(a), Exp::I64(b)) => prop_assert_eq!(a, b, "{}", path),
        (PValue::I32(a), Exp::I32(b)) => prop_assert_eq!(a, b, "{}", path),
        (PValue::F64(a), Exp::F64(b)) => {
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{path}: {a:?} != {b:?}")
        }
        (PValue::Bool(a), Exp::Bool(b)) => prop_assert_eq!(a, b, "{}", path),
        (PValue::String(a), Exp::Str(b)) => prop_assert_eq!(a, b, "{}", path),
        (PValue::Bytes(a), Exp::Bytes(b)) => prop_assert_eq!(a.as_ref(), b.as_slice(), "{}", path),
        (PValue::Message(m), Exp::Msg(slots)) => check_message(m, slots, path)?,
        (got, want) => prop_assert!(false, "{path}: decoded {got:?}, expected {want:?}"),
    }
    Ok(())
}

fn check_message(msg: &DynamicMessage, slots: &[Slot], path: &str) -> Result<(), TestCaseError> {
    let desc = msg.descriptor();
    prop_assert_eq!(desc.fields().len(), slots.len(), "{}: field count", path);
    prop_assert!(msg.unknown_fields().next().is_none(), "{path}: unknown fields in the row");
    for (i, slot) in slots.iter().enumerate() {
        let number = i as u32 + 1;
        let fd = desc.get_field(number).ok_or_else(|| TestCaseError::fail(format!("{path}: no field {number}")))?;
        let here = format!("{path}/{}#{number}", fd.name());
        match slot {
            Slot::Absent => prop_assert!(!msg.has_field(&fd), "{here}: present but expected absent"),
            Slot::One(want) => {
                prop_assert!(msg.has_field(&fd), "{here}: absent");
                check_value(&msg.get_field(&fd), want, &here)?;
            }
            Slot::Many(want) => {
                prop_assert!(!want.is_empty(), "{here}: generator bug: empty list should be Absent");
                let got = msg.get_field(&fd);
                let PValue::List(items) = got.as_ref() else {
                    return Err(TestCaseError::fail(format!("{here}: not a list: {got:?}")));
                };
                prop_assert_eq!(items.len(), want.len(), "{}: list length", here);
                for (j, (g, w)) in items.iter().zip(want).enumerate() {
                    check_value(g, w, &format!("{here}[{j}]"))?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Independent formatting (the encoder has its own; these must agree with BigQuery's text forms).

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// (year, month, day) of a day count since 1970-01-01, by counting years and months.
fn ymd(days: i32) -> (i64, i64, i64) {
    let mut n = i64::from(days) + 719_162; // days since 0001-01-01
    assert!(n >= 0, "date before 0001-01-01");
    let mut year = 1 + 400 * (n / 146_097);
    n %= 146_097;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if n < len {
            break;
        }
        n -= len;
        year += 1;
    }
    let lengths = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in lengths {
        if n < len {
            break;
        }
        n -= len;
        month += 1;
    }
    (year, month, n + 1)
}

fn date_text(days: i32) -> String {
    let (y, m, d) = ymd(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS[.ffffff]`, BigQuery's canonical TIME text.
fn time_text(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

/// A TIME as a user might write it: fraction without trailing zeros.
fn loose_time_text(micros: i64) -> String {
    let canonical = time_text(micros);
    if canonical.contains('.') {
        canonical.trim_end_matches('0').to_owned()
    } else {
        canonical
    }
}

/// A timestamp as text with a zone offset in minutes (UTC written `Z`).
fn timestamp_text(micros: i64, offset_minutes: i64, sep: char) -> String {
    let mut offset = offset_minutes;
    let mut local = micros + offset * 60_000_000;
    if !(MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(&local) {
        offset = 0;
        local = micros;
    }
    let days = local.div_euclid(MICROS_PER_DAY) as i32;
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60)
    };
    format!("{}{sep}{}{zone}", date_text(days), loose_time_text(local.rem_euclid(MICROS_PER_DAY)))
}

fn base64(data: &[u8], url_safe: bool, pad: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Generators.

const SCALAR_TYPES: [FieldType; 13] = [
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

/// Column names that are not proto identifiers, or are only just. (None of them, nor `c<i>`,
/// can clash with a placeholder, a generated `R_…` type name, or another's default JSON name —
/// the clashes are covered by the tests at the end of this file.)
const ODD_NAMES: [&str; 9] =
    ["first name", "événement", "1st", "a-b", "MixedCase", "_under", "x_1", "日本語", "with  two spaces"];

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Nullable), Just(Mode::Required), Just(Mode::Repeated)]
}

/// Names columns: an odd name when picked and still free (ignoring case), else `c<i>`.
fn name_columns(mut cols: Vec<Field>, picks: Vec<Option<usize>>) -> Vec<Field> {
    let mut used = std::collections::HashSet::new();
    for (i, (col, pick)) in cols.iter_mut().zip(picks).enumerate() {
        let mut name = pick.map_or_else(|| format!("c{i}"), |p| ODD_NAMES[p].to_owned());
        if !used.insert(name.to_lowercase()) {
            name = format!("c{i}");
            used.insert(name.clone());
        }
        col.name = name;
    }
    cols
}

/// Columns of a message at nesting `level` (1 = the row); RECORDs nest up to 3 deep.
fn fields(level: u32) -> BoxedStrategy<Vec<Field>> {
    let leaf = (prop::sample::select(SCALAR_TYPES.to_vec()), mode()).prop_map(|(t, m)| Field::new("", t).with_mode(m));
    let column = if level <= 3 {
        prop_oneof![
            4 => leaf,
            1 => (fields(level + 1), mode()).prop_map(|(sub, m)| Field::record("", sub).with_mode(m)),
        ]
        .boxed()
    } else {
        leaf.boxed()
    };
    let max = if level == 1 { 8 } else { 4 };
    prop::collection::vec(column, 1..=max)
        .prop_flat_map(|cols| {
            let n = cols.len();
            (Just(cols), prop::collection::vec(prop::option::weighted(0.3, 0..ODD_NAMES.len()), n))
        })
        .prop_map(|(cols, picks)| name_columns(cols, picks))
        .boxed()
}

fn decimal(int_max: usize, scale_max: usize) -> BoxedStrategy<(Value, Exp)> {
    let text = (
        any::<bool>(),
        proptest::string::string_regex(&format!("0|[1-9][0-9]{{0,{}}}", int_max - 1)).expect("regex"),
        proptest::string::string_regex(&format!("([0-9]{{0,{}}}[1-9])?", scale_max - 1)).expect("regex"),
        0..3usize,
        0..3usize,
    )
        .prop_map(|(neg, int, frac, lead, trail)| {
            let mut input = String::new();
            if neg {
                input.push('-');
            }
            input.push_str(&"0".repeat(lead));
            input.push_str(&int);
            if !frac.is_empty() || trail > 0 {
                input.push('.');
                input.push_str(&frac);
                input.push_str(&"0".repeat(trail));
            }
            let zero = int == "0" && frac.is_empty();
            let mut canonical = String::new();
            if neg && !zero {
                canonical.push('-');
            }
            canonical.push_str(&int);
            if !frac.is_empty() {
                canonical.push('.');
                canonical.push_str(&frac);
            }
            (Value::String(input), Exp::Str(canonical))
        });
    prop_oneof![
        4 => text,
        1 => any::<i64>().prop_map(|i| (Value::Int64(i), Exp::Str(i.to_string()))),
    ]
    .boxed()
}

/// A non-null value of a scalar column type, in its typed or one of its loose forms, with the
/// wire value BigQuery expects.
fn scalar(ty: FieldType) -> BoxedStrategy<(Value, Exp)> {
    match ty {
        FieldType::String => prop_oneof![
            4 => any::<String>().prop_map(|s| (Value::String(s.clone()), Exp::Str(s))),
            1 => any::<i64>().prop_map(|i| (Value::Int64(i), Exp::Str(i.to_string()))),
            1 => any::<bool>().prop_map(|b| (Value::Bool(b), Exp::Str(b.to_string()))),
        ]
        .boxed(),
        FieldType::Bytes => (prop::collection::vec(any::<u8>(), 0..40), 0..3u8)
            .prop_map(|(b, form)| {
                let v = match form {
                    0 => Value::Bytes(b.clone()),
                    1 => Value::String(base64(&b, false, true)),
                    _ => Value::String(base64(&b, true, false)),
                };
                (v, Exp::Bytes(b))
            })
            .boxed(),
        FieldType::Int64 => prop_oneof![
            3 => any::<i64>().prop_map(|i| (Value::Int64(i), Exp::I64(i))),
            1 => any::<i64>().prop_map(|i| (Value::String(i.to_string()), Exp::I64(i))),
            1 => any::<i32>().prop_map(|i| (Value::Float64(f64::from(i)), Exp::I64(i64::from(i)))),
        ]
        .boxed(),
        FieldType::Float64 => prop_oneof![
            4 => any::<f64>().prop_map(|f| (Value::Float64(f), Exp::F64(f))),
            1 => any::<f64>().prop_map(|f| {
                let text = if f.is_nan() {
                    "NaN".to_owned()
                } else if f.is_infinite() {
                    if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
                } else {
                    format!("{f}")
                };
                (Value::String(text), Exp::F64(f))
            }),
            1 => any::<i64>().prop_map(|i| (Value::Int64(i), Exp::F64(i as f64))),
        ]
        .boxed(),
        FieldType::Numeric => decimal(29, 9),
        FieldType::BigNumeric => decimal(38, 38),
        FieldType::Bool => prop_oneof![
            3 => any::<bool>().prop_map(|b| (Value::Bool(b), Exp::Bool(b))),
            2 => prop::sample::select(vec![
                ("true", true), ("T", true), ("1", true), ("TRUE", true),
                ("false", false), ("f", false), ("0", false), ("False", false),
            ])
            .prop_map(|(s, b)| (Value::String(s.to_owned()), Exp::Bool(b))),
            1 => any::<bool>().prop_map(|b| (Value::Int64(i64::from(b)), Exp::Bool(b))),
        ]
        .boxed(),
        FieldType::Timestamp => prop_oneof![
            3 => (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).prop_map(|us| {
                (Value::Timestamp(Timestamp::from_micros(us).expect("in range")), Exp::I64(us))
            }),
            2 => (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS, -14 * 60..=14 * 60i64, prop::sample::select(vec!['T', ' ']))
                .prop_map(|(us, off, sep)| (Value::String(timestamp_text(us, off, sep)), Exp::I64(us))),
            1 => (MIN_TIMESTAMP_MICROS / 1_000_000..=MAX_TIMESTAMP_MICROS.div_euclid(1_000_000))
                .prop_map(|s| (Value::Int64(s), Exp::I64(s * 1_000_000))),
        ]
        .boxed(),
        FieldType::Date => (MIN_DATE_DAYS..=MAX_DATE_DAYS, any::<bool>())
            .prop_map(|(days, typed)| {
                let v = if typed {
                    Value::Date(Date::from_days(days).expect("in range"))
                } else {
                    Value::String(date_text(days))
                };
                (v, Exp::I32(days))
            })
            .boxed(),
        FieldType::Time => (0..MICROS_PER_DAY, any::<bool>())
            .prop_map(|(us, typed)| {
                let v = if typed {
                    Value::Time(Time::from_micros(us).expect("in range"))
                } else {
                    Value::String(loose_time_text(us))
                };
                (v, Exp::Str(time_text(us)))
            })
            .boxed(),
        FieldType::DateTime => (MIN_DATE_DAYS..=MAX_DATE_DAYS, 0..MICROS_PER_DAY, 0..3u8)
            .prop_map(|(days, us, form)| {
                let v = match form {
                    0 => Value::DateTime(DateTime {
                        date: Date::from_days(days).expect("in range"),
                        time: Time::from_micros(us).expect("in range"),
                    }),
                    1 => Value::String(format!("{}T{}", date_text(days), loose_time_text(us))),
                    _ => Value::String(format!("{} {}", date_text(days), loose_time_text(us))),
                };
                (v, Exp::Str(format!("{} {}", date_text(days), time_text(us))))
            })
            .boxed(),
        FieldType::Geography => (-180..=180i32, -90..=90i32)
            .prop_map(|(x, y)| {
                let wkt = format!("POINT({x} {y})");
                (Value::String(wkt.clone()), Exp::Str(wkt))
            })
            .boxed(),
        FieldType::Json => prop_oneof![
            2 => prop::sample::select(vec![
                r#"{"a":1,"b":[true,null]}"#, "[]", "{}", "null", "\"s\"", "-12", r#"{"z":{"y":"ü"}}"#,
            ])
            .prop_map(|t| (Value::Json(t.to_owned()), Exp::Str(t.to_owned()))),
            1 => any::<i64>().prop_map(|i| (Value::Int64(i), Exp::Str(i.to_string()))),
            1 => any::<bool>().prop_map(|b| (Value::Bool(b), Exp::Str(b.to_string()))),
            1 => "[a-zA-Z0-9 é]{0,12}".prop_map(|s| (Value::String(s.clone()), Exp::Str(format!("\"{s}\"")))),
        ]
        .boxed(),
        FieldType::Record => unreachable!("RECORD is not a scalar"),
        other => unreachable!("no generator for {other}"),
    }
}

fn element(field: &Field) -> BoxedStrategy<(Value, Exp)> {
    if field.field_type == FieldType::Record {
        record(field.fields.clone()).prop_map(|(r, slots)| (Value::Record(r), Exp::Msg(slots))).boxed()
    } else {
        scalar(field.field_type)
    }
}

fn column(field: &Field) -> BoxedStrategy<(Entry, Slot)> {
    let one = element(field);
    match field.mode {
        Mode::Required => one.prop_map(|(v, e)| (Entry::Set(v), Slot::One(e))).boxed(),
        Mode::Nullable => prop_oneof![
            1 => Just((Entry::Missing, Slot::Absent)),
            1 => Just((Entry::Null, Slot::Absent)),
            6 => one.prop_map(|(v, e)| (Entry::Set(v), Slot::One(e))),
        ]
        .boxed(),
        Mode::Repeated => prop_oneof![
            1 => Just((Entry::Missing, Slot::Absent)),
            1 => Just((Entry::Null, Slot::Absent)),
            6 => prop::collection::vec(one, 0..4).prop_map(|items| {
                let (values, exps): (Vec<Value>, Vec<Exp>) = items.into_iter().unzip();
                let slot = if exps.is_empty() { Slot::Absent } else { Slot::Many(exps) };
                (Entry::Set(Value::Array(values)), slot)
            }),
        ]
        .boxed(),
    }
}

/// A record for these columns (keys in schema order or reversed, sometimes upper-cased, which
/// BigQuery matches case-insensitively) and the message it should encode to.
fn record(fields: Vec<Field>) -> BoxedStrategy<(Record, Vec<Slot>)> {
    let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    let columns: Vec<BoxedStrategy<(Entry, Slot)>> = fields.iter().map(column).collect();
    (columns, any::<bool>(), any::<bool>())
        .prop_map(move |(entries, reverse, upper)| {
            let mut order: Vec<usize> = (0..entries.len()).collect();
            if reverse {
                order.reverse();
            }
            let mut rec = Record::new();
            for i in order {
                let key = if upper { names[i].to_ascii_uppercase() } else { names[i].clone() };
                match &entries[i].0 {
                    Entry::Missing => {}
                    Entry::Null => rec.push(key, Value::Null),
                    Entry::Set(v) => rec.push(key, v.clone()),
                }
            }
            (rec, entries.into_iter().map(|(_, slot)| slot).collect())
        })
        .boxed()
}

fn schema_and_row() -> impl Strategy<Value = (Schema, Record, Vec<Slot>)> {
    fields(1).prop_flat_map(|cols| {
        let schema = Schema::new(cols.clone());
        record(cols).prop_map(move |(rec, slots)| (schema.clone(), rec, slots))
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failing inputs are saved next to this file as `roundtrip.proptest-regressions`.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn rows_decode_to_the_expected_wire_values((schema, row, expected) in schema_and_row(), prefix in prop::collection::vec(any::<u8>(), 0..4)) {
        let desc = RowDescriptor::new(&schema).map_err(|e| TestCaseError::fail(format!("schema refused: {e}")))?;
        let msg_desc = message_descriptor(&desc);
        let mut encoder = RowEncoder::new(desc);

        let mut buf = BytesMut::from(prefix.as_slice());
        encoder.encode(&row, &mut buf).map_err(|e| TestCaseError::fail(format!("encode failed: {e}")))?;
        prop_assert_eq!(&buf[..prefix.len()], prefix.as_slice(), "encode must append");
        let bytes = buf[prefix.len()..].to_vec();

        let msg = DynamicMessage::decode(msg_desc, bytes.as_slice())
            .map_err(|e| TestCaseError::fail(format!("prost-reflect cannot decode the row: {e}")))?;
        check_message(&msg, &expected, "")?;

        // Canonical encoding: the reference implementation writes the same bytes back.
        prop_assert_eq!(msg.encode_to_vec(), bytes.clone(), "re-encoded by prost-reflect");

        // The encoder is reusable and deterministic.
        let mut again = BytesMut::new();
        encoder.encode(&row, &mut again).map_err(|e| TestCaseError::fail(format!("second encode failed: {e}")))?;
        prop_assert_eq!(again.to_vec(), bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptor bytes.

/// A minimal protobuf reader for the raw descriptor: `(field number, wire type, payload)`.
/// Payload is the varint value's bytes for varints, the body for length-delimited fields.
fn read_fields(mut data: &[u8]) -> Vec<(u32, u8, Vec<u8>, u64)> {
    fn varint(data: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (b, rest) = data.split_first().expect("truncated varint");
            *data = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint too long")
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let key = varint(&mut data);
        let (number, wire) = ((key >> 3) as u32, (key & 7) as u8);
        match wire {
            0 => {
                let v = varint(&mut data);
                out.push((number, wire, Vec::new(), v));
            }
            1 => {
                let (body, rest) = data.split_at(8);
                out.push((number, wire, body.to_vec(), 0));
                data = rest;
            }
            2 => {
                let len = varint(&mut data) as usize;
                let (body, rest) = data.split_at(len);
                out.push((number, wire, body.to_vec(), 0));
                data = rest;
            }
            5 => {
                let (body, rest) = data.split_at(4);
                out.push((number, wire, body.to_vec(), 0));
                data = rest;
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

/// One `FieldDescriptorProto` as read from raw bytes.
#[derive(Debug, Default)]
struct RawField {
    name: String,
    number: u64,
    packed: Option<u64>,
    column_name: Option<String>,
}

fn raw_fields(message: &[u8]) -> (String, Vec<RawField>, Vec<Vec<u8>>) {
    let mut name = String::new();
    let mut fields = Vec::new();
    let mut nested = Vec::new();
    for (number, _, body, _) in read_fields(message) {
        match number {
            1 => name = String::from_utf8(body).expect("UTF-8 message name"),
            2 => {
                let mut f = RawField::default();
                for (n, _, b, v) in read_fields(&body) {
                    match n {
                        1 => f.name = String::from_utf8(b).expect("UTF-8 field name"),
                        3 => f.number = v,
                        8 => {
                            for (o, _, ob, ov) in read_fields(&b) {
                                if o == 2 {
                                    f.packed = Some(ov);
                                } else if o == COLUMN_NAME_EXTENSION {
                                    f.column_name = Some(String::from_utf8(ob).expect("UTF-8 column name"));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                fields.push(f);
            }
            3 => nested.push(body),
            _ => {}
        }
    }
    (name, fields, nested)
}

fn hex_placeholder(name: &str) -> String {
    let mut s = "col_".to_owned();
    for b in name.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[test]
fn odd_column_names_carry_the_column_name_option() {
    let schema = Schema::new(vec![
        Field::new("first name", FieldType::String),
        Field::new("événement", FieldType::Int64).repeated(),
        Field::new("1st", FieldType::Date),
        Field::record("a-b", vec![Field::new("x y", FieldType::String), Field::new("plain", FieldType::Bool)]),
        Field::new("ok_name", FieldType::String),
    ]);
    let desc = RowDescriptor::new(&schema).expect("valid schema");
    let (root_name, fields, nested) = raw_fields(desc.descriptor_bytes());
    assert_eq!(root_name, ROOT_MESSAGE_NAME);
    assert_eq!(fields.len(), 5);
    for (f, col) in fields.iter().zip(&schema.fields) {
        if col.name == "ok_name" {
            assert_eq!(f.name, "ok_name");
            assert_eq!(f.column_name, None, "a legal name needs no option");
        } else {
            assert_eq!(f.name, hex_placeholder(&col.name));
            assert_eq!(f.column_name.as_deref(), Some(col.name.as_str()), "column_name option of `{}`", col.name);
        }
    }
    assert_eq!(fields[1].packed, Some(1), "REPEATED INT64 is packed");
    assert_eq!(fields[0].packed, None);

    assert_eq!(nested.len(), 1);
    let (sub_name, sub_fields, sub_nested) = raw_fields(&nested[0]);
    assert_eq!(sub_name, "R_4");
    assert!(sub_nested.is_empty(), "nested types are declared flat in the root");
    assert_eq!(sub_fields[0].name, "col_782079");
    assert_eq!(sub_fields[0].column_name.as_deref(), Some("x y"));
    assert_eq!(sub_fields[1].name, "plain");
    assert_eq!(sub_fields[1].column_name, None);

    // prost_types drops the unknown option when decoding; the placeholder name is what it sees.
    let proto = DescriptorProto::decode(desc.descriptor_bytes().as_ref()).expect("a DescriptorProto");
    assert_eq!(proto.field[0].name.as_deref(), Some("col_6669727374206e616d65"));
}

#[test]
fn field_numbers_are_positional_and_records_are_flat_nested_types() {
    use prost_types::field_descriptor_proto::{Label, Type};
    let schema = Schema::new(vec![
        Field::new("id", FieldType::Int64).required(),
        Field::new("tags", FieldType::String).repeated(),
        Field::record(
            "r",
            vec![
                Field::new("when", FieldType::Timestamp),
                Field::record("deeper", vec![Field::new("day", FieldType::Date).repeated()]).repeated(),
            ],
        ),
        Field::new("f", FieldType::Float64),
        Field::new("t", FieldType::Time),
    ]);
    let desc = RowDescriptor::new(&schema).expect("valid schema");
    let root = DescriptorProto::decode(desc.descriptor_bytes().as_ref()).expect("a DescriptorProto");
    assert_eq!(root.name.as_deref(), Some(ROOT_MESSAGE_NAME));
    let numbers: Vec<i32> = root.field.iter().map(|f| f.number()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    let names: Vec<&str> = root.field.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["id", "tags", "r", "f", "t"]);
    assert_eq!(root.field[0].label(), Label::Required);
    assert_eq!(root.field[0].r#type(), Type::Int64);
    assert_eq!(root.field[1].label(), Label::Repeated);
    assert_eq!(root.field[1].r#type(), Type::String);
    assert_eq!(root.field[1].options.as_ref().and_then(|o| o.packed), None, "strings are never packed");
    assert_eq!(root.field[2].r#type(), Type::Message);
    assert_eq!(root.field[2].type_name(), "R_3");
    assert_eq!(root.field[3].r#type(), Type::Double);
    assert_eq!(root.field[4].r#type(), Type::String);

    let nested: Vec<&str> = root.nested_type.iter().map(|m| m.name()).collect();
    assert_eq!(nested, ["R_3", "R_3_2"]);
    let r3 = &root.nested_type[0];
    assert_eq!(r3.field.iter().map(|f| f.number()).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(r3.field[0].r#type(), Type::Int64, "TIMESTAMP is int64 µs");
    assert_eq!(r3.field[1].type_name(), "R_3_2");
    assert_eq!(r3.field[1].label(), Label::Repeated);
    let r32 = &root.nested_type[1];
    assert_eq!(r32.field[0].number(), 1);
    assert_eq!(r32.field[0].r#type(), Type::Int32, "DATE is int32 days");
    assert_eq!(r32.field[0].options.as_ref().and_then(|o| o.packed), Some(true));
    assert!(root.nested_type.iter().all(|m| m.nested_type.is_empty()));

    // And the whole thing is a valid proto2 file once nested names are qualified.
    let msg = message_descriptor(&desc);
    assert_eq!(msg.fields().len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Refusals.

fn nested_schema() -> Schema {
    Schema::new(vec![
        Field::new("z", FieldType::String),
        Field::new("id", FieldType::Int64).required(),
        Field::record(
            "a",
            vec![Field::record(
                "b",
                vec![Field::new("c", FieldType::Int64), Field::new("req", FieldType::String).required()],
            )],
        ),
        Field::new("tags", FieldType::String).repeated(),
        Field::new("nums", FieldType::Int64).repeated(),
    ])
}

fn row(json: &str) -> Record {
    Record::from_json_str(json).expect("test rows are JSON objects")
}

/// Encodes a refused row both ways (bare message and `ProtoRows` entry) into buffers already
/// holding earlier rows, checks that both leave them untouched, and returns the error.
fn refused(encoder: &mut RowEncoder, json: &str) -> RowError {
    let marker = b"previous rows";
    let mut buf = BytesMut::from(&marker[..]);
    let bare = encoder.encode(&row(json), &mut buf).expect_err(json);
    assert_eq!(&buf[..], marker, "a refused row must leave the buffer as it was ({json})");
    let mut buf = BytesMut::from(&marker[..]);
    let entry = encoder.encode_row_entry(&row(json), &mut buf).expect_err(json);
    assert_eq!(&buf[..], marker, "a refused row entry must leave the buffer as it was ({json})");
    assert_eq!(bare, entry);
    entry
}

fn encoder() -> RowEncoder {
    RowEncoder::new(RowDescriptor::new(&nested_schema()).expect("valid schema"))
}

#[test]
fn refusal_leaves_buffer_untouched_and_names_the_nested_path() {
    let mut enc = encoder();
    // Columns before the bad one have already been written when the error is found.
    let err =
        refused(&mut enc, r#"{"z":"written first","id":1,"a":{"b":{"c":"not a number","req":"x"}},"tags":["t"]}"#);
    assert_eq!(err.column, "a.b.c");
    assert!(err.message.contains("INT64"), "{err}");

    // The encoder is still usable afterwards, and a later good row encodes the same as on a
    // fresh encoder.
    let good = r#"{"z":"ok","id":2,"a":{"b":{"c":5,"req":"y"}},"nums":[1,2]}"#;
    let mut after = BytesMut::new();
    enc.encode(&row(good), &mut after).expect("good row");
    let mut fresh = BytesMut::new();
    encoder().encode(&row(good), &mut fresh).expect("good row");
    assert_eq!(after, fresh);
}

#[test]
fn unknown_keys_are_rejected_unless_ignored() {
    let mut enc = encoder();
    let err = refused(&mut enc, r#"{"id":1,"nope":2}"#);
    assert_eq!(err.column, "nope");
    let err = refused(&mut enc, r#"{"id":1,"a":{"b":{"req":"x","zzz":1}}}"#);
    assert_eq!(err.column, "a.b.zzz");

    let mut lenient = encoder().with_unknown_fields(UnknownFields::Ignore);
    let mut with_extra = BytesMut::new();
    lenient.encode(&row(r#"{"id":1,"nope":2,"a":{"b":{"req":"x","zzz":1}}}"#), &mut with_extra).expect("ignored");
    let mut without = BytesMut::new();
    enc.encode(&row(r#"{"id":1,"a":{"b":{"req":"x"}}}"#), &mut without).expect("valid row");
    assert_eq!(with_extra, without);
}

#[test]
fn missing_required_columns_are_rejected() {
    let mut enc = encoder();
    assert_eq!(refused(&mut enc, r#"{"z":"x"}"#).column, "id");
    assert_eq!(refused(&mut enc, r#"{"id":null}"#).column, "id");
    let err = refused(&mut enc, r#"{"id":1,"a":{"b":{"c":1}}}"#);
    assert_eq!(err.column, "a.b.req");
    assert!(err.message.contains("REQUIRED"), "{err}");
    // A NULL parent RECORD does not need its REQUIRED children.
    let mut buf = BytesMut::new();
    enc.encode(&row(r#"{"id":1,"a":null}"#), &mut buf).expect("NULL record");
}

#[test]
fn null_array_elements_are_rejected() {
    let mut enc = encoder();
    let err = refused(&mut enc, r#"{"id":1,"tags":["a",null]}"#);
    assert_eq!(err.column, "tags");
    assert!(err.message.contains("NULL"), "{err}");
    // Packed columns too (the packed body is already open when the NULL is found).
    assert_eq!(refused(&mut enc, r#"{"id":1,"nums":[1,2,null]}"#).column, "nums");
    assert_eq!(refused(&mut enc, r#"{"id":1,"nums":[[1]]}"#).column, "nums");
}

// ---------------------------------------------------------------------------------------------
// Name clashes inside the descriptor. Every protobuf implementation refuses a message that
// declares one name twice (C++ protoc: `"col_612062" is already defined in "p.bqsink_row"`), so
// BigQuery would refuse the writer's schema for these tables, although BigQuery accepts them.

fn assert_descriptor_builds(schema: &Schema) {
    let desc = RowDescriptor::new(schema).expect("BigQuery accepts this schema");
    let mut root = DescriptorProto::decode(desc.descriptor_bytes().as_ref()).expect("a DescriptorProto");
    qualify(&mut root);
    let file = FileDescriptorProto {
        name: Some("bqsink_row.proto".into()),
        package: Some(PACKAGE.into()),
        syntax: Some("proto2".into()),
        message_type: vec![root],
        ..Default::default()
    };
    if let Err(e) = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] }) {
        panic!(
            "descriptor for {:?} is not a valid proto2 message: {e}",
            schema.fields.iter().map(|f| &f.name).collect::<Vec<_>>()
        );
    }
}

#[test]

fn placeholder_names_never_clash_with_literal_column_names() {
    // `a b` becomes `col_612062`, which is also a legal column name of its own.
    assert_descriptor_builds(&Schema::new(vec![
        Field::new("col_612062", FieldType::String),
        Field::new("a b", FieldType::Int64),
    ]));
}

#[test]

fn nested_type_names_never_clash_with_root_column_names() {
    // The RECORD at position 2 is declared as nested type `bqsink_row.R_2`; column 1 is the
    // field `bqsink_row.R_2`.
    assert_descriptor_builds(&Schema::new(vec![
        Field::new("R_2", FieldType::String),
        Field::record("rec", vec![Field::new("x", FieldType::Int64)]),
    ]));
}
