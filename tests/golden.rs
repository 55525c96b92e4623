//! Golden encodings: bqsink's row bytes must equal, byte for byte, what the reference protobuf
//! implementation (Python `protobuf`) produces for the same rows from `proto/golden.proto`.
//!
//! Fixtures live in `tests/fixtures/golden/`: `cases.json` (rows as a user would send them),
//! the two schema files, and `golden.json` (expected bytes as hex), which
//! `make_golden.py` writes — see its header for how to regenerate it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bqsink_core::{FieldType, Record, Schema};
use bqsink_transport::{RowDescriptor, RowEncoder};
use bytes::BytesMut;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn read_fixture(name: &str) -> String {
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn schema_file(schema: &str) -> &'static str {
    match schema {
        "flat" => "flat_schema.json",
        "nested" => "nested_schema.json",
        other => panic!("unknown schema `{other}` in cases.json"),
    }
}

fn load_schema(schema: &str) -> Schema {
    let text = read_fixture(schema_file(schema));
    Schema::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", schema_file(schema)))
}

/// One case of `cases.json`, with the row kept as its exact source text: `serde_json::Value`
/// would sort object keys, and bqsink keeps input key order (it shows in JSON columns).
#[derive(Debug)]
struct Case {
    name: String,
    schema: String,
    row: String,
}

#[derive(Debug, serde::Deserialize)]
struct Golden {
    name: String,
    schema: String,
    hex: String,
}

fn load_cases() -> Vec<Case> {
    let text = read_fixture("cases.json");
    let cases = raw_json::cases(&text).unwrap_or_else(|e| panic!("cases.json: {e}"));
    // Cross-check the little scanner against serde_json.
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).expect("cases.json is valid JSON");
    assert_eq!(parsed.len(), cases.len(), "scanner and serde_json disagree on the number of cases");
    for (case, value) in cases.iter().zip(&parsed) {
        assert_eq!(value["name"].as_str(), Some(case.name.as_str()));
        assert_eq!(value["schema"].as_str(), Some(case.schema.as_str()));
        let row: serde_json::Value = serde_json::from_str(&case.row).expect("row text is JSON");
        assert_eq!(row, value["row"], "row text of case {}", case.name);
    }
    cases
}

fn load_golden() -> Vec<Golden> {
    serde_json::from_str(&read_fixture("golden.json")).expect("golden.json: an array of {name, schema, hex}")
}

fn golden_by_name() -> BTreeMap<String, Golden> {
    let mut map = BTreeMap::new();
    for g in load_golden() {
        let name = g.name.clone();
        assert!(map.insert(name.clone(), g).is_none(), "golden.json lists `{name}` twice");
    }
    map
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert_eq!(hex.len() % 2, 0, "odd-length hex");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits")).collect()
}

fn encode(schema: &Schema, row: &str) -> Result<Vec<u8>, String> {
    let descriptor = RowDescriptor::new(schema).map_err(|e| format!("schema: {e}"))?;
    let mut encoder = RowEncoder::new(descriptor);
    let record = Record::from_json_str(row).map_err(|e| format!("row: {e}"))?;
    let mut buf = BytesMut::new();
    encoder.encode(&record, &mut buf).map_err(|e| format!("encode: {e}"))?;
    Ok(buf.to_vec())
}

#[test]
fn rows_encode_to_the_golden_bytes() {
    let golden = golden_by_name();
    let schemas: BTreeMap<&str, Schema> = [("flat", load_schema("flat")), ("nested", load_schema("nested"))].into();
    let cases = load_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let Some(expected) = golden.get(&case.name) else {
            failures.push(format!("{}: no golden entry", case.name));
            continue;
        };
        let schema = &schemas[case.schema.as_str()];
        match encode(schema, &case.row) {
            Ok(actual) if actual == from_hex(&expected.hex) => {}
            Ok(actual) => failures.push(format!(
                "{}:\n  row:      {}\n  expected: {}\n  actual:   {}",
                case.name,
                case.row,
                expected.hex,
                to_hex(&actual)
            )),
            Err(e) => failures.push(format!("{}: {e}\n  row: {}", case.name, case.row)),
        }
    }
    assert!(failures.is_empty(), "{} of {} golden cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_case_has_a_golden_entry() {
    let cases = load_cases();
    assert!(cases.len() >= 25, "cases.json shrank to {} cases", cases.len());
    let golden = golden_by_name();
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "cases.json lists `{}` twice", case.name);
        let g = golden
            .get(&case.name)
            .unwrap_or_else(|| panic!("case `{}` has no entry in golden.json: rerun make_golden.py", case.name));
        assert_eq!(g.schema, case.schema, "case `{}` changed schema since golden.json was written", case.name);
        assert!(!g.hex.is_empty(), "case `{}` has empty golden bytes", case.name);
    }
    let stale: Vec<&String> = golden.keys().filter(|n| !names.contains(*n)).collect();
    assert!(stale.is_empty(), "golden.json has entries for cases that are gone: {stale:?}");
    // Both schemas are exercised.
    for schema in ["flat", "nested"] {
        assert!(cases.iter().any(|c| c.schema == schema), "no case uses the {schema} schema");
    }
}

