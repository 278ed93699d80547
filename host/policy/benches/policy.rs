//! Dedup through the policy sandbox against the same algorithm run natively.
//!
//! Run: `cargo bench -p sluice --bench policy`
//!
//! Data: 10,000 series × 2 replicas × 120 samples (2.4 M input samples):
//! counters scraped every 15 s, the second replica offset by ~7 s with
//! jitter, occasional scrape gaps and counter resets. The hint is `rate`, so
//! penalty dedup runs with its counter adjustment.
//!
//! - native: `sluice_policy_algorithms::dedup::penalty` over the groups, as
//!   the host's fallback runs it;
//! - sandbox: the built-in `dedup-penalty` plugin through a registry slot
//!   and a fresh session per round, exactly as a query uses it: instantiate,
//!   move the decoded replicas into a `DedupBatch`, then per call encode its
//!   groups, call `dedup`, and decode and check the output.
//!
//! Rounds interleave native and sandbox runs; the table shows medians over
//! the rounds (and the fastest round, less sensitive to a busy machine), ns
//! per input sample and the ratio to native. `SLUICE_BENCH_ROUNDS=n` sets
//! the number of rounds; `SLUICE_BENCH_CALLS=default` runs only the
//! session's default call size. Before timing,
//! the sandbox output is checked to equal the native output. Also printed:
//! cold compile, load from the on-disk and the in-memory cache, building a
//! slot, and per-query instantiation. Goal (issue 3): sandbox ≤ 1.5× native
//! and ≤ 10 ns per input sample.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_metrics::Metrics;
use sluice_policy::config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
use sluice_policy::{
    CompileSource, DEDUP_CALL_BYTES, DedupBatch, DedupHints, PolicyEngine, PolicyRegistry,
    PolicySet, builtin_module,
};
use sluice_policy_abi::Series;
use sluice_policy_algorithms::dedup;

const SERIES: usize = 10_000;
const REPLICAS: usize = 2;
const SAMPLES: usize = 120;
const DEFAULT_ROUNDS: usize = 11;
const INPUT_SAMPLES: usize = SERIES * REPLICAS * SAMPLES;

/// splitmix64: a small deterministic generator for the fixture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fixture() -> Vec<Vec<Series>> {
    let mut rng = Rng(42);
    let start = 1_700_000_000_000i64;
    (0..SERIES)
        .map(|_| {
            (0..REPLICAS)
                .map(|r| {
                    let mut ts = Vec::with_capacity(SAMPLES);
                    let mut vs = Vec::with_capacity(SAMPLES);
                    let mut t = start + r as i64 * 7_000 + rng.below(1000) as i64;
                    let mut v = rng.below(10_000) as f64;
                    while ts.len() < SAMPLES {
                        ts.push(t);
                        vs.push(v);
                        t += 15_000 + rng.below(200) as i64 - 100;
                        if rng.below(200) == 0 {
                            t += 60_000 + rng.below(120_000) as i64; // a scrape gap
                        }
                        v = if rng.below(500) == 0 {
                            rng.below(10) as f64
                        } else {
                            v + rng.below(50) as f64
                        };
                    }
                    Series::new(ts, vs)
                })
                .collect()
        })
        .collect()
}

