//! bucket owns the blocks in object storage: it syncs the block list (new
//! blocks load, deleted and deletion-marked ones go), keeps a local copy of
//! each block's index (mmapped; the "index header" that spares queries from
//! re-reading indexes), picks blocks for a query by time, external labels and
//! resolution, and reads chunks with coalesced ranged GETs.
//!
//! Invariant: a block that fails to load or verify is reported (log +
//! `thanos_bucket_store_block_load_failures_total`) and skipped; it never
//! stops the other blocks from serving.

mod block;
mod query;
mod select;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_tsdb::meta::{BlockMeta, DeletionMark};
use ulid::Ulid;

use crate::metrics::Metrics;
use crate::model::Labels;

pub use block::{Block, BlockError};
pub use query::{LabelsQuery, SeriesQuery, Shard, to_pb_labels};

/// Errors of the bucket store. `storeapi` maps them to gRPC codes.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("exceeded {limit} limit: {detail}")]
    LimitExceeded { limit: &'static str, detail: String },
    #[error("block {block}: {source}")]
    Block {
        block: Ulid,
        #[source]
        source: Box<BlockError>,
    },
    #[error("bucket: {0}")]
    Bucket(#[from] object_store::Error),
    #[error("store is not ready: the initial block sync has not finished")]
    NotReady,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Knobs of a bucket store (Thanos store-gateway flag semantics).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Local directory for index copies (`--data-dir`).
    pub data_dir: PathBuf,
    /// Blocks marked for deletion longer ago than this are not served
    /// (`--ignore-deletion-marks-delay`).
    pub ignore_deletion_marks_delay: Duration,
    /// Maximum series per Series call, 0 = unlimited (`--store.limits.request-series`).
    pub series_limit: u64,
    /// Maximum samples per Series call, 0 = unlimited (`--store.limits.request-samples`).
    pub samples_limit: u64,
    /// Concurrent block loads during sync (`--block-sync-concurrency`).
    pub sync_concurrency: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            data_dir: PathBuf::from("./data"),
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            series_limit: 0,
            samples_limit: 0,
            sync_concurrency: 20,
        }
    }
}

#[derive(Clone)]
struct BucketMetrics {
    blocks_loaded: Gauge,
    block_loads: Counter,
    block_load_failures: Counter,
    block_drops: Counter,
    syncs: Counter,
    sync_failures: Counter,
    series_fetched: Counter,
    chunks_fetched: Counter,
    chunk_bytes_fetched: Counter,
}

impl BucketMetrics {
    fn new(metrics: &Metrics) -> Self {
        let m = BucketMetrics {
            blocks_loaded: Gauge::default(),
            block_loads: Counter::default(),
            block_load_failures: Counter::default(),
            block_drops: Counter::default(),
            syncs: Counter::default(),
            sync_failures: Counter::default(),
            series_fetched: Counter::default(),
            chunks_fetched: Counter::default(),
            chunk_bytes_fetched: Counter::default(),
        };
        metrics.register(|r| {
            r.register("thanos_bucket_store_blocks_loaded", "Number of currently loaded blocks.", m.blocks_loaded.clone());
            r.register("thanos_bucket_store_block_loads", "Total number of remote block loading attempts.", m.block_loads.clone());
            r.register(
                "thanos_bucket_store_block_load_failures",
                "Total number of failed remote block loading attempts (corrupt or unreadable blocks).",
                m.block_load_failures.clone(),
            );
            r.register("thanos_bucket_store_block_drops", "Total number of local blocks that were dropped.", m.block_drops.clone());
            r.register("thanos_blocks_meta_syncs", "Total blocks metadata synchronization attempts.", m.syncs.clone());
            r.register("thanos_blocks_meta_sync_failures", "Total blocks metadata synchronization failures.", m.sync_failures.clone());
            r.register("sluice_bucket_store_series_fetched", "Series returned by Series calls.", m.series_fetched.clone());
            r.register("sluice_bucket_store_chunks_fetched", "Chunks read from the bucket by Series calls.", m.chunks_fetched.clone());
            r.register(
                "sluice_bucket_store_chunk_bytes_fetched",
                "Bytes of chunk data read from the bucket by Series calls.",
                m.chunk_bytes_fetched.clone(),
            );
        });
        m
    }
}

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub loaded: Vec<Ulid>,
    pub dropped: Vec<Ulid>,
    pub failed: Vec<(Ulid, String)>,
}

/// External labels and time range of one group of blocks, for `Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSetInfo {
    pub labels: Labels,
    pub min_time: i64,
    pub max_time: i64,
}

type BlockMap = BTreeMap<Ulid, Arc<Block>>;

