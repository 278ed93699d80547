//! Misbehaving StoreAPI endpoints for fault tests, run in the test process on 127.0.0.1:
//! - [`StallingStore`], a tonic server over sluice-proto's generated `store_server`/`info_server` traits whose
//!   `Series` stream sends one frame and then goes silent;
//! - [`GarbageStore`], a gRPC server written directly on the `h2` crate, so it can put bytes on the wire that no
//!   protobuf encoder would produce: `Info` answers correctly (so the querier adds it), but `Series` sends one valid
//!   frame followed by a length-prefixed gRPC message that is not a protobuf message, and `LabelNames` /
//!   `LabelValues` answer with such a message only.
//!
//! Both advertise one label set and the whole fixture window, so a querier does not prune them. Both stop when
//! dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use prost::Message;
use sluice_proto::thanos::info::info_server::{Info, InfoServer};
use sluice_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
use sluice_proto::thanos::store_server::{Store, StoreServer};
use sluice_proto::thanos::{
    AggrChunk, Chunk, InfoRequest, InfoResponse, Label, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, Series, SeriesRequest, SeriesResponse, StoreType,
    ZLabelSet, chunk, series_response,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::fixture::{END_MS, STEP_S, T0_MS};

/// Bytes that are not a protobuf message of any type: the first byte is a tag with wire type 7, which does not
/// exist, so every decoder must fail on it.
pub const NOT_PROTOBUF: &[u8] = b"\x0f\xde\xad\xbe\xef not a protobuf message";

/// The one series a fake sends before misbehaving: `{__name__=<metric>, cluster=<cluster>}` with one XOR chunk of
/// four samples from T0.
pub fn fake_series(metric: &str, cluster: &str) -> Result<Series> {
    let samples: Vec<(i64, f64)> = (0..4)
        .map(|i| (T0_MS + i * STEP_S * 1000, i as f64))
        .collect();
    let data = sluice_tsdb::xor::encode(&samples).context("encode the fake chunk")?;
    Ok(Series {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: metric.into(),
            },
            Label {
                name: "cluster".into(),
                value: cluster.into(),
            },
        ],
        chunks: vec![AggrChunk {
            min_time: samples[0].0,
            max_time: samples[3].0,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                hash: xxhash_rust::xxh64::xxh64(&data, 0),
                data: Bytes::from(data),
            }),
            ..Default::default()
        }],
    })
}

