//! `frontend-latency`: a dashboard of range queries over a week of data, refreshed again and again, through
//! `sluice query-frontend` (split by day, in-memory results cache) versus straight to `sluice query`, on the same
//! store and querier, in one run. Each refresh moves the dashboard's window forward by one step, as a dashboard
//! over "the last 7 days" does; the cold first load shows the cost (or gain) of splitting.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin frontend-latency -- [--series 2000] [--days 7] [--refreshes 10]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use sluice_bench::paths;
use sluice_bench::procs::{self, ChildGuard};
use sluice_bench::stats::median;

const USAGE: &str = "\
frontend-latency: a 20-panel week dashboard refreshed through sluice query-frontend vs straight to sluice query

usage: cargo run --release -p sluice-bench --bin frontend-latency -- [options]

  --series N      series (default 2000; 20 jobs)
  --days D        days of data at a 60 s interval (default 7)
  --refreshes R   dashboard loads, the first one cold (default 10)
  --step S        panel step in seconds (default 600: a week on a 1000-pixel panel)
  --sluice PATH   sluice binary (default <target>/release/sluice, built if missing)
  --help          this text

Needs promtool (apt-get install prometheus).";

const INTERVAL_S: i64 = 60;
const T0_S: i64 = 1_704_067_200;
const METRIC: &str = "bench_metric";

struct Args {
    series: usize,
    days: i64,
    refreshes: usize,
    step: i64,
    sluice: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        series: 2000,
        days: 7,
        refreshes: 10,
        step: 600,
        sluice: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--series" => a.series = val("--series")?.parse()?,
            "--days" => a.days = val("--days")?.parse()?,
            "--refreshes" => a.refreshes = val("--refreshes")?.parse()?,
            "--step" => a.step = val("--step")?.parse()?,
            "--sluice" => a.sluice = Some(PathBuf::from(val("--sluice")?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    ensure!(
        a.series > 0 && a.days > 0 && a.refreshes > 1 && a.step > 0,
        "sizes must be positive (two refreshes at least)"
    );
    Ok(a)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[frontend-latency] {}", msg.as_ref());
}

/// The week of data: even series counters, odd ones gauges, 20 jobs.
fn write_openmetrics(path: &Path, series: usize, days: i64) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "# HELP {METRIC} Synthetic benchmark series.")?;
    writeln!(w, "# TYPE {METRIC} gauge")?;
    let n = days * 86_400 / INTERVAL_S;
    for i in 0..series {
        let prefix = format!("{METRIC}{{job=\"j{}\",instance=\"host-{i}\"}} ", i % 20);
        let mut counter: u64 = (i as u64 * 7919) % 100_000;
        for k in 0..n {
            let ts = T0_S + k * INTERVAL_S;
            w.write_all(prefix.as_bytes())?;
            if i % 2 == 0 {
                counter += 1 + (i as u64 * 31 + k as u64 * 17) % 97;
                writeln!(w, "{counter} {ts}")?;
            } else {
                let v = ((50.0
                    + 25.0 * ((k as f64 + i as f64) * std::f64::consts::TAU / 240.0).sin())
                    * 1000.0)
                    .round()
                    / 1000.0;
                writeln!(w, "{v} {ts}")?;
            }
        }
    }
    writeln!(w, "# EOF")?;
    w.flush()?;
    Ok(())
}

/// The dashboard's panels.
fn panels() -> Vec<String> {
    let mut p: Vec<String> = (0..8)
        .map(|j| format!("sum(rate({METRIC}{{job=\"j{j}\"}}[10m]))"))
        .collect();
    p.extend([
        format!("sum by (job) (rate({METRIC}[10m]))"),
        format!("avg by (job) ({METRIC})"),
        format!("max({METRIC})"),
        format!("min by (job) ({METRIC})"),
        format!("topk(5, rate({METRIC}[10m]))"),
        format!("count({METRIC})"),
        format!("quantile(0.9, {METRIC})"),
        format!("sum(increase({METRIC}[1h]))"),
        format!("max_over_time({METRIC}{{job=\"j3\"}}[30m])"),
        format!("avg_over_time({METRIC}{{job=\"j4\"}}[30m])"),
        format!("stddev by (job) ({METRIC})"),
        format!("count by (job) ({METRIC} > 50)"),
    ]);
    p
}

