//! LEB128 (`uvarint`), zigzag (`varint`) and big-endian fixed-width helpers,
//! all bounds-checked: decoding outside bytes never panics.

use crate::error::{Error, Result};

/// Appends `v` as an unsigned LEB128 varint.
#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint.
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a uvarint length followed by the bytes of `s`.
#[inline]
pub fn put_uvarint_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Decodes an unsigned LEB128 varint at the start of `b`; returns the value and
/// the number of bytes consumed. At most 10 bytes are read (Go's limit).
#[inline]
pub fn uvarint(b: &[u8]) -> Result<(u64, usize)> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &byte) in b.iter().enumerate() {
        if i == 10 {
            return Err(Error::corrupt("uvarint", "longer than 10 bytes"));
        }
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return Err(Error::corrupt("uvarint", "overflows 64 bits"));
            }
            return Ok((x | (u64::from(byte) << s), i + 1));
        }
        x |= u64::from(byte & 0x7f) << s;
        s += 7;
    }
    Err(Error::truncated("uvarint", 0, b.len() + 1, b.len()))
}

/// Decodes a zigzag varint at the start of `b`.
#[inline]
pub fn varint(b: &[u8]) -> Result<(i64, usize)> {
    let (u, n) = uvarint(b)?;
    Ok((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

/// A cursor over a byte slice with bounds-checked reads, used by the index and
/// segment decoders.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Decbuf<'a> {
    /// A cursor over `buf`; `what` names the structure in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Decbuf { buf, pos: 0, what }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::truncated(self.what, self.pos, n, self.remaining()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian u32.
    pub fn be32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    pub fn be64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads an unsigned varint.
    pub fn uvarint(&mut self) -> Result<u64> {
        let (v, n) = uvarint(self.rest()).map_err(|e| self.relocate(e))?;
        self.pos += n;
        Ok(v)
    }

    /// Reads an unsigned varint that must fit in 32 bits.
    pub fn uvarint32(&mut self) -> Result<u32> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| {
            Error::corrupt(
                self.what,
                format!("uvarint32 {v} at offset {} overflows", self.pos),
            )
        })
    }

    /// Reads a zigzag varint.
    pub fn varint(&mut self) -> Result<i64> {
        let (v, n) = varint(self.rest()).map_err(|e| self.relocate(e))?;
        self.pos += n;
        Ok(v)
    }

    /// Reads a uvarint-length-prefixed byte string.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.uvarint()?;
        let n =
            usize::try_from(n).map_err(|_| Error::corrupt(self.what, "string length overflows"))?;
        self.bytes(n)
    }

    /// Reads a uvarint-length-prefixed UTF-8 string.
    pub fn uvarint_str(&mut self) -> Result<&'a str> {
        let at = self.pos;
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b)
            .map_err(|_| Error::corrupt(self.what, format!("invalid UTF-8 string at offset {at}")))
    }

    fn relocate(&self, e: Error) -> Error {
        match e {
            Error::Truncated { need, have, .. } => {
                Error::truncated(self.what, self.pos, need, have)
            }
            Error::Corrupt { detail, .. } => {
                Error::corrupt(self.what, format!("{detail} at offset {}", self.pos))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_matches_spec_example() {
        let mut b = Vec::new();
        put_varint(&mut b, 1_704_069_000_000);
        assert_eq!(b, [0x80, 0xad, 0xeb, 0xa6, 0x98, 0x63]);
        assert_eq!(varint(&b).unwrap(), (1_704_069_000_000, 6));
    }

    #[test]
    fn uvarint_rejects_overlong_and_truncated() {
        assert!(uvarint(&[0x80; 11]).is_err());
        assert!(uvarint(&[0x80, 0x80]).is_err());
        assert!(uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .unwrap()
                .0,
            u64::MAX
        );
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(u: u64, i: i64) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            put_varint(&mut b, i);
            let (u2, n) = uvarint(&b).unwrap();
            let (i2, _) = varint(&b[n..]).unwrap();
            proptest::prop_assert_eq!((u, i), (u2, i2));
        }
    }
}
