//! End-to-end tests of `sluice store`: real `sluice` processes on 127.0.0.1 serving blocks written by the real
//! `promtool`, from a filesystem bucket and from a moto S3 server, checked over gRPC against `promtool tsdb dump`.
//!
//! Needs `promtool` (`apt-get install prometheus`) and, for the S3 tests, `pip install -r tests/requirements.txt`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_e2e::bucket::{self, fs_objstore_yaml, put_block, s3_objstore_yaml};
use sluice_e2e::fixture::{T0_MS, segment_chunks};
use sluice_e2e::grpc::{self, info_label_sets, metric_sum};
use sluice_e2e::model::{
    self, expected_select, expected_store, fmt_labels, fmt_matchers, label_names_of,
    label_values_of,
};
use sluice_e2e::{
    Block, Fixture, Labels, Matcher, Moto, SeriesMap, SeriesResult, SluiceStore, eq, labels, neq,
    nre, re,
};
use sluice_proto::thanos::SeriesRequest;
use sluice_proto::thanos::info::InfoRequest;
use sluice_proto::thanos::store_client::StoreClient;
use tempfile::TempDir;
use tokio::time::{Instant, sleep};
use tonic::Code;
use tonic::transport::Channel;

type Client = StoreClient<Channel>;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The demo fixture, made once per test process by promtool under cargo's per-target temp dir.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_fixtures(base);
        let dir = base.join(format!("sluice-e2e-fixture-{}", std::process::id()));
        Fixture::create(&dir)
            .unwrap_or_else(|e| panic!("creating the promtool fixture failed: {e:#}"))
    })
}

