//! Tables that manage themselves, against the reference sink (which applies legal schema
//! changes, refuses illegal ones, checks etags and reports `updated_schema` — what bqemulator
//! cannot show): a stream of Segment events whose shapes change over time, nested records,
//! two writers evolving one table at once, the schema cache, and auto table management off.

use std::collections::BTreeMap;
use std::sync::Arc;

use bqsink::{dlq, DatasetWriter, Endpoints, Record, SegmentOptions, SegmentWriter};
use bqsink_testkit::refsink::RefSink;
use serde_json::json;

const PROJECT: &str = "evolve-project";

fn sample() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/segment/sample.ndjson");
    std::fs::read_to_string(path).expect("sample").lines().map(str::to_owned).filter(|l| !l.trim().is_empty()).collect()
}

fn builder(sink: &RefSink, dataset: &str) -> bqsink::DatasetWriterBuilder {
    DatasetWriter::builder()
        .endpoints(Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()))
        .project_id(PROJECT)
        .dataset_id(dataset)
        .batch_size(50)
}

async fn live_schema(rest: &bqsink::RestClient, dataset: &str, table: &str) -> bqsink::Schema {
    let t = bqsink::TableRef::new(PROJECT, dataset, table).expect("table ref");
    rest.get_table(&t).await.expect("tables.get").expect("table exists").schema
}

