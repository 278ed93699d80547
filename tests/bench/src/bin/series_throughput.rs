//! `series-throughput`: samples per second streamed to a client by
//! `sluice store` (`thanos.Store/Series`, filesystem bucket) versus
//! Prometheus 2.42's streamed remote read (`STREAMED_XOR_CHUNKS`) over the
//! same blocks, both on 127.0.0.1, in one run.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin series-throughput -- [--series 10000] [--hours 2] [--rounds 11]
//! ```
//!
//! Steps: write an OpenMetrics file, make blocks with the real `promtool tsdb
//! create-blocks-from openmetrics`, copy them into a filesystem bucket for
//! `sluice store` and into a data dir for `prometheus`, then time interleaved
//! rounds of one full-range `{__name__="bench_metric"}` read from each. Both
//! clients stream and decode every message and count samples (the first two
//! bytes of each XOR chunk); both counts must equal series × samples per
//! series, so the benchmark is also a correctness check. Prints medians, best
//! rounds, the throughput ratio, CPU per call and peak RSS (VmHWM) of both
//! servers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sluice_bench::fixture::{Fixture, METRIC, make_blocks};
use sluice_bench::paths;
use sluice_bench::procs::{self, Mem};
use sluice_bench::reads::{Count, prometheus_read, remote_read_body, sluice_read};
use sluice_bench::stats::{best, median};
use sluice_proto::thanos::store_client::StoreClient;
use tonic::transport::Endpoint;

const USAGE: &str = "\
series-throughput: sluice store Series vs Prometheus 2.42 streamed remote read