/// A wrong type mapping must show up as a byte difference; otherwise the golden comparison
/// above would prove nothing.
#[test]
fn a_wrong_type_mapping_is_detected() {
    let golden = golden_by_name();
    let cases = load_cases();
    for (case_name, column) in [("dates_around_the_epoch", "d"), ("timestamp_before_1970_with_offset", "ts")] {
        let case = cases.iter().find(|c| c.name == case_name).expect("the case exists in cases.json");
        let expected = from_hex(&golden[case_name].hex);

        let schema = load_schema(&case.schema);
        assert_eq!(encode(&schema, &case.row).as_ref(), Ok(&expected), "{case_name} with the right schema");

        // The same column mapped to a string, as a naive encoder might do.
        let mut wrong = schema.clone();
        let field = wrong.fields.iter_mut().find(|f| f.name == column).expect("the column exists");
        assert!(matches!(field.field_type, FieldType::Date | FieldType::Timestamp));
        field.field_type = FieldType::String;
        let actual = encode(&wrong, &case.row).expect("strings accept any text");
        assert_ne!(
            actual,
            expected,
            "{case_name}: encoding `{column}` as STRING gives the golden bytes {}",
            to_hex(&actual)
        );
    }
}

/// Just enough of a JSON scanner to cut each case's `row` out of `cases.json` as source text.
mod raw_json {
    use super::Case;

    struct Scanner<'a> {
        text: &'a str,
        pos: usize,
    }

    impl<'a> Scanner<'a> {
        fn bytes(&self) -> &'a [u8] {
            self.text.as_bytes()
        }
        fn ws(&mut self) {
            while matches!(self.bytes().get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }
        fn expect(&mut self, b: u8) -> Result<(), String> {
            self.ws();
            if self.bytes().get(self.pos) == Some(&b) {
                self.pos += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {}", b as char, self.pos))
            }
        }
        /// `,` (true) or the closing bracket (false).
        fn more(&mut self, close: u8) -> Result<bool, String> {
            self.ws();
            match self.bytes().get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    Ok(true)
                }
                Some(b) if *b == close => {
                    self.pos += 1;
                    Ok(false)
                }
                _ => Err(format!("expected `,` or `{}` at byte {}", close as char, self.pos)),
            }
        }
        fn string_end(&self, mut i: usize) -> Result<usize, String> {
            i += 1; // opening quote
            loop {
                match self.bytes().get(i) {
                    Some(b'\\') => i += 2,
                    Some(b'"') => return Ok(i + 1),
                    Some(_) => i += 1,
                    None => return Err("unterminated string".into()),
                }
            }
        }
        /// Skips one value, returning its source text.
        fn value(&mut self) -> Result<&'a str, String> {
            self.ws();
            let start = self.pos;
            match self.bytes().get(self.pos) {
                None => return Err("unexpected end of input".into()),
                Some(b'"') => self.pos = self.string_end(self.pos)?,
                Some(b'{' | b'[') => {
                    let mut depth = 0usize;
                    loop {
                        match self.bytes().get(self.pos) {
                            None => return Err("unterminated object or array".into()),
                            Some(b'"') => {
                                self.pos = self.string_end(self.pos)?;
                                continue;
                            }
                            Some(b'{' | b'[') => depth += 1,
                            Some(b'}' | b']') => depth -= 1,
                            Some(_) => {}
                        }
                        self.pos += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                Some(_) => {
                    while !matches!(
                        self.bytes().get(self.pos),
                        None | Some(b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r')
                    ) {
                        self.pos += 1;
                    }
                }
            }
            Ok(&self.text[start..self.pos])
        }
    }

    fn as_string(raw: &str) -> Result<String, String> {
        serde_json::from_str(raw).map_err(|e| format!("{raw}: {e}"))
    }

    pub(super) fn cases(text: &str) -> Result<Vec<Case>, String> {
        let mut s = Scanner { text, pos: 0 };
        let mut out = Vec::new();
        s.expect(b'[')?;
        loop {
            s.expect(b'{')?;
            let (mut name, mut schema, mut row) = (None, None, None);
            loop {
                let key = as_string(s.value()?)?;
                s.expect(b':')?;
                let value = s.value()?;
                match key.as_str() {
                    "name" => name = Some(as_string(value)?),
                    "schema" => schema = Some(as_string(value)?),
                    "row" => row = Some(value.to_owned()),
                    other => return Err(format!("unexpected key `{other}` in a case")),
                }
                if !s.more(b'}')? {
                    break;
                }
            }
            out.push(Case {
                name: name.ok_or("a case without `name`")?,
                schema: schema.ok_or("a case without `schema`")?,
                row: row.ok_or("a case without `row`")?,
            });
            if !s.more(b']')? {
                break;
            }
        }
        Ok(out)
    }
}
