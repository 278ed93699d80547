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

#[cfg(test)]
mod testutil {
    /// Whether `promtool` is on PATH. Under CI (`CI` set) a missing promtool
    /// fails the test with how to install it; elsewhere the test is skipped
    /// with a message.
    pub(crate) fn have_promtool() -> bool {
        let found = std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool not found: apt-get install prometheus (Debian 12 ships 2.42)"
            );
            eprintln!(
                "SKIPPED: promtool not found (apt-get install prometheus); CI runs this check"
            );
        }
        found
    }
}
