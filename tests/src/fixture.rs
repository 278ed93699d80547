//! Fixtures made by the real tools: a deterministic OpenMetrics file generated here, turned into TSDB blocks by
//! `promtool tsdb create-blocks-from openmetrics`, and read back with `promtool tsdb dump` as the oracle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::model::{Labels, Sample, SeriesMap, ServedBlock, labels};
use crate::tools;

/// Start of the fixture window: 2024-01-01T00:30:00Z, deliberately not 2h-aligned.
pub const T0: i64 = 1_704_069_000;
/// Start of the fixture window in milliseconds.
pub const T0_MS: i64 = T0 * 1000;
/// Regular series: one sample every 15 s for 6 h.
pub const STEP_S: i64 = 15;
/// Samples per regular series.
pub const REGULAR_SAMPLES: i64 = 1440;
/// End of the fixture window (exclusive), in milliseconds.
pub const END_MS: i64 = T0_MS + 6 * 3600 * 1000;

/// A generated OpenMetrics file and what it should store: for every series (labels with `__name__`) the samples
/// promtool must end up with, computed the way promtool parses the text (Go `ParseFloat`, timestamp × 1000).
#[derive(Debug, Clone)]
pub struct OpenMetrics {
    pub text: String,
    pub series: SeriesMap,
}

impl OpenMetrics {
    /// Number of sample lines.
    pub fn sample_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

/// Metric type of a [`Family`].
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Rendered as `<name>_total` samples under `# TYPE <name> counter`.
    Counter,
    Gauge,
}

/// One metric family of a generated OpenMetrics file: its series (labels without `__name__`) and their samples as
/// (timestamp text, value text), rendered by [`om_timestamp`] and [`om_value`].
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub series: Vec<(Labels, Vec<(String, String)>)>,
}

/// OpenMetrics text for a value: `NaN`, `+Inf`, `-Inf`, or Rust's shortest round-trip form (which Go parses to
/// the same bits).
pub fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v:?}")
    }
}

/// OpenMetrics timestamp text (seconds) for a millisecond timestamp. Whole seconds print as integers. Other values
/// print a quarter millisecond past the intended one (`1704069000.19125`): promtool computes `int64(seconds*1000)`,
/// and the extra 0.25 ms keeps float error from truncating to the millisecond before, while rounding would also
/// land on the intended millisecond.
pub fn om_timestamp(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}25", ms.div_euclid(1000), ms.rem_euclid(1000))
    }
}

/// What promtool stores for a timestamp text: Go's `int64(ParseFloat(s) * 1000)`.
fn promtool_ts(text: &str) -> Result<i64> {
    let secs: f64 = text
        .parse()
        .with_context(|| format!("timestamp {text:?}"))?;
    #[allow(clippy::cast_possible_truncation)]
    Ok((secs * 1000.0) as i64)
}

/// What promtool stores for a value text (Go `ParseFloat`, correctly rounded like Rust's parser).
pub fn parse_go_float(text: &str) -> Result<f64> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .with_context(|| format!("value {text:?}")),
    }
}

fn base(job: &str, instance: &str, replica: &str) -> Labels {
    labels(&[("job", job), ("instance", instance), ("replica", replica)])
}