/// Removes fixture directories left by earlier test processes that are gone.
fn remove_stale_fixtures(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("sluice-e2e-fixture-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// External labels of every block in the main bucket.
fn ext_main() -> Labels {
    labels(&[("cluster", "eu1")])
}

/// A filesystem bucket with all fixture blocks, each given external label `cluster="eu1"`.
fn main_fs_bucket(fx: &Fixture) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    for b in &fx.blocks {
        put_block(dir.path(), b, Some(&ext_main()))?;
    }
    Ok(dir)
}

/// What the main bucket holds according to promtool.
fn main_expected(fx: &Fixture) -> SeriesMap {
    let served: Vec<_> = fx.blocks.iter().map(|b| b.served(&ext_main())).collect();
    expected_store(&fx.dump, &served)
}

async fn start_store(objstore_yaml: &str, extra: &[&str]) -> Result<(SluiceStore, Client)> {
    let store = SluiceStore::start_ready(objstore_yaml, extra).await?;
    let client = store.store_client().await?;
    Ok((store, client))
}

async fn start_main_fs() -> Result<(TempDir, SluiceStore, Client)> {
    let fx = fixture();
    let dir = main_fs_bucket(fx)?;
    let (store, client) = start_store(&fs_objstore_yaml(dir.path()), &[]).await?;
    Ok((dir, store, client))
}

fn all() -> Vec<Matcher> {
    vec![re("__name__", ".+")]
}

fn full_range() -> (i64, i64) {
    (i64::MIN, i64::MAX)
}

/// Calls Series; a gRPC error is a test failure naming the request.
async fn select(client: &mut Client, req: SeriesRequest) -> Result<SeriesResult> {
    let what = describe(&req);
    let res = grpc::series(client, req)
        .await
        .map_err(|s| anyhow::anyhow!("Series {what}: {s}"))?;
    res.check(&format!("Series {what}"))?;
    Ok(res)
}

fn describe(req: &SeriesRequest) -> String {
    let ms: Vec<String> = req
        .matchers
        .iter()
        .map(|m| format!("{}({})={:?}", m.name, m.r#type, m.value))
        .collect();
    format!(
        "{{{}}} [{}, {}] skip_chunks={} without={:?} limit={}",
        ms.join(", "),
        req.min_time,
        req.max_time,
        req.skip_chunks,
        req.without_replica_labels,
        req.limit
    )
}

/// Checks a Series answer against promtool: samples in `[mint, maxt]` equal bit for bit, every chunk overlaps
/// the range.
fn check_against(
    res: &SeriesResult,
    want: &SeriesMap,
    mint: i64,
    maxt: i64,
    what: &str,
) -> Result<()> {
    model::diff_series(what, &res.samples_in(mint, maxt), want)?;
    for s in &res.series {
        ensure!(
            !s.chunks.is_empty(),
            "{what}: series {} sent with no chunks",
            fmt_labels(&s.labels)
        );
        for c in &s.chunks {
            ensure!(
                c.overlaps(mint, maxt),
                "{what}: series {} chunk [{}, {}] does not overlap [{mint}, {maxt}]",
                fmt_labels(&s.labels),
                c.min_time,
                c.max_time
            );
        }
    }
    Ok(())
}

/// Which fixture blocks (by index) contributed chunks to a result.
fn served_blocks(res: &SeriesResult, blocks: &[Block]) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for s in &res.series {
        for c in &s.chunks {
            if let Some(i) = blocks.iter().position(|b| b.contains(c.min_time)) {
                out.insert(i);
            }
        }
    }
    out
}

fn expect_code<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: Code,
    what: &str,
) -> Result<tonic::Status> {
    match r {
        Ok(v) => bail!("{what}: expected gRPC {code:?}, got success: {v:?}"),
        Err(s) if s.code() == code => Ok(s),
        Err(s) => bail!(
            "{what}: expected gRPC {code:?}, got {:?}: {}",
            s.code(),
            s.message()
        ),
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// Every sample of every series over the whole range equals `promtool tsdb dump`, bit for bit (NaN == NaN), with
/// external labels added; every chunk of every block comes back; frames are sorted.
#[tokio::test]
async fn fs_series_equal_promtool_dump() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want = main_expected(fx);
    ensure!(
        want.len() == 8,
        "fixture has {} series, expected 8",
        want.len()
    );
    let (mint, maxt) = full_range();
    let res = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
    check_against(&res, &want, mint, maxt, "all series, full range")?;
    // Nothing outside the range either: the full set of decoded samples is exactly the dump.
    model::diff_series("all decoded samples", &res.samples(), &want)?;
    // Whole raw chunks, byte for byte as promtool wrote them in the segment files.
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for b in &fx.blocks {
        raw.extend(segment_chunks(&b.dir)?);
    }
    let mut got: Vec<Vec<u8>> = res
        .series
        .iter()
        .flat_map(|s| s.chunks.iter().map(|c| c.data.clone()))
        .collect();
    raw.sort();
    got.sort();
    ensure!(
        got == raw,
        "returned chunk bytes are not exactly the blocks' raw chunks ({} vs {})",
        got.len(),
        raw.len()
    );
    let meta_chunks: u64 = fx
        .blocks
        .iter()
        .map(|b| b.meta["stats"]["numChunks"].as_u64().unwrap_or(0))
        .sum();
    ensure!(
        res.chunk_count() as u64 == meta_chunks,
        "got {} chunks, the blocks' meta.json count {meta_chunks}",
        res.chunk_count()
    );
    // Asking for batched frames changes the framing, not the answer.
    let mut req = grpc::series_request(&all(), mint, maxt);
    req.response_batch_size = 64;
    let batched = select(&mut client, req).await?;
    ensure!(
        batched.label_sets() == res.label_sets(),
        "response_batch_size=64 changed the series"
    );
    model::diff_series("response_batch_size=64", &batched.samples(), &want)?;
    eprintln!(
        "batched: {} series frames, {} batch frames",
        batched.series_frames, batched.batch_frames
    );
    eprintln!(
        "full range: {} series, {} chunks, {} series frames, {} batch frames",
        res.series.len(),
        res.chunk_count(),
        res.series_frames,
        res.batch_frames
    );
    Ok(())
}

/// `=`, `!=`, `=~`, `!~` with Prometheus semantics: regexes fully anchored, a missing label equals "", matchers on
/// external labels.
#[tokio::test]
async fn fs_matchers() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want_all = main_expected(fx);
    let cases: Vec<(Vec<Matcher>, Option<usize>)> = vec![
        (vec![eq("__name__", "demo_http_requests_total")], Some(4)),
        (
            vec![
                eq("__name__", "demo_http_requests_total"),
                neq("replica", "A"),
            ],
            Some(1),
        ),
        (vec![re("job", "ap")], Some(0)),
        (vec![re("job", "pi")], Some(0)),
        (vec![re("job", "API")], Some(0)),
        (vec![re("job", "(?i)API")], Some(3)),
        (vec![re("job", "ap.*")], Some(3)),
        (vec![re("job", "ap.*"), nre("instance", "host-1")], Some(1)),
        (
            vec![re("__name__", "demo_.+"), nre("job", "api|batch")],
            Some(4),
        ),
        (vec![eq("job", "api"), eq("phase", "")], Some(3)),
        (vec![neq("phase", "")], Some(1)),
        (vec![re("phase", ".+")], Some(1)),
        (
            vec![re("job", "api|init"), re("instance", "host-[12]")],
            Some(4),
        ),
        (
            vec![eq("cluster", "eu1"), eq("__name__", "demo_jitter")],
            Some(1),
        ),
        (vec![eq("cluster", "other")], Some(0)),
        (vec![neq("replica", "A")], Some(1)),
        (vec![eq("instance", "host-8")], Some(1)),
        (vec![eq("job", "nope")], Some(0)),
    ];
    let (mint, maxt) = full_range();
    for (ms, count) in cases {
        let what = fmt_matchers(&ms);
        let want = expected_select(&want_all, &ms, mint, maxt, &[])?;
        if let Some(n) = count {
            ensure!(
                want.len() == n,
                "test bug: {what} selects {} series in the fixture, not {n}",
                want.len()
            );
        }
        let res = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;
        check_against(&res, &want, mint, maxt, &what)?;
        let got: Vec<Labels> = res.label_sets();
        let want_labels: Vec<Labels> = want.keys().cloned().collect();
        ensure!(
            got == want_labels,
            "{what}: got series {got:?}, want {want_labels:?}"
        );
    }
    Ok(())
}

/// A time range returns exactly the chunks overlapping it (inclusive at both ends), whole, and the samples
/// inside it equal promtool's.
#[tokio::test]
async fn fs_time_ranges() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want_all = main_expected(fx);
    let (fmin, fmax) = full_range();
    let full = select(&mut client, grpc::series_request(&all(), fmin, fmax)).await?;
    let b0 = &fx.blocks[0];
    let b1 = &fx.blocks[1];
    let ranges = [
        (T0_MS + 45 * MINUTE, T0_MS + 50 * MINUTE),
        (b0.max_time - 1, b1.min_time),
        (T0_MS + HOUR, T0_MS + HOUR),
        (T0_MS + 4 * HOUR, T0_MS + 5 * HOUR),
        (T0_MS, T0_MS + 10 * MINUTE),
        (fx.max_time() - 1, fx.max_time() + HOUR),
        (0, T0_MS - 1),
        (fx.max_time(), fx.max_time() + HOUR),
    ];
    for (mint, maxt) in ranges {
        let what = format!("all series in [{mint}, {maxt}]");
        let want = expected_select(&want_all, &all(), mint, maxt, &[])?;
        let res = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
        check_against(&res, &want, mint, maxt, &what)?;
        if mint >= fx.max_time() || maxt < fx.min_time() {
            ensure!(
                res.series.is_empty(),
                "{what}: outside the data, got {} series",
                res.series.len()
            );
        }
        // Exactly the full answer's chunks that overlap the range, byte for byte.
        for s in &full.series {
            let want_chunks: Vec<(i64, i64, &[u8])> = s
                .chunks
                .iter()
                .filter(|c| c.overlaps(mint, maxt))
                .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
                .collect();
            let got_chunks: Vec<(i64, i64, &[u8])> = res
                .get(&s.labels)
                .map(|g| {
                    g.chunks
                        .iter()
                        .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
                        .collect()
                })
                .unwrap_or_default();
            let summary =
                |v: &[(i64, i64, &[u8])]| v.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>();
            ensure!(
                got_chunks == want_chunks,
                "{what}: series {} chunks {:?}, want the overlapping whole chunks {:?}",
                fmt_labels(&s.labels),
                summary(&got_chunks),
                summary(&want_chunks)
            );
        }
    }
    Ok(())
}

/// `skip_chunks` returns the same series, labels only.
#[tokio::test]
async fn fs_skip_chunks() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want_all = main_expected(fx);
    for (mint, maxt) in [
        full_range(),
        (T0_MS, T0_MS + 10 * MINUTE),
        (T0_MS + 4 * HOUR, T0_MS + 5 * HOUR),
    ] {
        let want: Vec<Labels> = expected_select(&want_all, &all(), mint, maxt, &[])?
            .keys()
            .cloned()
            .collect();
        let mut req = grpc::series_request(&all(), mint, maxt);
        req.skip_chunks = true;
        let res = select(&mut client, req).await?;
        ensure!(
            res.chunk_count() == 0,
            "skip_chunks [{mint}, {maxt}]: got {} chunks",
            res.chunk_count()
        );
        ensure!(
            res.label_sets() == want,
            "skip_chunks [{mint}, {maxt}]: got {:?}, want {want:?}",
            res.label_sets()
        );
    }
    Ok(())
}

