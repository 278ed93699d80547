//! Query execution over the loaded blocks: Series (postings → series →
//! cross-block merge in label order → batched chunk reads streamed to the
//! caller), LabelNames and LabelValues.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sluice_proto::thanos::{Aggr, AggrChunk, Chunk, SeriesBatch, SeriesResponse, series_response};
use sluice_proto::thanos::{Label as PbLabel, Series};
use sluice_tsdb::aggr::decode_aggr;
use sluice_tsdb::chunk::Encoding;
use sluice_tsdb::index::{ChunkMeta, IndexReader, SeriesEntry};
use tokio::sync::mpsc;

use super::select::{block_matchers, overlaps, select_blocks};
use super::{Block, BlockError, BucketError, BucketStore};
use crate::model::{Labels, MatchOp, Matcher};

/// Series to stream in one batch of chunk reads.
const SERIES_PER_BATCH: usize = 512;

/// A Series request in the store's terms.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<Matcher>,
    /// Coarsest downsampling resolution accepted (ms).
    pub max_resolution_window: i64,
    /// Aggregates wanted from downsampled chunks.
    pub aggregates: Vec<Aggr>,
    pub skip_chunks: bool,
    pub without_replica_labels: Vec<String>,
    /// Maximum series to return, 0 = all.
    pub limit: usize,
    pub shard: Option<Shard>,
    /// Errors while reading a block become warnings (WARN) instead of failing the call.
    pub partial_response: bool,
    /// Series per frame; ≤ 1 sends one `series` frame each, more sends `batch` frames.
    pub batch_size: usize,
}

/// Vertical sharding of series by a hash of (some of) their labels.
#[derive(Debug, Clone, Default)]
pub struct Shard {
    pub index: u64,
    pub total: u64,
    pub by: bool,
    pub labels: Vec<String>,
}

impl Shard {
    /// Thanos' rule: XXH64 over `name 0xff value 0xff` of the selected labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        if self.total < 1 {
            return true;
        }
        let mut buf = Vec::with_capacity(256);
        for l in labels.iter() {
            let listed = self.labels.iter().any(|n| *n == l.name);
            if listed == self.by {
                buf.extend_from_slice(l.name.as_bytes());
                buf.push(0xff);
                buf.extend_from_slice(l.value.as_bytes());
                buf.push(0xff);
            }
        }
        xxhash_rust::xxh64::xxh64(&buf, 0) % self.total == self.index
    }
}

/// A LabelNames / LabelValues request.
#[derive(Debug, Clone, Default)]
pub struct LabelsQuery {
    pub start: i64,
    pub end: i64,
    pub matchers: Vec<Matcher>,
    pub without_replica_labels: Vec<String>,
    pub limit: usize,
}

/// One output series: its final labels and, per block, the chunks to send.
struct OutSeries {
    labels: Labels,
    parts: Vec<(usize, Vec<ChunkMeta>)>,
}

/// Postings of the series matching `ms` with Prometheus semantics: matchers
/// that match the empty string select by exclusion, so series lacking the
/// label match them too.
fn postings_for_matchers<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    ms: &[&Matcher],
) -> Result<Vec<u32>, sluice_tsdb::Error> {
    let mut intersect: Vec<Vec<u32>> = Vec::new();
    let mut subtract: Vec<Vec<u32>> = Vec::new();
    for m in ms {
        if m.matches("") {
            // `a=""`, `a!="x"`, `a=~"|x"`, `a!~"x"`: remove series whose value does not match.
            let lists = match m.op {
                MatchOp::Neq => vec![ix.postings(&m.name, &m.value)?],
                _ => values_where(ix, &m.name, |v| !m.matches(v))?,
            };
            subtract.push(union(lists));
        } else {
            let lists = match m.op {
                MatchOp::Eq => vec![ix.postings(&m.name, &m.value)?],
                _ => values_where(ix, &m.name, |v| m.matches(v))?,
            };
            intersect.push(union(lists));
        }
    }
    let mut result = if intersect.is_empty() {
        ix.all_postings()?
    } else {
        intersect.sort_by_key(Vec::len);
        let mut it = intersect.into_iter();
        let mut acc = it.next().unwrap_or_default();
        for l in it {
            acc = intersect_sorted(&acc, &l);
        }
        acc
    };
    if !subtract.is_empty() {
        let sub = union(subtract);
        result = subtract_sorted(&result, &sub);
    }
    Ok(result)
}

