//! `merge-throughput`: series per second through the querier's fan-out merge
//! (`sluice::fanout::series`) over fake StoreAPI endpoints, against direct
//! reads of the same streams without a merge; then the cost of dedup, as
//! `Querier::select` with `dedup=true` versus `dedup=false` over an HA pair
//! of real `sluice store`s. Everything runs in this one process.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin merge-throughput -- [--endpoints 4] [--series 250000] [--rounds 7]
//! ```
//!
//! Merge part: each fake endpoint is a tonic server on 127.0.0.1:0 serving
//! `thanos.info.Info` (a store covering all time) and `thanos.Store`; its
//! `Series` streams pre-built single-sample series (one XOR chunk each) in
//! `batch` frames of 64. Endpoint k holds series n ≡ k (mod endpoints) with
//! labels `{__name__="m", i="<n, zero-padded>", shard="<k>"}`, so the merged
//! order interleaves all endpoints. The frames are protobuf-encoded once
//! before timing and written to the wire as they are (a raw-bytes codec),
//! so the fake servers cost little CPU; `--prost-server` instead serves them
//! through the generated `Store` trait (decoded and re-encoded per call).
//! The client side consumes the merged channel (`SeriesRun`s, the
//! frames kept encoded), checks every series is strictly after the previous
//! one with 3 labels and 1 chunk and that all arrive, and is timed end to
//! end. The peer is the same streams read directly (one task per endpoint,
//! the same frame codec and `RawFrame::parse` indexing, count, no merge), in
//! interleaved rounds.
//!
//! Dedup part: two `sluice store`s (in-process, filesystem buckets) hold
//! the two replicas of an HA pair; a `Querier` with `--query.replica-label
//! replica` and the default policy slots (penalty dedup through the wasm
//! sandbox) selects every series with dedup on and off, interleaved.
//!
//! The fake stores run on their own tokio runtime (threads `fake-store`),
//! the fan-out, merge and consumer on another (threads `querier`); CPU time
//! is reported per runtime from `/proc/self/task`. Memory is this whole
//! process: fixtures and fake stores included.
//!
//! The allocator is the system's (glibc), as in `sluice`; its share shows by
//! running the same binary with another one preloaded, e.g.
//! `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2` (Debian package
//! `libmimalloc2.0`); the `allocator` line says which one ran.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use bytes::Bytes;
use futures::Stream;
use prost::Message;
use sluice::discovery::{Discovery, EndpointSpec, Source};
use sluice::fanout::raw::{FrameCodec, ServerFrameCodec};
use sluice::fanout::{
    EndpointSet, EndpointSetOptions, FanoutItem, ProxyRequest, RawFrame, SeriesRun,
};
use sluice::metrics::Metrics;
use sluice::model::{MatchOp, Matcher};
use sluice::policy::{PolicyEngine, PolicyRegistry, config::default_slots};
use sluice::querier::{Querier, QuerierConfig, SelectParams};
use sluice_bench::procs::{self, Mem};
use sluice_bench::stats::{best, median};
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::info::info_server::{Info, InfoServer};
use sluice_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
use sluice_proto::thanos::store_server::{Store, StoreServer};
use sluice_proto::thanos::{
    self, AggrChunk, Chunk, Label, LabelMatcher, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, Series, SeriesBatch, SeriesRequest, SeriesResponse,
    StoreType, label_matcher, series_response,
};
use tokio::runtime::Runtime;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const USAGE: &str = "\
merge-throughput: the querier's fan-out merge over in-process fake StoreAPI endpoints,
and Querier::select with dedup on vs off over an in-process HA pair of sluice stores

usage: cargo run --release -p sluice-bench --bin merge-throughput -- [options]

  --endpoints N       fake endpoints (default 4)
  --series N          single-sample series per endpoint (default 250000)
  --batch B           series per SeriesBatch frame (default 64)
  --rounds R          measured merge rounds, interleaved with direct reads (default 7)
  --warmup W          unmeasured rounds of each first (default 1)
  --prost-server      serve Series through the generated Store trait (decode + re-encode
                      every frame) instead of writing the pre-encoded frames as they are
  --dedup-series N    series per replica in the dedup part (default 10000)
  --dedup-samples S   samples per series, 15 s apart (default 120)
  --dedup-rounds R    measured rounds of each of dedup on / off (default 7)
  --no-dedup          skip the dedup part
  --only PATH         run only `merge` or only `direct` rounds (for profiling)
  --help              this text";

