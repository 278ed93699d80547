//! Splitting a range query on UTC interval boundaries (Thanos'
//! `split_by_interval`): every piece keeps the query's step grid, ends at the
//! last grid point before the next multiple of the interval since the Unix
//! epoch, and the last piece ends at the query's end. Evaluation of a range
//! query is independent per step, so the pieces' answers put together are
//! the whole query's answer.

/// `start` and `end` moved down onto the step grid (`--query-range.align-range-with-step`).
pub fn align(start: i64, end: i64, step: i64) -> (i64, i64) {
    (start.div_euclid(step) * step, end.div_euclid(step) * step)
}

/// The last grid point (`t + k·step`) strictly before the next multiple of
/// `interval` after `t`.
fn last_before_boundary(t: i64, step: i64, interval: i64) -> i64 {
    let target = (t.div_euclid(interval) + 1) * interval - 1;
    target - (target - t).rem_euclid(step)
}

/// The pieces `[start_i, end_i]` of `[start, end]`; one piece when
/// `interval` is 0 or the query is a single point.
pub fn split(start: i64, end: i64, step: i64, interval: i64) -> Vec<(i64, i64)> {
    if interval <= 0 || start >= end {
        return vec![(start, end)];
    }
    let mut out = Vec::new();
    let mut s = start;
    while s <= end {
        let mut e = last_before_boundary(s, step, interval);
        if e.saturating_add(step) > end || e >= end {
            e = end;
        }
        out.push((s, e));
        if e == end {
            break;
        }
        s = e + step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn pieces_end_before_day_boundaries_on_the_step_grid() {
        // 2024-01-01T22:00 .. 2024-01-03T02:00, step 7 min.
        let (start, step) = (1_704_146_400_000, 420_000);
        let end = start + 28 * 3_600_000 - (28 * 3_600_000) % step;
        let p = split(start, end, step, DAY);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].0, start);
        assert_eq!(p.last().unwrap().1, end);
        for w in p.windows(2) {
            assert_eq!(w[1].0, w[0].1 + step, "contiguous on the grid");
            assert_eq!(
                w[0].1.div_euclid(DAY) + 1,
                w[1].0.div_euclid(DAY),
                "a day boundary in between"
            );
        }
        for (s, e) in &p {
            assert_eq!((s - start) % step, 0);
            assert_eq!((e - start) % step, 0);
            assert_eq!(
                s.div_euclid(DAY),
                e.div_euclid(DAY),
                "each piece within one day"
            );
        }
    }

    #[test]
    fn every_grid_point_once() {
        for (start, len, step) in [
            (0, 3 * DAY, 60_000),
            (DAY - 1, 1, 1),
            (123_456, DAY, 3_600_000),
            (-DAY / 2, DAY, 15_000),
        ] {
            let end = start + len - len % step;
            let mut points = Vec::new();
            for (s, e) in split(start, end, step, DAY) {
                let mut t = s;
                while t <= e {
                    points.push(t);
                    t += step;
                }
            }
            let want: Vec<i64> = (0..=(end - start) / step)
                .map(|k| start + k * step)
                .collect();
            assert_eq!(points, want, "start {start} step {step}");
        }
        assert_eq!(split(5, 5, 1, DAY), vec![(5, 5)]);
        assert_eq!(split(0, DAY * 3, 1000, 0), vec![(0, DAY * 3)]);
        assert_eq!(align(61_000, 179_000, 60_000), (60_000, 120_000));
    }
}
