//! PromQL functions, with Prometheus 3.x semantics (extrapolation, Kahan
//! summation, NaN ordering and metric-name dropping as upstream).

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};

use super::PromqlError;
use super::eval::{Ev, Grid, RangeVal, Series, Val, err};
use super::plan::matcher_sets;
use sluice_model::{Labels, MatchOp};

/// Neumaier-compensated addition: returns the new sum and compensation.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `math.Max`: NaN wins unless the other is +Inf.
#[inline]
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins unless the other is -Inf.
#[inline]
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Prometheus' `quantile`: linear interpolation between closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    // NaNs sort last in Go's sort.Float64s? They sort first there.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Welford variance with compensated sums (Prometheus' stdvar).
pub(crate) fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for f in values {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Prometheus' average: compensated sum, switching to an incremental mean
/// when the sum overflows.
pub(crate) fn average(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c, mut mean, mut kc) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    let mut count = 0.0;
    for f in values {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() || count == 1.0 {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            kc = c / (count - 1.0);
        }
        let q = (count - 1.0) / count;
        (mean, kc) = kahan_inc(f / count, q * mean, q * kc);
    }
    if incremental {
        mean + kc
    } else {
        sum / count + c / count
    }
}

/// Slope and intercept at `intercept_t` of the least-squares line.
fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = vs[0];
    let mut const_y = true;
    for (i, (&t, &v)) in ts.iter().zip(vs).enumerate() {
        if i > 0 && v != vs[i - 1] {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(v, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Running sum of counter-reset corrections: `c[i]` adds `vs[j-1]` for
/// every reset `vs[j] < vs[j-1]` with `j <= i`, so the correction inside a
/// window `lo..hi` is `c[hi-1] - c[lo]`, whatever its length.
fn reset_corrections(vs: &[f64]) -> Vec<f64> {
    let mut c = Vec::with_capacity(vs.len());
    let mut acc = 0.0;
    for (j, &v) in vs.iter().enumerate() {
        if j > 0 && v < vs[j - 1] {
            acc += vs[j - 1];
        }
        c.push(acc);
    }
    c
}

/// rate, increase and delta with Prometheus' extrapolation; `resets` is the
/// window's counter-reset correction (0 for delta).
fn extrapolated_rate(
    ts: &[i64],
    vs: &[f64],
    te: i64,
    range: i64,
    resets: f64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if ts.len() < 2 {
        return None;
    }
    let n = ts.len();
    let (first_v, last_v) = (vs[0], vs[n - 1]);
    let result = last_v - first_v + resets;
    let range_start = te - range;
    let mut to_start = (ts[0] - range_start) as f64 / 1e3;
    let mut to_end = (te - ts[n - 1]) as f64 / 1e3;
    let sampled = (ts[n - 1] - ts[0]) as f64 / 1e3;
    let avg = sampled / (n - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= range as f64 / 1e3;
    }
    Some(result * factor)
}

/// Functions over a range vector that keep the metric name.
fn keeps_name(name: &str) -> bool {
    matches!(name, "last_over_time" | "first_over_time")
}

/// Evaluates a function call.
pub(crate) fn call<'a>(ev: &mut Ev<'a>, c: &'a Call, g: Grid) -> Result<Val<'a>, PromqlError> {
    let name = c.func.name;
    let args: Vec<&'a Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if let Some(mi) = c
        .func
        .arg_types
        .iter()
        .position(|t| *t == ValueType::Matrix)
    {
        return range_function(ev, name, &args, mi, g);
    }
    match name {
        "time" => Ok(Val::Scalar(g.times().map(|t| t as f64 / 1e3).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; g.n])),
        "step" => Ok(Val::Scalar(vec![ev.query_step as f64 / 1e3; g.n])),
        "range" => Ok(Val::Scalar(vec![
            (ev.query_end - ev.query_start) as f64
                / 1e3;
            g.n
        ])),
        "start" => Ok(Val::Scalar(vec![ev.query_start as f64 / 1e3; g.n])),
        "end" => Ok(Val::Scalar(vec![ev.query_end as f64 / 1e3; g.n])),
        "min_of" | "max_of" => {
            let a = ev.eval_scalar(args[0], g)?;
            let b = ev.eval_scalar(args[1], g)?;
            Ok(Val::Scalar(
                a.iter()
                    .zip(&b)
                    .map(|(&x, &y)| {
                        if name == "min_of" {
                            go_min(x, y)
                        } else {
                            go_max(x, y)
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let v = ev.eval_scalar(args[0], g)?;
            Ok(Val::Vector(vec![Series {
                labels: Labels::empty(),
                vals: v.into_iter().map(Some).collect(),
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(args[0], g)?;
            Ok(Val::Scalar(
                (0..g.n)
                    .map(|i| {
                        let mut it = v.iter().filter_map(|s| s.vals[i]);
                        match (it.next(), it.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "absent" => {
            let v = ev.eval_vector(args[0], g)?;
            let labels = absent_labels(args[0])?;
            let vals: Vec<Option<f64>> = (0..g.n)
                .map(|i| (!v.iter().any(|s| s.vals[i].is_some())).then_some(1.0))
                .collect();
            Ok(Val::Vector(if vals.iter().any(Option::is_some) {
                vec![Series { labels, vals }]
            } else {
                vec![]
            }))
        }
        "timestamp" => {
            let v = match unparen(args[0]) {
                Expr::VectorSelector(vs) => ev.vector_selector(vs, g, true)?,
                _ => {
                    let mut v = ev.eval_vector(args[0], g)?;
                    for s in &mut v {
                        for (i, x) in s.vals.iter_mut().enumerate() {
                            if x.is_some() {
                                *x = Some(g.t(i) as f64 / 1e3);
                            }
                        }
                    }
                    v
                }
            };
            map_drop_name(ev, v, |x| x)
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(args[0], g)?;
            let mut label_args = Vec::new();
            for a in &args[1..] {
                label_args.push(ev.eval_string(a, g)?);
            }
            if ev.query_step != 0 {
                ev.warnings.push(
                    "PromQL warning: sort is ineffective for range queries since results are always ordered by labels".into(),
                );
            } else if g.n == 1 {
                sort_vector(&mut v, name, &label_args);
            }
            Ok(Val::Vector(v))
        }
        "label_replace" => label_replace(ev, &args, g),
        "label_join" => label_join(ev, &args, g),
        "histogram_quantile" => {
            let q = ev.eval_scalar(args[0], g)?;
            let v = ev.eval_vector(args[1], g)?;
            histogram_quantiles(ev, &v, &[q], None, g)
        }
        "histogram_quantiles" => {
            let v = ev.eval_vector(args[0], g)?;
            let label = ev.eval_string(args[1], g)?;
            let mut qs = Vec::new();
            for a in &args[2..] {
                qs.push(ev.eval_scalar(a, g)?);
            }
            histogram_quantiles(ev, &v, &qs, Some(&label), g)
        }
        "histogram_fraction" => {
            let lower = ev.eval_scalar(args[0], g)?;
            let upper = ev.eval_scalar(args[1], g)?;
            let v = ev.eval_vector(args[2], g)?;
            let groups = bucket_groups(ev, &v);
            let mut out = Vec::new();
            let mut buckets = Vec::new();
            for (labels, members) in groups {
                let mut vals = vec![None; g.n];
                for (i, slot) in vals.iter_mut().enumerate() {
                    buckets.clear();
                    buckets.extend(
                        members
                            .iter()
                            .filter_map(|&(le, si)| v[si].vals[i].map(|c| (le, c))),
                    );
                    if !buckets.is_empty() {
                        *slot = Some(bucket_fraction(lower[i], upper[i], &mut buckets));
                    }
                }
                if vals.iter().any(Option::is_some) {
                    out.push(Series { labels, vals });
                }
            }
            Ok(Val::Vector(ev.merge_same_labels(out)?))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.eval_vector(args[0], g)?;
            let a = ev.eval_scalar(args[1], g)?;
            let b = if name == "clamp" {
                ev.eval_scalar(args[2], g)?
            } else {
                vec![]
            };
            map_steps_drop_name(ev, v, |i, x| match name {
                "clamp" => {
                    if b[i] < a[i] {
                        None
                    } else {
                        Some(go_max(a[i], go_min(b[i], x)))
                    }
                }
                "clamp_min" => Some(go_max(a[i], x)),
                _ => Some(go_min(a[i], x)),
            })
        }
        "round" => {
            let v = ev.eval_vector(args[0], g)?;
            let to = match args.get(1) {
                Some(a) => ev.eval_scalar(a, g)?,
                None => vec![1.0; g.n],
            };
            map_steps_drop_name(ev, v, |i, x| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            let v = match args.first() {
                Some(a) => ev.eval_vector(a, g)?,
                None => vec![Series {
                    labels: Labels::empty(),
                    vals: g.times().map(|t| Some(t as f64 / 1e3)).collect(),
                }],
            };
            map_drop_name(ev, v, |x| date_part(name, x))
        }
        _ => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x: f64| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => f64::to_degrees,
                "rad" => f64::to_radians,
                _ if name.starts_with("histogram_") => {
                    // Native-histogram functions ignore float samples.
                    let _ = ev.eval_vector(args[0], g)?;
                    return Ok(Val::Vector(vec![]));
                }
                _ => return err(format!("function {name:?} is not supported")),
            };
            let v = ev.eval_vector(args[0], g)?;
            map_drop_name(ev, v, f)
        }
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Applies `f` to every value, dropping the metric name.
fn map_drop_name<'a>(
    ev: &Ev<'a>,
    v: Vec<Series>,
    f: impl Fn(f64) -> f64,
) -> Result<Val<'a>, PromqlError> {
    map_steps_drop_name(ev, v, |_, x| Some(f(x)))
}

fn map_steps_drop_name<'a>(
    ev: &Ev<'a>,
    mut v: Vec<Series>,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Val<'a>, PromqlError> {
    for s in &mut v {
        for (i, x) in s.vals.iter_mut().enumerate() {
            if let Some(val) = *x {
                *x = f(i, val);
            }
        }
        s.labels.remove("__name__");
    }
    v.retain(|s| s.vals.iter().any(Option::is_some));
    Ok(Val::Vector(ev.merge_same_labels(v)?))
}

/// The labels `absent` gives: equality matchers of a plain selector.
fn absent_labels(e: &Expr) -> Result<Labels, PromqlError> {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(Labels::empty()),
    };
    let sets = matcher_sets(vs)?;
    let mut l = Labels::empty();
    if sets.len() != 1 {
        return Ok(l);
    }
    let mut seen: Vec<&str> = Vec::new();
    for m in &sets[0] {
        if m.name == "__name__" {
            continue;
        }
        if m.op == MatchOp::Eq && !seen.contains(&m.name.as_str()) {
            l.set(&m.name, &m.value);
        } else {
            l.remove(&m.name);
        }
        seen.push(&m.name);
    }
    Ok(l)
}

fn sort_vector(v: &mut [Series], name: &str, label_args: &[String]) {
    let key = |s: &Series| s.vals[0].unwrap_or(f64::NAN);
    match name {
        "sort" => v.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            }
        }),
        "sort_desc" => v.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
            }
        }),
        _ => {
            let desc = name.ends_with("_desc");
            v.sort_by(|a, b| {
                let mut o = std::cmp::Ordering::Equal;
                for l in label_args {
                    o = natural_cmp(a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                    if o.is_ne() {
                        break;
                    }
                }
                if o.is_eq() {
                    o = a.labels.cmp(&b.labels);
                }
                if desc { o.reverse() } else { o }
            });
        }
    }
}

/// Natural order: digit runs compare by number.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let xe = x
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(x.len());
            let ye = y
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(y.len());
            let (xn, yn) = (&x[..xe], &y[..ye]);
            let xt = xn
                .iter()
                .position(|&c| c != b'0')
                .map_or(&xn[xn.len()..], |p| &xn[p..]);
            let yt = yn
                .iter()
                .position(|&c| c != b'0')
                .map_or(&yn[yn.len()..], |p| &yn[p..]);
            let o = xt.len().cmp(&yt.len()).then(xt.cmp(yt));
            if o.is_ne() {
                return o;
            }
            x = &x[xe..];
            y = &y[ye..];
        } else {
            if x[0] != y[0] {
                return x[0].cmp(&y[0]);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}

fn label_replace<'a>(ev: &mut Ev<'a>, args: &[&'a Expr], g: Grid) -> Result<Val<'a>, PromqlError> {
    let mut v = ev.eval_vector(args[0], g)?;
    let dst = ev.eval_string(args[1], g)?;
    let repl = ev.eval_string(args[2], g)?;
    let src = ev.eval_string(args[3], g)?;
    let re_s = ev.eval_string(args[4], g)?;
    let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|e| {
        PromqlError::Execution(format!(
            "invalid regular expression in label_replace(): {re_s}: {e}"
        ))
    })?;
    if !valid_label_name(&dst) || ev.invalid_utf8.contains(&dst) {
        return err(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
    }
    for s in &mut v {
        let val = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&val) {
            let mut out = String::new();
            caps.expand(&repl, &mut out);
            if out.is_empty() {
                s.labels.remove(&dst);
            } else {
                s.labels.set(&dst, &out);
            }
        }
    }
    Ok(Val::Vector(ev.merge_same_labels(v)?))
}

fn label_join<'a>(ev: &mut Ev<'a>, args: &[&'a Expr], g: Grid) -> Result<Val<'a>, PromqlError> {
    let mut v = ev.eval_vector(args[0], g)?;
    let dst = ev.eval_string(args[1], g)?;
    let sep = ev.eval_string(args[2], g)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        srcs.push(ev.eval_string(a, g)?);
    }
    if !valid_label_name(&dst) || ev.invalid_utf8.contains(&dst) {
        return err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
    }
    for s in &mut v {
        let joined = srcs
            .iter()
            .map(|l| s.labels.get(l).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        if joined.is_empty() {
            s.labels.remove(&dst);
        } else {
            s.labels.set(&dst, &joined);
        }
    }
    Ok(Val::Vector(ev.merge_same_labels(v)?))
}

/// Classic-bucket quantile (Prometheus' bucketQuantile).
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Coalesce equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(l) if l.0 == ub => l.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Force monotonicity.
    let mut fixed = false;
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
            fixed = true;
        }
    }
    if merged.len() < 2 {
        return (f64::NAN, fixed);
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, fixed);
    }
    let mut rank = q * observations;
    let b = merged.partition_point(|x| x.1 < rank);
    let b = b.min(merged.len() - 1);
    if b == merged.len() - 1 {
        return (merged[merged.len() - 2].0, fixed);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, fixed);
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), fixed)
}

/// Classic buckets grouped by series labels without `le` and the metric
/// name: `(le, series index)` per group. Series without a valid `le` are
/// reported in a warning.
fn bucket_groups(ev: &mut Ev<'_>, v: &[Series]) -> Vec<(Labels, Vec<(f64, usize)>)> {
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    for (si, s) in v.iter().enumerate() {
        let raw = s.labels.get("le").unwrap_or("");
        let Some(le) = parse_le(raw) else {
            ev.warnings.push(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                raw,
                s.labels.get("__name__").unwrap_or("")
            ));
            continue;
        };
        // Grouped with the metric name, which the result then drops: two
        // histograms differing only by name collide (Prometheus #9910).
        let mut l = s.labels.clone();
        l.remove("le");
        let gi = *index.entry(l.clone()).or_insert_with(|| {
            l.remove("__name__");
            groups.push((l, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((le, si));
    }
    groups
}

/// Go's `strconv.ParseFloat` for bucket bounds (`+Inf`, `1e3`, …).
fn parse_le(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok(),
    }
}

/// A quantile as a label value: integers keep one decimal ("1.0").
fn quantile_label(q: f64) -> String {
    if q.is_finite() && q.fract() == 0.0 && q.abs() < 1e15 {
        format!("{q:.1}")
    } else {
        super::format_value(q)
    }
}

fn histogram_quantiles<'a>(
    ev: &mut Ev<'a>,
    v: &[Series],
    qs: &[Vec<f64>],
    label: Option<&str>,
    g: Grid,
) -> Result<Val<'a>, PromqlError> {
    for q in qs {
        if let Some(bad) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            ev.warnings.push(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                super::format_value(*bad)
            ));
        }
    }
    let groups = bucket_groups(ev, v);
    let mut out = Vec::with_capacity(groups.len() * qs.len());
    let mut fixed_any = false;
    let mut buckets = Vec::new();
    for (labels, members) in groups {
        for q in qs {
            let mut vals = vec![None; g.n];
            for (i, slot) in vals.iter_mut().enumerate() {
                buckets.clear();
                buckets.extend(
                    members
                        .iter()
                        .filter_map(|&(le, si)| v[si].vals[i].map(|c| (le, c))),
                );
                if buckets.is_empty() {
                    continue;
                }
                let (r, fixed) = bucket_quantile(q[i], &mut buckets);
                fixed_any |= fixed;
                *slot = Some(r);
            }
            if vals.iter().any(Option::is_some) {
                let mut l = labels.clone();
                if let Some(name) = label {
                    if l.get(name).is_some() {
                        return err(format!(
                            "label {name:?} of histogram_quantiles() is already present in the series {labels}"
                        ));
                    }
                    l.set(name, &quantile_label(q[0]));
                }
                out.push(Series { labels: l, vals });
            }
        }
    }
    if fixed_any {
        ev.infos.push(
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity".into(),
        );
    }
    Ok(Val::Vector(ev.merge_same_labels(out)?))
}

/// Estimated share of observations in `[lower, upper]` from classic
/// buckets, interpolating linearly inside finite buckets (the first bucket
/// starts at 0 when its bound is positive).
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(l) if l.0 == ub => l.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let total = merged[merged.len() - 1].1;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut sum = 0.0;
    let mut prev_count = 0.0;
    for (i, &(hi, cum)) in merged.iter().enumerate() {
        let lo = if i == 0 {
            if hi > 0.0 { 0.0 } else { f64::NEG_INFINITY }
        } else {
            merged[i - 1].0
        };
        let c = cum - prev_count;
        prev_count = cum;
        if hi == f64::INFINITY {
            // No interpolation in an infinitely wide bucket: all or nothing.
            if upper == f64::INFINITY {
                sum += c;
            }
        } else if lo >= lower && hi <= upper {
            sum += c;
        } else if lo.is_finite() && hi.is_finite() && hi > lower && lo < upper {
            let a = lo.max(lower);
            let b = hi.min(upper);
            sum += c * (b - a) / (hi - lo);
        }
    }
    sum / total
}

/// Days since the epoch to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let secs = x as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let month_days = [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    match name {
        "minute" => ((sod / 60) % 60) as f64,
        "hour" => (sod / 3600) as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_month" => d as f64,
        "day_of_year" => (month_days[..(m - 1) as usize].iter().sum::<i64>() + d as i64) as f64,
        "days_in_month" => month_days[(m - 1) as usize] as f64,
        "month" => m as f64,
        _ => y as f64,
    }
}

