//! XOR chunk decoding of arbitrary bytes: bulk and iterator paths must agree and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let bulk = sluice_tsdb::xor::decode_into(data, &mut ts, &mut vs);
    if let Ok(mut it) = sluice_tsdb::xor::XorIter::new(data) {
        let mut n = 0;
        while let Ok(Some((t, v))) = it.next_sample() {
            if bulk.is_ok() {
                assert_eq!(ts[n], t);
                assert_eq!(vs[n].to_bits(), v.to_bits());
            }
            n += 1;
        }
    }
});