/// The demo fixture (see `../shared/specs/prometheus-tsdb.md` §4.2), extended:
/// - `demo_http_requests_total` counters: host-1 replica A with resets at T0+90m and T0+250m; host-1 replica B
///   identical but for a 20-minute gap at [T0+180m, T0+200m); host-2 and host-3 (job batch) with fractional
///   increments.
/// - `demo_temperature_celsius` gauge.
/// - `demo_startup_seconds{phase="boot"}`: only the first 30 minutes, so only the first block has it.
/// - `demo_jitter`: 24 samples with irregular millisecond timestamps whose delta-of-deltas hit every XOR bucket
///   boundary, and NaN, ±Inf, −0.0, 1e308, 5e-324, 1e-300 values.
/// - `demo_irregular_total`: a counter with pseudo-random 1..30000 ms gaps over the whole window.
pub fn demo_openmetrics() -> Result<OpenMetrics> {
    let mut families = Vec::new();

    // Counters with resets, the replica pair, fractional increments.
    let mut req = Family {
        name: "demo_http_requests",
        kind: Kind::Counter,
        help: "Total HTTP requests.",
        series: Vec::new(),
    };
    let mut a = Vec::new();
    let mut v = 0.0f64;
    for i in 0..REGULAR_SAMPLES {
        if i == 0 {
            v = 0.0;
        } else if i == 360 || i == 1000 {
            v = (i % 7) as f64;
        } else {
            v += 150.0 + (i % 7) as f64;
        }
        a.push((om_timestamp((T0 + i * STEP_S) * 1000), om_value(v)));
    }
    let b: Vec<(String, String)> = a
        .iter()
        .enumerate()
        .filter(|(i, _)| !(720..800).contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    req.series.push((base("api", "host-1", "A"), a));
    req.series.push((base("api", "host-1", "B"), b));
    let mut h2 = Vec::new();
    let mut v = 0.0f64;
    for i in 0..REGULAR_SAMPLES {
        if i > 0 {
            v += 3.25 + (i % 4) as f64 * 0.125;
        }
        h2.push((om_timestamp((T0 + i * STEP_S) * 1000), om_value(v)));
    }
    req.series.push((base("api", "host-2", "A"), h2));
    let mut h3 = Vec::new();
    let mut v = 0.0f64;
    for i in 0..REGULAR_SAMPLES {
        if i > 0 {
            v += 1.2 + 0.05 * (i % 5) as f64;
        }
        h3.push((om_timestamp((T0 + i * STEP_S) * 1000), om_value(v)));
    }
    req.series.push((base("batch", "host-3", "A"), h3));
    families.push(req);

    // Gauge.
    let mut temp = Vec::new();
    for i in 0..REGULAR_SAMPLES {
        let x = 20.0 + 5.0 * (2.0 * std::f64::consts::PI * i as f64 / 240.0).sin();
        temp.push((om_timestamp((T0 + i * STEP_S) * 1000), format!("{x:.3}")));
    }
    families.push(Family {
        name: "demo_temperature_celsius",
        kind: Kind::Gauge,
        help: "Temperature.",
        series: vec![(base("sensor", "host-1", "A"), temp)],
    });

    // A series only in the first block, with a label name no other series has.
    let mut boot = Vec::new();
    for i in 0..120 {
        boot.push((
            om_timestamp((T0 + i * STEP_S) * 1000),
            om_value(i as f64 * 0.5),
        ));
    }
    let mut boot_labels = base("init", "host-1", "A");
    boot_labels.push(("phase".to_owned(), "boot".to_owned()));
    boot_labels.sort();
    families.push(Family {
        name: "demo_startup_seconds",
        kind: Kind::Gauge,
        help: "Startup progress.",
        series: vec![(boot_labels, boot)],
    });

    // Irregular millisecond timestamps hitting each delta-of-delta bucket edge; special float values.
    let dods: [i64; 22] = [
        0, 8192, -8191, 8193, -8192, 65536, -65535, 65537, -65536, 524_288, -524_287, 524_289,
        -524_288, 1, -1, 0, 1_000_000, -1_000_000, 7, -7, 0, 0,
    ];
    let specials = [
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        1e308,
        5e-324,
        1e-300,
        0.1,
        42.0,
        -3.25,
        0.0,
    ];
    let mut t = T0_MS + 191;
    let mut d = 100_013i64;
    let mut ts = vec![t];
    t += d;
    ts.push(t);
    for dod in dods {
        d += dod;
        ensure!(d > 0, "jitter fixture: non-positive delta");
        t += d;
        ts.push(t);
    }
    let jitter: Vec<(String, String)> = ts
        .iter()
        .enumerate()
        .map(|(i, t)| (om_timestamp(*t), om_value(specials[i % specials.len()])))
        .collect();
    families.push(Family {
        name: "demo_jitter",
        kind: Kind::Gauge,
        help: "Irregular timestamps and special values.",
        series: vec![(base("jitter", "host-9", "A"), jitter)],
    });

    // A counter with pseudo-random gaps of 1..30000 ms over the whole window.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut irregular = Vec::new();
    let mut t = T0_MS + 7;
    let mut v = 0.0f64;
    while t < END_MS - 1000 {
        irregular.push((om_timestamp(t), om_value(v)));
        #[allow(clippy::cast_possible_wrap)]
        let gap = 1 + (next() % 29_999) as i64;
        t += gap;
        v += (next() % 1000) as f64 / 8.0;
    }
    families.push(Family {
        name: "demo_irregular",
        kind: Kind::Counter,
        help: "Irregularly scraped counter.",
        series: vec![(base("jitter", "host-8", "A"), irregular)],
    });

    render(&families)
}

/// Renders families as an OpenMetrics file and computes what promtool will store for it.
pub fn render(families: &[Family]) -> Result<OpenMetrics> {
    let mut text = String::new();
    let mut series = SeriesMap::new();
    for f in families {
        let (kind, metric) = match f.kind {
            Kind::Counter => ("counter", format!("{}_total", f.name)),
            Kind::Gauge => ("gauge", f.name.to_owned()),
        };
        writeln!(text, "# HELP {} {}", f.name, f.help)?;
        writeln!(text, "# TYPE {} {kind}", f.name)?;
        for (l, samples) in &f.series {
            let lbl: Vec<String> = l.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            let lbl = lbl.join(",");
            let mut full = l.clone();
            full.push(("__name__".to_owned(), metric.clone()));
            full.sort();
            let out = series.entry(full).or_default();
            for (ts, val) in samples {
                writeln!(text, "{metric}{{{lbl}}} {val} {ts}")?;
                out.push(Sample::new(promtool_ts(ts)?, parse_go_float(val)?));
            }
        }
    }
    text.push_str("# EOF\n");
    for s in series.values() {
        ensure!(
            s.windows(2).all(|w| w[0].t < w[1].t),
            "fixture series timestamps must increase"
        );
    }
    Ok(OpenMetrics { text, series })
}

/// Which copy of the HA pair's data [`ha_openmetrics`] renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaReplica {
    /// Every scrape, for the whole window.
    A,
    /// The same scrapes (same timestamps, same values) but for a 20-minute outage at [T0+180m, T0+200m).
    B,
}

