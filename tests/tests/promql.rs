//! Differential tests of the PromQL engine: the same promtool-written blocks loaded by a real Prometheus 2.42 and
//! by `sluice store` + `sluice query` (filesystem bucket), the same instant and range queries sent to both over
//! HTTP, and the answers compared series by series (values within 1e-6 relative). Evaluation times are offset by
//! 7.5 s from the 15 s sample grid, so no window edge falls on a sample: Prometheus 2.x closes range windows on
//! the left and 3.x does not, and the two agree everywhere else. Also: the real `promtool query instant` and
//! `promtool query range` as API clients, and the API's error shapes.
//!
//! Needs `promtool` and `prometheus` (`apt-get install prometheus`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use sluice_e2e::answers::{Normalized, normalize};
use sluice_e2e::bucket::{copy_dir, fs_objstore_yaml, put_block};
use sluice_e2e::fixture::{self, Family, Kind, T0, T0_MS, create_blocks, om_timestamp, om_value};
use sluice_e2e::process::{eventually, free_port};
use sluice_e2e::{Block, SluiceQuery, SluiceStore, tools};
use tempfile::TempDir;

/// Samples per series: 6 h at 15 s.
const N: i64 = 1440;
const STEP_S: i64 = 15;

fn base(job: &str, instance: &str) -> Vec<(String, String)> {
    vec![
        ("instance".to_owned(), instance.to_owned()),
        ("job".to_owned(), job.to_owned()),
    ]
}

/// Counters with resets over three jobs, a gauge, and a classic histogram.
fn families() -> Vec<Family> {
    let ts = |i: i64| om_timestamp((T0 + i * STEP_S) * 1000);
    let mut req = Family {
        name: "demo_requests",
        kind: Kind::Counter,
        help: "Requests.",
        series: Vec::new(),
    };
    for (k, (job, inst)) in [
        ("api", "a-1:80"),
        ("api", "a-2:80"),
        ("api", "a-3:80"),
        ("batch", "b-1:80"),
        ("batch", "b-2:80"),
        ("db", "d-1:80"),
    ]
    .iter()
    .enumerate()
    {
        let mut v = 0.0f64;
        let mut s = Vec::new();
        for i in 0..N {
            if i > 0 && i % (400 + 37 * k as i64) == 0 {
                v = (i % 5) as f64; // counter reset
            } else {
                // Distinct per series so topk/bottomk never meet ties (their order is unspecified).
                v += 1.0 + ((i * (k as i64 + 3)) % 11) as f64 * 0.75 + k as f64 * 0.0137;
            }
            s.push((ts(i), om_value(v)));
        }
        req.series.push((base(job, inst), s));
    }
    let mut temp = Family {
        name: "demo_temperature",
        kind: Kind::Gauge,
        help: "Temperature.",
        series: Vec::new(),
    };
    for (k, inst) in ["t-1:80", "t-2:80", "t-3:80"].iter().enumerate() {
        let s = (0..N)
            .map(|i| {
                let x = 20.0
                    + 3.0 * k as f64
                    + 5.0
                        * (2.0 * std::f64::consts::PI * i as f64 / (180.0 + 40.0 * k as f64)).sin();
                (ts(i), format!("{x:.3}"))
            })
            .collect();
        temp.series.push((base("sensor", inst), s));
    }
    // A classic histogram as cumulative bucket counters.
    let mut hist = Family {
        name: "demo_latency_seconds_bucket",
        kind: Kind::Counter,
        help: "Latency buckets.",
        series: Vec::new(),
    };
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for inst in ["a-1:80", "a-2:80"] {
        let mut counts = [0.0f64; 7];
        let mut per_bucket: Vec<Vec<(String, String)>> = vec![Vec::new(); 7];
        for i in 0..N {
            // Observations this scrape per bucket (non-cumulative), then cumulate.
            let mut cum = 0.0;
            for (b, c) in counts.iter_mut().enumerate() {
                let add = ((i * (b as i64 + 2) + inst.len() as i64) % (7 - b as i64 + 3)) as f64;
                cum += add;
                *c += cum;
            }
            for (b, c) in counts.iter().enumerate() {
                per_bucket[b].push((ts(i), om_value(*c)));
            }
        }
        for (b, s) in per_bucket.into_iter().enumerate() {
            let mut l = base("api", inst);
            l.push(("le".to_owned(), bounds[b].to_owned()));
            l.sort();
            hist.series.push((l, s));
        }
    }
    vec![req, temp, hist]
}

