//! `sluice sidecar` end to end next to the real Debian Prometheus 2.42, which scrapes itself and an exporter this
//! test serves: a querier over the sidecar answers PromQL as that Prometheus does, two replicas are deduplicated,
//! a stopped Prometheus turns into a partial-response warning and back, blocks it cuts are shipped to a filesystem
//! bucket and to an S3 server and served by `sluice store`, and the reloader makes Prometheus reload a templated
//! config and a rule directory.
//!
//! Needs `prometheus` (`apt-get install prometheus`) and, for the S3 part, `pip install -r tests/requirements.txt`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use sluice_e2e::answers::{Normalized, normalize_with};
use sluice_e2e::api::expect_warning_naming;
use sluice_e2e::bucket::{fs_objstore_yaml, s3_objstore_yaml};
use sluice_e2e::process::eventually;
use sluice_e2e::{Moto, Prometheus, SluiceQuery, SluiceSidecar, SluiceStore};

/// An exporter whose values are a function of how often it was scraped.
struct Exporter {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Exporter {
    async fn start() -> Result<Exporter> {
        let scrapes = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        exposition(n),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Exporter { addr, task })
    }
}

/// OpenMetrics text, so that the counter can carry exemplars (`trace_id` = the scrape number).
fn exposition(n: u64) -> String {
    let f = n as f64;
    format!(
        "# TYPE sluice_test_requests counter\n\
         # HELP sluice_test_requests Requests served.\n\
         sluice_test_requests_total{{path=\"/a\"}} {a} # {{trace_id=\"a{n}\"}} 3.0\n\
         sluice_test_requests_total{{path=\"/b\"}} {b}\n\
         # TYPE sluice_test_temperature gauge\n\
         sluice_test_temperature{{room=\"kitchen\"}} {t}\n\
         sluice_test_temperature{{room=\"lab\"}} 22.5\n\
         # TYPE sluice_test_latency_seconds histogram\n\
         sluice_test_latency_seconds_bucket{{le=\"0.1\"}} {h1}\n\
         sluice_test_latency_seconds_bucket{{le=\"0.5\"}} {h2}\n\
         sluice_test_latency_seconds_bucket{{le=\"+Inf\"}} {h3}\n\
         sluice_test_latency_seconds_sum {s}\n\
         sluice_test_latency_seconds_count {h3}\n\
         # TYPE sluice_test_info gauge\n\
         sluice_test_info{{cluster=\"inner\",version=\"1.2\"}} 1\n\
         # EOF\n",
        a = 3.0 * f,
        b = 5.0 * f + (n % 3) as f64,
        t = 18 + n % 7,
        h1 = n,
        h2 = 2 * n + n % 2,
        h3 = 3 * n + n % 5,
        s = 0.7 * f,
    )
}

/// A Prometheus config scraping itself and `exporter` every second, with the given external labels.
fn prometheus_config(exporter: SocketAddr, external: &str, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {external}\n\
         scrape_configs:\n\
         \x20 - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:$PORT']}}]\n\
         \x20 - job_name: exporter\n    static_configs: [{{targets: ['{exporter}']}}]\n{extra}"
    )
}

fn sidecar_args(extra: &[String]) -> Vec<String> {
    let mut v = vec!["--prometheus.get_config_interval=1s".to_owned()];
    v.extend(extra.iter().cloned());
    v
}

async fn querier(endpoints: &[String]) -> Result<SluiceQuery> {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|e| format!("--endpoint={e}"))
        .collect();
    args.push("--query.replica-label=replica".into());
    let q = SluiceQuery::start(&args).await?;
    let mut want = endpoints.to_vec();
    want.sort();
    eventually(
        Duration::from_secs(30),
        &format!("querier endpoints {want:?} healthy"),
        || async {
            let s = q.stores().await?;
            let names: Vec<String> = s.iter().map(|s| s.name.clone()).collect();
            let ok = names == want && s.iter().all(|s| s.healthy);
            Ok((ok.then_some(()), format!("{s:?}")))
        },
    )
    .await?;
    Ok(q)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Waits until Prometheus holds at least `secs` seconds of samples of the exporter.
async fn wait_for_data(p: &Prometheus, secs: u64) -> Result<()> {
    eventually(
        Duration::from_secs(secs + 60),
        &format!("{secs}s of exporter samples in Prometheus"),
        || async {
            let v = p
                .get_json(&format!(
                    "/api/v1/query?query=count_over_time(up%7Bjob%3D%22exporter%22%7D%5B{secs}s%5D)"
                ))
                .await?;
            let n = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            Ok((
                (n >= (secs as f64) * 0.8).then_some(()),
                format!("{n} samples"),
            ))
        },
    )
    .await
}

