//! Health checks, each with its own result: of a [`Destination`] (connectivity, dataset,
//! table, recent error rate), and through [`Admin`] when no destination can be built.

use bqsink_core::TableRef;
use bqsink_engine::breaker::BreakerState;

use crate::admin::Admin;
use crate::destination::Destination;

/// Error rate (failed requests / all requests) above which `health()` reports a problem.
pub const HEALTHY_ERROR_RATE: f64 = 0.1;

/// One check of [`Destination::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// What was checked: `connectivity`, `dataset`, `table`, `error_rate`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The result of [`Destination::health`]: each check with its own result.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The checks, in order.
    pub checks: Vec<HealthCheck>,
}

impl Health {
    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl Destination {
    /// Checks connectivity, dataset access, the table's existence and the recent error rate,
    /// each with its own result. Never fails as a whole: a failed check says why.
    pub async fn health(&self) -> Health {
        let rest = self.rest();
        let t = self.table();
        let mut checks = Vec::new();
        let dataset = rest.dataset_exists(&t.project, &t.dataset).await;
        checks.push(HealthCheck {
            name: "connectivity",
            ok: dataset.is_ok(),
            detail: match &dataset {
                Ok(_) => format!("BigQuery answered at {}", rest.base_url()),
                Err(e) => e.to_string(),
            },
        });
        checks.push(HealthCheck {
            name: "dataset",
            ok: matches!(dataset, Ok(true)),
            detail: match dataset {
                Ok(true) => format!("{}.{} is accessible", t.project, t.dataset),
                Ok(false) => format!("{}.{} does not exist", t.project, t.dataset),
                Err(e) => e.to_string(),
            },
        });
        let table = rest.get_table(t).await;
        checks.push(HealthCheck {
            name: "table",
            ok: matches!(table, Ok(Some(_))),
            detail: match table {
                Ok(Some(info)) => format!("{t} exists with {} columns", info.schema.fields.len()),
                Ok(None) => format!("{t} does not exist"),
                Err(e) => e.to_string(),
            },
        });
        let m = self.metrics();
        let attempts = m.batches_processed + m.errors_encountered;
        let rate = if attempts == 0 { 0.0 } else { m.errors_encountered as f64 / attempts as f64 };
        let breaker = self.breaker_state();
        checks.push(HealthCheck {
            name: "error_rate",
            ok: breaker == BreakerState::Closed && rate < HEALTHY_ERROR_RATE,
            detail: format!(
                "{} errors in {attempts} requests ({:.1}%), circuit breaker {}",
                m.errors_encountered,
                rate * 100.0,
                breaker.as_str()
            ),
        });
        Health { checks }
    }
}

impl Admin {
    /// The checks [`crate::Destination::health`] starts with — connectivity, the dataset, and
    /// the table when one is named — for when no destination can be built (say, the table is
    /// missing). Never fails as a whole: a failed check says why.
    pub async fn health(&self, project: &str, dataset: &str, table: Option<&str>) -> Health {
        let rest = self.rest();
        let mut checks = Vec::new();
        let exists = rest.dataset_exists(project, dataset).await;
        checks.push(HealthCheck {
            name: "connectivity",
            ok: exists.is_ok(),
            detail: match &exists {
                Ok(_) => format!("BigQuery answered at {}", rest.base_url()),
                Err(e) => e.to_string(),
            },
        });
        checks.push(HealthCheck {
            name: "dataset",
            ok: matches!(exists, Ok(true)),
            detail: match &exists {
                Ok(true) => format!("{project}.{dataset} is accessible"),
                Ok(false) => format!("{project}.{dataset} does not exist"),
                Err(e) => e.to_string(),
            },
        });
        if let Some(t) = table {
            let (ok, detail) = match TableRef::new(project, dataset, t) {
                Err(e) => (false, e.to_string()),
                Ok(table) => match rest.get_table(&table).await {
                    Ok(Some(info)) => (true, format!("{table} exists with {} columns", info.schema.fields.len())),
                    Ok(None) => (false, format!("{table} does not exist")),
                    Err(e) => (false, e.to_string()),
                },
            };
            checks.push(HealthCheck { name: "table", ok, detail });
        }
        Health { checks }
    }
}
