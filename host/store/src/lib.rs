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
pub mod catalog;
pub mod filter;
mod query;
mod select;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use object_store::ObjectStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_storeapi::{Component, SourceInfo, StoreError, TsdbInfo};
use sluice_tsdb::meta::BlockMeta;
use ulid::Ulid;

use sluice_metrics::Metrics;
use sluice_model::Labels;

pub use block::{Block, BlockError};
pub use catalog::{Catalog, CatalogEntry, CatalogError, EntryState};
pub use filter::{BlockFilter, Selector, TimeBound};

/// Errors of the bucket store.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
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

impl From<CatalogError> for BucketError {
    fn from(e: CatalogError) -> Self {
        BucketError::Bucket(e.0)
    }
}

impl From<BucketError> for StoreError {
    fn from(e: BucketError) -> Self {
        match e {
            BucketError::NotReady => StoreError::NotReady(e.to_string()),
            BucketError::Block { block, source } => StoreError::Unavailable {
                what: format!("block {block}"),
                detail: source.to_string(),
            },
            BucketError::Bucket(e) => StoreError::Unavailable {
                what: "bucket".into(),
                detail: e.to_string(),
            },
            BucketError::Internal(e) => StoreError::Internal(e),
        }
    }
}

/// Knobs of a bucket store (Thanos store-gateway flag semantics).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Local directory for index copies (`--data-dir`).
    pub data_dir: PathBuf,
    /// Blocks marked for deletion longer ago than this are not served
    /// (`--ignore-deletion-marks-delay`).
    pub ignore_deletion_marks_delay: Duration,
    /// Concurrent block loads during sync (`--block-sync-concurrency`).
    pub sync_concurrency: usize,
    /// Series one Series call may touch in the blocks' indexes, before
    /// merging and limits (`--store.grpc.touched-series-limit`, 0 = none).
    pub touched_series_limit: u64,
    /// Chunk bytes one Series call may download
    /// (`--store.grpc.downloaded-bytes-limit`, 0 = none).
    pub downloaded_bytes_limit: u64,
    /// Which blocks this store serves (`--min-time`, `--max-time`,
    /// `--selector.relabel-config`).
    pub filter: BlockFilter,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            data_dir: PathBuf::from("./data"),
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            sync_concurrency: 20,
            touched_series_limit: 0,
            downloaded_bytes_limit: 0,
            filter: BlockFilter::default(),
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

type BlockMap = BTreeMap<Ulid, Arc<Block>>;

