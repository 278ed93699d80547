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

    fn series(&mut self) -> Result<Series, AbiError> {
        let n = self.count(16, "sample count")?;
        let ts = self.take(n * 8, "timestamps")?;
        let vs = self.take(n * 8, "values")?;
        Ok(Series {
            timestamps: ts
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            values: vs
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
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

fn put_series(buf: &mut Vec<u8>, ts: &[i64], vs: &[f64]) {
    put_u32(buf, ts.len() as u32);
    buf.reserve(ts.len() * 16);
    for t in ts {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    for v in vs {
        buf.extend_from_slice(&v.to_le_bytes());
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
}

/// Decodes a dedup input batch: groups of replicas.
pub fn decode_dedup_input(buf: &[u8]) -> Result<Vec<Vec<Series>>, AbiError> {
    let mut r = Reader::new(buf);
    let ngroups = r.count(4, "group")?;
    let mut out = Vec::with_capacity(ngroups);
    for _ in 0..ngroups {
        let nrep = r.count(4, "replica")?;
        let mut g = Vec::with_capacity(nrep);
        for _ in 0..nrep {
            g.push(r.series()?);
        }
        out.push(g);
    }
    r.done("dedup input")?;
    Ok(out)
}

/// Encodes dedup output: one series per group.
pub fn encode_dedup_output(series: &[Series]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + series.iter().map(|s| 4 + 16 * s.len()).sum::<usize>());
    put_u32(&mut buf, series.len() as u32);
    for s in series {
        let n = s.timestamps.len().min(s.values.len());
        put_series(&mut buf, &s.timestamps[..n], &s.values[..n]);
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
        let s = r.series()?;
        if s.timestamps.windows(2).any(|w| w[0] >= w[1]) {
            return err(format!(
                "dedup output series {i} has timestamps that do not strictly ascend"
            ));
        }
        out.push(s);
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
