//! `sluice query`: the querier (Thanos flag names).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::runtime::Process;
use crate::api::query::QueryApiConfig;
use crate::config::duration_arg;
use crate::discovery::{Discovery, EndpointSpec, SdConfig, Source};
use crate::fanout::{EndpointSet, EndpointSetOptions, ProxyStore};
use crate::metrics::Metrics;
use crate::policy::{PolicyEngine, PolicyRegistry};
use crate::storeapi::{ServerOptions, StoreApi};

#[derive(Debug, Args, Clone)]
pub struct QueryArgs {
    /// StoreAPI endpoint: host:port, dns+host:port or dnssrv+_grpc._tcp.name. Repeatable.
    #[arg(long = "endpoint")]
    pub endpoint: Vec<String>,
    /// Like --endpoint, but always queried even when its health check fails.
    #[arg(long = "endpoint-strict")]
    pub endpoint_strict: Vec<String>,
    /// Endpoint discovery config as inline YAML (Thanos `endpoints:` format).
    #[arg(long = "endpoint.sd-config")]
    pub endpoint_sd_config: Option<String>,
    /// Endpoint discovery config file (Thanos `endpoints:` format), re-read on every refresh.
    #[arg(long = "endpoint.sd-config-file")]
    pub endpoint_sd_config_file: Option<PathBuf>,
    /// Prometheus file SD files listing StoreAPI endpoints. Repeatable.
    #[arg(long = "store.sd-files")]
    pub store_sd_files: Vec<PathBuf>,
    /// Label naming replicas, removed for deduplication. Repeatable or comma-separated.
    #[arg(long = "query.replica-label", value_delimiter = ',')]
    pub replica_labels: Vec<String>,
    /// Default partial-response behaviour: true turns store failures into warnings.
    #[arg(long = "query.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    pub partial_response: bool,
    /// Longest wait for the next frame from one store; 0 = no limit.
    #[arg(long = "store.response-timeout", default_value = "0", value_parser = duration_arg)]
    pub response_timeout: Duration,
    /// Endpoints failing health checks for longer than this are removed.
    #[arg(long = "store.unhealthy-timeout", default_value = "5m", value_parser = duration_arg)]
    pub unhealthy_timeout: Duration,
    /// Info call timeout and health check interval.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", value_parser = duration_arg, hide = true)]
    pub info_timeout: Duration,
    /// Maximum time to process a query.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = duration_arg)]
    pub query_timeout: Duration,
    /// How far back an instant vector selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = duration_arg)]
    pub lookback_delta: Duration,
    /// Most samples a single query may hold in memory at once.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub max_samples: usize,
    /// Most queries evaluated at once; more wait in a queue.
    /// Decoded samples (16 bytes each) all running queries may hold at once; a selection that would go over fails with an error naming this flag. 0 = no limit.
    #[arg(long = "query.max-decoded-samples", default_value_t = 100_000_000)]
    pub max_decoded_samples: u64,
    /// Most series one selection (and one Series call to this querier's StoreAPI) may read from the endpoints; 0 = no limit.
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub limit_series: u64,
    /// Most samples (counted from chunk headers, not Thanos' chunks x 120) one selection may read; 0 = no limit.
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub limit_samples: u64,
    #[arg(long = "query.max-concurrent", default_value_t = 20)]
    pub max_concurrent: usize,
    /// Step of subqueries that do not name one.
    #[arg(long = "query.default-evaluation-interval", default_value = "1m", value_parser = duration_arg)]
    pub default_evaluation_interval: Duration,
    /// Listen address for gRPC (StoreAPI of this querier).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// Listen address for HTTP (Prometheus API, /metrics, probes).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// policies.yml naming the plugin of each policy slot; built-ins when absent.
    #[arg(long = "policies.config-file")]
    pub policies_config_file: Option<PathBuf>,
    /// File holding the bearer token of the policy admin API; the API is off without it.
    #[arg(long = "policies.admin-token-file")]
    pub policies_admin_token_file: Option<PathBuf>,
    /// Serve the policy admin API's bearer token over plaintext HTTP (the token then crosses the network in the
    /// clear). Without it, --policies.admin-token-file needs HTTPS (--http.config with tls_server_config).
    #[arg(long = "policies.admin-allow-plaintext")]
    pub policies_admin_allow_plaintext: bool,
    /// Directory for compiled plugin artifacts.
    #[arg(long = "policies.cache-dir")]
    pub policies_cache_dir: Option<PathBuf>,
    /// Client certificate identity (SAN URI, SAN DNS name or CN) allowed to use the policy admin API.
    /// Repeatable. Needs --http.config verifying client certificates; works alongside the bearer token.
    #[arg(long = "policies.admin-client-identity")]
    pub policies_admin_client_identity: Vec<String>,
    /// DNS server for dns+/dnssrv+ lookups (default: the system's).
    #[arg(long = "dns.nameserver", hide = true)]
    pub dns_nameserver: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: super::ServerTlsArgs,
    #[command(flatten)]
    pub client_tls: ClientTlsArgs,
    /// Thanos' endpoint groups: each address is queried as one endpoint (Sluice does not balance inside a group).
    #[arg(long = "endpoint-group")]
    pub endpoint_group: Vec<String>,
    /// Requests without max_source_resolution use `auto` (a fifth of the step), as Thanos' flag does.
    #[arg(long = "query.auto-downsampling")]
    pub auto_downsampling: bool,
    /// HTTP header naming the tenant of a request; forwarded to the endpoints as `thanos-tenant` gRPC metadata.
    #[arg(long = "query.tenant-header", default_value = "THANOS-TENANT")]
    pub tenant_header: String,
    /// Tenant of requests that name none.
    #[arg(long = "query.default-tenant-id", default_value = "default-tenant")]
    pub default_tenant_id: String,
    /// Take the tenant from this field of the verified client certificate (organization, organizationalUnit or
    /// commonName); a header naming another tenant is then refused.
    #[arg(long = "query.tenant-certificate-field", value_enum)]
    pub tenant_certificate_field: Option<crate::api::tenancy::CertField>,
    /// Every selection gets the matcher <query.tenant-label-name>="<tenant>": a tenant sees only its series.
    #[arg(long = "query.enforce-tenancy")]
    pub enforce_tenancy: bool,
    /// The label that holds the tenant, for --query.enforce-tenancy.
    #[arg(long = "query.tenant-label-name", default_value = "tenant_id")]
    pub tenant_label_name: String,
    /// Compression of the gRPC calls to endpoints: snappy or none (an sd-config's `compression` overrides it).
    #[arg(long = "grpc-compression", default_value = "none", value_parser = ["none", "snappy"])]
    pub grpc_compression: String,
    #[command(flatten)]
    pub ignored: IgnoredQueryFlags,
}