fn letters_of(rx: &crossbeam_channel::Receiver<bqsink::DeadLetter>) -> Vec<bqsink::DeadLetter> {
    rx.try_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_event_shapes_end_with_legal_schemas_and_every_row_accounted_for() {
    let sink = RefSink::start().await.expect("sink");
    let (queue, letters) = dlq::Channel::bounded(10_000);
    let writer =
        SegmentWriter::new(builder(&sink, "segment").dead_letter_queue(Arc::new(queue)), SegmentOptions::default())
            .await
            .expect("writer");
    // Unbounded input: each line as it comes, tables evolving on the way.
    let (mut read, mut refused) = (0u64, 0usize);
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in sample().iter().enumerate() {
        for row in writer.rows_of_line(line, i as u64 + 1).expect("the sample's payloads are valid") {
            *expected.entry(row.table).or_default() += 1;
        }
        let outcome = writer.write_line(line, i as u64 + 1).await.expect("write");
        read += outcome.rows;
        refused += outcome.refused.len();
    }
    let rest = writer.dataset().rest().clone();
    let metadata_calls = writer.dataset().metrics().metadata_calls;
    let summary = writer.close().await.expect("close");
    let letters = letters_of(&letters);
    assert_eq!(summary.rows_read, read);
    assert_eq!(summary.rows_written + summary.rows_dead_lettered, read, "{summary:?}");
    assert_eq!(letters.len(), refused);
    assert_eq!(summary.rows_dead_lettered as usize, refused);
    for l in &letters {
        assert!(!l.reason.column.is_empty() && l.reason.message.contains("expected"), "{}", l.reason);
    }
    // Table by table: rows in the sink plus dead letters equal the rows made from the input.
    for (table, n) in &expected {
        let stored = sink.rows(PROJECT, "segment", table).len();
        let dead = letters.iter().filter(|l| &l.reason.table.table == table).count();
        assert_eq!(stored + dead, *n, "{table}");
        let schema = live_schema(&rest, "segment", table).await;
        assert!(schema.validate().is_ok(), "{table}: {schema:?}");
    }
    let ty = |s: &bqsink::Schema, c: &str| s.field(c).map(|f| f.field_type);
    let viewed = live_schema(&rest, "segment", "product_viewed").await;
    assert_eq!(ty(&viewed, "price"), Some(bqsink::FieldType::Float64), "an int property later carrying floats");
    assert_eq!(ty(&viewed, "in_stock"), Some(bqsink::FieldType::Bool), "a bool later carrying strings stays BOOL");
    let tracks = live_schema(&rest, "segment", "tracks").await;
    assert!(tracks.field("product_id").is_none(), "tracks carries no custom properties");
    assert_eq!(ty(&tracks, "received_at"), Some(bqsink::FieldType::Timestamp));
    // A property called `user_id` never overwrites the reserved column.
    let added = sink.rows(PROJECT, "segment", "product_added");
    let ada = added.iter().find(|r| r.get("id") == Some(&json!("msg-005"))).expect("msg-005 stored");
    assert_eq!(ada.get("user_id"), Some(&json!("user-ada")), "{ada:?}");
    // The schema cache: metadata calls grow with tables and changes, not with rows.
    assert!(
        metadata_calls < 6 * expected.len() as u64,
        "{metadata_calls} metadata calls for {} tables",
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_are_added_inside_records_and_types_widen() {
    let sink = RefSink::start().await.expect("sink");
    let (queue, letters) = dlq::Channel::bounded(100);
    let writer = builder(&sink, "generic").dead_letter_queue(Arc::new(queue)).build().await.expect("writer");
    let rows = [
        r#"{"id": 1, "user": {"name": "ada"}, "score": 3}"#,
        r#"{"id": 2, "user": {"name": "bob", "age": 36}, "score": 4}"#,
        r#"{"id": 3, "user": {"name": "cy", "tags": ["a", "b"]}, "score": 4.5}"#,
        r#"{"id": 4, "score": "high"}"#,
    ];
    let mut refused = Vec::new();
    for r in rows {
        let record = Record::from_json_str(r).expect("json");
        if let Some(e) = writer.write("people", record).await.expect("write") {
            refused.push(e);
        }
    }
    let rest = writer.rest().clone();
    let summary = writer.close().await.expect("close");
    let letters: Vec<String> = letters_of(&letters).iter().map(|l| l.reason.to_string()).collect();
    assert_eq!((summary.rows_written, summary.rows_dead_lettered), (3, 1), "{summary:?} {letters:?}");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].column, "score");
    assert!(refused[0].message.contains("people.score: expected FLOAT64, got STRING"), "{}", refused[0].message);
    let schema = live_schema(&rest, "generic", "people").await;
    let user = schema.field("user").expect("user");
    let names: Vec<&str> = user.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["name", "age", "tags"]);
    assert_eq!(user.fields[2].mode, bqsink::Mode::Repeated);
    assert_eq!(schema.field("score").map(|f| f.field_type), Some(bqsink::FieldType::Float64));
    let stored = sink.rows(PROJECT, "generic", "people");
    assert_eq!(stored.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_evolving_one_table_at_once_both_succeed() {
    let sink = RefSink::start().await.expect("sink");
    let a = builder(&sink, "shared").build().await.expect("writer a");
    let b = builder(&sink, "shared").build().await.expect("writer b");
    // Both create the table, then each adds its own columns while the other does too.
    async fn write(w: &DatasetWriter, prefix: &str, id: i64) -> Result<Option<bqsink::RowError>, bqsink::Error> {
        let mut r = Record::new().with("id", id);
        r.insert(format!("{prefix}_{}", id % 5), id);
        r.insert("shared_col", format!("from {prefix}"));
        w.write("events", r).await
    }
    let (ra, rb) = tokio::join!(
        async {
            let mut refused = 0;
            for id in 0..200 {
                refused += usize::from(write(&a, "a", id).await.expect("a writes").is_some());
            }
            refused
        },
        async {
            let mut refused = 0;
            for id in 1_000..1_200 {
                refused += usize::from(write(&b, "b", id).await.expect("b writes").is_some());
            }
            refused
        }
    );
    assert_eq!((ra, rb), (0, 0), "no row refused");
    let rest = a.rest().clone();
    let (sa, sb) = (a.close().await.expect("close a"), b.close().await.expect("close b"));
    assert_eq!(sa.rows_written + sb.rows_written, 400);
    let schema = live_schema(&rest, "shared", "events").await;
    for c in ["id", "shared_col", "a_0", "a_4", "b_0", "b_4"] {
        assert!(schema.field(c).is_some(), "{c} in {schema:?}");
    }
    let stored = sink.rows(PROJECT, "shared", "events");
    assert_eq!(stored.len(), 400);
    let with_a3 = stored.iter().filter(|r| r.get("a_3").is_some_and(|v| !v.is_null())).count();
    assert_eq!(with_a3, 40, "every row keeps its own column's value");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_by_someone_else_is_picked_up_from_updated_schema() {
    let sink = RefSink::start().await.expect("sink");
    let writer = builder(&sink, "cache").batch_size(1).build().await.expect("writer");
    for id in 0..3 {
        assert!(writer.write("t", Record::new().with("id", id)).await.expect("write").is_none());
    }
    writer.flush().await.expect("flush");
    let before = writer.metrics().metadata_calls;
    // Another tool adds a column.
    let rest = writer.rest().clone();
    let t = bqsink::TableRef::new(PROJECT, "cache", "t").expect("ref");
    let live = rest.get_table(&t).await.expect("get").expect("exists");
    let mut wider = live.schema.clone();
    wider.fields.push(bqsink::Field::new("added_elsewhere", bqsink::FieldType::String));
    rest.patch_table_schema(&t, &wider, live.etag.as_deref()).await.expect("patch");
    for id in 3..6 {
        assert!(writer.write("t", Record::new().with("id", id)).await.expect("write").is_none());
    }
    writer.flush().await.expect("flush");
    let cached = writer.cached_schema("t").await.expect("cached");
    assert!(cached.field("added_elsewhere").is_some(), "updated_schema refreshed the cache: {cached:?}");
    assert!(writer.metrics().metadata_calls > before);
    // The new column is written without a schema change of ours.
    let r = Record::new().with("id", 6).with("added_elsewhere", "yes");
    assert!(writer.write("t", r).await.expect("write").is_none());
    writer.close().await.expect("close");
    assert!(sink.rows(PROJECT, "cache", "t").iter().any(|r| r.get("added_elsewhere") == Some(&json!("yes"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_writing_makes_no_metadata_call_per_row() {
    let sink = RefSink::start().await.expect("sink");
    let writer = builder(&sink, "steady").batch_size(500).build().await.expect("writer");
    for id in 0..10_000 {
        let r = Record::new().with("id", id).with("name", format!("n{id}"));
        assert!(writer.write("rows", r).await.expect("write").is_none());
    }
    let calls = writer.metrics().metadata_calls;
    let summary = writer.close().await.expect("close");
    assert_eq!(summary.rows_written, 10_000);
    // Dataset create, table get (missing), create, read back: a handful for the whole load.
    assert!(calls <= 5, "{calls} metadata calls for 10,000 rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auto_table_management_off_no_ddl_is_sent_and_rows_are_refused_clearly() {
    let sink = RefSink::start().await.expect("sink");
    sink.create_table(PROJECT, "manual", "existing", json!([{"name": "id", "type": "INT64"}])).expect("table");
    let (queue, letters) = dlq::Channel::bounded(100);
    let writer = builder(&sink, "manual")
        .auto_table_management(false)
        .dead_letter_queue(Arc::new(queue))
        .build()
        .await
        .expect("writer");
    let missing = writer.write("missing", Record::new().with("id", 1)).await.expect("write");
    let new_column = writer.write("existing", Record::new().with("id", 2).with("extra", "x")).await.expect("write");
    let fine = writer.write("existing", Record::new().with("id", 3)).await.expect("write");
    let rest = writer.rest().clone();
    let summary = writer.close().await.expect("close");
    assert!(fine.is_none());
    let missing = missing.expect("refused");
    assert!(missing.message.contains("does not exist") && missing.message.contains("BIGQUERY_AUTO_TABLE_MANAGEMENT"));
    let new_column = new_column.expect("refused");
    assert!(new_column.message.contains("BIGQUERY_AUTO_TABLE_MANAGEMENT"), "{}", new_column.message);
    assert_eq!((summary.rows_written, summary.rows_dead_lettered), (1, 2));
    assert_eq!(letters_of(&letters).len(), 2);
    let t = bqsink::TableRef::new(PROJECT, "manual", "missing").expect("ref");
    assert!(rest.get_table(&t).await.expect("get").is_none(), "no table was created");
    assert_eq!(live_schema(&rest, "manual", "existing").await.fields.len(), 1, "no column was added");
    assert_eq!(sink.rows(PROJECT, "manual", "existing").len(), 1);
}

#[test]
fn the_environment_switch_reads_true_and_false() {
    // The parsing is shared by the writer and the CLI.
    for (v, want) in [("true", Some(true)), ("FALSE", Some(false)), ("0", Some(false)), ("yes", Some(true))] {
        assert_eq!(bqsink::dataset::parse_switch(v), want, "{v}");
    }
    assert_eq!(bqsink::dataset::parse_switch("maybe"), None);
}
