//! Requests in a source's terms: validated matchers, the read options of a
//! Series call, and the label transformations every source applies the same
//! way (external labels, replica stripping, sharding).

use prost::Message;
use sluice_model::{Labels, MatchOp, Matcher};
use sluice_proto::thanos::{
    Aggr, Label as PbLabel, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    PartialResponseStrategy, SeriesRequest, label_matcher,
};

use crate::StoreError;

/// A Series request, validated.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    pub min_time: i64,
    pub max_time: i64,
    /// At least one matcher (the server refuses a request without).
    pub matchers: Vec<Matcher>,
    /// Coarsest downsampling resolution accepted (ms).
    pub max_resolution_window: i64,
    /// Aggregates wanted from downsampled chunks.
    pub aggregates: Vec<Aggr>,
    pub skip_chunks: bool,
    /// Labels removed from every series before ordering and merging.
    pub without_replica_labels: Vec<String>,
    /// Maximum series to return, 0 = all (the sink stops the source there).
    pub limit: usize,
    pub shard: Option<Shard>,
    /// Errors of one part of the data (a block, an endpoint) become warnings
    /// instead of failing the call.
    pub partial_response: bool,
    /// `hintspb.SeriesRequestHints.block_matchers`: blocks whose external
    /// labels and `__block_id` do not match are not read (store gateways).
    pub block_matchers: Vec<Matcher>,
    /// The request as received, for sources that forward it (the proxy).
    pub request: SeriesRequest,
    /// The caller's tenant (`thanos-tenant` metadata), when it sent one.
    pub tenant: Option<String>,
}

impl SeriesQuery {
    /// Validates a wire request.
    pub fn from_request(r: SeriesRequest) -> Result<Self, StoreError> {
        let matchers = matchers_from_pb(&r.matchers)?;
        if matchers.is_empty() {
            return Err(StoreError::InvalidArgument(
                "no matchers specified (excluding selector labels)".into(),
            ));
        }
        let aggregates = r
            .aggregates
            .iter()
            .filter_map(|&a| Aggr::try_from(a).ok())
            .collect();
        let shard = r
            .shard_info
            .as_ref()
            .filter(|s| s.total_shards > 0)
            .map(|s| Shard {
                index: s.shard_index.max(0) as u64,
                total: s.total_shards as u64,
                by: s.by,
                labels: s.labels.clone(),
            });
        let block_matchers =
            block_matchers_of(r.hints.as_ref(), "hintspb.SeriesRequestHints", |b| {
                sluice_proto::hintspb::SeriesRequestHints::decode(b).map(|h| h.block_matchers)
            })?;
        Ok(SeriesQuery {
            block_matchers,
            min_time: r.min_time,
            max_time: r.max_time,
            matchers,
            max_resolution_window: r.max_resolution_window,
            aggregates,
            skip_chunks: r.skip_chunks,
            without_replica_labels: r.without_replica_labels.clone(),
            limit: usize::try_from(r.limit).unwrap_or(0),
            shard,
            partial_response: partial_response(
                r.partial_response_disabled,
                r.partial_response_strategy,
            ),
            request: r,
            tenant: None,
        })
    }

    /// The labels a series is served with: its own labels with the source's
    /// external labels laid over them (external wins), replica labels
    /// removed. `None` when the series belongs to another shard.
    pub fn final_labels(&self, mut labels: Labels, external: &Labels) -> Option<Labels> {
        labels.extend_overriding(external);
        labels.remove_names(&self.without_replica_labels);
        match &self.shard {
            Some(s) if !s.matches(&labels) => None,
            _ => Some(labels),
        }
    }
}

/// The block matchers of a request's `hints` (an `Any` of `type_name`);
/// none when absent, an error when it cannot be read.
fn block_matchers_of(
    hints: Option<&prost_types::Any>,
    type_name: &str,
    decode: impl FnOnce(&[u8]) -> Result<Vec<LabelMatcher>, prost::DecodeError>,
) -> Result<Vec<Matcher>, StoreError> {
    let Some(any) = hints else {
        return Ok(Vec::new());
    };
    if !any.type_url.ends_with(type_name) {
        // Another store's hints: ignored, as Thanos' store gateway does.
        return Ok(Vec::new());
    }
    let ms = decode(&any.value)
        .map_err(|e| StoreError::InvalidArgument(format!("decoding {type_name}: {e}")))?;
    matchers_from_pb(&ms)
}

/// An `Any` holding `msg` as `hintspb.<type_name>`.
pub fn hints_any(type_name: &str, msg: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/hintspb.{type_name}"),
        value: msg.encode_to_vec(),
    }
}

/// Whether a request accepts partial responses (Thanos: the deprecated
/// `partial_response_disabled` or the `ABORT` strategy refuse them).
pub fn partial_response(disabled: bool, strategy: i32) -> bool {
    !(disabled || strategy == PartialResponseStrategy::Abort as i32)
}