/// A fraction of a second (in ms) as far as possible from the sub-second offset of every sample Prometheus scraped
/// in the last `secs` seconds, so that no range-window edge at `<whole second>.<fraction>` falls on a sample: there
/// Prometheus 2.x (left-closed windows) and PromQL 3.x (left-open) would differ. Also returns when the
/// last-started target's first sample was taken: windows that reach back to a series' first sample are
/// extrapolated differently by `rate` in 2.x and 3.x (3.x limits the extrapolation to zero after the threshold
/// check), so comparisons start 16 s later.
async fn safe_fraction(p: &Prometheus, secs: u64) -> Result<(f64, f64)> {
    let v = p
        .get_json(&format!("/api/v1/query?query=up%5B{secs}s%5D"))
        .await?;
    let mut offsets = Vec::new();
    let mut first = f64::MIN;
    for s in v["data"]["result"].as_array().context("result")? {
        let pts = s["values"].as_array().context("values")?;
        first = first.max(pts.first().and_then(|p| p[0].as_f64()).unwrap_or(f64::MIN));
        for pt in pts {
            let t = pt[0].as_f64().context("t")?;
            offsets.push(((t * 1000.0).round() as i64).rem_euclid(1000));
        }
    }
    ensure!(!offsets.is_empty(), "no samples of `up` yet");
    let dist = |f: i64| {
        offsets
            .iter()
            .map(|o| {
                let d = (f - o).rem_euclid(1000);
                d.min(1000 - d)
            })
            .min()
            .unwrap_or(500)
    };
    let best = (0..1000).step_by(5).max_by_key(|f| dist(*f)).unwrap_or(0);
    ensure!(
        dist(best) >= 20,
        "the scrape offsets {offsets:?} leave no sub-second gap of 40 ms"
    );
    Ok((best as f64 / 1000.0, first + 16.0))
}

/// Same data, same engine semantics: values agree to the last bits.
const REL: f64 = 1e-9;

/// `body` normalized; `add` is merged into every label set that still has the target's `instance` (external
/// labels Prometheus does not show in its own answers; aggregations drop them on both sides).
fn normalize(body: &Value, add: &[(&str, &str)]) -> Result<Normalized> {
    normalize_with(body, |labels| {
        if labels.contains_key("instance") {
            for (k, v) in add {
                labels.insert((*k).to_owned(), (*v).to_owned());
            }
        }
    })
}

fn compare(what: &str, want: &Normalized, got: &Normalized) -> Result<()> {
    sluice_e2e::answers::compare(what, want, got, REL)
}

/// Range queries over `[start, end]` asked of Prometheus and of the querier; the querier's series carry `add`.
async fn compare_range(
    p: &Prometheus,
    q: &SluiceQuery,
    queries: &[&str],
    start: f64,
    end: f64,
    add: &[(&str, &str)],
) -> Result<usize> {
    let mut compared = 0;
    for query in queries {
        let (s, e) = (format!("{start:.3}"), format!("{end:.3}"));
        let params = [("query", *query), ("start", &s), ("end", &e), ("step", "1")];
        let want = p
            .get_json(&format!(
                "/api/v1/query_range?{}",
                sluice_e2e::api::form(&params)
            ))
            .await?;
        let got = q.api_get("/api/v1/query_range", &params).await?;
        ensure!(
            got.warnings().is_empty(),
            "{query}: warnings {:?}",
            got.warnings()
        );
        let want = normalize(&want, add)?;
        ensure!(!want.1.is_empty(), "{query}: Prometheus returned nothing");
        compare(query, &want, &normalize(&got.body, &[])?)?;
        compared += want.1.values().map(Vec::len).sum::<usize>();
    }
    Ok(compared)
}

const QUERIES: &[&str] = &[
    "up",
    "sluice_test_requests_total",
    "rate(sluice_test_requests_total[10s])",
    "sum by (path) (increase(sluice_test_requests_total[15s]))",
    "histogram_quantile(0.9, sum by (le) (rate(sluice_test_latency_seconds_bucket[10s])))",
    "sluice_test_temperature > 20",
    "max_over_time(sluice_test_temperature[7s])",
    "count by (job) ({__name__=~\"prometheus_tsdb_head_.*\"})",
    "sum by (job) (scrape_samples_scraped)",
    "avg_over_time(prometheus_tsdb_head_series[5s])",
    "sluice_test_latency_seconds_sum / sluice_test_latency_seconds_count",
];

