//! Chunk encodings (spec §2.1), chunk references, and the `chunks/NNNNNN`
//! segment files (spec §1.5): parsing single length-prefixed, CRC-checked
//! chunks and writing segment files.
//!
//! A segment is an 8-byte header (`85 BD 40 DD`, version 1, 3 zero bytes)
//! followed by chunks back to back, each `uvarint len | encoding | data |
//! CRC32C(encoding + data) BE32`. A chunk reference is
//! `segment_index << 32 | byte_offset`, where the segment index is the
//! 0-based position of the file in the sorted `chunks/` listing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::varint::{put_uvarint, uvarint};

/// Chunk encoding byte values found in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    /// Float samples, XOR-compressed.
    Xor = 1,
    /// Native histograms with integer counts.
    Histogram = 2,
    /// Native histograms with float counts.
    FloatHistogram = 3,
    /// Thanos' downsampled aggregate chunk.
    Aggr = 0xFF,
}

impl Encoding {
    /// The encoding for `b`, or [`Error::UnsupportedEncoding`].
    pub fn from_u8(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Encoding::Xor),
            2 => Ok(Encoding::Histogram),
            3 => Ok(Encoding::FloatHistogram),
            0xFF => Ok(Encoding::Aggr),
            other => Err(Error::UnsupportedEncoding(other)),
        }
    }

    /// The on-disk byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// Segment header length: magic, version byte, 3 padding bytes.
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Segment format version written and accepted.
pub const SEGMENT_VERSION: u8 = 1;
/// Prometheus' default segment size limit (512 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 << 20;
/// Bytes a chunk takes besides its data and length prefix: encoding + CRC.
const CHUNK_OVERHEAD: usize = 1 + 4;

const WHAT: &str = "chunk segment";

/// The 8 header bytes of a segment file.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let m = SEGMENT_MAGIC.to_be_bytes();
    [m[0], m[1], m[2], m[3], SEGMENT_VERSION, 0, 0, 0]
}

/// Checks the magic number and version at the start of a segment file.
pub fn check_segment_header(b: &[u8]) -> Result<()> {
    let Some(h) = b.first_chunk::<SEGMENT_HEADER_LEN>() else {
        return Err(Error::truncated(WHAT, 0, SEGMENT_HEADER_LEN, b.len()));
    };
    let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if magic != SEGMENT_MAGIC {
        return Err(Error::BadFormat {
            what: WHAT,
            detail: format!("magic {magic:#010x}, want {SEGMENT_MAGIC:#010x}"),
        });
    }
    if h[4] != SEGMENT_VERSION {
        return Err(Error::BadFormat {
            what: WHAT,
            detail: format!("version {}, want {SEGMENT_VERSION}", h[4]),
        });
    }
    Ok(())
}

/// The chunk reference for a byte offset in the segment at `segment_index`
/// (0-based position in the sorted segment list).
#[inline]
pub fn chunk_ref(segment_index: u32, offset: u32) -> u64 {
    (u64::from(segment_index) << 32) | u64::from(offset)
}

/// Splits a chunk reference into (segment index, byte offset).
#[inline]
pub fn split_ref(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// One chunk as stored: its encoding byte and data, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RawChunk<'a> {
    /// The encoding byte (see [`Encoding`]); kept raw so unknown encodings
    /// can still be passed through.
    pub encoding: u8,
    /// The chunk data (for XOR: `numSamples` BE16 + bit stream).
    pub data: &'a [u8],
}

impl<'a> RawChunk<'a> {
    /// The parsed encoding, or [`Error::UnsupportedEncoding`].
    pub fn encoding(&self) -> Result<Encoding> {
        Encoding::from_u8(self.encoding)
    }
}

/// Reads a chunk's length prefix: (data length, prefix length, total
/// encoded length).
fn read_len_prefix(buf: &[u8]) -> Result<(usize, usize, usize)> {
    let (len, n) = uvarint(buf).map_err(|e| match e {
        Error::Truncated { need, have, .. } => Error::truncated("chunk length", 0, need, have),
        Error::Corrupt { detail, .. } => Error::corrupt("chunk length", detail),
        other => other,
    })?;
    usize::try_from(len)
        .ok()
        .and_then(|l| Some((l, n, l.checked_add(n + CHUNK_OVERHEAD)?)))
        .ok_or_else(|| Error::corrupt("chunk length", format!("length {len} overflows")))
}

