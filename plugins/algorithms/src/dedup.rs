//! Replica deduplication of one group of replica series: Thanos's penalty
//! algorithm (`pkg/dedup/iter.go`, spec §2.2) and Prometheus's chain merge
//! (spec §2.3).
//!
//! Both take the replicas of one series as sample columns, in the order the
//! host chose (the first replica wins ties), and return one merged series with
//! strictly ascending timestamps.

use serde::Deserialize;
use sluice_policy_abi::{DedupOutputWriter, SeriesRef};

use crate::{Series, usable_len};

/// Penalty for the replica that was not picked while no gap has been
/// observed yet (Thanos `initialPenalty`), in ms.
pub const INITIAL_PENALTY_MS: i64 = 5000;

/// Whether the PromQL function enclosing a selector turns on counter
/// adjustment in penalty dedup (Thanos `isCounter`): `rate`, `increase`,
/// `irate` and `resets`.
pub fn is_counter_func(func: &str) -> bool {
    matches!(func, "rate" | "increase" | "irate" | "resets")
}

/// Configuration of the penalty dedup policy (JSON). Thanos's algorithm has
/// no knobs, so the only valid configurations are `{}`, `null` and the empty
/// string; unknown fields are rejected so a typo is not silently ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyConfig {}

impl PenaltyConfig {
    /// Parses the configuration; empty text and `null` mean defaults.
    pub fn from_json(config: &str) -> Result<Self, String> {
        if crate::is_empty_config(config) {
            return Ok(Self::default());
        }
        serde_json::from_str(config).map_err(|e| format!("invalid penalty dedup config: {e}"))
    }
}

/// Configuration of the chain dedup policy (JSON); like [`PenaltyConfig`],
/// only `{}`, `null` and the empty string are valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {}

impl ChainConfig {
    /// Parses the configuration; empty text and `null` mean defaults.
    pub fn from_json(config: &str) -> Result<Self, String> {
        if crate::is_empty_config(config) {
            return Ok(Self::default());
        }
        serde_json::from_str(config).map_err(|e| format!("invalid chain dedup config: {e}"))
    }
}

/// [`penalty`] with counter mode chosen from the enclosing PromQL function.
pub fn penalty_for_func(replicas: &[Series], func: &str) -> Series {
    penalty(replicas, is_counter_func(func))
}

/// Read access to one replica's sample columns, so the algorithms run on
/// native slices ([`Cols`]) and, in a plugin, directly on the flat input
/// buffer ([`SeriesRef`]) without copying it.
pub trait Samples {
    /// Number of samples (the shorter column's length).
    fn len(&self) -> usize;
    /// Timestamp of sample `i < len()`.
    fn t(&self, i: usize) -> i64;
    /// Value of sample `i < len()`.
    fn v(&self, i: usize) -> f64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A series' columns as slices of equal length.
#[derive(Debug, Clone, Copy)]
pub struct Cols<'a> {
    ts: &'a [i64],
    vs: &'a [f64],
}

impl<'a> Cols<'a> {
    /// The usable samples of `s`: extra items of the longer column are ignored.
    pub fn new(s: &'a Series) -> Self {
        let n = usable_len(s);
        Cols {
            ts: &s.timestamps[..n],
            vs: &s.values[..n],
        }
    }
}

impl Samples for Cols<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.ts.len()
    }
    #[inline]
    fn t(&self, i: usize) -> i64 {
        self.ts[i]
    }
    #[inline]
    fn v(&self, i: usize) -> f64 {
        self.vs[i]
    }
}

impl Samples for SeriesRef<'_> {
    #[inline]
    fn len(&self) -> usize {
        SeriesRef::len(self)
    }
    #[inline]
    fn t(&self, i: usize) -> i64 {
        self.timestamp(i)
    }
    #[inline]
    fn v(&self, i: usize) -> f64 {
        self.value(i)
    }
}

/// Where merged samples go: an owned [`Series`] or, in a plugin, the output
/// buffer itself ([`DedupOutputWriter`]).
pub trait Sink {
    fn push(&mut self, t: i64, v: f64);
    /// Room for about `n` more samples.
    fn reserve(&mut self, _n: usize) {}
}

