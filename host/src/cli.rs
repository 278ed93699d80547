//! cli owns the command line: subcommands and flags with Thanos' names, and
//! wiring the modules into running processes.

pub mod plugin;
pub mod query;
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

/// Serves `router` on `listener` until the stop flag is raised.
pub(crate) fn spawn_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped(stop))
            .await
    })
}

/// The gRPC listener as tonic's incoming stream, with Nagle off as in Go.
pub(crate) fn grpc_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
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
