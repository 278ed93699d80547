//! Windows, NaN handling, counter semantics and re-downsampling, worked by
//! hand from spec §3.2.

use super::*;
use proptest::prelude::*;

fn s(samples: &[(i64, f64)]) -> Series {
    Series {
        timestamps: samples.iter().map(|p| p.0).collect(),
        values: samples.iter().map(|p| p.1).collect(),
    }
}

fn pairs(x: &Series) -> Vec<(i64, f64)> {
    x.timestamps
        .iter()
        .copied()
        .zip(x.values.iter().copied())
        .collect()
}

const MIN: i64 = 60_000;

#[test]
fn five_minute_windows_with_resets_inside_and_across() {
    // Window 1 [0, 299999]: 10, 20, 5 (reset), 15 -> count 4, sum 50, min 5,
    // max 20, counter 10 -> 20 -> 25 (reset: +5) -> 35.
    // Window 2 [300000, 599999]: 3 (reset: +3 = 38), 8 (+5 = 43); the last
    // sample is at 360000, so the window is emitted at min(599999, 360000).
    let raw = s(&[
        (0, 10.0),
        (MIN, 20.0),
        (2 * MIN, 5.0),
        (3 * MIN, 15.0),
        (5 * MIN, 3.0),
        (6 * MIN, 8.0),
    ]);
    let a = downsample_raw(&raw, RES_5M);
    assert_eq!(pairs(&a.count), vec![(299_999, 4.0), (360_000, 2.0)]);
    assert_eq!(pairs(&a.sum), vec![(299_999, 50.0), (360_000, 11.0)]);
    assert_eq!(pairs(&a.min), vec![(299_999, 5.0), (360_000, 3.0)]);
    assert_eq!(pairs(&a.max), vec![(299_999, 20.0), (360_000, 8.0)]);
    // First raw sample, one total per window, last raw value at the last
    // window's timestamp.
    assert_eq!(
        pairs(&a.counter),
        vec![(0, 10.0), (299_999, 35.0), (360_000, 43.0), (360_000, 8.0)]
    );
    // The reader's view: monotonic, and its increase is the raw increase
    // 10 + 5 + 10 + 3 + 5 = 33.
    assert_eq!(
        pairs(&apply_counter_resets(&a.counter)),
        vec![(0, 10.0), (299_999, 35.0), (360_000, 43.0)]
    );
}

#[test]
fn one_hour_windows() {
    // Every 15 min from 0 to 120 min, values 1..=9: [0, 1h) has 1..=4,
    // [1h, 2h) has 5..=8, and 9 at 2h is alone, emitted at its own timestamp.
    let raw = s(&(0..9)
        .map(|i| (i * 15 * MIN, (i + 1) as f64))
        .collect::<Vec<_>>());
    let a = downsample_raw(&raw, RES_1H);
    assert_eq!(
        pairs(&a.count),
        vec![(3_599_999, 4.0), (7_199_999, 4.0), (7_200_000, 1.0)]
    );
    assert_eq!(
        pairs(&a.sum),
        vec![(3_599_999, 10.0), (7_199_999, 26.0), (7_200_000, 9.0)]
    );
    assert_eq!(
        pairs(&a.min),
        vec![(3_599_999, 1.0), (7_199_999, 5.0), (7_200_000, 9.0)]
    );
    assert_eq!(
        pairs(&a.max),
        vec![(3_599_999, 4.0), (7_199_999, 8.0), (7_200_000, 9.0)]
    );
    assert_eq!(
        pairs(&a.counter),
        vec![
            (0, 1.0),
            (3_599_999, 4.0),
            (7_199_999, 8.0),
            (7_200_000, 9.0),
            (7_200_000, 9.0)
        ]
    );
}

#[test]
fn last_partial_window_is_clamped_to_the_last_sample() {
    // 8 samples a minute apart: [0, 5m) holds 0..4 min, the second window
    // 5..7 min ends at 599999 but is emitted at 420000.
    let raw = s(&(0..8).map(|i| (i * MIN, 1.0)).collect::<Vec<_>>());
    let a = downsample_raw(&raw, RES_5M);
    assert_eq!(a.count.timestamps, vec![299_999, 420_000]);
    assert_eq!(a.count.values, vec![5.0, 3.0]);
    // A sample exactly at a window end closes that window.
    let b = downsample_raw(&s(&[(299_999, 1.0), (300_000, 2.0)]), RES_5M);
    assert_eq!(pairs(&b.count), vec![(299_999, 1.0), (300_000, 1.0)]);
}