/// Functions whose main argument is a range vector.
fn range_function<'a>(
    ev: &mut Ev<'a>,
    name: &'static str,
    args: &[&'a Expr],
    mi: usize,
    g: Grid,
) -> Result<Val<'a>, PromqlError> {
    let rv: RangeVal<'a> = ev.eval_range(args[mi], g)?;
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != mi {
            scalars.push(ev.eval_scalar(a, g)?);
        }
    }
    let p = |k: usize, i: usize| scalars.get(k).map_or(f64::NAN, |v| v[i]);
    if name == "absent_over_time" {
        let labels = absent_labels(args[mi])?;
        let mut vals = vec![Some(1.0); g.n];
        for s in &rv.series {
            rv.windows(s, g, |i, ts, _, _| {
                if !ts.is_empty() {
                    vals[i] = None;
                }
            });
        }
        return Ok(Val::Vector(if vals.iter().any(Option::is_some) {
            vec![Series { labels, vals }]
        } else {
            vec![]
        }));
    }
    if name == "quantile_over_time"
        && let Some(q) = scalars
            .first()
            .and_then(|q| q.iter().find(|q| !(0.0..=1.0).contains(*q)))
    {
        ev.warnings.push(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            super::format_value(*q)
        ));
    }

    let mut out = Vec::with_capacity(rv.series.len());
    let mut buf = Vec::new();
    if matches!(name, "rate" | "increase" | "delta") {
        let counter = name != "delta";
        for s in &rv.series {
            let corr = if counter {
                reset_corrections(&s.vs)
            } else {
                Vec::new()
            };
            let mut vals = vec![None; g.n];
            let mut any = false;
            rv.window_bounds(s, g, |i, lo, hi, te| {
                if hi - lo < 2 {
                    return;
                }
                let resets = if counter {
                    corr[hi - 1] - corr[lo]
                } else {
                    0.0
                };
                let r = extrapolated_rate(
                    &s.ts[lo..hi],
                    &s.vs[lo..hi],
                    te,
                    rv.range,
                    resets,
                    counter,
                    name == "rate",
                );
                if r.is_some() {
                    vals[i] = r;
                    any = true;
                }
            });
            if any {
                let mut labels = s.labels.clone().into_owned();
                labels.remove("__name__");
                out.push(Series { labels, vals });
            }
        }
        return Ok(Val::Vector(ev.merge_same_labels(out)?));
    }
    for s in &rv.series {
        let mut vals = vec![None; g.n];
        let mut any = false;
        rv.windows(s, g, |i, ts, vs, _te| {
            if ts.is_empty() {
                return;
            }
            let r = match name {
                "irate" | "idelta" => {
                    let n = ts.len();
                    if n < 2 {
                        None
                    } else {
                        let (prev, last) = (vs[n - 2], vs[n - 1]);
                        let dt = (ts[n - 1] - ts[n - 2]) as f64 / 1e3;
                        if name == "idelta" {
                            Some(last - prev)
                        } else if dt == 0.0 {
                            None
                        } else {
                            let d = if last < prev { last } else { last - prev };
                            Some(d / dt)
                        }
                    }
                }
                "deriv" => (ts.len() >= 2).then(|| linear_regression(ts, vs, ts[0]).0),
                "predict_linear" => (ts.len() >= 2).then(|| {
                    // The intercept is at the evaluation time, also under `@`.
                    let (slope, intercept) = linear_regression(ts, vs, g.t(i));
                    slope * p(0, i) + intercept
                }),
                "changes" => Some(
                    vs.windows(2)
                        .filter(|w| w[0] != w[1] && !(w[0].is_nan() && w[1].is_nan()))
                        .count() as f64,
                ),
                "resets" => Some(vs.windows(2).filter(|w| w[1] < w[0]).count() as f64),
                "avg_over_time" => Some(average(vs.iter().copied())),
                "sum_over_time" => {
                    let (s, c) = vs.iter().fold((0.0, 0.0), |(s, c), &v| kahan_inc(v, s, c));
                    Some(s + c)
                }
                "count_over_time" => Some(vs.len() as f64),
                "present_over_time" => Some(1.0),
                "last_over_time" => Some(vs[vs.len() - 1]),
                "first_over_time" => Some(vs[0]),
                "max_over_time" => Some(
                    vs[1..]
                        .iter()
                        .fold(vs[0], |m, &v| if v > m || m.is_nan() { v } else { m }),
                ),
                "min_over_time" => Some(
                    vs[1..]
                        .iter()
                        .fold(vs[0], |m, &v| if v < m || m.is_nan() { v } else { m }),
                ),
                "stddev_over_time" => Some(variance(vs.iter().copied()).sqrt()),
                "stdvar_over_time" => Some(variance(vs.iter().copied())),
                "quantile_over_time" => {
                    buf.clear();
                    buf.extend_from_slice(vs);
                    Some(quantile(p(0, i), &mut buf))
                }
                "mad_over_time" if vs.iter().any(|v| v.is_nan()) => Some(f64::NAN),
                "mad_over_time" => {
                    buf.clear();
                    buf.extend_from_slice(vs);
                    let med = quantile(0.5, &mut buf);
                    for x in buf.iter_mut() {
                        *x = (*x - med).abs();
                    }
                    Some(quantile(0.5, &mut buf))
                }
                "double_exponential_smoothing" | "holt_winters" => {
                    double_exponential_smoothing(vs, p(0, i), p(1, i))
                }
                "ts_of_max_over_time"
                | "ts_of_min_over_time"
                | "ts_of_last_over_time"
                | "ts_of_first_over_time" => {
                    let idx = match name {
                        "ts_of_last_over_time" => vs.len() - 1,
                        "ts_of_first_over_time" => 0,
                        "ts_of_max_over_time" => (0..vs.len()).fold(0, |m, k| {
                            if vs[k] >= vs[m] || vs[m].is_nan() {
                                k
                            } else {
                                m
                            }
                        }),
                        _ => (0..vs.len()).fold(0, |m, k| {
                            if vs[k] <= vs[m] || vs[m].is_nan() {
                                k
                            } else {
                                m
                            }
                        }),
                    };
                    Some(ts[idx] as f64 / 1e3)
                }
                _ => None,
            };
            if let Some(r) = r {
                vals[i] = Some(r);
                any = true;
            }
        });
        if any {
            let mut labels = s.labels.clone().into_owned();
            if !keeps_name(name) {
                labels.remove("__name__");
            }
            out.push(Series { labels, vals });
        }
    }
    if !matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "present_over_time"
            | "last_over_time"
            | "first_over_time"
            | "max_over_time"
            | "min_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "double_exponential_smoothing"
            | "holt_winters"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
    ) {
        return err(format!("function {name:?} is not supported"));
    }
    Ok(Val::Vector(ev.merge_same_labels(out)?))
}

fn double_exponential_smoothing(vs: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if vs.len() < 2 || !(sf > 0.0 && sf < 1.0) || !(tf > 0.0 && tf < 1.0) {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, vs[0], vs[1] - vs[0]);
    for (i, &x) in vs.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}
