//! The public surface the plugin wrappers and the host's native fallback
//! are written against, exercised end to end once per policy.

use sluice_policy_algorithms::Series;
use sluice_policy_algorithms::dedup::{self, PenaltyConfig};
use sluice_policy_algorithms::downsample::{self, Aggregates};
use sluice_policy_algorithms::relabel::{RelabelConfig, Relabeler};
use sluice_policy_algorithms::retention::{BlockInfo, Decision, RetentionPolicy};

fn series(ts: &[i64], vs: &[f64]) -> Series {
    Series::new(ts.to_vec(), vs.to_vec())
}

#[test]
fn dedup_api() {
    assert!(PenaltyConfig::from_json("{}").is_ok());
    assert!(dedup::is_counter_func("rate"));
    let a = series(&[0, 10_000, 20_000], &[1.0, 2.0, 3.0]);
    let b = series(&[0, 10_000, 20_000, 30_000], &[9.0, 9.0, 9.0, 9.0]);
    let merged = dedup::penalty(&[a.clone(), b.clone()], false);
    assert_eq!(merged.timestamps, vec![0, 10_000, 20_000]);
    assert_eq!(
        dedup::penalty_for_func(&[a.clone(), b.clone()], "rate"),
        dedup::penalty(&[a.clone(), b.clone()], true)
    );
    let chained = dedup::chain(&[a, b]);
    assert_eq!(chained.timestamps, vec![0, 10_000, 20_000, 30_000]);
    assert_eq!(chained.values, vec![1.0, 2.0, 3.0, 9.0]);
}

#[test]
fn relabel_api() {
    let cfg: RelabelConfig =
        serde_json::from_str(r#"{"source_labels": ["job"], "target_label": "service"}"#)
            .expect("valid config");
    let r = Relabeler::new(vec![cfg]).expect("valid config");
    let out = r.relabel(&[("job".to_string(), "api".to_string())]);
    assert_eq!(
        out,
        Some(vec![
            ("job".into(), "api".into()),
            ("service".into(), "api".into())
        ])
    );
    let r = Relabeler::from_json(
        r#"{"relabel_configs": [{"action": "drop", "source_labels": ["job"], "regex": "api"}]}"#,
    )
    .expect("valid config");
    assert_eq!(r.relabel(&[("job".to_string(), "api".to_string())]), None);
}

#[test]
fn retention_api() {
    let p = RetentionPolicy::from_json(
        r#"{"resolution_raw": "1d", "rules": [{"matchers": "{team=\"a\"}", "retention": "2d"}]}"#,
    )
    .expect("valid config");
    let b = BlockInfo {
        ulid: "x".into(),
        min_time: 0,
        max_time: 1000,
        resolution: 0,
        labels: vec![],
        level: 1,
    };
    let Decision { delete, reason } = p.decide(&b, 1000 + 86_400_000 + 1);
    assert!(delete, "{reason}");
    let team = BlockInfo {
        labels: vec![("team".into(), "a".into())],
        ..b
    };
    assert!(!p.decide(&team, 1000 + 86_400_000 + 1).delete);
}

#[test]
fn downsample_api() {
    let raw = series(&[0, 60_000, 120_000], &[1.0, 2.0, 3.0]);
    let five: Aggregates = downsample::downsample_raw(&raw, downsample::RES_5M);
    assert_eq!(five.count.values, vec![3.0]);
    let hour = downsample::downsample_aggregates(&five, downsample::RES_1H);
    assert_eq!(hour.sum.values, vec![6.0]);
    let acr = downsample::apply_counter_resets(&hour.counter);
    assert_eq!(acr.values.last(), Some(&3.0));
}
