//! promql evaluates PromQL 3.x over a [`Storage`]: it parses with
//! `promql-parser`, fetches every selector's series up front (concurrently,
//! with hints: matchers, range, step, enclosing function and grouping), then
//! evaluates synchronously over the whole step grid at once.
//!
//! Values are columns: an instant query is a range query with one step. The
//! module knows nothing of gRPC or HTTP; `api` serves it and `querier`
//! backs it (see [`QuerierStorage`]).

mod aggr;
mod binop;
mod engine;
mod eval;
mod functions;
mod plan;
pub mod storage;
pub mod value;

pub use engine::{Engine, EngineOpts, PromqlError, QueryResult, QueryStats};
pub use storage::{MemStorage, QuerierStorage, SelectHints, SeriesSet, Storage};
pub use value::{RangeSeries, Sample, Value};

/// The bit pattern Prometheus writes as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker.
#[inline]
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