/// `without_replica_labels=["replica"]`: the two replicas come back as one series holding both replicas' chunks;
/// `["cluster"]` strips the external label.
#[tokio::test]
async fn fs_without_replica_labels() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want_all = main_expected(fx);
    let (mint, maxt) = full_range();
    let ms = vec![eq("__name__", "demo_http_requests_total")];
    let plain = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;

    let mut req = grpc::series_request(&ms, mint, maxt);
    req.without_replica_labels = vec!["replica".to_owned()];
    let res = select(&mut client, req).await?;
    let want = expected_select(&want_all, &ms, mint, maxt, &["replica"])?;
    ensure!(
        want.len() == 3,
        "test bug: expected 3 series after removing replica"
    );
    check_against(&res, &want, mint, maxt, "without replica")?;
    ensure!(
        res.label_sets() == want.keys().cloned().collect::<Vec<_>>(),
        "without replica: got series {:?}",
        res.label_sets()
    );
    let host1 = labels(&[
        ("__name__", "demo_http_requests_total"),
        ("cluster", "eu1"),
        ("instance", "host-1"),
        ("job", "api"),
    ]);
    let with_rep = |r: &str| {
        let mut l = host1.clone();
        l.push(("replica".to_owned(), r.to_owned()));
        l.sort();
        l
    };
    let a = plain
        .get(&with_rep("A"))
        .context("replica A missing")?
        .chunks
        .len();
    let b = plain
        .get(&with_rep("B"))
        .context("replica B missing")?
        .chunks
        .len();
    let merged = res
        .get(&host1)
        .context("merged host-1 series missing")?
        .chunks
        .len();
    ensure!(
        merged == a + b,
        "merged series has {merged} chunks, want replica A's {a} + replica B's {b}"
    );

    let mut req = grpc::series_request(&ms, mint, maxt);
    req.without_replica_labels = vec!["cluster".to_owned()];
    let res = select(&mut client, req).await?;
    let want = expected_select(&want_all, &ms, mint, maxt, &["cluster"])?;
    check_against(&res, &want, mint, maxt, "without external label cluster")?;
    Ok(())
}

/// `limit` caps the number of series to the first N in order.
#[tokio::test]
async fn fs_series_limit() -> Result<()> {
    let (_dir, _store, mut client) = start_main_fs().await?;
    let (mint, maxt) = full_range();
    let full = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
    for limit in [1usize, 2, 5] {
        let mut req = grpc::series_request(&all(), mint, maxt);
        req.limit = limit as i64;
        let res = select(&mut client, req).await?;
        let want: Vec<Labels> = full.label_sets().into_iter().take(limit).collect();
        ensure!(
            res.label_sets() == want,
            "limit {limit}: got {:?}, want the first {limit}: {want:?}",
            res.label_sets()
        );
        for s in &res.series {
            let f = full
                .get(&s.labels)
                .context("series not in the full answer")?;
            ensure!(
                s.chunks.len() == f.chunks.len(),
                "limit {limit}: {} lost chunks",
                fmt_labels(&s.labels)
            );
        }
    }
    Ok(())
}

/// LabelNames and LabelValues include external labels and honour matchers and the time range.
#[tokio::test]
async fn fs_label_apis() -> Result<()> {
    let fx = fixture();
    let (_dir, _store, mut client) = start_main_fs().await?;
    let want_all = main_expected(fx);
    let (fmin, fmax) = full_range();
    let early = (T0_MS, T0_MS + 10 * MINUTE);
    let late = (T0_MS + 4 * HOUR, T0_MS + 5 * HOUR);
    let req_ms = vec![eq("__name__", "demo_http_requests_total")];
    let name_cases: Vec<(Vec<Matcher>, (i64, i64))> = vec![
        (vec![], (fmin, fmax)),
        (vec![], (fx.min_time(), fx.max_time())),
        (vec![], early),
        (vec![], late),
        (req_ms.clone(), (fmin, fmax)),
        (vec![eq("job", "init")], (fmin, fmax)),
        (vec![re("job", "ap")], (fmin, fmax)),
    ];
    for (ms, (start, end)) in &name_cases {
        let sel = expected_select(&want_all, ms, *start, *end, &[])?;
        let want = label_names_of(sel.keys());
        let got = grpc::label_names(&mut client, ms, *start, *end)
            .await
            .map_err(|s| anyhow::anyhow!("LabelNames {}: {s}", fmt_matchers(ms)))?;
        ensure!(
            got == want,
            "LabelNames {} [{start}, {end}]: got {got:?}, want {want:?}",
            fmt_matchers(ms)
        );
    }
    let all_names = label_names_of(want_all.keys());
    ensure!(all_names.contains(&"cluster".to_owned()) && all_names.contains(&"phase".to_owned()));
    let value_cases: Vec<(&str, Vec<Matcher>, (i64, i64))> = vec![
        ("job", vec![], (fmin, fmax)),
        ("job", vec![], early),
        ("job", vec![], late),
        ("job", req_ms.clone(), (fmin, fmax)),
        ("instance", vec![eq("job", "api")], (fmin, fmax)),
        ("__name__", vec![], (fmin, fmax)),
        ("__name__", vec![], late),
        ("cluster", vec![], (fmin, fmax)),
        ("phase", vec![], (fmin, fmax)),
        ("phase", vec![], late),
        ("replica", req_ms.clone(), (fmin, fmax)),
        ("nonexistent", vec![], (fmin, fmax)),
        ("job", vec![re("job", "ap")], (fmin, fmax)),
    ];
    for (name, ms, (start, end)) in &value_cases {
        let sel = expected_select(&want_all, ms, *start, *end, &[])?;
        let want = label_values_of(sel.keys(), name);
        let got = grpc::label_values(&mut client, name, ms, *start, *end)
            .await
            .map_err(|s| anyhow::anyhow!("LabelValues {name} {}: {s}", fmt_matchers(ms)))?;
        ensure!(
            got == want,
            "LabelValues {name} {} [{start}, {end}]: got {got:?}, want {want:?}",
            fmt_matchers(ms)
        );
    }
    // Spot checks that the expectations themselves are not vacuous.
    let jobs_late = label_values_of(
        expected_select(&want_all, &[], late.0, late.1, &[])?.keys(),
        "job",
    );
    ensure!(!jobs_late.contains(&"init".to_owned()) && jobs_late.contains(&"api".to_owned()));
    Ok(())
}

