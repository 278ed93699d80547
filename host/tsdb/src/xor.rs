//! The XOR float chunk (encoding 1, spec §2.3): an encoder whose output is
//! byte-identical to Prometheus' appender, a fast bulk decoder and a
//! sample-at-a-time iterator.
//!
//! Layout: `numSamples` BE16, then a bit stream: sample 0 as `varint t0` and
//! 64 raw value bits, sample 1 as `uvarint (t1 - t0)` and an XOR value, every
//! later sample as a delta-of-delta timestamp and an XOR value. The first two
//! samples are whole bytes, so the bit-level part starts byte-aligned.
//!
//! Decoders read exactly `numSamples` samples (a trailing empty byte is
//! accepted) and return [`Error`] on truncated or malformed input.

use crate::bstream::{BitReader, BitWriter};
use crate::error::{Error, Result};
use crate::varint::{put_uvarint, put_varint, uvarint, varint};

const WHAT: &str = "xor chunk";

/// Sentinel for "no XOR window yet" in the encoder.
const WINDOW_UNSET: u8 = 0xff;

/// Encodes float samples into a Prometheus XOR chunk.
///
/// Timestamps are expected to be increasing, as in Prometheus; other input is
/// encoded with the same wrapping arithmetic Prometheus uses and decodes back
/// unchanged.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    w: BitWriter,
    n: u16,
    t: i64,
    v: u64,
    delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    /// An empty chunk (`00 00`).
    pub fn new() -> Self {
        XorEncoder {
            w: BitWriter::from_vec(header_buf()),
            n: 0,
            t: 0,
            v: 0,
            delta: 0,
            leading: WINDOW_UNSET,
            trailing: 0,
        }
    }

    /// True when the chunk holds `u16::MAX` samples and cannot take more.
    pub fn is_full(&self) -> bool {
        self.n == u16::MAX
    }

    /// Appends a sample, or returns [`Error::InvalidInput`] if the chunk is
    /// full (`u16::MAX` samples).
    pub fn try_append(&mut self, t: i64, v: f64) -> Result<()> {
        if self.is_full() {
            return Err(Error::InvalidInput {
                what: WHAT,
                detail: format!("chunk already holds {} samples", u16::MAX),
            });
        }
        let bits = v.to_bits();
        let mut delta = 0u64;
        match self.n {
            0 => {
                let mut buf = Vec::with_capacity(10);
                put_varint(&mut buf, t);
                for b in buf {
                    self.w.write_byte(b);
                }
                self.w.write_bits(bits, 64);
            }
            1 => {
                delta = t.wrapping_sub(self.t) as u64;
                let mut buf = Vec::with_capacity(10);
                put_uvarint(&mut buf, delta);
                for b in buf {
                    self.w.write_byte(b);
                }
                self.write_value(bits);
            }
            _ => {
                delta = t.wrapping_sub(self.t) as u64;
                let dod = delta.wrapping_sub(self.delta) as i64;
                if dod == 0 {
                    self.w.write_bit(false);
                } else if fits(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(bits);
            }
        }
        self.t = t;
        self.v = bits;
        self.delta = delta;
        self.n += 1;
        let [hi, lo] = self.n.to_be_bytes();
        let head = self.w.bytes_mut();
        head[0] = hi;
        head[1] = lo;
        Ok(())
    }

    /// Appends a sample.
    ///
    /// # Panics
    /// If the chunk already holds `u16::MAX` samples; callers that do not cut
    /// chunks themselves (Prometheus cuts at 120–240) use
    /// [`XorEncoder::try_append`].
    pub fn append(&mut self, t: i64, v: f64) {
        if let Err(e) = self.try_append(t, v) {
            panic!("XorEncoder::append: {e}");
        }
    }

    fn write_value(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        // Clamped so that it fits the 5-bit field.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != WINDOW_UNSET && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.w.write_bits(x >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.w.write_bit(true);
        self.w.write_bits(u64::from(leading), 5);
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        // 64 significant bits are written as 0 (the field is 6 bits wide).
        self.w.write_bits(u64::from(sig), 6);
        self.w.write_bits(x >> trailing, sig);
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> usize {
        usize::from(self.n)
    }

    /// The chunk data: `numSamples` BE16 followed by the bit stream.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// The chunk data, consuming the encoder.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_vec()
    }
}

/// A buffer holding the 2-byte sample count, sized for a typical chunk.
fn header_buf() -> Vec<u8> {
    let mut b = Vec::with_capacity(160);
    b.extend_from_slice(&[0, 0]);
    b
}

/// True if `dod` fits the `w`-bit bucket: `-(2^(w-1) - 1) ..= 2^(w-1)`.
#[inline]
fn fits(dod: i64, w: u32) -> bool {
    let half = 1i64 << (w - 1);
    -(half - 1) <= dod && dod <= half
}

/// Encodes `samples` into one XOR chunk's data.
pub fn encode(samples: &[(i64, f64)]) -> Result<Vec<u8>> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.try_append(t, v)?;
    }
    Ok(e.into_bytes())
}