fn rounds() -> usize {
    std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(DEFAULT_ROUNDS)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ns_per_sample(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9 / INPUT_SAMPLES as f64
}

fn hints() -> DedupHints {
    DedupHints {
        func: "rate".into(),
        ..Default::default()
    }
}

fn native(groups: &[Vec<Series>]) -> Vec<Series> {
    groups.iter().map(|g| dedup::penalty(g, true)).collect()
}

/// One sandboxed run as a query does it: the query's decoded replicas moved
/// into one `DedupBatch`, sent in calls of about `call_bytes` of input, each
/// encoded just before its call.
struct SandboxRun {
    instantiate: Duration,
    calls: Duration,
    out: Vec<Series>,
}

impl SandboxRun {
    fn total(&self) -> Duration {
        self.instantiate + self.calls
    }
}

/// `groups` is a fresh copy of the fixture (made outside the timing): a
/// query owns its decoded replicas and hands them to the batch.
fn sandbox(set: &PolicySet, groups: Vec<Vec<Series>>, call_bytes: usize) -> SandboxRun {
    let t0 = Instant::now();
    let mut session = set.session("dedup", PolicyKind::Dedup).expect("session");
    session.prepare().expect("instantiate");
    let instantiate = t0.elapsed();
    let t1 = Instant::now();
    let mut batch = DedupBatch::with_call_bytes(call_bytes);
    for g in groups {
        batch.push_owned_group(g);
    }
    let o = session.dedup(&batch, &hints()).expect("dedup call");
    assert!(o.warning.is_none());
    let out = o.value;
    SandboxRun {
        instantiate,
        calls: t1.elapsed(),
        out,
    }
}

fn load_times() {
    let bytes = builtin_module("dedup-penalty").expect("built-in dedup-penalty");
    let cache = tempfile::tempdir().expect("tempdir");
    let (mut cold, mut disk, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 {
        let dir = cache.path().join(format!("cold-{i}"));
        let engine = PolicyEngine::new(Some(dir.clone())).expect("engine");
        let c = engine.compile(bytes).expect("compile");
        assert_eq!(c.source, CompileSource::Compiled);
        cold.push(c.duration);
        for _ in 0..50 {
            let c = engine.compile(bytes).expect("compile");
            assert_eq!(c.source, CompileSource::Memory);
            memory.push(c.duration);
        }
        drop(engine);
        for _ in 0..5 {
            let engine = PolicyEngine::new(Some(dir.clone())).expect("engine");
            let c = engine.compile(bytes).expect("load");
            assert_eq!(c.source, CompileSource::Disk);
            disk.push(c.duration);
        }
    }
    let engine = PolicyEngine::new(None).expect("engine");
    let reg = PolicyRegistry::new(engine, &Metrics::new());
    let mut slot_load = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        reg.apply(vec![slot()]).expect("load");
        slot_load.push(t.elapsed());
    }
    let set = reg.snapshot();
    let mut inst = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let mut s = set.session("dedup", PolicyKind::Dedup).expect("session");
        s.prepare().expect("instantiate");
        inst.push(t.elapsed());
        drop(s);
    }
    println!("dedup-penalty component: {} KiB", bytes.len() / 1024);
    println!("{:<58} {:>10}", "load step (median)", "time");
    let rows = [
        ("cold compile (Cranelift)", median(&mut cold)),
        (
            "load from the on-disk cache (new engine)",
            median(&mut disk),
        ),
        (
            "load from the in-memory cache (digest hit)",
            median(&mut memory),
        ),
        (
            "build a slot from a cached component (trial instance)",
            median(&mut slot_load),
        ),
        (
            "per-query instantiate + configure (session.prepare)",
            median(&mut inst),
        ),
    ];
    for (what, d) in rows {
        if d < Duration::from_millis(1) {
            println!("{what:<58} {:>7.1} µs", d.as_secs_f64() * 1e6);
        } else {
            println!("{what:<58} {:>7.2} ms", ms(d));
        }
    }
    println!();
}

/// The flat-buffer codec steps of one sandboxed dedup, run natively on the
/// whole fixture: what the host does (encode input, decode output) and what
/// the guest SDK does around the algorithm (decode input, encode output).
fn codec_times(groups: &[Vec<Series>], out: &[Series]) {
    let (mut enc_in, mut dec_in, mut enc_out, mut dec_out) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let input_bytes = SERIES * (4 + REPLICAS * (4 + 16 * SAMPLES)) + 4;
    for _ in 0..rounds() {
        let t = Instant::now();
        let mut w = sluice_policy_abi::DedupInputWriter::with_capacity(input_bytes);
        for g in groups {
            w.begin_group();
            for s in g {
                w.add_replica(&s.timestamps, &s.values);
            }
        }
        let input = black_box(w.finish());
        enc_in.push(t.elapsed());
        let t = Instant::now();
        black_box(sluice_policy_abi::decode_dedup_input(&input).expect("decode"));
        dec_in.push(t.elapsed());
        let t = Instant::now();
        let output = black_box(sluice_policy_abi::encode_dedup_output(out));
        enc_out.push(t.elapsed());
        let t = Instant::now();
        black_box(sluice_policy_abi::decode_dedup_output(&output, out.len()).expect("decode"));
        dec_out.push(t.elapsed());
    }
    // The algorithm alone: both replicas' columns in, one reused output
    // buffer out, so no allocation or page fault is timed.
    let (mut algo, mut algo_flat) = (Vec::new(), Vec::new());
    let mut sink = Series::default();
    let input = {
        let mut w = sluice_policy_abi::DedupInputWriter::new();
        for g in groups {
            w.begin_group();
            for s in g {
                w.add_replica(&s.timestamps, &s.values);
            }
        }
        w.finish()
    };
    let view = sluice_policy_abi::DedupInput::parse(&input).expect("parse");
    for _ in 0..rounds() {
        let t = Instant::now();
        for g in groups {
            sink.timestamps.clear();
            sink.values.clear();
            let cols: Vec<dedup::Cols<'_>> = g.iter().map(dedup::Cols::new).collect();
            dedup::penalty_into(&cols, true, &mut sink);
            black_box(&sink);
        }
        algo.push(t.elapsed());
        let t = Instant::now();
        for g in view.groups() {
            sink.timestamps.clear();
            sink.values.clear();
            dedup::penalty_into(g, true, &mut sink);
            black_box(&sink);
        }
        algo_flat.push(t.elapsed());
    }
    println!(
        "flat-buffer codec, native, whole fixture (median ms): host encode input {:.2}, guest decode input {:.2}, guest encode output {:.2}, host decode output {:.2}",
        ms(median(&mut enc_in)),
        ms(median(&mut dec_in)),
        ms(median(&mut enc_out)),
        ms(median(&mut dec_out))
    );
    println!(
        "penalty algorithm alone, native, reused output (median ms): from slices {:.2}, from the flat input in place {:.2}",
        ms(median(&mut algo)),
        ms(median(&mut algo_flat)),
    );
    println!();
}

