//! `Series` response frames kept encoded.
//!
//! The fan-out reads each endpoint's `SeriesResponse` messages as bytes and
//! indexes them in one pass ([`RawFrame::parse`]): where each series, label
//! name, label value and chunk lies in the buffer. The merge then compares
//! label bytes in place, and a series is only turned into owned protobuf
//! types ([`SeriesView::to_series`]) by a consumer that needs them. Decoding
//! every series into a `Series` with a `String` per label costs several
//! allocations a series, which capped the merge at about 1 M series/s.
//!
//! Parsing checks everything a later decode relies on (wire types, lengths,
//! UTF-8 of label names and values, the layout of every chunk), so malformed
//! bytes from an endpoint are reported as that endpoint's error up front.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use prost::Message;
use sluice_proto::thanos::{AggrChunk, Label, Series};

/// Byte range `[start, end)` in a frame's buffer.
type Span = [u32; 2];

/// One series of a frame: where its message, labels and chunks are.
#[derive(Debug, Clone, Copy)]
struct SeriesIdx {
    /// The `Series` message.
    msg: Span,
    /// Index range into [`RawFrame::labels`].
    labels: [u32; 2],
    /// Index range into [`RawFrame::chunks`].
    chunks: [u32; 2],
}

/// One response frame: its bytes and an index of its series.
#[derive(Debug, Default)]
pub struct RawFrame {
    buf: Bytes,
    series: Vec<SeriesIdx>,
    /// (name, value) of every label of every series, in order.
    labels: Vec<[Span; 2]>,
    /// Every `AggrChunk` message of every series, in order.
    chunks: Vec<Span>,
}

/// What one `SeriesResponse` held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The series (of a `series` or a `batch` frame), possibly none.
    pub frame: RawFrame,
    /// A `warning` frame's text.
    pub warning: Option<String>,
}

/// Protobuf wire types.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

