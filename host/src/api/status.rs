//! The Prometheus endpoints Grafana, promtool and Prometheus' own UI call
//! besides queries: `/api/v1/format_query`, `/api/v1/parse_query`,
//! `/api/v1/status/flags`, `/api/v1/status/runtimeinfo`,
//! `/api/v1/status/config` and `/api/v1/status/tsdb`, in Prometheus' shapes.
//!
//! A querier keeps no TSDB of its own: its TSDB status describes the series
//! its endpoints hold over a head-sized window (the last two hours unless the
//! request's `start`/`end` say otherwise), counted as they stream by.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::SystemTime;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use promql_parser::label::{MatchOp, Matcher as PMatcher};
use promql_parser::parser::{AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality};
use serde_json::{Value, json};
use sluice_proto::thanos::SeriesRequest;

use super::query::{ApiError, QState, bad_data, execution, get_one, params, parse_time, success};
use crate::fanout::{FanoutItem, ProxyRequest};

/// The process' flags as `/api/v1/status/flags` shows them, and its start time.
struct ProcessInfo {
    flags: BTreeMap<String, String>,
    started: SystemTime,
}

static PROCESS: OnceLock<ProcessInfo> = OnceLock::new();

fn process() -> &'static ProcessInfo {
    PROCESS.get_or_init(|| ProcessInfo {
        flags: BTreeMap::new(),
        started: SystemTime::now(),
    })
}

/// Records the flags of this process (name without dashes → value as given
/// or defaulted) and the start time. Called once by `main`; flags that carry
/// inline configuration or secrets are shown as `<hidden>`.
pub fn set_process_flags(matches: &clap::ArgMatches, command: &clap::Command) {
    let mut flags = BTreeMap::new();
    collect_flags(matches, command, &mut flags);
    let _ = PROCESS.set(ProcessInfo {
        flags,
        started: SystemTime::now(),
    });
}

fn collect_flags(m: &clap::ArgMatches, cmd: &clap::Command, out: &mut BTreeMap<String, String>) {
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let id = arg.get_id().as_str();
        let value = match m.try_get_raw(id) {
            Ok(Some(vals)) => vals
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        out.insert(long.to_owned(), redact(long, value));
    }
    if let Some((name, sub)) = m.subcommand()
        && let Some(sub_cmd) = cmd.find_subcommand(name)
    {
        collect_flags(sub, sub_cmd, out);
    }
}

/// Inline configs (`--objstore.config`, `--tracing.config`, …) and secrets
/// must not leak through an unauthenticated status page.
fn redact(name: &str, value: String) -> String {
    let inline_config =
        (name.ends_with(".config") || name.ends_with("-config")) && !name.ends_with("-file");
    let secret = ["secret", "password", "token"]
        .iter()
        .any(|w| name.contains(w));
    if (inline_config || secret) && !value.is_empty() {
        "<hidden>".into()
    } else {
        value
    }
}

