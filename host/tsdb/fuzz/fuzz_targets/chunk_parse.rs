//! Chunk segment entries and Thanos aggregate chunks from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_tsdb::chunk::encoded_len(data);
    if let Ok((c, _)) = sluice_tsdb::chunk::parse_chunk(data) {
        let _ = sluice_tsdb::aggr::decode_aggr(c.data);
    }
    let _ = sluice_tsdb::aggr::decode_aggr(data);
});
