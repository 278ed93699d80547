//! End-to-end tests of `sluice query`: real `sluice store` and `sluice query` processes on 127.0.0.1 over blocks
//! written by the real `promtool`, checked over HTTP and gRPC against `promtool tsdb dump` and against what each
//! store answers on its own; a querier stacked on a querier; faults from a store killed mid-stream, a stalling
//! fake StoreAPI, a fake that sends bytes that are not protobuf and clients that hang up, each followed by a check
//! that the querier still serves and has no stream left open; discovery through file SD and through a DNS server
//! run by the test; and the real `promtool` as a Prometheus API client.
//!
//! Needs `promtool` (`apt-get install prometheus`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sluice_e2e::api::expect_warning_naming;
use sluice_e2e::bucket::{fs_objstore_yaml, put_block};
use sluice_e2e::dns::DnsServer;
use sluice_e2e::fake::{GarbageStore, StallingStore};
use sluice_e2e::fixture::{
    self, END_MS, HA_GAP, HaReplica, STEP_S, T0_MS, bulk_openmetrics, create_blocks,
    ha_openmetrics, other_cluster_openmetrics, parse_label_set,
};
use sluice_e2e::grpc::{self, info_label_sets};
use sluice_e2e::model::{expected_store, fmt_labels, label_value, without_labels};
use sluice_e2e::process::eventually;
use sluice_e2e::{
    Block, Fixture, Labels, Sample, SeriesMap, SeriesResult, SluiceQuery, SluiceStore, labels, re,
};
use sluice_proto::thanos::info::InfoRequest;
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{PartialResponseStrategy, SeriesRequest, series_response};
use tempfile::TempDir;
use tokio::time::Instant;
use tonic::transport::Channel;

type Client = StoreClient<Channel>;

const REPLICA: &str = "replica";

// --- fixtures ---------------------------------------------------------------------------------------------------

/// The three Prometheus data sets, made once per test process by promtool.
struct Fixtures {
    /// Cluster "a", replica A: every scrape.
    a: Fixture,
    /// Cluster "a", replica B: the same scrapes but for a 20-minute gap.
    b: Fixture,
    /// Cluster "b", a single Prometheus.
    other: Fixture,
}

const FIXTURE_PREFIX: &str = "sluice-e2e-query-";

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = fixture_dir();
        let make = |name: &str, om| {
            Fixture::from_openmetrics(om, &dir.join(name))
                .unwrap_or_else(|e| panic!("creating the promtool fixture {name} failed: {e:#}"))
        };
        let om = |r: Result<fixture::OpenMetrics>| {
            r.unwrap_or_else(|e| panic!("generating a fixture: {e:#}"))
        };
        Fixtures {
            a: make("a", om(ha_openmetrics(HaReplica::A))),
            b: make("b", om(ha_openmetrics(HaReplica::B))),
            other: make("other", om(other_cluster_openmetrics())),
        }
    })
}

/// Series in the bulk fixture: with ~300-byte labels the Series answer is ~20 MB, far more than the HTTP/2 flow
/// control windows and channels between a store, the querier and the test can hold, so a store killed after the
/// first frame reached the test is killed in the middle of its stream.
const BULK_SERIES: usize = 60_000;

fn bulk_blocks() -> &'static Vec<Block> {
    static B: OnceLock<Vec<Block>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = fixture_dir().join("bulk");
        bulk_openmetrics(BULK_SERIES, 300)
            .and_then(|om| create_blocks(&om, &dir))
            .unwrap_or_else(|e| panic!("creating the bulk fixture failed: {e:#}"))
    })
}

/// `<CARGO_TARGET_TMPDIR>/sluice-e2e-query-<pid>`, after removing those of test processes that are gone.
fn fixture_dir() -> std::path::PathBuf {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(FIXTURE_PREFIX)
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        base.join(format!("{FIXTURE_PREFIX}{}", std::process::id()))
    })
    .clone()
}

fn ext_a() -> Labels {
    labels(&[("cluster", "a"), (REPLICA, "A")])
}
fn ext_b() -> Labels {
    labels(&[("cluster", "a"), (REPLICA, "B")])
}
fn ext_other() -> Labels {
    labels(&[("cluster", "b")])
}
fn ext_bulk() -> Labels {
    labels(&[("cluster", "bulk")])
}

/// What a store serving `fx`'s blocks with external labels `ext` holds, per promtool's dump.
fn held(fx: &Fixture, ext: &Labels) -> SeriesMap {
    let served: Vec<_> = fx.blocks.iter().map(|b| b.served(ext)).collect();
    expected_store(&fx.dump, &served)
}

/// Everything the three stores hold (label sets are disjoint: they differ by cluster or replica).
fn held_all() -> SeriesMap {
    let f = fixtures();
    let mut all = held(&f.a, &ext_a());
    all.extend(held(&f.b, &ext_b()));
    all.extend(held(&f.other, &ext_other()));
    all
}

/// Label sets of `m` without the labels in `without`, sorted and unique.
fn sets_without(m: &SeriesMap, without: &[&str]) -> Vec<Labels> {
    let s: BTreeSet<Labels> = m.keys().map(|l| without_labels(l, without)).collect();
    s.into_iter().collect()
}

/// Distinct samples (by timestamp and bits), sorted.
fn distinct(samples: &[Sample]) -> Vec<Sample> {
    let mut v = samples.to_vec();
    v.sort_by_key(Sample::key);
    v.dedup_by_key(|s| s.key());
    v
}

// --- processes --------------------------------------------------------------------------------------------------

/// A filesystem bucket holding `blocks`, each with external labels `ext`.
fn bucket(blocks: &[Block], ext: &Labels) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    for b in blocks {
        put_block(dir.path(), b, Some(ext))?;
    }
    Ok(dir)
}

/// A `sluice store` over its own bucket; the bucket is removed when this is dropped.
struct Store {
    proc: SluiceStore,
    _bucket: TempDir,
}

impl Store {
    async fn start(blocks: &[Block], ext: Labels) -> Result<Store> {
        let dir = bucket(blocks, &ext)?;
        let proc = SluiceStore::start_ready(&fs_objstore_yaml(dir.path()), &[]).await?;
        Ok(Store { proc, _bucket: dir })
    }

    fn addr(&self) -> String {
        self.proc.grpc.to_string()
    }
}

/// The HA pair of cluster "a" and the single store of cluster "b".
struct Cluster {
    a: Store,
    b: Store,
    other: Store,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let f = fixtures();
        let (a, b, other) = tokio::try_join!(
            Store::start(&f.a.blocks, ext_a()),
            Store::start(&f.b.blocks, ext_b()),
            Store::start(&f.other.blocks, ext_other()),
        )?;
        Ok(Cluster { a, b, other })
    }

    fn addrs(&self) -> Vec<String> {
        let mut v = vec![self.a.addr(), self.b.addr(), self.other.addr()];
        v.sort();
        v
    }
}

/// Starts `sluice query` with `--endpoint=<e>` for each endpoint, `--query.replica-label=replica` and `extra`,
/// and waits until `/api/v1/stores` shows every endpoint healthy.
async fn querier(endpoints: &[String], extra: &[&str]) -> Result<SluiceQuery> {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|e| format!("--endpoint={e}"))
        .collect();
    args.push(format!("--query.replica-label={REPLICA}"));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let q = SluiceQuery::start(&args).await?;
    let mut want = endpoints.to_vec();
    want.sort();
    wait_for_stores(&q, &want, Duration::from_secs(20)).await?;
    Ok(q)
}

/// Waits until `/api/v1/stores` lists exactly `want` (sorted names), all healthy.
async fn wait_for_stores(q: &SluiceQuery, want: &[String], timeout: Duration) -> Result<()> {
    eventually(
        timeout,
        &format!("querier endpoints == {want:?}, all healthy"),
        || async {
            let s = q.stores().await?;
            let names: Vec<String> = s.iter().map(|s| s.name.clone()).collect();
            let ok = names == want && s.iter().all(|s| s.healthy);
            Ok((ok.then_some(()), format!("{s:?}")))
        },
    )
    .await
}

