//! querier owns the read path behind PromQL: one `select` fans out to the
//! endpoints, strips replica labels, applies the relabel slot, splits each
//! merged series into virtual replicas by chunk overlap, and sends every
//! replica group through the dedup slot in one bulk call. It returns decoded
//! sample columns; it knows nothing of HTTP.

use std::sync::Arc;

use sluice_proto::thanos::{AggrChunk, SeriesRequest};

use crate::fanout::{EndpointSet, FanoutItem, ProxyRequest};
pub use sluice_model::SelectedSeries;
use sluice_model::{Labels, Matcher};
use sluice_policy::{DedupBatch, DedupHints, PolicyKind, PolicyRegistry};
use sluice_policy_abi::Series;

/// Querier-wide settings.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// Slot used for dedup unless a request names another.
    pub dedup_slot: String,
    /// Series and samples one selection may read from the endpoints
    /// (`--store.limits.request-series`, `--store.limits.request-samples`),
    /// counted as the merged stream arrives.
    pub limits: sluice_storeapi::SeriesLimits,
    /// Decoded samples all running selections may hold at once
    /// (`--query.max-decoded-samples`, 0 = unlimited).
    pub max_decoded_samples: u64,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            replica_labels: vec![],
            partial_response: true,
            dedup_slot: "dedup".into(),
            limits: sluice_storeapi::SeriesLimits::default(),
            max_decoded_samples: 0,
        }
    }
}

/// One selection.
#[derive(Debug, Clone, Default)]
pub struct SelectParams {
    pub matchers: Vec<Matcher>,
    /// Inclusive range in ms.
    pub start: i64,
    pub end: i64,
    /// PromQL context: enclosing function, step, range (reaches the dedup plugin).
    pub hints: DedupHints,
    /// `dedup` request parameter (default true).
    pub dedup: bool,
    /// Dedup slot chosen by name for this request.
    pub dedup_slot: Option<String>,
    /// `replicaLabels[]` override.
    pub replica_labels: Option<Vec<String>>,
    /// `partial_response` override.
    pub partial_response: Option<bool>,
    /// Coarsest downsampling resolution accepted (ms).
    pub max_resolution_window: i64,
    /// What downsampled chunks contribute (see [`Aggregate::for_function`]).
    pub aggregate: Aggregate,
    /// The caller's tenant, forwarded to the endpoints.
    pub tenant: Option<String>,
    /// Only this shard of the series (forwarded; applied here too, for
    /// endpoints that do not shard).
    pub shard: Option<sluice_proto::thanos::ShardInfo>,
}

/// Which aggregate of a downsampled chunk a selection reads (Thanos'
/// `aggrsFromFunc`). Raw chunks are read as they are whatever is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Aggregate {
    /// `sum / count` per window: plain selectors, `avg_over_time`, `sum`, ….
    #[default]
    Average,
    Count,
    Sum,
    Min,
    Max,
    /// Reset-corrected counter (`rate`, `increase`, `irate`, `resets`).
    Counter,
}

impl Aggregate {
    /// The aggregate the enclosing PromQL function (or aggregation) needs.
    pub fn for_function(func: &str) -> Aggregate {
        match func {
            "rate" | "increase" | "irate" | "resets" | "xrate" | "xincrease" => Aggregate::Counter,
            "sum_over_time" => Aggregate::Sum,
            f if f == "min" || f.starts_with("min_") => Aggregate::Min,
            f if f == "max" || f.starts_with("max_") => Aggregate::Max,
            f if f == "count" || f.starts_with("count_") => Aggregate::Count,
            _ => Aggregate::Average,
        }
    }

    /// `AggrType` values to request from stores.
    fn request(self) -> Vec<i32> {
        use sluice_tsdb::aggr::AggrType as A;
        match self {
            Aggregate::Average => vec![A::Count as i32, A::Sum as i32],
            Aggregate::Count => vec![A::Count as i32],
            Aggregate::Sum => vec![A::Sum as i32],
            Aggregate::Min => vec![A::Min as i32],
            Aggregate::Max => vec![A::Max as i32],
            Aggregate::Counter => vec![A::Counter as i32],
        }
    }
}