fn values_where<B: AsRef<[u8]>>(
    ix: &IndexReader<B>,
    name: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<Vec<Vec<u32>>, sluice_tsdb::Error> {
    let mut offsets = Vec::new();
    ix.for_each_value(name, |v, off| {
        if pred(v) {
            offsets.push(off);
        }
        true
    })?;
    offsets.into_iter().map(|off| ix.postings_at(off)).collect()
}

fn union(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all: Vec<u32> = lists.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

fn intersect_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            !(j < b.len() && b[j] == x)
        })
        .collect()
}

/// Series of one block matching the query, with final labels and the chunks
/// overlapping the time range. Runs on a blocking thread.
fn block_series(
    block: &Block,
    matchers: &[&Matcher],
    mint: i64,
    maxt: i64,
    strip: &[String],
    shard: Option<&Shard>,
) -> Result<Vec<(Labels, Vec<ChunkMeta>)>, BlockError> {
    let fmt = |what| move |source| BlockError::Format { what, source };
    let ids = postings_for_matchers(&block.index, matchers).map_err(fmt("index postings"))?;
    let mut out = Vec::with_capacity(ids.len());
    let mut entry = SeriesEntry::default();
    for id in ids {
        block
            .index
            .series(id, &mut entry)
            .map_err(fmt("index series"))?;
        let chunks: Vec<ChunkMeta> = entry
            .chunks
            .iter()
            .filter(|c| c.max_time >= mint && c.min_time <= maxt)
            .copied()
            .collect();
        if chunks.is_empty() {
            continue;
        }
        let mut labels = block.labels_of(&entry)?;
        labels.extend_overriding(&block.ext_labels);
        labels.remove_names(strip);
        if let Some(s) = shard
            && !s.matches(&labels)
        {
            continue;
        }
        out.push((labels, chunks));
    }
    Ok(out)
}

fn check_matchers(ms: &[Matcher]) -> Result<(), BucketError> {
    if ms.is_empty() {
        return Err(BucketError::InvalidArgument(
            "no matchers specified (excluding selector labels)".into(),
        ));
    }
    Ok(())
}