/// Info: time range of the loaded blocks, their external label sets, and without_replica_labels support.
#[tokio::test]
async fn fs_info() -> Result<()> {
    let fx = fixture();
    let (_dir, store, mut client) = start_main_fs().await?;
    let mut info = store.info_client().await?;
    let resp = info
        .info(InfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("Info: {s}"))?
        .into_inner();
    ensure!(
        resp.component_type == "store",
        "ComponentType {:?}, want \"store\"",
        resp.component_type
    );
    let si = resp.store.context("Info has no StoreInfo")?;
    ensure!(
        si.min_time == fx.min_time(),
        "min_time {} want {} (first block minTime)",
        si.min_time,
        fx.min_time()
    );
    ensure!(
        si.max_time == fx.max_time(),
        "max_time {} want {} (last block meta.json maxTime, as the Thanos store gateway reports)",
        si.max_time,
        fx.max_time()
    );
    ensure!(
        si.supports_without_replica_labels,
        "supports_without_replica_labels is false"
    );
    let sets = info_label_sets(&resp.label_sets);
    ensure!(
        sets == vec![ext_main()],
        "label_sets {sets:?}, want [{}]",
        fmt_labels(&ext_main())
    );

    // The legacy thanos.Store/Info, for queriers up to v0.36.
    let legacy = client
        .info(sluice_proto::thanos::InfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("legacy Store/Info: {s}"))?
        .into_inner();
    ensure!(
        (legacy.min_time, legacy.max_time) == (fx.min_time(), fx.max_time()),
        "legacy Info time range [{}, {}], want [{}, {}]",
        legacy.min_time,
        legacy.max_time,
        fx.min_time(),
        fx.max_time()
    );
    ensure!(
        legacy.store_type == sluice_proto::thanos::StoreType::Store as i32,
        "legacy Info storeType {}, want STORE (4)",
        legacy.store_type
    );
    let sets = info_label_sets(&legacy.label_sets);
    ensure!(
        sets == vec![ext_main()],
        "legacy label_sets {sets:?}, want [{}]",
        fmt_labels(&ext_main())
    );
    Ok(())
}

/// Series with no matchers or with an invalid regex is InvalidArgument.
#[tokio::test]
async fn fs_invalid_requests() -> Result<()> {
    let (_dir, store, mut client) = start_main_fs().await?;
    let (mint, maxt) = full_range();
    expect_code(
        grpc::series(&mut client, grpc::series_request(&[], mint, maxt)).await,
        Code::InvalidArgument,
        "no matchers",
    )?;
    expect_code(
        grpc::series(
            &mut client,
            grpc::series_request(&[re("job", "((")], mint, maxt),
        )
        .await,
        Code::InvalidArgument,
        "bad regex job=~\"((\"",
    )?;
    expect_code(
        grpc::series(
            &mut client,
            grpc::series_request(&[eq("job", "api"), re("instance", "[")], mint, maxt),
        )
        .await,
        Code::InvalidArgument,
        "bad regex instance=~\"[\"",
    )?;
    // The store keeps serving after bad requests.
    let res = select(
        &mut client,
        grpc::series_request(&[eq("job", "batch")], mint, maxt),
    )
    .await?;
    ensure!(
        res.series.len() == 1,
        "after bad requests: {} series",
        res.series.len()
    );
    let (code, _) = store.http_get("/-/healthy").await?;
    ensure!(code == 200, "/-/healthy answered {code}");
    Ok(())
}

/// HTTP: healthy, ready, and /metrics with the block and request metrics.
#[tokio::test]
async fn fs_http_endpoints() -> Result<()> {
    let fx = fixture();
    let (_dir, store, mut client) = start_main_fs().await?;
    let (code, _) = store.http_get("/-/healthy").await?;
    ensure!(code == 200, "/-/healthy answered {code}");
    let (code, _) = store.http_get("/-/ready").await?;
    ensure!(code == 200, "/-/ready answered {code}");
    let (mint, maxt) = full_range();
    select(
        &mut client,
        grpc::series_request(&[eq("job", "batch")], mint, maxt),
    )
    .await?;
    grpc::label_names(&mut client, &[], mint, maxt)
        .await
        .map_err(|s| anyhow::anyhow!("LabelNames: {s}"))?;
    let m = store.metrics().await?;
    let loaded = metric_sum(&m, "thanos_bucket_store_blocks_loaded")
        .context("no thanos_bucket_store_blocks_loaded")?;
    ensure!(
        loaded == fx.blocks.len() as f64,
        "blocks_loaded {loaded}, want {}",
        fx.blocks.len()
    );
    let failures = metric_sum(&m, "thanos_bucket_store_block_load_failures_total")
        .context("no thanos_bucket_store_block_load_failures_total")?;
    ensure!(failures == 0.0, "load failures {failures} on a good bucket");
    let handled =
        metric_sum(&m, "grpc_server_handled_total").context("no grpc_server_handled_total")?;
    ensure!(
        handled >= 2.0,
        "grpc_server_handled_total {handled} after 2 calls"
    );
    Ok(())
}

/// External labels from the Thanos section: absent without one; on a clash the external label wins.
#[tokio::test]
async fn fs_external_labels_merge_and_win() -> Result<()> {
    let fx = fixture();
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    let ext = labels(&[("cluster", "eu2"), ("job", "ext")]);
    put_block(dir.path(), &fx.blocks[0], None)?;
    put_block(dir.path(), &fx.blocks[1], Some(&ext))?;
    let want_all = expected_store(
        &fx.dump,
        &[fx.blocks[0].served(&vec![]), fx.blocks[1].served(&ext)],
    );
    let (store, mut client) = start_store(&fs_objstore_yaml(dir.path()), &[]).await?;
    let (mint, maxt) = full_range();
    let res = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
    check_against(&res, &want_all, mint, maxt, "mixed external labels")?;
    ensure!(
        res.label_sets() == want_all.keys().cloned().collect::<Vec<_>>(),
        "order/labels: {:?}",
        res.label_sets()
    );
    for ms in [
        vec![eq("job", "ext")],
        vec![eq("job", "api")],
        vec![eq("cluster", "eu2"), eq("instance", "host-1")],
    ] {
        let want = expected_select(&want_all, &ms, mint, maxt, &[])?;
        ensure!(
            !want.is_empty(),
            "test bug: {} selects nothing",
            fmt_matchers(&ms)
        );
        let res = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;
        check_against(&res, &want, mint, maxt, &fmt_matchers(&ms))?;
    }
    let jobs = grpc::label_values(&mut client, "job", &[], mint, maxt).await?;
    ensure!(
        jobs == label_values_of(want_all.keys(), "job") && jobs.contains(&"ext".to_owned()),
        "job values {jobs:?}"
    );
    let resp = store
        .info_client()
        .await?
        .info(InfoRequest {})
        .await?
        .into_inner();
    let sets = info_label_sets(&resp.label_sets);
    ensure!(
        sets == vec![ext.clone()],
        "label_sets {sets:?}, want [{}]",
        fmt_labels(&ext)
    );
    Ok(())
}