/// Functions that need two samples per window: their downsampled reads are
/// capped at half the range (Thanos).
pub fn needs_two_samples(func: &str) -> bool {
    matches!(
        func,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "holt_winters"
            | "double_exponential_smoothing"
    )
}

/// The series and the warnings gathered on the way.
#[derive(Debug, Clone, Default)]
pub struct SelectResult {
    pub series: Vec<SelectedSeries>,
    pub warnings: Vec<String>,
    /// The share of `--query.max-decoded-samples` these samples hold; it is
    /// returned when dropped (after the query's evaluation).
    pub reservation: Option<Arc<Reservation>>,
}

/// The querier's process-wide budget of decoded samples (16 bytes each):
/// every selection reserves its share before decoding, and a selection that
/// would go over it fails at once with an error naming the flag (never
/// waits, so concurrent queries cannot deadlock on it).
#[derive(Debug)]
pub struct DecodedBudget {
    max: u64,
    used: std::sync::atomic::AtomicU64,
}

impl DecodedBudget {
    /// A budget of `max` samples; 0 = unlimited.
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(DecodedBudget {
            max,
            used: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Samples held by running queries now.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reserves `n` samples, or says why not.
    pub fn reserve(self: &Arc<Self>, n: u64) -> Result<Reservation, QueryError> {
        use std::sync::atomic::Ordering;
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        if self.max > 0 && before.saturating_add(n) > self.max {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return Err(QueryError::Limit(format!(
                "querier memory limit: decoding {n} samples while running queries hold {before} would exceed \
                 --query.max-decoded-samples={}; retry, or narrow the query",
                self.max
            )));
        }
        Ok(Reservation {
            budget: self.clone(),
            n,
        })
    }
}

/// A share of the [`DecodedBudget`], returned on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<DecodedBudget>,
    n: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Why a selection failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Policy(String),
    #[error("decoding chunks of {series}: {detail}")]
    Decode { series: String, detail: String },
    #[error("{0}")]
    Limit(String),
}

/// The read path.
pub struct Querier {
    set: Arc<EndpointSet>,
    policies: Arc<PolicyRegistry>,
    cfg: QuerierConfig,
    budget: Arc<DecodedBudget>,
}

impl std::fmt::Debug for Querier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Querier").field("cfg", &self.cfg).finish()
    }
}

/// Thanos' overlap split: chunks (sorted by time) go to the first virtual
/// replica whose last chunk ends before they start.
pub fn overlap_split(mut chunks: Vec<AggrChunk>) -> Vec<Vec<AggrChunk>> {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let mut replicas: Vec<Vec<AggrChunk>> = Vec::new();
    for c in chunks {
        match replicas
            .iter_mut()
            .find(|r| r.last().is_some_and(|l| l.max_time < c.min_time))
        {
            Some(r) => r.push(c),
            None => replicas.push(vec![c]),
        }
    }
    replicas
}

