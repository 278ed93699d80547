//! Fan-out of the Rules, Targets, Metadata and Exemplars APIs to every healthy endpoint whose Info advertises
//! them, with partial response (an endpoint's failure is a warning naming it, or under ABORT the error) and
//! deduplication by replica labels as for series: the same rule, alert, target or exemplar seen through two
//! replicas is answered once, without the replica labels.

use std::collections::BTreeMap;
use std::future::Future;

use futures::StreamExt;
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::exemplars_client::ExemplarsClient;
use sluice_proto::thanos::metadata_client::MetadataClient;
use sluice_proto::thanos::rules_client::RulesClient;
use sluice_proto::thanos::targets_client::TargetsClient;
use sluice_proto::thanos::{
    ActiveTarget, AlertInstance, DroppedTarget, Exemplar, ExemplarData, ExemplarsRequest, LabelSet,
    MetricMetadata, MetricMetadataRequest, PartialResponseStrategy, Rule, RuleGroup, RulesRequest,
    TargetDiscovery, TargetsRequest, exemplars_response, metric_metadata_response, rule,
    rules_response, targets_response,
};
use tonic::Status;

use super::endpoints::{EndpointSet, EndpointState};
use super::merge::status_text;

/// Which API an endpoint must advertise to be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Rules,
    Targets,
    Metadata,
    Exemplars,
}

impl Api {
    fn served_by(self, s: &EndpointState) -> bool {
        match self {
            Api::Rules => s.rules,
            Api::Targets => s.targets,
            Api::Metadata => s.metric_metadata,
            Api::Exemplars => s.exemplars,
        }
    }
}

/// What one of these fan-outs answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

/// A frame of one of the four streams: data or a warning.
enum Frame<T> {
    Data(T),
    Warning(String),
}

/// Calls every endpoint serving `api`, concurrently, and collects their frames; failures become warnings naming
/// the endpoint, or (`partial` false) the error.
async fn fan<T, F, Fut>(
    set: &EndpointSet,
    api: Api,
    partial: bool,
    call: F,
) -> Result<(Vec<T>, Vec<String>), Status>
where
    F: Fn(super::endpoints::EndpointChannel) -> Fut,
    Fut: Future<Output = Result<Vec<Frame<T>>, Status>>,
{
    let eps: Vec<_> = set
        .all()
        .into_iter()
        .filter(|e| e.healthy() && api.served_by(&e.state()))
        .collect();
    let calls = eps.iter().map(|ep| {
        let f = call(ep.channel.clone());
        async move { (ep.address.clone(), f.await) }
    });
    let mut data = Vec::new();
    let mut warnings = Vec::new();
    for (addr, r) in futures::future::join_all(calls).await {
        match r {
            Ok(frames) => {
                for f in frames {
                    match f {
                        Frame::Data(d) => data.push(d),
                        Frame::Warning(w) => warnings.push(format!("endpoint {addr}: {w}")),
                    }
                }
            }
            Err(s) if partial => warnings.push(format!("endpoint {addr}: {}", status_text(&s))),
            Err(s) => {
                return Err(Status::aborted(format!(
                    "endpoint {addr}: {}",
                    status_text(&s)
                )));
            }
        }
    }
    Ok((data, warnings))
}

/// Reads a response stream to its end, turning each message into a frame.
async fn drain<M, T>(
    stream: Result<tonic::Response<tonic::Streaming<M>>, Status>,
    f: impl Fn(M) -> Option<Frame<T>>,
) -> Result<Vec<Frame<T>>, Status> {
    let mut s = stream?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        if let Some(fr) = f(m?) {
            out.push(fr);
        }
    }
    Ok(out)
}

fn partial_of(strategy: i32) -> bool {
    strategy != PartialResponseStrategy::Abort as i32
}

fn strip(ls: &mut Option<LabelSet>, replica: &[String]) {
    if let Some(l) = ls.as_mut() {
        l.labels.retain(|x| !replica.contains(&x.name));
    }
}

