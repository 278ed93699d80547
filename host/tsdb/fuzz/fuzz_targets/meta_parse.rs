//! meta.json and marker files from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_tsdb::meta::BlockMeta::parse(data);
    let _ = sluice_tsdb::meta::DeletionMark::parse(data);
});
