//! The Prometheus TSDB `index` file, format v2: a reader over a whole index
//! held in memory or mmapped, and a writer that produces the same bytes as the
//! Prometheus 2.42 index writer for the same series and chunk metas.
//!
//! Layout (spec §1.4): header | symbol table | series (16-byte aligned) |
//! label indices | postings (all-postings first) | label offset table |
//! postings offset table | TOC. Every decoder here is bounds-checked and
//! CRC-checked; corrupt bytes give an [`Error`], never a panic.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use crate::error::{Error, Result};
use crate::varint::{Decbuf, put_uvarint, put_uvarint_str, put_varint};

/// Magic number at the start of every index file (big-endian).
pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
/// Legacy format written by Prometheus 1.x-era TSDB; not supported.
pub const INDEX_VERSION_1: u8 = 1;
/// The format every Prometheus 2.x/3.x writer produces.
pub const INDEX_VERSION_2: u8 = 2;
/// Accepted by readers since Prometheus 2.55/3.0 and parsed exactly like v2.
pub const INDEX_VERSION_3: u8 = 3;
/// Magic plus version byte.
pub const HEADER_LEN: usize = 5;
/// Six BE64 section offsets plus a CRC32.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Series entries start at multiples of this; series ID = offset / 16.
pub const SERIES_ALIGNMENT: u64 = 16;

fn crc32(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// The table of contents at the end of an index: absolute file offsets of each
/// section (0 = absent), in TOC order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_offset_table: u64,
    pub postings: u64,
    pub postings_offset_table: u64,
}

impl Toc {
    /// Parses and CRC-checks the TOC from the last [`TOC_LEN`] bytes of `file`.
    pub fn parse(file: &[u8]) -> Result<Toc> {
        Self::parse_inner(file, true)
    }

    fn parse_inner(file: &[u8], verify: bool) -> Result<Toc> {
        let Some(at) = file.len().checked_sub(TOC_LEN) else {
            return Err(Error::truncated("index TOC", 0, TOC_LEN, file.len()));
        };
        let b = &file[at..];
        let mut d = Decbuf::new(b, "index TOC");
        let toc = Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_offset_table: d.be64()?,
            postings: d.be64()?,
            postings_offset_table: d.be64()?,
        };
        let stored = d.be32()?;
        let computed = crc32(&b[..TOC_LEN - 4]);
        if verify && stored != computed {
            return Err(Error::Checksum {
                what: "index TOC",
                offset: at,
                stored,
                computed,
            });
        }
        Ok(toc)
    }

    /// The 52 bytes Prometheus writes at the end of the index.
    pub fn encode(&self) -> [u8; TOC_LEN] {
        let mut out = [0u8; TOC_LEN];
        let fields = [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_offset_table,
            self.postings,
            self.postings_offset_table,
        ];
        for (i, f) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&f.to_be_bytes());
        }
        let crc = crc32(&out[..TOC_LEN - 4]);
        out[TOC_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// One chunk of a series as recorded in the index. Times are the chunk's first
/// and last sample timestamps, both inclusive; `chunk_ref` is
/// `segment_index << 32 | offset_in_segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// A decoded series entry: label pairs as symbol references (name, value),
/// sorted by name, and the chunk metas in time order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    pub labels: Vec<(u32, u32)>,
    pub chunks: Vec<ChunkMeta>,
}

/// Reads a `len BE32 | body | CRC32(body)` section starting at `off` and returns
/// the body.
fn be32_section<'a>(buf: &'a [u8], off: u64, what: &'static str, verify: bool) -> Result<&'a [u8]> {
    let start = usize::try_from(off)
        .map_err(|_| Error::corrupt(what, format!("offset {off} out of range")))?;
    let rest = buf
        .get(start..)
        .ok_or_else(|| Error::truncated(what, start, 4, 0))?;
    let mut d = Decbuf::new(rest, what);
    let len = d.be32()? as usize;
    let body = d
        .bytes(len)
        .map_err(|_| Error::truncated(what, start + 4, len + 4, rest.len().saturating_sub(4)))?;
    let stored = d.be32().map_err(|_| {
        Error::truncated(what, start + 4 + len, 4, rest.len().saturating_sub(4 + len))
    })?;
    if verify {
        let computed = crc32(body);
        if stored != computed {
            return Err(Error::Checksum {
                what,
                offset: start,
                stored,
                computed,
            });
        }
    }
    Ok(body)
}

/// A string stored in the index buffer: byte range of its UTF-8 bytes
/// (validated when the reader was built).
#[derive(Debug, Clone, Copy)]
struct StrRef {
    start: usize,
    len: u32,
}

impl StrRef {
    fn end(self) -> usize {
        self.start + self.len as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct NameEntry {
    name: StrRef,
    /// Range into `IndexReader::values`.
    first: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy)]
struct ValueEntry {
    value: StrRef,
    postings_offset: u64,
}

/// Reader over a whole index file held in memory or mmapped (`B` = `Vec<u8>`,
/// `memmap2::Mmap`, `bytes::Bytes`, ...).
///
/// Construction parses and checks the TOC, the symbol table and the postings
/// offset table, keeping only offsets into the buffer (no per-entry string
/// allocation). Series entries and postings lists are decoded and CRC-checked
/// on demand.
pub struct IndexReader<B: AsRef<[u8]>> {
    buf: B,
    version: u8,
    toc: Toc,
    symbols: Vec<StrRef>,
    names: Vec<NameEntry>,
    values: Vec<ValueEntry>,
    verify: bool,
}

impl<B: AsRef<[u8]>> std::fmt::Debug for IndexReader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("len", &self.buf.as_ref().len())
            .field("version", &self.version)
            .field("toc", &self.toc)
            .field("symbols", &self.symbols.len())
            .field("postings_entries", &self.values.len())
            .finish()
    }
}

