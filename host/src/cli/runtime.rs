//! The one process runtime every serving subcommand (`store`, `query`, and
//! next `sidecar`, `compact`, `rule`, `query-frontend`) is built on: TLS per
//! the server flags, both listeners bound up front (port 0 resolved), the
//! stop flag raised by the shutdown future, the gRPC health service, probes
//! and `/metrics` on the HTTP server, and a [`Tasks`] set that owns every
//! background task and is ended when the servers stop.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::{Listeners, ServerSecurity, ServerTlsArgs, Tasks};
use crate::api::ReadyFn;
use crate::metrics::Metrics;

/// A process being assembled: listeners bound, nothing served yet.
pub(crate) struct Process {
    pub metrics: Metrics,
    security: ServerSecurity,
    listeners: Listeners,
    stop: tokio::sync::watch::Receiver<bool>,
    tasks: Tasks,
    health: HealthReporter,
    health_routes: Routes,
}

impl Process {
    /// Loads the server TLS material (every problem at once), binds
    /// `--grpc-address` and `--http-address`, and arms the stop flag.
    pub(crate) async fn bind(
        grpc: SocketAddr,
        http: SocketAddr,
        tls: &ServerTlsArgs,
        metrics: Metrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Process> {
        let security = tls.load()?;
        let listeners = super::bind_listeners(grpc, http).await?;
        let (health, health_service) = tonic_health::server::health_reporter();
        // The process serves; named services report their own status.
        health.set_service_status("", ServingStatus::Serving).await;
        Ok(Process {
            metrics,
            security,
            listeners,
            stop: super::stop_flag(shutdown),
            tasks: Tasks::default(),
            health,
            health_routes: Routes::new(health_service),
        })
    }

    pub(crate) fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr
    }

    pub(crate) fn http_addr(&self) -> SocketAddr {
        self.listeners.http_addr
    }

    /// The server TLS material and web config.
    pub(crate) fn security(&self) -> &ServerSecurity {
        &self.security
    }

    /// The task set: what is spawned or adopted here ends with the process.
    pub(crate) fn tasks(&mut self) -> &mut Tasks {
        &mut self.tasks
    }

    /// The `grpc.health.v1` reporter, for services that become ready later.
    pub(crate) fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves `http` (with `/-/healthy`, `/-/ready` per `ready`, and
    /// `/metrics`) and the gRPC services `grpc` adds next to the health
    /// service, until the stop flag is raised; then ends every task. The
    /// handle resolves when all of it is done.
    pub(crate) fn serve(
        self,
        http: axum::Router,
        ready: ReadyFn,
        grpc: impl FnOnce(Routes) -> Routes,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let Process {
            metrics,
            security,
            listeners,
            stop,
            tasks,
            health: _,
            health_routes,
        } = self;
        let http = crate::api::ops_router(metrics, ready).merge(http);
        let http_task = super::spawn_http(listeners.http, http, &security, stop.clone())?;
        let grpc = tonic::transport::Server::builder()
            // Thanos' snappy compression (`--grpc-compression=snappy` on its querier) on every service.
            .layer(crate::storeapi::snappy::SnappyLayer {
                max_request: crate::storeapi::MAX_REQUEST_SIZE,
                max_response: sluice_proto::MAX_GRPC_MESSAGE_SIZE,
            })
            .add_routes(grpc(health_routes).prepare())
            .serve_with_incoming_shutdown(
                super::grpc_incoming(listeners.grpc, &security, stop.clone())?,
                super::stopped(stop),
            );
        Ok(tokio::spawn(async move {
            let r = grpc.await;
            tasks.shutdown().await;
            let _ = http_task.await;
            r.context("gRPC server")
        }))
    }
}