/// A querier over the sidecar answers PromQL exactly as the Prometheus behind it, external labels attached and the
/// series' own `cluster` label overridden by the external one; the label APIs see the external labels too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_over_sidecar_answers_as_prometheus() -> Result<()> {
    let exporter = Exporter::start().await?;
    let p = Prometheus::start(
        &prometheus_config(exporter.addr, "{cluster: c1, replica: \"0\"}", ""),
        &[],
    )
    .await?;
    let sc = SluiceSidecar::start_ready(&p.url(), &sidecar_args(&[])).await?;
    let q = querier(&[sc.grpc.to_string()]).await?;
    wait_for_data(&p, 45).await?;

    let (frac, first) = safe_fraction(&p, 60).await?;
    let end = (now_secs() - 3.0).floor() + frac;
    let start = (end - 30.0).max(first.ceil() + frac);
    let n = compare_range(&p, &q, QUERIES, start, end, &[("cluster", "c1")]).await?;
    ensure!(n > 200, "only {n} points compared");
    eprintln!(
        "{n} points of {} range queries equal to Prometheus's",
        QUERIES.len()
    );

    // Instant queries at the end, deduplication off: the replica label is there too.
    for query in [
        "sluice_test_temperature",
        "rate(sluice_test_requests_total[10s])",
    ] {
        let t = format!("{end:.3}");
        let params = [("query", query), ("time", t.as_str())];
        let want = p
            .get_json(&format!("/api/v1/query?{}", sluice_e2e::api::form(&params)))
            .await?;
        let got = q
            .api_get(
                "/api/v1/query",
                &[("query", query), ("time", &t), ("dedup", "false")],
            )
            .await?;
        compare(
            query,
            &normalize(&want, &[("cluster", "c1"), ("replica", "0")])?,
            &normalize(&got.body, &[])?,
        )?;
    }

    // The series' own `cluster="inner"` is overridden by the external label.
    let r = q
        .api_get("/api/v1/series", &[("match[]", "sluice_test_info")])
        .await?;
    let sets = r.label_sets()?;
    ensure!(sets.len() == 1, "series: {sets:?}");
    ensure!(
        sets[0].contains(&("cluster".into(), "c1".into()))
            && sets[0].contains(&("version".into(), "1.2".into())),
        "external label must override the series' own: {sets:?}"
    );

    let names = q.api_get("/api/v1/labels", &[]).await?.strings()?;
    for want in ["__name__", "cluster", "job", "path", "room"] {
        ensure!(
            names.iter().any(|n| n == want),
            "label {want} missing: {names:?}"
        );
    }
    let jobs = q
        .api_get("/api/v1/label/job/values", &[])
        .await?
        .strings()?;
    ensure!(jobs == ["exporter", "prometheus"], "job values {jobs:?}");
    let clusters = q
        .api_get("/api/v1/label/cluster/values", &[])
        .await?
        .strings()?;
    ensure!(clusters == ["c1"], "cluster values {clusters:?}");

    // The sidecar's own metrics: Prometheus is up, frames were received.
    let m = sc.metrics().await?;
    ensure!(
        m.contains("thanos_sidecar_prometheus_up 1"),
        "thanos_sidecar_prometheus_up: {m}"
    );
    Ok(())
}

