//! The REST endpoints (`/bigquery/v2`): datasets, tables, `tabledata.list`.
//!
//! Sources: BigQuery API reference "datasets.insert / get / list / delete", "tables.insert / get /
//! list / patch / update / delete", "tabledata.list", the "Table" resource, and "Error messages"
//! (the `{"error":{"code","message","errors":[{"reason"}],"status"}}` shape, reasons `notFound`,
//! `duplicate`, `invalid`, `conditionNotMet`, `resourceInUse`, `unauthorized`), and "Modifying table
//! schemas" for what `tables.patch` accepts. `If-Match` with a stale etag answers 412.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value as Jv};

use super::schema::{check_patch, parse_schema, schema_json, ColMode, ColType, Column};
use super::state::{etag, now_ms, render_row, Shared, Table};

type Shr = State<Arc<Shared>>;

/// The router, with the bearer check in front of every route.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    const P: &str = "/bigquery/v2/projects/:project";
    Router::new()
        .route(&format!("{P}/datasets"), get(list_datasets).post(insert_dataset))
        .route(&format!("{P}/datasets/:dataset"), get(get_dataset).delete(delete_dataset))
        .route(&format!("{P}/datasets/:dataset/tables"), get(list_tables).post(insert_table))
        .route(
            &format!("{P}/datasets/:dataset/tables/:table"),
            get(get_table).patch(patch_table).put(patch_table).delete(delete_table),
        )
        .route(&format!("{P}/datasets/:dataset/tables/:table/data"), get(list_rows))
        .route(&format!("{P}/queries"), axum::routing::post(query))
        .fallback(|| async {
            error(StatusCode::NOT_FOUND, "notFound", "Not found: no such endpoint in the reference sink".into())
        })
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared)
}

async fn auth(State(shared): Shr, req: Request, next: Next) -> Response {
    shared.stat(|s| s.rest_requests += 1);
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match shared.check_auth(header) {
        Ok(()) => next.run(req).await,
        Err(message) => error(StatusCode::UNAUTHORIZED, "unauthorized", message),
    }
}

/// An error in BigQuery's shape.
fn error(status: StatusCode, reason: &str, message: String) -> Response {
    let status_name = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::CONFLICT => "ALREADY_EXISTS",
        StatusCode::PRECONDITION_FAILED => "FAILED_PRECONDITION",
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        _ => "INVALID_ARGUMENT",
    };
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
        "status": status_name,
    }});
    (status, Json(body)).into_response()
}

fn parse_body(body: &Bytes) -> Result<Map<String, Jv>, Box<Response>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Jv>(body) {
        Ok(Jv::Object(o)) => Ok(o),
        Ok(_) => {
            Err(Box::new(error(StatusCode::BAD_REQUEST, "invalid", "The request body must be a JSON object".into())))
        }
        Err(e) => Err(Box::new(error(StatusCode::BAD_REQUEST, "parseError", format!("Parse error: {e}")))),
    }
}

fn dataset_json(project: &str, dataset: &str, d: &super::state::Dataset) -> Jv {
    json!({
        "kind": "bigquery#dataset",
        "id": format!("{project}:{dataset}"),
        "datasetReference": {"projectId": project, "datasetId": dataset},
        "location": d.location,
        "etag": d.etag,
        "creationTime": d.created_ms.to_string(),
        "lastModifiedTime": d.created_ms.to_string(),
    })
}

fn table_json(project: &str, dataset: &str, table: &str, t: &Table) -> Jv {
    let mut o = Map::new();
    o.insert("kind".into(), json!("bigquery#table"));
    o.insert("id".into(), json!(format!("{project}:{dataset}.{table}")));
    o.insert("tableReference".into(), json!({"projectId": project, "datasetId": dataset, "tableId": table}));
    o.insert("schema".into(), schema_json(&t.schema));
    if let Some(p) = &t.time_partitioning {
        o.insert("timePartitioning".into(), p.clone());
    }
    if let Some(c) = &t.clustering {
        o.insert("clustering".into(), c.clone());
    }
    if let Some(d) = &t.description {
        o.insert("description".into(), json!(d));
    }
    o.insert("numRows".into(), json!(t.rows.len().to_string()));
    o.insert("etag".into(), json!(t.etag));
    o.insert("type".into(), json!("TABLE"));
    o.insert("location".into(), json!("US"));
    o.insert("creationTime".into(), json!(t.created_ms.to_string()));
    o.insert("lastModifiedTime".into(), json!(t.modified_ms.to_string()));
    Jv::Object(o)
}