/// Waits until the querier has no Series stream open to any endpoint.
async fn wait_no_open_streams(q: &SluiceQuery, what: &str) -> Result<()> {
    eventually(
        Duration::from_secs(15),
        &format!("{what}: openStreams back to 0"),
        || async {
            let n = q.open_streams().await?;
            Ok(((n == 0).then_some(()), format!("openStreams = {n}")))
        },
    )
    .await
}

fn all_re() -> Vec<sluice_e2e::Matcher> {
    vec![re("__name__", ".+")]
}

fn req_all(without: &[&str]) -> SeriesRequest {
    SeriesRequest {
        without_replica_labels: without.iter().map(|s| (*s).to_owned()).collect(),
        ..grpc::series_request(&all_re(), i64::MIN, i64::MAX)
    }
}

/// Calls Series; a gRPC error or a wire-contract breach is a failure naming `what`.
async fn select(client: &mut Client, req: SeriesRequest, what: &str) -> Result<SeriesResult> {
    let res = grpc::series(client, req)
        .await
        .map_err(|s| anyhow::anyhow!("{what}: Series failed: {s}"))?;
    res.check(what)?;
    Ok(res)
}

type ChunkKey = (i64, i64, Vec<u8>);

fn chunk_keys(s: &grpc::Series) -> Vec<ChunkKey> {
    s.chunks
        .iter()
        .map(|c| (c.min_time, c.max_time, c.data.clone()))
        .collect()
}

