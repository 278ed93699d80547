//! sluice-policy-abi owns the flat little-endian payloads of the
//! `sluice:policy` contract (sdk/ABI.md): the dedup and relabel batches. The
//! host encodes inputs and decodes outputs; the guest SDK does the reverse.
//! Decoding never panics on malformed bytes; it returns [`AbiError`].
//!
//! No dependencies, so it builds for every wasm target.

use std::collections::HashMap;
use std::fmt;

/// ABI version of this crate's layouts and of `sdk/wit/policy.wit`.
pub const ABI_MAJOR: u32 = 0;
/// Minor ABI version.
pub const ABI_MINOR: u32 = 1;
/// `"MAJOR.MINOR"`, as plugins report it in `plugin-info.abi`.
pub const ABI_VERSION: &str = "0.1";

/// Marks a dropped label set in relabel output.
pub const DROPPED: u32 = u32::MAX;

/// A malformed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiError(pub String);

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AbiError {}

fn err<T>(msg: impl Into<String>) -> Result<T, AbiError> {
    Err(AbiError(msg.into()))
}

/// Whether a plugin built for `abi` ("MAJOR.MINOR") can run on this host.
pub fn abi_compatible(abi: &str) -> Result<(), String> {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match parse(abi) {
        Some((major, minor)) if major == ABI_MAJOR && minor <= ABI_MINOR => Ok(()),
        Some(_) => Err(format!(
            "plugin ABI {abi} is not compatible with host ABI {ABI_VERSION}"
        )),
        None => Err(format!("plugin ABI {abi:?} is not of the form MAJOR.MINOR")),
    }
}

/// Samples of one series as columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(timestamps: Vec<i64>, values: Vec<f64>) -> Self {
        Series { timestamps, values }
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

/// Reads the flat layouts.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AbiError> {
        if self.buf.len() - self.pos < n {
            return err(format!(
                "truncated {what} at byte {}: need {n}, have {}",
                self.pos,
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, AbiError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count whose items take at least `min_item` bytes each; bounded by
    /// the bytes left so a corrupt count cannot drive a huge allocation.
    fn count(&mut self, min_item: usize, what: &str) -> Result<usize, AbiError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item) > self.buf.len() - self.pos {
            return err(format!(
                "{what} count {n} exceeds the {} bytes left",
                self.buf.len() - self.pos
            ));
        }
        Ok(n)
    }

    /// One series in place: a count, then the timestamp and value columns.
    fn series_ref(&mut self) -> Result<SeriesRef<'a>, AbiError> {
        let n = self.count(16, "sample count")?;
        let ts = self.take(n * 8, "timestamps")?;
        let vs = self.take(n * 8, "values")?;
        Ok(SeriesRef {
            ts: ts.as_chunks::<8>().0,
            vs: vs.as_chunks::<8>().0,
        })
    }

    fn string(&mut self) -> Result<&'a str, AbiError> {
        let n = self.count(1, "string length")?;
        let b = self.take(n, "string")?;
        std::str::from_utf8(b)
            .map_err(|_| AbiError(format!("invalid UTF-8 in symbol at byte {}", self.pos - n)))
    }

    fn done(&self, what: &str) -> Result<(), AbiError> {
        if self.pos != self.buf.len() {
            return err(format!(
                "{} trailing bytes after {what}",
                self.buf.len() - self.pos
            ));
        }
        Ok(())
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends `src` as little-endian 8-byte words: one `memcpy` on
/// little-endian targets (x86-64, aarch64, wasm32).
#[inline]
fn put_words<T: bytemuck::Pod>(buf: &mut Vec<u8>, src: &[T], word: impl Fn(T) -> [u8; 8]) {
    if cfg!(target_endian = "little") {
        buf.extend_from_slice(bytemuck::cast_slice(src));
    } else {
        buf.reserve(src.len() * 8);
        for &x in src {
            buf.extend_from_slice(&word(x));
        }
    }
}

fn put_series(buf: &mut Vec<u8>, ts: &[i64], vs: &[f64]) {
    let n = ts.len().min(vs.len());
    let (ts, vs) = (&ts[..n], &vs[..n]);
    buf.reserve(4 + n * 16);
    put_u32(buf, n as u32);
    put_words(buf, ts, i64::to_le_bytes);
    put_words(buf, vs, f64::to_le_bytes);
}

/// Decodes a column of little-endian words into a vector sized once; on
/// little-endian targets the loop is a plain copy.
#[inline]
fn words<T>(col: &[[u8; 8]], f: impl Fn([u8; 8]) -> T) -> Vec<T> {
    col.iter().map(|&w| f(w)).collect()
}

/// One series of a flat payload, borrowed: the timestamp and value columns
/// stay little-endian bytes in the buffer (the layout has no alignment) and
/// are read on access, which is one load each on little-endian targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesRef<'a> {
    ts: &'a [[u8; 8]],
    vs: &'a [[u8; 8]],
}

