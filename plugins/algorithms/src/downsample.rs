//! Thanos downsampling of float series (`pkg/compact/downsample`, spec §3.2):
//! raw samples to 5m/1h count/sum/min/max/counter aggregates, 5m aggregates to
//! 1h, and the reader's `ApplyCounterResets` over a counter aggregate.
//!
//! Each call treats its whole input as one Thanos batch (one output chunk):
//! the last window's timestamp is clamped to the batch's last sample, and the
//! counter aggregate carries the batch's first and last raw values. To split
//! a long series into several chunks as Thanos does, cut it with
//! [`raw_batches`] and downsample each batch.

use crate::{Series, usable_len};

/// 5-minute resolution in ms (downsampling level 1).
pub const RES_5M: i64 = 300_000;
/// 1-hour resolution in ms (downsampling level 2).
pub const RES_1H: i64 = 3_600_000;

/// The five aggregates of one series, each a series of one sample per window
/// (the counter has the extra first/last raw samples, see [`downsample_raw`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    pub count: Series,
    pub sum: Series,
    pub min: Series,
    pub max: Series,
    pub counter: Series,
}

impl Aggregates {
    /// Whether every aggregate is empty.
    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
            && self.sum.is_empty()
            && self.min.is_empty()
            && self.max.is_empty()
            && self.counter.is_empty()
    }
}

/// Checks that `resolution` (ms) can be used as a window size.
pub fn check_resolution(resolution: i64) -> Result<(), String> {
    if resolution > 0 {
        Ok(())
    } else {
        Err(format!(
            "downsampling resolution must be a positive number of ms, got {resolution}"
        ))
    }
}

/// Last timestamp of the window containing `t`: `t - (t mod r) + r - 1`,
/// with the modulo taken Euclidean-style so windows stay aligned to
/// multiples of `r` for negative timestamps too (saturating at `i64::MAX`).
/// A non-positive `r` gives `t`.
pub fn window_end(t: i64, r: i64) -> i64 {
    if r <= 0 {
        return t;
    }
    t.saturating_add(r - 1 - t.rem_euclid(r))
}

/// Thanos downsampling of raw float samples into windows of `resolution` ms.
///
/// Samples with a NaN value (staleness markers included) are dropped, and so
/// are samples whose timestamp goes back in time (equal timestamps are kept,
/// as Thanos does). Per window: `count`, `sum`, `min`, `max` of the values,
/// and `counter` = the reset-corrected running total (starting at the first
/// raw value; a drop in value is a reset, after which the new value is
/// added). Each window's sample has the window's last timestamp, except the
/// last window, whose timestamp is the input's last sample (so a batch never
/// reaches past its data). The counter series also starts with the first raw
/// sample unchanged and ends with a sample at the last window's timestamp
/// holding the last raw value, which lets [`apply_counter_resets`] detect a
/// reset between consecutive batches.
///
/// An empty input or a non-positive resolution gives empty aggregates.
pub fn downsample_raw(raw: &Series, resolution: i64) -> Aggregates {
    let samples = clean(raw);
    let mut out = Aggregates::default();
    let (Some(&first), Some(&last)) = (samples.first(), samples.last()) else {
        return out;
    };
    if check_resolution(resolution).is_err() {
        return out;
    }
    push(&mut out.counter, first.0, first.1);
    let last_window = downsample_batch(&samples, resolution, |t, a| {
        push(&mut out.count, t, a.count as f64);
        push(&mut out.sum, t, a.sum);
        push(&mut out.min, t, a.min);
        push(&mut out.max, t, a.max);
        push(&mut out.counter, t, a.counter);
    });
    push(&mut out.counter, last_window, last.1);
    out
}

/// Re-downsamples aggregates (5m → 1h, Thanos `downsampleAggrBatch`): per
/// window, `count` = sum of counts, `sum` = sum of sums, `min` = min of mins,
/// `max` = max of maxes; the counter is rebuilt from [`apply_counter_resets`]
/// over the input counter (a reset-free running total), one sample per window,
/// again preceded by the first and followed by the last raw value. Each
/// aggregate's last window is clamped to that aggregate's last input sample.
/// NaN and out-of-order input samples are dropped; an empty input aggregate
/// gives an empty output aggregate.
pub fn downsample_aggregates(input: &Aggregates, resolution: i64) -> Aggregates {
    let mut out = Aggregates::default();
    if check_resolution(resolution).is_err() {
        return out;
    }
    let generic = |s: &Series, f: fn(&Aggregator) -> f64| {
        let mut o = Series::default();
        let samples = clean(s);
        if !samples.is_empty() {
            downsample_batch(&samples, resolution, |t, a| push(&mut o, t, f(a)));
        }
        o
    };
    // A count window's value is the sum of the input counts.
    out.count = generic(&input.count, |a| a.sum);
    out.sum = generic(&input.sum, |a| a.sum);
    out.min = generic(&input.min, |a| a.min);
    out.max = generic(&input.max, |a| a.max);

    let (totals, last_raw) = counter_resets(&input.counter);
    let samples = clean(&totals);
    if let (Some(&first), Some(last_raw)) = (samples.first(), last_raw) {
        push(&mut out.counter, first.0, first.1);
        let last_window = downsample_batch(&samples, resolution, |t, a| {
            push(&mut out.counter, t, a.counter)
        });
        push(&mut out.counter, last_window, last_raw);
    }
    out
}