fn info_response(cluster: &str) -> InfoResp {
    InfoResp {
        label_sets: vec![ZLabelSet {
            labels: vec![Label {
                name: "cluster".into(),
                value: cluster.into(),
            }],
        }],
        component_type: "store".into(),
        store: Some(StoreInfo {
            min_time: T0_MS,
            max_time: END_MS,
            supports_without_replica_labels: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A StoreAPI whose `Series` sends one series frame, then nothing for `stall`, then ends. Label calls answer at
/// once.
pub struct StallingStore {
    pub addr: SocketAddr,
    pub cluster: String,
    /// `Series` calls received.
    pub series_calls: Arc<AtomicUsize>,
    /// `Series` streams not yet finished or dropped: a stream the client cancels is dropped by the server.
    pub active_streams: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for StallingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallingStore")
            .field("addr", &self.addr)
            .finish()
    }
}

#[derive(Clone)]
struct Staller {
    cluster: String,
    metric: String,
    stall: Duration,
    /// Instead of stalling: one series of this many 3-byte chunks whose headers each claim 65,535 samples.
    lying_chunks: Option<usize>,
    calls: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
}

/// Counts a live stream; decrements when the stream is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for Staller {
    async fn info(&self, _r: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let i = info_response(&self.cluster);
        Ok(Response::new(InfoResponse {
            labels: vec![],
            min_time: T0_MS,
            max_time: END_MS,
            store_type: StoreType::Store as i32,
            label_sets: i.label_sets,
        }))
    }

    type SeriesStream = FrameStream;

    async fn series(&self, _r: Request<SeriesRequest>) -> Result<Response<FrameStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        let live = Live(self.active.clone());
        let mut first = fake_series(&self.metric, &self.cluster)
            .map_err(|e| Status::internal(e.to_string()))?;
        let frame = |s: Series| SeriesResponse {
            result: Some(series_response::Result::Series(s)),
        };
        if let Some(n) = self.lying_chunks {
            let data = Bytes::from_static(&[0xff, 0xff, 0x00]);
            first.chunks = (0..n as i64)
                .map(|i| AggrChunk {
                    min_time: T0_MS + i,
                    max_time: T0_MS + i,
                    raw: Some(Chunk {
                        r#type: chunk::Encoding::Xor as i32,
                        hash: xxhash_rust::xxh64::xxh64(&data, 0),
                        data: data.clone(),
                    }),
                    ..Default::default()
                })
                .collect();
            drop(live);
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(frame(
                first,
            ))]))));
        }
        let stall = self.stall;
        let mut late = first.clone();
        late.labels[0].value.push_str("_late");
        let s =
            futures::stream::iter([Ok(frame(first))]).chain(futures::stream::once(async move {
                let _live = live;
                tokio::time::sleep(stall).await;
                Ok(frame(late))
            }));
        Ok(Response::new(Box::pin(s)))
    }

    async fn label_names(
        &self,
        _r: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        Ok(Response::new(LabelNamesResponse {
            names: vec!["__name__".into(), "cluster".into()],
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        r: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let values = match r.into_inner().label.as_str() {
            "cluster" => vec![self.cluster.clone()],
            "__name__" => vec![self.metric.clone()],
            _ => vec![],
        };
        Ok(Response::new(LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Info for Staller {
    async fn info(&self, _r: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        Ok(Response::new(info_response(&self.cluster)))
    }
}

impl StallingStore {
    /// Serves on 127.0.0.1 (a free port); `Series` goes silent for `stall` after its first frame, which carries
    /// `{__name__="fake_stalled", cluster=<cluster>}`.
    pub async fn start(cluster: &str, stall: Duration) -> Result<StallingStore> {
        Self::serve(cluster, "fake_stalled", stall, None).await
    }

    /// Serves on 127.0.0.1 a store whose `Series` answers `{__name__="fake_lying", cluster=<cluster>}` with
    /// `chunks` chunks of three bytes, each header claiming 65,535 samples: a client that sizes buffers from
    /// headers asks for ~1 MiB per chunk.
    pub async fn start_lying(cluster: &str, chunks: usize) -> Result<StallingStore> {
        Self::serve(cluster, "fake_lying", Duration::ZERO, Some(chunks)).await
    }

    async fn serve(
        cluster: &str,
        metric: &str,
        stall: Duration,
        lying_chunks: Option<usize>,
    ) -> Result<StallingStore> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let svc = Staller {
            cluster: cluster.to_owned(),
            metric: metric.into(),
            stall,
            lying_chunks,
            calls: calls.clone(),
            active: active.clone(),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder()
            .add_service(StoreServer::new(svc.clone()).max_encoding_message_size(usize::MAX))
            .add_service(InfoServer::new(svc))
            .serve_with_incoming(incoming);
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        Ok(StallingStore {
            addr,
            cluster: cluster.to_owned(),
            series_calls: calls,
            active_streams: active,
            task,
        })
    }
}

impl Drop for StallingStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC server on raw HTTP/2 that answers `Info` properly and everything else with bytes that are not protobuf.
pub struct GarbageStore {
    pub addr: SocketAddr,
    pub cluster: String,
    /// Requests received, by gRPC method path.
    pub calls: Arc<std::sync::Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for GarbageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbageStore")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A gRPC length-prefixed message: flag 0 (not compressed), big-endian length, payload.
pub fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    b.put_slice(payload);
    b.freeze()
}

impl GarbageStore {
    /// Serves on 127.0.0.1 (a free port). `Series` sends `{__name__="fake_garbage", cluster=<cluster>}` and then
    /// [`NOT_PROTOBUF`] as the next message, with `grpc-status: 0`.
    pub async fn start(cluster: &str) -> Result<GarbageStore> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let info = Bytes::from(info_response(cluster).encode_to_vec());
        let first = SeriesResponse {
            result: Some(series_response::Result::Series(fake_series(
                "fake_garbage",
                cluster,
            )?)),
        };
        let first = Bytes::from(first.encode_to_vec());
        let c = calls.clone();
        // Connection tasks end when the client closes its connection.
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_h2(sock, info.clone(), first.clone(), c.clone()));
            }
        });
        Ok(GarbageStore {
            addr,
            cluster: cluster.to_owned(),
            calls,
            task,
        })
    }

    /// How many requests of a method (`/thanos.Store/Series`, …) arrived.
    pub fn count(&self, path: &str) -> usize {
        self.calls
            .lock()
            .map(|c| c.iter().filter(|p| *p == path).count())
            .unwrap_or(0)
    }
}

impl Drop for GarbageStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_h2(
    sock: tokio::net::TcpStream,
    info: Bytes,
    first: Bytes,
    calls: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let Ok(mut conn) = h2::server::handshake(sock).await else {
        return;
    };
    while let Some(Ok((req, respond))) = conn.accept().await {
        let path = req.uri().path().to_owned();
        if let Ok(mut c) = calls.lock() {
            c.push(path.clone());
        }
        let (info, first) = (info.clone(), first.clone());
        tokio::spawn(async move {
            let _ = answer(req, respond, &path, info, first).await;
        });
    }
}

async fn answer(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    path: &str,
    info: Bytes,
    first: Bytes,
) -> Result<()> {
    // Read the request message to its end, as a gRPC server does.
    let mut body = req.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())?;
    let mut trailers = http::HeaderMap::new();
    let messages: Vec<Bytes> = match path {
        "/thanos.info.Info/Info" => vec![grpc_frame(&info)],
        "/thanos.Store/Series" => vec![grpc_frame(&first), grpc_frame(NOT_PROTOBUF)],
        "/thanos.Store/LabelNames" | "/thanos.Store/LabelValues" => vec![grpc_frame(NOT_PROTOBUF)],
        _ => {
            trailers.insert("grpc-status", http::HeaderValue::from_static("12"));
            vec![]
        }
    };
    if !trailers.contains_key("grpc-status") {
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    }
    let mut send = respond.send_response(head, false)?;
    for m in messages {
        send.send_data(m, false)?;
    }
    send.send_trailers(trailers)?;
    Ok(())
}