impl<B: AsRef<[u8]>> IndexReader<B> {
    /// Opens an index: checks magic and version (2, or 3 read as 2; 1 is
    /// rejected), the TOC, symbol table and postings offset table checksums,
    /// and builds the in-memory symbol and postings offset lookups.
    pub fn new(buf: B) -> Result<Self> {
        Self::open(buf, true)
    }

    fn open(buf: B, verify: bool) -> Result<Self> {
        let b = buf.as_ref();
        let mut d = Decbuf::new(b, "index header");
        let magic = d.be32()?;
        if magic != INDEX_MAGIC {
            return Err(Error::BadFormat {
                what: "index magic",
                detail: format!("got {magic:#010x}, want {INDEX_MAGIC:#010x}"),
            });
        }
        let version = d.u8()?;
        match version {
            INDEX_VERSION_2 | INDEX_VERSION_3 => {}
            INDEX_VERSION_1 => {
                return Err(Error::BadFormat {
                    what: "index version",
                    detail: "index format v1 (offset-based symbol references) is not supported; only v2 (and v3 read as v2)"
                        .into(),
                });
            }
            v => {
                return Err(Error::BadFormat {
                    what: "index version",
                    detail: format!("unknown index format version {v}"),
                });
            }
        }
        if b.len() < HEADER_LEN + TOC_LEN {
            return Err(Error::truncated("index", 0, HEADER_LEN + TOC_LEN, b.len()));
        }
        let toc = Toc::parse_inner(b, verify)?;
        let toc_at = (b.len() - TOC_LEN) as u64;
        for (what, off) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("label_indices", toc.label_indices),
            ("label_offset_table", toc.label_offset_table),
            ("postings", toc.postings),
            ("postings_offset_table", toc.postings_offset_table),
        ] {
            if off != 0 && (off < HEADER_LEN as u64 || off > toc_at) {
                return Err(Error::corrupt(
                    "index TOC",
                    format!("{what} offset {off} outside [{HEADER_LEN}, {toc_at}]"),
                ));
            }
        }
        let symbols = if toc.symbols == 0 {
            Vec::new()
        } else {
            parse_symbols(b, toc.symbols, verify)?
        };
        let (names, values) = if toc.postings_offset_table == 0 {
            (Vec::new(), Vec::new())
        } else {
            parse_postings_offset_table(b, toc.postings_offset_table, verify)?
        };
        Ok(IndexReader {
            buf,
            version,
            toc,
            symbols,
            names,
            values,
            verify,
        })
    }

    /// The whole index buffer.
    pub fn bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The format version byte of the file (2 or 3).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// Number of symbols in the symbol table.
    pub fn num_symbols(&self) -> usize {
        self.symbols.len()
    }

    fn str_at(&self, s: StrRef) -> Result<&str> {
        let b = self.buf.as_ref().get(s.start..s.end()).ok_or_else(|| {
            Error::corrupt("index", format!("string at {} out of range", s.start))
        })?;
        std::str::from_utf8(b)
            .map_err(|_| Error::corrupt("index", format!("invalid UTF-8 string at {}", s.start)))
    }

    fn bytes_at(&self, s: StrRef) -> &[u8] {
        self.buf.as_ref().get(s.start..s.end()).unwrap_or(&[])
    }

    /// The symbol with sequence number `r`.
    pub fn symbol(&self, r: u32) -> Result<&str> {
        let s = self.symbols.get(r as usize).copied().ok_or_else(|| {
            Error::corrupt(
                "symbol reference",
                format!("{r} out of range ({} symbols)", self.symbols.len()),
            )
        })?;
        self.str_at(s)
    }

    /// The reference of symbol `s`, if present (binary search; symbols are
    /// sorted).
    pub fn lookup_symbol(&self, s: &str) -> Option<u32> {
        self.symbols
            .binary_search_by(|e| self.bytes_at(*e).cmp(s.as_bytes()))
            .ok()
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Resolves a series entry's symbol references to strings.
    pub fn resolve_labels(&self, entry: &SeriesEntry) -> Result<Vec<(&str, &str)>> {
        entry
            .labels
            .iter()
            .map(|&(n, v)| Ok((self.symbol(n)?, self.symbol(v)?)))
            .collect()
    }

    fn find_name(&self, name: &str) -> Option<&NameEntry> {
        self.names
            .binary_search_by(|e| self.bytes_at(e.name).cmp(name.as_bytes()))
            .ok()
            .and_then(|i| self.names.get(i))
    }

    fn values_of(&self, name: &str) -> &[ValueEntry] {
        self.find_name(name)
            .and_then(|e| self.values.get(e.first..e.end))
            .unwrap_or(&[])
    }

    /// All label names, sorted, excluding the `""` all-postings key.
    pub fn label_names(&self) -> Vec<&str> {
        self.names
            .iter()
            .filter_map(|e| self.str_at(e.name).ok())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// All values of label `name`, sorted; empty if the name is absent.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        self.values_of(name)
            .iter()
            .filter_map(|v| self.str_at(v.value).ok())
            .collect()
    }

    /// Calls `f(value, postings_offset)` for every value of `name` in sorted
    /// order, stopping early when `f` returns `false`. Lets callers evaluate
    /// regex matchers over values and then load only the selected lists with
    /// [`postings_at`](Self::postings_at).
    pub fn for_each_value(&self, name: &str, mut f: impl FnMut(&str, u64) -> bool) -> Result<()> {
        for v in self.values_of(name) {
            if !f(self.str_at(v.value)?, v.postings_offset) {
                break;
            }
        }
        Ok(())
    }

    /// The file offset of the postings list for `name="value"`, if present.
    pub fn postings_offset(&self, name: &str, value: &str) -> Option<u64> {
        let vals = self.values_of(name);
        vals.binary_search_by(|e| self.bytes_at(e.value).cmp(value.as_bytes()))
            .ok()
            .and_then(|i| vals.get(i))
            .map(|v| v.postings_offset)
    }

    /// Series IDs of `name="value"`, ascending; empty if the pair is absent.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>> {
        match self.postings_offset(name, value) {
            Some(off) => self.postings_at(off),
            None => Ok(Vec::new()),
        }
    }

    /// Every series ID in the index (the `("", "")` list).
    pub fn all_postings(&self) -> Result<Vec<u32>> {
        self.postings("", "")
    }

    /// Decodes the postings list whose `len` field is at `offset`.
    pub fn postings_at(&self, offset: u64) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.postings_into(offset, &mut out)?;
        Ok(out)
    }

    /// Like [`postings_at`](Self::postings_at), reusing `out` (cleared first).
    pub fn postings_into(&self, offset: u64, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        let raw = self.postings_raw_at(offset)?;
        out.reserve(raw.len() / 4);
        let mut prev: Option<u32> = None;
        for c in raw.chunks_exact(4) {
            let id = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            if let Some(p) = prev
                && id <= p
            {
                return Err(Error::corrupt(
                    "postings",
                    format!("list at {offset} not strictly ascending ({p} then {id})"),
                ));
            }
            prev = Some(id);
            out.push(id);
        }
        Ok(())
    }

    /// The raw entries (n × BE32 series ID) of the postings list at `offset`,
    /// CRC-checked but not decoded.
    pub fn postings_raw_at(&self, offset: u64) -> Result<&[u8]> {
        let body = be32_section(self.buf.as_ref(), offset, "postings", self.verify)?;
        let mut d = Decbuf::new(body, "postings");
        let n = d.be32()? as usize;
        let rest = d.rest();
        if n.checked_mul(4) != Some(rest.len()) {
            return Err(Error::corrupt(
                "postings",
                format!("list at {offset} has {n} entries but {} bytes", rest.len()),
            ));
        }
        Ok(rest)
    }

    /// Decodes series `id` (file offset `id * 16`) into `out`, CRC-checked, with
    /// chunk metas delta-decoded to absolute values.
    pub fn series(&self, id: u32, out: &mut SeriesEntry) -> Result<()> {
        out.labels.clear();
        out.chunks.clear();
        let off = u64::from(id) * SERIES_ALIGNMENT;
        if self.toc.series != 0 && off < self.toc.series {
            return Err(Error::corrupt(
                "series reference",
                format!(
                    "{id} (offset {off}) before the series section at {}",
                    self.toc.series
                ),
            ));
        }
        let b = self.buf.as_ref();
        let end = b.len().saturating_sub(TOC_LEN);
        let start = usize::try_from(off)
            .ok()
            .filter(|&s| s < end)
            .ok_or_else(|| {
                Error::corrupt(
                    "series reference",
                    format!("{id} (offset {off}) beyond the index"),
                )
            })?;
        let mut d = Decbuf::new(&b[start..end], "series");
        let len = d.uvarint()?;
        let len = usize::try_from(len)
            .map_err(|_| Error::corrupt("series", format!("length {len} overflows")))?;
        let body = d.bytes(len)?;
        let stored = d.be32()?;
        if self.verify {
            let computed = crc32(body);
            if stored != computed {
                return Err(Error::Checksum {
                    what: "series",
                    offset: start,
                    stored,
                    computed,
                });
            }
        }
        decode_series_body(body, self.symbols.len(), out)
    }
}

