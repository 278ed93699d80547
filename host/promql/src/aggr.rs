//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, …).

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{Ev, Grid, Series, Val, err};
use super::functions::{average, kahan_inc, quantile, variance};
use super::{PromqlError, format_value};
use sluice_model::Labels;

/// The labels of a series' group under `by`/`without`.
fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    let mut out = l.clone();
    match modifier {
        Some(LabelModifier::Include(by)) => out.retain(|n| by.labels.iter().any(|b| b == n)),
        Some(LabelModifier::Exclude(without)) => {
            out.retain(|n| n != "__name__" && !without.labels.iter().any(|b| b == n))
        }
        None => out = Labels::empty(),
    }
    out
}

/// Keeps the `k` best of `v` in rank order (NaN ranks last; among equal
/// values the earlier wins): O(n·k) in place for small k, a stable sort
/// otherwise.
fn select_top(v: &mut Vec<(f64, usize)>, k: usize, top: bool) {
    // Whether `a` ranks strictly before `b`.
    let better = |a: f64, b: f64| match (a.is_nan(), b.is_nan()) {
        (_, true) => !a.is_nan(),
        (true, false) => false,
        _ => {
            if top {
                a > b
            } else {
                a < b
            }
        }
    };
    if k > 32 || k >= v.len() {
        // Large k: a stable sort (ties keep input order), then cut.
        v.sort_by(|a, b| {
            if better(a.0, b.0) {
                std::cmp::Ordering::Less
            } else if better(b.0, a.0) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        v.truncate(k);
        return;
    }
    let mut len = 0usize;
    for idx in 0..v.len() {
        let x = v[idx];
        if len == k && !better(x.0, v[len - 1].0) {
            continue;
        }
        // Insert x into v[..len] (ranked), dropping the last when full.
        let pos = v[..len]
            .iter()
            .position(|y| better(x.0, y.0))
            .unwrap_or(len);
        let end = if len < k { len } else { len - 1 };
        let mut j = end;
        while j > pos {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[pos] = x;
        if len < k {
            len += 1;
        }
    }
    v.truncate(len);
}

/// Prometheus' `labels.Hash`: XXH64 over name, 0xff, value, 0xff, ….
fn label_hash(l: &Labels) -> u64 {
    let mut b = Vec::with_capacity(64);
    for l in l.iter() {
        b.extend_from_slice(l.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(l.value.as_bytes());
        b.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&b, 0)
}

/// Integer parameter of topk/bottomk/limitk.
fn int_param(f: f64) -> Result<i64, PromqlError> {
    if f.is_nan() {
        return err("Parameter value is NaN");
    }
    // Prometheus' convertibleToInt64: the largest float below 2^63, down to -2^63.
    if !(-9_223_372_036_854_775_808.0..=9_223_372_036_854_774_784.0).contains(&f) {
        return err(format!("Scalar value {} overflows int64", format_value(f)));
    }
    Ok(f as i64)
}

pub(crate) fn aggregate<'a>(
    ev: &mut Ev<'a>,
    a: &'a AggregateExpr,
    g: Grid,
) -> Result<Val<'a>, PromqlError> {
    let op = a.op.to_string();
    let mut param_scalar = None;
    let mut param_string = None;
    if let Some(p) = &a.param {
        if op == "count_values" {
            param_string = Some(ev.eval_string(p, g)?);
        } else {
            param_scalar = Some(ev.eval_scalar(p, g)?);
        }
    }
    let v = ev.eval_vector(&a.expr, g)?;

    // Groups in order of first appearance.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (si, s) in v.iter().enumerate() {
        let gl = group_labels(&s.labels, &a.modifier);
        let gi = *index.entry(gl.clone()).or_insert_with(|| {
            groups.push((gl, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push(si);
    }

    match op.as_str() {
        "limit_ratio" => {
            let ratios = param_scalar.unwrap_or_default();
            if let Some(r) = ratios.iter().find(|r| r.is_nan()) {
                let _ = r;
                return err("Ratio value is NaN");
            }
            let mut out = Vec::new();
            for s in v {
                let offset = label_hash(&s.labels) as f64 / u64::MAX as f64;
                let mut s = s;
                for (i, x) in s.vals.iter_mut().enumerate() {
                    let r = ratios[i].clamp(-1.0, 1.0);
                    let keep = if r >= 0.0 {
                        offset < r
                    } else {
                        offset >= 1.0 + r
                    };
                    if !keep {
                        *x = None;
                    }
                }
                if s.vals.iter().any(Option::is_some) {
                    out.push(s);
                }
            }
            Ok(Val::Vector(out))
        }
        "topk" | "bottomk" | "limitk" => {
            let k = param_scalar.unwrap_or_default();
            let top = op == "topk";
            let mut keep: Vec<Vec<Option<f64>>> = vec![Vec::new(); v.len()];
            let mut order: Vec<usize> = Vec::new();
            let mut seen = vec![false; v.len()];
            let mut present: Vec<(f64, usize)> = Vec::new();
            for i in 0..g.n {
                let k = int_param(k[i])?;
                if k < 1 {
                    continue;
                }
                for (_, members) in &groups {
                    present.clear();
                    present.extend(members.iter().filter_map(|&m| v[m].vals[i].map(|x| (x, m))));
                    if op == "limitk" {
                        present.truncate(k as usize);
                    } else {
                        select_top(&mut present, k as usize, top);
                    }
                    for &(x, m) in &present {
                        if keep[m].is_empty() {
                            keep[m] = vec![None; g.n];
                        }
                        keep[m][i] = Some(x);
                        if !seen[m] {
                            seen[m] = true;
                            order.push(m);
                        }
                    }
                }
            }
            // Instant queries keep the selection order (groups, then rank).
            let out = order
                .into_iter()
                .map(|m| Series {
                    labels: v[m].labels.clone(),
                    vals: std::mem::take(&mut keep[m]),
                })
                .collect();
            Ok(Val::Vector(out))
        }
        "count_values" => {
            let label = param_string.unwrap_or_default();
            if label.is_empty() || ev.invalid_utf8.contains(&label) {
                return err(format!("invalid label name {label:?}"));
            }
            let mut out: Vec<Series> = Vec::new();
            let mut out_index: HashMap<Labels, usize> = HashMap::new();
            for (gl, members) in &groups {
                for i in 0..g.n {
                    for &m in members {
                        if let Some(x) = v[m].vals[i] {
                            let mut l = gl.clone();
                            l.set(&label, &format_value(x));
                            let oi = *out_index.entry(l.clone()).or_insert_with(|| {
                                out.push(Series {
                                    labels: l,
                                    vals: vec![None; g.n],
                                });
                                out.len() - 1
                            });
                            let slot = &mut out[oi].vals[i];
                            *slot = Some(slot.unwrap_or(0.0) + 1.0);
                        }
                    }
                }
            }
            Ok(Val::Vector(out))
        }
        _ => {
            if op == "quantile"
                && let Some(q) = param_scalar
                    .as_ref()
                    .and_then(|q| q.iter().find(|q| !(0.0..=1.0).contains(*q)))
            {
                ev.warnings.push(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    format_value(*q)
                ));
            }
            let mut out = Vec::with_capacity(groups.len());
            let mut buf: Vec<f64> = Vec::new();
            for (gl, members) in groups {
                let mut vals = vec![None; g.n];
                for (i, slot) in vals.iter_mut().enumerate() {
                    buf.clear();
                    buf.extend(members.iter().filter_map(|&m| v[m].vals[i]));
                    if buf.is_empty() {
                        continue;
                    }
                    *slot = Some(match op.as_str() {
                        "sum" => {
                            let (s, c) =
                                buf.iter().fold((0.0, 0.0), |(s, c), &x| kahan_inc(x, s, c));
                            s + c
                        }
                        "avg" => average(buf.iter().copied()),
                        "count" => buf.len() as f64,
                        "group" => 1.0,
                        "max" => buf[1..]
                            .iter()
                            .fold(buf[0], |m, &x| if m < x || m.is_nan() { x } else { m }),
                        "min" => buf[1..]
                            .iter()
                            .fold(buf[0], |m, &x| if m > x || m.is_nan() { x } else { m }),
                        "stddev" => variance(buf.iter().copied()).sqrt(),
                        "stdvar" => variance(buf.iter().copied()),
                        "quantile" => {
                            let q = param_scalar.as_ref().map_or(f64::NAN, |q| q[i]);
                            quantile(q, &mut buf)
                        }
                        other => return err(format!("aggregation {other:?} is not supported")),
                    });
                }
                out.push(Series { labels: gl, vals });
            }
            Ok(Val::Vector(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::select_top;

    #[test]
    fn bounded_and_sorted_selection_agree() {
        // Values with ties and NaNs; the index tells which input won a tie.
        let vals = [3.0, f64::NAN, 1.0, 3.0, 7.0, 1.0, f64::NAN, 7.0, 2.0, 5.0];
        let input: Vec<(f64, usize)> = vals.iter().copied().zip(0..).collect();
        for top in [true, false] {
            let mut full = input.clone();
            select_top(&mut full, vals.len(), top);
            for k in 1..=vals.len() {
                let mut got = input.clone();
                select_top(&mut got, k, top);
                let want: Vec<usize> = full[..k].iter().map(|x| x.1).collect();
                let got: Vec<usize> = got.iter().map(|x| x.1).collect();
                assert_eq!(got, want, "k={k} top={top}");
            }
            // NaNs rank last either way; equal values keep input order.
            let order: Vec<usize> = full.iter().map(|x| x.1).collect();
            let expect = if top {
                [4, 7, 9, 0, 3, 8, 2, 5, 1, 6]
            } else {
                [2, 5, 8, 0, 3, 9, 4, 7, 1, 6]
            };
            assert_eq!(order, expect, "top={top}");
        }
    }
}