impl BucketStore {
    /// Runs a Series query, sending frames to `tx` as they are ready. Returns
    /// when everything was sent, the receiver went away, or an error was sent.
    pub async fn series(
        self: &Arc<Self>,
        q: SeriesQuery,
        tx: mpsc::Sender<Result<SeriesResponse, BucketError>>,
    ) {
        if let Err(e) = self.series_inner(q, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn series_inner(
        self: &Arc<Self>,
        q: SeriesQuery,
        tx: &mpsc::Sender<Result<SeriesResponse, BucketError>>,
    ) -> Result<(), BucketError> {
        if !self.is_ready() {
            return Err(BucketError::NotReady);
        }
        check_matchers(&q.matchers)?;
        let all: Vec<Arc<Block>> = self
            .blocks()
            .values()
            .filter(|b| overlaps(b, q.min_time, q.max_time))
            .cloned()
            .collect();
        let blocks = select_blocks(&all, q.min_time, q.max_time, q.max_resolution_window);

        // Postings and series entries, one blocking task per block.
        let q = Arc::new(q);
        let mut tasks = Vec::new();
        for (bi, b) in blocks.iter().enumerate() {
            let Some(ms) = block_matchers(&b.ext_labels, &q.matchers) else {
                continue;
            };
            let ms: Vec<Matcher> = ms.into_iter().cloned().collect();
            let (b, q) = (b.clone(), q.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let refs: Vec<&Matcher> = ms.iter().collect();
                let r = block_series(
                    &b,
                    &refs,
                    q.min_time,
                    q.max_time,
                    &q.without_replica_labels,
                    q.shard.as_ref(),
                );
                (bi, b.id, r)
            }));
        }
        let mut entries: Vec<(Labels, usize, Vec<ChunkMeta>)> = Vec::new();
        let mut warnings = Vec::new();
        for t in tasks {
            let (bi, id, r) = t
                .await
                .map_err(|e| BucketError::Internal(format!("series task: {e}")))?;
            match r {
                Ok(v) => entries.extend(v.into_iter().map(|(l, c)| (l, bi, c))),
                Err(e) if q.partial_response => warnings.push(format!("block {id}: {e}")),
                Err(e) => {
                    return Err(BucketError::Block {
                        block: id,
                        source: Box::new(e),
                    });
                }
            }
        }
        for w in warnings {
            tracing::warn!(warning = %w, "series: skipping unreadable block");
            if tx.send(Ok(warning_frame(w))).await.is_err() {
                return Ok(());
            }
        }

        // One output series per label set, blocks in time order within it.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<OutSeries> = Vec::new();
        for (labels, bi, chunks) in entries {
            match out.last_mut() {
                Some(last) if last.labels == labels => last.parts.push((bi, chunks)),
                _ => out.push(OutSeries {
                    labels,
                    parts: vec![(bi, chunks)],
                }),
            }
        }
        if q.limit > 0 && out.len() > q.limit {
            out.truncate(q.limit);
        }
        let series_limit = self.options().series_limit;
        if series_limit > 0 && out.len() as u64 > series_limit {
            return Err(BucketError::LimitExceeded {
                limit: "series",
                detail: format!(
                    "the query selects {} series, more than --store.limits.request-series={series_limit}",
                    out.len()
                ),
            });
        }
        self.metrics.series_fetched.inc_by(out.len() as u64);

        let batch_size = q.batch_size.max(1);
        if q.skip_chunks {
            let series: Vec<Series> = out
                .into_iter()
                .map(|s| Series {
                    labels: into_pb_labels(s.labels),
                    chunks: vec![],
                })
                .collect();
            return send_series(tx, series, batch_size).await;
        }

        // Read chunks batch by batch; the next batch is read while the
        // current one is being sent.
        let samples_limit = self.options().samples_limit;
        let mut samples: u64 = 0;
        let batches: Vec<Vec<OutSeries>> = chunked(out, SERIES_PER_BATCH);
        let blocks = Arc::new(blocks);
        let mut fetched = futures::stream::iter(batches.into_iter().map(|batch| {
            let (blocks, q, store) = (blocks.clone(), q.clone(), self.clone());
            async move {
                store
                    .read_batch(&blocks, batch, &q.aggregates, q.partial_response)
                    .await
            }
        }))
        .buffered(2);
        while let Some(r) = fetched.next().await {
            let (series, warnings, batch_samples) = r?;
            for w in warnings {
                if tx.send(Ok(warning_frame(w))).await.is_err() {
                    return Ok(());
                }
            }
            samples += batch_samples;
            if samples_limit > 0 && samples > samples_limit {
                return Err(BucketError::LimitExceeded {
                    limit: "samples",
                    detail: format!(
                        "the query reads more than --store.limits.request-samples={samples_limit} samples"
                    ),
                });
            }
            send_series(tx, series, batch_size).await?;
        }
        Ok(())
    }

