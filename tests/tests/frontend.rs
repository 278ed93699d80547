//! `sluice query-frontend` end to end, real processes on 127.0.0.1: stores over promtool-written blocks (an HA pair
//! of cluster "a"), a querier, and a frontend with an in-memory results cache in front of it.
//! - Differential: a seeded random set of dashboard-style range queries (ranges, steps, `@`, offsets, dedup on and
//!   off, partial response) through the frontend cold, then warm, and straight to the querier: every answer equal,
//!   sample for sample (the exact value strings), and the warm pass answered from the cache.
//! - A store added behind the querier (another cluster's data, for time ranges already cached): the next answers
//!   through the frontend equal the querier's again, with no flush.
//! - The same differential runs with a real `memcached` and a real `redis-server` as the cache; memcached killed
//!   mid-run degrades to uncached answers (equal still) with a warning in the log.
//! - Retries against a downstream served by the test: 503, 503, then 200 is answered; a 400 is not retried.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use sluice_e2e::bucket::{fs_objstore_yaml, put_block};
use sluice_e2e::fixture::{self, END_MS, HaReplica, T0_MS};
use sluice_e2e::process::eventually;
use sluice_e2e::{Fixture, SluiceFrontend, SluiceQuery, SluiceStore, labels};
use tempfile::TempDir;

struct Fixtures {
    a: Fixture,
    b: Fixture,
    other: Fixture,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sluice-e2e-frontend-{}", std::process::id()));
        let make = |name: &str, om: Result<fixture::OpenMetrics>| {
            om.and_then(|om| Fixture::from_openmetrics(om, &dir.join(name)))
                .unwrap_or_else(|e| panic!("fixture {name}: {e:#}"))
        };
        Fixtures {
            a: make("a", fixture::ha_openmetrics(HaReplica::A)),
            b: make("b", fixture::ha_openmetrics(HaReplica::B)),
            other: make("other", fixture::other_cluster_openmetrics()),
        }
    })
}

async fn store(fx: &Fixture, ext: &[(&str, &str)]) -> Result<(SluiceStore, TempDir)> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-frontend-bucket-")
        .tempdir()?;
    let ext = labels(ext);
    for b in &fx.blocks {
        put_block(dir.path(), b, Some(&ext))?;
    }
    let s = SluiceStore::start_ready(&fs_objstore_yaml(dir.path()), &[]).await?;
    Ok((s, dir))
}

/// A tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// A range query's form parameters.
type Params = Vec<(&'static str, String)>;

fn queries(n: usize) -> Vec<Params> {
    let exprs = [
        "up".to_string(),
        "sum by (job) (up)".into(),
        "rate(http_requests_total[5m])".into(),
        "sum by (job) (rate(http_requests_total[5m]))".into(),
        "max_over_time(up[10m])".into(),
        "count(up)".into(),
        "http_requests_total offset 10m".into(),
        "avg_over_time(up[1h:5m])".into(),
        format!("up @ {}", (T0_MS + 3_600_000) / 1000),
        "topk(2, rate(http_requests_total[5m]))".into(),
        "increase(http_requests_total[15m]) > 100".into(),
        "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")".into(),
    ];
    let steps = [15_000i64, 30_000, 60_000, 120_000, 300_000, 420_000];
    let mut rng = Rng(0x5eed_1e55_f00d);
    (0..n)
        .map(|_| {
            let step = *rng.pick(&steps);
            let span = END_MS - T0_MS;
            let len = 600_000 + (rng.next() as i64).rem_euclid(span - 600_000);
            let start = T0_MS - 1_800_000 + (rng.next() as i64).rem_euclid(span - len + 1_800_000);
            // Dashboards ask on the step grid (the frontend aligns, the querier would not).
            let start = start.div_euclid(step) * step;
            let end = (start + len).div_euclid(step) * step;
            let mut p: Params = vec![
                ("query", rng.pick(&exprs).clone()),
                ("start", format!("{}", start / 1000)),
                ("end", format!("{}", end / 1000)),
                ("step", format!("{}", step / 1000)),
            ];
            match rng.next() % 4 {
                0 => p.push(("dedup", "false".into())),
                1 => p.push(("partial_response", "false".into())),
                _ => {}
            }
            p
        })
        .collect()
}

