//! XOR chunk decoding: `sluice_tsdb::xor::decode_into` against the
//! rusty-chunkenc crate on the same chunk bytes.
//!
//! Run: `cargo bench -p sluice-tsdb --bench xor`
//!
//! Three data sets of 1000 chunks × 120 samples, encoded with our
//! `XorEncoder` (byte-identical to Prometheus): (a) a regular counter at a
//! 15 s interval growing by 150..=156 per step like the spec's fixture, (b) a
//! gauge `20 + 5·sin` rounded to 3 decimals, (c) jittered millisecond
//! timestamps with random-ish values. Before timing, every chunk
//! is checked to decode bit-for-bit identically with both decoders. After
//! criterion's own report, a median-of-N timing of each decoder over all
//! chunks is printed as a table with the speed ratio (rusty / ours).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use sluice_tsdb::xor::{XorEncoder, decode_into};

const CHUNKS: usize = 1000;
const SAMPLES: usize = 120;
const SUMMARY_RUNS: usize = 41;

/// splitmix64: a small deterministic generator for the fixtures.
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

const T0: i64 = 1_704_069_000_000;

fn counter(rng: &mut Rng, c: usize) -> Vec<(i64, f64)> {
    // Like the spec's fixture counter (§4.2): +150..=156 per 15 s step.
    let start = T0 + (c * SAMPLES) as i64 * 15_000;
    let mut v = (c * SAMPLES * 153) as f64;
    (0..SAMPLES)
        .map(|i| {
            v += (150 + rng.below(7)) as f64;
            (start + i as i64 * 15_000, v)
        })
        .collect()
}

fn gauge(_rng: &mut Rng, c: usize) -> Vec<(i64, f64)> {
    let start = T0 + (c * SAMPLES) as i64 * 15_000;
    (0..SAMPLES)
        .map(|i| {
            let k = (c * SAMPLES + i) as f64;
            let v = ((20.0 + 5.0 * (k / 20.0).sin()) * 1000.0).round() / 1000.0;
            (start + i as i64 * 15_000, v)
        })
        .collect()
}

fn jitter(rng: &mut Rng, c: usize) -> Vec<(i64, f64)> {
    let mut t = T0 + (c * SAMPLES) as i64 * 15_000;
    (0..SAMPLES)
        .map(|_| {
            t += 14_000 + rng.below(2_001) as i64;
            let v = rng.below(1 << 40) as f64 / 7.0 * 1e-3;
            (t, v)
        })
        .collect()
}

struct DataSet {
    name: &'static str,
    chunks: Vec<Vec<u8>>,
    samples: usize,
}

fn build(name: &'static str, seed: u64, gen_fn: fn(&mut Rng, usize) -> Vec<(i64, f64)>) -> DataSet {
    let mut rng = Rng(seed);
    let mut chunks = Vec::with_capacity(CHUNKS);
    let mut samples = 0;
    for c in 0..CHUNKS {
        let s = gen_fn(&mut rng, c);
        let mut e = XorEncoder::new();
        for &(t, v) in &s {
            e.append(t, v);
        }
        let data = e.into_bytes();
        verify(name, c, &data, &s);
        samples += s.len();
        chunks.push(data);
    }
    DataSet {
        name,
        chunks,
        samples,
    }
}

/// Both decoders must return exactly the encoded samples, bit for bit.
fn verify(name: &str, c: usize, data: &[u8], want: &[(i64, f64)]) {
    let mut ts = Vec::new();
    let mut vs = Vec::new();
    decode_into(data, &mut ts, &mut vs)
        .unwrap_or_else(|e| panic!("{name} chunk {c}: ours failed: {e}"));
    let ours: Vec<(i64, u64)> = ts.iter().zip(&vs).map(|(&t, v)| (t, v.to_bits())).collect();
    let want: Vec<(i64, u64)> = want.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(ours, want, "{name} chunk {c}: ours differs from the input");
    let (_, chunk) = rusty_chunkenc::xor::read_xor_chunk_data(data)
        .unwrap_or_else(|e| panic!("{name} chunk {c}: rusty-chunkenc failed: {e:?}"));
    let rusty: Vec<(i64, u64)> = chunk
        .samples()
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    assert_eq!(
        rusty, want,
        "{name} chunk {c}: rusty-chunkenc differs from the input"
    );
}

fn decode_ours(ds: &DataSet, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> usize {
    let mut n = 0;
    for c in &ds.chunks {
        ts.clear();
        vs.clear();
        if decode_into(black_box(c), ts, vs).is_err() {
            return 0;
        }
        n += ts.len();
        black_box((&ts, &vs));
    }
    n
}

fn decode_rusty(ds: &DataSet) -> usize {
    let mut n = 0;
    for c in &ds.chunks {
        match rusty_chunkenc::xor::read_xor_chunk_data(black_box(c)) {
            Ok((_, chunk)) => {
                n += chunk.samples().len();
                black_box(&chunk);
            }
            Err(_) => return 0,
        }
    }
    n
}

/// (median, minimum) wall time in ns of `SUMMARY_RUNS` calls of `f`.
fn time_ns(mut f: impl FnMut() -> usize, expect: usize) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..SUMMARY_RUNS)
        .map(|_| {
            let start = Instant::now();
            let n = f();
            let el = start.elapsed();
            assert_eq!(n, expect);
            el
        })
        .collect();
    times.sort();
    (
        times[times.len() / 2].as_nanos() as f64,
        times[0].as_nanos() as f64,
    )
}

fn main() {
    let sets = [
        build("counter-15s", 1, counter),
        build("gauge-sin-3dp", 2, gauge),
        build("jitter-random", 3, jitter),
    ];

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for ds in &sets {
        let mut g = c.benchmark_group(format!("xor-decode/{}", ds.name));
        g.throughput(Throughput::Elements(ds.samples as u64));
        let mut ts = Vec::with_capacity(SAMPLES);
        let mut vs = Vec::with_capacity(SAMPLES);
        g.bench_function("sluice", |b| b.iter(|| decode_ours(ds, &mut ts, &mut vs)));
        g.bench_function("rusty-chunkenc", |b| b.iter(|| decode_rusty(ds)));
        g.finish();
    }
    c.final_summary();

    println!();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "XOR decode, {CHUNKS} chunks x {SAMPLES} samples per data set, median of {SUMMARY_RUNS} runs ({cpu}, {} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<16} {:>11} {:>10} {:>16} {:>15} {:>11} {:>16}",
        "data set",
        "bytes/chunk",
        "sluice",
        "rusty-chunkenc",
        "rusty / sluice",
        "sluice min",
        "rusty-chunkenc min"
    );
    for ds in &sets {
        let mut ts = Vec::with_capacity(SAMPLES);
        let mut vs = Vec::with_capacity(SAMPLES);
        let n = ds.samples as f64;
        let (ours, ours_min) = time_ns(|| decode_ours(ds, &mut ts, &mut vs), ds.samples);
        let (rusty, rusty_min) = time_ns(|| decode_rusty(ds), ds.samples);
        let bytes = ds.chunks.iter().map(Vec::len).sum::<usize>() as f64 / ds.chunks.len() as f64;
        println!(
            "{:<16} {:>11.1} {:>7.2} ns {:>13.2} ns {:>14.1}x {:>8.2} ns {:>13.2} ns",
            ds.name,
            bytes,
            ours / n,
            rusty / n,
            rusty / ours,
            ours_min / n,
            rusty_min / n,
        );
    }
    println!("(ns per sample, median and minimum over the runs; lower is better)");
}
