//! Block selection for a query: time overlap, external-label matchers, and
//! Thanos' mixed-resolution choice (coarsest allowed resolution first, gaps
//! filled recursively with finer data).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Block;
use sluice_model::{Labels, Matcher};

/// Downsampling resolutions, coarsest first (ms).
const RESOLUTIONS: [i64; 3] = [3_600_000, 300_000, 0];

/// Whether block `[min, max)` overlaps the inclusive query range.
pub(crate) fn overlaps(b: &Block, mint: i64, maxt: i64) -> bool {
    b.meta.min_time <= maxt && b.meta.max_time > mint
}

/// The matchers left for the index once those naming external labels are
/// settled against the block's external labels; `None` if one contradicts them.
pub(crate) fn block_matchers<'a>(
    ext: &Labels,
    matchers: &'a [Matcher],
) -> Option<Vec<&'a Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for m in matchers {
        match ext.get(&m.name) {
            Some(v) => {
                if !m.matches(v) {
                    return None;
                }
            }
            None => out.push(m),
        }
    }
    Some(out)
}

/// Picks the blocks to read for `[mint, maxt]` at most `max_resolution` coarse,
/// per group of blocks with equal external labels, as Thanos' store gateway
/// does (`bucketBlockSet.getFor`).
pub(crate) fn select_blocks(
    blocks: &[Arc<Block>],
    mint: i64,
    maxt: i64,
    max_resolution: i64,
) -> Vec<Arc<Block>> {
    let mut groups: BTreeMap<&Labels, Levels> = BTreeMap::new();
    for (idx, b) in blocks.iter().enumerate() {
        let level = RESOLUTIONS
            .iter()
            .position(|&r| r == b.resolution())
            .unwrap_or(2);
        groups.entry(&b.ext_labels).or_default()[level].push(Span {
            min: b.meta.min_time,
            max: b.meta.max_time,
            idx,
        });
    }
    let mut picked = Vec::new();
    for (_, mut levels) in groups {
        for l in levels.iter_mut() {
            l.sort_by_key(|s| (s.min, s.max));
        }
        get_for(&levels, mint, maxt, max_resolution, &mut picked);
    }
    picked.into_iter().map(|i| blocks[i].clone()).collect()
}

/// A block's half-open time range and its position in the caller's list.
#[derive(Debug, Clone, Copy)]
struct Span {
    min: i64,
    max: i64,
    idx: usize,
}

type Levels = [Vec<Span>; 3];

fn get_for(levels: &Levels, mint: i64, maxt: i64, max_resolution: i64, out: &mut Vec<usize>) {
    if mint > maxt {
        return;
    }
    let mut i = 0;
    while i < RESOLUTIONS.len() && RESOLUTIONS[i] > max_resolution {
        i += 1;
    }
    if i == RESOLUTIONS.len() {
        return;
    }
    let mut start = mint;
    for b in &levels[i] {
        if b.max <= mint {
            continue;
        }
        if b.min > maxt {
            break;
        }
        if i + 1 < RESOLUTIONS.len() {
            get_for(levels, start, b.min - 1, RESOLUTIONS[i + 1], out);
        }
        out.push(b.idx);
        start = b.max;
    }
    if i + 1 < RESOLUTIONS.len() {
        get_for(levels, start, maxt, RESOLUTIONS[i + 1], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(h1: &[(i64, i64)], m5: &[(i64, i64)], raw: &[(i64, i64)]) -> Levels {
        let mut idx = 0;
        let mut mk = |v: &[(i64, i64)]| {
            v.iter()
                .map(|&(min, max)| {
                    idx += 1;
                    Span {
                        min,
                        max,
                        idx: idx - 1,
                    }
                })
                .collect()
        };
        [mk(h1), mk(m5), mk(raw)]
    }

    #[test]
    fn raw_only_when_window_is_zero() {
        // 1h block idx 0, 5m block idx 1, raw blocks idx 2, 3.
        let l = levels(&[(0, 100)], &[(0, 100)], &[(0, 50), (50, 100)]);
        let mut out = Vec::new();
        get_for(&l, 0, 99, 0, &mut out);
        assert_eq!(out, vec![2, 3]);
    }

    #[test]
    fn coarsest_allowed_first_and_gaps_filled_with_finer() {
        // 5m covers [40,80); raw covers everything: raw fills before and after.
        let l = levels(&[], &[(40, 80)], &[(0, 50), (50, 100)]);
        let mut out = Vec::new();
        get_for(&l, 0, 99, 300_000, &mut out);
        assert_eq!(out, vec![1, 0, 2]);
        // 1h allowed but absent: 5m then raw, same answer.
        let mut out = Vec::new();
        get_for(&l, 0, 99, 3_600_000, &mut out);
        assert_eq!(out, vec![1, 0, 2]);
    }

    #[test]
    fn blocks_outside_range_are_skipped() {
        let l = levels(&[], &[], &[(0, 10), (10, 20), (20, 30)]);
        let mut out = Vec::new();
        get_for(&l, 12, 15, 0, &mut out);
        assert_eq!(out, vec![1]);
    }
}
