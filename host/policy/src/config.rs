//! `policies.yml`: which plugin serves each slot, with its configuration,
//! limits and failure policy. Validation reports every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use sluice_config::parse_duration;

/// Default slot names and the kind each must hold.
pub const DEFAULT_SLOTS: [(&str, PolicyKind); 4] = [
    ("dedup", PolicyKind::Dedup),
    ("relabel", PolicyKind::Relabel),
    ("retention", PolicyKind::Retention),
    ("downsample", PolicyKind::Downsample),
];

/// The kinds of policy, one WIT world each.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Dedup,
    Relabel,
    Retention,
    Downsample,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Dedup => "dedup",
            PolicyKind::Relabel => "relabel",
            PolicyKind::Retention => "retention",
            PolicyKind::Downsample => "downsample",
        }
    }

    /// The WIT interface a plugin of this kind exports, without version.
    pub fn interface(self) -> &'static str {
        match self {
            PolicyKind::Dedup => "sluice:policy/dedup",
            PolicyKind::Relabel => "sluice:policy/relabel",
            PolicyKind::Retention => "sluice:policy/retention",
            PolicyKind::Downsample => "sluice:policy/downsample",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when a plugin traps, times out, runs out of memory or returns
/// invalid output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// The query fails with an error naming the plugin and what went wrong.
    #[default]
    FailClosed,
    /// The native built-in of the slot's kind runs instead; the response carries a warning.
    Fallback,
}

/// Per-call limits of a plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Linear memory cap of one instance, bytes.
    pub memory_bytes: u64,
    /// Largest output one call may return, bytes.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

/// One slot as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Name of a built-in plugin (`dedup-penalty`, `dedup-chain`, `relabel`, `retention`, `downsample`).
    #[serde(default)]
    pub builtin: Option<String>,
    /// Path to a `.wasm` component (relative paths are relative to the policies file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Pinned SHA-256 of the module (hex); loading fails if it differs.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Configuration handed to the plugin's `configure` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Per-call limits: `timeout` (e.g. "500ms"), `memory` (e.g. "64MiB"), `max_output` (e.g. "16MiB").
    #[serde(default)]
    pub limits: LimitsSpec,
    /// `fail-closed` (default) or `fallback`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The kind this slot holds; required for slots not named after a kind.
    #[serde(default)]
    pub kind: Option<PolicyKind>,
    /// Capabilities the plugin may use; none unless listed here.
    #[serde(default)]
    pub grants: GrantsSpec,
}

/// `grants:` as written in the file. Every capability is off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSpec {
    /// `wasi:clocks` (wall clock and monotonic clock).
    #[serde(default)]
    pub clock: bool,
    /// `wasi:random` (the host's secure random source).
    #[serde(default)]
    pub random: bool,
    /// `wasi:cli/environment`: exactly these variables, nothing from the host.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// `wasi:filesystem`: these host directories, read-only.
    #[serde(default)]
    pub filesystem: Vec<MountSpec>,
    /// `wasi:sockets`: TCP and UDP to these `ip:port` addresses only (no DNS).
    #[serde(default)]
    pub network: Vec<String>,
}

/// One read-only directory a plugin may read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Directory on the host (relative paths are relative to the policies file).
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
}

/// Validated capability grants of a slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Grants {
    pub clock: bool,
    pub random: bool,
    pub environment: BTreeMap<String, String>,
    /// (host directory, guest path), read-only.
    pub filesystem: Vec<(PathBuf, String)>,
    pub network: Vec<std::net::SocketAddr>,
}

impl Grants {
    /// No capability at all: the default sandbox.
    pub fn is_empty(&self) -> bool {
        *self == Grants::default()
    }

