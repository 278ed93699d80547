//! Planning: which series each selector needs over which time range, and
//! fetching them all concurrently before evaluation starts.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::engine::{EngineOpts, PromqlError};
use super::storage::{SelectHints, SeriesSet, Storage};
use sluice_model::SelectedSeries;
use sluice_model::{MatchOp, Matcher};

/// Identity of a selector node: its address in the parsed expression, which
/// is borrowed unchanged from planning to the end of evaluation.
pub(crate) type SelectorId = usize;

pub(crate) fn selector_id(vs: &VectorSelector) -> SelectorId {
    vs as *const VectorSelector as usize
}

/// Milliseconds of a parser duration.
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    // Clamped so that time arithmetic on the results never overflows.
    d.as_millis().min(crate::limits::MAX_TIME_MS as u128) as i64
}

/// Signed milliseconds of an `offset`.
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

/// Milliseconds since the epoch of a time (negative before it).
pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

/// The time an `@` modifier pins to, given the query's start and end.
pub(crate) fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// Converts a parser matcher into ours (same RE2 semantics, fully anchored).
pub(crate) fn convert_matcher(m: &PMatcher) -> Result<Matcher, PromqlError> {
    let op = match m.op {
        PMatchOp::Equal => MatchOp::Eq,
        PMatchOp::NotEqual => MatchOp::Neq,
        PMatchOp::Re(_) => MatchOp::Re,
        PMatchOp::NotRe(_) => MatchOp::Nre,
    };
    Matcher::new(op, m.name.clone(), m.value.clone())
        .map_err(|e| PromqlError::BadData(e.to_string()))
}

/// The matcher sets of a selector: one per `or` alternative. The metric name
/// of `foo{…}` is already one of the parser's matchers.
pub(crate) fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, PromqlError> {
    let mut base = vs
        .matchers
        .matchers
        .iter()
        .map(convert_matcher)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(name) = &vs.name
        && !base.iter().any(|m| m.name == "__name__")
    {
        base.push(
            Matcher::new(MatchOp::Eq, "__name__", name.clone())
                .map_err(|e| PromqlError::BadData(e.to_string()))?,
        );
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|alt| {
            let mut set = base.clone();
            for m in alt {
                set.push(convert_matcher(m)?);
            }
            Ok(set)
        })
        .collect()
}

/// What one selector needs.
#[derive(Debug, Clone)]
pub(crate) struct SelectorNeed {
    pub hints: SelectHints,
    pub sets: Vec<Vec<Matcher>>,
}

/// The query's plan: evaluation grid and per-selector fetches.
#[derive(Debug)]
pub(crate) struct Plan {
    pub start: i64,
    pub end: i64,
    /// 0 for an instant query.
    pub step: i64,
    pub needs: HashMap<SelectorId, SelectorNeed>,
    /// Every selector node → the node whose fetch it shares. Identical
    /// selectors with the same hints (`rate(x[5m]) / sum(rate(x[5m]))`) are
    /// fetched once.
    pub aliases: HashMap<SelectorId, SelectorId>,
    /// Sharing key → canonical node.
    keys: HashMap<String, SelectorId>,
    /// String literals that are invalid UTF-8 in Prometheus (see
    /// `engine::invalid_utf8_literals`), as the parser decoded them.
    pub invalid_utf8: std::collections::HashSet<String>,
}

/// Fetched series per selector, sorted by labels, without duplicates.
pub(crate) type Fetched = HashMap<SelectorId, Vec<SelectedSeries>>;

/// The fetched data and what storage warned about.
pub(crate) struct FetchResult {
    pub series: Fetched,
    pub warnings: Vec<String>,
    pub samples: u64,
    /// The storages' guards, dropped with the fetched data after evaluation.
    pub _guards: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

struct Ctx<'a> {
    query_start: i64,
    query_end: i64,
    step: i64,
    opts: &'a EngineOpts,
}

impl Plan {
    pub fn new(
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        opts: &EngineOpts,
    ) -> Result<Self, PromqlError> {
        let mut plan = Plan {
            start,
            end,
            step,
            needs: HashMap::new(),
            aliases: HashMap::new(),
            keys: HashMap::new(),
            invalid_utf8: Default::default(),
        };
        let ctx = Ctx {
            query_start: start,
            query_end: end,
            step,
            opts,
        };
        plan.walk(expr, &ctx, start, end, &Parent::default())?;
        Ok(plan)
    }