/// Total encoded length (uvarint len + 1 encoding byte + data + 4 CRC) of the
/// chunk starting at `buf[0]`, computed from the length prefix only.
///
/// Returns [`Error::Truncated`] if even the prefix is incomplete.
pub fn encoded_len(buf: &[u8]) -> Result<usize> {
    read_len_prefix(buf).map(|(_, _, total)| total)
}

/// Parses and CRC-checks the chunk starting at `buf[0]`; returns it and its
/// total encoded length.
pub fn parse_chunk(buf: &[u8]) -> Result<(RawChunk<'_>, usize)> {
    let (len, prefix, total) = read_len_prefix(buf)?;
    let Some(chunk) = buf.get(..total) else {
        return Err(Error::truncated("chunk", 0, total, buf.len()));
    };
    let (body, crc) = chunk[prefix..].split_at(1 + len);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(Error::Checksum {
            what: "chunk",
            offset: 0,
            stored,
            computed,
        });
    }
    Ok((
        RawChunk {
            encoding: body[0],
            data: &body[1..],
        },
        total,
    ))
}

/// Appends one encoded chunk (`uvarint len | encoding | data | crc`) to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, encoding: u8, data: &[u8]) {
    put_uvarint(out, data.len() as u64);
    let start = out.len();
    out.push(encoding);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The encoded length of a chunk with `data_len` data bytes.
pub fn chunk_encoded_size(data_len: usize) -> usize {
    let mut n = 1;
    let mut v = data_len as u64;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n + CHUNK_OVERHEAD + data_len
}

/// Writes chunks into `chunks/000001`, `chunks/000002`, … with buffered I/O.
///
/// A new segment is cut when the next chunk would make the current one larger
/// than the limit; a segment exceeds it only when it holds a single chunk
/// larger than the limit. No file is created until the first chunk is
/// written, so an empty block has no segment files.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    max: u64,
    cur: Option<Segment>,
    done: Vec<(String, u64)>,
}

#[derive(Debug)]
struct Segment {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
}

impl SegmentWriter {
    /// A writer with the default 512 MiB limit; creates `chunks_dir`.
    pub fn create(chunks_dir: &Path) -> Result<Self> {
        Self::with_max_segment_size(chunks_dir, DEFAULT_MAX_SEGMENT_SIZE)
    }

    /// A writer with a custom segment size limit; creates `chunks_dir`.
    pub fn with_max_segment_size(chunks_dir: &Path, max: u64) -> Result<Self> {
        std::fs::create_dir_all(chunks_dir).map_err(|e| io_err(chunks_dir, e))?;
        Ok(SegmentWriter {
            dir: chunks_dir.to_path_buf(),
            max,
            cur: None,
            done: Vec::new(),
        })
    }

