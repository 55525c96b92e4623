//! The BigQuery REST API (v2) for what the Storage Write API cannot do: datasets, tables and
//! queries.

use std::time::Duration;

use bqsink_core::{Clustering, Schema, TableRef, TimePartitioning};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tracing::debug;

use crate::auth::Auth;
use crate::endpoint::Endpoints;
use crate::error::TransportError;

/// How long a query may run before `query` gives up waiting.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// A REST client bound to one endpoint and credentials.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// What a table should be created with.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TableSpec {
    /// Columns.
    pub schema: Schema,
    /// Time partitioning, if any.
    pub time_partitioning: Option<TimePartitioning>,
    /// Clustering columns, if any.
    pub clustering: Option<Clustering>,
    /// Description.
    pub description: Option<String>,
    /// When BigQuery deletes the table by itself (staging tables that must not outlive a
    /// failed load).
    pub expires_at: Option<std::time::SystemTime>,
}

impl TableSpec {
    /// A table of these columns.
    pub fn new(schema: Schema) -> Self {
        Self { schema, ..Self::default() }
    }
    /// Partitioned by time.
    pub fn with_time_partitioning(mut self, p: TimePartitioning) -> Self {
        self.time_partitioning = Some(p);
        self
    }
    /// Clustered on columns.
    pub fn with_clustering(mut self, fields: Vec<String>) -> Self {
        self.clustering = Some(Clustering { fields });
        self
    }
    /// Deleted by BigQuery at `at`.
    pub fn with_expiration(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// A table as `tables.get` describes it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TableInfo {
    /// Columns.
    #[serde(default)]
    pub schema: Schema,
    /// Time partitioning, if any.
    #[serde(default)]
    pub time_partitioning: Option<TimePartitioning>,
    /// Clustering, if any.
    #[serde(default)]
    pub clustering: Option<Clustering>,
    /// Rows in managed storage (excludes the streaming buffer on BigQuery).
    #[serde(default, deserialize_with = "opt_u64_string")]
    pub num_rows: Option<u64>,
    /// Version tag for conditional updates.
    #[serde(default)]
    pub etag: Option<String>,
    /// `TABLE`, `VIEW`, …
    #[serde(default, rename = "type")]
    pub table_type: Option<String>,
}

fn opt_u64_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<Json> = Option::deserialize(d)?;
    Ok(match v {
        Some(Json::String(s)) => s.parse().ok(),
        Some(Json::Number(n)) => n.as_u64(),
        _ => None,
    })
}

/// Rows of a query, with cells as JSON (`null`, strings, nested arrays and objects for REPEATED
/// and RECORD columns), in the order of `schema`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    /// Result columns.
    pub schema: Schema,
    /// Rows of cells.
    pub rows: Vec<Vec<Json>>,
}

impl QueryResult {
    /// Index of a result column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.schema.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableResource<'a> {
    table_reference: Json,
    schema: &'a Schema,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_partitioning: Option<&'a TimePartitioning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clustering: Option<&'a Clustering>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    /// Milliseconds since the epoch, as a string (an int64 in JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<String>,
}

