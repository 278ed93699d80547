//! `promql-latency`: range-query latency of Sluice (`sluice store` over a
//! filesystem bucket + `sluice query`) versus Prometheus 2.42 over the same
//! blocks, both on 127.0.0.1, in one run.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin promql-latency -- [--rounds 11] [--step 60,30] [--only sum_rate,topk]
//! ```
//!
//! Steps: write an OpenMetrics fixture (≈10k series × 6 h at 15 s: request
//! counters with instance restarts, a classic latency histogram, a gauge and
//! a per-job info metric), make blocks with the real `promtool tsdb
//! create-blocks-from openmetrics` (cached under `target/sluice-bench/` by
//! shape and generator version), copy them into a filesystem bucket for
//! `sluice store` and into a data dir for `prometheus`, start `sluice query
//! --endpoint=<store>`, then for every query: one warm-up on both whose
//! answers must agree (same series, same timestamps, values within 1e-6
//! relative), then interleaved measured rounds. Evaluation times sit 7.5 s
//! off the 15 s sample grid, so Prometheus 2.42's left-closed range windows
//! and 3.x's left-open ones select the same samples.
//!
//! Latency is the wall time from sending the request to the last byte of the
//! (uncompressed JSON) body; answers are parsed only in the warm-up. Prints
//! median and p90 per query and overall, the Prometheus/Sluice ratio, server
//! CPU per query and peak RSS (VmHWM) of every process. Exits non-zero on
//! errors or an answer mismatch, never because of the timings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sluice_bench::paths;
use sluice_bench::procs::{self, Mem};
use sluice_bench::stats::{median, percentile};
use sluice_bench::workload::{JOBS, Shape, fixture_blocks, tree_size};

const USAGE: &str = "\
promql-latency: PromQL range-query latency, Sluice (store + query) vs Prometheus 2.42

usage: cargo run --release -p sluice-bench --bin promql-latency -- [options]

  --instances-per-job N  instances in each of the 10 jobs (default 100: 10,260 series)
  --hours H              hours of data at a 15 s interval (default 6)
  --rounds R             measured rounds per query and server, interleaved (default 11)
  --warmup W             unmeasured rounds first; the first one is also the answer check (default 1)
  --step S[,S...]        range-query steps in seconds (default 60)
  --only NAME[,NAME...]  run only these queries (names in the table)
  --query EXPR           add a query (named q1, q2, ...); repeatable
  --sluice PATH          sluice binary (default <target>/release/sluice, built if missing)
  --build                run `cargo build --release -p sluice --bin sluice` first even if the binary exists
  --no-cache             regenerate the blocks even if target/sluice-bench/ has them
  --keep                 keep the work directory (blocks, logs) and print its path
  --help                 this text

Needs promtool and prometheus 2.42 on PATH (apt-get install prometheus).";

