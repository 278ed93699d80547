//! Every action with the examples of Prometheus's `relabel_config` docs and
//! example configs, the defaults, anchoring and the configuration checks.

use super::*;

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

fn r(json: &str) -> Relabeler {
    match Relabeler::from_json(json) {
        Ok(r) => r,
        Err(e) => panic!("{json}: {e}"),
    }
}

fn err(json: &str) -> String {
    match Relabeler::from_json(json) {
        Ok(_) => panic!("{json} should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn defaults_copy_a_label() {
    // No action/regex/replacement: replace with "(.*)" and "$1".
    let rl =
        r(r#"[{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}]"#);
    assert_eq!(
        rl.relabel(&l(&[
            ("__meta_kubernetes_namespace", "prod"),
            ("job", "api")
        ])),
        Some(l(&[
            ("__meta_kubernetes_namespace", "prod"),
            ("job", "api"),
            ("namespace", "prod")
        ]))
    );
    // An empty source value gives an empty replacement, which removes the target.
    assert_eq!(
        rl.relabel(&l(&[("job", "api"), ("namespace", "old")])),
        Some(l(&[("job", "api")]))
    );
}

#[test]
fn replace_with_groups_and_both_reference_syntaxes() {
    // From Prometheus's Kubernetes example config: address + port annotation.
    let rl = r(r#"{"relabel_configs": [{
        "action": "replace",
        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
        "regex": "([^:]+)(?::\\d+)?;(\\d+)",
        "replacement": "$1:${2}",
        "target_label": "__address__"}]}"#);
    assert_eq!(
        rl.relabel(&l(&[
            ("__address__", "10.1.2.3:8080"),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
                "9102"
            )
        ])),
        Some(l(&[
            ("__address__", "10.1.2.3:9102"),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
                "9102"
            )
        ]))
    );
    // No match (no port annotation): nothing changes.
    let input = l(&[("__address__", "10.1.2.3:8080")]);
    assert_eq!(rl.relabel(&input), Some(input.clone()));
}

#[test]
fn replace_expansion_follows_go() {
    let rl = r(
        r#"[{"source_labels": ["a"], "regex": "(?P<x>\\w)(\\w)(\\w)?", "target_label": "out",
                   "replacement": "$1x|${1}x|$x|${x}|$2|$3|$$|$|${|$01|$9"}]"#,
    );
    // `$1x` is the (unknown) group named "1x"; ${1}x is group 1 + "x"; $3 did
    // not participate; `$$` is `$`; malformed references stay literal.
    assert_eq!(
        rl.relabel(&l(&[("a", "pq")])),
        Some(l(&[("a", "pq"), ("out", "|px|p|p|q||$|$|${||")]))
    );
}

