//! The querier as the PromQL engine's storage: fan-out, relabel and dedup
//! behind `sluice_promql::Storage`.

use std::sync::Arc;

use futures::future::BoxFuture;
use sluice_policy::DedupHints;
use sluice_promql::{SelectHints, SeriesSet, Storage};

use crate::querier::{Aggregate, Querier, SelectParams, needs_two_samples};

/// Per-request read options of the querier (the Thanos HTTP parameters).
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub dedup: bool,
    pub dedup_slot: Option<String>,
    pub replica_labels: Option<Vec<String>>,
    pub partial_response: Option<bool>,
    /// Coarsest downsampling resolution accepted (ms); 0 = raw only.
    pub max_source_resolution: i64,
    /// The caller's tenant, forwarded to the endpoints.
    pub tenant: Option<String>,
    /// `--query.enforce-tenancy`: a matcher (tenant label = tenant) added
    /// to every selection.
    pub tenant_matcher: Option<sluice_model::Matcher>,
    /// Thanos' `shard_info`: only this shard of the series (vertical
    /// sharding by a query frontend).
    pub shard: Option<sluice_proto::thanos::ShardInfo>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            dedup: true,
            dedup_slot: None,
            replica_labels: None,
            partial_response: None,
            max_source_resolution: 0,
            tenant: None,
            tenant_matcher: None,
            shard: None,
        }
    }
}

/// The querier as the engine's storage: fan-out, relabel and dedup.
#[derive(Debug, Clone)]
pub struct QuerierStorage {
    pub querier: Arc<Querier>,
    pub opts: ReadOptions,
}

impl Storage for QuerierStorage {
    fn select(&self, h: SelectHints) -> BoxFuture<'_, Result<SeriesSet, String>> {
        Box::pin(async move {
            let mut max_resolution_window = self.opts.max_source_resolution;
            if h.range > 0 && needs_two_samples(&h.func) {
                max_resolution_window = max_resolution_window.min(h.range / 2);
            }
            let aggregate = Aggregate::for_function(&h.func);
            let mut matchers = h.matchers;
            if let Some(m) = &self.opts.tenant_matcher {
                matchers.push(m.clone());
            }
            let p = SelectParams {
                matchers,
                start: h.start,
                end: h.end,
                hints: DedupHints {
                    func: h.func,
                    step_ms: h.step,
                    range_ms: h.range,
                    start_ms: h.start,
                    end_ms: h.end,
                },
                dedup: self.opts.dedup,
                dedup_slot: self.opts.dedup_slot.clone(),
                replica_labels: self.opts.replica_labels.clone(),
                partial_response: self.opts.partial_response,
                max_resolution_window,
                aggregate,
                tenant: self.opts.tenant.clone(),
                shard: self.opts.shard.clone(),
            };
            let r = self.querier.select(p).await.map_err(|e| e.to_string())?;
            Ok(SeriesSet {
                series: r.series,
                warnings: r.warnings,
                guards: r
                    .reservation
                    .map(|g| g as std::sync::Arc<dyn std::any::Any + Send + Sync>)
                    .into_iter()
                    .collect(),
            })
        })
    }
}
