//! StoreAPI conformance: one suite of expectations, run against every
//! implementation of `sluice_storeapi::StoreSource` served by the generic
//! server, each over the same fixture data:
//! - `Bucket`: `sluice store` over blocks written by `sluice-tsdb`'s writer;
//! - `Promtool`: `sluice store` over blocks written by the real `promtool`
//!   (`tsdb create-blocks-from openmetrics`), with the Thanos section added to
//!   their meta.json as a sidecar's shipper does;
//! - `Proxy`: the querier's proxy source over a `sluice store`;
//! - `Memory`: an in-memory reference source (below).
//!
//! Every Series / LabelNames / LabelValues / Info answer is checked against
//! the data that was written.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sluice::cli::store::{StoreArgs, start};
use sluice::discovery::{Discovery, EndpointSpec, Source as EndpointSource};
use sluice::fanout::{EndpointSet, EndpointSetOptions, ProxyStore};
use sluice::metrics::Metrics;
use sluice::model::Labels;
use sluice::storeapi::{
    Component, Flow, LabelsAnswer, LabelsKind, LabelsQuery, SeriesLimits, SeriesQuery, SeriesSink,
    ServerOptions, SourceInfo, StoreApi, StoreError, StoreSource, TsdbInfo, into_pb_labels,
};
use sluice_proto::thanos::AggrChunk;
use sluice_proto::thanos::info::InfoRequest as InfoReq;
use sluice_proto::thanos::info::info_client::InfoClient;
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, Series, SeriesRequest, label_matcher,
    series_response,
};
use sluice_tsdb::block::{BlockWriterOptions, write_block};
use sluice_tsdb::meta::ThanosMeta;
use tonic::transport::Channel;

type Samples = Vec<(i64, f64)>;
type LabelVec = Vec<(String, String)>;

const STEP: i64 = 15_000;
const HOUR: i64 = 3_600_000;

fn lv(p: &[(&str, &str)]) -> LabelVec {
    let mut v: LabelVec = p
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

/// Series of the fixture: (labels without external labels, samples over [0, 4h)).
fn fixture_series() -> Vec<(LabelVec, Samples)> {
    let mut out = Vec::new();
    for (job, inst, replica, reset_at) in [
        ("api", "i1", "A", Some(90)),
        ("api", "i1", "B", Some(90)),
        ("api", "i2", "A", None),
        ("db", "i3", "A", None),
    ] {
        let mut v = 0.0;
        let samples: Samples = (0..4 * HOUR / STEP)
            .map(|i| {
                // B misses 20 minutes, as an HA replica restarting would.
                v += 10.0 + (i % 7) as f64;
                if Some(i * STEP / 60_000) == reset_at.map(|m: i64| m) && i * STEP % 60_000 == 0 {
                    v = 1.0;
                }
                (i * STEP, v)
            })
            .filter(|(t, _)| !(replica == "B" && (*t >= 180 * 60_000 && *t < 200 * 60_000)))
            .collect();
        out.push((
            lv(&[
                ("__name__", "http_requests_total"),
                ("instance", inst),
                ("job", job),
                ("replica", replica),
            ]),
            samples,
        ));
    }
    let gauge: Samples = (0..4 * HOUR / STEP)
        .map(|i| (i * STEP, 20.0 + ((i as f64) / 40.0).sin()))
        .collect();
    out.push((
        lv(&[
            ("__name__", "temperature"),
            ("instance", "i1"),
            ("job", "sensor"),
        ]),
        gauge,
    ));
    out.sort_by(|a, b| cmp_labels(&a.0, &b.0));
    out
}

fn write_fixture(dir: &Path, ext: &[(&str, &str)], from: i64, to: i64) {
    let series: Vec<(LabelVec, Samples)> = fixture_series()
        .into_iter()
        .map(|(l, s)| {
            (
                l,
                s.into_iter()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .collect::<Samples>(),
            )
        })
        .collect();
    let labels: BTreeMap<String, String> = ext
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let opts = BlockWriterOptions {
        thanos: Some(ThanosMeta::new(labels, 0, "test")),
        ..Default::default()
    };
    write_block(dir, series, &opts).expect("write block");
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: StoreClient<Channel>,
    info: InfoClient<Channel>,
    http: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// What Info must say.
    component: &'static str,
    sharding: bool,
    /// Servers and stores this fixture's answers go through.
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

/// The implementations the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bucket,
    Promtool,
    Proxy,
    Memory,
}

const SOURCES: [Source; 4] = [
    Source::Bucket,
    Source::Promtool,
    Source::Proxy,
    Source::Memory,
];

async fn fixture(limit_series: u64, limit_samples: u64) -> Fixture {
    fixture_for(Source::Bucket, limit_series, limit_samples).await
}

async fn fixture_for(source: Source, limit_series: u64, limit_samples: u64) -> Fixture {
    let limits = SeriesLimits {
        series: limit_series,
        samples: limit_samples,
    };
    match source {
        Source::Bucket => bucket_fixture(false, limits).await.fixture,
        Source::Promtool => bucket_fixture(true, limits).await.fixture,
        Source::Proxy => {
            let inner = bucket_fixture(false, SeriesLimits::default()).await;
            let addr = inner.http_grpc.expect("bucket fixture has a gRPC address");
            let set = EndpointSet::new(
                Discovery::new(
                    vec![EndpointSource {
                        spec: EndpointSpec::parse(&addr.to_string()).expect("spec"),
                        strict: false,
                        client: None,
                    }],
                    vec![],
                    None,
                    None,
                ),
                EndpointSetOptions::default(),
            );
            set.refresh().await;
            assert_eq!(set.queryable().len(), 1, "proxy sees the store");
            let mut f = serve(ProxyStore::new(set), limits, inner.fixture._dir).await;
            f.component = "query";
            f.sharding = false;
            f.http = inner.fixture.http;
            f._keep.push(Box::new(inner.fixture._stop));
            f._keep.extend(inner.fixture._keep);
            f
        }
        Source::Memory => {
            let mut mem = MemSource::default();
            mem.add(Labels::from_pairs([("cluster", "a")]), fixture_series());
            mem.add(Labels::from_pairs([("cluster", "b")]), fixture_series());
            let dir = tempfile::tempdir().expect("tempdir");
            serve(mem, limits, dir).await
        }
    }
}

/// Serves a source with the generic StoreAPI server on a loopback port.
async fn serve<S: StoreSource>(source: S, limits: SeriesLimits, dir: tempfile::TempDir) -> Fixture {
    let metrics = Metrics::new();
    let api = StoreApi::new(
        std::sync::Arc::new(source),
        ServerOptions {
            limits,
            ..ServerOptions::default()
        },
        &metrics,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(api.info_server())
            .add_service(api.store_server())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    let ch = Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    Fixture {
        _dir: dir,
        store: StoreClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
        info: InfoClient::new(ch),
        http: addr,
        _stop: stop,
        component: "debug",
        sharding: true,
        _keep: Vec::new(),
    }
}

struct BucketFixture {
    fixture: Fixture,
    http_grpc: Option<std::net::SocketAddr>,
}

async fn bucket_fixture(promtool: bool, limits: SeriesLimits) -> BucketFixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).expect("mkdir");
    if promtool {
        // promtool cuts 2h blocks: cluster a and cluster b two each.
        write_promtool_fixture(&dir.path().join("om-a"), &bucket, "a");
        write_promtool_fixture(&dir.path().join("om-b"), &bucket, "b");
    } else {
        // Cluster a: two consecutive 2h blocks; cluster b: one 4h block.
        write_fixture(&bucket, &[("cluster", "a")], 0, 2 * HOUR);
        write_fixture(&bucket, &[("cluster", "a")], 2 * HOUR, 4 * HOUR);
        write_fixture(&bucket, &[("cluster", "b")], 0, 4 * HOUR);
    }
    let (fixture, grpc) = serve_bucket(dir, limits).await;
    BucketFixture {
        fixture,
        http_grpc: Some(grpc),
    }
}

