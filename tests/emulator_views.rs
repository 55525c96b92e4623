//! The analysis views on bqemulator: Segment rows from hand-made payloads written through
//! `Destination`, the views created with `CREATE OR REPLACE VIEW` through `jobs.query`, then
//! queried: sessions split at the inactivity gap, duplicates dropped, each user's latest traits.

use std::collections::BTreeMap;

use bqsink::{Destination, Endpoints, PartitionType, Record, Timestamp};
use bqsink_schema::segment::{rows_from_payload, table_schema, SegmentOptions};
use bqsink_schema::views::{views, ViewOptions};
use bqsink_schema::{reconcile_schema, InferMode, SchemaInference};
use bqsink_testkit::Emulator;
use serde_json::{json, Value as Json};

const PROJECT: &str = "conformance";
const DATASET: &str = "views";

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("timestamp literal")
}

/// Micros as the emulator returns TIMESTAMP cells.
fn micros(s: &str) -> String {
    at(s).micros().to_string()
}

fn payloads() -> Vec<(Json, &'static str)> {
    let track = |id: &str, user: Option<&str>, anon: Option<&str>, event: &str, ts: &str| {
        json!({"type": "track", "messageId": id, "userId": user, "anonymousId": anon, "event": event,
               "properties": {"step": 1}, "timestamp": ts, "receivedAt": ts})
    };
    let page = |id: &str, user: Option<&str>, anon: Option<&str>, ts: &str| {
        json!({"type": "page", "messageId": id, "userId": user, "anonymousId": anon, "name": "Home",
               "properties": {"path": "/"}, "timestamp": ts, "receivedAt": ts})
    };
    let load1 = "2024-06-02T00:00:00Z";
    let load2 = "2024-06-02T01:00:00Z";
    vec![
        // An anonymous visitor: two visits 31 minutes apart.
        (page("p-a1", None, Some("anon-1"), "2024-06-01T09:00:00Z"), load1),
        (page("p-a2", None, Some("anon-1"), "2024-06-01T09:31:00Z"), load1),
        // u1: 10:00, 10:10, 10:20 (one session), then 11:00 and 11:25 (a second one).
        (track("t-1", Some("u1"), Some("anon-9"), "Order Completed", "2024-06-01T10:00:00Z"), load1),
        (page("p-1", Some("u1"), None, "2024-06-01T10:10:00Z"), load1),
        (track("t-2", Some("u1"), None, "Order Completed", "2024-06-01T10:20:00Z"), load1),
        (track("t-3", Some("u1"), None, "Signed Up", "2024-06-01T11:00:00Z"), load1),
        (page("p-2", Some("u1"), None, "2024-06-01T11:25:00Z"), load1),
        // The same track call loaded again later: the views must count it once.
        (track("t-2", Some("u1"), None, "Order Completed", "2024-06-01T10:20:00Z"), load2),
        (
            json!({"type": "identify", "messageId": "i-1", "userId": "u1", "traits": {"plan": "free", "seats": 1},
                "timestamp": "2024-06-01T10:00:00Z", "receivedAt": "2024-06-01T10:00:00Z"}),
            load1,
        ),
        (
            json!({"type": "identify", "messageId": "i-2", "userId": "u1", "traits": {"plan": "pro", "seats": 5},
                "timestamp": "2024-06-01T11:00:00Z", "receivedAt": "2024-06-01T11:00:00Z"}),
            load1,
        ),
        (
            json!({"type": "identify", "messageId": "i-3", "userId": "u2", "traits": {"plan": "free"},
                "timestamp": "2024-06-01T12:00:00Z", "receivedAt": "2024-06-01T12:00:00Z"}),
            load1,
        ),
    ]
}

async fn load(endpoints: &Endpoints) -> Vec<String> {
    let mut per_table: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for (payload, loaded) in payloads() {
        for row in rows_from_payload(&payload, at(loaded), &SegmentOptions::default()).expect("valid payload") {
            per_table.entry(row.table).or_default().push(row.record);
        }
    }
    for (table, records) in &per_table {
        let mut inference = SchemaInference::new(InferMode::Segment);
        records.iter().for_each(|r| inference.observe_normalized(r));
        let inferred = inference.finish();
        assert!(inferred.conflicts.is_empty(), "{table}: {:?}", inferred.conflicts);
        let plan = reconcile_schema(table, &table_schema(table), &inferred.schema);
        assert!(plan.conflicts.is_empty(), "{table}: {:?}", plan.conflicts);
        let dest = Destination::builder()
            .endpoints(endpoints.clone())
            .project_id(PROJECT)
            .dataset_id(DATASET)
            .table_id(table.as_str())
            .schema(plan.schema.clone())
            .partition_field("received_at")
            .partition_type(PartitionType::Day)
            .build()
            .await
            .expect("creates the table");
        let refused = dest.write_batch(records.clone()).await.expect("write");
        assert!(refused.is_empty(), "{table}: {refused:?}");
        dest.close().await.expect("close");
    }
    per_table.into_keys().collect()
}