/// Request limits: exceeding `--store.limits.request-series` or `--store.limits.request-samples` is
/// ResourceExhausted naming the limit; requests under the limit succeed.
#[tokio::test]
async fn fs_request_limits() -> Result<()> {
    let fx = fixture();
    let dir = main_fs_bucket(fx)?;
    let want_all = main_expected(fx);
    let (mint, maxt) = full_range();
    let one = vec![eq("instance", "host-2")];
    {
        let (_store, mut client) = start_store(
            &fs_objstore_yaml(dir.path()),
            &["--store.limits.request-series=3"],
        )
        .await?;
        let st = expect_code(
            grpc::series(
                &mut client,
                grpc::series_request(&[eq("__name__", "demo_http_requests_total")], mint, maxt),
            )
            .await,
            Code::ResourceExhausted,
            "4 series with request-series=3",
        )?;
        ensure!(
            st.message().to_lowercase().contains("series"),
            "message does not name the series limit: {:?}",
            st.message()
        );
        let res = select(&mut client, grpc::series_request(&one, mint, maxt)).await?;
        check_against(
            &res,
            &expected_select(&want_all, &one, mint, maxt, &[])?,
            mint,
            maxt,
            "1 series under limit",
        )?;
    }
    {
        let (_store, mut client) = start_store(
            &fs_objstore_yaml(dir.path()),
            &["--store.limits.request-samples=1000"],
        )
        .await?;
        let st = expect_code(
            grpc::series(&mut client, grpc::series_request(&one, mint, maxt)).await,
            Code::ResourceExhausted,
            "1440 samples with request-samples=1000",
        )?;
        ensure!(
            st.message().to_lowercase().contains("sample"),
            "message does not name the samples limit: {:?}",
            st.message()
        );
        let (a, b) = (T0_MS + 10 * MINUTE, T0_MS + 15 * MINUTE);
        let res = select(&mut client, grpc::series_request(&one, a, b)).await?;
        check_against(
            &res,
            &expected_select(&want_all, &one, a, b, &[])?,
            a,
            b,
            "one chunk under limit",
        )?;
    }
    Ok(())
}

/// Corrupt blocks are skipped and counted, the good block keeps serving: one block with a flipped byte in its
/// index symbol table (bad CRC), one with a truncated index, one without chunks/000001.
#[tokio::test]
async fn fs_corrupt_blocks_are_skipped() -> Result<()> {
    let fx = fixture();
    ensure!(
        fx.blocks.len() == 4,
        "fixture has {} blocks",
        fx.blocks.len()
    );
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    for b in &fx.blocks {
        put_block(dir.path(), b, None)?;
    }
    let bdir = |i: usize| dir.path().join(&fx.blocks[i].ulid);
    bucket::corrupt_index_crc(&bdir(1))?;
    bucket::truncate_index(&bdir(2))?;
    bucket::remove_first_segment(&bdir(3))?;
    let (mut store, mut client) = start_store(&fs_objstore_yaml(dir.path()), &[]).await?;

    let good = expected_store(&fx.dump, &[fx.blocks[0].served(&vec![])]);
    // Up to the end of block 2: blocks 1 and 2 must be skipped, block 3 is not touched.
    let (mint, maxt) = (fx.min_time(), fx.blocks[2].max_time - 1);
    let res = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
    check_against(
        &res,
        &expected_select(&good, &all(), mint, maxt, &[])?,
        mint,
        maxt,
        "good block only",
    )?;
    let served = served_blocks(&res, &fx.blocks);
    ensure!(
        served == BTreeSet::from([0]),
        "blocks served {served:?}, want only block 0"
    );

    // The whole range touches the block without chunk files: an error or a skip, not a crash.
    let (fmin, fmax) = full_range();
    let silently_skipped =
        match grpc::series(&mut client, grpc::series_request(&all(), fmin, fmax)).await {
            Ok(r) => {
                r.check("full range with a missing chunk file")?;
                let served = served_blocks(&r, &fx.blocks);
                ensure!(
                    !served.contains(&1) && !served.contains(&2),
                    "corrupt blocks served: {served:?}"
                );
                eprintln!(
                    "missing chunk file: skipped (served {served:?}, warnings {:?})",
                    r.warnings
                );
                !served.contains(&3) && r.warnings.is_empty()
            }
            Err(s) => {
                eprintln!("missing chunk file: error {:?}: {}", s.code(), s.message());
                false
            }
        };
    ensure!(
        store.is_running(),
        "store exited after the query touching the block without chunks"
    );
    let res = select(&mut client, grpc::series_request(&all(), mint, maxt)).await?;
    ensure!(
        served_blocks(&res, &fx.blocks) == BTreeSet::from([0]),
        "good block no longer served"
    );
    let (code, _) = store.http_get("/-/healthy").await?;
    ensure!(code == 200, "/-/healthy answered {code}");

    let m = store.metrics().await?;
    let failures = metric_sum(&m, "thanos_bucket_store_block_load_failures_total")
        .context("no thanos_bucket_store_block_load_failures_total in /metrics")?;
    ensure!(
        failures >= 2.0,
        "block_load_failures_total {failures}, want >= 2 (bad CRC and truncated index)"
    );
    let loaded = metric_sum(&m, "thanos_bucket_store_blocks_loaded")
        .context("no thanos_bucket_store_blocks_loaded")?;
    ensure!(
        (1.0..=2.0).contains(&loaded),
        "blocks_loaded {loaded}, want 1 or 2 (good block, maybe the chunkless one)"
    );
    eprintln!("corrupt bucket: blocks_loaded {loaded}, block_load_failures_total {failures}");
    if silently_skipped {
        // Skipping the chunkless block without a warning is fine only if it was rejected (and counted) at load.
        ensure!(
            loaded == 1.0 && failures >= 3.0,
            "the block without chunks/000001 was loaded (blocks_loaded {loaded}) but its data was dropped without a \
             warning or error"
        );
    }
    // Reported in the log too, naming the block.
    let logs = store.logs();
    for i in [1, 2] {
        ensure!(
            logs.contains(&fx.blocks[i].ulid),
            "the store's log does not name corrupt block {i} ({})",
            fx.blocks[i].ulid
        );
    }
    Ok(())
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Option<T>, String)>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (v, state) = f().await?;
        if let Some(v) = v {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {timeout:?}; last state: {state}");
        }
        sleep(Duration::from_millis(250)).await;
    }
}

