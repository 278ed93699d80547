//! sluice-sidecar: what runs next to a Prometheus server.
//!
//! - [`source::PromSource`]: the server's data as a StoreAPI source over
//!   remote read — streamed chunks passed through as sent, external labels
//!   laid over, in StoreAPI order without buffering the answer
//!   ([`order`]) — kept fresh by [`source::run_metadata`].
//! - [`shipper::Shipper`]: new blocks of the server's TSDB uploaded to the
//!   bucket with Thanos' meta section, `thanos.shipper.json` kept.
//! - [`reloader::Reloader`]: the server's config (templated) and rule files
//!   watched, and the server reloaded when they change.
//!
//! The StoreAPI server itself is `sluice-storeapi`'s; nothing here knows
//! gRPC.

pub mod apis;
pub mod frames;
pub mod http;
pub mod order;
pub mod prom;
pub mod reloader;
pub mod shipper;
pub mod source;

/// Errors of talking to Prometheus, reading its files, or the bucket.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{0}")]
    Config(String),
    #[error("calling Prometheus {what}: {detail}")]
    Http { what: String, detail: String },
    #[error("Prometheus {what} answered {code}: {body}")]
    Status {
        what: String,
        code: u16,
        body: String,
    },
    #[error("{0}")]
    Decode(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bucket: {0}")]
    Bucket(#[from] object_store::Error),
}

impl SidecarError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SidecarError::Io {
            what: what.into(),
            source,
        }
    }
}
