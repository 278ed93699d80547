//! `soak`: a bounded load test of `sluice store` + `sluice query` over the
//! promql-latency workload (~10k series x 6 h, blocks by the real promtool).
//!
//! ```text
//! cargo run --release -p sluice-bench --bin soak -- [--clients 32] [--seconds 120] [--max-samples 50000000]
//! ```
//!
//! First every query of the mix is answered once by a quiet querier: those
//! answers are the reference. Then `--clients` clients send the mix for
//! `--seconds`: dashboard range queries (6 h at 30 s and 60 s steps, 1 h at
//! 15 s), instant queries, series and label calls, and queries built to go
//! over the limits (subquery grids, `--query.max-samples`). Every answer must
//! be byte-identical to its reference, or, for the over-limit ones, a limit
//! error; both processes must stay up. Prints counts, latency percentiles and
//! the peak RSS (VmHWM) of each process next to what the limits promise, and
//! exits non-zero on any wrong answer, unexpected error or death.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sluice_bench::paths;
use sluice_bench::procs;
use sluice_bench::stats::percentile;
use sluice_bench::workload::{Shape, fixture_blocks};

fn log(msg: impl AsRef<str>) {
    eprintln!("[soak] {}", msg.as_ref());
}

struct Args {
    clients: usize,
    seconds: u64,
    max_samples: u64,
    sluice: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        clients: 32,
        seconds: 120,
        max_samples: 50_000_000,
        sluice: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--clients" => a.clients = v()?.parse()?,
            "--seconds" => a.seconds = v()?.parse()?,
            "--max-samples" => a.max_samples = v()?.parse()?,
            "--sluice" => a.sluice = Some(PathBuf::from(v()?)),
            "--help" | "-h" => {
                println!(
                    "soak [--clients 32] [--seconds 120] [--max-samples 50000000] [--sluice PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(
        a.clients > 0 && a.seconds > 0,
        "--clients and --seconds must be positive"
    );
    Ok(a)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request of the mix and what it must get.
#[derive(Clone)]
struct Req {
    name: String,
    path: String,
    /// Over a limit on purpose: the answer must be an error naming one.
    over_limit: bool,
}

fn mix(shape: &Shape) -> Vec<Req> {
    let (start, end) = (shape.min_time_ms() / 1000, shape.max_time_ms() / 1000);
    let t = |ms: i64| format!("{}.5", ms / 1000);
    let mut v = Vec::new();
    let dashboards = [
        "sum by (job) (rate(bench_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
        "sum by (job, instance) (rate(bench_requests_total{code=\"500\"}[5m])) * on (job) group_left (team) bench_job_info",
        "topk(5, rate(bench_requests_total[5m]))",
        "avg_over_time(bench_gauge[10m])",
        "count by (team) (bench_job_info)",
        "max by (job) (bench_gauge)",
        "quantile(0.5, rate(bench_requests_total[5m]))",
    ];
    for (i, q) in dashboards.iter().enumerate() {
        for (from, step) in [(start, 60), (start, 30), (end - 3600, 15)] {
            v.push(Req {
                name: format!("range {i} step {step}"),
                path: format!(
                    "/api/v1/query_range?query={}&start={}&end={}&step={step}",
                    enc(q),
                    t(from * 1000),
                    t(end * 1000)
                ),
                over_limit: false,
            });
        }
        v.push(Req {
            name: format!("instant {i}"),
            path: format!("/api/v1/query?query={}&time={}", enc(q), t(end * 1000)),
            over_limit: false,
        });
    }
    v.push(Req {
        name: "series".into(),
        path: format!(
            "/api/v1/series?match[]={}&start={start}&end={end}",
            enc("bench_job_info")
        ),
        over_limit: false,
    });
    v.push(Req {
        name: "label values".into(),
        path: "/api/v1/label/job/values".into(),
        over_limit: false,
    });
    for (i, q) in [
        "count_over_time(vector(1)[100y:1ms])",
        "max_over_time(bench_gauge[6h:1ms])",
        "sum(rate(bench_requests_total[6h:100ms]))",
    ]
    .iter()
    .enumerate()
    {
        v.push(Req {
            name: format!("over limit {i}"),
            path: format!("/api/v1/query?query={}&time={}", enc(q), t(end * 1000)),
            over_limit: true,
        });
    }
    // Every request series on a 1 s grid over 6 h: more cells than --query.max-samples allows.
    v.push(Req {
        name: "over limit: a 1 s grid of every series".into(),
        path: format!(
            "/api/v1/query?query={}&time={}",
            enc("count_over_time(bench_requests_total[6h:1s])"),
            t(end * 1000)
        ),
        over_limit: true,
    });
    v
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    limit_errors: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
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

async fn run(args: Args) -> anyhow::Result<bool> {
    let sluice_bin = paths::sluice_binary(args.sluice.as_deref(), true, |m| log(m))?;
    // The promql-latency shape (10,260 series x 6 h), so both share the cached blocks.
    let shape = Shape {
        instances_per_job: 100,
        hours: 6,
    };
    let (blocks, _) = fixture_blocks(&shape, false)?;
    let work = tempfile::Builder::new().prefix("sluice-soak-").tempdir()?;
    let bucket = work.path().join("bucket");
    for b in paths::block_dirs(&blocks)? {
        paths::copy_dir(&b, &bucket.join(b.file_name().context("block name")?))?;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
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
            format!("--data-dir={}", work.path().join("store-data").display()),
        ],
        work.path().join("store.log"),
    )?;
    procs::wait_ready(
        &http,
        &format!("http://{}/-/ready", store.http),
        &mut store.guard,
        Duration::from_secs(120),
    )
    .await?;
    let mut query = procs::start_sluice(
        &sluice_bin,
        "sluice query",
        "query",
        &[
            format!("--endpoint={}", store.grpc),
            format!("--query.max-samples={}", args.max_samples),
            "--query.timeout=60s".into(),
        ],
        work.path().join("query.log"),
    )?;
    let base = format!("http://{}", query.http);
    procs::wait_ready(
        &http,
        &format!("{base}/-/ready"),
        &mut query.guard,
        Duration::from_secs(60),
    )
    .await?;

    // References, one request at a time; the querier must see the store first.
    let reqs = mix(&shape);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refs: BTreeMap<String, bytes::Bytes> = BTreeMap::new();
    for r in &reqs {
        loop {
            let resp = http.get(format!("{base}{}", r.path)).send().await?;
            let code = resp.status().as_u16();
            let body = resp.bytes().await?;
            let text = String::from_utf8_lossy(&body);
            if r.over_limit {
                ensure!(
                    code >= 400 && (text.contains("too many samples") || text.contains("limit")),
                    "{}: expected a limit error, got {code}: {:.300}",
                    r.name,
                    text
                );
                break;
            }
            if code == 200 && !text.contains("\"result\":[]") && !text.contains("\"data\":[]") {
                refs.insert(r.name.clone(), body);
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{}: no answer with data: {code} {:.300}",
                r.name,
                text
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    log(format!(
        "{} reference answers; {} clients for {} s",
        refs.len(),
        args.clients,
        args.seconds
    ));

    let counts = Arc::new(Counts::default());
    let refs = Arc::new(refs);
    let reqs = Arc::new(reqs);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, base, refs, reqs, counts, latencies, failures) = (
            http.clone(),
            base.clone(),
            refs.clone(),
            reqs.clone(),
            counts.clone(),
            latencies.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c * 7;
            while Instant::now() < end {
                let r = &reqs[i % reqs.len()];
                i += 1;
                let t = Instant::now();
                let res = async {
                    let resp = http.get(format!("{base}{}", r.path)).send().await?;
                    let code = resp.status().as_u16();
                    Ok::<_, reqwest::Error>((code, resp.bytes().await?))
                }
                .await;
                let secs = t.elapsed().as_secs_f64();
                match res {
                    Ok((code, body)) if r.over_limit => {
                        let text = String::from_utf8_lossy(&body);
                        if code >= 400
                            && (text.contains("too many samples") || text.contains("limit"))
                        {
                            counts.limit_errors.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts.wrong.fetch_add(1, Ordering::Relaxed);
                            failures
                                .lock()
                                .map(|mut f| f.push(format!("{}: {code} {:.200}", r.name, text)))
                                .ok();
                        }
                    }
                    Ok((code, body)) => {
                        if code == 200 && refs.get(&r.name) == Some(&body) {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            latencies.lock().map(|mut l| l.push(secs)).ok();
                        } else if code >= 400
                            && String::from_utf8_lossy(&body).contains("too many samples")
                        {
                            counts.limit_errors.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts.wrong.fetch_add(1, Ordering::Relaxed);
                            let text = String::from_utf8_lossy(&body);
                            failures
                                .lock()
                                .map(|mut f| f.push(format!("{}: {code} {:.200}", r.name, text)))
                                .ok();
                        }
                    }
                    Err(e) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .map(|mut f| f.push(format!("{}: {e}", r.name)))
                            .ok();
                    }
                }
            }
        }));
    }
    let mut last_check = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if last_check.elapsed() > Duration::from_secs(5) {
            store.guard.check_alive()?;
            query.guard.check_alive()?;
            last_check = Instant::now();
        }
    }
    for t in tasks {
        t.await?;
    }
    store.guard.check_alive()?;
    query.guard.check_alive()?;

    let (ok, lim, wrong, errs) = (
        counts.ok.load(Ordering::Relaxed),
        counts.limit_errors.load(Ordering::Relaxed),
        counts.wrong.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
    );
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let qmem = procs::mem(query.guard.pid())?;
    let smem = procs::mem(store.guard.pid())?;
    // What the limits promise: --query.max-decoded-samples (default 100M) of 16 bytes for every running query's
    // decoded inputs, plus evaluation (intermediate series x steps), the compressed frames and the process.
    let query_bound_mib = 100_000_000 * 16 / (1 << 20) + 2048;
    let store_bound_mib = 1024;
    println!(
        "soak: {} clients x {} s against sluice store + sluice query, {} series x {} h",
        args.clients,
        args.seconds,
        shape.total_series(),
        shape.hours
    );
    println!("  answers: {ok} right, {lim} limit errors, {wrong} wrong, {errs} failed requests");
    if !lat.is_empty() {
        println!(
            "  latency of right answers: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms",
            percentile(&lat, 50.0) * 1e3,
            percentile(&lat, 90.0) * 1e3,
            percentile(&lat, 99.0) * 1e3
        );
    }
    println!(
        "  peak RSS: sluice query {} MiB (bound {query_bound_mib} MiB), sluice store {} MiB (bound {store_bound_mib} MiB)",
        qmem.hwm_kib / 1024,
        smem.hwm_kib / 1024
    );
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    for f in failures.iter().take(10) {
        println!("  failure: {f}");
    }
    let pass = wrong == 0
        && errs == 0
        && ok > 0
        && lim > 0
        && qmem.hwm_kib / 1024 < query_bound_mib
        && smem.hwm_kib / 1024 < store_bound_mib;
    println!("  result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