/// Two Prometheus replicas (`replica: 0` / `replica: 1`) with a sidecar each are deduplicated by the querier;
/// stopping one makes its sidecar not ready and the querier answer with a warning naming it, and both recover when
/// it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_dedup_and_a_stopped_prometheus_is_a_warning() -> Result<()> {
    let exporter = Exporter::start().await?;
    let rules_dir = tempfile::tempdir()?;
    let rule_file = rules_dir.path().join("rules.yml");
    std::fs::write(&rule_file, RULES)?;
    let extra = format!("rule_files: ['{}']\n", rule_file.display());
    let flags = ["--enable-feature=exemplar-storage"];
    let p0 = Prometheus::start(
        &prometheus_config(exporter.addr, "{cluster: c1, replica: \"0\"}", &extra),
        &flags,
    )
    .await?;
    let mut p1 = Prometheus::start(
        &prometheus_config(exporter.addr, "{cluster: c1, replica: \"1\"}", &extra),
        &flags,
    )
    .await?;
    let s0 = SluiceSidecar::start_ready(&p0.url(), &sidecar_args(&[])).await?;
    let s1 = SluiceSidecar::start_ready(&p1.url(), &sidecar_args(&[])).await?;
    let q = querier(&[s0.grpc.to_string(), s1.grpc.to_string()]).await?;
    wait_for_data(&p0, 10).await?;
    wait_for_data(&p1, 10).await?;

    let count = |dedup: &'static str| {
        let q = &q;
        async move {
            let r = q
                .api_get(
                    "/api/v1/query",
                    &[
                        ("query", "count(sluice_test_requests_total)"),
                        ("dedup", dedup),
                    ],
                )
                .await?;
            let v = r.data()?["result"][0]["value"][1]
                .as_str()
                .context("no value")?
                .parse::<f64>()?;
            anyhow::Ok((v, r.warnings()))
        }
    };
    let (deduped, w) = count("true").await?;
    ensure!(
        deduped == 2.0 && w.is_empty(),
        "deduplicated count {deduped}, warnings {w:?}"
    );
    let (raw, _) = count("false").await?;
    ensure!(raw == 4.0, "count without dedup {raw}");
    let r = q
        .api_get("/api/v1/series", &[("match[]", "sluice_test_temperature")])
        .await?;
    let sets = r.label_sets()?;
    ensure!(
        sets.len() == 2 && sets.iter().all(|s| !s.iter().any(|(k, _)| k == "replica")),
        "deduplicated series: {sets:?}"
    );

    check_rules_targets_metadata_exemplars(&q, &p0).await?;
    check_with_independent_client(&s0.grpc.to_string())?;

    // A querier over that querier (seed 004's observer) sees the same rules and targets through its gRPC APIs.
    let top = querier(&[q.grpc.to_string()]).await?;
    let r = top.api_get("/api/v1/rules", &[]).await?;
    let rules = r.data()?["groups"][0]["rules"].as_array().map(Vec::len);
    ensure!(rules == Some(2), "rules through two queriers: {}", r.body);
    let t = top.api_get("/api/v1/targets", &[]).await?;
    let n = t.data()?["activeTargets"].as_array().map(Vec::len);
    ensure!(n == Some(3), "targets through two queriers: {}", t.body);
    drop(top);

    // Replica 1's Prometheus goes away.
    p1.stop();
    s1.wait_not_ready(Duration::from_secs(30)).await?;
    let r = q
        .api_get(
            "/api/v1/query",
            &[("query", "count(sluice_test_requests_total)")],
        )
        .await?;
    ensure!(
        r.data()?["result"][0]["value"][1] == "2",
        "replica 0 still answers: {}",
        r.body
    );
    expect_warning_naming(&r.warnings(), &s1.grpc.to_string(), "Prometheus 1 stopped")?;
    let r = q
        .api_get(
            "/api/v1/query",
            &[
                ("query", "count(sluice_test_requests_total)"),
                ("partial_response", "false"),
            ],
        )
        .await?;
    let e = r.error()?;
    ensure!(
        e.contains(&s1.grpc.to_string()),
        "strict error names the sidecar: {e}"
    );

    // Back again: ready, and answers without warnings.
    p1.resume().await?;
    s1.wait_ready(Duration::from_secs(30)).await?;
    eventually(
        Duration::from_secs(30),
        "no warnings after recovery",
        || async {
            let (v, w) = count("true").await?;
            Ok((
                (v == 2.0 && w.is_empty()).then_some(()),
                format!("{v} {w:?}"),
            ))
        },
    )
    .await?;
    Ok(())
}