    fn walk(
        &mut self,
        expr: &Expr,
        ctx: &Ctx<'_>,
        start: i64,
        end: i64,
        parent: &Parent,
    ) -> Result<(), PromqlError> {
        match expr {
            Expr::VectorSelector(vs) => {
                self.selector(vs, ctx, start, end, ctx.opts.lookback_delta, 0, parent)?;
            }
            Expr::MatrixSelector(ms) => {
                let r = dur_ms(&ms.range);
                self.selector(&ms.vs, ctx, start, end, r, r, parent)?;
            }
            Expr::Subquery(sq) => {
                let o = offset_ms(&sq.offset);
                let r = dur_ms(&sq.range);
                let (s, e) = match at_ms(&sq.at, ctx.query_start, ctx.query_end) {
                    Some(t) => (t, t),
                    None => (start, end),
                };
                let p = Parent {
                    range: r,
                    ..parent.clone()
                };
                self.walk(&sq.expr, ctx, s - o - r, e - o, &p)?;
            }
            Expr::Aggregate(a) => {
                let (grouping, by) = match &a.modifier {
                    Some(promql_parser::parser::LabelModifier::Include(l)) => {
                        (l.labels.clone(), true)
                    }
                    Some(promql_parser::parser::LabelModifier::Exclude(l)) => {
                        (l.labels.clone(), false)
                    }
                    None => (vec![], true),
                };
                let p = Parent {
                    func: a.op.to_string(),
                    grouping,
                    by,
                    ..parent.clone()
                };
                if let Some(param) = &a.param {
                    self.walk(param, ctx, start, end, parent)?;
                }
                self.walk(&a.expr, ctx, start, end, &p)?;
            }
            Expr::Call(c) => {
                let p = Parent {
                    func: c.func.name.to_string(),
                    ..parent.clone()
                };
                for a in &c.args.args {
                    self.walk(a, ctx, start, end, &p)?;
                }
            }
            Expr::Binary(b) => {
                // As Prometheus: hints describe a function or aggregation over
                // a single metric, so a binary operation ends the context.
                let p = Parent::default();
                self.walk(&b.lhs, ctx, start, end, &p)?;
                self.walk(&b.rhs, ctx, start, end, &p)?;
            }
            Expr::Unary(u) => self.walk(&u.expr, ctx, start, end, parent)?,
            Expr::Paren(p) => self.walk(&p.expr, ctx, start, end, parent)?,
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn selector(
        &mut self,
        vs: &VectorSelector,
        ctx: &Ctx<'_>,
        start: i64,
        end: i64,
        window: i64,
        range: i64,
        parent: &Parent,
    ) -> Result<(), PromqlError> {
        let o = offset_ms(&vs.offset);
        let (s, e) = match at_ms(&vs.at, ctx.query_start, ctx.query_end) {
            Some(t) => (t, t),
            None => (start, end),
        };
        // Windows are left-open: (t - window, t].
        let (lo, hi) = (s - o - window + 1, e - o);
        let sets = matcher_sets(vs)?;
        let hint_range = if range > 0 { range } else { parent.range };
        let key = format!(
            "{:?}|{o}|{}|{hint_range}|{:?}|{}",
            sets.iter()
                .map(|set| set.iter().map(ToString::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            parent.func,
            parent.grouping,
            parent.by
        );
        let id = *self.keys.entry(key).or_insert_with(|| selector_id(vs));
        self.aliases.insert(selector_id(vs), id);
        let need = self.needs.entry(id).or_insert_with(|| SelectorNeed {
            hints: SelectHints {
                matchers: sets.first().cloned().unwrap_or_default(),
                start: lo,
                end: hi,
                step: ctx.step,
                range: hint_range,
                func: parent.func.clone(),
                grouping: parent.grouping.clone(),
                by: parent.by,
            },
            sets: sets.clone(),
        });
        need.hints.start = need.hints.start.min(lo);
        need.hints.end = need.hints.end.max(hi);
        Ok(())
    }

    /// Fetches every selector's series concurrently.
    pub async fn fetch(&self, storage: &dyn Storage) -> Result<FetchResult, PromqlError> {
        let mut calls = Vec::new();
        for (&id, need) in &self.needs {
            for set in &need.sets {
                let hints = SelectHints {
                    matchers: set.clone(),
                    ..need.hints.clone()
                };
                calls.push(async move { (id, storage.select(hints).await) });
            }
        }
        let results = futures::future::join_all(calls).await;
        let mut out: Fetched = HashMap::new();
        let mut warnings = Vec::new();
        let mut samples = 0u64;
        let mut guards = Vec::new();
        for (id, r) in results {
            let SeriesSet {
                series,
                warnings: w,
                guards: g,
            } = r.map_err(PromqlError::Execution)?;
            warnings.extend(w);
            guards.extend(g);
            samples += series
                .iter()
                .map(|s| s.timestamps.len() as u64)
                .sum::<u64>();
            out.entry(id).or_default().extend(series);
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v.dedup_by(|a, b| a.labels == b.labels);
        }
        warnings.sort();
        warnings.dedup();
        Ok(FetchResult {
            series: out,
            warnings,
            samples,
            _guards: guards,
        })
    }
}

/// Context inherited from enclosing nodes, passed to storage as hints.
#[derive(Debug, Clone, Default)]
struct Parent {
    func: String,
    range: i64,
    grouping: Vec<String>,
    by: bool,
}
