//! The other gRPC APIs a Thanos querier uses from a sidecar — `thanos.Rules`, `thanos.Targets`,
//! `thanos.Metadata` and `thanos.Exemplars` — answered from Prometheus' HTTP API with the external labels
//! attached (spec §1.9). Each call asks Prometheus once and sends its answer in a few frames.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use sluice_proto::thanos::exemplars_server::{Exemplars, ExemplarsServer};
use sluice_proto::thanos::metadata_server::{Metadata, MetadataServer};
use sluice_proto::thanos::rules_server::{Rules, RulesServer};
use sluice_proto::thanos::targets_server::{Targets, TargetsServer};
use sluice_proto::thanos::{
    ExemplarsRequest, ExemplarsResponse, MetricMetadataRequest, MetricMetadataResponse,
    RulesRequest, RulesResponse, TargetsRequest, TargetsResponse, exemplars_response,
    metric_metadata_response, rules_request, rules_response, targets_request, targets_response,
};
use sluice_storeapi::promjson::{self, ShapeError};
use sluice_storeapi::{StoreError, status};
use tonic::{Request, Response, Status};

use crate::source::{PromSource, prom_error};

type Frames<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Rules, Targets, Metadata and Exemplars of the Prometheus behind `source`.
#[derive(Clone)]
pub struct PromApis {
    source: Arc<PromSource>,
}

impl std::fmt::Debug for PromApis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromApis").finish_non_exhaustive()
    }
}

fn frames<T: Send + 'static>(items: Vec<T>) -> Frames<T> {
    Box::pin(futures::stream::iter(items.into_iter().map(Ok)))
}

fn shape_status(e: ShapeError) -> Status {
    status(&StoreError::Unavailable {
        what: "Prometheus".into(),
        detail: e.to_string(),
    })
}

/// Milliseconds as Prometheus' API time parameter (seconds with a fraction).
fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

impl PromApis {
    pub fn new(source: Arc<PromSource>) -> Self {
        PromApis { source }
    }

    /// The four gRPC services, ready to add to a server.
    pub fn servers(
        &self,
    ) -> (
        RulesServer<PromApis>,
        TargetsServer<PromApis>,
        MetadataServer<PromApis>,
        ExemplarsServer<PromApis>,
    ) {
        let max = sluice_proto::MAX_GRPC_MESSAGE_SIZE;
        (
            RulesServer::new(self.clone()).max_encoding_message_size(max),
            TargetsServer::new(self.clone()).max_encoding_message_size(max),
            MetadataServer::new(self.clone()).max_encoding_message_size(max),
            ExemplarsServer::new(self.clone()).max_encoding_message_size(max),
        )
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<serde_json::Value, Status> {
        self.source
            .prometheus()
            .api(path, query)
            .await
            .map_err(|e| status(&prom_error(e)))
    }
}

#[tonic::async_trait]
impl Rules for PromApis {
    type RulesStream = Frames<RulesResponse>;

    async fn rules(
        &self,
        req: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let r = req.into_inner();
        let mut q: Vec<(&str, String)> = Vec::new();
        match rules_request::Type::try_from(r.r#type) {
            Ok(rules_request::Type::Alert) => q.push(("type", "alert".into())),
            Ok(rules_request::Type::Record) => q.push(("type", "record".into())),
            _ => {}
        }
        q.extend(r.matcher_string.into_iter().map(|m| ("match[]", m)));
        q.extend(r.rule_name.into_iter().map(|m| ("rule_name[]", m)));
        q.extend(r.rule_group.into_iter().map(|m| ("rule_group[]", m)));
        q.extend(r.file.into_iter().map(|m| ("file[]", m)));
        let data = self.get("api/v1/rules", &q).await?;
        let ext = self.source.external_labels();
        let groups = promjson::rule_groups_from_prometheus(&data, &ext).map_err(shape_status)?;
        Ok(Response::new(frames(
            groups
                .into_iter()
                .map(|g| RulesResponse {
                    result: Some(rules_response::Result::Group(g)),
                })
                .collect(),
        )))
    }
}

#[tonic::async_trait]
impl Targets for PromApis {
    type TargetsStream = Frames<TargetsResponse>;

    async fn targets(
        &self,
        req: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let state = match targets_request::State::try_from(req.into_inner().state) {
            Ok(targets_request::State::Active) => "active",
            Ok(targets_request::State::Dropped) => "dropped",
            _ => "any",
        };
        let data = self
            .get("api/v1/targets", &[("state", state.to_string())])
            .await?;
        let ext = self.source.external_labels();
        let t = promjson::targets_from_prometheus(&data, &ext).map_err(shape_status)?;
        Ok(Response::new(frames(vec![TargetsResponse {
            result: Some(targets_response::Result::Targets(t)),
        }])))
    }
}

#[tonic::async_trait]
impl Metadata for PromApis {
    type MetricMetadataStream = Frames<MetricMetadataResponse>;

    async fn metric_metadata(
        &self,
        req: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let r = req.into_inner();
        let mut q: Vec<(&str, String)> = Vec::new();
        if !r.metric.is_empty() {
            q.push(("metric", r.metric));
        }
        // Thanos sends -1 for "no limit"; Prometheus treats a negative limit the same way.
        if r.limit != 0 {
            q.push(("limit", r.limit.to_string()));
        }
        let data = self.get("api/v1/metadata", &q).await?;
        let m = promjson::metadata_from_prometheus(&data).map_err(shape_status)?;
        Ok(Response::new(frames(vec![MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(m)),
        }])))
    }
}

#[tonic::async_trait]
impl Exemplars for PromApis {
    type ExemplarsStream = Frames<ExemplarsResponse>;

    async fn exemplars(
        &self,
        req: Request<ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let r = req.into_inner();
        if r.query.is_empty() {
            return Err(Status::invalid_argument("exemplars: empty query"));
        }
        let q = [
            ("query", r.query),
            ("start", api_time(r.start)),
            ("end", api_time(r.end)),
        ];
        let data = self.get("api/v1/query_exemplars", &q).await?;
        let ext = self.source.external_labels();
        let list = promjson::exemplars_from_prometheus(&data, &ext).map_err(shape_status)?;
        Ok(Response::new(frames(
            list.into_iter()
                .map(|d| ExemplarsResponse {
                    result: Some(exemplars_response::Result::Data(d)),
                })
                .collect(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::api_time;

    #[test]
    fn api_times_are_seconds_with_millis() {
        assert_eq!(api_time(1_600_096_945_479), "1600096945.479");
        assert_eq!(api_time(-1), "-1.999");
        assert_eq!(api_time(0), "0.000");
    }
}
