//! The shipper (spec §2): blocks Prometheus cut are uploaded to the bucket,
//! chunks then index then `meta.json` with Thanos' section, so a store never
//! sees a block before all of it is there; `thanos.shipper.json` records
//! what is uploaded after every upload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use sluice_model::Labels;
use sluice_tsdb::meta::{
    BlockFile, BlockMeta, CHUNKS_DIRNAME, INDEX_FILENAME, META_FILENAME, ObjectHash, ThanosMeta,
    source,
};
use tokio::io::AsyncWriteExt;
use ulid::Ulid;

use crate::SidecarError;

/// `thanos.shipper.json` version.
const SHIPPER_META_VERSION: u32 = 1;
/// How long a block that fails to upload holds back the blocks after it
/// before they go on without it (it is still retried, with backoff).
const HOLD_BACK: Duration = Duration::from_secs(3600);
/// Longest wait between retries of a failing block.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(600);
/// Files larger than this are uploaded in parts.
const PART_SIZE: usize = 16 << 20;

/// Shipper flags.
#[derive(Debug, Clone)]
pub struct ShipperOptions {
    pub tsdb_path: PathBuf,
    pub meta_file_name: String,
    /// `--shipper.upload-compacted`.
    pub upload_compacted: bool,
    /// `--shipper.allow-out-of-order-uploads`.
    pub allow_out_of_order: bool,
    /// `--shipper.skip-corrupted-blocks`.
    pub skip_corrupted: bool,
    /// `--hash-func=SHA256`.
    pub sha256: bool,
    /// `--shipper.upload-concurrency` (0 = one file at a time).
    pub upload_concurrency: usize,
}

/// `thanos.shipper.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShipperMeta {
    pub version: u32,
    #[serde(default)]
    pub uploaded: Vec<Ulid>,
}

/// Why a local block was not uploaded in a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// No samples (Prometheus cuts empty blocks rarely, e.g. after deletes).
    Empty,
    /// Compacted by Prometheus (level > 1) without `--shipper.upload-compacted`.
    Compacted,
    /// No `meta.json` yet: Prometheus is still writing it.
    Incomplete,
    /// `meta.json` unreadable, with `--shipper.skip-corrupted-blocks`.
    Corrupted,
    /// Upload failed; retried after a backoff.
    Failing,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Empty => "empty",
            SkipReason::Compacted => "compacted",
            SkipReason::Incomplete => "incomplete",
            SkipReason::Corrupted => "corrupted",
            SkipReason::Failing => "failing",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub uploaded: Vec<Ulid>,
    pub skipped: BTreeMap<Ulid, SkipReason>,
    pub failed: Vec<(Ulid, String)>,
}

#[derive(Debug, Clone)]
struct Failing {
    first: Instant,
    attempts: u32,
    next_attempt: Instant,
}

#[derive(Clone)]
struct ShipperMetrics {
    dir_syncs: Counter,
    dir_sync_failures: Counter,
    uploads: Counter,
    upload_failures: Counter,
    corrupted: Counter,
    compacted_done: Gauge,
    skipped: Family<ReasonLabel, Gauge>,
    last_upload: Gauge,
}

/// Uploads one TSDB's blocks to a bucket.
pub struct Shipper {
    bucket: Arc<dyn ObjectStore>,
    opts: ShipperOptions,
    metrics: ShipperMetrics,
    /// One sync at a time; also keeps the failing blocks' backoff state.
    state: tokio::sync::Mutex<BTreeMap<Ulid, Failing>>,
    /// Skips already logged, so a skipped block is named once, not every 30 s.
    logged: Mutex<BTreeSet<(Ulid, SkipReason)>>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("tsdb", &self.opts.tsdb_path)
            .finish()
    }
}

