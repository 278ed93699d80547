//! `sluice plugin`: tools for plugin authors. `new` scaffolds a plugin crate
//! from the SDK, `test` runs a built plugin on an input file in the
//! production sandbox (the registry, `Plugin` and `Session` code the gateway
//! uses, fail-closed), and `inspect` shows what a component is and whether
//! this host would load it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::policy::config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
use crate::policy::plugin::{self, BuildSpec, ImportLink, WIT_PACKAGE_VERSION};
use crate::policy::{
    CompileSource, DedupBatch, DedupHints, Plugin, PluginInfo, PolicyEngine, PolicyMetrics,
    PolicyRegistry, Session, sha256_hex,
};
use sluice_policy_abi::{LabelPairs, Series};
use sluice_policy_algorithms::{downsample::Aggregates, retention::BlockInfo};

/// Errors of the plugin tools, naming the file or module they concern.
#[derive(Debug, thiserror::Error)]
pub enum PluginToolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Scaffold(String),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("loading {module}: {message}")]
    Load { module: PathBuf, message: String },
    #[error("{0}")]
    Call(#[from] crate::policy::CallError),
    #[error("{module} would be refused: {}", problems.join("; "))]
    Refused {
        module: PathBuf,
        problems: Vec<String>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PluginToolError + '_ {
    move |source| PluginToolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `sluice plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate (Cargo.toml, src/lib.rs, input.json) from the SDK.
    New(NewArgs),
    /// Run a built plugin on an input file with the production sandbox settings.
    Test(TestArgs),
    /// Show a component's ABI, kind, name, version, digest and imports.
    Inspect(InspectArgs),
}

/// `sluice plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create (must not exist, or be empty).
    pub dir: PathBuf,
    /// Policy kind: dedup, relabel, retention or downsample.
    #[arg(long, value_parser = parse_kind)]
    pub kind: PolicyKind,
    /// Crate and plugin name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The SDK folder (`sdk/` of a Sluice checkout) the crate depends on by path
    /// (default: the checkout this binary was built from).
    #[arg(long = "sdk-path")]
    pub sdk_path: Option<PathBuf>,
}

/// `sluice plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin component (`target/wasm32-wasip2/release/<name>.wasm`).
    pub module: PathBuf,
    /// Policy kind; by default the one the component exports.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<PolicyKind>,
    /// The slot's `config:` as a JSON or YAML file (default: none, i.e. `{}`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Input file (JSON; formats in `sluice plugin test --help`). Default: a small
    /// example for the plugin's kind, the same as `sluice plugin new` writes.
    #[arg(long, long_help = INPUT_HELP)]
    pub input: Option<PathBuf>,
    /// Deadline of one call, as in policies.yml `limits.timeout`.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Memory cap of one instance, as in `limits.memory`.
    #[arg(long, default_value = "256MiB", value_parser = parse_size_arg)]
    pub memory: u64,
    /// Largest output of one call, as in `limits.max_output`.
    #[arg(long = "max-output", default_value = "64MiB", value_parser = parse_size_arg)]
    pub max_output: u64,
    /// Dedup only: the enclosing PromQL function (overrides the input's `hints.func`).
    #[arg(long)]
    pub func: Option<String>,
    /// The slot's `grants:` (capabilities the plugin may use) as a YAML or
    /// JSON file, e.g. `{clock: true, environment: {REGION: eu}}`. Default: none.
    #[arg(long)]
    pub grants: Option<PathBuf>,
    /// Run the call this many times, each on a fresh instance, and report the
    /// median and fastest time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub repeat: u32,
}

