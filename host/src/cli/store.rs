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
    #[command(flatten)]
    pub selection: BlockSelectionArgs,
    #[command(flatten)]
    pub ignored: IgnoredStoreFlags,
}

/// Which blocks this store serves: Thanos' time partitioning and label sharding of store gateways.
#[derive(Debug, Clone, Default, Args)]
pub struct BlockSelectionArgs {
    /// Serve only data after this time: RFC 3339 or a duration relative to now (-2d, 2h45m; units ms s m h d w y).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    pub min_time: Option<String>,
    /// Serve only data before this time: RFC 3339 or a duration relative to now (-1h).
    #[arg(long = "max-time", allow_hyphen_values = true)]
    pub max_time: Option<String>,
    /// YAML relabel config over each block's external labels and `__block_id`; dropped blocks are not served.
    #[arg(long = "selector.relabel-config-file")]
    pub selector_relabel_config_file: Option<PathBuf>,
    /// The same as inline YAML.
    #[arg(long = "selector.relabel-config")]
    pub selector_relabel_config: Option<String>,
}

/// Thanos store-gateway flags that have no counterpart in Sluice: accepted so that a Thanos deployment's flags
/// start a Sluice store, and each one that is set is named in the log once, with why it does nothing.
#[derive(Debug, Clone, Default, Args)]
pub struct IgnoredStoreFlags {
    #[arg(long = "index-cache.config-file", hide = true)]
    pub index_cache_config_file: Option<PathBuf>,
    #[arg(long = "index-cache.config", hide = true)]
    pub index_cache_config: Option<String>,
    #[arg(long = "index-cache-size", hide = true)]
    pub index_cache_size: Option<String>,
    #[arg(long = "chunk-pool-size", hide = true)]
    pub chunk_pool_size: Option<String>,
    #[arg(long = "store.enable-index-header-lazy-reader", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub lazy_index_header: Option<String>,
}

impl IgnoredStoreFlags {
    fn log(&self) {
        let index = "Sluice keeps a local mmapped copy of every block's index (its index header) and reads postings \
                     and series from it; there is no separate in-memory or remote index cache to size";
        super::log_no_effect_flags(&[
            (
                self.index_cache_config_file.is_some(),
                "--index-cache.config-file",
                index,
            ),
            (
                self.index_cache_config.is_some(),
                "--index-cache.config",
                index,
            ),
            (self.index_cache_size.is_some(), "--index-cache-size", index),
            (
                self.chunk_pool_size.is_some(),
                "--chunk-pool-size",
                "chunk bytes are read per call with ranged GETs and freed as frames are sent; there is no pool to size",
            ),
            (
                self.lazy_index_header.is_some(),
                "--store.enable-index-header-lazy-reader",
                "index copies are memory-mapped, so only the pages a query touches are read",
            ),
        ]);
    }
}

/// Parses Thanos' time-or-duration flag value.
pub(crate) fn time_bound(flag: &str, v: &str) -> anyhow::Result<crate::bucket::TimeBound> {
    use crate::bucket::TimeBound;
    let v = v.trim();
    if let Ok(ms) = crate::api::query::parse_time(v)
        && v.contains('T')
    {
        return Ok(TimeBound::Absolute(ms));
    }
    let (neg, d) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let d = crate::config::parse_duration(d).map_err(|e| {
        anyhow::anyhow!("{flag}={v}: neither an RFC 3339 time nor a relative duration ({e})")
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(TimeBound::Relative(if neg { -ms } else { ms }))
}

impl BlockSelectionArgs {
    fn filter(&self) -> anyhow::Result<crate::bucket::BlockFilter> {
        let selector = match (
            &self.selector_relabel_config_file,
            &self.selector_relabel_config,
        ) {
            (Some(_), Some(_)) => anyhow::bail!(
                "use either --selector.relabel-config-file or --selector.relabel-config, not both"
            ),
            (Some(p), None) => Some(std::fs::read_to_string(p).with_context(|| {
                format!("reading --selector.relabel-config-file {}", p.display())
            })?),
            (None, Some(y)) => Some(y.clone()),
            (None, None) => None,
        };
        Ok(crate::bucket::BlockFilter {
            min_time: self
                .min_time
                .as_deref()
                .map(|v| time_bound("--min-time", v))
                .transpose()?,
            max_time: self
                .max_time
                .as_deref()
                .map(|v| time_bound("--max-time", v))
                .transpose()?,
            selector: selector
                .map(|y| crate::bucket::Selector::parse(&y))
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?,
        })
    }
}

impl StoreArgs {
    fn bucket_config(&self) -> anyhow::Result<BucketConfig> {
        load_bucket_config(&self.objstore_config_file, &self.objstore_config)?.ok_or_else(|| {
            anyhow::anyhow!(
                "no object storage configured: pass --objstore.config-file or --objstore.config"
            )
        })
    }
}

/// The bucket of `--objstore.config-file` / `--objstore.config`, `None`
/// when neither is given; keys without effect are named in the log.
pub(crate) fn load_bucket_config(
    file: &Option<PathBuf>,
    inline: &Option<String>,
) -> anyhow::Result<Option<BucketConfig>> {
    let text = match (file, inline) {
        (Some(_), Some(_)) => {
            anyhow::bail!("use either --objstore.config-file or --objstore.config, not both")
        }
        (None, None) => return Ok(None),
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --objstore.config-file {}", path.display()))?,
        (None, Some(yaml)) => yaml.clone(),
    };
    for key in crate::objstore::ignored_keys(&text) {
        tracing::warn!(
            key = %format!("config.{key}"),
            "objstore.yml key accepted for Thanos compatibility; it has no effect in Sluice's object storage client"
        );
    }
    Ok(Some(BucketConfig::parse(&text)?))
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
    let filter = args.selection.filter()?;
    args.ignored.log();
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
            filter,
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
            ..ServerOptions::default()
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
