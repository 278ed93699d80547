//! storeapi owns the Thanos gRPC surface: `thanos.info.Info` and
//! `thanos.Store` served over a bucket store, and the conversions between
//! wire messages and the store's types. It is the only place errors become
//! gRPC status codes ([`status`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::info::info_server::{Info, InfoServer};
use sluice_proto::thanos::info::{
    InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo, TsdbInfo,
};
use sluice_proto::thanos::store_server::{Store, StoreServer};
use sluice_proto::thanos::{
    Aggr, InfoRequest, InfoResponse, LabelMatcher, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, PartialResponseStrategy, SeriesRequest,
    SeriesResponse, StoreType, ZLabelSet, label_matcher,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::bucket::{BucketError, BucketStore, LabelsQuery, SeriesQuery, Shard, to_pb_labels};
use crate::metrics::{GrpcMetrics, Metrics};
use crate::model::{MatchOp, Matcher};

/// Maps a store error to its gRPC status. The one place this happens.
pub fn status(e: &BucketError) -> Status {
    let code = match e {
        BucketError::InvalidArgument(_) => Code::InvalidArgument,
        BucketError::LimitExceeded { .. } => Code::ResourceExhausted,
        BucketError::NotReady => Code::Unavailable,
        BucketError::Block { .. } | BucketError::Bucket(_) => Code::Internal,
        BucketError::Internal(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Converts wire matchers; a bad type or regex is `InvalidArgument`.
pub fn matchers_from_pb(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, BucketError> {
    ms.iter()
        .map(|m| {
            let op = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchOp::Eq,
                Ok(label_matcher::Type::Neq) => MatchOp::Neq,
                Ok(label_matcher::Type::Re) => MatchOp::Re,
                Ok(label_matcher::Type::Nre) => MatchOp::Nre,
                Err(_) => {
                    return Err(BucketError::InvalidArgument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )));
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| BucketError::InvalidArgument(e.to_string()))
        })
        .collect()
}

const STORE_SERVICE: &str = "thanos.Store";
const INFO_SERVICE: &str = "thanos.info.Info";

/// The gRPC services of a store gateway.
#[derive(Clone)]
pub struct StoreService {
    store: Arc<BucketStore>,
    metrics: GrpcMetrics,
    component: &'static str,
}

impl std::fmt::Debug for StoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreService")
            .field("component", &self.component)
            .finish()
    }
}

impl StoreService {
    pub fn new(store: Arc<BucketStore>, metrics: &Metrics) -> Self {
        StoreService {
            store,
            metrics: GrpcMetrics::new(metrics),
            component: "store",
        }
    }

    /// `thanos.Store` server with Thanos' message size limits.
    pub fn store_server(&self) -> StoreServer<StoreService> {
        StoreServer::new(self.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }

    /// `thanos.info.Info` server.
    pub fn info_server(&self) -> InfoServer<StoreService> {
        InfoServer::new(self.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }

    fn unary<T>(
        &self,
        service: &str,
        method: &str,
        start: Instant,
        r: Result<T, BucketError>,
    ) -> Result<Response<T>, Status> {
        let r = r.map(Response::new).map_err(|e| status(&e));
        let code = r.as_ref().err().map(Status::code).unwrap_or(Code::Ok);
        self.metrics.handled(
            service,
            method,
            "unary",
            code,
            start.elapsed().as_secs_f64(),
        );
        r
    }
}

/// Records an RPC's outcome when its response stream ends or is dropped.
struct StreamTrack {
    metrics: GrpcMetrics,
    start: Instant,
    code: Code,
}

impl Drop for StreamTrack {
    fn drop(&mut self) {
        self.metrics.handled(
            STORE_SERVICE,
            "Series",
            "server_stream",
            self.code,
            self.start.elapsed().as_secs_f64(),
        );
    }
}

fn labels_query(
    start: i64,
    end: i64,
    matchers: &[LabelMatcher],
    without: Vec<String>,
    limit: i64,
) -> Result<LabelsQuery, BucketError> {
    Ok(LabelsQuery {
        start,
        end,
        matchers: matchers_from_pb(matchers)?,
        without_replica_labels: without,
        limit: usize::try_from(limit).unwrap_or(0),
    })
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreService {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesStream>, Status> {
        self.metrics
            .started(STORE_SERVICE, "Series", "server_stream");
        let mut track = StreamTrack {
            metrics: self.metrics.clone(),
            start: Instant::now(),
            code: Code::Ok,
        };
        let r = request.into_inner();
        let matchers = match matchers_from_pb(&r.matchers) {
            Ok(m) => m,
            Err(e) => {
                let s = status(&e);
                track.code = s.code();
                return Err(s);
            }
        };
        let aggregates = r
            .aggregates
            .iter()
            .filter_map(|&a| Aggr::try_from(a).ok())
            .collect();
        let abort = r.partial_response_disabled
            || r.partial_response_strategy == PartialResponseStrategy::Abort as i32;
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
        let q = SeriesQuery {
            min_time: r.min_time,
            max_time: r.max_time,
            matchers,
            max_resolution_window: r.max_resolution_window,
            aggregates,
            skip_chunks: r.skip_chunks,
            without_replica_labels: r.without_replica_labels,
            limit: usize::try_from(r.limit).unwrap_or(0),
            shard,
            partial_response: !abort,
            batch_size: usize::try_from(r.response_batch_size).unwrap_or(1),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = self.store.clone();
        tokio::spawn(async move { store.series(q, tx).await });
        let stream = ReceiverStream::new(rx).map(move |item| {
            item.map_err(|e| {
                let s = status(&e);
                track.code = s.code();
                s
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        self.metrics.started(STORE_SERVICE, "LabelNames", "unary");
        let start = Instant::now();
        let r = request.into_inner();
        let res = async {
            let q = labels_query(
                r.start,
                r.end,
                &r.matchers,
                r.without_replica_labels,
                r.limit,
            )?;
            let names = self.store.label_names(q).await?;
            Ok(LabelNamesResponse {
                names,
                warnings: vec![],
                hints: None,
            })
        }
        .await;
        self.unary(STORE_SERVICE, "LabelNames", start, res)
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        self.metrics.started(STORE_SERVICE, "LabelValues", "unary");
        let start = Instant::now();
        let r = request.into_inner();
        let res = async {
            if r.label.is_empty() {
                return Err(BucketError::InvalidArgument(
                    "label name parameter cannot be empty".into(),
                ));
            }
            let q = labels_query(
                r.start,
                r.end,
                &r.matchers,
                r.without_replica_labels,
                r.limit,
            )?;
            let values = self.store.label_values(&r.label, q).await?;
            Ok(LabelValuesResponse {
                values,
                warnings: vec![],
                hints: None,
            })
        }
        .await;
        self.unary(STORE_SERVICE, "LabelValues", start, res)
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.metrics.started(STORE_SERVICE, "Info", "unary");
        let start = Instant::now();
        let res = if self.store.is_ready() {
            let (min_time, max_time, sets) = self.store.info();
            Ok(InfoResponse {
                labels: vec![],
                min_time,
                max_time,
                store_type: StoreType::Store as i32,
                label_sets: sets
                    .iter()
                    .map(|s| ZLabelSet {
                        labels: to_pb_labels(&s.labels),
                    })
                    .collect(),
            })
        } else {
            Err(BucketError::NotReady)
        };
        self.unary(STORE_SERVICE, "Info", start, res)
    }
}

#[tonic::async_trait]
impl Info for StoreService {
    async fn info(&self, _request: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        self.metrics.started(INFO_SERVICE, "Info", "unary");
        let start = Instant::now();
        let res = if self.store.is_ready() {
            let (min_time, max_time, sets) = self.store.info();
            Ok(InfoResp {
                label_sets: sets
                    .iter()
                    .map(|s| ZLabelSet {
                        labels: to_pb_labels(&s.labels),
                    })
                    .collect(),
                component_type: self.component.to_string(),
                store: Some(StoreInfo {
                    min_time,
                    max_time,
                    supports_sharding: true,
                    supports_without_replica_labels: true,
                    tsdb_infos: sets
                        .iter()
                        .map(|s| TsdbInfo {
                            labels: Some(ZLabelSet {
                                labels: to_pb_labels(&s.labels),
                            }),
                            min_time: s.min_time,
                            max_time: s.max_time,
                        })
                        .collect(),
                    supports_projections: false,
                }),
                ..Default::default()
            })
        } else {
            Err(BucketError::NotReady)
        };
        self.unary(INFO_SERVICE, "Info", start, res)
    }
}