/// The sample count in a chunk's data header.
pub fn num_samples(data: &[u8]) -> Result<u16> {
    match data.first_chunk::<2>() {
        Some(&h) => Ok(u16::from_be_bytes(h)),
        None => Err(Error::truncated(WHAT, 0, 2, data.len())),
    }
}

/// Decoder state carried from one sample to the next.
#[derive(Debug, Clone, Copy)]
struct State {
    t: i64,
    delta: u64,
    v: u64,
    /// Trailing zeros of the current XOR window.
    trailing: u32,
    /// Significant bits of the current XOR window (`1..=64`). Before the
    /// first window the decoder behaves like Prometheus' (leading = trailing
    /// = 0, i.e. 64 bits).
    sig: u32,
    /// Non-zero once a window with more than 64 bits was seen.
    bad: u32,
}

impl State {
    fn new(t: i64, delta: u64, v: u64) -> Self {
        State {
            t,
            delta,
            v,
            trailing: 0,
            sig: 64,
            bad: 0,
        }
    }

    /// Decodes one sample after the second: a delta-of-delta timestamp field
    /// and an XOR value field. This is the general path (used by [`XorIter`]
    /// and for samples the bulk decoder's [`fast_run`] leaves out).
    ///
    /// One 64-bit window covers the timestamp field and the value's header
    /// (at most 24 + 13 bits unless the timestamp takes the 64-bit form); a
    /// second one holds the payload. Reads past the end see zeros; callers
    /// check [`BitReader::overrun`] and `bad`.
    #[inline(always)]
    fn step(&mut self, r: &mut BitReader<'_>) {
        let w = r.peek64();
        let (pre, dod, wv) = if w >> 63 == 0 {
            (1, 0, w << 1)
        } else {
            match w.leading_ones() {
                1 => dod_field(w, 2, 14),
                2 => dod_field(w, 3, 17),
                3 => dod_field(w, 4, 20),
                _ => {
                    r.skip(4);
                    let dod = r.read_bits(64) as i64;
                    (0, dod, r.peek64())
                }
            }
        };
        self.delta = self.delta.wrapping_add(dod as u64);
        self.t = self.t.wrapping_add(self.delta as i64);
        self.value_from(wv, pre, r);
    }

    /// Decodes an XOR value field at the reader's position.
    #[inline(always)]
    fn read_value(&mut self, r: &mut BitReader<'_>) {
        let w = r.peek64();
        self.value_from(w, 0, r);
    }

    /// Decodes an XOR value field whose first bits are the top bits of `w`,
    /// which starts `pre` bits after the reader's position. Selections use
    /// masks rather than branches.
    #[inline(always)]
    fn value_from(&mut self, w: u64, pre: u32, r: &mut BitReader<'_>) {
        // Control bits: `0` unchanged, `10` reuse window, `11` new window.
        let changed = (w >> 63) as u32;
        let new = changed & ((w >> 62) as u32 & 1);
        let changed_mask = 0u32.wrapping_sub(changed);
        let new_mask = 0u32.wrapping_sub(new);
        // New window: 5 bits leading zeros, 6 bits significant bits (0 = 64).
        let leading = ((w >> 57) & 0x1f) as u32;
        let s_raw = ((w >> 51) & 0x3f) as u32;
        let s_new = s_raw | (u32::from(s_raw == 0) << 6);
        let width = leading + s_new;
        self.bad |= new & u32::from(width > 64);
        self.sig = (s_new & new_mask) | (self.sig & !new_mask);
        self.trailing = (64u32.wrapping_sub(width) & 63 & new_mask) | (self.trailing & !new_mask);
        // Header length 1, 2 or 13; payload length 0 when unchanged.
        let header = 1 + changed + 11 * new;
        let sig = self.sig & changed_mask;
        r.skip(pre + header);
        let x = r.peek64();
        let payload = (x >> ((64 - sig) & 63)) & 0u64.wrapping_sub(u64::from(changed));
        r.skip(sig);
        self.v ^= payload << self.trailing;
    }
}

/// Decodes a `prefix`-bit bucket prefix and `width`-bit payload at the top of
/// `w`: returns (field length, dod, `w` after the field). Payloads above
/// `2^(width-1)` are negative; `2^(width-1)` itself is positive (spec §2.3).
#[inline(always)]
fn dod_field(w: u64, prefix: u32, width: u32) -> (u32, i64, u64) {
    let raw = (w << prefix) >> (64 - width);
    (
        prefix + width,
        dod_bucket(raw, width),
        w << (prefix + width),
    )
}

#[cold]
fn bad_window() -> Error {
    Error::corrupt(
        WHAT,
        "xor value window has more than 64 bits (leading + significant)",
    )
}

