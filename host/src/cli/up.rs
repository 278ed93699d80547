//! `sluice up`: the all-in-one demo. On first run it writes a few hours of
//! demo blocks (an HA pair with a gap and counter resets, several jobs and
//! instances) into a local bucket; then it serves them with a store and a
//! querier in one process and prints where to look. Re-runs reuse the data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use sluice_tsdb::block::{BlockWriterOptions, write_block};
use sluice_tsdb::meta::ThanosMeta;

use super::query::{self, QueryArgs};
use super::store::{self, StoreArgs};
use crate::metrics::Metrics;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the demo bucket and caches live.
    #[arg(long = "data-dir", default_value = "./.sluice-data")]
    pub data_dir: PathBuf,
    /// Querier HTTP address (Prometheus API).
    #[arg(long = "http-address", default_value = "127.0.0.1:10902")]
    pub http_address: SocketAddr,
    /// Querier gRPC address (StoreAPI).
    #[arg(long = "grpc-address", default_value = "127.0.0.1:10901")]
    pub grpc_address: SocketAddr,
    /// Query frontend HTTP address (split, cache and retry in front of the querier; point Grafana here).
    #[arg(long = "frontend.http-address", default_value = "127.0.0.1:10903")]
    pub frontend_http_address: SocketAddr,
    /// Hours of demo data to write on first run.
    #[arg(long = "demo.hours", default_value_t = 6)]
    pub hours: i64,
}

const STEP_MS: i64 = 15_000;
const BLOCK_MS: i64 = 2 * 3_600_000;

/// Deterministic pseudo-random numbers, so demo data is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

/// The demo series of one replica over [start, end).
fn demo_series(replica: &str, start: i64, end: i64) -> Vec<Series> {
    let mut out = Vec::new();
    let steps: Vec<i64> = (0..)
        .map(|i| start + i * STEP_MS)
        .take_while(|t| *t < end)
        .collect();
    // Replica B was down for 20 minutes an hour into the data.
    let gap =
        |t: i64| replica == "B" && t >= start + 3_600_000 && t < start + 3_600_000 + 20 * 60_000;
    let jobs: [(&str, &[&str]); 3] = [
        ("api", &["api-1", "api-2", "api-3"]),
        ("db", &["db-1", "db-2"]),
        ("batch", &["batch-1"]),
    ];
    for (job, instances) in jobs {
        for (ii, inst) in instances.iter().enumerate() {
            let seed = (job.len() as u64) * 1000 + ii as u64;
            let l = |name: &str, extra: &[(&str, &str)]| {
                let mut v: Vec<(String, String)> = vec![
                    ("__name__".into(), name.into()),
                    ("instance".into(), (*inst).into()),
                    ("job".into(), job.into()),
                ];
                v.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
                v.sort();
                v
            };
            // A counter that restarts (resets) twice.
            for code in ["200", "500"] {
                let mut rng = Rng(seed + code.len() as u64);
                let mut v = 0.0;
                let mut samples = Vec::new();
                for (i, &t) in steps.iter().enumerate() {
                    let rate = if code == "200" {
                        40 + rng.below(20)
                    } else {
                        rng.below(3)
                    };
                    v += rate as f64;
                    if i > 0 && i % 700 == (ii * 97) % 700 {
                        v = rate as f64;
                    }
                    if !gap(t) {
                        samples.push((t, v));
                    }
                }
                out.push((l("http_requests_total", &[("code", code)]), samples));
            }
            // A gauge.
            let mut rng = Rng(seed + 7);
            let samples = steps
                .iter()
                .filter(|t| !gap(**t))
                .map(|&t| {
                    (
                        t,
                        2e8 + 5e7 * ((t / 60_000) as f64 / 30.0).sin()
                            + rng.below(1_000_000) as f64,
                    )
                })
                .collect();
            out.push((l("process_resident_memory_bytes", &[]), samples));
            // A classic histogram.
            let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
            let mut counts = [0.0f64; 6];
            let mut rng = Rng(seed + 11);
            let mut per_le: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 6];
            for &t in &steps {
                let n = 20 + rng.below(10);
                for _ in 0..n {
                    let b = match rng.below(100) {
                        0..=40 => 0,
                        41..=70 => 1,
                        71..=88 => 2,
                        89..=96 => 3,
                        _ => 4,
                    };
                    for c in counts.iter_mut().skip(b) {
                        *c += 1.0;
                    }
                    counts[5] = counts[5].max(counts[4]);
                }
                if !gap(t) {
                    for (i, c) in counts.iter().enumerate() {
                        per_le[i].push((t, *c));
                    }
                }
            }
            for (i, le) in bounds.iter().enumerate() {
                out.push((
                    l("http_request_duration_seconds_bucket", &[("le", le)]),
                    std::mem::take(&mut per_le[i]),
                ));
            }
            out.push((
                l("up", &[]),
                steps
                    .iter()
                    .filter(|t| !gap(**t))
                    .map(|&t| (t, 1.0))
                    .collect(),
            ));
        }
    }
    out.sort_by(|a, b| crate::model::compare_labels(&to_labels(&a.0), &to_labels(&b.0)));
    out
}

fn to_labels(v: &[(String, String)]) -> Vec<crate::model::Label> {
    v.iter()
        .map(|(a, b)| crate::model::Label::new(a.clone(), b.clone()))
        .collect()
}

