//! __PLUGIN_NAME__: a Sluice downsample plugin, scaffolded by `sluice plugin new`.
//!
//! It cuts a series into windows of the target resolution (aligned to
//! multiples of it) and writes per window the count, sum, min and max of the
//! values and a reset-corrected running total (the counter aggregate). It is a
//! starting point, simpler than the built-in `downsample` plugin, which
//! follows Thanos exactly. NaN values (staleness markers) are skipped.

use sluice_sdk::{Aggregates, DownsamplePolicy, Info, NoConfig, Series};

/// The configured policy (this one has no settings).
struct Policy;

/// Last timestamp of the window of `resolution` ms that contains `t`.
fn window_end(t: i64, resolution: i64) -> i64 {
    t.saturating_add(resolution - 1 - t.rem_euclid(resolution))
}

fn push(s: &mut Series, t: i64, v: f64) {
    s.timestamps.push(t);
    s.values.push(v);
}

/// Samples with a value, in strictly ascending time.
fn clean(s: &Series) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(s.timestamps.len());
    for (&t, &v) in s.timestamps.iter().zip(&s.values) {
        if !v.is_nan() && out.last().is_none_or(|&(last, _)| t > last) {
            out.push((t, v));
        }
    }
    out
}

/// Groups `samples` by window and calls `emit(timestamp, window)` for each.
/// A window's timestamp is its end, except the last window's, which is its
/// last sample (a block's aggregates never reach past its data).
fn windows(samples: &[(i64, f64)], resolution: i64, mut emit: impl FnMut(i64, &[(i64, f64)])) {
    let mut start = 0;
    while start < samples.len() {
        let end = window_end(samples[start].0, resolution);
        let len = samples[start..].iter().take_while(|(t, _)| *t <= end).count();
        let window = &samples[start..start + len];
        start += len;
        let t = if start == samples.len() { window[len - 1].0 } else { end };
        emit(t, window);
    }
}

fn check(resolution_ms: i64) -> Result<(), String> {
    if resolution_ms > 0 {
        Ok(())
    } else {
        Err(format!("resolution must be positive, got {resolution_ms} ms"))
    }
}

impl DownsamplePolicy for Policy {
    fn info() -> Info {
        Info::new("__PLUGIN_NAME__", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        sluice_sdk::parse_config::<NoConfig>(config)?;
        Ok(Policy)
    }

    fn downsample(&self, raw: &Series, resolution_ms: i64) -> Result<Aggregates, String> {
        check(resolution_ms)?;
        let samples = clean(raw);
        let mut out = Aggregates::default();
        let (Some(&first), Some(&last)) = (samples.first(), samples.last()) else {
            return Ok(out);
        };
        push(&mut out.counter, first.0, first.1);
        let (mut total, mut prev, mut last_t) = (0.0, None::<f64>, first.0);
        windows(&samples, resolution_ms, |t, w| {
            let values = w.iter().map(|&(_, v)| v);
            push(&mut out.count, t, w.len() as f64);
            push(&mut out.sum, t, values.clone().sum());
            push(&mut out.min, t, values.clone().fold(f64::INFINITY, f64::min));
            push(&mut out.max, t, values.fold(f64::NEG_INFINITY, f64::max));
            for &(_, v) in w {
                // A drop in value is a counter reset: count the new value whole.
                total += match prev {
                    Some(p) if v >= p => v - p,
                    _ => v,
                };
                prev = Some(v);
            }
            push(&mut out.counter, t, total);
            last_t = t;
        });
        push(&mut out.counter, last_t, last.1);
        Ok(out)
    }

    fn downsample_aggregates(&self, input: &Aggregates, resolution_ms: i64) -> Result<Aggregates, String> {
        check(resolution_ms)?;
        let rewindow = |s: &Series, combine: fn(f64, f64) -> f64| {
            let mut out = Series::default();
            windows(&clean(s), resolution_ms, |t, w| {
                let v = w.iter().skip(1).fold(w[0].1, |acc, &(_, v)| combine(acc, v));
                push(&mut out, t, v);
            });
            out
        };
        let mut out = Aggregates {
            count: rewindow(&input.count, |a, b| a + b),
            sum: rewindow(&input.sum, |a, b| a + b),
            min: rewindow(&input.min, f64::min),
            max: rewindow(&input.max, f64::max),
            counter: Series::default(),
        };
        // The input counter is: first raw sample, running totals, last raw sample.
        let c = &input.counter;
        if c.timestamps.len() >= 3 {
            let n = c.timestamps.len();
            let totals = Series::new(c.timestamps[1..n - 1].to_vec(), c.values[1..n - 1].to_vec());
            let per_window = rewindow(&totals, |_, b| b);
            push(&mut out.counter, c.timestamps[0], c.values[0]);
            for (&t, &v) in per_window.timestamps.iter().zip(&per_window.values) {
                push(&mut out.counter, t, v);
            }
            let last_t = per_window.timestamps.last().copied().unwrap_or(c.timestamps[0]);
            push(&mut out.counter, last_t, c.values[n - 1]);
        }
        Ok(out)
    }
}

sluice_sdk::export_downsample!(Policy);
