//! sluice-tsdb owns the Prometheus TSDB on-disk formats that Sluice reads and
//! writes: XOR chunks (bit-exact with Prometheus), chunk segment files, the
//! index v2 format, `meta.json` with its Thanos section and marker files, and
//! Thanos' downsampled AggrChunk. It is pure: it decodes and encodes bytes and
//! writes block directories, but owns no caching, networking or sync policy.
//!
//! Invariant: decoding outside bytes returns [`Error`], never panics.

pub mod aggr;
pub mod block;
pub mod bstream;
pub mod chunk;
pub mod error;
pub mod index;
pub mod meta;
pub mod varint;
pub mod xor;

pub use error::{Error, Result};
