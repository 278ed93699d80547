//! One loaded block: its meta, a local mmapped copy of its index (verified
//! once at load), its chunk segment files in the bucket, and chunk reads with
//! coalesced ranged GETs.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use memmap2::Mmap;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_tsdb::chunk::{encoded_len, parse_chunk, split_ref};
use sluice_tsdb::index::{ChunkMeta, IndexReader, SeriesEntry};
use sluice_tsdb::meta::BlockMeta;
use tokio::io::AsyncWriteExt;
use ulid::Ulid;

use sluice_model::{Label, Labels};

/// Why a block could not be loaded or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{what}: {source}")]
    Format {
        what: &'static str,
        #[source]
        source: sluice_tsdb::Error,
    },
    #[error("bucket {path}: {source}")]
    Bucket {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("local cache {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl BlockError {
    /// Whether retrying cannot help (the block's bytes are bad), as opposed to
    /// a transient bucket or disk error.
    pub fn is_permanent(&self) -> bool {
        matches!(self, BlockError::Format { .. } | BlockError::Invalid(_))
    }
}

fn bucket_err(path: &Path) -> impl FnOnce(object_store::Error) -> BlockError + '_ {
    move |source| BlockError::Bucket {
        path: path.to_string(),
        source,
    }
}

fn io_err(path: &FsPath) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A chunk segment file of a block.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: Path,
    pub size: u64,
}

/// A chunk read from the bucket.
#[derive(Debug, Clone)]
pub struct FetchedChunk {
    pub encoding: u8,
    pub data: Bytes,
}

/// A block ready to serve.
pub struct Block {
    pub id: Ulid,
    pub meta: BlockMeta,
    /// External labels from the block's Thanos meta section.
    pub ext_labels: Labels,
    pub(crate) index: IndexReader<Mmap>,
    pub(crate) segments: Vec<Segment>,
    bucket: Arc<dyn ObjectStore>,
    /// Read size for a chunk whose end is not known from its neighbour.
    chunk_size_estimate: u64,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("id", &self.id)
            .field("ext_labels", &self.ext_labels)
            .finish()
    }
}

/// Default read size for a chunk of unknown length; XOR chunks of up to 240
/// samples stay well below it, and a longer chunk is re-read exactly.
const CHUNK_SIZE_ESTIMATE: u64 = 16 * 1024;

