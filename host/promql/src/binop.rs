//! Binary operators: arithmetic, comparisons and set operators, with
//! vector matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::PromqlError;
use super::eval::{Ev, Grid, Series, Val, err};
use sluice_model::Labels;

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Applies `op`; the flag says whether a comparison kept the element.
#[inline]
fn apply(op: &str, a: f64, b: f64) -> (f64, bool) {
    match op {
        "+" => (a + b, true),
        "-" => (a - b, true),
        "*" => (a * b, true),
        "/" => (a / b, true),
        "%" => (a % b, true),
        "^" => (a.powf(b), true),
        "atan2" => (a.atan2(b), true),
        "==" => (a, a == b),
        "!=" => (a, a != b),
        ">" => (a, a > b),
        "<" => (a, a < b),
        ">=" => (a, a >= b),
        "<=" => (a, a <= b),
        _ => (f64::NAN, false),
    }
}

/// The matching signature of a label set.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    let mut s = l.clone();
    match matching {
        Some(LabelModifier::Include(on)) => s.retain(|n| on.labels.iter().any(|x| x == n)),
        Some(LabelModifier::Exclude(ign)) => {
            s.retain(|n| n != "__name__" && !ign.labels.iter().any(|x| x == n))
        }
        None => s.remove("__name__"),
    }
    s
}

/// Interns signatures as small integers.
fn sig_ids(
    v: &[Series],
    matching: &Option<LabelModifier>,
    ids: &mut HashMap<Labels, u32>,
    names: &mut Vec<Labels>,
) -> Vec<u32> {
    v.iter()
        .map(|s| {
            let sig = signature(&s.labels, matching);
            *ids.entry(sig.clone()).or_insert_with(|| {
                names.push(sig);
                (names.len() - 1) as u32
            })
        })
        .collect()
}

