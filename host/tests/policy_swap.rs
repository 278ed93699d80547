//! Swap under load: while four threads run a bounded loop of dedup calls,
//! the `dedup` slot is swapped ten times between dedup-penalty and
//! dedup-chain (which give different results on the test data), five times
//! by rewriting the watched policies.yml and five times through the admin API
//! (`PUT /api/v1/policies/dedup`), plus a PUT with a wrong sha256 and one
//! with a corrupt module, both refused while the old set keeps serving.
//! Zero calls may fail, and each call's result must be exactly the result of
//! the version in the snapshot its session took at start.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::metrics::Metrics;
use sluice::policy::{
    DedupBatch, DedupHints, PolicyEngine, PolicyKind, PolicyRegistry, builtin_module, sha256_hex,
};
use sluice_policy_abi::Series;
use sluice_policy_algorithms::dedup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-admin-token";

/// Two replicas sampled at interleaved times: chain dedup keeps both
/// (the union), penalty dedup sticks to the first replica.
fn groups() -> Vec<Vec<Series>> {
    (0..20)
        .map(|g| {
            (0..2)
                .map(|r| {
                    let ts: Vec<i64> = (0..60).map(|i| i * 10_000 + r * 5_000).collect();
                    let vs = ts.iter().map(|t| (t / 1000 + g) as f64).collect();
                    Series::new(ts, vs)
                })
                .collect()
        })
        .collect()
}