impl Sink for Series {
    #[inline]
    fn push(&mut self, t: i64, v: f64) {
        self.timestamps.push(t);
        self.values.push(v);
    }
    fn reserve(&mut self, n: usize) {
        self.timestamps.reserve(n);
        self.values.reserve(n);
    }
}

impl Sink for DedupOutputWriter {
    #[inline]
    fn push(&mut self, t: i64, v: f64) {
        DedupOutputWriter::push(self, t, v);
    }
    fn reserve(&mut self, n: usize) {
        DedupOutputWriter::reserve(self, n);
    }
}

/// Thanos penalty deduplication of one replica group.
///
/// The replicas are combined as the left fold `dedup(dedup(r0, r1), r2)…` of
/// the 2-way penalty iterator of spec §2.2: the earliest sample wins (ties go
/// to the first input of each 2-way step), the replica not picked is next
/// sought to `lastT + 1 + penalty` where the penalty is 5000 ms before any
/// sample was emitted and `2 × (t − lastT)` afterwards, and the iterator's
/// `Seek` walks with `Next` so gaps are not skipped. With `counter` set (see
/// [`is_counter_func`]) every replica is wrapped in Thanos's
/// counter-error-adjust iterator: on a switch between replicas, a replica
/// whose (adjusted) value is below the last emitted value is shifted up by the
/// difference for the rest of the series, so PromQL sees no false reset.
///
/// A group of one replica is returned as is. Samples beyond the shorter of a
/// replica's two columns are ignored; the output's timestamps strictly ascend
/// even if an input's do not.
pub fn penalty(replicas: &[Series], counter: bool) -> Series {
    if let [only] = replicas {
        return strictly_ascending(only);
    }
    let cols: Vec<Cols<'_>> = replicas.iter().map(Cols::new).collect();
    let mut out = Series::default();
    penalty_into(&cols, counter, &mut out);
    out
}

/// [`penalty`] over any sample columns, appending the merged samples to `out`.
pub fn penalty_into<R: Samples>(replicas: &[R], counter: bool, out: &mut impl Sink) {
    // The output usually has about as many samples as the longest replica.
    let cap = replicas.iter().map(Samples::len).max().unwrap_or(0);
    out.reserve(cap + cap / 16);
    match replicas {
        [] => {}
        [only] => ascending_into(only, out),
        [a, b] if counter => penalty2::<_, _, true>(a, b, out),
        [a, b] => penalty2::<_, _, false>(a, b, out),
        [r0, r1, rest @ ..] => {
            let mut it: Box<dyn Adjustable + '_> = Box::new(Dedup::new(
                Replica::new(r0, counter),
                Replica::new(r1, counter),
            ));
            for r in rest {
                it = Box::new(Dedup::new(it, Replica::new(r, counter)));
            }
            while it.next() {
                out.push(it.at_t(), it.at_v());
            }
        }
    }
}

/// A value shifted by a counter adjustment; NaN is returned as is so
/// staleness markers keep their bit pattern (NaN + x would quiet it).
#[inline(always)]
fn adjusted(v: f64, err: f64) -> f64 {
    if v.is_nan() { v } else { v + err }
}