fn cells(result: &bqsink_transport::QueryResult) -> Vec<Vec<String>> {
    result
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.as_str().map(str::to_owned).unwrap_or_else(|| c.to_string())).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn views_deduplicate_split_sessions_and_keep_latest_traits() {
    let emu = Emulator::start().expect("bqemulator starts");
    let endpoints = Endpoints::emulator(&emu.rest_host(), &emu.grpc_host());
    let tables = load(&endpoints).await;
    assert_eq!(tables, ["identifies", "order_completed", "pages", "signed_up", "tracks", "users"]);
    let rest = bqsink_transport::RestClient::new(&endpoints, bqsink_transport::Auth::none()).expect("client");

    let defs = views(PROJECT, DATASET, &tables, &ViewOptions::default()).expect("valid ids");
    for def in &defs {
        rest.query(PROJECT, &def.sql).await.unwrap_or_else(|e| panic!("{}: {e}\n{}", def.name, def.sql));
    }
    let q = |sql: String| {
        let rest = rest.clone();
        async move { cells(&rest.query(PROJECT, &sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"))) }
    };

    // Raw tracks hold the duplicate; the de-duplicated view keeps the later load.
    let raw = q(format!("SELECT COUNT(*) FROM `{PROJECT}`.`{DATASET}`.`tracks`")).await;
    assert_eq!(raw, [["4"]]);
    let dedup =
        q(format!("SELECT `id`, `loaded_at` FROM `{PROJECT}`.`{DATASET}`.`tracks_deduped` ORDER BY `id`")).await;
    let load1 = micros("2024-06-02T00:00:00Z");
    let load2 = micros("2024-06-02T01:00:00Z");
    assert_eq!(dedup, [["t-1", &load1], ["t-2", &load2], ["t-3", &load1]]);
    let per_event = q(format!("SELECT COUNT(*) FROM `{PROJECT}`.`{DATASET}`.`order_completed_deduped`")).await;
    assert_eq!(per_event, [["2"]]);

    let sessions_sql = |view: &str| {
        format!(
            "SELECT visitor_id, session_number, session_start, session_end, event_count, session_id \
             FROM `{PROJECT}`.`{DATASET}`.`{view}` ORDER BY visitor_id, session_number"
        )
    };
    let sessions = q(sessions_sql("sessions")).await;
    let row = |v: &str, n: &str, start: &str, end: &str, count: &str| {
        vec![v.to_owned(), n.to_owned(), micros(start), micros(end), count.to_owned(), format!("{v}-{n}")]
    };
    assert_eq!(
        sessions,
        [
            row("anon-1", "1", "2024-06-01T09:00:00Z", "2024-06-01T09:00:00Z", "1"),
            row("anon-1", "2", "2024-06-01T09:31:00Z", "2024-06-01T09:31:00Z", "1"),
            row("u1", "1", "2024-06-01T10:00:00Z", "2024-06-01T10:20:00Z", "3"),
            row("u1", "2", "2024-06-01T11:00:00Z", "2024-06-01T11:25:00Z", "2"),
        ]
    );

    // A 45-minute gap joins both pairs of visits.
    let mut wide = ViewOptions::default().with_session_gap(std::time::Duration::from_secs(45 * 60));
    wide.sessions_view = "sessions_45".into();
    let defs45 = views(PROJECT, DATASET, &tables, &wide).expect("valid ids");
    let def = defs45.iter().find(|d| d.name == "sessions_45").expect("sessions view");
    rest.query(PROJECT, &def.sql).await.expect("create sessions_45");
    let sessions = q(sessions_sql("sessions_45")).await;
    assert_eq!(
        sessions,
        [
            row("anon-1", "1", "2024-06-01T09:00:00Z", "2024-06-01T09:31:00Z", "2"),
            row("u1", "1", "2024-06-01T10:00:00Z", "2024-06-01T11:25:00Z", "5"),
        ]
    );

    let users =
        q(format!("SELECT `user_id`, `plan`, `seats` FROM `{PROJECT}`.`{DATASET}`.`users_current` ORDER BY `user_id`"))
            .await;
    assert_eq!(users, [["u1", "pro", "5"], ["u2", "free", "null"]]);

    // The same views again (as `bqsink views --apply` run twice would): replaced, not duplicated.
    let with_views: Vec<String> = tables.iter().cloned().chain(defs.iter().map(|d| d.name.clone())).collect();
    let again = views(PROJECT, DATASET, &with_views, &ViewOptions::default()).expect("valid ids");
    assert_eq!(again.iter().map(|d| &d.name).collect::<Vec<_>>(), defs.iter().map(|d| &d.name).collect::<Vec<_>>());
    for def in &again {
        rest.query(PROJECT, &def.sql).await.unwrap_or_else(|e| panic!("{}: {e}", def.name));
    }
}