/// Vertical sharding of series by a hash of (some of) their labels.
#[derive(Debug, Clone, Default)]
pub struct Shard {
    pub index: u64,
    pub total: u64,
    pub by: bool,
    pub labels: Vec<String>,
}

impl Shard {
    /// Thanos' rule: XXH64 over `name 0xff value 0xff` of the selected labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        if self.total < 1 {
            return true;
        }
        let mut buf = Vec::with_capacity(256);
        for l in labels.iter() {
            let listed = self.labels.contains(&l.name);
            if listed == self.by {
                buf.extend_from_slice(l.name.as_bytes());
                buf.push(0xff);
                buf.extend_from_slice(l.value.as_bytes());
                buf.push(0xff);
            }
        }
        xxhash_rust::xxh64::xxh64(&buf, 0) % self.total == self.index
    }
}

/// What a label call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelsKind {
    /// Label names (`LabelNames`).
    Names,
    /// Values of one label (`LabelValues`).
    Values(String),
}

/// A LabelNames or LabelValues request, validated: one type and one path
/// for both, in every source and in the querier's API.
#[derive(Debug, Clone)]
pub struct LabelsQuery {
    pub kind: LabelsKind,
    /// Block matchers of the request's hints (store gateways).
    pub block_matchers: Vec<Matcher>,
    pub start: i64,
    pub end: i64,
    /// May be empty: then every series in the range counts.
    pub matchers: Vec<Matcher>,
    pub without_replica_labels: Vec<String>,
    /// Maximum names or values to return, 0 = all.
    pub limit: usize,
    pub partial_response: bool,
    /// The caller's tenant (`thanos-tenant` metadata), when it sent one.
    pub tenant: Option<String>,
}

impl LabelsQuery {
    pub fn from_names_request(r: &LabelNamesRequest) -> Result<Self, StoreError> {
        let block_matchers =
            block_matchers_of(r.hints.as_ref(), "hintspb.LabelNamesRequestHints", |b| {
                sluice_proto::hintspb::LabelNamesRequestHints::decode(b).map(|h| h.block_matchers)
            })?;
        Self::from_wire(
            LabelsKind::Names,
            WireLabels {
                start: r.start,
                end: r.end,
                matchers: &r.matchers,
                without_replica_labels: &r.without_replica_labels,
                limit: r.limit,
                partial_response_disabled: r.partial_response_disabled,
                partial_response_strategy: r.partial_response_strategy,
            },
            block_matchers,
        )
    }

    pub fn from_values_request(r: &LabelValuesRequest) -> Result<Self, StoreError> {
        if r.label.is_empty() {
            return Err(StoreError::InvalidArgument(
                "label name parameter cannot be empty".into(),
            ));
        }
        let block_matchers =
            block_matchers_of(r.hints.as_ref(), "hintspb.LabelValuesRequestHints", |b| {
                sluice_proto::hintspb::LabelValuesRequestHints::decode(b).map(|h| h.block_matchers)
            })?;
        Self::from_wire(
            LabelsKind::Values(r.label.clone()),
            WireLabels {
                start: r.start,
                end: r.end,
                matchers: &r.matchers,
                without_replica_labels: &r.without_replica_labels,
                limit: r.limit,
                partial_response_disabled: r.partial_response_disabled,
                partial_response_strategy: r.partial_response_strategy,
            },
            block_matchers,
        )
    }

    fn from_wire(
        kind: LabelsKind,
        w: WireLabels<'_>,
        block_matchers: Vec<Matcher>,
    ) -> Result<Self, StoreError> {
        Ok(LabelsQuery {
            kind,
            block_matchers,
            start: w.start,
            end: w.end,
            matchers: matchers_from_pb(w.matchers)?,
            without_replica_labels: w.without_replica_labels.to_vec(),
            limit: usize::try_from(w.limit).unwrap_or(0),
            partial_response: partial_response(
                w.partial_response_disabled,
                w.partial_response_strategy,
            ),
            tenant: None,
        })
    }

    /// The wire request for names, as a client forwards it.
    pub fn to_names_request(&self) -> LabelNamesRequest {
        LabelNamesRequest {
            partial_response_disabled: !self.partial_response,
            partial_response_strategy: self.strategy(),
            start: self.start,
            end: self.end,
            matchers: matchers_to_pb(&self.matchers),
            without_replica_labels: self.without_replica_labels.clone(),
            limit: self.limit as i64,
            ..Default::default()
        }
    }