#[derive(Debug, Clone)]
struct Args {
    endpoints: usize,
    series: usize,
    batch: usize,
    rounds: usize,
    warmup: usize,
    prost_server: bool,
    dedup_series: usize,
    dedup_samples: usize,
    dedup_rounds: usize,
    no_dedup: bool,
    only: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        endpoints: 4,
        series: 250_000,
        batch: 64,
        rounds: 7,
        warmup: 1,
        prost_server: false,
        dedup_series: 10_000,
        dedup_samples: 120,
        dedup_rounds: 7,
        no_dedup: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--endpoints" => a.endpoints = value("--endpoints")?.parse().context("--endpoints")?,
            "--series" => a.series = value("--series")?.parse().context("--series")?,
            "--batch" => a.batch = value("--batch")?.parse().context("--batch")?,
            "--rounds" => a.rounds = value("--rounds")?.parse().context("--rounds")?,
            "--warmup" => a.warmup = value("--warmup")?.parse().context("--warmup")?,
            "--prost-server" => a.prost_server = true,
            "--dedup-series" => {
                a.dedup_series = value("--dedup-series")?.parse().context("--dedup-series")?
            }
            "--dedup-samples" => {
                a.dedup_samples = value("--dedup-samples")?
                    .parse()
                    .context("--dedup-samples")?
            }
            "--dedup-rounds" => {
                a.dedup_rounds = value("--dedup-rounds")?.parse().context("--dedup-rounds")?
            }
            "--no-dedup" => a.no_dedup = true,
            "--only" => a.only = Some(value("--only")?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(
        (1..=64).contains(&a.endpoints),
        "--endpoints must be in 1..=64"
    );
    ensure!(a.series > 0, "--series must be at least 1");
    ensure!(a.batch > 0, "--batch must be at least 1");
    ensure!((1..=100).contains(&a.rounds), "--rounds must be in 1..=100");
    ensure!(a.warmup <= 10, "--warmup must be at most 10");
    ensure!(
        a.only
            .as_deref()
            .is_none_or(|o| o == "merge" || o == "direct"),
        "--only takes merge or direct"
    );
    ensure!(a.dedup_series > 0, "--dedup-series must be at least 1");
    ensure!(
        (2..=10_000).contains(&a.dedup_samples),
        "--dedup-samples must be in 2..=10000"
    );
    ensure!(
        (1..=100).contains(&a.dedup_rounds),
        "--dedup-rounds must be in 1..=100"
    );
    Ok(a)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[merge-throughput] {}", msg.as_ref());
}

fn runtime(name: &str) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("tokio runtime {name}"))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Fixture

/// Timestamp of every single sample (2024-01-01T00:00:00Z).
const T0: i64 = 1_704_067_200_000;

/// Pre-encoded `SeriesResponse` frames of every endpoint.
struct Fixture {
    frames: Vec<Arc<Vec<Bytes>>>,
    series_per_endpoint: usize,
    bytes: usize,
}

impl Fixture {
    fn total(&self) -> u64 {
        (self.frames.len() * self.series_per_endpoint) as u64
    }
}

fn build_fixture(endpoints: usize, per: usize, batch: usize) -> anyhow::Result<Fixture> {
    let total = endpoints * per;
    let width = total.saturating_sub(1).max(1).to_string().len();
    let mut frames = Vec::with_capacity(endpoints);
    let mut bytes = 0;
    for k in 0..endpoints {
        let mut out = Vec::with_capacity(per.div_ceil(batch));
        let mut cur: Vec<Series> = Vec::with_capacity(batch);
        for j in 0..per {
            let n = j * endpoints + k;
            let data = sluice_tsdb::xor::encode(&[(T0, n as f64)])
                .map_err(|e| anyhow!("encoding an XOR chunk: {e}"))?;
            let hash = xxhash_rust::xxh64::xxh64(&data, 0);
            cur.push(Series {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "m".into(),
                    },
                    Label {
                        name: "i".into(),
                        value: format!("{n:0width$}"),
                    },
                    Label {
                        name: "shard".into(),
                        value: k.to_string(),
                    },
                ],
                chunks: vec![AggrChunk {
                    min_time: T0,
                    max_time: T0,
                    raw: Some(Chunk {
                        r#type: thanos::chunk::Encoding::Xor as i32,
                        data: Bytes::from(data),
                        hash,
                    }),
                    ..Default::default()
                }],
            });
            if cur.len() == batch || j + 1 == per {
                let frame = SeriesResponse {
                    result: Some(series_response::Result::Batch(SeriesBatch {
                        series: std::mem::replace(&mut cur, Vec::with_capacity(batch)),
                    })),
                }
                .encode_to_vec();
                bytes += frame.len();
                out.push(Bytes::from(frame));
            }
        }
        frames.push(Arc::new(out));
    }
    Ok(Fixture {
        frames,
        series_per_endpoint: per,
        bytes,
    })
}