/// The two-replica fold of [`penalty`] as one loop over the columns: the
/// iterator stack (`Dedup<Replica, Replica>`) below, step for step, with its
/// state in locals. It must produce exactly what the iterators produce; the
/// tests compare both on random inputs.
#[inline]
fn penalty2<A: Samples, B: Samples, const COUNTER: bool>(a: &A, b: &B, out: &mut impl Sink) {
    let (na, nb) = (a.len(), b.len());
    // Positions; a replica is "ok" (on a sample) while its position is below
    // its length, and an exhausted one is parked at its length for good.
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut last_t = i64::MIN;
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut use_a = true;
    // Counter error adjustments (Thanos `counterErrAdjustSeriesIterator`).
    let (mut err_a, mut err_b) = (0.0f64, 0.0f64);
    loop {
        // The selected replica's sample before the step: its value is what a
        // switch adjusts the replicas against.
        let was_a = use_a;
        let (had_last, last_i) = if use_a { (ia < na, ia) } else { (ib < nb, ib) };

        // Seek both to the next timestamp plus their penalty (a target beyond
        // i64::MAX means no sample can follow). The two blocks are written
        // out: one shared helper, even inlined, made the wasm plugin ~10%
        // slower (cargo bench -p sluice --bench policy).
        let base = last_t.checked_add(1);
        if ia < na {
            match base.and_then(|x| x.checked_add(pen_a)) {
                Some(target) => {
                    // Usually one step: test it before the loop, so in a
                    // plugin the loop (and its epoch check) is rarely entered.
                    if ia < na && a.t(ia) < target {
                        ia += 1;
                        while ia < na && a.t(ia) < target {
                            ia += 1;
                        }
                    }
                }
                None => ia = na,
            }
        }
        if ib < nb {
            match base.and_then(|x| x.checked_add(pen_b)) {
                Some(target) => {
                    // Usually one step: test it before the loop, so in a
                    // plugin the loop (and its epoch check) is rarely entered.
                    if ib < nb && b.t(ib) < target {
                        ib += 1;
                        while ib < nb && b.t(ib) < target {
                            ib += 1;
                        }
                    }
                }
                None => ib = nb,
            }
        }
        let (a_ok, b_ok) = (ia < na, ib < nb);

        let t;
        if !a_ok {
            if !b_ok {
                return;
            }
            use_a = false;
            t = b.t(ib);
            pen_b = 0;
        } else if !b_ok {
            use_a = true;
            t = a.t(ia);
            pen_a = 0;
        } else {
            let (ta, tb) = (a.t(ia), b.t(ib));
            // Earliest timestamp wins, ties go to a; the other one gets twice
            // the observed step as penalty.
            use_a = ta <= tb;
            t = if use_a { ta } else { tb };
            let pen = if last_t == i64::MIN {
                INITIAL_PENALTY_MS
            } else {
                t.saturating_sub(last_t).saturating_mul(2)
            };
            if use_a {
                pen_b = pen;
                pen_a = 0;
            } else {
                pen_a = pen;
                pen_b = 0;
            }
        }
        last_t = t;

        if COUNTER && use_a != was_a && had_last {
            // Switched replicas: make values consistent with the one before.
            let last = if was_a {
                adjusted(a.v(last_i), err_a)
            } else {
                adjusted(b.v(last_i), err_b)
            };
            if a_ok {
                let v = adjusted(a.v(ia), err_a);
                if last > v {
                    err_a += last - v;
                }
            }
            if b_ok {
                let v = adjusted(b.v(ib), err_b);
                if last > v {
                    err_b += last - v;
                }
            }
        }

        let v = if use_a {
            adjusted(a.v(ia), err_a)
        } else {
            adjusted(b.v(ib), err_b)
        };
        out.push(t, v);
    }
}

/// Chain deduplication (Prometheus `ChainedSeriesMerge`): the union of all
/// samples in timestamp order, one sample per timestamp; on equal timestamps
/// the earlier replica in `replicas` wins. No penalty, no counter adjustment.
/// Samples that do not ascend within their own replica are ignored.
pub fn chain(replicas: &[Series]) -> Series {
    let mut out = Series::default();
    for r in replicas {
        let r = strictly_ascending(r);
        out = if out.is_empty() {
            r
        } else {
            merge_first_wins(&out, &r)
        };
    }
    out
}