const RULES: &str = "groups:
- name: sluice-e2e
  interval: 1s
  rules:
  - alert: LabTooWarm
    expr: sluice_test_temperature{room=\"lab\"} > 20
    labels: {severity: page}
    annotations: {summary: \"{{ $labels.room }} is {{ $value }}\"}
  - record: path:sluice_test_requests:rate10s
    expr: sum by (path) (rate(sluice_test_requests_total[10s]))
";

fn obj_has(v: &Value, key: &str, want: Option<&str>) -> bool {
    match want {
        Some(w) => v[key] == w,
        None => v.get(key).is_none(),
    }
}

/// The querier's rules, alerts, targets, metadata and exemplars APIs over two replicas: one copy of each, with
/// the external labels and without the replica label.
async fn check_rules_targets_metadata_exemplars(q: &SluiceQuery, p0: &Prometheus) -> Result<()> {
    let rules = eventually(
        Duration::from_secs(30),
        "a firing alert in /api/v1/rules",
        || async {
            let r = q.api_get("/api/v1/rules", &[]).await?;
            let d = r.data()?.clone();
            let firing = d["groups"][0]["rules"][0]["alerts"][0]["state"] == "firing";
            Ok((firing.then_some((d.clone(), r.warnings())), d.to_string()))
        },
    )
    .await?;
    let (d, warnings) = rules;
    ensure!(warnings.is_empty(), "rules warnings {warnings:?}");
    let groups = d["groups"].as_array().context("groups")?;
    ensure!(
        groups.len() == 1 && groups[0]["name"] == "sluice-e2e",
        "groups: {d}"
    );
    let rules = groups[0]["rules"].as_array().context("rules")?;
    ensure!(
        rules.len() == 2,
        "two rules once each, not per replica: {d}"
    );
    let alert = &rules[0];
    ensure!(
        alert["type"] == "alerting"
            && alert["name"] == "LabTooWarm"
            && alert["labels"] == serde_json::json!({"cluster": "c1", "severity": "page"})
            && alert["alerts"].as_array().is_some_and(|a| a.len() == 1),
        "alerting rule: {alert}"
    );
    let inst = &alert["alerts"][0];
    ensure!(
        obj_has(&inst["labels"], "cluster", Some("c1"))
            && obj_has(&inst["labels"], "replica", None)
            && obj_has(&inst["labels"], "room", Some("lab"))
            && inst["annotations"]["summary"] == "lab is 22.5",
        "alert instance: {inst}"
    );
    ensure!(
        rules[1]["type"] == "recording" && rules[1]["health"] == "ok",
        "recording rule: {}",
        rules[1]
    );
    let rec = q.api_get("/api/v1/rules", &[("type", "record")]).await?;
    let only = rec.data()?["groups"][0]["rules"].as_array().map(Vec::len);
    ensure!(only == Some(1), "type=record: {}", rec.body);
    let alerts = q.api_get("/api/v1/alerts", &[]).await?;
    let a = alerts.data()?["alerts"]
        .as_array()
        .context("alerts")?
        .clone();
    ensure!(
        a.len() == 1 && a[0]["state"] == "firing",
        "alerts: {}",
        alerts.body
    );

    let t = q.api_get("/api/v1/targets", &[]).await?;
    let active = t.data()?["activeTargets"]
        .as_array()
        .context("activeTargets")?
        .clone();
    // Each Prometheus scrapes itself (two distinct targets) and the shared exporter (one after dedup).
    let exporter: Vec<&Value> = active
        .iter()
        .filter(|x| x["labels"]["job"] == "exporter")
        .collect();
    ensure!(
        active.len() == 3 && exporter.len() == 1,
        "active targets: {}",
        t.body
    );
    ensure!(
        exporter[0]["health"] == "up"
            && obj_has(&exporter[0]["labels"], "cluster", Some("c1"))
            && obj_has(&exporter[0]["labels"], "replica", None),
        "exporter target: {}",
        exporter[0]
    );

    let m = q
        .api_get("/api/v1/metadata", &[("metric", "sluice_test_temperature")])
        .await?;
    ensure!(
        m.data()?
            == &serde_json::json!({"sluice_test_temperature": [{"type": "gauge", "help": "", "unit": ""}]}),
        "metadata: {}",
        m.body
    );
    let all = q.api_get("/api/v1/metadata", &[]).await?;
    let want = p0.get_json("/api/v1/metadata").await?;
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        n.sort();
        n
    };
    ensure!(
        names(all.data()?) == names(&want["data"]),
        "metadata metric names differ from Prometheus's"
    );

    let now = now_secs();
    let (s, e) = (format!("{:.3}", now - 120.0), format!("{now:.3}"));
    let ex = q
        .api_get(
            "/api/v1/query_exemplars",
            &[
                ("query", "sluice_test_requests_total"),
                ("start", &s),
                ("end", &e),
            ],
        )
        .await?;
    let series = ex.data()?.as_array().context("exemplars")?.clone();
    ensure!(series.len() == 1, "one series after dedup: {}", ex.body);
    ensure!(
        obj_has(&series[0]["seriesLabels"], "cluster", Some("c1"))
            && obj_has(&series[0]["seriesLabels"], "replica", None)
            && obj_has(&series[0]["seriesLabels"], "path", Some("/a")),
        "exemplar series labels: {}",
        series[0]
    );
    let ours: std::collections::BTreeSet<String> = series[0]["exemplars"]
        .as_array()
        .context("exemplars")?
        .iter()
        .filter_map(|x| x["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    let direct = p0
        .get_json(&format!(
            "/api/v1/query_exemplars?{}",
            sluice_e2e::api::form(&[
                ("query", "sluice_test_requests_total"),
                ("start", &s),
                ("end", &e)
            ])
        ))
        .await?;
    let theirs: std::collections::BTreeSet<String> = direct["data"][0]["exemplars"]
        .as_array()
        .context("Prometheus exemplars")?
        .iter()
        .filter_map(|x| x["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !theirs.is_empty() && theirs.is_subset(&ours),
        "exemplars of replica 0 {theirs:?} must all be in the querier's {ours:?}"
    );
    Ok(())
}

/// Python's grpcio, with requests encoded by hand and answers decoded against a schema written from Thanos' wire
/// facts (`tests/src/thanos_wire.py`, no generated code), reads the sidecar's Rules, Targets, Metadata and
/// Exemplars without meeting an unknown field.
fn check_with_independent_client(addr: &str) -> Result<()> {
    let py = sluice_e2e::tools::check_grpcio()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("thanos_wire.py");
    std::fs::write(&script, include_str!("../src/thanos_wire.py"))?;
    let now = (now_secs() * 1000.0) as i64;
    let out = std::process::Command::new(py)
        .arg(&script)
        .args([
            addr,
            "sluice_test_requests_total",
            &(now - 120_000).to_string(),
            &now.to_string(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "independent client failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim())?;
    ensure!(
        v["rules"]["groups"] == serde_json::json!(["sluice-e2e"]),
        "rules: {v}"
    );
    let rules = v["rules"]["rules"].as_array().context("rules")?;
    ensure!(
        rules.len() == 2
            && rules[0]["name"] == "LabTooWarm"
            && rules[0]["labels"]
                == serde_json::json!({"cluster": "c1", "replica": "0", "severity": "page"})
            && rules[0]["alerts"] == 1
            && rules[1]["name"] == "path:sluice_test_requests:rate10s",
        "rules over the wire: {v}"
    );
    let targets = v["targets"].as_array().context("targets")?;
    ensure!(
        targets.len() == 2
            && targets
                .iter()
                .all(|t| t["health"] == 1 && t["labels"]["replica"] == "0"),
        "targets over the wire: {v}"
    );
    ensure!(
        v["metadata"]["sluice_test_temperature"] == serde_json::json!(["gauge"]),
        "metadata: {v}"
    );
    let ex = v["exemplars"].as_array().context("exemplars")?;
    ensure!(
        ex.len() == 1
            && ex[0]["series"]["path"] == "/a"
            && ex[0]["count"].as_u64().unwrap_or(0) > 0,
        "exemplars over the wire: {v}"
    );
    Ok(())
}

/// Files of every block directory in a filesystem bucket: ULID → names.
fn bucket_blocks(dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 26 || !e.file_type()?.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for f in walk(&e.path())? {
            files.push(f.strip_prefix(e.path())?.display().to_string());
        }
        files.sort();
        out.insert(name, files);
    }
    Ok(out)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.extend(walk(&e.path())?);
        } else {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Blocks cut by Prometheus (one-minute blocks) are shipped to a filesystem bucket and to an S3 server with the
/// Thanos meta section; `sluice store` serves them, and a querier over sidecar + store answers as Prometheus across
/// the boundary. A block left half uploaded (no meta.json) is never served and is completed by the next sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_shipped_and_served() -> Result<()> {
    let exporter = Exporter::start().await?;
    let p = Prometheus::start(
        &prometheus_config(exporter.addr, "{cluster: c2, replica: \"a\"}", ""),
        &[
            "--storage.tsdb.min-block-duration=1m",
            "--storage.tsdb.max-block-duration=1m",
        ],
    )
    .await?;
    let bucket = tempfile::tempdir()?;
    let objstore = p.dir().join("objstore.yml");
    std::fs::write(&objstore, fs_objstore_yaml(bucket.path()))?;
    let tsdb = format!("--tsdb.path={}", p.data_dir().display());
    let sc = SluiceSidecar::start_ready(
        &p.url(),
        &sidecar_args(&[
            tsdb.clone(),
            format!("--objstore.config-file={}", objstore.display()),
        ]),
    )
    .await?;

    // A second sidecar on the same Prometheus ships to S3 with its own shipper file.
    let moto = Moto::start().await?;
    moto.make_bucket("sidecar")?;
    let s3_cfg = p.dir().join("objstore-s3.yml");
    std::fs::write(&s3_cfg, s3_objstore_yaml(&moto.endpoint(), "sidecar", None))?;
    let sc_s3 = SluiceSidecar::start_ready(
        &p.url(),
        &sidecar_args(&[
            tsdb.clone(),
            format!("--objstore.config-file={}", s3_cfg.display()),
            "--shipper.meta-file-name=thanos.shipper.s3.json".into(),
        ]),
    )
    .await?;

    // Prometheus cuts its first block after ~90 s of data plus up to a minute of compaction tick.
    let shipped = eventually(
        Duration::from_secs(300),
        "a block in the filesystem bucket",
        || async {
            let b = bucket_blocks(bucket.path())?;
            let done: Vec<String> = b
                .iter()
                .filter(|(_, f)| f.iter().any(|f| f == "meta.json"))
                .map(|(u, _)| u.clone())
                .collect();
            Ok(((!done.is_empty()).then_some(done), format!("{b:?}")))
        },
    )
    .await?;
    let ulid = &shipped[0];
    let files = &bucket_blocks(bucket.path())?[ulid];
    ensure!(
        files.contains(&"index".to_owned()) && files.contains(&"chunks/000001".to_owned()),
        "block files {files:?}"
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(bucket.path().join(ulid).join("meta.json"))?)?;
    ensure!(
        meta["thanos"]["labels"] == serde_json::json!({"cluster": "c2", "replica": "a"})
            && meta["thanos"]["source"] == "sidecar"
            && meta["thanos"]["downsample"]["resolution"] == 0
            && meta["compaction"]["level"] == 1,
        "meta.json: {meta}"
    );
    let listed: Vec<String> = meta["thanos"]["files"]
        .as_array()
        .context("thanos.files")?
        .iter()
        .filter_map(|f| f["rel_path"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        listed.contains(&"index".into()) && listed.contains(&"chunks/000001".into()),
        "thanos.files {listed:?}"
    );
    let shipper: Value =
        serde_json::from_slice(&std::fs::read(p.data_dir().join("thanos.shipper.json"))?)?;
    ensure!(
        shipper["version"] == 1
            && shipper["uploaded"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == ulid.as_str())),
        "thanos.shipper.json: {shipper}"
    );
    let m = sc.metrics().await?;
    ensure!(
        m.lines()
            .any(|l| l.starts_with("thanos_shipper_uploads_total ") && !l.ends_with(" 0")),
        "thanos_shipper_uploads_total: {m}"
    );

    // The same block reaches S3.
    eventually(Duration::from_secs(120), "the block in S3", || async {
        let keys = moto.list("sidecar")?;
        let ok = keys.iter().any(|k| k == &format!("{ulid}/meta.json"));
        Ok((ok.then_some(()), format!("{keys:?}")))
    })
    .await?;
    drop(sc_s3);

    // A store over the bucket and a querier over sidecar + store answer as Prometheus across the boundary.
    let store = SluiceStore::start_ready(
        &fs_objstore_yaml(bucket.path()),
        &["--sync-block-duration=1s"],
    )
    .await?;
    let q = querier(&[sc.grpc.to_string(), store.grpc.to_string()]).await?;
    let meta_min = meta["minTime"].as_f64().context("minTime")? / 1000.0;
    let (frac, first) = safe_fraction(&p, 600).await?;
    let end = (now_secs() - 3.0).floor() + frac;
    let start = meta_min.max(first).ceil() + frac;
    ensure!(end - start > 60.0, "the window {start}..{end} is too short");
    let n = compare_range(
        &p,
        &q,
        &[
            "sluice_test_requests_total",
            "rate(sluice_test_requests_total[10s])",
            "sum by (job) (up)",
        ],
        start,
        end,
        &[("cluster", "c2")],
    )
    .await?;
    eprintln!("{n} points across the shipped block and the head equal to Prometheus's");

    Ok(())
}

/// A sidecar killed (SIGKILL) in the middle of uploading a block, its index upload held by the network, leaves no
/// visible block: the bucket has no meta.json for it, the shipper file does not list it and a store syncing the
/// bucket serves nothing of it. The next sidecar run uploads it whole, and the store then serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_killed_mid_upload_leaves_no_visible_block() -> Result<()> {
    let exporter = Exporter::start().await?;
    let p = Prometheus::start(
        &prometheus_config(exporter.addr, "{cluster: c3, replica: \"a\"}", ""),
        &[
            "--storage.tsdb.min-block-duration=1m",
            "--storage.tsdb.max-block-duration=1m",
        ],
    )
    .await?;
    let moto = Moto::start().await?;
    moto.make_bucket("crash")?;
    let proxy = sluice_e2e::fake::StallingProxy::start(moto.endpoint().parse()?, "/index").await?;
    let via_proxy = p.dir().join("objstore-proxy.yml");
    std::fs::write(
        &via_proxy,
        s3_objstore_yaml(&proxy.addr.to_string(), "crash", None),
    )?;
    let direct = p.dir().join("objstore-direct.yml");
    std::fs::write(&direct, s3_objstore_yaml(&moto.endpoint(), "crash", None))?;
    let tsdb = format!("--tsdb.path={}", p.data_dir().display());
    let mut sc = SluiceSidecar::start_ready(
        &p.url(),
        &sidecar_args(&[
            tsdb.clone(),
            format!("--objstore.config-file={}", via_proxy.display()),
        ]),
    )
    .await?;

    // Prometheus cuts its first block after ~90 s of data plus up to a minute of compaction tick.
    let path = eventually(
        Duration::from_secs(300),
        "an index upload held mid-way",
        || async { Ok((proxy.stalled(), String::new())) },
    )
    .await?;
    sc.kill()?;
    let victim = path
        .trim_end_matches("/index")
        .rsplit('/')
        .next()
        .context("block ULID in the held path")?
        .to_owned();
    let keys = moto.list("crash")?;
    ensure!(
        keys.iter().any(|k| k == &format!("{victim}/chunks/000001"))
            && !keys.iter().any(|k| k == &format!("{victim}/meta.json")),
        "after the kill: chunks uploaded, no meta.json: {keys:?}"
    );
    let shipper = std::fs::read(p.data_dir().join("thanos.shipper.json")).unwrap_or_default();
    ensure!(
        !String::from_utf8_lossy(&shipper).contains(&victim),
        "the shipper file lists the killed upload: {}",
        String::from_utf8_lossy(&shipper)
    );
    let local: Value = serde_json::from_slice(&std::fs::read(
        p.data_dir().join(&victim).join("meta.json"),
    )?)?;
    let (vmin, vmax) = (
        local["minTime"].as_i64().context("minTime")?,
        local["maxTime"].as_i64().context("maxTime")? - 1,
    );
    let store = SluiceStore::start_ready(
        &s3_objstore_yaml(&moto.endpoint(), "crash", None),
        &["--sync-block-duration=1s"],
    )
    .await?;
    let served = || async {
        let mut client = store.store_client().await?;
        let r = sluice_e2e::series(
            &mut client,
            sluice_e2e::series_request(&[sluice_e2e::re("__name__", ".+")], vmin, vmax),
        )
        .await?;
        anyhow::Ok(r.series.len())
    };
    ensure!(
        served().await? == 0,
        "the store serves the half-uploaded block {victim}"
    );

    // The next run, with the network back, completes it.
    let _sc = SluiceSidecar::start_ready(
        &p.url(),
        &sidecar_args(&[tsdb, format!("--objstore.config-file={}", direct.display())]),
    )
    .await?;
    eventually(
        Duration::from_secs(90),
        "the killed upload completed",
        || async {
            let keys = moto.list("crash")?;
            let ok = keys.iter().any(|k| k == &format!("{victim}/meta.json"));
            Ok((ok.then_some(()), format!("{keys:?}")))
        },
    )
    .await?;
    eventually(
        Duration::from_secs(30),
        "the store serves the completed block",
        || async {
            let n = served().await?;
            Ok(((n > 0).then_some(()), format!("{n} series served")))
        },
    )
    .await?;
    Ok(())
}

/// The reloader renders a templated config (`$(VAR)` from the environment) and watches a rule directory; each
/// change makes Prometheus reload, as its `/api/v1/status/config` and `/api/v1/rules` show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_makes_prometheus_reload() -> Result<()> {
    let exporter = Exporter::start().await?;
    let work = tempfile::tempdir()?;
    let rules = work.path().join("rules");
    std::fs::create_dir_all(&rules)?;
    let rule_glob = format!("rule_files: ['{}/*.yml']\n", rules.display());
    let template = |marker: &str| {
        prometheus_config(
            exporter.addr,
            &format!(
                "{{cluster: c3, replica: \"0\", env: \"$(SLUICE_TEST_ENV)\", marker: {marker}}}"
            ),
            &rule_glob,
        )
    };
    let p = Prometheus::start(
        &template("one").replace("$(SLUICE_TEST_ENV)", "staging"),
        &[],
    )
    .await?;
    // The template lives beside Prometheus's config; `$PORT` is already known.
    let tmpl = work.path().join("prometheus.yml.tmpl");
    std::fs::write(&tmpl, template("two").replace("$PORT", &p.port.to_string()))?;

    let mut args = sidecar_args(&[
        format!("--reloader.config-file={}", tmpl.display()),
        format!(
            "--reloader.config-envsubst-file={}",
            p.config_path().display()
        ),
        format!("--reloader.rule-dir={}", rules.display()),
        "--reloader.watch-interval=1s".into(),
        "--reloader.retry-interval=1s".into(),
    ]);
    args.push("--log.level=debug".into());
    let sc = SluiceSidecar::start_env(&p.url(), &args, &[("SLUICE_TEST_ENV", "production")])?;
    sc.wait_ready(Duration::from_secs(60)).await?;

    eventually(
        Duration::from_secs(30),
        "Prometheus loaded the rendered template",
        || async {
            let v = p.get_json("/api/v1/status/config").await?;
            let y = v["data"]["yaml"].as_str().unwrap_or_default().to_owned();
            let ok = y.contains("marker: two") && y.contains("env: production");
            Ok((ok.then_some(()), y))
        },
    )
    .await?;
    // The sidecar follows the new external labels.
    eventually(
        Duration::from_secs(30),
        "sidecar Info has the new labels",
        || async {
            let mut client = sc.info_client().await?;
            let info = client
                .info(sluice_proto::thanos::info::InfoRequest {})
                .await?
                .into_inner();
            let labels: Vec<(String, String)> = info
                .label_sets
                .iter()
                .flat_map(|s| s.labels.iter().map(|l| (l.name.clone(), l.value.clone())))
                .collect();
            let ok = labels.contains(&("marker".into(), "two".into()));
            Ok((ok.then_some(()), format!("{labels:?}")))
        },
    )
    .await?;

    std::fs::write(
        rules.join("sluice.yml"),
        "groups:\n- name: sluice-test\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n",
    )?;
    eventually(
        Duration::from_secs(30),
        "Prometheus loaded the rule file",
        || async {
            let v = p.get_json("/api/v1/rules").await?;
            let ok = v.to_string().contains("job:up:sum");
            Ok((ok.then_some(()), v.to_string()))
        },
    )
    .await?;
    let m = sc.metrics().await?;
    ensure!(
        m.lines()
            .any(|l| l.starts_with("thanos_sidecar_reloader_reloads_total ") && !l.ends_with(" 0")),
        "reloader metrics: {m}"
    );
    Ok(())
}