impl Block {
    /// Loads block `id`: meta.json, the segment list, and a verified local
    /// copy of the index. `Ok(None)` means there is no meta.json (yet).
    pub async fn load(
        bucket: Arc<dyn ObjectStore>,
        id: Ulid,
        data_dir: &FsPath,
    ) -> Result<Option<Block>, BlockError> {
        let meta_path = Path::from(format!("{id}/meta.json"));
        let meta_bytes = match bucket.get(&meta_path).await {
            Ok(r) => r.bytes().await.map_err(bucket_err(&meta_path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(bucket_err(&meta_path)(e)),
        };
        let meta = BlockMeta::parse(&meta_bytes).map_err(|source| BlockError::Format {
            what: "meta.json",
            source,
        })?;
        if meta.ulid != id {
            return Err(BlockError::Invalid(format!(
                "meta.json names block {} but lives in directory {id}",
                meta.ulid
            )));
        }
        Self::open(bucket, meta, data_dir).await.map(Some)
    }

    /// Opens a block whose `meta.json` the catalog already read: checks its
    /// chunk segments and loads (or reuses) the local copy of its index.
    pub async fn open(
        bucket: Arc<dyn ObjectStore>,
        meta: BlockMeta,
        data_dir: &FsPath,
    ) -> Result<Block, BlockError> {
        let id = meta.ulid;
        let ext_labels = Labels::from_pairs(
            meta.external_labels()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );

        // Segment files must be exactly 000001..N: chunk refs address them by
        // position, so a gap would silently shift every later reference.
        let chunks_prefix = Path::from(format!("{id}/chunks"));
        let mut objects: Vec<_> = bucket
            .list(Some(&chunks_prefix))
            .try_collect::<Vec<_>>()
            .await
            .map_err(bucket_err(&chunks_prefix))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let mut segments = Vec::with_capacity(objects.len());
        for (i, o) in objects.iter().enumerate() {
            let name = o.location.filename().unwrap_or("");
            let expected = format!("{:06}", i + 1);
            if name != expected {
                return Err(BlockError::Invalid(format!(
                    "chunk segment chunks/{expected} is missing (found chunks/{name})"
                )));
            }
            segments.push(Segment {
                path: o.location.clone(),
                size: o.size,
            });
        }
        if let Some(t) = &meta.thanos {
            for f in &t.files {
                if let Some(seg) = f.rel_path.strip_prefix("chunks/") {
                    let found = segments.iter().find(|s| s.path.filename() == Some(seg));
                    match (found, f.size_bytes) {
                        (None, _) => {
                            return Err(BlockError::Invalid(format!(
                                "chunk segment {} listed in meta.json is missing",
                                f.rel_path
                            )));
                        }
                        (Some(s), want) if want > 0 && s.size != want as u64 => {
                            return Err(BlockError::Invalid(format!(
                                "chunk segment {} has {} bytes, meta.json says {want}",
                                f.rel_path, s.size
                            )));
                        }
                        _ => {}
                    }
                }
            }
        }
        if segments.is_empty() && meta.stats.num_chunks > 0 {
            return Err(BlockError::Invalid(format!(
                "block has {} chunks but no chunk segment files (chunks/000001 is missing)",
                meta.stats.num_chunks
            )));
        }

        let index = fetch_index(&bucket, id, data_dir).await?;
        let segments_for_verify: Vec<u64> = segments.iter().map(|s| s.size).collect();
        let index =
            tokio::task::spawn_blocking(move || -> Result<IndexReader<Mmap>, BlockError> {
                let reader = IndexReader::new(index).map_err(|source| BlockError::Format {
                    what: "index",
                    source,
                })?;
                verify_index(&reader, &segments_for_verify)?;
                Ok(reader)
            })
            .await
            .map_err(|e| BlockError::Invalid(format!("index verification task failed: {e}")))??;

        let chunk_size_estimate = meta
            .thanos
            .as_ref()
            .map(|t| t.index_stats.chunk_max_size)
            .filter(|&n| n > 0)
            .map(|n| n as u64)
            .unwrap_or(CHUNK_SIZE_ESTIMATE);
        Ok(Block {
            id,
            meta,
            ext_labels,
            index,
            segments,
            bucket,
            chunk_size_estimate,
        })
    }

    /// Downsampling resolution in ms (0 = raw).
    pub fn resolution(&self) -> i64 {
        self.meta.resolution()
    }

    /// Resolves a series entry's symbol references into labels.
    pub(crate) fn labels_of(&self, entry: &SeriesEntry) -> Result<Labels, BlockError> {
        let mut v = Vec::with_capacity(entry.labels.len() + self.ext_labels.len());
        for &(n, val) in &entry.labels {
            let fmt = |source| BlockError::Format {
                what: "index symbols",
                source,
            };
            v.push(Label::new(
                self.index.symbol(n).map_err(fmt)?,
                self.index.symbol(val).map_err(fmt)?,
            ));
        }
        if v.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(BlockError::Invalid(
                "series labels in index are not sorted or not unique".into(),
            ));
        }
        Ok(Labels::from_sorted(v))
    }

    /// Reads the chunks at `refs` (sorted, unique) with coalesced ranged GETs.
    /// Returns them in the order of `refs`.
    pub async fn fetch_chunks(&self, refs: &[u64]) -> Result<Vec<FetchedChunk>, BlockError> {
        let mut out = Vec::with_capacity(refs.len());
        let mut i = 0;
        while i < refs.len() {
            let (seg_idx, _) = split_ref(refs[i]);
            let mut j = i;
            while j < refs.len() && split_ref(refs[j]).0 == seg_idx {
                j += 1;
            }
            let seg = self.segments.get(seg_idx as usize).ok_or_else(|| {
                BlockError::Invalid(format!(
                    "chunk reference {:#x} points at missing segment {:06}",
                    refs[i],
                    seg_idx + 1
                ))
            })?;
            let group = &refs[i..j];
            let ranges: Vec<std::ops::Range<u64>> = group
                .iter()
                .enumerate()
                .map(|(k, &r)| {
                    let start = u64::from(split_ref(r).1);
                    let mut end = (start + self.chunk_size_estimate).min(seg.size);
                    if let Some(&next) = group.get(k + 1) {
                        end = end.min(u64::from(split_ref(next).1));
                    }
                    start..end.max(start)
                })
                .collect();
            let bufs = self
                .bucket
                .get_ranges(&seg.path, &ranges)
                .await
                .map_err(bucket_err(&seg.path))?;
            for (range, buf) in ranges.iter().zip(bufs) {
                out.push(self.decode_fetched(seg, range.start, buf).await?);
            }
            i = j;
        }
        Ok(out)
    }

    async fn decode_fetched(
        &self,
        seg: &Segment,
        start: u64,
        buf: Bytes,
    ) -> Result<FetchedChunk, BlockError> {
        let fmt = |source| BlockError::Format {
            what: "chunk",
            source,
        };
        let (encoding, data_start, data_len, buf) = match parse_chunk(&buf) {
            Ok((chunk, total)) => (
                chunk.encoding,
                total - 4 - chunk.data.len(),
                chunk.data.len(),
                buf,
            ),
            Err(sluice_tsdb::Error::Truncated { .. }) => {
                // Longer than the estimate: read exactly its encoded length.
                let need = encoded_len(&buf).map_err(fmt)? as u64;
                if start + need > seg.size {
                    return Err(BlockError::Invalid(format!(
                        "chunk at {}:{start} needs {need} bytes but the segment has {}",
                        seg.path, seg.size
                    )));
                }
                let buf = self
                    .bucket
                    .get_range(&seg.path, start..start + need)
                    .await
                    .map_err(bucket_err(&seg.path))?;
                let (chunk, total) = parse_chunk(&buf).map_err(fmt)?;
                (
                    chunk.encoding,
                    total - 4 - chunk.data.len(),
                    chunk.data.len(),
                    buf,
                )
            }
            Err(e) => return Err(fmt(e)),
        };
        Ok(FetchedChunk {
            encoding,
            data: buf.slice(data_start..data_start + data_len),
        })
    }
}

/// Ensures `<data_dir>/<id>/index` is a complete local copy and mmaps it.
async fn fetch_index(
    bucket: &Arc<dyn ObjectStore>,
    id: Ulid,
    data_dir: &FsPath,
) -> Result<Mmap, BlockError> {
    let remote = Path::from(format!("{id}/index"));
    let head = bucket.head(&remote).await.map_err(bucket_err(&remote))?;
    let dir: PathBuf = data_dir.join(id.to_string());
    let local = dir.join("index");
    let fresh = match tokio::fs::metadata(&local).await {
        Ok(m) => m.len() != head.size,
        Err(_) => true,
    };
    if fresh {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(&dir))?;
        let tmp = dir.join("index.tmp");
        let mut file = tokio::fs::File::create(&tmp).await.map_err(io_err(&tmp))?;
        let mut stream = bucket
            .get(&remote)
            .await
            .map_err(bucket_err(&remote))?
            .into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(bucket_err(&remote))? {
            file.write_all(&chunk).await.map_err(io_err(&tmp))?;
        }
        file.flush().await.map_err(io_err(&tmp))?;
        file.sync_all().await.map_err(io_err(&tmp))?;
        drop(file);
        tokio::fs::rename(&tmp, &local)
            .await
            .map_err(io_err(&local))?;
    }
    let file = std::fs::File::open(&local).map_err(io_err(&local))?;
    // The cache file is ours and only ever replaced by rename, never modified
    // in place, so the mapping stays valid for the reader's lifetime.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.map_err(io_err(&local))?;
    Ok(map)
}

