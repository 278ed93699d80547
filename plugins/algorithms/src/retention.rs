//! Block retention: Thanos's per-resolution retention
//! (`--retention.resolution-raw/5m/1h`, spec §4.1) plus rules that give
//! blocks selected by their external labels their own retention.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::promql::{
    MatchOp, Matcher, format_go_duration, format_selector, parse_duration, parse_selector,
};

/// Configuration of the retention policy (JSON).
///
/// ```json
/// {
///   "resolution_raw": "30d",
///   "resolution_5m": "90d",
///   "resolution_1h": "1y",
///   "rules": [
///     {"matchers": "{team=\"a\"}", "retention": "7d", "resolution": "raw"},
///     {"matchers": [{"name": "tier", "op": "=~", "value": "gold|platinum"}], "retention": "0d"}
///   ]
/// }
/// ```
///
/// A block is marked for deletion when `now > maxTime + retention`, with
/// `maxTime` the end of the block's time range in ms. The retention that
/// applies is the one of the first rule matching the block (in list order),
/// else the one of the block's resolution. Durations use Prometheus notation
/// (`"30d"`, `"1y"`, `"12h30m"`, `"0"`); `"0d"` or an absent field means
/// "keep forever", as with Thanos's flags. Empty text or `null` is the
/// default: keep everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Retention of raw blocks (resolution 0), like `--retention.resolution-raw`.
    #[serde(default)]
    pub resolution_raw: Option<String>,
    /// Retention of 5m-downsampled blocks, like `--retention.resolution-5m`.
    #[serde(default)]
    pub resolution_5m: Option<String>,
    /// Retention of 1h-downsampled blocks, like `--retention.resolution-1h`.
    #[serde(default)]
    pub resolution_1h: Option<String>,
    /// Rules by external labels, tried in order; the first match wins over
    /// the per-resolution retention.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A retention rule for the blocks whose external labels match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Which blocks: a selector string such as `{team="a", env=~"prod|staging"}`
    /// (`{}` selects all) or a list of matchers. As in PromQL, regexes are
    /// fully anchored and a missing label matches as the empty string.
    pub matchers: MatchersConfig,
    /// Retention of the selected blocks; `"0d"` keeps them forever.
    pub retention: String,
    /// Restricts the rule to one resolution: `"raw"`, `"5m"` or `"1h"`.
    /// Absent: every resolution.
    #[serde(default)]
    pub resolution: Option<String>,
}

/// A rule's selector: a string or a list of matchers.
#[derive(Debug, Clone)]
pub enum MatchersConfig {
    /// `{name="value", ...}`.
    Selector(String),
    /// `[{"name": "team", "op": "=", "value": "a"}, ...]`.
    List(Vec<MatcherConfig>),
}

/// One label matcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherConfig {
    /// External label name.
    pub name: String,
    /// `=` (default), `!=`, `=~` or `!~`.
    #[serde(default = "default_op")]
    pub op: String,
    /// Value, or regex for `=~`/`!~`.
    pub value: String,
}

fn default_op() -> String {
    "=".into()
}