/// Bytes the fast loop loads from a sample's first byte: 128 bits, of which
/// at least 121 follow the sample's first bit. That covers a whole sample
/// unless its timestamp takes the 64-bit form (24 + 13 + 64 = 101 bits).
const FAST_WIN: usize = 16;

/// Samples [`fast_run`] decodes per call into a stack buffer (one call for
/// a typical 120-sample chunk).
const BLOCK: usize = 128;

/// Result of [`fast_run`].
struct FastRun {
    pos: usize,
    decoded: usize,
    stop: Stop,
}

/// Why [`fast_run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Decoded the requested samples.
    Done,
    /// The next sample is within [`FAST_WIN`] bytes of the end.
    End,
    /// The next sample has a 64-bit timestamp field (decode it generically).
    Wide,
    /// An XOR window with more than 64 bits was found.
    Bad,
}

/// Sign-extends a `width`-bit timestamp payload: values above `2^(width-1)`
/// are negative, `2^(width-1)` itself is positive (spec §2.3).
#[inline(always)]
fn dod_bucket(raw: u64, width: u32) -> i64 {
    raw as i64 - (i64::from(raw > 1u64 << (width - 1)) << width)
}

/// Decodes up to `k` (≤ [`BLOCK`]) samples starting at bit `pos` into `out`, while
/// the [`FAST_WIN`] bytes from each sample's first byte are inside `data`.
///
/// This is [`State::step`] specialised for the common case with all state
/// in registers: one 128-bit load per sample covers the timestamp field,
/// the value header and the payload. It branches on the control bits; on
/// real data those branches predict well, and a branch-free variant measured
/// slower (register pressure). Stops before a sample with a 64-bit
/// timestamp field and on an invalid XOR window.
#[inline(never)]
fn fast_run(
    data: &[u8],
    mut pos: usize,
    s: &mut State,
    out: &mut [(i64, u64); BLOCK],
    k: usize,
) -> FastRun {
    let mut st = *s;
    let mut stop = Stop::Done;
    let mut decoded = 0;
    for slot in out.iter_mut().take(k) {
        let Some(win) = data
            .get(pos >> 3..)
            .and_then(|d| d.first_chunk::<FAST_WIN>())
        else {
            stop = Stop::End;
            break;
        };
        let x = u128::from_be_bytes(*win) << (pos & 7);
        let hi = (x >> 64) as u64;
        let lo = x as u64;
        // Timestamp field: `0`, `10`+14, `110`+17, `1110`+20, `1111`+64.
        // The value is decoded in each arm so that the field length is a
        // constant in the common `0` arm.
        let ok = if (hi as i64) >= 0 {
            st.t = st.t.wrapping_add(st.delta as i64);
            fast_value(&mut st, &mut pos, hi, lo, 1)
        } else {
            let (tl, dod) = if hi >> 62 == 0b10 {
                (16, dod_bucket((hi >> 48) & 0x3fff, 14))
            } else if hi >> 61 == 0b110 {
                (20, dod_bucket((hi >> 44) & 0x1_ffff, 17))
            } else if hi >> 60 == 0b1110 {
                (24, dod_bucket((hi >> 40) & 0xf_ffff, 20))
            } else {
                stop = Stop::Wide;
                break;
            };
            st.delta = st.delta.wrapping_add(dod as u64);
            st.t = st.t.wrapping_add(st.delta as i64);
            fast_value(&mut st, &mut pos, hi, lo, tl)
        };
        if !ok {
            stop = Stop::Bad;
            break;
        }
        *slot = (st.t, st.v);
        decoded += 1;
    }
    *s = st;
    FastRun { pos, decoded, stop }
}

/// The value part of [`fast_run`]: `hi:lo` holds the sample from its first
/// bit, the value field starts `tl` (1..=24) bits in. Advances `pos` past the
/// sample; returns false on an XOR window of more than 64 bits.
#[inline(always)]
fn fast_value(st: &mut State, pos: &mut usize, hi: u64, lo: u64, tl: u32) -> bool {
    // `0` unchanged, `10` reuse window, `11` + 5 + 6 new window.
    let wv = hi << tl;
    if (wv as i64) >= 0 {
        *pos += (tl + 1) as usize;
        return true;
    }
    let k1 = if wv & (1 << 62) == 0 {
        tl + 2
    } else {
        let leading = ((wv >> 57) & 0x1f) as u32;
        // 6-bit field, 0 means 64.
        let sig = ((((wv >> 51) as u32) + 63) & 63) + 1;
        if leading + sig > 64 {
            return false;
        }
        st.sig = sig;
        st.trailing = 64 - leading - sig;
        tl + 13
    };
    // The header ends 3..=37 bits in; the payload follows.
    let y = (hi << k1) | (lo >> (64 - k1));
    st.v ^= (y >> (64 - st.sig)) << st.trailing;
    *pos += (k1 + st.sig) as usize;
    true
}

/// Parsed whole-byte prefix of a chunk: sample 0 and the bit offset after it.
struct Head {
    t0: i64,
    v0: u64,
    /// Byte offset just after sample 0.
    off: usize,
}