/// Decodes a series entry body (the bytes covered by its CRC).
fn decode_series_body(body: &[u8], num_symbols: usize, out: &mut SeriesEntry) -> Result<()> {
    let mut d = Decbuf::new(body, "series");
    let nlabels = d.uvarint()?;
    // Each label takes at least 2 bytes: bounds the allocation for hostile input.
    let cap = usize::try_from(nlabels)
        .unwrap_or(usize::MAX)
        .min(d.remaining() / 2);
    out.labels.reserve(cap);
    for _ in 0..nlabels {
        let n = d.uvarint32()?;
        let v = d.uvarint32()?;
        if n as usize >= num_symbols || v as usize >= num_symbols {
            return Err(Error::corrupt(
                "series",
                format!("label symbol reference ({n}, {v}) out of range ({num_symbols} symbols)"),
            ));
        }
        out.labels.push((n, v));
    }
    let nchunks = d.uvarint()?;
    if nchunks == 0 {
        return Ok(());
    }
    // Each chunk meta takes at least 3 bytes.
    let cap = usize::try_from(nchunks)
        .unwrap_or(usize::MAX)
        .min(d.remaining() / 3 + 1);
    out.chunks.reserve(cap);
    let mut min_time = d.varint()?;
    let mut max_time = min_time.wrapping_add(d.uvarint()? as i64);
    let mut chunk_ref = d.uvarint()?;
    out.chunks.push(ChunkMeta {
        min_time,
        max_time,
        chunk_ref,
    });
    for _ in 1..nchunks {
        min_time = max_time.wrapping_add(d.uvarint()? as i64);
        max_time = min_time.wrapping_add(d.uvarint()? as i64);
        chunk_ref = (chunk_ref as i64).wrapping_add(d.varint()?) as u64;
        out.chunks.push(ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        });
    }
    Ok(())
}