pub(crate) fn binary<'a>(
    ev: &mut Ev<'a>,
    b: &'a BinaryExpr,
    g: Grid,
) -> Result<Val<'a>, PromqlError> {
    let op = b.op.to_string();
    let op = op.as_str();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, g)?;
    let rhs = ev.eval(&b.rhs, g)?;
    let drop_name = !is_comparison(op) || return_bool;
    match (lhs, rhs) {
        (Val::Scalar(a), Val::Scalar(c)) => Ok(Val::Scalar(
            a.iter()
                .zip(&c)
                .map(|(&x, &y)| {
                    let (v, keep) = apply(op, x, y);
                    if is_comparison(op) {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => {
            vector_scalar(ev, op, v, &s, false, return_bool, drop_name)
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            vector_scalar(ev, op, v, &s, true, return_bool, drop_name)
        }
        (Val::Vector(l), Val::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let card = b
                .modifier
                .as_ref()
                .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
            match op {
                "and" | "or" | "unless" => Ok(Val::Vector(
                    ev.merge_same_labels(set_op(op, l, r, &matching))?,
                )),
                _ => vector_vector(ev, op, l, r, &matching, &card, return_bool, drop_name),
            }
        }
        (l, r) => err(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        )),
    }
}

fn vector_scalar<'a>(
    ev: &Ev<'a>,
    op: &str,
    mut v: Vec<Series>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
    drop_name: bool,
) -> Result<Val<'a>, PromqlError> {
    let cmp = is_comparison(op);
    for series in &mut v {
        for (i, slot) in series.vals.iter_mut().enumerate() {
            let Some(x) = *slot else { continue };
            let (lv, rv) = if scalar_left { (s[i], x) } else { (x, s[i]) };
            let (mut val, mut keep) = apply(op, lv, rv);
            if cmp && scalar_left {
                val = rv;
            }
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            *slot = keep.then_some(val);
        }
        if drop_name {
            series.labels.remove("__name__");
        }
    }
    v.retain(|s| s.vals.iter().any(Option::is_some));
    Ok(Val::Vector(ev.merge_same_labels(v)?))
}

fn set_op(
    op: &str,
    l: Vec<Series>,
    r: Vec<Series>,
    matching: &Option<LabelModifier>,
) -> Vec<Series> {
    let mut ids = HashMap::new();
    let mut names = Vec::new();
    let lsig = sig_ids(&l, matching, &mut ids, &mut names);
    let rsig = sig_ids(&r, matching, &mut ids, &mut names);
    let n = l.first().or(r.first()).map_or(0, |s| s.vals.len());
    // Presence of each signature per step on one side.
    let presence = |v: &[Series], sig: &[u32]| {
        let mut p = vec![vec![false; n]; names.len()];
        for (s, &id) in v.iter().zip(sig) {
            for (i, x) in s.vals.iter().enumerate() {
                if x.is_some() {
                    p[id as usize][i] = true;
                }
            }
        }
        p
    };
    match op {
        "and" | "unless" => {
            let rp = presence(&r, &rsig);
            let want = op == "and";
            let mut out = l;
            for (s, &id) in out.iter_mut().zip(&lsig) {
                for (i, x) in s.vals.iter_mut().enumerate() {
                    if rp[id as usize][i] != want {
                        *x = None;
                    }
                }
            }
            out.retain(|s| s.vals.iter().any(Option::is_some));
            out
        }
        _ => {
            let lp = presence(&l, &lsig);
            let mut out = l;
            for (mut s, &id) in r.into_iter().zip(&rsig) {
                for (i, x) in s.vals.iter_mut().enumerate() {
                    if lp[id as usize][i] {
                        *x = None;
                    }
                }
                if s.vals.iter().any(Option::is_some) {
                    out.push(s);
                }
            }
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_vector<'a>(
    ev: &Ev<'a>,
    op: &str,
    l: Vec<Series>,
    r: Vec<Series>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
    drop_name: bool,
) -> Result<Val<'a>, PromqlError> {
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    // The rhs is always the "one" side.
    let (many, one) = if one_to_many { (r, l) } else { (l, r) };
    let mut ids = HashMap::new();
    let mut names = Vec::new();
    let msig = sig_ids(&many, matching, &mut ids, &mut names);
    let osig = sig_ids(&one, matching, &mut ids, &mut names);
    let n = many.first().or(one.first()).map_or(0, |s| s.vals.len());
    let nsig = names.len();
    let mut one_step = vec![usize::MAX; nsig];
    let mut one_sel = vec![0usize; nsig];
    let mut matched_step = vec![usize::MAX; nsig];
    let mut out: Vec<Series> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    let cmp = is_comparison(op);
    for i in 0..n {
        for (j, s) in one.iter().enumerate() {
            if s.vals[i].is_none() {
                continue;
            }
            let id = osig[j] as usize;
            if one_step[id] == i {
                let side = if one_to_many { "left" } else { "right" };
                return err(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    names[id], s.labels, one[one_sel[id]].labels
                ));
            }
            one_step[id] = i;
            one_sel[id] = j;
        }
        for (k, s) in many.iter().enumerate() {
            let Some(mv) = s.vals[i] else { continue };
            let id = msig[k] as usize;
            if one_step[id] != i {
                continue;
            }
            let j = one_sel[id];
            let ov = one[j].vals[i].unwrap_or(f64::NAN);
            let (fl, fr) = if one_to_many { (ov, mv) } else { (mv, ov) };
            if matches!(card, VectorMatchCardinality::OneToOne) {
                if matched_step[id] == i {
                    return err(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    );
                }
                matched_step[id] = i;
            }
            let (mut val, keep) = apply(op, fl, fr);
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
            } else if cmp && !keep {
                continue;
            }
            let oi = match pair_out.get(&(k, j)) {
                Some(&oi) => oi,
                None => {
                    let labels = result_labels(
                        &s.labels,
                        &one[j].labels,
                        matching,
                        card,
                        &include,
                        drop_name,
                    );
                    let oi = *out_index.entry(labels.clone()).or_insert_with(|| {
                        out.push(Series {
                            labels,
                            vals: vec![None; n],
                        });
                        out.len() - 1
                    });
                    pair_out.insert((k, j), oi);
                    oi
                }
            };
            let slot = &mut out[oi].vals[i];
            if slot.is_some() {
                return err(if matches!(card, VectorMatchCardinality::OneToOne) {
                    "vector cannot contain metrics with the same labelset"
                } else {
                    "multiple matches for labels: grouping labels must ensure unique matches"
                });
            }
            *slot = Some(val);
        }
    }
    let _ = ev;
    Ok(Val::Vector(out))
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    include: &[String],
    drop_name: bool,
) -> Labels {
    let mut l = many.clone();
    if drop_name {
        l.remove("__name__");
    }
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(on)) => l.retain(|n| on.labels.iter().any(|x| x == n)),
            Some(LabelModifier::Exclude(ign)) => l.retain(|n| !ign.labels.iter().any(|x| x == n)),
            None => {}
        }
    }
    for name in include {
        match one.get(name) {
            Some(v) if !v.is_empty() => l.set(name, v),
            _ => l.remove(name),
        }
    }
    l
}
