//! Hostile input against real processes: a `sluice store` over the promtool fixture and a `sluice query` in front
//! of it get well over a hundred requests built to hurt — PromQL that explodes in steps, series or depth, huge and
//! invalid regexes, huge labels and strings, `topk`/`quantile`/`count_values` abuse, extreme and malformed times
//! and steps, huge and slow bodies — and gRPC abuse (huge and garbage requests, hostile batch sizes, a slowloris
//! client, an endpoint whose chunk headers lie). Every request must get an answer (an error naming the limit or
//! the problem where one is due), the processes must stay up, and their peak RSS must stay under a stated bound.
//!
//! Needs `promtool` (`apt-get install prometheus`).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use prost::Message;
use sluice_e2e::bucket::{fs_objstore_yaml, put_block};
use sluice_e2e::fake::{NOT_PROTOBUF, StallingStore};
use sluice_e2e::fixture::{END_MS, T0_MS};
use sluice_e2e::{Fixture, SluiceQuery, SluiceStore, eq, labels, series_request};
use sluice_proto::thanos::{LabelMatcher, SeriesRequest, SeriesResponse, label_matcher};
use tokio::io::AsyncWriteExt;

/// The querier's samples limit in this suite (the default is 50M): small, so that queries over it are cheap.
const MAX_SAMPLES: usize = 2_000_000;

/// What the limits promise for the querier's peak RSS: 4 dense cells per sample of 16 bytes each, plus the
/// process itself and request buffers.
const QUERIER_RSS_BOUND_MIB: u64 = 4 * (MAX_SAMPLES as u64) * 16 / (1 << 20) + 512;
const STORE_RSS_BOUND_MIB: u64 = 512;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sluice-e2e-hostile-fixture-{}", std::process::id()));
        Fixture::create(&dir)
            .unwrap_or_else(|e| panic!("creating the promtool fixture failed: {e:#}"))
    })
}

/// What a request must get.
#[derive(Debug, Clone)]
enum Want {
    /// An error whose message contains one of these (compared in lower case).
    Error(&'static [&'static str]),
    /// A success.
    Success,
    /// Either, as long as it is a well-formed answer (a limit may or may not be reached).
    Answer,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// Sent as GET (query string) instead of POST (form body).
    get: bool,
    path: &'static str,
    params: Vec<(String, String)>,
    want: Want,
}

fn case(name: impl Into<String>, path: &'static str, params: &[(&str, &str)], want: Want) -> Case {
    Case {
        name: name.into(),
        get: false,
        path,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        want,
    }
}

fn q(name: impl Into<String>, query: &str, want: Want) -> Case {
    case(
        name,
        "/api/v1/query",
        &[("query", query), ("time", "1700000000")],
        want,
    )
}

