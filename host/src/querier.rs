//! querier owns the read path behind PromQL: one `select` fans out to the
//! endpoints, strips replica labels, applies the relabel slot, splits each
//! merged series into virtual replicas by chunk overlap, and sends every
//! replica group through the dedup slot in one bulk call. It returns decoded
//! sample columns; it knows nothing of HTTP.

use std::sync::Arc;

use sluice_proto::thanos::{AggrChunk, LabelMatcher, SeriesRequest, label_matcher};

use crate::fanout::{EndpointSet, FanoutItem, ProxyRequest};
use crate::model::{Labels, MatchOp, Matcher};
use crate::policy::{DedupBatch, DedupHints, PolicyKind, PolicyRegistry};

/// Querier-wide settings.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// Slot used for dedup unless a request names another.
    pub dedup_slot: String,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            replica_labels: vec![],
            partial_response: true,
            dedup_slot: "dedup".into(),
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
}

/// A selected series as sample columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedSeries {
    pub labels: Labels,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

/// The series and the warnings gathered on the way.
#[derive(Debug, Clone, Default)]
pub struct SelectResult {
    pub series: Vec<SelectedSeries>,
    pub warnings: Vec<String>,
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
}

/// The read path.
pub struct Querier {
    set: Arc<EndpointSet>,
    policies: Arc<PolicyRegistry>,
    cfg: QuerierConfig,
}

impl std::fmt::Debug for Querier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Querier").field("cfg", &self.cfg).finish()
    }
}

fn to_pb(ms: &[Matcher]) -> Vec<LabelMatcher> {
    ms.iter()
        .map(|m| LabelMatcher {
            r#type: match m.op {
                MatchOp::Eq => label_matcher::Type::Eq,
                MatchOp::Neq => label_matcher::Type::Neq,
                MatchOp::Re => label_matcher::Type::Re,
                MatchOp::Nre => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
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
fn decode_chunks(
    chunks: &[AggrChunk],
    start: i64,
    end: i64,
) -> Result<(Vec<i64>, Vec<f64>), String> {
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let (mut cts, mut cvs) = (Vec::new(), Vec::new());
    for c in chunks {
        cts.clear();
        cvs.clear();
        if let Some(raw) = &c.raw {
            if raw.r#type != 0 {
                return Err("native histogram chunks are not supported yet".into());
            }
            sluice_tsdb::xor::decode_into(&raw.data, &mut cts, &mut cvs)
                .map_err(|e| e.to_string())?;
        } else if let (Some(sum), Some(count)) = (&c.sum, &c.count) {
            // Downsampled without a specific aggregate: the window average.
            let (mut t2, mut c2) = (Vec::new(), Vec::new());
            sluice_tsdb::xor::decode_into(&sum.data, &mut cts, &mut cvs)
                .map_err(|e| e.to_string())?;
            sluice_tsdb::xor::decode_into(&count.data, &mut t2, &mut c2)
                .map_err(|e| e.to_string())?;
            for (v, n) in cvs.iter_mut().zip(&c2) {
                *v /= n;
            }
        } else if let Some(one) = [&c.counter, &c.min, &c.max, &c.sum, &c.count]
            .into_iter()
            .flatten()
            .next()
        {
            sluice_tsdb::xor::decode_into(&one.data, &mut cts, &mut cvs)
                .map_err(|e| e.to_string())?;
        }
        for (&t, &v) in cts.iter().zip(&cvs) {
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
        Querier { set, policies, cfg }
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
                matchers: to_pb(&p.matchers),
                without_replica_labels: strip.clone(),
                max_resolution_window: p.max_resolution_window,
                aggregates: vec![1, 2],
                ..Default::default()
            },
            matchers: p.matchers.clone(),
            partial_response: partial,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let set = self.set.clone();
        tokio::spawn(async move { crate::fanout::series(&set, req, tx).await });
        let mut merged: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
        let mut warnings = Vec::new();
        while let Some(item) = rx.recv().await {
            match item {
                Ok(FanoutItem::Series(s)) => {
                    let mut l = Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value)));
                    l.remove_names(&strip);
                    merged.push((l, s.chunks));
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

        // Decode; groups of several virtual replicas go to the dedup slot together.
        let mut out: Vec<Option<SelectedSeries>> = Vec::with_capacity(grouped.len());
        let mut batch = DedupBatch::new();
        let mut batch_idx = Vec::new();
        let mut replicas_store: Vec<Vec<(Vec<i64>, Vec<f64>)>> = Vec::new();
        for (labels, chunks) in grouped {
            let err = |detail: String| QueryError::Decode {
                series: labels.to_string(),
                detail,
            };
            if !dedup {
                let mut chunks = chunks;
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
                let (ts, vs) = decode_chunks(&chunks, p.start, p.end).map_err(err)?;
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
                decoded.push(decode_chunks(r, p.start, p.end).map_err(&err)?);
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
                replicas_store.push(decoded);
            }
        }
        for reps in &replicas_store {
            batch.push_group(reps.iter().map(|(t, v)| (t.as_slice(), v.as_slice())));
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
            let res = tokio::task::spawn_blocking(move || session.dedup(batch, &hints))
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
}