impl<'a> SeriesRef<'a> {
    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Timestamp of sample `i` (ms). Panics if `i >= len()`.
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        i64::from_le_bytes(self.ts[i])
    }

    /// Value of sample `i`, bit for bit. Panics if `i >= len()`.
    #[inline]
    pub fn value(&self, i: usize) -> f64 {
        f64::from_le_bytes(self.vs[i])
    }

    /// The timestamps, in order.
    pub fn timestamps(&self) -> impl ExactSizeIterator<Item = i64> + 'a {
        self.ts.iter().map(|&w| i64::from_le_bytes(w))
    }

    /// The values, in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + 'a {
        self.vs.iter().map(|&w| f64::from_le_bytes(w))
    }

    /// The raw little-endian timestamp column.
    #[inline]
    pub fn timestamp_words(&self) -> &'a [[u8; 8]] {
        self.ts
    }

    /// The raw little-endian value column (same length as the timestamps).
    #[inline]
    pub fn value_words(&self) -> &'a [[u8; 8]] {
        self.vs
    }

    /// An owned copy.
    pub fn to_series(&self) -> Series {
        Series {
            timestamps: words(self.ts, i64::from_le_bytes),
            values: words(self.vs, f64::from_le_bytes),
        }
    }
}

/// Builds a dedup input batch group by group.
#[derive(Debug)]
pub struct DedupInputWriter {
    buf: Vec<u8>,
    groups: u32,
    group_header: Option<usize>,
}

impl Default for DedupInputWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl DedupInputWriter {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A writer whose buffer holds `bytes` before it must grow.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(4));
        buf.extend_from_slice(&[0; 4]);
        DedupInputWriter {
            buf,
            groups: 0,
            group_header: None,
        }
    }

    /// Starts the next group.
    pub fn begin_group(&mut self) {
        self.groups += 1;
        self.group_header = Some(self.buf.len());
        put_u32(&mut self.buf, 0);
    }

    /// Adds a replica to the current group. `ts` and `vs` must have equal length.
    pub fn add_replica(&mut self, ts: &[i64], vs: &[f64]) {
        debug_assert_eq!(ts.len(), vs.len());
        let n = ts.len().min(vs.len());
        if self.group_header.is_none() {
            self.begin_group();
        }
        if let Some(h) = self.group_header {
            let c = u32::from_le_bytes([
                self.buf[h],
                self.buf[h + 1],
                self.buf[h + 2],
                self.buf[h + 3],
            ]) + 1;
            self.buf[h..h + 4].copy_from_slice(&c.to_le_bytes());
        }
        put_series(&mut self.buf, &ts[..n], &vs[..n]);
    }

    /// Number of groups begun.
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// The finished buffer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[0..4].copy_from_slice(&self.groups.to_le_bytes());
        self.buf
    }

    /// The batch written so far, finished in place: the writer can go on
    /// adding groups, or be [`clear`](Self::clear)ed and reused.
    pub fn bytes(&mut self) -> &[u8] {
        self.buf[0..4].copy_from_slice(&self.groups.to_le_bytes());
        &self.buf
    }

    /// Empties the writer, keeping its buffer for the next batch.
    pub fn clear(&mut self) {
        self.buf.truncate(4);
        self.groups = 0;
        self.group_header = None;
    }
}