/// Two-way merge of strictly ascending series; `a` wins equal timestamps.
fn merge_first_wins(a: &Series, b: &Series) -> Series {
    let (na, nb) = (usable_len(a), usable_len(b));
    let mut out = Series {
        timestamps: Vec::with_capacity(na + nb),
        values: Vec::with_capacity(na + nb),
    };
    let (mut i, mut j) = (0, 0);
    loop {
        let ta = if i < na {
            a.timestamps.get(i).copied()
        } else {
            None
        };
        let tb = if j < nb {
            b.timestamps.get(j).copied()
        } else {
            None
        };
        let from_a = match (ta, tb) {
            (None, None) => break,
            (Some(ta), Some(tb)) => {
                if ta == tb {
                    j += 1; // b's duplicate is dropped
                }
                ta <= tb
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        let (s, k) = if from_a { (a, &mut i) } else { (b, &mut j) };
        out.timestamps.push(s.timestamps[*k]);
        out.values.push(s.values[*k]);
        *k += 1;
    }
    out
}

/// The samples of `s` whose timestamp is above every earlier kept one: the
/// identity on a valid (strictly ascending) series.
fn strictly_ascending(s: &Series) -> Series {
    let n = usable_len(s);
    if s.timestamps.len() == n
        && s.values.len() == n
        && s.timestamps.windows(2).all(|w| w[0] < w[1])
    {
        return s.clone();
    }
    let mut out = Series::default();
    ascending_into(&Cols::new(s), &mut out);
    out
}

/// [`strictly_ascending`] over any columns, into `out`.
fn ascending_into(s: &impl Samples, out: &mut impl Sink) {
    let mut last = None;
    for i in 0..s.len() {
        let t = s.t(i);
        if last.is_none_or(|l| t > l) {
            out.push(t, s.v(i));
            last = Some(t);
        }
    }
}

/// A sample iterator that can be shifted up (Thanos `adjustableSeriesIterator`).
/// `next`/`seek` return false once exhausted; `at_t`/`at_v` are only read
/// while positioned on a sample.
trait Adjustable {
    fn next(&mut self) -> bool;
    /// Moves to the first sample at or after `t`; no effect if the current
    /// sample already is.
    fn seek(&mut self, t: i64) -> bool;
    fn at_t(&self) -> i64;
    fn at_v(&self) -> f64;
    /// Counter error adjustment: called with the last emitted value when the
    /// dedup iterator switched replicas.
    fn adjust(&mut self, last: f64);
}

impl<T: Adjustable + ?Sized> Adjustable for Box<T> {
    fn next(&mut self) -> bool {
        (**self).next()
    }
    fn seek(&mut self, t: i64) -> bool {
        (**self).seek(t)
    }
    fn at_t(&self) -> i64 {
        (**self).at_t()
    }
    fn at_v(&self) -> f64 {
        (**self).at_v()
    }
    fn adjust(&mut self, last: f64) {
        (**self).adjust(last)
    }
}

/// One replica's samples, with Thanos's counter-error-adjust wrapper
/// (`counter`) or the no-op one.
struct Replica<'a, R> {
    s: &'a R,
    /// Index of the current sample; `None` before the first `next`.
    pos: Option<usize>,
    counter: bool,
    err_adjust: f64,
}

impl<'a, R: Samples> Replica<'a, R> {
    fn new(s: &'a R, counter: bool) -> Self {
        Replica {
            s,
            pos: None,
            counter,
            err_adjust: 0.0,
        }
    }

    fn valid(&self) -> bool {
        self.pos.is_some_and(|p| p < self.s.len())
    }
}

impl<R: Samples> Adjustable for Replica<'_, R> {
    fn next(&mut self) -> bool {
        let n = self.s.len();
        let p = self.pos.map_or(0, |p| (p + 1).min(n));
        self.pos = Some(p);
        p < n
    }

    fn seek(&mut self, t: i64) -> bool {
        let n = self.s.len();
        let mut p = self.pos.unwrap_or(0);
        while p < n && self.s.t(p) < t {
            p += 1;
        }
        self.pos = Some(p);
        p < n
    }

    fn at_t(&self) -> i64 {
        match self.pos {
            Some(p) if p < self.s.len() => self.s.t(p),
            _ => i64::MIN,
        }
    }

    fn at_v(&self) -> f64 {
        match self.pos {
            Some(p) if p < self.s.len() => adjusted(self.s.v(p), self.err_adjust),
            _ => f64::NAN,
        }
    }

    fn adjust(&mut self, last: f64) {
        if self.counter && self.valid() {
            let v = self.at_v();
            if last > v {
                // This replica has been reset (or lags): compensate.
                self.err_adjust += last - v;
            }
        }
    }
}