/// Decodes chunks (ascending) into columns within `[start, end]`, skipping
/// samples not after the last one kept (Thanos' iterator rule for overlaps).
/// Downsampled chunks contribute `aggregate`; counters go through Thanos'
/// counter-reset application across chunks.
fn decode_chunks(
    chunks: &[AggrChunk],
    start: i64,
    end: i64,
    aggregate: Aggregate,
) -> Result<(Vec<i64>, Vec<f64>), String> {
    // Columns sized once from the chunk headers: no doubling while decoding,
    // which would leave up to half of every column unused. A header is the
    // endpoint's word, so each count is capped by what the chunk's bytes can
    // hold (after the first sample every XOR sample takes at least two
    // bits): a 2-byte chunk claiming 65,535 samples reserves nothing.
    let upper: usize = chunks
        .iter()
        .map(|c| {
            let data = match (&c.raw, aggregate) {
                (Some(raw), _) => Some(&raw.data),
                (None, Aggregate::Average | Aggregate::Sum) => c.sum.as_ref().map(|x| &x.data),
                (None, Aggregate::Count) => c.count.as_ref().map(|x| &x.data),
                (None, Aggregate::Min) => c.min.as_ref().map(|x| &x.data),
                (None, Aggregate::Max) => c.max.as_ref().map(|x| &x.data),
                (None, Aggregate::Counter) => c.counter.as_ref().map(|x| &x.data),
            };
            data.and_then(|d| {
                sluice_tsdb::xor::num_samples(d)
                    .ok()
                    .map(|n| usize::from(n).min(4 * d.len().saturating_sub(2)))
            })
            .unwrap_or(0)
        })
        .sum();
    let (mut ts, mut vs) = (Vec::with_capacity(upper), Vec::with_capacity(upper));
    let (mut cts, mut cvs) = (Vec::new(), Vec::new());
    // Counter state: last raw value seen and the running total.
    let mut counter: Option<(f64, f64)> = None;
    let mut last_counter_t = i64::MIN;
    let decode = |c: &Option<sluice_proto::thanos::Chunk>,
                  what: &str,
                  ts: &mut Vec<i64>,
                  vs: &mut Vec<f64>|
     -> Result<(), String> {
        let c = c
            .as_ref()
            .ok_or_else(|| format!("downsampled chunk lacks the {what} aggregate"))?;
        sluice_tsdb::xor::decode_into(&c.data, ts, vs).map_err(|e| e.to_string())
    };
    for c in chunks {
        cts.clear();
        cvs.clear();
        let mut is_counter = false;
        if let Some(raw) = &c.raw {
            if raw.r#type != 0 {
                return Err("native histogram chunks are not supported yet".into());
            }
            sluice_tsdb::xor::decode_into(&raw.data, &mut cts, &mut cvs)
                .map_err(|e| e.to_string())?;
        } else {
            match aggregate {
                Aggregate::Average => {
                    let (mut t2, mut c2) = (Vec::new(), Vec::new());
                    decode(&c.sum, "sum", &mut cts, &mut cvs)?;
                    decode(&c.count, "count", &mut t2, &mut c2)?;
                    for (v, n) in cvs.iter_mut().zip(&c2) {
                        *v /= n;
                    }
                }
                Aggregate::Count => decode(&c.count, "count", &mut cts, &mut cvs)?,
                Aggregate::Sum => decode(&c.sum, "sum", &mut cts, &mut cvs)?,
                Aggregate::Min => decode(&c.min, "min", &mut cts, &mut cvs)?,
                Aggregate::Max => decode(&c.max, "max", &mut cts, &mut cvs)?,
                Aggregate::Counter => {
                    decode(&c.counter, "counter", &mut cts, &mut cvs)?;
                    is_counter = true;
                }
            }
        }
        for (&t, &v) in cts.iter().zip(&cvs) {
            let v = if is_counter {
                // Thanos' ApplyCounterResets: a repeated timestamp carries the
                // last raw value of the chunk; increases accumulate, a drop
                // is a reset.
                if v.is_nan() {
                    continue;
                }
                if t == last_counter_t {
                    if let Some((last, _)) = counter.as_mut() {
                        *last = v;
                    }
                    continue;
                }
                if t < last_counter_t {
                    continue;
                }
                last_counter_t = t;
                let total = match counter {
                    None => v,
                    Some((last, total)) => total + if v >= last { v - last } else { v },
                };
                counter = Some((v, total));
                total
            } else {
                v
            };
            if t < start || t > end || ts.last().is_some_and(|&l| t <= l) {
                continue;
            }
            ts.push(t);
            vs.push(v);
        }
    }
    Ok((ts, vs))
}