/// `GET|POST /api/v1/format_query?query=`: the expression pretty-printed
/// as Prometheus does (one line when it fits in 100 characters).
pub(crate) async fn format_query(
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match parsed_query(q, &headers, &body) {
        Ok(expr) => success(Value::String(expr.prettify()), vec![]),
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /api/v1/parse_query?query=`: the syntax tree as Prometheus'
/// UI reads it.
pub(crate) async fn parse_query(
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match parsed_query(q, &headers, &body) {
        Ok(expr) => success(translate(&expr), vec![]),
        Err(e) => e.into_response(),
    }
}

fn parsed_query(q: Option<String>, headers: &HeaderMap, body: &[u8]) -> Result<Expr, ApiError> {
    let p = params(q, headers, body);
    let query = get_one(&p, "query").unwrap_or_default();
    // Depth and size limits first: the tree is walked recursively below.
    crate::promql::limits::parse_checked(query)
        .map_err(|e| bad_data(format!("invalid parameter \"query\": {e}")))
}

/// The syntax tree in the JSON shape of Prometheus' `translateAST`.
pub fn translate(e: &Expr) -> Value {
    match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
                Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
                None => (vec![], false),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": translate(&a.expr),
                "param": a.param.as_deref().map_or(Value::Null, translate),
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => {
            use promql_parser::parser::value::ValueType;
            let vectors =
                b.lhs.value_type() == ValueType::Vector && b.rhs.value_type() == ValueType::Vector;
            let m = b.modifier.as_ref();
            // Prometheus keeps vector matching only between two vectors.
            let matching = if vectors {
                let card = match m.map(|m| &m.card) {
                    _ if b.op.is_set_operator() => ("many-to-many", vec![]),
                    Some(VectorMatchCardinality::ManyToOne(l)) => ("many-to-one", l.labels.clone()),
                    Some(VectorMatchCardinality::OneToMany(l)) => ("one-to-many", l.labels.clone()),
                    Some(VectorMatchCardinality::ManyToMany) => ("many-to-many", vec![]),
                    Some(VectorMatchCardinality::OneToOne) | None => ("one-to-one", vec![]),
                };
                let (labels, on) = match m.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(l)) => (l.labels.clone(), true),
                    Some(LabelModifier::Exclude(l)) => (l.labels.clone(), false),
                    None => (vec![], false),
                };
                let fill = m.map(|m| &m.fill_values);
                json!({
                    "card": card.0,
                    "labels": labels,
                    "on": on,
                    "include": card.1,
                    "fillValues": {
                        "lhs": fill.and_then(|f| f.lhs),
                        "rhs": fill.and_then(|f| f.rhs),
                    },
                })
            } else {
                Value::Null
            };
            json!({
                "type": "binaryExpr",
                "op": b.op.to_string(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": m.is_some_and(|m| m.return_bool),
            })
        }
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "variadic": c.func.variadic,
                "returnType": c.func.return_type.to_string(),
            },
            "args": c.args.args.iter().map(|a| translate(a)).collect::<Vec<_>>(),
        }),
        Expr::MatrixSelector(m) => {
            let vs = &m.vs;
            json!({
                "type": "matrixSelector",
                "name": vs.name.clone().unwrap_or_default(),
                "range": millis(m.range),
                "offset": offset_ms(vs.offset.as_ref()),
                "matchers": matchers(&vs.matchers.matchers, vs.name.as_deref()),
                "timestamp": at_timestamp(vs.at.as_ref()),
                "startOrEnd": start_or_end(vs.at.as_ref()),
                "anchored": false,
                "smoothed": false,
            })
        }
        Expr::Subquery(s) => json!({
            "type": "subquery",
            "expr": translate(&s.expr),
            "range": millis(s.range),
            "offset": offset_ms(s.offset.as_ref()),
            "step": s.step.map_or(0, millis),
            "timestamp": at_timestamp(s.at.as_ref()),
            "startOrEnd": start_or_end(s.at.as_ref()),
            "alignEvalTime": false,
        }),
        Expr::NumberLiteral(n) => json!({"type": "numberLiteral", "val": go_float(n.val)}),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
        Expr::VectorSelector(vs) => json!({
            "type": "vectorSelector",
            "name": vs.name.clone().unwrap_or_default(),
            "offset": offset_ms(vs.offset.as_ref()),
            "matchers": matchers(&vs.matchers.matchers, vs.name.as_deref()),
            "timestamp": at_timestamp(vs.at.as_ref()),
            "startOrEnd": start_or_end(vs.at.as_ref()),
            "anchored": false,
            "smoothed": false,
        }),
        // Not produced by the parser for PromQL text.
        Expr::Extension(_) => Value::Null,
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: Option<&Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => millis(*d),
        Some(Offset::Neg(d)) => -millis(*d),
        None => 0,
    }
}

fn at_timestamp(at: Option<&AtModifier>) -> Value {
    match at {
        Some(AtModifier::At(t)) => json!(crate::model::time::system_to_millis(*t)),
        _ => Value::Null,
    }
}

fn start_or_end(at: Option<&AtModifier>) -> Value {
    match at {
        Some(AtModifier::Start) => json!("start"),
        Some(AtModifier::End) => json!("end"),
        _ => Value::Null,
    }
}

/// The selector's matchers, with the metric name's matcher last when the
/// name was written outside the braces (as Prometheus' parser adds it).
fn matchers(ms: &[PMatcher], name: Option<&str>) -> Value {
    let op = |m: &PMatcher| match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    };
    let mut out: Vec<Value> = ms
        .iter()
        .map(|m| json!({"name": m.name, "value": m.value, "type": op(m)}))
        .collect();
    if let Some(n) = name
        && !ms.iter().any(|m| m.name == crate::model::METRIC_NAME)
    {
        out.push(json!({"name": crate::model::METRIC_NAME, "value": n, "type": "="}));
    }
    Value::Array(out)
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an
/// exponent, `+Inf`/`-Inf`/`NaN`.
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// `GET /api/v1/status/flags`.
pub(crate) async fn flags() -> Response {
    success(json!(process().flags), vec![])
}

/// `GET /api/v1/status/runtimeinfo`, with the Go runtime's fields mapped
/// onto ours: `goroutineCount` counts live tasks, `GOMAXPROCS` the runtime's
/// worker threads.
pub(crate) async fn runtimeinfo() -> Response {
    let p = process();
    let started = crate::model::time::rfc3339_system(p.started);
    let config_time = crate::model::time::rfc3339_nanos(
        crate::model::time::system_to_millis(p.started).div_euclid(1000),
        0,
    );
    let rt = tokio::runtime::Handle::current().metrics();
    success(
        json!({
            "startTime": started,
            "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "reloadConfigSuccess": true,
            "lastConfigTime": config_time,
            "corruptionCount": 0,
            "goroutineCount": rt.num_alive_tasks(),
            "GOMAXPROCS": rt.num_workers(),
            "GOGC": "",
            "GODEBUG": "",
            // A querier stores nothing: its data lives as long as its stores keep it.
            "storageRetention": "",
        }),
        vec![],
    )
}

/// `GET /api/v1/status/config`: a querier has no Prometheus configuration
/// file; the YAML (valid, and empty as a Prometheus config) lists the flags
/// it runs with instead.
pub(crate) async fn config() -> Response {
    let mut yaml = String::from(
        "# This Sluice process has no Prometheus configuration file; it runs with these flags\n\
         # (also at /api/v1/status/flags):\n",
    );
    for (k, v) in &process().flags {
        if !v.is_empty() {
            yaml.push_str(&format!("#   --{k}={v}\n"));
        }
    }
    success(json!({ "yaml": yaml }), vec![])
}

/// Most distinct label pairs `/api/v1/status/tsdb` counts before it gives
/// up with an error (its memory is bounded by them).
const MAX_TSDB_STATUS_PAIRS: usize = 4 << 20;

/// The default window of `/api/v1/status/tsdb`: a Prometheus head's span.
const TSDB_STATUS_WINDOW_MS: i64 = 2 * 3600 * 1000;

/// `GET /api/v1/status/tsdb?limit=&start=&end=`: cardinality statistics of
/// the series the endpoints hold in the window (deduplicated by replica
/// labels), in the shape of Prometheus' head statistics.
pub(crate) async fn tsdb(
    State(s): State<QState>,
    tenant: Option<axum::Extension<super::tenancy::Tenant>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = params(q, &headers, &[]);
    match tsdb_status(&s, &p, tenant.map(|t| t.0)).await {
        Ok(v) => success(v, vec![]),
        Err(e) => e.into_response(),
    }
}

async fn tsdb_status(
    s: &QState,
    p: &[(String, String)],
    tenant: Option<super::tenancy::Tenant>,
) -> Result<Value, ApiError> {
    let limit = match get_one(p, "limit") {
        None | Some("") => 10,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad_data("limit must be a positive number"))?,
    };
    let now = crate::model::time::system_to_millis(SystemTime::now());
    let time = |k: &str, default: i64| -> Result<i64, ApiError> {
        match get_one(p, k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => {
                parse_time(v).map_err(|e| bad_data(format!("invalid parameter \"{k}\": {e}")))
            }
        }
    };
    let (start, end) = (
        time("start", now - TSDB_STATUS_WINDOW_MS)?,
        time("end", now)?,
    );
    if end < start {
        return Err(bad_data("end timestamp must not be before start time"));
    }
    let _permit = match &s.cfg.gate {
        Some(g) => Some(
            g.clone()
                .acquire_owned()
                .await
                .map_err(|_| execution("shutting down"))?,
        ),
        None => None,
    };
    let replica = s.cfg.replica_labels.clone();
    let all =
        crate::model::Matcher::new(crate::model::MatchOp::Re, crate::model::METRIC_NAME, ".+")
            .map_err(|e| execution(e.to_string()))?;
    let matchers = match &tenant {
        Some(t) => t.scope(vec![all]),
        None => vec![all],
    };
    let req = ProxyRequest {
        request: SeriesRequest {
            min_time: start,
            max_time: end,
            matchers: sluice_storeapi::matchers_to_pb(&matchers),
            without_replica_labels: replica.clone(),
            ..Default::default()
        },
        matchers,
        partial_response: s.cfg.partial_response,
        tenant: tenant.map(|t| t.id),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let set = s.set.clone();
    tokio::spawn(async move { crate::fanout::series(&set, req, tx).await });

    let mut stats = TsdbStats::default();
    let mut previous: Vec<(String, String)> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    while let Some(item) = rx.recv().await {
        match item {
            Ok(FanoutItem::Series(run)) => {
                for series in run.iter() {
                    current.clear();
                    current.extend(
                        series
                            .labels()
                            .filter(|(n, _)| !replica.iter().any(|r| r == n))
                            .map(|(n, v)| (n.to_owned(), v.to_owned())),
                    );
                    // Endpoints that cannot drop replica labels send each replica: count one.
                    if current == previous {
                        continue;
                    }
                    stats.add(&current, series.chunk_count(), series.time_range());
                    if stats.pairs.len() > MAX_TSDB_STATUS_PAIRS {
                        return Err(execution(format!(
                            "more than {MAX_TSDB_STATUS_PAIRS} distinct label pairs in the window: narrow it with start and end"
                        )));
                    }
                    std::mem::swap(&mut previous, &mut current);
                }
            }
            // Per the partial-response setting a failing endpoint ends the request or is left out.
            Ok(FanoutItem::Warning(_)) => {}
            Err(status) => return Err(execution(status.message().to_string())),
        }
    }
    Ok(stats.render(limit))
}

/// Counters of `/api/v1/status/tsdb`.
#[derive(Default)]
struct TsdbStats {
    series: u64,
    chunks: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
    /// (label name, value) → series with that pair.
    pairs: HashMap<(String, String), u64>,
}

impl TsdbStats {
    fn add(&mut self, labels: &[(String, String)], chunks: usize, range: Option<(i64, i64)>) {
        self.series += 1;
        self.chunks += chunks as u64;
        if let Some((lo, hi)) = range {
            self.min_time = Some(self.min_time.map_or(lo, |m| m.min(lo)));
            self.max_time = Some(self.max_time.map_or(hi, |m| m.max(hi)));
        }
        for pair in labels {
            match self.pairs.get_mut(pair) {
                Some(n) => *n += 1,
                None => {
                    self.pairs.insert(pair.clone(), 1);
                }
            }
        }
    }

    /// Prometheus' `headStats` and top-`limit` lists (largest first, ties
    /// by name).
    fn render(&self, limit: usize) -> Value {
        let mut by_metric = Vec::new();
        let mut values_per_name: HashMap<&str, u64> = HashMap::new();
        let mut bytes_per_name: HashMap<&str, u64> = HashMap::new();
        let mut by_pair = Vec::new();
        for ((name, value), &n) in &self.pairs {
            if name == crate::model::METRIC_NAME {
                by_metric.push((value.clone(), n));
            }
            *values_per_name.entry(name).or_default() += 1;
            *bytes_per_name.entry(name).or_default() += value.len() as u64 * n;
            by_pair.push((format!("{name}={value}"), n));
        }
        let top = |mut v: Vec<(String, u64)>| -> Value {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            Value::Array(
                v.into_iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect(),
            )
        };
        let owned = |m: HashMap<&str, u64>| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        json!({
            "headStats": {
                "numSeries": self.series,
                "numLabelPairs": self.pairs.len(),
                "chunkCount": self.chunks,
                "minTime": self.min_time.unwrap_or(i64::MAX),
                "maxTime": self.max_time.unwrap_or(i64::MIN),
            },
            "seriesCountByMetricName": top(by_metric),
            "labelValueCountByLabelName": top(owned(values_per_name)),
            "memoryInBytesByLabelName": top(owned(bytes_per_name)),
            "seriesCountByLabelValuePair": top(by_pair),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast(q: &str) -> Value {
        translate(&crate::promql::limits::parse_checked(q).unwrap())
    }

    #[test]
    fn vector_selector_has_prometheus_shape_with_name_matcher_last() {
        assert_eq!(
            ast(r#"up{job="a"} offset 5m"#),
            json!({
                "type": "vectorSelector", "name": "up", "offset": 300000,
                "matchers": [
                    {"name": "job", "value": "a", "type": "="},
                    {"name": "__name__", "value": "up", "type": "="},
                ],
                "timestamp": null, "startOrEnd": null, "anchored": false, "smoothed": false,
            })
        );
    }

    #[test]
    fn aggregation_call_matrix_and_at_modifiers() {
        let v = ast(r#"sum without (i) (rate(x{a!~"b"}[5m] @ 100))"#);
        assert_eq!(v["type"], "aggregation");
        assert_eq!(v["op"], "sum");
        assert_eq!(v["without"], true);
        assert_eq!(v["grouping"], json!(["i"]));
        assert_eq!(v["param"], Value::Null);
        let call = &v["expr"];
        assert_eq!(
            call["func"],
            json!({"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"})
        );
        let m = &call["args"][0];
        assert_eq!(m["type"], "matrixSelector");
        assert_eq!(m["range"], 300000);
        assert_eq!(m["timestamp"], 100000);
        assert_eq!(
            m["matchers"][0],
            json!({"name": "a", "value": "b", "type": "!~"})
        );
        let e = ast("x @ end()");
        assert_eq!(
            (e["startOrEnd"].clone(), e["timestamp"].clone()),
            (json!("end"), Value::Null)
        );
    }

    #[test]
    fn binary_matching_only_between_vectors() {
        let v = ast("a * on (x) group_left (y) b");
        assert_eq!(v["op"], "*");
        assert_eq!(v["matching"]["card"], "many-to-one");
        assert_eq!(v["matching"]["on"], true);
        assert_eq!(v["matching"]["labels"], json!(["x"]));
        assert_eq!(v["matching"]["include"], json!(["y"]));
        assert_eq!(ast("a and b")["matching"]["card"], "many-to-many");
        assert_eq!(ast("a + b")["matching"]["card"], "one-to-one");
        let s = ast("a > bool 1");
        assert_eq!(s["matching"], Value::Null);
        assert_eq!(s["bool"], true);
        assert_eq!(s["rhs"], json!({"type": "numberLiteral", "val": "1"}));
    }

    #[test]
    fn subquery_paren_unary_string_and_numbers() {
        let v = ast("-max_over_time((x)[1h:1m] offset -5m)");
        assert_eq!(v["type"], "unaryExpr");
        let sq = &v["expr"]["args"][0];
        assert_eq!(sq["type"], "subquery");
        assert_eq!(
            (sq["range"].clone(), sq["step"].clone()),
            (json!(3600000), json!(60000))
        );
        assert_eq!(sq["offset"], -300000);
        assert_eq!(sq["expr"]["type"], "parenExpr");
        assert_eq!(ast(r#""s""#), json!({"type": "stringLiteral", "val": "s"}));
        assert_eq!(ast("1e21")["val"], "1000000000000000000000");
        assert_eq!(ast("Inf")["val"], "+Inf");
        assert_eq!(ast("0.5")["val"], "0.5");
    }

    #[test]
    fn tsdb_stats_count_pairs_names_and_bytes() {
        let mut s = TsdbStats::default();
        let l = |m: &str, job: &str| {
            vec![
                ("__name__".to_string(), m.to_string()),
                ("job".to_string(), job.to_string()),
            ]
        };
        s.add(&l("up", "a"), 2, Some((10, 20)));
        s.add(&l("up", "bb"), 1, Some((5, 15)));
        s.add(&l("go", "a"), 0, None);
        let v = s.render(1);
        assert_eq!(
            v["headStats"],
            json!({"numSeries": 3, "numLabelPairs": 4, "chunkCount": 3, "minTime": 5, "maxTime": 20})
        );
        assert_eq!(
            v["seriesCountByMetricName"],
            json!([{"name": "up", "value": 2}])
        );
        // job: 2 values; __name__: 2 values; tie broken by name.
        assert_eq!(
            v["labelValueCountByLabelName"],
            json!([{"name": "__name__", "value": 2}])
        );
        // __name__: "up"×2 + "go"×1 = 6 bytes; job: "a"×2 + "bb"×1 = 4 bytes.
        assert_eq!(
            v["memoryInBytesByLabelName"],
            json!([{"name": "__name__", "value": 6}])
        );
        assert_eq!(
            v["seriesCountByLabelValuePair"],
            json!([{"name": "__name__=up", "value": 2}])
        );
    }

    #[test]
    fn inline_configs_and_secrets_are_hidden() {
        assert_eq!(redact("objstore.config", "type: S3".into()), "<hidden>");
        assert_eq!(redact("objstore.config-file", "/b.yml".into()), "/b.yml");
        assert_eq!(redact("policy.admin-token", "x".into()), "<hidden>");
        assert_eq!(redact("query.timeout", "2m".into()), "2m");
    }
}
