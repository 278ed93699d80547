//! `sluice store`: the store gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::runtime::Process;
use crate::bucket::{BucketStore, StoreOptions};
use crate::config::duration_arg;
use crate::metrics::Metrics;
use crate::objstore::BucketConfig;
use crate::storeapi::{SeriesLimits, ServerOptions, StoreApi};

/// First and longest wait between failed initial block syncs.
const INITIAL_SYNC_BACKOFF: Duration = Duration::from_secs(1);
const MAX_SYNC_BACKOFF: Duration = Duration::from_secs(30);

/// Service name reported by the gRPC health service for the StoreAPI.
const STORE_HEALTH_NAME: &str = "thanos.Store";

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Path to the YAML object storage configuration (Thanos objstore.yml format).
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<PathBuf>,
    /// Object storage configuration as inline YAML (alternative to --objstore.config-file).
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
    /// Listen address for the gRPC StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// Listen address for HTTP (/metrics, /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// Local directory for cached index files.
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: PathBuf,
    /// How often to sync the block list with the bucket.
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = duration_arg)]
    pub sync_block_duration: Duration,
    /// Blocks marked for deletion longer ago than this are no longer served.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = duration_arg)]
    pub ignore_deletion_marks_delay: Duration,
    /// Maximum series a single Series call may return (0 = no limit).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub limit_series: u64,
    /// Maximum samples a single Series call may return (0 = no limit).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub limit_samples: u64,
    /// Most series one Series call may touch in the blocks' indexes, before merging (0 = no limit).
    #[arg(long = "store.grpc.touched-series-limit", default_value_t = 0)]
    pub touched_series_limit: u64,
    /// Most bytes of chunks one Series call may download from the bucket (0 = no limit).
    #[arg(long = "store.grpc.downloaded-bytes-limit", default_value_t = 0)]
    pub downloaded_bytes_limit: u64,
    /// Most Series calls served at once; more wait their turn (0 = no bound).
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    pub series_max_concurrency: usize,
    /// Number of goroutines-equivalent tasks loading blocks concurrently during sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    pub block_sync_concurrency: usize,
    #[command(flatten)]
    pub tls: super::ServerTlsArgs,
}

impl StoreArgs {
    fn bucket_config(&self) -> anyhow::Result<BucketConfig> {
        match (&self.objstore_config_file, &self.objstore_config) {
            (Some(path), None) => Ok(BucketConfig::from_file(path)?),
            (None, Some(yaml)) => Ok(BucketConfig::parse(yaml)?),
            (Some(_), Some(_)) => {
                anyhow::bail!("use either --objstore.config-file or --objstore.config, not both")
            }
            (None, None) => anyhow::bail!(
                "no object storage configured: pass --objstore.config-file or --objstore.config"
            ),
        }
    }
}

/// A store gateway whose listeners are bound and whose first sync is running.
pub struct RunningStore {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<BucketStore>,
}

/// Binds the listeners, starts serving and syncing, and returns the bound
/// addresses. Serving stops when `shutdown` resolves.
pub async fn start(
    args: &StoreArgs,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(RunningStore, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let cfg = args.bucket_config()?;
    let bucket = cfg.build()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let mut process = Process::bind(
        args.grpc_address,
        args.http_address,
        &args.tls,
        metrics.clone(),
        shutdown,
    )
    .await?;
    let store = BucketStore::new(
        bucket,
        StoreOptions {
            data_dir: args.data_dir.clone(),
            ignore_deletion_marks_delay: args.ignore_deletion_marks_delay,
            sync_concurrency: args.block_sync_concurrency,
            touched_series_limit: args.touched_series_limit,
            downloaded_bytes_limit: args.downloaded_bytes_limit,
        },
        &metrics,
    );
    let service = StoreApi::new(
        store.clone(),
        ServerOptions {
            series_max_concurrency: args.series_max_concurrency,
            limits: SeriesLimits {
                series: args.limit_series,
                samples: args.limit_samples,
            },
            metrics_prefix: "thanos_bucket_store",
        },
        &metrics,
    );

    // grpc.health.v1: `thanos.Store` serves once the first sync is done.
    let health = process.health();
    health
        .set_service_status(STORE_HEALTH_NAME, tonic_health::ServingStatus::NotServing)
        .await;
    let sync_store = store.clone();
    let interval = args.sync_block_duration;
    process.tasks().spawn(async move {
        // Not ready until a sync succeeds: a store that cannot list its
        // bucket (wrong credentials, no network) must not advertise an empty
        // block set that queriers would take as "no data".
        let mut backoff = INITIAL_SYNC_BACKOFF;
        loop {
            match sync_store.sync().await {
                Ok(r) => {
                    tracing::info!(
                        loaded = r.loaded.len(),
                        failed = r.failed.len(),
                        "initial block sync done"
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "initial block sync failed; not ready");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_SYNC_BACKOFF);
                }
            }
        }
        health
            .set_service_status(STORE_HEALTH_NAME, tonic_health::ServingStatus::Serving)
            .await;
        sync_store.run_sync_loop(interval).await
    });

    let (grpc_addr, http_addr) = (process.grpc_addr(), process.http_addr());
    let ready_store = store.clone();
    let handle = process.serve(
        axum::Router::new(),
        Arc::new(move || ready_store.readiness()),
        |r| {
            r.add_service(service.info_server())
                .add_service(service.store_server())
        },
    )?;
    Ok((
        RunningStore {
            grpc_addr,
            http_addr,
            store,
        },
        handle,
    ))
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let (running, handle) = start(&args, metrics, super::shutdown_signal()).await?;
    tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, "store gateway listening");
    println!(
        "sluice store listening grpc={} http={}",
        running.grpc_addr, running.http_addr
    );
    handle.await.context("store task")?
}
