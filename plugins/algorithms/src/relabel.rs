//! Prometheus `relabel_config` semantics (`model/relabel`): every action,
//! Prometheus's defaults and its configuration checks, applied in order to
//! label sets; a set can be rewritten or dropped.

use regex::{Captures, Regex};
use serde::Deserialize;

use crate::md5::md5;
use crate::promql::{anchored_regex, is_valid_label_name};

/// Default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// Default `regex` (anchored to `^(?s:(.*))$`).
pub const DEFAULT_REGEX: &str = "(.*)";
/// Default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabeling step, with the field names of Prometheus's YAML
/// `relabel_config`. Absent fields take Prometheus's defaults.
///
/// Example: `{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}`
/// copies the namespace into `namespace`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` (a missing label gives
    /// the empty string) to form the value that `regex` is matched against.
    pub source_labels: Option<Vec<String>>,
    /// Placed between the joined source label values. Default `";"`.
    pub separator: Option<String>,
    /// Label written by `replace` (may use `$1`/`${name}` references),
    /// `hashmod`, `lowercase` and `uppercase`, or compared by `keepequal` and
    /// `dropequal`.
    pub target_label: Option<String>,
    /// RE2-style regular expression, anchored at both ends (`ap` does not
    /// match `api`; write `ap.*`). Default `"(.*)"`.
    pub regex: Option<String>,
    /// For `hashmod`: the result is `md5(joined value)` (last 8 bytes, big
    /// endian) modulo this. Required and non-zero for `hashmod`.
    pub modulus: Option<u64>,
    /// For `replace` and `labelmap`: the new value (`replace`) or label name
    /// (`labelmap`), with `$1`, `${1}`, `$name` and `${name}` replaced by the
    /// regex's capture groups and `$$` by `$`. Default `"$1"`.
    pub replacement: Option<String>,
    /// One of `replace` (default), `keep`, `drop`, `keepequal`, `dropequal`,
    /// `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, `lowercase`,
    /// `uppercase` (case-insensitive, as in Prometheus).
    pub action: Option<String>,
}

/// The relabel policy's configuration file: `{"relabel_configs": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelFile {
    /// Steps applied in order to every label set.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
}

/// A relabel action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// Parses an action name, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return Err(format!("unknown relabel action {s:?}")),
        })
    }

    /// The lower-case name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