impl Querier {
    pub fn new(set: Arc<EndpointSet>, policies: Arc<PolicyRegistry>, cfg: QuerierConfig) -> Self {
        let budget = DecodedBudget::new(cfg.max_decoded_samples);
        Querier {
            set,
            policies,
            cfg,
            budget,
        }
    }

    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// Selects series: fan-out, merge, relabel, dedup.
    pub async fn select(&self, p: SelectParams) -> Result<SelectResult, QueryError> {
        // The policy set is taken once, at admission.
        let policies = self.policies.snapshot();
        let replica_labels = p
            .replica_labels
            .clone()
            .unwrap_or_else(|| self.cfg.replica_labels.clone());
        let dedup = p.dedup && !replica_labels.is_empty();
        let strip = if dedup {
            replica_labels.clone()
        } else {
            Vec::new()
        };
        let partial = p.partial_response.unwrap_or(self.cfg.partial_response);
        let req = ProxyRequest {
            request: SeriesRequest {
                min_time: p.start,
                max_time: p.end,
                matchers: sluice_storeapi::matchers_to_pb(&p.matchers),
                without_replica_labels: strip.clone(),
                max_resolution_window: p.max_resolution_window,
                aggregates: p.aggregate.request(),
                shard_info: p.shard.clone(),
                ..Default::default()
            },
            matchers: p.matchers.clone(),
            partial_response: partial,
            tenant: p.tenant.clone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let set = self.set.clone();
        tokio::spawn(async move { crate::fanout::series(&set, req, tx).await });
        let shard =
            p.shard
                .as_ref()
                .filter(|s| s.total_shards > 1)
                .map(|s| sluice_storeapi::Shard {
                    index: s.shard_index.max(0) as u64,
                    total: s.total_shards as u64,
                    by: s.by,
                    labels: s.labels.clone(),
                });
        let mut merged: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
        let mut warnings = Vec::new();
        let limits = self.cfg.limits;
        let mut samples = 0u64;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(FanoutItem::Series(run)) => {
                    for s in run.iter() {
                        let mut l = Labels::from_pairs(
                            s.labels().map(|(n, v)| (n.to_string(), v.to_string())),
                        );
                        l.remove_names(&strip);
                        if let Some(sh) = &shard
                            && !sh.matches(&l)
                        {
                            continue;
                        }
                        let chunks = s.chunks();
                        if limits.series > 0 && merged.len() as u64 >= limits.series {
                            return Err(QueryError::Limit(format!(
                                "exceeded series limit: the query selects more than --store.limits.request-series={} series",
                                limits.series
                            )));
                        }
                        if limits.samples > 0 {
                            samples += chunks
                                .iter()
                                .map(sluice_storeapi::aggr_chunk_samples)
                                .sum::<u64>();
                            if samples > limits.samples {
                                return Err(QueryError::Limit(format!(
                                    "exceeded samples limit: the query reads more than --store.limits.request-samples={} samples",
                                    limits.samples
                                )));
                            }
                        }
                        merged.push((l, chunks));
                    }
                }
                Ok(FanoutItem::Warning(w)) => warnings.push(w),
                Err(status) => return Err(QueryError::Store(status.message().to_string())),
            }
        }

