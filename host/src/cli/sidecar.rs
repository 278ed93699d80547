//! `sluice sidecar`: one Prometheus server's live data over StoreAPI, its
//! blocks shipped to the bucket, its config reloaded (Thanos' flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::runtime::Process;
use crate::config::duration_arg;
use crate::metrics::Metrics;
use crate::model::Labels;
use crate::sidecar::apis::PromApis;
use crate::sidecar::http::HttpClientConfig;
use crate::sidecar::prom::Prometheus;
use crate::sidecar::reloader::{ReloadMethod, Reloader, ReloaderOptions};
use crate::sidecar::shipper::{Shipper, ShipperOptions, check_prometheus_flags};
use crate::sidecar::source::{MetadataTiming, PromSource, SourceOptions, run_metadata};
use crate::storeapi::{ExtraApis, SeriesLimits, ServerOptions, StoreApi};

/// How often the shipper looks for new blocks (fixed in Thanos).
const SHIP_INTERVAL: Duration = Duration::from_secs(30);
/// Retry period of the Prometheus flag check and the shipper's label wait.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Listen address for the gRPC StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// Listen address for HTTP (/metrics, /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// URL at which to reach Prometheus' API; API paths are joined onto its path.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    pub prometheus_url: String,
    /// How long the shipper waits for Prometheus' external labels before the sidecar gives up.
    #[arg(long = "prometheus.ready_timeout", default_value = "10m", value_parser = duration_arg)]
    pub ready_timeout: Duration,
    /// How often external labels and the lowest timestamp are (re)read from Prometheus.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = duration_arg)]
    pub get_config_interval: Duration,
    /// Timeout of each call to Prometheus' metadata APIs.
    #[arg(long = "prometheus.get_config_timeout", default_value = "30s", value_parser = duration_arg)]
    pub get_config_timeout: Duration,
    /// HTTP client YAML (basic_auth, bearer_token(_file), tls_config, proxy_url) for calls to Prometheus.
    #[arg(long = "prometheus.http-client-file")]
    pub http_client_file: Option<PathBuf>,
    /// The same as inline YAML.
    #[arg(long = "prometheus.http-client")]
    pub http_client: Option<String>,
    /// Prometheus' data directory (its blocks, and the shipper's file).
    #[arg(long = "tsdb.path", default_value = "./data")]
    pub tsdb_path: PathBuf,
    /// Config file watched for changes; Prometheus is reloaded when it changes.
    #[arg(long = "reloader.config-file", default_value = "")]
    pub reloader_config_file: String,
    /// Output of the watched config: gunzipped and with $(VAR) replaced from the environment.
    #[arg(long = "reloader.config-envsubst-file", default_value = "")]
    pub reloader_envsubst_file: String,
    /// Rule directories watched for changes (repeatable).
    #[arg(long = "reloader.rule-dir")]
    pub reloader_rule_dirs: Vec<PathBuf>,
    /// Interval of full re-checks of the watched files (events trigger checks too).
    #[arg(long = "reloader.watch-interval", default_value = "3m", value_parser = duration_arg)]
    pub reloader_watch_interval: Duration,
    /// Wait between reload retries.
    #[arg(long = "reloader.retry-interval", default_value = "5s", value_parser = duration_arg)]
    pub reloader_retry_interval: Duration,
    /// How Prometheus is reloaded: http (POST /-/reload) or signal (SIGHUP).
    #[arg(long = "reloader.method", default_value = "http")]
    pub reloader_method: String,
    /// Executable name of the process SIGHUP is sent to with --reloader.method=signal.
    #[arg(long = "reloader.process-name", default_value = "prometheus")]
    pub reloader_process_name: String,
    /// Object storage configuration file (Thanos objstore.yml); without one, no blocks are uploaded.
    #[arg(long = "objstore.config-file")]
    pub objstore_config_file: Option<PathBuf>,
    /// The same as inline YAML.
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
    /// Also upload compacted blocks (level > 1), for migrating an existing Prometheus.
    #[arg(long = "shipper.upload-compacted")]
    pub upload_compacted: bool,
    /// Ship blocks even when Prometheus' min and max block durations differ.
    #[arg(long = "shipper.ignore-unequal-block-size", hide = true)]
    pub ignore_unequal_block_size: bool,
    /// Go on past blocks that fail to upload, and skip the overlap check of compacted blocks.
    #[arg(long = "shipper.allow-out-of-order-uploads", hide = true)]
    pub allow_out_of_order: bool,
    /// Ship the other blocks when a local meta.json cannot be read.
    #[arg(long = "shipper.skip-corrupted-blocks", hide = true)]
    pub skip_corrupted: bool,
    /// Hash of uploaded files recorded in meta.json: "" (none) or SHA256.
    #[arg(long = "hash-func", default_value = "")]
    pub hash_func: String,
    /// Name of the file in --tsdb.path recording uploaded blocks.
    #[arg(long = "shipper.meta-file-name", default_value = "thanos.shipper.json")]
    pub meta_file_name: String,
    /// Files of a block uploaded at once (0 = one at a time).
    #[arg(long = "shipper.upload-concurrency", default_value_t = 0)]
    pub upload_concurrency: usize,
    /// Maximum series a single Series call may return (0 = no limit).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub limit_series: u64,
    /// Maximum samples a single Series call may return (0 = no limit).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub limit_samples: u64,
    /// Serve only data after this time: RFC 3339 or a duration relative to now (-2d).
    #[arg(long = "min-time", allow_hyphen_values = true)]
    pub min_time: Option<String>,
    /// External label name="value" set or overridden on top of Prometheus' (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub tls: super::ServerTlsArgs,
    #[command(flatten)]
    pub ignored: IgnoredSidecarFlags,
}

