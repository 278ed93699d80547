//! The built-in policies through the production sandbox give exactly the
//! results of the same algorithms run natively.

use std::sync::Arc;

use serde_json::json;
use sluice::metrics::Metrics;
use sluice::policy::config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
use sluice::policy::{DedupBatch, DedupHints, PolicyEngine, PolicyRegistry};
use sluice_policy_abi::Series;
use sluice_policy_algorithms::{dedup, downsample, relabel, retention};

fn slot(name: &str, builtin: &str, kind: PolicyKind, config: serde_json::Value) -> SlotConfig {
    SlotConfig {
        name: name.into(),
        kind,
        source: PluginSource::Builtin(builtin.into()),
        sha256: None,
        config,
        limits: Limits::default(),
        failure_policy: FailurePolicy::FailClosed,
        grants: Default::default(),
    }
}

fn relabel_config() -> serde_json::Value {
    json!({"relabel_configs": [
        {"action": "labeldrop", "regex": "internal_.*"},
        {"source_labels": ["job", "instance"], "separator": "/", "target_label": "target", "replacement": "$1"},
        {"action": "drop", "source_labels": ["job"], "regex": "secret"},
        {"action": "hashmod", "source_labels": ["instance"], "modulus": 4, "target_label": "shard"},
        {"action": "uppercase", "source_labels": ["env"], "target_label": "env"}
    ]})
}

fn registry() -> Arc<PolicyRegistry> {
    let engine = PolicyEngine::new(None).expect("engine");
    let reg = PolicyRegistry::new(engine, &Metrics::new());
    let slots = vec![
        slot("dedup", "dedup-penalty", PolicyKind::Dedup, json!({})),
        slot("dedup-chain", "dedup-chain", PolicyKind::Dedup, json!({})),
        slot("relabel", "relabel", PolicyKind::Relabel, relabel_config()),
        slot(
            "retention",
            "retention",
            PolicyKind::Retention,
            json!({"resolution_raw": "30d", "rules": [{"matchers": "{team=\"a\"}", "retention": "7d"}]}),
        ),
        slot(
            "downsample",
            "downsample",
            PolicyKind::Downsample,
            json!({}),
        ),
    ];
    reg.apply(slots).expect("built-ins load");
    reg
}

/// Deterministic replica groups: counters with resets, gaps and jitter.
fn groups(n: usize) -> Vec<Vec<Series>> {
    let mut seed = 7u64;
    let mut rnd = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    (0..n)
        .map(|_| {
            (0..2)
                .map(|r| {
                    let (mut ts, mut vs) = (Vec::new(), Vec::new());
                    let mut v = 0.0;
                    let mut t = (r as i64) * 1000;
                    for _ in 0..120 {
                        t += 15_000 + rnd(2000) as i64 - 1000;
                        if rnd(40) == 0 {
                            t += 120_000; // a gap
                        }
                        v = if rnd(60) == 0 {
                            0.0
                        } else {
                            v + rnd(100) as f64
                        };
                        ts.push(t);
                        vs.push(v);
                    }
                    Series::new(ts, vs)
                })
                .collect()
        })
        .collect()
}

fn assert_same(a: &[Series], b: &[Series]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.timestamps, y.timestamps);
        let bits = |s: &Series| s.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y));
    }
}

#[test]
fn dedup_sandbox_equals_native() {
    let reg = registry();
    let set = reg.snapshot();
    let gs = groups(200);
    for (slot, func) in [("dedup", "rate"), ("dedup", ""), ("dedup-chain", "rate")] {
        let mut session = set.session(slot, PolicyKind::Dedup).expect("session");
        let mut batch = DedupBatch::new();
        for g in &gs {
            batch.push_group(
                g.iter()
                    .map(|s| (s.timestamps.as_slice(), s.values.as_slice())),
            );
        }
        let hints = DedupHints {
            func: func.into(),
            ..Default::default()
        };
        let out = session.dedup(&batch, &hints).expect("dedup");
        assert!(out.warning.is_none());
        let native: Vec<Series> = gs
            .iter()
            .map(|g| {
                if slot == "dedup-chain" {
                    dedup::chain(g)
                } else {
                    dedup::penalty(g, dedup::is_counter_func(func))
                }
            })
            .collect();
        assert_same(&out.value, &native);
    }
    // Counter mode changes results on this data, so the hint really reaches the plugin.
    let plain: Vec<Series> = gs.iter().map(|g| dedup::penalty(g, false)).collect();
    let counter: Vec<Series> = gs.iter().map(|g| dedup::penalty(g, true)).collect();
    assert_ne!(plain, counter);
}