    /// Reads the chunks of one batch of series from their blocks.
    async fn read_batch(
        &self,
        blocks: &[Arc<Block>],
        batch: Vec<OutSeries>,
        aggregates: &[Aggr],
        partial: bool,
    ) -> Result<(Vec<Series>, Vec<String>, u64), BucketError> {
        let mut per_block: Vec<Vec<u64>> = vec![Vec::new(); blocks.len()];
        for s in &batch {
            for (bi, chunks) in &s.parts {
                per_block[*bi].extend(chunks.iter().map(|c| c.chunk_ref));
            }
        }
        let reads = per_block
            .iter_mut()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(bi, refs)| {
                refs.sort_unstable();
                refs.dedup();
                let refs = &*refs;
                async move { (bi, blocks[bi].fetch_chunks(refs).await) }
            });
        let results = futures::future::join_all(reads).await;
        let mut data: Vec<Option<Vec<super::block::FetchedChunk>>> = vec![None; blocks.len()];
        let mut warnings = Vec::new();
        let mut bytes_read = 0u64;
        for (bi, r) in results {
            match r {
                Ok(v) => {
                    bytes_read += v.iter().map(|c| c.data.len() as u64).sum::<u64>();
                    self.metrics.chunks_fetched.inc_by(v.len() as u64);
                    data[bi] = Some(v);
                }
                Err(e) if partial => {
                    tracing::warn!(block = %blocks[bi].id, error = %e, "cannot read chunks; returning partial data");
                    warnings.push(format!("block {}: {e}", blocks[bi].id));
                }
                Err(e) => {
                    return Err(BucketError::Block {
                        block: blocks[bi].id,
                        source: Box::new(e),
                    });
                }
            }
        }
        self.metrics.chunk_bytes_fetched.inc_by(bytes_read);

        let mut samples = 0u64;
        let mut out = Vec::with_capacity(batch.len());
        for s in batch {
            let mut chunks = Vec::new();
            for (bi, metas) in &s.parts {
                let Some(fetched) = &data[*bi] else { continue };
                for m in metas {
                    let Ok(pos) = per_block[*bi].binary_search(&m.chunk_ref) else {
                        continue;
                    };
                    let c = &fetched[pos];
                    let (ac, n) =
                        to_aggr_chunk(m, c.encoding, &c.data, aggregates).map_err(|e| {
                            BucketError::Block {
                                block: blocks[*bi].id,
                                source: Box::new(e),
                            }
                        })?;
                    samples += n;
                    chunks.push(ac);
                }
            }
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            out.push(Series {
                labels: into_pb_labels(s.labels),
                chunks,
            });
        }
        Ok((out, warnings, samples))
    }

    /// Label names of the series matching the query (all names when there are
    /// no matchers), including external labels, sorted and unique.
    pub async fn label_names(self: &Arc<Self>, q: LabelsQuery) -> Result<Vec<String>, BucketError> {
        self.labels_common(q, None).await
    }

    /// Values of `name` on the series matching the query, sorted and unique.
    pub async fn label_values(
        self: &Arc<Self>,
        name: &str,
        q: LabelsQuery,
    ) -> Result<Vec<String>, BucketError> {
        if q.without_replica_labels.iter().any(|l| l == name) {
            return Ok(Vec::new());
        }
        self.labels_common(q, Some(name.to_string())).await
    }

    async fn labels_common(
        self: &Arc<Self>,
        q: LabelsQuery,
        value_of: Option<String>,
    ) -> Result<Vec<String>, BucketError> {
        if !self.is_ready() {
            return Err(BucketError::NotReady);
        }
        let blocks: Vec<Arc<Block>> = self
            .blocks()
            .values()
            .filter(|b| overlaps(b, q.start, q.end))
            .cloned()
            .collect();
        let q = Arc::new(q);
        let mut tasks = Vec::new();
        for b in blocks {
            let (q, value_of) = (q.clone(), value_of.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                block_labels(&b, &q, value_of.as_deref()).map_err(|e| (b.id, e))
            }));
        }
        let mut set = BTreeSet::new();
        for t in tasks {
            let r = t
                .await
                .map_err(|e| BucketError::Internal(format!("labels task: {e}")))?;
            match r {
                Ok(v) => set.extend(v),
                Err((block, e)) => {
                    return Err(BucketError::Block {
                        block,
                        source: Box::new(e),
                    });
                }
            }
        }
        let mut v: Vec<String> = set.into_iter().filter(|s| !s.is_empty()).collect();
        if value_of.is_none() {
            v.retain(|n| !q.without_replica_labels.contains(n));
        }
        if q.limit > 0 {
            v.truncate(q.limit);
        }
        Ok(v)
    }
}