fn key(ls: &Option<LabelSet>) -> Vec<(String, String)> {
    ls.as_ref()
        .map(|l| {
            l.labels
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn ts_key(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    t.as_ref().map_or((i64::MIN, 0), |t| (t.seconds, t.nanos))
}

/// Rule groups of every endpoint serving Rules, deduplicated: groups by file and name, rules by kind, name,
/// query and labels without the replica labels (the most advanced alert state wins, then the latest
/// evaluation), alert instances by labels.
pub async fn rules(
    set: &EndpointSet,
    req: RulesRequest,
    replica_labels: &[String],
) -> Result<Answer<Vec<RuleGroup>>, Status> {
    let partial = partial_of(req.partial_response_strategy);
    let (groups, warnings) = fan(set, Api::Rules, partial, |ch| {
        let req = req.clone();
        async move {
            let mut c = RulesClient::new(ch).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
            drain(c.rules(req).await, |m| match m.result? {
                rules_response::Result::Group(g) => Some(Frame::Data(g)),
                rules_response::Result::Warning(w) => Some(Frame::Warning(w)),
            })
            .await
        }
    })
    .await?;
    Ok(Answer {
        value: dedup_groups(groups, replica_labels, req.partial_response_strategy),
        warnings,
    })
}

fn rule_key(r: &Rule) -> (u8, String, String, Vec<(String, String)>) {
    match &r.result {
        Some(rule::Result::Alert(a)) => (1, a.name.clone(), a.query.clone(), key(&a.labels)),
        Some(rule::Result::Recording(rr)) => {
            (2, rr.name.clone(), rr.query.clone(), key(&rr.labels))
        }
        None => (0, String::new(), String::new(), Vec::new()),
    }
}

/// How far along a rule is, to pick one of two replicas' copies.
fn rule_rank(r: &Rule) -> (i32, (i64, i32)) {
    match &r.result {
        Some(rule::Result::Alert(a)) => (a.state, ts_key(&a.last_evaluation)),
        Some(rule::Result::Recording(rr)) => (0, ts_key(&rr.last_evaluation)),
        None => (-1, (i64::MIN, 0)),
    }
}

fn dedup_instances(alerts: Vec<AlertInstance>) -> Vec<AlertInstance> {
    let mut by: BTreeMap<Vec<(String, String)>, AlertInstance> = BTreeMap::new();
    for a in alerts {
        let k = key(&a.labels);
        match by.get(&k) {
            // Higher state wins; for the same state the earlier activation.
            Some(cur)
                if (cur.state, std::cmp::Reverse(ts_key(&cur.active_at)))
                    >= (a.state, std::cmp::Reverse(ts_key(&a.active_at))) => {}
            _ => {
                by.insert(k, a);
            }
        }
    }
    by.into_values().collect()
}

fn dedup_groups(groups: Vec<RuleGroup>, replica: &[String], strategy: i32) -> Vec<RuleGroup> {
    let mut by: BTreeMap<(String, String), RuleGroup> = BTreeMap::new();
    for mut g in groups {
        g.partial_response_strategy = strategy;
        for r in &mut g.rules {
            match r.result.as_mut() {
                Some(rule::Result::Alert(a)) => {
                    strip(&mut a.labels, replica);
                    for i in &mut a.alerts {
                        strip(&mut i.labels, replica);
                        i.partial_response_strategy = strategy;
                    }
                    a.alerts = dedup_instances(std::mem::take(&mut a.alerts));
                }
                Some(rule::Result::Recording(rr)) => strip(&mut rr.labels, replica),
                None => {}
            }
        }
        // Rules are merged one by one, also within a group: a querier below may already have put both
        // replicas' copies of a rule into one group.
        let rules = std::mem::take(&mut g.rules);
        let cur = match by.entry((g.file.clone(), g.name.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => v.insert(g),
            std::collections::btree_map::Entry::Occupied(o) => {
                let cur = o.into_mut();
                if ts_key(&g.last_evaluation) > ts_key(&cur.last_evaluation) {
                    cur.last_evaluation = g.last_evaluation;
                    cur.evaluation_duration_seconds = g.evaluation_duration_seconds;
                }
                cur
            }
        };
        for r in rules {
            let k = rule_key(&r);
            match cur.rules.iter_mut().find(|x| rule_key(x) == k) {
                Some(x) if rule_rank(x) >= rule_rank(&r) => {}
                Some(x) => *x = r,
                None => cur.rules.push(r),
            }
        }
    }
    by.into_values().collect()
}

/// Targets of every endpoint serving Targets, deduplicated by their labels without the replica labels (the
/// latest scrape wins).
pub async fn targets(
    set: &EndpointSet,
    req: TargetsRequest,
    replica_labels: &[String],
) -> Result<Answer<TargetDiscovery>, Status> {
    let partial = partial_of(req.partial_response_strategy);
    let (all, warnings) = fan(set, Api::Targets, partial, |ch| async move {
        let mut c = TargetsClient::new(ch).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
        drain(c.targets(req).await, |m| match m.result? {
            targets_response::Result::Targets(t) => Some(Frame::Data(t)),
            targets_response::Result::Warning(w) => Some(Frame::Warning(w)),
        })
        .await
    })
    .await?;
    let mut active: BTreeMap<(String, Vec<(String, String)>), ActiveTarget> = BTreeMap::new();
    let mut dropped: BTreeMap<Vec<(String, String)>, DroppedTarget> = BTreeMap::new();
    for t in all {
        for mut a in t.active_targets {
            strip(&mut a.labels, replica_labels);
            strip(&mut a.discovered_labels, replica_labels);
            let k = (a.scrape_pool.clone(), key(&a.labels));
            match active.get(&k) {
                Some(cur) if ts_key(&cur.last_scrape) >= ts_key(&a.last_scrape) => {}
                _ => {
                    active.insert(k, a);
                }
            }
        }
        for mut d in t.dropped_targets {
            strip(&mut d.discovered_labels, replica_labels);
            dropped.entry(key(&d.discovered_labels)).or_insert(d);
        }
    }
    Ok(Answer {
        value: TargetDiscovery {
            active_targets: active.into_values().collect(),
            dropped_targets: dropped.into_values().collect(),
        },
        warnings,
    })
}

/// Metric metadata of every endpoint serving Metadata, merged: each metric's distinct entries, at most `limit`
/// metrics (`limit` < 0: all).
pub async fn metadata(
    set: &EndpointSet,
    req: MetricMetadataRequest,
) -> Result<Answer<MetricMetadata>, Status> {
    let partial = partial_of(req.partial_response_strategy);
    let limit = req.limit;
    let (all, warnings) = fan(set, Api::Metadata, partial, |ch| {
        let req = req.clone();
        async move {
            let mut c = MetadataClient::new(ch).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
            drain(c.metric_metadata(req).await, |m| match m.result? {
                metric_metadata_response::Result::Metadata(d) => Some(Frame::Data(d)),
                metric_metadata_response::Result::Warning(w) => Some(Frame::Warning(w)),
            })
            .await
        }
    })
    .await?;
    let mut merged: BTreeMap<String, Vec<sluice_proto::thanos::Meta>> = BTreeMap::new();
    for m in all {
        for (name, entry) in m.metadata {
            let metas = merged.entry(name).or_default();
            for x in entry.metas {
                if !metas.contains(&x) {
                    metas.push(x);
                }
            }
        }
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    Ok(Answer {
        value: MetricMetadata {
            metadata: merged
                .into_iter()
                .take(take)
                .map(|(k, metas)| (k, sluice_proto::thanos::MetricMetadataEntry { metas }))
                .collect(),
        },
        warnings,
    })
}

/// Exemplars of every endpoint serving Exemplars whose range overlaps the request, merged per series (labels
/// without the replica labels), each exemplar once, in time order.
pub async fn exemplars(
    set: &EndpointSet,
    req: ExemplarsRequest,
    replica_labels: &[String],
) -> Result<Answer<Vec<ExemplarData>>, Status> {
    let partial = partial_of(req.partial_response_strategy);
    let (all, warnings) = fan(set, Api::Exemplars, partial, |ch| {
        let req = req.clone();
        async move {
            let mut c = ExemplarsClient::new(ch).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
            drain(c.exemplars(req).await, |m| match m.result? {
                exemplars_response::Result::Data(d) => Some(Frame::Data(d)),
                exemplars_response::Result::Warning(w) => Some(Frame::Warning(w)),
            })
            .await
        }
    })
    .await?;
    let mut by: BTreeMap<Vec<(String, String)>, (Option<LabelSet>, Vec<Exemplar>)> =
        BTreeMap::new();
    for mut d in all {
        strip(&mut d.series_labels, replica_labels);
        let e = by
            .entry(key(&d.series_labels))
            .or_insert_with(|| (d.series_labels.clone(), Vec::new()));
        e.1.extend(d.exemplars);
    }
    let value = by
        .into_values()
        .map(|(series_labels, mut ex)| {
            ex.sort_by(|a, b| {
                (a.ts, key(&a.labels), a.value.to_bits()).cmp(&(
                    b.ts,
                    key(&b.labels),
                    b.value.to_bits(),
                ))
            });
            ex.dedup_by(|a, b| {
                a.ts == b.ts && a.value.to_bits() == b.value.to_bits() && a.labels == b.labels
            });
            ExemplarData {
                series_labels,
                exemplars: ex,
            }
        })
        .collect();
    Ok(Answer { value, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::thanos::{Alert, AlertState, Label};

    fn ls(pairs: &[(&str, &str)]) -> Option<LabelSet> {
        Some(LabelSet {
            labels: pairs
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        })
    }

    fn group(replica: &str, state: AlertState) -> RuleGroup {
        RuleGroup {
            name: "g".into(),
            file: "f.yml".into(),
            rules: vec![Rule {
                result: Some(rule::Result::Alert(Alert {
                    name: "Hot".into(),
                    query: "t > 1".into(),
                    state: state as i32,
                    labels: ls(&[("replica", replica), ("severity", "page")]),
                    alerts: vec![AlertInstance {
                        labels: ls(&[("alertname", "Hot"), ("replica", replica)]),
                        state: state as i32,
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn replicas_of_a_group_become_one_with_the_most_advanced_state() {
        let out = dedup_groups(
            vec![
                group("0", AlertState::Pending),
                group("1", AlertState::Firing),
            ],
            &["replica".to_string()],
            0,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rules.len(), 1);
        let Some(rule::Result::Alert(a)) = &out[0].rules[0].result else {
            panic!("alert")
        };
        assert_eq!(a.state, AlertState::Firing as i32);
        assert_eq!(
            key(&a.labels),
            vec![("severity".to_string(), "page".to_string())]
        );
        assert_eq!(a.alerts.len(), 1);
        // Both copies in one group (as a querier below sends them) become one too.
        let mut both = group("0", AlertState::Pending);
        both.rules.extend(group("1", AlertState::Firing).rules);
        let out = dedup_groups(vec![both], &["replica".to_string()], 0);
        assert_eq!(out[0].rules.len(), 1);
        // Without replica labels configured both copies stay.
        let out = dedup_groups(
            vec![
                group("0", AlertState::Pending),
                group("1", AlertState::Firing),
            ],
            &[],
            0,
        );
        assert_eq!(out[0].rules.len(), 2);
    }
}

/// The querier's own `thanos.Rules`, `thanos.Targets`, `thanos.Metadata` and `thanos.Exemplars` (querier of
/// queriers): each call fans out to the endpoints and answers with the merged result, the endpoints' warnings
/// as warning frames. Replicas are left for the querier above to deduplicate with its own replica labels.
pub mod server {
    use std::pin::Pin;
    use std::sync::Arc;

    use futures::Stream;
    use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
    use sluice_proto::thanos::exemplars_server::{Exemplars, ExemplarsServer};
    use sluice_proto::thanos::metadata_server::{Metadata, MetadataServer};
    use sluice_proto::thanos::rules_server::{Rules, RulesServer};
    use sluice_proto::thanos::targets_server::{Targets, TargetsServer};
    use sluice_proto::thanos::{
        ExemplarsRequest, ExemplarsResponse, MetricMetadataRequest, MetricMetadataResponse,
        RulesRequest, RulesResponse, TargetsRequest, TargetsResponse, exemplars_response,
        metric_metadata_response, rules_response, targets_response,
    };
    use tonic::{Request, Response, Status};

    use crate::fanout::EndpointSet;

    type Frames<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

    fn frames<T: Send + 'static>(items: Vec<T>) -> Frames<T> {
        Box::pin(futures::stream::iter(items.into_iter().map(Ok)))
    }

    /// The four services over an endpoint set.
    #[derive(Clone)]
    pub struct ProxyApis {
        set: Arc<EndpointSet>,
    }

    impl std::fmt::Debug for ProxyApis {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ProxyApis")
        }
    }

    impl ProxyApis {
        pub fn new(set: Arc<EndpointSet>) -> Self {
            ProxyApis { set }
        }

        /// The four gRPC services, ready to add to a server.
        pub fn servers(
            &self,
        ) -> (
            RulesServer<ProxyApis>,
            TargetsServer<ProxyApis>,
            MetadataServer<ProxyApis>,
            ExemplarsServer<ProxyApis>,
        ) {
            let max = MAX_GRPC_MESSAGE_SIZE;
            (
                RulesServer::new(self.clone()).max_encoding_message_size(max),
                TargetsServer::new(self.clone()).max_encoding_message_size(max),
                MetadataServer::new(self.clone()).max_encoding_message_size(max),
                ExemplarsServer::new(self.clone()).max_encoding_message_size(max),
            )
        }
    }

    #[tonic::async_trait]
    impl Rules for ProxyApis {
        type RulesStream = Frames<RulesResponse>;

        async fn rules(
            &self,
            req: Request<RulesRequest>,
        ) -> Result<Response<Self::RulesStream>, Status> {
            let a = super::rules(&self.set, req.into_inner(), &[]).await?;
            let mut out: Vec<RulesResponse> = a
                .warnings
                .into_iter()
                .map(|w| RulesResponse {
                    result: Some(rules_response::Result::Warning(w)),
                })
                .collect();
            out.extend(a.value.into_iter().map(|g| RulesResponse {
                result: Some(rules_response::Result::Group(g)),
            }));
            Ok(Response::new(frames(out)))
        }
    }

    #[tonic::async_trait]
    impl Targets for ProxyApis {
        type TargetsStream = Frames<TargetsResponse>;

        async fn targets(
            &self,
            req: Request<TargetsRequest>,
        ) -> Result<Response<Self::TargetsStream>, Status> {
            let a = super::targets(&self.set, req.into_inner(), &[]).await?;
            let mut out: Vec<TargetsResponse> = a
                .warnings
                .into_iter()
                .map(|w| TargetsResponse {
                    result: Some(targets_response::Result::Warning(w)),
                })
                .collect();
            out.push(TargetsResponse {
                result: Some(targets_response::Result::Targets(a.value)),
            });
            Ok(Response::new(frames(out)))
        }
    }

    #[tonic::async_trait]
    impl Metadata for ProxyApis {
        type MetricMetadataStream = Frames<MetricMetadataResponse>;

        async fn metric_metadata(
            &self,
            req: Request<MetricMetadataRequest>,
        ) -> Result<Response<Self::MetricMetadataStream>, Status> {
            let a = super::metadata(&self.set, req.into_inner()).await?;
            let mut out: Vec<MetricMetadataResponse> = a
                .warnings
                .into_iter()
                .map(|w| MetricMetadataResponse {
                    result: Some(metric_metadata_response::Result::Warning(w)),
                })
                .collect();
            out.push(MetricMetadataResponse {
                result: Some(metric_metadata_response::Result::Metadata(a.value)),
            });
            Ok(Response::new(frames(out)))
        }
    }

    #[tonic::async_trait]
    impl Exemplars for ProxyApis {
        type ExemplarsStream = Frames<ExemplarsResponse>;

        async fn exemplars(
            &self,
            req: Request<ExemplarsRequest>,
        ) -> Result<Response<Self::ExemplarsStream>, Status> {
            let a = super::exemplars(&self.set, req.into_inner(), &[]).await?;
            let mut out: Vec<ExemplarsResponse> = a
                .warnings
                .into_iter()
                .map(|w| ExemplarsResponse {
                    result: Some(exemplars_response::Result::Warning(w)),
                })
                .collect();
            out.extend(a.value.into_iter().map(|d| ExemplarsResponse {
                result: Some(exemplars_response::Result::Data(d)),
            }));
            Ok(Response::new(frames(out)))
        }
    }
}
