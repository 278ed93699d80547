//! sluice-storeapi owns the Thanos StoreAPI at the level of the wire:
//!
//! - [`StoreSource`]: what every data source implements — Series (label sets
//!   plus encoded chunks, streamed into a [`SeriesSink`]), labels (names or
//!   values through one [`LabelsQuery`]) and Info. The bucket store, the
//!   querier's proxy, the sidecar (remote read) and the ruler (its own TSDB)
//!   are sources.
//! - [`StoreApi`]: the one `thanos.Store` + `thanos.info.Info` server over any
//!   source: request validation and size limits, a concurrency gate,
//!   cancellation when the client goes, series/sample limits, response
//!   batching, metrics with Thanos' names, and the one mapping of errors to
//!   gRPC codes ([`status`]).
//! - The label transformations sources share ([`SeriesQuery::final_labels`]:
//!   external labels, replica stripping, sharding).
//!
//! Nothing here knows about HTTP, object storage or PromQL.

mod codec;
mod error;
pub mod metrics;
pub mod promjson;
mod query;
mod server;
mod sink;
pub mod snappy;

use std::future::Future;

use sluice_model::Labels;
use sluice_proto::thanos::StoreType;

pub use codec::ServerFrameCodec;
pub use error::{StoreError, status};
pub use metrics::{GrpcMetrics, code_name};
pub use query::{
    LabelsAnswer, LabelsKind, LabelsQuery, SeriesQuery, Shard, hints_any, into_pb_labels,
    labels_from_pb, matchers_from_pb, matchers_to_pb, partial_response, to_pb_labels,
};
pub use server::{
    ExtraApis, FrameStream, MAX_REQUEST_SIZE, ServerOptions, StoreApi, StoreApiServer,
};
pub use sink::{
    Flow, FrameSender, MAX_BATCH_BYTES, MAX_BATCH_SERIES, SeriesLimits, SeriesSink,
    aggr_chunk_samples, chunk_samples, series_samples,
};

/// The gRPC metadata key that carries the tenant of a call (Thanos').
pub const TENANT_METADATA: &str = "thanos-tenant";

/// The tenant of calls that name none (Thanos' default).
pub const DEFAULT_TENANT: &str = "default-tenant";

/// The tenant a call names in its metadata: non-empty, printable, at most
/// 256 bytes (anything else is ignored, as a header a client controls).
pub fn tenant_of(meta: &tonic::metadata::MetadataMap) -> Option<String> {
    let v = meta.get(TENANT_METADATA)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 256).then(|| v.to_owned())
}

/// Something that answers Series, labels and Info at the level of the wire.
///
/// Contract (checked by the conformance suite in `host/tests`):
/// - `series` sends every series matching all of `q.matchers` (external
///   labels included) with at least one chunk overlapping
///   `[q.min_time, q.max_time]`, labelled as [`SeriesQuery::final_labels`]
///   says, in ascending label order, each label set once, chunks ascending by
///   `(min_time, max_time)`; with `skip_chunks`, no chunks. It stops when the
///   sink says [`Flow::Done`]. Partial failures under `q.partial_response`
///   are warnings ([`SeriesSink::warn`]), else errors.
/// - `labels` returns the names, or the values of one name, of the series
///   matching `q.matchers` in `[q.start, q.end]` (all series when there are
///   no matchers), external labels included; the server sorts, dedups,
///   strips replica labels and applies the limit.
/// - `info` fails with [`StoreError::NotReady`] until the source can answer.
pub trait StoreSource: Send + Sync + 'static {
    /// What Info advertises.
    fn info(&self) -> Result<SourceInfo, StoreError>;

    /// Streams the series matching `q` into `sink`.
    fn series(
        &self,
        q: SeriesQuery,
        sink: &mut SeriesSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Label names, or the values of one label.
    fn labels(
        &self,
        q: LabelsQuery,
    ) -> impl Future<Output = Result<LabelsAnswer, StoreError>> + Send;
}

/// Which kind of component a source is, as Info says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Store,
    Query,
    Sidecar,
    Rule,
    Receive,
    Debug,
}

impl Component {
    /// `component_type` of `thanos.info.Info`.
    pub fn name(self) -> &'static str {
        match self {
            Component::Store => "store",
            Component::Query => "query",
            Component::Sidecar => "sidecar",
            Component::Rule => "rule",
            Component::Receive => "receive",
            Component::Debug => "debug",
        }
    }

    /// `store_type` of the legacy `thanos.Store/Info`.
    pub fn store_type(self) -> StoreType {
        match self {
            Component::Store => StoreType::Store,
            Component::Query => StoreType::Query,
            Component::Sidecar => StoreType::Sidecar,
            Component::Rule => StoreType::Rule,
            Component::Receive => StoreType::Receive,
            Component::Debug => StoreType::Debug,
        }
    }
}

/// Time range and external labels of one TSDB a source serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsdbInfo {
    pub labels: Labels,
    pub min_time: i64,
    pub max_time: i64,
}

/// What a source advertises in Info. With no data the range is empty
/// (`i64::MAX..i64::MIN`), so queriers prune the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub component: Component,
    pub min_time: i64,
    pub max_time: i64,
    /// External label sets of the data served.
    pub label_sets: Vec<Labels>,
    /// Per-TSDB ranges, when the source knows them.
    pub tsdb_infos: Vec<TsdbInfo>,
    pub supports_sharding: bool,
    pub supports_without_replica_labels: bool,
}

impl SourceInfo {
    /// Info of a source with no data yet.
    pub fn empty(component: Component) -> Self {
        SourceInfo {
            component,
            min_time: i64::MAX,
            max_time: i64::MIN,
            label_sets: Vec::new(),
            tsdb_infos: Vec::new(),
            supports_sharding: true,
            supports_without_replica_labels: true,
        }
    }
}