/// Sample indexes replica B misses: [T0+180m, T0+200m).
pub const HA_GAP: std::ops::Range<i64> = 720..800;

/// What one Prometheus of the HA pair of cluster "a" scraped over the fixture window (6 h, every 15 s): `up` of
/// three targets (host-2 down for 10 minutes), and `http_requests_total` of two API servers with a counter reset.
/// The series carry no replica label; the pair is told apart by the external labels of their blocks.
pub fn ha_openmetrics(replica: HaReplica) -> Result<OpenMetrics> {
    let keep = |i: i64| replica == HaReplica::A || !HA_GAP.contains(&i);
    let ts = |i: i64| om_timestamp((T0 + i * STEP_S) * 1000);
    let mut up = Family {
        name: "up",
        kind: Kind::Gauge,
        help: "Whether the target answered its last scrape.",
        series: Vec::new(),
    };
    for (job, instance) in [
        ("api", "host-1:8080"),
        ("api", "host-2:8080"),
        ("node", "host-1:9100"),
    ] {
        let samples = (0..REGULAR_SAMPLES)
            .filter(|i| keep(*i))
            .map(|i| {
                let down = instance == "host-2:8080" && (300..340).contains(&i);
                (ts(i), om_value(if down { 0.0 } else { 1.0 }))
            })
            .collect();
        up.series
            .push((labels(&[("job", job), ("instance", instance)]), samples));
    }
    let mut req = Family {
        name: "http_requests",
        kind: Kind::Counter,
        help: "Requests served.",
        series: Vec::new(),
    };
    for (n, instance) in ["host-1:8080", "host-2:8080"].into_iter().enumerate() {
        let mut v = 0.0f64;
        let mut samples = Vec::new();
        for i in 0..REGULAR_SAMPLES {
            if i == 500 + 100 * n as i64 {
                v = 3.0;
            } else if i > 0 {
                v += 10.0 + ((i * (n as i64 + 3)) % 11) as f64;
            }
            if keep(i) {
                samples.push((ts(i), om_value(v)));
            }
        }
        req.series
            .push((labels(&[("job", "api"), ("instance", instance)]), samples));
    }
    render(&[up, req])
}

