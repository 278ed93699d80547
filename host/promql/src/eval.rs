//! Evaluation over the step grid.
//!
//! Every node is evaluated once for all steps: an instant vector is a set of
//! series with one optional value per step ([`Series`]), a scalar one value
//! per step, a range vector the raw points plus the window to cut at each
//! step ([`RangeVal`]). An instant query is a grid of one step.

use std::borrow::Cow;

use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

use super::engine::{EngineOpts, PromqlError, QueryResult, QueryStats, TOO_MANY_SAMPLES};
use super::plan::{FetchResult, Fetched, Plan, at_ms, dur_ms, offset_ms, selector_id};
use super::value::{RangeSeries, Sample, Value};
use super::{aggr, binop, functions, is_stale};
use sluice_model::Labels;

/// How many dense cells (steps of an instant vector, present or not) one
/// point of `--query.max-samples` allows.
pub(crate) const CELLS_PER_SAMPLE: u64 = 4;

/// The evaluation times: `start + i * step` for `i < n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    /// The grid of a query; its size was checked by the engine.
    pub fn new(start: i64, end: i64, step: i64) -> Grid {
        if step <= 0 {
            return Grid {
                start,
                step: 1,
                n: 1,
            };
        }
        Grid {
            start,
            step,
            n: ((i128::from(end) - i128::from(start)) / i128::from(step)).max(0) as usize + 1,
        }
    }

    #[inline]
    pub fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.n).map(|i| self.t(i))
    }
}

/// One series of an instant vector over the grid.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
}

/// Raw points of one series of a range vector.
#[derive(Debug, Clone)]
pub(crate) struct RawSeries<'a> {
    pub labels: Cow<'a, Labels>,
    pub ts: Cow<'a, [i64]>,
    pub vs: Cow<'a, [f64]>,
}

/// A range vector: raw points and the window `(te - range, te]` where
/// `te = (at or step time) - offset`.
#[derive(Debug, Clone)]
pub(crate) struct RangeVal<'a> {
    pub series: Vec<RawSeries<'a>>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeVal<'_> {
    /// Calls `f(step, lo, hi, te)` with each step's window `lo..hi` of `s`.
    pub fn window_bounds(
        &self,
        s: &RawSeries<'_>,
        g: Grid,
        mut f: impl FnMut(usize, usize, usize, i64),
    ) {
        let ts = &s.ts[..];
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..g.n {
            let te = self.at.unwrap_or_else(|| g.t(i)) - self.offset;
            let from = te - self.range;
            while hi < ts.len() && ts[hi] <= te {
                hi += 1;
            }
            while lo < ts.len() && ts[lo] <= from {
                lo += 1;
            }
            f(i, lo.min(hi), hi, te);
        }
    }

    /// Calls `f(step, ts, vs, te)` with each step's window of `s`.
    pub fn windows(
        &self,
        s: &RawSeries<'_>,
        g: Grid,
        mut f: impl FnMut(usize, &[i64], &[f64], i64),
    ) {
        let (ts, vs) = (&s.ts[..], &s.vs[..]);
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..g.n {
            let te = self.at.unwrap_or_else(|| g.t(i)) - self.offset;
            let from = te - self.range;
            while hi < ts.len() && ts[hi] <= te {
                hi += 1;
            }
            while lo < ts.len() && ts[lo] <= from {
                lo += 1;
            }
            let lo2 = lo.min(hi);
            f(i, &ts[lo2..hi], &vs[lo2..hi], te);
        }
    }
}

/// A node's value.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    String(String),
    Range(RangeVal<'a>),
}

impl Val<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Vector(_) => "instant vector",
            Val::String(_) => "string",
            Val::Range(_) => "range vector",
        }
    }
}

/// Evaluation state of one query.
pub(crate) struct Ev<'a> {
    fetched: &'a Fetched,
    aliases: &'a std::collections::HashMap<super::plan::SelectorId, super::plan::SelectorId>,
    /// String literals Prometheus would see as invalid UTF-8.
    pub invalid_utf8: &'a std::collections::HashSet<String>,
    pub opts: &'a EngineOpts,
    pub query_start: i64,
    pub query_end: i64,
    /// 0 for an instant query.
    pub query_step: i64,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    peak_samples: u64,
}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, PromqlError> {
    Err(PromqlError::Execution(msg.into()))
}

