//! The table itself: created with the configured partitioning and clustering, altered by legal
//! changes only, dropped; and the staging table WRITE_TRUNCATE writes to.

use std::time::Duration;

use bqsink_core::{ConfigError, DestinationConfig, FieldType, Mode, Schema, TableRef, TimePartitioning};
use bqsink_schema::Change;
use bqsink_transport::{RestClient, RowDescriptor, TableSpec};
use tracing::info;

use super::Destination;
use crate::Error;

impl Destination {
    /// Creates the table with `schema` (and the configured partitioning and clustering) when it
    /// does not exist; `Ok(false)` when it already did.
    pub async fn create_schema(&self, schema: &Schema) -> Result<bool, Error> {
        schema.validate()?;
        let spec = table_spec(&self.inner.config, schema)?;
        let created = self.inner.rest.create_table(&self.inner.table, &spec).await?;
        if created {
            self.adopt_live_schema().await?;
        }
        Ok(created)
    }

    /// Changes the table's schema towards `schema`, making only changes BigQuery accepts (add
    /// NULLABLE / REPEATED columns, relax REQUIRED, widen numbers). Anything else is refused
    /// before a request is sent, naming each column. Returns the changes made.
    pub async fn alter_schema(&self, schema: &Schema) -> Result<Vec<Change>, Error> {
        let info = self.inner.rest.get_table(&self.inner.table).await?.ok_or_else(|| Error::TableNotFound {
            table: self.inner.table.clone(),
            hint: "create it first with create_schema",
        })?;
        let (merged, changes) = bqsink_schema::plan_alter(&info.schema, schema).map_err(Error::SchemaChangeRefused)?;
        if !changes.is_empty() {
            if changes.iter().any(|c| matches!(c, Change::Widen { .. })) {
                // Rows encoded for the old type must be stored before the type changes.
                self.inner.sink.lock().await.flush().await?;
            }
            self.inner
                .rest
                .apply_schema_change(&self.inner.table, &info.schema, &merged, &changes, info.etag.as_deref())
                .await?;
            info!(table = %self.inner.table, changes = changes.len(), "altered table schema");
            self.adopt_live_schema().await?;
        }
        Ok(changes)
    }

    /// Deletes the table; `Ok(false)` when it did not exist. Writes after this fail.
    pub async fn drop_table(&self) -> Result<bool, Error> {
        Ok(self.inner.rest.delete_table(&self.inner.table).await?)
    }

    async fn adopt_live_schema(&self) -> Result<(), Error> {
        let schema = match self.inner.rest.get_table(&self.inner.table).await? {
            Some(info) => info.schema,
            None => return Ok(()),
        };
        let descriptor = RowDescriptor::new(&schema)?;
        self.inner.sink.lock().await.set_descriptor(descriptor).await?;
        if let Ok(mut s) = self.inner.schema.write() {
            *s = schema;
        }
        Ok(())
    }
}

pub(super) fn table_spec(config: &DestinationConfig, schema: &Schema) -> Result<TableSpec, Error> {
    let mut spec = TableSpec::new(schema.clone());
    if let Some(field) = &config.partition_field {
        let column = schema
            .field(field)
            .ok_or_else(|| ConfigError::new("partition_field", format!("`{field}` is not a column of the schema")))?;
        let ok_type = matches!(column.field_type, FieldType::Timestamp | FieldType::Date | FieldType::DateTime);
        if !ok_type || column.mode == Mode::Repeated {
            return Err(ConfigError::new(
                "partition_field",
                format!(
                    "`{field}` is {} {}; partitioning needs a TIMESTAMP, DATE or DATETIME column that is not REPEATED",
                    column.mode, column.field_type
                ),
            )
            .into());
        }
        spec = spec.with_time_partitioning(TimePartitioning {
            partition_type: config.partition_type,
            field: Some(column.name.clone()),
            require_partition_filter: config.require_partition_filter,
        });
    }
    if !config.clustering_fields.is_empty() {
        for c in &config.clustering_fields {
            let column = schema
                .field(c)
                .ok_or_else(|| ConfigError::new("clustering_fields", format!("`{c}` is not a column of the schema")))?;
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
        spec = spec.with_clustering(config.clustering_fields.clone());
    }
    Ok(spec)
}

/// How long a WRITE_TRUNCATE staging table outlives a load that never finished.
const STAGING_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Creates the table WRITE_TRUNCATE rows are written to: the target's schema, partitioning
/// and clustering (so the copy over the target is accepted), deleted by BigQuery after a day.
pub(super) async fn create_staging(rest: &RestClient, table: &TableRef) -> Result<TableRef, Error> {
    let info = rest
        .get_table(table)
        .await?
        .ok_or_else(|| Error::TableNotFound { table: table.clone(), hint: "it vanished while the load started" })?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{}_bqsink_staging_{:x}", table.table, nanos & 0xffff_ffff_ffff);
    let staging = TableRef::new(&table.project, &table.dataset, &name)?;
    let mut spec = TableSpec::new(info.schema).with_expiration(std::time::SystemTime::now() + STAGING_LIFETIME);
    if let Some(p) = info.time_partitioning {
        spec = spec.with_time_partitioning(p);
    }
    if let Some(c) = info.clustering {
        spec = spec.with_clustering(c.fields);
    }
    rest.create_table(&staging, &spec).await?;
    info!(%table, %staging, "WRITE_TRUNCATE: rows go to a staging table until the commit");
    Ok(staging)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bqsink_core::{Field, PartitionType};

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
        let spec = table_spec(b.config(), &schema()).expect("valid");
        assert_eq!(spec.time_partitioning.map(|p| p.partition_type), Some(PartitionType::Hour));
        assert!(table_spec(Destination::builder().partition_field("k").config(), &schema()).is_err());
        assert!(table_spec(Destination::builder().partition_field("nope").config(), &schema()).is_err());
        assert!(table_spec(Destination::builder().clustering_fields(["n"]).config(), &schema()).is_err());
    }
}