async fn list_datasets(State(shared): Shr, Path(project): Path<String>) -> Response {
    let state = shared.state();
    let list: Vec<Jv> =
        state.datasets.iter().filter(|((p, _), _)| *p == project).map(|((p, d), ds)| dataset_json(p, d, ds)).collect();
    Json(json!({"kind": "bigquery#datasetList", "datasets": list})).into_response()
}

async fn insert_dataset(State(shared): Shr, Path(project): Path<String>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let reference = body.get("datasetReference");
    let Some(dataset) = reference.and_then(|r| r.get("datasetId")).and_then(Jv::as_str).map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Required parameter is missing: datasetReference.datasetId".into(),
        );
    };
    if reference.and_then(|r| r.get("projectId")).and_then(Jv::as_str).is_some_and(|p| p != project) {
        return error(StatusCode::BAD_REQUEST, "invalid", "datasetReference.projectId does not match the URL".into());
    }
    let location = body.get("location").and_then(Jv::as_str).unwrap_or("US").to_owned();
    let mut state = shared.state();
    let key = (project.clone(), dataset.clone());
    if state.datasets.contains_key(&key) {
        return error(StatusCode::CONFLICT, "duplicate", format!("Already Exists: Dataset {project}:{dataset}"));
    }
    let ds = state.new_dataset(location);
    let out = dataset_json(&project, &dataset, &ds);
    state.datasets.insert(key, ds);
    Json(out).into_response()
}

async fn get_dataset(State(shared): Shr, Path((project, dataset)): Path<(String, String)>) -> Response {
    let state = shared.state();
    match state.datasets.get(&(project.clone(), dataset.clone())) {
        Some(d) => Json(dataset_json(&project, &dataset, d)).into_response(),
        None => error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Dataset {project}:{dataset}")),
    }
}

async fn delete_dataset(
    State(shared): Shr,
    Path((project, dataset)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut state = shared.state();
    let key = (project.clone(), dataset.clone());
    let Some(d) = state.datasets.get(&key) else {
        return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Dataset {project}:{dataset}"));
    };
    if !d.tables.is_empty() && q.get("deleteContents").map(String::as_str) != Some("true") {
        return error(StatusCode::BAD_REQUEST, "resourceInUse", format!("Dataset {project}:{dataset} is still in use"));
    }
    state.datasets.remove(&key);
    StatusCode::NO_CONTENT.into_response()
}

async fn list_tables(State(shared): Shr, Path((project, dataset)): Path<(String, String)>) -> Response {
    let state = shared.state();
    let Some(d) = state.datasets.get(&(project.clone(), dataset.clone())) else {
        return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Dataset {project}:{dataset}"));
    };
    let tables: Vec<Jv> = d
        .tables
        .keys()
        .map(|t| {
            json!({"kind": "bigquery#table", "id": format!("{project}:{dataset}.{t}"), "type": "TABLE",
                   "tableReference": {"projectId": project, "datasetId": dataset, "tableId": t}})
        })
        .collect();
    Json(json!({"kind": "bigquery#tableList", "tables": tables, "totalItems": d.tables.len()})).into_response()
}

/// Applies the table resource's optional parts.
fn apply_metadata(t: &mut Table, body: &Map<String, Jv>) {
    if let Some(p) = body.get("timePartitioning") {
        t.time_partitioning = (!p.is_null()).then(|| p.clone());
    }
    if let Some(c) = body.get("clustering") {
        t.clustering = (!c.is_null()).then(|| c.clone());
    }
    if let Some(d) = body.get("description") {
        t.description = d.as_str().map(str::to_owned);
    }
}

async fn insert_table(State(shared): Shr, Path((project, dataset)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let reference = body.get("tableReference");
    let Some(table) = reference.and_then(|r| r.get("tableId")).and_then(Jv::as_str).map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Required parameter is missing: tableReference.tableId".into(),
        );
    };
    if table.is_empty() || table.len() > 1024 {
        return error(StatusCode::BAD_REQUEST, "invalid", format!("Invalid table ID \"{table}\""));
    }
    let schema = match parse_schema(body.get("schema").unwrap_or(&Jv::Null)) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    if let Some(f) = body.get("timePartitioning").and_then(|p| p.get("field")).and_then(Jv::as_str) {
        let ok = schema.iter().any(|c| {
            c.name.eq_ignore_ascii_case(f)
                && c.mode != ColMode::Repeated
                && matches!(c.ty, ColType::Timestamp | ColType::Date | ColType::DateTime)
        });
        if !ok {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME, and not REPEATED: {f}"),
            );
        }
    }
    let mut state = shared.state();
    let key = (project.clone(), dataset.clone());
    match state.datasets.get(&key) {
        None => return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Dataset {project}:{dataset}")),
        Some(d) if d.tables.contains_key(&table) => {
            return error(
                StatusCode::CONFLICT,
                "duplicate",
                format!("Already Exists: Table {project}:{dataset}.{table}"),
            )
        }
        Some(_) => {}
    }
    let mut t = state.new_table(schema);
    apply_metadata(&mut t, &body);
    let out = table_json(&project, &dataset, &table, &t);
    if let Some(d) = state.datasets.get_mut(&key) {
        d.tables.insert(table, t);
    }
    Json(out).into_response()
}

