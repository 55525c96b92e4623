//! Typed-rows benchmark client: the 12 benchmark columns as a `#[derive(Serialize)]` struct,
//! built per row inside the timed loop and written with `Destination::write_typed` to the
//! endpoints named by `BIGQUERY_EMULATOR_HOST` / `BIGQUERY_STORAGE_EMULATOR_HOST`; prints one
//! JSON line with what it did. `cargo xtask bench` runs it under a CPU meter beside the Rust
//! peer building its prost structs the same way.
//!
//! ```text
//! bench_typed [--rows N] [--strings owned|borrowed] [--project P] [--dataset D] [--table T]
//! ```
//!
//! `owned`: every text column is a `String` made for the row (as the peer makes its prost
//! strings); `borrowed`: `&str`s pointing at text made before the loop.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use bqsink::{Date, Destination, Timestamp};
use bqsink_testkit::rows::twelve_column_schema;
use serde::Serialize;

#[derive(Serialize)]
struct Props<S> {
    plan: S,
}

/// One benchmark row; `S` is `String` or `&str`, `T` the tags' container.
#[derive(Serialize)]
struct Row<S, T> {
    id: i64,
    score: f64,
    ok: bool,
    event: S,
    user_id: S,
    page: S,
    agent: S,
    at: Timestamp,
    day: Date,
    amount: S,
    props: Props<S>,
    tags: T,
}

const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64)";

fn at(i: i64) -> Timestamp {
    Timestamp::from_micros(1_700_000_000_000_000 + i).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn day() -> Date {
    Date::from_days(19_700).unwrap_or(DAY_ZERO)
}

const DAY_ZERO: Date = match Date::from_days(0) {
    Some(d) => d,
    None => panic!("day 0 is a date"),
};

fn owned(i: i64) -> Row<String, Vec<String>> {
    Row {
        id: i,
        score: i as f64 * 0.5,
        ok: matches!(i % 3, 0),
        event: "page_view".into(),
        user_id: format!("user-{}", i % 1000),
        page: "/pricing".into(),
        agent: AGENT.into(),
        at: at(i),
        day: day(),
        amount: "1234.56".into(),
        props: Props { plan: "pro".into() },
        tags: vec!["a".into(), "b".into()],
    }
}

fn borrowed(i: i64, users: &[String]) -> Row<&str, &[&str]> {
    Row {
        id: i,
        score: i as f64 * 0.5,
        ok: matches!(i % 3, 0),
        event: "page_view",
        user_id: &users[(i % 1000) as usize],
        page: "/pricing",
        agent: AGENT,
        at: at(i),
        day: day(),
        amount: "1234.56",
        props: Props { plan: "pro" },
        tags: &["a", "b"],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut rows, mut borrowed_strings) = (1_000_000u64, false);
    let (mut project, mut dataset, mut table) = ("bench".to_owned(), "bench".to_owned(), "rows".to_owned());
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => rows = value()?.parse()?,
            "--strings" => {
                borrowed_strings = match value()?.as_str() {
                    "owned" => false,
                    "borrowed" => true,
                    other => anyhow::bail!("--strings is owned or borrowed, not {other}"),
                }
            }
            "--project" => project = value()?,
            "--dataset" => dataset = value()?,
            "--table" => table = value()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let started = Instant::now();
    let dest = Destination::builder()
        .project_id(&project)
        .dataset_id(&dataset)
        .table_id(&table)
        .schema(twelve_column_schema())
        .build()
        .await?;
    let users: Vec<String> = (0..1000).map(|u| format!("user-{u}")).collect();
    let setup_s = started.elapsed().as_secs_f64();

    let writing = Instant::now();
    let refused = if borrowed_strings {
        dest.write_typed((0..rows as i64).map(|i| borrowed(i, &users))).await?
    } else {
        dest.write_typed((0..rows as i64).map(owned)).await?
    };
    anyhow::ensure!(refused.is_empty(), "rows refused: {:?}", refused.first());
    let summary = dest.close().await?;
    let wall_s = writing.elapsed().as_secs_f64();
    anyhow::ensure!(summary.rows_written == rows, "{} of {rows} rows were acknowledged", summary.rows_written);
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "rows_written": summary.rows_written,
            "requests": summary.requests,
            "bytes_written": summary.bytes_written,
            "api": "write_typed",
            "strings": if borrowed_strings { "borrowed" } else { "owned" },
            "setup_s": setup_s,
            "wall_s": wall_s,
        })
    );
    Ok(())
}
