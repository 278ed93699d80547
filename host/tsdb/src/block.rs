//! Writes complete TSDB block directories (`chunks/`, `index`, `meta.json`,
//! `tombstones`) from float series or from pre-encoded chunks, the way
//! Prometheus' head and compactor do: chunks are cut like the 2.42 head
//! appender, the index is byte-identical to Prometheus' writer, and the block
//! is written into `<ULID>.tmp` and renamed into place.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ulid::Ulid;

use crate::chunk::{Encoding, SegmentWriter};
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexSeries, IndexWriter, collect_symbols};
use crate::meta::{
    BlockFile, BlockMeta, BlockMetaCompaction, CHUNKS_DIRNAME, INDEX_FILENAME, META_FILENAME,
    THANOS_META_VERSION_1, TOMBSTONES_FILENAME, ThanosMeta,
};
use crate::xor::XorEncoder;

/// Prometheus' default head chunk range (`--storage.tsdb.min-block-duration`).
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 3600 * 1000;
/// The chunk range `promtool tsdb create-blocks-from` uses for its default 2h
/// blocks: its block writer's head is twice the block duration.
pub const PROMTOOL_BACKFILL_CHUNK_RANGE: i64 = 2 * DEFAULT_CHUNK_RANGE;
/// Prometheus 2.42's target samples per chunk.
pub const DEFAULT_SAMPLES_PER_CHUNK: usize = 120;
/// An empty tombstones file: magic, version 1, CRC32C of no entries.
pub const EMPTY_TOMBSTONES: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00];

/// A pre-encoded chunk: (min_time, max_time, encoding byte, data), times
/// inclusive.
pub type EncodedChunk<D = Vec<u8>> = (i64, i64, u8, D);

/// Options for [`write_block`] and [`write_block_chunks`].
#[derive(Debug, Clone)]
pub struct BlockWriterOptions {
    /// Thanos section to write; its `version` is set to 1 and `files` is
    /// replaced by the files actually written.
    pub thanos: Option<ThanosMeta>,
    /// Block ID; a fresh one is generated when `None`.
    pub ulid: Option<Ulid>,
    /// Chunk range in ms for chunk cutting: chunks never cross a multiple of
    /// it. [`DEFAULT_CHUNK_RANGE`] for a Prometheus head,
    /// [`PROMTOOL_BACKFILL_CHUNK_RANGE`] to match promtool's backfill.
    pub chunk_range: i64,
    /// Target samples per chunk (cut hard at twice this).
    pub samples_per_chunk: usize,
    /// Compaction section; `None` gives level 1 with the block as its source.
    /// Empty `sources` are replaced by the block's own ULID.
    pub compaction: Option<BlockMetaCompaction>,
    /// Overrides the block's `minTime` (default: the first sample).
    pub min_time: Option<i64>,
    /// Overrides the block's `maxTime` (default: the last sample + 1).
    pub max_time: Option<i64>,
}

impl Default for BlockWriterOptions {
    fn default() -> Self {
        BlockWriterOptions {
            thanos: None,
            ulid: None,
            chunk_range: DEFAULT_CHUNK_RANGE,
            samples_per_chunk: DEFAULT_SAMPLES_PER_CHUNK,
            compaction: None,
            min_time: None,
            max_time: None,
        }
    }
}

/// Go's `rangeForTimestamp`: the end of the chunk-range-aligned window holding
/// `t` (Go's truncating division, as in Prometheus).
fn range_for_timestamp(t: i64, width: i64) -> i64 {
    let (t, w) = (i128::from(t), i128::from(width));
    clamp_i64((t / w) * w + w)
}