/// Serves the blocks of one bucket.
pub struct BucketStore {
    bucket: Arc<dyn ObjectStore>,
    catalog: Catalog,
    opts: StoreOptions,
    blocks: RwLock<Arc<BlockMap>>,
    /// Blocks whose bytes are corrupt: immutable objects stay corrupt, so they
    /// are not downloaded again on every sync.
    corrupt: Mutex<HashMap<Ulid, String>>,
    ready: AtomicBool,
    /// Why the last sync failed, while it stays failed.
    sync_error: Mutex<Option<String>>,
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
            catalog: Catalog::new(bucket.clone(), opts.sync_concurrency),
            bucket,
            opts,
            blocks: RwLock::new(Arc::new(BTreeMap::new())),
            corrupt: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            sync_error: Mutex::new(None),
            metrics: BucketMetrics::new(metrics),
        })
    }

    /// Whether a sync has succeeded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Ready, or why not: before the first successful sync, the last sync
    /// error if there was one.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_ready() {
            return Ok(());
        }
        match &*self.sync_error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(format!("initial block sync failed (retrying): {e}")),
            None => Err("initial block sync in progress".into()),
        }
    }

    /// A snapshot of the loaded blocks.
    pub fn blocks(&self) -> Arc<BlockMap> {
        self.blocks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The time range this store serves now (`--min-time`, `--max-time`).
    pub fn served_range(&self) -> (i64, i64) {
        self.opts.filter.range(now_unix() * 1000)
    }

    /// The catalog this store syncs from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Lists the bucket and brings the loaded block set in line with it.
    /// The store is ready once a sync has succeeded.
    pub async fn sync(&self) -> Result<SyncReport, BucketError> {
        self.metrics.syncs.inc();
        let res = self.sync_inner().await;
        let mut last = self.sync_error.lock().unwrap_or_else(|p| p.into_inner());
        match &res {
            Ok(_) => {
                *last = None;
                self.ready.store(true, Ordering::Release);
            }
            Err(e) => {
                *last = Some(e.to_string());
                self.metrics.sync_failures.inc();
            }
        }
        drop(last);
        res
    }

    async fn sync_inner(&self) -> Result<SyncReport, BucketError> {
        let current = self.blocks();
        let known: BTreeMap<Ulid, BlockMeta> = current
            .iter()
            .map(|(id, b)| (*id, b.meta.clone()))
            .collect();
        let entries = self.catalog.sync(&known).await?;
        let delay = self.opts.ignore_deletion_marks_delay.as_secs() as i64;
        let now = now_unix();
        let mut wanted: Vec<Ulid> = Vec::new();
        let mut to_load: Vec<BlockMeta> = Vec::new();
        {
            let mut corrupt = self.corrupt.lock().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                let hidden = e
                    .deletion_mark
                    .as_ref()
                    .is_some_and(|m| now - m.deletion_time >= delay);
                if hidden {
                    continue;
                }
                match e.state {
                    EntryState::Ready(meta) => {
                        let ext = Labels::from_pairs(
                            meta.external_labels()
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone())),
                        );
                        if !self.opts.filter.keeps(&meta, &ext, now * 1000) {
                            continue;
                        }
                        wanted.push(e.id);
                        if !current.contains_key(&e.id) && !corrupt.contains_key(&e.id) {
                            to_load.push(*meta);
                        }
                    }
                    // No meta.json yet: a partial upload, not an error.
                    EntryState::Partial => {
                        tracing::debug!(block = %e.id, "skipping block without meta.json (partial upload)")
                    }
                    EntryState::Unreadable(reason) => {
                        tracing::warn!(block = %e.id, error = %reason, "cannot read block metadata; retrying at the next sync")
                    }
                    EntryState::Corrupt(reason) => {
                        if corrupt.insert(e.id, reason.clone()).is_none() {
                            self.metrics.block_loads.inc();
                            self.metrics.block_load_failures.inc();
                            tracing::error!(block = %e.id, error = %reason, "failed to load block; skipping it");
                        }
                    }
                }
            }
        }
        let results: Vec<(Ulid, Result<Block, BlockError>)> = futures::stream::iter(to_load)
            .map(|meta| async move {
                let id = meta.ulid;
                (
                    id,
                    Block::open(self.bucket.clone(), meta, &self.opts.data_dir).await,
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
                Ok(b) => {
                    self.metrics.block_loads.inc();
                    tracing::info!(block = %id, min_time = b.meta.min_time, max_time = b.meta.max_time,
                        resolution = b.resolution(), labels = %b.ext_labels, "loaded block");
                    next.insert(id, Arc::new(b));
                    report.loaded.push(id);
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

    /// Runs [`sync`](Self::sync) every `interval`, for as long as the
    /// returned future is polled: the process's task set owns it, so
    /// dropping or aborting that task ends the loop.
    pub async fn run_sync_loop(&self, interval: Duration) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "block sync failed");
            }
        }
    }

    /// Time range and external label sets of the loaded blocks. With no blocks
    /// the range is empty (`i64::MAX..i64::MIN`), so queriers prune this store.
    pub fn source_info(&self) -> SourceInfo {
        let blocks = self.blocks();
        let mut sets: BTreeMap<Labels, (i64, i64)> = BTreeMap::new();
        let mut info = SourceInfo::empty(Component::Store);
        let (lo, hi) = self.opts.filter.range(now_unix() * 1000);
        for b in blocks.values() {
            info.min_time = info.min_time.min(b.meta.min_time);
            info.max_time = info.max_time.max(b.meta.max_time);
            let e = sets
                .entry(b.ext_labels.clone())
                .or_insert((i64::MAX, i64::MIN));
            e.0 = e.0.min(b.meta.min_time);
            e.1 = e.1.max(b.meta.max_time);
        }
        if !blocks.is_empty() {
            info.min_time = info.min_time.max(lo);
            info.max_time = info.max_time.min(hi.saturating_add(1));
        }
        for (labels, (min_time, max_time)) in sets {
            let (min_time, max_time) = (min_time.max(lo), max_time.min(hi.saturating_add(1)));
            info.label_sets.push(labels.clone());
            info.tsdb_infos.push(TsdbInfo {
                labels,
                min_time,
                max_time,
            });
        }
        info
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