const INPUT_HELP: &str = "Input file, JSON. Values are numbers, or the strings \"NaN\", \"+Inf\", \"-Inf\".
  dedup:      {\"groups\": [[{\"timestamps\": [0, 15000], \"values\": [1, 2]}, ...replicas], ...groups],
               \"hints\": {\"func\": \"rate\", \"step_ms\": 0, \"range_ms\": 0, \"start_ms\": 0, \"end_ms\": 0}}
  relabel:    [{\"__name__\": \"up\", \"job\": \"node\"}, ...label sets]
  retention:  {\"now_ms\": 1735689600000, \"blocks\": [{\"ulid\": \"01J...\", \"min_time\": 0, \"max_time\": 7200000,
               \"resolution\": 0, \"labels\": {\"team\": \"a\"}, \"level\": 1}, ...]}   (now_ms defaults to the clock)
  downsample: {\"resolution_ms\": 300000, \"samples\": {\"timestamps\": [...], \"values\": [...]}}
              or {\"resolution_ms\": 3600000, \"aggregates\": {\"count\": S, \"sum\": S, \"min\": S, \"max\": S, \"counter\": S}}
Without --input, a small example for the plugin's kind is used.";

/// `sluice plugin inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The plugin component.
    pub module: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<PolicyKind, String> {
    match s {
        "dedup" => Ok(PolicyKind::Dedup),
        "relabel" => Ok(PolicyKind::Relabel),
        "retention" => Ok(PolicyKind::Retention),
        "downsample" => Ok(PolicyKind::Downsample),
        _ => Err(format!(
            "unknown kind {s:?}: use dedup, relabel, retention or downsample"
        )),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match crate::config::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be positive".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    match crate::policy::config::parse_size(s) {
        Ok(0) => Err("must be positive".into()),
        r => r,
    }
}

/// Runs `sluice plugin ...`.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New(a) => {
            let sdk = match a.sdk_path {
                Some(p) => p,
                None => default_sdk_path()?,
            };
            let opts = NewOptions {
                dir: a.dir,
                kind: a.kind,
                name: a.name,
                sdk_path: sdk,
            };
            let done = scaffold(&opts)?;
            println!(
                "created {} plugin {:?} in {}",
                opts.kind,
                done.name,
                opts.dir.display()
            );
            for f in &done.files {
                println!("  {}", f.display());
            }
            println!(
                "\nnext:\n  cd {}\n  cargo build --target wasm32-wasip2 --release\n  sluice plugin test {} --input input.json",
                opts.dir.display(),
                done.wasm.display()
            );
            Ok(())
        }
        PluginCommand::Test(a) => {
            let opts = TestOptions {
                module: a.module,
                kind: a.kind,
                config: a.config,
                input: a.input,
                limits: Limits {
                    timeout: a.timeout,
                    memory_bytes: a.memory,
                    max_output_bytes: a.max_output,
                },
                func: a.func,
                repeat: a.repeat,
                grants: match &a.grants {
                    Some(p) => read_grants(p)?,
                    None => Default::default(),
                },
            };
            let report = tokio::task::spawn_blocking(move || test_plugin(&opts)).await?;
            match report {
                Ok(r) => {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                    Ok(())
                }
                Err(e) => {
                    if let PluginToolError::Call(c) = &e {
                        let doc = json!({"error": {"kind": c.kind.as_str(), "plugin": c.plugin, "message": c.message}});
                        println!("{}", serde_json::to_string_pretty(&doc)?);
                    }
                    Err(e.into())
                }
            }
        }
        PluginCommand::Inspect(a) => {
            let module = a.module.clone();
            let ins = tokio::task::spawn_blocking(move || inspect(&module)).await??;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else {
                print!("{}", ins.render());
            }
            if ins.problems.is_empty() {
                Ok(())
            } else {
                Err(PluginToolError::Refused {
                    module: a.module,
                    problems: ins.problems,
                }
                .into())
            }
        }
    }
}

// ---------------------------------------------------------------- new

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct NewOptions {
    pub dir: PathBuf,
    pub kind: PolicyKind,
    /// Crate and plugin name; default: the directory's name.
    pub name: Option<String>,
    /// The SDK folder the crate depends on by path.
    pub sdk_path: PathBuf,
}

/// What [`scaffold`] wrote.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    pub name: String,
    /// Files written, relative to the crate directory.
    pub files: Vec<PathBuf>,
    /// Where `cargo build --target wasm32-wasip2 --release` puts the
    /// component, relative to the crate directory.
    pub wasm: PathBuf,
}

/// The `sdk/` folder of the checkout this binary was built from.
pub fn default_sdk_path() -> Result<PathBuf, PluginToolError> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    p.canonicalize().map_err(|e| {
        PluginToolError::Scaffold(format!(
            "the SDK folder this sluice was built from ({}) is not there ({e}); \
             pass --sdk-path /path/to/sluice/sdk",
            p.display()
        ))
    })
}

/// The README's example Cargo.toml (sdk/README.md shows exactly this file).
const EXAMPLE_MANIFEST: &str = include_str!("../../../sdk/example-plugin/Cargo.toml");
const EXAMPLE_NAME_LINE: &str = "name = \"dedup-max\"";
const EXAMPLE_SDK_LINE: &str = "sluice-sdk = { path = \"../../sdk\" }";

fn template(kind: PolicyKind) -> (&'static str, &'static str) {
    match kind {
        PolicyKind::Dedup => (
            include_str!("plugin/templates/dedup.rs"),
            include_str!("plugin/templates/dedup.input.json"),
        ),
        PolicyKind::Relabel => (
            include_str!("plugin/templates/relabel.rs"),
            include_str!("plugin/templates/relabel.input.json"),
        ),
        PolicyKind::Retention => (
            include_str!("plugin/templates/retention.rs"),
            include_str!("plugin/templates/retention.input.json"),
        ),
        PolicyKind::Downsample => (
            include_str!("plugin/templates/downsample.rs"),
            include_str!("plugin/templates/downsample.input.json"),
        ),
    }
}

/// The example input `sluice plugin new` writes and `plugin test` uses by default.
pub fn example_input(kind: PolicyKind) -> &'static str {
    template(kind).1
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn valid_crate_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64
}