/// A reader over one message of the buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], span: Span) -> Self {
        Reader {
            buf,
            pos: span[0] as usize,
            end: span[1] as usize,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.end
    }

    /// A varint; most (tags, lengths, small numbers) are one byte.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, String> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            if self.pos >= self.end {
                return Err("truncated varint".into());
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// Skips a varint without decoding it.
    #[inline(always)]
    fn skip_varint(&mut self) -> Result<(), String> {
        let rest = &self.buf[self.pos.min(self.end)..self.end];
        match rest.iter().take(10).position(|&b| b < 0x80) {
            Some(i) => {
                self.pos += i + 1;
                Ok(())
            }
            None if rest.len() < 10 => Err("truncated varint".into()),
            None => Err("varint longer than 10 bytes".into()),
        }
    }

    /// The next field: (number, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u64, u64), String> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    /// The span of a length-delimited field's payload.
    #[inline]
    fn len(&mut self) -> Result<Span, String> {
        let n = self.varint()?;
        let start = self.pos;
        let end = u64::try_from(start)
            .ok()
            .and_then(|s| s.checked_add(n))
            .filter(|&e| e <= self.end as u64)
            .ok_or_else(|| format!("field of {n} bytes runs past its message"))?;
        self.pos = end as usize;
        Ok([start as u32, end as u32])
    }

    /// Skips a field of wire type `wire` whose key was read.
    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            VARINT => self.skip_varint(),
            I64 => self.advance(8),
            LEN => self.len().map(drop),
            I32 => self.advance(4),
            w => Err(format!("unsupported wire type {w}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.end - self.pos.min(self.end) < n {
            return Err("truncated fixed-width field".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn expect(wire: u64, want: u64, what: &str) -> Result<(), String> {
    if wire == want {
        Ok(())
    } else {
        Err(format!("{what} has wire type {wire}, expected {want}"))
    }
}

#[inline]
fn utf8(buf: &[u8], s: Span, what: &str) -> Result<(), String> {
    let b = &buf[s[0] as usize..s[1] as usize];
    if b.is_ascii() {
        return Ok(());
    }
    std::str::from_utf8(b)
        .map(drop)
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

impl RawFrame {
    /// Indexes one encoded `SeriesResponse`.
    pub fn parse(buf: Bytes) -> Result<Parsed, String> {
        let len = u32::try_from(buf.len()).map_err(|_| "frame larger than 4 GiB".to_string())?;
        // Sized for typical series (a few labels and chunks in ~100 bytes),
        // so the vectors rarely grow.
        let guess = buf.len() / 64 + 1;
        let mut frame = RawFrame {
            buf: Bytes::new(),
            series: Vec::with_capacity(guess),
            labels: Vec::with_capacity(guess * 4),
            chunks: Vec::with_capacity(guess),
        };
        let mut warning = None;
        let mut r = Reader::new(&buf, [0, len]);
        while !r.done() {
            match r.key()? {
                (1, w) => {
                    expect(w, LEN, "SeriesResponse.series")?;
                    let s = r.len()?;
                    frame.add_series(&buf, s)?;
                }
                (2, w) => {
                    expect(w, LEN, "SeriesResponse.warning")?;
                    let s = r.len()?;
                    let text = std::str::from_utf8(&buf[s[0] as usize..s[1] as usize])
                        .map_err(|_| "warning is not valid UTF-8".to_string())?;
                    warning = Some(text.to_string());
                }
                (4, w) => {
                    expect(w, LEN, "SeriesResponse.batch")?;
                    let b = r.len()?;
                    let mut br = Reader::new(&buf, b);
                    while !br.done() {
                        match br.key()? {
                            (1, w) => {
                                expect(w, LEN, "SeriesBatch.series")?;
                                let s = br.len()?;
                                frame.add_series(&buf, s)?;
                            }
                            (_, w) => br.skip(w)?,
                        }
                    }
                }
                // 3: hints (google.protobuf.Any), ignored like the querier does.
                (_, w) => r.skip(w)?,
            }
        }
        frame.buf = buf;
        Ok(Parsed { frame, warning })
    }

    fn add_series(&mut self, buf: &[u8], msg: Span) -> Result<(), String> {
        let (l0, c0) = (self.labels.len() as u32, self.chunks.len() as u32);
        let mut r = Reader::new(buf, msg);
        while !r.done() {
            match r.key()? {
                (1, w) => {
                    expect(w, LEN, "Series.labels")?;
                    let l = r.len()?;
                    let (name, value) = match label_fast(buf, l) {
                        Some(nv) => nv,
                        None => label_general(buf, l)?,
                    };
                    utf8(buf, name, "label name")?;
                    utf8(buf, value, "label value")?;
                    self.labels.push([name, value]);
                }
                (2, w) => {
                    expect(w, LEN, "Series.chunks")?;
                    let c = r.len()?;
                    check_chunk(buf, c)?;
                    self.chunks.push(c);
                }
                (_, w) => r.skip(w)?,
            }
        }
        self.series.push(SeriesIdx {
            msg,
            labels: [l0, self.labels.len() as u32],
            chunks: [c0, self.chunks.len() as u32],
        });
        Ok(())
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    #[inline(always)]
    fn bytes(&self, s: Span) -> &[u8] {
        &self.buf[s[0] as usize..s[1] as usize]
    }

    #[inline(always)]
    fn label_spans(&self, i: usize) -> &[[Span; 2]] {
        let [a, b] = self.series[i].labels;
        &self.labels[a as usize..b as usize]
    }

    #[inline(always)]
    fn chunk_spans(&self, i: usize) -> &[Span] {
        let [a, b] = self.series[i].chunks;
        &self.chunks[a as usize..b as usize]
    }
}

/// The usual encoding of a `Label`: tag 1, a short name, tag 2, a short
/// value, nothing else (what every Thanos store writes).
#[inline(always)]
fn label_fast(buf: &[u8], l: Span) -> Option<(Span, Span)> {
    let (start, end) = (l[0] as usize, l[1] as usize);
    let b = buf.get(start..end)?;
    if b.len() < 4 || b[0] != 0x0a || b[1] >= 0x80 {
        return None;
    }
    let n = b[1] as usize;
    let v_tag = 2 + n;
    if b.len() < v_tag + 2 || b[v_tag] != 0x12 || b[v_tag + 1] >= 0x80 {
        return None;
    }
    let v = b[v_tag + 1] as usize;
    if v_tag + 2 + v != b.len() {
        return None;
    }
    let s = start as u32;
    Some(([s + 2, s + 2 + n as u32], [s + v_tag as u32 + 2, l[1]]))
}

/// Any other encoding of a `Label` (fields in another order, unknown
/// fields, long strings).
fn label_general(buf: &[u8], l: Span) -> Result<(Span, Span), String> {
    let (mut name, mut value) = ([l[0], l[0]], [l[0], l[0]]);
    let mut lr = Reader::new(buf, l);
    while !lr.done() {
        match lr.key()? {
            (1, w) => {
                expect(w, LEN, "Label.name")?;
                name = lr.len()?;
            }
            (2, w) => {
                expect(w, LEN, "Label.value")?;
                value = lr.len()?;
            }
            (_, w) => lr.skip(w)?,
        }
    }
    Ok((name, value))
}

/// Checks the layout of an `AggrChunk` (and of its sub-chunks), so decoding
/// it later cannot fail.
fn check_chunk(buf: &[u8], span: Span) -> Result<(), String> {
    let mut r = Reader::new(buf, span);
    while !r.done() {
        match r.key()? {
            (1 | 2, w) => {
                expect(w, VARINT, "AggrChunk time")?;
                r.skip_varint()?;
            }
            (3..=8, w) => {
                expect(w, LEN, "AggrChunk sub-chunk")?;
                let c = r.len()?;
                let mut cr = Reader::new(buf, c);
                while !cr.done() {
                    match cr.key()? {
                        (1 | 3, w) => {
                            expect(w, VARINT, "Chunk type/hash")?;
                            cr.skip_varint()?;
                        }
                        (2, w) => {
                            expect(w, LEN, "Chunk.data")?;
                            cr.len()?;
                        }
                        (_, w) => cr.skip(w)?,
                    }
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(())
}

/// Identity of a chunk for "already seen" (the proxy's rule): its time range
/// and the hash of each sub-chunk (XXH64 of the data when the store sent 0).
pub type ChunkKey = (i64, i64, [u64; 6]);

/// Range and identity of an encoded `AggrChunk`.
fn chunk_key(buf: &[u8], span: Span) -> ChunkKey {
    let mut key = (0i64, 0i64, [0u64; 6]);
    let mut r = Reader::new(buf, span);
    // The layout was checked at parse time; a failure here only ends the scan.
    let mut scan = || -> Result<(), String> {
        while !r.done() {
            match r.key()? {
                (1, _) => key.0 = r.varint()? as i64,
                (2, _) => key.1 = r.varint()? as i64,
                (f @ 3..=8, _) => {
                    let c = r.len()?;
                    let (mut hash, mut data) = (0u64, [c[0], c[0]]);
                    let mut cr = Reader::new(buf, c);
                    while !cr.done() {
                        match cr.key()? {
                            (2, _) => data = cr.len()?,
                            (3, _) => hash = cr.varint()?,
                            (_, w) => cr.skip(w)?,
                        }
                    }
                    if hash == 0 {
                        hash =
                            xxhash_rust::xxh64::xxh64(&buf[data[0] as usize..data[1] as usize], 0);
                    }
                    key.2[(f - 3) as usize] = hash;
                }
                (_, w) => r.skip(w)?,
            }
        }
        Ok(())
    };
    let _ = scan();
    key
}

/// A chunk of a merged series: which frame, where.
#[derive(Debug, Clone)]
pub struct ChunkRef {
    frame: Arc<RawFrame>,
    span: Span,
    min: i64,
    max: i64,
}

/// The chunks of series `idx` of `frame` as references.
pub fn chunk_refs(frame: &Arc<RawFrame>, idx: usize) -> Vec<ChunkRef> {
    frame
        .chunk_spans(idx)
        .iter()
        .map(|&span| {
            let (min, max, _) = chunk_key(&frame.buf, span);
            ChunkRef {
                frame: frame.clone(),
                span,
                min,
                max,
            }
        })
        .collect()
}

/// Adds the chunks of series `idx` of `frame` (same labels) to `chunks`,
/// dropping chunks already present (same range and sub-chunk hashes, the
/// proxy's rule), and sorts them by (min time, max time).
pub fn absorb(chunks: &mut Vec<ChunkRef>, frame: &Arc<RawFrame>, idx: usize) {
    let mut seen: std::collections::HashSet<ChunkKey> = chunks
        .iter()
        .map(|c| chunk_key(&c.frame.buf, c.span))
        .collect();
    for c in chunk_refs(frame, idx) {
        if seen.insert(chunk_key(&c.frame.buf, c.span)) {
            chunks.push(c);
        }
    }
    chunks.sort_by_key(|c| (c.min, c.max));
}

/// A run of merged series, in label order, still encoded in their
/// endpoints' frames. The run holds each frame once, so passing series on
/// costs no reference counting per series.
#[derive(Debug, Default)]
pub struct SeriesRun {
    frames: Vec<Arc<RawFrame>>,
    items: Vec<RunItem>,
}

#[derive(Debug)]
struct RunItem {
    frame: u32,
    idx: u32,
    /// Chunks gathered from several frames (same labels from several
    /// endpoints, or a series split across frames); None: the series' own.
    merged: Option<Box<[ChunkRef]>>,
}

impl SeriesRun {
    pub fn with_capacity(n: usize) -> Self {
        SeriesRun {
            frames: Vec::with_capacity(64),
            items: Vec::with_capacity(n),
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a frame the run's series will point into; returns its slot.
    pub fn add_frame(&mut self, frame: Arc<RawFrame>) -> u32 {
        self.frames.push(frame);
        (self.frames.len() - 1) as u32
    }

    /// The frame in `slot`.
    pub fn frame(&self, slot: u32) -> &Arc<RawFrame> {
        &self.frames[slot as usize]
    }

    /// Appends series `idx` of the frame in `slot` (`idx` < that frame's
    /// length), with `merged` chunks if it was merged.
    pub fn push(&mut self, slot: u32, idx: usize, merged: Option<Vec<ChunkRef>>) {
        self.items.push(RunItem {
            frame: slot,
            idx: idx as u32,
            merged: merged.map(Vec::into_boxed_slice),
        });
    }

    /// Series `i`.
    pub fn get(&self, i: usize) -> Option<SeriesView<'_>> {
        let it = self.items.get(i)?;
        Some(SeriesView {
            frame: &self.frames[it.frame as usize],
            idx: it.idx as usize,
            merged: it.merged.as_deref(),
        })
    }

    /// The series, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SeriesView<'_>> + '_ {
        self.items.iter().map(|it| SeriesView {
            frame: &self.frames[it.frame as usize],
            idx: it.idx as usize,
            merged: it.merged.as_deref(),
        })
    }
}

/// One series of a [`SeriesRun`] (or of a frame), read in place.
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a> {
    frame: &'a RawFrame,
    idx: usize,
    merged: Option<&'a [ChunkRef]>,
}

impl<'a> SeriesView<'a> {
    /// Series `idx` (< `frame.len()`) of `frame`, as its endpoint sent it.
    pub fn new(frame: &'a RawFrame, idx: usize) -> Self {
        SeriesView {
            frame,
            idx,
            merged: None,
        }
    }

    /// The labels as bytes, in the order the endpoint sent them.
    pub fn label_bytes(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let f = self.frame;
        f.label_spans(self.idx)
            .iter()
            .map(move |[n, v]| (f.bytes(*n), f.bytes(*v)))
    }

    /// The labels (checked to be UTF-8 when the frame was parsed).
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        self.label_bytes().map(|(n, v)| {
            (
                std::str::from_utf8(n).unwrap_or_default(),
                std::str::from_utf8(v).unwrap_or_default(),
            )
        })
    }

    /// Number of labels.
    pub fn label_count(&self) -> usize {
        self.frame.label_spans(self.idx).len()
    }

    /// Number of chunks (after merging).
    pub fn chunk_count(&self) -> usize {
        match self.merged {
            Some(m) => m.len(),
            None => self.frame.chunk_spans(self.idx).len(),
        }
    }

    /// Prometheus `labels.Compare` of the two label sets.
    #[inline]
    pub fn cmp_labels(&self, other: &SeriesView<'_>) -> Ordering {
        cmp_at(self.frame, self.idx, other.frame, other.idx)
    }

    /// Equal label sets.
    #[inline]
    pub fn same_labels(&self, other: &SeriesView<'_>) -> bool {
        eq_at(self.frame, self.idx, other.frame, other.idx)
    }

    /// The lowest chunk min time and highest chunk max time, read from the
    /// chunk headers without decoding anything; `None` without chunks.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let widen = |acc: Option<(i64, i64)>, (lo, hi): (i64, i64)| {
            Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
        };
        match self.merged {
            Some(m) => m.iter().map(|c| (c.min, c.max)).fold(None, widen),
            None => self
                .frame
                .chunk_spans(self.idx)
                .iter()
                .map(|&s| {
                    let k = chunk_key(&self.frame.buf, s);
                    (k.0, k.1)
                })
                .fold(None, widen),
        }
    }

    /// The encoded `Series` message, when this series is exactly what its
    /// endpoint sent (not merged with another).
    pub fn encoded(&self) -> Option<&'a [u8]> {
        match self.merged {
            Some(_) => None,
            None => Some(self.frame.bytes(self.frame.series[self.idx].msg)),
        }
    }

    /// The chunks as protobuf types (sorted and deduplicated if merged);
    /// chunk data shares the frame's buffer.
    pub fn chunks(&self) -> Vec<AggrChunk> {
        let decode = |f: &RawFrame, s: Span| {
            AggrChunk::decode(f.buf.slice(s[0] as usize..s[1] as usize)).ok()
        };
        match self.merged {
            Some(m) => m.iter().filter_map(|c| decode(&c.frame, c.span)).collect(),
            None => self
                .frame
                .chunk_spans(self.idx)
                .iter()
                .filter_map(|&s| decode(self.frame, s))
                .collect(),
        }
    }

    /// The series as protobuf types; chunk data shares the frame's buffer.
    pub fn to_series(&self) -> Series {
        if self.merged.is_none() {
            let s = self.frame.series[self.idx].msg;
            let bytes = self.frame.buf.slice(s[0] as usize..s[1] as usize);
            // Checked at parse time; an error cannot happen.
            if let Ok(series) = Series::decode(bytes) {
                return series;
            }
        }
        Series {
            labels: self
                .labels()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: self.chunks(),
        }
    }
}

/// Prometheus `labels.Compare` of series `i` of `a` and series `j` of `b`.
#[inline]
pub fn cmp_at(a: &RawFrame, i: usize, b: &RawFrame, j: usize) -> Ordering {
    let (la, lb) = (a.label_spans(i), b.label_spans(j));
    for (x, y) in la.iter().zip(lb) {
        match cmp_bytes(a.bytes(x[0]), b.bytes(y[0]))
            .then_with(|| cmp_bytes(a.bytes(x[1]), b.bytes(y[1])))
        {
            Ordering::Equal => {}
            o => return o,
        }
    }
    la.len().cmp(&lb.len())
}

/// Whether series `i` of `a` and series `j` of `b` have equal label sets
/// (counts first, then bytes, last label first: neighbours in label order
/// usually differ late).
#[inline]
pub fn eq_at(a: &RawFrame, i: usize, b: &RawFrame, j: usize) -> bool {
    let (la, lb) = (a.label_spans(i), b.label_spans(j));
    la.len() == lb.len()
        && la.iter().rev().zip(lb.iter().rev()).all(|(x, y)| {
            eq_bytes(a.bytes(x[0]), b.bytes(y[0])) && eq_bytes(a.bytes(x[1]), b.bytes(y[1]))
        })
}

/// Byte equality for short strings, inlined (no call into `memcmp`).
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && cmp_bytes(a, b) == Ordering::Equal
}

/// Byte-wise lexicographic order (what `str::cmp` gives), eight bytes at a
/// time: label names and values are short, and the merge compares millions.
#[inline]
pub(crate) fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let (mut x, mut y) = (&a[..n], &b[..n]);
    while let (Some((xw, xr)), Some((yw, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        if xw != yw {
            return u64::from_be_bytes(*xw).cmp(&u64::from_be_bytes(*yw));
        }
        (x, y) = (xr, yr);
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
        }
    }
    a.len().cmp(&b.len())
}

/// A tonic codec that hands the Series stream's messages over as bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct FrameDecoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestEncoder;

impl tonic::codec::Codec for FrameCodec {
    type Encode = sluice_proto::thanos::SeriesRequest;
    type Decode = Bytes;
    type Encoder = RequestEncoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> RequestEncoder {
        RequestEncoder
    }

    fn decoder(&mut self) -> FrameDecoder {
        FrameDecoder
    }
}

impl tonic::codec::Encoder for RequestEncoder {
    type Item = sluice_proto::thanos::SeriesRequest;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding SeriesRequest: {e}")))
    }
}

impl tonic::codec::Decoder for FrameDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        // A copy of its own: slicing tonic's receive buffer instead would
        // keep that whole buffer alive for as long as any series of the
        // frame is, and make tonic allocate a new one meanwhile.
        let n = src.remaining();
        let mut frame = Vec::with_capacity(n);
        while src.has_remaining() {
            let chunk = src.chunk();
            frame.extend_from_slice(chunk);
            let k = chunk.len();
            src.advance(k);
        }
        Ok(Some(Bytes::from(frame)))
    }
}

/// The server side of [`FrameCodec`] lives with the generic StoreAPI server.
pub use sluice_storeapi::ServerFrameCodec;

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::thanos::{
        Chunk, SeriesBatch, SeriesResponse, chunk::Encoding, series_response,
    };

    fn series(labels: &[(&str, &str)], chunks: &[(i64, i64, &[u8])]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            chunks: chunks
                .iter()
                .map(|&(min, max, data)| AggrChunk {
                    min_time: min,
                    max_time: max,
                    raw: Some(Chunk {
                        r#type: Encoding::Xor as i32,
                        data: Bytes::copy_from_slice(data),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn frame(msg: &SeriesResponse) -> Arc<RawFrame> {
        Arc::new(
            RawFrame::parse(Bytes::from(msg.encode_to_vec()))
                .expect("parse")
                .frame,
        )
    }

    #[test]
    fn batch_and_single_frames_round_trip() {
        let a = series(&[("__name__", "up"), ("job", "a")], &[(1, 2, b"x")]);
        let b = series(
            &[("__name__", "up"), ("job", "b")],
            &[(1, 2, b"y"), (3, 4, b"z")],
        );
        let batch = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch {
                series: vec![a.clone(), b.clone()],
            })),
        };
        let f = frame(&batch);
        assert_eq!(f.len(), 2);
        let (ra, rb) = (SeriesView::new(&f, 0), SeriesView::new(&f, 1));
        assert_eq!(ra.to_series(), a);
        assert_eq!(rb.to_series(), b);
        assert_eq!(rb.chunk_count(), 2);
        assert_eq!(
            ra.labels().collect::<Vec<_>>(),
            [("__name__", "up"), ("job", "a")]
        );
        assert_eq!(ra.cmp_labels(&rb), Ordering::Less);
        assert!(!ra.same_labels(&rb));
        assert_eq!(ra.encoded().map(<[u8]>::to_vec), Some(a.encode_to_vec()));

        let single = SeriesResponse {
            result: Some(series_response::Result::Series(b.clone())),
        };
        assert_eq!(SeriesView::new(&frame(&single), 0).to_series(), b);
        let warn = SeriesResponse {
            result: Some(series_response::Result::Warning("careful".into())),
        };
        let p = RawFrame::parse(Bytes::from(warn.encode_to_vec())).expect("parse");
        assert_eq!((p.frame.len(), p.warning.as_deref()), (0, Some("careful")));
    }

    #[test]
    fn labels_in_any_field_order_and_empty_values() {
        // series { labels { value: "v", name: "n" } labels { name: "e" } }:
        // fields reversed, and an empty value (which protobuf omits).
        let bytes: &[u8] = &[
            0x0a, 0x0d, 0x0a, 0x06, 0x12, 0x01, b'v', 0x0a, 0x01, b'n', 0x0a, 0x03, 0x0a, 0x01,
            b'e',
        ];
        let f = RawFrame::parse(Bytes::from_static(bytes))
            .expect("parse")
            .frame;
        let v = SeriesView::new(&f, 0);
        assert_eq!(v.labels().collect::<Vec<_>>(), [("n", "v"), ("e", "")]);
        let s = v.to_series();
        assert_eq!(
            (s.labels[0].name.as_str(), s.labels[1].value.as_str()),
            ("n", "")
        );
    }

    #[test]
    fn label_order_is_prometheus_compare() {
        let mk = |l: &[(&str, &str)]| {
            frame(&SeriesResponse {
                result: Some(series_response::Result::Series(series(l, &[]))),
            })
        };
        let frames = [
            mk(&[("a", "1")]),
            mk(&[("a", "1"), ("b", "1")]),
            mk(&[("a", "2")]),
            mk(&[("a", "1234567890abcdef")]),
            mk(&[("a", "1234567890abcdeg")]),
            mk(&[("a", "1")]),
        ];
        let v: Vec<SeriesView<'_>> = frames.iter().map(|f| SeriesView::new(f, 0)).collect();
        let (a, ab, a2, long, long2) = (v[0], v[1], v[2], v[3], v[4]);
        assert_eq!(
            a.cmp_labels(&ab),
            Ordering::Less,
            "a strict prefix sorts first"
        );
        assert_eq!(ab.cmp_labels(&a2), Ordering::Less);
        assert_eq!(long.cmp_labels(&long2), Ordering::Less);
        assert_eq!(a.cmp_labels(&a), Ordering::Equal);
        assert!(a.same_labels(&v[5]));
        assert!(!a.same_labels(&ab));
    }

    #[test]
    fn absorb_drops_identical_chunks_and_sorts() {
        let l = [("__name__", "up")];
        let fx = frame(&SeriesResponse {
            result: Some(series_response::Result::Series(series(
                &l,
                &[(10, 20, b"b"), (0, 9, b"a")],
            ))),
        });
        let fy = frame(&SeriesResponse {
            result: Some(series_response::Result::Series(series(
                &l,
                &[(0, 9, b"a"), (30, 40, b"c")],
            ))),
        });
        let mut chunks = chunk_refs(&fx, 0);
        absorb(&mut chunks, &fy, 0);
        let mut run = SeriesRun::default();
        let slot = run.add_frame(fx.clone());
        run.push(slot, 0, Some(chunks));
        run.push(slot, 0, None);
        let x = run.get(0).expect("series 0");
        assert!(x.encoded().is_none());
        let s = x.to_series();
        let ranges: Vec<(i64, i64)> = s.chunks.iter().map(|c| (c.min_time, c.max_time)).collect();
        assert_eq!(ranges, [(0, 9), (10, 20), (30, 40)]);
        assert_eq!(s.labels.len(), 1);
        assert_eq!(run.get(1).map(|v| v.chunk_count()), Some(2));
        assert_eq!(run.iter().count(), 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = SeriesResponse {
            result: Some(series_response::Result::Series(series(
                &[("a", "b")],
                &[(1, 2, b"x")],
            ))),
        }
        .encode_to_vec();
        // Every truncation and many single-byte corruptions either fail to
        // parse or parse into series that decode and compare without panics.
        let mut variants: Vec<Vec<u8>> = (0..good.len()).map(|c| good[..c].to_vec()).collect();
        for i in 0..good.len() {
            for b in [0x00, 0x07, 0x80, 0xff] {
                let mut g = good.clone();
                g[i] = b;
                variants.push(g);
            }
        }
        for v in variants {
            if let Ok(p) = RawFrame::parse(Bytes::from(v)) {
                let f = p.frame;
                for k in 0..f.len() {
                    let s = SeriesView::new(&f, k);
                    let _ = (s.to_series(), s.labels().count(), s.chunk_count());
                    let _ = s.cmp_labels(&s);
                }
            }
        }
        assert!(RawFrame::parse(Bytes::from_static(&[0x0a, 0x05, 0x0a])).is_err());
        // series { labels { name: "\xff" } }
        let e = RawFrame::parse(Bytes::from_static(&[
            0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff,
        ]))
        .expect_err("invalid UTF-8");
        assert!(e.contains("UTF-8"), "{e}");
    }
}
