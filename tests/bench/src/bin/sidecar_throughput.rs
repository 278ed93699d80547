//! `sidecar-throughput`: samples per second streamed by `sluice sidecar` (`thanos.Store/Series`, which reads
//! Prometheus' streamed remote read and adds external labels) versus the same Prometheus 2.42's streamed remote
//! read asked directly, over the same promtool blocks, both on 127.0.0.1, in one run. The sidecar's overhead is
//! the ratio; its peak RSS is reported after quarter-range reads and again after full-range reads, so growth with
//! the size of the response shows.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin sidecar-throughput -- [--series 10000] [--hours 2] [--rounds 7]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use sluice_bench::fixture::{Fixture, make_blocks};
use sluice_bench::paths;
use sluice_bench::procs::{self, mem};
use sluice_bench::reads::{Count, prometheus_read, remote_read_body, sluice_read};
use sluice_bench::stats::{best, median};
use sluice_proto::thanos::store_client::StoreClient;
use tonic::transport::Endpoint;

const USAGE: &str = "\
sidecar-throughput: sluice sidecar Series vs the same Prometheus 2.42's streamed remote read

usage: cargo run --release -p sluice-bench --bin sidecar-throughput -- [options]

  --series N      series to generate (default 10000)
  --hours H       hours of data at a 15 s interval (default 2)
  --rounds R      measured rounds per side and range, interleaved (default 7)
  --sluice PATH   sluice binary (default <target>/release/sluice, built if missing)
  --build         rebuild the sluice binary first
  --fixed-window  gRPC client with HTTP/2's fixed 64 KiB flow-control window instead of the adaptive one
                  (grpc-go, Thanos' querier, estimates the bandwidth-delay product; so does Sluice's querier)
  --help          this text

Needs promtool and prometheus 2.42 on PATH (apt-get install prometheus).";

struct Args {
    series: usize,
    hours: u32,
    rounds: usize,
    sluice: Option<PathBuf>,
    build: bool,
    fixed_window: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        series: 10_000,
        hours: 2,
        rounds: 7,
        sluice: None,
        build: false,
        fixed_window: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--series" => a.series = val("--series")?.parse()?,
            "--hours" => a.hours = val("--hours")?.parse()?,
            "--rounds" => a.rounds = val("--rounds")?.parse()?,
            "--sluice" => a.sluice = Some(PathBuf::from(val("--sluice")?)),
            "--build" => a.build = true,
            "--fixed-window" => a.fixed_window = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    ensure!(
        a.series > 0 && a.hours > 0 && a.rounds > 0,
        "sizes must be positive"
    );
    Ok(a)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[sidecar-throughput] {}", msg.as_ref());
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
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Seconds per call of each side over one range, and what they returned.
#[derive(Default)]
struct Sides {
    /// CPU seconds summed over the measured rounds: Prometheus on the direct path; Prometheus and the sidecar on
    /// the sidecar path.
    direct_prom_cpu: f64,
    sidecar_prom_cpu: f64,
    sidecar_cpu: f64,
    direct: Vec<f64>,
    sidecar: Vec<f64>,
    direct_count: Count,
    sidecar_count: Count,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sluice_bin = paths::sluice_binary(args.sluice.as_deref(), args.build, |m| log(m))?;
    let fixture = Fixture {
        series: args.series,
        hours: args.hours,
    };
    let tmp = tempfile::Builder::new()
        .prefix("sluice-bench-sidecar-")
        .tempdir()?;
    let work = tmp.path().to_path_buf();
    let blocks = make_blocks(&fixture, &work, |m| log(m))?;
    let data = work.join("prometheus-data");
    for b in &blocks {
        paths::copy_dir(b, &data.join(b.file_name().context("block name")?))?;
    }
    let http = reqwest::Client::new();
    let config = "global:\n  scrape_interval: 15s\n  external_labels: {cluster: bench, replica: \"0\"}\n\
                  scrape_configs: []\n";
    let (prom, prom_base, _) = procs::start_prometheus_ready_with(
        &http,
        &work,
        &data,
        blocks.len(),
        Duration::from_secs(120),
        config,
    )
    .await?;
    let mut sidecar = procs::start_sluice(
        &sluice_bin,
        "sluice sidecar",
        "sidecar",
        &[
            format!("--prometheus.url={prom_base}"),
            "--prometheus.get_config_interval=5s".into(),
        ],
        work.join("sidecar.log"),
    )?;
    procs::wait_ready(
        &http,
        &format!("http://{}/-/ready", sidecar.http),
        &mut sidecar.guard,
        Duration::from_secs(60),
    )
    .await?;
    let channel = Endpoint::from_shared(format!("http://{}", sidecar.grpc))?
        .tcp_nodelay(true)
        .http2_adaptive_window(!args.fixed_window)
        .connect()
        .await?;
    let mut client = StoreClient::new(channel).max_decoding_message_size(usize::MAX);
    let read_url = format!("{prom_base}/api/v1/read");
    let (mint, maxt) = (fixture.min_time_ms(), fixture.max_time_ms());
    let quarter = (mint, mint + (maxt - mint) / 4);
    let full = (mint, maxt);
    let sidecar_pid = sidecar.guard.pid();
    let prom_pid = prom.pid();
    let tck = procs::clk_tck();
    let idle = mem(sidecar_pid)?;
    log(format!(
        "prometheus {prom_base} (pid {}), sidecar grpc {} (pid {sidecar_pid}, idle RSS {:.1} MiB)",
        prom.pid(),
        sidecar.grpc,
        mib(idle.rss_kib)
    ));

