//! Prometheus' JSON API ↔ the Thanos gRPC messages of the Rules, Targets, Metadata and Exemplars APIs.
//!
//! A sidecar reads `/api/v1/rules`, `/api/v1/targets`, `/api/v1/metadata` and `/api/v1/query_exemplars` of its
//! Prometheus and answers gRPC with the `*_from_prometheus` functions (external labels attached, winning over the
//! series' own); a querier turns the merged gRPC answers back into Prometheus' JSON shapes with the `*_to_json`
//! functions. Durations are float seconds, timestamps RFC 3339 on the JSON side and `Timestamp` (or Unix
//! milliseconds for exemplars) on the wire.

use std::collections::HashMap;

use prost_types::Timestamp;
use serde_json::{Map, Value, json};
use sluice_model::Labels;
use sluice_model::time::{parse_rfc3339, rfc3339_nanos};
use sluice_proto::thanos::{
    ActiveTarget, Alert, AlertInstance, AlertState, DroppedTarget, Exemplar, ExemplarData, Label,
    LabelSet, Meta, MetricMetadata, MetricMetadataEntry, PartialResponseStrategy, RecordingRule,
    Rule, RuleGroup, TargetDiscovery, TargetHealth, rule,
};

/// A JSON answer that does not have the shape Prometheus documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected JSON from Prometheus: {0}")]
pub struct ShapeError(pub String);

type R<T> = Result<T, ShapeError>;

fn shape(what: impl Into<String>) -> ShapeError {
    ShapeError(what.into())
}

/// A JSON label object with `ext` merged in (external labels win), sorted by name.
pub fn label_set(v: &Value, ext: &Labels) -> R<LabelSet> {
    let mut labels: Vec<Label> = Vec::new();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let value = v
                    .as_str()
                    .ok_or_else(|| shape(format!("label {k} is not a string")))?;
                labels.push(Label {
                    name: k.clone(),
                    value: value.to_owned(),
                });
            }
        }
        _ => return Err(shape("labels are not an object")),
    }
    for l in ext.iter() {
        match labels.iter_mut().find(|x| x.name == l.name) {
            Some(x) => x.value = l.value.clone(),
            None => labels.push(Label {
                name: l.name.clone(),
                value: l.value.clone(),
            }),
        }
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(LabelSet { labels })
}

/// A label set as a JSON object.
pub fn labels_json(ls: Option<&LabelSet>) -> Value {
    let mut m = Map::new();
    for l in ls.map(|l| l.labels.as_slice()).unwrap_or_default() {
        m.insert(l.name.clone(), Value::String(l.value.clone()));
    }
    Value::Object(m)
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or_default()
}

fn ts_of(v: &Value, key: &str) -> Option<Timestamp> {
    let s = v.get(key)?.as_str()?;
    let (seconds, nanos) = parse_rfc3339(s)?;
    Some(Timestamp {
        seconds,
        nanos: nanos as i32,
    })
}

/// A timestamp as Go prints a `time.Time` (the zero time when absent).
pub fn ts_json(t: Option<&Timestamp>) -> Value {
    match t {
        Some(t) => Value::String(rfc3339_nanos(
            t.seconds,
            t.nanos.clamp(0, 999_999_999) as u32,
        )),
        None => Value::String("0001-01-01T00:00:00Z".into()),
    }
}

fn alert_state(s: &str) -> AlertState {
    match s {
        "firing" => AlertState::Firing,
        "pending" => AlertState::Pending,
        _ => AlertState::Inactive,
    }
}

/// `inactive`, `pending` or `firing`.
pub fn alert_state_name(s: i32) -> &'static str {
    match AlertState::try_from(s) {
        Ok(AlertState::Firing) => "firing",
        Ok(AlertState::Pending) => "pending",
        _ => "inactive",
    }
}

fn strategy_name(s: i32) -> &'static str {
    match PartialResponseStrategy::try_from(s) {
        Ok(PartialResponseStrategy::Abort) => "ABORT",
        _ => "WARN",
    }
}

