//! SQL views for analysing Segment tables: de-duplicated tables, sessions, users' current state.
//!
//! Every identifier is checked against BigQuery's rules and quoted with backticks; anything that
//! is not a valid project, dataset or table id is refused, never escaped. The SQL keeps to what
//! GoogleSQL and DuckDB-backed emulators both run: window functions in subqueries (no `QUALIFY`),
//! `SELECT * EXCEPT`, `TIMESTAMP_DIFF`, `COALESCE`, `CONCAT`.
//!
//! | view | from | one row per |
//! |---|---|---|
//! | `<table>_deduped` | each table | `id`, the row with the latest `loaded_at` |
//! | `sessions` | `tracks`, `pages`, `screens` (those present), de-duplicated | session: a visitor's run of events with no gap longer than the session gap (30 min by default) |
//! | `users_current` | `identifies` | `user_id`, its latest identify call (by `timestamp`, then `loaded_at`) |
//!
//! A visitor is `COALESCE(user_id, anonymous_id)`; events with neither are left out of sessions.

use std::fmt;
use std::time::Duration;

use bqsink_core::table::{validate_dataset_id, validate_project_id, validate_table_id};

/// Default inactivity gap that ends a session.
pub const DEFAULT_SESSION_GAP: Duration = Duration::from_secs(30 * 60);
/// Default name of the sessions view.
pub const DEFAULT_SESSIONS_VIEW: &str = "sessions";
/// Default name of the users' current state view.
pub const DEFAULT_USERS_VIEW: &str = "users_current";
/// Default suffix of de-duplicated views.
pub const DEFAULT_DEDUP_SUFFIX: &str = "_deduped";

/// Tables the sessions view reads, when present.
const SESSION_SOURCES: [&str; 3] = ["tracks", "pages", "screens"];
/// Name of the helper column the window functions number rows with.
const ROW_COLUMN: &str = "_bqsink_row";

/// Which views to make and how.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViewOptions {
    /// Inactivity that ends a session (default 30 minutes; whole seconds, at least one).
    pub session_gap: Duration,
    /// Name of the sessions view.
    pub sessions_view: String,
    /// Name of the users' current state view.
    pub users_view: String,
    /// Suffix of each table's de-duplicated view.
    pub dedup_suffix: String,
}

impl Default for ViewOptions {
    fn default() -> Self {
        Self {
            session_gap: DEFAULT_SESSION_GAP,
            sessions_view: DEFAULT_SESSIONS_VIEW.into(),
            users_view: DEFAULT_USERS_VIEW.into(),
            dedup_suffix: DEFAULT_DEDUP_SUFFIX.into(),
        }
    }
}

impl ViewOptions {
    /// Another session gap.
    pub fn with_session_gap(mut self, gap: Duration) -> Self {
        self.session_gap = gap;
        self
    }
}

/// One view: its name and the statement that creates (or replaces) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewDef {
    /// The view's table id.
    pub name: String,
    /// `CREATE OR REPLACE VIEW `p`.`d`.`name` AS …`, ready for `jobs.query`.
    pub sql: String,
    /// The view's query alone (what the view returns when selected from).
    pub select: String,
}

/// An identifier or option the views cannot be made with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// A project, dataset or table id that BigQuery would refuse.
    #[error("{what} `{value}` is not valid: {reason}")]
    InvalidId {
        /// `project`, `dataset`, `table` or `view`.
        what: &'static str,
        /// The id given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A view would replace a table of the same name.
    #[error("view `{0}` would have the name of a table in the dataset; choose another name")]
    NameTaken(String),
    /// A session gap under one second.
    #[error("the session gap must be at least one second")]
    Gap,
}

struct Quoted<'a> {
    project: &'a str,
    dataset: &'a str,
}

impl Quoted<'_> {
    fn table(&self, table: &str) -> String {
        format!("`{}`.`{}`.`{}`", self.project, self.dataset, table)
    }
}

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.project, self.dataset)
    }
}

fn check_table(what: &'static str, id: &str) -> Result<(), ViewError> {
    validate_table_id(id).map_err(|e| ViewError::InvalidId { what, value: id.to_owned(), reason: e.message })
}