/// Writes the demo blocks unless the bucket already has blocks.
fn ensure_demo_data(bucket: &Path, hours: i64) -> anyhow::Result<usize> {
    std::fs::create_dir_all(bucket).with_context(|| format!("creating {}", bucket.display()))?;
    let existing = std::fs::read_dir(bucket)?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").exists())
        .count();
    if existing > 0 {
        return Ok(existing);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let end = now - now % STEP_MS;
    let start = end - hours * 3_600_000;
    let mut written = 0;
    for replica in ["A", "B"] {
        let mut from = start;
        while from < end {
            let to = ((from / BLOCK_MS) + 1) * BLOCK_MS;
            let to = to.min(end);
            let series: Vec<Series> = demo_series(replica, start, end)
                .into_iter()
                .map(|(l, s)| {
                    (
                        l,
                        s.into_iter()
                            .filter(|(t, _)| *t >= from && *t < to)
                            .collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, s)| !s.is_empty())
                .collect();
            let labels: BTreeMap<String, String> = [
                ("cluster".to_string(), "demo".to_string()),
                ("replica".to_string(), replica.to_string()),
            ]
            .into();
            let opts = BlockWriterOptions {
                thanos: Some(ThanosMeta::new(labels, 0, "sluice-up")),
                ..Default::default()
            };
            write_block(bucket, series, &opts).context("writing demo block")?;
            written += 1;
            from = to;
        }
    }
    Ok(written)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let bucket = args.data_dir.join("bucket");
    let blocks = ensure_demo_data(&bucket, args.hours)?;
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let store_args = StoreArgs {
        objstore_config_file: None,
        objstore_config: Some(format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        )),
        grpc_address: "127.0.0.1:0".parse()?,
        http_address: "127.0.0.1:0".parse()?,
        data_dir: args.data_dir.join("store-cache"),
        sync_block_duration: Duration::from_secs(60),
        ignore_deletion_marks_delay: Duration::from_secs(86_400),
        limit_series: 0,
        limit_samples: 0,
        series_max_concurrency: 20,
        touched_series_limit: 0,
        downloaded_bytes_limit: 0,
        selection: Default::default(),
        ignored: Default::default(),
        block_sync_concurrency: 4,
        tls: Default::default(),
    };
    let (st, store_task) = store::start(&store_args, metrics.clone(), stop()).await?;
    for _ in 0..600 {
        if st.store.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut qargs = QueryArgs::local(
        vec![st.grpc_addr.to_string()],
        args.grpc_address,
        args.http_address,
    );
    qargs.policies_cache_dir = Some(args.data_dir.join("plugin-cache"));
    let (q, query_task) = query::start(&qargs, Metrics::new(), stop()).await?;
    let fargs = super::frontend::FrontendArgs::local(
        format!("http://{}", q.http_addr),
        args.frontend_http_address,
        256 << 20,
    );
    let (fe, frontend_task) = super::frontend::start(&fargs, Metrics::new(), stop()).await?;
    println!(
        "Sluice is up ({blocks} demo blocks in {}).",
        bucket.display()
    );
    println!("  Prometheus HTTP API: http://{}/api/v1/", q.http_addr);
    println!("  UI:                  http://{}/graph", q.http_addr);
    println!(
        "  try:                 curl -s 'http://{}/api/v1/series?match[]=up'",
        q.http_addr
    );
    println!(
        "  PromQL:              curl -s 'http://{}/api/v1/query' --data-urlencode 'query=sum by (job) (rate(http_requests_total[5m]))'",
        q.http_addr
    );
    println!(
        "  stores:              http://{}/api/v1/stores",
        q.http_addr
    );
    println!(
        "  StoreAPI (gRPC):     {}   (thanos query --endpoint={} works too)",
        q.grpc_addr, q.grpc_addr
    );
    println!("  metrics:             http://{}/metrics", q.http_addr);
    println!(
        "  query frontend:      http://{}/api/v1/   (split by day, cached; point Grafana here)",
        fe.http_addr
    );
    println!("Press Ctrl-C to stop.");
    super::shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = store_task.await;
    let _ = query_task.await;
    let _ = frontend_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_data_is_written_once_and_has_the_ha_gap() {
        let dir = tempfile::tempdir().unwrap();
        let n = ensure_demo_data(dir.path(), 3).unwrap();
        assert!(n >= 4, "two replicas x at least two blocks, got {n}");
        assert_eq!(
            ensure_demo_data(dir.path(), 3).unwrap(),
            n,
            "re-running reuses the data"
        );
        let a = demo_series("A", 0, 3 * 3_600_000);
        let b = demo_series("B", 0, 3 * 3_600_000);
        let up = |s: &[Series]| {
            s.iter()
                .find(|(l, _)| l.iter().any(|(k, v)| k == "__name__" && v == "up"))
                .map(|(_, s)| s.len())
                .unwrap()
        };
        assert_eq!(up(&a) - up(&b), 80, "replica B misses 20 minutes at 15s");
        let c = &a
            .iter()
            .find(|(l, _)| l.iter().any(|(k, v)| k == "code" && v == "200"))
            .unwrap()
            .1;
        assert!(c.windows(2).any(|w| w[1].1 < w[0].1), "the counter resets");
    }
}
