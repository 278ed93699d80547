//! Hand-worked cases of spec §2.2 (each traced step by step in comments)
//! and properties of both dedup algorithms.

use super::*;
use proptest::prelude::*;

fn s(samples: &[(i64, f64)]) -> Series {
    Series {
        timestamps: samples.iter().map(|p| p.0).collect(),
        values: samples.iter().map(|p| p.1).collect(),
    }
}

/// Samples at `ts` (in seconds) with value `f(t_seconds)`.
fn at(secs: &[i64], f: impl Fn(i64) -> f64) -> Series {
    s(&secs.iter().map(|&t| (t * 1000, f(t))).collect::<Vec<_>>())
}

fn pairs(x: &Series) -> Vec<(i64, f64)> {
    x.timestamps
        .iter()
        .copied()
        .zip(x.values.iter().copied())
        .collect()
}

fn range(from: i64, to: i64, step: i64) -> Vec<i64> {
    (from..=to).step_by(step as usize).collect()
}

#[test]
fn counter_funcs() {
    for f in ["rate", "increase", "irate", "resets"] {
        assert!(is_counter_func(f), "{f}");
    }
    for f in ["", "delta", "sum", "avg_over_time", "xrate", "Rate"] {
        assert!(!is_counter_func(f), "{f}");
    }
}

#[test]
fn identical_replicas_give_one_copy() {
    // a = b = 0,10,20,30 s. Trace (lastT starts at MinInt64):
    // 1: both at 0, tie -> a; penB = 5000 (initial); lastT = 0.
    // 2: a -> 10000; b sought to 5001 -> 10000; tie -> a; penB = 2*10000.
    // 3: a -> 20000; b sought to 10001 + 20000 = 30001 -> exhausted (its last
    //    sample is 30000); from here on a alone: 20000, 30000.
    let a = at(&[0, 10, 20, 30], |t| t as f64);
    let b = at(&[0, 10, 20, 30], |t| 100.0 + t as f64);
    assert_eq!(pairs(&penalty(&[a.clone(), b.clone()], false)), pairs(&a));
    assert_eq!(
        pairs(&penalty(&[b.clone(), a], false)),
        pairs(&b),
        "ties go to the first replica"
    );
}

#[test]
fn gap_in_first_replica_switches_and_stays_on_second() {
    // a: 0,10,20 then a gap, then 60..150 s; b: every 10 s from 0 to 150 s.
    // a's values are 1000+t, b's 2000+t, so the output shows who was picked.
    // 1: tie at 0 -> a; penB = 5000; lastT = 0.
    // 2: a 10000, b (sought to 5001) 10000, tie -> a; penB = 2*10000 = 20000.
    // 3: a 20000, b (sought to 10001+20000 = 30001) 40000 -> a; penB = 20000;
    //    lastT = 20000. (b's 30000 is skipped by the penalty.)
    // 4: a (sought to 20001) 60000, b (sought to 20001+20000 = 40001) 50000
    //    -> b; penA = 2*(50000-20000) = 60000; penB = 0; lastT = 50000.
    // 5: a sought to 50001+60000 = 110001 -> 120000; b 60000 -> b;
    //    penA = 2*10000 = 20000; lastT = 60000.
    // 6..: a is sought to lastT+20001 and sits at least 20 s ahead, b is one
    //    step (10 s) ahead: b stays picked. At lastT = 140000 a is sought to
    //    160001 and is exhausted; b gives 150000.
    // The output has a gap 20..50 s where a's was 20..60 s.
    let mut a_secs = vec![0, 10, 20];
    a_secs.extend(range(60, 150, 10));
    let a = at(&a_secs, |t| 1000.0 + t as f64);
    let b = at(&range(0, 150, 10), |t| 2000.0 + t as f64);
    let mut want = vec![(0, 1000.0), (10_000, 1010.0), (20_000, 1020.0)];
    want.extend(
        range(50, 150, 10)
            .into_iter()
            .map(|t| (t * 1000, 2000.0 + t as f64)),
    );
    assert_eq!(pairs(&penalty(&[a, b], false)), want);
}

#[test]
fn gap_in_second_replica_stays_on_first() {
    // b misses 30..50 s; a never has a gap, so a always has the earlier (or
    // equal) sample: the output is a unchanged.
    let a = at(&range(0, 80, 10), |t| 1000.0 + t as f64);
    let b = at(&[0, 10, 20, 60, 70, 80], |t| 2000.0 + t as f64);
    assert_eq!(pairs(&penalty(&[a.clone(), b], false)), pairs(&a));
}