/// A validated, compiled relabel step.
#[derive(Debug, Clone)]
struct Rule {
    source_labels: Vec<String>,
    separator: String,
    target: String,
    target_has_var: bool,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

/// Applies a list of relabel configs, in order, to label sets.
#[derive(Debug, Clone, Default)]
pub struct Relabeler {
    rules: Vec<Rule>,
}

impl Relabeler {
    /// Validates and compiles the configs. The error lists every problem,
    /// each prefixed with the config's index (`relabel_configs[2]: ...`).
    pub fn new(configs: Vec<RelabelConfig>) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(configs.len());
        let mut errors = Vec::new();
        for (i, c) in configs.into_iter().enumerate() {
            match compile(c) {
                Ok(r) => rules.push(r),
                Err(e) => errors.push(format!("relabel_configs[{i}]: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Relabeler { rules })
        } else {
            Err(errors.join("; "))
        }
    }

    /// Parses `{"relabel_configs": [...]}` or a bare JSON array of configs;
    /// empty text or `null` means no steps (label sets pass unchanged).
    pub fn from_json(config: &str) -> Result<Self, String> {
        if crate::is_empty_config(config) {
            return Ok(Self::default());
        }
        let configs = if config.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<RelabelConfig>>(config)
        } else {
            serde_json::from_str::<RelabelFile>(config).map(|f| f.relabel_configs)
        }
        .map_err(|e| format!("invalid relabel config: {e}"))?;
        Self::new(configs)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every step in order. `labels` are (name, value) pairs; labels
    /// with an empty value count as absent (Prometheus semantics) and, should
    /// a name repeat, its first value is used. Returns the new label set,
    /// sorted by name with unique names and no empty values, or `None` if a
    /// step dropped it or no label is left.
    pub fn relabel(&self, labels: &[(String, String)]) -> Option<Vec<(String, String)>> {
        let mut b = Builder::new(labels);
        for r in &self.rules {
            if !r.apply(&mut b) {
                return None;
            }
        }
        let out = b.labels();
        if out.is_empty() { None } else { Some(out) }
    }
}

/// Go's `relabelTarget`: names with `$var`/`${var}` references.
fn is_valid_target_template(s: &str) -> bool {
    use std::sync::OnceLock;
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$").ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(s))
}

/// Whether a template references a capture group (Go `varInRegexTemplate`).
fn has_var(template: &str) -> bool {
    template.contains('$')
}

fn compile(c: RelabelConfig) -> Result<Rule, String> {
    let action = match c.action.as_deref() {
        None => Action::Replace,
        Some("") => return Err("relabel action cannot be empty".into()),
        Some(a) => Action::parse(a)?,
    };
    let name = action.name();
    let mut errs: Vec<String> = Vec::new();
    let target = c.target_label.clone().unwrap_or_default();
    let separator = c
        .separator
        .clone()
        .unwrap_or_else(|| DEFAULT_SEPARATOR.into());
    let replacement = c
        .replacement
        .clone()
        .unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
    let modulus = c.modulus.unwrap_or(0);
    let regex_src = c.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.into());

    for l in c.source_labels.iter().flatten() {
        if !is_valid_label_name(l) {
            errs.push(format!("{l:?} is not a valid label name in source_labels"));
        }
    }
    let regex = anchored_regex(&regex_src).map_err(|e| errs.push(e)).ok();

    use Action::*;
    if action == HashMod && modulus == 0 {
        errs.push("relabel configuration for hashmod requires non-zero modulus".into());
    }
    if matches!(
        action,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    ) {
        // Only replace may build its target from capture groups.
        let valid = if action == Replace && has_var(&target) {
            is_valid_target_template(&target)
        } else {
            is_valid_label_name(&target)
        };
        if target.is_empty() {
            errs.push(format!(
                "relabel configuration for {name} action requires 'target_label' value"
            ));
        } else if !valid {
            errs.push(format!(
                "{target:?} is invalid 'target_label' for {name} action"
            ));
        }
    }
    if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
        && replacement != DEFAULT_REPLACEMENT
    {
        errs.push(format!("'replacement' can not be set for {name} action"));
    }
    if action == LabelMap && !is_valid_target_template(&replacement) {
        errs.push(format!(
            "{replacement:?} is invalid 'replacement' for {name} action"
        ));
    }
    if matches!(action, KeepEqual | DropEqual)
        && (regex_src != DEFAULT_REGEX
            || modulus != 0
            || separator != DEFAULT_SEPARATOR
            || replacement != DEFAULT_REPLACEMENT)
    {
        errs.push(format!(
            "{name} action requires only 'source_labels' and 'target_label', and no other fields"
        ));
    }
    if matches!(action, LabelDrop | LabelKeep)
        && (c.source_labels.is_some()
            || !target.is_empty()
            || modulus != 0
            || separator != DEFAULT_SEPARATOR
            || replacement != DEFAULT_REPLACEMENT)
    {
        errs.push(format!(
            "{name} action requires only 'regex', and no other fields"
        ));
    }
    match regex {
        Some(regex) if errs.is_empty() => Ok(Rule {
            source_labels: c.source_labels.unwrap_or_default(),
            separator,
            target_has_var: has_var(&target),
            target,
            regex,
            modulus,
            replacement,
            action,
        }),
        _ => Err(errs.join("; ")),
    }
}

impl Rule {
    /// Applies the step; false means the label set is dropped.
    fn apply(&self, b: &mut Builder) -> bool {
        let val = self.source_value(b);
        match self.action {
            Action::Drop => return !self.regex.is_match(&val),
            Action::Keep => return self.regex.is_match(&val),
            Action::DropEqual => return b.get(&self.target) != val,
            Action::KeepEqual => return b.get(&self.target) == val,
            Action::Replace => {
                let Some(caps) = self.regex.captures(&val) else {
                    return true;
                };
                let target = if self.target_has_var {
                    expand(&self.regex, &caps, &self.target)
                } else {
                    self.target.clone()
                };
                if !is_valid_label_name(&target) {
                    return true;
                }
                let value = expand(&self.regex, &caps, &self.replacement);
                b.set(target, value);
            }
            Action::Lowercase => b.set(self.target.clone(), val.to_lowercase()),
            Action::Uppercase => b.set(self.target.clone(), val.to_uppercase()),
            Action::HashMod => b.set(self.target.clone(), hashmod(&val, self.modulus).to_string()),
            Action::LabelMap => {
                for (name, value) in b.snapshot() {
                    if let Some(caps) = self.regex.captures(&name) {
                        let new_name = expand(&self.regex, &caps, &self.replacement);
                        if !new_name.is_empty() {
                            b.set(new_name, value);
                        }
                    }
                }
            }
            Action::LabelDrop | Action::LabelKeep => {
                let drop_matching = self.action == Action::LabelDrop;
                for (name, _) in b.snapshot() {
                    if self.regex.is_match(&name) == drop_matching {
                        b.del(&name);
                    }
                }
            }
        }
        true
    }