impl<'a> Ev<'a> {
    pub fn eval(&mut self, e: &'a Expr, g: Grid) -> Result<Val<'a>, PromqlError> {
        self.opts.cancel.check("query execution")?;
        let v = match e {
            Expr::NumberLiteral(n) => Val::Scalar(vec![n.val; g.n]),
            Expr::StringLiteral(s) => Val::String(s.val.clone()),
            Expr::Paren(p) => self.eval(&p.expr, g)?,
            Expr::Unary(u) => match self.eval(&u.expr, g)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Val::Scalar(v)
                }
                Val::Vector(mut v) => {
                    for s in &mut v {
                        s.vals.iter_mut().flatten().for_each(|x| *x = -*x);
                        s.labels.remove("__name__");
                    }
                    Val::Vector(self.merge_same_labels(v)?)
                }
                other => return err(format!("unary minus on {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Val::Vector(self.vector_selector(vs, g, false)?),
            Expr::MatrixSelector(ms) => Val::Range(self.matrix_selector(ms)),
            Expr::Subquery(sq) => Val::Range(self.subquery(sq, g)?),
            Expr::Call(c) => functions::call(self, c, g)?,
            Expr::Aggregate(a) => aggr::aggregate(self, a, g)?,
            Expr::Binary(b) => binop::binary(self, b, g)?,
            Expr::Extension(_) => return err("extension expressions are not supported"),
        };
        self.count(&v)?;
        Ok(v)
    }

    /// Tracks points held by a node's value against `--query.max-samples`.
    fn count(&mut self, v: &Val<'_>) -> Result<(), PromqlError> {
        let n = match v {
            Val::Vector(ss) => ss
                .iter()
                .map(|s| s.vals.iter().filter(|x| x.is_some()).count() as u64)
                .sum(),
            Val::Range(r) => r.series.iter().map(|s| s.ts.len() as u64).sum(),
            _ => 0,
        };
        self.peak_samples = self.peak_samples.max(n);
        if n > self.opts.max_samples as u64 {
            return err(TOO_MANY_SAMPLES);
        }
        Ok(())
    }

    /// Refuses to allocate `series × steps` cells for an instant vector
    /// over the grid when that is more than [`CELLS_PER_SAMPLE`] times
    /// `--query.max-samples`: the dense per-step columns also hold the steps
    /// without a value, which Prometheus' count of points does not see, so
    /// the bound is looser than the samples limit but still holds before
    /// the allocation.
    pub fn check_cells(&self, series: usize, g: Grid) -> Result<(), PromqlError> {
        let max = (self.opts.max_samples as u64).saturating_mul(CELLS_PER_SAMPLE);
        if (series as u64).saturating_mul(g.n as u64) > max {
            return err(TOO_MANY_SAMPLES);
        }
        Ok(())
    }

    /// Evaluates `e` expecting a scalar (one value per step).
    pub fn eval_scalar(&mut self, e: &'a Expr, g: Grid) -> Result<Vec<f64>, PromqlError> {
        match self.eval(e, g)? {
            Val::Scalar(v) => Ok(v),
            other => err(format!("expected scalar, got {}", other.type_name())),
        }
    }

    /// Evaluates `e` expecting an instant vector.
    pub fn eval_vector(&mut self, e: &'a Expr, g: Grid) -> Result<Vec<Series>, PromqlError> {
        match self.eval(e, g)? {
            Val::Vector(v) => Ok(v),
            other => err(format!(
                "expected instant vector, got {}",
                other.type_name()
            )),
        }
    }

    /// Evaluates `e` expecting a range vector.
    pub fn eval_range(&mut self, e: &'a Expr, g: Grid) -> Result<RangeVal<'a>, PromqlError> {
        match self.eval(e, g)? {
            Val::Range(v) => Ok(v),
            other => err(format!("expected range vector, got {}", other.type_name())),
        }
    }

    /// Evaluates a string argument.
    pub fn eval_string(&mut self, e: &'a Expr, g: Grid) -> Result<String, PromqlError> {
        match self.eval(e, g)? {
            Val::String(s) => Ok(s),
            other => err(format!("expected string, got {}", other.type_name())),
        }
    }

    fn data(&self, vs: &VectorSelector) -> &'a [sluice_model::SelectedSeries] {
        let id = selector_id(vs);
        let id = self.aliases.get(&id).copied().unwrap_or(id);
        self.fetched.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// An instant vector selector: the latest sample in `(te - lookback, te]`
    /// unless it is a staleness marker. With `want_ts` the value is the
    /// sample's timestamp in seconds (for `timestamp()`).
    pub fn vector_selector(
        &self,
        vs: &VectorSelector,
        g: Grid,
        want_ts: bool,
    ) -> Result<Vec<Series>, PromqlError> {
        let o = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let lb = self.opts.lookback_delta;
        let data = self.data(vs);
        self.check_cells(data.len(), g)?;
        let mut out = Vec::new();
        for (k, s) in data.iter().enumerate() {
            if k % 1024 == 1023 {
                self.opts.cancel.check("query execution")?;
            }
            let (ts, xs) = (&s.timestamps, &s.values);
            let mut vals = vec![None; g.n];
            let mut any = false;
            let mut j = 0usize;
            for (i, slot) in vals.iter_mut().enumerate() {
                let te = at.unwrap_or_else(|| g.t(i)) - o;
                if at.is_some() {
                    j = ts.partition_point(|&t| t <= te);
                } else {
                    while j < ts.len() && ts[j] <= te {
                        j += 1;
                    }
                }
                if j > 0 && ts[j - 1] > te - lb && !is_stale(xs[j - 1]) {
                    *slot = Some(if want_ts {
                        ts[j - 1] as f64 / 1000.0
                    } else {
                        xs[j - 1]
                    });
                    any = true;
                }
            }
            if any {
                out.push(Series {
                    labels: s.labels.clone(),
                    vals,
                });
            }
        }
        Ok(out)
    }

    fn matrix_selector(&self, ms: &'a MatrixSelector) -> RangeVal<'a> {
        let series = self
            .data(&ms.vs)
            .iter()
            .map(|s| {
                if s.values.iter().any(|&v| is_stale(v)) {
                    let (ts, vs): (Vec<i64>, Vec<f64>) = s
                        .timestamps
                        .iter()
                        .zip(&s.values)
                        .filter(|(_, v)| !is_stale(**v))
                        .map(|(t, v)| (*t, *v))
                        .unzip();
                    RawSeries {
                        labels: Cow::Borrowed(&s.labels),
                        ts: Cow::Owned(ts),
                        vs: Cow::Owned(vs),
                    }
                } else {
                    RawSeries {
                        labels: Cow::Borrowed(&s.labels),
                        ts: Cow::Borrowed(&s.timestamps),
                        vs: Cow::Borrowed(&s.values),
                    }
                }
            })
            .collect();
        RangeVal {
            series,
            range: dur_ms(&ms.range),
            offset: offset_ms(&ms.vs.offset),
            at: at_ms(&ms.vs.at, self.query_start, self.query_end),
        }
    }

    fn subquery(&mut self, sq: &'a SubqueryExpr, g: Grid) -> Result<RangeVal<'a>, PromqlError> {
        let o = offset_ms(&sq.offset);
        let r = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|&s| s > 0)
            .unwrap_or(self.opts.default_subquery_step);
        let at = at_ms(&sq.at, self.query_start, self.query_end);
        let (s, e) = match at {
            Some(t) => (t, t),
            None => (g.t(0), g.t(g.n - 1)),
        };
        let lo = s.saturating_sub(o).saturating_sub(r);
        let inner_start = lo.div_euclid(step).saturating_mul(step)
            + if lo.rem_euclid(step) != 0 { step } else { 0 };
        let inner_end = e.saturating_sub(o);
        let mut series = Vec::new();
        if inner_start <= inner_end {
            // The inner grid is checked before anything is allocated for it.
            let n = (i128::from(inner_end) - i128::from(inner_start)) / i128::from(step) + 1;
            if n > self.opts.max_samples as i128 {
                return err(TOO_MANY_SAMPLES);
            }
            let ig = Grid {
                start: inner_start,
                step,
                n: n as usize,
            };
            match self.eval(&sq.expr, ig)? {
                Val::Vector(v) => {
                    for s in v {
                        let (ts, vs): (Vec<i64>, Vec<f64>) = s
                            .vals
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| v.map(|v| (ig.t(i), v)))
                            .unzip();
                        series.push(RawSeries {
                            labels: Cow::Owned(s.labels),
                            ts: Cow::Owned(ts),
                            vs: Cow::Owned(vs),
                        });
                    }
                }
                Val::Scalar(v) => series.push(RawSeries {
                    labels: Cow::Owned(Labels::empty()),
                    ts: Cow::Owned(ig.times().collect()),
                    vs: Cow::Owned(v),
                }),
                other => {
                    return err(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    ));
                }
            }
        }
        Ok(RangeVal {
            series,
            range: r,
            offset: o,
            at,
        })
    }

    /// Merges series whose label sets became equal (after dropping the
    /// metric name); two of them with a value at the same step is
    /// Prometheus' "same labelset" error.
    pub fn merge_same_labels(&self, mut v: Vec<Series>) -> Result<Vec<Series>, PromqlError> {
        if v.len() < 2 {
            return Ok(v);
        }
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        if v.windows(2).all(|w| w[0].labels != w[1].labels) {
            return Ok(v);
        }
        let mut out: Vec<Series> = Vec::with_capacity(v.len());
        for s in v {
            match out.last_mut() {
                Some(last) if last.labels == s.labels => {
                    for (a, b) in last.vals.iter_mut().zip(s.vals) {
                        if b.is_some() {
                            if a.is_some() {
                                return err("vector cannot contain metrics with the same labelset");
                            }
                            *a = b;
                        }
                    }
                }
                _ => out.push(s),
            }
        }
        Ok(out)
    }
}

pub(crate) fn evaluate(
    expr: &Expr,
    plan: &Plan,
    fetched: FetchResult,
    opts: &EngineOpts,
) -> Result<QueryResult, PromqlError> {
    let g = Grid::new(plan.start, plan.end, plan.step);
    let mut ev = Ev {
        fetched: &fetched.series,
        aliases: &plan.aliases,
        invalid_utf8: &plan.invalid_utf8,
        opts,
        query_start: plan.start,
        query_end: plan.end,
        query_step: plan.step,
        warnings: fetched.warnings.clone(),
        infos: Vec::new(),
        peak_samples: 0,
    };
    let v = ev.eval(expr, g)?;
    let value = if plan.step == 0 {
        let t = plan.start;
        match v {
            Val::Scalar(v) => Value::Scalar { t, v: v[0] },
            Val::String(s) => Value::String { t, v: s },
            Val::Vector(ss) => Value::Vector(
                ss.into_iter()
                    .filter_map(|s| {
                        s.vals[0].map(|v| Sample {
                            labels: s.labels,
                            t,
                            v,
                        })
                    })
                    .collect(),
            ),
            Val::Range(r) => {
                let mut out = Vec::new();
                for s in &r.series {
                    r.windows(s, g, |_, ts, vs, _| {
                        if !ts.is_empty() {
                            out.push(RangeSeries {
                                labels: s.labels.clone().into_owned(),
                                points: ts.iter().copied().zip(vs.iter().copied()).collect(),
                            });
                        }
                    });
                }
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        }
    } else {
        let mut out = match v {
            Val::Scalar(v) => vec![RangeSeries {
                labels: Labels::empty(),
                points: g.times().zip(v).collect(),
            }],
            Val::Vector(ss) => ss
                .into_iter()
                .filter_map(|s| {
                    let points: Vec<(i64, f64)> = s
                        .vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (g.t(i), v)))
                        .collect();
                    (!points.is_empty()).then_some(RangeSeries {
                        labels: s.labels,
                        points,
                    })
                })
                .collect(),
            other => {
                return Err(PromqlError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    other.type_name()
                )));
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Value::Matrix(out)
    };
    ev.warnings.dedup();
    ev.infos.dedup();
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        infos: ev.infos,
        stats: QueryStats {
            total_queryable_samples: fetched.samples,
            peak_samples: ev.peak_samples,
        },
    })
}