/// A dedup input batch read in place: the groups' series are [`SeriesRef`]s
/// into the buffer. Building it checks the whole layout once (counts and
/// lengths, not samples), so nothing is copied.
#[derive(Debug, Clone, Default)]
pub struct DedupInput<'a> {
    series: Vec<SeriesRef<'a>>,
    /// End (exclusive) in `series` of each group.
    ends: Vec<usize>,
}

impl<'a> DedupInput<'a> {
    /// Reads a dedup input batch (sdk/ABI.md) without copying it.
    pub fn parse(buf: &'a [u8]) -> Result<Self, AbiError> {
        let mut r = Reader::new(buf);
        let ngroups = r.count(4, "group")?;
        let mut series = Vec::new();
        let mut ends = Vec::with_capacity(ngroups);
        for _ in 0..ngroups {
            let nrep = r.count(4, "replica")?;
            series.reserve(nrep);
            for _ in 0..nrep {
                series.push(r.series_ref()?);
            }
            ends.push(series.len());
        }
        r.done("dedup input")?;
        Ok(DedupInput { series, ends })
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Number of series (replicas) over all groups.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The replicas of group `i`, in the host's order. Panics if `i >= len()`.
    pub fn group(&self, i: usize) -> &[SeriesRef<'a>] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.series[start..self.ends[i]]
    }

    /// The groups, in order.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = &[SeriesRef<'a>]> + '_ {
        (0..self.len()).map(|i| self.group(i))
    }

    /// Owned copies of every group.
    pub fn to_owned_groups(&self) -> Vec<Vec<Series>> {
        self.groups()
            .map(|g| g.iter().map(SeriesRef::to_series).collect())
            .collect()
    }
}

/// Decodes a dedup input batch: groups of replicas.
pub fn decode_dedup_input(buf: &[u8]) -> Result<Vec<Vec<Series>>, AbiError> {
    Ok(DedupInput::parse(buf)?.to_owned_groups())
}

/// Writes dedup output (sdk/ABI.md) sample by sample, straight into the
/// output buffer. `push` only appends: the order of timestamps is checked
/// by the host when it reads the output (and on demand by
/// [`unordered`](Self::unordered)), not once per sample in the plugin.
#[derive(Debug)]
pub struct DedupOutputWriter {
    buf: Vec<u8>,
    series: u32,
    /// Header offset of the open series.
    open: Option<usize>,
    /// Samples in the open series.
    n: usize,
    /// Values of the open series; appended after its timestamps on close.
    values: Vec<f64>,
}

/// Where a dedup output's timestamps stop strictly ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unordered {
    /// Output series (= group) index.
    pub series: usize,
    /// Index of the offending sample within the series.
    pub index: usize,
    /// Timestamp before it.
    pub prev: i64,
    /// Its timestamp.
    pub t: i64,
}

/// The first place in `ts` (little-endian words) where timestamps do not
/// strictly ascend: (index, previous, timestamp).
fn first_unordered(ts: &[[u8; 8]]) -> Option<(usize, i64, i64)> {
    ts.windows(2).enumerate().find_map(|(i, w)| {
        let (a, b) = (i64::from_le_bytes(w[0]), i64::from_le_bytes(w[1]));
        (b <= a).then_some((i + 1, a, b))
    })
}