const TOO_MANY: &[&str] = &["too many samples", "maximum resolution"];
const TOO_COMPLEX: &[&str] = &["too complex"];
const PARSE: &[&str] = &[
    "parse error",
    "unexpected",
    "invalid",
    "regex",
    "expected type",
    "cannot",
];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    // Explosions in steps: subquery grids far over the samples limit.
    for (range, step) in [
        ("100y", "1ms"),
        ("100y", "1s"),
        ("10y", "1ms"),
        ("10y", "1s"),
        ("1y", "1s"),
        ("1y", "100ms"),
        ("30d", "100ms"),
        ("365d", "10ms"),
        ("292y", "1ms"),
    ] {
        v.push(q(
            format!("subquery grid [{range}:{step}]"),
            &format!("count_over_time(vector(1)[{range}:{step}])"),
            Want::Error(TOO_MANY),
        ));
        v.push(q(
            format!("subquery grid of a selector [{range}:{step}]"),
            &format!("max_over_time(demo_temperature_celsius[{range}:{step}])"),
            Want::Error(TOO_MANY),
        ));
    }
    v.push(q(
        "nested subqueries",
        "max_over_time(max_over_time(vector(1)[1d:1m])[1y:1s])",
        Want::Error(TOO_MANY),
    ));
    for (start, end, step) in [
        ("0", "1000000000", "0.001"),
        ("-1e300", "1e300", "1"),
        ("0", "9e18", "1"),
        ("-9e18", "9e18", "1e9"),
        ("1700000000", "1700100000", "1"),
    ] {
        v.push(case(
            format!("range {start}..{end} step {step}"),
            "/api/v1/query_range",
            &[
                ("query", "vector(1)"),
                ("start", start),
                ("end", end),
                ("step", step),
            ],
            Want::Error(&[
                "maximum resolution",
                "too many samples",
                "cannot parse",
                "invalid",
            ]),
        ));
    }
    // Depth: brackets, function calls, binary chains, subqueries.
    for n in [257, 1_000, 10_000, 200_000] {
        v.push(q(
            format!("{n} nested parentheses"),
            &format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            Want::Error(TOO_COMPLEX),
        ));
        v.push(q(
            format!("{n} nested abs()"),
            &format!("{}vector(1){}", "abs(".repeat(n), ")".repeat(n)),
            Want::Error(TOO_COMPLEX),
        ));
    }
    // The same depth through the other places a request's PromQL is parsed.
    let deep = format!("{}1{}", "(".repeat(200_000), ")".repeat(200_000));
    let deep_selector = format!("{}up{}", "(".repeat(200_000), ")".repeat(200_000));
    v.push(case(
        "200000 nested parentheses in query_exemplars",
        "/api/v1/query_exemplars",
        &[("query", deep.as_str())],
        Want::Error(TOO_COMPLEX),
    ));
    v.push(case(
        "200000 nested parentheses in match[]",
        "/api/v1/series",
        &[("match[]", deep_selector.as_str())],
        Want::Error(TOO_COMPLEX),
    ));
    for (op, n) in [
        ("+", 1_500),
        ("*", 3_000),
        ("-", 10_000),
        ("+", 300_000),
        (" and ", 2_000),
        (" or ", 5_000),
    ] {
        v.push(q(
            format!("{n}-term chain of {op:?}"),
            &vec!["up"; n].join(op),
            Want::Error(TOO_COMPLEX),
        ));
    }
    v.push(q(
        "300 nested subqueries",
        &format!("{}vector(1){}", "(".repeat(300), ")[1m:1s]".repeat(300)),
        Want::Error(TOO_COMPLEX),
    ));
    v.push(q(
        "deep but allowed chain",
        &vec!["vector(1)"; 500].join("+"),
        Want::Success,
    ));
    // Regexes: huge, invalid, nested.
    v.push(q(
        "400 KB regex alternation",
        &format!("{{__name__=~\"{}a\"}}", "a|".repeat(200_000)),
        Want::Answer,
    ));
    v.push(q(
        "invalid regex class",
        r#"{__name__=~"[z-a]"}"#,
        Want::Error(PARSE),
    ));
    v.push(q(
        "unclosed regex group",
        r#"{__name__=~"(abc"}"#,
        Want::Error(PARSE),
    ));
    v.push(q(
        "regex nested 1000 groups",
        &format!(
            "{{__name__=~\"{}a{}\"}}",
            "(".repeat(1_000),
            ")".repeat(1_000)
        ),
        Want::Answer,
    ));
    v.push(q(
        "backtracking-style regex",
        r#"{__name__=~"(a+)+$", job=~"(.*)*x"}"#,
        Want::Success,
    ));
    v.push(q(
        "regex repetition bomb",
        r#"{__name__=~"a{1000}{1000}"}"#,
        Want::Answer,
    ));
    // Label and string sizes.
    v.push(q(
        "5 MB label value in a matcher",
        &format!(
            "demo_temperature_celsius{{job=\"{}\"}}",
            "x".repeat(5 << 20)
        ),
        Want::Success,
    ));
    v.push(q(
        "5 MB string literal",
        &format!("\"{}\"", "s".repeat(5 << 20)),
        Want::Success,
    ));
    v.push(q(
        "label_replace into a 1 MB value",
        &format!(
            "label_replace(vector(1), \"dst\", \"{}\", \"\", \"\")",
            "v".repeat(1 << 20)
        ),
        Want::Success,
    ));
    v.push(q(
        "count_values with a 100 KB label name",
        &format!("count_values(\"{}\", vector(1))", "l".repeat(100_000)),
        Want::Success,
    ));
    // Prometheus 3 accepts any UTF-8 label name.
    v.push(q(
        "count_values with a non-legacy label name",
        "count_values(\"1-bad\", vector(1))",
        Want::Success,
    ));
    v.push(q(
        "label name with a NUL",
        "label_replace(vector(1), \"a\\u0000b\", \"x\", \"\", \"\")",
        Want::Answer,
    ));
    v.push(q(
        "count_values with an empty label name",
        "count_values(\"\", vector(1))",
        Want::Error(&["invalid label name"]),
    ));
    // topk / bottomk / quantile / count_values abuse.
    for k in [
        "1e18",
        "9.3e18",
        "-1",
        "0",
        "NaN",
        "Inf",
        "-Inf",
        "1e308",
        "9223372036854775807",
    ] {
        v.push(q(
            format!("topk({k})"),
            &format!("topk({k}, demo_temperature_celsius)"),
            Want::Answer,
        ));
        v.push(q(
            format!("bottomk({k})"),
            &format!("bottomk({k}, demo_temperature_celsius)"),
            Want::Answer,
        ));
    }
    for p in ["1e308", "-1e308", "NaN", "Inf", "2"] {
        v.push(q(
            format!("quantile({p})"),
            &format!("quantile({p}, demo_temperature_celsius)"),
            Want::Success,
        ));
    }
    v.push(q(
        "count_values over itself",
        "count_values(\"v\", count_values(\"w\", demo_temperature_celsius))",
        Want::Success,
    ));
    v.push(q("topk of a string", "topk(\"x\", up)", Want::Error(PARSE)));
    // Times, steps, durations.
    for t in [
        "1e300",
        "-1e300",
        "NaN",
        "Inf",
        "-Inf",
        "abc",
        "9223372036854775807",
        "2024-13-45T99:99:99Z",
        "0x10",
    ] {
        v.push(case(
            format!("time={t}"),
            "/api/v1/query",
            &[("query", "vector(1)"), ("time", t)],
            Want::Answer,
        ));
    }
    for step in [
        "0", "-1", "NaN", "Inf", "1e-300", "1e300", "abc", "-1e300", "1ms",
    ] {
        v.push(case(
            format!("step={step}"),
            "/api/v1/query_range",
            &[
                ("query", "vector(1)"),
                ("start", "1700000000"),
                ("end", "1700003600"),
                ("step", step),
            ],
            Want::Answer,
        ));
    }
    for (start, end) in [
        ("1700003600", "1700000000"),
        ("NaN", "1"),
        ("1", "NaN"),
        ("", "1"),
    ] {
        v.push(case(
            format!("start={start} end={end}"),
            "/api/v1/query_range",
            &[
                ("query", "vector(1)"),
                ("start", start),
                ("end", end),
                ("step", "15"),
            ],
            Want::Error(&["end timestamp", "cannot parse", "invalid"]),
        ));
    }
    for d in ["-1s", "1e300s", "999999999y", "NaN"] {
        v.push(q(
            format!("offset {d}"),
            &format!("vector(1) offset {d}"),
            Want::Answer,
        ));
        v.push(case(
            format!("lookback_delta={d}"),
            "/api/v1/query",
            &[("query", "demo_temperature_celsius"), ("lookback_delta", d)],
            Want::Answer,
        ));
        v.push(case(
            format!("timeout={d}"),
            "/api/v1/query",
            &[("query", "vector(1)"), ("timeout", d)],
            Want::Answer,
        ));
    }
    v.push(q("@ far future", "vector(1) @ 1e300", Want::Answer));
    v.push(q(
        "@ far past subquery",
        "count_over_time(vector(1)[1h:1m] @ -1e18)",
        Want::Answer,
    ));
    // Series and label APIs with hostile parameters.
    for (path, extra) in [
        (
            "/api/v1/series",
            vec![("match[]", "{__name__=~\".+\"}"), ("limit", "-1")],
        ),
        (
            "/api/v1/series",
            vec![
                ("match[]", "{__name__=~\".+\"}"),
                ("start", "-1e300"),
                ("end", "1e300"),
            ],
        ),
        ("/api/v1/labels", vec![("limit", "99999999999999999999")]),
        ("/api/v1/labels", vec![("match[]", "{")]),
        ("/api/v1/label/__name__/values", vec![("limit", "abc")]),
        ("/api/v1/series", vec![]),
    ] {
        v.push(Case {
            name: format!("{path} {extra:?}"),
            get: path.starts_with("/api/v1/label/"),
            path,
            params: extra
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            want: Want::Answer,
        });
    }
    v
}