// ---------------------------------------------------------------------------
// Fake StoreAPI endpoint

/// A fake store holding one endpoint's frames.
#[derive(Clone)]
struct FakeStore {
    frames: Arc<Vec<Bytes>>,
}

type ProstStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for FakeStore {
    async fn info(
        &self,
        _r: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        Ok(Response::new(thanos::InfoResponse {
            min_time: i64::MIN,
            max_time: i64::MAX,
            store_type: StoreType::Store as i32,
            ..Default::default()
        }))
    }

    type SeriesStream = ProstStream;

    /// The generated-trait path: every frame decoded and re-encoded per call.
    async fn series(
        &self,
        _r: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let frames = self.frames.clone();
        let s = futures::stream::iter((0..frames.len()).map(move |i| {
            SeriesResponse::decode(frames[i].clone())
                .map_err(|e| Status::internal(format!("fixture frame {i}: {e}")))
        }));
        Ok(Response::new(Box::pin(s)))
    }

    async fn label_names(
        &self,
        _r: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        Ok(Response::new(LabelNamesResponse {
            names: vec!["__name__".into(), "i".into(), "shard".into()],
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        _r: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        Ok(Response::new(LabelValuesResponse::default()))
    }
}

#[tonic::async_trait]
impl Info for FakeStore {
    async fn info(&self, _r: Request<InfoReq>) -> Result<Response<InfoResp>, Status> {
        Ok(Response::new(InfoResp {
            component_type: "store".into(),
            store: Some(StoreInfo {
                min_time: i64::MIN,
                max_time: i64::MAX,
                supports_without_replica_labels: true,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// `Series` streaming the pre-encoded frames.
struct PreEncodedSeries(Arc<Vec<Bytes>>);

type RawStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl ServerStreamingService<SeriesRequest> for PreEncodedSeries {
    type Response = Bytes;
    type ResponseStream = RawStream;
    type Future = BoxFuture<Response<RawStream>, Status>;
    fn call(&mut self, _r: Request<SeriesRequest>) -> Self::Future {
        let frames = self.0.clone();
        Box::pin(async move {
            let s = futures::stream::iter((0..frames.len()).map(move |i| Ok(frames[i].clone())));
            Ok(Response::new(Box::pin(s) as RawStream))
        })
    }
}

/// `thanos.Store` with `Series` answered from the pre-encoded frames and
/// every other method by the generated server over [`FakeStore`].
#[derive(Clone)]
struct RawStore {
    inner: StoreServer<FakeStore>,
    frames: Arc<Vec<Bytes>>,
}

impl NamedService for RawStore {
    const NAME: &'static str = "thanos.Store";
}

impl<B> tonic::codegen::Service<http::Request<B>> for RawStore
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/thanos.Store/Series" {
            let svc = PreEncodedSeries(self.frames.clone());
            Box::pin(
                async move { Ok(Grpc::new(ServerFrameCodec).server_streaming(svc, req).await) },
            )
        } else {
            self.inner.call(req)
        }
    }
}

/// Starts one fake endpoint on the current runtime.
async fn start_fake(frames: Arc<Vec<Bytes>>, prost_server: bool) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let store = FakeStore {
        frames: frames.clone(),
    };
    let store_server = StoreServer::new(store.clone())
        .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE);
    let router = tonic::transport::Server::builder().add_service(InfoServer::new(store));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    if prost_server {
        let serve = router
            .add_service(store_server)
            .serve_with_incoming(incoming);
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                log(format!("fake store {addr} stopped: {e}"));
            }
        });
    } else {
        let serve = router
            .add_service(RawStore {
                inner: store_server,
                frames,
            })
            .serve_with_incoming(incoming);
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                log(format!("fake store {addr} stopped: {e}"));
            }
        });
    }
    Ok(addr)
}

// ---------------------------------------------------------------------------
// Timed reads

fn name_matcher(value: &str) -> anyhow::Result<(Matcher, LabelMatcher)> {
    Ok((
        Matcher::new(MatchOp::Eq, "__name__", value).map_err(|e| anyhow!("matcher: {e}"))?,
        LabelMatcher {
            r#type: label_matcher::Type::Eq as i32,
            name: "__name__".into(),
            value: value.into(),
        },
    ))
}

