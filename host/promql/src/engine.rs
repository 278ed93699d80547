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
    /// Stops the query: its client went away, or its timeout passed.
    pub cancel: super::limits::Cancel,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_delta: 5 * 60_000,
            max_samples: 50_000_000,
            default_subquery_step: 60_000,
            cancel: super::limits::Cancel::default(),
        }
    }
}

/// Prometheus' message when a query would hold more than `--query.max-samples` points.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

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
        // Every step holds at least one point: a grid over the samples
        // limit is refused before anything is allocated for it.
        let steps = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
        if steps > self.opts.max_samples as i128 {
            return Err(PromqlError::Execution(TOO_MANY_SAMPLES.into()));
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
        let expr = std::sync::Arc::new(super::limits::parse_checked(query)?);
        let mut plan = super::plan::Plan::new(&expr, start, end, step, &self.opts)?;
        plan.invalid_utf8 = invalid_utf8_literals(query);
        let fetched = plan.fetch(storage).await?;
        self.opts.cancel.check("query execution")?;
        // Evaluation is CPU-bound: always off the async workers when there
        // is a runtime that allows it, so a timeout or a client going away
        // is noticed (the evaluator checks `cancel`) and no worker is held.
        // Selector identities are addresses inside the shared expression,
        // which does not move.
        let opts = self.opts.clone();
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            tokio::task::spawn_blocking(move || super::eval::evaluate(&expr, &plan, fetched, &opts))
                .await
                .map_err(|e| PromqlError::Execution(format!("evaluation task failed: {e}")))?
        } else {
            super::eval::evaluate(&expr, &plan, fetched, &opts)
        }
    }
}

/// String literals of `query` that are not valid UTF-8 once their escapes
/// are decoded the way Go (and so Prometheus) decodes them: `\xff` is the
/// byte 0xff there, but `promql-parser` decodes it to U+00FF. The parser's
/// decoding of each such literal is returned, so label-name checks can
/// reject them as Prometheus does.
fn invalid_utf8_literals(query: &str) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let start = i;
                i += 1;
                let mut bytes = Vec::new();
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        let c = b[i + 1];
                        let hex = |s: &[u8]| {
                            std::str::from_utf8(s)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                        };
                        match c {
                            b'x' if i + 3 < b.len() => {
                                bytes.extend(hex(&b[i + 2..i + 4]).map(|v| v as u8));
                                i += 4;
                            }
                            b'0'..=b'7' if i + 3 < b.len() => {
                                let oct = std::str::from_utf8(&b[i + 1..i + 4])
                                    .ok()
                                    .and_then(|o| u32::from_str_radix(o, 8).ok());
                                bytes.extend(oct.map(|v| v as u8));
                                i += 4;
                            }
                            _ => {
                                // \u, \U and single-character escapes are valid UTF-8.
                                bytes.push(b'a');
                                i += 2;
                            }
                        }
                    } else {
                        bytes.push(b[i]);
                        i += 1;
                    }
                }
                let end = (i + 1).min(b.len());
                if std::str::from_utf8(&bytes).is_err()
                    && let Some(lit) = query.get(start..end)
                    && let Ok(decoded) = promql_parser::util::unquote_string(lit)
                {
                    out.insert(decoded);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::invalid_utf8_literals;

    #[test]
    fn go_byte_escapes_that_break_utf8_are_found() {
        let found = invalid_utf8_literals(
            r#"label_replace(m, "\xff", "", 'a\xc5z', "ok\u00ff\xc3\xbf") # "\xfe""#,
        );
        // "\xff" and 'a\xc5z' are not UTF-8 in Go; "\u00ff\xc3\xbf" is (ÿ twice), and comments do not count.
        let mut v: Vec<&str> = found.iter().map(String::as_str).collect();
        v.sort();
        assert_eq!(v, vec!["aÅz", "ÿ"]);
        assert!(invalid_utf8_literals(r#"sum(x{a="\x41"}) + `\xff`"#).is_empty());
    }
}