    /// The source label values joined with the separator.
    fn source_value(&self, b: &Builder) -> String {
        let mut val = String::new();
        for (i, l) in self.source_labels.iter().enumerate() {
            if i > 0 {
                val.push_str(&self.separator);
            }
            val.push_str(b.get(l));
        }
        val
    }
}

/// Prometheus `hashmod`: MD5 of the value, its last 8 bytes as a big-endian
/// integer, modulo `modulus` (0 gives 0; configs reject it).
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let d = md5(value.as_bytes());
    let tail = [d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]];
    u64::from_be_bytes(tail).checked_rem(modulus).unwrap_or(0)
}

/// Go `Regexp.Expand`: `$name`/`${name}` (name = longest run of letters,
/// digits and `_`; all digits without a leading zero = group number),
/// `$$` = `$`, a `$` not followed by a name is kept; unknown or unmatched
/// groups expand to the empty string.
fn expand(re: &Regex, caps: &Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let name_len: usize = body
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        let closed = !braced || body[name_len..].starts_with('}');
        if name_len == 0 || !closed {
            out.push('$'); // malformed: the `$` is literal text
            continue;
        }
        let name = &body[..name_len];
        rest = &body[name_len + usize::from(braced)..];
        let group = if name.bytes().all(|b| b.is_ascii_digit())
            && !(name.len() > 1 && name.starts_with('0'))
        {
            name.parse::<usize>()
                .ok()
                .filter(|&n| n < 100_000_000)
                .and_then(|n| caps.get(n))
        } else {
            re.capture_names()
                .flatten()
                .any(|n| n == name)
                .then(|| caps.name(name))
                .flatten()
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

/// Prometheus `labels.Builder`: base labels plus pending deletions and
/// additions, with its iteration order (base labels, then additions in the
/// order they were made) for `labelmap`/`labeldrop`/`labelkeep`.
struct Builder {
    base: Vec<(String, String)>,
    del: Vec<String>,
    add: Vec<(String, String)>,
}

impl Builder {
    fn new(labels: &[(String, String)]) -> Self {
        let mut base: Vec<(String, String)> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        if !base.windows(2).all(|w| w[0].0 < w[1].0) {
            base.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the first of equal names stays first
            base.dedup_by(|later, first| later.0 == first.0);
        }
        Builder {
            base,
            del: Vec::new(),
            add: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> &str {
        if let Some((_, v)) = self.add.iter().find(|(n, _)| n == name) {
            return v;
        }
        if self.del.iter().any(|n| n == name) {
            return "";
        }
        self.base
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v)
    }

    /// Sets a label; an empty value deletes it.
    fn set(&mut self, name: String, value: String) {
        if value.is_empty() {
            self.del(&name);
        } else if let Some(a) = self.add.iter_mut().find(|(n, _)| *n == name) {
            a.1 = value;
        } else {
            self.add.push((name, value));
        }
    }

    fn del(&mut self, name: &str) {
        self.add.retain(|(n, _)| n != name);
        self.del.push(name.to_string());
    }

    /// The current labels in `labels.Builder.Range` order.
    fn snapshot(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .base
            .iter()
            .filter(|(n, _)| !self.del.contains(n) && !self.add.iter().any(|(a, _)| a == n))
            .cloned()
            .collect();
        out.extend(self.add.iter().cloned());
        out
    }

    /// The resulting label set, sorted by name.
    fn labels(self) -> Vec<(String, String)> {
        if self.del.is_empty() && self.add.is_empty() {
            return self.base;
        }
        let mut out = self.snapshot();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests;