/// gRPC client TLS towards endpoints without their own `client_config` (Thanos' flags).
#[derive(Debug, Args, Clone, Default)]
pub struct ClientTlsArgs {
    /// Use TLS when talking to the gRPC endpoints.
    #[arg(long = "grpc-client-tls-secure")]
    pub secure: bool,
    /// Client certificate (PEM) presented to endpoints (mutual TLS).
    #[arg(long = "grpc-client-tls-cert")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long = "grpc-client-tls-key")]
    pub key: Option<PathBuf>,
    /// CA bundle verifying endpoint certificates (default: the system's roots).
    #[arg(long = "grpc-client-tls-ca")]
    pub ca: Option<PathBuf>,
    /// Server name to verify endpoint certificates against (default: the endpoint's host).
    #[arg(long = "grpc-client-server-name")]
    pub server_name: Option<String>,
    /// Do not verify endpoint certificates (testing only).
    #[arg(long = "grpc-client-tls-skip-verify")]
    pub skip_verify: bool,
}

impl ClientTlsArgs {
    /// The client TLS options, `None` for plaintext.
    pub fn options(&self) -> anyhow::Result<Option<crate::tls::ClientTlsOptions>> {
        if !self.secure {
            if self.cert.is_some() || self.key.is_some() || self.ca.is_some() || self.skip_verify {
                tracing::warn!(
                    "--grpc-client-tls-* flags have no effect without --grpc-client-tls-secure"
                );
            }
            return Ok(None);
        }
        if self.cert.is_some() != self.key.is_some() {
            anyhow::bail!("--grpc-client-tls-cert and --grpc-client-tls-key go together");
        }
        Ok(Some(crate::tls::ClientTlsOptions {
            ca_file: self.ca.clone(),
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            server_name: self.server_name.clone().filter(|s| !s.is_empty()),
            insecure_skip_verify: self.skip_verify,
            ..Default::default()
        }))
    }
}

