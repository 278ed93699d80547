//! MSB-first bit streams (spec §2.2): the writer reproduces Prometheus' stream
//! byte for byte, including the empty byte a whole-byte write leaves at a byte
//! boundary; the reader is a bounds-checked 64-bit window for the XOR decoder.
//!
//! Bits are written most significant bit first within each byte, and multi-bit
//! fields go most significant bit first.

/// Mask of the low `n` bits, `n` in `0..=64`.
#[inline(always)]
fn low_mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// An MSB-first bit writer with Prometheus' byte layout.
///
/// The buffer always ends in the byte currently being filled; `free` is the
/// number of bits still unused in it (0 means the next bit starts a new byte).
///
/// Prometheus writes whole bytes (and multi-bit fields of 8·k bits) through a
/// byte path that, when the stream is byte-aligned, leaves an extra, empty byte
/// at the end with all 8 bits free. Single-bit writes that end on a byte
/// boundary leave no such byte. [`BitWriter::write_bits`] reproduces both cases,
/// which is what makes encoded XOR chunks byte-identical (spec §2.3, "trailing
/// zero byte").
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    free: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that appends after the bytes already in `buf` (which count as
    /// complete, e.g. a chunk header).
    pub fn from_vec(buf: Vec<u8>) -> Self {
        BitWriter { buf, free: 0 }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes one whole byte (Prometheus' byte path, see the type docs).
    #[inline]
    pub fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    /// Writes the low `n` bits of `v`, most significant first; `n` is clamped
    /// to 64.
    pub fn write_bits(&mut self, v: u64, n: u32) {
        let n0 = n.min(64);
        let mut n = n0;
        if n == 0 {
            return;
        }
        let v = v & low_mask(n);
        // Fill the partially used last byte.
        if self.free > 0 {
            let take = self.free.min(n);
            let part = (v >> (n - take)) & low_mask(take);
            self.free -= take;
            n -= take;
            if let Some(last) = self.buf.last_mut() {
                *last |= (part << self.free) as u8;
            }
        }
        while n >= 8 {
            n -= 8;
            self.buf.push((v >> n) as u8);
        }
        if n > 0 {
            self.buf.push(((v & low_mask(n)) << (8 - n)) as u8);
            self.free = 8 - n;
        }
        // Prometheus writes 8·k-bit fields byte by byte; a byte write that ends
        // byte-aligned leaves an empty byte behind.
        if n0.is_multiple_of(8) && self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
    }

    /// Number of bits written (excluding the unused bits of the last byte).
    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }

    /// The stream's bytes, including a trailing empty byte if there is one.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access to the bytes, e.g. to patch a header in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The stream's bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// An MSB-first bit reader over a byte slice.
///
/// The position is a bit offset. [`BitReader::peek64`] returns the next 64
/// bits with zeros past the end of the data, and [`BitReader::skip`] may move
/// past the end: callers decode optimistically and check
/// [`BitReader::overrun`] once per record, so the hot path has no per-field
/// length checks and still never reads out of bounds.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self::at(data, 0)
    }

    /// A reader at bit offset `bit_pos` of `data`.
    pub fn at(data: &'a [u8], bit_pos: usize) -> Self {
        BitReader {
            data,
            pos: bit_pos,
            end: data.len().saturating_mul(8),
        }
    }

    /// Current bit offset.
    #[inline(always)]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Total number of bits in the data.
    pub fn len_bits(&self) -> usize {
        self.end
    }

    /// True if more bits were consumed than the data holds.
    #[inline(always)]
    pub fn overrun(&self) -> bool {
        self.pos > self.end
    }

    /// The next 64 bits, MSB-aligned; bits past the end of the data read as 0.
    #[inline(always)]
    pub fn peek64(&self) -> u64 {
        let byte = self.pos >> 3;
        let sh = (self.pos & 7) as u32;
        match self.data.get(byte..byte + 9) {
            Some(c) => {
                let hi = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                // `sh == 0` shifts the ninth byte out entirely.
                (hi << sh) | (u64::from(c[8]) >> (8 - sh))
            }
            None => peek64_tail(self.data, self.pos),
        }
    }

    /// Advances by `n` bits (may pass the end; see [`BitReader::overrun`]).
    ///
    /// Callers check [`BitReader::overrun`] after every bounded group of
    /// skips (the XOR decoder: every sample, at most 145 bits), so the
    /// position stays far from `usize::MAX`.
    #[inline(always)]
    pub fn skip(&mut self, n: u32) {
        self.pos = self.pos.wrapping_add(n as usize);
    }

    /// Reads `n` bits (`1..=64`) as the low bits of the result.
    #[inline(always)]
    pub fn read_bits(&mut self, n: u32) -> u64 {
        let n = n.clamp(1, 64);
        let v = self.peek64() >> (64 - n);
        self.skip(n);
        v
    }

    /// Reads one bit.
    #[inline(always)]
    pub fn read_bit(&mut self) -> bool {
        self.read_bits(1) == 1
    }

    /// Reads 8 bits.
    #[inline(always)]
    pub fn read_byte(&mut self) -> u8 {
        self.read_bits(8) as u8
    }
}

