//! The test-side vocabulary: label sets, samples compared bit for bit, Prometheus matchers evaluated
//! independently of the store, and the expected answer of a Series call derived from `promtool tsdb dump`.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use sluice_proto::thanos::{LabelMatcher, label_matcher};

/// A label set sorted by name. `Vec<(String, String)>`'s derived order is exactly Prometheus
/// `labels.Compare`: pairwise by name bytes then value bytes, a strict prefix first.
pub type Labels = Vec<(String, String)>;

/// Series name → samples, ordered by label set.
pub type SeriesMap = BTreeMap<Labels, Vec<Sample>>;

/// Build a sorted label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    l
}

/// The value of `name` in `l`, or "" when absent (Prometheus semantics).
pub fn label_value<'a>(l: &'a Labels, name: &str) -> &'a str {
    l.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// `{a="b", c="d"}` for messages.
pub fn fmt_labels(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Adds `ext` to `l`; on a name clash the external label wins (Thanos `ExtendSortedLabels`).
pub fn with_external(l: &Labels, ext: &Labels) -> Labels {
    let mut out: Labels = l
        .iter()
        .filter(|(n, _)| !ext.iter().any(|(en, _)| en == n))
        .cloned()
        .collect();
    out.extend(ext.iter().cloned());
    out.sort();
    out
}

/// Removes every label named in `without`.
pub fn without_labels(l: &Labels, without: &[&str]) -> Labels {
    l.iter()
        .filter(|(n, _)| !without.contains(&n.as_str()))
        .cloned()
        .collect()
}

/// One sample. Equality is on the exact f64 bits, except that any NaN equals any NaN (`promtool tsdb dump`
/// prints every NaN as `NaN`, losing the payload bits).
#[derive(Clone, Copy)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }

    /// The bits used for comparison: NaNs collapse to one value.
    pub fn key(&self) -> (i64, u64) {
        let bits = if self.v.is_nan() {
            f64::NAN.to_bits()
        } else {
            self.v.to_bits()
        };
        (self.t, bits)
    }
}

impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Sample {}

impl fmt::Debug for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {:?} [{:#018x}])", self.t, self.v, self.v.to_bits())
    }
}

/// Sorts by (timestamp, comparison bits): a canonical order for multisets of samples (e.g. two replicas merged).
pub fn sort_samples(s: &mut [Sample]) {
    s.sort_by_key(Sample::key);
}

/// Matcher type, mirroring `thanos.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

/// A matcher the test evaluates itself (regexes fully anchored, as in Prometheus) and sends to the store.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub op: MatchOp,
    pub name: String,
    pub value: String,
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Self {
        Self {
            op,
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> LabelMatcher {
        let ty = match self.op {
            MatchOp::Eq => label_matcher::Type::Eq,
            MatchOp::Neq => label_matcher::Type::Neq,
            MatchOp::Re => label_matcher::Type::Re,
            MatchOp::Nre => label_matcher::Type::Nre,
        };
        LabelMatcher {
            r#type: ty as i32,
            name: self.name.clone(),
            value: self.value.clone(),
        }
    }

    /// Whether a label set matches, by Prometheus semantics (a missing label has value "").
    pub fn matches(&self, l: &Labels) -> Result<bool> {
        let v = label_value(l, &self.name);
        Ok(match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Neq => v != self.value,
            MatchOp::Re => anchored(&self.value)?.is_match(v),
            MatchOp::Nre => !anchored(&self.value)?.is_match(v),
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

/// `name="value"`.
pub fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Eq, name, value)
}
/// `name!="value"`.
pub fn neq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Neq, name, value)
}
/// `name=~"re"`.
pub fn re(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Re, name, value)
}
/// `name!~"re"`.
pub fn nre(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Nre, name, value)
}

/// `{a="b", c=~"d"}` for messages.
pub fn fmt_matchers(ms: &[Matcher]) -> String {
    let inner: Vec<String> = ms.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(", "))
}

fn anchored(re: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?:{re})$")).with_context(|| format!("test matcher regex {re:?}"))
}

