//! A plugin written from the scaffold builds and loads: `sluice plugin new`
//! (the real binary) writes a crate for each policy kind, `cargo build
//! --release --target wasm32-wasip2` builds it as sdk/README.md says, and the
//! component loads into a registry slot and answers a call with the result
//! its template promises.

#[path = "support/wasm_build.rs"]
mod wasm_build;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sluice::metrics::Metrics;
use sluice::policy::config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
use sluice::policy::{DedupBatch, DedupHints, PolicyEngine, PolicyRegistry};
use sluice_policy_abi::Series;
use sluice_policy_algorithms::retention::BlockInfo;

/// Runs `sluice plugin new <dir> --kind <kind>`; returns the `.wasm` path it announces.
fn sluice_plugin_new(dir: &Path, kind: &str) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "new"])
        .arg(dir)
        .args(["--kind", kind])
        .output()
        .expect("running sluice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sluice plugin new failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["Cargo.toml", "src/lib.rs", "input.json", "README.md"] {
        assert!(dir.join(f).is_file(), "{f} missing; stdout:\n{stdout}");
    }
    let wasm = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("sluice plugin test "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `sluice plugin test` hint in:\n{stdout}"));
    PathBuf::from(wasm)
}

fn load(path: &Path, kind: PolicyKind, config: Value) -> std::sync::Arc<sluice::policy::PolicySet> {
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &Metrics::new());
    reg.apply(vec![SlotConfig {
        name: "scaffolded".into(),
        kind,
        source: PluginSource::File(path.to_path_buf()),
        sha256: None,
        config,
        limits: Limits::default(),
        failure_policy: FailurePolicy::FailClosed,
        grants: Default::default(),
    }])
    .unwrap_or_else(|e| panic!("the scaffolded {kind} plugin does not load: {e:?}"))
}

#[test]
fn scaffolded_plugins_of_every_kind_build_load_and_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Shared between runs, so the SDK's dependencies build once.
    let target_dir = wasm_build::target_root().join("test-scaffold");
    for kind in ["dedup", "relabel", "retention", "downsample"] {
        let dir = tmp.path().join(format!("my-{kind}"));
        let wasm_rel = sluice_plugin_new(&dir, kind);
        assert_eq!(
            wasm_rel,
            PathBuf::from(format!("target/wasm32-wasip2/release/my_{kind}.wasm"))
        );
        let artifacts = wasm_build::cargo_build_wasm(&dir.join("Cargo.toml"), &target_dir)
            .unwrap_or_else(|e| panic!("the scaffolded {kind} crate does not build: {e}"));
        let wasm = artifacts.join(wasm_rel.file_name().expect("file name"));
        let name = format!("my-{kind}");
        match kind {
            "dedup" => {
                let set = load(&wasm, PolicyKind::Dedup, json!({"prefer": "max"}));
                let p = &set.slots["scaffolded"].plugin;
                assert_eq!(
                    (p.info.name.as_str(), p.info.abi.as_str()),
                    (name.as_str(), sluice_policy_abi::ABI_VERSION)
                );
                let mut s = set
                    .session("scaffolded", PolicyKind::Dedup)
                    .expect("session");
                let mut b = DedupBatch::new();
                b.push_group([
                    (&[0i64, 10, 20][..], &[1.0, 2.0, 3.0][..]),
                    (&[10i64, 15][..], &[5.0, 6.0][..]),
                ]);
                let o = s.dedup(&b, &DedupHints::default()).expect("dedup call");
                // Union of timestamps; at 10 both replicas have a sample: the larger wins.
                assert_eq!(
                    o.value,
                    vec![Series::new(vec![0, 10, 15, 20], vec![1.0, 5.0, 6.0, 3.0])]
                );
            }
            "relabel" => {
                let config = json!({"drop_labels": ["pod"], "drop_metrics": ["noise"]});
                let set = load(&wasm, PolicyKind::Relabel, config);
                let mut s = set
                    .session("scaffolded", PolicyKind::Relabel)
                    .expect("session");
                let l = |pairs: &[(&str, &str)]| {
                    pairs
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect::<Vec<_>>()
                };
                let o = s
                    .relabel(&[
                        l(&[("__name__", "up"), ("job", "a"), ("pod", "p1")]),
                        l(&[("__name__", "noise")]),
                    ])
                    .expect("relabel call");
                assert_eq!(
                    o.value,
                    vec![Some(l(&[("__name__", "up"), ("job", "a")])), None]
                );
            }
            "retention" => {
                let set = load(
                    &wasm,
                    PolicyKind::Retention,
                    json!({"max_age_days": 10, "team_max_age_days": {"a": 100}}),
                );
                let mut s = set
                    .session("scaffolded", PolicyKind::Retention)
                    .expect("session");
                let day = 86_400_000;
                let block = |team: &str| BlockInfo {
                    ulid: format!("01J{team:0>23}"),
                    min_time: 0,
                    max_time: day,
                    labels: vec![("team".into(), team.into())],
                    ..Default::default()
                };
                let o = s
                    .retain(&[block("a"), block("b")], 50 * day)
                    .expect("retain call");
                assert!(!o.value[0].delete, "{:?}", o.value[0]);
                assert!(o.value[1].delete, "{:?}", o.value[1]);
                assert!(o.value[1].reason.contains("10d"), "{:?}", o.value[1]);
            }
            "downsample" => {
                let set = load(&wasm, PolicyKind::Downsample, Value::Null);
                let mut s = set
                    .session("scaffolded", PolicyKind::Downsample)
                    .expect("session");
                let raw = Series::new(
                    (0..12).map(|i| i * 60_000).collect(),
                    (0..12).map(|i| i as f64).collect(),
                );
                let o = s.downsample(&raw, 300_000).expect("downsample call");
                assert_eq!(
                    o.value.count,
                    Series::new(vec![299_999, 599_999, 660_000], vec![5.0, 5.0, 2.0])
                );
                assert_eq!(o.value.sum.values, vec![10.0, 35.0, 21.0]);
                let hourly = s
                    .downsample_aggregates(&o.value, 3_600_000)
                    .expect("downsample_aggregates call");
                assert_eq!(hourly.value.count, Series::new(vec![660_000], vec![12.0]));
                assert_eq!(hourly.value.max.values, vec![11.0]);
            }
            _ => unreachable!(),
        }
        // `sluice plugin test` runs it on the input.json it was scaffolded with.
        let report = sluice::cli::plugin::test_plugin(&sluice::cli::plugin::TestOptions {
            module: wasm.clone(),
            kind: None,
            config: None,
            input: Some(dir.join("input.json")),
            limits: Limits::default(),
            func: None,
            repeat: 1,
            grants: Default::default(),
        })
        .unwrap_or_else(|e| panic!("sluice plugin test on the scaffolded {kind} plugin: {e}"));
        assert_eq!(report["plugin"]["name"], name.as_str());
        assert!(!report["output"].is_null(), "{report}");
    }
}