usage: cargo run --release -p sluice-bench --bin series-throughput -- [options]

  --series N        series to generate (default 10000)
  --hours H         hours of data at a 15 s interval (default 2)
  --rounds R        measured rounds per server, interleaved (default 11)
  --warmup W        unmeasured rounds per server first (default 2)
  --batch-size B    SeriesRequest.response_batch_size (default 64)
  --sluice PATH     sluice binary (default <target>/release/sluice, built if missing)
  --build           run `cargo build --release -p sluice --bin sluice` first even if the binary exists
  --adaptive-window gRPC client with HTTP/2 adaptive flow-control window (like grpc-go's BDP estimation)
  --keep            keep the work directory (blocks, logs) and print its path
  --help            this text

Needs promtool and prometheus 2.42 on PATH (apt-get install prometheus).";

#[derive(Debug, Clone)]
struct Args {
    series: usize,
    hours: u32,
    rounds: usize,
    warmup: usize,
    batch_size: i64,
    sluice: Option<PathBuf>,
    build: bool,
    adaptive_window: bool,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        series: 10_000,
        hours: 2,
        rounds: 11,
        warmup: 2,
        batch_size: 64,
        sluice: None,
        build: false,
        adaptive_window: false,
        keep: false,
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
            "--series" => a.series = value("--series")?.parse().context("--series")?,
            "--hours" => a.hours = value("--hours")?.parse().context("--hours")?,
            "--rounds" => a.rounds = value("--rounds")?.parse().context("--rounds")?,
            "--warmup" => a.warmup = value("--warmup")?.parse().context("--warmup")?,
            "--batch-size" => {
                a.batch_size = value("--batch-size")?.parse().context("--batch-size")?
            }
            "--sluice" => a.sluice = Some(PathBuf::from(value("--sluice")?)),
            "--build" => a.build = true,
            "--adaptive-window" => a.adaptive_window = true,
            "--keep" => a.keep = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(a.series > 0, "--series must be at least 1");
    ensure!(
        a.hours > 0 && a.hours <= 24 * 14,
        "--hours must be in 1..=336"
    );
    ensure!(
        a.rounds > 0 && a.rounds <= 100,
        "--rounds must be in 1..=100"
    );
    ensure!(a.warmup <= 10, "--warmup must be at most 10");
    Ok(a)
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

fn log(msg: impl AsRef<str>) {
    eprintln!("[series-throughput] {}", msg.as_ref());
}

fn dir_size(dir: &Path, sub: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `sluice store` over a FILESYSTEM bucket, on ephemeral ports.
fn start_sluice(bin: &Path, work: &Path, bucket: &Path) -> anyhow::Result<procs::SluiceProc> {
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    procs::start_sluice(
        bin,
        "sluice store",
        "store",
        &[
            format!("--objstore.config={objstore}"),
            format!("--data-dir={}", work.join("sluice-data").display()),
        ],
        work.join("sluice.log"),
    )
}

/// One measured call.
#[derive(Debug, Clone, Copy)]
struct Round {
    secs: f64,
    /// Seconds from the start of the call to the first data message.
    first: f64,
    /// Seconds from the last data message to the end of the stream.
    tail: f64,
    server_cpu: f64,
    client_cpu: f64,
}

#[derive(Debug, Default)]
struct Side {
    rounds: Vec<Round>,
    count: Count,
    /// Largest byte count seen (gRPC bytes are only counted in warm-up rounds).
    bytes: u64,
    idle: Mem,
    peak: Mem,
}

impl Side {
    fn secs(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| r.secs).collect()
    }
    fn median_secs(&self) -> f64 {
        median(&self.secs())
    }
    /// Mean server CPU ms per call: /proc times tick at 10 ms, so the sum
    /// over all rounds is more precise than any one round.
    fn server_cpu_ms(&self) -> f64 {
        1e3 * self.rounds.iter().map(|r| r.server_cpu).sum::<f64>()
            / self.rounds.len().max(1) as f64
    }
    fn first_ms(&self) -> f64 {
        median(
            &self
                .rounds
                .iter()
                .map(|r| r.first * 1e3)
                .collect::<Vec<_>>(),
        )
    }
    fn tail_ms(&self) -> f64 {
        median(&self.rounds.iter().map(|r| r.tail * 1e3).collect::<Vec<_>>())
    }
    /// Mean client CPU ms per call.
    fn client_cpu_ms(&self) -> f64 {
        1e3 * self.rounds.iter().map(|r| r.client_cpu).sum::<f64>()
            / self.rounds.len().max(1) as f64
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn run(args: Args) -> anyhow::Result<()> {
    let prom_version = paths::tool_version("prometheus")?;
    let promtool_version = paths::tool_version("promtool")?;
    if !prom_version.contains("2.42") {
        log(format!(
            "warning: the oracle is Prometheus 2.42, found {prom_version}"
        ));
    }
    let sluice_bin = paths::sluice_binary(args.sluice.as_deref(), args.build, |m| log(m))?;
    let fixture = Fixture {
        series: args.series,
        hours: args.hours,
    };
    let expected = fixture.total_samples();

    let tmp = tempfile::Builder::new()
        .prefix("sluice-bench-")
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

    // 1. Fixture and blocks, by the real promtool.
    let block_list = make_blocks(&fixture, &work, |m| log(m))?;
    let chunk_bytes: u64 = block_list.iter().map(|b| dir_size(b, "chunks")).sum();
    let index_bytes: u64 = block_list
        .iter()
        .map(|b| {
            std::fs::metadata(b.join("index"))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();

    // 2. Same blocks in a filesystem bucket and in a Prometheus data dir.
    let bucket = work.join("bucket");
    let serve = work.join("prometheus-data");
    for b in &block_list {
        let name = b.file_name().context("block name")?;
        paths::copy_dir(b, &bucket.join(name))?;
        paths::copy_dir(b, &serve.join(name))?;
    }

    let http = reqwest::Client::builder().build().context("HTTP client")?;

    // 3. sluice store.
    let mut sluice = start_sluice(&sluice_bin, &work, &bucket)?;
    let ready = procs::wait_ready(
        &http,
        &format!("http://{}/-/ready", sluice.http),
        &mut sluice.guard,
        Duration::from_secs(60),
    )
    .await?;
    log(format!(
        "sluice store ready in {:.1} s (pid {}, grpc {})",
        ready.as_secs_f64(),
        sluice.guard.pid(),
        sluice.grpc
    ));

    // 4. Prometheus on its copy.
    let (mut prom, prom_base, ready) = procs::start_prometheus_ready(
        &http,
        &work,
        &serve,
        block_list.len(),
        Duration::from_secs(120),
    )
    .await?;
    log(format!(
        "prometheus ready in {:.1} s (pid {}, {prom_base})",
        ready.as_secs_f64(),
        prom.pid()
    ));

    // 5. Clients.
    let mut endpoint = Endpoint::from_shared(format!("http://{}", sluice.grpc))?.tcp_nodelay(true);
    if args.adaptive_window {
        endpoint = endpoint.http2_adaptive_window(true);
    }
    let channel = endpoint
        .connect()
        .await
        .context("connecting to sluice store")?;
    let mut client = StoreClient::new(channel).max_decoding_message_size(usize::MAX);
    let read_url = format!("{prom_base}/api/v1/read");
    let range = (fixture.min_time_ms(), fixture.max_time_ms());
    let read_body = remote_read_body(range)?;
    let tck = procs::clk_tck();

    let mut s = Side {
        idle: procs::mem(sluice.guard.pid())?,
        ..Default::default()
    };
    let mut p = Side {
        idle: procs::mem(prom.pid())?,
        ..Default::default()
    };
    let sluice_pid = sluice.guard.pid().to_string();
    let prom_pid = prom.pid().to_string();

    let ours = |tck: f64| -> anyhow::Result<f64> {
        Ok(procs::cpu_seconds(&sluice_pid, tck)?
            + procs::cpu_seconds(&prom_pid, tck)?
            + procs::cpu_seconds("self", tck)?)
    };
    // Machine-wide busy CPU and ours when the measured rounds start.
    let mut background_start: Option<(Instant, f64, f64, f64)> = None;
    for round in 0..args.warmup + args.rounds {
        let measured = round >= args.warmup;
        if round == args.warmup {
            background_start = Some((
                Instant::now(),
                procs::machine_busy_seconds(tck)?,
                ours(tck)?,
                procs::loadavg(),
            ));
        }
        // Alternate who goes first so neither always runs on a warmer cache.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_sluice in order {
            let server_pid = if is_sluice { &sluice_pid } else { &prom_pid };
            let (cpu0, me0) = (
                procs::cpu_seconds(server_pid, tck)?,
                procs::cpu_seconds("self", tck)?,
            );
            let t = Instant::now();
            let c = if is_sluice {
                sluice_read(&mut client, range, args.batch_size, !measured).await?
            } else {
                prometheus_read(&http, &read_url, &read_body).await?
            };
            let end = Instant::now();
            let secs = end.duration_since(t).as_secs_f64();
            let tail = c
                .last_data
                .map(|l| end.duration_since(l).as_secs_f64())
                .unwrap_or(0.0);
            let first = c
                .first_data
                .map(|f| f.duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            let r = Round {
                secs,
                first,
                tail,
                server_cpu: procs::cpu_seconds(server_pid, tck)? - cpu0,
                client_cpu: procs::cpu_seconds("self", tck)? - me0,
            };
            let (name, side) = if is_sluice {
                ("sluice", &mut s)
            } else {
                ("prometheus", &mut p)
            };
            ensure!(
                c.samples == expected && c.series == fixture.series as u64,
                "{name} returned {} series / {} samples, expected {} / {expected}",
                c.series,
                c.samples,
                fixture.series
            );
            log(format!(
                "{} round {round} {name}: {:.3} s (first message after {:.1} ms, stream ended {:.1} ms \
                 after the last one), {} samples, {:.2} M samples/s",
                if measured { "measured" } else { "warm-up" },
                secs,
                first * 1e3,
                tail * 1e3,
                c.samples,
                c.samples as f64 / secs / 1e6
            ));
            if measured {
                side.rounds.push(r);
            }
            side.bytes = side.bytes.max(c.bytes);
            side.count = c;
            sluice.guard.check_alive()?;
            prom.check_alive()?;
        }
    }
    // CPU used by anything other than the two servers and this client while
    // the measured rounds ran: other work on the machine skews the numbers.
    let (background, background_pct) = match background_start {
        Some((t0, busy0, ours0, load0)) => {
            let wall = t0.elapsed().as_secs_f64();
            let other = (procs::machine_busy_seconds(tck)? - busy0) - (ours(tck)? - ours0);
            let pct = 100.0 * other.max(0.0) / wall;
            let text = format!(
                "{pct:.0}% of one core (load average {load0:.2} -> {:.2})",
                procs::loadavg()
            );
            (text, pct)
        }
        None => ("n/a".into(), 0.0),
    };
    s.peak = procs::mem(sluice.guard.pid())?;
    p.peak = procs::mem(prom.pid())?;
    ensure!(
        s.count.samples == p.count.samples,
        "sluice and prometheus disagree on the sample count"
    );

    // 6. Report.
    let (nproc, cpu) = procs::machine();
    println!();
    println!(
        "series-throughput: sluice store Series (gRPC) vs Prometheus streamed remote read (STREAMED_XOR_CHUNKS)"
    );
    println!("machine    : {nproc} CPUs (nproc), {cpu}");
    println!("background : other processes used {background} during the measured rounds");
    if background_pct >= 10.0 {
        println!(
            "WARNING    : other work on this machine skewed these numbers; rerun when it is quiet"
        );
    }
    println!("peer       : {prom_version} / {promtool_version}");
    println!("sluice     : {}", sluice_bin.display());
    println!(
        "data       : {} series x {}h @ 15s = {} samples; {} block(s), chunks {:.1} MiB, index {:.1} MiB",
        fixture.series,
        fixture.hours,
        expected,
        block_list.len(),
        chunk_bytes as f64 / 1048576.0,
        index_bytes as f64 / 1048576.0
    );
    println!(
        "query      : {{__name__=\"{METRIC}\"}} [{}, {}] ms; gRPC response_batch_size={}{}; {} measured rounds (interleaved) after {} warm-up",
        fixture.min_time_ms(),
        fixture.max_time_ms(),
        args.batch_size,
        if args.adaptive_window {
            ", client adaptive HTTP/2 window"
        } else {
            ""
        },
        args.rounds,
        args.warmup
    );
    println!();
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>12} {:>12} {:>10} {:>10} {:>9} {:>8} {:>9} {:>10}",
        "server",
        "samples",
        "median s",
        "best s",
        "median S/s",
        "best S/s",
        "srv CPU ms",
        "cli CPU ms",
        "first ms",
        "tail ms",
        "MiB sent",
        "peak RSS"
    );
    for (name, side) in [("sluice store (gRPC)", &s), ("prometheus remote read", &p)] {
        let secs = side.secs();
        let (med, bst) = (median(&secs), best(&secs));
        println!(
            "{:<26} {:>10} {:>9.3} {:>9.3} {:>12.0} {:>12.0} {:>10.1} {:>10.1} {:>9.1} {:>8.1} {:>9.1} {:>6.1} MiB",
            name,
            side.count.samples,
            med,
            bst,
            side.count.samples as f64 / med,
            side.count.samples as f64 / bst,
            side.server_cpu_ms(),
            side.client_cpu_ms(),
            side.first_ms(),
            side.tail_ms(),
            side.bytes as f64 / 1048576.0,
            mib(side.peak.hwm_kib),
        );
    }
    let ratio = p.median_secs() / s.median_secs();
    println!();
    println!(
        "ratio sluice/prometheus throughput (median): {ratio:.2}x   best: {:.2}x   goal >= 2x: {}",
        best(&p.secs()) / best(&s.secs()),
        if ratio >= 2.0 { "MET" } else { "NOT MET" }
    );
    for (name, side) in [("sluice store", &s), ("prometheus", &p)] {
        println!(
            "RSS {:<13}: peak (VmHWM) {:.1} MiB; idle before reads {:.1} MiB; after reads {:.1} MiB (anon {:.1}, file-backed {:.1})",
            name,
            mib(side.peak.hwm_kib),
            mib(side.idle.rss_kib),
            mib(side.peak.rss_kib),
            mib(side.peak.anon_kib),
            mib(side.peak.file_kib)
        );
    }
    println!(
        "frames     : sluice {} gRPC messages, prometheus {} frames; chunks {} / {}",
        s.count.frames, p.count.frames, s.count.chunks, p.count.chunks
    );
    println!(
        "columns    : S/s = samples/s; CPU ms = mean CPU time per call of the server process and of this client; first ms / tail ms = median time to the first data message / from the last data message to the end of the stream; MiB sent = protobuf bytes (gRPC messages) / response body bytes"
    );

    drop(client);
    drop(prom);
    drop(sluice);
    drop(tmp);
    Ok(())
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