/// Thanos sidecar flags without an effect in Sluice: accepted, named in the log.
#[derive(Debug, Clone, Default, Args)]
pub struct IgnoredSidecarFlags {
    #[arg(long = "http-grace-period", hide = true)]
    pub http_grace_period: Option<String>,
    #[arg(long = "grpc-grace-period", hide = true)]
    pub grpc_grace_period: Option<String>,
    #[arg(long = "grpc-server-max-connection-age", hide = true)]
    pub grpc_max_connection_age: Option<String>,
    #[arg(long = "request.logging-config-file", hide = true)]
    pub request_logging_file: Option<String>,
    #[arg(long = "request.logging-config", hide = true)]
    pub request_logging: Option<String>,
    #[arg(long = "tracing.config-file", hide = true)]
    pub tracing_file: Option<String>,
    #[arg(long = "tracing.config", hide = true)]
    pub tracing: Option<String>,
    #[arg(long = "enable-auto-gomemlimit", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub gomemlimit: Option<String>,
    #[arg(long = "auto-gomemlimit.ratio", hide = true)]
    pub gomemlimit_ratio: Option<String>,
}

impl IgnoredSidecarFlags {
    fn log(&self) {
        let grace = "the servers stop at once on SIGTERM after finishing the calls in flight";
        let go = "Sluice is not a Go program; there is no Go memory limit to set";
        super::log_no_effect_flags(&[
            (
                self.http_grace_period.is_some(),
                "--http-grace-period",
                grace,
            ),
            (
                self.grpc_grace_period.is_some(),
                "--grpc-grace-period",
                grace,
            ),
            (
                self.grpc_max_connection_age.is_some(),
                "--grpc-server-max-connection-age",
                "gRPC connections are kept until the client closes them",
            ),
            (
                self.request_logging_file.is_some() || self.request_logging.is_some(),
                "--request.logging-config",
                "request logging is configured with --log.level (debug logs every call)",
            ),
            (
                self.tracing_file.is_some() || self.tracing.is_some(),
                "--tracing.config",
                "Sluice exports no traces",
            ),
            (self.gomemlimit.is_some(), "--enable-auto-gomemlimit", go),
            (
                self.gomemlimit_ratio.is_some(),
                "--auto-gomemlimit.ratio",
                go,
            ),
        ]);
    }
}

/// `name="value"` or `name=value` of `--label`.
pub(crate) fn parse_label_flags(flags: &[String]) -> anyhow::Result<Labels> {
    let mut pairs = Vec::new();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("--label {f}: want name=\"value\""))?;
        let k = k.trim();
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            anyhow::bail!("--label {f}: {k:?} is not a valid label name");
        }
        let v = v.trim();
        let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            serde_json::from_str::<String>(v)
                .with_context(|| format!("--label {f}: bad quoted value"))?
        } else {
            v.to_string()
        };
        pairs.push((k.to_string(), v));
    }
    Ok(Labels::from_pairs(pairs))
}