async fn get_table(State(shared): Shr, Path((project, dataset, table)): Path<(String, String, String)>) -> Response {
    let state = shared.state();
    match state.table(&(project.clone(), dataset.clone(), table.clone())) {
        Some(t) => Json(table_json(&project, &dataset, &table, t)).into_response(),
        None => error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Table {project}:{dataset}.{table}")),
    }
}

/// `tables.patch` (and `tables.update`, treated alike): `If-Match` checked against the etag;
/// a new schema must be a legal evolution of the current one; the etag changes on every change.
async fn patch_table(
    State(shared): Shr,
    Path((project, dataset, table)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let full = format!("{project}:{dataset}.{table}");
    let mut state = shared.state();
    let Some(t) = state.table_mut(&(project.clone(), dataset.clone(), table.clone())) else {
        return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Table {full}"));
    };
    if let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let want = want.trim().trim_start_matches("W/").trim_matches('"');
        if want != "*" && want != t.etag {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "conditionNotMet",
                format!("Precondition check failed: the etag of table {full} is not {want}"),
            );
        }
    }
    let new_schema = match body.get("schema") {
        None => None,
        Some(s) => match parse_schema(s) {
            Ok(s) => Some(s),
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
        },
    };
    if let Some(new) = &new_schema {
        if let Err(e) = check_patch(&full, &t.schema, new) {
            return error(StatusCode::BAD_REQUEST, "invalid", e);
        }
    }
    if let Some(new) = new_schema {
        if new != t.schema {
            t.schema = new;
            t.schema_version += 1;
        }
    }
    apply_metadata(t, &body);
    t.etag = etag();
    t.modified_ms = now_ms();
    Json(table_json(&project, &dataset, &table, t)).into_response()
}

async fn delete_table(State(shared): Shr, Path((project, dataset, table)): Path<(String, String, String)>) -> Response {
    let mut state = shared.state();
    let removed = state.datasets.get_mut(&(project.clone(), dataset.clone())).and_then(|d| d.tables.remove(&table));
    match removed {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Table {project}:{dataset}.{table}")),
    }
}

/// `tabledata.list`: rows in the `{"f":[{"v":…}]}` form, every scalar as a string (TIMESTAMP as µs,
/// as with `formatOptions.useInt64Timestamp=true`); `startIndex`, `maxResults` and `pageToken`
/// (an index) supported.
async fn list_rows(
    State(shared): Shr,
    Path((project, dataset, table)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = shared.state();
    let Some(t) = state.table(&(project.clone(), dataset.clone(), table.clone())) else {
        return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Table {project}:{dataset}.{table}"));
    };
    let start: usize = q.get("pageToken").or_else(|| q.get("startIndex")).and_then(|s| s.parse().ok()).unwrap_or(0);
    let max: usize = q.get("maxResults").and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let end = start.saturating_add(max).min(t.rows.len());
    let rows: Vec<Jv> = t
        .rows
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|r| fv_row(&render_row(r, &t.schema), &t.schema))
        .collect();
    let mut out =
        json!({"kind": "bigquery#tableDataList", "etag": t.etag, "totalRows": t.rows.len().to_string(), "rows": rows});
    if end < t.rows.len() {
        out["pageToken"] = json!(end.to_string());
    }
    Json(out).into_response()
}