/// Names (or values of one name) contributed by one block.
fn block_labels(
    b: &Block,
    q: &LabelsQuery,
    value_of: Option<&str>,
) -> Result<Vec<String>, BlockError> {
    let Some(ms) = block_matchers(&b.ext_labels, &q.matchers) else {
        return Ok(Vec::new());
    };
    let fmt = |what| move |source| BlockError::Format { what, source };
    if ms.is_empty() {
        // Only external-label matchers (or none): the index's lists answer.
        return Ok(match value_of {
            Some(name) => match b.ext_labels.get(name) {
                Some(v) => vec![v.to_string()],
                None => b
                    .index
                    .label_values(name)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            },
            None => {
                let mut v: Vec<String> = b
                    .index
                    .label_names()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                v.extend(b.ext_labels.iter().map(|l| l.name.clone()));
                v
            }
        });
    }
    let ids = postings_for_matchers(&b.index, &ms).map_err(fmt("index postings"))?;
    let mut set = BTreeSet::new();
    let mut entry = SeriesEntry::default();
    for id in ids {
        b.index
            .series(id, &mut entry)
            .map_err(fmt("index series"))?;
        if !entry
            .chunks
            .iter()
            .any(|c| c.max_time >= q.start && c.min_time <= q.end)
        {
            continue;
        }
        let mut labels = b.labels_of(&entry)?;
        labels.extend_overriding(&b.ext_labels);
        match value_of {
            Some(name) => {
                if let Some(v) = labels.get(name) {
                    set.insert(v.to_string());
                }
            }
            None => set.extend(labels.iter().map(|l| l.name.clone())),
        }
    }
    Ok(set.into_iter().collect())
}