    /// Writes one chunk and returns its reference.
    pub fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        let size = chunk_encoded_size(data.len()) as u64;
        let cut = match &self.cur {
            None => true,
            Some(s) => {
                let has_chunks = s.size > SEGMENT_HEADER_LEN as u64;
                let too_big = s.size + size > self.max;
                // Offsets must fit the low 32 bits of a reference.
                let unaddressable = s.size > u64::from(u32::MAX);
                has_chunks && (too_big || unaddressable)
            }
        };
        if cut {
            self.cut()?;
        }
        let index = u32::try_from(self.done.len()).map_err(|_| Error::InvalidInput {
            what: "segment writer",
            detail: "more than 2^32 segments".into(),
        })?;
        let seg = self.cur.as_mut().ok_or_else(|| Error::InvalidInput {
            what: "segment writer",
            detail: "no open segment".into(),
        })?;
        let offset = u32::try_from(seg.size).map_err(|_| Error::InvalidInput {
            what: "segment writer",
            detail: format!("segment offset {} does not fit 32 bits", seg.size),
        })?;
        let mut buf = Vec::with_capacity(size as usize);
        encode_chunk(&mut buf, encoding, data);
        seg.out.write_all(&buf).map_err(|e| io_err(&seg.path, e))?;
        seg.size += size;
        Ok(chunk_ref(index, offset))
    }

    /// Closes the current segment (if any) and opens the next one.
    fn cut(&mut self) -> Result<()> {
        self.close_current()?;
        let name = format!("{:06}", self.done.len() + 1);
        let path = self.dir.join(&name);
        let f = File::create(&path).map_err(|e| io_err(&path, e))?;
        let mut out = BufWriter::with_capacity(1 << 16, f);
        out.write_all(&segment_header())
            .map_err(|e| io_err(&path, e))?;
        self.cur = Some(Segment {
            name,
            path,
            out,
            size: SEGMENT_HEADER_LEN as u64,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(seg) = self.cur.take() {
            let f = seg
                .out
                .into_inner()
                .map_err(|e| io_err(&seg.path, e.into_error()))?;
            f.sync_all().map_err(|e| io_err(&seg.path, e))?;
            self.done.push((format!("chunks/{}", seg.name), seg.size));
        }
        Ok(())
    }

    /// Flushes and syncs the files; returns `("chunks/000001", size)` per
    /// segment, in order.
    pub fn finish(mut self) -> Result<Vec<(String, u64)>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Iterates over the chunks of a whole segment file (header included),
/// yielding each chunk's reference offset and the chunk.
pub fn iter_segment(file: &[u8]) -> Result<SegmentChunks<'_>> {
    check_segment_header(file)?;
    Ok(SegmentChunks {
        file,
        pos: SEGMENT_HEADER_LEN,
    })
}

/// Iterator returned by [`iter_segment`]; stops after the first error.
#[derive(Debug, Clone)]
pub struct SegmentChunks<'a> {
    file: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for SegmentChunks<'a> {
    type Item = Result<(usize, RawChunk<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.file.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let at = self.pos;
        match parse_chunk(rest) {
            Ok((c, n)) => {
                self.pos += n;
                Some(Ok((at, c)))
            }
            Err(e) => {
                self.pos = self.file.len();
                Some(Err(relocate(e, at)))
            }
        }
    }
}