/// `data.groups` of Prometheus' `/api/v1/rules`, external labels attached to every rule and alert.
pub fn rule_groups_from_prometheus(data: &Value, ext: &Labels) -> R<Vec<RuleGroup>> {
    let groups = match data.get("groups") {
        Some(Value::Array(g)) => g,
        Some(Value::Null) | None => return Ok(Vec::new()),
        Some(_) => return Err(shape("rules: groups is not an array")),
    };
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let rules = g
            .get("rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut pb_rules = Vec::with_capacity(rules.len());
        for r in rules {
            let result = match r.get("type").and_then(Value::as_str) {
                Some("alerting") => {
                    let mut alerts = Vec::new();
                    for a in r
                        .get("alerts")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        alerts.push(AlertInstance {
                            labels: Some(label_set(&a["labels"], ext)?),
                            annotations: Some(label_set(&a["annotations"], &Labels::empty())?),
                            state: alert_state(a["state"].as_str().unwrap_or_default()) as i32,
                            active_at: ts_of(a, "activeAt"),
                            value: str_of(a, "value"),
                            partial_response_strategy: 0,
                        });
                    }
                    rule::Result::Alert(Alert {
                        state: alert_state(r["state"].as_str().unwrap_or_default()) as i32,
                        name: str_of(r, "name"),
                        query: str_of(r, "query"),
                        duration_seconds: f64_of(r, "duration"),
                        labels: Some(label_set(&r["labels"], ext)?),
                        annotations: Some(label_set(&r["annotations"], &Labels::empty())?),
                        alerts,
                        health: str_of(r, "health"),
                        last_error: str_of(r, "lastError"),
                        evaluation_duration_seconds: f64_of(r, "evaluationTime"),
                        last_evaluation: ts_of(r, "lastEvaluation"),
                        keep_firing_for_seconds: f64_of(r, "keepFiringFor"),
                    })
                }
                Some("recording") => rule::Result::Recording(RecordingRule {
                    name: str_of(r, "name"),
                    query: str_of(r, "query"),
                    labels: Some(label_set(&r["labels"], ext)?),
                    health: str_of(r, "health"),
                    last_error: str_of(r, "lastError"),
                    evaluation_duration_seconds: f64_of(r, "evaluationTime"),
                    last_evaluation: ts_of(r, "lastEvaluation"),
                }),
                other => return Err(shape(format!("rules: rule type {other:?}"))),
            };
            pb_rules.push(Rule {
                result: Some(result),
            });
        }
        out.push(RuleGroup {
            name: str_of(g, "name"),
            file: str_of(g, "file"),
            rules: pb_rules,
            interval: f64_of(g, "interval"),
            evaluation_duration_seconds: f64_of(g, "evaluationTime"),
            last_evaluation: ts_of(g, "lastEvaluation"),
            partial_response_strategy: 0,
            limit: g.get("limit").and_then(Value::as_i64).unwrap_or_default(),
        });
    }
    Ok(out)
}

fn alert_instance_json(a: &AlertInstance) -> Value {
    let mut v = json!({
        "labels": labels_json(a.labels.as_ref()),
        "annotations": labels_json(a.annotations.as_ref()),
        "state": alert_state_name(a.state),
        "value": a.value,
        "partialResponseStrategy": strategy_name(a.partial_response_strategy),
    });
    if let Some(t) = &a.active_at {
        v["activeAt"] = ts_json(Some(t));
    }
    v
}

/// A rule group in the shape of Prometheus' `/api/v1/rules` (plus Thanos' `partialResponseStrategy`).
pub fn rule_group_json(g: &RuleGroup) -> Value {
    let rules: Vec<Value> = g
        .rules
        .iter()
        .filter_map(|r| match r.result.as_ref()? {
            rule::Result::Alert(a) => {
                let mut v = json!({
                    "state": alert_state_name(a.state),
                    "name": a.name,
                    "query": a.query,
                    "duration": a.duration_seconds,
                    "keepFiringFor": a.keep_firing_for_seconds,
                    "labels": labels_json(a.labels.as_ref()),
                    "annotations": labels_json(a.annotations.as_ref()),
                    "alerts": a.alerts.iter().map(alert_instance_json).collect::<Vec<_>>(),
                    "health": a.health,
                    "evaluationTime": a.evaluation_duration_seconds,
                    "lastEvaluation": ts_json(a.last_evaluation.as_ref()),
                    "type": "alerting",
                });
                if !a.last_error.is_empty() {
                    v["lastError"] = Value::String(a.last_error.clone());
                }
                Some(v)
            }
            rule::Result::Recording(rr) => {
                let mut v = json!({
                    "name": rr.name,
                    "query": rr.query,
                    "labels": labels_json(rr.labels.as_ref()),
                    "health": rr.health,
                    "evaluationTime": rr.evaluation_duration_seconds,
                    "lastEvaluation": ts_json(rr.last_evaluation.as_ref()),
                    "type": "recording",
                });
                if !rr.last_error.is_empty() {
                    v["lastError"] = Value::String(rr.last_error.clone());
                }
                Some(v)
            }
        })
        .collect();
    json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval,
        "limit": g.limit,
        "evaluationTime": g.evaluation_duration_seconds,
        "lastEvaluation": ts_json(g.last_evaluation.as_ref()),
        "partialResponseStrategy": strategy_name(g.partial_response_strategy),
    })
}