    let mut results = Vec::new();
    let mut hwm = Vec::new();
    for (name, range) in [("quarter range", quarter), ("full range", full)] {
        let body = remote_read_body(range)?;
        let mut sides = Sides::default();
        // One unmeasured round each, then interleaved measured rounds.
        prometheus_read(&http, &read_url, &body).await?;
        sluice_read(&mut client, range, 64, false).await?;
        let cpu = |pid: u32| procs::cpu_seconds(&pid.to_string(), tck);
        for _ in 0..args.rounds {
            let p0 = cpu(prom_pid)?;
            let t = Instant::now();
            sides.direct_count = prometheus_read(&http, &read_url, &body).await?;
            sides.direct.push(t.elapsed().as_secs_f64());
            let (p1, s1) = (cpu(prom_pid)?, cpu(sidecar_pid)?);
            sides.direct_prom_cpu += p1 - p0;
            let t = Instant::now();
            sides.sidecar_count = sluice_read(&mut client, range, 64, false).await?;
            sides.sidecar.push(t.elapsed().as_secs_f64());
            sides.sidecar_prom_cpu += cpu(prom_pid)? - p1;
            sides.sidecar_cpu += cpu(sidecar_pid)? - s1;
        }
        ensure!(
            sides.direct_count.samples == sides.sidecar_count.samples
                && sides.direct_count.series == sides.sidecar_count.series,
            "{name}: the sidecar returned {} series / {} samples, Prometheus {} / {}",
            sides.sidecar_count.series,
            sides.sidecar_count.samples,
            sides.direct_count.series,
            sides.direct_count.samples
        );
        hwm.push((name, mem(sidecar_pid)?.hwm_kib));
        results.push((name, sides));
    }

    println!();
    println!(
        "sidecar-throughput: {} series x {} h, {} measured rounds per side (interleaved), {} remote read vs {} sidecar",
        fixture.series,
        fixture.hours,
        args.rounds,
        paths::tool_version("prometheus")?,
        "sluice"
    );
    for (name, s) in &results {
        let samples = s.direct_count.samples as f64;
        let (d, c) = (median(&s.direct), median(&s.sidecar));
        println!(
            "{name:<14}: {} series, {} samples; direct remote read median {:.1} ms ({:.1} M samples/s, best {:.1} ms); \
             sidecar Series median {:.1} ms ({:.1} M samples/s, best {:.1} ms); sidecar/direct throughput {:.2}x (goal >= 0.9x: {})",
            s.direct_count.series,
            s.direct_count.samples,
            d * 1e3,
            samples / d / 1e6,
            best(&s.direct) * 1e3,
            c * 1e3,
            samples / c / 1e6,
            best(&s.sidecar) * 1e3,
            d / c,
            if d / c >= 0.9 { "MET" } else { "NOT MET" }
        );
    }
    for (name, s) in &results {
        let per = |v: f64| v * 1e3 / args.rounds as f64;
        println!(
            "CPU per call  : {name}: direct: Prometheus {:.1} ms; via the sidecar: Prometheus {:.1} ms + sidecar {:.1} ms",
            per(s.direct_prom_cpu),
            per(s.sidecar_prom_cpu),
            per(s.sidecar_cpu)
        );
    }
    println!(
        "sidecar RSS   : idle {:.1} MiB; peak (VmHWM) after the quarter-range reads {:.1} MiB, after the full-range reads {:.1} MiB",
        mib(idle.rss_kib),
        mib(hwm[0].1),
        mib(hwm[1].1)
    );
    drop(client);
    drop(sidecar);
    drop(prom);
    drop(tmp);
    Ok(())
}