    /// Names of the granted capabilities, for logs and status pages.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.clock, "clock"),
            (self.random, "random"),
            (!self.environment.is_empty(), "environment"),
            (!self.filesystem.is_empty(), "filesystem"),
            (!self.network.is_empty(), "network"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

/// Validates `grants:`; `base` resolves relative host paths.
pub fn validate_grants(
    at: &str,
    spec: &GrantsSpec,
    base: &Path,
    problems: &mut Vec<String>,
) -> Grants {
    let mut g = Grants {
        clock: spec.clock,
        random: spec.random,
        environment: spec.environment.clone(),
        ..Grants::default()
    };
    for k in spec.environment.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            problems.push(format!(
                "{at}.grants.environment: invalid variable name {k:?}"
            ));
        }
    }
    for (i, m) in spec.filesystem.iter().enumerate() {
        let host = if m.host.is_absolute() {
            m.host.clone()
        } else {
            base.join(&m.host)
        };
        if !host.is_dir() {
            problems.push(format!(
                "{at}: filesystem[{i}].host: {} is not a directory",
                host.display()
            ));
        }
        if !m.guest.starts_with('/') {
            problems.push(format!(
                "{at}: filesystem[{i}].guest: {:?} must be an absolute path such as /data",
                m.guest
            ));
        }
        g.filesystem.push((host, m.guest.clone()));
    }
    for (i, a) in spec.network.iter().enumerate() {
        match a.parse::<std::net::SocketAddr>() {
            Ok(addr) => g.network.push(addr),
            Err(_) => problems.push(format!(
                "{at}: network[{i}]: {a:?} is not an ip:port address (names are not resolved)"
            )),
        }
    }
    g
}

/// Limits as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub timeout: Option<String>,
    pub memory: Option<String>,
    pub max_output: Option<String>,
}

/// The whole file: slot name → slot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesFile {
    #[serde(default)]
    pub slots: BTreeMap<String, SlotSpec>,
}

/// A validated slot.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    pub name: String,
    pub kind: PolicyKind,
    pub source: PluginSource,
    pub sha256: Option<String>,
    pub config: serde_json::Value,
    pub limits: Limits,
    pub failure_policy: FailurePolicy,
    /// Capabilities granted to the plugin (none by default).
    pub grants: Grants,
}

/// Where a slot's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    Builtin(String),
    File(PathBuf),
    /// Uploaded through the admin API.
    Bytes,
}

/// Parses sizes like `64MiB`, `16MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "invalid size unit {u:?} in {s:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// Kind of a built-in plugin, if `name` is one.
pub fn builtin_kind(name: &str) -> Option<PolicyKind> {
    match name {
        "dedup-penalty" | "dedup-chain" => Some(PolicyKind::Dedup),
        "relabel" => Some(PolicyKind::Relabel),
        "retention" => Some(PolicyKind::Retention),
        "downsample" => Some(PolicyKind::Downsample),
        _ => None,
    }
}

/// Validates one slot; `base` resolves relative paths.
pub fn validate_slot(
    name: &str,
    spec: &SlotSpec,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<SlotConfig> {
    let at = format!("slots.{name}");
    let before = problems.len();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(format!("{at}: slot names use letters, digits, '-' and '_'"));
    }
    let default_kind = DEFAULT_SLOTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k);
    let source = match (&spec.builtin, &spec.path) {
        (Some(b), None) => {
            if builtin_kind(b).is_none() {
                problems.push(format!("{at}.builtin: unknown built-in {b:?} (dedup-penalty, dedup-chain, relabel, retention, downsample)"));
            }
            PluginSource::Builtin(b.clone())
        }
        (None, Some(p)) => PluginSource::File(if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }),
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: set either builtin or path, not both"));
            PluginSource::Bytes
        }
        (None, None) => {
            problems.push(format!("{at}: set builtin or path"));
            PluginSource::Bytes
        }
    };
    let inferred = match &source {
        PluginSource::Builtin(b) => builtin_kind(b),
        _ => None,
    };
    let kind = spec.kind.or(default_kind).or(inferred);
    match kind {
        None if spec.builtin.is_none() || inferred.is_some() => problems.push(format!(
            "{at}: set kind (dedup, relabel, retention or downsample)"
        )),
        None => {}
        Some(kind) => {
            for (what, k) in [
                ("kind", spec.kind),
                ("built-in", inferred),
                ("slot name", default_kind),
            ] {
                if let Some(k) = k
                    && k != kind
                {
                    problems.push(format!("{at}: {what} says {k} but the slot holds {kind}"));
                }
            }
        }
    }
    if let Some(h) = &spec.sha256
        && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push(format!("{at}.sha256: expected 64 hex digits"));
    }
    let mut limits = Limits::default();
    if let Some(t) = &spec.limits.timeout {
        match parse_duration(t) {
            Ok(d) if !d.is_zero() => limits.timeout = d,
            Ok(_) => problems.push(format!("{at}.limits.timeout: must be positive")),
            Err(e) => problems.push(format!("{at}.limits.timeout: {e}")),
        }
    }
    for (field, v, dst) in [
        ("memory", &spec.limits.memory, &mut limits.memory_bytes),
        (
            "max_output",
            &spec.limits.max_output,
            &mut limits.max_output_bytes,
        ),
    ] {
        if let Some(v) = v {
            match parse_size(v) {
                Ok(n) if n > 0 => *dst = n,
                Ok(_) => problems.push(format!("{at}.limits.{field}: must be positive")),
                Err(e) => problems.push(format!("{at}.limits.{field}: {e}")),
            }
        }
    }
    let grants = validate_grants(&format!("{at}.grants"), &spec.grants, base, problems);
    let kind = kind?;
    if problems.len() > before {
        return None;
    }
    Some(SlotConfig {
        name: name.to_string(),
        kind,
        source,
        sha256: spec.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        config: if spec.config.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            spec.config.clone()
        },
        limits,
        failure_policy: spec.failure_policy,
        grants,
    })
}