/// Thanos querier flags with no counterpart in Sluice: accepted so that a Thanos deployment's flags start a Sluice
/// querier, and each one that is set is named in the log once, with why it does nothing.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IgnoredQueryFlags {
    #[arg(long = "query.max-concurrent-select", hide = true)]
    pub max_concurrent_select: Option<String>,
    #[arg(long = "web.route-prefix", hide = true)]
    pub web_route_prefix: Option<String>,
    #[arg(long = "web.external-prefix", hide = true)]
    pub web_external_prefix: Option<String>,
    #[arg(long = "query.promql-engine", hide = true)]
    pub promql_engine: Option<String>,
}

impl IgnoredQueryFlags {
    fn log(&self) {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        super::log_no_effect_flags(&[
            (
                set(&self.max_concurrent_select),
                "--query.max-concurrent-select",
                "a query's selectors are fetched concurrently, bounded by --query.max-concurrent queries",
            ),
            (
                set(&self.web_route_prefix),
                "--web.route-prefix",
                "the API and UI are served at /",
            ),
            (
                set(&self.web_external_prefix),
                "--web.external-prefix",
                "the UI links relative to /",
            ),
            (
                set(&self.promql_engine),
                "--query.promql-engine",
                "Sluice evaluates PromQL with its own engine (Prometheus 3.x semantics)",
            ),
        ]);
    }
}

impl QueryArgs {
    fn limits(&self) -> crate::storeapi::SeriesLimits {
        crate::storeapi::SeriesLimits {
            series: self.limit_series,
            samples: self.limit_samples,
        }
    }

    /// Defaults for an in-process querier (used by `sluice up`).
    pub fn local(endpoints: Vec<String>, grpc: SocketAddr, http: SocketAddr) -> Self {
        QueryArgs {
            endpoint: endpoints,
            endpoint_strict: vec![],
            endpoint_sd_config: None,
            endpoint_sd_config_file: None,
            store_sd_files: vec![],
            replica_labels: vec!["replica".into()],
            partial_response: true,
            response_timeout: Duration::ZERO,
            unhealthy_timeout: Duration::from_secs(300),
            info_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(120),
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            max_decoded_samples: 100_000_000,
            limit_series: 0,
            limit_samples: 0,
            max_concurrent: 20,
            default_evaluation_interval: Duration::from_secs(60),
            grpc_address: grpc,
            http_address: http,
            policies_config_file: None,
            policies_admin_token_file: None,
            policies_admin_allow_plaintext: false,
            endpoint_group: vec![],
            auto_downsampling: false,
            tenant_header: "THANOS-TENANT".into(),
            default_tenant_id: crate::storeapi::DEFAULT_TENANT.into(),
            tenant_certificate_field: None,
            enforce_tenancy: false,
            tenant_label_name: "tenant_id".into(),
            grpc_compression: "none".into(),
            ignored: Default::default(),
            policies_cache_dir: None,
            policies_admin_client_identity: vec![],
            dns_nameserver: None,
            tls: Default::default(),
            client_tls: Default::default(),
        }
    }