/// Whether every matcher matches `l`.
pub fn matches_all(ms: &[Matcher], l: &Labels) -> Result<bool> {
    for m in ms {
        if !m.matches(l)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A block as the store should see it: its half-open time range `[min_time, max_time)` from meta.json and the
/// external labels from its Thanos section (empty when there is none).
#[derive(Clone, Debug)]
pub struct ServedBlock {
    pub min_time: i64,
    pub max_time: i64,
    pub external: Labels,
}

/// The series a store serving `blocks` holds, derived from a whole-database `promtool tsdb dump`: each dump sample
/// goes to the block whose range holds its timestamp, under the dump labels extended by that block's external
/// labels. Samples outside every block are dropped.
pub fn expected_store(dump: &SeriesMap, blocks: &[ServedBlock]) -> SeriesMap {
    let mut out = SeriesMap::new();
    for (l, samples) in dump {
        for b in blocks {
            let in_block: Vec<Sample> = samples
                .iter()
                .copied()
                .filter(|s| s.t >= b.min_time && s.t < b.max_time)
                .collect();
            if in_block.is_empty() {
                continue;
            }
            out.entry(with_external(l, &b.external))
                .or_default()
                .extend(in_block);
        }
    }
    for s in out.values_mut() {
        sort_samples(s);
    }
    out
}

/// The answer to a Series request over `store` (the output of [`expected_store`]): series matching `ms` (evaluated
/// on the full label set, external labels included), labels in `without` removed (series that become equal are
/// merged, their samples unioned), samples restricted to `[mint, maxt]` inclusive, empty series dropped.
pub fn expected_select(
    store: &SeriesMap,
    ms: &[Matcher],
    mint: i64,
    maxt: i64,
    without: &[&str],
) -> Result<SeriesMap> {
    let mut out = SeriesMap::new();
    for (l, samples) in store {
        if !matches_all(ms, l)? {
            continue;
        }
        let in_range: Vec<Sample> = samples
            .iter()
            .copied()
            .filter(|s| s.t >= mint && s.t <= maxt)
            .collect();
        if in_range.is_empty() {
            continue;
        }
        out.entry(without_labels(l, without))
            .or_default()
            .extend(in_range);
    }
    for s in out.values_mut() {
        sort_samples(s);
    }
    Ok(out)
}

/// Label names of the given series (sorted, unique).
pub fn label_names_of<'a>(series: impl IntoIterator<Item = &'a Labels>) -> Vec<String> {
    let mut names: Vec<String> = series
        .into_iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Values of label `name` among the given series (sorted, unique, "" excluded).
pub fn label_values_of<'a>(
    series: impl IntoIterator<Item = &'a Labels>,
    name: &str,
) -> Vec<String> {
    let mut vals: Vec<String> = series
        .into_iter()
        .map(|l| label_value(l, name).to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    vals.sort();
    vals.dedup();
    vals
}

/// Compares two series maps and describes the first differences (label sets missing or extra, and for common
/// series the first differing sample), so a failure says what the store got wrong.
pub fn diff_series(what: &str, got: &SeriesMap, want: &SeriesMap) -> Result<()> {
    let mut problems = Vec::new();
    for l in want.keys() {
        if !got.contains_key(l) {
            problems.push(format!("missing series {}", fmt_labels(l)));
        }
    }
    for l in got.keys() {
        if !want.contains_key(l) {
            problems.push(format!("unexpected series {}", fmt_labels(l)));
        }
    }
    for (l, w) in want {
        let Some(g) = got.get(l) else { continue };
        if g == w {
            continue;
        }
        let first = g.iter().zip(w.iter()).position(|(a, b)| a != b);
        let detail = match first {
            Some(i) => format!(
                "first difference at index {i}: got {:?}, want {:?}",
                g[i], w[i]
            ),
            None => format!(
                "one is a prefix of the other: got {} samples, want {}",
                g.len(),
                w.len()
            ),
        };
        problems.push(format!(
            "series {}: got {} samples, want {}; {detail}",
            fmt_labels(l),
            g.len(),
            w.len()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    bail!(
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_order_is_prometheus_compare() {
        let a = labels(&[("a", "1")]);
        let ab = labels(&[("a", "1"), ("b", "1")]);
        let a2 = labels(&[("a", "2")]);
        assert!(a < ab, "a strict prefix sorts first");
        assert!(ab < a2, "value of the first differing pair decides");
        let upper = labels(&[("B", "1")]);
        assert!(upper < a, "bytewise: uppercase before lowercase");
    }

    #[test]
    fn external_labels_win() {
        let l = labels(&[("__name__", "x"), ("job", "api")]);
        let ext = labels(&[("job", "ext"), ("cluster", "eu")]);
        assert_eq!(
            with_external(&l, &ext),
            labels(&[("__name__", "x"), ("cluster", "eu"), ("job", "ext")])
        );
    }

    #[test]
    fn matchers_are_anchored_and_missing_is_empty() -> Result<()> {
        let l = labels(&[("job", "api")]);
        assert!(!re("job", "ap").matches(&l)?);
        assert!(re("job", "ap.*").matches(&l)?);
        assert!(nre("job", "ap").matches(&l)?);
        assert!(eq("phase", "").matches(&l)?);
        assert!(!neq("phase", "").matches(&l)?);
        assert!(re("phase", "").matches(&l)?);
        Ok(())
    }

    #[test]
    fn nan_equals_nan_but_zero_signs_differ() {
        let nan_payload = f64::from_bits(0x7ff8_0000_0000_0001);
        assert_eq!(Sample::new(1, nan_payload), Sample::new(1, f64::NAN));
        assert_ne!(Sample::new(1, 0.0), Sample::new(1, -0.0));
        assert_ne!(Sample::new(1, 1.0), Sample::new(2, 1.0));
    }

    #[test]
    fn diff_series_reports_bits_and_membership() {
        let l = labels(&[("a", "1")]);
        let mut want = SeriesMap::new();
        want.insert(l.clone(), vec![Sample::new(1, 0.0)]);
        let mut got = SeriesMap::new();
        got.insert(l.clone(), vec![Sample::new(1, -0.0)]);
        assert!(
            diff_series("x", &got, &want).is_err(),
            "0.0 vs -0.0 must differ"
        );
        assert!(
            diff_series("x", &SeriesMap::new(), &want).is_err(),
            "missing series"
        );
        assert!(
            diff_series("x", &want, &SeriesMap::new()).is_err(),
            "unexpected series"
        );
        assert!(diff_series("x", &want.clone(), &want).is_ok());
    }

    #[test]
    fn expected_select_merges_replicas() -> Result<()> {
        let mut store = SeriesMap::new();
        store.insert(
            labels(&[("a", "1"), ("replica", "A")]),
            vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
        );
        store.insert(
            labels(&[("a", "1"), ("replica", "B")]),
            vec![Sample::new(1, 1.0), Sample::new(3, 3.0)],
        );
        let got = expected_select(&store, &[eq("a", "1")], 0, 2, &["replica"])?;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[&labels(&[("a", "1")])],
            vec![
                Sample::new(1, 1.0),
                Sample::new(1, 1.0),
                Sample::new(2, 2.0)
            ]
        );
        Ok(())
    }
}