/// The 2-way penalty iterator (Thanos `dedupSeriesIterator`).
struct Dedup<A, B> {
    a: A,
    b: B,
    a_ok: bool,
    b_ok: bool,
    last_t: i64,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<A: Adjustable, B: Adjustable> Dedup<A, B> {
    fn new(mut a: A, mut b: B) -> Self {
        let a_ok = a.next();
        let b_ok = b.next();
        Dedup {
            a,
            b,
            a_ok,
            b_ok,
            last_t: i64::MIN,
            pen_a: 0,
            pen_b: 0,
            use_a: true,
        }
    }

    /// Value of the currently selected iterator, if it is on a sample.
    fn selected_value(&self) -> Option<f64> {
        match (self.use_a, self.a_ok, self.b_ok) {
            (true, true, _) => Some(self.a.at_v()),
            (false, _, true) => Some(self.b.at_v()),
            _ => None,
        }
    }

    /// One step of Thanos `Next` without the switch adjustment.
    fn step(&mut self) -> bool {
        // Advance both to at least the next timestamp plus their penalty (a
        // target beyond i64::MAX means no sample can follow).
        let target = |pen: i64| self.last_t.checked_add(1).and_then(|t| t.checked_add(pen));
        let (ta, tb) = (target(self.pen_a), target(self.pen_b));
        if self.a_ok {
            self.a_ok = ta.is_some_and(|t| self.a.seek(t));
        }
        if self.b_ok {
            self.b_ok = tb.is_some_and(|t| self.b.seek(t));
        }
        if !self.a_ok {
            self.use_a = false;
            if self.b_ok {
                self.last_t = self.b.at_t();
                self.pen_b = 0;
            }
            return self.b_ok;
        }
        if !self.b_ok {
            self.use_a = true;
            self.last_t = self.a.at_t();
            self.pen_a = 0;
            return true;
        }
        let (ta, tb) = (self.a.at_t(), self.b.at_t());
        // Earliest timestamp wins, ties go to a.
        self.use_a = ta <= tb;
        let t = if self.use_a { ta } else { tb };
        // The replica not picked gets twice the observed step as penalty.
        let pen = if self.last_t == i64::MIN {
            INITIAL_PENALTY_MS
        } else {
            t.saturating_sub(self.last_t).saturating_mul(2)
        };
        if self.use_a {
            self.pen_b = pen;
            self.pen_a = 0;
        } else {
            self.pen_a = pen;
            self.pen_b = 0;
        }
        self.last_t = t;
        true
    }
}

impl<A: Adjustable, B: Adjustable> Adjustable for Dedup<A, B> {
    fn next(&mut self) -> bool {
        let last = self.selected_value();
        let was_a = self.use_a;
        let ok = self.step();
        if self.use_a != was_a
            && let Some(last) = last
        {
            // Switched replicas: make values consistent with the one before.
            self.adjust(last);
        }
        ok
    }

    fn seek(&mut self, t: i64) -> bool {
        // Walk with next so that gaps are not skipped.
        loop {
            let on_sample = if self.use_a { self.a_ok } else { self.b_ok };
            if on_sample && self.at_t() >= t {
                return true;
            }
            if !self.next() {
                return false;
            }
        }
    }

    fn at_t(&self) -> i64 {
        if self.use_a {
            self.a.at_t()
        } else {
            self.b.at_t()
        }
    }

    fn at_v(&self) -> f64 {
        if self.use_a {
            self.a.at_v()
        } else {
            self.b.at_v()
        }
    }

    fn adjust(&mut self, last: f64) {
        if self.a_ok {
            self.a.adjust(last);
        }
        if self.b_ok {
            self.b.adjust(last);
        }
    }
}

/// The iterator stack of [`penalty`] for any number of replicas: the
/// reference the two-replica loop is tested against.
#[cfg(test)]
fn penalty_iterators(replicas: &[Series], counter: bool) -> Series {
    let cols: Vec<Cols<'_>> = replicas.iter().map(Cols::new).collect();
    let mut out = Series::default();
    let [r0, r1, rest @ ..] = cols.as_slice() else {
        return penalty(replicas, counter);
    };
    let mut it: Box<dyn Adjustable + '_> = Box::new(Dedup::new(
        Replica::new(r0, counter),
        Replica::new(r1, counter),
    ));
    for r in rest {
        it = Box::new(Dedup::new(it, Replica::new(r, counter)));
    }
    while it.next() {
        out.push(it.at_t(), it.at_v());
    }
    out
}

#[cfg(test)]
mod tests;
