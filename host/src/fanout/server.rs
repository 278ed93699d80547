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
    LabelValuesResponse, PartialResponseStrategy, SeriesRequest, SeriesResponse, StoreType,
    ZLabelSet,
};
use tonic::{Code, Request, Response, Status};

use super::raw::{SeriesView, ServerFrameCodec};
use super::{EndpointSet, FanoutItem, ProxyRequest};
use crate::bucket::to_pb_labels;
use crate::metrics::{GrpcMetrics, Metrics};
use crate::storeapi::{matchers_from_pb, status};
use bytes::Bytes;

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

    /// `thanos.Store`: `Series` answered with encoded frames, the other
    /// methods by the generated server.
    pub fn store_server(&self) -> ProxyStoreServer {
        ProxyStoreServer {
            inner: StoreServer::new(self.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE),
            proxy: self.clone(),
        }
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

/// Encoded `SeriesResponse` frames.
type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a length-delimited field.
fn put_len_field(buf: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    buf.push(tag);
    put_varint(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// `SeriesResponse.series` (1), `.warning` (2) and `.batch` (4) keys, and
/// `SeriesBatch.series` (1).
const RESPONSE_SERIES: u8 = 0x0a;
const RESPONSE_WARNING: u8 = 0x12;
const RESPONSE_BATCH: u8 = 0x22;
const BATCH_SERIES: u8 = 0x0a;

/// Appends one series' `Series` message under `tag`: its bytes as the
/// endpoint sent them, or, for a merged series, encoded anew.
fn put_series(buf: &mut Vec<u8>, tag: u8, s: &SeriesView<'_>) {
    match s.encoded() {
        Some(bytes) => put_len_field(buf, tag, bytes),
        None => put_len_field(buf, tag, &prost::Message::encode_to_vec(&s.to_series())),
    }
}

impl ProxyStore {
    /// `Series` through the fan-out, answered as encoded frames: series go
    /// out in the bytes their endpoints sent (merged ones re-encoded), in
    /// `SeriesBatch` frames of the request's `response_batch_size` (single
    /// `series` frames when it is 0 or 1).
    fn series_frames(&self, r: SeriesRequest) -> Result<FrameStream, Status> {
        self.metrics
            .started("thanos.Store", "Series", "server_stream");
        let matchers = matchers_from_pb(&r.matchers).map_err(|e| status(&e))?;
        if matchers.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding selector labels)",
            ));
        }
        let batch = usize::try_from(r.response_batch_size).unwrap_or(1).max(1);
        let partial = !abort(r.partial_response_disabled, r.partial_response_strategy);
        let preq = ProxyRequest {
            request: r,
            matchers,
            partial_response: partial,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let set = self.set.clone();
        tokio::spawn(async move { super::series(&set, preq, tx).await });
        let (otx, orx) = tokio::sync::mpsc::channel::<Result<Bytes, Status>>(4);
        tokio::spawn(async move {
            // The open batch: its series, encoded, and how many.
            let mut body: Vec<u8> = Vec::new();
            let mut n = 0usize;
            let close = |body: &mut Vec<u8>| {
                let mut frame = Vec::with_capacity(body.len() + 6);
                put_len_field(&mut frame, RESPONSE_BATCH, body);
                body.clear();
                Bytes::from(frame)
            };
            loop {
                // A client that hangs up closes `orx`; dropping `rx` then
                // ends the fan-out and cancels the endpoints' streams.
                let item = tokio::select! {
                    _ = otx.closed() => return,
                    item = rx.recv() => item,
                };
                let Some(item) = item else { break };
                let frames: Vec<Result<Bytes, Status>> = match item {
                    Ok(FanoutItem::Series(run)) if batch > 1 => {
                        let mut full = Vec::new();
                        for s in run.iter() {
                            put_series(&mut body, BATCH_SERIES, &s);
                            n += 1;
                            if n >= batch {
                                full.push(Ok(close(&mut body)));
                                n = 0;
                            }
                        }
                        full
                    }
                    Ok(FanoutItem::Series(run)) => run
                        .iter()
                        .map(|s| {
                            let mut frame = Vec::new();
                            put_series(&mut frame, RESPONSE_SERIES, &s);
                            Ok(Bytes::from(frame))
                        })
                        .collect(),
                    Ok(FanoutItem::Warning(w)) => {
                        let mut frame = Vec::new();
                        put_len_field(&mut frame, RESPONSE_WARNING, w.as_bytes());
                        vec![Ok(Bytes::from(frame))]
                    }
                    Err(e) => vec![Err(e)],
                };
                for frame in frames {
                    if otx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            if n > 0 {
                let _ = otx.send(Ok(close(&mut body))).await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(orx)))
    }
}

#[tonic::async_trait]
impl Store for ProxyStore {
    type SeriesStream = SeriesStream;

    /// The generated-trait form of [`ProxyStore::series_frames`] (the server
    /// from [`ProxyStore::store_server`] answers `Series` with the frames
    /// themselves and never calls this).
    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesStream>, Status> {
        use futures::StreamExt;
        let frames = self.series_frames(request.into_inner())?;
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

/// The querier's `thanos.Store` service: `Series` streams encoded frames
/// (the merged series in their endpoints' bytes), everything else goes to
/// the generated server over [`ProxyStore`].
#[derive(Clone)]
pub struct ProxyStoreServer {
    inner: StoreServer<ProxyStore>,
    proxy: ProxyStore,
}

impl std::fmt::Debug for ProxyStoreServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyStoreServer")
    }
}

impl tonic::server::NamedService for ProxyStoreServer {
    const NAME: &'static str = "thanos.Store";
}

/// `Series` as a server-streaming service of encoded frames.
struct SeriesFrames(ProxyStore);

impl tonic::server::ServerStreamingService<SeriesRequest> for SeriesFrames {
    type Response = Bytes;
    type ResponseStream = FrameStream;
    type Future = tonic::codegen::BoxFuture<Response<FrameStream>, Status>;

    fn call(&mut self, r: Request<SeriesRequest>) -> Self::Future {
        let proxy = self.0.clone();
        Box::pin(async move { proxy.series_frames(r.into_inner()).map(Response::new) })
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for ProxyStoreServer
where
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
            let svc = SeriesFrames(self.proxy.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ServerFrameCodec)
                    .apply_max_message_size_config(
                        Some(MAX_GRPC_MESSAGE_SIZE),
                        Some(MAX_GRPC_MESSAGE_SIZE),
                    );
                Ok(grpc.server_streaming(svc, req).await)
            })
        } else {
            self.inner.call(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::raw::{self, RawFrame, SeriesRun};
    use sluice_proto::thanos::{AggrChunk, Chunk, Label, Series, SeriesBatch, series_response};
    use std::sync::Arc;

    fn series(v: &str, chunk: (i64, i64)) -> Series {
        Series {
            labels: vec![Label {
                name: "x".into(),
                value: v.into(),
            }],
            chunks: vec![AggrChunk {
                min_time: chunk.0,
                max_time: chunk.1,
                raw: Some(Chunk {
                    r#type: 1,
                    data: Bytes::from(vec![chunk.0 as u8; 300]),
                    hash: 0,
                }),
                ..Default::default()
            }],
        }
    }

    fn frame(s: Vec<Series>) -> Arc<RawFrame> {
        let msg = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series: s })),
        };
        let b = Bytes::from(prost::Message::encode_to_vec(&msg));
        Arc::new(RawFrame::parse(b).expect("parse").frame)
    }

    /// Forwarded frames decode to what the views hold: series as their
    /// endpoint sent them (copied bytes, 300-byte chunks so lengths take two
    /// varint bytes) and merged ones re-encoded; warnings as warning frames.
    #[test]
    fn forwarded_frames_decode_to_the_merged_series() {
        let f1 = frame(vec![series("a", (0, 9)), series("b", (0, 9))]);
        let f2 = frame(vec![series("b", (10, 19))]);
        let mut run = SeriesRun::default();
        let s1 = run.add_frame(f1.clone());
        run.push(s1, 0, None);
        let mut merged = raw::chunk_refs(&f1, 1);
        raw::absorb(&mut merged, &f2, 0);
        run.push(s1, 1, Some(merged));

        let mut body = Vec::new();
        for s in run.iter() {
            put_series(&mut body, BATCH_SERIES, &s);
        }
        let mut batch = Vec::new();
        put_len_field(&mut batch, RESPONSE_BATCH, &body);
        let got: SeriesResponse = prost::Message::decode(Bytes::from(batch)).expect("decode");
        let Some(series_response::Result::Batch(b)) = got.result else {
            panic!("not a batch: {got:?}")
        };
        let want: Vec<Series> = run.iter().map(|s| s.to_series()).collect();
        assert_eq!(b.series, want);
        assert_eq!(b.series[1].chunks.len(), 2, "merged chunks");

        let mut single = Vec::new();
        put_series(&mut single, RESPONSE_SERIES, &run.get(0).expect("series 0"));
        let got: SeriesResponse = prost::Message::decode(Bytes::from(single)).expect("decode");
        assert_eq!(
            got.result,
            Some(series_response::Result::Series(want[0].clone()))
        );

        let mut warn = Vec::new();
        put_len_field(&mut warn, RESPONSE_WARNING, "careful".as_bytes());
        let got: SeriesResponse = prost::Message::decode(Bytes::from(warn)).expect("decode");
        assert_eq!(
            got.result,
            Some(series_response::Result::Warning("careful".into()))
        );
    }
}
