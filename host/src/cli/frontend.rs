//! `sluice query-frontend`, with Thanos' flags: the range-query pipeline of
//! `sluice-frontend` in front of a querier, on one HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::duration_arg;
use crate::metrics::Metrics;
use sluice_frontend::{Frontend, FrontendConfig, ResultsCache};

#[derive(Debug, Clone, Args)]
pub struct FrontendArgs {
    /// Listen address for HTTP (the Prometheus API clients talk to, /metrics, probes).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// Prometheus web configuration file (exporter-toolkit format): HTTP TLS, client certificates, basic auth.
    #[arg(long = "http.config")]
    pub http_config: Option<PathBuf>,
    /// Time to wait after an interrupt for in-flight requests to finish.
    #[arg(long = "http-grace-period", default_value = "2m", value_parser = duration_arg)]
    pub http_grace_period: Duration,
    /// URL of the downstream Prometheus query API (a Sluice or Thanos querier).
    #[arg(
        long = "query-frontend.downstream-url",
        default_value = "http://localhost:9090"
    )]
    pub downstream_url: String,
    /// HTTP client settings towards the downstream (Thanos' tripper YAML).
    #[arg(long = "query-frontend.downstream-tripper-config")]
    pub tripper_config: Option<String>,
    #[arg(long = "query-frontend.downstream-tripper-config-file")]
    pub tripper_config_file: Option<PathBuf>,
    /// Split range queries on multiples of this interval since the epoch (UTC); 0 disables splitting.
    #[arg(long = "query-range.split-interval", default_value = "24h", value_parser = duration_arg)]
    pub split_interval: Duration,
    #[arg(long = "query-range.min-split-interval", value_parser = duration_arg, hide = true)]
    pub min_split_interval: Option<Duration>,
    #[arg(long = "query-range.max-split-interval", value_parser = duration_arg, hide = true)]
    pub max_split_interval: Option<Duration>,
    #[arg(long = "query-range.horizontal-shards", hide = true)]
    pub horizontal_shards: Option<u64>,
    /// Move start and end of range queries onto their step grid.
    #[arg(long = "query-range.align-range-with-step", default_value_t = true, action = clap::ArgAction::Set)]
    pub align: bool,
    /// For max_source_resolution=auto, retry missing ranges at coarser resolutions.
    #[arg(long = "query-range.request-downsampled", default_value_t = true, action = clap::ArgAction::Set)]
    pub request_downsampled: bool,
    /// Tries of a range-query piece on 5xx or transport errors.
    #[arg(long = "query-range.max-retries-per-request", default_value_t = 5)]
    pub range_retries: u32,
    /// Tries of an instant query on 5xx or transport errors.
    #[arg(long = "query.max-retries-per-request", default_value_t = 5)]
    pub instant_retries: u32,
    /// Longest range a range query may cover; 0 = no limit.
    #[arg(long = "query-range.max-query-length", default_value = "0s", value_parser = duration_arg)]
    pub max_query_length: Duration,
    /// Pieces of one range query asked at once.
    #[arg(long = "query-range.max-query-parallelism", default_value_t = 14)]
    pub parallelism: usize,
    /// Newer results than this are never cached.
    #[arg(long = "query-range.response-cache-max-freshness", default_value = "1m", value_parser = duration_arg)]
    pub max_freshness: Duration,
    /// Default partial_response of range queries that do not say.
    #[arg(long = "query-range.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub partial_response: bool,
    /// Results cache (Thanos' YAML: type IN-MEMORY with max_size, max_size_items, validity).
    #[arg(long = "query-range.response-cache-config")]
    pub cache_config: Option<String>,
    #[arg(long = "query-range.response-cache-config-file")]
    pub cache_config_file: Option<PathBuf>,
    /// Split label and series calls with a time range on multiples of this interval (UTC); 0 = forward them whole.
    #[arg(long = "labels.split-interval", default_value = "24h", value_parser = duration_arg)]
    pub labels_split_interval: Duration,
    /// Tries of a label or series call on 5xx or transport errors.
    #[arg(long = "labels.max-retries-per-request", default_value_t = 5)]
    pub labels_retries: u32,
    /// Pieces of one label or series call asked at once.
    #[arg(long = "labels.max-query-parallelism", default_value_t = 14)]
    pub labels_parallelism: usize,
    /// Label and series pieces newer than this are never cached.
    #[arg(long = "labels.response-cache-max-freshness", default_value = "1m", value_parser = duration_arg)]
    pub labels_freshness: Duration,
    #[arg(long = "labels.partial-response", hide = true)]
    pub labels_partial_response: Option<String>,
    #[arg(long = "labels.default-time-range", hide = true)]
    pub labels_default_time_range: Option<String>,
    /// Cache of label and series pieces (Thanos' YAML, as --query-range.response-cache-config).
    #[arg(long = "labels.response-cache-config")]
    pub labels_cache_config: Option<String>,
    #[arg(long = "labels.response-cache-config-file")]
    pub labels_cache_config_file: Option<PathBuf>,
    #[arg(long = "cache-compression-type", hide = true)]
    pub cache_compression: Option<String>,
    #[arg(long = "query-frontend.compress-responses", hide = true)]
    pub compress_responses: bool,
    /// Log range queries that take longer than this; 0 = off, negative = every query.
    #[arg(
        long = "query-frontend.log-queries-longer-than",
        default_value = "0s",
        allow_hyphen_values = true
    )]
    pub log_queries_longer_than: String,
    /// Request headers forwarded downstream (the tenant header always is). Repeatable.
    #[arg(long = "query-frontend.forward-header")]
    pub forward_header: Vec<String>,
    #[arg(
        long = "query-frontend.tenant-header",
        default_value = "THANOS-TENANT",
        hide = true
    )]
    pub tenant_header: String,
    #[arg(
        long = "query-frontend.default-tenant-id",
        default_value = "default-tenant",
        hide = true
    )]
    pub default_tenant: String,
    /// Ask shardable range queries (a top-level aggregation `by (labels)` over per-series expressions) as this
    /// many copies, each with Thanos' shard_info (stores select their shard of the grouping labels); 0 = off.
    #[arg(long = "query-frontend.vertical-shards")]
    pub vertical_shards: Option<u64>,
    #[arg(long = "query-frontend.enable-x-functions", hide = true)]
    pub x_functions: bool,
    /// How often the downstream's readiness and store set are checked.
    #[arg(long = "query-frontend.downstream-check-interval", default_value = "10s", value_parser = duration_arg, hide = true)]
    pub check_interval: Duration,
}