#[test]
fn nan_samples_are_dropped() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let raw = s(&[
        (0, stale),
        (MIN, 4.0),
        (2 * MIN, f64::NAN),
        (3 * MIN, 6.0),
        (4 * MIN, stale),
    ]);
    let a = downsample_raw(&raw, RES_5M);
    assert_eq!(
        pairs(&a.count),
        vec![(3 * MIN, 2.0)],
        "clamped to the last non-NaN sample"
    );
    assert_eq!(pairs(&a.sum), vec![(3 * MIN, 10.0)]);
    assert_eq!(
        pairs(&a.counter),
        vec![(MIN, 4.0), (3 * MIN, 6.0), (3 * MIN, 6.0)]
    );
    assert!(downsample_raw(&s(&[(0, f64::NAN)]), RES_5M).is_empty());
}

#[test]
fn negative_timestamps_use_aligned_windows() {
    // Euclidean windows: [-600000, -300001], [-300000, -1], [0, 299999].
    // (Go's truncating % would put -300001 in a window ending at -1.)
    let raw = s(&[
        (-600_000, 1.0),
        (-300_001, 2.0),
        (-300_000, 3.0),
        (-1, 4.0),
        (0, 5.0),
    ]);
    let a = downsample_raw(&raw, RES_5M);
    assert_eq!(pairs(&a.count), vec![(-300_001, 2.0), (-1, 2.0), (0, 1.0)]);
    assert_eq!(pairs(&a.sum), vec![(-300_001, 3.0), (-1, 7.0), (0, 5.0)]);
    assert_eq!(window_end(-1, RES_5M), -1);
    assert_eq!(window_end(-300_001, RES_5M), -300_001);
    assert_eq!(
        window_end(i64::MIN, RES_1H),
        i64::MIN + (RES_1H - 1 - i64::MIN.rem_euclid(RES_1H))
    );
    assert_eq!(window_end(i64::MAX, RES_1H), i64::MAX);
}

#[test]
fn empty_and_invalid_inputs() {
    assert!(downsample_raw(&Series::default(), RES_5M).is_empty());
    assert!(downsample_raw(&s(&[(0, 1.0)]), 0).is_empty());
    assert!(downsample_raw(&s(&[(0, 1.0)]), -5).is_empty());
    assert!(check_resolution(0).is_err() && check_resolution(RES_5M).is_ok());
    assert!(downsample_aggregates(&Aggregates::default(), RES_1H).is_empty());
    assert!(apply_counter_resets(&Series::default()).is_empty());
    // Mismatched columns and samples going back in time.
    let odd = Series {
        timestamps: vec![0, 2 * MIN, MIN, 3 * MIN],
        values: vec![1.0, 2.0, 3.0],
    };
    let a = downsample_raw(&odd, RES_5M);
    assert_eq!(pairs(&a.count), vec![(2 * MIN, 2.0)]);
}

#[test]
fn single_sample() {
    let a = downsample_raw(&s(&[(7 * MIN, 42.0)]), RES_5M);
    assert_eq!(pairs(&a.count), vec![(7 * MIN, 1.0)]);
    assert_eq!(
        pairs(&a.counter),
        vec![(7 * MIN, 42.0), (7 * MIN, 42.0), (7 * MIN, 42.0)]
    );
    assert_eq!(
        pairs(&apply_counter_resets(&a.counter)),
        vec![(7 * MIN, 42.0)]
    );
}

/// Raw counter every 15 s over 3 h 10 min with resets, integer values.
fn regular_counter() -> Series {
    let mut v = 0.0;
    let mut out = Vec::new();
    for i in 0..(190 * 4) {
        v = if i % 97 == 50 {
            3.0
        } else {
            v + (i % 7) as f64
        };
        out.push((i * 15_000, v));
    }
    s(&out)
}

