//! The benchmark's OpenMetrics input for `promtool tsdb create-blocks-from
//! openmetrics`: `series` series of one family, `bench_metric`, sampled every
//! 15 s for `hours` hours, timestamps in seconds, `# EOF` at the end.
//!
//! Even series are counters (monotonic integer increments), odd ones gauges
//! (a sine wave rounded to 3 decimals), so chunks compress like real data.
//! Everything is deterministic.

use std::io::Write;

/// Start of the data: 2024-01-01T00:00:00Z, aligned to 2h so that `hours`
/// hours of data make exactly `hours / 2` blocks (rounded up).
pub const T0_SECONDS: i64 = 1_704_067_200;
/// Sample interval in seconds.
pub const STEP_SECONDS: i64 = 15;
/// The metric name every series has.
pub const METRIC: &str = "bench_metric";

/// Shape of the fixture.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub series: usize,
    pub hours: u32,
}

impl Fixture {
    /// Samples per series.
    pub fn samples_per_series(&self) -> u64 {
        u64::from(self.hours) * 3600 / STEP_SECONDS as u64
    }

    /// Samples over all series.
    pub fn total_samples(&self) -> u64 {
        self.samples_per_series() * self.series as u64
    }

    /// First sample timestamp (ms).
    pub fn min_time_ms(&self) -> i64 {
        T0_SECONDS * 1000
    }

    /// Last sample timestamp (ms), inclusive.
    pub fn max_time_ms(&self) -> i64 {
        (T0_SECONDS + (self.samples_per_series() as i64 - 1) * STEP_SECONDS) * 1000
    }

    /// Writes the OpenMetrics text to `w`.
    pub fn write_openmetrics(&self, w: &mut impl Write) -> std::io::Result<()> {
        writeln!(w, "# HELP {METRIC} Synthetic benchmark series.")?;
        writeln!(w, "# TYPE {METRIC} gauge")?;
        let n = self.samples_per_series();
        for i in 0..self.series {
            let prefix = format!("{METRIC}{{job=\"j{}\",instance=\"host-{i}\"}} ", i % 20);
            let mut counter: u64 = (i as u64 * 7919) % 100_000;
            for k in 0..n {
                let ts = T0_SECONDS + k as i64 * STEP_SECONDS;
                w.write_all(prefix.as_bytes())?;
                if i % 2 == 0 {
                    counter += 1 + (i as u64 * 31 + k * 17) % 97;
                    writeln!(w, "{counter} {ts}")?;
                } else {
                    let phase = (k as f64 + i as f64) * std::f64::consts::TAU / 240.0;
                    let v = ((50.0 + 25.0 * phase.sin()) * 1000.0).round() / 1000.0;
                    writeln!(w, "{v} {ts}")?;
                }
            }
        }
        writeln!(w, "# EOF")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_format() {
        let f = Fixture {
            series: 3,
            hours: 2,
        };
        assert_eq!(f.samples_per_series(), 480);
        assert_eq!(f.total_samples(), 1440);
        assert_eq!(f.max_time_ms() - f.min_time_ms(), 479 * 15_000);
        let mut out = Vec::new();
        f.write_openmetrics(&mut out).expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 1440 + 1);
        assert_eq!(lines.last(), Some(&"# EOF"));
        assert!(lines[2].starts_with("bench_metric{job=\"j0\",instance=\"host-0\"} "));
        assert!(
            lines[2].ends_with(" 1704067200"),
            "timestamps are seconds: {}",
            lines[2]
        );
        assert!(lines[2 + 480].starts_with("bench_metric{job=\"j1\",instance=\"host-1\"} "));
    }
}

/// Writes the fixture as OpenMetrics into `work` and makes blocks from it with the real `promtool tsdb
/// create-blocks-from openmetrics` in `<work>/blocks`; returns the block directories.
pub fn make_blocks(
    fixture: &Fixture,
    work: &std::path::Path,
    log: impl Fn(String),
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::{Context, ensure};
    let om = work.join("data.om");
    let t = std::time::Instant::now();
    {
        let file =
            std::fs::File::create(&om).with_context(|| format!("creating {}", om.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        fixture
            .write_openmetrics(&mut w)
            .context("writing OpenMetrics")?;
        w.flush()?;
    }
    let om_bytes = std::fs::metadata(&om)?.len();
    log(format!(
        "wrote {} ({:.0} MiB, {} series x {} samples) in {:.1} s",
        om.display(),
        om_bytes as f64 / 1048576.0,
        fixture.series,
        fixture.samples_per_series(),
        t.elapsed().as_secs_f64()
    ));
    let blocks = work.join("blocks");
    let t = std::time::Instant::now();
    let out = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .context("running promtool (apt-get install prometheus)")?;
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
    std::fs::remove_file(&om).ok();
    let list = crate::paths::block_dirs(&blocks)?;
    ensure!(
        !list.is_empty(),
        "promtool made no blocks in {}",
        blocks.display()
    );
    Ok(list)
}