/// Parses and validates `policies.yml` text.
pub fn parse_policies(yaml: &str, base: &Path) -> Result<Vec<SlotConfig>, Vec<String>> {
    let file: PoliciesFile =
        serde_saphyr::from_str(yaml).map_err(|e| vec![format!("policies file: {e}")])?;
    let mut problems = Vec::new();
    let slots: Vec<SlotConfig> = file
        .slots
        .iter()
        .filter_map(|(n, s)| validate_slot(n, s, base, &mut problems))
        .collect();
    if problems.is_empty() {
        Ok(slots)
    } else {
        Err(problems)
    }
}

/// The slots used when no policies file is given: the built-ins in their default slots.
pub fn default_slots() -> Vec<SlotConfig> {
    let mk = |name: &str, builtin: &str, kind| SlotConfig {
        name: name.into(),
        kind,
        source: PluginSource::Builtin(builtin.into()),
        sha256: None,
        config: serde_json::Value::Object(Default::default()),
        limits: Limits::default(),
        failure_policy: FailurePolicy::Fallback,
        grants: Default::default(),
    };
    vec![
        mk("dedup", "dedup-penalty", PolicyKind::Dedup),
        mk("dedup-chain", "dedup-chain", PolicyKind::Dedup),
        mk("relabel", "relabel", PolicyKind::Relabel),
        mk("retention", "retention", PolicyKind::Retention),
        mk("downsample", "downsample", PolicyKind::Downsample),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let yaml = r#"
slots:
  dedup:
    builtin: dedup-penalty
  my-dedup:
    kind: dedup
    path: plugins/my.wasm
    sha256: "0000000000000000000000000000000000000000000000000000000000000000"
    config: { threshold: 3 }
    limits: { timeout: 50ms, memory: 32MiB, max_output: 1MiB }
    failure_policy: fallback
  relabel:
    builtin: relabel
    config:
      relabel_configs:
        - action: labeldrop
          regex: internal_.*
"#;
        let slots = parse_policies(yaml, Path::new("/etc/sluice")).unwrap();
        assert_eq!(slots.len(), 3);
        let my = slots.iter().find(|s| s.name == "my-dedup").unwrap();
        assert_eq!(
            my.source,
            PluginSource::File(PathBuf::from("/etc/sluice/plugins/my.wasm"))
        );
        assert_eq!(my.limits.timeout, Duration::from_millis(50));
        assert_eq!(my.limits.memory_bytes, 32 << 20);
        assert_eq!(my.failure_policy, FailurePolicy::Fallback);
        assert_eq!(my.config["threshold"], 3);
    }

    #[test]
    fn reports_every_problem() {
        let yaml = "slots:\n  dedup:\n    builtin: relabel\n  x:\n    path: a.wasm\n  y:\n    builtin: nope\n    limits: { timeout: 5x, memory: 3 parsecs }\n  z:\n    builtin: relabel\n    path: b.wasm\n";
        let errs = parse_policies(yaml, Path::new(".")).unwrap_err().join("\n");
        for needle in [
            "slots.dedup: built-in says relabel",
            "slots.x: set kind",
            "unknown built-in \"nope\"",
            "slots.y.limits.timeout",
            "slots.y.limits.memory",
            "slots.z: set either builtin or path",
        ] {
            assert!(errs.contains(needle), "{needle:?} missing in:\n{errs}");
        }
        assert!(parse_policies("slots:\n  dedup:\n    bultin: x\n", Path::new(".")).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("1 parsec").is_err());
    }
}
