//! A thousand tables through a pool of four connections (default streams multiplexed), against
//! the reference sink, with connection resets in the middle: every row of every table arrives,
//! and the sink never sees more connections than the pool's size plus the replacements.

use bqsink::{Auth, Endpoints, Record, RetryPolicy, Schema, TableRef, WriteMode};
use bqsink_engine::{BatchLimits, Router};
use bqsink_testkit::refsink::RefSink;
use bqsink_transport::{RowDescriptor, WriteClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_tables_share_four_connections() {
    let sink = RefSink::start().await.expect("sink");
    let schema_json =
        json!({"fields": [{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "t", "type": "STRING"}]});
    let schema: Schema = serde_json::from_value(schema_json.clone()).expect("schema");
    let descriptor = RowDescriptor::new(&schema).expect("descriptor");
    let client = WriteClient::connect(&Endpoints::emulator(&sink.rest_host(), &sink.grpc_host()), Auth::none())
        .await
        .expect("connect");
    let retry =
        RetryPolicy::default().with_backoff(std::time::Duration::from_millis(5), std::time::Duration::from_millis(50));
    // The breaker opens during the reset; a short cool-down keeps the test quick.
    let mut breaker = bqsink_engine::breaker::CircuitBreakerConfig::default();
    breaker.cool_down = std::time::Duration::from_millis(100);
    let shared = bqsink_engine::sink::Shared {
        breaker: bqsink_engine::breaker::CircuitBreaker::new(breaker).expect("breaker"),
        ..Default::default()
    };
    let mut router = Router::new(client, WriteMode::Streaming, 4, BatchLimits::default().with_max_rows(5), retry)
        .with_shared(shared);
    let n_tables: usize = std::env::var("MANY_TABLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let tables: Vec<TableRef> =
        (0..n_tables).map(|i| TableRef::new("many-project", "events", format!("event_{i}")).expect("table")).collect();
    for t in &tables {
        sink.create_table(&t.project, &t.dataset, &t.table, schema_json.clone()).expect("create");
        router.set_table(t.clone(), descriptor.clone()).await.expect("add");
    }
    for round in 0..10i64 {
        if round == 5 && std::env::var("NO_RESET").is_err() {
            sink.faults().reset_after(20);
        }
        for (i, t) in tables.iter().enumerate() {
            let id = round * 1_000 + i as i64;
            let refused =
                router.write(t, Record::new().with("id", id).with("t", t.table.clone())).await.expect("write");
            assert!(refused.is_none());
        }
    }
    router.finish().await.expect("finish");
    let stats = router.stats();
    assert_eq!(stats.rows_written, 10 * n_tables as u64, "{stats:?}");
    for (i, t) in tables.iter().enumerate() {
        let mut ids: Vec<i64> = sink
            .rows(&t.project, &t.dataset, &t.table)
            .iter()
            .map(|r| r["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let expected: Vec<i64> = (0..10).map(|round| round * 1_000 + i as i64).collect();
        assert_eq!(ids, expected, "table {}", t.table);
    }
    let connections = sink.stats().connections;
    assert!(
        connections <= 4 + stats.reconnects,
        "{connections} connections for 1,000 tables: at most the pool (4) plus {} replacements",
        stats.reconnects
    );
    assert!(router.pool().open_connections() <= 4);
}
