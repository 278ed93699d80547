//! The framing of a streamed remote-read answer
//! (`application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`):
//! `uvarint(len) | BE32 CRC32C(msg) | msg`, frames read as the body arrives.

use bytes::{Buf, Bytes, BytesMut};

use crate::SidecarError;

/// Prometheus' `DefaultChunkedReadLimit`: the largest frame accepted.
pub const MAX_FRAME: usize = 50 << 20;

/// Splits a byte stream into frame payloads.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame's message, checked; `None` until one is there.
    /// A length over [`MAX_FRAME`] is refused before anything is buffered
    /// for it.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, SidecarError> {
        let Some((len, n)) = uvarint(&self.buf)? else {
            return Ok(None);
        };
        if len > MAX_FRAME as u64 {
            return Err(SidecarError::Decode(format!(
                "remote read frame of {len} bytes is over the {MAX_FRAME}-byte limit"
            )));
        }
        let len = len as usize;
        if self.buf.len() < n + 4 + len {
            self.buf.reserve(n + 4 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(n);
        let crc = self.buf.get_u32();
        let msg = self.buf.split_to(len).freeze();
        let got = crc32c::crc32c(&msg);
        if got != crc {
            return Err(SidecarError::Decode(format!(
                "remote read frame checksum mismatch: frame says {crc:08x}, data has {got:08x}"
            )));
        }
        Ok(Some(msg))
    }

    /// Whether bytes of an unfinished frame are left (at the end of the
    /// body: a truncated answer).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// A uvarint at the start of `b`: value and length, `None` when incomplete.
fn uvarint(b: &[u8]) -> Result<Option<(u64, usize)>, SidecarError> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return Err(SidecarError::Decode(
                "remote read frame length overflows".into(),
            ));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= 10 {
        return Err(SidecarError::Decode(
            "remote read frame length overflows".into(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = msg.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn frames_split_anywhere() {
        let a = vec![7u8; 300];
        let b = b"second".to_vec();
        let mut all = frame(&a);
        all.extend(frame(&b));
        for cut in 0..all.len() {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            r.push(&all[..cut]);
            while let Some(f) = r.next_frame().expect("valid") {
                got.push(f.to_vec());
            }
            r.push(&all[cut..]);
            while let Some(f) = r.next_frame().expect("valid") {
                got.push(f.to_vec());
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
            assert!(!r.has_partial());
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut f = frame(b"hello");
        let last = f.len() - 1;
        f[last] ^= 1;
        let mut r = FrameReader::new();
        r.push(&f);
        assert!(r.next_frame().is_err(), "checksum");

        // A 1 TB length is refused while only its header is there.
        let mut r = FrameReader::new();
        r.push(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
        assert!(r.next_frame().is_err(), "size");

        let mut r = FrameReader::new();
        r.push(&[0xff; 11]);
        assert!(r.next_frame().is_err(), "overflow");
    }
}
