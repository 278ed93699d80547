//! The one StoreAPI gRPC server: `thanos.Store` and `thanos.info.Info` over
//! any [`StoreSource`]. It validates requests, bounds concurrent Series calls,
//! cancels the source when the client goes, counts limits and batches frames
//! through the [`SeriesSink`], finishes label answers the same way for every
//! source, records per-request metrics, and maps errors to gRPC codes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sluice_metrics::Metrics;
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::info::info_server::{Info, InfoServer};
use sluice_proto::thanos::info::{
    ExemplarsInfo, InfoRequest as InfoReq, InfoResponse as InfoResp, MetricMetadataInfo, RulesInfo,
    StoreInfo, TargetsInfo, TsdbInfo as PbTsdbInfo,
};
use sluice_proto::thanos::store_server::{Store, StoreServer};
use sluice_proto::thanos::{
    InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, SeriesRequest, SeriesResponse, ZLabelSet,
};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};

use crate::codec::ServerFrameCodec;
use crate::metrics::GrpcMetrics;
use crate::sink::{SeriesLimits, SeriesSink};
use crate::{LabelsQuery, SeriesQuery, SourceInfo, StoreError, StoreSource, status, to_pb_labels};

const STORE_SERVICE: &str = "thanos.Store";
const INFO_SERVICE: &str = "thanos.info.Info";

/// Largest request any StoreAPI server decodes. Requests are matchers and
/// options: a few MiB is far more than any real one, and a client cannot
/// make the server buffer more. Responses keep Thanos' 2 GiB limit.
pub const MAX_REQUEST_SIZE: usize = 8 << 20;

/// Knobs of the server (Thanos store-gateway flag semantics).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Series calls served at once; more wait their turn
    /// (`--store.grpc.series-max-concurrency`, 20). 0 = unbounded.
    pub series_max_concurrency: usize,
    /// Per-call series and samples limits.
    pub limits: SeriesLimits,
    /// Prefix of the server's own metrics (`thanos_bucket_store` for the
    /// store gateway, as in Thanos).
    pub metrics_prefix: &'static str,
    /// The other gRPC APIs the process serves next to Store, advertised in Info.
    pub apis: ExtraApis,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            series_max_concurrency: 20,
            limits: SeriesLimits::default(),
            metrics_prefix: "thanos_bucket_store",
            apis: ExtraApis::default(),
        }
    }
}

/// The APIs besides Store a process serves (`thanos.Rules`, `thanos.Targets`, `thanos.Metadata`,
/// `thanos.Exemplars`): Info advertises each so queriers fan out to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraApis {
    pub rules: bool,
    pub targets: bool,
    pub metric_metadata: bool,
    /// The time range exemplars are served for.
    pub exemplars: Option<(i64, i64)>,
}

