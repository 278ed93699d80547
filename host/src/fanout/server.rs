//! The querier as a StoreAPI server: `Info` advertises the union of its
//! endpoints; `Series`, `LabelNames` and `LabelValues` pass through the
//! fan-out (querier of queriers).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::info::info_server::{Info, InfoServer};
use sluice_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
use sluice_proto::thanos::store_server::{Store, StoreServer};
use sluice_proto::thanos::{
    InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, PartialResponseStrategy, SeriesBatch, SeriesRequest, SeriesResponse,
    StoreType, ZLabelSet, series_response,
};
use tonic::{Code, Request, Response, Status};

use super::{EndpointSet, FanoutItem, ProxyRequest};
use crate::bucket::to_pb_labels;
use crate::metrics::{GrpcMetrics, Metrics};
use crate::storeapi::{matchers_from_pb, status};

/// `thanos.Store` and `thanos.info.Info` over an endpoint set.
#[derive(Clone)]
pub struct ProxyStore {
    set: Arc<EndpointSet>,
    metrics: GrpcMetrics,
}

impl std::fmt::Debug for ProxyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyStore")
    }
}

fn abort(disabled: bool, strategy: i32) -> bool {
    disabled || strategy == PartialResponseStrategy::Abort as i32
}

impl ProxyStore {
    pub fn new(set: Arc<EndpointSet>, metrics: &Metrics) -> Self {
        ProxyStore {
            set,
            metrics: GrpcMetrics::new(metrics),
        }
    }

    pub fn store_server(&self) -> StoreServer<ProxyStore> {
        StoreServer::new(self.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }

    pub fn info_server(&self) -> InfoServer<ProxyStore> {
        InfoServer::new(self.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }

    fn done<T>(
        &self,
        method: &str,
        start: Instant,
        r: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let code = r.as_ref().err().map(Status::code).unwrap_or(Code::Ok);
        self.metrics.handled(
            "thanos.Store",
            method,
            "unary",
            code,
            start.elapsed().as_secs_f64(),
        );
        r.map(Response::new)
    }
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for ProxyStore {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesStream>, Status> {
        self.metrics
            .started("thanos.Store", "Series", "server_stream");
        let r = request.into_inner();
        let matchers = matchers_from_pb(&r.matchers).map_err(|e| status(&e))?;
        if matchers.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding selector labels)",
            ));
        }
        let batch = usize::try_from(r.response_batch_size).unwrap_or(1);
        let partial = !abort(r.partial_response_disabled, r.partial_response_strategy);
        let preq = ProxyRequest {
            request: r,
            matchers,
            partial_response: partial,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let set = self.set.clone();
        tokio::spawn(async move { super::series(&set, preq, tx).await });
        let (otx, orx) = tokio::sync::mpsc::channel::<Result<SeriesResponse, Status>>(4);
        tokio::spawn(async move {
            let mut pending: Vec<sluice_proto::thanos::Series> = Vec::new();
            let flush = |pending: &mut Vec<sluice_proto::thanos::Series>| {
                let series = std::mem::take(pending);
                SeriesResponse {
                    result: Some(series_response::Result::Batch(SeriesBatch { series })),
                }
            };
            loop {
                // A client that hangs up closes `orx`; dropping `rx` then
                // ends the fan-out and cancels the endpoints' streams.
                let item = tokio::select! {
                    _ = otx.closed() => return,
                    item = rx.recv() => item,
                };
                let Some(item) = item else { break };
                let frames: Vec<Result<SeriesResponse, Status>> = match item {
                    Ok(FanoutItem::Series(run)) if batch > 1 => {
                        let mut full = Vec::new();
                        for s in run.iter() {
                            pending.push(s.to_series());
                            if pending.len() >= batch {
                                full.push(Ok(flush(&mut pending)));
                            }
                        }
                        full
                    }
                    Ok(FanoutItem::Series(run)) => run
                        .iter()
                        .map(|s| {
                            Ok(SeriesResponse {
                                result: Some(series_response::Result::Series(s.to_series())),
                            })
                        })
                        .collect(),
                    Ok(FanoutItem::Warning(w)) => vec![Ok(SeriesResponse {
                        result: Some(series_response::Result::Warning(w)),
                    })],
                    Err(e) => vec![Err(e)],
                };
                for frame in frames {
                    if otx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            if !pending.is_empty() {
                let _ = otx.send(Ok(flush(&mut pending))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(orx),
        )))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let res = async {
            let ms = matchers_from_pb(&r.matchers).map_err(|e| status(&e))?;
            let partial = !abort(r.partial_response_disabled, r.partial_response_strategy);
            let (names, warnings) = super::label_names(&self.set, r, &ms, partial).await?;
            Ok(LabelNamesResponse {
                names,
                warnings,
                hints: None,
            })
        }
        .await;
        self.done("LabelNames", start, res)
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let res = async {
            let ms = matchers_from_pb(&r.matchers).map_err(|e| status(&e))?;
            let partial = !abort(r.partial_response_disabled, r.partial_response_strategy);
            let (values, warnings) = super::label_values(&self.set, r, &ms, partial).await?;
            Ok(LabelValuesResponse {
                values,
                warnings,
                hints: None,
            })
        }
        .await;
        self.done("LabelValues", start, res)
    }

    async fn info(&self, _r: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let start = Instant::now();
        let (min_time, max_time, sets) = self.set.info();
        let res = Ok(InfoResponse {
            labels: vec![],
            min_time,
            max_time,
            store_type: StoreType::Query as i32,
            label_sets: sets
                .iter()
                .map(|s| ZLabelSet {
                    labels: to_pb_labels(s),
                })
                .collect(),
        });
        self.done("Info", start, res)
    }
}

#[tonic::async_trait]
impl Info for ProxyStore {
    async fn info(&self, _r: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        let start = Instant::now();
        let (min_time, max_time, sets) = self.set.info();
        let res = Ok(InfoResp {
            label_sets: sets
                .iter()
                .map(|s| ZLabelSet {
                    labels: to_pb_labels(s),
                })
                .collect(),
            component_type: "query".into(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: vec![],
                supports_projections: false,
            }),
            ..Default::default()
        });
        let code = Code::Ok;
        self.metrics.handled(
            "thanos.info.Info",
            "Info",
            "unary",
            code,
            start.elapsed().as_secs_f64(),
        );
        res.map(Response::new)
    }
}
