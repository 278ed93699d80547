//! The engine's entry points: parse, plan, fetch, evaluate.

use super::storage::Storage;
use super::value::Value;

/// Engine settings (Prometheus' defaults).
#[derive(Debug, Clone)]
pub struct EngineOpts {
    /// `--query.lookback-delta`, ms.
    pub lookback_delta: i64,
    /// `--query.max-samples`: most points held at once.
    pub max_samples: usize,
    /// Step of a subquery without one (Prometheus' global evaluation interval), ms.
    pub default_subquery_step: i64,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_delta: 5 * 60_000,
            max_samples: 50_000_000,
            default_subquery_step: 60_000,
        }
    }
}

/// Why a query failed, by Prometheus API error type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    /// Unparseable query or bad parameters (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Failed while running (`execution`).
    #[error("{0}")]
    Execution(String),
    /// Ran out of time (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The caller went away (`canceled`).
    #[error("query was canceled in {0}")]
    Canceled(String),
}

impl PromqlError {
    /// The `errorType` of Prometheus' JSON API.
    pub fn error_type(&self) -> &'static str {
        match self {
            PromqlError::BadData(_) => "bad_data",
            PromqlError::Execution(_) => "execution",
            PromqlError::Timeout(_) => "timeout",
            PromqlError::Canceled(_) => "canceled",
        }
    }
}

/// Work done by one query (`stats=all`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Samples read from storage.
    pub total_queryable_samples: u64,
    /// Most points held at once.
    pub peak_samples: u64,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Storage and evaluation warnings (Prometheus' `warnings`).
    pub warnings: Vec<String>,
    /// Informational annotations (Prometheus' `infos`).
    pub infos: Vec<String>,
    pub stats: QueryStats,
}

/// The PromQL engine. Cheap to share; holds no per-query state.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOpts,
}

impl Engine {
    pub fn new(opts: EngineOpts) -> Self {
        Engine { opts }
    }

    pub fn opts(&self) -> &EngineOpts {
        &self.opts
    }

    /// Evaluates `query` at `t` (ms).
    pub async fn instant(
        &self,
        storage: &dyn Storage,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, PromqlError> {
        self.run(storage, query, t, t, 0).await
    }

    /// Evaluates `query` at every `step` (ms) from `start` to `end`.
    pub async fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, PromqlError> {
        if step <= 0 {
            return Err(PromqlError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(PromqlError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        self.run(storage, query, start, end, step).await
    }

    async fn run(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, PromqlError> {
        let expr = std::sync::Arc::new(
            promql_parser::parser::parse(query).map_err(PromqlError::BadData)?,
        );
        let plan = super::plan::Plan::new(&expr, start, end, step, &self.opts)?;
        let fetched = plan.fetch(storage).await?;
        // Evaluation is CPU-bound: off the async workers when there is a
        // runtime that allows it. Selector identities are addresses inside
        // the shared expression, which does not move.
        let opts = self.opts.clone();
        let big = fetched.samples > 100_000;
        if big && tokio::runtime::Handle::try_current().is_ok_and(|h| {
            h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        }) {
            tokio::task::spawn_blocking(move || {
                super::eval::evaluate(&expr, &plan, fetched, &opts)
            })
            .await
            .map_err(|e| PromqlError::Execution(format!("evaluation task failed: {e}")))?
        } else {
            super::eval::evaluate(&expr, &plan, fetched, &opts)
        }
    }
}