#[test]
fn five_minute_then_one_hour_equals_raw_to_one_hour() {
    let raw = regular_counter();
    let direct = downsample_raw(&raw, RES_1H);
    let two_step = downsample_aggregates(&downsample_raw(&raw, RES_5M), RES_1H);
    assert_eq!(direct.count.len(), 4, "3 full hours and a partial one");
    assert_eq!(two_step.count, direct.count);
    assert_eq!(two_step.sum, direct.sum);
    assert_eq!(two_step.min, direct.min);
    assert_eq!(two_step.max, direct.max);
    assert_eq!(two_step.counter, direct.counter);
    let n: f64 = direct.count.values.iter().sum();
    assert_eq!(n, raw.len() as f64);
}

#[test]
fn apply_counter_resets_is_monotonic_and_matches_the_raw_increase() {
    let raw = regular_counter();
    let raw_increase: f64 = raw
        .values
        .windows(2)
        .map(|w| if w[1] < w[0] { w[1] } else { w[1] - w[0] })
        .sum();
    for res in [RES_5M, RES_1H] {
        let acr = apply_counter_resets(&downsample_raw(&raw, res).counter);
        assert!(acr.values.windows(2).all(|w| w[1] >= w[0]), "{acr:?}");
        assert!(acr.timestamps.windows(2).all(|w| w[1] > w[0]));
        let (first, last) = (acr.values[0], acr.values[acr.len() - 1]);
        assert_eq!(first, raw.values[0]);
        assert_eq!(last - first, raw_increase, "resolution {res}");
    }
}

#[test]
fn last_raw_value_detects_a_reset_between_batches() {
    // Batch 1 ends with a reset inside it (50 -> 2): its counter is
    // (0,10) (120000,52) and the marker (120000,2). Batch 2 starts at 4 > 2:
    // no reset, +2. Without the marker the reader would compare 4 with 52 and
    // count a reset (+4).
    let b1 = downsample_raw(&s(&[(0, 10.0), (MIN, 50.0), (2 * MIN, 2.0)]), RES_5M);
    let b2 = downsample_raw(&s(&[(5 * MIN, 4.0), (6 * MIN, 6.0)]), RES_5M);
    assert_eq!(
        pairs(&b1.counter),
        vec![(0, 10.0), (2 * MIN, 52.0), (2 * MIN, 2.0)]
    );
    let mut both = b1.counter.clone();
    both.timestamps.extend(&b2.counter.timestamps);
    both.values.extend(&b2.counter.values);
    // Raw increase: 40 + 2 (reset) + 2 + 2 = 46.
    assert_eq!(
        pairs(&apply_counter_resets(&both)),
        vec![(0, 10.0), (2 * MIN, 52.0), (5 * MIN, 54.0), (6 * MIN, 56.0)]
    );
    // A reset exactly across the batch boundary (50 -> 5) is counted.
    let c1 = downsample_raw(&s(&[(0, 10.0), (MIN, 50.0)]), RES_5M);
    let c2 = downsample_raw(&s(&[(5 * MIN, 5.0), (6 * MIN, 20.0)]), RES_5M);
    let mut joined = c1.counter.clone();
    joined.timestamps.extend(&c2.counter.timestamps);
    joined.values.extend(&c2.counter.values);
    assert_eq!(
        pairs(&apply_counter_resets(&joined)),
        vec![(0, 10.0), (MIN, 50.0), (5 * MIN, 55.0), (6 * MIN, 70.0)]
    );
}

#[test]
fn apply_counter_resets_skips_nan_and_going_back_in_time() {
    let c = s(&[
        (0, 1.0),
        (10, f64::NAN),
        (20, 3.0),
        (15, 100.0),
        (20, 2.0),
        (30, 1.0),
        (40, 4.0),
    ]);
    // 1; 3 (+2); (15) back in time: skipped; (20, 2) marker: last raw = 2;
    // 1 < 2: reset, +1 = 4; 4: +3 = 7.
    assert_eq!(
        pairs(&apply_counter_resets(&c)),
        vec![(0, 1.0), (20, 3.0), (30, 4.0), (40, 7.0)]
    );
}