/// Go's `computeChunkEndTime`: at 1/4 fill, predicts an end time that spreads
/// the remaining samples evenly over chunks up to `max`.
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let (s, c, m) = (i128::from(start), i128::from(cur), i128::from(max));
    let denom = (c - s + 1) * 4;
    if denom == 0 {
        return max;
    }
    let n = (m - s) / denom;
    if n <= 1 {
        return max;
    }
    clamp_i64(s + (m - s) / n)
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Cuts `samples` (strictly increasing timestamps) into XOR chunks exactly like
/// the Prometheus 2.42 head appender: a chunk's end is first the end of its
/// chunk-range window, re-predicted when it holds `samples_per_chunk / 4`
/// samples, and a chunk is cut hard at `2 * samples_per_chunk` samples.
pub fn cut_xor_chunks(
    samples: &[(i64, f64)],
    chunk_range: i64,
    samples_per_chunk: usize,
) -> Result<Vec<EncodedChunk>> {
    if chunk_range <= 0 {
        return Err(Error::InvalidInput {
            what: "chunk cutting",
            detail: format!("chunk range {chunk_range} must be positive"),
        });
    }
    if samples_per_chunk == 0 || samples_per_chunk > usize::from(u16::MAX) / 2 {
        return Err(Error::InvalidInput {
            what: "chunk cutting",
            detail: format!("samples per chunk {samples_per_chunk} out of range 1..=32767"),
        });
    }
    let mut out = Vec::with_capacity(samples.len() / samples_per_chunk + 1);
    // (encoder, first sample time, last sample time)
    let mut cur: Option<(XorEncoder, i64, i64)> = None;
    let mut next_at = 0i64;
    for (i, &(t, v)) in samples.iter().enumerate() {
        if let Some((enc, min, max)) = cur.take() {
            if t <= max {
                return Err(Error::InvalidInput {
                    what: "chunk cutting",
                    detail: format!("sample {i}: timestamp {t} not after {max}"),
                });
            }
            let n = enc.num_samples();
            if n == samples_per_chunk / 4 {
                next_at = compute_chunk_end_time(min, max, next_at);
            }
            if t >= next_at || n >= samples_per_chunk * 2 {
                out.push((min, max, Encoding::Xor as u8, enc.into_bytes()));
            } else {
                cur = Some((enc, min, max));
            }
        }
        let (enc, _, max) = cur.get_or_insert_with(|| {
            next_at = range_for_timestamp(t, chunk_range);
            (XorEncoder::new(), t, t)
        });
        enc.try_append(t, v)?;
        *max = t;
    }
    if let Some((enc, min, max)) = cur {
        out.push((min, max, Encoding::Xor as u8, enc.into_bytes()));
    }
    Ok(out)
}

/// Number of samples in a chunk, from its header: the BE16 count for XOR and
/// histogram chunks, the count sub-chunk's count for Thanos aggregate chunks
/// (as Thanos' `AggrChunk.NumSamples`).
fn chunk_num_samples(encoding: u8, data: &[u8]) -> u64 {
    let be16 = |d: &[u8]| {
        d.get(..2)
            .map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]])))
    };
    if encoding == Encoding::Aggr as u8 {
        match crate::aggr::decode_aggr(data) {
            Ok(parts) => parts[0].map_or(0, |c| be16(c.data)),
            Err(_) => 0,
        }
    } else {
        be16(data)
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `<parent>/<ULID>/{chunks/000001.., index, meta.json, tombstones}`
/// from float series given in ascending label-set order (labels sorted by
/// name), samples in strictly increasing time order. Series without samples
/// are skipped. Returns the meta written: `minTime` = first sample, `maxTime`
/// = last sample + 1, stats, compaction level 1 with the block as source,
/// version 1, and the Thanos section (if given) with `files` filled in.
pub fn write_block(
    parent: &Path,
    series: impl IntoIterator<Item = (Vec<(String, String)>, Vec<(i64, f64)>)>,
    opts: &BlockWriterOptions,
) -> Result<BlockMeta> {
    let (range, spc) = (opts.chunk_range, opts.samples_per_chunk);
    let it = series.into_iter().map(move |(labels, samples)| {
        let chunks = cut_xor_chunks(&samples, range, spc).map_err(|e| match e {
            Error::InvalidInput { what, detail } => Error::InvalidInput {
                what,
                detail: format!("series {}: {detail}", fmt_labels(&labels)),
            },
            e => e,
        })?;
        Ok((labels, chunks))
    });
    write_inner(parent, it, opts)
}

/// Like [`write_block`], for pre-encoded chunks (e.g. 0xFF aggregate chunks
/// from the downsampler): `(labels, [(min_time, max_time, encoding, data)])`,
/// chunks in time order. `maxTime` defaults to the last chunk's `max_time + 1`.
pub fn write_block_chunks<D: AsRef<[u8]>>(
    parent: &Path,
    series: impl IntoIterator<Item = (Vec<(String, String)>, Vec<EncodedChunk<D>>)>,
    opts: &BlockWriterOptions,
) -> Result<BlockMeta> {
    write_inner(parent, series.into_iter().map(Ok), opts)
}

fn fmt_labels(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn write_inner<D: AsRef<[u8]>>(
    parent: &Path,
    series: impl Iterator<Item = Result<(Vec<(String, String)>, Vec<EncodedChunk<D>>)>>,
    opts: &BlockWriterOptions,
) -> Result<BlockMeta> {
    let ulid = opts.ulid.unwrap_or_else(Ulid::generate);
    let final_dir = parent.join(ulid.to_string());
    if final_dir.exists() {
        return Err(Error::InvalidInput {
            what: "block writer",
            detail: format!("{} already exists", final_dir.display()),
        });
    }
    let tmp = parent.join(format!("{ulid}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    let res = write_dir(&tmp, ulid, series, opts).and_then(|meta| {
        sync_dir(&tmp)?;
        fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, e))?;
        sync_dir(parent)?;
        Ok(meta)
    });
    if res.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directory fsync is best effort: not every platform allows opening one.
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
    Ok(())
}

