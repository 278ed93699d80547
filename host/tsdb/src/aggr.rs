//! Thanos' downsampled aggregate chunk (encoding 0xFF, thanos-storeapi §3.3):
//! five sub-chunks in the fixed order count, sum, min, max, counter, each
//! `uvarint len` followed, when `len > 0`, by one encoding byte and `len` data
//! bytes. `len == 0` marks an absent aggregate.

use crate::chunk::RawChunk;
use crate::error::{Error, Result};
use crate::varint::{Decbuf, put_uvarint};

/// The aggregates of a downsampled chunk, in on-disk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    /// All aggregates in on-disk order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    /// Position in the on-disk order (and in the arrays of this module).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name as used by Thanos (`count`, `sum`, …).
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

/// Splits an aggregate chunk's data into its five sub-chunks (indexed by
/// [`AggrType::index`]); `None` marks an absent aggregate. Bytes after the
/// fifth entry are ignored, as Thanos does.
pub fn decode_aggr(data: &[u8]) -> Result<[Option<RawChunk<'_>>; 5]> {
    let mut d = Decbuf::new(data, "aggr chunk");
    let mut out = [None; 5];
    for (slot, t) in out.iter_mut().zip(AggrType::ALL) {
        let len = d.uvarint()?;
        if len == 0 {
            continue;
        }
        let len = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(1))
            .ok_or_else(|| {
                Error::corrupt("aggr chunk", format!("{} length {len} overflows", t.name()))
            })?;
        let b = d.bytes(len)?;
        *slot = Some(RawChunk {
            encoding: b[0],
            data: &b[1..],
        });
    }
    Ok(out)
}

/// Encodes five sub-chunks (indexed by [`AggrType::index`]) into aggregate
/// chunk data. `None`, and a sub-chunk with empty data (which the format
/// cannot tell apart from an absent one), are written as absent.
pub fn encode_aggr(parts: [Option<RawChunk<'_>>; 5]) -> Vec<u8> {
    let cap = parts
        .iter()
        .flatten()
        .map(|c| c.data.len() + 11)
        .sum::<usize>()
        + 5;
    let mut out = Vec::with_capacity(cap);
    for part in parts {
        match part {
            Some(c) if !c.data.is_empty() => {
                put_uvarint(&mut out, c.data.len() as u64);
                out.push(c.encoding);
                out.extend_from_slice(c.data);
            }
            _ => put_uvarint(&mut out, 0),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chunk::Encoding;
    use crate::xor::{XorEncoder, decode};
    use proptest::prelude::*;

    fn xor_chunk(base: f64) -> Vec<u8> {
        let mut e = XorEncoder::new();
        for i in 0..10 {
            e.append(300_000 * i, base + i as f64);
        }
        e.into_bytes()
    }

    #[test]
    fn roundtrip_with_absent_entries() {
        let count = xor_chunk(1.0);
        let sum = xor_chunk(100.0);
        let counter = xor_chunk(5.0);
        let x = Encoding::Xor as u8;
        let parts = [
            Some(RawChunk {
                encoding: x,
                data: &count,
            }),
            Some(RawChunk {
                encoding: x,
                data: &sum,
            }),
            None,
            None,
            Some(RawChunk {
                encoding: x,
                data: &counter,
            }),
        ];
        let data = encode_aggr(parts);
        // Absent entries are a single zero byte.
        assert_eq!(
            data.len(),
            3 * (1 + 1) + count.len() + sum.len() + counter.len() + 2
        );
        let got = decode_aggr(&data).unwrap();
        for (t, want) in AggrType::ALL.into_iter().zip(parts) {
            match (got[t.index()], want) {
                (None, None) => {}
                (Some(g), Some(w)) => {
                    assert_eq!(g.encoding, w.encoding, "{}", t.name());
                    assert_eq!(g.data, w.data, "{}", t.name());
                    assert_eq!(decode(g.data).unwrap().len(), 10);
                }
                (g, w) => panic!("{}: got {g:?}, want {w:?}", t.name()),
            }
        }
        let all_absent = encode_aggr([None; 5]);
        assert_eq!(all_absent, [0, 0, 0, 0, 0]);
        assert!(
            decode_aggr(&all_absent)
                .unwrap()
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn layout_is_thanos() {
        let parts = [
            Some(RawChunk {
                encoding: 1,
                data: &[0xaa, 0xbb],
            }),
            None,
            Some(RawChunk {
                encoding: 1,
                data: &[0xcc],
            }),
            None,
            None,
        ];
        assert_eq!(encode_aggr(parts), [2, 1, 0xaa, 0xbb, 0, 1, 1, 0xcc, 0, 0]);
    }

    #[test]
    fn truncated_is_error() {
        let data = encode_aggr([
            Some(RawChunk {
                encoding: 1,
                data: &xor_chunk(1.0),
            }),
            None,
            None,
            None,
            None,
        ]);
        for cut in 0..data.len() {
            assert!(decode_aggr(&data[..cut]).is_err(), "cut {cut}");
        }
        assert!(decode_aggr(&[0xff; 11]).is_err());
    }

    proptest! {
        #[test]
        fn prop_decode_aggr_never_panics(data in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(parts) = decode_aggr(&data) {
                let total: usize = parts.iter().flatten().map(|c| c.data.len() + 1).sum();
                prop_assert!(total <= data.len());
            }
        }

        #[test]
        fn prop_roundtrip(parts in prop::collection::vec(prop::option::of((any::<u8>(), prop::collection::vec(any::<u8>(), 1..200))), 5)) {
            let raw: Vec<Option<RawChunk<'_>>> = parts.iter().map(|p| p.as_ref().map(|(e, d)| RawChunk { encoding: *e, data: d })).collect();
            let arr = [raw[0], raw[1], raw[2], raw[3], raw[4]];
            let encoded = encode_aggr(arr);
            let got = decode_aggr(&encoded).unwrap();
            for i in 0..5 {
                prop_assert_eq!(got[i].map(|c| (c.encoding, c.data)), arr[i].map(|c| (c.encoding, c.data)));
            }
        }
    }
}