fn text_or_file(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    flag: &str,
) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => anyhow::bail!("use either --{flag} or --{flag}-file, not both"),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(Some)
            .with_context(|| format!("reading --{flag}-file {}", p.display())),
        (None, None) => Ok(None),
    }
}

impl FrontendArgs {
    /// A frontend in front of `downstream` with Thanos' defaults and an
    /// in-memory cache of `cache_bytes` (`sluice up`).
    pub fn local(downstream: String, http_address: SocketAddr, cache_bytes: u64) -> Self {
        FrontendArgs {
            http_address,
            http_config: None,
            http_grace_period: Duration::from_secs(120),
            downstream_url: downstream,
            tripper_config: None,
            tripper_config_file: None,
            split_interval: Duration::from_secs(24 * 3600),
            min_split_interval: None,
            max_split_interval: None,
            horizontal_shards: None,
            align: true,
            request_downsampled: true,
            range_retries: 5,
            instant_retries: 5,
            max_query_length: Duration::ZERO,
            parallelism: 14,
            max_freshness: Duration::from_secs(60),
            partial_response: true,
            cache_config: Some(format!(
                "type: IN-MEMORY\nconfig:\n  max_size: {cache_bytes}\n"
            )),
            cache_config_file: None,
            labels_split_interval: Duration::from_secs(24 * 3600),
            labels_retries: 5,
            labels_parallelism: 14,
            labels_freshness: Duration::from_secs(60),
            labels_partial_response: None,
            labels_default_time_range: None,
            labels_cache_config: None,
            labels_cache_config_file: None,
            cache_compression: None,
            compress_responses: false,
            log_queries_longer_than: "0s".into(),
            forward_header: Vec::new(),
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            vertical_shards: None,
            x_functions: false,
            check_interval: Duration::from_secs(10),
        }
    }