type QueryLabels = Vec<(&'static str, String)>;

#[derive(Clone)]
struct SeriesMetrics {
    in_flight: Gauge,
    gate_max: Gauge,
    gate_seconds: Histogram,
    result_series: Histogram,
    dropped: Family<QueryLabels, Counter>,
}

impl SeriesMetrics {
    fn new(metrics: &Metrics, prefix: &str, max: usize) -> Self {
        let m = SeriesMetrics {
            in_flight: Gauge::default(),
            gate_max: Gauge::default(),
            gate_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            result_series: Histogram::new(exponential_buckets(1.0, 4.0, 12)),
            dropped: Family::default(),
        };
        m.gate_max.set(max as i64);
        metrics.register(|r| {
            r.register(
                format!("{prefix}_series_gate_queries_in_flight"),
                "Number of Series calls being served.",
                m.in_flight.clone(),
            );
            r.register(
                format!("{prefix}_series_gate_queries_max"),
                "Most Series calls served at once (0: unbounded).",
                m.gate_max.clone(),
            );
            r.register(
                format!("{prefix}_series_gate_duration_seconds"),
                "How long Series calls waited for their turn.",
                m.gate_seconds.clone(),
            );
            r.register(
                format!("{prefix}_series_result_series"),
                "Number of series returned by a Series call.",
                m.result_series.clone(),
            );
            r.register(
                format!("{prefix}_queries_dropped"),
                "Series calls dropped because they reached a limit, by limit.",
                m.dropped.clone(),
            );
        });
        m
    }
}

struct Shared<S> {
    source: Arc<S>,
    opts: ServerOptions,
    grpc: GrpcMetrics,
    series: SeriesMetrics,
    gate: Option<Arc<Semaphore>>,
}

/// The StoreAPI over one source. Cheap to clone.
pub struct StoreApi<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for StoreApi<S> {
    fn clone(&self) -> Self {
        StoreApi {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for StoreApi<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreApi")
            .field("opts", &self.shared.opts)
            .finish()
    }
}

/// Encoded `SeriesResponse` frames.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

impl<S: StoreSource> StoreApi<S> {
    pub fn new(source: Arc<S>, opts: ServerOptions, metrics: &Metrics) -> Self {
        let gate = (opts.series_max_concurrency > 0)
            .then(|| Arc::new(Semaphore::new(opts.series_max_concurrency)));
        StoreApi {
            shared: Arc::new(Shared {
                series: SeriesMetrics::new(
                    metrics,
                    opts.metrics_prefix,
                    opts.series_max_concurrency,
                ),
                grpc: GrpcMetrics::new(metrics),
                source,
                opts,
                gate,
            }),
        }
    }

    /// The source behind this server.
    pub fn source(&self) -> &Arc<S> {
        &self.shared.source
    }

    /// `thanos.Store`: Series answered with encoded frames, the other
    /// methods through the generated server.
    pub fn store_server(&self) -> StoreApiServer<S> {
        StoreApiServer {
            inner: StoreServer::new(self.clone())
                .max_decoding_message_size(MAX_REQUEST_SIZE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE),
            api: self.clone(),
        }
    }

    /// `thanos.info.Info`.
    pub fn info_server(&self) -> InfoServer<StoreApi<S>> {
        InfoServer::new(self.clone())
            .max_decoding_message_size(MAX_REQUEST_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }

    /// Serves one Series call: validates it, waits for a turn, runs the
    /// source on a task of its own and streams the frames it produces. The
    /// task ends when the source is done, fails, or the client goes.
    pub fn series_frames(&self, r: Request<SeriesRequest>) -> Result<FrameStream, Status> {
        let tenant = crate::tenant_of(r.metadata());
        let r = r.into_inner();
        let sh = &self.shared;
        sh.grpc.started(STORE_SERVICE, "Series", "server_stream");
        let start = Instant::now();
        let batch_size = r.response_batch_size;
        let q = match SeriesQuery::from_request(r) {
            Ok(q) => SeriesQuery { tenant, ..q },
            Err(e) => {
                let s = status(&e);
                sh.grpc
                    .handled(STORE_SERVICE, "Series", "server_stream", s.code(), 0.0);
                return Err(s);
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let closed = tx.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let sh = &*shared;
            let _permit = match &sh.gate {
                Some(gate) => {
                    let wait = Instant::now();
                    let permit = tokio::select! {
                        p = gate.clone().acquire_owned() => p.ok(),
                        _ = closed.closed() => None,
                    };
                    sh.series.gate_seconds.observe(wait.elapsed().as_secs_f64());
                    if permit.is_none() {
                        sh.grpc.handled(
                            STORE_SERVICE,
                            "Series",
                            "server_stream",
                            Code::Cancelled,
                            0.0,
                        );
                        return;
                    }
                    permit
                }
                None => None,
            };
            sh.series.in_flight.inc();
            tracing::debug!(
                tenant = q.tenant.as_deref().unwrap_or(crate::DEFAULT_TENANT),
                min_time = q.min_time,
                max_time = q.max_time,
                matchers = %q.matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                "Series call"
            );
            let mut sink = SeriesSink::new(tx, batch_size, q.limit, sh.opts.limits);
            let result = tokio::select! {
                r = sh.source.series(q, &mut sink) => r,
                _ = closed.closed() => Err(StoreError::Cancelled("the client went away".into())),
            };
            sh.series.in_flight.dec();
            sh.series.result_series.observe(sink.series_sent() as f64);
            let code = match &result {
                Ok(()) => Code::Ok,
                Err(e) => {
                    if let StoreError::LimitExceeded { limit, .. } = e {
                        sh.series
                            .dropped
                            .get_or_create(&vec![("reason", limit.to_string())])
                            .inc();
                    }
                    status(e).code()
                }
            };
            if let Err(e) = &result
                && !matches!(e, StoreError::Cancelled(_))
            {
                tracing::debug!(error = %e, "Series failed");
            }
            sink.finish(result).await;
            sh.grpc.handled(
                STORE_SERVICE,
                "Series",
                "server_stream",
                code,
                start.elapsed().as_secs_f64(),
            );
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn labels(
        &self,
        method: &'static str,
        q: Result<LabelsQuery, StoreError>,
    ) -> Result<(Vec<String>, Vec<String>, Option<prost_types::Any>), Status> {
        let sh = &self.shared;
        sh.grpc.started(STORE_SERVICE, method, "unary");
        let start = Instant::now();
        let res = async {
            let q = q?;
            tracing::debug!(
                tenant = q.tenant.as_deref().unwrap_or(crate::DEFAULT_TENANT),
                start = q.start,
                end = q.end,
                "{method} call"
            );
            let answer = sh.source.labels(q.clone()).await?;
            Ok::<_, StoreError>((q.finish(answer.values), answer.warnings, answer.hints))
        }
        .await;
        let res = res.map_err(|e| status(&e));
        let code = res.as_ref().err().map(Status::code).unwrap_or(Code::Ok);
        sh.grpc.handled(
            STORE_SERVICE,
            method,
            "unary",
            code,
            start.elapsed().as_secs_f64(),
        );
        res
    }

    fn info_of(&self, service: &str) -> Result<SourceInfo, Status> {
        let sh = &self.shared;
        sh.grpc.started(service, "Info", "unary");
        let start = Instant::now();
        let res = sh.source.info().map_err(|e| status(&e));
        let code = res.as_ref().err().map(Status::code).unwrap_or(Code::Ok);
        sh.grpc.handled(
            service,
            "Info",
            "unary",
            code,
            start.elapsed().as_secs_f64(),
        );
        res
    }
}

fn zlabels(sets: &[sluice_model::Labels]) -> Vec<ZLabelSet> {
    sets.iter()
        .map(|s| ZLabelSet {
            labels: to_pb_labels(s),
        })
        .collect()
}

#[tonic::async_trait]
impl<S: StoreSource> Store for StoreApi<S> {
    type SeriesStream = SeriesStream;

    /// The generated-trait form of [`StoreApi::series_frames`]; the server
    /// from [`StoreApi::store_server`] answers Series with the frames
    /// themselves and never calls this.
    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesStream>, Status> {
        let frames = self.series_frames(request)?;
        Ok(Response::new(Box::pin(frames.map(|f| {
            f.and_then(|b| {
                <SeriesResponse as prost::Message>::decode(b)
                    .map_err(|e| Status::internal(format!("encoding Series frame: {e}")))
            })
        }))))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let tenant = crate::tenant_of(request.metadata());
        let q =
            LabelsQuery::from_names_request(request.get_ref()).map(|q| LabelsQuery { tenant, ..q });
        let (names, warnings, hints) = self.labels("LabelNames", q).await?;
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            hints,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let tenant = crate::tenant_of(request.metadata());
        let q = LabelsQuery::from_values_request(request.get_ref())
            .map(|q| LabelsQuery { tenant, ..q });
        let (values, warnings, hints) = self.labels("LabelValues", q).await?;
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            hints,
        }))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let i = self.info_of(STORE_SERVICE)?;
        Ok(Response::new(InfoResponse {
            labels: vec![],
            min_time: i.min_time,
            max_time: i.max_time,
            store_type: i.component.store_type() as i32,
            label_sets: zlabels(&i.label_sets),
        }))
    }
}

#[tonic::async_trait]
impl<S: StoreSource> Info for StoreApi<S> {
    async fn info(&self, _request: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        let i = self.info_of(INFO_SERVICE)?;
        let apis = self.shared.opts.apis;
        Ok(Response::new(InfoResp {
            label_sets: zlabels(&i.label_sets),
            component_type: i.component.name().to_string(),
            store: Some(StoreInfo {
                min_time: i.min_time,
                max_time: i.max_time,
                supports_sharding: i.supports_sharding,
                supports_without_replica_labels: i.supports_without_replica_labels,
                tsdb_infos: i
                    .tsdb_infos
                    .iter()
                    .map(|t| PbTsdbInfo {
                        labels: Some(ZLabelSet {
                            labels: to_pb_labels(&t.labels),
                        }),
                        min_time: t.min_time,
                        max_time: t.max_time,
                    })
                    .collect(),
                supports_projections: false,
            }),
            rules: apis.rules.then_some(RulesInfo {}),
            targets: apis.targets.then_some(TargetsInfo {}),
            metric_metadata: apis.metric_metadata.then_some(MetricMetadataInfo {}),
            exemplars: apis
                .exemplars
                .map(|(min_time, max_time)| ExemplarsInfo { min_time, max_time }),
            ..Default::default()
        }))
    }
}

/// The `thanos.Store` service: Series streams encoded frames, everything
/// else goes to the generated server over [`StoreApi`].
pub struct StoreApiServer<S> {
    inner: StoreServer<StoreApi<S>>,
    api: StoreApi<S>,
}

impl<S> Clone for StoreApiServer<S> {
    fn clone(&self) -> Self {
        StoreApiServer {
            inner: self.inner.clone(),
            api: self.api.clone(),
        }
    }
}

impl<S> std::fmt::Debug for StoreApiServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreApiServer")
    }
}

impl<S> tonic::server::NamedService for StoreApiServer<S> {
    const NAME: &'static str = STORE_SERVICE;
}

/// Series as a server-streaming service of encoded frames.
struct SeriesFrames<S>(StoreApi<S>);

impl<S: StoreSource> tonic::server::ServerStreamingService<SeriesRequest> for SeriesFrames<S> {
    type Response = Bytes;
    type ResponseStream = FrameStream;
    type Future = tonic::codegen::BoxFuture<Response<FrameStream>, Status>;

    fn call(&mut self, r: Request<SeriesRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { api.series_frames(r).map(Response::new) })
    }
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for StoreApiServer<S>
where
    S: StoreSource,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        if req.uri().path() == "/thanos.Store/Series" {
            let svc = SeriesFrames(self.api.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ServerFrameCodec)
                    .apply_max_message_size_config(
                        Some(MAX_REQUEST_SIZE),
                        Some(MAX_GRPC_MESSAGE_SIZE),
                    );
                Ok(grpc.server_streaming(svc, req).await)
            })
        } else {
            self.inner.call(req)
        }
    }
}