/// Starts `sluice store` in-process over `<dir>/bucket` (index copies in
/// `<dir>/data`), waits until it is ready, and connects to it.
async fn serve_bucket(
    dir: tempfile::TempDir,
    limits: SeriesLimits,
) -> (Fixture, std::net::SocketAddr) {
    let args = StoreArgs {
        objstore_config_file: None,
        objstore_config: Some(format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.path().join("bucket").display()
        )),
        grpc_address: "127.0.0.1:0".parse().expect("addr"),
        http_address: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        sync_block_duration: Duration::from_secs(3600),
        ignore_deletion_marks_delay: Duration::from_secs(86_400),
        limit_series: limits.series,
        limit_samples: limits.samples,
        series_max_concurrency: 20,
        touched_series_limit: 0,
        downloaded_bytes_limit: 0,
        selection: Default::default(),
        ignored: Default::default(),
        block_sync_concurrency: 4,
        tls: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (running, _task) = start(&args, Metrics::new(), async move {
        let _ = stopped.await;
    })
    .await
    .expect("start store");
    for _ in 0..200 {
        if running.store.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(running.store.is_ready(), "store did not become ready");
    let ch = Channel::from_shared(format!("http://{}", running.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let fixture = Fixture {
        _dir: dir,
        store: StoreClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
        info: InfoClient::new(ch),
        http: running.http_addr,
        _stop: stop,
        component: "store",
        sharding: true,
        _keep: Vec::new(),
    };
    (fixture, running.grpc_addr)
}

/// Writes the fixture for one cluster as OpenMetrics text, has the real
/// `promtool` cut blocks from it, and adds the Thanos section with the
/// cluster's external label to their meta.json, as a shipper does.
fn write_promtool_fixture(work: &Path, bucket: &Path, cluster: &str) {
    use std::fmt::Write as _;
    std::fs::create_dir_all(work).expect("mkdir");
    let mut text = String::new();
    let mut series = fixture_series();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (labels, samples) in &series {
        let name = &labels.iter().find(|l| l.0 == "__name__").expect("name").1;
        let rest: Vec<String> = labels
            .iter()
            .filter(|l| l.0 != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        for (t, v) in samples {
            let _ = writeln!(
                text,
                "{name}{{{}}} {v:?} {}.{:03}",
                rest.join(","),
                t / 1000,
                t % 1000
            );
        }
    }
    text.push_str("# EOF\n");
    let input = work.join("input.om");
    std::fs::write(&input, text).expect("write openmetrics");
    let out = work.join("blocks");
    let status = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not found ({e}): install the Debian package `prometheus` (.ci/run does)"
            )
        });
    assert!(
        status.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    for e in std::fs::read_dir(&out).expect("blocks") {
        let dir = e.expect("entry").path();
        let meta_path = dir.join("meta.json");
        let Ok(meta) = std::fs::read(&meta_path) else {
            continue;
        };
        let mut meta: serde_json::Value = serde_json::from_slice(&meta).expect("meta.json");
        meta["thanos"] = serde_json::json!({
            "version": 1,
            "labels": {"cluster": cluster},
            "downsample": {"resolution": 0},
            "source": "sidecar",
        });
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).expect("json"))
            .expect("write meta");
        let target = bucket.join(dir.file_name().expect("name"));
        copy_dir(&dir, &target);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        let t = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// A reference StoreAPI source over series held in memory: what the
/// contract of `StoreSource` says, written as plainly as possible.
#[derive(Default)]
struct MemSource {
    /// (external labels, series with their samples)
    tsdbs: Vec<(Labels, Vec<(Labels, Samples)>)>,
}

impl MemSource {
    fn add(&mut self, external: Labels, series: Vec<(LabelVec, Samples)>) {
        let series = series
            .into_iter()
            .map(|(l, s)| (Labels::from_pairs(l), s))
            .collect();
        self.tsdbs.push((external, series));
    }

    /// Series with final labels and samples in `[mint, maxt]` whose final
    /// labels match every matcher, merged by label set, in label order.
    fn select(
        &self,
        q: &SeriesQuery,
        matchers: &[sluice::model::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Samples>)> {
        let mut out: BTreeMap<Labels, Vec<Samples>> = BTreeMap::new();
        for (ext, series) in &self.tsdbs {
            for (labels, samples) in series {
                let Some(fin) = q.final_labels(labels.clone(), ext) else {
                    continue;
                };
                let mut full = labels.clone();
                full.extend_overriding(ext);
                if !matchers.iter().all(|m| m.matches_labels(&full)) {
                    continue;
                }
                let inside: Samples = samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= mint && *t <= maxt)
                    .collect();
                if !inside.is_empty() {
                    out.entry(fin).or_default().push(inside);
                }
            }
        }
        out.into_iter().collect()
    }
}

impl StoreSource for MemSource {
    fn info(&self) -> Result<SourceInfo, StoreError> {
        let mut info = SourceInfo::empty(Component::Debug);
        for (ext, series) in &self.tsdbs {
            let ts = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.0));
            let (min, max) = ts.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
            // Block max times are exclusive: one past the last sample.
            let max = max.saturating_add(1);
            info.min_time = info.min_time.min(min);
            info.max_time = info.max_time.max(max);
            info.label_sets.push(ext.clone());
            info.tsdb_infos.push(TsdbInfo {
                labels: ext.clone(),
                min_time: min,
                max_time: max,
            });
        }
        Ok(info)
    }

    async fn series(&self, q: SeriesQuery, sink: &mut SeriesSink) -> Result<(), StoreError> {
        let selected = self.select(&q, &q.matchers, q.min_time, q.max_time);
        for (labels, parts) in selected {
            let mut chunks = Vec::new();
            if !q.skip_chunks {
                for samples in parts {
                    for c in samples.chunks(120) {
                        let data = sluice_tsdb::xor::encode(c)
                            .map_err(|e| StoreError::Internal(e.to_string()))?;
                        chunks.push(AggrChunk {
                            min_time: c[0].0,
                            max_time: c[c.len() - 1].0,
                            raw: Some(sluice_proto::thanos::Chunk {
                                r#type: 0,
                                hash: xxhash(&data),
                                data: data.into(),
                            }),
                            ..Default::default()
                        });
                    }
                }
                chunks.sort_by_key(|c| (c.min_time, c.max_time));
            }
            let s = Series {
                labels: into_pb_labels(labels),
                chunks,
            };
            if sink.send(&s).await? == Flow::Done {
                break;
            }
        }
        Ok(())
    }

    async fn labels(&self, q: LabelsQuery) -> Result<LabelsAnswer, StoreError> {
        let sq = SeriesQuery::default();
        let selected = self.select(&sq, &q.matchers, q.start, q.end);
        let values = selected
            .into_iter()
            .flat_map(|(labels, _)| match &q.kind {
                LabelsKind::Names => labels.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
                LabelsKind::Values(n) => labels.get(n).map(str::to_string).into_iter().collect(),
            })
            .collect();
        Ok(LabelsAnswer {
            values,
            warnings: Vec::new(),
            hints: None,
        })
    }
}