    /// The wire request for values of `name`, as a client forwards it.
    pub fn to_values_request(&self, name: &str) -> LabelValuesRequest {
        LabelValuesRequest {
            label: name.to_string(),
            partial_response_disabled: !self.partial_response,
            partial_response_strategy: self.strategy(),
            start: self.start,
            end: self.end,
            matchers: matchers_to_pb(&self.matchers),
            without_replica_labels: self.without_replica_labels.clone(),
            limit: self.limit as i64,
            ..Default::default()
        }
    }

    fn strategy(&self) -> i32 {
        if self.partial_response {
            PartialResponseStrategy::Warn as i32
        } else {
            PartialResponseStrategy::Abort as i32
        }
    }

    /// Brings an answer into the StoreAPI's shape: sorted, unique, no empty
    /// strings, replica labels neither listed as names nor given values,
    /// truncated to the limit. Every source's answer goes through this.
    pub fn finish(&self, mut values: Vec<String>) -> Vec<String> {
        if let LabelsKind::Values(name) = &self.kind
            && self.without_replica_labels.iter().any(|l| l == name)
        {
            return Vec::new();
        }
        values.retain(|v| !v.is_empty());
        if self.kind == LabelsKind::Names {
            values.retain(|n| !self.without_replica_labels.contains(n));
        }
        values.sort_unstable();
        values.dedup();
        if self.limit > 0 {
            values.truncate(self.limit);
        }
        values
    }
}

/// The fields `LabelNamesRequest` and `LabelValuesRequest` share.
struct WireLabels<'a> {
    start: i64,
    end: i64,
    matchers: &'a [LabelMatcher],
    without_replica_labels: &'a [String],
    limit: i64,
    partial_response_disabled: bool,
    partial_response_strategy: i32,
}

/// Names or values, and the warnings gathered on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelsAnswer {
    pub values: Vec<String>,
    pub warnings: Vec<String>,
    /// The response's `hints` (store gateways: the blocks queried).
    pub hints: Option<prost_types::Any>,
}

/// Converts wire matchers; a bad type or regex is `InvalidArgument`.
pub fn matchers_from_pb(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, StoreError> {
    ms.iter()
        .map(|m| {
            let op = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchOp::Eq,
                Ok(label_matcher::Type::Neq) => MatchOp::Neq,
                Ok(label_matcher::Type::Re) => MatchOp::Re,
                Ok(label_matcher::Type::Nre) => MatchOp::Nre,
                Err(_) => {
                    return Err(StoreError::InvalidArgument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )));
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| StoreError::InvalidArgument(e.to_string()))
        })
        .collect()
}

/// Wire matchers of model matchers.
pub fn matchers_to_pb(ms: &[Matcher]) -> Vec<LabelMatcher> {
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

/// Wire labels of a label set.
pub fn to_pb_labels(l: &Labels) -> Vec<PbLabel> {
    l.iter()
        .map(|l| PbLabel {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// Wire labels of a label set, consuming it.
pub fn into_pb_labels(l: Labels) -> Vec<PbLabel> {
    l.into_vec()
        .into_iter()
        .map(|l| PbLabel {
            name: l.name,
            value: l.value,
        })
        .collect()
}

/// A label set of wire labels (sorted; a repeated name keeps its last value).
pub fn labels_from_pb(l: &[PbLabel]) -> Labels {
    Labels::from_pairs(l.iter().map(|l| (l.name.clone(), l.value.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_partitions_series() {
        let series: Vec<Labels> = (0..200)
            .map(|i| Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]))
            .collect();
        let total = 3;
        let mut seen = 0;
        for idx in 0..total {
            let s = Shard {
                index: idx,
                total,
                by: false,
                labels: vec![],
            };
            seen += series.iter().filter(|l| s.matches(l)).count();
        }
        assert_eq!(seen, 200, "every series lands in exactly one shard");
        let by_name = Shard {
            index: 0,
            total: 2,
            by: true,
            labels: vec!["__name__".into()],
        };
        let first = by_name.matches(&series[0]);
        assert!(
            series.iter().all(|l| by_name.matches(l) == first),
            "sharding by __name__ keeps a metric together"
        );
    }

    #[test]
    fn labels_answers_are_finished_the_same_way() {
        let q = LabelsQuery {
            kind: LabelsKind::Names,
            block_matchers: vec![],
            start: 0,
            end: 1,
            matchers: vec![],
            without_replica_labels: vec!["replica".into()],
            limit: 2,
            partial_response: true,
            tenant: None,
        };
        let got = q.finish(vec![
            "b".into(),
            "".into(),
            "replica".into(),
            "a".into(),
            "b".into(),
            "c".into(),
        ]);
        assert_eq!(got, vec!["a".to_string(), "b".to_string()]);
        let v = LabelsQuery {
            kind: LabelsKind::Values("replica".into()),
            block_matchers: vec![],
            limit: 0,
            ..q
        };
        assert!(
            v.finish(vec!["A".into()]).is_empty(),
            "a stripped label has no values"
        );
    }
}
