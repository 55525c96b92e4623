//! `Destination`: one BigQuery table to write rows into.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bqsink_core::{
    ConfigError, CreateDisposition, FieldType, Mode, PartitionType, Record, Schema, TableRef, TimePartitioning,
};
use bqsink_engine::{BatchLimits, RetryPolicy, TableSink};
use bqsink_transport::{Auth, Endpoints, RestClient, RowDescriptor, TableSpec, WriteClient};
use tokio::sync::Mutex;
use tracing::info;

use crate::Error;

/// Writes rows into one BigQuery table through the Storage Write API's default stream
/// (at-least-once, rows queryable as soon as they are acknowledged).
#[derive(Debug)]
pub struct Destination {
    table: TableRef,
    schema: Schema,
    rest: RestClient,
    sink: Mutex<TableSink>,
    rows_rejected: AtomicU64,
}

/// What a destination did, at `close`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Rows acknowledged by BigQuery.
    pub rows_written: u64,
    /// Rows refused (each returned to the caller as [`Error::Row`]).
    pub rows_rejected: u64,
    /// AppendRows requests acknowledged.
    pub requests: u64,
    /// Bytes of those requests.
    pub bytes_written: u64,
    /// Requests resent after temporary failures.
    pub retries: u64,
}

/// Builds a [`Destination`].
#[derive(Debug, Default)]
pub struct DestinationBuilder {
    project_id: Option<String>,
    dataset_id: Option<String>,
    table_id: Option<String>,
    schema: Option<Schema>,
    endpoints: Option<Endpoints>,
    credentials_path: Option<PathBuf>,
    auth: Option<Auth>,
    location: Option<String>,
    create_disposition: CreateDisposition,
    partition_field: Option<String>,
    partition_type: Option<PartitionType>,
    clustering_fields: Vec<String>,
    limits: BatchLimits,
    retry: RetryPolicy,
}

impl Destination {
    /// A builder with default settings.
    pub fn builder() -> DestinationBuilder {
        DestinationBuilder::default()
    }

    /// The table written to.
    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// The table's schema rows are encoded with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The REST client (datasets, tables, queries) with this destination's endpoint and credentials.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// Queues one row. A row that cannot be written returns [`Error::Row`] naming the column;
    /// other errors mean BigQuery could not take the batch the row was in.
    pub async fn write(&self, record: Record) -> Result<(), Error> {
        let mut sink = self.sink.lock().await;
        match sink.write(&record).await {
            Err(bqsink_engine::EngineError::Row(e)) => {
                self.rows_rejected.fetch_add(1, Ordering::Relaxed);
                Err(Error::Row(e))
            }
            other => other.map_err(Error::from),
        }
    }