#[test]
fn dedup_in_many_calls_equals_one_call() {
    let reg = registry();
    let set = reg.snapshot();
    let gs = groups(100);
    let hints = DedupHints {
        func: "rate".into(),
        ..Default::default()
    };
    let run = |call_bytes: usize| {
        let mut batch = DedupBatch::with_call_bytes(call_bytes);
        for g in &gs {
            batch.push_group(
                g.iter()
                    .map(|s| (s.timestamps.as_slice(), s.values.as_slice())),
            );
        }
        assert_eq!(batch.groups(), gs.len());
        let mut session = set.session("dedup", PolicyKind::Dedup).expect("session");
        session.dedup(&batch, &hints).expect("dedup").value
    };
    let native: Vec<Series> = gs.iter().map(|g| dedup::penalty(g, true)).collect();
    // One call; 10 calls of ~4 groups; one call per group.
    for call_bytes in [usize::MAX, 16 << 10, 1] {
        assert_same(&run(call_bytes), &native);
    }
    // An empty batch is one call that returns nothing.
    let mut session = set.session("dedup", PolicyKind::Dedup).expect("session");
    let out = session
        .dedup(&DedupBatch::new(), &hints)
        .expect("empty batch");
    assert!(out.value.is_empty());
}

#[test]
fn relabel_retention_downsample_sandbox_equal_native() {
    let reg = registry();
    let set = reg.snapshot();

    let sets: Vec<Vec<(String, String)>> = (0..50)
        .map(|i| {
            let mut l = vec![
                ("__name__".to_string(), "up".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("instance".to_string(), format!("10.0.0.{i}:9100")),
                ("internal_id".to_string(), i.to_string()),
                (
                    "job".to_string(),
                    if i % 10 == 0 {
                        "secret".into()
                    } else {
                        "node".into()
                    },
                ),
            ];
            l.sort();
            l
        })
        .collect();
    let mut s = set
        .session("relabel", PolicyKind::Relabel)
        .expect("session");
    let out = s.relabel(&sets).expect("relabel");
    let native = relabel::Relabeler::from_json(&relabel_config().to_string()).expect("config");
    let want: Vec<_> = sets.iter().map(|l| native.relabel(l)).collect();
    assert_eq!(out.value, want);
    assert_eq!(
        out.value.iter().filter(|s| s.is_none()).count(),
        5,
        "job=secret dropped"
    );
    assert!(
        out.value[1]
            .as_ref()
            .expect("kept")
            .iter()
            .any(|(n, v)| n == "env" && v == "PROD")
    );

    let day = 86_400_000i64;
    let now = 100 * day;
    let blocks: Vec<retention::BlockInfo> = [
        (0, 0, vec![]),
        (90 * day, 0, vec![("team", "a")]),
        (60 * day, 300_000, vec![]),
        (95 * day, 0, vec![]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (max, res, labels))| retention::BlockInfo {
        ulid: format!("01J{i:023}"),
        min_time: max - day,
        max_time: max,
        resolution: res,
        labels: labels
            .into_iter()
            .map(|(a, b): (&str, &str)| (a.to_string(), b.to_string()))
            .collect(),
        level: 1,
    })
    .collect();
    let mut s = set
        .session("retention", PolicyKind::Retention)
        .expect("session");
    let out = s.retain(&blocks, now).expect("retain");
    let native = retention::RetentionPolicy::from_json(&json!({"resolution_raw": "30d", "rules": [{"matchers": "{team=\"a\"}", "retention": "7d"}]}).to_string()).expect("cfg");
    let want: Vec<_> = blocks.iter().map(|b| native.decide(b, now)).collect();
    assert_eq!(
        out.value
            .iter()
            .map(|d| (d.delete, d.reason.clone()))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|d| (d.delete, d.reason.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        out.value.iter().map(|d| d.delete).collect::<Vec<_>>(),
        vec![true, true, false, false]
    );

    let g = &groups(1)[0][0];
    let mut s = set
        .session("downsample", PolicyKind::Downsample)
        .expect("session");
    let out = s.downsample(g, 300_000).expect("downsample");
    let want = downsample::downsample_raw(g, 300_000);
    assert_same(
        &[
            out.value.count.clone(),
            out.value.sum.clone(),
            out.value.min.clone(),
            out.value.max.clone(),
            out.value.counter.clone(),
        ],
        &[
            want.count.clone(),
            want.sum.clone(),
            want.min.clone(),
            want.max.clone(),
            want.counter.clone(),
        ],
    );
    let hour = s.downsample_aggregates(&want, 3_600_000).expect("5m->1h");
    let want_h = downsample::downsample_aggregates(&want, 3_600_000);
    assert_same(
        &[hour.value.count, hour.value.counter],
        &[want_h.count, want_h.counter],
    );
}

#[test]
fn status_lists_builtins_with_digests() {
    let reg = registry();
    let st = reg.status();
    let slots = st["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 5);
    for s in slots {
        assert_eq!(s["abi"], "0.1");
        assert_eq!(s["sha256"].as_str().expect("sha").len(), 64);
        assert!(s["source"].as_str().expect("src").starts_with("builtin:"));
    }
    assert_eq!(st["generation"], 1);
}
