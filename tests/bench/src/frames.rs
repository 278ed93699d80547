//! Incremental reader for Prometheus' streamed remote-read body
//! (`application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`):
//! a sequence of frames `uvarint(len(msg)) | BE32 CRC32C(msg) | msg`, the CRC
//! before the message.

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};

/// Longest uvarint of a u64.
const MAX_UVARINT_LEN: usize = 10;

/// Buffers body pieces as they arrive and yields whole, CRC-checked messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
    frames: u64,
    max_frame_len: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
    }

    /// The next complete message, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<Bytes>> {
        let mut len: u64 = 0;
        let mut header = 0;
        loop {
            let Some(&b) = self.buf.get(header) else {
                return Ok(None);
            };
            if header == MAX_UVARINT_LEN {
                bail!(
                    "frame {}: length uvarint longer than {MAX_UVARINT_LEN} bytes",
                    self.frames
                );
            }
            len |= u64::from(b & 0x7f) << (7 * header);
            header += 1;
            if b < 0x80 {
                break;
            }
        }
        let len = usize::try_from(len).context("frame length does not fit in memory")?;
        let need = header
            .checked_add(4)
            .and_then(|n| n.checked_add(len))
            .context("frame length overflows")?;
        if self.buf.len() < need {
            self.buf.reserve(need - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(header);
        let want = self.buf.get_u32();
        let msg = self.buf.split_to(len).freeze();
        let got = crc32c::crc32c(&msg);
        if got != want {
            bail!(
                "frame {}: CRC32C mismatch: header says {want:#010x}, message has {got:#010x}",
                self.frames
            );
        }
        self.frames += 1;
        self.max_frame_len = self.max_frame_len.max(len);
        Ok(Some(msg))
    }

    /// Checks that the body ended on a frame boundary.
    pub fn finish(&self) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            bail!(
                "body ends inside a frame: {} bytes left over after {} frames",
                self.buf.len(),
                self.frames
            );
        }
        Ok(())
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Largest message seen so far (bytes).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

/// Encodes one frame (for tests).
pub fn encode_frame(msg: &[u8], out: &mut Vec<u8>) {
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(msgs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            encode_frame(m, &mut out);
        }
        out
    }

    #[test]
    fn reads_frames_split_at_every_byte() {
        let msgs = vec![vec![], vec![7u8; 3], vec![1u8; 300], vec![9u8; 70_000]];
        let b = body(&msgs);
        for split in [1, 2, 3, 5, 127, 4096, b.len()] {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for piece in b.chunks(split) {
                r.push(piece);
                while let Some(m) = r.next_frame().expect("valid frames") {
                    got.push(m.to_vec());
                }
            }
            r.finish().expect("ends on a boundary");
            assert_eq!(got, msgs, "split {split}");
            assert_eq!(r.frames(), 4);
            assert_eq!(r.max_frame_len(), 70_000);
        }
    }

    #[test]
    fn bad_crc_and_truncation_are_errors() {
        let mut b = body(&[vec![1, 2, 3]]);
        let last = b.len() - 1;
        b[last] ^= 1;
        let mut r = FrameReader::new();
        r.push(&b);
        assert!(r.next_frame().is_err());

        let b = body(&[vec![1, 2, 3]]);
        let mut r = FrameReader::new();
        r.push(&b[..b.len() - 1]);
        assert!(
            r.next_frame()
                .expect("incomplete is not an error")
                .is_none()
        );
        assert!(r.finish().is_err());
    }
}