/// The views for a dataset holding `tables` (see the module docs): a de-duplicated view per
/// table, then sessions when `tracks`, `pages` or `screens` is present, then users' current state
/// when `identifies` is present. Names in `tables` that are these views' own names (the sessions
/// and users views, anything ending with the de-duplication suffix) are taken to be views of an
/// earlier run and skipped; a view named like a Segment base table is refused.
pub fn views<S: AsRef<str>>(
    project: &str,
    dataset: &str,
    tables: &[S],
    opts: &ViewOptions,
) -> Result<Vec<ViewDef>, ViewError> {
    validate_project_id(project).map_err(|e| ViewError::InvalidId {
        what: "project",
        value: project.to_owned(),
        reason: e.message,
    })?;
    validate_dataset_id(dataset).map_err(|e| ViewError::InvalidId {
        what: "dataset",
        value: dataset.to_owned(),
        reason: e.message,
    })?;
    if opts.session_gap.as_secs() == 0 {
        return Err(ViewError::Gap);
    }
    for view in [&opts.sessions_view, &opts.users_view] {
        check_table("view", view)?;
        if crate::segment::BASE_TABLES.iter().any(|t| t.eq_ignore_ascii_case(view)) {
            return Err(ViewError::NameTaken(view.clone()));
        }
    }
    if !opts.dedup_suffix.is_empty() {
        check_table("view", &opts.dedup_suffix)?;
    }
    let q = Quoted { project, dataset };
    let is_view = |t: &str| {
        t == opts.sessions_view
            || t == opts.users_view
            || (!opts.dedup_suffix.is_empty() && t.ends_with(&opts.dedup_suffix))
    };
    let mut present: Vec<&str> = Vec::with_capacity(tables.len());
    for t in tables.iter().map(AsRef::as_ref) {
        check_table("table", t)?;
        if !is_view(t) && !present.contains(&t) {
            present.push(t);
        }
    }
    let taken = |name: &str| present.iter().any(|t| t.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    let mut push = |name: String, select: String| -> Result<(), ViewError> {
        check_table("view", &name)?;
        if taken(&name) {
            return Err(ViewError::NameTaken(name));
        }
        let sql = format!("CREATE OR REPLACE VIEW {} AS\n{select}", q.table(&name));
        out.push(ViewDef { name, sql, select });
        Ok(())
    };
    if opts.dedup_suffix.is_empty() {
        return Err(ViewError::InvalidId {
            what: "view",
            value: String::new(),
            reason: "the de-duplicated views need a suffix".into(),
        });
    }
    for t in &present {
        push(format!("{t}{}", opts.dedup_suffix), dedup_select(&q.table(t)))?;
    }
    let sources: Vec<String> = SESSION_SOURCES.iter().filter(|s| present.contains(s)).map(|s| q.table(s)).collect();
    if !sources.is_empty() {
        push(opts.sessions_view.clone(), sessions_select(&sources, opts.session_gap.as_secs()))?;
    }
    if present.contains(&"identifies") {
        push(opts.users_view.clone(), users_select(&q.table("identifies")))?;
    }
    Ok(out)
}

/// The latest row (by `loaded_at`) of each `id` of a table.
fn dedup_select(table: &str) -> String {
    format!(
        "SELECT * EXCEPT ({ROW_COLUMN})\nFROM (\n  SELECT *, ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY `loaded_at` DESC) AS {ROW_COLUMN}\n  FROM {table}\n)\nWHERE {ROW_COLUMN} = 1"
    )
}

/// Sessions over the de-duplicated events of `sources`, split where a visitor was inactive for
/// more than `gap_secs`.
fn sessions_select(sources: &[String], gap_secs: u64) -> String {
    let events = sources
        .iter()
        .map(|t| {
            format!(
                "  SELECT COALESCE(`user_id`, `anonymous_id`) AS visitor_id, `timestamp` AS event_time, `id` AS event_id\n  FROM (\n    SELECT `id`, `user_id`, `anonymous_id`, `timestamp`,\n      ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY `loaded_at` DESC) AS {ROW_COLUMN}\n    FROM {t}\n  )\n  WHERE {ROW_COLUMN} = 1 AND COALESCE(`user_id`, `anonymous_id`) IS NOT NULL"
            )
        })
        .collect::<Vec<_>>()
        .join("\n  UNION ALL\n");
    format!(
        "WITH events AS (\n{events}\n),\nmarked AS (\n  SELECT visitor_id, event_time,\n    CASE WHEN LAG(event_time) OVER (PARTITION BY visitor_id ORDER BY event_time, event_id) IS NULL\n      OR TIMESTAMP_DIFF(event_time, LAG(event_time) OVER (PARTITION BY visitor_id ORDER BY event_time, event_id), SECOND) > {gap_secs}\n    THEN 1 ELSE 0 END AS is_start,\n    event_id\n  FROM events\n),\nnumbered AS (\n  SELECT visitor_id, event_time,\n    SUM(is_start) OVER (PARTITION BY visitor_id ORDER BY event_time, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number\n  FROM marked\n)\nSELECT CONCAT(visitor_id, '-', CAST(session_number AS STRING)) AS session_id, visitor_id, session_number,\n  MIN(event_time) AS session_start, MAX(event_time) AS session_end, COUNT(*) AS event_count\nFROM numbered\nGROUP BY visitor_id, session_number"
    )
}

/// Each user's latest identify call.
fn users_select(identifies: &str) -> String {
    format!(
        "SELECT * EXCEPT ({ROW_COLUMN})\nFROM (\n  SELECT *, ROW_NUMBER() OVER (PARTITION BY `user_id` ORDER BY `timestamp` DESC, `loaded_at` DESC) AS {ROW_COLUMN}\n  FROM {identifies}\n  WHERE `user_id` IS NOT NULL\n)\nWHERE {ROW_COLUMN} = 1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(tables: &[&str]) -> Vec<ViewDef> {
        views("my-project", "analytics", tables, &ViewOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn one_dedup_view_per_table_then_sessions_and_users() {
        let v = make(&["tracks", "pages", "identifies", "order_completed", "tracks_deduped"]);
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tracks_deduped",
                "pages_deduped",
                "identifies_deduped",
                "order_completed_deduped",
                "sessions",
                "users_current"
            ]
        );
        assert!(v[0].sql.starts_with("CREATE OR REPLACE VIEW `my-project`.`analytics`.`tracks_deduped` AS\nSELECT"));
        assert!(v[0].select.contains("PARTITION BY `id` ORDER BY `loaded_at` DESC"));
        assert!(v[0].select.contains("FROM `my-project`.`analytics`.`tracks`"));
        assert!(!v[0].select.contains("QUALIFY"));
        let sessions = &v[4].select;
        assert!(sessions.contains("FROM `my-project`.`analytics`.`tracks`"));
        assert!(sessions.contains("FROM `my-project`.`analytics`.`pages`"));
        assert!(!sessions.contains("`screens`"));
        assert!(sessions.contains("SECOND) > 1800"));
        assert!(v[5].select.contains("PARTITION BY `user_id`"));
    }

    #[test]
    fn only_what_the_tables_allow() {
        let v = make(&["groups"]);
        assert_eq!(v.len(), 1);
        assert!(make(&[]).is_empty());
        let gap = ViewOptions::default().with_session_gap(Duration::from_secs(600));
        let v = views("p-123456", "d", &["screens"], &gap).unwrap_or_default();
        assert!(v[1].select.contains("SECOND) > 600"), "{}", v[1].select);
    }

    #[test]
    fn refuses_invalid_identifiers_instead_of_escaping() {
        let opts = ViewOptions::default();
        let err = |p: &str, d: &str, t: &[&str]| views(p, d, t, &opts).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("my-project`; DROP", "d", &["tracks"]).starts_with("project `my-project`; DROP` is not valid"));
        assert!(err("my-project", "a.b", &["tracks"]).starts_with("dataset `a.b` is not valid"));
        assert!(err("my-project", "d", &["t`x"]).starts_with("table `t`x` is not valid"));
        assert!(err("my-project", "d", &[""]).starts_with("table `` is not valid"));
        assert_eq!(err("my-project", "d", &["sessions_x", "sessions"]), "");
        let bad = ViewOptions { sessions_view: "s`".into(), ..ViewOptions::default() };
        assert!(views("my-project", "d", &["tracks"], &bad).is_err());
        assert_eq!(
            views("my-project", "d", &["tracks"], &ViewOptions::default().with_session_gap(Duration::ZERO)).err(),
            Some(ViewError::Gap)
        );
    }

    #[test]
    fn a_view_never_replaces_a_table() {
        let opts = ViewOptions { sessions_view: "pages".into(), ..ViewOptions::default() };
        let e = views("my-project", "d", &["pages"], &opts).err();
        assert_eq!(e, Some(ViewError::NameTaken("pages".into())));
    }
}
