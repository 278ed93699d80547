//! The errors of every StoreAPI source, and the one place they become gRPC
//! status codes ([`status`]).

use tonic::{Code, Status};

/// Why a StoreAPI call failed. Sources convert their own errors into this;
/// the server maps it to a gRPC code in [`status`] and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is malformed (bad matcher, empty label name, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A limit of the server or the request was reached.
    #[error("exceeded {limit} limit: {detail}")]
    LimitExceeded { limit: &'static str, detail: String },
    /// The source cannot answer yet (initial sync, upstream not ready).
    #[error("{0}")]
    NotReady(String),
    /// Data the source depends on could not be read (a block, an upstream).
    #[error("{what}: {detail}")]
    Unavailable { what: String, detail: String },
    /// An upstream StoreAPI endpoint answered with this status (the proxy).
    #[error("{}", .0.message())]
    Upstream(Status),
    /// The client went away or the call was cancelled.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// A limit error naming the limit (`series`, `samples`, …) and why.
    pub fn limit(limit: &'static str, detail: impl Into<String>) -> Self {
        StoreError::LimitExceeded {
            limit,
            detail: detail.into(),
        }
    }
}

/// Maps an error to its gRPC status. The one place this happens.
pub fn status(e: &StoreError) -> Status {
    let code = match e {
        StoreError::InvalidArgument(_) => Code::InvalidArgument,
        StoreError::LimitExceeded { .. } => Code::ResourceExhausted,
        StoreError::NotReady(_) => Code::Unavailable,
        StoreError::Unavailable { .. } => Code::Internal,
        StoreError::Upstream(s) => return Status::new(s.code(), s.message().to_string()),
        StoreError::Cancelled(_) => Code::Cancelled,
        StoreError::Internal(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        status(&e)
    }
}