fn policies_yaml(builtin: &str) -> String {
    format!("slots:\n  dedup:\n    builtin: {builtin}\n    limits: {{ timeout: 5s }}\n")
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read");
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

async fn wait_for_generation(reg: &PolicyRegistry, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = reg.snapshot().generation;
        if g > above {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "no reload after the file change (generation {g})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_policies(path: &Path, builtin: &str) {
    std::fs::write(path, policies_yaml(builtin)).expect("write policies.yml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_ten_times_under_load_without_a_failed_call() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("policies.yml");
    write_policies(&file, "dedup-penalty");
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &Metrics::new());
    reg.apply_file(&file).expect("initial set");
    let _watch = reg.watch_file(file.clone()).expect("watch");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = sluice::api::policy_admin_router(
        reg.clone(),
        sluice::api::AdminAuth {
            token: Some(TOKEN.to_string()),
            identities: vec![],
        },
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Unauthenticated or wrongly authenticated requests are refused.
    assert_eq!(
        http(addr, "GET", "/api/v1/policies", None, b"").await.0,
        401
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/policies", Some("wrong"), b"")
            .await
            .0,
        401
    );
    let chain = builtin_module("dedup-chain").expect("built-in");
    let put_chain = format!("/api/v1/policies/dedup?sha256={}", sha256_hex(chain));
    assert_eq!(http(addr, "PUT", &put_chain, None, chain).await.0, 401);
    assert_eq!(
        reg.snapshot().generation,
        1,
        "a refused request changes nothing"
    );

    let gs = groups();
    let expected_penalty: Vec<Series> = gs.iter().map(|g| dedup::penalty(g, false)).collect();
    let expected_chain: Vec<Series> = gs.iter().map(|g| dedup::chain(g)).collect();
    assert_ne!(
        expected_penalty, expected_chain,
        "the two versions must be distinguishable"
    );
    let expected = Arc::new((expected_penalty, expected_chain));

    // Load: 4 threads, each at most 5000 calls or 120 s, until the swaps are done.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (reg, stop, failures, expected, gs) = (
            reg.clone(),
            stop.clone(),
            failures.clone(),
            expected.clone(),
            gs.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let started = Instant::now();
            let (mut penalty_calls, mut chain_calls) = (0u64, 0u64);
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                // Admission: the query takes the set, then runs on it to the end.
                let set = reg.snapshot();
                let name = set.slots["dedup"].plugin.info.name.clone();
                let mut session = set.session("dedup", PolicyKind::Dedup).expect("session");
                let mut batch = DedupBatch::new();
                for g in &gs {
                    batch.push_group(
                        g.iter()
                            .map(|s| (s.timestamps.as_slice(), s.values.as_slice())),
                    );
                }
                match session.dedup(&batch, &DedupHints::default()) {
                    Ok(o) => {
                        assert!(o.warning.is_none(), "no fallback expected: {:?}", o.warning);
                        let want = match name.as_str() {
                            "dedup-penalty" => {
                                penalty_calls += 1;
                                &expected.0
                            }
                            "dedup-chain" => {
                                chain_calls += 1;
                                &expected.1
                            }
                            other => panic!("unexpected plugin {other}"),
                        };
                        assert_eq!(
                            &o.value, want,
                            "generation {} ({name}) gave another version's result",
                            set.generation
                        );
                    }
                    Err(e) => {
                        eprintln!("call failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (penalty_calls, chain_calls)
        }));
    }

    let mut generations = vec![reg.snapshot().generation];
    let mut current = "dedup-penalty";
    for swap in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let next = if current == "dedup-penalty" {
            "dedup-chain"
        } else {
            "dedup-penalty"
        };
        let before = reg.snapshot().generation;
        let generation = if swap % 2 == 0 {
            write_policies(&file, next);
            wait_for_generation(&reg, before).await
        } else {
            let module = builtin_module(next).expect("built-in");
            let path = format!("/api/v1/policies/dedup?sha256={}", sha256_hex(module));
            let (status, body) = http(addr, "PUT", &path, Some(TOKEN), module).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["name"], next, "{body}");
            body["data"]["generation"].as_u64().expect("generation")
        };
        assert_eq!(reg.snapshot().slots["dedup"].plugin.info.name, next);
        generations.push(generation);
        current = next;

        if swap == 4 {
            // A wrong digest and a corrupt module are refused; the old set serves on.
            let module = builtin_module("dedup-penalty").expect("built-in");
            let wrong = format!(
                "/api/v1/policies/dedup?sha256={}",
                sha256_hex(b"something else")
            );
            let (status, body) = http(addr, "PUT", &wrong, Some(TOKEN), module).await;
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("sha256 mismatch"),
                "{body}"
            );
            let mut corrupt = module.to_vec();
            corrupt.truncate(corrupt.len() / 2);
            let path = format!("/api/v1/policies/dedup?sha256={}", sha256_hex(&corrupt));
            let (status, body) = http(addr, "PUT", &path, Some(TOKEN), &corrupt).await;
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not a valid WebAssembly component"),
                "{body}"
            );
            assert_eq!(
                reg.snapshot().generation,
                generation,
                "refused uploads publish nothing"
            );
            assert_eq!(reg.snapshot().slots["dedup"].plugin.info.name, current);
        }
    }
    // Let the load run a little on the last version, then stop it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut penalty_calls, mut chain_calls) = (0, 0);
    for w in workers {
        let (p, c) = w
            .join()
            .expect("a worker panicked: a result matched no version");
        penalty_calls += p;
        chain_calls += c;
    }
    eprintln!(
        "calls: {penalty_calls} on dedup-penalty, {chain_calls} on dedup-chain; generations {generations:?}"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls failed during the swaps"
    );
    assert!(
        penalty_calls > 0 && chain_calls > 0,
        "both versions served calls"
    );
    assert!(
        generations.windows(2).all(|w| w[1] > w[0]),
        "generations increase: {generations:?}"
    );

    // Nothing reloads by itself: reading the file during a reload is not a change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reg.snapshot().generation,
        *generations.last().expect("generations"),
        "a reload nobody asked for"
    );

    let (status, body) = http(addr, "GET", "/api/v1/policies", Some(TOKEN), b"").await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(
        data["generation"].as_u64(),
        generations.last().copied(),
        "{body}"
    );
    let slot = data["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slot"] == "dedup"))
        .unwrap_or_else(|| panic!("no dedup slot in {body}"));
    assert_eq!(slot["name"], current);
    assert_eq!(
        slot["sha256"],
        sha256_hex(builtin_module(current).expect("built-in"))
    );
    assert_eq!(
        slot["source"], "uploaded",
        "the last swap went through the API: {slot}"
    );
    assert!(data["lastError"].is_null() || data["lastError"].is_string());
    server.abort();
}