impl Default for DedupOutputWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl DedupOutputWriter {
    /// A writer whose buffer holds `bytes` before it must grow.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(4));
        buf.extend_from_slice(&[0; 4]);
        DedupOutputWriter {
            buf,
            series: 0,
            open: None,
            n: 0,
            values: Vec::new(),
        }
    }

    /// Starts the next output series (closing the open one).
    pub fn begin_series(&mut self) {
        self.end_series();
        self.open = Some(self.buf.len());
        self.series += 1;
        put_u32(&mut self.buf, 0);
    }

    /// Reserves room for `n` more samples of the open series.
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n * 16);
        self.values.reserve(n);
    }

    /// Appends one sample to the open series (starting one if none is open).
    /// Timestamps must strictly ascend within a series.
    #[inline]
    pub fn push(&mut self, t: i64, v: f64) {
        if self.open.is_none() {
            self.begin_series();
        }
        self.n += 1;
        self.buf.extend_from_slice(&t.to_le_bytes());
        self.values.push(v);
    }

    /// Appends a whole series; `ts` and `vs` must have equal length (extra
    /// items of the longer one are ignored).
    pub fn push_series(&mut self, ts: &[i64], vs: &[f64]) {
        self.begin_series();
        let n = ts.len().min(vs.len());
        self.n = n;
        put_words(&mut self.buf, &ts[..n], i64::to_le_bytes);
        self.values.extend_from_slice(&vs[..n]);
        self.end_series();
    }

    /// Closes the open series, if any.
    pub fn end_series(&mut self) {
        if let Some(h) = self.open.take() {
            self.buf[h..h + 4].copy_from_slice(&(self.n as u32).to_le_bytes());
            put_words(&mut self.buf, &self.values, f64::to_le_bytes);
            self.values.clear();
            self.n = 0;
        }
    }

    /// Number of series begun.
    pub fn series(&self) -> usize {
        self.series as usize
    }

    /// The first place where timestamps do not strictly ascend, if any
    /// (a scan of everything written so far).
    pub fn unordered(&self) -> Option<Unordered> {
        let (mut pos, mut series) = (4, 0);
        while pos + 4 <= self.buf.len() {
            let open = self.open == Some(pos);
            let n = if open {
                self.n
            } else {
                u32::from_le_bytes([
                    self.buf[pos],
                    self.buf[pos + 1],
                    self.buf[pos + 2],
                    self.buf[pos + 3],
                ]) as usize
            };
            let ts = &self.buf[pos + 4..pos + 4 + n * 8];
            if let Some((index, prev, t)) = first_unordered(ts.as_chunks::<8>().0) {
                return Some(Unordered {
                    series,
                    index,
                    prev,
                    t,
                });
            }
            pos += 4 + n * if open { 8 } else { 16 };
            series += 1;
        }
        None
    }

    /// The finished buffer.
    pub fn finish(mut self) -> Vec<u8> {
        self.end_series();
        self.buf[0..4].copy_from_slice(&self.series.to_le_bytes());
        self.buf
    }
}

/// Encodes dedup output: one series per group.
pub fn encode_dedup_output(series: &[Series]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + series.iter().map(|s| 4 + 16 * s.len()).sum::<usize>());
    put_u32(&mut buf, series.len() as u32);
    for s in series {
        put_series(&mut buf, &s.timestamps, &s.values);
    }
    buf
}

/// Decodes and validates dedup output: `groups` series with ascending timestamps.
pub fn decode_dedup_output(buf: &[u8], groups: usize) -> Result<Vec<Series>, AbiError> {
    let mut r = Reader::new(buf);
    let n = r.count(4, "series")?;
    if n != groups {
        return err(format!("dedup output has {n} series for {groups} groups"));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = r.series_ref()?;
        let timestamps = words(s.ts, i64::from_le_bytes);
        if timestamps.windows(2).any(|w| w[0] >= w[1])
            && let Some((index, prev, t)) = first_unordered(s.ts)
        {
            return err(format!(
                "dedup output series {i}: timestamps do not strictly ascend at index {index} ({prev} then {t})"
            ));
        }
        out.push(Series {
            timestamps,
            values: words(s.vs, f64::from_le_bytes),
        });
    }
    r.done("dedup output")?;
    Ok(out)
}

/// A label set as (name, value) pairs.
pub type LabelPairs = Vec<(String, String)>;

/// Interns strings into a symbol table.
#[derive(Default)]
struct Symbols<'a> {
    index: HashMap<&'a str, u32>,
    list: Vec<&'a str>,
}

