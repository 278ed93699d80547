//! The PromQL benchmarks' workload: an OpenMetrics fixture of about 10k series
//! x 6 h at 15 s (request counters with instance restarts, a classic latency
//! histogram, a gauge and a per-job info metric), turned into blocks by the
//! real `promtool tsdb create-blocks-from openmetrics` and cached under
//! `target/sluice-bench/promql-latency/` by shape and generator version.
//! Shared by `promql-latency` and `soak`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};

use crate::paths;

fn log(msg: impl AsRef<str>) {
    eprintln!("[workload] {}", msg.as_ref());
}

// ---------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------

/// Bump when the generator's output changes, so cached blocks are remade.
pub const FIXTURE_VERSION: u32 = 2;
/// Start of the data: 2024-01-01T00:00:00Z, aligned to 2 h.
pub const T0_SECONDS: i64 = 1_704_067_200;
pub const INTERVAL_SECONDS: i64 = 15;
pub const JOBS: &[&str] = &[
    "api",
    "auth",
    "billing",
    "cart",
    "checkout",
    "frontend",
    "inventory",
    "payments",
    "search",
    "shipping",
];
pub const TEAMS: &[&str] = &["core", "growth", "money", "platform", "discovery"];
pub const METHODS: &[&str] = &["GET", "POST", "PUT"];
pub const CODES: &[&str] = &["200", "500"];
/// Prometheus' default histogram buckets.
pub const BUCKETS: &[(f64, &str)] = &[
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1.0"),
    (2.5, "2.5"),
    (5.0, "5.0"),
    (f64::INFINITY, "+Inf"),
];
/// Instances per job that also export the latency histogram (capped by
/// `instances_per_job`).
pub const HIST_INSTANCES_PER_JOB: usize = 25;

/// splitmix64: a small deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Shape of the fixture.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub instances_per_job: usize,
    pub hours: u32,
}