fn fixture_blocks() -> &'static Vec<Block> {
    static B: OnceLock<Vec<Block>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sluice-e2e-promql-{}", std::process::id()));
        fixture::render(&families())
            .and_then(|om| create_blocks(&om, &dir))
            .unwrap_or_else(|e| panic!("creating the PromQL fixture failed: {e:#}"))
    })
}

/// A real Prometheus over a copy of the blocks, no scraping.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        return Ok(PathBuf::from(p));
    }
    tools::which("prometheus").context("prometheus not found in PATH: `apt-get install prometheus`")
}

impl Prometheus {
    async fn start(blocks: &[Block]) -> Result<Prometheus> {
        let bin = prometheus_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-prometheus-")
            .tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        for b in blocks {
            copy_dir(&b.dir, &data.join(&b.ulid))?;
        }
        let cfg = dir.path().join("prometheus.yml");
        fs::write(&cfg, "global:\n  scrape_interval: 1h\nscrape_configs: []\n")?;
        let port = free_port()?;
        let log = fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", p.url);
        eventually(Duration::from_secs(60), "prometheus /-/ready", || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let ok = client
                    .get(&ready)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok((ok.then_some(()), String::new()))
            }
        })
        .await?;
        Ok(p)
    }
}

struct Env {
    prom: Prometheus,
    query: SluiceQuery,
    _store: SluiceStore,
    _bucket: TempDir,
}

async fn env() -> Result<Env> {
    let blocks = fixture_blocks();
    let bucket = tempfile::Builder::new()
        .prefix("sluice-promql-bucket-")
        .tempdir()?;
    for b in blocks {
        put_block(bucket.path(), b, None)?;
    }
    let objstore = fs_objstore_yaml(bucket.path());
    let (prom, store) = tokio::try_join!(
        Prometheus::start(blocks),
        SluiceStore::start_ready(&objstore, &[])
    )?;
    let query = SluiceQuery::start(&[format!("--endpoint={}", store.grpc)]).await?;
    eventually(
        Duration::from_secs(30),
        "querier sees the store",
        || async {
            let s = query.stores().await?;
            Ok((
                (s.len() == 1 && s[0].healthy).then_some(()),
                format!("{s:?}"),
            ))
        },
    )
    .await?;
    Ok(Env {
        prom,
        query,
        _store: store,
        _bucket: bucket,
    })
}

async fn get_json(url: &str, params: &[(&str, String)]) -> Result<(u16, Value)> {
    let client = reqwest::Client::new();
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let full = if pairs.is_empty() {
        url.to_owned()
    } else {
        format!("{url}?{}", sluice_e2e::api::form(&pairs))
    };
    let r = client
        .get(&full)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let code = r.status().as_u16();
    let text = r.text().await?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("GET {url} {params:?}: not JSON: {text}"))?;
    Ok((code, v))
}

/// A result normalized for comparison: label set (sorted JSON) → points.
/// Values may differ in the last bits (summation order).
const REL: f64 = 1e-6;

fn compare(what: &str, want: &Normalized, got: &Normalized) -> Result<()> {
    sluice_e2e::answers::compare(what, want, got, REL)
}