impl<'a> Symbols<'a> {
    fn intern(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s);
        self.index.insert(s, i);
        i
    }

    fn write(&self, buf: &mut Vec<u8>) {
        put_u32(buf, self.list.len() as u32);
        for s in &self.list {
            put_u32(buf, s.len() as u32);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

fn encode_sets<'a, I, L>(sets: I, nsets: usize) -> Vec<u8>
where
    I: IntoIterator<Item = Option<L>> + Clone,
    L: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut syms = Symbols::default();
    let mut body = Vec::new();
    put_u32(&mut body, nsets as u32);
    for set in sets {
        match set {
            None => put_u32(&mut body, DROPPED),
            Some(labels) => {
                let at = body.len();
                put_u32(&mut body, 0);
                let mut n = 0u32;
                for (name, value) in labels {
                    let (a, b) = (syms.intern(name), syms.intern(value));
                    put_u32(&mut body, a);
                    put_u32(&mut body, b);
                    n += 1;
                }
                body[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
        }
    }
    let mut buf = Vec::with_capacity(body.len() + 64);
    syms.write(&mut buf);
    buf.extend_from_slice(&body);
    buf
}

/// Encodes a relabel input batch.
pub fn encode_relabel_input(sets: &[LabelPairs]) -> Vec<u8> {
    encode_sets(
        sets.iter()
            .map(|s| Some(s.iter().map(|(a, b)| (a.as_str(), b.as_str())))),
        sets.len(),
    )
}

/// Encodes relabel output: for each input set, the new labels or `None` if dropped.
pub fn encode_relabel_output(sets: &[Option<LabelPairs>]) -> Vec<u8> {
    encode_sets(
        sets.iter().map(|s| {
            s.as_ref()
                .map(|l| l.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        }),
        sets.len(),
    )
}

fn decode_sets(
    buf: &[u8],
    allow_dropped: bool,
    what: &str,
) -> Result<Vec<Option<LabelPairs>>, AbiError> {
    let mut r = Reader::new(buf);
    let nsym = r.count(4, "symbol")?;
    let mut syms = Vec::with_capacity(nsym);
    for _ in 0..nsym {
        syms.push(r.string()?);
    }
    let nsets = r.count(4, "label set")?;
    let mut out = Vec::with_capacity(nsets);
    for i in 0..nsets {
        let n = r.u32("label count")?;
        if n == DROPPED {
            if !allow_dropped {
                return err(format!("{what}: set {i} is marked dropped"));
            }
            out.push(None);
            continue;
        }
        let n = n as usize;
        if n.saturating_mul(8) > buf.len() - r.pos {
            return err(format!("{what}: label count {n} exceeds the bytes left"));
        }
        let mut set = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b) = (r.u32("name ref")? as usize, r.u32("value ref")? as usize);
            let (Some(name), Some(value)) = (syms.get(a), syms.get(b)) else {
                return err(format!(
                    "{what}: set {i} references symbol {} of {nsym}",
                    a.max(b)
                ));
            };
            set.push((name.to_string(), value.to_string()));
        }
        out.push(Some(set));
    }
    r.done(what)?;
    Ok(out)
}

/// Decodes a relabel input batch.
pub fn decode_relabel_input(buf: &[u8]) -> Result<Vec<LabelPairs>, AbiError> {
    Ok(decode_sets(buf, false, "relabel input")?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Decodes and validates relabel output: `nsets` entries, label names sorted and unique.
pub fn decode_relabel_output(
    buf: &[u8],
    nsets: usize,
) -> Result<Vec<Option<LabelPairs>>, AbiError> {
    let out = decode_sets(buf, true, "relabel output")?;
    if out.len() != nsets {
        return err(format!(
            "relabel output has {} label sets for {nsets} inputs",
            out.len()
        ));
    }
    for (i, s) in out.iter().enumerate() {
        if let Some(s) = s
            && s.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return err(format!(
                "relabel output set {i} has unsorted or duplicate label names"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dedup_roundtrip_keeps_nan_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut w = DedupInputWriter::new();
        w.begin_group();
        w.add_replica(&[1, 2], &[1.0, stale]);
        w.add_replica(&[3], &[f64::INFINITY]);
        w.begin_group();
        let buf = w.finish();
        let g = decode_dedup_input(&buf).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].len(), 2);
        assert!(g[1].is_empty());
        assert_eq!(g[0][0].values[1].to_bits(), stale.to_bits());
        let out = encode_dedup_output(&[g[0][0].clone(), Series::default()]);
        assert_eq!(
            decode_dedup_output(&out, 2).unwrap()[0].timestamps,
            vec![1, 2]
        );
        assert!(decode_dedup_output(&out, 3).is_err());
        let bad = encode_dedup_output(&[Series::new(vec![2, 1], vec![0.0, 0.0])]);
        assert!(
            decode_dedup_output(&bad, 1)
                .unwrap_err()
                .0
                .contains("ascend")
        );
    }

    #[test]
    fn views_and_output_writer_match_the_owned_codec() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut w = DedupInputWriter::new();
        w.begin_group();
        w.add_replica(&[1, 2], &[-0.0, stale]);
        w.add_replica(&[3], &[4.5]);
        w.begin_group();
        w.begin_group();
        w.add_replica(&[], &[]);
        let buf = w.finish();
        let view = DedupInput::parse(&buf).unwrap();
        assert_eq!((view.len(), view.series_count()), (3, 3));
        assert_eq!(
            format!("{:?}", view.to_owned_groups()),
            format!("{:?}", decode_dedup_input(&buf).unwrap())
        );
        let r = view.group(0)[0];
        assert_eq!((r.len(), r.timestamp(1)), (2, 2));
        assert_eq!(r.value(1).to_bits(), stale.to_bits());
        assert!(view.group(1).is_empty() && view.group(2)[0].is_empty());
        assert!(DedupInput::parse(&buf[..buf.len() - 1]).is_err());

        let series = [
            Series::new(vec![1, 2], vec![-0.0, stale]),
            Series::default(),
            Series::new(vec![7], vec![1.0]),
        ];
        let mut out = DedupOutputWriter::with_capacity(0);
        for s in &series {
            out.begin_series();
            for (&t, &v) in s.timestamps.iter().zip(&s.values) {
                out.push(t, v);
            }
        }
        assert_eq!((out.series(), out.unordered()), (3, None));
        let bytes = out.finish();
        assert_eq!(bytes, encode_dedup_output(&series));

        let mut out = DedupOutputWriter::default();
        out.push_series(&[1, 2], &[0.0, 0.0]);
        out.push_series(&[5, 5], &[0.0, 0.0]);
        assert_eq!(
            out.unordered(),
            Some(Unordered {
                series: 1,
                index: 1,
                prev: 5,
                t: 5
            })
        );
    }

    #[test]
    fn layout_is_as_documented() {
        let mut w = DedupInputWriter::new();
        w.add_replica(&[7], &[1.5]);
        let buf = w.finish();
        let mut want = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0];
        want.extend_from_slice(&7i64.to_le_bytes());
        want.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(buf, want);
    }

    #[test]
    fn relabel_roundtrip_and_validation() {
        let sets: Vec<LabelPairs> = vec![
            vec![("a".into(), "x".into()), ("job".into(), "x".into())],
            vec![],
        ];
        let buf = encode_relabel_input(&sets);
        assert_eq!(decode_relabel_input(&buf).unwrap(), sets);
        let out = encode_relabel_output(&[Some(sets[0].clone()), None]);
        assert_eq!(
            decode_relabel_output(&out, 2).unwrap(),
            vec![Some(sets[0].clone()), None]
        );
        let unsorted = encode_relabel_output(&[Some(vec![
            ("b".into(), "1".into()),
            ("a".into(), "2".into()),
        ])]);
        assert!(decode_relabel_output(&unsorted, 1).is_err());
        assert!(
            decode_relabel_input(&out).is_err(),
            "dropped marker is not valid input"
        );
    }

    #[test]
    fn abi_compatibility() {
        assert!(abi_compatible("0.1").is_ok());
        assert!(abi_compatible("0.0").is_ok());
        assert!(abi_compatible("0.2").is_err());
        assert!(abi_compatible("1.0").is_err());
        assert!(abi_compatible("x").is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes: Vec<u8>) {
            let _ = decode_dedup_input(&bytes);
            let _ = decode_dedup_output(&bytes, 1);
            let _ = decode_relabel_input(&bytes);
            let _ = decode_relabel_output(&bytes, 1);
        }
    }
}