    /// The frontend's settings, checked as Thanos checks them.
    pub fn config(&self) -> anyhow::Result<FrontendConfig> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        anyhow::ensure!(
            !self.downstream_url.is_empty(),
            "--query-frontend.downstream-url must not be empty"
        );
        let slow = self.log_queries_longer_than.trim();
        let slow_query = if slow.starts_with('-') {
            Some(Duration::ZERO)
        } else {
            let d = crate::config::parse_duration(slow)
                .map_err(|e| anyhow::anyhow!("--query-frontend.log-queries-longer-than: {e}"))?;
            (!d.is_zero()).then_some(d)
        };
        Ok(FrontendConfig {
            downstream: self.downstream_url.trim_end_matches('/').to_owned(),
            split_interval: ms(self.split_interval),
            align: self.align,
            range_retries: self.range_retries,
            instant_retries: self.instant_retries,
            labels_retries: self.labels_retries,
            max_query_length: ms(self.max_query_length),
            parallelism: self.parallelism.max(1),
            max_freshness: ms(self.max_freshness),
            partial_response: self.partial_response,
            tenant_header: self.tenant_header.clone(),
            default_tenant: self.default_tenant.clone(),
            forward_headers: self.forward_header.clone(),
            slow_query,
            vertical_shards: self.vertical_shards.unwrap_or(0).min(64) as usize,
            labels_split_interval: ms(self.labels_split_interval),
            labels_parallelism: self.labels_parallelism.max(1),
            labels_max_freshness: ms(self.labels_freshness),
        })
    }

    fn log_no_effect(&self) {
        let set = |v: bool| v;
        super::log_no_effect_flags(&[
            (
                self.min_split_interval.is_some()
                    || self.max_split_interval.is_some()
                    || self.horizontal_shards.is_some(),
                "--query-range.min-split-interval/max-split-interval/horizontal-shards",
                "dynamic splitting is not implemented; --query-range.split-interval applies",
            ),
            (
                self.labels_default_time_range.is_some() || self.labels_partial_response.is_some(),
                "--labels.default-time-range/--labels.partial-response",
                "label and series calls keep the querier's own defaults (calls without a range are forwarded whole)",
            ),
            (
                self.cache_compression
                    .as_deref()
                    .is_some_and(|c| !c.is_empty()),
                "--cache-compression-type",
                "the in-memory cache holds answers uncompressed",
            ),
            (
                set(self.compress_responses),
                "--query-frontend.compress-responses",
                "answers are not gzipped",
            ),
            (
                set(self.x_functions),
                "--query-frontend.enable-x-functions",
                "no effect on a proxy",
            ),
            (
                self.tripper_config.is_some() || self.tripper_config_file.is_some(),
                "--query-frontend.downstream-tripper-config",
                "the downstream client uses its own pool and timeouts",
            ),
            (
                !self.request_downsampled,
                "--query-range.request-downsampled",
                "max_source_resolution=auto is passed to the querier, which picks resolutions itself",
            ),
        ]);
    }
}

/// A frontend serving: its address and its task.
pub struct RunningFrontend {
    pub http_addr: SocketAddr,
    pub frontend: Arc<Frontend>,
}

/// Binds and serves until `shutdown` resolves.
pub async fn start(
    args: &FrontendArgs,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(RunningFrontend, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    args.log_no_effect();
    let cfg = args.config()?;
    let cache_yaml = text_or_file(
        &args.cache_config,
        &args.cache_config_file,
        "query-range.response-cache-config",
    )?;
    let cache = match cache_yaml {
        Some(y) => ResultsCache::from_yaml(&y).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => None,
    };
    if cache.is_some() && cfg.split_interval == 0 {
        anyhow::bail!("the results cache needs --query-range.split-interval > 0");
    }
    let client = sluice_frontend::downstream_client().map_err(|e| anyhow::anyhow!("{e}"))?;
    let labels_yaml = text_or_file(
        &args.labels_cache_config,
        &args.labels_cache_config_file,
        "labels.response-cache-config",
    )?;
    let labels_cache = match labels_yaml {
        Some(y) => ResultsCache::from_yaml(&y).map_err(|e| anyhow::anyhow!("labels cache: {e}"))?,
        None => None,
    };
    if labels_cache.is_some() && args.labels_split_interval.is_zero() {
        anyhow::bail!("the labels cache needs --labels.split-interval > 0");
    }
    let cached = cache.is_some();
    let frontend = Frontend::new(cfg, client, cache, labels_cache, &metrics);
    let security = super::ServerTlsArgs {
        http_config: args.http_config.clone(),
        ..Default::default()
    }
    .load()?;
    let listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("binding --http-address {}", args.http_address))?;
    let http_addr = listener.local_addr()?;
    let stop = super::stop_flag(shutdown);
    frontend.check_downstream().await;
    let watch = tokio::spawn(frontend.clone().watch_downstream(args.check_interval));
    let fe = frontend.clone();
    let ready: crate::api::ReadyFn = Arc::new(move || fe.readiness());
    let router = crate::api::ops_router(metrics, ready).merge(frontend.router());
    let http = super::spawn_http(listener, router, &security, stop)?;
    tracing::info!(downstream = %args.downstream_url, cached, http = %http_addr, "query frontend listening");
    let task = tokio::spawn(async move {
        let r = http.await;
        watch.abort();
        r.context("HTTP server task")?.context("HTTP server")
    });
    Ok((
        RunningFrontend {
            http_addr,
            frontend,
        },
        task,
    ))
}

pub async fn run(args: FrontendArgs) -> anyhow::Result<()> {
    let (running, task) = start(&args, Metrics::new(), super::shutdown_signal()).await?;
    println!("sluice query-frontend listening http={}", running.http_addr);
    task.await.context("query-frontend task")?
}
