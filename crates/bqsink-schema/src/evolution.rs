//! Planning a schema change that BigQuery accepts on an existing table.
//!
//! BigQuery allows, on an existing table: adding NULLABLE or REPEATED columns (also inside a
//! RECORD), relaxing REQUIRED to NULLABLE (both through `tables.patch`), and widening a top-level
//! column INT64 → NUMERIC / BIGNUMERIC / FLOAT64 and NUMERIC → BIGNUMERIC / FLOAT64 (through
//! `ALTER TABLE … ALTER COLUMN … SET DATA TYPE`; `tables.patch` refuses type changes). Everything else (dropping or renaming a column, narrowing a
//! type, adding a REQUIRED column, changing a mode to or from REPEATED) is refused here, before
//! any request is sent.

use std::fmt;

use bqsink_core::{Field, FieldType, Mode, Schema};

/// One accepted change.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A new column (dotted path), NULLABLE or REPEATED.
    AddColumn(String),
    /// REQUIRED → NULLABLE.
    Relax(String),
    /// A type widened.
    Widen {
        /// Dotted path of the column.
        column: String,
        /// Type before.
        from: FieldType,
        /// Type after.
        to: FieldType,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddColumn(c) => write!(f, "add column {c}"),
            Self::Relax(c) => write!(f, "relax {c} to NULLABLE"),
            Self::Widen { column, from, to } => write!(f, "widen {column} from {from} to {to}"),
        }
    }
}

/// A change BigQuery would refuse, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Dotted path of the column.
    pub column: String,
    /// Why BigQuery refuses it.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.column, self.reason)
    }
}

/// Whether BigQuery widens a column from `from` to `to` in place.
pub fn is_widening(from: FieldType, to: FieldType) -> bool {
    use FieldType::*;
    matches!((from, to), (Int64, Numeric | BigNumeric | Float64) | (Numeric, BigNumeric | Float64))
}

/// Plans the change from `current` to `desired`. Columns of `current` missing from `desired`
/// are kept (BigQuery cannot drop them this way). Returns the schema to send and the changes
/// it makes, or every refused change.
pub fn plan_alter(current: &Schema, desired: &Schema) -> Result<(Schema, Vec<Change>), Vec<Refusal>> {
    let mut changes = Vec::new();
    let mut refusals = Vec::new();
    let fields = merge(&current.fields, &desired.fields, "", &mut changes, &mut refusals);
    if refusals.is_empty() {
        Ok((Schema::new(fields), changes))
    } else {
        Err(refusals)
    }
}

