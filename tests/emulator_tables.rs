//! Dataset and table creation with partitioning and clustering, read back through `tables.get`.

use bqsink::{Destination, Endpoints, Field, FieldType, PartitionType, Schema, TableRef};
use bqsink_testkit::Emulator;

#[tokio::test(flavor = "multi_thread")]
async fn partitioned_and_clustered_tables_read_back_with_their_settings() {
    let emu = Emulator::start().expect("bqemulator starts");
    let endpoints = Endpoints::emulator(&emu.rest_host(), &emu.grpc_host());
    let schema = Schema::new(vec![
        Field::new("at", FieldType::Timestamp),
        Field::new("day", FieldType::Date),
        Field::new("country", FieldType::String),
        Field::new("user_id", FieldType::Int64),
    ]);
    for (table, field, kind) in [
        ("by_hour", "at", PartitionType::Hour),
        ("by_day", "at", PartitionType::Day),
        ("by_month", "day", PartitionType::Month),
        ("by_year", "day", PartitionType::Year),
    ] {
        let dest = Destination::builder()
            .endpoints(endpoints.clone())
            .project_id("conformance")
            .dataset_id("tables")
            .table_id(table)
            .schema(schema.clone())
            .partition_field(field)
            .partition_type(kind)
            .clustering_fields(["country", "user_id"])
            .build()
            .await
            .expect("creates the dataset and the table");
        let info = dest
            .rest()
            .get_table(&TableRef::new("conformance", "tables", table).expect("ref"))
            .await
            .expect("tables.get")
            .expect("the table exists");
        let p = info.time_partitioning.expect("partitioning is stored");
        assert_eq!((p.partition_type, p.field.as_deref()), (kind, Some(field)), "{table}");
        assert_eq!(info.clustering.map(|c| c.fields), Some(vec!["country".to_string(), "user_id".to_string()]));
        assert_eq!(info.schema, schema, "{table}");
        dest.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_never_refuses_a_missing_table_and_drop_removes_one() {
    let emu = Emulator::start().expect("bqemulator starts");
    let endpoints = Endpoints::emulator(&emu.rest_host(), &emu.grpc_host());
    let err = Destination::builder()
        .endpoints(endpoints.clone())
        .project_id("conformance")
        .dataset_id("tables")
        .table_id("missing")
        .create_disposition(bqsink::CreateDisposition::CreateNever)
        .build()
        .await
        .expect_err("a missing table with CREATE_NEVER fails");
    assert!(err.to_string().contains("conformance.tables.missing does not exist"), "{err}");

    let schema = Schema::new(vec![Field::new("x", FieldType::Int64)]);
    let dest = Destination::builder()
        .endpoints(endpoints)
        .project_id("conformance")
        .dataset_id("tables")
        .table_id("dropped")
        .schema(schema)
        .build()
        .await
        .expect("creates");
    let table = dest.table().clone();
    let rest = dest.rest().clone();
    dest.close().await.expect("close");
    assert!(rest.delete_table(&table).await.expect("delete"));
    assert!(rest.get_table(&table).await.expect("get").is_none());
    assert!(!rest.delete_table(&table).await.expect("second delete is a no-op"));
    let failed = rest.query("conformance", "SELECT * FROM `conformance.tables.dropped`").await;
    assert!(failed.is_err(), "querying a dropped table must fail, got {failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auto_table_management_off_a_destination_creates_nothing() {
    let emu = Emulator::start().expect("bqemulator starts");
    let config = bqsink::DestinationConfig::from_json(
        r#"{"project_id": "conformance", "dataset_id": "manual", "table_id": "t", "auto_detect_schema": false}"#,
    )
    .expect("config");
    let err = bqsink::DestinationBuilder::from_config(config)
        .endpoints(Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()))
        .schema(Schema::new(vec![Field::new("x", FieldType::Int64)]))
        .build()
        .await
        .expect_err("no DDL when auto table management is off");
    let text = err.to_string();
    assert!(text.contains("does not exist") && text.contains("BIGQUERY_AUTO_TABLE_MANAGEMENT"), "{text}");
    let rest = bqsink::RestClient::new(&Endpoints::emulator(&emu.rest_host(), &emu.grpc_host()), bqsink::Auth::none())
        .expect("rest");
    assert!(!rest.dataset_exists("conformance", "manual").await.expect("datasets.get"), "no dataset was created");
}