fn parse_symbols(b: &[u8], off: u64, verify: bool) -> Result<Vec<StrRef>> {
    let body = be32_section(b, off, "symbol table", verify)?;
    // Absolute offset of body[0]: section start + 4-byte len.
    let base = off as usize + 4;
    let mut d = Decbuf::new(body, "symbol table");
    let n = d.be32()? as usize;
    // Every symbol takes at least one byte (its length).
    let mut out = Vec::with_capacity(n.min(d.remaining()));
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let at = d.position();
        let s = d.uvarint_str()?;
        let start = base + d.position() - s.len();
        if let Some(p) = prev
            && p >= s.as_bytes()
        {
            return Err(Error::corrupt(
                "symbol table",
                format!("symbol {i} at {} not in ascending order", base + at),
            ));
        }
        prev = Some(s.as_bytes());
        let len = u32::try_from(s.len())
            .map_err(|_| Error::corrupt("symbol table", "symbol longer than 4 GiB"))?;
        out.push(StrRef { start, len });
    }
    Ok(out)
}

type PostingsTable = (Vec<NameEntry>, Vec<ValueEntry>);

fn parse_postings_offset_table(b: &[u8], off: u64, verify: bool) -> Result<PostingsTable> {
    const WHAT: &str = "postings offset table";
    let body = be32_section(b, off, WHAT, verify)?;
    let base = off as usize + 4;
    let mut d = Decbuf::new(body, WHAT);
    let n = d.be32()? as usize;
    // Every entry takes at least 4 bytes (keycount, two lengths, offset).
    let mut values: Vec<ValueEntry> = Vec::with_capacity(n.min(d.remaining() / 4));
    let mut names: Vec<NameEntry> = Vec::new();
    let str_ref = |d: &Decbuf<'_>, s: &str| -> Result<StrRef> {
        let len =
            u32::try_from(s.len()).map_err(|_| Error::corrupt(WHAT, "string longer than 4 GiB"))?;
        Ok(StrRef {
            start: base + d.position() - s.len(),
            len,
        })
    };
    let mut prev_name: Option<&str> = None;
    let mut prev_value: &str = "";
    for i in 0..n {
        let keys = d.uvarint()?;
        if keys != 2 {
            return Err(Error::corrupt(
                WHAT,
                format!("entry {i} has {keys} keys, want 2"),
            ));
        }
        let name = d.uvarint_str()?;
        let name_ref = str_ref(&d, name)?;
        let value = d.uvarint_str()?;
        let value_ref = str_ref(&d, value)?;
        let postings_offset = d.uvarint()?;
        match prev_name.map(|p| p.cmp(name)) {
            Some(Ordering::Equal) => {
                if prev_value >= value {
                    return Err(Error::corrupt(
                        WHAT,
                        format!("entry {i}: values of {name:?} not in ascending order"),
                    ));
                }
                if let Some(last) = names.last_mut() {
                    last.end = values.len() + 1;
                }
            }
            Some(Ordering::Greater) => {
                return Err(Error::corrupt(
                    WHAT,
                    format!("entry {i}: label names not in ascending order"),
                ));
            }
            Some(Ordering::Less) | None => {
                names.push(NameEntry {
                    name: name_ref,
                    first: values.len(),
                    end: values.len() + 1,
                });
            }
        }
        prev_name = Some(name);
        prev_value = value;
        values.push(ValueEntry {
            value: value_ref,
            postings_offset,
        });
    }
    Ok((names, values))
}

/// Streaming index v2 writer producing the bytes Prometheus 2.42 writes.
///
/// Usage: [`new`](Self::new) with the complete sorted symbol set (include `""`
/// for byte-identical output: Prometheus always has it), then
/// [`add_series`](Self::add_series) in label-set order, then
/// [`finish`](Self::finish). Postings are accumulated in memory.
pub struct IndexWriter<W: Write> {
    out: W,
    pos: u64,
    symbols: Vec<String>,
    /// Reverse lookup string -> symbol reference.
    symbol_refs: HashMap<String, u32>,
    toc: Toc,
    last_series: Vec<(u32, u32)>,
    /// name ref -> value ref -> series IDs.
    postings: BTreeMap<u32, BTreeMap<u32, Vec<u32>>>,
    all: Vec<u32>,
    buf: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for IndexWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("pos", &self.pos)
            .field("symbols", &self.symbols.len())
            .field("series", &self.all.len())
            .finish()
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::Io {
        path: "index".into(),
        source: e,
    }
}