/// The default query mix: (name, expression).
const QUERIES: &[(&str, &str)] = &[
    ("sum_rate", "sum by (job) (rate(bench_requests_total[5m]))"),
    (
        "hist_p90",
        "histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    ),
    (
        "share_m2o",
        "sum by (job, instance) (rate(bench_requests_total[5m])) / on (job) group_left sum by (job) (rate(bench_requests_total[5m]))",
    ),
    (
        "info_m2o",
        "sum by (job, instance) (rate(bench_requests_total{code=\"500\"}[5m])) * on (job) group_left (team) bench_job_info",
    ),
    ("topk", "topk(5, rate(bench_requests_total[5m]))"),
    ("avg_ot", "avg_over_time(bench_gauge[10m])"),
];

/// Relative tolerance of the answer check.
const REL_TOL: f64 = 1e-6;

#[derive(Debug, Clone)]
struct Args {
    instances_per_job: usize,
    hours: u32,
    rounds: usize,
    warmup: usize,
    steps: Vec<u32>,
    only: Vec<String>,
    extra: Vec<String>,
    sluice: Option<PathBuf>,
    build: bool,
    no_cache: bool,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        instances_per_job: 100,
        hours: 6,
        rounds: 11,
        warmup: 1,
        steps: vec![60],
        only: vec![],
        extra: vec![],
        sluice: None,
        build: false,
        no_cache: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--instances-per-job" => {
                a.instances_per_job = value(&flag)?.parse().context("--instances-per-job")?
            }
            "--hours" => a.hours = value(&flag)?.parse().context("--hours")?,
            "--rounds" => a.rounds = value(&flag)?.parse().context("--rounds")?,
            "--warmup" => a.warmup = value(&flag)?.parse().context("--warmup")?,
            "--step" => {
                a.steps = value(&flag)?
                    .split(',')
                    .map(|s| s.trim().trim_end_matches('s').parse::<u32>())
                    .collect::<Result<_, _>>()
                    .context("--step takes whole seconds, e.g. 60 or 60,30")?
            }
            "--only" => {
                a.only = value(&flag)?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--query" => a.extra.push(value(&flag)?),
            "--sluice" => a.sluice = Some(PathBuf::from(value(&flag)?)),
            "--build" => a.build = true,
            "--no-cache" => a.no_cache = true,
            "--keep" => a.keep = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(
        a.instances_per_job > 0 && a.instances_per_job <= 10_000,
        "--instances-per-job must be in 1..=10000"
    );
    ensure!(
        a.hours > 0 && a.hours <= 24 * 14,
        "--hours must be in 1..=336"
    );
    ensure!(
        a.rounds > 0 && a.rounds <= 200,
        "--rounds must be in 1..=200"
    );
    ensure!(
        a.warmup >= 1 && a.warmup <= 10,
        "--warmup must be in 1..=10"
    );
    ensure!(
        !a.steps.is_empty() && a.steps.iter().all(|&s| s > 0),
        "--step must be positive"
    );
    Ok(a)
}

// ---------------------------------------------------------------------------
// Processes and files
// ---------------------------------------------------------------------------

fn log(msg: impl AsRef<str>) {
    eprintln!("[promql-latency] {}", msg.as_ref());
}

// ---------------------------------------------------------------------------
// Queries and answers
// ---------------------------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds as API seconds: `1704067207.5`.
fn api_time(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

#[derive(Debug, Clone)]
struct Query {
    name: String,
    expr: String,
}

/// One range query: the URL suffix after the server's base.
fn range_path(expr: &str, start_ms: i64, end_ms: i64, step_s: u32) -> String {
    format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}",
        urlencode(expr),
        api_time(start_ms),
        api_time(end_ms),
        step_s
    )
}

/// The body of a successful answer, and how long it took to arrive.
async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<(bytes::Bytes, f64)> {
    let t = Instant::now();
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the body")?;
    let secs = t.elapsed().as_secs_f64();
    if status != reqwest::StatusCode::OK {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(600)])
        );
    }
    Ok((body, secs))
}

/// A matrix answer: sorted label set -> [(timestamp ms, value)].
type Matrix = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

fn parse_value(v: &serde_json::Value) -> anyhow::Result<f64> {
    let s = v.as_str().context("sample value is not a string")?;
    Ok(match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s
            .parse()
            .with_context(|| format!("bad sample value {s:?}"))?,
    })
}

fn parse_matrix(body: &[u8]) -> anyhow::Result<(Matrix, usize)> {
    let v: serde_json::Value = serde_json::from_slice(body).context("answer is not JSON")?;
    ensure!(
        v["status"] == "success",
        "status is not success: {}",
        String::from_utf8_lossy(&body[..body.len().min(600)])
    );
    ensure!(
        v["data"]["resultType"] == "matrix",
        "resultType is {}, not matrix",
        v["data"]["resultType"]
    );
    let mut m = Matrix::new();
    let mut points = 0;
    for r in v["data"]["result"]
        .as_array()
        .context("no data.result array")?
    {
        let mut labels: Vec<(String, String)> = r["metric"]
            .as_object()
            .context("series without metric")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let mut vals = Vec::new();
        for p in r["values"].as_array().context("series without values")? {
            let t = p[0].as_f64().context("timestamp is not a number")?;
            vals.push(((t * 1000.0).round() as i64, parse_value(&p[1])?));
        }
        points += vals.len();
        ensure!(
            m.insert(labels.clone(), vals).is_none(),
            "duplicate series {labels:?}"
        );
    }
    Ok((m, points))
}

fn fmt_labels(l: &[(String, String)]) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn close(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    (a - b).abs() <= REL_TOL * a.abs().max(b.abs())
}