/// HTTP `/api/v1/series` over everything: (label sets, warnings).
async fn http_series(
    q: &SluiceQuery,
    extra: &[(&str, &str)],
) -> Result<(Vec<Labels>, Vec<String>)> {
    let mut p = vec![("match[]", r#"{__name__=~".+"}"#)];
    p.extend_from_slice(extra);
    let r = q.api_get("/api/v1/series", &p).await?;
    Ok((r.label_sets()?, r.warnings()))
}

// --- 1. HA pair, dedup, label APIs, stores, gRPC, Info ----------------------------------------------------------

/// Two stores hold the two replicas of an HA pair (external labels `replica="A"` / `"B"`, B with a gap), a third
/// another cluster; the querier dedups by `replica` over HTTP and gRPC and lists the three stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_dedup_labels_stores_and_grpc() -> Result<()> {
    let f = fixtures();
    let c = Cluster::start().await?;
    let q = querier(&c.addrs(), &[]).await?;
    let all = held_all();
    let deduped = sets_without(&all, &[REPLICA]);
    let cluster_a: Vec<&Labels> = deduped
        .iter()
        .filter(|l| label_value(l, "cluster") == "a")
        .collect();
    ensure!(
        cluster_a.len() == 5 && deduped.len() == 8,
        "fixture shape: {deduped:?}"
    );

    // /api/v1/series: each series once without the replica label when deduplicating ...
    let (sets, warnings) = http_series(&q, &[]).await?;
    ensure!(
        warnings.is_empty(),
        "dedup series: unexpected warnings {warnings:?}"
    );
    ensure!(
        sets == deduped,
        "dedup series:\n got {sets:?}\nwant {deduped:?}"
    );
    ensure!(
        sets.iter().all(|l| label_value(l, REPLICA).is_empty()),
        "a replica label survived dedup"
    );
    // ... the same over POST ...
    let r = q
        .api_post("/api/v1/series", &[("match[]", r#"{__name__=~".+"}"#)])
        .await?;
    ensure!(
        r.label_sets()? == deduped,
        "POST /api/v1/series differs from GET"
    );
    // ... twice (once per replica) with dedup=false ...
    let (sets, _) = http_series(&q, &[("dedup", "false")]).await?;
    let raw: Vec<Labels> = all.keys().cloned().collect();
    ensure!(
        sets == raw,
        "dedup=false series:\n got {sets:?}\nwant {raw:?}"
    );
    for l in &cluster_a {
        for r in ["A", "B"] {
            let mut with = (*l).clone();
            with.push((REPLICA.into(), r.into()));
            with.sort();
            ensure!(
                sets.contains(&with),
                "dedup=false: {} missing",
                fmt_labels(&with)
            );
        }
    }
    // ... and replicaLabels[] overrides --query.replica-label: dedup by cluster keeps replica, drops cluster.
    let (sets, _) = http_series(&q, &[("replicaLabels[]", "cluster")]).await?;
    let by_cluster = sets_without(&all, &["cluster"]);
    ensure!(
        sets == by_cluster,
        "replicaLabels[]=cluster:\n got {sets:?}\nwant {by_cluster:?}"
    );
    ensure!(
        sets.iter().any(|l| label_value(l, REPLICA) == "B"),
        "replicaLabels[] did not replace the flag"
    );
    // A selector on the external label reaches only cluster "b".
    let r = q
        .api_get("/api/v1/series", &[("match[]", r#"up{cluster="b"}"#)])
        .await?;
    let want: Vec<Labels> = deduped
        .iter()
        .filter(|l| label_value(l, "cluster") == "b" && label_value(l, "__name__") == "up")
        .cloned()
        .collect();
    ensure!(
        r.label_sets()? == want && want.len() == 2,
        "up{{cluster=\"b\"}}: got {:?}",
        r.label_sets()?
    );

    // Label APIs.
    let names = q.api_get("/api/v1/labels", &[]).await?.strings()?;
    ensure!(
        names == ["__name__", "cluster", "instance", "job"],
        "labels with dedup: {names:?}"
    );
    let names = q
        .api_get("/api/v1/labels", &[("dedup", "false")])
        .await?
        .strings()?;
    ensure!(
        names == ["__name__", "cluster", "instance", "job", REPLICA],
        "labels without dedup: {names:?}"
    );
    let names = q
        .api_post("/api/v1/labels", &[("match[]", r#"{cluster="b"}"#)])
        .await?
        .strings()?;
    ensure!(
        names == ["__name__", "cluster", "instance", "job"],
        "POST labels for cluster b: {names:?}"
    );
    let vals = |name: &str, extra: &'static [(&'static str, &'static str)]| {
        let q = &q;
        let path = format!("/api/v1/label/{name}/values");
        async move { q.api_get(&path, extra).await?.strings() }
    };
    ensure!(
        vals("job", &[]).await? == ["api", "db", "node"],
        "job values"
    );
    ensure!(vals("cluster", &[]).await? == ["a", "b"], "cluster values");
    let v = vals(REPLICA, &[]).await?;
    ensure!(v.is_empty(), "replica values with dedup: {v:?}");
    let v = vals(REPLICA, &[("dedup", "false")]).await?;
    ensure!(v == ["A", "B"], "replica values without dedup: {v:?}");
    let v = vals("instance", &[("match[]", r#"up{cluster="b"}"#)]).await?;
    ensure!(
        v == ["b-host-1:8080", "db-1:9187"],
        "instance values of cluster b: {v:?}"
    );
    let v = vals("__name__", &[]).await?;
    ensure!(
        v == ["http_requests_total", "pg_connections", "up"],
        "metric names: {v:?}"
    );

    // /api/v1/stores: three healthy stores with their label sets and time ranges as they advertise them.
    let stores = q.stores().await?;
    ensure!(stores.len() == 3, "stores: {stores:?}");
    for (store, ext) in [(&c.a, ext_a()), (&c.b, ext_b()), (&c.other, ext_other())] {
        let s = stores
            .iter()
            .find(|s| s.name == store.addr())
            .with_context(|| format!("{} not listed", store.addr()))?;
        let info = store
            .proc
            .info_client()
            .await?
            .info(InfoRequest {})
            .await?
            .into_inner();
        let si = info.store.context("store Info without StoreInfo")?;
        ensure!(
            s.component_type == "store"
                && s.healthy
                && s.last_error.is_none()
                && !s.strict
                && s.open_streams == 0
                && s.label_sets == vec![ext.clone()]
                && (s.min_time, s.max_time) == (si.min_time, si.max_time)
                && s.last_check.starts_with("20"),
            "store entry {s:?}, want healthy store with label set {} and range [{}, {}]",
            fmt_labels(&ext),
            si.min_time,
            si.max_time
        );
    }

    // The querier's own StoreAPI: deduplicated Series, one series per label set, sorted, chunks of both replicas.
    let mut qc = q.store_client().await?;
    let got = select(
        &mut qc,
        req_all(&[REPLICA]),
        "querier Series without replica",
    )
    .await?;
    ensure!(
        got.label_sets() == deduped,
        "gRPC dedup label sets:\n got {:?}\nwant {deduped:?}",
        got.label_sets()
    );
    let mut ca = c.a.proc.store_client().await?;
    let mut cb = c.b.proc.store_client().await?;
    let from_a = select(&mut ca, req_all(&[REPLICA]), "store A").await?;
    let from_b = select(&mut cb, req_all(&[REPLICA]), "store B").await?;
    let mut shared_chunks = 0;
    for s in &got.series {
        let keys = chunk_keys(s);
        let uniq: BTreeSet<&ChunkKey> = keys.iter().collect();
        ensure!(
            uniq.len() == keys.len(),
            "{}: the same chunk sent twice",
            fmt_labels(&s.labels)
        );
        ensure!(
            keys.windows(2)
                .all(|w| (w[0].0, w[0].1) <= (w[1].0, w[1].1)),
            "{}: chunks not sorted by (min_time, max_time)",
            fmt_labels(&s.labels)
        );
        let mut want: BTreeSet<ChunkKey> = BTreeSet::new();
        let mut want_samples = Vec::new();
        for (from, fx, ext) in [(&from_a, &f.a, ext_a()), (&from_b, &f.b, ext_b())] {
            if let Some(r) = from.get(&s.labels) {
                let k = chunk_keys(r);
                shared_chunks += k.iter().filter(|c| want.contains(*c)).count();
                want.extend(k);
            }
            let mut l = s.labels.clone();
            l.push((REPLICA.into(), label_value(&ext, REPLICA).into()));
            l.sort();
            want_samples.extend(held(fx, &ext).get(&l).cloned().unwrap_or_default());
        }
        if label_value(&s.labels, "cluster") == "b" {
            let mut l = s.labels.clone();
            l.sort();
            want_samples = held(&f.other, &ext_other())
                .get(&l)
                .cloned()
                .unwrap_or_default();
            let mut co = c.other.proc.store_client().await?;
            let o = select(&mut co, req_all(&[REPLICA]), "store other").await?;
            want.extend(chunk_keys(
                o.get(&s.labels)
                    .context("cluster b series missing at its store")?,
            ));
        }
        ensure!(
            uniq.into_iter().cloned().collect::<BTreeSet<_>>() == want,
            "{}: querier chunks are not the union of the stores' chunks ({} vs {})",
            fmt_labels(&s.labels),
            keys.len(),
            want.len()
        );
        let mut have: Vec<Sample> = s
            .chunks
            .iter()
            .flat_map(|c| c.samples.iter().copied())
            .collect();
        have = distinct(&have);
        let want_samples = distinct(&want_samples);
        ensure!(
            have == want_samples,
            "{}: decoded samples ({}) differ from promtool's dump of both replicas ({})",
            fmt_labels(&s.labels),
            have.len(),
            want_samples.len()
        );
    }
    // The fixture really has identical chunks in both replicas (outside the gap), and chunks only one has.
    let merged_a: usize = got
        .series
        .iter()
        .filter(|s| label_value(&s.labels, "cluster") == "a")
        .map(|s| s.chunks.len())
        .sum();
    println!(
        "HA pair: replica A {} chunks, replica B {}, identical in both {shared_chunks}, merged by the querier {merged_a}",
        from_a.chunk_count(),
        from_b.chunk_count()
    );
    ensure!(
        shared_chunks > 0,
        "no chunk is shared by both replicas: the no-duplicates check checked nothing"
    );
    ensure!(
        from_a.chunk_count() + from_b.chunk_count() - shared_chunks == merged_a,
        "merged chunk count {merged_a} is not |A| + |B| - |A ∩ B|"
    );
    // Every chunk the querier sent is, byte for byte, a chunk stored in the blocks' segment files (read without
    // Sluice).
    let mut stored: BTreeSet<Vec<u8>> = BTreeSet::new();
    for b in f.a.blocks.iter().chain(&f.b.blocks).chain(&f.other.blocks) {
        stored.extend(fixture::segment_chunks(&b.dir)?);
    }
    for s in &got.series {
        for c in &s.chunks {
            ensure!(
                stored.contains(&c.data),
                "{}: chunk [{}, {}] is in no block's segment files",
                fmt_labels(&s.labels),
                c.min_time,
                c.max_time
            );
        }
    }
    // The gap: in [T0+180m, T0+200m) replica B has nothing and the merged series still has every scrape.
    let gap_t = T0_MS + (HA_GAP.start + 5) * STEP_S * 1000;
    let up1 = labels(&[
        ("__name__", "up"),
        ("cluster", "a"),
        ("instance", "host-1:8080"),
        ("job", "api"),
    ]);
    let merged = got.get(&up1).context("up host-1 missing")?;
    ensure!(
        merged
            .chunks
            .iter()
            .any(|c| c.samples.iter().any(|s| s.t == gap_t)),
        "merged series lacks the gap scrape"
    );
    ensure!(
        !from_b
            .get(&up1)
            .context("B lacks up")?
            .chunks
            .iter()
            .any(|c| c.samples.iter().any(|s| s.t == gap_t)),
        "replica B should miss the gap"
    );

    // Without replica labels removed: one series per replica, each exactly its store's chunks.
    let got = select(&mut qc, req_all(&[]), "querier Series with replica").await?;
    ensure!(
        got.label_sets() == raw,
        "gRPC label sets without dedup:\n got {:?}\nwant {raw:?}",
        got.label_sets()
    );
    let a_full = select(&mut ca, req_all(&[]), "store A").await?;
    let b_full = select(&mut cb, req_all(&[]), "store B").await?;
    for s in got
        .series
        .iter()
        .filter(|s| label_value(&s.labels, "cluster") == "a")
    {
        let from = if label_value(&s.labels, REPLICA) == "A" {
            &a_full
        } else {
            &b_full
        };
        let want = chunk_keys(from.get(&s.labels).context("series missing at its store")?);
        ensure!(
            chunk_keys(s) == want,
            "{}: chunks differ from its store's",
            fmt_labels(&s.labels)
        );
    }
    sluice_e2e::model::diff_series(
        "querier Series with replica vs promtool",
        &got.samples(),
        &all,
    )?;

    // gRPC label APIs.
    let v = grpc::label_values(&mut qc, "cluster", &[], i64::MIN, i64::MAX).await?;
    ensure!(v == ["a", "b"], "gRPC LabelValues(cluster): {v:?}");
    let v = grpc::label_names(&mut qc, &[], i64::MIN, i64::MAX).await?;
    ensure!(
        v == ["__name__", "cluster", "instance", "job", REPLICA],
        "gRPC LabelNames: {v:?}"
    );

    // Info: the union of the endpoints' label sets and time ranges.
    let info = q
        .info_client()
        .await?
        .info(InfoRequest {})
        .await?
        .into_inner();
    ensure!(
        info.component_type == "query",
        "querier component type {:?}",
        info.component_type
    );
    let sets = info_label_sets(&info.label_sets);
    let mut want_sets = vec![ext_a(), ext_b(), ext_other()];
    want_sets.sort();
    ensure!(
        sets == want_sets,
        "querier Info label sets {sets:?}, want {want_sets:?}"
    );
    let si = info.store.context("querier Info without StoreInfo")?;
    let mut min = i64::MAX;
    let mut max = i64::MIN;
    for s in [&c.a, &c.b, &c.other] {
        let i = s
            .proc
            .info_client()
            .await?
            .info(InfoRequest {})
            .await?
            .into_inner()
            .store
            .context("StoreInfo")?;
        min = min.min(i.min_time);
        max = max.max(i.max_time);
    }
    ensure!(
        (si.min_time, si.max_time) == (min, max),
        "querier Info range [{}, {}], want [{min}, {max}]",
        si.min_time,
        si.max_time
    );
    ensure!(
        si.supports_without_replica_labels,
        "querier does not advertise without_replica_labels"
    );
    let legacy = qc
        .info(sluice_proto::thanos::InfoRequest {})
        .await?
        .into_inner();
    ensure!(
        (legacy.min_time, legacy.max_time) == (min, max)
            && info_label_sets(&legacy.label_sets) == want_sets,
        "legacy Store/Info: {legacy:?}"
    );
    let last_scrape = T0_MS + (fixture::REGULAR_SAMPLES - 1) * STEP_S * 1000;
    ensure!(
        min <= T0_MS && max > last_scrape,
        "Info range [{min}, {max}] does not cover the fixture"
    );
    Ok(())
}

// --- 2. Stacking ------------------------------------------------------------------------------------------------

/// A querier whose only endpoint is another querier returns the same series, over HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_querier_returns_the_same_series() -> Result<()> {
    let c = Cluster::start().await?;
    let q1 = querier(&c.addrs(), &[]).await?;
    let q2 = querier(&[q1.grpc.to_string()], &[]).await?;
    let stores = q2.stores().await?;
    let mut want_sets = vec![ext_a(), ext_b(), ext_other()];
    want_sets.sort();
    ensure!(
        stores.len() == 1
            && stores[0].component_type == "query"
            && stores[0].label_sets == want_sets,
        "q2 should see q1 as one \"query\" endpoint with the union of label sets: {stores:?}"
    );

    for params in [
        vec![],
        vec![("dedup", "false")],
        vec![("replicaLabels[]", "cluster")],
    ] {
        let (s1, w1) = http_series(&q1, &params).await?;
        let (s2, w2) = http_series(&q2, &params).await?;
        ensure!(
            w1.is_empty() && w2.is_empty(),
            "{params:?}: warnings {w1:?} {w2:?}"
        );
        ensure!(
            !s1.is_empty() && s1 == s2,
            "{params:?}: stacked series differ:\nq1 {s1:?}\nq2 {s2:?}"
        );
    }
    let all = held_all();
    ensure!(
        http_series(&q2, &[]).await?.0 == sets_without(&all, &[REPLICA]),
        "stacked dedup series"
    );
    for (path, p) in [
        ("/api/v1/labels", vec![]),
        ("/api/v1/labels", vec![("dedup", "false")]),
        ("/api/v1/label/instance/values", vec![]),
        ("/api/v1/label/replica/values", vec![("dedup", "false")]),
    ] {
        let a = q1.api_get(path, &p).await?.strings()?;
        let b = q2.api_get(path, &p).await?.strings()?;
        ensure!(!a.is_empty() && a == b, "{path} {p:?}: q1 {a:?} q2 {b:?}");
    }

    let mut c1 = q1.store_client().await?;
    let mut c2 = q2.store_client().await?;
    for without in [vec![REPLICA], vec![]] {
        let r1 = select(&mut c1, req_all(&without), "q1").await?;
        let r2 = select(&mut c2, req_all(&without), "q2").await?;
        ensure!(
            r1.label_sets() == r2.label_sets(),
            "without {without:?}: label sets differ"
        );
        for (a, b) in r1.series.iter().zip(&r2.series) {
            ensure!(
                chunk_keys(a) == chunk_keys(b),
                "without {without:?}: {} chunks differ",
                fmt_labels(&a.labels)
            );
        }
        ensure!(
            r2.samples() == r1.samples() && !r2.series.is_empty(),
            "samples differ"
        );
    }
    let info = q2
        .info_client()
        .await?
        .info(InfoRequest {})
        .await?
        .into_inner();
    ensure!(
        info_label_sets(&info.label_sets) == want_sets,
        "q2 Info label sets"
    );
    Ok(())
}

/// The tenant of an HTTP request (`THANOS-TENANT` header) reaches the stores as `thanos-tenant` gRPC metadata and
/// their log, through a stacked querier too; `--query.enforce-tenancy` scopes every selection to the tenant's
/// `tenant_id` (here an external label of each store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_forwarded_logged_and_enforced() -> Result<()> {
    let f = fixtures();
    let (bucket_a, bucket_b) = (
        bucket(&f.a.blocks, &labels(&[("tenant_id", "team-a")]))?,
        bucket(&f.other.blocks, &labels(&[("tenant_id", "team-b")]))?,
    );
    let (yaml_a, yaml_b) = (
        fs_objstore_yaml(bucket_a.path()),
        fs_objstore_yaml(bucket_b.path()),
    );
    let (sa, sb) = tokio::try_join!(
        SluiceStore::start_ready(&yaml_a, &["--log.level=debug"]),
        SluiceStore::start_ready(&yaml_b, &["--log.level=debug"]),
    )?;
    let eps = vec![sa.grpc.to_string(), sb.grpc.to_string()];
    let q1 = querier(&eps, &[]).await?;
    let q2 = querier(&[q1.grpc.to_string()], &[]).await?;
    let enforced = querier(&eps, &["--query.enforce-tenancy"]).await?;
    let client = reqwest::Client::new();
    let get = |q: &SluiceQuery, path: &str, params: &[(&str, &str)], tenant: Option<&str>| {
        let mut r = client
            .get(format!(
                "http://{}{path}?{}",
                q.http,
                sluice_e2e::api::form(params)
            ))
            .timeout(Duration::from_secs(30));
        if let Some(t) = tenant {
            r = r.header("THANOS-TENANT", t);
        }
        async move {
            let r = r.send().await?;
            let code = r.status().as_u16();
            let v: serde_json::Value = serde_json::from_str(&r.text().await?)?;
            anyhow::Ok((code, v))
        }
    };
    let all = [("match[]", r#"{__name__=~".+"}"#)];
    // Series, PromQL and labels each carry the tenant; through q2 it crosses a querier's StoreAPI too.
    let at = ((END_MS - 60_000) / 1000).to_string();
    let calls: [(&SluiceQuery, &str, &[(&str, &str)], &str); 4] = [
        (&q1, "/api/v1/series", &all, "team-series"),
        (
            &q1,
            "/api/v1/query",
            &[("query", "count({__name__=~\".+\"})"), ("time", &at)],
            "team-promql",
        ),
        (&q1, "/api/v1/labels", &[], "team-labels"),
        (&q2, "/api/v1/series", &all, "team-stacked"),
    ];
    for (q, path, params, tenant) in calls {
        let (code, v) = get(q, path, params, Some(tenant)).await?;
        ensure!(code == 200, "{path} as {tenant}: {code} {v}");
        for (name, store) in [("store a", &sa), ("store b", &sb)] {
            eventually(
                Duration::from_secs(10),
                &format!("{name} logs tenant {tenant}"),
                || async {
                    let logs = store.logs();
                    Ok((logs.contains(tenant).then_some(()), String::new()))
                },
            )
            .await?;
        }
    }
    ensure!(
        !sa.logs().contains("default-tenant"),
        "no call without a tenant yet"
    );
    let (code, _) = get(&q1, "/api/v1/series", &all, None).await?;
    ensure!(code == 200, "series without a tenant: {code}");
    eventually(
        Duration::from_secs(10),
        "a request without a tenant is the default tenant's",
        || async {
            Ok((
                sa.logs().contains("default-tenant").then_some(()),
                String::new(),
            ))
        },
    )
    .await?;
    // Enforced: a tenant sees only the series labelled with it, the default tenant none.
    let (code, v) = get(&enforced, "/api/v1/series", &all, Some("team-a")).await?;
    let sets = v["data"].as_array().cloned().unwrap_or_default();
    ensure!(
        code == 200 && !sets.is_empty() && sets.iter().all(|s| s["tenant_id"] == "team-a"),
        "enforced series of team-a: {code} {} sets, first {:?}",
        sets.len(),
        sets.first()
    );
    let (code, v) = get(
        &enforced,
        "/api/v1/query",
        &[
            ("query", "count(count by (tenant_id) ({__name__=~\".+\"}))"),
            ("time", &at),
        ],
        Some("team-b"),
    )
    .await?;
    ensure!(
        code == 200 && v["data"]["result"][0]["value"][1] == "1",
        "enforced PromQL of team-b sees one tenant: {code} {v}"
    );
    let (code, v) = get(
        &enforced,
        "/api/v1/label/tenant_id/values",
        &[],
        Some("team-b"),
    )
    .await?;
    ensure!(
        code == 200 && v["data"] == serde_json::json!(["team-b"]),
        "enforced label values: {code} {v}"
    );
    let (code, v) = get(&enforced, "/api/v1/series", &all, None).await?;
    ensure!(
        code == 200 && v["data"] == serde_json::json!([]),
        "default tenant sees nothing: {code} {v}"
    );
    let (code, v) = get(&q1, "/api/v1/series", &all, Some("../etc")).await?;
    ensure!(
        code == 400 && v["errorType"] == "bad_data",
        "invalid tenant: {code} {v}"
    );
    Ok(())
}

/// Thanos' snappy gRPC compression: a hand-made client sending a snappy-compressed Series request and accepting
/// snappy gets compressed answers with the same series from a store and from a querier; a querier with
/// `--grpc-compression=snappy` talks snappy to its store and answers as an uncompressed one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_compression_between_clients_queriers_and_stores() -> Result<()> {
    let f = fixtures();
    let dir = bucket(&f.a.blocks, &ext_a())?;
    let yaml = fs_objstore_yaml(dir.path());
    let store = SluiceStore::start_ready(&yaml, &["--log.level=debug"]).await?;
    let plain_q = querier(&[store.grpc.to_string()], &[]).await?;
    let snappy_q = querier(&[store.grpc.to_string()], &["--grpc-compression=snappy"]).await?;
    let want = held(&f.a, &ext_a());

    let req = req_all(&[]);
    for (what, addr) in [
        ("store", store.grpc.to_string()),
        ("querier", snappy_q.grpc.to_string()),
    ] {
        let a = grpc::series_snappy(&addr, &req).await?;
        ensure!(
            a.encoding.as_deref() == Some("snappy") && a.grpc_status.as_deref() == Some("0"),
            "{what}: answer encoding {:?}, status {:?}",
            a.encoding,
            a.grpc_status
        );
        ensure!(
            a.compressed_messages > 0 && a.plain_messages == 0,
            "{what}: {} compressed and {} plain messages",
            a.compressed_messages,
            a.plain_messages
        );
        let mut sets = Vec::new();
        for r in &a.responses {
            match &r.result {
                Some(series_response::Result::Series(s)) => sets.push(s.labels.len()),
                Some(series_response::Result::Batch(b)) => {
                    sets.extend(b.series.iter().map(|s| s.labels.len()))
                }
                _ => {}
            }
        }
        ensure!(
            sets.len() == want.len(),
            "{what}: {} series over snappy, {} held",
            sets.len(),
            want.len()
        );
    }
    // The querier's calls to the store go compressed, with the same answers.
    let series_calls = || {
        store
            .logs()
            .lines()
            .filter(|l| {
                l.contains("snappy-compressed gRPC request") && l.contains("/thanos.Store/Series")
            })
            .count()
    };
    // The hand-made client's call to the store, and the snappy querier's fan-out of the one made to it.
    ensure!(
        series_calls() == 2,
        "snappy Series calls the store saw so far: {}",
        series_calls()
    );
    let (a, wa) = http_series(&plain_q, &[]).await?;
    let (b, wb) = http_series(&snappy_q, &[]).await?;
    ensure!(
        wa.is_empty() && wb.is_empty() && !a.is_empty() && a == b,
        "series differ: {wa:?} {wb:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the store logs the querier's snappy Series call",
        || async {
            let n = series_calls();
            Ok((
                (n == 3).then_some(()),
                format!("{n} snappy Series calls logged"),
            ))
        },
    )
    .await?;
    Ok(())
}

// --- 3. Faults --------------------------------------------------------------------------------------------------

/// What a Series stream delivered before it ended.
#[derive(Debug, Default)]
struct Partial {
    labels: Vec<Labels>,
    warnings: Vec<String>,
    error: Option<tonic::Status>,
    done: bool,
}

/// Reads frames until `stop_after` series (if given), the end, or an error.
async fn drain(
    stream: &mut tonic::Streaming<sluice_proto::thanos::SeriesResponse>,
    p: &mut Partial,
    stop_after: Option<usize>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stop_after.is_none_or(|n| p.labels.len() < n) {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        let frame = match next {
            Err(_) => {
                p.error = Some(tonic::Status::deadline_exceeded(
                    "test gave up waiting for the stream",
                ));
                return;
            }
            Ok(Err(s)) => {
                p.error = Some(s);
                return;
            }
            Ok(Ok(None)) => {
                p.done = true;
                return;
            }
            Ok(Ok(Some(f))) => f,
        };
        let mut add = |s: sluice_proto::thanos::Series| {
            let mut l: Labels = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
            l.sort();
            p.labels.push(l);
        };
        match frame.result {
            Some(series_response::Result::Series(s)) => add(s),
            Some(series_response::Result::Batch(b)) => b.series.into_iter().for_each(&mut add),
            Some(series_response::Result::Warning(w)) => p.warnings.push(w),
            _ => {}
        }
    }
}

fn strategy_req(partial: bool) -> SeriesRequest {
    SeriesRequest {
        skip_chunks: true,
        partial_response_strategy: if partial {
            PartialResponseStrategy::Warn as i32
        } else {
            PartialResponseStrategy::Abort as i32
        },
        ..req_all(&[REPLICA])
    }
}

/// Checks the four ways of asking for everything while `bad` (an endpoint address) fails: HTTP and gRPC, each
/// with partial response (WARN: every series of the healthy store `good` plus a warning naming `bad`) and without
/// (ABORT: an error naming `bad`). `detail`, when given, must appear in the warning/error too.
async fn check_fault(
    q: &SluiceQuery,
    bad: &str,
    good: &SeriesMap,
    detail: &str,
    what: &str,
) -> Result<()> {
    let good_sets = sets_without(good, &[REPLICA]);
    let contains_good = |sets: &[Labels]| good_sets.iter().all(|l| sets.contains(l));
    let names = |w: &str| w.contains(bad) && w.contains(detail);

    let started = Instant::now();
    let r = q
        .api_get(
            "/api/v1/series",
            &[
                ("match[]", r#"{__name__=~".+"}"#),
                ("partial_response", "true"),
            ],
        )
        .await?;
    let sets = r.label_sets()?;
    ensure!(
        contains_good(&sets),
        "{what}: HTTP WARN lost the healthy store's series: {sets:?}"
    );
    ensure!(
        r.warnings().iter().any(|w| names(w)),
        "{what}: HTTP WARN warnings {:?} do not name {bad} ({detail})",
        r.warnings()
    );
    let http_warn_took = started.elapsed();

    let r = q
        .api_get(
            "/api/v1/series",
            &[
                ("match[]", r#"{__name__=~".+"}"#),
                ("partial_response", "false"),
            ],
        )
        .await?;
    let err = r.error()?;
    ensure!(
        r.code == 422 && names(&err),
        "{what}: HTTP ABORT: HTTP {} {err:?} should be 422 naming {bad} ({detail})",
        r.code
    );

    let mut c = q.store_client().await?;
    let mut p = Partial::default();
    let mut s = c.series(strategy_req(true)).await?.into_inner();
    drain(&mut s, &mut p, None).await;
    ensure!(
        p.done && p.error.is_none(),
        "{what}: gRPC WARN did not complete: {:?}",
        p.error
    );
    ensure!(
        contains_good(&p.labels),
        "{what}: gRPC WARN lost the healthy store's series"
    );
    ensure!(
        p.warnings.iter().any(|w| names(w)),
        "{what}: gRPC WARN warnings {:?} do not name {bad}",
        p.warnings
    );

    let mut p = Partial::default();
    match c.series(strategy_req(false)).await {
        Ok(r) => {
            let mut s = r.into_inner();
            drain(&mut s, &mut p, None).await;
        }
        Err(e) => p.error = Some(e),
    }
    let e = p
        .error
        .with_context(|| format!("{what}: gRPC ABORT completed without an error"))?;
    ensure!(
        names(e.message()),
        "{what}: gRPC ABORT error {e:?} does not name {bad} ({detail})"
    );
    println!(
        "{what}: HTTP WARN took {http_warn_took:?}; gRPC ABORT gave {:?}: {}",
        e.code(),
        e.message()
    );
    Ok(())
}

/// After a fault: the process runs, answers probes, has no stream open, and still answers a query that does not
/// touch the bad endpoint, without warnings.
async fn check_recovered(q: &mut SluiceQuery, good: &SeriesMap, what: &str) -> Result<()> {
    ensure!(q.is_running(), "{what}: the querier exited:\n{}", q.logs());
    let (code, _) = q.http_get("/-/healthy").await?;
    ensure!(code == 200, "{what}: /-/healthy answered {code}");
    wait_no_open_streams(q, what).await?;
    let r = q
        .api_get(
            "/api/v1/series",
            &[
                ("match[]", r#"{cluster="b"}"#),
                ("partial_response", "false"),
            ],
        )
        .await?;
    let want = sets_without(good, &[REPLICA]);
    ensure!(
        r.label_sets()? == want && r.warnings().is_empty(),
        "{what}: query after the fault: {:?}",
        r.body
    );
    Ok(())
}

/// One store is killed while the querier streams its (20 MB) Series answer to the test: with partial response
/// the stream completes with the other store's series and a warning naming the killed store; without, it fails
/// naming it. Then, with the health check lagging (`--endpoint.info-timeout=60s`), queries reaching the dead
/// address behave the same way over HTTP, for Series and the label APIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_store_killed_mid_stream() -> Result<()> {
    let f = fixtures();
    let bulk = bulk_blocks();
    let good = held(&f.other, &ext_other());
    let other = Store::start(&f.other.blocks, ext_other()).await?;
    let bulk_bucket = bucket(bulk, &ext_bulk())?;

    for partial in [true, false] {
        let what = if partial {
            "mid-stream kill, WARN"
        } else {
            "mid-stream kill, ABORT"
        };
        let mut victim =
            SluiceStore::start_ready(&fs_objstore_yaml(bulk_bucket.path()), &[]).await?;
        let victim_addr = victim.grpc.to_string();
        let mut q = querier(
            &[other.addr(), victim_addr.clone()],
            &["--endpoint.info-timeout=60s"],
        )
        .await?;
        let mut c = q.store_client().await?;
        let mut stream = c.series(strategy_req(partial)).await?.into_inner();
        let mut p = Partial::default();
        drain(&mut stream, &mut p, Some(1)).await;
        ensure!(
            p.labels.len() == 1 && p.error.is_none(),
            "{what}: no first frame: {p:?}"
        );
        let open = q
            .stores()
            .await?
            .into_iter()
            .find(|s| s.name == victim_addr)
            .map(|s| s.open_streams);
        ensure!(
            open == Some(1),
            "{what}: the querier should have one stream open to the victim, has {open:?}"
        );
        victim.kill()?;
        drain(&mut stream, &mut p, None).await;
        let bulk_got = p
            .labels
            .iter()
            .filter(|l| label_value(l, "cluster") == "bulk")
            .count();
        ensure!(
            bulk_got > 0 && bulk_got < BULK_SERIES,
            "{what}: {bulk_got} of {BULK_SERIES} bulk series arrived: the kill was not mid-stream"
        );
        if partial {
            ensure!(
                p.done && p.error.is_none(),
                "{what}: the stream did not complete: {:?}",
                p.error
            );
            expect_warning_naming(&p.warnings, &victim_addr, what)?;
            let got: BTreeSet<&Labels> = p
                .labels
                .iter()
                .filter(|l| label_value(l, "cluster") == "b")
                .collect();
            let want: BTreeSet<&Labels> = good.keys().collect();
            ensure!(
                got == want,
                "{what}: cluster b series: got {got:?} want {want:?}"
            );
        } else {
            let e = p
                .error
                .as_ref()
                .with_context(|| format!("{what}: the stream completed without an error"))?;
            ensure!(
                e.message().contains(&victim_addr),
                "{what}: error {e:?} does not name {victim_addr}"
            );
        }
        println!(
            "{what}: {bulk_got} of {BULK_SERIES} bulk series arrived before the kill; warnings {:?}; error {:?}",
            p.warnings,
            p.error.as_ref().map(|e| (e.code(), e.message().to_owned()))
        );
        drop(stream);
        check_recovered(&mut q, &good, what).await?;

        if partial {
            // The dead store is still believed healthy (next health check in 60 s): queries reach it and fail.
            let s = q.stores().await?;
            ensure!(
                s.iter().any(|s| s.name == victim_addr && s.healthy),
                "health check should lag: {s:?}"
            );
            check_fault(
                &q,
                &victim_addr,
                &good,
                "",
                "killed store, health check lagging",
            )
            .await?;
            for path in ["/api/v1/labels", "/api/v1/label/job/values"] {
                let r = q.api_get(path, &[("partial_response", "true")]).await?;
                let v = r.strings()?;
                ensure!(
                    v.contains(&"db".to_owned()) || v.contains(&"job".to_owned()),
                    "{path} WARN: {v:?}"
                );
                expect_warning_naming(&r.warnings(), &victim_addr, path)?;
                let r = q.api_get(path, &[("partial_response", "false")]).await?;
                ensure!(
                    r.error()?.contains(&victim_addr),
                    "{path} ABORT: {:?}",
                    r.body
                );
            }
            check_recovered(&mut q, &good, "after the health-lag queries").await?;
        }
    }
    Ok(())
}

/// A fake StoreAPI sends one Series frame and then nothing: with `--store.response-timeout=1s` the querier gives
/// up on it after a second; WARN keeps the other store's data and warns, ABORT fails; nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_store_stalls_past_response_timeout() -> Result<()> {
    let f = fixtures();
    let good = held(&f.other, &ext_other());
    let other = Store::start(&f.other.blocks, ext_other()).await?;
    let stall = StallingStore::start("stall", Duration::from_secs(30)).await?;
    let bad = stall.addr.to_string();
    let mut q = querier(
        &[other.addr(), bad.clone()],
        &["--store.response-timeout=1s"],
    )
    .await?;

    let started = Instant::now();
    check_fault(&q, &bad, &good, "", "stalled store").await?;
    let took = started.elapsed();
    ensure!(
        took >= Duration::from_secs(4),
        "four queries each waiting 1 s took only {took:?}"
    );
    ensure!(
        took < Duration::from_secs(25),
        "the stall was not cut at the response timeout: {took:?}"
    );
    ensure!(
        stall.series_calls.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "the fake was not asked"
    );
    check_recovered(&mut q, &good, "stalled store").await?;
    // The label APIs of the fake answer at once: no warning.
    let r = q.api_get("/api/v1/label/cluster/values", &[]).await?;
    ensure!(
        r.strings()? == ["b", "stall"] && r.warnings().is_empty(),
        "label values: {:?}",
        r.body
    );
    Ok(())
}

/// A client that gives up while a store stalls (no `--store.response-timeout`) must not leave the querier
/// waiting on that store: its upstream stream is cancelled and the open-stream count returns to 0 at once, for a
/// gRPC client that drops its stream and for an HTTP client that times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancel_releases_stalled_streams() -> Result<()> {
    let f = fixtures();
    let good = held(&f.other, &ext_other());
    let other = Store::start(&f.other.blocks, ext_other()).await?;
    let stall = StallingStore::start("stall", Duration::from_secs(300)).await?;
    let mut q = querier(&[other.addr(), stall.addr.to_string()], &[]).await?;
    let active = || {
        stall
            .active_streams
            .load(std::sync::atomic::Ordering::SeqCst)
    };

    // gRPC: open a Series stream, wait until the querier is waiting on the fake (which sent one frame and went
    // silent, so the merge cannot tell whether that series is complete), then hang up.
    let mut c = q.store_client().await?;
    let stream = c.series(strategy_req(true)).await?.into_inner();
    eventually(
        Duration::from_secs(10),
        "the querier streams from the fake",
        || async {
            let n = q.open_streams().await?;
            Ok((
                (n >= 1 && active() == 1).then_some(()),
                format!("openStreams {n}, fake active {}", active()),
            ))
        },
    )
    .await?;
    drop(stream);
    drop(c);
    let t = Instant::now();
    wait_no_open_streams(&q, "gRPC client hung up").await?;
    eventually(
        Duration::from_secs(10),
        "the fake store's stream is cancelled",
        || async {
            Ok((
                (active() == 0).then_some(()),
                format!("{} active", active()),
            ))
        },
    )
    .await?;
    println!("gRPC cancel: upstream released after {:?}", t.elapsed());

    // HTTP: the client times out after 2 s; the handler is dropped and must release the store stream too.
    let url = format!(
        "{}/api/v1/series?{}",
        q.url(),
        sluice_e2e::api::form(&[("match[]", r#"{__name__=~".+"}"#)])
    );
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    ensure!(
        r.is_err(),
        "the HTTP query should hang on the stalled store: {r:?}"
    );
    let t = Instant::now();
    wait_no_open_streams(&q, "HTTP client timed out").await?;
    eventually(
        Duration::from_secs(10),
        "the fake store's stream is cancelled",
        || async {
            Ok((
                (active() == 0).then_some(()),
                format!("{} active", active()),
            ))
        },
    )
    .await?;
    println!("HTTP cancel: upstream released after {:?}", t.elapsed());
    ensure!(
        stall.series_calls.load(std::sync::atomic::Ordering::SeqCst) == 2,
        "the fake was asked twice"
    );
    check_recovered(&mut q, &good, "after client cancellations").await?;
    Ok(())
}

/// `--query.timeout` ends an HTTP request stuck on a stalled store with Prometheus' timeout error (HTTP 503,
/// errorType "timeout") and releases the store stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_ends_stuck_requests() -> Result<()> {
    let f = fixtures();
    let other = Store::start(&f.other.blocks, ext_other()).await?;
    let stall = StallingStore::start("stall", Duration::from_secs(300)).await?;
    let q = querier(
        &[other.addr(), stall.addr.to_string()],
        &["--query.timeout=1s"],
    )
    .await?;
    let started = Instant::now();
    let r = q
        .api_get("/api/v1/series", &[("match[]", r#"{__name__=~".+"}"#)])
        .await?;
    let took = started.elapsed();
    ensure!(
        r.code == 503 && r.body["errorType"] == "timeout",
        "expected a timeout error, got HTTP {}: {}",
        r.code,
        r.body
    );
    ensure!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("--query.timeout"),
        "{}",
        r.body
    );
    ensure!(
        took < Duration::from_secs(10),
        "the timeout did not cut the request: {took:?}"
    );
    wait_no_open_streams(&q, "request timed out").await?;
    Ok(())
}

/// A fake StoreAPI on raw HTTP/2 answers Info properly (so it is added) but then sends a gRPC message that is not
/// protobuf: one good Series frame followed by garbage, and garbage for LabelNames/LabelValues. The querier's
/// decoder fails on it; WARN warns naming the endpoint and the decode failure, ABORT fails; nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_store_sends_garbage_frames() -> Result<()> {
    let f = fixtures();
    let good = held(&f.other, &ext_other());
    let other = Store::start(&f.other.blocks, ext_other()).await?;
    let garbage = GarbageStore::start("garbage").await?;
    let bad = garbage.addr.to_string();
    let mut q = querier(&[other.addr(), bad.clone()], &[]).await?;
    check_fault(&q, &bad, &good, "decode", "garbage frames").await?;
    ensure!(
        garbage.count("/thanos.Store/Series") >= 4,
        "the fake's Series was not called: {:?}",
        garbage.calls
    );

    for (path, name) in [
        ("/api/v1/labels", "job"),
        ("/api/v1/label/job/values", "db"),
    ] {
        let r = q.api_get(path, &[("partial_response", "true")]).await?;
        ensure!(
            r.strings()?.contains(&name.to_owned()),
            "{path} WARN lost the healthy store's answer: {:?}",
            r.body
        );
        ensure!(
            r.warnings()
                .iter()
                .any(|w| w.contains(&bad) && w.contains("decode")),
            "{path} WARN warnings: {:?}",
            r.warnings()
        );
        let r = q.api_get(path, &[("partial_response", "false")]).await?;
        ensure!(r.error()?.contains(&bad), "{path} ABORT: {:?}", r.body);
    }
    ensure!(
        garbage.count("/thanos.Store/LabelNames") >= 2
            && garbage.count("/thanos.Store/LabelValues") >= 2,
        "label calls"
    );
    check_recovered(&mut q, &good, "garbage frames").await?;
    Ok(())
}

// --- 4. Discovery -----------------------------------------------------------------------------------------------

/// Writes `text` to `path` atomically (temporary file, rename), so a reader never sees half a file.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Waits until the querier lists exactly `want` and its deduplicated series are `sets`.
async fn wait_for_view(
    q: &SluiceQuery,
    want: &[String],
    sets: &[Labels],
    what: &str,
) -> Result<()> {
    let started = Instant::now();
    let mut want = want.to_vec();
    want.sort();
    wait_for_stores(q, &want, Duration::from_secs(20))
        .await
        .with_context(|| what.to_owned())?;
    eventually(
        Duration::from_secs(10),
        &format!("{what}: series follow"),
        || async {
            let (got, w) = if want.is_empty() {
                (vec![], vec![])
            } else {
                http_series(q, &[]).await?
            };
            Ok((
                (got == sets).then_some(()),
                format!("{got:?} warnings {w:?}"),
            ))
        },
    )
    .await?;
    println!("{what}: reached after {:?}", started.elapsed());
    Ok(())
}

/// `--store.sd-files` (one JSON, one YAML file): a store added to a file is queried and one removed is dropped,
/// without restarting the querier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_adds_and_removes_endpoints() -> Result<()> {
    let f = fixtures();
    let (a, other) = tokio::try_join!(
        Store::start(&f.a.blocks, ext_a()),
        Store::start(&f.other.blocks, ext_other())
    )?;
    let sd = tempfile::Builder::new().prefix("sluice-sd-").tempdir()?;
    let json = sd.path().join("stores.json");
    let yaml = sd.path().join("stores.yml");
    write_atomic(
        &json,
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"env": "test"}}}}]"#,
            other.addr()
        ),
    )?;
    write_atomic(&yaml, "[]\n")?;
    let q = SluiceQuery::start(&[
        format!("--store.sd-files={}", json.display()),
        format!("--store.sd-files={}", yaml.display()),
        format!("--query.replica-label={REPLICA}"),
        "--endpoint.info-timeout=500ms".into(),
    ])
    .await?;
    let other_sets = sets_without(&held(&f.other, &ext_other()), &[REPLICA]);
    let a_sets = sets_without(&held(&f.a, &ext_a()), &[REPLICA]);
    let mut both: Vec<Labels> = other_sets.iter().chain(&a_sets).cloned().collect();
    both.sort();

    wait_for_view(&q, &[other.addr()], &other_sets, "file SD: initial").await?;
    write_atomic(&yaml, &format!("- targets:\n    - {}\n", a.addr()))?;
    wait_for_view(
        &q,
        &[other.addr(), a.addr()],
        &both,
        "file SD: store added to the YAML file",
    )
    .await?;
    write_atomic(&json, "[]")?;
    wait_for_view(
        &q,
        &[a.addr()],
        &a_sets,
        "file SD: store removed from the JSON file",
    )
    .await?;
    write_atomic(&yaml, "[]\n")?;
    wait_for_view(&q, &[], &[], "file SD: every store removed").await?;
    Ok(())
}

/// `--endpoint=dnssrv+_grpc._tcp.stores.test` resolved through a DNS server the test runs: SRV targets added and
/// removed during the test are followed without restart. Also `dns+host:port` through the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_adds_and_removes_endpoints() -> Result<()> {
    let f = fixtures();
    let (a, other) = tokio::try_join!(
        Store::start(&f.a.blocks, ext_a()),
        Store::start(&f.other.blocks, ext_other())
    )?;
    let dns = DnsServer::start().await?;
    let srv = "_grpc._tcp.stores.test";
    dns.set_a("store1.test", Some(&[Ipv4Addr::LOCALHOST]));
    dns.set_a("store2.test", Some(&[Ipv4Addr::LOCALHOST]));
    dns.set_srv(srv, &[("store1.test", other.proc.grpc.port())]);
    let q = SluiceQuery::start(&[
        format!("--endpoint=dnssrv+{srv}"),
        format!("--dns.nameserver={}", dns.addr),
        format!("--query.replica-label={REPLICA}"),
        "--endpoint.info-timeout=500ms".into(),
    ])
    .await?;
    let other_sets = sets_without(&held(&f.other, &ext_other()), &[REPLICA]);
    let a_sets = sets_without(&held(&f.a, &ext_a()), &[REPLICA]);
    let mut both: Vec<Labels> = other_sets.iter().chain(&a_sets).cloned().collect();
    both.sort();

    wait_for_view(&q, &[other.addr()], &other_sets, "DNS SRV: one target").await?;
    dns.set_srv(
        srv,
        &[
            ("store1.test", other.proc.grpc.port()),
            ("store2.test", a.proc.grpc.port()),
        ],
    );
    wait_for_view(
        &q,
        &[other.addr(), a.addr()],
        &both,
        "DNS SRV: target added",
    )
    .await?;
    dns.set_srv(srv, &[("store2.test", a.proc.grpc.port())]);
    wait_for_view(&q, &[a.addr()], &a_sets, "DNS SRV: target removed").await?;

    // A transient DNS failure (SERVFAIL) keeps the endpoints last resolved, as Thanos does; it does not empty the
    // set. The querier logs each failed resolution.
    let failures = |q: &SluiceQuery| {
        q.logs()
            .matches("keeping the last resolved addresses")
            .count()
    };
    let before = failures(&q);
    let t = Instant::now();
    dns.set_failing(true);
    eventually(
        Duration::from_secs(30),
        "querier logs failed SRV resolutions",
        || async {
            let n = failures(&q) - before;
            Ok((
                (n >= 3).then_some(()),
                format!("{n} failed resolutions logged"),
            ))
        },
    )
    .await?;
    println!(
        "DNS SRV: three SERVFAIL resolutions logged after {:?}",
        t.elapsed()
    );
    let s = q.stores().await?;
    ensure!(
        s.len() == 1 && s[0].name == a.addr() && s[0].healthy,
        "a SERVFAIL should keep the last resolved endpoints: {s:?}"
    );
    ensure!(
        http_series(&q, &[]).await?.0 == a_sets,
        "series during the DNS failure"
    );
    dns.set_failing(false);
    dns.set_srv(
        srv,
        &[
            ("store1.test", other.proc.grpc.port()),
            ("store2.test", a.proc.grpc.port()),
        ],
    );
    wait_for_view(
        &q,
        &[other.addr(), a.addr()],
        &both,
        "DNS SRV: answers again after the SERVFAILs",
    )
    .await?;

    // dns+host:port: the A records of a name, through the same nameserver.
    let q2 = SluiceQuery::start(&[
        format!("--endpoint=dns+store3.test:{}", other.proc.grpc.port()),
        format!("--dns.nameserver={}", dns.addr),
        "--endpoint.info-timeout=500ms".into(),
    ])
    .await?;
    wait_for_view(&q2, &[], &[], "dns+ name that does not exist yet").await?;
    dns.set_a("store3.test", Some(&[Ipv4Addr::LOCALHOST]));
    wait_for_view(&q2, &[other.addr()], &other_sets, "dns+ A record added").await?;
    dns.set_a("store3.test", None);
    wait_for_view(&q2, &[], &[], "dns+ A record removed").await?;

    let log = dns.queries();
    let mut kinds: BTreeMap<(String, u16, &str, bool), usize> = BTreeMap::new();
    for l in &log {
        *kinds
            .entry((l.name.clone(), l.qtype, l.transport, l.edns))
            .or_default() += 1;
    }
    println!("DNS queries (name, type, transport, EDNS) → count: {kinds:?}");
    ensure!(
        log.iter().any(|l| l.qtype == 33),
        "no SRV query reached the test's DNS server"
    );
    Ok(())
}

// --- 5. A real Prometheus API client ----------------------------------------------------------------------------

async fn promtool(args: &[String]) -> Result<String> {
    let bin = sluice_e2e::tools::promtool()?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .with_context(|| format!("promtool {args:?} did not finish in 60 s"))??;
    if !out.status.success() {
        bail!(
            "promtool {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `promtool query series` and `promtool query labels` (Prometheus's Go API client) against the querier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_the_querier() -> Result<()> {
    let c = Cluster::start().await?;
    let q = querier(&c.addrs(), &[]).await?;
    let range = [
        format!("--start={}", T0_MS / 1000),
        format!("--end={}", END_MS / 1000),
    ];
    let all = held_all();

    let mut args = vec![
        "query".to_owned(),
        "series".into(),
        q.url(),
        "--match=up".into(),
    ];
    args.extend(range.iter().cloned());
    let out = promtool(&args).await?;
    let mut got = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        got.push(
            parse_label_set(line.trim())
                .with_context(|| format!("promtool series output line {line:?}"))?,
        );
    }
    got.sort();
    let want: Vec<Labels> = sets_without(&all, &[REPLICA])
        .into_iter()
        .filter(|l| label_value(l, "__name__") == "up")
        .collect();
    ensure!(
        want.len() == 5 && got == want,
        "promtool query series --match=up:\n got {got:?}\nwant {want:?}\n{out}"
    );

    let mut args = vec!["query".to_owned(), "labels".into(), q.url(), "job".into()];
    args.extend(range.iter().cloned());
    let out = promtool(&args).await?;
    let got: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    ensure!(
        got == ["api", "db", "node"],
        "promtool query labels job: {got:?}\n{out}"
    );

    let mut args = vec![
        "query".to_owned(),
        "labels".into(),
        q.url(),
        "instance".into(),
        r#"--match=up{cluster="b"}"#.into(),
    ];
    args.extend(range.iter().cloned());
    let out = promtool(&args).await?;
    let got: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    ensure!(
        got == ["b-host-1:8080", "db-1:9187"],
        "promtool query labels instance --match: {got:?}\n{out}"
    );
    Ok(())
}