/// Block sync: a block added later appears, a deleted one disappears; a block marked for deletion longer ago than
/// `--ignore-deletion-marks-delay` is not served, a freshly marked one still is.
#[tokio::test]
async fn fs_block_sync_and_deletion_marks() -> Result<()> {
    let fx = fixture();
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    let b = &fx.blocks;
    put_block(dir.path(), &b[0], None)?;
    put_block(dir.path(), &b[1], None)?;
    put_block(dir.path(), &b[2], None)?;
    bucket::mark_deleted(dir.path(), &b[1].ulid, 48 * 3600)?;
    bucket::mark_deleted(dir.path(), &b[2].ulid, 0)?;
    let (store, mut client) = start_store(
        &fs_objstore_yaml(dir.path()),
        &[
            "--sync-block-duration=1s",
            "--ignore-deletion-marks-delay=24h",
        ],
    )
    .await?;
    let ms = vec![eq("__name__", "demo_temperature_celsius")];
    let (mint, maxt) = full_range();
    let res = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;
    let served = served_blocks(&res, b);
    ensure!(
        served == BTreeSet::from([0, 2]),
        "served {served:?}: want blocks 0 and 2 (1 is marked 48h ago)"
    );
    let want = expected_select(
        &expected_store(&fx.dump, &[b[0].served(&vec![]), b[2].served(&vec![])]),
        &ms,
        mint,
        maxt,
        &[],
    )?;
    check_against(&res, &want, mint, maxt, "marked blocks")?;

    put_block(dir.path(), &b[3], None)?;
    let wait = Duration::from_secs(30);
    let served_now = |client: Client| {
        let ms = ms.clone();
        async move {
            let mut client = client;
            let res = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;
            Ok::<_, anyhow::Error>(served_blocks(&res, b))
        }
    };
    eventually(wait, "block 3 added to the bucket is served", || {
        let c = client.clone();
        let f = served_now(c);
        async move {
            let s = f.await?;
            Ok((s.contains(&3).then_some(()), format!("served {s:?}")))
        }
    })
    .await?;

    bucket::delete_block(dir.path(), &b[0].ulid)?;
    eventually(
        wait,
        "block 0 deleted from the bucket is no longer served",
        || {
            let f = served_now(client.clone());
            async move {
                let s = f.await?;
                Ok((
                    (s == BTreeSet::from([2, 3])).then_some(()),
                    format!("served {s:?}"),
                ))
            }
        },
    )
    .await?;
    let res = select(&mut client, grpc::series_request(&ms, mint, maxt)).await?;
    let want = expected_select(
        &expected_store(&fx.dump, &[b[2].served(&vec![]), b[3].served(&vec![])]),
        &ms,
        mint,
        maxt,
        &[],
    )?;
    check_against(&res, &want, mint, maxt, "after add and delete")?;

    eventually(
        wait,
        "blocks_loaded == 2 and Info min_time == block 2's",
        || {
            let store = &store;
            async move {
                let m = store.metrics().await?;
                let loaded = metric_sum(&m, "thanos_bucket_store_blocks_loaded");
                let info = store
                    .info_client()
                    .await?
                    .info(InfoRequest {})
                    .await?
                    .into_inner();
                let min = info.store.map(|s| s.min_time);
                let ok = loaded == Some(2.0) && min == Some(b[2].min_time);
                Ok((
                    ok.then_some(()),
                    format!("blocks_loaded {loaded:?}, Info min_time {min:?}"),
                ))
            }
        },
    )
    .await?;
    Ok(())
}

/// The same blocks in a moto S3 bucket (under a `prefix:`) give the same answers as from the filesystem, and
/// those answers equal promtool's dump.
#[tokio::test]
async fn s3_store_matches_filesystem_store() -> Result<()> {
    let fx = fixture();
    let moto = Moto::start().await?;
    moto.make_bucket("sluice-e2e")?;
    let fs_dir = main_fs_bucket(fx)?;
    let prefix = "tenant-a/blocks";
    moto.put_dir("sluice-e2e", fs_dir.path(), prefix)?;
    let keys = moto.list("sluice-e2e")?;
    ensure!(
        keys.iter().filter(|k| k.ends_with("/meta.json")).count() == fx.blocks.len(),
        "uploaded keys: {keys:?}"
    );
    let yaml = s3_objstore_yaml(&moto.endpoint(), "sluice-e2e", Some(prefix));
    same_answers_as_filesystem("S3", &yaml, fx, fs_dir.path()).await
}

/// The same blocks in an Azurite container (Microsoft's Azure Blob emulator, filled with Microsoft's SDK, reached
/// through a Thanos `storage_connection_string`) give the same answers as from the filesystem and promtool's dump.
#[tokio::test]
async fn azure_store_matches_filesystem_store() -> Result<()> {
    let fx = fixture();
    let az = sluice_e2e::azurite::Azurite::start().await?;
    az.make_container("sluice-e2e")?;
    let fs_dir = main_fs_bucket(fx)?;
    let prefix = "tenant-a/blocks";
    az.put_dir("sluice-e2e", fs_dir.path(), prefix)?;
    let keys = az.list("sluice-e2e")?;
    ensure!(
        keys.iter().filter(|k| k.ends_with("/meta.json")).count() == fx.blocks.len(),
        "uploaded blobs: {keys:?}"
    );
    same_answers_as_filesystem(
        "Azure",
        &az.objstore_yaml("sluice-e2e", Some(prefix)),
        fx,
        fs_dir.path(),
    )
    .await
}

/// The same blocks in a GCS emulator's bucket (`gcp-storage-emulator`, filled over the JSON API by plain HTTP; the
/// store finds it through `STORAGE_EMULATOR_HOST`, as Google's SDKs do) give the same answers as from the filesystem.
#[tokio::test]
async fn gcs_store_matches_filesystem_store() -> Result<()> {
    let fx = fixture();
    let gcs = sluice_e2e::gcs::GcsEmulator::start().await?;
    gcs.make_bucket("sluice-e2e").await?;
    let fs_dir = main_fs_bucket(fx)?;
    let prefix = "tenant-a/blocks";
    gcs.put_dir("sluice-e2e", fs_dir.path(), prefix).await?;
    let keys = gcs.list("sluice-e2e").await?;
    ensure!(
        keys.iter().filter(|k| k.ends_with("/meta.json")).count() == fx.blocks.len(),
        "uploaded objects: {keys:?}"
    );
    let yaml = format!("type: GCS\nconfig:\n  bucket: sluice-e2e\nprefix: {prefix}\n");
    let host = gcs.host();
    let (remote_store, mut remote) = {
        let s =
            SluiceStore::start_ready_env(&yaml, &[], &[("STORAGE_EMULATOR_HOST", host.as_str())])
                .await?;
        let c = s.store_client().await?;
        (s, c)
    };
    compare_with_filesystem("GCS", remote_store, &mut remote, fx, fs_dir.path()).await
}