impl SidecarArgs {
    fn reloader_options(&self) -> anyhow::Result<ReloaderOptions> {
        let method = match self.reloader_method.as_str() {
            "http" => ReloadMethod::Http,
            "signal" => ReloadMethod::Signal {
                process_name: self.reloader_process_name.clone(),
            },
            m => anyhow::bail!("--reloader.method={m}: want http or signal"),
        };
        let nonempty = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Ok(ReloaderOptions {
            config_file: nonempty(&self.reloader_config_file),
            config_envsubst_file: nonempty(&self.reloader_envsubst_file),
            rule_dirs: self.reloader_rule_dirs.clone(),
            watch_interval: self.reloader_watch_interval,
            retry_interval: self.reloader_retry_interval,
            method,
        })
    }

    fn http_client(&self) -> anyhow::Result<HttpClientConfig> {
        let text = match (&self.http_client_file, &self.http_client) {
            (Some(_), Some(_)) => anyhow::bail!(
                "use either --prometheus.http-client-file or --prometheus.http-client, not both"
            ),
            (Some(p), None) => std::fs::read_to_string(p).with_context(|| {
                format!("reading --prometheus.http-client-file {}", p.display())
            })?,
            (None, Some(y)) => y.clone(),
            (None, None) => String::new(),
        };
        Ok(HttpClientConfig::parse(&text)?)
    }
}

/// A sidecar whose listeners are bound.
pub struct RunningSidecar {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub source: Arc<PromSource>,
}