/// Writes a plugin crate into `opts.dir`: the Cargo.toml of sdk/README.md
/// (pointing at `opts.sdk_path`), a `src/lib.rs` implementing the kind's
/// trait, an `input.json` for `sluice plugin test`, and a `.gitignore`.
pub fn scaffold(opts: &NewOptions) -> Result<Scaffolded, PluginToolError> {
    let dir = &opts.dir;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                PluginToolError::Scaffold(format!(
                    "cannot take a crate name from {}; pass --name",
                    dir.display()
                ))
            })?,
    };
    if !valid_crate_name(&name) {
        return Err(PluginToolError::Scaffold(format!(
            "{name:?} is not a usable crate name: start with a letter, then letters, digits, '-' or '_' (pass --name)"
        )));
    }
    let sdk = opts.sdk_path.canonicalize().map_err(|e| {
        PluginToolError::Scaffold(format!(
            "SDK folder {}: {e}; pass --sdk-path /path/to/sluice/sdk",
            opts.sdk_path.display()
        ))
    })?;
    let sdk_manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !sdk_manifest.contains("name = \"sluice-sdk\"") {
        return Err(PluginToolError::Scaffold(format!(
            "{} is not the Sluice SDK folder (no Cargo.toml of package sluice-sdk there); pass --sdk-path /path/to/sluice/sdk",
            sdk.display()
        )));
    }
    let sdk_str = sdk.to_str().ok_or_else(|| {
        PluginToolError::Scaffold(format!("SDK path {} is not UTF-8", sdk.display()))
    })?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        if entries.next().is_some() {
            return Err(PluginToolError::Scaffold(format!(
                "{} exists and is not empty",
                dir.display()
            )));
        }
    }

    if !EXAMPLE_MANIFEST.contains(EXAMPLE_NAME_LINE) || !EXAMPLE_MANIFEST.contains(EXAMPLE_SDK_LINE)
    {
        return Err(PluginToolError::Scaffold(
            "internal: sdk/example-plugin/Cargo.toml no longer has the lines the scaffold rewrites"
                .into(),
        ));
    }
    let manifest = EXAMPLE_MANIFEST
        .replacen(
            EXAMPLE_NAME_LINE,
            &format!("name = {}", toml_string(&name)),
            1,
        )
        .replacen(
            EXAMPLE_SDK_LINE,
            &format!("sluice-sdk = {{ path = {} }}", toml_string(sdk_str)),
            1,
        );
    let (lib, input) = template(opts.kind);
    let lib = lib.replace("__PLUGIN_NAME__", &name);
    let wasm = PathBuf::from(format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ));
    let readme = format!(
        "# {name}\n\n\
         A Sluice {kind} policy plugin, scaffolded by `sluice plugin new` from the SDK at\n\
         `{sdk_str}` (its README documents the API).\n\n\
         ```sh\n\
         cargo build --target wasm32-wasip2 --release\n\
         sluice plugin inspect {wasm}\n\
         sluice plugin test {wasm} --input input.json\n\
         ```\n\n\
         Then add a slot to `policies.yml`:\n\n\
         ```yaml\n\
         slots:\n  {slot}:\n    kind: {kind}\n    path: {file}\n    config: {{}}\n    failure_policy: fail-closed\n\
         ```\n",
        kind = opts.kind,
        wasm = wasm.display(),
        slot = if opts.kind == PolicyKind::Dedup {
            name.as_str()
        } else {
            opts.kind.as_str()
        },
        file = wasm
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default(),
    );

    let files: [(&str, String); 5] = [
        ("Cargo.toml", manifest),
        ("src/lib.rs", lib),
        ("input.json", input.to_string()),
        ("README.md", readme),
        (".gitignore", "/target\n".to_string()),
    ];
    std::fs::create_dir_all(dir.join("src")).map_err(io_err(dir))?;
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::write(&path, text).map_err(io_err(&path))?;
        written.push(PathBuf::from(rel));
    }
    Ok(Scaffolded {
        name,
        files: written,
        wasm,
    })
}

// ---------------------------------------------------------------- test

/// What to run.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub module: PathBuf,
    pub kind: Option<PolicyKind>,
    pub config: Option<PathBuf>,
    /// `None`: the kind's example input.
    pub input: Option<PathBuf>,
    pub limits: Limits,
    pub func: Option<String>,
    pub repeat: u32,
    /// Capabilities granted to the plugin, as a slot's `grants:`.
    pub grants: crate::policy::config::Grants,
}

/// A float in input files: a number, or "NaN", "+Inf", "-Inf" (JSON has no
/// literal for them).
#[derive(Debug, Clone, Copy)]
struct JsonF64(f64);