fn relocate(e: Error, at: usize) -> Error {
    match e {
        Error::Truncated {
            what,
            offset,
            need,
            have,
        } => Error::Truncated {
            what,
            offset: offset + at,
            need,
            have,
        },
        Error::Checksum {
            what,
            offset,
            stored,
            computed,
        } => Error::Checksum {
            what,
            offset: offset + at,
            stored,
            computed,
        },
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::xor::{XorEncoder, decode};
    use proptest::prelude::*;

    #[test]
    fn encoding_bytes() {
        assert_eq!(Encoding::from_u8(1).unwrap(), Encoding::Xor);
        assert_eq!(Encoding::from_u8(2).unwrap(), Encoding::Histogram);
        assert_eq!(Encoding::from_u8(3).unwrap(), Encoding::FloatHistogram);
        assert_eq!(Encoding::from_u8(0xff).unwrap(), Encoding::Aggr);
        for b in [0u8, 4, 5, 6, 0x81, 0xfe] {
            assert!(matches!(Encoding::from_u8(b), Err(Error::UnsupportedEncoding(x)) if x == b));
        }
        assert_eq!(Encoding::Aggr.as_u8(), 0xff);
    }

    #[test]
    fn refs_roundtrip() {
        assert_eq!(chunk_ref(0, 8), 8);
        assert_eq!(chunk_ref(1, 8), (1 << 32) | 8);
        assert_eq!(split_ref(chunk_ref(7, 0xdead_beef)), (7, 0xdead_beef));
    }

    #[test]
    fn segment_header_checks() {
        let h = segment_header();
        assert_eq!(h, [0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0]);
        check_segment_header(&h).unwrap();
        assert!(matches!(
            check_segment_header(&h[..7]),
            Err(Error::Truncated { .. })
        ));
        let mut bad = h;
        bad[0] = 0;
        assert!(matches!(
            check_segment_header(&bad),
            Err(Error::BadFormat { .. })
        ));
        let mut bad = h;
        bad[4] = 2;
        assert!(matches!(
            check_segment_header(&bad),
            Err(Error::BadFormat { .. })
        ));
    }

    #[test]
    fn spec_example_chunk_prefix() {
        // `ab02 (len=299) | 01 (XOR)` from a real segment.
        let data = vec![0u8; 299];
        let mut b = Vec::new();
        encode_chunk(&mut b, 1, &data);
        assert_eq!(&b[..3], [0xab, 0x02, 0x01]);
        assert_eq!(encoded_len(&b).unwrap(), 2 + 1 + 299 + 4);
        assert_eq!(chunk_encoded_size(299), b.len());
        assert!(matches!(encoded_len(&[0xab]), Err(Error::Truncated { .. })));
        assert!(matches!(encoded_len(&[]), Err(Error::Truncated { .. })));
        let (c, n) = parse_chunk(&b).unwrap();
        assert_eq!((c.encoding, c.data.len(), n), (1, 299, b.len()));
        assert!(matches!(
            parse_chunk(&b[..b.len() - 1]),
            Err(Error::Truncated { .. })
        ));
    }

    fn sample_chunk(seed: i64, n: i64) -> Vec<u8> {
        let mut e = XorEncoder::new();
        for i in 0..n {
            e.append(1_704_069_000_000 + i * 15_000, (seed * 1000 + i * 7) as f64);
        }
        e.into_bytes()
    }

    #[test]
    fn segment_writer_roundtrip_and_crc_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let mut w = SegmentWriter::create(&chunks_dir).unwrap();
        let datas: Vec<Vec<u8>> = (0..10).map(|s| sample_chunk(s, 120)).collect();
        let mut refs = Vec::new();
        for d in &datas {
            refs.push(w.write_chunk(Encoding::Xor as u8, d).unwrap());
        }
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "chunks/000001");
        assert_eq!(refs[0], 8, "first ref of a block");
        let bytes = std::fs::read(chunks_dir.join("000001")).unwrap();
        assert_eq!(bytes.len() as u64, files[0].1);
        check_segment_header(&bytes).unwrap();
        for (d, &r) in datas.iter().zip(&refs) {
            let (seg, off) = split_ref(r);
            assert_eq!(seg, 0);
            let (c, _) = parse_chunk(&bytes[off as usize..]).unwrap();
            assert_eq!(c.encoding().unwrap(), Encoding::Xor);
            assert_eq!(c.data, d.as_slice());
            assert_eq!(decode(c.data).unwrap().len(), 120);
        }
        let listed: Vec<usize> = iter_segment(&bytes)
            .unwrap()
            .map(|c| c.unwrap().0)
            .collect();
        assert_eq!(
            listed,
            refs.iter()
                .map(|&r| split_ref(r).1 as usize)
                .collect::<Vec<_>>()
        );

        // Flip one data bit in the third chunk: its CRC no longer matches.
        let mut bad = bytes.clone();
        let off = split_ref(refs[2]).1 as usize;
        bad[off + 10] ^= 0x10;
        assert!(matches!(
            parse_chunk(&bad[off..]),
            Err(Error::Checksum { .. })
        ));
        let res: Vec<_> = iter_segment(&bad).unwrap().collect();
        assert_eq!(res.len(), 3);
        assert!(matches!(res[2], Err(Error::Checksum { offset, .. }) if offset == off));
        // Flipping the encoding byte is also caught.
        let mut bad = bytes.clone();
        bad[off + 2] ^= 0x02;
        assert!(matches!(
            parse_chunk(&bad[off..]),
            Err(Error::Checksum { .. })
        ));
    }

    #[test]
    fn segment_writer_cuts_segments() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let d = sample_chunk(1, 120);
        let one = chunk_encoded_size(d.len()) as u64;
        // Room for exactly three chunks per segment.
        let max = SEGMENT_HEADER_LEN as u64 + 3 * one;
        let mut w = SegmentWriter::with_max_segment_size(&chunks_dir, max).unwrap();
        let refs: Vec<u64> = (0..5).map(|_| w.write_chunk(1, &d).unwrap()).collect();
        let files = w.finish().unwrap();
        assert_eq!(
            files,
            vec![
                ("chunks/000001".to_string(), max),
                ("chunks/000002".to_string(), 8 + 2 * one)
            ]
        );
        let seg_of: Vec<u32> = refs.iter().map(|&r| split_ref(r).0).collect();
        assert_eq!(seg_of, [0, 0, 0, 1, 1]);
        assert_eq!(split_ref(refs[3]).1, 8);
        for (i, (name, size)) in files.iter().enumerate() {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert_eq!(bytes.len() as u64, *size);
            let n = iter_segment(&bytes)
                .unwrap()
                .inspect(|c| assert!(c.is_ok()))
                .count();
            assert_eq!(n, if i == 0 { 3 } else { 2 });
        }
        for &r in &refs {
            let (seg, off) = split_ref(r);
            let bytes = std::fs::read(chunks_dir.join(format!("{:06}", seg + 1))).unwrap();
            assert_eq!(
                parse_chunk(&bytes[off as usize..]).unwrap().0.data,
                d.as_slice()
            );
        }

        // A chunk larger than the limit gets a segment of its own.
        let dir2 = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::with_max_segment_size(dir2.path(), 16).unwrap();
        let refs: Vec<u64> = (0..3).map(|_| w.write_chunk(1, &d).unwrap()).collect();
        assert_eq!(refs, [chunk_ref(0, 8), chunk_ref(1, 8), chunk_ref(2, 8)]);
        assert_eq!(w.finish().unwrap().len(), 3);
    }

    #[test]
    fn segment_writer_without_chunks_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let chunks_dir = dir.path().join("chunks");
        let w = SegmentWriter::create(&chunks_dir).unwrap();
        assert!(w.finish().unwrap().is_empty());
        assert!(chunks_dir.is_dir());
        assert_eq!(std::fs::read_dir(&chunks_dir).unwrap().count(), 0);
    }

    /// Tiny deterministic PRNG for fixtures.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Oracle check: promtool 2.42 writes blocks from an OpenMetrics fixture;
    /// every chunk must decode to the fixture's samples and re-encode to the
    /// same bytes. Needs promtool (CI installs it; elsewhere it is skipped
    /// with a message when promtool is missing).
    #[test]
    fn promtool_chunks_reencode_byte_identical() {
        if !crate::testutil::have_promtool() {
            return;
        }
        use crate::xor::encode;
        use std::collections::BTreeMap;
        use std::fmt::Write as _;

        let t0: i64 = 1_704_069_000_000;
        let mut rng = 42u64;
        let mut series: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
        // Regular counter.
        let mut v = 0.0;
        series.push((
            "c_total{k=\"counter\"}".into(),
            (0..1000)
                .map(|i| {
                    v += (splitmix(&mut rng) % 300) as f64;
                    (t0 + i * 15_000, v)
                })
                .collect(),
        ));
        // Gauge with 3 decimals.
        series.push((
            "g{k=\"gauge\"}".into(),
            (0..1000)
                .map(|i| {
                    (
                        t0 + i * 15_000,
                        ((20.0 + 5.0 * (i as f64 / 10.0).sin()) * 1000.0).round() / 1000.0,
                    )
                })
                .collect(),
        ));
        // Jittered timestamps, every dod bucket, arbitrary finite values and specials.
        let jumps = [
            8192, -8192, 8193, 65536, -65536, 65537, 524288, -524288, 524289, -524287, 3_600_000,
            1, -1,
        ];
        // OpenMetrics `NaN` is stored as Go's math.NaN(), 0x7ff8000000000001.
        let go_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let specials = [
            go_nan,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            5e-324,
            1e308,
            1e-300,
        ];
        let mut t = t0;
        let mut d = 15_000i64;
        let mut jit = Vec::new();
        for i in 0..700usize {
            let dod = if i % 7 == 3 {
                jumps[(i / 7) % jumps.len()]
            } else {
                (splitmix(&mut rng) % 4001) as i64 - 2000
            };
            d = (d + dod).clamp(1, 2_000_000);
            t += d;
            let v = if i % 11 == 5 {
                specials[(i / 11) % specials.len()]
            } else {
                let x = f64::from_bits(splitmix(&mut rng));
                if x.is_finite() { x } else { 1.5 }
            };
            jit.push((t, v));
        }
        series.push(("j{k=\"jitter\"}".into(), jit));

        let mut om = String::new();
        for (name, samples) in &series {
            for &(t, v) in samples {
                let vs = if v.is_nan() {
                    "NaN".to_string()
                } else if v.is_infinite() {
                    if v > 0.0 {
                        "+Inf".into()
                    } else {
                        "-Inf".into()
                    }
                } else {
                    format!("{v:e}")
                };
                writeln!(
                    om,
                    "{name} {vs} {}.{:03}",
                    t.div_euclid(1000),
                    t.rem_euclid(1000)
                )
                .unwrap();
            }
        }
        om.push_str("# EOF\n");
        let dir = tempfile::tempdir().unwrap();
        let om_path = dir.path().join("data.om");
        std::fs::write(&om_path, om).unwrap();
        let out = dir.path().join("blocks");
        let st = std::process::Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(&out)
            .output()
            .expect("promtool not found: apt-get install prometheus");
        assert!(
            st.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );

        let mut want: BTreeMap<(i64, u64), usize> = BTreeMap::new();
        for (_, samples) in &series {
            for &(t, v) in samples {
                *want.entry((t, v.to_bits())).or_default() += 1;
            }
        }
        let mut got: BTreeMap<(i64, u64), usize> = BTreeMap::new();
        let (mut chunks, mut trailing) = (0, 0);
        for block in std::fs::read_dir(&out).unwrap() {
            let cdir = block.unwrap().path().join("chunks");
            let mut files: Vec<_> = std::fs::read_dir(&cdir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files {
                let bytes = std::fs::read(&f).unwrap();
                for c in iter_segment(&bytes).unwrap() {
                    let (_, c) = c.unwrap();
                    assert_eq!(c.encoding().unwrap(), Encoding::Xor);
                    let samples = decode(c.data).unwrap();
                    for &(t, v) in &samples {
                        *got.entry((t, v.to_bits())).or_default() += 1;
                    }
                    assert_eq!(
                        encode(&samples).unwrap(),
                        c.data,
                        "re-encoded chunk differs in {}",
                        f.display()
                    );
                    chunks += 1;
                    if c.data.last() == Some(&0) {
                        trailing += 1;
                    }
                }
            }
        }
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n)| got.get(k) != Some(n))
            .take(10)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, n)| want.get(k) != Some(n))
            .take(10)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "decoded samples differ from the fixture: missing {missing:x?}, extra {extra:x?}"
        );
        eprintln!(
            "promtool: {chunks} chunks re-encoded byte-identical ({trailing} end in a zero byte)"
        );
        assert!(chunks > 20);
    }

    proptest! {
        #[test]
        fn prop_parse_chunk_never_panics(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = encoded_len(&data);
            if let Ok((c, n)) = parse_chunk(&data) {
                prop_assert!(n <= data.len());
                prop_assert_eq!(c.data.len() + 1 + 4 + (n - c.data.len() - 5), n);
            }
            let mut file = segment_header().to_vec();
            file.extend_from_slice(&data);
            for c in iter_segment(&file).unwrap() {
                let _ = c;
            }
        }

        #[test]
        fn prop_chunk_roundtrip(enc in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut b = Vec::new();
            encode_chunk(&mut b, enc, &data);
            prop_assert_eq!(b.len(), chunk_encoded_size(data.len()));
            let (c, n) = parse_chunk(&b).unwrap();
            prop_assert_eq!((c.encoding, c.data, n), (enc, data.as_slice(), b.len()));
        }
    }
}