#[test]
fn jitter_within_the_penalty_does_not_switch() {
    // a's sample at 30 s arrives 5 s late (35 s). After a20 (lastT = 20000,
    // penB = 20000) b is sought to 40001 -> 50000, a to 20001 -> 35000: a is
    // earlier, no switch. Then penB = 2*15000 = 30000 keeps b away.
    let a = at(&[0, 10, 20, 35, 40, 50, 60], |t| 1000.0 + t as f64);
    let b = at(&range(0, 60, 10), |t| 2000.0 + t as f64);
    assert_eq!(pairs(&penalty(&[a.clone(), b], false)), pairs(&a));
}

#[test]
fn earliest_sample_wins_and_penalises_the_other() {
    // a: 1,11,21 s; b: 0,10,20 s.
    // 1: a 1000, b 0 -> b; penA = 5000; lastT = 0.
    // 2: a sought to 5001 -> 11000, b 10000 -> b; penA = 20000; lastT = 10000.
    // 3: a sought to 30001 -> exhausted; b 20000 alone.
    let a = at(&[1, 11, 21], |t| 1000.0 + t as f64);
    let b = at(&[0, 10, 20], |t| 2000.0 + t as f64);
    assert_eq!(pairs(&penalty(&[a, b.clone()], false)), pairs(&b));
}

#[test]
fn three_replicas_fold_left() {
    // D = dedup(I, c) with I = dedup(a, b).
    // a: 0,10,20 s; b: 0..40 s; c: 0..60 s (step 10 s).
    // O1: I yields a0 (I.penB = 5000); c at 0; tie -> I; O.penB = 5000.
    // O2: I sought to 1: I.next -> a10 (b sought to 5001 -> 10000, tie -> a,
    //     I.penB = 20000); c sought to 5001 -> 10000; tie -> I -> a10;
    //     O.penB = 20000.
    // O3: I.next -> a20 (b sought to 30001 -> 40000; I.penB = 20000); c sought
    //     to 10001+20000 = 30001 -> 40000; I earlier -> a20; O.penB = 20000.
    // O4: I sought to 20001: I.next: a exhausted, b sought to 20001+20000 =
    //     40001 -> exhausted, so I is exhausted although b had 30 and 40 s:
    //     the inner penalty hides them. c sought to 40001 -> 50000 -> c50.
    // O5: c60.
    let a = at(&[0, 10, 20], |t| 1000.0 + t as f64);
    let b = at(&range(0, 40, 10), |t| 2000.0 + t as f64);
    let c = at(&range(0, 60, 10), |t| 3000.0 + t as f64);
    let got = penalty(&[a, b, c], false);
    assert_eq!(
        pairs(&got),
        vec![
            (0, 1000.0),
            (10_000, 1010.0),
            (20_000, 1020.0),
            (50_000, 3050.0),
            (60_000, 3060.0)
        ]
    );
}

#[test]
fn three_replicas_use_the_third_for_a_shared_gap() {
    // a and b both miss 30..50 s; c has everything. Folded: I = dedup(a, b)
    // yields a0, a10, a20, a60, a70, a80 (b is penalised away). The outer picks
    // I until a20, then c50 (as in the two-replica gap case) with
    // penA = 60000: I is sought to 110001 and is exhausted, so c
    // gives the rest.
    let gap = [0, 10, 20, 60, 70, 80];
    let a = at(&gap, |t| 1000.0 + t as f64);
    let b = at(&gap, |t| 2000.0 + t as f64);
    let c = at(&range(0, 80, 10), |t| 3000.0 + t as f64);
    let got = pairs(&penalty(&[a, b, c], false));
    assert_eq!(
        &got[..3],
        &[(0, 1000.0), (10_000, 1010.0), (20_000, 1020.0)]
    );
    assert_eq!(
        &got[3..],
        &[
            (50_000, 3050.0),
            (60_000, 3060.0),
            (70_000, 3070.0),
            (80_000, 3080.0)
        ]
    );
}

#[test]
fn empty_replicas() {
    let a = at(&[0, 10], |t| t as f64);
    let e = Series::default();
    assert!(penalty(&[], false).is_empty());
    assert!(penalty(&[e.clone(), e.clone()], true).is_empty());
    assert_eq!(pairs(&penalty(&[e.clone(), a.clone()], false)), pairs(&a));
    assert_eq!(pairs(&penalty(&[a.clone(), e.clone()], false)), pairs(&a));
    assert_eq!(pairs(&penalty(&[e.clone(), a.clone(), e], true)), pairs(&a));
}