/// Differences between two answers, as readable lines (empty when they agree).
/// Also returns the largest relative difference among matching points.
fn compare(sluice: &Matrix, prom: &Matrix) -> (Vec<String>, f64) {
    let mut out = Vec::new();
    let mut max_rel: f64 = 0.0;
    let only_s: Vec<_> = sluice.keys().filter(|k| !prom.contains_key(*k)).collect();
    let only_p: Vec<_> = prom.keys().filter(|k| !sluice.contains_key(*k)).collect();
    if !only_s.is_empty() {
        out.push(format!(
            "{} series only in Sluice's answer, e.g. {}",
            only_s.len(),
            fmt_labels(only_s[0])
        ));
    }
    if !only_p.is_empty() {
        out.push(format!(
            "{} series only in Prometheus' answer, e.g. {}",
            only_p.len(),
            fmt_labels(only_p[0])
        ));
    }
    let (mut bad_series, mut bad_points, mut first) = (0usize, 0usize, None);
    for (k, sv) in sluice {
        let Some(pv) = prom.get(k) else { continue };
        let mut bad = 0;
        let pm: BTreeMap<i64, f64> = pv.iter().copied().collect();
        let sm: BTreeMap<i64, f64> = sv.iter().copied().collect();
        for (t, a) in &sm {
            match pm.get(t) {
                Some(b) if close(*a, *b) => {
                    if a.is_finite() && b.is_finite() && *a != *b {
                        max_rel = max_rel.max((a - b).abs() / a.abs().max(b.abs()));
                    }
                }
                Some(b) => {
                    bad += 1;
                    first.get_or_insert_with(|| {
                        format!(
                            "{} at {}: sluice {a} vs prometheus {b}",
                            fmt_labels(k),
                            api_time(*t)
                        )
                    });
                }
                None => {
                    bad += 1;
                    first.get_or_insert_with(|| {
                        format!(
                            "{} at {}: sluice {a}, prometheus has no point",
                            fmt_labels(k),
                            api_time(*t)
                        )
                    });
                }
            }
        }
        for (t, b) in &pm {
            if !sm.contains_key(t) {
                bad += 1;
                first.get_or_insert_with(|| {
                    format!(
                        "{} at {}: prometheus {b}, sluice has no point",
                        fmt_labels(k),
                        api_time(*t)
                    )
                });
            }
        }
        if bad > 0 {
            bad_series += 1;
            bad_points += bad;
        }
    }
    if bad_points > 0 {
        out.push(format!(
            "{bad_points} points differ in {bad_series} common series; first: {}",
            first.unwrap_or_default()
        ));
    }
    (out, max_rel)
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// Measurements of one query on one server.
#[derive(Debug, Default, Clone)]
struct Side {
    secs: Vec<f64>,
    /// Server CPU seconds per round (Sluice: store, query).
    cpu: Vec<(f64, f64)>,
    body_bytes: usize,
}

impl Side {
    fn med_ms(&self) -> f64 {
        median(&self.secs) * 1e3
    }
    fn p90_ms(&self) -> f64 {
        percentile(&self.secs, 90.0) * 1e3
    }
    fn cpu_ms(&self) -> (f64, f64) {
        let n = self.cpu.len().max(1) as f64;
        (
            1e3 * self.cpu.iter().map(|c| c.0).sum::<f64>() / n,
            1e3 * self.cpu.iter().map(|c| c.1).sum::<f64>() / n,
        )
    }
}

#[derive(Debug, Clone)]
struct Case {
    query: Query,
    step: u32,
    series: usize,
    points: usize,
    max_rel: f64,
    problems: Vec<String>,
    sluice: Side,
    prom: Side,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Runs the benchmark; `Ok(false)` when the answers disagreed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let prom_version = paths::tool_version("prometheus")?;
    let promtool_version = paths::tool_version("promtool")?;
    if !prom_version.contains("2.42") {
        log(format!(
            "warning: the oracle is Prometheus 2.42, found {prom_version}"
        ));
    }
    let mut queries: Vec<Query> = QUERIES
        .iter()
        .map(|(n, e)| Query {
            name: n.to_string(),
            expr: e.to_string(),
        })
        .collect();
    for (i, e) in args.extra.iter().enumerate() {
        queries.push(Query {
            name: format!("q{}", i + 1),
            expr: e.clone(),
        });
    }
    if !args.only.is_empty() {
        for o in &args.only {
            ensure!(
                queries.iter().any(|q| &q.name == o),
                "--only {o}: no such query (have {})",
                queries
                    .iter()
                    .map(|q| q.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        queries.retain(|q| args.only.contains(&q.name));
    }
    let sluice_bin = paths::sluice_binary(args.sluice.as_deref(), args.build, |m| log(m))?;
    let shape = Shape {
        instances_per_job: args.instances_per_job,
        hours: args.hours,
    };
    if shape.total_series() < 10_000 {
        log(format!(
            "note: {} series, fewer than the 10k the benchmark is specified for",
            shape.total_series()
        ));
    }

    // 1. Blocks, by the real promtool (cached).
    let (blocks, cached) = fixture_blocks(&shape, args.no_cache)?;
    let block_list = paths::block_dirs(&blocks)?;
    ensure!(
        !block_list.is_empty(),
        "promtool made no blocks in {}",
        blocks.display()
    );
    let block_bytes: u64 = block_list.iter().map(|b| tree_size(b)).sum();
    log(format!(
        "{} block(s), {:.1} MiB, {} ({})",
        block_list.len(),
        block_bytes as f64 / 1048576.0,
        blocks.display(),
        if cached { "cached" } else { "made now" }
    ));

    let tmp = tempfile::Builder::new()
        .prefix("sluice-bench-promql-")
        .tempdir()
        .context("creating a temp dir")?;
    let work = tmp.path().to_path_buf();
    let _keep = KeepDir {
        dir: args.keep.then(|| work.clone()),
    };
    let tmp = if args.keep {
        let _kept: PathBuf = tmp.keep();
        None
    } else {
        Some(tmp)
    };

    // 2. Same blocks in a filesystem bucket and in a Prometheus data dir.
    let bucket = work.join("bucket");
    let serve = work.join("prometheus-data");
    for b in &block_list {
        let name = b.file_name().context("block name")?;
        paths::copy_dir(b, &bucket.join(name))?;
        paths::copy_dir(b, &serve.join(name))?;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .context("HTTP client")?;

    // 3. sluice store, then sluice query in front of it.
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let mut store = procs::start_sluice(
        &sluice_bin,
        "sluice store",
        "store",
        &[
            format!("--objstore.config={objstore}"),
            format!("--data-dir={}", work.join("sluice-data").display()),
        ],
        work.join("sluice-store.log"),
    )?;
    let ready = procs::wait_ready(
        &http,
        &format!("http://{}/-/ready", store.http),
        &mut store.guard,
        Duration::from_secs(120),
    )
    .await?;
    log(format!(
        "sluice store ready in {:.1} s (pid {}, grpc {})",
        ready.as_secs_f64(),
        store.guard.pid(),
        store.grpc
    ));
    let mut query = procs::start_sluice(
        &sluice_bin,
        "sluice query",
        "query",
        &[format!("--endpoint={}", store.grpc)],
        work.join("sluice-query.log"),
    )?;
    let sluice_base = format!("http://{}", query.http);
    procs::wait_ready(
        &http,
        &format!("{sluice_base}/-/ready"),
        &mut query.guard,
        Duration::from_secs(60),
    )
    .await?;
    // Ready once the querier sees the store's data.
    let probe = format!(
        "/api/v1/query?query={}&time={}",
        urlencode("count(bench_job_info)"),
        api_time(shape.max_time_ms())
    );
    let t = Instant::now();
    loop {
        query.guard.check_alive()?;
        store.guard.check_alive()?;
        if let Ok((body, _)) = fetch(&http, &format!("{sluice_base}{probe}")).await
            && String::from_utf8_lossy(&body).contains(&format!("\"{}\"", JOBS.len()))
        {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "sluice query does not see the store's data after 60 s; logs:\n{}\n{}",
            procs::tail(&query.guard.log, 10),
            procs::tail(&store.guard.log, 10)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log(format!(
        "sluice query ready (pid {}, {sluice_base})",
        query.guard.pid()
    ));

    // 4. Prometheus on its copy.
    let (mut prom, prom_base, ready) = procs::start_prometheus_ready(
        &http,
        &work,
        &serve,
        block_list.len(),
        Duration::from_secs(180),
    )
    .await?;
    log(format!(
        "prometheus ready in {:.1} s (pid {}, {prom_base})",
        ready.as_secs_f64(),
        prom.pid()
    ));

    let tck = procs::clk_tck();
    let store_pid = store.guard.pid().to_string();
    let query_pid = query.guard.pid().to_string();
    let prom_pid = prom.pid().to_string();
    let idle = (
        procs::mem(store.guard.pid())?,
        procs::mem(query.guard.pid())?,
        procs::mem(prom.pid())?,
    );

    // Evaluation times 7.5 s off the sample grid, over the whole range.
    let start_ms = shape.min_time_ms() + 7_500;
    let end_ms = shape.max_time_ms() - 7_500;

    let mut cases: Vec<Case> = Vec::new();
    for &step in &args.steps {
        for q in &queries {
            cases.push(Case {
                query: q.clone(),
                step,
                series: 0,
                points: 0,
                max_rel: 0.0,
                problems: vec![],
                sluice: Side::default(),
                prom: Side::default(),
            });
        }
    }
    let url = |base: &str, c: &Case| {
        format!(
            "{base}{}",
            range_path(&c.query.expr, start_ms, end_ms, c.step)
        )
    };

    // 5. Warm-up; the first round's answers are compared.
    for w in 0..args.warmup {
        for c in cases.iter_mut() {
            let (sb, st) = fetch(&http, &url(&sluice_base, c))
                .await
                .with_context(|| format!("sluice: {} (step {}s)", c.query.name, c.step))?;
            let (pb, pt) = fetch(&http, &url(&prom_base, c))
                .await
                .with_context(|| format!("prometheus: {} (step {}s)", c.query.name, c.step))?;
            c.sluice.body_bytes = sb.len();
            c.prom.body_bytes = pb.len();
            if w == 0 {
                let (sm, _) =
                    parse_matrix(&sb).with_context(|| format!("sluice: {}", c.query.name))?;
                let (pm, pp) =
                    parse_matrix(&pb).with_context(|| format!("prometheus: {}", c.query.name))?;
                c.series = pm.len();
                c.points = pp;
                let (problems, max_rel) = compare(&sm, &pm);
                c.problems = problems;
                c.max_rel = max_rel;
                if pm.is_empty() {
                    c.problems.push("Prometheus' answer is empty".into());
                }
                log(format!(
                    "warm-up {} step {}s: sluice {:.0} ms, prometheus {:.0} ms; {} series, {} points; {}",
                    c.query.name,
                    c.step,
                    st * 1e3,
                    pt * 1e3,
                    pm.len(),
                    pp,
                    if c.problems.is_empty() {
                        format!("answers agree (max rel diff {:.1e})", c.max_rel)
                    } else {
                        format!("MISMATCH: {}", c.problems.join("; "))
                    }
                ));
            }
            store.guard.check_alive()?;
            query.guard.check_alive()?;
            prom.check_alive()?;
        }
    }

    // 6. Measured rounds, interleaved; who goes first alternates.
    let ours = |tck: f64| -> anyhow::Result<f64> {
        Ok(procs::cpu_seconds(&store_pid, tck)?
            + procs::cpu_seconds(&query_pid, tck)?
            + procs::cpu_seconds(&prom_pid, tck)?
            + procs::cpu_seconds("self", tck)?)
    };
    let (t0, busy0, ours0, load0) = (
        Instant::now(),
        procs::machine_busy_seconds(tck)?,
        ours(tck)?,
        procs::loadavg(),
    );
    for round in 0..args.rounds {
        for (ci, c) in cases.iter_mut().enumerate() {
            let sluice_first = (round + ci) % 2 == 0;
            for is_sluice in [sluice_first, !sluice_first] {
                if is_sluice {
                    let (s0, q0) = (
                        procs::cpu_seconds(&store_pid, tck)?,
                        procs::cpu_seconds(&query_pid, tck)?,
                    );
                    let (body, secs) = fetch(&http, &url(&sluice_base, c))
                        .await
                        .with_context(|| format!("sluice: {}", c.query.name))?;
                    c.sluice.secs.push(secs);
                    c.sluice.cpu.push((
                        procs::cpu_seconds(&store_pid, tck)? - s0,
                        procs::cpu_seconds(&query_pid, tck)? - q0,
                    ));
                    c.sluice.body_bytes = body.len();
                } else {
                    let p0 = procs::cpu_seconds(&prom_pid, tck)?;
                    let (body, secs) = fetch(&http, &url(&prom_base, c))
                        .await
                        .with_context(|| format!("prometheus: {}", c.query.name))?;
                    c.prom.secs.push(secs);
                    c.prom
                        .cpu
                        .push((procs::cpu_seconds(&prom_pid, tck)? - p0, 0.0));
                    c.prom.body_bytes = body.len();
                }
            }
        }
        store.guard.check_alive()?;
        query.guard.check_alive()?;
        prom.check_alive()?;
        log(format!(
            "round {}/{}: sluice {:.0} ms, prometheus {:.0} ms (all queries)",
            round + 1,
            args.rounds,
            cases.iter().map(|c| c.sluice.secs[round]).sum::<f64>() * 1e3,
            cases.iter().map(|c| c.prom.secs[round]).sum::<f64>() * 1e3
        ));
    }
    let wall = t0.elapsed().as_secs_f64();
    let other = (procs::machine_busy_seconds(tck)? - busy0) - (ours(tck)? - ours0);
    let background_pct = 100.0 * other.max(0.0) / wall;
    let peak = (
        procs::mem(store.guard.pid())?,
        procs::mem(query.guard.pid())?,
        procs::mem(prom.pid())?,
    );

    // 7. Report.
    let (nproc, cpu) = procs::machine();
    println!();
    println!(
        "promql-latency: range queries, Sluice (sluice store over a FILESYSTEM bucket + sluice query) vs Prometheus, same blocks"
    );
    println!("machine    : {nproc} CPUs (nproc), {cpu}");
    println!(
        "background : other processes used {background_pct:.0}% of one core during the measured rounds (load average {load0:.2} -> {:.2})",
        procs::loadavg()
    );
    if background_pct >= 10.0 {
        println!(
            "WARNING    : other work on this machine skewed these numbers; rerun when it is quiet"
        );
    }
    println!("peer       : {prom_version} / {promtool_version}");
    println!("sluice     : {}", sluice_bin.display());
    let by_metric: Vec<String> = shape
        .series_by_metric()
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    println!(
        "data       : {} series x {}h @ 15s = {} samples ({}); {} block(s), {:.1} MiB{}",
        shape.total_series(),
        shape.hours,
        shape.total_series() * shape.samples_per_series(),
        by_metric.join(", "),
        block_list.len(),
        block_bytes as f64 / 1048576.0,
        if cached { " (cached)" } else { "" }
    );
    println!(
        "range      : start={} end={} (7.5 s off the sample grid), step {}; {} measured rounds (interleaved) after {} warm-up",
        api_time(start_ms),
        api_time(end_ms),
        args.steps
            .iter()
            .map(|s| format!("{s}s"))
            .collect::<Vec<_>>()
            .join(", "),
        args.rounds,
        args.warmup
    );
    println!("queries    :");
    for q in &queries {
        println!("  {:<10} {}", q.name, q.expr);
    }
    println!();
    println!(
        "{:<10} {:>4} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>15} {:>8} {:>7} {:>13} {:>7}",
        "query",
        "step",
        "series",
        "points",
        "S med ms",
        "S p90 ms",
        "P med ms",
        "P p90 ms",
        "P/S",
        "S CPU st+q ms",
        "P CPU ms",
        "CPU P/S",
        "MiB S / P",
        "answer"
    );
    for c in &cases {
        let (sst, sq) = c.sluice.cpu_ms();
        let (pc, _) = c.prom.cpu_ms();
        println!(
            "{:<10} {:>3}s {:>6} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.2}x {:>7.0}+{:<7.0} {:>8.0} {:>6.2}x {:>6.1} /{:>5.1} {:>7}",
            c.query.name,
            c.step,
            c.series,
            c.points,
            c.sluice.med_ms(),
            c.sluice.p90_ms(),
            c.prom.med_ms(),
            c.prom.p90_ms(),
            c.prom.med_ms() / c.sluice.med_ms(),
            sst,
            sq,
            pc,
            pc / (sst + sq),
            c.sluice.body_bytes as f64 / 1048576.0,
            c.prom.body_bytes as f64 / 1048576.0,
            if c.problems.is_empty() {
                "ok"
            } else {
                "DIFFER"
            }
        );
    }
    let all = |f: fn(&Case) -> &Side| -> Vec<f64> {
        cases
            .iter()
            .flat_map(|c| f(c).secs.iter().copied())
            .collect()
    };
    let (s_all, p_all) = (all(|c| &c.sluice), all(|c| &c.prom));
    let mix = |f: fn(&Case) -> &Side| -> Vec<f64> {
        (0..args.rounds)
            .map(|r| cases.iter().map(|c| f(c).secs[r]).sum())
            .collect()
    };
    let (s_mix, p_mix) = (mix(|c| &c.sluice), mix(|c| &c.prom));
    println!();
    println!(
        "overall (all {} query runs per server): Sluice median {:.1} ms p90 {:.1} ms; Prometheus median {:.1} ms p90 {:.1} ms",
        s_all.len(),
        median(&s_all) * 1e3,
        percentile(&s_all, 90.0) * 1e3,
        median(&p_all) * 1e3,
        percentile(&p_all, 90.0) * 1e3
    );
    println!(
        "mix (all queries once, per round)     : Sluice median {:.1} ms p90 {:.1} ms; Prometheus median {:.1} ms p90 {:.1} ms",
        median(&s_mix) * 1e3,
        percentile(&s_mix, 90.0) * 1e3,
        median(&p_mix) * 1e3,
        percentile(&p_mix, 90.0) * 1e3
    );
    let cpu_total = |f: fn(&Case) -> &Side| -> f64 {
        cases
            .iter()
            .map(|c| {
                let (a, b) = f(c).cpu_ms();
                a + b
            })
            .sum()
    };
    let (s_cpu, p_cpu) = (cpu_total(|c| &c.sluice), cpu_total(|c| &c.prom));
    println!(
        "server CPU (mean per mix)             : Sluice {s_cpu:.0} ms (store + query), Prometheus {p_cpu:.0} ms; ratio {:.2}x",
        p_cpu / s_cpu
    );
    let ratio = median(&p_all) / median(&s_all);
    let geo = (cases
        .iter()
        .map(|c| (c.prom.med_ms() / c.sluice.med_ms()).ln())
        .sum::<f64>()
        / cases.len() as f64)
        .exp();
    let met = cases
        .iter()
        .filter(|c| c.prom.med_ms() >= 2.0 * c.sluice.med_ms())
        .count();
    println!(
        "ratio Prometheus/Sluice median latency: overall {ratio:.2}x, mix {:.2}x, geometric mean of queries {geo:.2}x; goal >= 2x: overall {}, {met} of {} queries",
        median(&p_mix) / median(&s_mix),
        if ratio >= 2.0 { "MET" } else { "NOT MET" },
        cases.len()
    );
    println!();
    let line = |name: &str, i: &Mem, p: &Mem| {
        println!(
            "RSS {name:<16}: peak (VmHWM) {:>7.1} MiB; idle before queries {:>7.1} MiB; at the end {:>7.1} MiB (anon {:.1}, file-backed {:.1})",
            mib(p.hwm_kib),
            mib(i.rss_kib),
            mib(p.rss_kib),
            mib(p.anon_kib),
            mib(p.file_kib)
        )
    };
    line("sluice store", &idle.0, &peak.0);
    line("sluice query", &idle.1, &peak.1);
    line("prometheus", &idle.2, &peak.2);
    println!(
        "RSS sluice total    : peak {:.1} MiB (store + query) vs prometheus {:.1} MiB",
        mib(peak.0.hwm_kib + peak.1.hwm_kib),
        mib(peak.2.hwm_kib)
    );
    println!(
        "columns    : S = Sluice, P = Prometheus; ms = wall time from request to the last body byte (uncompressed JSON); P/S = ratio of medians (>1: Sluice faster); CPU ms = mean server CPU per query (Sluice: store + query), CPU P/S their ratio (less sensitive to other load than wall time); series/points = size of the answer"
    );

    let bad: Vec<&Case> = cases.iter().filter(|c| !c.problems.is_empty()).collect();
    if !bad.is_empty() {
        println!();
        println!("ANSWERS DIFFER (tolerance {REL_TOL:e} relative):");
        for c in &bad {
            println!("  {} (step {}s): {}", c.query.name, c.step, c.query.expr);
            for p in &c.problems {
                println!("    {p}");
            }
        }
    }

    drop(query);
    drop(store);
    drop(prom);
    drop(tmp);
    Ok(bad.is_empty())
}

/// Prints where the kept work directory is, even on error.
struct KeepDir {
    dir: Option<PathBuf>,
}

impl Drop for KeepDir {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            log(format!("work directory kept: {}", d.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Shape {
        Shape {
            instances_per_job: 3,
            hours: 1,
        }
    }

    #[test]
    fn default_shape_has_at_least_10k_series() {
        let s = Shape {
            instances_per_job: 100,
            hours: 6,
        };
        assert!(s.total_series() >= 10_000, "{}", s.total_series());
        assert_eq!(
            s.series_by_metric().iter().map(|(_, n)| n).sum::<usize>(),
            s.total_series()
        );
        assert_eq!(s.samples_per_series(), 1440);
    }

    #[test]
    fn openmetrics_is_complete_and_well_formed() {
        let s = small();
        let mut out = Vec::new();
        s.write_openmetrics(&mut out).expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.lines().last(), Some("# EOF"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, s.total_series() * s.samples_per_series());
        // Per series: increasing timestamps; counters never decrease except
        // at a restart; buckets cumulative.
        let mut series: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (rest, ts) = l.rsplit_once(' ').expect("timestamp");
            let (name, v) = rest.rsplit_once(' ').expect("value");
            series
                .entry(name)
                .or_default()
                .push((ts.parse().expect("ts"), v.parse().expect("value")));
        }
        assert_eq!(series.len(), s.total_series());
        for (name, pts) in &series {
            assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "{name}");
            if name.starts_with("bench_requests_total") || name.contains("_bucket") {
                let drops = pts.windows(2).filter(|w| w[1].1 < w[0].1).count();
                assert!(drops <= 1, "{name} drops {drops} times");
            }
        }
        for (name, pts) in &series {
            if name.starts_with("bench_requests_total") || name.contains("_bucket") {
                assert!(pts[0].1 >= 100.0, "{name} starts at {}", pts[0].1);
            }
        }
        let key = |le: &str| {
            format!(
                "bench_latency_seconds_bucket{{job=\"api\",instance=\"10.0.0.1:9100\",le=\"{le}\"}}"
            )
        };
        let (lo, hi) = (&series[key("0.1").as_str()], &series[key("+Inf").as_str()]);
        assert!(lo.iter().zip(hi).all(|(a, b)| a.1 <= b.1));
    }

    #[test]
    fn topk_rates_are_distinct() {
        // The five largest rates are well apart (Zipf ranks 0..5).
        let total = small().request_series() as u64;
        let mult = if sluice_bench::workload::gcd(7919, total) == 1 {
            7919
        } else {
            1
        };
        let mut ranks: Vec<u64> = (0..total).map(|s| (s * mult + 13) % total).collect();
        ranks.sort();
        ranks.dedup();
        assert_eq!(ranks.len() as u64, total, "ranks are a permutation");
    }

    #[test]
    fn helpers() {
        assert_eq!(api_time(1_704_067_207_500), "1704067207.5");
        assert_eq!(api_time(1_704_067_200_000), "1704067200");
        assert_eq!(
            urlencode("sum by (le) (x{a=\"b\"})"),
            "sum%20by%20%28le%29%20%28x%7Ba%3D%22b%22%7D%29"
        );
        let m = |v: f64| -> Matrix {
            [(vec![("job".to_string(), "a".to_string())], vec![(1000, v)])]
                .into_iter()
                .collect()
        };
        assert!(compare(&m(1.0), &m(1.0 + 1e-9)).0.is_empty());
        assert!(!compare(&m(1.0), &m(1.001)).0.is_empty());
        assert!(compare(&m(f64::NAN), &m(f64::NAN)).0.is_empty());
    }
}