#[test]
fn replace_target_with_reference_and_literal_replacement() {
    let rl = r(
        r#"[{"source_labels": ["kind"], "regex": "(.+)", "target_label": "is_${1}", "replacement": "true"}]"#,
    );
    assert_eq!(
        rl.relabel(&l(&[("kind", "db")])),
        Some(l(&[("is_db", "true"), ("kind", "db")]))
    );
    // An expanded target that is not a valid label name is skipped.
    assert_eq!(
        rl.relabel(&l(&[("kind", "a-b")])),
        Some(l(&[("kind", "a-b")]))
    );
    // Literal replacement without a source: sets a constant label.
    let c = r(r#"[{"target_label": "env", "replacement": "prod"}]"#);
    assert_eq!(
        c.relabel(&l(&[("job", "x")])),
        Some(l(&[("env", "prod"), ("job", "x")]))
    );
}

#[test]
fn regex_is_fully_anchored() {
    let keep = r(r#"[{"action": "keep", "source_labels": ["job"], "regex": "ap"}]"#);
    assert_eq!(
        keep.relabel(&l(&[("job", "api")])),
        None,
        "\"ap\" must not match \"api\""
    );
    assert!(keep.relabel(&l(&[("job", "ap")])).is_some());
    let keep2 = r(r#"[{"action": "keep", "source_labels": ["job"], "regex": "ap.*"}]"#);
    assert!(keep2.relabel(&l(&[("job", "api")])).is_some());
    // (?s): `.` matches newlines as in Prometheus.
    let nl = r(r#"[{"action": "keep", "source_labels": ["m"], "regex": "a.b"}]"#);
    assert!(nl.relabel(&l(&[("m", "a\nb")])).is_some());
}

#[test]
fn keep_and_drop_match_the_joined_source_labels() {
    // Docs: keep "Drop targets for which regex does not match the concatenated
    // source_labels"; joined with the separator, missing labels as "".
    let keep = r(
        r#"[{"action": "keep", "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"], "regex": "true"}]"#,
    );
    assert!(
        keep.relabel(&l(&[
            (
                "__meta_kubernetes_service_annotation_prometheus_io_scrape",
                "true"
            ),
            ("job", "x")
        ]))
        .is_some()
    );
    assert_eq!(keep.relabel(&l(&[("job", "x")])), None);

    let drop = r(
        r#"[{"action": "drop", "source_labels": ["__name__", "le"], "separator": "@", "regex": "http_.*@(0\\.1|\\+Inf)"}]"#,
    );
    assert_eq!(
        drop.relabel(&l(&[("__name__", "http_bucket"), ("le", "+Inf")])),
        None
    );
    assert!(
        drop.relabel(&l(&[("__name__", "http_bucket"), ("le", "0.5")]))
            .is_some()
    );
    assert!(
        drop.relabel(&l(&[("__name__", "grpc_bucket"), ("le", "+Inf")]))
            .is_some()
    );
    // Missing label joins as "": "a;" matches "a;".
    let miss = r(r#"[{"action": "drop", "source_labels": ["x", "y"], "regex": "a;"}]"#);
    assert_eq!(miss.relabel(&l(&[("x", "a")])), None);
}

#[test]
fn keepequal_and_dropequal() {
    // Docs: keepequal "Drop targets for which the concatenated source_labels
    // do not match target_label"; dropequal the reverse.
    let keep =
        r(r#"[{"action": "keepequal", "source_labels": ["__meta_port"], "target_label": "port"}]"#);
    assert!(
        keep.relabel(&l(&[("__meta_port", "80"), ("port", "80")]))
            .is_some()
    );
    assert_eq!(
        keep.relabel(&l(&[("__meta_port", "80"), ("port", "8080")])),
        None
    );
    assert!(
        keep.relabel(&l(&[("job", "x")])).is_some(),
        "both empty are equal"
    );
    let drop = r(r#"[{"action": "DropEqual", "source_labels": ["a", "b"], "target_label": "c"}]"#);
    assert_eq!(
        drop.relabel(&l(&[("a", "1"), ("b", "2"), ("c", "1;2")])),
        None
    );
    assert!(
        drop.relabel(&l(&[("a", "1"), ("b", "2"), ("c", "1")]))
            .is_some()
    );
}

#[test]
fn hashmod_matches_md5_computed_independently() {
    // Docs example (sharding scrapes): hash the address into 8 buckets, keep
    // bucket 5. md5("10.0.0.1:9100") from `printf %s 10.0.0.1:9100 | md5sum`;
    // Prometheus uses the last 8 bytes big-endian modulo the modulus.
    let digest = "1eac7f871dc4b32a4cfeac4083628b3d";
    let want = u64::from_str_radix(&digest[16..], 16).unwrap() % 8;
    assert_eq!(want, 5);
    let rl = r(
        r#"[{"action": "hashmod", "source_labels": ["__address__"], "modulus": 8, "target_label": "__tmp_hash"},
                   {"action": "keep", "source_labels": ["__tmp_hash"], "regex": "5"}]"#,
    );
    assert_eq!(
        rl.relabel(&l(&[("__address__", "10.0.0.1:9100")])),
        Some(l(&[("__address__", "10.0.0.1:9100"), ("__tmp_hash", "5")]))
    );
    // md5("10.0.0.2:9100") = 61ed73c6baf2de43d94647be46682971 -> bucket 1: dropped.
    assert_eq!(u64::from_str_radix("d94647be46682971", 16).unwrap() % 8, 1);
    assert_eq!(rl.relabel(&l(&[("__address__", "10.0.0.2:9100")])), None);
    // Joined sources: md5("a;b") = 45d17989299efc4321960bf46f2ebd0a.
    assert_eq!(
        hashmod("a;b", 1000),
        u64::from_str_radix("21960bf46f2ebd0a", 16).unwrap() % 1000
    );
    assert_eq!(hashmod("a;b", 1000), 74);
    // MaxUint64 modulus: the hash itself. md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8.
    assert_eq!(
        hashmod("foo", u64::MAX),
        u64::from_str_radix("edef654fccc4a4d8", 16).unwrap() % u64::MAX
    );
}

#[test]
fn labelmap_kubernetes_pod_labels() {
    let rl = r(r#"[{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}]"#);
    assert_eq!(
        rl.relabel(&l(&[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_kubernetes_pod_label_tier", "front"),
            ("__meta_kubernetes_pod_name", "web-1"),
        ])),
        Some(l(&[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_kubernetes_pod_label_tier", "front"),
            ("__meta_kubernetes_pod_name", "web-1"),
            ("app", "web"),
            ("tier", "front"),
        ]))
    );
    let prefix =
        r(r#"[{"action": "labelmap", "regex": "(job|instance)", "replacement": "orig_${1}"}]"#);
    assert_eq!(
        prefix.relabel(&l(&[("job", "a"), ("instance", "b"), ("x", "c")])),
        Some(l(&[
            ("instance", "b"),
            ("job", "a"),
            ("orig_instance", "b"),
            ("orig_job", "a"),
            ("x", "c")
        ]))
    );
}

#[test]
fn labeldrop_and_labelkeep_match_names() {
    let drop = r(r#"[{"action": "labeldrop", "regex": "__meta_.*|pod_template_hash"}]"#);
    assert_eq!(
        drop.relabel(&l(&[
            ("__meta_x", "1"),
            ("pod_template_hash", "abc"),
            ("job", "j"),
            ("pod", "p")
        ])),
        Some(l(&[("job", "j"), ("pod", "p")]))
    );
    let keep = r(r#"[{"action": "labelkeep", "regex": "__name__|job|instance"}]"#);
    assert_eq!(
        keep.relabel(&l(&[
            ("__name__", "up"),
            ("job", "j"),
            ("instance", "i"),
            ("pod", "p"),
            ("jobs", "x")
        ])),
        Some(l(&[("__name__", "up"), ("instance", "i"), ("job", "j")]))
    );
    // Dropping every label leaves an empty set, which is dropped.
    let all = r(r#"[{"action": "labeldrop", "regex": ".*"}]"#);
    assert_eq!(all.relabel(&l(&[("a", "1")])), None);
}

#[test]
fn lowercase_and_uppercase() {
    let rl = r(
        r#"[{"action": "lowercase", "source_labels": ["Env", "zone"], "target_label": "env"},
                   {"action": "uppercase", "source_labels": ["zone"], "target_label": "ZONE"}]"#,
    );
    assert_eq!(
        rl.relabel(&l(&[("Env", "PROD"), ("zone", "Eu-West")])),
        Some(l(&[
            ("Env", "PROD"),
            ("ZONE", "EU-WEST"),
            ("env", "prod;eu-west"),
            ("zone", "Eu-West")
        ]))
    );
}

#[test]
fn steps_apply_in_order_and_see_earlier_results() {
    let rl = r(r#"[{"source_labels": ["a"], "target_label": "b"},
                   {"source_labels": ["b"], "regex": "x(.*)", "target_label": "c"},
                   {"action": "labeldrop", "regex": "a"}]"#);
    assert_eq!(
        rl.relabel(&l(&[("a", "xyz")])),
        Some(l(&[("b", "xyz"), ("c", "yz")]))
    );
    // A label set made only of internal labels that get dropped is dropped.
    assert_eq!(
        r(r#"[{"action": "labeldrop", "regex": "__.*"}]"#).relabel(&l(&[("__a", "1")])),
        None
    );
}

#[test]
fn input_normalisation() {
    let none = Relabeler::from_json("").unwrap();
    assert!(none.is_empty());
    // Unsorted input, empty values and duplicate names are normalised.
    let input = vec![
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "".to_string()),
        ("b".into(), "3".into()),
    ];
    assert_eq!(none.relabel(&input), Some(l(&[("b", "2")])));
    assert_eq!(none.relabel(&[]), None);
}

#[test]
fn validation_errors() {
    let cases = [
        (
            r#"[{"action": "hashmod", "source_labels": ["a"], "target_label": "t"}]"#,
            "requires non-zero modulus",
        ),
        (
            r#"[{"action": "hashmod", "source_labels": ["a"], "modulus": 0, "target_label": "t"}]"#,
            "non-zero modulus",
        ),
        (r#"[{"source_labels": ["a"]}]"#, "requires 'target_label'"),
        (
            r#"[{"action": "lowercase", "source_labels": ["a"]}]"#,
            "requires 'target_label'",
        ),
        (
            r#"[{"source_labels": ["a"], "target_label": "1bad"}]"#,
            "invalid 'target_label'",
        ),
        (
            r#"[{"source_labels": ["a"], "target_label": "a-b${1}"}]"#,
            "invalid 'target_label'",
        ),
        (
            r#"[{"action": "uppercase", "source_labels": ["a"], "target_label": "${1}"}]"#,
            "invalid 'target_label'",
        ),
        (
            r#"[{"action": "lowercase", "source_labels": ["a"], "target_label": "b", "replacement": "x"}]"#,
            "'replacement' can not be set",
        ),
        (
            r#"[{"action": "labelmap", "regex": "(.*)", "replacement": "a-$1"}]"#,
            "invalid 'replacement'",
        ),
        (
            r#"[{"action": "keepequal", "source_labels": ["a"], "target_label": "b", "regex": "x"}]"#,
            "only 'source_labels' and 'target_label'",
        ),
        (
            r#"[{"action": "dropequal", "source_labels": ["a"], "target_label": "b", "separator": ","}]"#,
            "only 'source_labels'",
        ),
        (
            r#"[{"action": "labeldrop", "regex": "a", "source_labels": ["a"]}]"#,
            "requires only 'regex'",
        ),
        (
            r#"[{"action": "labelkeep", "regex": "a", "target_label": "x"}]"#,
            "requires only 'regex'",
        ),
        (
            r#"[{"action": "labelkeep", "regex": "a", "source_labels": []}]"#,
            "requires only 'regex'",
        ),
        (
            r#"[{"action": "explode"}]"#,
            "unknown relabel action \"explode\"",
        ),
        (r#"[{"action": ""}]"#, "cannot be empty"),
        (
            r#"[{"action": "keep", "source_labels": ["a"], "regex": "(unclosed"}]"#,
            "invalid regex",
        ),
        (
            r#"[{"action": "keep", "source_labels": ["bad-name"]}]"#,
            "not a valid label name",
        ),
        (
            r#"[{"action": "keep", "source_label": ["a"]}]"#,
            "unknown field `source_label`",
        ),
        (
            r#"{"relabel_config": []}"#,
            "unknown field `relabel_config`",
        ),
        (
            r#"[{"action": "hashmod", "modulus": -1}]"#,
            "invalid relabel config",
        ),
        ("[", "invalid relabel config"),
        ("42", "invalid relabel config"),
    ];
    for (json, want) in cases {
        let e = err(json);
        assert!(
            e.contains(want),
            "{json}: got {e:?}, want it to contain {want:?}"
        );
    }
    // Every problem is reported, with the index of its config.
    let e = err(r#"[{"action": "keep", "source_labels": ["a"]},
                   {"action": "hashmod", "source_labels": ["a"], "target_label": "t"},
                   {"action": "keep", "regex": "("}]"#);
    assert!(
        e.contains("relabel_configs[1]: ")
            && e.contains("relabel_configs[2]: ")
            && !e.contains("[0]"),
        "{e}"
    );
}

#[test]
fn explicit_defaults_are_accepted_where_fields_are_forbidden() {
    // Prometheus compares with the defaults, so spelling them out is fine.
    r(r#"[{"action": "labeldrop", "regex": "a", "separator": ";", "replacement": "$1"}]"#);
    r(
        r#"[{"action": "keepequal", "source_labels": ["a"], "target_label": "b", "replacement": "$1", "regex": "(.*)"}]"#,
    );
    r(r#"[{"action": "Keep", "source_labels": ["a"], "regex": "x"}]"#);
}
