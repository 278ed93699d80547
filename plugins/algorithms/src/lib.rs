//! sluice-policy-algorithms owns the algorithms of Sluice's built-in policies:
//! Thanos penalty and chain deduplication ([`dedup`]), Prometheus
//! `relabel_config` ([`relabel`]), Thanos per-resolution retention with
//! per-selector rules ([`retention`]) and Thanos 5m/1h downsampling
//! ([`downsample`]).
//!
//! The crate is compiled twice: natively (the host's fallback when a plugin
//! fails, and the tests) and to `wasm32-wasip2` inside the built-in plugins,
//! so both paths compute the same numbers. It is pure computation: no I/O, no
//! threads, no clock ("now" is an argument). Configurations and samples come
//! from outside, so nothing here panics on any input: bad configs are `Err`
//! with a message naming what is wrong, odd samples (NaN, unsorted, mismatched
//! column lengths) are handled as documented on each function.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod dedup;
pub mod downsample;
pub mod relabel;
pub mod retention;

mod md5;
mod promql;

pub use sluice_policy_abi::Series;

/// Number of usable samples of a series: the shorter of its two columns.
pub(crate) fn usable_len(s: &Series) -> usize {
    s.timestamps.len().min(s.values.len())
}

/// Treats an empty or `null` JSON configuration as "all defaults".
pub(crate) fn is_empty_config(config: &str) -> bool {
    let t = config.trim();
    t.is_empty() || t == "null"
}