/// Serves the blocks of one bucket.
pub struct BucketStore {
    bucket: Arc<dyn ObjectStore>,
    opts: StoreOptions,
    blocks: RwLock<Arc<BlockMap>>,
    /// Blocks whose bytes are corrupt: immutable objects stay corrupt, so they
    /// are not downloaded again on every sync.
    corrupt: Mutex<HashMap<Ulid, String>>,
    ready: AtomicBool,
    metrics: BucketMetrics,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("bucket", &self.bucket.to_string())
            .finish()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl BucketStore {
    pub fn new(bucket: Arc<dyn ObjectStore>, opts: StoreOptions, metrics: &Metrics) -> Arc<Self> {
        Arc::new(BucketStore {
            bucket,
            opts,
            blocks: RwLock::new(Arc::new(BTreeMap::new())),
            corrupt: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            metrics: BucketMetrics::new(metrics),
        })
    }

    /// Whether the first sync has completed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A snapshot of the loaded blocks.
    pub fn blocks(&self) -> Arc<BlockMap> {
        self.blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Lists the bucket and brings the loaded block set in line with it.
    pub async fn sync(&self) -> Result<SyncReport, BucketError> {
        self.metrics.syncs.inc();
        let res = self.sync_inner().await;
        if res.is_err() {
            self.metrics.sync_failures.inc();
        }
        self.ready.store(true, Ordering::Release);
        res
    }

    async fn sync_inner(&self) -> Result<SyncReport, BucketError> {
        let listing = self.bucket.list_with_delimiter(None).await?;
        let mut ids: Vec<Ulid> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| {
                p.parts()
                    .last()
                    .and_then(|s| Ulid::from_string(s.as_ref()).ok())
            })
            .collect();
        ids.sort();
        let current = self.blocks();
        let delay = self.opts.ignore_deletion_marks_delay.as_secs() as i64;
        let now = now_unix();

        // Deletion marks, for every block present (loaded or not).
        let marks: Vec<(Ulid, bool)> = futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                let path = Path::from(format!("{id}/{}", sluice_tsdb::meta::DELETION_MARK_FILENAME));
                let hidden = match self.bucket.get(&path).await {
                    Ok(r) => match r.bytes().await {
                        Ok(b) => match DeletionMark::parse(&b) {
                            Ok(m) => now - m.deletion_time >= delay,
                            Err(e) => {
                                tracing::warn!(block = %id, error = %e, "ignoring unreadable deletion mark");
                                false
                            }
                        },
                        Err(e) => {
                            tracing::warn!(block = %id, error = %e, "cannot read deletion mark");
                            false
                        }
                    },
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => {
                        tracing::warn!(block = %id, error = %e, "cannot read deletion mark");
                        false
                    }
                };
                (id, hidden)
            })
            .buffer_unordered(self.opts.sync_concurrency.max(1))
            .collect()
            .await;
        let hidden: HashMap<Ulid, bool> = marks.into_iter().collect();
        let wanted: Vec<Ulid> = ids
            .into_iter()
            .filter(|id| !hidden.get(id).copied().unwrap_or(false))
            .collect();

        let to_load: Vec<Ulid> = {
            let corrupt = self.corrupt.lock().unwrap_or_else(|p| p.into_inner());
            wanted
                .iter()
                .filter(|id| !current.contains_key(id) && !corrupt.contains_key(id))
                .copied()
                .collect()
        };
        let results: Vec<(Ulid, Result<Option<Block>, BlockError>)> =
            futures::stream::iter(to_load)
                .map(|id| async move {
                    (
                        id,
                        Block::load(self.bucket.clone(), id, &self.opts.data_dir).await,
                    )
                })
                .buffer_unordered(self.opts.sync_concurrency.max(1))
                .collect()
                .await;

        let mut report = SyncReport::default();
        let mut next: BlockMap = current
            .iter()
            .filter(|(id, _)| wanted.binary_search(id).is_ok())
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        for id in current.keys() {
            if !next.contains_key(id) {
                report.dropped.push(*id);
                self.metrics.block_drops.inc();
                let dir = self.opts.data_dir.join(id.to_string());
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(block = %id, path = %dir.display(), error = %e, "cannot remove local block cache");
                }
                tracing::info!(block = %id, "dropped block");
            }
        }
        for (id, res) in results {
            match res {
                Ok(Some(b)) => {
                    self.metrics.block_loads.inc();
                    tracing::info!(block = %id, min_time = b.meta.min_time, max_time = b.meta.max_time,
                        resolution = b.resolution(), labels = %b.ext_labels, "loaded block");
                    next.insert(id, Arc::new(b));
                    report.loaded.push(id);
                }
                // No meta.json yet: a partial upload, not an error.
                Ok(None) => {
                    tracing::debug!(block = %id, "skipping block without meta.json (partial upload)")
                }
                Err(e) => {
                    self.metrics.block_loads.inc();
                    self.metrics.block_load_failures.inc();
                    tracing::error!(block = %id, error = %e, "failed to load block; skipping it");
                    if e.is_permanent() {
                        self.corrupt
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, e.to_string());
                    }
                    report.failed.push((id, e.to_string()));
                }
            }
        }
        self.metrics.blocks_loaded.set(next.len() as i64);
        *self.blocks.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(report)
    }

    /// Runs [`sync`](Self::sync) every `interval` until the task is dropped.
    pub fn spawn_sync_loop(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.sync().await {
                    tracing::warn!(error = %e, "block sync failed");
                }
            }
        })
    }

    /// Time range and external label sets of the loaded blocks. With no blocks
    /// the range is empty (`i64::MAX..i64::MIN`), so queriers prune this store.
    pub fn info(&self) -> (i64, i64, Vec<LabelSetInfo>) {
        let blocks = self.blocks();
        let mut sets: BTreeMap<Labels, (i64, i64)> = BTreeMap::new();
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for b in blocks.values() {
            min = min.min(b.meta.min_time);
            max = max.max(b.meta.max_time);
            let e = sets
                .entry(b.ext_labels.clone())
                .or_insert((i64::MAX, i64::MIN));
            e.0 = e.0.min(b.meta.min_time);
            e.1 = e.1.max(b.meta.max_time);
        }
        let sets = sets
            .into_iter()
            .map(|(labels, (min_time, max_time))| LabelSetInfo {
                labels,
                min_time,
                max_time,
            })
            .collect();
        (min, max, sets)
    }

    /// Metadata of the loaded blocks, for status pages.
    pub fn block_metas(&self) -> Vec<BlockMeta> {
        self.blocks().values().map(|b| b.meta.clone()).collect()
    }

    /// Blocks that failed verification, with the reason.
    pub fn corrupt_blocks(&self) -> Vec<(Ulid, String)> {
        let c = self.corrupt.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = c.iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort();
        v
    }
}