impl Shipper {
    pub fn new(
        bucket: Arc<dyn ObjectStore>,
        opts: ShipperOptions,
        registry: &sluice_metrics::Metrics,
    ) -> Self {
        let metrics = ShipperMetrics {
            dir_syncs: Counter::default(),
            dir_sync_failures: Counter::default(),
            uploads: Counter::default(),
            upload_failures: Counter::default(),
            corrupted: Counter::default(),
            compacted_done: Gauge::default(),
            skipped: Family::default(),
            last_upload: Gauge::default(),
        };
        let m = metrics.clone();
        registry.register(|r| {
            r.register(
                "thanos_shipper_dir_syncs",
                "Total number of dir syncs",
                m.dir_syncs,
            );
            r.register(
                "thanos_shipper_dir_sync_failures",
                "Total number of failed dir syncs",
                m.dir_sync_failures,
            );
            r.register(
                "thanos_shipper_uploads",
                "Total number of uploaded blocks",
                m.uploads,
            );
            r.register(
                "thanos_shipper_upload_failures",
                "Total number of block upload failures",
                m.upload_failures,
            );
            r.register(
                "thanos_shipper_corrupted_blocks",
                "Total number of corrupted blocks",
                m.corrupted,
            );
            r.register(
                "thanos_shipper_upload_compacted_done",
                "If 1 it means shipper uploaded all compacted blocks from the filesystem.",
                m.compacted_done,
            );
            r.register(
                "sluice_shipper_blocks_skipped",
                "Local blocks not uploaded in the last sync, by reason.",
                m.skipped,
            );
            r.register(
                "thanos_objstore_bucket_last_successful_upload_time",
                "Second timestamp of the last successful upload to the bucket.",
                m.last_upload,
            );
        });
        Shipper {
            bucket,
            opts,
            metrics,
            state: tokio::sync::Mutex::new(BTreeMap::new()),
            logged: Mutex::new(BTreeSet::new()),
        }
    }

    fn meta_path(&self) -> PathBuf {
        self.opts.tsdb_path.join(&self.opts.meta_file_name)
    }