fn write_file(path: PathBuf, bytes: &[u8]) -> Result<u64> {
    let mut f = File::create(&path).map_err(|e| io_err(&path, e))?;
    f.write_all(bytes).map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))?;
    Ok(bytes.len() as u64)
}

fn write_dir<D: AsRef<[u8]>>(
    dir: &Path,
    ulid: Ulid,
    series: impl Iterator<Item = Result<(Vec<(String, String)>, Vec<EncodedChunk<D>>)>>,
    opts: &BlockWriterOptions,
) -> Result<BlockMeta> {
    let mut segments = SegmentWriter::create(&dir.join(CHUNKS_DIRNAME))?;
    let mut written: Vec<IndexSeries> = Vec::new();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let (mut num_samples, mut num_chunks) = (0u64, 0u64);

    for item in series {
        let (labels, chunks) = item?;
        validate_labels(&labels, written.last().map(|(l, _)| l.as_slice()))?;
        if chunks.is_empty() {
            continue;
        }
        let mut metas = Vec::with_capacity(chunks.len());
        for (mint, maxt, encoding, data) in &chunks {
            if mint > maxt {
                return Err(Error::InvalidInput {
                    what: "block writer",
                    detail: format!(
                        "series {}: chunk min_time {mint} > max_time {maxt}",
                        fmt_labels(&labels)
                    ),
                });
            }
            let data = data.as_ref();
            let chunk_ref = segments.write_chunk(*encoding, data)?;
            metas.push(ChunkMeta {
                min_time: *mint,
                max_time: *maxt,
                chunk_ref,
            });
            min_time = min_time.min(*mint);
            max_time = max_time.max(*maxt);
            num_samples += chunk_num_samples(*encoding, data);
            num_chunks += 1;
        }
        written.push((labels, metas));
    }
    if written.is_empty() {
        return Err(Error::InvalidInput {
            what: "block writer",
            detail: "no series with samples: nothing to write".into(),
        });
    }
    let segment_files = segments.finish()?;

    let index_path = dir.join(INDEX_FILENAME);
    let file = File::create(&index_path).map_err(|e| io_err(&index_path, e))?;
    let symbols = collect_symbols(written.iter().map(|(l, _)| l.as_slice()));
    let mut iw = IndexWriter::new(BufWriter::with_capacity(1 << 16, file), symbols)?;
    for (labels, metas) in &written {
        iw.add_series(labels, metas)?;
    }
    let file = iw
        .finish()?
        .into_inner()
        .map_err(|e| io_err(&index_path, e.into_error()))?;
    file.sync_all().map_err(|e| io_err(&index_path, e))?;
    let index_size = file.metadata().map_err(|e| io_err(&index_path, e))?.len();

    write_file(dir.join(TOMBSTONES_FILENAME), &EMPTY_TOMBSTONES)?;

    let mut meta = BlockMeta::new(
        ulid,
        opts.min_time.unwrap_or(min_time),
        opts.max_time.unwrap_or(max_time.saturating_add(1)),
    );
    meta.stats.num_samples = num_samples;
    meta.stats.num_series = written.len() as u64;
    meta.stats.num_chunks = num_chunks;
    if let Some(c) = &opts.compaction {
        meta.compaction = c.clone();
        if meta.compaction.sources.is_empty() {
            meta.compaction.sources = vec![ulid];
        }
    }
    if let Some(t) = &opts.thanos {
        let mut t = t.clone();
        t.version = THANOS_META_VERSION_1;
        let mut files: Vec<BlockFile> = segment_files
            .iter()
            .map(|(name, size)| BlockFile {
                rel_path: name.clone(),
                size_bytes: i64::try_from(*size).unwrap_or(i64::MAX),
                hash: None,
            })
            .collect();
        files.push(BlockFile {
            rel_path: INDEX_FILENAME.into(),
            size_bytes: i64::try_from(index_size).unwrap_or(i64::MAX),
            hash: None,
        });
        // Thanos lists meta.json without a size.
        files.push(BlockFile {
            rel_path: META_FILENAME.into(),
            size_bytes: 0,
            hash: None,
        });
        files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        t.files = files;
        meta.thanos = Some(t);
    }
    meta.validate()?;
    write_file(dir.join(META_FILENAME), &meta.to_json())?;
    Ok(meta)
}