/// Sends a case; returns (HTTP status, `status` field, error message).
async fn send(http: &reqwest::Client, base: &str, c: &Case) -> Result<(u16, String, String)> {
    let pairs: Vec<(&str, &str)> = c
        .params
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let form = sluice_e2e::api::form(&pairs);
    let req = if c.get {
        http.get(format!("{base}{}?{form}", c.path))
    } else {
        http.post(format!("{base}{}", c.path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
    };
    let resp = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("{}: no answer", c.name))?;
    let code = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .with_context(|| format!("{}: reading the answer", c.name))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: answer is not JSON ({code}): {:.300}", c.name, text))?;
    let status = v["status"].as_str().unwrap_or("").to_owned();
    let error = v["error"].as_str().unwrap_or("").to_owned();
    Ok((code, status, error))
}

fn peak_rss_mib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/<pid>/status")?;
    Ok(kib / 1024)
}

async fn healthy(q: &SluiceQuery) -> Result<()> {
    let (code, body) = q.http_get("/-/healthy").await?;
    ensure!(code == 200, "/-/healthy answered {code}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_and_grpc_requests_get_answers_and_nothing_dies() -> Result<()> {
    let fx = fixture();
    let bucket = tempfile::tempdir()?;
    for b in &fx.blocks {
        put_block(bucket.path(), b, Some(&labels(&[("cluster", "eu1")])))?;
    }
    let mut store = SluiceStore::start_ready(&fs_objstore_yaml(bucket.path()), &[]).await?;
    let max_samples = format!("--query.max-samples={MAX_SAMPLES}");
    let mut querier = SluiceQuery::start(&[
        format!("--endpoint={}", store.grpc),
        max_samples,
        "--query.timeout=20s".into(),
    ])
    .await?;
    let base = querier.http_base();
    let http = reqwest::Client::new();

    let cases = cases();
    ensure!(
        cases.len() >= 100,
        "only {} hostile HTTP cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        match send(&http, &base, c).await {
            Ok((code, status, error)) => {
                let ok = match &c.want {
                    Want::Success => status == "success" && code == 200,
                    Want::Answer => status == "success" || (status == "error" && !error.is_empty()),
                    Want::Error(words) => {
                        let e = error.to_lowercase();
                        status == "error" && code >= 400 && words.iter().any(|w| e.contains(w))
                    }
                };
                if !ok {
                    failures.push(format!(
                        "{}: got {code} {status} {error:.300}; want {:?}",
                        c.name, c.want
                    ));
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
        if i % 10 == 9 {
            ensure!(
                querier.is_running(),
                "the querier died after {}:\n{}",
                c.name,
                querier.logs()
            );
            healthy(&querier).await?;
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Huge body: 64 MiB of form data.
    let huge = format!("query=vector(1)&pad={}", "x".repeat(64 << 20));
    let r = http
        .post(format!("{base}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    if let Ok(r) = r {
        ensure!(
            r.status().as_u16() >= 400 || r.status().is_success(),
            "huge body: {}",
            r.status()
        );
    }
    // Slow body: headers promise 100 KB, a few bytes come, the client goes quiet, then leaves.
    let mut slow = tokio::net::TcpStream::connect(querier.http).await?;
    slow.write_all(
        b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100000\r\n\r\nquery=vec",
    )
    .await?;
    // Meanwhile other clients are served.
    let (code, status, _) = send(
        &http,
        &base,
        &q("while a slow body is open", "vector(1)", Want::Success),
    )
    .await?;
    ensure!(
        code == 200 && status == "success",
        "not served while a slow body is open"
    );
    drop(slow);

    // gRPC against the store and the querier's own StoreAPI.
    for (what, addr) in [("store", store.grpc), ("querier", querier.grpc)] {
        grpc_abuse(what, addr).await?;
    }

    // Prometheus' `limit` on the series and label APIs, with its warning when the answer was cut.
    for path in ["/api/v1/series", "/api/v1/labels"] {
        let r = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(sluice_e2e::api::form(&[
                ("match[]", "{__name__=~\".+\"}"),
                ("limit", "2"),
            ]))
            .send()
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
        ensure!(
            v["data"].as_array().map(Vec::len) == Some(2),
            "{path} limit=2 gave {v}"
        );
        ensure!(
            v["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w == "results truncated due to limit")),
            "{path}: no truncation warning: {v}"
        );
    }

    // The querier's own read limits, enforced while the merged stream arrives.
    for (flag, word) in [
        ("--store.limits.request-series=2", "request-series"),
        ("--store.limits.request-samples=100", "request-samples"),
    ] {
        let q3 =
            SluiceQuery::start(&[format!("--endpoint={}", store.grpc), flag.to_owned()]).await?;
        let base3 = q3.http_base();
        let mut seen = String::new();
        for _ in 0..40 {
            let (code, status, error) = send(
                &http,
                &base3,
                &case(
                    flag,
                    "/api/v1/query_range",
                    &[
                        ("query", "demo_http_requests_total"),
                        ("start", &(T0_MS / 1000).to_string()),
                        ("end", &(END_MS / 1000).to_string()),
                        ("step", "60"),
                    ],
                    Want::Answer,
                ),
            )
            .await?;
            seen = format!("{code} {status} {error}");
            if status == "error" && error.contains(word) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ensure!(
            seen.contains(word),
            "{flag}: the query was not refused naming the limit: {seen}"
        );
    }

    // An endpoint whose chunk headers lie: 200,000 chunks of 3 bytes each claiming 65,535 samples would ask for
    // ~200 GB if the querier sized its columns from them.
    let liar = StallingStore::start_lying("liar", 200_000).await?;
    let mut q2 = SluiceQuery::start(&[format!("--endpoint={}", liar.addr)]).await?;
    let base2 = q2.http_base();
    let mut answered = false;
    for _ in 0..40 {
        let (_, status, error) = send(
            &http,
            &base2,
            &case(
                "lying chunk headers",
                "/api/v1/query_range",
                &[
                    ("query", "fake_lying"),
                    ("start", &(T0_MS / 1000).to_string()),
                    ("end", &(END_MS / 1000).to_string()),
                    ("step", "60"),
                ],
                Want::Answer,
            ),
        )
        .await?;
        if status == "error" && (error.contains("decod") || error.contains("chunk")) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(
        answered,
        "the lying endpoint's chunks were not reported as undecodable"
    );
    ensure!(
        q2.is_running(),
        "the querier over the lying endpoint died:\n{}",
        q2.logs()
    );
    let rss2 = peak_rss_mib(q2.pid())?;
    ensure!(
        rss2 < 1024,
        "querier over the lying endpoint peaked at {rss2} MiB"
    );

    ensure!(store.is_running(), "the store died:\n{}", store.logs());
    ensure!(
        querier.is_running(),
        "the querier died:\n{}",
        querier.logs()
    );
    healthy(&querier).await?;
    let (qr, sr) = (peak_rss_mib(querier.pid())?, peak_rss_mib(store.pid())?);
    println!(
        "peak RSS: querier {qr} MiB (bound {QUERIER_RSS_BOUND_MIB}), store {sr} MiB (bound {STORE_RSS_BOUND_MIB})"
    );
    ensure!(
        qr < QUERIER_RSS_BOUND_MIB,
        "querier peak RSS {qr} MiB over {QUERIER_RSS_BOUND_MIB} MiB"
    );
    ensure!(
        sr < STORE_RSS_BOUND_MIB,
        "store peak RSS {sr} MiB over {STORE_RSS_BOUND_MIB} MiB"
    );
    Ok(())
}

/// A codec that sends raw bytes as the request message, for requests no encoder would produce.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = SeriesResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = SeriesResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<SeriesResponse>, tonic::Status> {
        SeriesResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// Sends raw bytes as a Series request and collects the answer: frames, or the status that ended the call.
async fn raw_series(
    addr: std::net::SocketAddr,
    body: Bytes,
) -> Result<Result<usize, tonic::Status>> {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(ch).max_encoding_message_size(usize::MAX);
    grpc.ready().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = http::uri::PathAndQuery::from_static("/thanos.Store/Series");
    let r = grpc
        .server_streaming(tonic::Request::new(body), path, RawCodec)
        .await;
    Ok(match r {
        Ok(resp) => {
            let mut s = resp.into_inner();
            let mut n = 0;
            loop {
                match s.message().await {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break Ok(n),
                    Err(e) => break Err(e),
                }
            }
        }
        Err(e) => Err(e),
    })
}

async fn grpc_abuse(what: &str, addr: std::net::SocketAddr) -> Result<()> {
    // A 20 MB request: over every server's request limit.
    let mut big = series_request(&[eq("__name__", "demo_temperature_celsius")], T0_MS, END_MS);
    big.matchers.push(LabelMatcher {
        r#type: label_matcher::Type::Neq as i32,
        name: "job".into(),
        value: "x".repeat(20 << 20),
    });
    match raw_series(addr, Bytes::from(big.encode_to_vec())).await? {
        Ok(n) => bail!("{what}: a 20 MB request was served ({n} frames)"),
        Err(s) => ensure!(
            matches!(
                s.code(),
                tonic::Code::ResourceExhausted
                    | tonic::Code::OutOfRange
                    | tonic::Code::InvalidArgument
            ),
            "{what}: 20 MB request answered {s:?}"
        ),
    }
    // Garbage and truncated requests.
    for (name, body) in [
        ("garbage", Bytes::from_static(NOT_PROTOBUF)),
        ("truncated", {
            let full = series_request(&[eq("__name__", "demo_temperature_celsius")], T0_MS, END_MS)
                .encode_to_vec();
            Bytes::from(full[..full.len() / 2].to_vec())
        }),
    ] {
        match raw_series(addr, body).await? {
            Ok(n) => bail!("{what}: a {name} request was served ({n} frames)"),
            Err(s) => ensure!(
                s.code() == tonic::Code::InvalidArgument,
                "{what}: {name} request answered {s:?}"
            ),
        }
    }
    // A hostile batch size: frames stay bounded and every series arrives.
    let mut req: SeriesRequest =
        series_request(&[eq("__name__", "demo_temperature_celsius")], T0_MS, END_MS);
    req.response_batch_size = 1 << 60;
    match raw_series(addr, Bytes::from(req.encode_to_vec())).await? {
        Ok(n) => ensure!(n >= 1, "{what}: batch size 1<<60 gave no frame"),
        Err(s) => bail!("{what}: batch size 1<<60 answered {s:?}"),
    }
    // A slowloris client: a TCP connection that never speaks HTTP/2, while a real call goes through.
    let idle = tokio::net::TcpStream::connect(addr).await?;
    let n = raw_series(
        addr,
        Bytes::from(
            series_request(&[eq("__name__", "demo_temperature_celsius")], T0_MS, END_MS)
                .encode_to_vec(),
        ),
    )
    .await?
    .map_err(|s| anyhow::anyhow!("{what}: a call during a slowloris connection failed: {s:?}"))?;
    ensure!(n >= 1, "{what}: no frames during a slowloris connection");
    drop(idle);
    Ok(())
}

/// A bearer token for the policy admin API is refused over plaintext HTTP unless the operator says so: the
/// querier does not start, and the error says why and what to do.
#[test]
fn admin_token_over_plaintext_needs_an_explicit_flag() -> Result<()> {
    let bin = sluice_e2e::tools::sluice_bin()?;
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n")?;
    let out = std::process::Command::new(&bin)
        .args([
            "query",
            "--grpc-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            &format!("--policies.admin-token-file={}", token.display()),
        ])
        .output()?;
    ensure!(
        !out.status.success(),
        "the querier started with a plaintext admin token"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("--policies.admin-allow-plaintext") && err.contains("in the clear"),
        "the refusal does not say why: {err}"
    );
    Ok(())
}