fn read_head(data: &[u8]) -> Result<Head> {
    num_samples(data)?;
    let mut off = 2;
    let (t0, k) = varint(data.get(off..).unwrap_or(&[])).map_err(|e| relocate(e, off))?;
    off += k;
    let v0 = match data.get(off..).and_then(|s| s.first_chunk::<8>()) {
        Some(&b) => u64::from_be_bytes(b),
        None => {
            return Err(Error::truncated(
                WHAT,
                off,
                8,
                data.len().saturating_sub(off),
            ));
        }
    };
    off += 8;
    Ok(Head { t0, v0, off })
}

/// Reads sample 1's `uvarint (t1 - t0)` at byte offset `off`; returns the
/// delta and the offset after it.
#[inline]
fn read_first_delta(data: &[u8], off: usize) -> Result<(u64, usize)> {
    let rest = data.get(off..).unwrap_or(&[]);
    let (d, k) = uvarint(rest).map_err(|e| relocate(e, off))?;
    Ok((d, off + k))
}

fn relocate(e: Error, off: usize) -> Error {
    match e {
        Error::Truncated { need, have, .. } => Error::truncated(WHAT, off, need, have),
        Error::Corrupt { detail, .. } => Error::corrupt(WHAT, format!("{detail} at offset {off}")),
        other => other,
    }
}

/// The error for a sample that ends at bit `pos` of `len` bytes of data.
#[cold]
fn overrun(pos: usize, len: usize) -> Error {
    Error::truncated(WHAT, len, pos.div_ceil(8).saturating_sub(len), 0)
}

/// Upper bound on the samples `data` can hold, used to cap allocations driven
/// by a corrupt header: every sample after the first takes at least 2 bits.
fn max_samples_for(data: &[u8]) -> usize {
    1 + data.len().saturating_mul(4)
}

/// Decodes all samples of a chunk's data, appending them to `ts` and `vs`.
///
/// On error nothing is appended (both vectors are truncated back).
pub fn decode_into(data: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
    let (lt, lv) = (ts.len(), vs.len());
    let res = decode_into_inner(data, ts, vs);
    if res.is_err() {
        ts.truncate(lt);
        vs.truncate(lv);
    }
    res
}

fn decode_into_inner(data: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
    let n = usize::from(num_samples(data)?);
    if n == 0 {
        return Ok(());
    }
    let head = read_head(data)?;
    let cap = n.min(max_samples_for(data));
    ts.reserve(cap);
    vs.reserve(cap);
    ts.push(head.t0);
    vs.push(f64::from_bits(head.v0));
    if n == 1 {
        return Ok(());
    }
    let (d1, off) = read_first_delta(data, head.off)?;
    let mut s = State::new(head.t0.wrapping_add(d1 as i64), d1, head.v0);
    let mut r = BitReader::at(data, off * 8);
    s.read_value(&mut r);
    if s.bad != 0 {
        return Err(bad_window());
    }
    if r.overrun() {
        return Err(overrun(r.position(), data.len()));
    }
    ts.push(s.t);
    vs.push(f64::from_bits(s.v));

    let len = data.len();
    let mut out = Bulk {
        s,
        pos: r.position(),
        remaining: n - 2,
        block: [(0, 0); BLOCK],
        ts,
        vs,
    };
    // Main part: straight from `data` while a whole window fits.
    out.run(data, len * 8)?;
    if out.remaining == 0 {
        return Ok(());
    }
    // Tail: fewer than FAST_WIN bytes are left; copy them into a zero-padded
    // buffer and continue there. Zeros decode as short samples, so a chunk
    // whose count exceeds its data fails the end check below.
    let start = out.pos >> 3;
    let rest = data.get(start..).unwrap_or(&[]);
    let mut pad = [0u8; 6 * FAST_WIN];
    let m = rest.len().min(FAST_WIN);
    pad[..m].copy_from_slice(&rest[..m]);
    out.pos -= start * 8;
    let res = out.run(&pad, m * 8);
    let end = start * 8 + out.pos;
    match res {
        Err(Error::Truncated { .. }) => Err(overrun(end, len)),
        Err(e) => Err(e),
        Ok(()) if out.remaining > 0 || out.pos > m * 8 || rest.len() > m => Err(overrun(end, len)),
        Ok(()) => Ok(()),
    }
}

/// The bulk decoder's progress: state, bit position, samples still to
/// decode, and where they go.
struct Bulk<'v> {
    s: State,
    pos: usize,
    remaining: usize,
    block: [(i64, u64); BLOCK],
    ts: &'v mut Vec<i64>,
    vs: &'v mut Vec<f64>,
}