    /// Queues many rows; returns the errors of rows that cannot be written, with their index in
    /// `records`. Fails as a whole only when BigQuery cannot take the rows.
    pub async fn write_batch(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Vec<bqsink_core::RowError>, Error> {
        let mut rejected = Vec::new();
        for (i, r) in records.into_iter().enumerate() {
            match self.write(r).await {
                Ok(()) => {}
                Err(Error::Row(e)) => rejected.push(e.at_row(i as u64)),
                Err(e) => return Err(e),
            }
        }
        Ok(rejected)
    }

    /// Sends every queued row and waits until BigQuery acknowledged them.
    pub async fn flush(&self) -> Result<(), Error> {
        self.sink.lock().await.flush().await.map_err(Error::from)
    }

    /// Flushes and reports what was written.
    pub async fn close(self) -> Result<Summary, Error> {
        let mut sink = self.sink.into_inner();
        sink.flush().await?;
        let s = sink.stats();
        Ok(Summary {
            rows_written: s.rows_written,
            rows_rejected: self.rows_rejected.load(Ordering::Relaxed),
            requests: s.requests,
            bytes_written: s.bytes_written,
            retries: s.retries,
        })
    }
}

impl DestinationBuilder {
    /// Google Cloud project.
    pub fn project_id(mut self, v: impl Into<String>) -> Self {
        self.project_id = Some(v.into());
        self
    }
    /// Dataset.
    pub fn dataset_id(mut self, v: impl Into<String>) -> Self {
        self.dataset_id = Some(v.into());
        self
    }
    /// Table.
    pub fn table_id(mut self, v: impl Into<String>) -> Self {
        self.table_id = Some(v.into());
        self
    }
    /// The schema to create the table with when it does not exist.
    pub fn schema(mut self, v: Schema) -> Self {
        self.schema = Some(v);
        self
    }
    /// Endpoints (default: the emulator named by `BIGQUERY_EMULATOR_HOST` /
    /// `BIGQUERY_STORAGE_EMULATOR_HOST`, else Google).
    pub fn endpoints(mut self, v: Endpoints) -> Self {
        self.endpoints = Some(v);
        self
    }
    /// A service-account key file (default: discovered credentials).
    pub fn credentials_path(mut self, v: impl Into<PathBuf>) -> Self {
        self.credentials_path = Some(v.into());
        self
    }
    /// Explicit credentials.
    pub fn auth(mut self, v: Auth) -> Self {
        self.auth = Some(v);
        self
    }
    /// Location of a dataset created by bqsink (`US`, `EU`, a region).
    pub fn location(mut self, v: impl Into<String>) -> Self {
        self.location = Some(v.into());
        self
    }
    /// Whether a missing table is created.
    pub fn create_disposition(mut self, v: CreateDisposition) -> Self {
        self.create_disposition = v;
        self
    }
    /// Partition a created table on this TIMESTAMP, DATE or DATETIME column.
    pub fn partition_field(mut self, v: impl Into<String>) -> Self {
        self.partition_field = Some(v.into());
        self
    }
    /// Partition granularity (default DAY).
    pub fn partition_type(mut self, v: PartitionType) -> Self {
        self.partition_type = Some(v);
        self
    }
    /// Cluster a created table on up to four columns.
    pub fn clustering_fields(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.clustering_fields = v.into_iter().map(Into::into).collect();
        self
    }
    /// Rows per AppendRows request.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.limits = self.limits.with_max_rows(rows);
        self
    }
    /// Batching limits.
    pub fn batch_limits(mut self, v: BatchLimits) -> Self {
        self.limits = v;
        self
    }
    /// Retry policy for temporary failures.
    pub fn retry_policy(mut self, v: RetryPolicy) -> Self {
        self.retry = v;
        self
    }

    fn table_spec(&self, schema: &Schema) -> Result<TableSpec, Error> {
        let mut spec = TableSpec::new(schema.clone());
        if self.partition_type.is_some() && self.partition_field.is_none() {
            return Err(ConfigError::new("partition_type", "needs partition_field, the column to partition on").into());
        }
        if let Some(field) = &self.partition_field {
            let column = schema.field(field).ok_or_else(|| {
                ConfigError::new("partition_field", format!("`{field}` is not a column of the schema"))
            })?;
            let ok_type = matches!(column.field_type, FieldType::Timestamp | FieldType::Date | FieldType::DateTime);
            if !ok_type || column.mode == Mode::Repeated {
                return Err(ConfigError::new(
                    "partition_field",
                    format!("`{field}` is {} {}; partitioning needs a TIMESTAMP, DATE or DATETIME column that is not REPEATED", column.mode, column.field_type),
                )
                .into());
            }
            spec = spec.with_time_partitioning(TimePartitioning {
                partition_type: self.partition_type.unwrap_or_default(),
                field: Some(column.name.clone()),
                require_partition_filter: false,
            });
        }
        if !self.clustering_fields.is_empty() {
            if self.clustering_fields.len() > bqsink_core::table::MAX_CLUSTERING_FIELDS {
                return Err(ConfigError::new("clustering_fields", "BigQuery clusters on at most 4 columns").into());
            }
            for c in &self.clustering_fields {
                let column = schema.field(c).ok_or_else(|| {
                    ConfigError::new("clustering_fields", format!("`{c}` is not a column of the schema"))
                })?;
                if matches!(
                    column.field_type,
                    FieldType::Record | FieldType::Json | FieldType::Float64 | FieldType::Geography
                ) || column.mode == Mode::Repeated
                {
                    return Err(ConfigError::new(
                        "clustering_fields",
                        format!(
                            "`{c}` is {} {}; clustering needs a top-level, non-repeated column of a groupable type",
                            column.mode, column.field_type
                        ),
                    )
                    .into());
                }
            }
            spec = spec.with_clustering(self.clustering_fields.clone());
        }
        Ok(spec)
    }