fn chunked(v: Vec<OutSeries>, n: usize) -> Vec<Vec<OutSeries>> {
    let mut out = Vec::with_capacity(v.len().div_ceil(n));
    let mut cur = Vec::with_capacity(n.min(v.len()));
    for s in v {
        cur.push(s);
        if cur.len() == n {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(n)));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn send_series(
    tx: &mpsc::Sender<Result<SeriesResponse, BucketError>>,
    series: Vec<Series>,
    batch_size: usize,
) -> Result<(), BucketError> {
    if batch_size <= 1 {
        for s in series {
            let frame = SeriesResponse {
                result: Some(series_response::Result::Series(s)),
            };
            if tx.send(Ok(frame)).await.is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut it = series.into_iter().peekable();
    while it.peek().is_some() {
        let batch: Vec<Series> = it.by_ref().take(batch_size).collect();
        let frame = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch {
                series: batch,
            })),
        };
        if tx.send(Ok(frame)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn warning_frame(w: String) -> SeriesResponse {
    SeriesResponse {
        result: Some(series_response::Result::Warning(w)),
    }
}

fn into_pb_labels(l: Labels) -> Vec<PbLabel> {
    l.into_vec()
        .into_iter()
        .map(|l| PbLabel {
            name: l.name,
            value: l.value,
        })
        .collect()
}

/// Wire labels of a label set.
pub fn to_pb_labels(l: &Labels) -> Vec<PbLabel> {
    l.iter()
        .map(|l| PbLabel {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

fn pb_chunk(encoding: u8, data: Bytes) -> Result<Chunk, BlockError> {
    // storepb numbers encodings one lower than Prometheus' chunkenc.
    let kind = match Encoding::from_u8(encoding) {
        Ok(Encoding::Xor) => 0,
        Ok(Encoding::Histogram) => 1,
        Ok(Encoding::FloatHistogram) => 2,
        _ => {
            return Err(BlockError::Invalid(format!(
                "unsupported chunk encoding {encoding:#04x} inside an aggregate chunk"
            )));
        }
    };
    let hash = xxhash_rust::xxh64::xxh64(&data, 0);
    Ok(Chunk {
        r#type: kind,
        data,
        hash,
    })
}

fn samples_in(data: &[u8]) -> u64 {
    if data.len() >= 2 {
        u64::from(u16::from_be_bytes([data[0], data[1]]))
    } else {
        0
    }
}

/// Turns a stored chunk into the wire's AggrChunk: raw chunks go in `raw`,
/// downsampled (0xFF) chunks are split into the requested aggregates.
/// Returns the chunk and its sample count (for the samples limit).
fn to_aggr_chunk(
    m: &ChunkMeta,
    encoding: u8,
    data: &Bytes,
    aggregates: &[Aggr],
) -> Result<(AggrChunk, u64), BlockError> {
    let mut ac = AggrChunk {
        min_time: m.min_time,
        max_time: m.max_time,
        ..Default::default()
    };
    if encoding != Encoding::Aggr as u8 {
        let n = samples_in(data);
        ac.raw = Some(pb_chunk(encoding, data.clone())?);
        return Ok((ac, n));
    }
    let parts = decode_aggr(data).map_err(|source| BlockError::Format {
        what: "aggregate chunk",
        source,
    })?;
    let mut n = 0;
    for a in aggregates {
        let (idx, name) = match a {
            Aggr::Count => (0, "count"),
            Aggr::Sum => (1, "sum"),
            Aggr::Min => (2, "min"),
            Aggr::Max => (3, "max"),
            Aggr::Counter => (4, "counter"),
            Aggr::Raw => continue,
        };
        let Some(p) = parts[idx] else {
            return Err(BlockError::Invalid(format!(
                "aggregate {name} does not exist"
            )));
        };
        // Slice the sub-chunk out of the shared buffer instead of copying it.
        let offset = p.data.as_ptr() as usize - data.as_ptr() as usize;
        let sub = data.slice(offset..offset + p.data.len());
        n = n.max(samples_in(&sub));
        let c = Some(pb_chunk(p.encoding, sub)?);
        match a {
            Aggr::Count => ac.count = c,
            Aggr::Sum => ac.sum = c,
            Aggr::Min => ac.min = c,
            Aggr::Max => ac.max = c,
            Aggr::Counter => ac.counter = c,
            Aggr::Raw => {}
        }
    }
    Ok((ac, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        assert_eq!(intersect_sorted(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(subtract_sorted(&[1, 3, 5, 7], &[3, 7, 9]), vec![1, 5]);
        assert_eq!(
            union(
                vec![vec![5, 1], vec![1, 2]]
                    .into_iter()
                    .map(|mut v| {
                        v.sort();
                        v
                    })
                    .collect()
            ),
            vec![1, 2, 5]
        );
    }

    #[test]
    fn shard_partitions_series() {
        let series: Vec<Labels> = (0..200)
            .map(|i| Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]))
            .collect();
        let total = 3;
        let mut seen = 0;
        for idx in 0..total {
            let s = Shard {
                index: idx,
                total,
                by: false,
                labels: vec![],
            };
            seen += series.iter().filter(|l| s.matches(l)).count();
        }
        assert_eq!(seen, 200, "every series lands in exactly one shard");
        let by_name = Shard {
            index: 0,
            total: 2,
            by: true,
            labels: vec!["__name__".into()],
        };
        let first = by_name.matches(&series[0]);
        assert!(
            series.iter().all(|l| by_name.matches(l) == first),
            "sharding by __name__ keeps a metric together"
        );
    }
}
