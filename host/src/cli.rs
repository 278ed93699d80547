//! cli owns the command line: subcommands and flags with Thanos' names, and
//! wiring the modules into running processes.

pub mod frontend;
pub mod plugin;
pub mod query;
mod runtime;
pub mod sidecar;
pub mod store;
pub mod up;

use clap::{Parser, Subcommand};

/// Sluice: a Thanos-compatible query gateway for Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// Log filtering level (error, warn, info, debug).
    #[arg(long = "log.level", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt", global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the StoreAPI over the TSDB blocks in an object storage bucket (store gateway).
    Store(store::StoreArgs),
    /// Tools for policy plugin authors: scaffold, test and inspect plugins.
    Plugin(plugin::PluginArgs),
    /// Query StoreAPI endpoints: fan-out, merge, dedup; Prometheus HTTP API and StoreAPI (querier).
    Query(query::QueryArgs),
    /// Next to a Prometheus server: its live data over StoreAPI, its blocks shipped to the bucket, its config reloaded.
    Sidecar(sidecar::SidecarArgs),
    /// In front of a querier: range queries split by day, answered from a results cache where exact, retried.
    #[command(name = "query-frontend")]
    QueryFrontend(frontend::FrontendArgs),
    /// All-in-one demo: a local bucket with demo data, a store and a querier in one process.
    Up(up::UpArgs),
}

/// Sets up logging to stderr.
pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},h2=warn,hyper=warn,tower=warn",
            cli.log_level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

/// Runs the selected subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Store(args) => store::run(args).await,
        Command::Plugin(args) => plugin::run(args).await,
        Command::Query(args) => query::run(args).await,
        Command::Sidecar(args) => sidecar::run(args).await,
        Command::QueryFrontend(args) => frontend::run(args).await,
        Command::Up(args) => up::run(args).await,
    }
}

/// The gRPC and HTTP listeners of a process, bound before serving so the
/// real addresses (port 0 resolved) are known.
pub(crate) struct Listeners {
    pub grpc: tokio::net::TcpListener,
    pub http: tokio::net::TcpListener,
    pub grpc_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
}

/// Binds `--grpc-address` and `--http-address`.
pub(crate) async fn bind_listeners(
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
) -> anyhow::Result<Listeners> {
    use anyhow::Context;
    let grpc_l = tokio::net::TcpListener::bind(grpc)
        .await
        .with_context(|| format!("binding --grpc-address {grpc}"))?;
    let http_l = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("binding --http-address {http}"))?;
    Ok(Listeners {
        grpc_addr: grpc_l.local_addr()?,
        http_addr: http_l.local_addr()?,
        grpc: grpc_l,
        http: http_l,
    })
}

/// Turns a shutdown future into a flag every server can wait on.
pub(crate) fn stop_flag(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once the stop flag is raised.
pub(crate) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Server TLS flags shared by every serving subcommand (Thanos' names).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerTlsArgs {
    /// TLS certificate (PEM) for the gRPC server; with --grpc-server-tls-key, the gRPC server speaks TLS only.
    #[arg(long = "grpc-server-tls-cert")]
    pub grpc_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for the gRPC server.
    #[arg(long = "grpc-server-tls-key")]
    pub grpc_key: Option<std::path::PathBuf>,
    /// CA bundle verifying gRPC clients: when set, clients must present a certificate it signed (mutual TLS).
    #[arg(long = "grpc-server-tls-client-ca")]
    pub grpc_client_ca: Option<std::path::PathBuf>,
    /// Oldest TLS version the gRPC server accepts: 1.2 or 1.3 (also TLS12, TLS13).
    #[arg(long = "grpc-server-tls-min-version", default_value = "1.3")]
    pub grpc_min_version: String,
    /// Prometheus web configuration file (exporter-toolkit format): HTTP TLS, client certificates, basic auth.
    #[arg(long = "http.config")]
    pub http_config: Option<std::path::PathBuf>,
    /// How often certificate, key and CA files are checked for changes.
    #[arg(long = "tls.reload-interval", default_value = "5s", value_parser = crate::config::duration_arg, hide = true)]
    pub reload_interval: std::time::Duration,
}

impl Default for ServerTlsArgs {
    fn default() -> Self {
        ServerTlsArgs {
            grpc_cert: None,
            grpc_key: None,
            grpc_client_ca: None,
            grpc_min_version: "1.3".into(),
            http_config: None,
            reload_interval: crate::tls::DEFAULT_RELOAD_INTERVAL,
        }
    }
}

/// TLS of a process's two servers, loaded and watched for changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSecurity {
    pub grpc: Option<crate::tls::ServerTls>,
    pub http: Option<crate::tls::ServerTls>,
    pub web: crate::tls::WebConfig,
}