fn section_len(len: usize, what: &'static str) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::InvalidInput {
        what,
        detail: format!("section of {len} bytes exceeds 4 GiB"),
    })
}

impl<W: Write> IndexWriter<W> {
    /// Writes the header and symbol table. `symbols` must be strictly
    /// ascending (byte order) and contain every label name and value that
    /// will be added.
    pub fn new<S: AsRef<str>>(out: W, symbols: impl IntoIterator<Item = S>) -> Result<Self> {
        let symbols: Vec<String> = symbols.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if let Some(w) = symbols.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::InvalidInput {
                what: "index symbols",
                detail: format!("not strictly ascending: {:?} then {:?}", w[0], w[1]),
            });
        }
        let count = u32::try_from(symbols.len()).map_err(|_| Error::InvalidInput {
            what: "index symbols",
            detail: "more than 2^32 symbols".into(),
        })?;
        let symbol_refs = symbols.iter().cloned().zip(0u32..).collect();
        let mut w = IndexWriter {
            out,
            pos: 0,
            symbols,
            symbol_refs,
            toc: Toc::default(),
            last_series: Vec::new(),
            postings: BTreeMap::new(),
            all: Vec::new(),
            buf: Vec::new(),
        };
        let mut header = INDEX_MAGIC.to_be_bytes().to_vec();
        header.push(INDEX_VERSION_2);
        w.write(&header)?;

        w.toc.symbols = w.pos;
        let mut body = Vec::with_capacity(4 + w.symbols.iter().map(|s| s.len() + 2).sum::<usize>());
        body.extend_from_slice(&count.to_be_bytes());
        for s in &w.symbols {
            put_uvarint_str(&mut body, s);
        }
        w.write_be32_section(&body, "index symbol table")?;
        w.toc.series = w.pos;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(io_err)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - rem) as usize])?;
        }
        Ok(())
    }

    fn write_be32_section(&mut self, body: &[u8], what: &'static str) -> Result<()> {
        let len = section_len(body.len(), what)?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc32(body).to_be_bytes())
    }

    fn symbol_ref(&self, s: &str) -> Result<u32> {
        self.symbol_refs
            .get(s)
            .copied()
            .ok_or_else(|| Error::InvalidInput {
                what: "index series",
                detail: format!("label string {s:?} is not in the symbol table"),
            })
    }

    /// Appends a series; returns its series ID (offset / 16). Label names must
    /// be strictly ascending and label sets must be added in ascending order.
    pub fn add_series<N: AsRef<str>, V: AsRef<str>>(
        &mut self,
        labels: &[(N, V)],
        chunks: &[ChunkMeta],
    ) -> Result<u32> {
        if labels.is_empty() {
            return Err(Error::InvalidInput {
                what: "index series",
                detail: "empty label set".into(),
            });
        }
        let mut refs = Vec::with_capacity(labels.len());
        for (i, (n, v)) in labels.iter().enumerate() {
            if i > 0 && labels[i - 1].0.as_ref() >= n.as_ref() {
                return Err(Error::InvalidInput {
                    what: "index series",
                    detail: format!("label names not strictly ascending at {:?}", n.as_ref()),
                });
            }
            refs.push((self.symbol_ref(n.as_ref())?, self.symbol_ref(v.as_ref())?));
        }
        // Symbols are sorted, so comparing references compares the strings.
        if !self.all.is_empty() && refs <= self.last_series {
            return Err(Error::InvalidInput {
                what: "index series",
                detail: "series not added in ascending label-set order".into(),
            });
        }
        self.pad(SERIES_ALIGNMENT)?;
        let id = u32::try_from(self.pos / SERIES_ALIGNMENT).map_err(|_| Error::InvalidInput {
            what: "index series",
            detail: "series section exceeds 64 GiB (series IDs are 32 bits)".into(),
        })?;

        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        put_uvarint(&mut body, refs.len() as u64);
        for &(n, v) in &refs {
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
        }
        put_uvarint(&mut body, chunks.len() as u64);
        if let Some(first) = chunks.first() {
            put_varint(&mut body, first.min_time);
            put_uvarint(
                &mut body,
                first.max_time.wrapping_sub(first.min_time) as u64,
            );
            put_uvarint(&mut body, first.chunk_ref);
            let mut t0 = first.max_time;
            let mut ref0 = first.chunk_ref as i64;
            for c in &chunks[1..] {
                put_uvarint(&mut body, c.min_time.wrapping_sub(t0) as u64);
                put_uvarint(&mut body, c.max_time.wrapping_sub(c.min_time) as u64);
                t0 = c.max_time;
                put_varint(&mut body, (c.chunk_ref as i64).wrapping_sub(ref0));
                ref0 = c.chunk_ref as i64;
            }
        }
        let mut head = Vec::with_capacity(10);
        put_uvarint(&mut head, body.len() as u64);
        self.write(&head)?;
        self.write(&body)?;
        self.write(&crc32(&body).to_be_bytes())?;
        self.buf = body;

        for &(n, v) in &refs {
            self.postings
                .entry(n)
                .or_default()
                .entry(v)
                .or_default()
                .push(id);
        }
        self.all.push(id);
        self.last_series = refs;
        Ok(id)
    }

    /// Writes label indices, postings, both offset tables and the TOC; returns
    /// the underlying writer (flushed).
    pub fn finish(mut self) -> Result<W> {
        let postings = std::mem::take(&mut self.postings);
        let symbols = std::mem::take(&mut self.symbols);
        let sym = |r: u32| symbols.get(r as usize).map_or("", String::as_str);

        // Label indices (deprecated but still written by 2.42), 4-byte aligned.
        self.toc.label_indices = self.pos;
        let mut label_indices: Vec<(u32, u64)> = Vec::with_capacity(postings.len());
        for (&name, values) in &postings {
            self.pad(4)?;
            label_indices.push((name, self.pos));
            let mut body = Vec::with_capacity(8 + 4 * values.len());
            body.extend_from_slice(&1u32.to_be_bytes());
            body.extend_from_slice(&section_len(values.len(), "index label index")?.to_be_bytes());
            for &v in values.keys() {
                body.extend_from_slice(&v.to_be_bytes());
            }
            self.write_be32_section(&body, "index label index")?;
        }

        // Postings: all-postings first, then by name, then by value.
        // Prometheus records the TOC offset before aligning.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let all = std::mem::take(&mut self.all);
        let all_offset = self.pos;
        self.write_postings(&all)?;
        let mut offsets: Vec<(u32, u32, u64)> =
            Vec::with_capacity(postings.values().map(|v| v.len()).sum());
        for (&name, values) in &postings {
            for (&value, ids) in values {
                self.pad(4)?;
                offsets.push((name, value, self.pos));
                self.write_postings(ids)?;
            }
        }

        // Label offset table.
        self.toc.label_offset_table = self.pos;
        let mut body = Vec::new();
        body.extend_from_slice(
            &section_len(label_indices.len(), "index label offset table")?.to_be_bytes(),
        );
        for &(name, off) in &label_indices {
            put_uvarint(&mut body, 1);
            put_uvarint_str(&mut body, sym(name));
            put_uvarint(&mut body, off);
        }
        self.write_be32_section(&body, "index label offset table")?;

        // Postings offset table, ("", "") first.
        self.toc.postings_offset_table = self.pos;
        body.clear();
        body.extend_from_slice(
            &section_len(offsets.len() + 1, "index postings offset table")?.to_be_bytes(),
        );
        put_uvarint(&mut body, 2);
        put_uvarint_str(&mut body, "");
        put_uvarint_str(&mut body, "");
        put_uvarint(&mut body, all_offset);
        for &(name, value, off) in &offsets {
            put_uvarint(&mut body, 2);
            put_uvarint_str(&mut body, sym(name));
            put_uvarint_str(&mut body, sym(value));
            put_uvarint(&mut body, off);
        }
        self.write_be32_section(&body, "index postings offset table")?;

        let toc = self.toc.encode();
        self.write(&toc)?;
        self.out.flush().map_err(io_err)?;
        Ok(self.out)
    }

    fn write_postings(&mut self, ids: &[u32]) -> Result<()> {
        let mut body = Vec::with_capacity(4 + 4 * ids.len());
        body.extend_from_slice(&section_len(ids.len(), "index postings")?.to_be_bytes());
        for id in ids {
            body.extend_from_slice(&id.to_be_bytes());
        }
        self.write_be32_section(&body, "index postings")
    }
}