/// A store over `objstore_yaml` (a remote bucket holding `fs_dir`'s blocks) answers Series, the label APIs and
/// Info as a store over the filesystem bucket `fs_dir` does, and as promtool's dump says.
async fn same_answers_as_filesystem(
    kind: &str,
    objstore_yaml: &str,
    fx: &Fixture,
    fs_dir: &Path,
) -> Result<()> {
    let (remote_store, mut remote) = start_store(objstore_yaml, &[]).await?;
    compare_with_filesystem(kind, remote_store, &mut remote, fx, fs_dir).await
}

/// [`same_answers_as_filesystem`] with the remote store already started.
async fn compare_with_filesystem(
    kind: &str,
    remote_store: SluiceStore,
    remote_client: &mut Client,
    fx: &Fixture,
    fs_dir: &Path,
) -> Result<()> {
    let mut remote = remote_client.clone();
    let (fs_store, mut fs) = start_store(&fs_objstore_yaml(fs_dir), &[]).await?;

    let want_all = main_expected(fx);
    let (mint, maxt) = full_range();
    let remote_all = select(&mut remote, grpc::series_request(&all(), mint, maxt)).await?;
    model::diff_series(
        &format!("{kind} store vs promtool dump"),
        &remote_all.samples(),
        &want_all,
    )?;

    let queries: Vec<(Vec<Matcher>, (i64, i64))> = vec![
        (all(), full_range()),
        (
            vec![eq("__name__", "demo_http_requests_total")],
            full_range(),
        ),
        (vec![re("job", "ap")], full_range()),
        (
            vec![re("job", "ap.*"), nre("instance", "host-1")],
            (T0_MS + HOUR, T0_MS + 3 * HOUR),
        ),
        (vec![neq("phase", "")], full_range()),
        (all(), (fx.blocks[0].max_time - 1, fx.blocks[1].min_time)),
    ];
    for (ms, (a, b)) in &queries {
        let what = format!("{} [{a}, {b}]", fmt_matchers(ms));
        let r1 = select(&mut remote, grpc::series_request(ms, *a, *b)).await?;
        let r2 = select(&mut fs, grpc::series_request(ms, *a, *b)).await?;
        ensure!(
            r1.label_sets() == r2.label_sets(),
            "{what}: {kind} {:?} vs FS {:?}",
            r1.label_sets(),
            r2.label_sets()
        );
        let chunks = |r: &SeriesResult| -> Vec<Vec<(i64, i64, Vec<u8>)>> {
            r.series
                .iter()
                .map(|s| {
                    s.chunks
                        .iter()
                        .map(|c| (c.min_time, c.max_time, c.data.clone()))
                        .collect()
                })
                .collect()
        };
        ensure!(
            chunks(&r1) == chunks(&r2),
            "{what}: chunks differ between {kind} and FS"
        );
        check_against(
            &r1,
            &expected_select(&want_all, ms, *a, *b, &[])?,
            *a,
            *b,
            &what,
        )?;
        let mut req = grpc::series_request(ms, *a, *b);
        req.without_replica_labels = vec!["replica".into()];
        let w1 = select(&mut remote, req.clone()).await?;
        let w2 = select(&mut fs, req).await?;
        ensure!(
            w1.samples() == w2.samples(),
            "{what} without replica: {kind} and FS differ"
        );
    }
    for (ms, (a, b)) in &queries {
        let n1 = grpc::label_names(&mut remote, ms, *a, *b).await?;
        let n2 = grpc::label_names(&mut fs, ms, *a, *b).await?;
        ensure!(
            n1 == n2,
            "LabelNames {}: {kind} {n1:?} vs FS {n2:?}",
            fmt_matchers(ms)
        );
        for name in ["job", "__name__", "cluster", "replica"] {
            let v1 = grpc::label_values(&mut remote, name, ms, *a, *b).await?;
            let v2 = grpc::label_values(&mut fs, name, ms, *a, *b).await?;
            ensure!(
                v1 == v2,
                "LabelValues {name} {}: {kind} {v1:?} vs FS {v2:?}",
                fmt_matchers(ms)
            );
        }
    }
    let i1 = remote_store
        .info_client()
        .await?
        .info(InfoRequest {})
        .await?
        .into_inner();
    let i2 = fs_store
        .info_client()
        .await?
        .info(InfoRequest {})
        .await?
        .into_inner();
    let key = |i: &sluice_proto::thanos::info::InfoResponse| {
        (
            i.store
                .as_ref()
                .map(|s| (s.min_time, s.max_time, s.supports_without_replica_labels)),
            info_label_sets(&i.label_sets),
        )
    };
    ensure!(
        key(&i1) == key(&i2),
        "Info differs: {kind} {:?} vs FS {:?}",
        key(&i1),
        key(&i2)
    );
    expect_code(
        grpc::series(&mut remote, grpc::series_request(&[], mint, maxt)).await,
        Code::InvalidArgument,
        &format!("{kind}: no matchers"),
    )?;
    Ok(())
}

/// A block deleted from the S3 bucket disappears after a sync, one uploaded later appears.
#[tokio::test]
async fn s3_block_sync() -> Result<()> {
    let fx = fixture();
    let moto = Moto::start().await?;
    moto.make_bucket("sync")?;
    let staging = tempfile::tempdir()?;
    for b in &fx.blocks {
        put_block(staging.path(), b, None)?;
    }
    let b = &fx.blocks;
    moto.put_dir("sync", &staging.path().join(&b[0].ulid), &b[0].ulid)?;
    moto.put_dir("sync", &staging.path().join(&b[1].ulid), &b[1].ulid)?;
    let (_store, client) = start_store(
        &s3_objstore_yaml(&moto.endpoint(), "sync", None),
        &["--sync-block-duration=1s"],
    )
    .await?;
    let ms = vec![eq("__name__", "demo_temperature_celsius")];
    let (mint, maxt) = full_range();
    let served_now = || {
        let mut c = client.clone();
        let ms = ms.clone();
        async move {
            let res = select(&mut c, grpc::series_request(&ms, mint, maxt)).await?;
            Ok::<_, anyhow::Error>(served_blocks(&res, b))
        }
    };
    let s = served_now().await?;
    ensure!(s == BTreeSet::from([0, 1]), "served {s:?} at start");
    moto.put_dir("sync", &staging.path().join(&b[2].ulid), &b[2].ulid)?;
    moto.rm_prefix("sync", &b[0].ulid)?;
    eventually(Duration::from_secs(30), "S3 bucket changes seen", || {
        let f = served_now();
        async move {
            let s = f.await?;
            Ok((
                (s == BTreeSet::from([1, 2])).then_some(()),
                format!("served {s:?}"),
            ))
        }
    })
    .await?;
    Ok(())
}