impl ServerTlsArgs {
    /// Loads every configured certificate and the web config, reporting all
    /// problems at once, and starts watching the files.
    pub(crate) fn load(&self) -> anyhow::Result<ServerSecurity> {
        use crate::tls::{ClientAuth, ServerTls, ServerTlsOptions, TlsVersion, WebConfig};
        let mut problems = Vec::new();
        let min_version = TlsVersion::parse(&self.grpc_min_version)
            .map_err(|e| problems.push(format!("--grpc-server-tls-min-version: {e}")))
            .unwrap_or(TlsVersion::Tls13);
        let grpc_opts = match (&self.grpc_cert, &self.grpc_key) {
            (Some(cert), Some(key)) => Some(ServerTlsOptions {
                what: "gRPC server",
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: self.grpc_client_ca.clone(),
                client_auth: if self.grpc_client_ca.is_some() {
                    ClientAuth::RequireAndVerifyClientCert
                } else {
                    ClientAuth::NoClientCert
                },
                min_version,
                max_version: None,
                alpn: vec![b"h2".to_vec()],
                allowed_sans: vec![],
            }),
            (None, None) => {
                if self.grpc_client_ca.is_some() {
                    problems.push(
                        "--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key"
                            .to_string(),
                    );
                }
                None
            }
            _ => {
                problems.push(
                    "--grpc-server-tls-cert and --grpc-server-tls-key go together".to_string(),
                );
                None
            }
        };
        let grpc = grpc_opts.and_then(|o| {
            ServerTls::new(o)
                .map_err(|e| problems.push(format!("gRPC server TLS: {e}")))
                .ok()
        });
        let web = match &self.http_config {
            Some(p) => WebConfig::load(p)
                .map_err(|e| problems.push(e.to_string()))
                .unwrap_or_default(),
            None => WebConfig::default(),
        };
        let http = web.tls.clone().and_then(|o| {
            ServerTls::new(o)
                .map_err(|e| problems.push(format!("HTTP server TLS: {e}")))
                .ok()
        });
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
        for t in grpc.iter().chain(http.iter()) {
            t.watch(self.reload_interval);
        }
        Ok(ServerSecurity { grpc, http, web })
    }
}

/// Serves `router` on `listener` (TLS and basic auth per `--http.config`)
/// until the stop flag is raised. Handlers can read the client's
/// certificate identity from `ConnectInfo<api::HttpPeer>`.
pub(crate) fn spawn_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    security: &ServerSecurity,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let incoming = crate::tls::incoming(listener, security.http.clone(), stop.clone())?;
    let router = crate::api::with_web_config(router, &security.web);
    Ok(tokio::spawn(async move {
        axum::serve(
            crate::api::HttpListener(incoming),
            router.into_make_service_with_connect_info::<crate::api::HttpPeer>(),
        )
        .with_graceful_shutdown(stopped(stop))
        .await
    }))
}

/// The gRPC listener as tonic's incoming stream (TLS per the
/// `--grpc-server-tls-*` flags), with Nagle off as in Go.
pub(crate) fn grpc_incoming(
    listener: tokio::net::TcpListener,
    security: &ServerSecurity,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<crate::tls::Incoming> {
    Ok(crate::tls::incoming(listener, security.grpc.clone(), stop)?)
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Logs, once at start, each Thanos flag that was set but has no effect in
/// Sluice: `(set, flag, why)`.
pub(crate) fn log_no_effect_flags(flags: &[(bool, &str, &str)]) {
    for (set, flag, why) in flags {
        if *set {
            tracing::warn!(
                flag,
                reason = why,
                "flag accepted for Thanos compatibility; it has no effect"
            );
        }
    }
}

/// Every background task of a running process (block sync, endpoint
/// refresh, policy file watch, …): spawned here or adopted, and all ended by
/// [`Tasks::shutdown`] when the process's servers stop, so nothing outlives
/// its process — in `sluice up` and in in-process tests alike.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    set: tokio::task::JoinSet<()>,
    adopted: Vec<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Runs `task` until it ends or the process shuts down.
    pub(crate) fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.set.spawn(task);
    }

    /// Takes ownership of a task spawned by a library (it is aborted at
    /// shutdown).
    pub(crate) fn adopt(&mut self, handle: tokio::task::JoinHandle<()>) {
        self.adopted.push(handle);
    }

    /// Ends every task and waits until they are gone.
    pub(crate) async fn shutdown(mut self) {
        self.set.abort_all();
        for h in &self.adopted {
            h.abort();
        }
        while self.set.join_next().await.is_some() {}
        for h in self.adopted {
            let _ = h.await;
        }
    }
}