    /// Checks the settings, connects, creates the dataset and table when missing (and allowed),
    /// and returns a destination ready to write.
    pub async fn build(self) -> Result<Destination, Error> {
        let project = self.project_id.clone().ok_or_else(|| ConfigError::new("project_id", "is required"))?;
        let dataset = self.dataset_id.clone().ok_or_else(|| ConfigError::new("dataset_id", "is required"))?;
        let table_id = self.table_id.clone().ok_or_else(|| ConfigError::new("table_id", "is required"))?;
        let table = TableRef::new(project, dataset, table_id)?;
        if let Some(s) = &self.schema {
            s.validate()?;
        }
        let spec = self.schema.as_ref().map(|s| self.table_spec(s)).transpose()?;
        let endpoints = self.endpoints.clone().unwrap_or_else(Endpoints::from_env);
        let auth = match (&self.auth, &self.credentials_path) {
            (Some(a), _) => a.clone(),
            _ if endpoints.emulator => Auth::none(),
            (None, Some(path)) => Auth::from_key_file(path)?,
            (None, None) => Auth::discover().await?,
        };
        let rest = RestClient::new(&endpoints, auth.clone())?;
        let schema = match rest.get_table(&table).await? {
            Some(info) => info.schema,
            None => {
                if self.create_disposition == CreateDisposition::CreateNever {
                    return Err(Error::TableNotFound {
                        table,
                        hint: "create it first, or use create_disposition CREATE_IF_NEEDED with a schema",
                    });
                }
                let Some(spec) = spec else {
                    return Err(Error::TableNotFound { table, hint: "give a schema to create it with" });
                };
                if !rest.dataset_exists(&table.project, &table.dataset).await? {
                    rest.create_dataset(&table.project, &table.dataset, self.location.as_deref()).await?;
                    info!(project = %table.project, dataset = %table.dataset, "created dataset");
                }
                if rest.create_table(&table, &spec).await? {
                    info!(%table, "created table");
                }
                // Read back what BigQuery stored: its schema is the one rows must match.
                rest.get_table(&table).await?.map(|i| i.schema).unwrap_or(spec.schema)
            }
        };
        let descriptor = RowDescriptor::new(&schema)?;
        let client = WriteClient::connect(&endpoints, auth).await?;
        let sink = TableSink::new(client, table.clone(), descriptor, self.limits, self.retry);
        Ok(Destination { table, schema, rest, sink: Mutex::new(sink), rows_rejected: AtomicU64::new(0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("ts", FieldType::Timestamp),
            Field::new("n", FieldType::Float64),
            Field::new("k", FieldType::String),
        ])
    }

    #[test]
    fn partitioning_and_clustering_are_checked_against_the_schema() {
        let b =
            Destination::builder().partition_field("ts").partition_type(PartitionType::Hour).clustering_fields(["k"]);
        let spec = b.table_spec(&schema()).expect("valid");
        assert_eq!(spec.time_partitioning.map(|p| p.partition_type), Some(PartitionType::Hour));
        assert!(Destination::builder().partition_field("k").table_spec(&schema()).is_err());
        assert!(Destination::builder().partition_field("nope").table_spec(&schema()).is_err());
        assert!(Destination::builder().clustering_fields(["n"]).table_spec(&schema()).is_err());
        assert!(Destination::builder().partition_type(PartitionType::Day).table_spec(&schema()).is_err());
    }
}
