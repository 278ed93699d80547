//! Index v2 files from arbitrary bytes: open, then walk postings and series.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_tsdb::index::{IndexReader, SeriesEntry};

fuzz_target!(|data: &[u8]| {
    let Ok(ix) = IndexReader::new(data) else { return };
    for name in ix.label_names() {
        for value in ix.label_values(name) {
            let _ = ix.postings(name, value);
        }
    }
    let mut e = SeriesEntry::default();
    if let Ok(ids) = ix.all_postings() {
        for id in ids.into_iter().take(1000) {
            if ix.series(id, &mut e).is_ok() {
                for &(n, v) in &e.labels {
                    let _ = (ix.symbol(n), ix.symbol(v));
                }
            }
        }
    }
});