/// Binds the listeners and starts every part. A part that cannot go on
/// (no external labels) sends its error on the returned receiver.
pub async fn start(
    args: &SidecarArgs,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    RunningSidecar,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    tokio::sync::mpsc::Receiver<anyhow::Error>,
)> {
    args.ignored.log();
    let bucket =
        super::store::load_bucket_config(&args.objstore_config_file, &args.objstore_config)?;
    let extra_labels = parse_label_flags(&args.labels)?;
    let min_time = args
        .min_time
        .as_deref()
        .map(|v| super::store::time_bound("--min-time", v))
        .transpose()?;
    let reloader_opts = args.reloader_options()?;
    let http = args.http_client()?;
    let client = http.build(None)?;
    let prom = Prometheus::new(&args.prometheus_url, client, args.get_config_timeout)?;
    if !matches!(args.hash_func.as_str(), "" | "SHA256") {
        anyhow::bail!("--hash-func={}: want \"\" or SHA256", args.hash_func);
    }

    let mut process = Process::bind(
        args.grpc_address,
        args.http_address,
        &args.tls,
        metrics.clone(),
        shutdown,
    )
    .await?;
    let source = PromSource::new(
        prom.clone(),
        SourceOptions {
            min_time: Box::new(move || min_time.map_or(i64::MIN, |b| b.at(now_ms()))),
            extra_labels,
        },
        &metrics,
    );
    let service = StoreApi::new(
        source.clone(),
        ServerOptions {
            limits: SeriesLimits {
                series: args.limit_series,
                samples: args.limit_samples,
            },
            metrics_prefix: "thanos_sidecar",
            apis: ExtraApis {
                rules: true,
                targets: true,
                metric_metadata: true,
                exemplars: Some((i64::MIN, i64::MAX)),
            },
            ..ServerOptions::default()
        },
        &metrics,
    );
    let (fatal_tx, fatal_rx) = tokio::sync::mpsc::channel(4);
    let health = process.health();
    health
        .set_service_status("thanos.Store", tonic_health::ServingStatus::NotServing)
        .await;

    // Metadata: flags (when shipping), build info, labels; then refreshes.
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    {
        let source = source.clone();
        let fatal = fatal_tx.clone();
        let check = bucket.is_some().then(|| {
            (
                args.tsdb_path.clone(),
                args.meta_file_name.clone(),
                args.ignore_unequal_block_size,
            )
        });
        let timing = MetadataTiming {
            interval: args.get_config_interval,
        };
        process.tasks().spawn(async move {
            if let Some((tsdb, file, ignore)) = check {
                validate_prometheus(source.prometheus(), &tsdb, &file, ignore).await;
            }
            if let Err(e) = run_metadata(source, timing, loaded_tx).await {
                let _ = fatal.send(anyhow::anyhow!(e)).await;
            }
        });
    }
    {
        let health = health.clone();
        process.tasks().spawn(async move {
            if loaded_rx.await.is_ok() {
                health
                    .set_service_status("thanos.Store", tonic_health::ServingStatus::Serving)
                    .await;
            }
        });
    }

    // Reloader.
    let reloader = Reloader::new(prom.clone(), reloader_opts, &metrics);
    process.tasks().spawn(reloader.run());

    // Shipper.
    match bucket {
        None => tracing::info!("no supported bucket was configured, uploads will be disabled"),
        Some(cfg) => {
            let wal = args.tsdb_path.join("wal");
            if !wal.is_dir() {
                tracing::error!(
                    path = %wal.display(),
                    "no wal directory in --tsdb.path: is it Prometheus' --storage.tsdb.path?"
                );
            }
            let shipper = Shipper::new(
                cfg.build()?,
                ShipperOptions {
                    tsdb_path: args.tsdb_path.clone(),
                    meta_file_name: args.meta_file_name.clone(),
                    upload_compacted: args.upload_compacted,
                    allow_out_of_order: args.allow_out_of_order,
                    skip_corrupted: args.skip_corrupted,
                    sha256: args.hash_func == "SHA256",
                    upload_concurrency: args.upload_concurrency,
                },
                &metrics,
            );
            let source = source.clone();
            let ready_timeout = args.ready_timeout;
            let fatal = fatal_tx.clone();
            process.tasks().spawn(async move {
                let deadline = tokio::time::Instant::now() + ready_timeout;
                let labels = loop {
                    let l = source.external_labels();
                    if source.state().loaded && !l.is_empty() {
                        break l;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        let _ = fatal
                            .send(anyhow::anyhow!(
                                "aborting as no external labels found after waiting {ready_timeout:?} \
                                 (--prometheus.ready_timeout)"
                            ))
                            .await;
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                };
                let _ = labels;
                loop {
                    let labels = source.external_labels();
                    if let Err(e) = shipper.sync(&labels).await {
                        tracing::warn!(error = %e, "shipper sync failed");
                    }
                    tokio::time::sleep(SHIP_INTERVAL).await;
                }
            });
        }
    }

    let (grpc_addr, http_addr) = (process.grpc_addr(), process.http_addr());
    let ready_source = source.clone();
    let (rules, targets, metadata, exemplars) = PromApis::new(source.clone()).servers();
    let handle = process.serve(
        axum::Router::new(),
        Arc::new(move || ready_source.readiness()),
        |r| {
            r.add_service(service.info_server())
                .add_service(service.store_server())
                .add_service(rules)
                .add_service(targets)
                .add_service(metadata)
                .add_service(exemplars)
        },
    )?;
    Ok((
        RunningSidecar {
            grpc_addr,
            http_addr,
            source,
        },
        handle,
        fatal_rx,
    ))
}

/// Retries Prometheus' flag check (spec §1.4) until it passes; a server
/// without the flags API is taken as an old one and not checked.
async fn validate_prometheus(
    prom: &Prometheus,
    tsdb: &std::path::Path,
    file: &str,
    ignore_unequal: bool,
) {
    loop {
        match prom.flags().await {
            Ok(None) => {
                tracing::warn!(
                    "no /api/v1/status/flags: potentially older Prometheus; flags not checked"
                );
                return;
            }
            Ok(Some(flags)) => match check_prometheus_flags(&flags, tsdb, file, ignore_unequal) {
                Ok(warnings) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "Prometheus' flags do not allow shipping its blocks; retrying")
                }
            },
            Err(e) => tracing::warn!(error = %e, "reading Prometheus' flags; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

pub async fn run(args: SidecarArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let (running, handle, mut fatal) = start(&args, metrics, super::shutdown_signal()).await?;
    tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, prometheus = %args.prometheus_url, "sidecar listening");
    println!(
        "sluice sidecar listening grpc={} http={}",
        running.grpc_addr, running.http_addr
    );
    tokio::select! {
        r = handle => r.context("sidecar task")?,
        Some(e) = fatal.recv() => Err(e),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