const QUERIES: &[&str] = &[
    "demo_requests_total",
    "demo_temperature offset 17m",
    "rate(demo_requests_total[5m])",
    "sum by (job) (rate(demo_requests_total[5m]))",
    "sum without (instance) (irate(demo_requests_total[2m]))",
    "increase(demo_requests_total[1h])",
    "delta(demo_temperature[10m])",
    "idelta(demo_temperature[5m])",
    "deriv(demo_temperature[10m])",
    "predict_linear(demo_temperature[30m], 600)",
    "avg_over_time(demo_temperature[15m])",
    "max_over_time(demo_temperature[7m]) - min_over_time(demo_temperature[7m])",
    "stddev_over_time(demo_temperature[20m])",
    "stdvar_over_time(demo_temperature[20m])",
    "quantile_over_time(0.9, demo_temperature[30m])",
    "count_over_time(demo_requests_total[4m])",
    "sum_over_time(demo_temperature[3m])",
    "last_over_time(demo_temperature[3m])",
    "changes(demo_temperature[30m])",
    "resets(demo_requests_total[2h])",
    "histogram_quantile(0.9, sum by (le) (rate(demo_latency_seconds_bucket_total[5m])))",
    "histogram_quantile(0.5, rate(demo_latency_seconds_bucket_total[10m]))",
    "topk(2, rate(demo_requests_total[5m]))",
    "bottomk by (job) (1, demo_requests_total)",
    "demo_requests_total / on(job) group_left sum by (job) (demo_requests_total)",
    "rate(demo_requests_total[5m]) * on(instance) group_left(job) demo_requests_total > 100",
    "demo_temperature > 22",
    "demo_temperature > bool 22",
    "demo_requests_total and on(job) demo_temperature or demo_temperature",
    "demo_requests_total unless on(job) demo_requests_total{instance=\"a-1:80\"}",
    "count_values(\"v\", round(demo_temperature))",
    "quantile by (job) (0.75, rate(demo_requests_total[5m]))",
    "avg by (job) (demo_requests_total)",
    "stddev(demo_temperature)",
    "count(demo_requests_total) by (job)",
    "group by (job) (demo_requests_total)",
    "label_replace(demo_requests_total, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_join(demo_temperature, \"both\", \"/\", \"job\", \"instance\")",
    // Subquery steps are aligned to the epoch; 60001 ms keeps the inner evaluation times off the 15 s sample
    // grid, where 2.x (left-closed) and 3.x (left-open) windows legitimately differ.
    "max_over_time(rate(demo_requests_total[5m])[30m:60001ms])",
    "avg_over_time(sum by (job) (demo_requests_total)[10m:])",
    "rate(demo_requests_total[5m] offset 30m)",
    "clamp(demo_temperature, 19, 22)",
    "round(demo_temperature, 0.5) + abs(-demo_temperature) - ceil(demo_temperature) * floor(demo_temperature) / 10",
    "exp(demo_temperature / 10) ^ 0.5 % 3",
    "sqrt(demo_temperature) + ln(demo_temperature) + log2(demo_temperature) + log10(demo_temperature)",
    "timestamp(demo_temperature)",
    "hour(timestamp(demo_temperature)) + minute(timestamp(demo_temperature)) + day_of_week() + month()",
    "scalar(sum(demo_temperature)) * vector(2)",
    "absent(nonexistent_metric{job=\"x\"})",
    "absent_over_time(demo_temperature[5m])",
    "time() - timestamp(demo_requests_total)",
    "sort_desc(sum by (instance) (demo_requests_total))",
    "-demo_temperature",
    "1 + 2 * 3",
];

/// Evaluation times and ranges, all 7.5 s off the sample grid.
fn instants() -> Vec<i64> {
    [31, 95, 200, 347]
        .iter()
        .map(|m| T0_MS + m * 60_000 + 7_500)
        .collect()
}