    /// `thanos.shipper.json` as on disk; empty when missing or unreadable.
    pub fn read_meta(&self) -> ShipperMeta {
        let p = self.meta_path();
        let empty = ShipperMeta {
            version: SHIPPER_META_VERSION,
            uploaded: Vec::new(),
        };
        match std::fs::read(&p) {
            Ok(b) => match serde_json::from_slice::<ShipperMeta>(&b) {
                Ok(m) if m.version == SHIPPER_META_VERSION => m,
                Ok(m) => {
                    tracing::warn!(file = %p.display(), version = m.version, "unexpected shipper meta version; starting over");
                    empty
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "unreadable shipper meta; starting over");
                    empty
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => empty,
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "reading shipper meta; starting over");
                empty
            }
        }
    }

    /// Writes `thanos.shipper.json` atomically (tmp, fsync, rename, fsync dir).
    fn write_meta(&self, m: &ShipperMeta) -> Result<(), SidecarError> {
        let p = self.meta_path();
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        m.serialize(&mut ser)
            .map_err(|e| SidecarError::Decode(format!("encoding shipper meta: {e}")))?;
        write_atomic(&p, &out)
    }

    /// One pass over the TSDB directory (spec §2.2). `labels` are the
    /// current external labels.
    pub async fn sync(&self, labels: &Labels) -> Result<SyncReport, SidecarError> {
        let mut failing = self.state.lock().await;
        self.metrics.dir_syncs.inc();
        let r = self.sync_locked(labels, &mut failing).await;
        if r.is_err() {
            self.metrics.dir_sync_failures.inc();
        }
        r
    }

    async fn sync_locked(
        &self,
        labels: &Labels,
        failing: &mut BTreeMap<Ulid, Failing>,
    ) -> Result<SyncReport, SidecarError> {
        if labels.is_empty() {
            return Err(SidecarError::Config(
                "empty external labels are not allowed for Thanos block".into(),
            ));
        }
        let old: BTreeSet<Ulid> = self.read_meta().uploaded.into_iter().collect();
        let mut meta = ShipperMeta {
            version: SHIPPER_META_VERSION,
            uploaded: Vec::new(),
        };
        let mut report = SyncReport::default();
        let blocks = self.local_blocks(&mut report)?;
        let mut bucket_metas: Option<Vec<BlockMeta>> = None;
        let mut aborted = false;
        let now = Instant::now();
        for (dir, m) in blocks {
            let id = m.ulid;
            if old.contains(&id) {
                meta.uploaded.push(id);
                continue;
            }
            if aborted {
                continue;
            }
            if m.stats.num_samples == 0 {
                report.skipped.insert(id, SkipReason::Empty);
                continue;
            }
            let compacted = m.compaction.level > 1;
            if compacted && !self.opts.upload_compacted {
                report.skipped.insert(id, SkipReason::Compacted);
                continue;
            }
            let meta_key = ObjPath::from(format!("{id}/{META_FILENAME}"));
            match self.bucket.head(&meta_key).await {
                Ok(_) => {
                    meta.uploaded.push(id);
                    failing.remove(&id);
                    continue;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(f) = failing.get(&id)
                && f.next_attempt > now
            {
                report.skipped.insert(id, SkipReason::Failing);
                if now.duration_since(f.first) < HOLD_BACK && !self.opts.allow_out_of_order {
                    aborted = true;
                }
                continue;
            }
            if compacted && !self.opts.allow_out_of_order {
                if bucket_metas.is_none() {
                    bucket_metas = Some(self.bucket_metas(labels).await?);
                }
                if let Some(other) = bucket_metas.as_ref().and_then(|ms| {
                    ms.iter().find(|o| {
                        o.ulid != id && o.min_time < m.max_time && m.min_time < o.max_time
                    })
                }) {
                    return Err(SidecarError::Decode(format!(
                        "compacted block {id} [{}, {}) overlaps block {} [{}, {}) already in the bucket; \
                         not uploading it",
                        m.min_time, m.max_time, other.ulid, other.min_time, other.max_time
                    )));
                }
            }
            match self.upload(&dir, &m, labels).await {
                Ok(()) => {
                    failing.remove(&id);
                    meta.uploaded.push(id);
                    report.uploaded.push(id);
                    self.metrics.uploads.inc();
                    self.metrics.last_upload.set(unix_seconds());
                    tracing::info!(block = %id, "uploaded block");
                    // Recorded after each upload, so a crash does not lose
                    // the blocks already shipped (spec §7.15).
                    let mut progress = meta.clone();
                    let rest: Vec<Ulid> = old
                        .iter()
                        .filter(|u| !progress.uploaded.contains(u))
                        .copied()
                        .collect();
                    progress.uploaded.extend(rest);
                    if let Err(e) = self.write_meta(&progress) {
                        tracing::warn!(error = %e, "writing shipper meta");
                    }
                }
                Err(e) => {
                    self.metrics.upload_failures.inc();
                    let f = failing.entry(id).or_insert(Failing {
                        first: now,
                        attempts: 0,
                        next_attempt: now,
                    });
                    f.attempts += 1;
                    let backoff = Duration::from_secs(30)
                        .saturating_mul(1 << f.attempts.min(5))
                        .min(MAX_RETRY_BACKOFF);
                    f.next_attempt = now + backoff;
                    let holding =
                        now.duration_since(f.first) < HOLD_BACK && !self.opts.allow_out_of_order;
                    tracing::error!(
                        block = %id, error = %e, attempts = f.attempts, retry_in = ?backoff,
                        holding_back_later_blocks = holding,
                        "uploading block failed"
                    );
                    report.failed.push((id, e.to_string()));
                    if holding {
                        aborted = true;
                    }
                }
            }
        }
        self.report_skips(&report);
        if let Err(e) = self.write_meta(&meta) {
            tracing::warn!(error = %e, "writing shipper meta");
        }
        let ok = report.failed.is_empty();
        self.metrics
            .compacted_done
            .set(i64::from(self.opts.upload_compacted && ok));
        if !ok {
            return Err(SidecarError::Decode(format!(
                "failed to sync {} blocks: {}",
                report.failed.len(),
                report
                    .failed
                    .iter()
                    .map(|(id, e)| format!("{id}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok(report)
    }

    fn report_skips(&self, report: &SyncReport) {
        let mut counts: BTreeMap<SkipReason, i64> = BTreeMap::new();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        for (id, reason) in &report.skipped {
            *counts.entry(*reason).or_default() += 1;
            if logged.insert((*id, *reason)) {
                tracing::info!(block = %id, reason = reason.as_str(), "block not uploaded");
            }
        }
        logged.retain(|(id, _)| report.skipped.contains_key(id));
        for r in [
            SkipReason::Empty,
            SkipReason::Compacted,
            SkipReason::Incomplete,
            SkipReason::Corrupted,
            SkipReason::Failing,
        ] {
            self.metrics
                .skipped
                .get_or_create(&ReasonLabel {
                    reason: r.as_str().to_string(),
                })
                .set(counts.get(&r).copied().unwrap_or(0));
        }
    }

    /// Local block directories with their metas, oldest first.
    fn local_blocks(
        &self,
        report: &mut SyncReport,
    ) -> Result<Vec<(PathBuf, BlockMeta)>, SidecarError> {
        let dir = &self.opts.tsdb_path;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| SidecarError::io(format!("listing {}", dir.display()), e))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| SidecarError::io(format!("listing {}", dir.display()), e))?;
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
                continue;
            };
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            let meta_file = path.join(META_FILENAME);
            let bytes = match std::fs::read(&meta_file) {
                Ok(b) => b,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    report.skipped.insert(id, SkipReason::Incomplete);
                    continue;
                }
                Err(err) => {
                    return Err(SidecarError::io(
                        format!("reading {}", meta_file.display()),
                        err,
                    ));
                }
            };
            match BlockMeta::parse(&bytes) {
                Ok(m) if m.ulid == id => out.push((path, m)),
                Ok(m) => {
                    let msg = format!("{} names block {}", meta_file.display(), m.ulid);
                    self.corrupted(id, msg, report)?;
                }
                Err(err) => {
                    let msg = format!("{}: {err}", meta_file.display());
                    self.corrupted(id, msg, report)?;
                }
            }
        }
        out.sort_by_key(|(_, m)| (m.min_time, m.ulid));
        Ok(out)
    }

    fn corrupted(
        &self,
        id: Ulid,
        msg: String,
        report: &mut SyncReport,
    ) -> Result<(), SidecarError> {
        self.metrics.corrupted.inc();
        if self.opts.skip_corrupted {
            report.skipped.insert(id, SkipReason::Corrupted);
            tracing::warn!(block = %id, error = %msg, "skipping corrupted block");
            Ok(())
        } else {
            Err(SidecarError::Decode(format!(
                "corrupted block meta {msg} (start with --shipper.skip-corrupted-blocks to ship the others)"
            )))
        }
    }

    /// Metas in the bucket of blocks with these external labels.
    async fn bucket_metas(&self, labels: &Labels) -> Result<Vec<BlockMeta>, SidecarError> {
        use futures::TryStreamExt;
        let listing = self.bucket.list_with_delimiter(None).await?;
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let mut out = Vec::new();
        let ids: Vec<Ulid> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| {
                p.parts()
                    .last()
                    .and_then(|s| Ulid::from_string(s.as_ref()).ok())
            })
            .collect();
        let bucket = self.bucket.clone();
        let metas: Vec<Option<BlockMeta>> = futures::stream::iter(ids)
            .map(move |id| {
                let bucket = bucket.clone();
                async move {
                    let key = ObjPath::from(format!("{id}/{META_FILENAME}"));
                    match bucket.get(&key).await {
                        Ok(r) => Ok(r.bytes().await.ok().and_then(|b| BlockMeta::parse(&b).ok())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        for m in metas.into_iter().flatten() {
            if m.external_labels() == &want {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Uploads one block (spec §2.4) from hard links, so Prometheus may
    /// delete the block meanwhile.
    async fn upload(
        &self,
        dir: &Path,
        local: &BlockMeta,
        labels: &Labels,
    ) -> Result<(), SidecarError> {
        let id = local.ulid;
        let work = self
            .opts
            .tsdb_path
            .join("thanos")
            .join("upload")
            .join(id.to_string());
        let _ = std::fs::remove_dir_all(&work);
        let r = self.upload_from(dir, &work, local, labels).await;
        let _ = std::fs::remove_dir_all(&work);
        r
    }

    async fn upload_from(
        &self,
        dir: &Path,
        work: &Path,
        local: &BlockMeta,
        labels: &Labels,
    ) -> Result<(), SidecarError> {
        let id = local.ulid;
        let chunks_dir = work.join(CHUNKS_DIRNAME);
        std::fs::create_dir_all(&chunks_dir)
            .map_err(|e| SidecarError::io(format!("creating {}", chunks_dir.display()), e))?;
        let mut segments = Vec::new();
        let src_chunks = dir.join(CHUNKS_DIRNAME);
        let entries = std::fs::read_dir(&src_chunks)
            .map_err(|e| SidecarError::io(format!("listing {}", src_chunks.display()), e))?;
        for e in entries {
            let e =
                e.map_err(|e| SidecarError::io(format!("listing {}", src_chunks.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            hard_link(&e.path(), &chunks_dir.join(&name))?;
            segments.push(name);
        }
        segments.sort();
        hard_link(&dir.join(INDEX_FILENAME), &work.join(INDEX_FILENAME))?;

        let mut meta = local.clone();
        let mut thanos = meta
            .thanos
            .take()
            .unwrap_or_else(|| ThanosMeta::new(BTreeMap::new(), 0, source::SIDECAR));
        for l in labels.iter() {
            thanos.labels.insert(l.name.clone(), l.value.clone());
        }
        thanos.version = sluice_tsdb::meta::THANOS_META_VERSION_1;
        thanos.source = source::SIDECAR.to_string();
        thanos.segment_files = segments.clone();
        meta.thanos = Some(thanos.clone());
        // The local copy of the meta (replacing the hard link), without files.
        write_atomic(&work.join(META_FILENAME), &meta.to_json())?;

        let mut files = Vec::with_capacity(segments.len() + 2);
        for s in &segments {
            files.push(self.describe(&chunks_dir.join(s), format!("{CHUNKS_DIRNAME}/{s}"))?);
        }
        files.push(self.describe(&work.join(INDEX_FILENAME), INDEX_FILENAME.to_string())?);
        files.push(BlockFile {
            rel_path: META_FILENAME.to_string(),
            size_bytes: 0,
            hash: None,
        });
        files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));

        // Chunks, then index, then meta.json: a block is visible only once
        // all of it is there.
        let concurrency = self.opts.upload_concurrency.max(1);
        use futures::TryStreamExt;
        let jobs: Vec<(PathBuf, ObjPath)> = segments
            .iter()
            .map(|s| {
                (
                    chunks_dir.join(s),
                    ObjPath::from(format!("{id}/{CHUNKS_DIRNAME}/{s}")),
                )
            })
            .collect();
        let bucket = self.bucket.clone();
        futures::stream::iter(jobs)
            .map(move |(local, key)| put_file(bucket.clone(), local, key))
            .buffered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        put_file(
            self.bucket.clone(),
            work.join(INDEX_FILENAME),
            ObjPath::from(format!("{id}/{INDEX_FILENAME}")),
        )
        .await?;
        thanos.files = files;
        thanos.upload_time = Some(rfc3339_now());
        meta.thanos = Some(thanos);
        self.bucket
            .put(
                &ObjPath::from(format!("{id}/{META_FILENAME}")),
                meta.to_json().into(),
            )
            .await?;
        Ok(())
    }

    fn describe(&self, path: &Path, rel: String) -> Result<BlockFile, SidecarError> {
        let md = std::fs::metadata(path)
            .map_err(|e| SidecarError::io(format!("stat {}", path.display()), e))?;
        let hash = if self.opts.sha256 {
            let mut h = sha2::Sha256::new();
            let mut f = std::fs::File::open(path)
                .map_err(|e| SidecarError::io(format!("opening {}", path.display()), e))?;
            std::io::copy(&mut f, &mut h)
                .map_err(|e| SidecarError::io(format!("hashing {}", path.display()), e))?;
            Some(ObjectHash {
                func: "SHA256".into(),
                value: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            })
        } else {
            None
        };
        Ok(BlockFile {
            rel_path: rel,
            size_bytes: i64::try_from(md.len()).unwrap_or(i64::MAX),
            hash,
        })
    }
}

/// Uploads one file, streaming it in parts when large.
async fn put_file(
    bucket: Arc<dyn ObjectStore>,
    local: PathBuf,
    key: ObjPath,
) -> Result<(), SidecarError> {
    let mut f = tokio::fs::File::open(&local)
        .await
        .map_err(|e| SidecarError::io(format!("opening {}", local.display()), e))?;
    let mut w = object_store::buffered::BufWriter::with_capacity(bucket, key.clone(), PART_SIZE);
    if let Err(e) = tokio::io::copy(&mut f, &mut w).await {
        let _ = w.abort().await;
        return Err(SidecarError::io(
            format!("uploading {} to {key}", local.display()),
            e,
        ));
    }
    w.shutdown()
        .await
        .map_err(|e| SidecarError::io(format!("uploading {} to {key}", local.display()), e))?;
    Ok(())
}

fn hard_link(from: &Path, to: &Path) -> Result<(), SidecarError> {
    std::fs::hard_link(from, to).map_err(|e| {
        SidecarError::io(
            format!(
                "hard-linking {} to {} (--tsdb.path must be on the same filesystem as Prometheus' blocks)",
                from.display(),
                to.display()
            ),
            e,
        )
    })
}

/// Writes `path` via `<path>.tmp`, fsync and rename, then fsyncs the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SidecarError> {
    use std::io::Write;
    let tmp = path.with_extension(match path.extension() {
        Some(e) => format!("{}.tmp", e.to_string_lossy()),
        None => "tmp".to_string(),
    });
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| SidecarError::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| SidecarError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        SidecarError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// UTC now as RFC 3339 with nanoseconds (Go's `time.RFC3339Nano` shape).
fn rfc3339_now() -> String {
    sluice_model::time::rfc3339_system(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipper_meta_is_tab_indented_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let s = Shipper::new(
            bucket,
            ShipperOptions {
                tsdb_path: dir.path().to_path_buf(),
                meta_file_name: "thanos.shipper.json".into(),
                upload_compacted: false,
                allow_out_of_order: false,
                skip_corrupted: false,
                sha256: false,
                upload_concurrency: 0,
            },
            &sluice_metrics::Metrics::new(),
        );
        let id = Ulid::from_parts(1_700_000_000_000, 42);
        s.write_meta(&ShipperMeta {
            version: 1,
            uploaded: vec![id],
        })
        .expect("writes");
        let text = std::fs::read_to_string(dir.path().join("thanos.shipper.json")).expect("reads");
        assert_eq!(
            text,
            format!("{{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"{id}\"\n\t]\n}}")
        );
        assert_eq!(s.read_meta().uploaded, vec![id]);
    }
}

/// Spec §1.4: whether Prometheus' flags allow shipping its blocks. Errors
/// are retried by the caller; the strings are warnings to log.
pub fn check_prometheus_flags(
    flags: &BTreeMap<String, String>,
    tsdb_path: &Path,
    meta_file_name: &str,
    ignore_unequal_block_size: bool,
) -> Result<Vec<String>, SidecarError> {
    let mut warnings = Vec::new();
    let delay_file = flags
        .get("storage.tsdb.delay-compact-file.path")
        .filter(|p| !p.is_empty());
    if let Some(p) = delay_file {
        let want = tsdb_path.join(meta_file_name);
        if clean(Path::new(p)) != clean(&want) {
            return Err(SidecarError::Config(format!(
                "found different paths for tracking block uploads: Prometheus' \
                 --storage.tsdb.delay-compact-file.path is {p}, the sidecar's shipper file is {}",
                want.display()
            )));
        }
    }
    let dur = |k: &str| {
        flags
            .get(k)
            .and_then(|v| sluice_config::parse_duration(v).ok())
    };
    let (min, max) = (
        dur("storage.tsdb.min-block-duration"),
        dur("storage.tsdb.max-block-duration"),
    );
    if min != max && delay_file.is_none() {
        let msg = format!(
            "found that TSDB max time is {} and min time is {}; Compaction needs to be disabled \
             (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration)",
            flags
                .get("storage.tsdb.max-block-duration")
                .map(String::as_str)
                .unwrap_or("?"),
            flags
                .get("storage.tsdb.min-block-duration")
                .map(String::as_str)
                .unwrap_or("?"),
        );
        if !ignore_unequal_block_size {
            return Err(SidecarError::Config(msg));
        }
        warnings.push(format!(
            "{msg}; continuing because of --shipper.ignore-unequal-block-size: up to one block duration \
             (about 2h) of data may never be uploaded"
        ));
    }
    if min.is_some_and(|m| m != Duration::from_secs(7200)) {
        warnings.push(
            "found that TSDB block time is not 2h; only 2h blocks are recommended".to_string(),
        );
    }
    Ok(warnings)
}

/// A path with `.` and `..` resolved lexically (Go's `filepath.Clean`).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prometheus_flags_gate_uploads() {
        let tsdb = Path::new("/prom/data");
        let equal = flags(&[
            ("storage.tsdb.min-block-duration", "2h"),
            ("storage.tsdb.max-block-duration", "2h"),
        ]);
        assert!(
            check_prometheus_flags(&equal, tsdb, "thanos.shipper.json", false)
                .expect("ok")
                .is_empty()
        );
        let unequal = flags(&[
            ("storage.tsdb.min-block-duration", "2h"),
            ("storage.tsdb.max-block-duration", "1d12h"),
        ]);
        assert!(check_prometheus_flags(&unequal, tsdb, "thanos.shipper.json", false).is_err());
        assert_eq!(
            check_prometheus_flags(&unequal, tsdb, "thanos.shipper.json", true)
                .expect("warns")
                .len(),
            1
        );
        let mut delayed = unequal.clone();
        delayed.insert(
            "storage.tsdb.delay-compact-file.path".into(),
            "/prom/./data/thanos.shipper.json".into(),
        );
        assert!(check_prometheus_flags(&delayed, tsdb, "thanos.shipper.json", false).is_ok());
        delayed.insert(
            "storage.tsdb.delay-compact-file.path".into(),
            "/elsewhere.json".into(),
        );
        assert!(check_prometheus_flags(&delayed, tsdb, "thanos.shipper.json", false).is_err());
        let short = flags(&[
            ("storage.tsdb.min-block-duration", "5m"),
            ("storage.tsdb.max-block-duration", "5m"),
        ]);
        assert_eq!(
            check_prometheus_flags(&short, tsdb, "thanos.shipper.json", false)
                .expect("ok")
                .len(),
            1
        );
    }
}