impl Bulk<'_> {
    /// Decodes the remaining samples from bit `pos` of `buf` in blocks
    /// through [`fast_run`], appending them; stops early when fewer than
    /// [`FAST_WIN`] bytes are left. Fails if a sample ends after `end_bits`.
    fn run(&mut self, buf: &[u8], end_bits: usize) -> Result<()> {
        while self.remaining > 0 {
            let k = self.remaining.min(BLOCK);
            let run = fast_run(buf, self.pos, &mut self.s, &mut self.block, k);
            self.pos = run.pos;
            let done = &self.block[..run.decoded.min(BLOCK)];
            self.ts.extend(done.iter().map(|&(t, _)| t));
            self.vs.extend(done.iter().map(|&(_, v)| f64::from_bits(v)));
            self.remaining -= done.len();
            if self.pos > end_bits {
                return Err(overrun(self.pos, end_bits / 8));
            }
            match run.stop {
                Stop::Done => {}
                Stop::End => return Ok(()),
                Stop::Bad => return Err(bad_window()),
                Stop::Wide => {
                    // A 64-bit timestamp field may not fit the window: decode
                    // this sample with the checked reader.
                    let mut r = BitReader::at(buf, self.pos);
                    self.s.step(&mut r);
                    self.pos = r.position();
                    if self.s.bad != 0 {
                        return Err(bad_window());
                    }
                    if self.pos > end_bits {
                        return Err(overrun(self.pos, end_bits / 8));
                    }
                    self.ts.push(self.s.t);
                    self.vs.push(f64::from_bits(self.s.v));
                    self.remaining -= 1;
                }
            }
        }
        Ok(())
    }
}

/// Decodes a chunk into a vector of `(t, v)` pairs.
pub fn decode(data: &[u8]) -> Result<Vec<(i64, f64)>> {
    let mut ts = Vec::new();
    let mut vs = Vec::new();
    decode_into(data, &mut ts, &mut vs)?;
    Ok(ts.into_iter().zip(vs).collect())
}

/// Iterates over a chunk's samples one at a time.
///
/// After an error the iterator is exhausted (further calls return
/// `Ok(None)`).
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    data: &'a [u8],
    r: BitReader<'a>,
    s: State,
    total: u16,
    read: u16,
}

impl<'a> XorIter<'a> {
    /// An iterator over `data`; fails only if the 2-byte header is missing.
    pub fn new(data: &'a [u8]) -> Result<Self> {
        let total = num_samples(data)?;
        Ok(XorIter {
            data,
            r: BitReader::at(data, 16),
            s: State::new(0, 0, 0),
            total,
            read: 0,
        })
    }