/// What the single Prometheus of cluster "b" scraped over the same window: `up` of an API server and a database,
/// and a database gauge.
pub fn other_cluster_openmetrics() -> Result<OpenMetrics> {
    let ts = |i: i64| om_timestamp((T0 + i * STEP_S) * 1000);
    let up = Family {
        name: "up",
        kind: Kind::Gauge,
        help: "Whether the target answered its last scrape.",
        series: [("api", "b-host-1:8080"), ("db", "db-1:9187")]
            .into_iter()
            .map(|(job, instance)| {
                let s = (0..REGULAR_SAMPLES)
                    .map(|i| (ts(i), om_value(1.0)))
                    .collect();
                (labels(&[("job", job), ("instance", instance)]), s)
            })
            .collect(),
    };
    let conns = Family {
        name: "pg_connections",
        kind: Kind::Gauge,
        help: "Open database connections.",
        series: vec![(
            labels(&[("job", "db"), ("instance", "db-1:9187")]),
            (0..REGULAR_SAMPLES)
                .map(|i| (ts(i), om_value((40 + (i * 7) % 23) as f64)))
                .collect(),
        )],
    };
    render(&[up, conns])
}

/// `series` series `bulk_series{idx="000042", pad="000042-000042-…"}` (`pad` about `pad_len` bytes), one sample
/// each at T0: a fixture whose Series response is many megabytes of labels, so a stream over it can be cut in
/// the middle.
pub fn bulk_openmetrics(series: usize, pad_len: usize) -> Result<OpenMetrics> {
    let samples = (0..series)
        .map(|i| {
            let idx = format!("{i:06}");
            let pad = format!("{idx}-").repeat(pad_len / 7 + 1);
            (
                labels(&[("idx", &idx), ("pad", &pad)]),
                vec![(om_timestamp(T0_MS), om_value(i as f64))],
            )
        })
        .collect();
    render(&[Family {
        name: "bulk_series",
        kind: Kind::Gauge,
        help: "Padding.",
        series: samples,
    }])
}

/// A block directory written by promtool, with its meta.json.
#[derive(Debug, Clone)]
pub struct Block {
    pub ulid: String,
    pub dir: PathBuf,
    /// meta.json `minTime` (inclusive, ms).
    pub min_time: i64,
    /// meta.json `maxTime` (exclusive, ms).
    pub max_time: i64,
    pub meta: serde_json::Value,
}

impl Block {
    /// This block served with the given external labels.
    pub fn served(&self, external: &Labels) -> ServedBlock {
        ServedBlock {
            min_time: self.min_time,
            max_time: self.max_time,
            external: external.clone(),
        }
    }

    /// Whether a millisecond timestamp falls in this block's range.
    pub fn contains(&self, t: i64) -> bool {
        t >= self.min_time && t < self.max_time
    }
}

