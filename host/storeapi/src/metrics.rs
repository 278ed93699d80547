//! gRPC server metrics in go-grpc-prometheus' names, as Thanos exports them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sluice_metrics::Metrics;

type GrpcLabels = Vec<(&'static str, String)>;

/// gRPC server metrics in go-grpc-prometheus' names, as Thanos exports them.
#[derive(Clone)]
pub struct GrpcMetrics {
    handled: Family<GrpcLabels, Counter>,
    started: Family<GrpcLabels, Counter>,
    seconds: Family<GrpcLabels, Histogram>,
}

impl std::fmt::Debug for GrpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcMetrics")
    }
}

impl GrpcMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let m = GrpcMetrics {
            handled: Family::default(),
            started: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 4.0, 10))
            }),
        };
        metrics.register(|r| {
            r.register(
                "grpc_server_started",
                "Total number of RPCs started on the server.",
                m.started.clone(),
            );
            r.register(
                "grpc_server_handled",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                m.handled.clone(),
            );
            r.register(
                "grpc_server_handling_seconds",
                "Histogram of response latency of RPCs handled by the server.",
                m.seconds.clone(),
            );
        });
        m
    }

    fn labels(service: &str, method: &str, kind: &str) -> GrpcLabels {
        vec![
            ("grpc_service", service.to_string()),
            ("grpc_method", method.to_string()),
            ("grpc_type", kind.to_string()),
        ]
    }

    /// Records the start of an RPC.
    pub fn started(&self, service: &str, method: &str, kind: &str) {
        self.started
            .get_or_create(&Self::labels(service, method, kind))
            .inc();
    }

    /// Records the end of an RPC with its gRPC status code name and duration.
    pub fn handled(
        &self,
        service: &str,
        method: &str,
        kind: &str,
        code: tonic::Code,
        seconds: f64,
    ) {
        let mut l = Self::labels(service, method, kind);
        self.seconds.get_or_create(&l).observe(seconds);
        l.push(("grpc_code", code_name(code).to_string()));
        self.handled.get_or_create(&l).inc();
    }
}

/// The Go-style name of a gRPC code (`OK`, `InvalidArgument`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