fn validate_labels(labels: &[(String, String)], prev: Option<&[(String, String)]>) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::InvalidInput {
            what: "block writer",
            detail: "series with an empty label set".into(),
        });
    }
    if labels.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(Error::InvalidInput {
            what: "block writer",
            detail: format!(
                "series {}: label names not strictly ascending",
                fmt_labels(labels)
            ),
        });
    }
    if let Some(p) = prev
        && labels <= p
    {
        return Err(Error::InvalidInput {
            what: "block writer",
            detail: format!(
                "series {} not after {}: series must be in ascending label order",
                fmt_labels(labels),
                fmt_labels(p)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chunk::{parse_chunk, split_ref};
    use crate::index::{IndexReader, SeriesEntry};
    use crate::meta::{BlockMeta, ThanosMeta};
    use std::collections::BTreeMap;
    use std::process::Command;

    type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

    fn ls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const T0: i64 = 1_704_069_000_000; // 2024-01-01T00:30:00Z

    /// The spec §4.2 demo fixture shape: 5 series, 15 s steps from T0.
    fn demo_series(n: i64, step: i64) -> Vec<Series> {
        let counter = |mul: f64| -> Vec<(i64, f64)> {
            (0..n)
                .map(|i| (T0 + i * step, (i as f64 * mul).floor()))
                .collect()
        };
        let mut gauge: Vec<(i64, f64)> = (0..n)
            .map(|i| {
                let v = 20.0 + 5.0 * (2.0 * std::f64::consts::PI * i as f64 / 240.0).sin();
                (T0 + i * step, (v * 1000.0).round() / 1000.0)
            })
            .collect();
        // Exercise special values.
        gauge[3].1 = f64::NAN;
        gauge[4].1 = f64::INFINITY;
        gauge[5].1 = -0.0;
        vec![
            (
                ls(&[
                    ("__name__", "demo_http_requests_total"),
                    ("instance", "host-1"),
                    ("job", "api"),
                    ("replica", "A"),
                ]),
                counter(153.3),
            ),
            (
                ls(&[
                    ("__name__", "demo_http_requests_total"),
                    ("instance", "host-1"),
                    ("job", "api"),
                    ("replica", "B"),
                ]),
                counter(153.3),
            ),
            (
                ls(&[
                    ("__name__", "demo_http_requests_total"),
                    ("instance", "host-2"),
                    ("job", "api"),
                    ("replica", "A"),
                ]),
                counter(77.7),
            ),
            (
                ls(&[
                    ("__name__", "demo_http_requests_total"),
                    ("instance", "host-3"),
                    ("job", "batch"),
                    ("replica", "A"),
                ]),
                counter(1.25),
            ),
            (
                ls(&[
                    ("__name__", "demo_temperature_celsius"),
                    ("instance", "host-1"),
                    ("job", "sensor"),
                    ("replica", "A"),
                ]),
                gauge,
            ),
        ]
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits()
    }

    /// Reads every series of a block back through the index and chunk files.
    fn read_block(dir: &Path) -> Vec<Series> {
        let index = IndexReader::new(fs::read(dir.join("index")).unwrap()).unwrap();
        let mut segs = Vec::new();
        let mut names: Vec<_> = fs::read_dir(dir.join("chunks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            segs.push(fs::read(p).unwrap());
        }
        let mut out = Vec::new();
        let mut e = SeriesEntry::default();
        for id in index.all_postings().unwrap() {
            index.series(id, &mut e).unwrap();
            let labels = index
                .resolve_labels(&e)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let mut samples = Vec::new();
            for c in &e.chunks {
                let (seg, off) = split_ref(c.chunk_ref);
                let (raw, _) = parse_chunk(&segs[seg as usize][off as usize..]).unwrap();
                assert_eq!(raw.encoding, 1);
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                crate::xor::decode_into(raw.data, &mut ts, &mut vs).unwrap();
                assert_eq!((ts[0], *ts.last().unwrap()), (c.min_time, c.max_time));
                samples.extend(ts.into_iter().zip(vs));
            }
            out.push((labels, samples));
        }
        out
    }

    fn assert_same_series(got: &[Series], want: &[Series]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.0, w.0);
            assert_eq!(g.1.len(), w.1.len(), "{:?}", g.0);
            for (a, b) in g.1.iter().zip(&w.1) {
                assert!(a.0 == b.0 && same(a.1, b.1), "{:?}: {a:?} != {b:?}", g.0);
            }
        }
    }

    #[test]
    fn head_chunk_cutting_matches_prometheus() {
        let sizes = |samples: &[(i64, f64)], range: i64| -> Vec<u16> {
            cut_xor_chunks(samples, range, 120)
                .unwrap()
                .iter()
                .map(|c| u16::from_be_bytes([c.3[0], c.3[1]]))
                .collect()
        };
        // 15 s steps from 00:30 to 02:00 in a 4h range (promtool backfill):
        // predicted end at 1/4 fill gives 120 per 30 min.
        let s: Vec<_> = (0..360).map(|i| (T0 + i * 15_000, i as f64)).collect();
        assert_eq!(
            sizes(&s, PROMTOOL_BACKFILL_CHUNK_RANGE),
            vec![120, 120, 120]
        );
        // 30 s steps over an aligned 2h window: 2 x 120.
        let start = 1_704_067_200_000; // 00:00
        let s: Vec<_> = (0..240).map(|i| (start + i * 30_000, i as f64)).collect();
        assert_eq!(sizes(&s, DEFAULT_CHUNK_RANGE), vec![120, 120]);
        // Never crosses a range boundary: 02:00 starts a new chunk.
        let s: Vec<_> = (0..20)
            .map(|i| (start + 7_140_000 + i * 15_000, 1.0))
            .collect();
        let chunks = cut_xor_chunks(&s, DEFAULT_CHUNK_RANGE, 120).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].0, start + 7_200_000);
        // Rate increase after the prediction: hard cut at 240.
        let mut s: Vec<_> = (0..30).map(|i| (start + i * 60_000, 1.0)).collect();
        s.extend((0..1000).map(|i| (start + 30 * 60_000 + i, 2.0)));
        assert_eq!(sizes(&s, DEFAULT_CHUNK_RANGE)[0], 240);
        // Bad input.
        assert!(cut_xor_chunks(&[(1, 1.0), (1, 2.0)], DEFAULT_CHUNK_RANGE, 120).is_err());
        assert!(cut_xor_chunks(&[(2, 1.0), (1, 2.0)], DEFAULT_CHUNK_RANGE, 120).is_err());
        assert!(cut_xor_chunks(&[], 0, 120).is_err());
        assert!(cut_xor_chunks(&[], 1, 0).is_err());
        assert!(cut_xor_chunks(&[], 1, 120).unwrap().is_empty());
        // Negative timestamps use Go's truncating division.
        assert_eq!(range_for_timestamp(-1, 10), 10);
        assert_eq!(range_for_timestamp(-15, 10), 0);
        assert_eq!(range_for_timestamp(20, 10), 30);
    }

    #[test]
    fn write_block_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let series = demo_series(1440, 15_000);
        let mut labels = BTreeMap::new();
        labels.insert("cluster".to_string(), "eu".to_string());
        let opts = BlockWriterOptions {
            thanos: Some(ThanosMeta::new(labels, 0, crate::meta::source::TEST)),
            ..Default::default()
        };
        let meta = write_block(tmp.path(), series.clone(), &opts).unwrap();
        let dir = tmp.path().join(meta.ulid.to_string());
        assert!(!tmp.path().join(format!("{}.tmp", meta.ulid)).exists());
        assert_eq!(meta.min_time, T0);
        assert_eq!(meta.max_time, T0 + 1439 * 15_000 + 1);
        assert_eq!(meta.stats.num_samples, 5 * 1440);
        assert_eq!(meta.stats.num_series, 5);
        assert_eq!(meta.compaction.level, 1);
        assert_eq!(meta.compaction.sources, vec![meta.ulid]);
        assert_eq!(fs::read(dir.join("tombstones")).unwrap(), EMPTY_TOMBSTONES);
        let on_disk = BlockMeta::parse(&fs::read(dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(on_disk, meta);
        let files = &meta.thanos.as_ref().unwrap().files;
        let paths: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(paths, vec!["chunks/000001", "index", "meta.json"]);
        assert_eq!(
            files[0].size_bytes as u64,
            fs::metadata(dir.join("chunks/000001")).unwrap().len()
        );
        assert_eq!(
            files[1].size_bytes as u64,
            fs::metadata(dir.join("index")).unwrap().len()
        );
        assert_eq!(
            meta.external_labels().get("cluster").map(String::as_str),
            Some("eu")
        );

        let got = read_block(&dir);
        assert_same_series(&got, &series);
        // 6h at 15 s across 2h boundaries: 4 windows (00:30-02:00, 02-04,
        // 04-06, 06-06:30) of 3, 4, 4, 1 chunks per series.
        assert_eq!(meta.stats.num_chunks, 5 * 12);
    }

    #[test]
    fn write_block_rejects_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let o = BlockWriterOptions::default();
        let s = |l: &[(&str, &str)], samples: Vec<(i64, f64)>| (ls(l), samples);
        // Unsorted series.
        let r = write_block(
            tmp.path(),
            vec![
                s(&[("a", "2")], vec![(1, 1.0)]),
                s(&[("a", "1")], vec![(1, 1.0)]),
            ],
            &o,
        );
        assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
        // Unsorted labels, unsorted samples, nothing to write.
        assert!(
            write_block(
                tmp.path(),
                vec![s(&[("b", "1"), ("a", "1")], vec![(1, 1.0)])],
                &o
            )
            .is_err()
        );
        assert!(
            write_block(
                tmp.path(),
                vec![s(&[("a", "1")], vec![(2, 1.0), (1, 1.0)])],
                &o
            )
            .is_err()
        );
        assert!(write_block(tmp.path(), vec![s(&[("a", "1")], vec![])], &o).is_err());
        // Nothing is left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        // An existing block dir is not overwritten.
        let id = Ulid::generate();
        let o = BlockWriterOptions {
            ulid: Some(id),
            ..Default::default()
        };
        write_block(tmp.path(), vec![s(&[("a", "1")], vec![(1, 1.0)])], &o).unwrap();
        assert!(write_block(tmp.path(), vec![s(&[("a", "1")], vec![(1, 1.0)])], &o).is_err());
    }

    #[test]
    fn write_block_chunks_with_aggregates() {
        use crate::aggr::{decode_aggr, encode_aggr};
        use crate::chunk::RawChunk;
        let tmp = tempfile::tempdir().unwrap();
        let xor = |vals: &[f64]| {
            let mut e = XorEncoder::new();
            for (i, v) in vals.iter().enumerate() {
                e.append(i as i64 * 300_000, *v);
            }
            e.into_bytes()
        };
        let (count, sum) = (xor(&[4.0, 4.0, 3.0]), xor(&[10.0, 11.0, 9.0]));
        let aggr = encode_aggr([
            Some(RawChunk {
                encoding: 1,
                data: &count,
            }),
            Some(RawChunk {
                encoding: 1,
                data: &sum,
            }),
            None,
            None,
            None,
        ]);
        let opts = BlockWriterOptions {
            thanos: Some(ThanosMeta::new(
                BTreeMap::new(),
                300_000,
                crate::meta::source::COMPACTOR,
            )),
            min_time: Some(0),
            max_time: Some(7_200_000),
            ..Default::default()
        };
        let meta = write_block_chunks(
            tmp.path(),
            vec![(
                ls(&[("__name__", "x")]),
                vec![(0i64, 600_000i64, 0xFFu8, aggr.clone())],
            )],
            &opts,
        )
        .unwrap();
        assert_eq!((meta.min_time, meta.max_time), (0, 7_200_000));
        assert_eq!(meta.stats.num_samples, 3);
        assert_eq!(meta.stats.num_chunks, 1);
        assert_eq!(meta.resolution(), 300_000);
        let dir = tmp.path().join(meta.ulid.to_string());
        let index = IndexReader::new(fs::read(dir.join("index")).unwrap()).unwrap();
        let mut e = SeriesEntry::default();
        index
            .series(index.all_postings().unwrap()[0], &mut e)
            .unwrap();
        assert_eq!(e.chunks[0].max_time, 600_000);
        let seg = fs::read(dir.join("chunks/000001")).unwrap();
        let (raw, _) = parse_chunk(&seg[split_ref(e.chunks[0].chunk_ref).1 as usize..]).unwrap();
        assert_eq!(raw.encoding, 0xFF);
        assert_eq!(raw.data, &aggr[..]);
        assert_eq!(decode_aggr(raw.data).unwrap()[1].unwrap().data, &sum[..]);
    }

    fn promtool() -> Option<PathBuf> {
        if !crate::testutil::have_promtool() {
            return None;
        }
        let out = Command::new("which").arg("promtool").output().ok()?;
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }

    /// Parses `promtool tsdb dump` lines: `{labels} value timestamp`.
    fn parse_dump(text: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let close = line.rfind('}').unwrap();
            let mut rest = line[close + 1..].split_whitespace();
            let v = rest.next().unwrap();
            let t: i64 = rest.next().unwrap().parse().unwrap();
            let v: f64 = match v {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            };
            out.entry(line[..=close].to_string())
                .or_default()
                .push((t, v));
        }
        out
    }

    fn dump_key(labels: &[(String, String)]) -> String {
        let mut l = labels.to_vec();
        l.sort_by_key(|(n, _)| (n != "__name__", n.clone()));
        let inner: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    }

    #[test]
    fn promtool_dump_reads_written_block() {
        let Some(promtool) = promtool() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let blocks = tmp.path().join("blocks");
        fs::create_dir(&blocks).unwrap();
        let series = demo_series(1440, 15_000);
        let meta = write_block(&blocks, series.clone(), &BlockWriterOptions::default()).unwrap();
        // Serve a copy: dump creates chunks_head/ and needs wal/.
        let copy = tmp.path().join("copy");
        fs::create_dir_all(copy.join("wal")).unwrap();
        let src = blocks.join(meta.ulid.to_string());
        let dst = copy.join(meta.ulid.to_string());
        fs::create_dir_all(dst.join("chunks")).unwrap();
        for f in ["index", "meta.json", "tombstones", "chunks/000001"] {
            fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        let out = Command::new(promtool)
            .args(["tsdb", "dump"])
            .arg(format!("--min-time={}", meta.min_time))
            .arg(format!("--max-time={}", meta.max_time))
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dumped = parse_dump(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(dumped.len(), series.len());
        let mut total = 0;
        for (labels, samples) in &series {
            let got = &dumped[&dump_key(labels)];
            assert_eq!(got.len(), samples.len(), "{labels:?}");
            for (a, b) in got.iter().zip(samples) {
                // %g prints shortest round-trip, so values parse back exactly.
                assert!(
                    a.0 == b.0 && (same(a.1, b.1) || (a.1.is_nan() && b.1.is_nan())),
                    "{a:?} vs {b:?}"
                );
                total += 1;
            }
        }
        assert_eq!(total, 5 * 1440);
    }

    fn go_float(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            format!("{v:?}")
        }
    }

    /// promtool's backfill and write_block must produce identical index and
    /// chunk files for the same samples.
    #[test]
    fn promtool_backfill_is_byte_identical() {
        let Some(promtool) = promtool() else { return };
        let tmp = tempfile::tempdir().unwrap();
        // Irregular ms timestamps exercise every dod bucket; 6h crosses three
        // 2h block boundaries.
        let mut series = demo_series(1440, 15_000);
        let mut t = T0 + 191;
        let mut jitter = Vec::new();
        for i in 0..90i64 {
            jitter.push((t, (i * 7919 % 1000) as f64 / 7.0));
            t += [1, 15_000, 8_192, 65_536, 524_288, 13, 999_999][(i % 7) as usize];
        }
        series.push((ls(&[("__name__", "demo_jitter"), ("job", "edge")]), jitter));
        // A 17 s step makes the 1/4-fill prediction depend on the chunk range
        // (2h range: 141-sample chunks, 4h range: 121), pinning promtool's.
        let odd = (0..1270i64).map(|i| (T0 + i * 17_000, i as f64)).collect();
        series.push((ls(&[("__name__", "demo_odd"), ("job", "edge")]), odd));
        series.sort_by(|a, b| a.0.cmp(&b.0));
        // promtool stores an OpenMetrics NaN with Go's math.NaN() bits.
        for (_, samples) in &mut series {
            for s in samples.iter_mut().filter(|s| s.1.is_nan()) {
                s.1 = f64::from_bits(0x7ff8_0000_0000_0001);
            }
        }
        let mut om = String::new();
        for (labels, samples) in &series {
            let name = &labels[0].1;
            let rest: Vec<String> = labels[1..]
                .iter()
                .map(|(n, v)| format!("{n}=\"{v}\""))
                .collect();
            for (t, v) in samples {
                om.push_str(&format!(
                    "{name}{{{}}} {} {}.{:03}\n",
                    rest.join(","),
                    go_float(*v),
                    t / 1000,
                    t % 1000
                ));
            }
        }
        om.push_str("# EOF\n");
        let om_path = tmp.path().join("data.om");
        fs::write(&om_path, om).unwrap();
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut blocks: Vec<BlockMeta> = fs::read_dir(&theirs)
            .unwrap()
            .map(|e| {
                BlockMeta::parse(&fs::read(e.unwrap().path().join("meta.json")).unwrap()).unwrap()
            })
            .collect();
        blocks.sort_by_key(|m| m.min_time);
        assert!(blocks.len() >= 4, "{} blocks", blocks.len());
        let ours = tmp.path().join("ours");
        fs::create_dir(&ours).unwrap();
        let mut differs_with_2h = 0;
        for b in &blocks {
            // promtool's blocks are 2h-aligned windows.
            let lo = b.min_time.div_euclid(DEFAULT_CHUNK_RANGE) * DEFAULT_CHUNK_RANGE;
            let hi = lo + DEFAULT_CHUNK_RANGE;
            let window: Vec<Series> = series
                .iter()
                .map(|(l, s)| {
                    (
                        l.clone(),
                        s.iter()
                            .copied()
                            .filter(|(t, _)| *t >= lo && *t < hi)
                            .collect(),
                    )
                })
                .collect();
            let opts = BlockWriterOptions {
                ulid: Some(b.ulid),
                chunk_range: PROMTOOL_BACKFILL_CHUNK_RANGE,
                ..Default::default()
            };
            let mine = write_block(&ours, window.clone(), &opts).unwrap();
            let (a, z) = (
                theirs.join(b.ulid.to_string()),
                ours.join(b.ulid.to_string()),
            );
            eprintln!(
                "block {} [{}, {}): {} series, {} chunks, {} samples; index {} B, chunks/000001 {} B",
                b.ulid,
                b.min_time,
                b.max_time,
                b.stats.num_series,
                b.stats.num_chunks,
                b.stats.num_samples,
                fs::metadata(a.join("index")).unwrap().len(),
                fs::metadata(a.join("chunks/000001")).unwrap().len()
            );
            assert_eq!((mine.min_time, mine.max_time), (b.min_time, b.max_time));
            assert_eq!(mine.stats, b.stats);
            assert_eq!(mine.compaction, b.compaction);
            assert!(
                fs::read(a.join("index")).unwrap() == fs::read(z.join("index")).unwrap(),
                "index of {}",
                b.ulid
            );
            assert!(
                fs::read(a.join("chunks/000001")).unwrap()
                    == fs::read(z.join("chunks/000001")).unwrap(),
                "chunks of {}",
                b.ulid
            );
            assert_eq!(
                fs::read(a.join("tombstones")).unwrap(),
                fs::read(z.join("tombstones")).unwrap()
            );
            assert_eq!(
                fs::read(a.join("meta.json")).unwrap(),
                fs::read(z.join("meta.json")).unwrap()
            );
            // With the head's default 2h range the chunks differ: the
            // backfill range really is 2 x block duration.
            let other = tmp.path().join(format!("other-{}", b.ulid));
            fs::create_dir(&other).unwrap();
            let opts2 = BlockWriterOptions {
                chunk_range: DEFAULT_CHUNK_RANGE,
                ..opts
            };
            let m2 = write_block(&other, window, &opts2).unwrap();
            let c2 = fs::read(other.join(m2.ulid.to_string()).join("chunks/000001")).unwrap();
            if c2 != fs::read(a.join("chunks/000001")).unwrap() {
                differs_with_2h += 1;
            }
        }
        assert!(differs_with_2h > 0);
    }
}