/// Every chunk payload (the bytes a StoreAPI `Chunk.data` carries) stored in a block's `chunks/` segment files,
/// read independently of Sluice: header `85 BD 40 DD 01 00 00 00`, then `uvarint len | encoding | data |
/// BE32 CRC-32C(encoding + data)` back to back. CRCs are checked; only XOR (encoding 1) chunks are returned.
pub fn segment_chunks(block_dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = fs::read_dir(block_dir.join("chunks"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let b = fs::read(&f)?;
        let ctx = |off: usize| format!("{} at offset {off}", f.display());
        ensure!(
            b.len() >= 8 && b[..5] == [0x85, 0xBD, 0x40, 0xDD, 0x01],
            "{}: bad segment header",
            f.display()
        );
        let mut off = 8;
        while off < b.len() {
            let (len, n) = uvarint(&b[off..]).with_context(|| ctx(off))?;
            let start = off + n;
            let len = usize::try_from(len)?;
            let end = start + 1 + len;
            ensure!(end + 4 <= b.len(), "{}: chunk runs past the end", ctx(off));
            let crc = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
            ensure!(
                crc32c::crc32c(&b[start..end]) == crc,
                "{}: chunk CRC mismatch",
                ctx(off)
            );
            if b[start] == 1 {
                out.push(b[start + 1..end].to_vec());
            }
            off = end + 4;
        }
    }
    Ok(out)
}

fn uvarint(b: &[u8]) -> Result<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    bail!("bad uvarint")
}

/// Reads every `<ULID>/meta.json` under `dir`, sorted by `minTime`.
pub fn read_blocks(dir: &Path) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let e = e?;
        let meta_path = e.path().join("meta.json");
        if !meta_path.is_file() {
            continue;
        }
        let meta: serde_json::Value = serde_json::from_slice(&fs::read(&meta_path)?)
            .with_context(|| format!("parse {}", meta_path.display()))?;
        let min_time = meta["minTime"].as_i64().context("meta.json minTime")?;
        let max_time = meta["maxTime"].as_i64().context("meta.json maxTime")?;
        let ulid = meta["ulid"].as_str().context("meta.json ulid")?.to_owned();
        blocks.push(Block {
            ulid,
            dir: e.path(),
            min_time,
            max_time,
            meta,
        });
    }
    blocks.sort_by_key(|b| b.min_time);
    Ok(blocks)
}