impl RestClient {
    /// A client for these endpoints.
    pub fn new(endpoints: &Endpoints, auth: Auth) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(180))
            .user_agent(concat!("bqsink/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Connect { endpoint: endpoints.rest.clone(), message: e.to_string() })?;
        Ok(Self { http, base: endpoints.rest.trim_end_matches('/').to_owned(), auth })
    }

    /// The REST base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json), TransportError> {
        self.call_if_match(method, path, body, None).await
    }

    async fn call_if_match(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Json>,
        if_match: Option<&str>,
    ) -> Result<(u16, Json), TransportError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(etag) = if_match {
            req = req.header("if-match", etag);
        }
        if let Some(h) = self.auth.header().await? {
            req = req.header("authorization", h);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| TransportError::Connect {
            endpoint: self.base.clone(),
            message: crate::error::source_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| TransportError::Protocol(e.to_string()))?;
        debug!(%method, path, status, "bigquery rest");
        let json: Json = if text.trim().is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Json::String(text.clone()))
        };
        if (200..300).contains(&status) {
            return Ok((status, json));
        }
        let err = &json["error"];
        Err(TransportError::Rest {
            method: method_name(&method),
            path: path.to_owned(),
            status,
            reason: err["errors"][0]["reason"].as_str().map(str::to_owned),
            message: err["message"].as_str().map(str::to_owned).unwrap_or_else(|| truncate(&text, 300)),
        })
    }

    /// `datasets.get`: whether the dataset exists.
    pub async fn dataset_exists(&self, project: &str, dataset: &str) -> Result<bool, TransportError> {
        match self.call(reqwest::Method::GET, &format!("/projects/{project}/datasets/{dataset}"), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `datasets.insert`; `Ok(false)` when it already exists.
    pub async fn create_dataset(
        &self,
        project: &str,
        dataset: &str,
        location: Option<&str>,
    ) -> Result<bool, TransportError> {
        let mut body = json!({ "datasetReference": { "projectId": project, "datasetId": dataset } });
        if let Some(loc) = location {
            body["location"] = json!(loc);
        }
        match self.call(reqwest::Method::POST, &format!("/projects/{project}/datasets"), Some(&body)).await {
            Ok(_) => Ok(true),
            Err(TransportError::Rest { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `tables.get`; `None` when the table does not exist.
    pub async fn get_table(&self, table: &TableRef) -> Result<Option<TableInfo>, TransportError> {
        let path = format!("/projects/{}/datasets/{}/tables/{}", table.project, table.dataset, table.table);
        match self.call(reqwest::Method::GET, &path, None).await {
            Ok((_, json)) => serde_json::from_value(json)
                .map(Some)
                .map_err(|e| TransportError::Protocol(format!("tables.get answer: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `tables.insert`; `Ok(false)` when it already exists.
    pub async fn create_table(&self, table: &TableRef, spec: &TableSpec) -> Result<bool, TransportError> {
        let resource = TableResource {
            table_reference: json!({ "projectId": table.project, "datasetId": table.dataset, "tableId": table.table }),
            schema: &spec.schema,
            time_partitioning: spec.time_partitioning.as_ref(),
            clustering: spec.clustering.as_ref(),
            description: spec.description.as_deref(),
            expiration_time: spec
                .expires_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis().to_string())),
        };
        let body = serde_json::to_value(&resource).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let path = format!("/projects/{}/datasets/{}/tables", table.project, table.dataset);
        match self.call(reqwest::Method::POST, &path, Some(&body)).await {
            Ok(_) => Ok(true),
            Err(TransportError::Rest { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `tables.patch` of the schema. With `etag`, BigQuery refuses (HTTP 412) when the table
    /// changed since that version was read, so concurrent writers cannot overwrite each other.
    pub async fn patch_table_schema(
        &self,
        table: &TableRef,
        schema: &Schema,
        etag: Option<&str>,
    ) -> Result<TableInfo, TransportError> {
        let path = format!("/projects/{}/datasets/{}/tables/{}", table.project, table.dataset, table.table);
        let body = json!({ "schema": schema });
        let (_, json) = self.call_if_match(reqwest::Method::PATCH, &path, Some(&body), etag).await?;
        serde_json::from_value(json).map_err(|e| TransportError::Protocol(format!("tables.patch answer: {e}")))
    }

    /// Applies a planned schema change (see `bqsink_schema::plan_alter`): new columns and
    /// relaxed modes through `tables.patch` (conditional on `etag`, so a concurrent change makes
    /// it fail with HTTP 412 rather than be overwritten), then each widened column through
    /// `ALTER TABLE … ALTER COLUMN … SET DATA TYPE` (which `tables.patch` cannot do). Returns the
    /// table as it is afterwards.
    pub async fn apply_schema_change(
        &self,
        table: &TableRef,
        current: &Schema,
        merged: &Schema,
        changes: &[bqsink_schema::Change],
        etag: Option<&str>,
    ) -> Result<Option<TableInfo>, TransportError> {
        let widened: Vec<(&str, bqsink_core::FieldType, bqsink_core::FieldType)> = changes
            .iter()
            .filter_map(|c| match c {
                bqsink_schema::Change::Widen { column, from, to } => Some((column.as_str(), *from, *to)),
                _ => None,
            })
            .collect();
        let mut patch = merged.clone();
        for (column, from, _) in &widened {
            if let Some(f) = patch.fields.iter_mut().find(|f| f.name.eq_ignore_ascii_case(column)) {
                f.field_type = *from;
            }
        }
        if &patch != current {
            self.patch_table_schema(table, &patch, etag).await?;
        }
        for (column, _, to) in &widened {
            let sql = format!(
                "ALTER TABLE `{}.{}.{}` ALTER COLUMN `{column}` SET DATA TYPE {}",
                table.project,
                table.dataset,
                table.table,
                to.name()
            );
            self.query(&table.project, &sql).await?;
        }
        self.get_table(table).await
    }

    /// `tables.delete`; `Ok(false)` when there was no such table.
    pub async fn delete_table(&self, table: &TableRef) -> Result<bool, TransportError> {
        let path = format!("/projects/{}/datasets/{}/tables/{}", table.project, table.dataset, table.table);
        match self.call(reqwest::Method::DELETE, &path, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `jobs.query` in GoogleSQL, waiting for the result. A job that reports errors — even
    /// in an HTTP 200 answer — is an error.
    pub async fn query(&self, project: &str, sql: &str) -> Result<QueryResult, TransportError> {
        let body = json!({ "query": sql, "useLegacySql": false, "timeoutMs": 60_000, "maxResults": 100_000 });
        let (_, mut resp) =
            self.call(reqwest::Method::POST, &format!("/projects/{project}/queries"), Some(&body)).await?;
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            check_query_errors(&resp)?;
            if resp["jobComplete"].as_bool().unwrap_or(true) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TransportError::Query(format!("no result after {QUERY_TIMEOUT:?}")));
            }
            let job = resp["jobReference"]["jobId"].as_str().unwrap_or_default().to_owned();
            let mut path = format!("/projects/{project}/queries/{job}?timeoutMs=10000");
            if let Some(loc) = resp["jobReference"]["location"].as_str() {
                path.push_str(&format!("&location={loc}"));
            }
            resp = self.call(reqwest::Method::GET, &path, None).await?.1;
        }
        let schema: Schema = serde_json::from_value(resp["schema"].clone()).unwrap_or_default();
        let rows = resp["rows"]
            .as_array()
            .map(|rows| rows.iter().map(|r| unwrap_row(r, &schema.fields)).collect())
            .unwrap_or_default();
        Ok(QueryResult { schema, rows })
    }

    /// A copy job from `source` into `destination` that replaces the destination's rows
    /// (WRITE_TRUNCATE) in one atomic step, creating it if needed; waits until the job is done.
    pub async fn replace_table_from(&self, source: &TableRef, destination: &TableRef) -> Result<(), TransportError> {
        let reference = |t: &TableRef| json!({ "projectId": t.project, "datasetId": t.dataset, "tableId": t.table });
        let body = json!({
            "configuration": { "copy": {
                "sourceTable": reference(source),
                "destinationTable": reference(destination),
                "createDisposition": "CREATE_IF_NEEDED",
                "writeDisposition": "WRITE_TRUNCATE",
            } }
        });
        let project = &destination.project;
        let (_, mut job) = self.call(reqwest::Method::POST, &format!("/projects/{project}/jobs"), Some(&body)).await?;
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        let mut wait = Duration::from_millis(100);
        loop {
            check_query_errors(&job)?;
            if job["status"]["state"].as_str().unwrap_or("DONE") == "DONE" {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TransportError::Query(format!(
                    "the copy job from {source} to {destination} is not done after {QUERY_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            let id = job["jobReference"]["jobId"].as_str().unwrap_or_default().to_owned();
            let mut path = format!("/projects/{project}/jobs/{id}");
            if let Some(loc) = job["jobReference"]["location"].as_str() {
                path.push_str(&format!("?location={loc}"));
            }
            job = self.call(reqwest::Method::GET, &path, None).await?.1;
        }
    }
}

fn check_query_errors(resp: &Json) -> Result<(), TransportError> {
    let msg = |e: &Json| e["message"].as_str().map(str::to_owned).unwrap_or_else(|| e.to_string());
    if let Some(errors) = resp["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(TransportError::Query(errors.iter().map(msg).collect::<Vec<_>>().join("; ")));
    }
    if resp["status"]["errorResult"].is_object() {
        return Err(TransportError::Query(msg(&resp["status"]["errorResult"])));
    }
    Ok(())
}

/// Turns the `{"f":[{"v":…}]}` row shape into plain cells.
fn unwrap_row(row: &Json, fields: &[bqsink_core::Field]) -> Vec<Json> {
    let cells = row["f"].as_array().map(Vec::as_slice).unwrap_or_default();
    cells.iter().enumerate().map(|(i, c)| unwrap_cell(&c["v"], fields.get(i))).collect()
}

fn unwrap_cell(v: &Json, field: Option<&bqsink_core::Field>) -> Json {
    let is_record = field.is_some_and(|f| f.field_type == bqsink_core::FieldType::Record);
    let repeated = field.is_some_and(|f| f.mode == bqsink_core::Mode::Repeated);
    match v {
        Json::Array(items) if repeated => {
            let single = field.map(|f| f.clone().with_mode(bqsink_core::Mode::Nullable));
            Json::Array(items.iter().map(|i| unwrap_cell(&i["v"], single.as_ref())).collect())
        }
        Json::Object(_) if is_record => {
            let sub = field.map(|f| f.fields.as_slice()).unwrap_or_default();
            let cells = unwrap_row(v, sub);
            Json::Object(sub.iter().zip(cells).map(|(f, c)| (f.name.clone(), c)).collect())
        }
        other => other.clone(),
    }
}

fn method_name(m: &reqwest::Method) -> &'static str {
    match *m {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PATCH => "PATCH",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        _ => "REQUEST",
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_200_with_errors_is_a_failure() {
        let resp = json!({"jobComplete": true, "errors": [{"message": "Table not found: x"}]});
        assert!(matches!(check_query_errors(&resp), Err(TransportError::Query(m)) if m.contains("Table not found")));
        assert!(check_query_errors(&json!({"jobComplete": true})).is_ok());
    }

    #[test]
    fn rows_unwrap_nested_cells() {
        let schema: Schema = serde_json::from_value(json!({"fields": [
            {"name": "a", "type": "INTEGER"},
            {"name": "t", "type": "STRING", "mode": "REPEATED"}]}))
        .expect("schema");
        let row = json!({"f": [{"v": "1"}, {"v": [{"v": "x"}, {"v": "y"}]}]});
        assert_eq!(unwrap_row(&row, &schema.fields), vec![json!("1"), json!(["x", "y"])]);
    }
}

/// One relation of a dataset, as `tables.list` names it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TableListEntry {
    /// The table's id within its dataset.
    pub table_id: String,
    /// `TABLE`, `VIEW`, `MATERIALIZED_VIEW`, `EXTERNAL`, …
    pub table_type: Option<String>,
    /// Time partitioning, if any.
    pub time_partitioning: Option<TimePartitioning>,
    /// Clustering, if any.
    pub clustering: Option<Clustering>,
}

/// Size and shape of one table, from `tables.get`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TableStats {
    /// `TABLE`, `VIEW`, …
    pub table_type: Option<String>,
    /// Rows in managed storage.
    pub num_rows: Option<u64>,
    /// Bytes in managed storage.
    pub num_bytes: Option<u64>,
    /// Rows still in the streaming buffer (estimated; BigQuery counts them apart from `num_rows`).
    pub streaming_buffer_rows: Option<u64>,
    /// Top-level columns.
    pub columns: usize,
    /// Time partitioning, if any.
    pub time_partitioning: Option<TimePartitioning>,
    /// Clustering, if any.
    pub clustering: Option<Clustering>,
}

/// A dataset, as `datasets.get` describes it.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct DatasetInfo {
    /// Where its data lives (`US`, `EU`, a region).
    pub location: Option<String>,
}

fn json_u64(v: &Json) -> Option<u64> {
    match v {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl RestClient {
    /// `datasets.get`; `None` when the dataset does not exist.
    pub async fn get_dataset(&self, project: &str, dataset: &str) -> Result<Option<DatasetInfo>, TransportError> {
        match self.call(reqwest::Method::GET, &format!("/projects/{project}/datasets/{dataset}"), None).await {
            Ok((_, json)) => Ok(Some(DatasetInfo { location: json["location"].as_str().map(str::to_owned) })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `tables.list`, following every page: the tables, views and other relations of a dataset.
    pub async fn list_tables(&self, project: &str, dataset: &str) -> Result<Vec<TableListEntry>, TransportError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry {
            table_reference: Json,
            #[serde(rename = "type")]
            table_type: Option<String>,
            time_partitioning: Option<TimePartitioning>,
            clustering: Option<Clustering>,
        }
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("/projects/{project}/datasets/{dataset}/tables?maxResults=1000");
            if let Some(token) = &page {
                path.push_str("&pageToken=");
                path.push_str(&url_escape(token));
            }
            let (_, json) = self.call(reqwest::Method::GET, &path, None).await?;
            let entries: Vec<Entry> = serde_json::from_value(json["tables"].clone()).unwrap_or_default();
            for e in entries {
                out.push(TableListEntry {
                    table_id: e.table_reference["tableId"].as_str().unwrap_or_default().to_owned(),
                    table_type: e.table_type,
                    time_partitioning: e.time_partitioning,
                    clustering: e.clustering,
                });
            }
            match json["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => page = Some(t.to_owned()),
                None => break,
            }
        }
        Ok(out)
    }

    /// `tables.get` for its size and shape; `None` when the table does not exist.
    pub async fn table_stats(&self, table: &TableRef) -> Result<Option<TableStats>, TransportError> {
        let path = format!("/projects/{}/datasets/{}/tables/{}", table.project, table.dataset, table.table);
        let json = match self.call(reqwest::Method::GET, &path, None).await {
            Ok((_, json)) => json,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(TableStats {
            table_type: json["type"].as_str().map(str::to_owned),
            num_rows: json_u64(&json["numRows"]),
            num_bytes: json_u64(&json["numBytes"]),
            streaming_buffer_rows: json_u64(&json["streamingBuffer"]["estimatedRows"]),
            columns: json["schema"]["fields"].as_array().map_or(0, Vec::len),
            time_partitioning: serde_json::from_value(json["timePartitioning"].clone()).ok(),
            clustering: serde_json::from_value(json["clustering"].clone()).ok(),
        }))
    }
}

/// Percent-encodes a query-string value.
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