fn fv_row(row: &Map<String, Jv>, columns: &[Column]) -> Jv {
    json!({"f": columns.iter().map(|c| json!({"v": fv_cell(row.get(&c.name), c, true)})).collect::<Vec<_>>()})
}

fn fv_cell(v: Option<&Jv>, c: &Column, whole: bool) -> Jv {
    match v {
        None | Some(Jv::Null) => Jv::Null,
        Some(Jv::Array(items)) if whole && c.mode == ColMode::Repeated => {
            Jv::Array(items.iter().map(|i| json!({"v": fv_cell(Some(i), c, false)})).collect())
        }
        Some(Jv::Object(o)) if c.ty == ColType::Record => fv_row(o, &c.fields),
        Some(Jv::Bool(b)) => json!(b.to_string()),
        Some(Jv::Number(n)) => json!(n.to_string()),
        Some(other) => other.clone(),
    }
}

/// `jobs.query`, for the one statement a writer needs that `tables.patch` cannot do:
/// `ALTER TABLE `p.d.t` ALTER COLUMN `c` SET DATA TYPE T` ("Modifying table schemas": a
/// top-level column, INT64 → NUMERIC / BIGNUMERIC / FLOAT64, NUMERIC → BIGNUMERIC / FLOAT64; the
/// same type again changes nothing). Any other statement is refused.
async fn query(State(shared): Shr, Path(project): Path<String>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let sql = body.get("query").and_then(serde_json::Value::as_str).unwrap_or_default();
    let Some((table, column, to)) = parse_alter_column(sql) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidQuery",
            format!("the reference sink runs only ALTER TABLE … ALTER COLUMN … SET DATA TYPE, not: {sql}"),
        );
    };
    let parts: Vec<&str> = table.split('.').collect();
    let [p, d, t] = parts.as_slice() else {
        return error(StatusCode::BAD_REQUEST, "invalidQuery", format!("`{table}` is not project.dataset.table"));
    };
    let mut state = shared.state();
    let Some(tab) = state.table_mut(&(p.to_string(), d.to_string(), t.to_string())) else {
        return error(StatusCode::NOT_FOUND, "notFound", format!("Not found: Table {p}:{d}.{t}"));
    };
    let Some(col) = tab.schema.iter_mut().find(|c| c.name.eq_ignore_ascii_case(&column)) else {
        return error(StatusCode::BAD_REQUEST, "invalidQuery", format!("Column {column} not found in table {t}"));
    };
    use super::schema::ColType as T;
    let legal = col.ty == to
        || matches!(
            (col.ty, to),
            (T::Int64, T::Numeric | T::BigNumeric | T::Float64) | (T::Numeric, T::BigNumeric | T::Float64)
        );
    if !legal {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidQuery",
            format!("ALTER TABLE ALTER COLUMN SET DATA TYPE requires that the existing column type ({}) is assignable to the new type ({})", col.ty.name(), to.name()),
        );
    }
    if col.ty != to {
        col.ty = to;
        tab.schema_version += 1;
        tab.etag = etag();
        tab.modified_ms = now_ms();
    }
    Json(serde_json::json!({
        "kind": "bigquery#queryResponse",
        "jobReference": {"projectId": project, "jobId": format!("refsink_{}", now_ms())},
        "jobComplete": true,
        "statementType": "ALTER_TABLE",
        "schema": {"fields": []},
        "rows": [],
        "totalRows": "0"
    }))
    .into_response()
}

/// `(project.dataset.table, column, type)` of an ALTER COLUMN SET DATA TYPE statement.
fn parse_alter_column(sql: &str) -> Option<(String, String, super::schema::ColType)> {
    let words: Vec<String> = sql.split_whitespace().map(|w| w.trim_end_matches(';').to_owned()).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let expect = ["ALTER", "TABLE", "", "ALTER", "COLUMN", "", "SET", "DATA", "TYPE", ""];
    if words.len() != expect.len() {
        return None;
    }
    for (w, e) in upper.iter().zip(expect) {
        if !e.is_empty() && w != e {
            return None;
        }
    }
    let unquote = |s: &str| s.trim_matches('`').to_owned();
    Some((unquote(&words[2]), unquote(&words[5]), super::schema::ColType::parse(&words[9])?))
}