    fn sources(&self) -> anyhow::Result<Vec<Source>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (list, strict) in [
            (&self.endpoint, false),
            (&self.endpoint_group, false),
            (&self.endpoint_strict, true),
        ] {
            for e in list {
                match EndpointSpec::parse(e) {
                    Ok(spec) => out.push(Source {
                        spec,
                        strict,
                        client: None,
                    }),
                    Err(err) => problems.push(err.to_string()),
                }
            }
        }
        if let Some(yaml) = &self.endpoint_sd_config {
            match SdConfig::parse(yaml) {
                Ok(c) => {
                    for e in c.endpoints {
                        if let Ok(spec) = EndpointSpec::parse(&e.address) {
                            out.push(Source {
                                spec,
                                strict: e.strict,
                                client: e.client_config.or(c.default_client_config.clone()),
                            });
                        }
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if let Some(f) = &self.endpoint_sd_config_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading --endpoint.sd-config-file {}", f.display()))?;
            if let Err(e) = SdConfig::parse(&text) {
                problems.push(e);
            }
        }
        if !problems.is_empty() {
            anyhow::bail!("invalid endpoints: {}", problems.join("; "));
        }
        Ok(out)
    }
}

/// A running querier.
pub struct RunningQuery {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub endpoints: Arc<EndpointSet>,
    pub policies: Arc<PolicyRegistry>,
}

/// Starts a querier; serving stops when `shutdown` resolves.
pub async fn start(
    args: &QueryArgs,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(RunningQuery, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let mut process = Process::bind(
        args.grpc_address,
        args.http_address,
        &args.tls,
        metrics.clone(),
        shutdown,
    )
    .await?;
    let client_tls = args.client_tls.options()?;
    args.ignored.log();
    let mut admin = crate::api::AdminAuth {
        token: None,
        identities: args.policies_admin_client_identity.clone(),
    };
    if let Some(tf) = &args.policies_admin_token_file {
        admin.token = Some(crate::api::read_token_file(tf).map_err(|e| anyhow::anyhow!(e))?);
        if process.security().http.is_none() && !args.policies_admin_allow_plaintext {
            anyhow::bail!(
                "--policies.admin-token-file over plaintext HTTP would send the token in the clear: serve HTTPS \
                 (--http.config with tls_server_config) or pass --policies.admin-allow-plaintext"
            );
        }
    }
    if !admin.identities.is_empty()
        && !process
            .security()
            .http
            .as_ref()
            .is_some_and(|t| t.current().verifies_clients)
    {
        anyhow::bail!(
            "--policies.admin-client-identity needs --http.config with tls_server_config verifying client \
             certificates (client_ca_file and client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        );
    }
    let discovery = Discovery::new(
        args.sources()?,
        args.store_sd_files.clone(),
        args.endpoint_sd_config_file.clone(),
        args.dns_nameserver,
    );
    let set = EndpointSet::new(
        discovery,
        EndpointSetOptions {
            info_timeout: args.info_timeout,
            unhealthy_timeout: args.unhealthy_timeout,
            response_timeout: args.response_timeout,
            client_tls,
            tls_reload_interval: args.tls.reload_interval,
            snappy: args.grpc_compression == "snappy",
            ..Default::default()
        },
    );

    let engine =
        PolicyEngine::new(args.policies_cache_dir.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let policies = PolicyRegistry::new(engine, &metrics);
    let loaded = match &args.policies_config_file {
        Some(p) => policies.apply_file(p),
        None => policies.apply(crate::policy::config::default_slots()),
    };
    if let Err(e) = loaded {
        anyhow::bail!("policies: {}", e.join("; "));
    }
    if let Some(p) = &args.policies_config_file {
        process.tasks().adopt(
            policies
                .watch_file(p.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }

    let (grpc_addr, http_addr) = (process.grpc_addr(), process.http_addr());

    set.refresh().await;
    process.tasks().adopt(set.spawn_refresh());

    let proxy = StoreApi::new(
        Arc::new(ProxyStore::new(set.clone())),
        ServerOptions {
            metrics_prefix: "thanos_proxy_store",
            limits: args.limits(),
            // As a Thanos querier: the other APIs pass through to the endpoints that have them.
            apis: crate::storeapi::ExtraApis {
                rules: true,
                targets: true,
                metric_metadata: true,
                exemplars: Some((i64::MIN, i64::MAX)),
            },
            ..ServerOptions::default()
        },
        &metrics,
    );
    let (rules_api, targets_api, metadata_api, exemplars_api) =
        crate::fanout::apis::server::ProxyApis::new(set.clone()).servers();
    // One --query.max-concurrent gate for PromQL and the series API.
    let gate = Arc::new(tokio::sync::Semaphore::new(args.max_concurrent.max(1)));
    let mut http = axum::Router::new().merge(crate::api::query::router(
        set.clone(),
        QueryApiConfig {
            replica_labels: args.replica_labels.clone(),
            partial_response: args.partial_response,
            timeout: args.query_timeout,
            gate: Some(gate.clone()),
        },
        Some(policies.clone()),
    ));
    let querier = Arc::new(crate::querier::Querier::new(
        set.clone(),
        policies.clone(),
        crate::querier::QuerierConfig {
            replica_labels: args.replica_labels.clone(),
            partial_response: args.partial_response,
            limits: args.limits(),
            max_decoded_samples: args.max_decoded_samples,
            ..Default::default()
        },
    ));
    http = http.merge(crate::api::promql::router(
        querier,
        crate::api::promql::PromqlApiConfig {
            partial_response: args.partial_response,
            timeout: args.query_timeout,
            max_concurrent: args.max_concurrent,
            auto_downsampling: args.auto_downsampling,
            engine: crate::promql::EngineOpts {
                lookback_delta: args.lookback_delta.as_millis() as i64,
                max_samples: args.max_samples,
                default_subquery_step: args.default_evaluation_interval.as_millis() as i64,
                ..Default::default()
            },
            gate: Some(gate),
        },
    ));
    // Every API request's tenant, before the handlers (which forward and enforce it).
    http = http.layer(axum::middleware::from_fn_with_state(
        Arc::new(crate::api::tenancy::Tenancy {
            header: args.tenant_header.clone(),
            default_id: args.default_tenant_id.clone(),
            cert_field: args.tenant_certificate_field,
            enforce: args.enforce_tenancy,
            label: args.tenant_label_name.clone(),
        }),
        crate::api::tenancy::resolve,
    ));
    let admin_api = admin.enabled();
    if admin_api {
        http = http.merge(crate::api::policy_admin_router(policies.clone(), admin));
    }
    http = http.merge(crate::api::ui::router(crate::api::ui::UiConfig {
        partial_response: args.partial_response,
        policies: Some(policies.clone()),
        policy_admin_api: admin_api,
    }));
    // Ready once the first endpoint refresh (above) has run.
    let handle = process.serve(http, Arc::new(|| Ok(())), |r| {
        r.add_service(proxy.info_server())
            .add_service(proxy.store_server())
            .add_service(rules_api)
            .add_service(targets_api)
            .add_service(metadata_api)
            .add_service(exemplars_api)
    })?;
    Ok((
        RunningQuery {
            grpc_addr,
            http_addr,
            endpoints: set,
            policies,
        },
        handle,
    ))
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let (running, handle) = start(&args, metrics, super::shutdown_signal()).await?;
    tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, endpoints = running.endpoints.all().len(), "querier listening");
    println!(
        "sluice query listening grpc={} http={}",
        running.grpc_addr, running.http_addr
    );
    handle.await.context("query task")?
}