/// The symbol set Prometheus writes for these label sets: every name and
/// value plus `""`, sorted and de-duplicated.
pub fn collect_symbols<'a>(
    label_sets: impl IntoIterator<Item = &'a [(String, String)]>,
) -> Vec<&'a str> {
    // De-duplicate by hash first: label sets repeat most strings.
    let mut set: HashSet<&str> = HashSet::new();
    set.insert("");
    for ls in label_sets {
        for (n, v) in ls {
            set.insert(n.as_str());
            set.insert(v.as_str());
        }
    }
    let mut all: Vec<&str> = set.into_iter().collect();
    all.sort_unstable();
    all
}

/// A label set as owned (name, value) pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One series as given to [`write_index`]: labels and chunk metas.
pub type IndexSeries = (Labels, Vec<ChunkMeta>);

/// Writes a complete index v2 file for `series` given in ascending label-set
/// order (labels sorted by name). Byte-identical to what Prometheus 2.42 writes
/// for the same series and chunk metas.
pub fn write_index(series: &[IndexSeries]) -> Result<Vec<u8>> {
    let symbols = collect_symbols(series.iter().map(|(l, _)| l.as_slice()));
    let mut w = IndexWriter::new(Vec::new(), symbols)?;
    for (labels, chunks) in series {
        w.add_series(labels, chunks)?;
    }
    w.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn spec_example() -> Vec<u8> {
        let series = vec![(
            ls(&[("__name__", "demo_jitter"), ("job", "edge")]),
            vec![ChunkMeta {
                min_time: 1_704_069_000_000,
                max_time: 1_704_069_000_000 + 1_524_651,
                chunk_ref: 8,
            }],
        )];
        write_index(&series).unwrap()
    }

    #[test]
    fn reproduces_spec_bytes() {
        let b = spec_example();
        assert_eq!(b.len(), 293);
        assert_eq!(&b[..5], &hex("baaad700 02")[..]);
        // Symbol table at 5.
        let mut sym = hex("00000023 00000005 00 08");
        sym.extend_from_slice(b"__name__");
        sym.push(0x0b);
        sym.extend_from_slice(b"demo_jitter");
        sym.push(0x04);
        sym.extend_from_slice(b"edge");
        sym.push(0x03);
        sym.extend_from_slice(b"job");
        sym.extend_from_slice(&hex("f2def955"));
        assert_eq!(&b[5..48], &sym[..]);
        // Series entry at 48.
        assert_eq!(
            &b[48..69],
            &hex("10 02 01 02 04 03 01 80adeba69863 ab875d 08 742b4e64")[..]
        );
        // Postings: all-postings first at 112.
        assert_eq!(
            &b[112..128],
            &hex("00000008 00000001 00000003 a7692ed2")[..]
        );
        // Postings offset table at 189.
        let mut pot = hex("0000002c 00000003 02 00 00 70 02 08");
        pot.extend_from_slice(b"__name__");
        pot.push(0x0b);
        pot.extend_from_slice(b"demo_jitter");
        pot.extend_from_slice(&hex("8001 02 03"));
        pot.extend_from_slice(b"job");
        pot.push(0x04);
        pot.extend_from_slice(b"edge");
        pot.extend_from_slice(&hex("9001 e21410bf"));
        assert_eq!(&b[189..241], &pot[..]);
        let toc = Toc::parse(&b).unwrap();
        assert_eq!(
            toc,
            Toc {
                symbols: 5,
                series: 48,
                label_indices: 69,
                label_offset_table: 160,
                postings: 112,
                postings_offset_table: 189,
            }
        );
        assert_eq!(b.len() - TOC_LEN, 241);
    }

    #[test]
    fn reads_spec_example() {
        let r = IndexReader::new(spec_example()).unwrap();
        assert_eq!(r.label_names(), vec!["__name__", "job"]);
        assert_eq!(r.label_values("job"), vec!["edge"]);
        assert_eq!(r.all_postings().unwrap(), vec![3]);
        assert_eq!(r.postings("job", "edge").unwrap(), vec![3]);
        assert_eq!(r.postings_offset("__name__", "demo_jitter"), Some(128));
        let mut e = SeriesEntry::default();
        r.series(3, &mut e).unwrap();
        assert_eq!(
            r.resolve_labels(&e).unwrap(),
            vec![("__name__", "demo_jitter"), ("job", "edge")]
        );
        assert_eq!(
            e.chunks,
            vec![ChunkMeta {
                min_time: 1_704_069_000_000,
                max_time: 1_704_070_524_651,
                chunk_ref: 8
            }]
        );
    }

    fn sample_series() -> Vec<IndexSeries> {
        let mk = |i: u64, n: usize| -> Vec<ChunkMeta> {
            (0..n as u64)
                .map(|k| ChunkMeta {
                    min_time: -5_000 + (k as i64) * 10_000 + i as i64,
                    max_time: -5_000 + (k as i64) * 10_000 + 9_000,
                    chunk_ref: 8 + i * 1000 + k * 100,
                })
                .collect()
        };
        vec![
            (
                ls(&[("__name__", "a"), ("instance", "h1"), ("job", "api")]),
                mk(0, 3),
            ),
            (
                ls(&[("__name__", "a"), ("instance", "h2"), ("job", "api")]),
                mk(1, 1),
            ),
            (
                ls(&[("__name__", "a"), ("instance", "h2"), ("job", "batch")]),
                mk(2, 0),
            ),
            (ls(&[("__name__", "b"), ("job", "api")]), mk(3, 5)),
            (
                ls(&[("__name__", "b"), ("job", "api"), ("zone", "ü")]),
                mk(4, 2),
            ),
            (ls(&[("x", "")]), mk(5, 1)),
        ]
    }

    #[test]
    fn roundtrip_several_series() {
        let series = sample_series();
        let b = write_index(&series).unwrap();
        let r = IndexReader::new(&b[..]).unwrap();
        assert_eq!(
            r.label_names(),
            vec!["__name__", "instance", "job", "x", "zone"]
        );
        assert_eq!(r.label_values("job"), vec!["api", "batch"]);
        assert_eq!(r.label_values("x"), vec![""]);
        assert!(r.label_values("nope").is_empty());
        let all = r.all_postings().unwrap();
        assert_eq!(all.len(), series.len());
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let mut e = SeriesEntry::default();
        for (id, (labels, chunks)) in all.iter().zip(&series) {
            r.series(*id, &mut e).unwrap();
            let got: Vec<(String, String)> = r
                .resolve_labels(&e)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(&got, labels);
            assert_eq!(&e.chunks, chunks);
        }
        assert_eq!(
            r.postings("job", "api").unwrap(),
            vec![all[0], all[1], all[3], all[4]]
        );
        assert_eq!(r.postings("__name__", "a").unwrap(), all[..3].to_vec());
        assert_eq!(r.postings("zone", "ü").unwrap(), vec![all[4]]);
        assert_eq!(r.postings("x", "").unwrap(), vec![all[5]]);
        assert!(r.postings("job", "nope").unwrap().is_empty());
        let mut seen = Vec::new();
        r.for_each_value("instance", |v, off| {
            seen.push((v.to_string(), r.postings_at(off).unwrap()));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("h1".into(), vec![all[0]]),
                ("h2".into(), vec![all[1], all[2]])
            ]
        );
        let mut count = 0;
        r.for_each_value("job", |_, _| {
            count += 1;
            false
        })
        .unwrap();
        assert_eq!(count, 1);
        assert_eq!(
            r.lookup_symbol("batch").map(|s| r.symbol(s).unwrap()),
            Some("batch")
        );
        assert_eq!(r.lookup_symbol("zzz"), None);
        assert_eq!(r.symbol(0).unwrap(), "");
        assert!(r.symbol(10_000).is_err());
        // IDs outside the series section are errors, not panics.
        assert!(r.series(0, &mut e).is_err());
        assert!(r.series(u32::MAX, &mut e).is_err());
    }

    #[test]
    fn writer_rejects_bad_input() {
        let c = vec![];
        assert!(write_index(&[(ls(&[("b", "1"), ("a", "1")]), c.clone())]).is_err());
        assert!(
            write_index(&[
                (ls(&[("a", "2")]), c.clone()),
                (ls(&[("a", "1")]), c.clone())
            ])
            .is_err()
        );
        assert!(
            write_index(&[
                (ls(&[("a", "1")]), c.clone()),
                (ls(&[("a", "1")]), c.clone())
            ])
            .is_err()
        );
        assert!(write_index(&[(vec![], c.clone())]).is_err());
        assert!(IndexWriter::new(Vec::new(), ["b", "a"]).is_err());
        let mut w = IndexWriter::new(Vec::new(), ["", "a"]).unwrap();
        assert!(w.add_series(&[("a", "b")], &[]).is_err());
    }

    #[test]
    fn empty_index_roundtrips() {
        let b = write_index(&[]).unwrap();
        let r = IndexReader::new(b).unwrap();
        assert!(r.all_postings().unwrap().is_empty());
        assert!(r.label_names().is_empty());
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        let good = write_index(&sample_series()).unwrap();
        let r = IndexReader::new(&good[..]).unwrap();
        let toc = r.toc();
        let all = r.all_postings().unwrap();

        // A flipped byte in each CRC-covered region reports a checksum error.
        for at in [
            toc.symbols as usize + 10,
            toc.postings_offset_table as usize + 10,
            good.len() - 10,
        ] {
            let mut b = good.clone();
            b[at] ^= 0x01;
            assert!(
                matches!(IndexReader::new(&b[..]), Err(Error::Checksum { .. })),
                "flip at {at}"
            );
        }
        let mut b = good.clone();
        b[all[0] as usize * 16 + 3] ^= 0x01;
        let r = IndexReader::new(&b[..]).unwrap();
        let mut e = SeriesEntry::default();
        assert!(matches!(
            r.series(all[0], &mut e),
            Err(Error::Checksum { .. })
        ));
        let mut b = good.clone();
        b[toc.postings as usize + 9] ^= 0x01;
        let r = IndexReader::new(&b[..]).unwrap();
        assert!(matches!(r.all_postings(), Err(Error::Checksum { .. })));

        // Truncation, bad magic, version 1 and unknown versions.
        for n in [0, 3, 5, 40, good.len() / 2, good.len() - 1] {
            assert!(IndexReader::new(&good[..n]).is_err(), "truncated to {n}");
        }
        let mut b = good.clone();
        b[0] = 0;
        assert!(matches!(
            IndexReader::new(&b[..]),
            Err(Error::BadFormat { .. })
        ));
        let mut b = good.clone();
        b[4] = 1;
        let err = IndexReader::new(&b[..]).unwrap_err();
        assert!(err.to_string().contains("v1"), "{err}");
        b[4] = 9;
        assert!(matches!(
            IndexReader::new(&b[..]),
            Err(Error::BadFormat { .. })
        ));
        // Version 3 is read as version 2.
        b[4] = 3;
        let r = IndexReader::new(&b[..]).unwrap();
        assert_eq!(r.version(), 3);
        assert_eq!(r.all_postings().unwrap(), all);
    }

    /// Drives every reader entry point over possibly corrupt bytes.
    fn exercise(b: &[u8], verify: bool) {
        if let Ok(r) = IndexReader::open(b, verify) {
            let _ = r.toc();
            let names: Vec<String> = r.label_names().into_iter().map(str::to_string).collect();
            for n in names.iter().chain(std::iter::once(&String::new())) {
                let _ = r.for_each_value(n, |v, off| {
                    let _ = r.postings_at(off);
                    let _ = r.postings(n, v);
                    true
                });
            }
            let mut e = SeriesEntry::default();
            if let Ok(all) = r.all_postings() {
                for id in all.into_iter().take(64) {
                    if r.series(id, &mut e).is_ok() {
                        let _ = r.resolve_labels(&e);
                    }
                }
            }
            for id in 0..40 {
                let _ = r.series(id, &mut e);
            }
            for s in 0..40 {
                let _ = r.symbol(s);
            }
            let _ = r.postings_at(u64::MAX);
            let _ = r.lookup_symbol("job");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), v in 0u8..4) {
            if b.len() >= 5 {
                b[..4].copy_from_slice(&INDEX_MAGIC.to_be_bytes());
                b[4] = v;
            }
            exercise(&b, true);
            exercise(&b, false);
        }

        #[test]
        fn mutated_index_never_panics(
            muts in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            truncate: bool,
        ) {
            let mut b = write_index(&sample_series()).unwrap();
            for (i, x) in muts {
                let i = i.index(b.len());
                b[i] = x;
            }
            if truncate {
                b.truncate(cut.index(b.len()));
            }
            exercise(&b, true);
            // Without checksums the structural decoders see the mutated bytes.
            exercise(&b, false);
        }
    }
}