impl Shape {
    pub fn samples_per_series(&self) -> usize {
        self.hours as usize * 3600 / INTERVAL_SECONDS as usize
    }
    pub fn hist_instances_per_job(&self) -> usize {
        HIST_INSTANCES_PER_JOB.min(self.instances_per_job)
    }
    pub fn instances(&self) -> usize {
        JOBS.len() * self.instances_per_job
    }
    pub fn request_series(&self) -> usize {
        self.instances() * METHODS.len() * CODES.len()
    }
    pub fn histogram_series(&self) -> usize {
        JOBS.len() * self.hist_instances_per_job() * (BUCKETS.len() + 2)
    }
    /// Series per metric name.
    pub fn series_by_metric(&self) -> [(&'static str, usize); 6] {
        let hist_instances = JOBS.len() * self.hist_instances_per_job();
        [
            ("bench_requests_total", self.request_series()),
            (
                "bench_latency_seconds_bucket",
                hist_instances * BUCKETS.len(),
            ),
            ("bench_latency_seconds_sum", hist_instances),
            ("bench_latency_seconds_count", hist_instances),
            ("bench_gauge", self.instances()),
            ("bench_job_info", JOBS.len()),
        ]
    }
    pub fn total_series(&self) -> usize {
        self.request_series() + self.histogram_series() + self.instances() + JOBS.len()
    }
    pub fn min_time_ms(&self) -> i64 {
        T0_SECONDS * 1000
    }
    pub fn max_time_ms(&self) -> i64 {
        (T0_SECONDS + (self.samples_per_series() as i64 - 1) * INTERVAL_SECONDS) * 1000
    }
    pub fn cache_key(&self) -> String {
        format!(
            "v{FIXTURE_VERSION}-i{}-{}h",
            self.instances_per_job, self.hours
        )
    }

    pub fn instance_label(job: usize, k: usize) -> String {
        format!("10.{}.{}.{}:9100", job, k / 250, k % 250 + 1)
    }

    /// Sample index at which instance (job, k) restarts (all its counters
    /// start again from 0), if it does: about 15% of instances restart once.
    pub fn restart_at(&self, job: usize, k: usize) -> Option<usize> {
        let mut r = Rng::new(0x5157_4152_5400_0000 ^ ((job as u64) << 32) ^ k as u64);
        let n = self.samples_per_series();
        (r.next_u64() % 100 < 15 && n > 4).then(|| 2 + (r.next_u64() as usize % (n - 4)))
    }

    /// Writes the OpenMetrics text: one family after another, each series'
    /// whole timeline in turn, timestamps in seconds, `# EOF` at the end.
    pub fn write_openmetrics(&self, w: &mut impl Write) -> std::io::Result<()> {
        let n = self.samples_per_series();
        let ts = |i: usize| T0_SECONDS + i as i64 * INTERVAL_SECONDS;

        // 1. Request counters: Zipf-distributed rates (a bijective scramble
        // of the series index gives each its rank), so the top few series
        // are far apart and topk has no ties; integer increments with noise;
        // resets when the instance restarts. Every counter starts high (the
        // process has been up for hours): Prometheus 2.42 and 3.x extrapolate
        // rate() differently towards a counter's zero point when the window
        // starts before the first sample and that sample is small relative to
        // the increase (2.42 caps at the zero point before its 1.1-interval
        // threshold check, 3.x after it), which would flag windows at the
        // start of the data as mismatches that are only a version difference.
        writeln!(w, "# HELP bench_requests Requests handled.")?;
        writeln!(w, "# TYPE bench_requests counter")?;
        let total = self.request_series() as u64;
        let mult = if gcd(7919, total) == 1 { 7919 } else { 1 };
        let mut s: u64 = 0;
        for (j, job) in JOBS.iter().enumerate() {
            for k in 0..self.instances_per_job {
                let inst = Self::instance_label(j, k);
                let restart = self.restart_at(j, k);
                for method in METHODS {
                    for code in CODES {
                        let rank = (s * mult + 13) % total;
                        let lambda = 1000.0 / (rank as f64 + 1.0);
                        let mut rng = Rng::new(s.wrapping_mul(0x100_0000_01b3) ^ 0xc0ffee);
                        let prefix = format!(
                            "bench_requests_total{{job=\"{job}\",instance=\"{inst}\",method=\"{method}\",code=\"{code}\"}} "
                        );
                        let mut v = (lambda * (2_000.0 + 20_000.0 * rng.f64()))
                            .floor()
                            .max(100.0);
                        for i in 0..n {
                            if i > 0 {
                                let inc = (lambda * (0.8 + 0.4 * rng.f64()) + rng.f64()).floor();
                                v = if restart == Some(i) { inc } else { v + inc };
                            }
                            w.write_all(prefix.as_bytes())?;
                            writeln!(w, "{v} {}", ts(i))?;
                        }
                        s += 1;
                    }
                }
            }
        }

        // 2. Classic histogram over the first instances of every job:
        // log-normal latencies whose median depends on the job and drifts
        // over the day; all series of an instance reset together.
        writeln!(w, "# HELP bench_latency_seconds Request latency.")?;
        writeln!(w, "# TYPE bench_latency_seconds histogram")?;
        let mut buckets = vec![vec![0u64; n]; BUCKETS.len()];
        let mut sums = vec![0f64; n];
        for (j, job) in JOBS.iter().enumerate() {
            let mu = (0.012 * (1.0 + (j % 5) as f64)).ln();
            for k in 0..self.hist_instances_per_job() {
                let inst = Self::instance_label(j, k);
                let restart = self.restart_at(j, k);
                let mut rng = Rng::new(0x4849_5354 ^ ((j as u64) << 20) ^ k as u64);
                let rate = 5.0 + (rng.next_u64() % 36) as f64;
                let mut cum = vec![0u64; BUCKETS.len()];
                let mut sum = 0.0f64;
                let start = (2000 + rng.next_u64() % 5000) as f64;
                for (b, c) in cum.iter_mut().enumerate() {
                    // A plausible starting state: the process has been up a while.
                    *c = (start * (b + 1) as f64 / BUCKETS.len() as f64) as u64;
                }
                sum += start * 0.05;
                for i in 0..n {
                    if restart == Some(i) {
                        cum.iter_mut().for_each(|c| *c = 0);
                        sum = 0.0;
                    }
                    if i > 0 {
                        let drift = 0.4 * (std::f64::consts::TAU * ts(i) as f64 / 21_600.0).sin();
                        let obs = (rate * (0.7 + 0.6 * rng.f64()) + rng.f64()) as usize;
                        for _ in 0..obs {
                            let lat = (mu + drift + 0.7 * rng.normal()).exp();
                            sum += lat;
                            let first = BUCKETS.iter().position(|(le, _)| lat <= *le).unwrap_or(0);
                            for c in &mut cum[first..] {
                                *c += 1;
                            }
                        }
                    }
                    for (b, c) in cum.iter().enumerate() {
                        buckets[b][i] = *c;
                    }
                    sums[i] = (sum * 1e6).round() / 1e6;
                }
                for (b, (_, le)) in BUCKETS.iter().enumerate() {
                    let prefix = format!(
                        "bench_latency_seconds_bucket{{job=\"{job}\",instance=\"{inst}\",le=\"{le}\"}} "
                    );
                    for (i, v) in buckets[b].iter().enumerate() {
                        w.write_all(prefix.as_bytes())?;
                        writeln!(w, "{v} {}", ts(i))?;
                    }
                }
                let prefix =
                    format!("bench_latency_seconds_sum{{job=\"{job}\",instance=\"{inst}\"}} ");
                for (i, v) in sums.iter().enumerate() {
                    w.write_all(prefix.as_bytes())?;
                    writeln!(w, "{v} {}", ts(i))?;
                }
                let prefix =
                    format!("bench_latency_seconds_count{{job=\"{job}\",instance=\"{inst}\"}} ");
                let inf = BUCKETS.len() - 1;
                for (i, v) in buckets[inf].iter().enumerate() {
                    w.write_all(prefix.as_bytes())?;
                    writeln!(w, "{v} {}", ts(i))?;
                }
            }
        }

        // 3. A gauge per instance: a slow wave with noise, 2 decimals.
        writeln!(w, "# HELP bench_gauge Queue depth.")?;
        writeln!(w, "# TYPE bench_gauge gauge")?;
        for (j, job) in JOBS.iter().enumerate() {
            for k in 0..self.instances_per_job {
                let inst = Self::instance_label(j, k);
                let mut rng = Rng::new(0x4741_5547 ^ ((j as u64) << 20) ^ k as u64);
                let period = 3600.0 * (1.0 + 2.0 * rng.f64());
                let phase = std::f64::consts::TAU * rng.f64();
                let level = 20.0 + 60.0 * rng.f64();
                let prefix = format!("bench_gauge{{job=\"{job}\",instance=\"{inst}\"}} ");
                for i in 0..n {
                    let t = (i as i64 * INTERVAL_SECONDS) as f64;
                    let v = level
                        + 0.5 * level * (std::f64::consts::TAU * t / period + phase).sin()
                        + 4.0 * (rng.f64() - 0.5);
                    w.write_all(prefix.as_bytes())?;
                    writeln!(w, "{:.2} {}", v, ts(i))?;
                }
            }
        }

        // 4. The "one" side of the many-to-one join.
        writeln!(w, "# HELP bench_job_info Owning team of a job.")?;
        writeln!(w, "# TYPE bench_job_info gauge")?;
        for (j, job) in JOBS.iter().enumerate() {
            let prefix = format!(
                "bench_job_info{{job=\"{job}\",team=\"{}\"}} ",
                TEAMS[j % TEAMS.len()]
            );
            for i in 0..n {
                w.write_all(prefix.as_bytes())?;
                writeln!(w, "1 {}", ts(i))?;
            }
        }
        writeln!(w, "# EOF")?;
        Ok(())
    }
}

pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Blocks of `shape` made by promtool, from the cache under
/// `target/sluice-bench/promql-latency/` or made now (and cached).
pub fn fixture_blocks(shape: &Shape, no_cache: bool) -> anyhow::Result<(PathBuf, bool)> {
    let base = paths::target_dir()
        .join("sluice-bench")
        .join("promql-latency");
    let dir = base.join(shape.cache_key());
    let done = dir.join("COMPLETE");
    if !no_cache && done.is_file() && !paths::block_dirs(&dir.join("blocks"))?.is_empty() {
        return Ok((dir.join("blocks"), true));
    }
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let tmp = base.join(format!("{}.tmp-{}", shape.cache_key(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let om = tmp.join("data.om");
    let t = Instant::now();
    {
        let file =
            std::fs::File::create(&om).with_context(|| format!("creating {}", om.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        shape
            .write_openmetrics(&mut w)
            .context("writing OpenMetrics")?;
        w.flush()?;
    }
    log(format!(
        "wrote {} ({:.0} MiB, {} series x {} samples) in {:.1} s",
        om.display(),
        std::fs::metadata(&om)?.len() as f64 / 1048576.0,
        shape.total_series(),
        shape.samples_per_series(),
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(tmp.join("blocks"))
        .output()
        .context("running promtool (apt-get install prometheus)")?;
    std::fs::remove_file(&om).ok();
    ensure!(
        out.status.success(),
        "promtool tsdb create-blocks-from openmetrics failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    log(format!(
        "promtool tsdb create-blocks-from openmetrics: {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    std::fs::write(tmp.join("COMPLETE"), format!("{shape:?}\n"))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
    Ok((dir.join("blocks"), false))
}
