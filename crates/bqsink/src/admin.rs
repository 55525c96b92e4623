//! Administration of a dataset without a destination: credentials, the dataset itself, and an
//! overview of its tables (rows, partitioning, clustering). What the command line's `tables`
//! and `health` need before, or instead of, writing rows (`Admin::health` is with the other
//! checks, in `health.rs`).

use bqsink_core::{Clustering, TableRef, TimePartitioning};
use bqsink_transport::{Auth, Endpoints, RestClient};

use crate::Error;

pub use crate::connect::resolve_auth;

/// One relation of a dataset with its size and shape.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TableOverview {
    /// The table's id within its dataset.
    pub table: String,
    /// `TABLE`, `VIEW`, `MATERIALIZED_VIEW`, `EXTERNAL`, …
    pub table_type: String,
    /// Rows: managed storage plus the streaming buffer's estimate; `None` for views or when
    /// BigQuery does not say.
    pub rows: Option<u64>,
    /// Bytes in managed storage.
    pub bytes: Option<u64>,
    /// Top-level columns.
    pub columns: usize,
    /// Time partitioning, if any.
    pub time_partitioning: Option<TimePartitioning>,
    /// Clustering, if any.
    pub clustering: Option<Clustering>,
}

impl TableOverview {
    /// `DAY(at)`, `HOUR(_PARTITIONTIME)` or `-`.
    pub fn partitioning_label(&self) -> String {
        match &self.time_partitioning {
            Some(p) => format!("{}({})", p.partition_type, p.field.as_deref().unwrap_or("_PARTITIONTIME")),
            None => "-".into(),
        }
    }

    /// `a,b` or `-`.
    pub fn clustering_label(&self) -> String {
        match &self.clustering {
            Some(c) if !c.fields.is_empty() => c.fields.join(","),
            _ => "-".into(),
        }
    }
}

/// Dataset-level operations through the REST API.
#[derive(Clone, Debug)]
pub struct Admin {
    rest: RestClient,
}

impl Admin {
    /// An admin client for these endpoints and credentials.
    pub fn new(endpoints: &Endpoints, auth: Auth) -> Result<Self, Error> {
        Ok(Self { rest: RestClient::new(endpoints, auth)? })
    }

    /// The REST client underneath.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// Whether the dataset exists (and the credentials may see it).
    pub async fn dataset_exists(&self, project: &str, dataset: &str) -> Result<bool, Error> {
        Ok(self.rest.dataset_exists(project, dataset).await?)
    }

    /// Creates the dataset; `Ok(false)` when it already existed.
    pub async fn create_dataset(&self, project: &str, dataset: &str, location: Option<&str>) -> Result<bool, Error> {
        Ok(self.rest.create_dataset(project, dataset, location).await?)
    }

    /// Every table and view of a dataset with rows, partitioning and clustering, sorted by name;
    /// `None` when the dataset does not exist.
    pub async fn tables(&self, project: &str, dataset: &str) -> Result<Option<Vec<TableOverview>>, Error> {
        if !self.rest.dataset_exists(project, dataset).await? {
            return Ok(None);
        }
        let mut out = Vec::new();
        for entry in self.rest.list_tables(project, dataset).await? {
            let table = TableRef::new(project, dataset, &entry.table_id)?;
            let stats = self.rest.table_stats(&table).await?.unwrap_or_default();
            let table_type =
                stats.table_type.clone().or(entry.table_type.clone()).unwrap_or_else(|| "TABLE".to_owned());
            let rows = match (stats.num_rows, stats.streaming_buffer_rows) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            out.push(TableOverview {
                table: entry.table_id,
                rows: if table_type == "VIEW" { None } else { rows },
                table_type,
                bytes: stats.num_bytes,
                columns: stats.columns,
                time_partitioning: stats.time_partitioning.or(entry.time_partitioning),
                clustering: stats.clustering.or(entry.clustering),
            });
        }
        out.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(Some(out))
    }
}