fn merge(
    current: &[Field],
    desired: &[Field],
    prefix: &str,
    changes: &mut Vec<Change>,
    refusals: &mut Vec<Refusal>,
) -> Vec<Field> {
    let path = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
    let mut out: Vec<Field> = Vec::with_capacity(current.len().max(desired.len()));
    for cur in current {
        let Some(want) = desired.iter().find(|d| d.name.eq_ignore_ascii_case(&cur.name)) else {
            out.push(cur.clone());
            continue;
        };
        let p = path(&cur.name);
        let mut merged = cur.clone();
        if want.field_type != cur.field_type {
            if is_widening(cur.field_type, want.field_type) && !prefix.is_empty() {
                // Types change through `ALTER COLUMN … SET DATA TYPE`, which takes top-level
                // columns only.
                refusals.push(Refusal {
                    column: p.clone(),
                    reason: format!(
                        "BigQuery changes the type of top-level columns only; {} inside a RECORD stays {}",
                        p, cur.field_type
                    ),
                });
            } else if is_widening(cur.field_type, want.field_type) {
                merged.field_type = want.field_type;
                changes.push(Change::Widen { column: p.clone(), from: cur.field_type, to: want.field_type });
            } else {
                refusals.push(Refusal {
                    column: p.clone(),
                    reason: format!(
                        "BigQuery cannot change {} to {} (only INT64 → NUMERIC/BIGNUMERIC/FLOAT64 and NUMERIC → BIGNUMERIC/FLOAT64)",
                        cur.field_type, want.field_type
                    ),
                });
            }
        }
        match (cur.mode, want.mode) {
            (a, b) if a == b => {}
            (Mode::Required, Mode::Nullable) => {
                merged.mode = Mode::Nullable;
                changes.push(Change::Relax(p.clone()));
            }
            // Keeping a column NULLABLE when REQUIRED is asked is not a change BigQuery makes.
            (Mode::Nullable, Mode::Required) => refusals
                .push(Refusal { column: p.clone(), reason: "BigQuery cannot make an existing column REQUIRED".into() }),
            (a, b) => refusals.push(Refusal {
                column: p.clone(),
                reason: format!("BigQuery cannot change a column's mode from {a} to {b}"),
            }),
        }
        if cur.field_type == FieldType::Record && want.field_type == FieldType::Record {
            merged.fields = merge(&cur.fields, &want.fields, &p, changes, refusals);
        }
        out.push(merged);
    }
    for want in desired {
        if current.iter().any(|c| c.name.eq_ignore_ascii_case(&want.name)) {
            continue;
        }
        let p = path(&want.name);
        if want.mode == Mode::Required {
            refusals.push(Refusal {
                column: p,
                reason: "a column added to an existing table must be NULLABLE or REPEATED".into(),
            });
            continue;
        }
        if let Some(inner) = first_required(&want.fields, &p) {
            refusals.push(Refusal {
                column: inner,
                reason: "a column added to an existing table must be NULLABLE or REPEATED".into(),
            });
            continue;
        }
        changes.push(Change::AddColumn(p));
        out.push(want.clone());
    }
    out
}

fn first_required(fields: &[Field], prefix: &str) -> Option<String> {
    fields.iter().find_map(|f| {
        let p = format!("{prefix}.{}", f.name);
        if f.mode == Mode::Required {
            Some(p)
        } else {
            first_required(&f.fields, &p)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    #[test]
    fn refuses_to_widen_a_column_inside_a_record() {
        let record = |t| Schema::new(vec![Field::record("r", vec![Field::new("n", t)])]);
        let refused = plan_alter(&record(FieldType::Int64), &record(FieldType::Float64)).expect_err("refused");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].column, "r.n");
        assert!(refused[0].reason.contains("top-level"), "{}", refused[0].reason);
    }

    #[test]
    fn accepts_additions_relaxations_and_widenings() {
        let current = s(vec![
            Field::new("id", FieldType::Int64).required(),
            Field::new("n", FieldType::Int64),
            Field::record("r", vec![Field::new("a", FieldType::String)]),
        ]);
        let desired = s(vec![
            Field::new("id", FieldType::Int64),
            Field::new("n", FieldType::Float64),
            Field::record("r", vec![Field::new("a", FieldType::String), Field::new("b", FieldType::Bool)]),
            Field::new("tags", FieldType::String).repeated(),
        ]);
        let (merged, changes) = plan_alter(&current, &desired).expect("legal");
        assert_eq!(merged.fields.len(), 4);
        assert_eq!(merged.fields[2].fields.len(), 2);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["relax id to NULLABLE", "widen n from INT64 to FLOAT64", "add column r.b", "add column tags"]
        );
    }

    #[test]
    fn refuses_what_bigquery_refuses_and_keeps_missing_columns() {
        let current = s(vec![Field::new("a", FieldType::String), Field::new("b", FieldType::Float64)]);
        let desired = s(vec![
            Field::new("a", FieldType::Int64),
            Field::new("c", FieldType::Int64).required(),
            Field::new("b", FieldType::Float64).repeated(),
        ]);
        let refused = plan_alter(&current, &desired).expect_err("illegal");
        let cols: Vec<&str> = refused.iter().map(|r| r.column.as_str()).collect();
        assert_eq!(cols, ["a", "b", "c"]);
        let (kept, changes) = plan_alter(&current, &s(vec![Field::new("a", FieldType::String)])).expect("legal");
        assert_eq!((kept.fields.len(), changes.len()), (2, 0));
    }
}
