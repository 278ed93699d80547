//! sluice-bench: benchmarks that compare Sluice against a peer on the same
//! data in the same run (see `/work/shared/style.md`, "Performance work").
//!
//! The `series-throughput` binary measures `thanos.Store/Series` of
//! `sluice store` against Prometheus 2.42's streamed remote read
//! (`STREAMED_XOR_CHUNKS`). This library holds its testable pieces: the
//! OpenMetrics fixture writer, the remote-read frame reader, sample counting,
//! process guards and `/proc` readers.

pub mod fixture;
pub mod frames;
pub mod paths;
pub mod procs;
pub mod reads;
pub mod stats;
pub mod workload;

/// Number of samples in an XOR chunk: its first two bytes, big-endian.
/// Chunks shorter than that hold none.
pub fn xor_samples(data: &[u8]) -> u64 {
    match data {
        [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_sample_count_is_first_two_bytes_be() {
        assert_eq!(xor_samples(&[0x01, 0xe0, 0xff]), 480);
        assert_eq!(xor_samples(&[0x00, 0x78]), 120);
        assert_eq!(xor_samples(&[0x01]), 0);
        assert_eq!(xor_samples(&[]), 0);
    }
}