impl<'de> Deserialize<'de> for MatchersConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatchersConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a selector string like "{team=\"a\"}" or a list of {"name", "op", "value"} matchers"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MatchersConfig, E> {
                Ok(MatchersConfig::Selector(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MatchersConfig, A::Error> {
                let mut out = Vec::new();
                while let Some(m) = seq.next_element::<MatcherConfig>()? {
                    out.push(m);
                }
                Ok(MatchersConfig::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a retention policy knows about a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockInfo {
    pub ulid: String,
    /// Half-open time range `[min_time, max_time)` in ms.
    pub min_time: i64,
    pub max_time: i64,
    /// Downsampling resolution in ms: 0 raw, 300000 5m, 3600000 1h.
    pub resolution: i64,
    /// External labels.
    pub labels: Vec<(String, String)>,
    /// Compaction level.
    pub level: u32,
}

/// Keep, or mark for deletion, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub delete: bool,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Rule {
    matchers: Vec<Matcher>,
    retention_ms: i64,
    resolution: Option<i64>,
}

/// A validated retention policy.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    raw_ms: i64,
    res_5m_ms: i64,
    res_1h_ms: i64,
    rules: Vec<Rule>,
}

const RES_5M: i64 = crate::downsample::RES_5M;
const RES_1H: i64 = crate::downsample::RES_1H;

fn resolution_name(res: i64) -> String {
    match res {
        0 => "raw".into(),
        RES_5M => "5m".into(),
        RES_1H => "1h".into(),
        other => format!("{other}ms"),
    }
}

impl RetentionPolicy {
    /// Parses and validates a JSON [`RetentionConfig`].
    pub fn from_json(config: &str) -> Result<Self, String> {
        if crate::is_empty_config(config) {
            return Ok(Self::default());
        }
        let c: RetentionConfig =
            serde_json::from_str(config).map_err(|e| format!("invalid retention config: {e}"))?;
        Self::new(c)
    }

    /// Validates a [`RetentionConfig`]; the error lists every problem.
    pub fn new(c: RetentionConfig) -> Result<Self, String> {
        let mut errs = Vec::new();
        let duration =
            |errs: &mut Vec<String>, field: &str, v: Option<&str>| match v.map(parse_duration) {
                None => 0,
                Some(Ok(ms)) => ms,
                Some(Err(e)) => {
                    errs.push(format!("{field}: {e}"));
                    0
                }
            };
        let raw_ms = duration(&mut errs, "resolution_raw", c.resolution_raw.as_deref());
        let res_5m_ms = duration(&mut errs, "resolution_5m", c.resolution_5m.as_deref());
        let res_1h_ms = duration(&mut errs, "resolution_1h", c.resolution_1h.as_deref());
        let mut rules = Vec::with_capacity(c.rules.len());
        for (i, r) in c.rules.iter().enumerate() {
            let retention_ms = duration(
                &mut errs,
                &format!("rules[{i}].retention"),
                Some(&r.retention),
            );
            let matchers = match &r.matchers {
                MatchersConfig::Selector(s) => parse_selector(s),
                MatchersConfig::List(list) => list
                    .iter()
                    .map(|m| {
                        MatchOp::parse(&m.op).and_then(|op| Matcher::new(&m.name, op, &m.value))
                    })
                    .collect(),
            };
            let matchers = matchers
                .map_err(|e| errs.push(format!("rules[{i}].matchers: {e}")))
                .unwrap_or_default();
            let resolution = match r.resolution.as_deref() {
                None => None,
                Some("raw") => Some(0),
                Some("5m") => Some(RES_5M),
                Some("1h") => Some(RES_1H),
                Some(other) => {
                    errs.push(format!(
                        "rules[{i}].resolution: {other:?} is not one of \"raw\", \"5m\", \"1h\""
                    ));
                    None
                }
            };
            rules.push(Rule {
                matchers,
                retention_ms,
                resolution,
            });
        }
        if errs.is_empty() {
            Ok(RetentionPolicy {
                raw_ms,
                res_5m_ms,
                res_1h_ms,
                rules,
            })
        } else {
            Err(format!("invalid retention config: {}", errs.join("; ")))
        }
    }

    /// Thanos's check when downsampling is enabled: a non-zero raw retention
    /// must be at least 40h and a non-zero 5m retention at least 10d, or the
    /// data would be deleted before it is downsampled.
    pub fn check_downsampling_compatible(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.raw_ms != 0 && self.raw_ms < 40 * 3_600_000 {
            errs.push("raw retention must be at least 40h (or 0d) when downsampling is enabled");
        }
        if self.res_5m_ms != 0 && self.res_5m_ms < 10 * 86_400_000 {
            errs.push("5m retention must be at least 10d (or 0d) when downsampling is enabled");
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Decides whether to mark `block` for deletion at `now_ms`.
    pub fn decide(&self, block: &BlockInfo, now_ms: i64) -> Decision {
        let res = resolution_name(block.resolution);
        let rule = self.rules.iter().enumerate().find(|(_, r)| {
            r.resolution.is_none_or(|x| x == block.resolution)
                && r.matchers.iter().all(|m| m.matches(&block.labels))
        });
        let (retention, by) = match rule {
            Some((i, r)) => (
                r.retention_ms,
                format!(" (rule {i} {})", format_selector(&r.matchers)),
            ),
            None => {
                let d = match block.resolution {
                    0 => self.raw_ms,
                    RES_5M => self.res_5m_ms,
                    RES_1H => self.res_1h_ms,
                    _ => 0,
                };
                (d, String::new())
            }
        };
        if retention == 0 {
            return Decision {
                delete: false,
                reason: format!("no retention for resolution {res}: kept forever{by}"),
            };
        }
        let limit = block.max_time.saturating_add(retention);
        let ret = format_go_duration(retention);
        if now_ms > limit {
            Decision {
                delete: true,
                reason: format!("block exceeding retention of {ret}{by}"),
            }
        } else {
            Decision {
                delete: false,
                reason: format!("within retention of {ret} until {limit} ms{by}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
