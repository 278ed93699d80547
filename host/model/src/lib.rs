//! The shared vocabulary: labels, label sets and their ordering, and label
//! matchers with Prometheus semantics. Nothing here knows about gRPC, HTTP or
//! storage formats.

use std::cmp::Ordering;
use std::fmt;

pub mod form;
pub mod time;

/// Name of the label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, sorted by name with unique names (Prometheus `labels.Labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// An empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order; on duplicate names the last wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        v.reverse();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|a, b| a.name == b.name);
        Labels(v)
    }

    /// Wraps labels already sorted by name with unique names.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Sets `name` to `value`, replacing an existing value.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => value.clone_into(&mut self.0[i].value),
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    /// Merges `other` into `self`; on a name clash `other` wins (Thanos'
    /// rule for external labels).
    pub fn extend_overriding(&mut self, other: &Labels) {
        if other.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + other.0.len());
        let mut a = std::mem::take(&mut self.0).into_iter().peekable();
        let mut b = other.0.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                    Ordering::Less => out.extend(a.next()),
                    Ordering::Greater => out.extend(b.next().cloned()),
                    Ordering::Equal => {
                        a.next();
                        out.extend(b.next().cloned());
                    }
                },
                (Some(_), None) => out.extend(a.by_ref()),
                (None, Some(_)) => out.extend(b.by_ref().cloned()),
                (None, None) => break,
            }
        }
        self.0 = out;
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    /// Keeps only the labels whose names satisfy `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|l| keep(&l.name));
    }

    /// Removes every label whose name is in `names`.
    pub fn remove_names(&mut self, names: &[String]) {
        if !names.is_empty() {
            self.0.retain(|l| !names.iter().any(|n| *n == l.name));
        }
    }
}

impl Ord for Labels {
    /// Prometheus `labels.Compare`: pairwise by name then value; a strict
    /// prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        compare_labels(&self.0, &other.0)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Prometheus `labels.Compare` over label slices.
pub fn compare_labels(a: &[Label], b: &[Label]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        match x.name.cmp(&y.name) {
            Ordering::Equal => {}
            o => return o,
        }
        match x.value.cmp(&y.value) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// The kind of a label matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        })
    }
}

/// A matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid regular expression in matcher {name}{op}{value:?}: {source}")]
    Regex {
        name: String,
        op: MatchOp,
        value: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// A label matcher with Prometheus 3.x semantics: regular expressions are RE2
/// syntax, fully anchored, and `.` matches a newline.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub op: MatchOp,
    pub name: String,
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher, compiling the regular expression for `=~` and `!~`.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(
                regex::RegexBuilder::new(&format!("^(?s:{value})$"))
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| MatcherError::Regex {
                        name: name.clone(),
                        op,
                        value: value.clone(),
                        source: Box::new(e),
                    })?,
            ),
            MatchOp::Eq | MatchOp::Neq => None,
        };
        Ok(Matcher {
            op,
            name,
            value,
            re,
        })
    }

    /// Whether `v` satisfies the matcher (an absent label has value "").
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Neq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            // `new` always compiles a regex for Re/Nre.
            (MatchOp::Re | MatchOp::Nre, None) => false,
        }
    }

    /// Whether the matcher matches a series against its label set.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

/// A selected series as sample columns: what the read path hands the PromQL
/// engine. Timestamps ascend; `values[i]` belongs to `timestamps[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedSeries {
    pub labels: Labels,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn compare_is_prometheus_order() {
        assert!(ls(&[("a", "1")]) < ls(&[("a", "1"), ("b", "1")]));
        assert!(ls(&[("a", "2")]) > ls(&[("a", "1"), ("b", "1")]));
        assert!(ls(&[("a", "1"), ("c", "1")]) > ls(&[("a", "1"), ("b", "9")]));
        assert_eq!(ls(&[("x", "y")]).cmp(&ls(&[("x", "y")])), Ordering::Equal);
    }

    #[test]
    fn external_labels_win() {
        let mut a = ls(&[("a", "1"), ("cluster", "series"), ("z", "2")]);
        a.extend_overriding(&ls(&[("cluster", "ext"), ("b", "3")]));
        assert_eq!(
            a,
            ls(&[("a", "1"), ("b", "3"), ("cluster", "ext"), ("z", "2")])
        );
    }

    #[test]
    fn regex_is_fully_anchored_and_dot_matches_newline() {
        let m = Matcher::new(MatchOp::Re, "job", "ap").unwrap();
        assert!(!m.matches("api"));
        let m = Matcher::new(MatchOp::Re, "job", "ap.*").unwrap();
        assert!(m.matches("api"));
        assert!(m.matches("ap\ni"));
        let m = Matcher::new(MatchOp::Nre, "job", "a|b").unwrap();
        assert!(!m.matches("a") && m.matches("ab"));
        assert!(Matcher::new(MatchOp::Re, "job", "(").is_err());
    }

    #[test]
    fn absent_label_is_empty() {
        let m = Matcher::new(MatchOp::Eq, "missing", "").unwrap();
        assert!(m.matches_labels(&ls(&[("a", "1")])));
        let m = Matcher::new(MatchOp::Neq, "a", "").unwrap();
        assert!(m.matches_labels(&ls(&[("a", "1")])));
    }
}