async fn post(url: &str, p: &Params) -> Result<(u16, Value)> {
    let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/query_range"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(sluice_e2e::api::form(&pairs))
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let code = r.status().as_u16();
    let text = r.text().await?;
    Ok((
        code,
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?,
    ))
}

/// The answer with series in a canonical order, every value string as written.
fn canonical(v: &Value) -> Result<(String, BTreeMap<String, (Value, Value)>)> {
    ensure!(v["status"] == "success", "not a success: {v}");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().context("result")? {
        let metric: BTreeMap<String, Value> = serde_json::from_value(s["metric"].clone())?;
        out.insert(
            serde_json::to_string(&metric)?,
            (s["values"].clone(), s["histograms"].clone()),
        );
    }
    Ok((
        v["data"]["resultType"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        out,
    ))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn differential(
    q: &SluiceQuery,
    fe: &SluiceFrontend,
    set: &[Params],
    what: &str,
) -> Result<()> {
    for (i, p) in set.iter().enumerate() {
        let (qc, qv) = post(&q.url(), p).await?;
        let (fc, fv) = post(&fe.url(), p).await?;
        ensure!(
            qc == fc,
            "{what} #{i} {p:?}: status querier {qc} frontend {fc}: {fv}"
        );
        if qc != 200 {
            continue;
        }
        let (a, b) = (canonical(&qv)?, canonical(&fv)?);
        ensure!(
            a == b,
            "{what} #{i} {p:?}: answers differ\nquerier:  {}\nfrontend: {}",
            serde_json::to_string(&qv["data"])?
                .chars()
                .take(600)
                .collect::<String>(),
            serde_json::to_string(&fv["data"])?
                .chars()
                .take(600)
                .collect::<String>()
        );
        ensure!(
            qv["warnings"] == fv["warnings"],
            "{what} #{i}: warnings differ: {qv} {fv}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_answers_equal_the_querier_cold_warm_and_after_a_new_store() -> Result<()> {
    let f = fixtures();
    let (sa, _ba) = store(&f.a, &[("cluster", "a"), ("replica", "A")]).await?;
    let (sb, _bb) = store(&f.b, &[("cluster", "a"), ("replica", "B")]).await?;
    let sd = tempfile::tempdir()?;
    let sd_file = sd.path().join("endpoints.yml");
    let write_sd = |addrs: &[String]| -> Result<()> {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        let tmp = sd.path().join("endpoints.yml.tmp");
        std::fs::write(&tmp, format!("- targets: [{}]\n", list.join(", ")))?;
        std::fs::rename(&tmp, &sd_file)?;
        Ok(())
    };
    write_sd(&[sa.grpc.to_string(), sb.grpc.to_string()])?;
    let q = SluiceQuery::start(&[
        format!("--store.sd-files={}", sd_file.display()),
        "--query.replica-label=replica".into(),
    ])
    .await?;
    wait_stores(&q, 2).await?;
    let fe = SluiceFrontend::start_ready(
        &q.url(),
        &[
            "--query-range.split-interval=1h".into(),
            "--query-range.response-cache-config=type: IN-MEMORY\nconfig:\n  max_size: 256MB\n"
                .into(),
            "--query-frontend.downstream-check-interval=500ms".into(),
        ],
    )
    .await?;

    let set = queries(200);
    differential(&q, &fe, &set, "cold").await?;
    let m = fe.metrics().await?;
    let (hits_cold, splits) = (
        metric(&m, "cortex_cache_hits_total"),
        metric(&m, "thanos_frontend_split_queries_total"),
    );
    ensure!(
        splits > set.len() as f64,
        "queries were split: {splits} pieces for {} queries",
        set.len()
    );
    differential(&q, &fe, &set, "warm").await?;
    let m = fe.metrics().await?;
    let hits_warm = metric(&m, "cortex_cache_hits_total") - hits_cold;
    ensure!(
        hits_warm >= set.len() as f64,
        "the warm pass was answered from the cache: {hits_warm} hits for {} queries",
        set.len()
    );

    // Another cluster's store joins for the same (cached) time ranges.
    let (so, _bo) = store(&f.other, &[("cluster", "b")]).await?;
    write_sd(&[
        sa.grpc.to_string(),
        sb.grpc.to_string(),
        so.grpc.to_string(),
    ])?;
    wait_stores(&q, 3).await?;
    // The frontend checks the store set every 500 ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, all) = post(
        &q.url(),
        &vec![
            ("query", "count(up)".into()),
            ("start", format!("{}", T0_MS / 1000)),
            ("end", format!("{}", T0_MS / 1000 + 3600)),
            ("step", "60".into()),
        ],
    )
    .await?;
    ensure!(
        all["data"]["result"][0]["values"][0][1] == "5",
        "the querier counts the new cluster's targets: {all}"
    );
    differential(&q, &fe, &set[..60], "after a new store").await?;
    Ok(())
}

/// A downstream served by the test: `/api/v1/query` fails with 503 `fail` times, then answers; `/api/v1/labels`
/// answers 400.
async fn flaky_downstream(
    fail: usize,
) -> Result<(String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let c2 = calls.clone();
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            axum::routing::get(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fail {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"try later\"}".to_string())
                    } else {
                        (axum::http::StatusCode::OK, "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"1\"]}}".to_string())
                    }
                }
            }),
        )
        .route(
            "/api/v1/labels",
            axum::routing::get(move || {
                c2.fetch_add(1, Ordering::SeqCst);
                async { (axum::http::StatusCode::BAD_REQUEST, "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"no\"}") }
            }),
        )
        .route("/-/ready", axum::routing::get(|| async { "ready" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok((url, calls, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_retries_5xx_but_not_4xx() -> Result<()> {
    let (url, calls, task) = flaky_downstream(2).await?;
    let fe = SluiceFrontend::start_ready(&url, &[]).await?;
    let (code, body) = fe.http_get("/api/v1/query?query=1").await?;
    ensure!(
        code == 200 && body.contains("success"),
        "after two 503s: {code} {body}"
    );
    ensure!(
        calls.load(Ordering::SeqCst) == 3,
        "three tries: {}",
        calls.load(Ordering::SeqCst)
    );
    let before = calls.load(Ordering::SeqCst);
    let (code, body) = fe.http_get("/api/v1/labels").await?;
    ensure!(
        code == 400 && body.contains("bad_data"),
        "a 400 passes through: {code} {body}"
    );
    ensure!(
        calls.load(Ordering::SeqCst) == before + 1,
        "a 400 is not retried"
    );
    task.abort();
    Ok(())
}

/// A cache server started by a test (`memcached` or `redis-server` from Debian), killed on drop.
struct CacheServer {
    child: std::process::Child,
    addr: String,
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CacheServer {
    async fn start(bin: &str, args: &dyn Fn(u16) -> Vec<String>) -> Result<CacheServer> {
        let path = sluice_e2e::tools::which(bin)
            .with_context(|| format!("{bin} not found: apt-get install memcached redis-server"))?;
        let port = sluice_e2e::process::free_port()?;
        let child = std::process::Command::new(path)
            .args(args(port))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let addr = format!("127.0.0.1:{port}");
        eventually(
            Duration::from_secs(20),
            &format!("{bin} listening"),
            || async {
                Ok((
                    tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ()),
                    String::new(),
                ))
            },
        )
        .await?;
        Ok(CacheServer { child, addr })
    }
}

/// Waits until the querier lists `n` endpoints, all healthy.
async fn wait_stores(q: &SluiceQuery, n: usize) -> Result<()> {
    eventually(
        Duration::from_secs(30),
        &format!("querier sees {n} healthy stores"),
        || async {
            let s = q.stores().await?;
            Ok((
                (s.len() == n && s.iter().all(|s| s.healthy)).then_some(()),
                format!("{s:?}"),
            ))
        },
    )
    .await
}

/// The HA pair of cluster "a" (two stores) behind a querier deduplicating by `replica`.
struct HaPair {
    q: SluiceQuery,
    _stores: Vec<SluiceStore>,
    _buckets: Vec<TempDir>,
}

async fn ha_pair() -> Result<HaPair> {
    let f = fixtures();
    let (sa, ba) = store(&f.a, &[("cluster", "a"), ("replica", "A")]).await?;
    let (sb, bb) = store(&f.b, &[("cluster", "a"), ("replica", "B")]).await?;
    let q = SluiceQuery::start(&[
        format!("--endpoint={}", sa.grpc),
        format!("--endpoint={}", sb.grpc),
        "--query.replica-label=replica".into(),
    ])
    .await?;
    wait_stores(&q, 2).await?;
    Ok(HaPair {
        q,
        _stores: vec![sa, sb],
        _buckets: vec![ba, bb],
    })
}

/// The HA pair + a frontend with `cache_yaml`; cold and warm passes equal the querier, the warm one hit.
async fn differential_with(
    cache_yaml: &str,
    n: usize,
    extra: &[String],
) -> Result<(HaPair, SluiceFrontend, Vec<Params>)> {
    let pair = ha_pair().await?;
    let q = &pair.q;
    let mut args = vec![
        "--query-range.split-interval=1h".to_string(),
        format!("--query-range.response-cache-config={cache_yaml}"),
    ];
    args.extend(extra.iter().cloned());
    let fe = SluiceFrontend::start_ready(&q.url(), &args).await?;
    let set = queries(n);
    differential(&q, &fe, &set, "cold").await?;
    let before = metric(&fe.metrics().await?, "cortex_cache_hits_total");
    differential(&q, &fe, &set, "warm").await?;
    let hits = metric(&fe.metrics().await?, "cortex_cache_hits_total") - before;
    ensure!(
        hits >= n as f64,
        "warm pass from the cache: {hits} hits for {n} queries"
    );
    Ok((pair, fe, set))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_cache_equal_answers_and_survives_memcached_dying() -> Result<()> {
    let mut mc = CacheServer::start("memcached", &|port| {
        vec![
            // memcached refuses to run as root without a user to switch to.
            "-u".into(),
            "nobody".into(),
            "-l".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-U".into(),
            "0".into(),
            "-m".into(),
            "64".into(),
        ]
    })
    .await?;
    let yaml = format!(
        "type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n  timeout: 1s\n",
        mc.addr
    );
    let (pair, fe, set) = differential_with(&yaml, 80, &[]).await?;
    let q = &pair.q;
    let _ = mc.child.kill();
    let _ = mc.child.wait();
    differential(&q, &fe, &set, "memcached gone").await?;
    ensure!(
        fe.logs().contains("results cache read failed"),
        "a dead memcached is logged:\n{}",
        fe.logs()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_equal_answers() -> Result<()> {
    let redis = CacheServer::start("redis-server", &|port| {
        vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ]
    })
    .await?;
    let yaml = format!("type: REDIS\nconfig:\n  addr: {}\n  db: 1\n", redis.addr);
    differential_with(&yaml, 80, &[]).await?;
    Ok(())
}

/// `--query-frontend.vertical-shards=3`: shardable queries (`sum by (job) (…)`) go as three copies with Thanos'
/// shard_info, and every answer still equals the querier's, cold and warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertically_sharded_answers_equal_the_querier() -> Result<()> {
    let (pair, fe, _set) = differential_with(
        "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n",
        80,
        &["--query-frontend.vertical-shards=3".into()],
    )
    .await?;
    let q = &pair.q;
    // The querier honours shard_info: the shards' series are disjoint and together the whole answer.
    let base: Params = vec![
        ("query", "sum by (instance) (up)".into()),
        ("start", format!("{}", T0_MS / 1000)),
        ("end", format!("{}", T0_MS / 1000 + 1800)),
        ("step", "60".into()),
    ];
    let (_, whole) = post(&q.url(), &base).await?;
    let whole = canonical(&whole)?.1;
    let mut union = BTreeMap::new();
    for i in 0..3 {
        let mut p = base.clone();
        p.push((
            "shard_info",
            format!(
                "{{\"shard_index\":{i},\"total_shards\":3,\"by\":true,\"labels\":[\"instance\"]}}"
            ),
        ));
        let (code, v) = post(&q.url(), &p).await?;
        ensure!(code == 200, "shard {i}: {v}");
        for (k, s) in canonical(&v)?.1 {
            ensure!(
                union.insert(k.clone(), s).is_none(),
                "series {k} in two shards"
            );
        }
    }
    ensure!(
        union == whole && whole.len() == 3,
        "the shards together: {union:?} vs {whole:?}"
    );
    let m = fe.metrics().await?;
    let sharded = m
        .lines()
        .find(|l| {
            l.starts_with("thanos_frontend_sharding_middleware_queries_total{shardable=\"true\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ensure!(sharded > 0.0, "some queries were sharded: {m}");
    Ok(())
}

/// Label names, label values and series with a time range go split by `--labels.split-interval` (1h here), their
/// finished pieces cached: cold and warm, every answer equals the querier's (values, order, warnings, `limit`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_series_split_and_cached_equal_the_querier() -> Result<()> {
    let pair = ha_pair().await?;
    let q = &pair.q;
    let fe = SluiceFrontend::start_ready(
        &q.url(),
        &[
            "--labels.split-interval=1h".into(),
            "--labels.response-cache-config=type: IN-MEMORY\nconfig:\n  max_size: 64MB\n".into(),
        ],
    )
    .await?;
    let paths = [
        "/api/v1/labels",
        "/api/v1/label/instance/values",
        "/api/v1/label/__name__/values",
        "/api/v1/series",
    ];
    let matchers = ["", "up", "{job=\"api\"}", "http_requests_total"];
    let mut rng = Rng(0x1abe1);
    let mut set: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    for _ in 0..60 {
        let path = *rng.pick(&paths);
        let start = T0_MS - 1_800_000 + (rng.next() as i64).rem_euclid(7 * 3_600_000);
        let end = start + (rng.next() as i64).rem_euclid(5 * 3_600_000);
        let mut p = vec![
            ("start", format!("{}", start / 1000)),
            ("end", format!("{}", end / 1000)),
        ];
        let m = *rng.pick(&matchers);
        if !m.is_empty() || path == "/api/v1/series" {
            p.push((
                "match[]",
                if m.is_empty() {
                    "up".to_string()
                } else {
                    m.to_string()
                },
            ));
        }
        match rng.next() % 4 {
            0 => p.push(("limit", "2".into())),
            1 => p.push(("dedup", "false".into())),
            _ => {}
        }
        set.push((path, p));
    }
    // A range of millions of intervals is forwarded whole, not split into millions of pieces.
    set.push((
        "/api/v1/labels",
        vec![("start", "-1e15".to_string()), ("end", "1e15".to_string())],
    ));
    let get = |base: String, path: &'static str, p: Vec<(&'static str, String)>| async move {
        let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = reqwest::Client::new()
            .get(format!("{base}{path}?{}", sluice_e2e::api::form(&pairs)))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let code = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.text().await?)?;
        anyhow::Ok((code, v))
    };
    for pass in ["cold", "warm"] {
        for (i, (path, p)) in set.iter().enumerate() {
            let (qc, qv) = get(q.url(), path, p.clone()).await?;
            let (fc, fv) = get(fe.url(), path, p.clone()).await?;
            ensure!(
                qc == fc && qv == fv,
                "{pass} #{i} {path} {p:?}:\nquerier  {qc} {qv}\nfrontend {fc} {fv}"
            );
        }
    }
    let m = fe.metrics().await?;
    ensure!(
        metric(&m, "cortex_cache_hits_total") > 0.0,
        "label pieces served from the cache: {m}"
    );
    Ok(())
}