/// Thanos `ApplyCounterResetsSeriesIterator` over a counter aggregate (one or
/// more batches concatenated), as the querier reads downsampled counters for
/// `rate`, `increase` and friends: a monotonic running total.
///
/// The first sample sets the total. A sample with a later timestamp adds its
/// increase over the previous raw value (`v - last`, or `v` if it dropped: a
/// reset). A sample with the same timestamp as the previous one is the "true
/// last raw value" marker of a batch: it only updates the previous raw value
/// (so a reset between batches is seen) and is not emitted. Samples going back
/// in time and NaN values are skipped. One output sample per accepted sample.
pub fn apply_counter_resets(counter: &Series) -> Series {
    counter_resets(counter).0
}

/// [`apply_counter_resets`] plus the last raw value seen.
fn counter_resets(counter: &Series) -> (Series, Option<f64>) {
    let mut out = Series::default();
    let mut last: Option<(i64, f64)> = None; // last accepted timestamp, last raw value
    let mut total = 0.0;
    for i in 0..usable_len(counter) {
        let (t, v) = (counter.timestamps[i], counter.values[i]);
        if v.is_nan() {
            continue;
        }
        match last {
            None => total = v,
            Some((lt, lv)) if t > lt => total += if v >= lv { v - lv } else { v },
            Some((lt, _)) if t == lt => {
                last = Some((lt, v));
                continue;
            }
            Some(_) => continue, // went back in time
        }
        last = Some((t, v));
        push(&mut out, t, total);
    }
    (out, last.map(|l| l.1))
}

/// Thanos's batch cutting of raw samples into `num_chunks` output chunks
/// (`downsampleRawLoop`): batches of `len / num_chunks + 1` samples, each
/// extended to the end of the window its last sample falls in, so no window
/// is split between chunks. Returns index ranges into `raw`'s columns.
pub fn raw_batches(
    raw: &Series,
    resolution: i64,
    num_chunks: usize,
) -> Vec<std::ops::Range<usize>> {
    let n = usable_len(raw);
    let mut out = Vec::new();
    if n == 0 || resolution <= 0 {
        return out;
    }
    let batch = n / num_chunks.max(1) + 1;
    let mut start = 0;
    while start < n {
        let mut end = (start + batch).min(n);
        let w = window_end(raw.timestamps[end - 1], resolution);
        while end < n && raw.timestamps[end] <= w {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Running state of Thanos's `aggregator`.
#[derive(Debug)]
struct Aggregator {
    /// Samples since the start (counter state is kept across windows).
    total: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            counter: 0.0,
            last: 0.0,
        }
    }

    /// Starts a new window (the counter state carries over).
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    fn add(&mut self, v: f64) {
        if self.total == 0 {
            self.counter = v;
        } else if v < self.last {
            self.counter += v; // counter reset
        } else {
            self.counter += v - self.last;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

/// Thanos `downsampleBatch`: calls `emit(window timestamp, aggregator)` once
/// per window of `samples` (non-empty, ascending); returns the last window's
/// timestamp.
fn downsample_batch(
    samples: &[(i64, f64)],
    resolution: i64,
    mut emit: impl FnMut(i64, &Aggregator),
) -> i64 {
    let last_t = samples.last().map_or(i64::MIN, |s| s.0);
    let mut aggr = Aggregator::new();
    let mut next_t: Option<i64> = None;
    for &(t, v) in samples {
        if next_t.is_none_or(|n| t > n) {
            if let Some(n) = next_t {
                emit(n, &aggr);
            }
            aggr.reset();
            // Never past the batch's last sample: the next batch may start in
            // the same window.
            next_t = Some(window_end(t, resolution).min(last_t));
        }
        aggr.add(v);
    }
    let end = next_t.unwrap_or(last_t);
    emit(end, &aggr);
    end
}

/// The usable samples: no NaN, never back in time (Thanos `expandChunkIterator`,
/// which keeps equal timestamps).
fn clean(s: &Series) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(usable_len(s));
    for i in 0..usable_len(s) {
        let (t, v) = (s.timestamps[i], s.values[i]);
        if v.is_nan() || out.last().is_some_and(|l| t < l.0) {
            continue;
        }
        out.push((t, v));
    }
    out
}

fn push(s: &mut Series, t: i64, v: f64) {
    s.timestamps.push(t);
    s.values.push(v);
}

#[cfg(test)]
mod tests;