#[test]
fn re_downsampling_keeps_first_and_last_raw_values() {
    // 5m aggregates of two raw batches (the second starts after a reset),
    // re-downsampled to 1h: the counter starts with the first raw value and
    // ends with the last raw value at the last window's timestamp.
    let b1 = downsample_raw(&s(&[(0, 10.0), (MIN, 50.0)]), RES_5M);
    let b2 = downsample_raw(&s(&[(5 * MIN, 5.0), (6 * MIN, 20.0)]), RES_5M);
    let cat = |f: fn(&Aggregates) -> &Series| {
        let mut out = f(&b1).clone();
        out.timestamps.extend(&f(&b2).timestamps);
        out.values.extend(&f(&b2).values);
        out
    };
    let five = Aggregates {
        count: cat(|a| &a.count),
        sum: cat(|a| &a.sum),
        min: cat(|a| &a.min),
        max: cat(|a| &a.max),
        counter: cat(|a| &a.counter),
    };
    let hour = downsample_aggregates(&five, RES_1H);
    assert_eq!(pairs(&hour.count), vec![(6 * MIN, 4.0)]);
    assert_eq!(pairs(&hour.sum), vec![(6 * MIN, 85.0)]);
    assert_eq!(pairs(&hour.min), vec![(6 * MIN, 5.0)]);
    assert_eq!(pairs(&hour.max), vec![(6 * MIN, 50.0)]);
    assert_eq!(
        pairs(&hour.counter),
        vec![(0, 10.0), (6 * MIN, 70.0), (6 * MIN, 20.0)]
    );
}

#[test]
fn raw_batches_cut_at_window_ends() {
    // 10 samples a minute apart, 2 chunks: batches of 10/2+1 = 6 samples, the
    // first (0..5 min) extended to the end of the 5..10 min window.
    let raw = s(&(0..10).map(|i| (i * MIN, 1.0)).collect::<Vec<_>>());
    assert_eq!(raw_batches(&raw, RES_5M, 2), vec![0..10]);
    let raw = s(&(0..14).map(|i| (i * MIN, 1.0)).collect::<Vec<_>>());
    // 14/2+1 = 8: sample 7 (7 min) is in [5, 10) min, so extend to 10 samples.
    assert_eq!(raw_batches(&raw, RES_5M, 2), vec![0..10, 10..14]);
    assert_eq!(raw_batches(&raw, RES_5M, 0), vec![0..14]);
    assert!(raw_batches(&Series::default(), RES_5M, 3).is_empty());
}

proptest! {
    #[test]
    fn raw_downsampling_properties(
        steps in proptest::collection::vec((1i64..200_000, 0u8..20, any::<bool>()), 0..300),
        start in -2_000_000i64..2_000_000,
    ) {
        let mut t = start;
        let mut v = 0.0;
        let mut raw = Series::default();
        for (dt, dv, reset) in steps {
            t += dt;
            v = if reset { dv as f64 } else { v + dv as f64 };
            raw.timestamps.push(t);
            raw.values.push(v);
        }
        for res in [RES_5M, RES_1H] {
            let a = downsample_raw(&raw, res);
            let n: f64 = a.count.values.iter().sum();
            prop_assert_eq!(n, raw.len() as f64);
            let total: f64 = a.sum.values.iter().sum();
            prop_assert_eq!(total, raw.values.iter().sum::<f64>());
            prop_assert!(a.count.timestamps.windows(2).all(|w| w[0] < w[1]));
            for (i, &wt) in a.count.timestamps.iter().enumerate() {
                // Each window timestamp is a window end or the last sample.
                prop_assert!(wt == window_end(wt, res) || Some(&wt) == raw.timestamps.last(), "{} {}", i, wt);
            }
            if let (Some(&first), Some(&last)) = (raw.values.first(), raw.values.last()) {
                let acr = apply_counter_resets(&a.counter);
                let inc: f64 = raw.values.windows(2).map(|w| if w[1] < w[0] { w[1] } else { w[1] - w[0] }).sum();
                prop_assert_eq!(acr.values[0], first);
                prop_assert_eq!(acr.values[acr.len() - 1] - first, inc);
                prop_assert_eq!(a.counter.values[a.counter.len() - 1], last);
            }
        }
    }
}