    /// The sample count from the header.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// The next sample, `Ok(None)` after the last one.
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>> {
        if self.read >= self.total {
            return Ok(None);
        }
        match self.step() {
            Ok(()) => {
                self.read += 1;
                Ok(Some((self.s.t, f64::from_bits(self.s.v))))
            }
            Err(e) => {
                self.read = self.total;
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<()> {
        match self.read {
            0 => {
                let h = read_head(self.data)?;
                self.s = State::new(h.t0, 0, h.v0);
                self.r = BitReader::at(self.data, h.off * 8);
            }
            1 => {
                // Samples 0 and 1 are whole bytes, so the reader is aligned.
                let (d1, off) = read_first_delta(self.data, self.r.position() / 8)?;
                self.s.delta = d1;
                self.s.t = self.s.t.wrapping_add(d1 as i64);
                self.r = BitReader::at(self.data, off * 8);
                self.s.read_value(&mut self.r);
            }
            _ => self.s.step(&mut self.r),
        }
        if self.s.bad != 0 {
            return Err(bad_window());
        }
        if self.r.overrun() {
            return Err(overrun(self.r.position(), self.data.len()));
        }
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<(i64, f64)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_sample().transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_704_069_000_000;

    fn roundtrip_bits(samples: &[(i64, f64)]) {
        let data = encode(samples).unwrap();
        assert_eq!(num_samples(&data).unwrap() as usize, samples.len());
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        decode_into(&data, &mut ts, &mut vs).unwrap();
        assert_eq!(ts.len(), samples.len());
        let mut it = XorIter::new(&data).unwrap();
        for (i, &(t, v)) in samples.iter().enumerate() {
            assert_eq!(ts[i], t, "bulk t at {i}");
            assert_eq!(vs[i].to_bits(), v.to_bits(), "bulk v at {i}");
            let (t2, v2) = it.next_sample().unwrap().unwrap();
            assert_eq!(t2, t, "iter t at {i}");
            assert_eq!(v2.to_bits(), v.to_bits(), "iter v at {i}");
        }
        assert!(it.next_sample().unwrap().is_none());
    }

    #[test]
    fn empty_chunk_is_two_zero_bytes() {
        let e = XorEncoder::new();
        assert_eq!(e.bytes(), [0, 0]);
        assert_eq!(e.num_samples(), 0);
        let mut ts = vec![1];
        let mut vs = vec![1.0];
        decode_into(e.bytes(), &mut ts, &mut vs).unwrap();
        assert_eq!(ts, [1]);
        assert!(
            XorIter::new(e.bytes())
                .unwrap()
                .next_sample()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn spec_worked_example_bytes() {
        let samples = [(T0, 0.0), (T0 + 15_000, 151.0), (T0 + 30_000, 303.0)];
        let data = encode(&samples).unwrap();
        assert_eq!(&data[..2], [0x00, 0x03], "numSamples");
        assert_eq!(
            &data[2..8],
            [0x80, 0xad, 0xeb, 0xa6, 0x98, 0x63],
            "t0 varint"
        );
        assert_eq!(&data[8..16], [0; 8], "v0 = 0.0");
        assert_eq!(&data[16..18], [0x98, 0x75], "d1 = 15000");
        // 1 1 00001 010010 100000001100010111, then sample 2's dod '0'.
        assert_eq!(
            &data[18..22],
            [0xc2, 0x94, 0x06, 0x2e],
            "v1 window and payload"
        );
        roundtrip_bits(&samples);
        // With 120 samples the header says 0x0078, as in the fixture.
        let mut e = XorEncoder::new();
        for i in 0..120 {
            e.append(T0 + i * 15_000, (i * 151) as f64);
        }
        assert_eq!(&e.bytes()[..2], [0x00, 0x78]);
        assert_eq!(&e.bytes()[2..18], &data[2..18]);
    }

    /// Bits taken by sample 2 when its timestamp delta-of-delta is `dod`
    /// (the value is unchanged, so it takes 1 bit).
    fn sample2_bits(dod: i64) -> usize {
        let mut e = XorEncoder::new();
        e.append(T0, 1.0);
        e.append(T0 + 1_000_000, 1.0);
        let before = e.w.bit_len();
        e.append(T0 + 2_000_000 + dod, 1.0);
        let bits = e.w.bit_len() - before;
        roundtrip_bits(&[
            (T0, 1.0),
            (T0 + 1_000_000, 1.0),
            (T0 + 2_000_000 + dod, 1.0),
        ]);
        bits
    }

    #[test]
    fn dod_bucket_boundaries() {
        let cases = [
            (0, 1),
            (1, 2 + 14),
            (-1, 2 + 14),
            (8191, 2 + 14),
            (-8191, 2 + 14),
            (8192, 2 + 14),
            (-8192, 3 + 17),
            (8193, 3 + 17),
            (65536, 3 + 17),
            (-65535, 3 + 17),
            (-65536, 4 + 20),
            (65537, 4 + 20),
            (524288, 4 + 20),
            (-524287, 4 + 20),
            (-524288, 4 + 64),
            (524289, 4 + 64),
            (i64::MAX / 4, 4 + 64),
        ];
        for (dod, ts_bits) in cases {
            assert_eq!(sample2_bits(dod), ts_bits + 1, "dod {dod}");
        }
    }

    #[test]
    fn trailing_empty_byte_rule() {
        // 1 sample: 2 + 6 (t0) + 8 (v0) bytes, plus the empty byte.
        let mut e = XorEncoder::new();
        e.append(T0, 42.0);
        assert_eq!(e.bytes().len(), 2 + 6 + 8 + 1);
        assert_eq!(e.bytes().last(), Some(&0));
        roundtrip_bits(&[(T0, 42.0)]);
        // Decoding ignores it, and also works without it.
        let d = e.bytes();
        assert_eq!(decode(&d[..d.len() - 1]).unwrap(), [(T0, 42.0)]);

        // 2 samples with an equal value: the stream ends with a single '0'
        // bit after the whole-byte delta, so there is no empty byte.
        let mut e = XorEncoder::new();
        e.append(T0, 42.0);
        e.append(T0 + 15_000, 42.0);
        assert_eq!(e.bytes().len(), 2 + 6 + 8 + 2 + 1);
        assert_eq!(e.bytes().last(), Some(&0));

        // A value write of 8·k significant bits that ends on a byte boundary
        // leaves an empty byte; one of 8·k bits that does not end aligned or
        // ends aligned through single bits does not.
        // v1 = bits(1.0) ^ 0xff00000000000000 has L=0 -> window '11' + 5 + 6
        // + 8 sig bits = 21 bits; pad to a boundary with the next samples.
        let a = 1.0f64.to_bits();
        let b = a ^ (0xffu64 << 40); // L=16, T=40, S=8
        let mut e = XorEncoder::new();
        e.append(T0, f64::from_bits(a));
        e.append(T0 + 1, f64::from_bits(b)); // 2+5+6+8 = 21 bits
        // Sample 2: dod 0 (1 bit) + reuse '10' + 8 bits = 11 -> 32 bits total.
        e.append(T0 + 2, f64::from_bits(a));
        let bits_after = e.w.bit_len() - 8 * (2 + 6 + 8 + 1);
        assert_eq!(bits_after, 32);
        assert_eq!(
            e.bytes().len(),
            2 + 6 + 8 + 1 + 4 + 1,
            "empty byte after aligned 8-bit payload"
        );
        roundtrip_bits(&[
            (T0, f64::from_bits(a)),
            (T0 + 1, f64::from_bits(b)),
            (T0 + 2, f64::from_bits(a)),
        ]);
        // Now one more sample with an unchanged value: the empty byte is used.
        e.append(T0 + 3, f64::from_bits(a));
        assert_eq!(e.bytes().len(), 2 + 6 + 8 + 1 + 4 + 1);
    }

    #[test]
    fn special_values_roundtrip_bit_exact() {
        let specials = [
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::from_bits(0x7ff0_0000_0000_0002), // staleness marker
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            1.0,
        ];
        let samples: Vec<(i64, f64)> = specials
            .iter()
            .enumerate()
            .map(|(i, &v)| (T0 + i as i64 * 15_000, v))
            .collect();
        roundtrip_bits(&samples);
        // Every ordered pair as a 2-sample chunk, exercising sample 1's window.
        for &a in &specials {
            for &b in &specials {
                roundtrip_bits(&[(T0, a), (T0 + 1, b), (T0 + 2, a)]);
            }
        }
    }

    #[test]
    fn sixty_four_significant_bits_and_wide_windows() {
        // x with L = T = 0 has S = 64, written as 0 in the 6-bit field.
        let a = 0x8000_0000_0000_0001u64;
        roundtrip_bits(&[
            (0, 0.0),
            (1, f64::from_bits(a)),
            (2, 0.0),
            (3, f64::from_bits(a)),
        ]);
        // Window reuse with more than 62 significant bits.
        let b = 0x8000_0000_0000_0003u64;
        roundtrip_bits(&[
            (0, 0.0),
            (1, f64::from_bits(a)),
            (2, f64::from_bits(a ^ b)),
            (3, 0.0),
        ]);
        // Leading zeros above 31 are clamped.
        roundtrip_bits(&[
            (0, 0.0),
            (1, f64::from_bits(1)),
            (2, f64::from_bits(3)),
            (3, f64::from_bits(0x7)),
        ]);
    }

    #[test]
    fn extreme_timestamps_roundtrip() {
        roundtrip_bits(&[
            (i64::MIN, 1.0),
            (i64::MAX, 2.0),
            (i64::MIN, 3.0),
            (0, 4.0),
            (-5, 5.0),
        ]);
        roundtrip_bits(&[(-1_000, 1.0), (-999, 1.0), (-10_000_000, 1.0)]);
    }

    #[test]
    fn truncated_chunks_are_errors() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (T0 + i * 15_000, (i as f64) * 1.5))
            .collect();
        let data = encode(&samples).unwrap();
        for cut in 0..data.len() {
            let d = &data[..cut];
            let mut ts = vec![7];
            let mut vs = vec![7.0];
            let res = decode_into(d, &mut ts, &mut vs);
            // The last bytes may only hold padding bits of the final sample.
            if res.is_ok() {
                assert!(cut + 1 >= data.len(), "cut at {cut} decoded");
                assert_eq!(ts.len(), 121);
            } else {
                assert_eq!(
                    (ts.as_slice(), vs.as_slice()),
                    (&[7][..], &[7.0][..]),
                    "rolled back"
                );
            }
            let it = XorIter::new(d);
            if let Ok(it) = it {
                let all: Result<Vec<_>> = it.collect();
                assert_eq!(all.is_ok(), res.is_ok(), "iter and bulk agree at cut {cut}");
            }
        }
    }

    #[test]
    fn corrupt_window_is_an_error() {
        // Sample 1 with window L=31, S=63 (> 64 bits).
        let mut w = BitWriter::from_vec(vec![0, 2, 0]);
        for _ in 0..8 {
            w.write_byte(0);
        }
        w.write_byte(1);
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(63, 6);
        w.write_bits(u64::MAX, 63);
        let d = w.into_vec();
        assert!(matches!(decode(&d), Err(Error::Corrupt { .. })));
    }

    /// A chunk of `n` samples whose sample `bad_at` (≥ 2) has an XOR window
    /// of 31 leading + 63 significant bits; every other sample after the
    /// first has a new 64-bit window, so the stream is long.
    fn chunk_with_bad_window(n: u16, bad_at: u16) -> Vec<u8> {
        let mut w = BitWriter::from_vec(n.to_be_bytes().to_vec());
        let mut b = Vec::new();
        put_varint(&mut b, T0);
        for x in b {
            w.write_byte(x);
        }
        w.write_bits(0, 64);
        w.write_byte(100); // d1 = 100
        let wide_value = |w: &mut BitWriter, leading: u64, sig: u64| {
            w.write_bits(0b11, 2);
            w.write_bits(leading, 5);
            w.write_bits(sig & 63, 6);
            w.write_bits(0x8000_0000_0000_0001 >> leading, sig as u32);
        };
        wide_value(&mut w, 0, 64);
        for i in 2..n {
            w.write_bit(false); // dod 0
            if i == bad_at {
                wide_value(&mut w, 31, 63);
            } else {
                wide_value(&mut w, 0, 64);
            }
        }
        w.into_vec()
    }

    #[test]
    fn corrupt_window_anywhere_is_an_error() {
        let n = 100;
        let ok = chunk_with_bad_window(n, u16::MAX);
        assert_eq!(decode(&ok).unwrap().len(), usize::from(n));
        // In the fast region, near the end and in the tail.
        for bad_at in [2, 10, 50, 95, 98, 99] {
            let d = chunk_with_bad_window(n, bad_at);
            assert!(
                matches!(decode(&d), Err(Error::Corrupt { .. })),
                "bad window at {bad_at}"
            );
            let mut it = XorIter::new(&d).unwrap();
            for i in 0..bad_at {
                assert!(
                    it.next_sample().unwrap().is_some(),
                    "sample {i} before the bad one"
                );
            }
            assert!(matches!(it.next_sample(), Err(Error::Corrupt { .. })));
            assert!(
                it.next_sample().unwrap().is_none(),
                "exhausted after an error"
            );
        }
    }

    #[test]
    fn huge_count_small_data_does_not_allocate_much() {
        let mut d = vec![0xff, 0xff, 0];
        d.extend_from_slice(&[0; 8]);
        d.push(1);
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        assert!(decode_into(&d, &mut ts, &mut vs).is_err());
        assert!(ts.capacity() <= 1 + d.len() * 4);
    }

    #[test]
    fn decodes_prometheus_style_iterator_start_without_window() {
        // A '10' (reuse) before any window decodes as a 64-bit window, as in
        // Prometheus' decoder.
        let mut w = BitWriter::from_vec(vec![0, 2, 0]);
        for _ in 0..8 {
            w.write_byte(0);
        }
        w.write_byte(1);
        w.write_bits(0b10, 2);
        w.write_bits(1.5f64.to_bits(), 64);
        let d = w.into_vec();
        assert_eq!(decode(&d).unwrap(), [(0, 0.0), (1, 1.5)]);
    }

    fn arb_samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        let step = prop_oneof![
            4 => Just(15_000i64),
            3 => -2_000i64..2_000,
            2 => -600_000i64..600_000,
            1 => any::<i64>().prop_map(|x| x >> 8),
            1 => any::<i64>(),
        ];
        let value = prop_oneof![
            3 => any::<u64>().prop_map(f64::from_bits),
            2 => (0u32..100_000).prop_map(|x| f64::from(x) / 1000.0),
            1 => Just(0.0),
        ];
        (
            any::<i64>().prop_map(|t| t >> 20),
            prop::collection::vec((step, value), 0..300),
        )
            .prop_map(|(t0, steps)| {
                let mut t = t0;
                steps
                    .into_iter()
                    .map(|(d, v)| {
                        t = t.wrapping_add(d);
                        (t, v)
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn prop_roundtrip(samples in arb_samples()) {
            roundtrip_bits(&samples);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut ts = Vec::new();
            let mut vs = Vec::new();
            let bulk = decode_into(&data, &mut ts, &mut vs);
            if let Ok(it) = XorIter::new(&data) {
                let iter: Result<Vec<(i64, f64)>> = it.collect();
                match (bulk, iter) {
                    (Ok(()), Ok(samples)) => {
                        prop_assert_eq!(samples.len(), ts.len());
                        for (i, (t, v)) in samples.into_iter().enumerate() {
                            prop_assert_eq!(t, ts[i]);
                            prop_assert_eq!(v.to_bits(), vs[i].to_bits());
                        }
                    }
                    (Err(_), Err(_)) => prop_assert!(ts.is_empty() && vs.is_empty()),
                    (b, i) => prop_assert!(false, "bulk {:?} vs iter {:?}", b.is_ok(), i.is_ok()),
                }
            } else {
                prop_assert!(bulk.is_err());
            }
        }

        #[test]
        fn prop_mutated_chunks_never_panic(samples in arb_samples(), flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..8), cut in any::<usize>()) {
            let mut data = encode(&samples).unwrap();
            for (i, b) in flips {
                let n = data.len();
                data[i % n] ^= 1 << b;
            }
            let cut = cut % (data.len() + 1);
            let d = &data[..cut];
            // The bulk decoder (fast path) and the iterator (general path)
            // must agree on every input.
            let bulk = decode(d);
            match XorIter::new(d) {
                Ok(it) => {
                    let iter: Result<Vec<(i64, f64)>> = it.collect();
                    match (bulk, iter) {
                        (Ok(a), Ok(b)) => {
                            let a: Vec<(i64, u64)> = a.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
                            let b: Vec<(i64, u64)> = b.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
                            prop_assert_eq!(a, b);
                        }
                        (Err(_), Err(_)) => {}
                        (a, b) => prop_assert!(false, "bulk ok {} vs iter ok {}", a.is_ok(), b.is_ok()),
                    }
                }
                Err(_) => prop_assert!(bulk.is_err()),
            }
        }
    }
}