impl<'de> Deserialize<'de> for JsonF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(f64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(JsonF64(v)),
            Repr::Str(s) => match s.as_str() {
                "NaN" | "nan" => Ok(JsonF64(f64::NAN)),
                "+Inf" | "Inf" | "inf" | "+inf" => Ok(JsonF64(f64::INFINITY)),
                "-Inf" | "-inf" => Ok(JsonF64(f64::NEG_INFINITY)),
                other => other.parse().map(JsonF64).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{other:?} is not a number (use a JSON number, \"NaN\", \"+Inf\" or \"-Inf\")"
                    ))
                }),
            },
        }
    }
}

/// Float as JSON: a number, or the string Prometheus uses for it.
fn f64_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("+Inf")
    } else if v == f64::NEG_INFINITY {
        json!("-Inf")
    } else {
        json!(v)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesJson {
    timestamps: Vec<i64>,
    values: Vec<JsonF64>,
}

impl SamplesJson {
    fn into_series(self, what: &str) -> Result<Series, String> {
        if self.timestamps.len() != self.values.len() {
            return Err(format!(
                "{what}: {} timestamps but {} values",
                self.timestamps.len(),
                self.values.len()
            ));
        }
        Ok(Series::new(
            self.timestamps,
            self.values.into_iter().map(|v| v.0).collect(),
        ))
    }
}

fn series_json(s: &Series) -> Value {
    json!({
        "timestamps": s.timestamps,
        "values": s.values.iter().map(|&v| f64_json(v)).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HintsJson {
    func: String,
    step_ms: i64,
    range_ms: i64,
    start_ms: i64,
    end_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupInput {
    groups: Vec<Vec<SamplesJson>>,
    #[serde(default)]
    hints: HintsJson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockJson {
    ulid: String,
    min_time: i64,
    max_time: i64,
    #[serde(default)]
    resolution: i64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    level: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionInput {
    #[serde(default)]
    now_ms: Option<i64>,
    blocks: Vec<BlockJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregatesJson {
    count: SamplesJson,
    sum: SamplesJson,
    min: SamplesJson,
    max: SamplesJson,
    counter: SamplesJson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownsampleInput {
    resolution_ms: i64,
    #[serde(default)]
    samples: Option<SamplesJson>,
    #[serde(default)]
    aggregates: Option<AggregatesJson>,
}

fn aggregates_json(a: &Aggregates) -> Value {
    json!({
        "count": series_json(&a.count),
        "sum": series_json(&a.sum),
        "min": series_json(&a.min),
        "max": series_json(&a.max),
        "counter": series_json(&a.counter),
    })
}

/// A parsed input, ready to be replayed once per repetition.
enum Input {
    Dedup {
        groups: Vec<Vec<Series>>,
        hints: DedupHints,
    },
    Relabel(Vec<LabelPairs>),
    Retention {
        blocks: Vec<BlockInfo>,
        now_ms: i64,
    },
    Downsample {
        raw: Series,
        resolution: i64,
    },
    DownsampleAggregates {
        input: Aggregates,
        resolution: i64,
    },
}

fn parse_input(
    kind: PolicyKind,
    text: &str,
    func: Option<&str>,
    what: &str,
) -> Result<Input, PluginToolError> {
    let bad = |message: String| PluginToolError::Input {
        path: what.to_string(),
        message,
    };
    let json_err = |e: serde_json::Error| {
        bad(format!(
            "not a {kind} input ({e}); see `sluice plugin test --help` for the formats"
        ))
    };
    Ok(match kind {
        PolicyKind::Dedup => {
            let d: DedupInput = serde_json::from_str(text).map_err(json_err)?;
            let groups = d
                .groups
                .into_iter()
                .enumerate()
                .map(|(g, reps)| {
                    reps.into_iter()
                        .enumerate()
                        .map(|(r, s)| s.into_series(&format!("groups[{g}][{r}]")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            let h = d.hints;
            Input::Dedup {
                groups,
                hints: DedupHints {
                    func: func.map_or(h.func, str::to_string),
                    step_ms: h.step_ms,
                    range_ms: h.range_ms,
                    start_ms: h.start_ms,
                    end_ms: h.end_ms,
                },
            }
        }
        PolicyKind::Relabel => {
            let sets: Vec<BTreeMap<String, String>> =
                serde_json::from_str(text).map_err(json_err)?;
            Input::Relabel(sets.into_iter().map(|m| m.into_iter().collect()).collect())
        }
        PolicyKind::Retention => {
            let r: RetentionInput = serde_json::from_str(text).map_err(json_err)?;
            let now_ms = r.now_ms.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            });
            Input::Retention {
                blocks: r
                    .blocks
                    .into_iter()
                    .map(|b| BlockInfo {
                        ulid: b.ulid,
                        min_time: b.min_time,
                        max_time: b.max_time,
                        resolution: b.resolution,
                        labels: b.labels.into_iter().collect(),
                        level: b.level,
                    })
                    .collect(),
                now_ms,
            }
        }
        PolicyKind::Downsample => {
            let d: DownsampleInput = serde_json::from_str(text).map_err(json_err)?;
            match (d.samples, d.aggregates) {
                (Some(s), None) => Input::Downsample {
                    raw: s.into_series("samples").map_err(bad)?,
                    resolution: d.resolution_ms,
                },
                (None, Some(a)) => Input::DownsampleAggregates {
                    input: Aggregates {
                        count: a.count.into_series("aggregates.count").map_err(bad)?,
                        sum: a.sum.into_series("aggregates.sum").map_err(bad)?,
                        min: a.min.into_series("aggregates.min").map_err(bad)?,
                        max: a.max.into_series("aggregates.max").map_err(bad)?,
                        counter: a.counter.into_series("aggregates.counter").map_err(bad)?,
                    },
                    resolution: d.resolution_ms,
                },
                _ => {
                    return Err(bad(
                        "give exactly one of \"samples\" (raw data) and \"aggregates\" (to re-downsample)".into(),
                    ));
                }
            }
        }
    })
}

/// Runs `input` once through a session; returns the output as JSON and the warning.
fn call_once(
    session: &mut Session,
    input: &Input,
) -> Result<(Value, Option<String>), crate::policy::CallError> {
    Ok(match input {
        Input::Dedup { groups, hints } => {
            let mut batch = DedupBatch::new();
            for g in groups {
                batch.push_group(
                    g.iter()
                        .map(|s| (s.timestamps.as_slice(), s.values.as_slice())),
                );
            }
            let o = session.dedup(&batch, hints)?;
            (
                Value::Array(o.value.iter().map(series_json).collect()),
                o.warning,
            )
        }
        Input::Relabel(sets) => {
            let o = session.relabel(sets)?;
            let out = o
                .value
                .iter()
                .map(|s| match s {
                    Some(l) => Value::Object(
                        l.iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect(),
                    ),
                    None => Value::Null,
                })
                .collect();
            (Value::Array(out), o.warning)
        }
        Input::Retention { blocks, now_ms } => {
            let o = session.retain(blocks, *now_ms)?;
            let out = blocks
                .iter()
                .zip(&o.value)
                .map(|(b, d)| json!({"ulid": b.ulid, "delete": d.delete, "reason": d.reason}))
                .collect();
            (Value::Array(out), o.warning)
        }
        Input::Downsample { raw, resolution } => {
            let o = session.downsample(raw, *resolution)?;
            (aggregates_json(&o.value), o.warning)
        }
        Input::DownsampleAggregates { input, resolution } => {
            let o = session.downsample_aggregates(input, *resolution)?;
            (aggregates_json(&o.value), o.warning)
        }
    })
}

/// A `grants:` file for `sluice plugin test`, validated like policies.yml
/// (relative directories are relative to the file).
fn read_grants(path: &Path) -> Result<crate::policy::config::Grants, PluginToolError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let input_err = |message: String| PluginToolError::Input {
        path: path.display().to_string(),
        message,
    };
    let spec: crate::policy::config::GrantsSpec =
        serde_saphyr::from_str(&text).map_err(|e| input_err(format!("grants: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let grants = crate::policy::config::validate_grants("grants", &spec, base, &mut problems);
    if problems.is_empty() {
        Ok(grants)
    } else {
        Err(input_err(problems.join("; ")))
    }
}

fn read_config(path: &Path) -> Result<Value, PluginToolError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_str(&text).map_err(|e| PluginToolError::Input {
            path: path.display().to_string(),
            message: format!("neither JSON nor YAML: {e}"),
        })?,
    };
    Ok(if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Loads the plugin into a one-slot registry exactly as the gateway loads a
/// `path:` slot (fail-closed, the given limits), runs the input through a
/// session `opts.repeat` times, each on a fresh instance, and reports the
/// output of the last run with timings.
pub fn test_plugin(opts: &TestOptions) -> Result<Value, PluginToolError> {
    let bytes = std::fs::read(&opts.module).map_err(io_err(&opts.module))?;
    let config = match &opts.config {
        Some(p) => read_config(p)?,
        None => Value::Object(Default::default()),
    };
    let load_err = |message: String| PluginToolError::Load {
        module: opts.module.clone(),
        message,
    };
    let engine = PolicyEngine::new(None).map_err(|e| load_err(e.to_string()))?;
    let compile_start = Instant::now();
    let compiled = engine
        .compile(&bytes)
        .map_err(|e| load_err(e.to_string()))?;
    let compile = compile_start.elapsed();
    let kind = match opts.kind {
        Some(k) => k,
        None => {
            plugin::exported_policy(&engine, &compiled.component)
                .map_err(|e| load_err(e.to_string()))?
                .0
        }
    };
    let input_text = match &opts.input {
        Some(p) => std::fs::read_to_string(p).map_err(io_err(p))?,
        None => example_input(kind).to_string(),
    };
    let input_name = opts.input.as_ref().map_or_else(
        || format!("the built-in {kind} example input"),
        |p| p.display().to_string(),
    );
    let input = parse_input(kind, &input_text, opts.func.as_deref(), &input_name)?;

    let registry = PolicyRegistry::new(engine, &Metrics::new());
    let slot = SlotConfig {
        name: kind.as_str().to_string(),
        kind,
        source: PluginSource::File(opts.module.clone()),
        sha256: Some(compiled.sha256.clone()),
        config,
        limits: opts.limits,
        failure_policy: FailurePolicy::FailClosed,
        grants: opts.grants.clone(),
    };
    let load_start = Instant::now();
    let set = registry
        .apply(vec![slot])
        .map_err(|e| load_err(e.join("; ")))?;
    let load = load_start.elapsed();
    let loaded = set
        .slots
        .get(kind.as_str())
        .ok_or_else(|| load_err("the slot was not published".into()))?;
    let p = loaded.plugin.clone();

    let mut times = Vec::with_capacity(opts.repeat as usize);
    let mut last = (Value::Null, None);
    for _ in 0..opts.repeat {
        let mut session = set
            .session(kind.as_str(), kind)
            .map_err(|e| load_err(e.to_string()))?;
        let start = Instant::now();
        last = call_once(&mut session, &input)?;
        times.push(start.elapsed());
    }
    times.sort();
    let (output, warning) = last;
    Ok(json!({
        "plugin": {
            "module": opts.module.display().to_string(),
            "kind": kind,
            "name": p.info.name,
            "version": p.info.version,
            "abi": p.info.abi,
            "sha256": p.sha256,
            "size": bytes.len(),
        },
        "sandbox": {
            "timeout": crate::config::format_duration(opts.limits.timeout),
            "memoryBytes": opts.limits.memory_bytes,
            "maxOutputBytes": opts.limits.max_output_bytes,
            "failurePolicy": FailurePolicy::FailClosed,
        },
        "input": input_name,
        "output": output,
        "warning": warning,
        "timing": {
            "compileMs": millis(compile),
            "loadMs": millis(load),
            "calls": times.len(),
            // Each call includes instantiating and configuring a fresh instance.
            "callMsMedian": millis(times[times.len() / 2]),
            "callMsMin": millis(times[0]),
        },
    }))
}

// ---------------------------------------------------------------- inspect

/// One import of a component and how the sandbox links it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub name: String,
    pub link: ImportLink,
}

/// What `sluice plugin inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub module: String,
    pub size: u64,
    pub sha256: String,
    /// Every export of the component.
    pub exports: Vec<String>,
    pub kind: Option<PolicyKind>,
    /// The `sluice:policy` package version of the exported interface.
    pub interface_version: Option<String>,
    /// The package version this host speaks.
    pub host_interface_version: &'static str,
    /// What the plugin's `info()` returned (name, version, ABI), if it ran.
    pub info: Option<PluginInfo>,
    pub imports: Vec<ImportReport>,
    /// Why the gateway would refuse the module; empty if it would load it.
    pub problems: Vec<String>,
}

impl Inspection {
    /// Human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let na = "-".to_string();
        let _ = writeln!(s, "module     {}", self.module);
        let _ = writeln!(s, "size       {} bytes", self.size);
        let _ = writeln!(s, "sha256     {}", self.sha256);
        let _ = writeln!(
            s,
            "kind       {}",
            self.kind.map_or(na.clone(), |k| k.to_string())
        );
        let iface = match (self.kind, &self.interface_version) {
            (Some(k), Some(v)) => format!("{}@{v}", k.interface()),
            _ => na.clone(),
        };
        let _ = writeln!(
            s,
            "interface  {iface} (host: sluice:policy@{})",
            self.host_interface_version
        );
        let info = self.info.as_ref();
        let _ = writeln!(
            s,
            "name       {}",
            info.map_or(na.clone(), |i| i.name.clone())
        );
        let _ = writeln!(
            s,
            "version    {}",
            info.map_or(na.clone(), |i| i.version.clone())
        );
        let _ = writeln!(
            s,
            "abi        {} (reported by the plugin; host: {})",
            info.map_or(na.clone(), |i| i.abi.clone()),
            sluice_policy_abi::ABI_VERSION
        );
        let _ = writeln!(s, "exports    {}", self.exports.join(", "));
        let _ = writeln!(s, "imports    {}", self.imports.len());
        for i in &self.imports {
            let how = match (i.link, crate::policy::plugin::capability_of(&i.name)) {
                (ImportLink::Types, _) => "ok (types only)".to_string(),
                (ImportLink::ConstantSeed, _) => "ok (constant seed)".to_string(),
                (ImportLink::Trap, _) => "ok (calls trap)".to_string(),
                (ImportLink::Granted, _) => "ok (granted)".to_string(),
                (ImportLink::Refused, Some(c)) => format!("REFUSED (grant: {c})"),
                (ImportLink::Refused, None) => "REFUSED".to_string(),
            };
            let _ = writeln!(s, "  {how:<28} {}", i.name);
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "status     loadable");
        } else {
            let _ = writeln!(s, "status     REFUSED");
            for p in &self.problems {
                let _ = writeln!(s, "  {p}");
            }
        }
        s
    }
}

/// Inspects a module: digest, exports and imports, the exported policy
/// interface and its version, and the plugin's own `info()` (run in the
/// sandbox on an unconfigured instance, only if the static checks pass).
/// Reasons the gateway would refuse the module go to `problems`.
pub fn inspect(module: &Path) -> Result<Inspection, PluginToolError> {
    let bytes = std::fs::read(module).map_err(io_err(module))?;
    let mut ins = Inspection {
        module: module.display().to_string(),
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        exports: Vec::new(),
        kind: None,
        interface_version: None,
        host_interface_version: WIT_PACKAGE_VERSION,
        info: None,
        imports: Vec::new(),
        problems: Vec::new(),
    };
    if bytes.starts_with(b"\0asm\x01\x00\x00\x00") {
        ins.problems.push(
            "a core WebAssembly module, not a component: build with `cargo build --target wasm32-wasip2`".into(),
        );
        return Ok(ins);
    }
    let engine = PolicyEngine::new(None).map_err(|e| PluginToolError::Load {
        module: module.to_path_buf(),
        message: e.to_string(),
    })?;
    let compiled = match engine.compile(&bytes) {
        Ok(c) => c,
        Err(e) => {
            ins.problems.push(e.to_string());
            return Ok(ins);
        }
    };
    ins.exports = plugin::export_names(&engine, &compiled.component);
    ins.imports = plugin::import_names(&engine, &compiled.component)
        .into_iter()
        .map(|name| ImportReport {
            link: crate::policy::import_link(&name, &Default::default()),
            name,
        })
        .collect();
    let (kind, version) = match plugin::exported_policy(&engine, &compiled.component) {
        Ok(kv) => kv,
        Err(e) => {
            ins.problems.push(e.to_string());
            return Ok(ins);
        }
    };
    ins.kind = Some(kind);
    ins.interface_version = Some(version);
    let spec = BuildSpec {
        slot: kind.as_str().to_string(),
        kind,
        source: PluginSource::File(module.to_path_buf()),
        limits: Limits::default(),
        failure_policy: FailurePolicy::FailClosed,
        config_json: "{}".into(),
        grants: Default::default(),
    };
    let plugin = match Plugin::prepare(
        &engine,
        compiled.component,
        compiled.sha256,
        CompileSource::Compiled,
        spec,
        PolicyMetrics::new(&Metrics::new()),
    ) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            ins.problems.push(e.to_string());
            return Ok(ins);
        }
    };
    match plugin.probe_info() {
        Ok(info) => {
            if let Err(e) = sluice_policy_abi::abi_compatible(&info.abi) {
                ins.problems.push(format!("ABI mismatch: {e}"));
            }
            ins.info = Some(info);
        }
        Err(e) => ins.problems.push(format!("info() failed: {e}")),
    }
    Ok(ins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> PathBuf {
        default_sdk_path().expect("the repo's sdk/")
    }

    #[test]
    fn scaffold_writes_the_readme_manifest_with_name_and_sdk_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("my-dedup");
        let done = scaffold(&NewOptions {
            dir: dir.clone(),
            kind: PolicyKind::Dedup,
            name: None,
            sdk_path: sdk(),
        })
        .expect("scaffold");
        assert_eq!(done.name, "my-dedup");
        assert_eq!(
            done.wasm,
            PathBuf::from("target/wasm32-wasip2/release/my_dedup.wasm")
        );
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(manifest.contains("name = \"my-dedup\""), "{manifest}");
        let sdk_line = format!(
            "sluice-sdk = {{ path = {} }}",
            toml_string(sdk().to_str().expect("utf-8"))
        );
        assert!(manifest.contains(&sdk_line), "{manifest}");
        assert!(manifest.contains("crate-type = [\"cdylib\"]"));
        assert!(manifest.contains("panic = \"abort\""));
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("Info::new(\"my-dedup\""));
        assert!(lib.contains("sluice_sdk::export_dedup!(Policy);"));
        assert!(!lib.contains("__PLUGIN_NAME__"));
        // The example input parses as a dedup input.
        let input = std::fs::read_to_string(dir.join("input.json")).expect("input");
        assert!(parse_input(PolicyKind::Dedup, &input, None, "input.json").is_ok());
    }

    #[test]
    fn scaffold_refuses_bad_names_non_empty_dirs_and_missing_sdks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let opts = |dir: PathBuf, name: Option<&str>, sdk_path: PathBuf| NewOptions {
            dir,
            kind: PolicyKind::Relabel,
            name: name.map(str::to_string),
            sdk_path,
        };
        let e = scaffold(&opts(tmp.path().join("x"), Some("9lives"), sdk()))
            .expect_err("must be refused");
        assert!(e.to_string().contains("not a usable crate name"), "{e}");
        std::fs::write(tmp.path().join("f"), "x").expect("write");
        let e = scaffold(&opts(tmp.path().to_path_buf(), Some("ok"), sdk()))
            .expect_err("must be refused");
        assert!(e.to_string().contains("not empty"), "{e}");
        let e = scaffold(&opts(tmp.path().join("y"), None, tmp.path().join("nope")))
            .expect_err("must be refused");
        assert!(e.to_string().contains("--sdk-path"), "{e}");
        let e = scaffold(&opts(tmp.path().join("z"), None, tmp.path().to_path_buf()))
            .expect_err("must be refused");
        assert!(e.to_string().contains("not the Sluice SDK folder"), "{e}");
    }

    #[test]
    fn every_example_input_parses() {
        for kind in [
            PolicyKind::Dedup,
            PolicyKind::Relabel,
            PolicyKind::Retention,
            PolicyKind::Downsample,
        ] {
            parse_input(kind, example_input(kind), None, "example")
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn input_values_accept_prometheus_specials_and_func_overrides() {
        let text = r#"{"groups": [[{"timestamps": [1, 2, 3], "values": [1.5, "NaN", "-Inf"]}]], "hints": {"func": "sum"}}"#;
        let Input::Dedup { groups, hints } =
            parse_input(PolicyKind::Dedup, text, Some("rate"), "t").expect("parses")
        else {
            panic!("not dedup");
        };
        assert_eq!(hints.func, "rate");
        let v = &groups[0][0].values;
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan());
        assert_eq!(v[2], f64::NEG_INFINITY);
        assert_eq!(f64_json(f64::NAN), json!("NaN"));
        let e = parse_input(
            PolicyKind::Dedup,
            r#"{"groups": [[{"timestamps": [1], "values": []}]]}"#,
            None,
            "t",
        )
        .err()
        .expect("length mismatch");
        assert!(e.to_string().contains("1 timestamps but 0 values"), "{e}");
        assert!(parse_input(PolicyKind::Relabel, "{}", None, "t").is_err());
    }

    #[test]
    fn inspect_and_test_a_builtin() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("penalty.wasm");
        std::fs::write(
            &path,
            crate::policy::builtin_module("dedup-penalty").expect("built-in"),
        )
        .expect("write");
        let ins = inspect(&path).expect("inspect");
        assert!(ins.problems.is_empty(), "{:?}", ins.problems);
        assert_eq!(ins.kind, Some(PolicyKind::Dedup));
        assert_eq!(ins.interface_version.as_deref(), Some(WIT_PACKAGE_VERSION));
        let info = ins.info.as_ref().expect("info ran");
        assert_eq!(info.name, "dedup-penalty");
        assert_eq!(info.abi, sluice_policy_abi::ABI_VERSION);
        assert!(ins.render().contains("status     loadable"));

        let report = test_plugin(&TestOptions {
            module: path.clone(),
            kind: None,
            config: None,
            input: None,
            limits: Limits::default(),
            func: None,
            repeat: 2,
            grants: Default::default(),
        })
        .expect("test runs");
        assert_eq!(report["plugin"]["name"], "dedup-penalty");
        assert_eq!(report["timing"]["calls"], 2);
        let out = report["output"].as_array().expect("series");
        assert_eq!(out.len(), 2, "one series per group");
        // Group 2, replica 1 holds a NaN: it comes out as the string "NaN".
        assert!(report["output"].to_string().contains("\"NaN\""));

        // Wrong kind: the registry refuses it like the gateway would.
        let e = test_plugin(&TestOptions {
            module: path,
            kind: Some(PolicyKind::Relabel),
            config: None,
            input: None,
            limits: Limits::default(),
            func: None,
            repeat: 1,
            grants: Default::default(),
        })
        .expect_err("must be refused");
        assert!(e.to_string().contains("dedup plugin"), "{e}");
    }

    #[test]
    fn inspect_refuses_garbage_and_core_modules() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let junk = tmp.path().join("junk.wasm");
        std::fs::write(&junk, b"not wasm at all").expect("write");
        let ins = inspect(&junk).expect("inspect");
        assert!(
            ins.problems[0].contains("not a valid WebAssembly component"),
            "{:?}",
            ins.problems
        );
        let core = tmp.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\x00\x00\x00").expect("write");
        let ins = inspect(&core).expect("inspect");
        assert!(
            ins.problems[0].contains("core WebAssembly module"),
            "{:?}",
            ins.problems
        );
    }
}