/// A store whose bucket cannot be listed (the S3 bucket does not exist yet) is not ready: `/-/ready` answers 503
/// with the sync error, Info fails with Unavailable instead of advertising an empty store that queriers would take
/// as "no data", and the process stays up. Once the bucket exists, the retried sync succeeds and it becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unlistable_bucket_is_never_ready_until_it_syncs() -> Result<()> {
    let moto = Moto::start().await?;
    let mut store = SluiceStore::start(&s3_objstore_yaml(&moto.endpoint(), "later", None), &[])?;
    let until = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while Instant::now() < until {
        let (code, body) = store.http_get("/-/ready").await?;
        ensure!(
            code == 503,
            "/-/ready answered {code} before any sync succeeded: {body}"
        );
        ensure!(
            body.contains("not ready"),
            "/-/ready gives no reason: {body}"
        );
        seen += 1;
        sleep(Duration::from_millis(500)).await;
    }
    let (_, body) = store.http_get("/-/ready").await?;
    ensure!(
        body.contains("initial block sync failed"),
        "/-/ready does not say why: {body}"
    );
    let st = store
        .info_client()
        .await?
        .info(sluice_proto::thanos::info::InfoRequest {})
        .await
        .expect_err("Info of a store that never synced");
    ensure!(st.code() == Code::Unavailable, "Info answered {st:?}");
    ensure!(store.is_running(), "the store exited:\n{}", store.logs());
    ensure!(seen >= 5, "checked /-/ready {seen} times");

    moto.make_bucket("later")?;
    store.wait_ready(Duration::from_secs(60)).await?;
    Ok(())
}

/// `--store.grpc.touched-series-limit` counts the series a call touches in the blocks' indexes (before merging
/// across blocks), `--store.grpc.downloaded-bytes-limit` the chunk bytes it downloads; both fail the call with
/// ResourceExhausted naming the flag, and a call under them is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_touched_series_and_downloaded_bytes_limits() -> Result<()> {
    let fx = fixture();
    let dir = main_fs_bucket(fx)?;
    let (mint, maxt) = full_range();
    let metric = vec![eq("__name__", "demo_http_requests_total")];
    let one = vec![eq("instance", "host-2")];
    for (flag, word) in [
        (
            "--store.grpc.touched-series-limit=3",
            "touched-series-limit",
        ),
        (
            "--store.grpc.downloaded-bytes-limit=2000",
            "downloaded-bytes-limit",
        ),
    ] {
        let (_store, mut client) = start_store(&fs_objstore_yaml(dir.path()), &[flag]).await?;
        let st = expect_code(
            grpc::series(&mut client, grpc::series_request(&metric, mint, maxt)).await,
            Code::ResourceExhausted,
            flag,
        )?;
        ensure!(
            st.message().contains(word),
            "{flag}: message does not name it: {:?}",
            st.message()
        );
    }
    // Under generous limits the same call is answered.
    let (_store, mut client) = start_store(
        &fs_objstore_yaml(dir.path()),
        &[
            "--store.grpc.touched-series-limit=100000",
            "--store.grpc.downloaded-bytes-limit=1000000000",
        ],
    )
    .await?;
    let res = select(&mut client, grpc::series_request(&one, mint, maxt)).await?;
    ensure!(!res.series.is_empty(), "nothing under generous limits");
    let res = select(&mut client, grpc::series_request(&metric, mint, maxt)).await?;
    ensure!(!res.series.is_empty(), "nothing under generous limits");
    Ok(())
}

/// Union of two stores' decoded samples, one sample per timestamp.
fn union(a: &SeriesMap, b: &SeriesMap) -> SeriesMap {
    let mut out = a.clone();
    for (l, s) in b {
        let v = out.entry(l.clone()).or_default();
        v.extend(s.iter().cloned());
        v.sort_by_key(|x| x.t);
        v.dedup_by_key(|x| x.t);
    }
    out
}

/// Thanos' store sharding: `--min-time`/`--max-time` split the blocks by time, a `hashmod` selector over
/// `__block_id` splits them by label; each store serves only its share, and the two shares together are exactly
/// what one unsharded store serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_time_partitions_and_hashmod_shards() -> Result<()> {
    let fx = fixture();
    let dir = main_fs_bucket(fx)?;
    let want = main_expected(fx);
    let (mint, maxt) = full_range();
    let mid = T0_MS + 3 * HOUR;
    let mid_rfc = {
        let s = mid / 1000;
        // Seconds to RFC 3339 (UTC) without a date library: days since the epoch, then the civil date.
        let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    };
    let yaml = fs_objstore_yaml(dir.path());
    let shares = [
        (vec![format!("--max-time={mid_rfc}")], vec![format!("--min-time={mid_rfc}")]),
        (
            vec!["--selector.relabel-config=[{action: hashmod, source_labels: [__block_id], target_label: s, modulus: 2}, {action: keep, source_labels: [s], regex: '0'}]".to_owned()],
            vec!["--selector.relabel-config=[{action: hashmod, source_labels: [__block_id], target_label: s, modulus: 2}, {action: keep, source_labels: [s], regex: '1'}]".to_owned()],
        ),
    ];
    for (a_flags, b_flags) in shares {
        let a_refs: Vec<&str> = a_flags.iter().map(String::as_str).collect();
        let b_refs: Vec<&str> = b_flags.iter().map(String::as_str).collect();
        let (_a, mut ca) = start_store(&yaml, &a_refs).await?;
        let (_b, mut cb) = start_store(&yaml, &b_refs).await?;
        let ra = select(&mut ca, grpc::series_request(&all(), mint, maxt)).await?;
        let rb = select(&mut cb, grpc::series_request(&all(), mint, maxt)).await?;
        let (sa, sb) = (ra.samples(), rb.samples());
        if a_flags[0].starts_with("--max-time") {
            // (Which hashmod share holds the few fixture blocks depends on their random ULIDs; the split itself
            // is checked over 40 blocks in sluice-store's unit tests.)
            ensure!(
                !sa.is_empty() && !sb.is_empty(),
                "{a_flags:?} / {b_flags:?}: a share is empty"
            );
            ensure!(
                sa != want && sb != want,
                "{a_flags:?} / {b_flags:?}: a store serves everything"
            );
            for s in &ra.series {
                ensure!(
                    s.chunks.iter().all(|c| c.min_time <= mid),
                    "a chunk after --max-time"
                );
            }
            for s in &rb.series {
                ensure!(
                    s.chunks.iter().all(|c| c.max_time >= mid),
                    "a chunk before --min-time"
                );
            }
        }
        model::diff_series(
            &format!("{a_flags:?} + {b_flags:?}"),
            &union(&sa, &sb),
            &want,
        )?;
    }
    Ok(())
}