fn m(t: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn all_matcher() -> Vec<LabelMatcher> {
    vec![m(label_matcher::Type::Re, "__name__", ".+")]
}

async fn series(f: &mut Fixture, req: SeriesRequest) -> Result<Vec<Series>, tonic::Status> {
    let mut stream = f.store.series(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.result {
            Some(series_response::Result::Series(s)) => out.push(s),
            Some(series_response::Result::Batch(b)) => out.extend(b.series),
            // The proxy says when no endpoint covers the request (Thanos does too).
            Some(series_response::Result::Warning(w))
                if w == "No StoreAPIs matched for this query" => {}
            Some(series_response::Result::Warning(w)) => panic!("unexpected warning {w}"),
            _ => {}
        }
    }
    Ok(out)
}

fn labels_of(s: &Series) -> LabelVec {
    s.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn decode(s: &Series) -> Samples {
    let mut out = Samples::new();
    for c in &s.chunks {
        let raw = c.raw.as_ref().expect("raw chunk");
        assert_eq!(raw.r#type, 0, "XOR");
        assert_eq!(raw.hash, xxhash(&raw.data), "chunk hash is XXH64 of data");
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        sluice_tsdb::xor::decode_into(&raw.data, &mut ts, &mut vs).expect("decode");
        assert_eq!(ts.first().copied(), Some(c.min_time));
        assert_eq!(ts.last().copied(), Some(c.max_time));
        out.extend(ts.into_iter().zip(vs));
    }
    out
}

fn xxhash(b: &[u8]) -> u64 {
    // Reference XXH64 (seed 0) written out so the test does not trust the
    // server's hashing code.
    const P1: u64 = 0x9E3779B185EBCA87;
    const P2: u64 = 0xC2B2AE3D27D4EB4F;
    const P3: u64 = 0x165667B19E3779F9;
    const P4: u64 = 0x85EBCA77C2B2AE63;
    const P5: u64 = 0x27D4EB2F165667C5;
    let round = |acc: u64, v: u64| {
        acc.wrapping_add(v.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    };
    let merge = |acc: u64, v: u64| (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4);
    let u64le = |s: &[u8]| u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
    let mut i = 0;
    let mut h = if b.len() >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) =
            (P1.wrapping_add(P2), P2, 0u64, 0u64.wrapping_sub(P1));
        while i + 32 <= b.len() {
            v1 = round(v1, u64le(&b[i..]));
            v2 = round(v2, u64le(&b[i + 8..]));
            v3 = round(v3, u64le(&b[i + 16..]));
            v4 = round(v4, u64le(&b[i + 24..]));
            i += 32;
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        merge(h, v4)
    } else {
        P5
    };
    h = h.wrapping_add(b.len() as u64);
    while i + 8 <= b.len() {
        h = (h ^ round(0, u64le(&b[i..])))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
        i += 8;
    }
    if i + 4 <= b.len() {
        h = (h ^ u64::from(u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")))
            .wrapping_mul(P1))
        .rotate_left(23)
        .wrapping_mul(P2)
        .wrapping_add(P3);
        i += 4;
    }
    while i < b.len() {
        h = (h ^ u64::from(b[i]).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// What the store must return for the whole fixture: every series once per
/// cluster with its external label, samples in time order.
fn expected_all() -> BTreeMap<LabelVec, Samples> {
    let mut out = BTreeMap::new();
    for cluster in ["a", "b"] {
        for (mut l, s) in fixture_series() {
            l.push(("cluster".into(), cluster.into()));
            l.sort();
            out.insert(l, s);
        }
    }
    out
}

fn req(matchers: Vec<LabelMatcher>, min: i64, max: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: min,
        max_time: max,
        matchers,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_returns_exactly_what_the_blocks_hold() {
    for source in SOURCES {
        series_returns_exactly_what_the_blocks_hold_on(source).await;
    }
}

async fn series_returns_exactly_what_the_blocks_hold_on(source: Source) {
    let mut f = fixture_for(source, 0, 0).await;
    let got = series(&mut f, req(all_matcher(), i64::MIN, i64::MAX))
        .await
        .expect("series");
    let labels: Vec<LabelVec> = got.iter().map(labels_of).collect();
    let mut sorted = labels.clone();
    sorted.sort_by(|a, b| cmp_labels(a, b));
    assert_eq!(labels, sorted, "series frames are sorted by label set");
    let expected = expected_all();
    assert_eq!(got.len(), expected.len());
    for s in &got {
        let want = &expected[&labels_of(s)];
        let have = decode(s);
        assert_eq!(have.len(), want.len(), "{:?}", labels_of(s));
        for (a, b) in have.iter().zip(want) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
        let mins: Vec<i64> = s.chunks.iter().map(|c| c.min_time).collect();
        assert!(
            mins.windows(2).all(|w| w[0] < w[1]),
            "chunks ascend by time"
        );
    }
}

fn cmp_labels(a: &LabelVec, b: &LabelVec) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = x.0.cmp(&y.0).then(x.1.cmp(&y.1));
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchers_time_range_and_options() {
    for source in SOURCES {
        matchers_time_range_and_options_on(source).await;
    }
}

async fn matchers_time_range_and_options_on(source: Source) {
    use label_matcher::Type::*;
    let mut f = fixture_for(source, 0, 0).await;
    let names = |v: &[Series]| v.iter().map(labels_of).collect::<Vec<_>>();

    // = and external-label matcher
    let got = series(
        &mut f,
        req(vec![m(Eq, "job", "db"), m(Eq, "cluster", "b")], 0, 4 * HOUR),
    )
    .await
    .expect("eq");
    assert_eq!(
        names(&got),
        vec![lv(&[
            ("__name__", "http_requests_total"),
            ("cluster", "b"),
            ("instance", "i3"),
            ("job", "db"),
            ("replica", "A")
        ])]
    );
    // Fully anchored regex: "ap" does not match "api".
    assert!(
        series(&mut f, req(vec![m(Re, "job", "ap")], 0, 4 * HOUR))
            .await
            .expect("re")
            .is_empty()
    );
    assert_eq!(
        series(&mut f, req(vec![m(Re, "job", "ap.")], 0, 4 * HOUR))
            .await
            .expect("re")
            .len(),
        6
    );
    // != and !~ ; a matcher on a missing label with "" matches series without it.
    let got = series(
        &mut f,
        req(
            vec![
                m(Re, "__name__", ".+"),
                m(Neq, "job", "api"),
                m(Nre, "cluster", "b"),
            ],
            0,
            4 * HOUR,
        ),
    )
    .await
    .expect("neq");
    assert_eq!(got.len(), 2, "{:?}", names(&got));
    let got = series(
        &mut f,
        req(
            vec![m(Re, "__name__", ".+"), m(Eq, "replica", "")],
            0,
            4 * HOUR,
        ),
    )
    .await
    .expect("empty");
    assert!(got.iter().all(|s| labels_of(s)[0].1 == "temperature") && got.len() == 2);

    // Time range: only chunks overlapping [1h, 1h+1m] come back.
    let got = series(
        &mut f,
        req(
            vec![m(Eq, "__name__", "temperature"), m(Eq, "cluster", "a")],
            HOUR,
            HOUR + 60_000,
        ),
    )
    .await
    .expect("range");
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .chunks
            .iter()
            .all(|c| c.max_time >= HOUR && c.min_time <= HOUR + 60_000)
    );
    assert!(!got[0].chunks.is_empty() && got[0].chunks.len() < 4);
    // Outside all blocks: nothing.
    assert!(
        series(&mut f, req(all_matcher(), 10 * HOUR, 11 * HOUR))
            .await
            .expect("outside")
            .is_empty()
    );

    // skip_chunks
    let mut r = req(all_matcher(), 0, 4 * HOUR);
    r.skip_chunks = true;
    let got = series(&mut f, r).await.expect("skip");
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|s| s.chunks.is_empty()));

    // without_replica_labels: the two replicas of api/i1 merge into one series.
    let mut r = req(
        vec![
            m(Eq, "instance", "i1"),
            m(Eq, "cluster", "a"),
            m(Eq, "job", "api"),
        ],
        0,
        4 * HOUR,
    );
    r.without_replica_labels = vec!["replica".into()];
    let got = series(&mut f, r).await.expect("without replica");
    assert_eq!(
        names(&got),
        vec![lv(&[
            ("__name__", "http_requests_total"),
            ("cluster", "a"),
            ("instance", "i1"),
            ("job", "api")
        ])]
    );
    let fx = fixture_series();
    let (a, b) = (&fx[0].1, &fx[1].1);
    let n: usize = got[0]
        .chunks
        .iter()
        .map(|c| {
            u16::from_be_bytes([
                c.raw.as_ref().expect("raw").data[0],
                c.raw.as_ref().expect("raw").data[1],
            ]) as usize
        })
        .sum();
    assert_eq!(n, a.len() + b.len(), "chunks of both replicas are returned");
    let mins: Vec<(i64, i64)> = got[0]
        .chunks
        .iter()
        .map(|c| (c.min_time, c.max_time))
        .collect();
    assert!(mins.windows(2).all(|w| w[0] <= w[1]));

    // limit and batching
    let mut r = req(all_matcher(), 0, 4 * HOUR);
    r.limit = 3;
    r.response_batch_size = 2;
    assert_eq!(series(&mut f, r).await.expect("limit").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_and_limits() {
    for source in SOURCES {
        invalid_requests_and_limits_on(source).await;
    }
}

async fn invalid_requests_and_limits_on(source: Source) {
    let mut f = fixture_for(source, 0, 0).await;
    let e = series(&mut f, req(vec![], 0, HOUR))
        .await
        .expect_err("no matchers");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = series(
        &mut f,
        req(vec![m(label_matcher::Type::Re, "job", "(")], 0, HOUR),
    )
    .await
    .expect_err("bad regex");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("regular expression"),
        "{}",
        e.message()
    );

    let mut f = fixture_for(source, 3, 0).await;
    let e = series(&mut f, req(all_matcher(), 0, 4 * HOUR))
        .await
        .expect_err("series limit");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("request-series"), "{}", e.message());
    assert_eq!(
        series(
            &mut f,
            req(vec![m(label_matcher::Type::Eq, "job", "db")], 0, 4 * HOUR)
        )
        .await
        .expect("under limit")
        .len(),
        2
    );

    let mut f = fixture_for(source, 0, 1000).await;
    let e = series(&mut f, req(all_matcher(), 0, 4 * HOUR))
        .await
        .expect_err("samples limit");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("request-samples"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_apis_and_info() {
    for source in SOURCES {
        label_apis_and_info_on(source).await;
    }
}

async fn label_apis_and_info_on(source: Source) {
    use label_matcher::Type::*;
    let mut f = fixture_for(source, 0, 0).await;
    let names = f
        .store
        .label_names(LabelNamesRequest {
            start: 0,
            end: 4 * HOUR,
            ..Default::default()
        })
        .await
        .expect("names")
        .into_inner()
        .names;
    assert_eq!(
        names,
        vec!["__name__", "cluster", "instance", "job", "replica"]
    );
    let names = f
        .store
        .label_names(LabelNamesRequest {
            start: 0,
            end: 4 * HOUR,
            matchers: vec![m(Eq, "__name__", "temperature")],
            ..Default::default()
        })
        .await
        .expect("names")
        .into_inner()
        .names;
    assert_eq!(names, vec!["__name__", "cluster", "instance", "job"]);
    let names = f
        .store
        .label_names(LabelNamesRequest {
            start: 0,
            end: 4 * HOUR,
            without_replica_labels: vec!["replica".into()],
            ..Default::default()
        })
        .await
        .expect("names")
        .into_inner()
        .names;
    assert!(!names.contains(&"replica".to_string()));

    let vals = |label: &str, ms: Vec<LabelMatcher>, start: i64, end: i64| LabelValuesRequest {
        label: label.into(),
        start,
        end,
        matchers: ms,
        ..Default::default()
    };
    let v = f
        .store
        .label_values(vals("job", vec![], 0, 4 * HOUR))
        .await
        .expect("values")
        .into_inner()
        .values;
    assert_eq!(v, vec!["api", "db", "sensor"]);
    let v = f
        .store
        .label_values(vals("cluster", vec![], 0, 4 * HOUR))
        .await
        .expect("values")
        .into_inner()
        .values;
    assert_eq!(v, vec!["a", "b"]);
    let v = f
        .store
        .label_values(vals("instance", vec![m(Eq, "job", "api")], 0, 4 * HOUR))
        .await
        .expect("values")
        .into_inner()
        .values;
    assert_eq!(v, vec!["i1", "i2"]);
    let v = f
        .store
        .label_values(vals(
            "replica",
            vec![m(Eq, "cluster", "b"), m(Eq, "instance", "i1")],
            0,
            4 * HOUR,
        ))
        .await
        .expect("values")
        .into_inner()
        .values;
    assert_eq!(v, vec!["A", "B"]);
    assert!(
        f.store
            .label_values(vals("job", vec![], 10 * HOUR, 11 * HOUR))
            .await
            .expect("values")
            .into_inner()
            .values
            .is_empty()
    );

    let info = f.info.info(InfoReq {}).await.expect("info").into_inner();
    assert_eq!(info.component_type, f.component, "{source:?}");
    let store = info.store.expect("store info");
    assert_eq!(store.min_time, 0);
    assert_eq!(store.max_time, 4 * HOUR - STEP + 1);
    assert!(store.supports_without_replica_labels);
    assert_eq!(store.supports_sharding, f.sharding, "{source:?}");
    let sets: Vec<Vec<(String, String)>> = info
        .label_sets
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    assert_eq!(sets, vec![lv(&[("cluster", "a")]), lv(&[("cluster", "b")])]);

    if source != Source::Bucket {
        return;
    }
    let body = http_get(f.http, "/metrics").await;
    assert!(
        body.contains("thanos_bucket_store_blocks_loaded 3"),
        "{body}"
    );
    assert!(
        body.contains(
            "grpc_server_handled_total{grpc_service=\"thanos.Store\",grpc_method=\"LabelValues\""
        ),
        "{body}"
    );
    assert!(http_get(f.http, "/-/ready").await.contains("OK"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Writes a 5m-resolution block for cluster "a" covering [0, 4h): one series
/// whose AggrChunk holds count/sum/min/max (no counter), samples at window ends.
fn write_downsampled(dir: &Path) {
    use sluice_tsdb::aggr::encode_aggr;
    use sluice_tsdb::chunk::RawChunk;
    use sluice_tsdb::xor::XorEncoder;
    let windows: Vec<i64> = (1..=48).map(|w| w * 300_000 - 1).collect();
    let enc = |f: &dyn Fn(i64) -> f64| {
        let mut e = XorEncoder::new();
        for &t in &windows {
            e.append(t, f(t));
        }
        e.into_bytes()
    };
    let (count, sum, min, max) = (
        enc(&|_| 20.0),
        enc(&|t| t as f64),
        enc(&|_| 19.0),
        enc(&|_| 21.0),
    );
    let xor = 1u8;
    let aggr = encode_aggr([
        Some(RawChunk {
            encoding: xor,
            data: &count,
        }),
        Some(RawChunk {
            encoding: xor,
            data: &sum,
        }),
        Some(RawChunk {
            encoding: xor,
            data: &min,
        }),
        Some(RawChunk {
            encoding: xor,
            data: &max,
        }),
        None,
    ]);
    let labels: BTreeMap<String, String> = [("cluster".to_string(), "a".to_string())].into();
    let opts = BlockWriterOptions {
        thanos: Some(ThanosMeta::new(labels, 300_000, "compactor")),
        min_time: Some(0),
        max_time: Some(4 * HOUR),
        ..Default::default()
    };
    let series = vec![(
        lv(&[
            ("__name__", "temperature"),
            ("instance", "i1"),
            ("job", "sensor"),
        ]),
        vec![(windows[0], windows[47], 0xFFu8, aggr)],
    )];
    sluice_tsdb::block::write_block_chunks(dir, series, &opts).expect("write downsampled block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_blocks_are_chosen_by_resolution_and_split_into_aggregates() {
    use label_matcher::Type::*;
    use sluice_proto::thanos::Aggr;
    let mut f = fixture(0, 0).await;
    // Add a 5m block next to the raw ones and let the store pick it up.
    let bucket = f._dir.path().join("bucket");
    write_downsampled(&bucket);
    let ms = || vec![m(Eq, "__name__", "temperature"), m(Eq, "cluster", "a")];

    // Raw only (window 0): two raw chunks' worth of samples, raw field set.
    f = resync(f).await;
    let got = series(&mut f, req(ms(), 0, 4 * HOUR)).await.expect("raw");
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .chunks
            .iter()
            .all(|c| c.raw.is_some() && c.count.is_none())
    );

    // Window 5m: the downsampled block covers the range, so only its chunk comes back,
    // with exactly the requested aggregates.
    let mut r = req(ms(), 0, 4 * HOUR);
    r.max_resolution_window = 300_000;
    r.aggregates = vec![Aggr::Count as i32, Aggr::Sum as i32];
    let got = series(&mut f, r.clone()).await.expect("downsampled");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].chunks.len(),
        1,
        "one aggregate chunk instead of raw chunks"
    );
    let c = &got[0].chunks[0];
    assert!(c.raw.is_none() && c.min.is_none() && c.max.is_none() && c.counter.is_none());
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    sluice_tsdb::xor::decode_into(&c.count.as_ref().expect("count").data, &mut ts, &mut vs)
        .expect("count decodes");
    assert_eq!((ts.len(), vs[0]), (48, 20.0));
    assert_eq!(
        c.sum.as_ref().expect("sum").hash,
        xxhash(&c.sum.as_ref().expect("sum").data)
    );

    // An aggregate the block lacks is an error naming it.
    r.aggregates = vec![Aggr::Counter as i32];
    let e = series(&mut f, r).await.expect_err("no counter aggregate");
    assert!(
        e.message().contains("aggregate counter does not exist"),
        "{}",
        e.message()
    );
}

/// Re-syncs the fixture's store by restarting it over the same directories.
async fn resync(f: Fixture) -> Fixture {
    let Fixture { _dir, _stop, .. } = f;
    drop(_stop);
    serve_bucket(_dir, SeriesLimits::default()).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_info_partitions_the_series() {
    for source in SOURCES {
        shard_info_partitions_the_series_on(source).await;
    }
}

async fn shard_info_partitions_the_series_on(source: Source) {
    use sluice_proto::thanos::ShardInfo;
    let mut f = fixture_for(source, 0, 0).await;
    let mut seen = Vec::new();
    for shard_index in 0..3 {
        let mut r = req(all_matcher(), 0, 4 * HOUR);
        r.skip_chunks = true;
        r.shard_info = Some(ShardInfo {
            shard_index,
            total_shards: 3,
            by: false,
            labels: vec![],
        });
        seen.extend(
            series(&mut f, r)
                .await
                .expect("shard")
                .iter()
                .map(labels_of),
        );
    }
    seen.sort_by(cmp_labels);
    let all: Vec<LabelVec> = expected_all().into_keys().collect::<Vec<_>>();
    let mut all_sorted = all.clone();
    all_sorted.sort_by(cmp_labels);
    assert_eq!(seen, all_sorted, "every series is in exactly one shard");
    // Sharding by cluster keeps each cluster's series together.
    let mut r = req(all_matcher(), 0, 4 * HOUR);
    r.skip_chunks = true;
    r.shard_info = Some(ShardInfo {
        shard_index: 0,
        total_shards: 2,
        by: true,
        labels: vec!["cluster".into()],
    });
    let got = series(&mut f, r).await.expect("shard by cluster");
    let clusters: std::collections::BTreeSet<String> = got
        .iter()
        .map(|s| {
            labels_of(s)
                .into_iter()
                .find(|l| l.0 == "cluster")
                .expect("cluster")
                .1
        })
        .collect();
    assert!(
        got.is_empty() || clusters.len() == 1 && got.len() == 5,
        "{clusters:?} {}",
        got.len()
    );
}

async fn series_and_hints(
    f: &mut Fixture,
    req: SeriesRequest,
) -> (Vec<Series>, Vec<sluice_proto::hintspb::SeriesResponseHints>) {
    use prost::Message;
    let mut stream = f.store.series(req).await.expect("series").into_inner();
    let (mut out, mut hints) = (Vec::new(), Vec::new());
    while let Some(frame) = stream.message().await.expect("frame") {
        match frame.result {
            Some(series_response::Result::Series(s)) => out.push(s),
            Some(series_response::Result::Batch(b)) => out.extend(b.series),
            Some(series_response::Result::Hints(any)) => {
                assert_eq!(
                    any.type_url,
                    "type.googleapis.com/hintspb.SeriesResponseHints"
                );
                hints.push(
                    sluice_proto::hintspb::SeriesResponseHints::decode(&any.value[..])
                        .expect("hints decode"),
                );
            }
            _ => {}
        }
    }
    (out, hints)
}

fn request_hints(ms: Vec<LabelMatcher>) -> Option<prost_types::Any> {
    use prost::Message;
    Some(prost_types::Any {
        type_url: "type.googleapis.com/hintspb.SeriesRequestHints".into(),
        value: sluice_proto::hintspb::SeriesRequestHints {
            block_matchers: ms,
            enable_query_stats: false,
        }
        .encode_to_vec(),
    })
}

/// Hints, Thanos' store-gateway trailer: a source that reads blocks names the blocks a call read (Series and
/// label calls), and a request's hint block matchers restrict which blocks it reads; the proxy forwards request
/// hints to its stores and sends no trailer of its own; the memory source has no blocks and ignores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_name_and_select_blocks() {
    for source in SOURCES {
        hints_name_and_select_blocks_on(source).await;
    }
}

async fn hints_name_and_select_blocks_on(source: Source) {
    use label_matcher::Type::*;
    let mut f = fixture_for(source, 0, 0).await;
    let blocks = match source {
        Source::Bucket => 3,
        Source::Promtool => 4,
        Source::Proxy | Source::Memory => 0,
    };
    let (all, hints) = series_and_hints(&mut f, req(all_matcher(), 0, 4 * HOUR)).await;
    let ids: Vec<String> = hints
        .iter()
        .flat_map(|h| h.queried_blocks.iter().map(|b| b.id.clone()))
        .collect();
    assert_eq!(ids.len(), blocks, "{source:?}: queried blocks {ids:?}");
    assert!(hints.len() <= 1, "{source:?}: one hints trailer at most");

    // Block matchers on an external label: only that cluster's blocks are read.
    let mut r = req(all_matcher(), 0, 4 * HOUR);
    r.hints = request_hints(vec![m(Eq, "cluster", "b")]);
    let (only_b, hints_b) = series_and_hints(&mut f, r).await;
    if blocks > 0 {
        assert!(!only_b.is_empty(), "{source:?}");
        assert!(
            only_b
                .iter()
                .all(|s| labels_of(s).contains(&("cluster".to_string(), "b".to_string()))),
            "{source:?}: a series of another cluster despite the hint"
        );
        let n_b: usize = hints_b.iter().map(|h| h.queried_blocks.len()).sum();
        assert!(
            n_b >= 1 && n_b < blocks,
            "{source:?}: {n_b} blocks read for cluster b"
        );
        // And by block ID: one block, so one cluster's series in part of the range.
        let mut r = req(all_matcher(), 0, 4 * HOUR);
        r.hints = request_hints(vec![m(Eq, "__block_id", &ids[0])]);
        let (one, hints_one) = series_and_hints(&mut f, r).await;
        let read: Vec<String> = hints_one
            .iter()
            .flat_map(|h| h.queried_blocks.iter().map(|b| b.id.clone()))
            .collect();
        assert_eq!(read, vec![ids[0].clone()], "{source:?}");
        assert!(!one.is_empty() && one.len() <= all.len(), "{source:?}");
        // Label calls say which blocks they read too.
        let resp = f
            .store
            .label_names(LabelNamesRequest {
                start: 0,
                end: 4 * HOUR,
                ..Default::default()
            })
            .await
            .expect("names")
            .into_inner();
        let h = resp.hints.expect("label names hints");
        assert_eq!(
            h.type_url,
            "type.googleapis.com/hintspb.LabelNamesResponseHints"
        );
    } else if source == Source::Proxy {
        // The proxy forwards the request, hints included, to its stores, and drops their trailers.
        assert_eq!(
            only_b.len(),
            all.len() / 2,
            "{source:?}: the hint did not reach the store"
        );
        assert!(
            hints_b.is_empty(),
            "{source:?}: hints trailer from the proxy"
        );
    } else {
        assert_eq!(
            only_b.len(),
            all.len(),
            "{source:?}: request hints are not for this source"
        );
        assert!(
            hints_b.is_empty(),
            "{source:?}: hints from a source without blocks"
        );
    }
}