/// Walks every postings list and series entry once, checking CRCs and that
/// every chunk reference lands inside an existing segment.
fn verify_index(ix: &IndexReader<Mmap>, segment_sizes: &[u64]) -> Result<(), BlockError> {
    let fmt = |what| move |source| BlockError::Format { what, source };
    let mut list = Vec::new();
    for name in ix.label_names() {
        let mut offsets = Vec::new();
        ix.for_each_value(name, |_, off| {
            offsets.push(off);
            true
        })
        .map_err(fmt("index postings offset table"))?;
        for off in offsets {
            ix.postings_into(off, &mut list)
                .map_err(fmt("index postings"))?;
        }
    }
    let all = ix.all_postings().map_err(fmt("index postings"))?;
    let mut entry = SeriesEntry::default();
    for id in all {
        ix.series(id, &mut entry).map_err(fmt("index series"))?;
        for &(n, v) in &entry.labels {
            ix.symbol(n).map_err(fmt("index symbols"))?;
            ix.symbol(v).map_err(fmt("index symbols"))?;
        }
        for c in &entry.chunks {
            check_ref(c, segment_sizes)?;
        }
    }
    Ok(())
}

fn check_ref(c: &ChunkMeta, segment_sizes: &[u64]) -> Result<(), BlockError> {
    let (seg, off) = split_ref(c.chunk_ref);
    match segment_sizes.get(seg as usize) {
        Some(&size) if u64::from(off) < size => Ok(()),
        Some(&size) => Err(BlockError::Invalid(format!(
            "chunk reference {:#x} is beyond the end of chunks/{:06} ({size} bytes)",
            c.chunk_ref,
            seg + 1
        ))),
        None => Err(BlockError::Invalid(format!(
            "chunk reference {:#x} points at chunks/{:06}, which does not exist",
            c.chunk_ref,
            seg + 1
        ))),
    }
}
