//! Comparing query results with expected cells by meaning, per column type: numbers as numbers,
//! JSON as parsed documents, timestamps as µs, so a test fails on a wrong value and never on
//! how a server chose to print a right one.

use bqsink_core::{Decimal, Field, FieldType, Mode, Schema};
use bqsink_transport::QueryResult;
use serde_json::Value as Json;

/// Checks that `result` holds exactly `expected` (one JSON object per row, column → cell), in
/// order, with the columns of `schema`. Returns every mismatch, row by row, in the error.
///
/// Expected cells: INT64, NUMERIC, BIGNUMERIC, STRING, BYTES (base64), DATE, TIME, DATETIME,
/// GEOGRAPHY as text; TIMESTAMP as µs since 1970 (text or number); FLOAT64 as a number or `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; BOOL as a bool; JSON as the document; REPEATED as an array; NULL.
pub fn assert_cells_match(schema: &Schema, result: &QueryResult, expected: &[Json]) -> Result<(), String> {
    let mut problems = Vec::new();
    if result.rows.len() != expected.len() {
        problems.push(format!("expected {} rows, got {}", expected.len(), result.rows.len()));
    }
    for (r, (row, want)) in result.rows.iter().zip(expected).enumerate() {
        for field in &schema.fields {
            let Some(col) = result.column(&field.name) else {
                problems.push(format!("column `{}` is missing from the result", field.name));
                continue;
            };
            let got = row.get(col).unwrap_or(&Json::Null);
            let exp = want.get(&field.name).unwrap_or(&Json::Null);
            if let Err(why) = cell_matches(field, got, exp) {
                problems.push(format!(
                    "row {r} (id {}), column `{}`: {why}",
                    want.get("id").unwrap_or(&Json::Null),
                    field.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} mismatches:\n  {}", problems.len(), problems.join("\n  ")))
    }
}

fn cell_matches(field: &Field, got: &Json, exp: &Json) -> Result<(), String> {
    if field.mode == Mode::Repeated {
        let g = match got {
            Json::Array(a) => a.as_slice(),
            Json::Null => &[],
            other => return Err(format!("expected an array, got {other}")),
        };
        let e = exp.as_array().map(Vec::as_slice).unwrap_or_default();
        if g.len() != e.len() {
            return Err(format!("expected {} elements {exp}, got {} {got}", e.len(), g.len()));
        }
        let single = field.clone().with_mode(Mode::Nullable);
        for (i, (g, e)) in g.iter().zip(e).enumerate() {
            cell_matches(&single, g, e).map_err(|w| format!("element {i}: {w}"))?;
        }
        return Ok(());
    }
    match (got, exp) {
        (Json::Null, Json::Null) => return Ok(()),
        (Json::Null, _) | (_, Json::Null) => return Err(format!("expected {exp}, got {got}")),
        _ => {}
    }
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (g, e) = (text(got), text(exp));
    let same = match field.field_type {
        FieldType::Float64 => {
            float(&g).zip(float(&e)).is_some_and(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
        }
        FieldType::Numeric | FieldType::BigNumeric => {
            Decimal::parse(&g).ok().zip(Decimal::parse(&e).ok()).is_some_and(|(a, b)| a == b)
        }
        FieldType::Bool => g.eq_ignore_ascii_case(&e),
        FieldType::Timestamp => g.parse::<i64>().ok().zip(e.parse::<i64>().ok()).is_some_and(|(a, b)| a == b),
        FieldType::Json => {
            let parsed = match got {
                Json::String(s) => serde_json::from_str::<Json>(s).ok(),
                other => Some(other.clone()),
            };
            parsed.as_ref() == Some(exp)
        }
        FieldType::DateTime | FieldType::Time => civil_text(&g) == civil_text(&e),
        FieldType::Geography => squash(&g) == squash(&e),
        _ => g == e,
    };
    if same {
        Ok(())
    } else {
        Err(format!("expected {exp}, got {got}"))
    }
}

fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `2024-01-02 03:04:05.100000` and `2024-01-02T03:04:05.1` are the same civil time.
fn civil_text(s: &str) -> String {
    let s = s.replacen(' ', "T", 1);
    match s.split_once('.') {
        Some((head, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                head.to_owned()
            } else {
                format!("{head}.{frac}")
            }
        }
        None => s,
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace(", ", ",").replace(" (", "(")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_by_meaning_and_reports_differences() {
        let schema = Schema::new(vec![
            Field::new("id", FieldType::Int64),
            Field::new("f", FieldType::Float64),
            Field::new("j", FieldType::Json),
            Field::new("dt", FieldType::DateTime),
            Field::new("r", FieldType::Int64).repeated(),
        ]);
        let result = QueryResult {
            schema: schema.clone(),
            rows: vec![vec![
                json!("1"),
                json!("1.50"),
                json!("{\"a\": [1]}"),
                json!("2024-01-02 03:04:05.100000"),
                json!(["1", "2"]),
            ]],
        };
        let good = json!({"id": "1", "f": 1.5, "j": {"a": [1]}, "dt": "2024-01-02T03:04:05.1", "r": ["1", "2"]});
        assert_eq!(assert_cells_match(&schema, &result, &[good]), Ok(()));
        let bad = json!({"id": "1", "f": 1.25, "j": {"a": [2]}, "dt": "2024-01-02T03:04:05", "r": ["1"]});
        let err = assert_cells_match(&schema, &result, &[bad]).expect_err("four mismatches");
        assert!(err.starts_with("4 mismatches"), "{err}");
    }
}
