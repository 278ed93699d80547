//! Child processes of the benchmark and what `/proc` says about them.
//!
//! Every server is wrapped in a [`ChildGuard`], which kills it by PID when
//! dropped, so an error or a panic never leaves one running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Kills and reaps its child when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    pub name: &'static str,
    pub child: Child,
    /// Where the child's output goes, for error messages.
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the child has exited, with the tail of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("waiting on child")? {
            anyhow::bail!(
                "{} exited early ({status}); last log lines:\n{}",
                self.name,
                tail(&self.log, 20)
            );
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log file (empty if unreadable).
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Memory figures of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    /// Peak resident set size (`VmHWM`).
    pub hwm_kib: u64,
    /// Current resident set size (`VmRSS`).
    pub rss_kib: u64,
    /// Current anonymous resident memory (`RssAnon`): heap, stacks.
    pub anon_kib: u64,
    /// Current file-backed resident memory (`RssFile`): mmapped files.
    pub file_kib: u64,
}

pub fn mem(pid: u32) -> anyhow::Result<Mem> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut m = Mem::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kib = rest
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        match key {
            "VmHWM" => m.hwm_kib = kib,
            "VmRSS" => m.rss_kib = kib,
            "RssAnon" => m.anon_kib = kib,
            "RssFile" => m.file_kib = kib,
            _ => {}
        }
    }
    Ok(m)
}

/// Clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds a process (all its threads, live and exited)
/// has used, from `/proc/PID/stat` (`"self"` for this process).
pub fn cpu_seconds(pid: &str, tck: f64) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line, 12 and 13 after the name.
    let after = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / tck)
}

/// Busy CPU seconds of the whole machine (all cores) from `/proc/stat`:
/// user + nice + system + irq + softirq + steal.
pub fn machine_busy_seconds(tck: f64) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    Ok((at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / tck)
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS by writing
/// `5` to `/proc/self/clear_refs` (Linux 4.0+). False when the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU seconds of this process's live threads, summed by
/// thread name (`/proc/self/task/TID/stat`; names are cut to 15 bytes by the
/// kernel). Threads that have exited are not counted.
pub fn thread_cpu_by_name(tck: f64) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let mut by = std::collections::BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let path = e?.path().join("stat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let name = text[open + 1..close].to_string();
        let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        *by.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / tck;
    }
    Ok(by)
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(-1.0)
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a child
/// that binds it right away).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `nproc` and the CPU model.
pub fn machine() -> (usize, String) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    (n, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_proc_entries() {
        let pid = std::process::id();
        let m = mem(pid).expect("own status");
        assert!(m.hwm_kib > 0 && m.rss_kib > 0);
        assert!(cpu_seconds("self", clk_tck()).expect("own stat") >= 0.0);
        assert!(machine_busy_seconds(clk_tck()).expect("/proc/stat") > 0.0);
        assert!(!thread_cpu_by_name(clk_tck()).expect("own tasks").is_empty());
    }
}

/// A running `sluice` subcommand and the addresses it printed.
#[derive(Debug)]
pub struct SluiceProc {
    pub guard: ChildGuard,
    pub grpc: String,
    pub http: String,
}

/// Starts `sluice <sub> <args>` on ephemeral ports and reads the addresses
/// from its `sluice <sub> listening grpc=… http=…` line.
pub fn start_sluice(
    bin: &Path,
    name: &'static str,
    sub: &str,
    args: &[String],
    log_path: PathBuf,
) -> anyhow::Result<SluiceProc> {
    let log_file = std::fs::File::create(&log_path)?;
    let mut child = Command::new(bin)
        .arg(sub)
        .args(args)
        .arg("--grpc-address=127.0.0.1:0")
        .arg("--http-address=127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} {sub}", bin.display()))?;
    let stdout = child.stdout.take().context("sluice stdout")?;
    let mut guard = ChildGuard {
        name,
        child,
        log: log_path,
    };
    let marker = format!("sluice {sub} listening");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&marker) {
                let _ = tx.send(line);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => break l,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                guard.check_alive()?
            }
            Err(_) => {
                guard.check_alive()?;
                bail!(
                    "{name} printed no `listening` line within 60 s; log:\n{}",
                    tail(&guard.log, 20)
                );
            }
        }
    };
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
            .with_context(|| format!("no {k} in {line:?}"))
    };
    let (grpc, http) = (field("grpc=")?, field("http=")?);
    Ok(SluiceProc { guard, grpc, http })
}

/// Polls `url` until it answers 200 OK, for at most `limit`; fails early if
/// the process behind `guard` exits. Returns how long it took.
pub async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    guard: &mut ChildGuard,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        guard.check_alive()?;
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(2)).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} not ready at {url} after {limit:?}; last log lines:\n{}",
        guard.name,
        tail(&guard.log, 20)
    )
}

/// Prometheus on a free port over `data`, ready (within `limit`) and with
/// all `blocks` loaded (its `prometheus_tsdb_blocks_loaded`). Returns the
/// guard, its base URL and how long it took to get ready.
pub async fn start_prometheus_ready(
    http: &reqwest::Client,
    work: &Path,
    data: &Path,
    blocks: usize,
    limit: Duration,
) -> anyhow::Result<(ChildGuard, String, Duration)> {
    start_prometheus_ready_with(http, work, data, blocks, limit, DEFAULT_CONFIG).await
}

/// The config of a Prometheus that only serves its blocks.
pub const DEFAULT_CONFIG: &str = "global:\n  scrape_interval: 15s\nscrape_configs: []\n";

/// [`start_prometheus_ready`] with `config` as prometheus.yml (external labels for a sidecar, say).
pub async fn start_prometheus_ready_with(
    http: &reqwest::Client,
    work: &Path,
    data: &Path,
    blocks: usize,
    limit: Duration,
    config: &str,
) -> anyhow::Result<(ChildGuard, String, Duration)> {
    let port = free_port()?;
    let mut prom = start_prometheus_with(work, data, port, config)?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_ready(http, &format!("{base}/-/ready"), &mut prom, limit).await?;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let loaded = metrics
        .lines()
        .find_map(|l| l.strip_prefix("prometheus_tsdb_blocks_loaded "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(-1.0);
    anyhow::ensure!(
        loaded as usize == blocks,
        "prometheus loaded {loaded} blocks, expected {blocks}; log:\n{}",
        tail(&prom.log, 20)
    );
    Ok((prom, base, ready))
}

/// Starts Prometheus over `data` (a TSDB directory of blocks) with no scraping,
/// 100y retention and no compaction of 2 h blocks, on 127.0.0.1:`port`.
pub fn start_prometheus(work: &Path, data: &Path, port: u16) -> anyhow::Result<ChildGuard> {
    start_prometheus_with(work, data, port, DEFAULT_CONFIG)
}

/// [`start_prometheus`] with `config` as prometheus.yml.
pub fn start_prometheus_with(
    work: &Path,
    data: &Path,
    port: u16,
    config: &str,
) -> anyhow::Result<ChildGuard> {
    let cfg = work.join("prometheus.yml");
    std::fs::write(&cfg, config)?;
    let log_path = work.join("prometheus.log");
    let log_file = std::fs::File::create(&log_path)?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        // No compaction of the 2 h blocks while the benchmark runs.
        .arg("--storage.tsdb.min-block-duration=2h")
        .arg("--storage.tsdb.max-block-duration=2h")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting prometheus (apt-get install prometheus)")?;
    Ok(ChildGuard {
        name: "prometheus",
        child,
        log: log_path,
    })
}