/// One `fanout::series` call, consumed and checked: every series strictly
/// after the previous one (sorted, no duplicates), one chunk each, `expect`
/// in all.
async fn merge_round(set: Arc<EndpointSet>, req: ProxyRequest, expect: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let fan = tokio::spawn(async move { sluice::fanout::series(&set, req, tx).await });
    // The previous run stays alive so its last series can be compared
    // with the next run's first.
    let mut prev_run: Option<SeriesRun> = None;
    let mut n = 0u64;
    while let Some(item) = rx.recv().await {
        match item {
            Ok(FanoutItem::Series(run)) => {
                let mut prev = prev_run
                    .as_ref()
                    .and_then(|r| r.get(r.len().wrapping_sub(1)));
                for s in run.iter() {
                    ensure!(
                        s.chunk_count() == 1 && s.label_count() == 3,
                        "series {n}: {} labels, {} chunks; expected 3 and 1",
                        s.label_count(),
                        s.chunk_count()
                    );
                    if let Some(p) = &prev {
                        ensure!(
                            p.cmp_labels(&s).is_lt(),
                            "merged stream out of order at series {n}: {:?} then {:?}",
                            p.labels().collect::<Vec<_>>(),
                            s.labels().collect::<Vec<_>>()
                        );
                    }
                    prev = Some(s);
                    n += 1;
                }
                prev_run = Some(run);
            }
            Ok(FanoutItem::Warning(w)) => bail!("fan-out warning: {w}"),
            Err(s) => bail!("fan-out failed: {}: {}", s.code(), s.message()),
        }
    }
    fan.await.context("fan-out task")?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(n == expect, "merged {n} series, expected {expect}");
    Ok(secs)
}

/// The peer: every endpoint's stream read by its own task with the same
/// frame codec and indexing as the merge (`RawFrame::parse`), and counted,
/// no merge.
async fn direct_round(
    channels: Vec<tonic::transport::Channel>,
    req: SeriesRequest,
    expect: u64,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|ch| {
            let req = req.clone();
            tokio::spawn(async move {
                let mut grpc =
                    tonic::client::Grpc::new(ch).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let path = http::uri::PathAndQuery::from_static("/thanos.Store/Series");
                let mut stream = grpc
                    .server_streaming(Request::new(req), path, FrameCodec)
                    .await?
                    .into_inner();
                let mut n = 0u64;
                while let Some(m) = stream.message().await? {
                    n += RawFrame::parse(m).map_err(Status::internal)?.frame.len() as u64;
                }
                Ok::<u64, Status>(n)
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.context("direct read task")??;
    }
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        n == expect,
        "direct reads returned {n} series, expected {expect}"
    );
    Ok(secs)
}

// ---------------------------------------------------------------------------
// CPU and memory bookkeeping

/// CPU seconds of this process's threads, grouped: fake stores, querier, other.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    stores: f64,
    querier: f64,
    other: f64,
}

fn cpu_now(tck: f64) -> anyhow::Result<Cpu> {
    let mut c = Cpu::default();
    for (name, secs) in procs::thread_cpu_by_name(tck)? {
        if name.starts_with("fake-store") {
            c.stores += secs;
        } else if name.starts_with("querier") {
            c.querier += secs;
        } else {
            c.other += secs;
        }
    }
    Ok(c)
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            stores: self.stores - o.stores,
            querier: self.querier - o.querier,
            other: self.other - o.other,
        }
    }
}

#[derive(Debug, Default)]
struct Side {
    secs: Vec<f64>,
    cpu: Vec<Cpu>,
}

impl Side {
    fn cpu_ms(&self, f: impl Fn(&Cpu) -> f64) -> f64 {
        1e3 * self.cpu.iter().map(f).sum::<f64>() / self.cpu.len().max(1) as f64
    }
}

/// Machine-wide busy CPU not used by this process, from `start`.
struct Background {
    t0: Instant,
    busy0: f64,
    ours0: f64,
    load0: f64,
}