/// A TCP proxy in front of an HTTP/1.1 object store that forwards everything until a client sends a request
/// whose line matches `PUT <path ending in suffix>`: that request is held (neither it nor anything after it on its
/// connection is forwarded), as a network that stops mid-upload would, and its path is recorded. A process
/// killed while it waits there has been killed mid-upload.
pub struct StallingProxy {
    pub addr: SocketAddr,
    stalled: Arc<std::sync::Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallingProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`, stalling the first `PUT` of a path ending in `suffix`.
    pub async fn start(upstream: SocketAddr, suffix: &'static str) -> Result<StallingProxy> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let stalled: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let st = stalled.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((client, _)) = l.accept().await {
                let st = st.clone();
                conns.push(tokio::spawn(async move {
                    let _ = proxy_conn(client, upstream, suffix, st).await;
                }));
            }
        });
        Ok(StallingProxy {
            addr,
            stalled,
            task,
        })
    }

    /// The path of the held request, once one was.
    pub fn stalled(&self) -> Option<String> {
        self.stalled.lock().ok().and_then(|g| g.clone())
    }
}

async fn proxy_conn(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    suffix: &str,
    stalled: Arc<std::sync::Mutex<Option<String>>>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        // The tail of what was forwarded, so a request line split across reads is still seen.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            let mut window = tail.clone();
            window.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&window);
            let hit = text.match_indices("PUT /").find_map(|(i, _)| {
                let line = text[i + 4..].split(' ').next()?;
                let path = line.split('?').next()?;
                path.ends_with(suffix).then(|| path.to_owned())
            });
            let first = hit.is_some_and(|path| match stalled.lock() {
                Ok(mut g) if g.is_none() => {
                    *g = Some(path);
                    true
                }
                _ => false,
            });
            if first {
                // Hold the connection open, forwarding nothing more, until the client goes.
                while cr.read(&mut buf).await? > 0 {}
                return Ok(());
            }
            sw.write_all(&buf[..n]).await?;
            let keep = window.len().min(512);
            tail = window[window.len() - keep..].to_vec();
        }
    };
    let down = async {
        tokio::io::copy(&mut sr, &mut cw).await?;
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