/// [`BitReader::peek64`] within 9 bytes of the end. Takes its inputs by
/// value so that the reader never escapes to memory in the hot loop.
#[cold]
#[inline(never)]
fn peek64_tail(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let sh = (pos & 7) as u32;
    let mut c = [0u8; 9];
    if let Some(rest) = data.get(byte..) {
        let n = rest.len().min(9);
        c[..n].copy_from_slice(&rest[..n]);
    }
    let hi = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    (hi << sh) | (u64::from(c[8]) >> (8 - sh))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writer_packs_msb_first() {
        let mut w = BitWriter::new();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_bits(0x1f, 5);
        assert_eq!(w.bytes(), [0b1011_1111]);
        assert_eq!(w.bit_len(), 8);
        w.write_bits(0xabc, 12);
        assert_eq!(w.bytes(), [0xbf, 0xab, 0xc0]);
        assert_eq!(w.bit_len(), 20);
    }

    #[test]
    fn whole_byte_write_at_boundary_leaves_empty_byte() {
        let mut w = BitWriter::new();
        w.write_byte(0x12);
        assert_eq!(w.bytes(), [0x12, 0x00]);
        assert_eq!(w.bit_len(), 8);
        // The next bit goes into the empty byte.
        w.write_bit(true);
        assert_eq!(w.bytes(), [0x12, 0x80]);
        // A 64-bit write from an aligned position also leaves one.
        let mut w = BitWriter::from_vec(vec![0, 0]);
        w.write_bits(u64::MAX, 64);
        assert_eq!(w.bytes().len(), 2 + 8 + 1);
        // A field of single bits that ends aligned does not.
        let mut w = BitWriter::new();
        w.write_bits(0x7f, 7);
        w.write_bit(true);
        assert_eq!(w.bytes(), [0xff]);
        // Nor does a 12-bit write that ends aligned.
        let mut w = BitWriter::new();
        w.write_bits(0xf, 4);
        w.write_bits(0xabc, 12);
        assert_eq!(w.bytes(), [0xfa, 0xbc]);
        // An unaligned byte write does not add an empty byte.
        let mut w = BitWriter::new();
        w.write_bit(true);
        w.write_byte(0xff);
        assert_eq!(w.bytes(), [0xff, 0x80]);
    }

    #[test]
    fn reader_reads_what_writer_wrote() {
        let fields: Vec<(u64, u32)> = (1..=64u32)
            .map(|n| (0x9e37_79b9_7f4a_7c15u64.rotate_left(n) & low_mask(n), n))
            .collect();
        let mut w = BitWriter::new();
        for &(v, n) in &fields {
            w.write_bits(v, n);
        }
        let bytes = w.into_vec();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &fields {
            assert_eq!(r.read_bits(n), v, "field of {n} bits");
        }
        assert!(!r.overrun());
    }

    #[test]
    fn reader_pads_with_zeros_and_reports_overrun() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.peek64(), 0xff00_0000_0000_0000);
        r.skip(4);
        assert_eq!(r.read_bits(8), 0xf0);
        assert!(r.overrun());
        let r = BitReader::new(&[]);
        assert_eq!(r.peek64(), 0);
    }
}
