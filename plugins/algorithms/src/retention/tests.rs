//! Retention decisions at the boundaries, per resolution and by rule.

use super::*;

const DAY: i64 = 86_400_000;
const MAX_T: i64 = 1_700_000_000_000;

fn block(resolution: i64, labels: &[(&str, &str)]) -> BlockInfo {
    BlockInfo {
        ulid: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
        min_time: MAX_T - 2 * DAY,
        max_time: MAX_T,
        resolution,
        labels: labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        level: 3,
    }
}

fn policy(json: &str) -> RetentionPolicy {
    match RetentionPolicy::from_json(json) {
        Ok(p) => p,
        Err(e) => panic!("{json}: {e}"),
    }
}

#[test]
fn boundary_is_strictly_after_max_time_plus_retention() {
    let p = policy(r#"{"resolution_raw": "30d"}"#);
    let b = block(0, &[]);
    let at = p.decide(&b, MAX_T + 30 * DAY);
    assert!(!at.delete, "exactly at maxTime + retention is kept: {at:?}");
    let after = p.decide(&b, MAX_T + 30 * DAY + 1);
    assert!(after.delete, "1 ms later it is marked: {after:?}");
    assert_eq!(after.reason, "block exceeding retention of 720h0m0s");
    assert!(!p.decide(&b, MAX_T).delete);
}

#[test]
fn per_resolution_retention() {
    let p = policy(r#"{"resolution_raw": "2d", "resolution_5m": "10d", "resolution_1h": "1y"}"#);
    let now = MAX_T + 11 * DAY;
    assert!(p.decide(&block(0, &[]), now).delete);
    assert!(p.decide(&block(300_000, &[]), now).delete);
    assert!(!p.decide(&block(3_600_000, &[]), now).delete);
    assert!(
        p.decide(&block(3_600_000, &[]), MAX_T + 365 * DAY + 1)
            .delete
    );
    assert!(!p.decide(&block(3_600_000, &[]), MAX_T + 365 * DAY).delete);
    // A resolution Thanos does not know has no default retention.
    assert!(!p.decide(&block(60_000, &[]), MAX_T + 1000 * DAY).delete);
}

#[test]
fn zero_or_absent_means_forever() {
    for json in [
        "",
        "null",
        "{}",
        r#"{"resolution_raw": "0d"}"#,
        r#"{"resolution_raw": "0"}"#,
    ] {
        let d = policy(json).decide(&block(0, &[]), i64::MAX);
        assert!(!d.delete, "{json}: {d:?}");
        assert!(d.reason.contains("kept forever"), "{}", d.reason);
    }
    // Only raw has a retention here; 5m is kept forever.
    let p = policy(r#"{"resolution_raw": "1d", "resolution_5m": "0d"}"#);
    assert!(!p.decide(&block(300_000, &[]), i64::MAX).delete);
    assert!(p.decide(&block(0, &[]), i64::MAX).delete);
}

#[test]
fn first_matching_rule_wins_over_resolution_default() {
    let p = policy(
        r#"{"resolution_raw": "90d", "resolution_5m": "90d",
            "rules": [
              {"matchers": "{team=\"a\", env=~\"prod|staging\"}", "retention": "30d"},
              {"matchers": [{"name": "team", "value": "a"}], "retention": "7d", "resolution": "raw"},
              {"matchers": [{"name": "tier", "op": "=~", "value": "gold|platinum"}], "retention": "0d"},
              {"matchers": "{team=\"a\"}", "retention": "1d"}
            ]}"#,
    );
    let now = MAX_T + 31 * DAY;
    // Rule 0 matches team a in prod: 30d.
    let d = p.decide(&block(0, &[("env", "prod"), ("team", "a")]), now);
    assert!(d.delete, "{d:?}");
    assert_eq!(
        d.reason,
        r#"block exceeding retention of 720h0m0s (rule 0 {team="a", env=~"prod|staging"})"#
    );
    assert!(
        !p.decide(
            &block(0, &[("env", "prod"), ("team", "a")]),
            MAX_T + 30 * DAY
        )
        .delete
    );
    // team a in dev, raw: rule 1 (7d), even though rule 3 (1d) also matches.
    assert!(
        !p.decide(&block(0, &[("env", "dev"), ("team", "a")]), MAX_T + 7 * DAY)
            .delete
    );
    assert!(
        p.decide(
            &block(0, &[("env", "dev"), ("team", "a")]),
            MAX_T + 7 * DAY + 1
        )
        .delete
    );
    // team a in dev, 5m: rule 1 is raw-only, so rule 3 (1d).
    assert!(
        p.decide(
            &block(300_000, &[("env", "dev"), ("team", "a")]),
            MAX_T + DAY + 1
        )
        .delete
    );
    // Gold tier: rule 2 keeps forever, over the 90d default.
    let gold = p.decide(&block(0, &[("tier", "gold")]), i64::MAX);
    assert!(!gold.delete && gold.reason.contains("rule 2"), "{gold:?}");
    // "gold2" does not match the anchored regex: default 90d.
    assert!(
        p.decide(&block(0, &[("tier", "gold2")]), MAX_T + 91 * DAY)
            .delete
    );
    assert!(
        !p.decide(&block(0, &[("tier", "gold2")]), MAX_T + 89 * DAY)
            .delete
    );
    // No labels: default.
    assert!(!p.decide(&block(0, &[]), now).delete);
}

#[test]
fn reasons_say_why_a_block_is_kept() {
    let p = policy(r#"{"resolution_raw": "1d"}"#);
    let d = p.decide(&block(0, &[]), MAX_T);
    assert_eq!(
        d.reason,
        format!("within retention of 24h0m0s until {} ms", MAX_T + DAY)
    );
    let f = p.decide(&block(3_600_000, &[]), MAX_T);
    assert_eq!(f.reason, "no retention for resolution 1h: kept forever");
}

#[test]
fn no_overflow_near_the_end_of_time() {
    let p = policy(r#"{"resolution_raw": "1y"}"#);
    let mut b = block(0, &[]);
    b.max_time = i64::MAX - 5;
    assert!(!p.decide(&b, i64::MAX).delete);
    b.max_time = i64::MIN;
    assert!(p.decide(&b, 0).delete);
}

#[test]
fn bad_configs_are_rejected_with_every_problem() {
    let cases = [
        (
            r#"{"resolution_raw": "30"}"#,
            "resolution_raw: not a valid duration",
        ),
        (r#"{"resolution_5m": "30x"}"#, "resolution_5m: unknown unit"),
        (r#"{"resolution_1h": "-1d"}"#, "resolution_1h"),
        (r#"{"resolution_raw": 30}"#, "invalid retention config"),
        (
            r#"{"retention_raw": "30d"}"#,
            "unknown field `retention_raw`",
        ),
        (
            r#"{"rules": [{"matchers": "team=a", "retention": "1d"}]}"#,
            "rules[0].matchers",
        ),
        (
            r#"{"rules": [{"matchers": "{team=~\"(\"}", "retention": "1d"}]}"#,
            "invalid regex",
        ),
        (
            r#"{"rules": [{"matchers": [{"name": "team", "op": "==", "value": "a"}], "retention": "1d"}]}"#,
            "unknown matcher operator",
        ),
        (
            r#"{"rules": [{"matchers": [{"name": "1x", "value": "a"}], "retention": "1d"}]}"#,
            "invalid label name",
        ),
        (
            r#"{"rules": [{"matchers": [{"name": "x", "value": "a", "extra": 1}], "retention": "1d"}]}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"rules": [{"matchers": 5, "retention": "1d"}]}"#,
            "selector string",
        ),
        (
            r#"{"rules": [{"matchers": "{}", "retention": "1d", "resolution": "1m"}]}"#,
            "rules[0].resolution",
        ),
        (
            r#"{"rules": [{"matchers": "{}"}]}"#,
            "missing field `retention`",
        ),
        (
            r#"{"rules": [{"matchers": "{}", "retention": ""}]}"#,
            "empty duration",
        ),
        ("[", "invalid retention config"),
    ];
    for (json, want) in cases {
        match RetentionPolicy::from_json(json) {
            Ok(_) => panic!("{json} should be rejected"),
            Err(e) => assert!(e.contains(want), "{json}: got {e:?}, want {want:?}"),
        }
    }
    let e = RetentionPolicy::from_json(
        r#"{"resolution_raw": "x", "rules": [{"matchers": "{a=\"b\"}", "retention": "1q"}, {"matchers": "{", "retention": "1d"}]}"#,
    )
    .err()
    .unwrap_or_default();
    assert!(
        e.contains("resolution_raw")
            && e.contains("rules[0].retention")
            && e.contains("rules[1].matchers"),
        "{e}"
    );
}

#[test]
fn downsampling_compatibility_check() {
    assert!(
        policy(r#"{"resolution_raw": "40h", "resolution_5m": "10d"}"#)
            .check_downsampling_compatible()
            .is_ok()
    );
    assert!(policy("{}").check_downsampling_compatible().is_ok());
    let e = policy(r#"{"resolution_raw": "39h", "resolution_5m": "9d"}"#)
        .check_downsampling_compatible()
        .unwrap_err();
    assert!(e.contains("40h") && e.contains("10d"), "{e}");
}