#[test]
fn issue_2401_no_false_reset_when_switching_to_a_lagging_replica() {
    // a (the leader) has a gap 20..60 s; b's counter lags 35 behind a's.
    // Picks as in gap_in_first_replica_switches_and_stays_on_second: a0, a10,
    // a20, then b from 50 s on. Without adjustment b50 = 15 < a20 = 20: PromQL
    // would see a counter reset. With it, on the switch b is shifted by
    // 20 - 15 = 5 for the rest of the series (a, then at 120 s = 120, is above
    // 20 and stays unshifted).
    let mut a_secs = vec![0, 10, 20];
    a_secs.extend(range(60, 150, 10));
    let a = at(&a_secs, |t| t as f64);
    let b = at(&range(0, 150, 10), |t| t as f64 - 35.0);

    let plain = penalty(&[a.clone(), b.clone()], false);
    assert!(
        plain.values.windows(2).any(|w| w[1] < w[0]),
        "without adjustment the switch looks like a reset"
    );

    let got = penalty(&[a, b], true);
    let mut want = vec![(0, 0.0), (10_000, 10.0), (20_000, 20.0)];
    want.extend(
        range(50, 150, 10)
            .into_iter()
            .map(|t| (t * 1000, t as f64 - 30.0)),
    );
    assert_eq!(pairs(&got), want);
    assert!(
        got.values.windows(2).all(|w| w[1] >= w[0]),
        "monotonic: {got:?}"
    );
}

#[test]
fn issue_2890_most_recent_values_from_a_lagging_replica_do_not_decrease() {
    // a is picked while it has data (its first sample is the earliest and b
    // keeps being penalised); a's data ends at 60 s, then only b (whose counter
    // is 40 lower) is left for the most recent values.
    // 1: a0 (b at 5 s; penB = 5000). 2: a15 (b sought to 5001 -> 20 s; penB
    // = 30000). 3: a30 (b -> 50 s). 4: a45 (b -> 65 s). 5: a60 (b -> 80 s).
    // 6: a exhausted; b sought to 60001+30000 -> 95 s: b95 = 60+95 = 155.
    // Raw, 160 -> 155 is a reset and rate() spikes; adjusted: 155 + 5 = 160.
    let a = at(&range(0, 60, 15), |t| 100.0 + t as f64);
    let b = at(&range(5, 95, 15), |t| 60.0 + t as f64);
    let want_ts = vec![0, 15_000, 30_000, 45_000, 60_000, 95_000];

    let plain = penalty(&[a.clone(), b.clone()], false);
    assert_eq!(plain.timestamps, want_ts);
    assert_eq!(plain.values, vec![100.0, 115.0, 130.0, 145.0, 160.0, 155.0]);

    let got = penalty(&[a, b], true);
    assert_eq!(got.timestamps, want_ts);
    assert_eq!(got.values, vec![100.0, 115.0, 130.0, 145.0, 160.0, 160.0]);
}

#[test]
fn counter_adjustment_applies_on_the_very_first_switch() {
    // Thanos quirk reproduced: before the first Next the selection is a, so
    // picking b's earlier first sample is a switch, and b is adjusted to a's
    // first value: a0 = 50 at 1 s, b0 = 10 at 0 s -> first output (0, 50).
    let a = at(&[1], |_| 50.0);
    let b = at(&[0], |_| 10.0);
    assert_eq!(
        pairs(&penalty(&[a.clone(), b.clone()], true)),
        vec![(0, 50.0)]
    );
    assert_eq!(pairs(&penalty(&[a, b], false)), vec![(0, 10.0)]);
}

#[test]
fn counter_false_leaves_values_untouched_and_counter_true_never_lowers() {
    let mut a_secs = vec![0, 10, 20];
    a_secs.extend(range(60, 150, 10));
    let a = at(&a_secs, |t| t as f64);
    let b = at(&range(0, 150, 10), |t| t as f64 - 35.0);
    let plain = penalty(&[a.clone(), b.clone()], false);
    for (t, v) in pairs(&plain) {
        let from_a = a
            .timestamps
            .iter()
            .position(|&x| x == t)
            .map(|i| a.values[i]);
        let from_b = b
            .timestamps
            .iter()
            .position(|&x| x == t)
            .map(|i| b.values[i]);
        assert!(from_a == Some(v) || from_b == Some(v), "{t} {v}");
    }
    let adjusted = penalty(&[a, b], true);
    assert_eq!(adjusted.timestamps, plain.timestamps);
    assert!(
        adjusted
            .values
            .iter()
            .zip(&plain.values)
            .all(|(x, y)| x >= y)
    );
}