fn slot() -> SlotConfig {
    SlotConfig {
        name: "dedup".into(),
        kind: PolicyKind::Dedup,
        source: PluginSource::Builtin("dedup-penalty".into()),
        sha256: None,
        config: serde_json::json!({}),
        limits: Limits {
            timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        failure_policy: FailurePolicy::FailClosed,
        grants: Default::default(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and only wants to know that this builds and runs: keep that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    load_times();
    if quick {
        return;
    }

    let groups = fixture();
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &Metrics::new());
    reg.apply(vec![slot()]).expect("load dedup-penalty");
    let set: Arc<PolicySet> = reg.snapshot();

    let want = native(&groups);
    // Input bytes per call: everything in one call, then smaller calls; the
    // session's default is DEDUP_CALL_BYTES.
    let chunks: Vec<usize> = if std::env::var("SLUICE_BENCH_CALLS").is_ok_and(|c| c == "default") {
        vec![DEDUP_CALL_BYTES]
    } else {
        vec![usize::MAX, 4 << 20, 512 << 10, DEDUP_CALL_BYTES, 32 << 10]
    };
    for &c in &chunks {
        let got = sandbox(&set, groups.clone(), c).out;
        assert!(
            got == want,
            "sandbox output differs from native (calls of {c} bytes)"
        );
    }

    codec_times(&groups, &want);

    let mut nat = Vec::new();
    let mut runs: Vec<Vec<SandboxRun>> = chunks.iter().map(|_| Vec::new()).collect();
    let rounds = rounds();
    for round in 0..rounds {
        let t = Instant::now();
        black_box(native(black_box(&groups)));
        nat.push(t.elapsed());
        // Rotate the order of the variants so none always runs right after native.
        for k in 0..chunks.len() {
            let i = (k + round) % chunks.len();
            let copy = groups.clone();
            let r = sandbox(&set, copy, chunks[i]);
            black_box(&r.out);
            runs[i].push(SandboxRun {
                out: Vec::new(),
                ..r
            });
        }
    }
    let native_med = median(&mut nat);
    let native_min = nat[0];
    println!(
        "dedup of {SERIES} series × {REPLICAS} replicas × {SAMPLES} samples ({INPUT_SAMPLES} input samples), hint rate; median of {rounds} interleaved rounds"
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>10} {:>7} {:>8} {:>7}",
        "", "total ms", "inst ms", "calls ms", "ns/sample", "× native", "min ms", "min ×"
    );
    println!(
        "{:<36} {:>9.2} {:>9} {:>9} {:>10.2} {:>7.2} {:>8.2} {:>7.2}",
        "native penalty",
        ms(native_med),
        "",
        "",
        ns_per_sample(native_med),
        1.0,
        ms(native_min),
        1.0
    );
    for (i, &c) in chunks.iter().enumerate() {
        let r = &mut runs[i];
        let mut totals = r.iter().map(SandboxRun::total).collect::<Vec<_>>();
        let total = median(&mut totals);
        let min = totals[0];
        let inst = median(&mut r.iter().map(|x| x.instantiate).collect::<Vec<_>>());
        let calls = median(&mut r.iter().map(|x| x.calls).collect::<Vec<_>>());
        let input_bytes = SERIES * (4 + REPLICAS * (4 + 16 * SAMPLES)) + 4;
        let label = match c {
            usize::MAX => "sandbox, 1 call".to_string(),
            _ => format!(
                "sandbox, {} calls of {}{} KiB",
                input_bytes.div_ceil(c),
                if c == DEDUP_CALL_BYTES {
                    "default "
                } else {
                    ""
                },
                c >> 10
            ),
        };
        println!(
            "{:<36} {:>9.2} {:>9.3} {:>9.2} {:>10.2} {:>7.2} {:>8.2} {:>7.2}",
            label,
            ms(total),
            ms(inst),
            ms(calls),
            ns_per_sample(total),
            total.as_secs_f64() / native_med.as_secs_f64(),
            ms(min),
            min.as_secs_f64() / native_min.as_secs_f64()
        );
    }
}
