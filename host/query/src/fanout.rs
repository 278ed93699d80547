//! fanout owns the querier's view of its StoreAPI endpoints: the endpoint set
//! (discovery, `Info` health checks every 5 s, removal after
//! `--store.unhealthy-timeout`, strict endpoints kept), pruning by time range
//! and external labels, concurrent `Series` calls merged into one stream
//! sorted by labels (k-way merge, identical label sets merged, repeated
//! chunks dropped), per-endpoint deadlines, and partial response.

pub mod apis;
mod endpoints;
mod merge;
pub mod raw;
mod server;

pub use endpoints::{Endpoint, EndpointSet, EndpointSetOptions, EndpointState};
pub use merge::{FanoutItem, ProxyRequest, compare_pb_labels, labels, series};
pub use raw::{RawFrame, SeriesRun, SeriesView};
pub use server::ProxyStore;