#[test]
fn nan_staleness_markers_pass_through() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let a = s(&[(0, 1.0), (10_000, stale)]);
    let got = penalty(&[a.clone(), a.clone()], true);
    assert_eq!(got.values[1].to_bits(), stale.to_bits());
    // Also on a replica shifted by the counter adjustment: b's earlier first
    // sample is picked and shifted by 5 (the first-switch quirk tested
    // above), a is then sought past its only sample, and b's
    // marker comes out with its bits intact (NaN + 5 would quiet it).
    let a = s(&[(0, 5.0)]);
    let b = s(&[(-1000, 0.0), (10_000, stale)]);
    let got = penalty(&[a, b], true);
    assert_eq!(got.timestamps, vec![-1000, 10_000]);
    assert_eq!(got.values[0], 5.0);
    assert_eq!(got.values[1].to_bits(), stale.to_bits());
}

#[test]
fn config_parsing() {
    assert!(PenaltyConfig::from_json("").is_ok());
    assert!(PenaltyConfig::from_json(" null ").is_ok());
    assert!(PenaltyConfig::from_json("{}").is_ok());
    assert!(
        PenaltyConfig::from_json(r#"{"initial_penalty":1}"#)
            .unwrap_err()
            .contains("initial_penalty")
    );
    assert!(ChainConfig::from_json("[").is_err());
}

#[test]
fn chain_union_one_per_timestamp_first_wins() {
    let a = s(&[(0, 1.0), (20, 3.0), (40, 5.0)]);
    let b = s(&[(10, 20.0), (20, 30.0), (50, 60.0)]);
    let c = s(&[(0, 100.0), (5, 105.0), (60, 160.0)]);
    assert_eq!(
        pairs(&chain(&[a.clone(), b.clone(), c])),
        vec![
            (0, 1.0),
            (5, 105.0),
            (10, 20.0),
            (20, 3.0),
            (40, 5.0),
            (50, 60.0),
            (60, 160.0)
        ]
    );
    assert_eq!(
        pairs(&chain(&[b, a]))[2],
        (20, 30.0),
        "b first: b's value wins"
    );
    assert!(chain(&[]).is_empty());
}

#[test]
fn malformed_inputs_do_not_panic_and_stay_ascending() {
    let bad = Series {
        timestamps: vec![30, 10, 20, 40, 40],
        values: vec![1.0, 2.0, 3.0],
    };
    let good = s(&[(5, 0.0), (35, 0.0)]);
    for out in [
        penalty(std::slice::from_ref(&bad), true),
        penalty(&[bad.clone(), good.clone()], true),
        chain(&[bad, good]),
    ] {
        assert!(out.timestamps.windows(2).all(|w| w[0] < w[1]), "{out:?}");
        assert_eq!(out.timestamps.len(), out.values.len());
    }
    let extreme = s(&[
        (i64::MIN, 0.0),
        (i64::MIN + 1, 1.0),
        (i64::MAX - 1, 2.0),
        (i64::MAX, 3.0),
    ]);
    let out = penalty(&[extreme.clone(), extreme], true);
    assert!(out.timestamps.windows(2).all(|w| w[0] < w[1]), "{out:?}");
}

fn series_strategy() -> impl Strategy<Value = Series> {
    proptest::collection::btree_map(0i64..400, 0u8..50, 0..40).prop_map(|m| Series {
        timestamps: m.keys().map(|t| t * 1000 + (t % 3) * 250).collect(),
        values: m.values().map(|&v| v as f64).collect(),
    })
}

/// Monotonic counters (cumulative sums of the generated steps).
fn counter_strategy() -> impl Strategy<Value = Series> {
    series_strategy().prop_map(|mut s| {
        let mut acc = 0.0;
        for v in &mut s.values {
            acc += *v;
            *v = acc;
        }
        s
    })
}

proptest! {
    #[test]
    fn penalty_properties(replicas in proptest::collection::vec(series_strategy(), 0..5)) {
        let out = penalty(&replicas, false);
        prop_assert_eq!(out.timestamps.len(), out.values.len());
        prop_assert!(out.timestamps.windows(2).all(|w| w[0] < w[1]));
        for (t, v) in pairs(&out) {
            let found = replicas.iter().any(|r| pairs(r).iter().any(|&(rt, rv)| rt == t && rv == v));
            prop_assert!(found, "sample ({}, {}) is in no replica", t, v);
        }
        if replicas.iter().any(|r| !r.is_empty()) {
            prop_assert!(!out.is_empty());
        }
    }

    #[test]
    fn penalty_of_one_replica_is_identity(r in series_strategy(), counter: bool) {
        prop_assert_eq!(&penalty(std::slice::from_ref(&r), counter), &r);
        // Two identical replicas collapse to one copy as well.
        prop_assert_eq!(&penalty(&[r.clone(), r.clone()], counter), &r);
    }

    #[test]
    fn penalty_counter_mode_keeps_counters_monotonic(replicas in proptest::collection::vec(counter_strategy(), 1..5)) {
        let out = penalty(&replicas, true);
        prop_assert!(out.timestamps.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(out.values.windows(2).all(|w| w[1] >= w[0]), "{:?}", out);
    }

    #[test]
    fn chain_properties(replicas in proptest::collection::vec(series_strategy(), 0..5)) {
        let out = chain(&replicas);
        let mut union: Vec<i64> = replicas.iter().flat_map(|r| r.timestamps.clone()).collect();
        union.sort_unstable();
        union.dedup();
        prop_assert_eq!(&out.timestamps, &union);
        for (t, v) in pairs(&out) {
            let first = replicas.iter().find_map(|r| pairs(r).into_iter().find(|p| p.0 == t));
            prop_assert_eq!(first.map(|p| p.1), Some(v));
        }
    }

    #[test]
    fn two_replica_loop_matches_the_iterators(
        a in messy_strategy(), b in messy_strategy(), counter: bool,
    ) {
        let pair = [a, b];
        let want = penalty_iterators(&pair, counter);
        let got = penalty(&pair, counter);
        prop_assert_eq!(bits(&got), bits(&want));
        // And straight from the flat layout into the output buffer.
        let mut w = sluice_policy_abi::DedupInputWriter::new();
        w.begin_group();
        for r in &pair {
            let n = r.timestamps.len().min(r.values.len());
            w.add_replica(&r.timestamps[..n], &r.values[..n]);
        }
        let input = w.finish();
        let view = sluice_policy_abi::DedupInput::parse(&input).unwrap();
        let mut out = sluice_policy_abi::DedupOutputWriter::default();
        out.begin_series();
        penalty_into(view.group(0), counter, &mut out);
        let out = out.finish();
        let decoded = sluice_policy_abi::decode_dedup_output(&out, 1).unwrap();
        prop_assert_eq!(bits(&decoded[0]), bits(&want));
    }

    #[test]
    fn two_replica_loop_matches_the_iterators_on_scrapes(
        a in scrape_strategy(), b in scrape_strategy(), counter: bool,
    ) {
        let pair = [a, b];
        prop_assert_eq!(bits(&penalty(&pair, counter)), bits(&penalty_iterators(&pair, counter)));
    }
}

/// Samples compared bit for bit (NaN payloads, -0.0).
fn bits(s: &Series) -> Vec<(i64, u64)> {
    s.timestamps
        .iter()
        .zip(&s.values)
        .map(|(&t, v)| (t, v.to_bits()))
        .collect()
}

/// Anything: unsorted and repeated timestamps, extremes, NaNs (staleness
/// markers), negative zero, resets, columns of different lengths.
fn messy_strategy() -> impl Strategy<Value = Series> {
    let t = prop_oneof![
        6 => 0i64..60_000,
        1 => Just(i64::MIN),
        1 => Just(i64::MIN + 1),
        1 => Just(i64::MAX),
        1 => Just(i64::MAX - 1),
        1 => (i64::MAX - 20_000)..i64::MAX,
    ];
    let v = prop_oneof![
        6 => (0u8..100).prop_map(f64::from),
        1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
    ];
    (
        proptest::collection::vec(t, 0..30),
        proptest::collection::vec(v, 0..32),
        any::<bool>(),
    )
        .prop_map(|(mut ts, vs, sort)| {
            if sort {
                ts.sort_unstable();
            }
            Series {
                timestamps: ts,
                values: vs,
            }
        })
}

/// Realistic replicas: ~15 s scrapes with jitter, gaps and counter resets.
fn scrape_strategy() -> impl Strategy<Value = Series> {
    (
        0i64..20_000,
        proptest::collection::vec((14_000i64..16_000, 0u8..40, 0u8..30), 0..60),
    )
        .prop_map(|(start, steps)| {
            let (mut t, mut v) = (start, 0.0);
            let mut s = Series::default();
            for (dt, gap, inc) in steps {
                t += dt + if gap == 0 { 60_000 } else { 0 };
                v = if inc == 0 { 1.0 } else { v + f64::from(inc) };
                s.timestamps.push(t);
                s.values.push(v);
            }
            s
        })
}