/// `data` of `/api/v1/alerts`: every alert instance of every alerting rule.
pub fn alerts_json(groups: &[RuleGroup]) -> Value {
    let alerts: Vec<Value> = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter_map(|r| match r.result.as_ref()? {
            rule::Result::Alert(a) => Some(a.alerts.iter().map(alert_instance_json)),
            rule::Result::Recording(_) => None,
        })
        .flatten()
        .collect();
    json!({ "alerts": alerts })
}

fn health(s: &str) -> TargetHealth {
    match s {
        "up" => TargetHealth::Up,
        "down" => TargetHealth::Down,
        _ => TargetHealth::Unknown,
    }
}

fn health_name(h: i32) -> &'static str {
    match TargetHealth::try_from(h) {
        Ok(TargetHealth::Up) => "up",
        Ok(TargetHealth::Down) => "down",
        _ => "unknown",
    }
}

/// `data` of Prometheus' `/api/v1/targets`, external labels attached to target and discovered labels.
pub fn targets_from_prometheus(data: &Value, ext: &Labels) -> R<TargetDiscovery> {
    let list = |key: &str| -> R<&[Value]> {
        match data.get(key) {
            Some(Value::Array(a)) => Ok(a.as_slice()),
            Some(Value::Null) | None => Ok(&[]),
            Some(_) => Err(shape(format!("targets: {key} is not an array"))),
        }
    };
    let mut active = Vec::new();
    for t in list("activeTargets")? {
        active.push(ActiveTarget {
            discovered_labels: Some(label_set(&t["discoveredLabels"], ext)?),
            labels: Some(label_set(&t["labels"], ext)?),
            scrape_pool: str_of(t, "scrapePool"),
            scrape_url: str_of(t, "scrapeUrl"),
            global_url: str_of(t, "globalUrl"),
            last_error: str_of(t, "lastError"),
            last_scrape: ts_of(t, "lastScrape"),
            last_scrape_duration: f64_of(t, "lastScrapeDuration"),
            health: health(t["health"].as_str().unwrap_or_default()) as i32,
        });
    }
    let mut dropped = Vec::new();
    for t in list("droppedTargets")? {
        dropped.push(DroppedTarget {
            discovered_labels: Some(label_set(&t["discoveredLabels"], ext)?),
        });
    }
    Ok(TargetDiscovery {
        active_targets: active,
        dropped_targets: dropped,
    })
}

/// A target discovery in the shape of `/api/v1/targets`.
pub fn targets_json(t: &TargetDiscovery) -> Value {
    let active: Vec<Value> = t
        .active_targets
        .iter()
        .map(|a| {
            json!({
                "discoveredLabels": labels_json(a.discovered_labels.as_ref()),
                "labels": labels_json(a.labels.as_ref()),
                "scrapePool": a.scrape_pool,
                "scrapeUrl": a.scrape_url,
                "globalUrl": a.global_url,
                "lastError": a.last_error,
                "lastScrape": ts_json(a.last_scrape.as_ref()),
                "lastScrapeDuration": a.last_scrape_duration,
                "health": health_name(a.health),
            })
        })
        .collect();
    let dropped: Vec<Value> = t
        .dropped_targets
        .iter()
        .map(|d| json!({ "discoveredLabels": labels_json(d.discovered_labels.as_ref()) }))
        .collect();
    json!({ "activeTargets": active, "droppedTargets": dropped })
}