/// One dashboard load: every panel at once over `[start, end]`; the slowest panel's time.
async fn load(
    http: &reqwest::Client,
    base: &str,
    start: i64,
    end: i64,
    step: i64,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let calls = panels().into_iter().map(|q| {
        let body = format!(
            "query={}&start={start}&end={end}&step={step}",
            q.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' =>
                        (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        );
        let req = http
            .post(format!("{base}/api/v1/query_range"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let r = req.send().await?;
            let status = r.status();
            let text = r.text().await?;
            ensure!(
                status.is_success() && text.contains("\"success\""),
                "{status}: {}",
                &text[..text.len().min(300)]
            );
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(calls).await {
        r?;
    }
    Ok(t.elapsed().as_secs_f64())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("frontend-latency: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("frontend-latency: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sluice_bin = paths::sluice_binary(args.sluice.as_deref(), false, &|m: &str| log(m))?;
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-frontend-")
        .tempdir()?;
    let work = work.path();
    let om = work.join("data.om");
    let t = Instant::now();
    write_openmetrics(&om, args.series, args.days)?;
    log(format!(
        "wrote {} series x {} days at {INTERVAL_S} s in {:.1} s",
        args.series,
        args.days,
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    let bucket = work.join("bucket");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&bucket)
        .output()
        .context("running promtool (apt-get install prometheus)")?;
    ensure!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&om)?;
    log(format!(
        "promtool tsdb create-blocks-from openmetrics: {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
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
            format!("--data-dir={}", work.join("store-data").display()),
        ],
        work.join("store.log"),
    )?;
    procs::wait_ready(
        &http,
        &format!("http://{}/-/ready", store.http),
        &mut store.guard,
        Duration::from_secs(300),
    )
    .await?;
    let mut query = procs::start_sluice(
        &sluice_bin,
        "sluice query",
        "query",
        &[format!("--endpoint={}", store.grpc)],
        work.join("query.log"),
    )?;
    let direct = format!("http://{}", query.http);
    procs::wait_ready(
        &http,
        &format!("{direct}/-/ready"),
        &mut query.guard,
        Duration::from_secs(60),
    )
    .await?;
    // The querier sees the store's data once its first endpoint refresh ran.
    let end_data = T0_S + args.days * 86_400 - INTERVAL_S;
    let t = Instant::now();
    loop {
        let r = http
            .get(format!(
                "{direct}/api/v1/query?query=count({METRIC})&time={end_data}"
            ))
            .send()
            .await?
            .text()
            .await?;
        if r.contains(&format!("\"{}\"", args.series)) {
            break;
        }
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the querier does not see the data: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut frontend, fe_base) = start_frontend(&sluice_bin, &direct, work)?;
    procs::wait_ready(
        &http,
        &format!("{fe_base}/-/ready"),
        &mut frontend,
        Duration::from_secs(60),
    )
    .await?;

    // Windows: the last `days - 1` days, moving one step per refresh (so each one asks for one new point).
    let step = args.step;
    let span = (args.days - 1) * 86_400;
    let first_end = (end_data - (args.refreshes as i64) * step).div_euclid(step) * step;
    let window = |k: usize| {
        (
            first_end - span + k as i64 * step,
            first_end + k as i64 * step,
        )
    };
    let (mut via_fe, mut via_q) = (Vec::new(), Vec::new());
    let tck = procs::clk_tck();
    let cpu = |pid: u32| procs::cpu_seconds(&pid.to_string(), tck);
    let (mut fe_cpu_warm, mut q_cpu_warm) = (0.0, 0.0);
    for k in 0..args.refreshes {
        let (s, e) = window(k);
        // Interleaved, the querier first, so neither side warms the other's page cache alone.
        via_q.push(load(&http, &direct, s, e, step).await?);
        let (f0, q0) = (cpu(frontend.pid())?, cpu(query.guard.pid())?);
        via_fe.push(load(&http, &fe_base, s, e, step).await?);
        let (f1, q1) = (cpu(frontend.pid())?, cpu(query.guard.pid())?);
        if k > 0 {
            fe_cpu_warm += f1 - f0;
            q_cpu_warm += q1 - q0;
        }
        log(format!(
            "refresh {}: querier {:.0} ms, frontend {:.0} ms (frontend CPU {:.0} ms, querier CPU behind it {:.0} ms)",
            k + 1,
            via_q[k] * 1e3,
            via_fe[k] * 1e3,
            (f1 - f0) * 1e3,
            (q1 - q0) * 1e3
        ));
    }
    store.guard.check_alive()?;
    query.guard.check_alive()?;
    frontend.check_alive()?;
    let (warm_fe, warm_q) = (median(&via_fe[1..]), median(&via_q[1..]));
    println!();
    println!(
        "frontend-latency: {} panels over {} days (step {step} s) of {} series x {INTERVAL_S} s, {} refreshes moving one step each",
        panels().len(),
        args.days - 1,
        args.series,
        args.refreshes
    );
    println!(
        "cold first load : querier {:.0} ms, frontend (split by day, empty cache) {:.0} ms: {:.2}x",
        via_q[0] * 1e3,
        via_fe[0] * 1e3,
        via_q[0] / via_fe[0]
    );
    let warm_n = (args.refreshes - 1) as f64;
    println!(
        "CPU per warm refresh through the frontend: frontend {:.0} ms, querier behind it {:.0} ms",
        fe_cpu_warm / warm_n * 1e3,
        q_cpu_warm / warm_n * 1e3
    );
    println!(
        "refreshes 2..{}  : median querier {:.1} ms, frontend {:.1} ms: frontend {:.1}x faster (goal >= 20x: {})",
        args.refreshes,
        warm_q * 1e3,
        warm_fe * 1e3,
        warm_q / warm_fe,
        if warm_q / warm_fe >= 20.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    Ok(())
}

/// `sluice query-frontend` with an in-memory cache in front of `downstream`; its guard and base URL.
fn start_frontend(
    bin: &Path,
    downstream: &str,
    work: &Path,
) -> anyhow::Result<(ChildGuard, String)> {
    let log_path = work.join("frontend.log");
    let mut child = Command::new(bin)
        .args([
            "query-frontend",
            "--http-address=127.0.0.1:0",
            &format!("--query-frontend.downstream-url={downstream}"),
            "--query-range.response-cache-config=type: IN-MEMORY\nconfig:\n  max_size: 1GB\n",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting sluice query-frontend")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .with_context(|| format!("no http= in {line:?}"))?
        .to_owned();
    Ok((
        ChildGuard {
            name: "sluice query-frontend",
            child,
            log: log_path,
        },
        format!("http://{http}"),
    ))
}