impl Background {
    fn start(tck: f64) -> anyhow::Result<Self> {
        Ok(Background {
            t0: Instant::now(),
            busy0: procs::machine_busy_seconds(tck)?,
            ours0: procs::cpu_seconds("self", tck)?,
            load0: procs::loadavg(),
        })
    }
    /// Text and percent of one core.
    fn finish(&self, tck: f64) -> anyhow::Result<(String, f64)> {
        let wall = self.t0.elapsed().as_secs_f64();
        let other = (procs::machine_busy_seconds(tck)? - self.busy0)
            - (procs::cpu_seconds("self", tck)? - self.ours0);
        let pct = 100.0 * other.max(0.0) / wall;
        Ok((
            format!(
                "{pct:.0}% of one core (load average {:.2} -> {:.2})",
                self.load0,
                procs::loadavg()
            ),
            pct,
        ))
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Dedup part: an HA pair of sluice stores

const DEDUP_METRIC: &str = "dedup_m";
const MIN: i64 = 60_000;

/// Replica A: every 15 s from 0, missing [10m, 15m). Replica B: every 15 s
/// from 5 s, no gap. Values differ per replica.
fn replica_samples(replica: &str, samples: usize) -> Vec<(i64, f64)> {
    let offset = if replica == "A" { 0 } else { 5_000 };
    (0..samples as i64)
        .map(|i| offset + i * 15_000)
        .filter(|t| replica != "A" || !(10 * MIN..15 * MIN).contains(t))
        .map(|t| (t, if replica == "A" { 1.0 } else { 2.0 }))
        .collect()
}

async fn start_store(
    dir: &std::path::Path,
    replica: &str,
    series: usize,
    samples: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<String> {
    use sluice::cli::store::{StoreArgs, start};
    use sluice_tsdb::block::{BlockWriterOptions, write_block};
    use sluice_tsdb::meta::ThanosMeta;

    let bucket = dir.join(format!("bucket-{replica}"));
    std::fs::create_dir_all(&bucket).with_context(|| format!("creating {}", bucket.display()))?;
    let ext: BTreeMap<String, String> = [
        ("cluster".to_string(), "bench".to_string()),
        ("replica".to_string(), replica.to_string()),
    ]
    .into();
    let width = series.saturating_sub(1).max(1).to_string().len();
    let data = replica_samples(replica, samples);
    let it = (0..series).map(|n| {
        (
            vec![
                ("__name__".to_string(), DEDUP_METRIC.to_string()),
                ("i".to_string(), format!("{n:0width$}")),
            ],
            data.clone(),
        )
    });
    write_block(
        &bucket,
        it,
        &BlockWriterOptions {
            thanos: Some(ThanosMeta::new(ext, 0, "bench")),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("writing replica {replica}'s block: {e}"))?;
    let args = StoreArgs {
        objstore_config_file: None,
        objstore_config: Some(format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        )),
        grpc_address: "127.0.0.1:0".parse()?,
        http_address: "127.0.0.1:0".parse()?,
        data_dir: dir.join(format!("cache-{replica}")),
        sync_block_duration: Duration::from_secs(3600),
        ignore_deletion_marks_delay: Duration::from_secs(86_400),
        limit_series: 0,
        limit_samples: 0,
        series_max_concurrency: 20,
        touched_series_limit: 0,
        downloaded_bytes_limit: 0,
        selection: Default::default(),
        ignored: Default::default(),
        block_sync_concurrency: 2,
        tls: Default::default(),
    };
    let mut stop = stop;
    let (running, _) = start(&args, Metrics::new(), async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .with_context(|| format!("starting sluice store for replica {replica}"))?;
    let t = Instant::now();
    while !running.store.is_ready() {
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "sluice store for replica {replica} not ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(running.grpc_addr.to_string())
}

struct SelectOut {
    secs: f64,
    series: usize,
    samples: usize,
}

async fn select_round(q: Arc<Querier>, p: SelectParams) -> anyhow::Result<SelectOut> {
    let t = Instant::now();
    let r = q
        .select(p)
        .await
        .map_err(|e| anyhow!("Querier::select: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(r.warnings.is_empty(), "select warnings: {:?}", r.warnings);
    Ok(SelectOut {
        secs,
        series: r.series.len(),
        samples: r.series.iter().map(|s| s.timestamps.len()).sum(),
    })
}

struct DedupReport {
    on: Vec<f64>,
    off: Vec<f64>,
    on_out: (usize, usize),
    off_out: (usize, usize),
    background: String,
    peak: Mem,
    before: Mem,
}

fn dedup_part(
    args: &Args,
    stores_rt: &Runtime,
    querier_rt: &Runtime,
    tck: f64,
) -> anyhow::Result<DedupReport> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-merge-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let addrs = stores_rt.block_on(async {
        let a = start_store(
            dir.path(),
            "A",
            args.dedup_series,
            args.dedup_samples,
            stop_rx.clone(),
        )
        .await?;
        let b = start_store(
            dir.path(),
            "B",
            args.dedup_series,
            args.dedup_samples,
            stop_rx.clone(),
        )
        .await?;
        Ok::<_, anyhow::Error>(vec![a, b])
    })?;
    log(format!(
        "dedup: wrote 2 blocks and started 2 sluice stores ({}) in {:.1} s",
        addrs.join(", "),
        t.elapsed().as_secs_f64()
    ));
    let (querier, params) = querier_rt.block_on(async {
        let sources = addrs
            .iter()
            .map(|a| {
                Ok(Source {
                    spec: EndpointSpec::parse(a).map_err(|e| anyhow!("{e}"))?,
                    strict: false,
                    client: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let set = EndpointSet::new(
            Discovery::new(sources, vec![], None, None),
            EndpointSetOptions::default(),
        );
        set.refresh().await;
        ensure!(
            set.queryable().len() == 2,
            "querier sees {} of 2 stores",
            set.queryable().len()
        );
        let reg = PolicyRegistry::new(
            PolicyEngine::new(None).map_err(|e| anyhow!("policy engine: {e}"))?,
            &Metrics::new(),
        );
        reg.apply(default_slots())
            .map_err(|e| anyhow!("default policy slots: {}", e.join("; ")))?;
        let q = Querier::new(
            set,
            reg,
            QuerierConfig {
                replica_labels: vec!["replica".into()],
                ..Default::default()
            },
        );
        let (m, _) = name_matcher(DEDUP_METRIC)?;
        let params = SelectParams {
            matchers: vec![m],
            start: 0,
            end: args.dedup_samples as i64 * 15_000,
            dedup: true,
            ..Default::default()
        };
        Ok::<_, anyhow::Error>((Arc::new(q), params))
    })?;

    let before = procs::mem(std::process::id())?;
    procs::reset_peak_rss();
    let mut rep = DedupReport {
        on: vec![],
        off: vec![],
        on_out: (0, 0),
        off_out: (0, 0),
        background: String::new(),
        peak: Mem::default(),
        before,
    };
    let mut bg = None;
    let per_replica_a = replica_samples("A", args.dedup_samples).len();
    let per_replica_b = replica_samples("B", args.dedup_samples).len();
    for round in 0..args.warmup + args.dedup_rounds {
        let measured = round >= args.warmup;
        if round == args.warmup {
            bg = Some(Background::start(tck)?);
        }
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for dedup in order {
            let q = querier.clone();
            let p = SelectParams {
                dedup,
                ..params.clone()
            };
            let out = querier_rt
                .block_on(async { tokio::spawn(select_round(q, p)).await })
                .context("select task")??;
            if dedup {
                ensure!(
                    out.series == args.dedup_series,
                    "dedup=true returned {} series, expected {}",
                    out.series,
                    args.dedup_series
                );
                ensure!(
                    out.samples >= args.dedup_series * per_replica_a.max(per_replica_b) / 2,
                    "dedup=true returned only {} samples",
                    out.samples
                );
                rep.on_out = (out.series, out.samples);
            } else {
                ensure!(
                    out.series == 2 * args.dedup_series
                        && out.samples == args.dedup_series * (per_replica_a + per_replica_b),
                    "dedup=false returned {} series / {} samples, expected {} / {}",
                    out.series,
                    out.samples,
                    2 * args.dedup_series,
                    args.dedup_series * (per_replica_a + per_replica_b)
                );
                rep.off_out = (out.series, out.samples);
            }
            log(format!(
                "{} round {round} dedup={dedup}: {:.3} s, {} series, {} samples",
                if measured { "measured" } else { "warm-up" },
                out.secs,
                out.series,
                out.samples
            ));
            if measured {
                if dedup {
                    rep.on.push(out.secs);
                } else {
                    rep.off.push(out.secs);
                }
            }
        }
    }
    if let Some(bg) = bg {
        rep.background = bg.finish(tck)?.0;
    }
    rep.peak = procs::mem(std::process::id())?;
    let _ = stop_tx.send(true);
    drop(querier);
    drop(dir);
    Ok(rep)
}

// ---------------------------------------------------------------------------

fn run(args: Args) -> anyhow::Result<()> {
    let tck = procs::clk_tck();
    let start_mem = procs::mem(std::process::id())?;
    let stores_rt = runtime("fake-store")?;
    let querier_rt = runtime("querier")?;

    // 1. Fixture, encoded once.
    let t = Instant::now();
    let fixture = build_fixture(args.endpoints, args.series, args.batch)?;
    let expect = fixture.total();
    log(format!(
        "built {} endpoints x {} series = {expect} series in {} frames ({:.1} MiB encoded) in {:.1} s",
        args.endpoints,
        args.series,
        fixture.frames.iter().map(|f| f.len()).sum::<usize>(),
        fixture.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    ));

    // 2. Fake endpoints on their own runtime.
    let addrs = stores_rt.block_on(async {
        let mut v = Vec::new();
        for f in &fixture.frames {
            v.push(start_fake(f.clone(), args.prost_server).await?);
        }
        Ok::<_, anyhow::Error>(v)
    })?;
    log(format!(
        "fake endpoints: {}",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 3. Endpoint set and direct clients on the querier runtime.
    let (m, lm) = name_matcher("m")?;
    let series_req = SeriesRequest {
        min_time: T0 - 3_600_000,
        max_time: T0 + 3_600_000,
        matchers: vec![lm],
        response_batch_size: args.batch as i64,
        ..Default::default()
    };
    let proxy_req = ProxyRequest {
        request: series_req.clone(),
        matchers: vec![m],
        partial_response: false,
        tenant: None,
    };
    let (set, clients) = querier_rt.block_on(async {
        let sources = addrs
            .iter()
            .map(|a| {
                Ok(Source {
                    spec: EndpointSpec::parse(&a.to_string()).map_err(|e| anyhow!("{e}"))?,
                    strict: false,
                    client: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let set = EndpointSet::new(
            Discovery::new(sources, vec![], None, None),
            EndpointSetOptions::default(),
        );
        set.refresh().await;
        ensure!(
            set.queryable().len() == args.endpoints,
            "endpoint set has {} of {} endpoints healthy",
            set.queryable().len(),
            args.endpoints
        );
        let mut clients = Vec::new();
        for a in &addrs {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{a}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {a}"))?;
            clients.push(ch);
        }
        Ok::<_, anyhow::Error>((set, clients))
    })?;

    // 4. Interleaved rounds: merge vs direct reads.
    let before = procs::mem(std::process::id())?;
    let peak_reset = procs::reset_peak_rss();
    let mut merge = Side::default();
    let mut direct = Side::default();
    let mut bg = None;
    for round in 0..args.warmup + args.rounds {
        let measured = round >= args.warmup;
        if round == args.warmup {
            bg = Some(Background::start(tck)?);
        }
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_merge in order {
            if args.only.as_deref() == Some(if is_merge { "direct" } else { "merge" }) {
                continue;
            }
            let c0 = cpu_now(tck)?;
            let secs = if is_merge {
                let (set, req) = (set.clone(), proxy_req.clone());
                querier_rt
                    .block_on(async { tokio::spawn(merge_round(set, req, expect)).await })
                    .context("merge task")??
            } else {
                let (c, req) = (clients.clone(), series_req.clone());
                querier_rt
                    .block_on(async { tokio::spawn(direct_round(c, req, expect)).await })
                    .context("direct task")??
            };
            let cpu = cpu_now(tck)? - c0;
            let name = if is_merge { "merge" } else { "direct" };
            log(format!(
                "{} round {round} {name}: {:.3} s, {:.2} M series/s (CPU: querier {:.0} ms, fake stores {:.0} ms)",
                if measured { "measured" } else { "warm-up" },
                secs,
                expect as f64 / secs / 1e6,
                cpu.querier * 1e3,
                cpu.stores * 1e3
            ));
            if measured {
                let side = if is_merge { &mut merge } else { &mut direct };
                side.secs.push(secs);
                side.cpu.push(cpu);
            }
        }
    }
    let (background, background_pct) = match bg {
        Some(b) => b.finish(tck)?,
        None => ("n/a".into(), 0.0),
    };
    let after = procs::mem(std::process::id())?;
    let open = set.open_streams();
    ensure!(
        open == 0,
        "{open} Series streams still open after the merge rounds"
    );

    // 5. Dedup on vs off.
    let dedup = if args.no_dedup {
        None
    } else {
        Some(dedup_part(&args, &stores_rt, &querier_rt, tck)?)
    };

    // 6. Report.
    let (nproc, cpu) = procs::machine();
    let frames_per_ep = fixture.frames.first().map(|f| f.len()).unwrap_or(0);
    println!();
    println!(
        "merge-throughput: sluice::fanout::series (k-way merge of tonic Series streams) vs direct reads of the same streams without a merge"
    );
    println!("machine    : {nproc} CPUs (nproc), {cpu}");
    println!(
        "allocator  : {}",
        match std::env::var("LD_PRELOAD") {
            Ok(p) if !p.is_empty() => format!("LD_PRELOAD={p}"),
            _ => "the system allocator (glibc malloc), as in the sluice binary".into(),
        }
    );
    println!("background : other processes used {background} during the measured merge rounds");
    if background_pct >= 10.0 {
        println!(
            "WARNING    : other work on this machine skewed these numbers; rerun when it is quiet"
        );
    }
    println!(
        "data       : {} endpoints x {} single-sample series = {expect} series; SeriesBatch frames of {} ({frames_per_ep} per endpoint), {:.1} MiB encoded; labels {{__name__=\"m\", i=\"<n>\", shard=\"<k>\"}}, endpoint k holds n = k mod {}",
        args.endpoints,
        args.series,
        args.batch,
        fixture.bytes as f64 / 1048576.0,
        args.endpoints
    );
    println!(
        "setup      : fake StoreAPI endpoints are tonic servers on 127.0.0.1 IN THIS PROCESS, on their own 2-thread tokio runtime (\"fake-store\"); {}; fan-out, merge and the consumer run on a 2-thread runtime (\"querier\"); both share the {nproc} CPUs",
        if args.prost_server {
            "Series served through the generated Store trait (each frame decoded and re-encoded per call)"
        } else {
            "Series writes frames pre-encoded before timing (raw codec; the Store trait serves the other methods)"
        }
    );
    println!(
        "consumer   : reads the merged channel, checks each series sorts strictly after the previous one, 3 labels, 1 chunk, and the total count"
    );
    println!(
        "rounds     : {} measured (merge and direct interleaved, alternating who goes first) after {} warm-up",
        args.rounds, args.warmup
    );
    println!();
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>14} {:>14} {:>13} {:>13}",
        "path",
        "series",
        "median s",
        "best s",
        "median ser/s",
        "best ser/s",
        "querier CPU",
        "stores CPU"
    );
    for (name, side) in [
        ("fanout::series (merge)", &merge),
        ("direct reads (no merge, peer)", &direct),
    ] {
        let (med, bst) = (median(&side.secs), best(&side.secs));
        println!(
            "{:<30} {:>9} {:>9.3} {:>9.3} {:>14.0} {:>14.0} {:>10.0} ms {:>10.0} ms",
            name,
            expect,
            med,
            bst,
            expect as f64 / med,
            expect as f64 / bst,
            side.cpu_ms(|c| c.querier),
            side.cpu_ms(|c| c.stores),
        );
    }
    let merge_rate = expect as f64 / median(&merge.secs);
    println!();
    println!(
        "ratio merge/direct throughput (median): {:.2}x   best: {:.2}x",
        median(&direct.secs) / median(&merge.secs),
        best(&direct.secs) / best(&merge.secs)
    );
    println!(
        "goal       : >= 4 M series/s merged (median {:.2} M/s): {}   (reference: Thanos's proxy ~4.2 M/s on 16 threads, from its own benchmark, not run here)",
        merge_rate / 1e6,
        if merge_rate >= 4e6 { "MET" } else { "NOT MET" }
    );
    println!(
        "memory     : whole process (fixture frames + fake stores + querier): RSS at start {:.1} MiB, before the rounds {:.1} MiB, after {:.1} MiB; peak (VmHWM) {} {:.1} MiB, i.e. +{:.1} MiB over the RSS before the rounds",
        mib(start_mem.rss_kib),
        mib(before.rss_kib),
        mib(after.rss_kib),
        if peak_reset {
            "during the rounds (reset via /proc/self/clear_refs before them)"
        } else {
            "since process start (could not reset it)"
        },
        mib(after.hwm_kib),
        mib(after.hwm_kib.saturating_sub(before.rss_kib))
    );
    println!(
        "columns    : ser/s = series per second end to end (call to last series consumed); CPU = mean CPU time per round of the querier runtime's threads / the fake stores' threads"
    );

    if let Some(d) = dedup {
        println!();
        println!(
            "dedup      : Querier::select {{__name__=\"{DEDUP_METRIC}\"}} over an HA pair of in-process sluice stores (filesystem buckets), 2 replicas x {} series x {} samples @ 15 s (replica A has a 5 min gap); --query.replica-label=replica; default policy slots (dedup-penalty and relabel as wasm plugins in the sandbox)",
            args.dedup_series, args.dedup_samples
        );
        println!(
            "background : other processes used {} during the measured dedup rounds",
            d.background
        );
        println!(
            "{:<14} {:>10} {:>12} {:>9} {:>9} {:>14}",
            "select", "series out", "samples out", "median s", "best s", "median ser/s"
        );
        for (name, secs, out) in [
            ("dedup=true", &d.on, d.on_out),
            ("dedup=false", &d.off, d.off_out),
        ] {
            println!(
                "{:<14} {:>10} {:>12} {:>9.3} {:>9.3} {:>14.0}",
                name,
                out.0,
                out.1,
                median(secs),
                best(secs),
                (2 * args.dedup_series) as f64 / median(secs)
            );
        }
        println!(
            "ratio dedup on/off (median time): {:.2}x   best: {:.2}x   ({} interleaved rounds each; ser/s counts the {} input series)",
            median(&d.on) / median(&d.off),
            best(&d.on) / best(&d.off),
            args.dedup_rounds,
            2 * args.dedup_series
        );
        println!(
            "memory     : RSS before the dedup rounds {:.1} MiB, peak during them {:.1} MiB",
            mib(d.before.rss_kib),
            mib(d.peak.hwm_kib)
        );
    }
    drop(clients);
    drop(set);
    querier_rt.shutdown_timeout(Duration::from_secs(1));
    stores_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