        // Relabel slot, in one bulk call.
        if policies.slots.contains_key("relabel") && !merged.is_empty() {
            let mut s = policies
                .session("relabel", PolicyKind::Relabel)
                .map_err(|e| QueryError::Policy(e.to_string()))?;
            let input: Vec<Vec<(String, String)>> = merged
                .iter()
                .map(|(l, _)| {
                    l.iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect()
                })
                .collect();
            let out = tokio::task::spawn_blocking(move || s.relabel(&input))
                .await
                .map_err(|e| QueryError::Policy(format!("relabel task: {e}")))?
                .map_err(|e| QueryError::Policy(e.to_string()))?;
            warnings.extend(out.warning);
            merged = merged
                .into_iter()
                .zip(out.value)
                .filter_map(|((_, chunks), l)| l.map(|l| (Labels::from_pairs(l), chunks)))
                .collect();
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        let mut grouped: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
        for (l, c) in merged {
            match grouped.last_mut() {
                Some(last) if last.0 == l => last.1.extend(c),
                _ => grouped.push((l, c)),
            }
        }

        // Reserve the decoded columns' share of the process budget first: an
        // upper bound from the chunk headers, each capped by its bytes.
        let estimate: u64 = grouped
            .iter()
            .flat_map(|(_, c)| c.iter())
            .map(|c| {
                [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter]
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        sluice_storeapi::chunk_samples(&x.data)
                            .min(4 * x.data.len().saturating_sub(2) as u64)
                    })
                    .max()
                    .unwrap_or(0)
            })
            .sum();
        let reservation = self.budget.reserve(estimate)?;

        // Decode; groups of several virtual replicas go to the dedup slot together.
        let mut out: Vec<Option<SelectedSeries>> = Vec::with_capacity(grouped.len());
        let mut batch = DedupBatch::new();
        let mut batch_idx = Vec::new();
        for (labels, chunks) in grouped {
            let err = |detail: String| QueryError::Decode {
                series: labels.to_string(),
                detail,
            };
            if !dedup {
                let mut chunks = chunks;
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                let (ts, vs) = decode_chunks(&chunks, p.start, p.end, p.aggregate).map_err(err)?;
                out.push(Some(SelectedSeries {
                    labels,
                    timestamps: ts,
                    values: vs,
                }));
                continue;
            }
            let reps = overlap_split(chunks);
            let mut decoded = Vec::with_capacity(reps.len());
            for r in &reps {
                decoded.push(decode_chunks(r, p.start, p.end, p.aggregate).map_err(&err)?);
            }
            decoded.retain(|(t, _)| !t.is_empty());
            if decoded.len() <= 1 {
                let (ts, vs) = decoded.pop().unwrap_or_default();
                out.push(Some(SelectedSeries {
                    labels,
                    timestamps: ts,
                    values: vs,
                }));
            } else {
                batch_idx.push((out.len(), labels));
                out.push(None);
                batch.push_owned_group(decoded.into_iter().map(|(t, v)| Series::new(t, v)));
            }
        }
        if !batch.is_empty() {
            let slot = p
                .dedup_slot
                .clone()
                .unwrap_or_else(|| self.cfg.dedup_slot.clone());
            let mut session = policies
                .session(&slot, PolicyKind::Dedup)
                .map_err(|e| QueryError::Policy(e.to_string()))?;
            let hints = DedupHints {
                start_ms: p.start,
                end_ms: p.end,
                ..p.hints.clone()
            };
            let res = tokio::task::spawn_blocking(move || session.dedup(&batch, &hints))
                .await
                .map_err(|e| QueryError::Policy(format!("dedup task: {e}")))?
                .map_err(|e| QueryError::Policy(e.to_string()))?;
            warnings.extend(res.warning);
            for ((pos, labels), s) in batch_idx.into_iter().zip(res.value) {
                out[pos] = Some(SelectedSeries {
                    labels,
                    timestamps: s.timestamps,
                    values: s.values,
                });
            }
        }
        Ok(SelectResult {
            reservation: Some(Arc::new(reservation)),
            series: out
                .into_iter()
                .flatten()
                .filter(|s| !s.timestamps.is_empty())
                .collect(),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoded_budget_refuses_what_it_cannot_hold_and_returns_what_is_dropped() {
        let b = DecodedBudget::new(100);
        let r1 = b.reserve(60).expect("60 of 100");
        let e = b.reserve(50).expect_err("110 of 100");
        assert!(
            e.to_string().contains("--query.max-decoded-samples=100"),
            "{e}"
        );
        assert_eq!(b.used(), 60, "a refused reservation holds nothing");
        drop(r1);
        assert_eq!(b.used(), 0);
        let _r = b.reserve(100).expect("all of it once free");
        assert!(
            DecodedBudget::new(0).reserve(u64::MAX / 2).is_ok(),
            "0 = unlimited"
        );
    }

    fn c(min: i64, max: i64) -> AggrChunk {
        AggrChunk {
            min_time: min,
            max_time: max,
            ..Default::default()
        }
    }

    #[test]
    fn overlap_split_matches_thanos() {
        // Two replicas' chunks interleaved: [0,10] [5,15] [11,20] [16,25].
        let r = overlap_split(vec![c(11, 20), c(0, 10), c(16, 25), c(5, 15)]);
        let spans: Vec<Vec<(i64, i64)>> = r
            .iter()
            .map(|v| v.iter().map(|c| (c.min_time, c.max_time)).collect())
            .collect();
        assert_eq!(
            spans,
            vec![vec![(0, 10), (11, 20)], vec![(5, 15), (16, 25)]]
        );
        // Non-overlapping chunks stay in one replica.
        assert_eq!(overlap_split(vec![c(0, 1), c(2, 3)]).len(), 1);
    }

    fn xor(samples: &[(i64, f64)]) -> Option<sluice_proto::thanos::Chunk> {
        Some(sluice_proto::thanos::Chunk {
            r#type: 0,
            data: sluice_tsdb::xor::encode(samples).expect("encode").into(),
            ..Default::default()
        })
    }

    #[test]
    fn aggregate_follows_the_function() {
        assert_eq!(Aggregate::for_function("rate"), Aggregate::Counter);
        assert_eq!(Aggregate::for_function("max_over_time"), Aggregate::Max);
        assert_eq!(Aggregate::for_function("min"), Aggregate::Min);
        assert_eq!(Aggregate::for_function("count_over_time"), Aggregate::Count);
        assert_eq!(Aggregate::for_function("sum_over_time"), Aggregate::Sum);
        assert_eq!(Aggregate::for_function("sum"), Aggregate::Average);
        assert_eq!(Aggregate::for_function(""), Aggregate::Average);
        assert!(needs_two_samples("rate") && !needs_two_samples("max_over_time"));
    }

    #[test]
    fn downsampled_chunks_give_the_requested_aggregate() {
        // Two 5m windows: count 2 and 4, sum 10 and 20, min 1, max 9.
        let c = AggrChunk {
            min_time: 0,
            max_time: 600_000,
            count: xor(&[(299_999, 2.0), (599_999, 4.0)]),
            sum: xor(&[(299_999, 10.0), (599_999, 20.0)]),
            min: xor(&[(299_999, 1.0), (599_999, 2.0)]),
            max: xor(&[(299_999, 9.0), (599_999, 8.0)]),
            ..Default::default()
        };
        let d = |a| {
            decode_chunks(std::slice::from_ref(&c), 0, 600_000, a)
                .expect("decode")
                .1
        };
        assert_eq!(d(Aggregate::Average), vec![5.0, 5.0]);
        assert_eq!(d(Aggregate::Count), vec![2.0, 4.0]);
        assert_eq!(d(Aggregate::Sum), vec![10.0, 20.0]);
        assert_eq!(d(Aggregate::Min), vec![1.0, 2.0]);
        assert_eq!(d(Aggregate::Max), vec![9.0, 8.0]);
        let err =
            decode_chunks(std::slice::from_ref(&c), 0, 600_000, Aggregate::Counter).unwrap_err();
        assert!(err.contains("counter"), "{err}");
    }

    #[test]
    fn counter_chunks_apply_resets_across_chunks() {
        // Chunk 1: first raw 5, window totals 8 and 12, last raw value 12
        // (repeated timestamp). Chunk 2 starts after a reset: raw 3.
        let c1 = AggrChunk {
            min_time: 0,
            max_time: 599_999,
            counter: xor(&[(0, 5.0), (299_999, 8.0), (599_999, 12.0), (599_999, 12.0)]),
            ..Default::default()
        };
        let c2 = AggrChunk {
            min_time: 600_000,
            max_time: 899_999,
            counter: xor(&[(600_000, 3.0), (899_999, 7.0), (899_999, 7.0)]),
            ..Default::default()
        };
        let (ts, vs) = decode_chunks(&[c1, c2], 0, 900_000, Aggregate::Counter).expect("decode");
        assert_eq!(ts, vec![0, 299_999, 599_999, 600_000, 899_999]);
        // After the reset the total keeps growing: 12 + 3, then + 4.
        assert_eq!(vs, vec![5.0, 8.0, 12.0, 15.0, 19.0]);
    }

    #[test]
    fn native_histogram_chunks_are_a_clear_error() {
        let c = AggrChunk {
            min_time: 0,
            max_time: 1,
            raw: Some(sluice_proto::thanos::Chunk {
                r#type: 1, // HISTOGRAM
                data: vec![0, 1].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode_chunks(&[c], 0, 1, Aggregate::Average).unwrap_err();
        assert!(err.contains("native histogram"), "{err}");
    }
}
