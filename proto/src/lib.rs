//! sluice-proto owns the wire types: our own `.proto` files, wire-compatible
//! with the Thanos StoreAPI (`thanos`, `thanos.info`, `hintspb`) and with
//! Prometheus remote read (`prometheus`), compiled without a system `protoc`.

#![allow(clippy::all, missing_docs)]

/// `thanos` package: Store service and StoreAPI data types.
pub mod thanos {
    tonic::include_proto!("thanos");

    /// `thanos.info` package: the Info service every endpoint serves.
    pub mod info {
        tonic::include_proto!("thanos.info");
    }
}

/// `hintspb` package: store-gateway hint payloads carried in `Any`.
pub mod hintspb {
    tonic::include_proto!("hintspb");
}

/// `prometheus` package: remote read/write messages.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// The largest gRPC message Thanos accepts or sends (`math.MaxInt32`); tonic's
/// default 4 MiB decode limit is raised to this on every client and server.
pub const MAX_GRPC_MESSAGE_SIZE: usize = i32::MAX as usize;