fn fmt_s(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_prometheus() -> Result<()> {
    let e = env().await?;
    let mut failures = Vec::new();
    let mut checked = 0;
    for q in QUERIES {
        for &t in &instants() {
            let p = [("query", (*q).to_owned()), ("time", fmt_s(t))];
            let (_, want) = get_json(&format!("{}/api/v1/query", e.prom.url), &p).await?;
            let (_, got) = get_json(&format!("{}/api/v1/query", e.query.url()), &p).await?;
            let r = normalize(&want).and_then(|w| {
                compare(
                    &format!("instant {q} @ {}", fmt_s(t)),
                    &w,
                    &normalize(&got)?,
                )
            });
            if let Err(err) = r {
                failures.push(format!("{err:#}"));
            }
            checked += 1;
        }
        let (start, end) = (T0_MS + 20 * 60_000 + 7_500, T0_MS + 340 * 60_000 + 7_500);
        for step in ["60", "97"] {
            let p = [
                ("query", (*q).to_owned()),
                ("start", fmt_s(start)),
                ("end", fmt_s(end)),
                ("step", step.to_owned()),
            ];
            let (_, want) = get_json(&format!("{}/api/v1/query_range", e.prom.url), &p).await?;
            let (_, got) = get_json(&format!("{}/api/v1/query_range", e.query.url()), &p).await?;
            let r = normalize(&want)
                .and_then(|w| compare(&format!("range {q} step {step}"), &w, &normalize(&got)?));
            if let Err(err) = r {
                failures.push(format!("{err:#}"));
            }
            checked += 1;
        }
    }
    println!(
        "{checked} query evaluations compared with Prometheus, {} differ",
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// Errors have Prometheus' shape and status codes, and Grafana's data-source check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_and_status_endpoints() -> Result<()> {
    let e = env().await?;
    let q = e.query.url();
    let (code, v) = get_json(&format!("{q}/api/v1/query"), &[("query", "sum(".into())]).await?;
    ensure!(
        code == 400 && v["errorType"] == "bad_data",
        "parse error: {code} {v}"
    );
    let (code, v) = get_json(
        &format!("{q}/api/v1/query_range"),
        &[
            ("query", "up".into()),
            ("start", "10".into()),
            ("end", "5".into()),
            ("step", "1".into()),
        ],
    )
    .await?;
    ensure!(
        code == 400 && v["errorType"] == "bad_data",
        "end before start: {code} {v}"
    );
    let (code, v) = get_json(
        &format!("{q}/api/v1/query_range"),
        &[
            ("query", "up".into()),
            ("start", "0".into()),
            ("end", "100000".into()),
            ("step", "1".into()),
        ],
    )
    .await?;
    ensure!(
        code == 400
            && v["error"]
                .as_str()
                .is_some_and(|s| s.contains("11,000 points")),
        "too many points: {code} {v}"
    );
    // The same expression Prometheus rejects at execution time.
    let (code, v) = get_json(
        &format!("{q}/api/v1/query"),
        &[
            (
                "query",
                "demo_requests_total + on(job) demo_requests_total".into(),
            ),
            ("time", fmt_s(T0_MS + 3_600_000)),
        ],
    )
    .await?;
    ensure!(
        code == 422 && v["errorType"] == "execution",
        "many-to-many: {code} {v}"
    );
    let (code, v) = get_json(&format!("{q}/api/v1/status/buildinfo"), &[]).await?;
    ensure!(
        code == 200 && v["data"]["version"].is_string(),
        "buildinfo: {code} {v}"
    );
    // Stats on request.
    let (code, v) = get_json(
        &format!("{q}/api/v1/query"),
        &[
            ("query", "sum(demo_temperature)".into()),
            ("time", fmt_s(T0_MS + 3_600_000)),
            ("stats", "all".into()),
        ],
    )
    .await?;
    ensure!(
        code == 200
            && v["data"]["stats"]["samples"]["totalQueryableSamples"]
                .as_u64()
                .is_some_and(|n| n > 0),
        "stats: {code} {v}"
    );
    Ok(())
}

/// Keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_query_and_status_endpoints_match_prometheus() -> Result<()> {
    let e = env().await?;
    let (q, p) = (e.query.url(), e.prom.url.clone());
    // format_query: byte-identical pretty printing, short and long (split over lines past 100 characters).
    let exprs = [
        "sum(rate(demo_requests_total{job=\"api\"}[5m])) by (instance)",
        "a+b*c",
        "(a + b) * c",
        "foo offset 5m @ 100",
        "x[5m:1m]",
        "-x",
        "a and on(b) c",
        "topk(3, x)",
        "count_values(\"v\", x)",
        "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
        "histogram_quantile(0.9, sum by (le) (rate(demo_latency_seconds_bucket{job=\"api\"}[5m])))",
        "sum by (job, instance) (rate(demo_requests_total{job=\"api\",instance=~\"a.*\"}[5m])) / ignoring (code) group_left sum by (job, instance) (rate(demo_requests_total[5m])) > bool 0.5",
        "quantile_over_time(0.5, demo_temperature{instance=\"a-very-long-instance-name:9100\",job=\"node-exporter-of-the-cluster\"}[1h] offset 1d)",
    ];
    for expr in exprs {
        let (pc, pv) = get_json(
            &format!("{p}/api/v1/format_query"),
            &[("query", expr.into())],
        )
        .await?;
        let (qc, qv) = get_json(
            &format!("{q}/api/v1/format_query"),
            &[("query", expr.into())],
        )
        .await?;
        ensure!(
            pc == 200 && qc == 200,
            "format_query {expr:?}: prometheus {pc} {pv}, sluice {qc} {qv}"
        );
        ensure!(
            pv["data"] == qv["data"],
            "format_query {expr:?}:\nprometheus:\n{}\nsluice:\n{}",
            pv["data"].as_str().unwrap_or_default(),
            qv["data"].as_str().unwrap_or_default()
        );
    }
    let (qc, qv) = get_json(
        &format!("{q}/api/v1/format_query"),
        &[("query", "sum(".into())],
    )
    .await?;
    ensure!(
        qc == 400 && qv["errorType"] == "bad_data",
        "format_query error: {qc} {qv}"
    );
    // parse_query (Prometheus 3.x's tree for its UI; 2.42 predates it).
    let (qc, qv) = get_json(
        &format!("{q}/api/v1/parse_query"),
        &[("query", "sum by (job) (rate(x[5m]))".into())],
    )
    .await?;
    ensure!(
        qc == 200
            && qv["data"]["type"] == "aggregation"
            && qv["data"]["grouping"] == serde_json::json!(["job"])
            && qv["data"]["expr"]["args"][0]["range"] == 300_000,
        "parse_query: {qc} {qv}"
    );
    // Status endpoints: Prometheus' fields, values of our own process.
    let (_, pv) = get_json(&format!("{p}/api/v1/status/runtimeinfo"), &[]).await?;
    let (qc, qv) = get_json(&format!("{q}/api/v1/status/runtimeinfo"), &[]).await?;
    ensure!(
        qc == 200 && keys(&pv["data"]) == keys(&qv["data"]),
        "runtimeinfo: prometheus {pv}, sluice {qv}"
    );
    ensure!(
        qv["data"]["GOMAXPROCS"].as_u64().is_some_and(|n| n > 0),
        "runtimeinfo: {qv}"
    );
    let (qc, qv) = get_json(&format!("{q}/api/v1/status/flags"), &[]).await?;
    ensure!(
        qc == 200
            && qv["data"]["query.timeout"] == "2m"
            && qv["data"]["log.format"] == "logfmt"
            && qv["data"]["endpoint"]
                .as_str()
                .is_some_and(|s| s.contains("127.0.0.1")),
        "flags: {qc} {qv}"
    );
    let (_, pv) = get_json(&format!("{p}/api/v1/status/flags"), &[]).await?;
    let all_strings = |v: &Value| {
        v.as_object()
            .is_some_and(|o| !o.is_empty() && o.values().all(Value::is_string))
    };
    ensure!(
        all_strings(&pv["data"]) && all_strings(&qv["data"]),
        "flags: a map of strings, as Prometheus': {pv} {qv}"
    );
    let (_, pv) = get_json(&format!("{p}/api/v1/status/config"), &[]).await?;
    let (qc, qv) = get_json(&format!("{q}/api/v1/status/config"), &[]).await?;
    ensure!(
        keys(&pv["data"]) == keys(&qv["data"]),
        "config shape: prometheus {pv}, sluice {qv}"
    );
    ensure!(
        qc == 200
            && qv["data"]["yaml"]
                .as_str()
                .is_some_and(|y| y.contains("--query.timeout=2m")),
        "config: {qc} {qv}"
    );
    // TSDB status: Prometheus' shape; our counts over the fixture's window checked against the series Prometheus
    // lists for the same blocks.
    let (_, pv) = get_json(&format!("{p}/api/v1/status/tsdb"), &[]).await?;
    let window = [
        ("start", fmt_s(T0_MS - 60_000)),
        ("end", fmt_s(T0_MS + N * STEP_S * 1000 + 60_000)),
    ];
    let (qc, qv) = get_json(
        &format!("{q}/api/v1/status/tsdb"),
        &[window[0].clone(), window[1].clone(), ("limit", "3".into())],
    )
    .await?;
    ensure!(
        qc == 200
            && keys(&pv["data"]) == keys(&qv["data"])
            && keys(&pv["data"]["headStats"]) == keys(&qv["data"]["headStats"]),
        "tsdb shape: prometheus {pv}, sluice {qv}"
    );
    let (_, series) = get_json(
        &format!("{p}/api/v1/series"),
        &[
            ("match[]", "{__name__=~\".+\"}".into()),
            window[0].clone(),
            window[1].clone(),
        ],
    )
    .await?;
    let series = series["data"].as_array().cloned().unwrap_or_default();
    let mut by_name: std::collections::BTreeMap<String, u64> = Default::default();
    for s in &series {
        *by_name
            .entry(s["__name__"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = by_name.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(3);
    let want: Vec<Value> = top
        .iter()
        .map(|(n, c)| serde_json::json!({"name": n, "value": c}))
        .collect();
    let d = &qv["data"];
    ensure!(
        d["headStats"]["numSeries"] == series.len()
            && d["seriesCountByMetricName"] == Value::Array(want)
            && d["headStats"]["chunkCount"]
                .as_u64()
                .is_some_and(|c| c >= series.len() as u64)
            && d["headStats"]["minTime"]
                .as_i64()
                .is_some_and(|t| t >= T0_MS - 60_000),
        "tsdb counts over {} series: {d}",
        series.len()
    );
    let (qc, _) = get_json(&format!("{q}/api/v1/status/tsdb"), &[("limit", "0".into())]).await?;
    ensure!(qc == 400, "tsdb limit=0: {qc}");
    Ok(())
}

async fn promtool(args: &[String]) -> Result<String> {
    let bin = tools::promtool()?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&bin)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("promtool {args:?} did not finish"))??;
    ensure!(
        out.status.success(),
        "promtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `promtool query instant` and `promtool query range` print the same against Sluice as against Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_query_instant_and_range() -> Result<()> {
    let e = env().await?;
    let t = fmt_s(T0_MS + 95 * 60_000 + 7_500);
    let q = "sum by (job) (rate(demo_requests_total[5m]))";
    let mut outs = Vec::new();
    for url in [e.prom.url.clone(), e.query.url()] {
        let inst = promtool(&[
            "query".into(),
            "instant".into(),
            format!("--time={t}"),
            url.clone(),
            q.into(),
        ])
        .await?;
        let range = promtool(&[
            "query".into(),
            "range".into(),
            format!("--start={}", fmt_s(T0_MS + 60 * 60_000 + 7_500)),
            format!("--end={}", fmt_s(T0_MS + 70 * 60_000 + 7_500)),
            "--step=1m".into(),
            url,
            q.into(),
        ])
        .await?;
        outs.push((inst, range));
    }
    let (p, s) = (&outs[0], &outs[1]);
    ensure!(
        p.0.lines().count() == 3,
        "instant output should have a line per job:\n{}",
        p.0
    );
    // promtool prints `{job="api"} => 12.5 @[…]`: compare label sets and values.
    let parse = |out: &str| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = out
            .lines()
            .filter_map(|l| {
                let (lbl, rest) = l.split_once(" => ")?;
                let val = rest.split_whitespace().next()?.parse().ok()?;
                Some((lbl.to_owned(), val))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (pi, si) = (parse(&p.0), parse(&s.0));
    ensure!(
        pi.len() == si.len()
            && pi
                .iter()
                .zip(&si)
                .all(|(a, b)| a.0 == b.0 && sluice_e2e::answers::close(a.1, b.1, REL)),
        "promtool query instant differs:\nPrometheus:\n{}\nSluice:\n{}",
        p.0,
        s.0
    );
    let lines = |o: &str| o.lines().filter(|l| !l.trim().is_empty()).count();
    ensure!(
        lines(&p.1) == lines(&s.1) && lines(&s.1) >= 3,
        "promtool query range differs:\nPrometheus:\n{}\nSluice:\n{}",
        p.1,
        s.1
    );
    Ok(())
}

/// `--query.timeout` ends a query stuck on a stalling store with Prometheus' timeout error, and the stalled
/// stream is released; a `timeout` parameter can only shorten it. Queries beyond `--query.max-concurrent` wait
/// in the queue and still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_and_concurrency_limits() -> Result<()> {
    let stall = sluice_e2e::fake::StallingStore::start("stall", Duration::from_secs(120)).await?;
    let q = SluiceQuery::start(&[
        format!("--endpoint={}", stall.addr),
        "--query.timeout=2s".into(),
        "--query.max-concurrent=1".into(),
    ])
    .await?;
    eventually(
        Duration::from_secs(30),
        "querier sees the stalling store",
        || async {
            let s = q.stores().await?;
            Ok((
                (s.len() == 1 && s[0].healthy).then_some(()),
                format!("{s:?}"),
            ))
        },
    )
    .await?;
    let url = format!("{}/api/v1/query", q.url());
    let began = std::time::Instant::now();
    // Inside the fake store's time range (it covers the fixture window).
    let t = fmt_s(T0_MS + 3_600_000);
    let (code, v) = get_json(
        &url,
        &[("query", "sum(fake_stalled)".into()), ("time", t.clone())],
    )
    .await?;
    ensure!(
        code == 503 && v["errorType"] == "timeout",
        "stalled query: {code} {v}"
    );
    ensure!(
        began.elapsed() < Duration::from_secs(60),
        "the timeout error came only after {:?}",
        began.elapsed()
    );
    let (code, v) = get_json(
        &url,
        &[
            ("query", "sum(fake_stalled)".into()),
            ("time", t),
            ("timeout", "500ms".into()),
        ],
    )
    .await?;
    ensure!(
        code == 503 && v["errorType"] == "timeout",
        "timeout parameter: {code} {v}"
    );
    // Three instant queries that need no store at once, through a queue of one.
    let answers = futures::future::join_all((0..3).map(|i| {
        let url = url.clone();
        async move { get_json(&url, &[("query", format!("{i} + 1"))]).await }
    }))
    .await;
    for (i, a) in answers.into_iter().enumerate() {
        let (code, v) = a?;
        ensure!(
            code == 200 && v["data"]["result"][1] == format!("{}", i + 1),
            "queued query {i}: {code} {v}"
        );
    }
    // The stalled streams were cancelled, not left open.
    eventually(
        Duration::from_secs(30),
        "stalled Series streams released",
        || async {
            let n = stall
                .active_streams
                .load(std::sync::atomic::Ordering::SeqCst);
            Ok(((n == 0).then_some(()), format!("{n} streams open")))
        },
    )
    .await?;
    Ok(())
}