/// `data` of Prometheus' `/api/v1/metadata`: metric name → its distinct metadata entries.
pub fn metadata_from_prometheus(data: &Value) -> R<MetricMetadata> {
    let mut metadata = HashMap::new();
    match data {
        Value::Null => {}
        Value::Object(m) => {
            for (metric, metas) in m {
                let metas = metas
                    .as_array()
                    .ok_or_else(|| shape(format!("metadata of {metric} is not an array")))?;
                let metas = metas
                    .iter()
                    .map(|x| Meta {
                        r#type: str_of(x, "type"),
                        help: str_of(x, "help"),
                        unit: str_of(x, "unit"),
                    })
                    .collect();
                metadata.insert(metric.clone(), MetricMetadataEntry { metas });
            }
        }
        _ => return Err(shape("metadata is not an object")),
    }
    Ok(MetricMetadata { metadata })
}

/// Merged metadata in the shape of `/api/v1/metadata`, metric names sorted.
pub fn metadata_json(m: &MetricMetadata) -> Value {
    let mut names: Vec<&String> = m.metadata.keys().collect();
    names.sort();
    let mut out = Map::new();
    for n in names {
        let metas: Vec<Value> = m.metadata[n]
            .metas
            .iter()
            .map(|x| json!({"type": x.r#type, "help": x.help, "unit": x.unit}))
            .collect();
        out.insert(n.clone(), Value::Array(metas));
    }
    Value::Object(out)
}

fn sample_value(v: &Value) -> R<f64> {
    match v {
        Value::String(s) => match s.as_str() {
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            s => s
                .parse()
                .map_err(|_| shape(format!("exemplar value {s:?}"))),
        },
        Value::Number(n) => n.as_f64().ok_or_else(|| shape("exemplar value")),
        _ => Err(shape("exemplar value is not a string")),
    }
}

/// `data` of Prometheus' `/api/v1/query_exemplars`, external labels attached to the series labels.
pub fn exemplars_from_prometheus(data: &Value, ext: &Labels) -> R<Vec<ExemplarData>> {
    let list = match data {
        Value::Array(a) => a.as_slice(),
        Value::Null => &[],
        _ => return Err(shape("exemplars: data is not an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        let mut exemplars = Vec::new();
        for e in d
            .get("exemplars")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let ts = e
                .get("timestamp")
                .and_then(Value::as_f64)
                .ok_or_else(|| shape("exemplar timestamp"))?;
            exemplars.push(Exemplar {
                labels: Some(label_set(&e["labels"], &Labels::empty())?),
                value: sample_value(&e["value"])?,
                ts: (ts * 1000.0).round() as i64,
            });
        }
        out.push(ExemplarData {
            series_labels: Some(label_set(&d["seriesLabels"], ext)?),
            exemplars,
        });
    }
    Ok(out)
}

/// A float as Prometheus formats sample values in JSON.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Exemplar data in the shape of `/api/v1/query_exemplars`.
pub fn exemplars_json(data: &[ExemplarData]) -> Value {
    let list: Vec<Value> = data
        .iter()
        .map(|d| {
            let ex: Vec<Value> = d
                .exemplars
                .iter()
                .map(|e| {
                    json!({
                        "labels": labels_json(e.labels.as_ref()),
                        "value": format_value(e.value),
                        "timestamp": e.ts as f64 / 1000.0,
                    })
                })
                .collect();
            json!({ "seriesLabels": labels_json(d.series_labels.as_ref()), "exemplars": ex })
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> Labels {
        Labels::from_pairs([("cluster", "c1"), ("replica", "0")])
    }

    #[test]
    fn rules_round_trip_with_external_labels() {
        let data = json!({"groups": [{
        "name": "g", "file": "/r.yml", "interval": 15, "limit": 0, "evaluationTime": 0.25,
        "lastEvaluation": "2026-12-05T05:00:00.5Z",
        "rules": [
            {"type": "alerting", "state": "firing", "name": "Hot", "query": "t > 20", "duration": 60,
             "keepFiringFor": 0, "labels": {"severity": "page", "cluster": "inner"},
             "annotations": {"summary": "hot"}, "health": "ok", "evaluationTime": 0.1,
             "lastEvaluation": "2026-12-05T05:00:00Z",
             "alerts": [{"labels": {"alertname": "Hot", "room": "lab"}, "annotations": {},
                         "state": "firing", "activeAt": "2026-12-05T04:00:00.123Z", "value": "2.25e+01"}]},
            {"type": "recording", "name": "job:up:sum", "query": "sum by (job) (up)", "health": "err",
             "lastError": "boom", "evaluationTime": 0.0, "lastEvaluation": "2026-12-05T05:00:00Z"}
        ]}]});
        let groups = rule_groups_from_prometheus(&data, &ext()).expect("rules");
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            (g.name.as_str(), g.file.as_str(), g.interval),
            ("g", "/r.yml", 15.0)
        );
        let Some(rule::Result::Alert(a)) = &g.rules[0].result else {
            panic!("alert expected")
        };
        assert_eq!(a.state, AlertState::Firing as i32);
        let names: Vec<(&str, &str)> = a
            .labels
            .as_ref()
            .expect("labels")
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [("cluster", "c1"), ("replica", "0"), ("severity", "page")]
        );
        assert_eq!(
            a.alerts[0].active_at,
            Some(Timestamp {
                seconds: 1_796_443_200,
                nanos: 123_000_000
            })
        );

        let back = rule_group_json(g);
        assert_eq!(
            back["rules"][0]["alerts"][0]["activeAt"],
            "2026-12-05T04:00:00.123Z"
        );
        assert_eq!(back["rules"][0]["labels"]["cluster"], "c1");
        assert_eq!(back["rules"][1]["lastError"], "boom");
        assert_eq!(back["rules"][1]["type"], "recording");
        assert_eq!(back["partialResponseStrategy"], "WARN");
        let alerts = alerts_json(&groups);
        assert_eq!(alerts["alerts"].as_array().map(Vec::len), Some(1));
        assert_eq!(alerts["alerts"][0]["labels"]["replica"], "0");
    }

    #[test]
    fn targets_metadata_exemplars() {
        let t = targets_from_prometheus(&json!({
            "activeTargets": [{"discoveredLabels": {"__address__": "a:1"}, "labels": {"job": "x"},
                "scrapePool": "x", "scrapeUrl": "http://a:1/metrics", "globalUrl": "http://a:1/metrics",
                "lastError": "", "lastScrape": "2026-12-05T05:00:00Z", "lastScrapeDuration": 0.002,
                "health": "up", "scrapeInterval": "1s"}],
            "droppedTargets": [{"discoveredLabels": {"__address__": "b:1"}}]
        }), &ext()).expect("targets");
        assert_eq!(t.active_targets[0].health, TargetHealth::Up as i32);
        let j = targets_json(&t);
        assert_eq!(
            j["activeTargets"][0]["labels"],
            json!({"cluster": "c1", "job": "x", "replica": "0"})
        );
        assert_eq!(
            j["droppedTargets"][0]["discoveredLabels"]["__address__"],
            "b:1"
        );

        let m =
            metadata_from_prometheus(&json!({"up": [{"type": "gauge", "help": "h", "unit": ""}]}))
                .expect("metadata");
        assert_eq!(
            metadata_json(&m),
            json!({"up": [{"type": "gauge", "help": "h", "unit": ""}]})
        );
        assert!(metadata_from_prometheus(&json!([])).is_err());

        let e = exemplars_from_prometheus(&json!([{"seriesLabels": {"__name__": "x"},
            "exemplars": [{"labels": {"trace_id": "t"}, "value": "6", "timestamp": 1600096945.479}]}]), &ext())
            .expect("exemplars");
        assert_eq!(e[0].exemplars[0].ts, 1_600_096_945_479);
        let j = exemplars_json(&e);
        assert_eq!(j[0]["exemplars"][0]["value"], "6");
        assert_eq!(j[0]["exemplars"][0]["timestamp"], 1600096945.479);
        assert_eq!(j[0]["seriesLabels"]["cluster"], "c1");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(rule_groups_from_prometheus(&json!({"groups": 3}), &ext()).is_err());
        assert!(
            rule_groups_from_prometheus(&json!({"groups": [{"rules": [{"type": "x"}]}]}), &ext())
                .is_err()
        );
        assert!(targets_from_prometheus(&json!({"activeTargets": {}}), &ext()).is_err());
        assert!(label_set(&json!({"a": 1}), &ext()).is_err());
    }
}