/// Writes `om` to `work/data.om` and runs `promtool tsdb create-blocks-from openmetrics` into `work/blocks`.
pub fn create_blocks(om: &OpenMetrics, work: &Path) -> Result<Vec<Block>> {
    let promtool = tools::promtool()?;
    fs::create_dir_all(work)?;
    let om_path = work.join("data.om");
    fs::write(&om_path, &om.text)?;
    let out_dir = work.join("blocks");
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir)?;
    }
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&out_dir)
        .output()
        .with_context(|| format!("run {}", promtool.display()))?;
    if !out.status.success() {
        bail!(
            "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let blocks = read_blocks(&out_dir)?;
    ensure!(
        !blocks.is_empty(),
        "promtool wrote no blocks into {}",
        out_dir.display()
    );
    Ok(blocks)
}

/// Runs `promtool tsdb dump` over copies of `blocks` (dump opens the directory as a database and writes into it;
/// an empty `wal/` lets it read the whole time range) and parses the output.
pub fn dump_blocks(blocks: &[Block], work: &Path) -> Result<SeriesMap> {
    let promtool = tools::promtool()?;
    let db = work.join("dump-db");
    if db.exists() {
        fs::remove_dir_all(&db)?;
    }
    fs::create_dir_all(db.join("wal"))?;
    for b in blocks {
        crate::bucket::copy_dir(&b.dir, &db.join(&b.ulid))?;
    }
    let out = Command::new(&promtool)
        .args(["tsdb", "dump"])
        .arg(&db)
        .output()
        .with_context(|| format!("run {}", promtool.display()))?;
    if !out.status.success() {
        bail!(
            "promtool tsdb dump failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).context("promtool dump output is not UTF-8")?;
    fs::write(work.join("dump.txt"), &text)?;
    parse_dump(&text)
}

/// Parses `promtool tsdb dump` output: one `{labels} value timestamp` line per sample, values in Go `%g`.
pub fn parse_dump(text: &str) -> Result<SeriesMap> {
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ctx = || format!("dump line {}: {line:?}", n + 1);
        let close = line.rfind("} ").with_context(ctx)?;
        let l = parse_label_set(&line[..=close]).with_context(ctx)?;
        let mut rest = line[close + 2..].split_whitespace();
        let v = parse_go_float(rest.next().with_context(ctx)?).with_context(ctx)?;
        let t: i64 = rest.next().with_context(ctx)?.parse().with_context(ctx)?;
        ensure!(rest.next().is_none(), "{}: trailing fields", ctx());
        out.entry(l).or_default().push(Sample::new(t, v));
    }
    for s in out.values_mut() {
        s.sort_by_key(|s| s.t);
    }
    Ok(out)
}

/// Parses a Prometheus `labels.String()` rendering: `{a="b", c="d"}` with Go-quoted values.
pub fn parse_label_set(s: &str) -> Result<Labels> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .with_context(|| format!("label set {s:?} is not in braces"))?;
    let mut out = Labels::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        ensure!(
            chars.next() == Some('"'),
            "label {name:?}: value is not quoted in {s:?}"
        );
        let mut value = String::new();
        loop {
            match chars.next() {
                None => bail!("unterminated value of {name:?} in {s:?}"),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c) => value.push(c),
                    None => bail!("dangling escape in {s:?}"),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

/// The demo fixture made real: generated text, promtool blocks, and promtool's dump of them.
#[derive(Debug)]
pub struct Fixture {
    pub work: PathBuf,
    pub openmetrics: OpenMetrics,
    pub blocks: Vec<Block>,
    pub dump: SeriesMap,
}

impl Fixture {
    /// Generates the demo fixture in `work` (created if missing).
    pub fn create(work: &Path) -> Result<Fixture> {
        Self::from_openmetrics(demo_openmetrics()?, work)
    }

    /// Turns a generated OpenMetrics file into promtool blocks in `work` and dumps them.
    pub fn from_openmetrics(openmetrics: OpenMetrics, work: &Path) -> Result<Fixture> {
        let blocks = create_blocks(&openmetrics, work)?;
        let dump = dump_blocks(&blocks, work)?;
        Ok(Fixture {
            work: work.to_owned(),
            openmetrics,
            blocks,
            dump,
        })
    }

    /// Minimum `minTime` over all blocks.
    pub fn min_time(&self) -> i64 {
        self.blocks.iter().map(|b| b.min_time).min().unwrap_or(0)
    }

    /// Maximum `maxTime` over all blocks.
    pub fn max_time(&self) -> i64 {
        self.blocks.iter().map(|b| b.max_time).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_survive_go_truncation() -> Result<()> {
        for ms in [
            T0_MS,
            T0_MS + 191,
            T0_MS + 999,
            T0_MS + 1,
            END_MS - 7,
            1_704_069_053_191,
        ] {
            assert_eq!(
                promtool_ts(&om_timestamp(ms))?,
                ms,
                "timestamp text {}",
                om_timestamp(ms)
            );
        }
        Ok(())
    }

    #[test]
    fn values_round_trip() -> Result<()> {
        for v in [
            0.0,
            -0.0,
            1e308,
            5e-324,
            1e-300,
            0.1,
            20.131,
            1.5e6,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(
                parse_go_float(&om_value(v))?.to_bits(),
                v.to_bits(),
                "value {v:?}"
            );
        }
        assert!(parse_go_float(&om_value(f64::NAN))?.is_nan());
        Ok(())
    }

    #[test]
    fn generator_is_deterministic_and_shaped_as_specified() -> Result<()> {
        let om = demo_openmetrics()?;
        assert_eq!(
            om.text,
            demo_openmetrics()?.text,
            "generator must be deterministic"
        );
        assert!(om.text.ends_with("# EOF\n"));
        let get = |pairs: &[(&str, &str)]| om.series.get(&labels(pairs)).map(Vec::len).unwrap_or(0);
        let req = |inst: &str, rep: &str, job: &str| {
            get(&[
                ("__name__", "demo_http_requests_total"),
                ("job", job),
                ("instance", inst),
                ("replica", rep),
            ])
        };
        assert_eq!(req("host-1", "A", "api"), 1440);
        assert_eq!(
            req("host-1", "B", "api"),
            1360,
            "20-minute gap = 80 samples"
        );
        assert_eq!(req("host-2", "A", "api"), 1440);
        assert_eq!(req("host-3", "A", "batch"), 1440);
        assert_eq!(om.series.len(), 8);
        let jitter = om
            .series
            .iter()
            .find(|(l, _)| l.iter().any(|(_, v)| v == "demo_jitter"))
            .map(|(_, s)| s.clone())
            .context("jitter series")?;
        assert_eq!(jitter.len(), 24);
        assert!(jitter.iter().any(|s| s.v.is_nan()));
        assert!(jitter.iter().any(|s| s.v.to_bits() == (-0.0f64).to_bits()));
        assert!(jitter.iter().any(|s| s.v.to_bits() == 5e-324f64.to_bits()));
        let deltas: Vec<i64> = jitter.windows(2).map(|w| w[1].t - w[0].t).collect();
        let dods: Vec<i64> = deltas.windows(2).map(|w| w[1] - w[0]).collect();
        for edge in [
            8192, 8193, -8191, -8192, 65536, 65537, -65535, -65536, 524_288, 524_289, -524_287,
            -524_288,
        ] {
            assert!(dods.contains(&edge), "delta-of-delta {edge} missing");
        }
        // A counter reset in replica A.
        let a = om
            .series
            .get(&labels(&[
                ("__name__", "demo_http_requests_total"),
                ("job", "api"),
                ("instance", "host-1"),
                ("replica", "A"),
            ]))
            .context("replica A")?;
        assert!(
            a.windows(2).any(|w| w[1].v < w[0].v),
            "counter reset present"
        );
        for s in om.series.values() {
            assert!(s.iter().all(|x| x.t >= T0_MS && x.t < END_MS));
        }
        Ok(())
    }

    #[test]
    fn dump_parser_reads_go_formats() -> Result<()> {
        let text = "{__name__=\"m\", instance=\"host-1\", job=\"a\\\"b\"} 20.131 1704069015000\n\
                    {__name__=\"m\", instance=\"host-1\", job=\"a\\\"b\"} NaN 1704069030000\n\
                    {__name__=\"m\", instance=\"host-1\", job=\"a\\\"b\"} -Inf 1704069045000\n\
                    {__name__=\"n\"} 1e+308 5\n\
                    {__name__=\"n\"} 5e-324 6\n\
                    {__name__=\"n\"} -0 7\n\
                    {__name__=\"n\"} +Inf 8\n\
                    {__name__=\"n\"} 1.5e+06 9\n";
        let got = parse_dump(text)?;
        let m = &got[&labels(&[("__name__", "m"), ("instance", "host-1"), ("job", "a\"b")])];
        assert_eq!(
            m,
            &vec![
                Sample::new(1_704_069_015_000, 20.131),
                Sample::new(1_704_069_030_000, f64::NAN),
                Sample::new(1_704_069_045_000, f64::NEG_INFINITY)
            ]
        );
        let n = &got[&labels(&[("__name__", "n")])];
        assert_eq!(
            n,
            &vec![
                Sample::new(5, 1e308),
                Sample::new(6, 5e-324),
                Sample::new(7, -0.0),
                Sample::new(8, f64::INFINITY),
                Sample::new(9, 1.5e6)
            ]
        );
        assert!(parse_dump("garbage line\n").is_err());
        Ok(())
    }

    /// The generated file goes through the real promtool, and `promtool tsdb dump` gives back exactly what was
    /// generated, bit for bit. Needs promtool (`apt-get install prometheus`).
    #[test]
    fn promtool_round_trip_is_bit_exact() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let fx = Fixture::create(dir.path())?;
        assert_eq!(
            fx.blocks.len(),
            4,
            "6 h from 00:30Z cut at 2 h boundaries gives 4 blocks"
        );
        let total: u64 = fx
            .blocks
            .iter()
            .map(|b| b.meta["stats"]["numSamples"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            total as usize,
            fx.openmetrics.sample_count(),
            "meta.json numSamples"
        );
        crate::model::diff_series(
            "promtool dump vs generated",
            &fx.dump,
            &fx.openmetrics.series,
        )?;
        Ok(())
    }
}
