//! Query execution over the loaded blocks: Series (postings → series →
//! cross-block merge in label order → batched chunk reads streamed to the
//! caller), LabelNames and LabelValues.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sluice_model::{Labels, MatchOp, Matcher};
use sluice_proto::thanos::{Aggr, AggrChunk, Chunk, Series};
use sluice_storeapi::{
    Flow, LabelsAnswer, LabelsKind, LabelsQuery, SeriesQuery, SeriesSink, SourceInfo, StoreError,
    StoreSource, into_pb_labels,
};
use sluice_tsdb::aggr::decode_aggr;
use sluice_tsdb::chunk::Encoding;
use sluice_tsdb::index::{ChunkMeta, IndexReader, SeriesEntry};

use super::select::{block_matchers, overlaps, select_blocks};
use super::{Block, BlockError, BucketError, BucketStore};

/// Series to stream in one batch of chunk reads.
const SERIES_PER_BATCH: usize = 512;

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
    q: &SeriesQuery,
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
            .filter(|c| c.max_time >= q.min_time && c.min_time <= q.max_time)
            .copied()
            .collect();
        if chunks.is_empty() {
            continue;
        }
        let labels = block.labels_of(&entry)?;
        if let Some(labels) = q.final_labels(labels, &block.ext_labels) {
            out.push((labels, chunks));
        }
    }
    Ok(out)
}

/// Whether a block passes a request's hint block matchers (its external
/// labels and `__block_id`).
fn block_hinted(b: &Block, ms: &[Matcher]) -> bool {
    if ms.is_empty() {
        return true;
    }
    let mut l = b.ext_labels.clone();
    l.extend_overriding(&Labels::from_pairs([("__block_id", b.id.to_string())]));
    ms.iter().all(|m| m.matches_labels(&l))
}

fn queried_blocks(ids: &[ulid::Ulid]) -> Vec<sluice_proto::hintspb::Block> {
    ids.iter()
        .map(|id| sluice_proto::hintspb::Block { id: id.to_string() })
        .collect()
}

impl StoreSource for BucketStore {
    fn info(&self) -> Result<SourceInfo, StoreError> {
        if !self.is_ready() {
            return Err(BucketError::NotReady.into());
        }
        Ok(self.source_info())
    }

    async fn series(&self, q: SeriesQuery, sink: &mut SeriesSink) -> Result<(), StoreError> {
        let mut queried = Vec::new();
        self.series_inner(q, sink, &mut queried).await?;
        // Thanos' trailer: the blocks this call read.
        let hints = sluice_storeapi::hints_any(
            "SeriesResponseHints",
            &sluice_proto::hintspb::SeriesResponseHints {
                queried_blocks: queried_blocks(&queried),
                query_stats: None,
            },
        );
        let _ = sink.hints(&hints).await;
        Ok(())
    }

    async fn labels(&self, q: LabelsQuery) -> Result<LabelsAnswer, StoreError> {
        let names = q.kind == LabelsKind::Names;
        let (values, ids) = self.labels_common(q).await?;
        let blocks = queried_blocks(&ids);
        let hints = if names {
            sluice_storeapi::hints_any(
                "LabelNamesResponseHints",
                &sluice_proto::hintspb::LabelNamesResponseHints {
                    queried_blocks: blocks,
                },
            )
        } else {
            sluice_storeapi::hints_any(
                "LabelValuesResponseHints",
                &sluice_proto::hintspb::LabelValuesResponseHints {
                    queried_blocks: blocks,
                },
            )
        };
        Ok(LabelsAnswer {
            values,
            warnings: Vec::new(),
            hints: Some(hints),
        })
    }
}

impl BucketStore {
    async fn series_inner(
        &self,
        mut q: SeriesQuery,
        sink: &mut SeriesSink,
        queried: &mut Vec<ulid::Ulid>,
    ) -> Result<(), StoreError> {
        if !self.is_ready() {
            return Err(BucketError::NotReady.into());
        }
        // Time partitioning: nothing outside the served range leaks out of
        // a block that straddles its edge.
        let (lo, hi) = self.served_range();
        q.min_time = q.min_time.max(lo);
        q.max_time = q.max_time.min(hi);
        if q.min_time > q.max_time {
            return Ok(());
        }
        let all: Vec<Arc<Block>> = self
            .blocks()
            .values()
            .filter(|b| overlaps(b, q.min_time, q.max_time))
            .cloned()
            .collect();
        let mut blocks = select_blocks(&all, q.min_time, q.max_time, q.max_resolution_window);
        blocks.retain(|b| block_hinted(b, &q.block_matchers));

        // Postings and series entries, one blocking task per block.
        let q = Arc::new(q);
        let mut tasks = Vec::new();
        for (bi, b) in blocks.iter().enumerate() {
            let Some(ms) = block_matchers(&b.ext_labels, &q.matchers) else {
                continue;
            };
            let ms: Vec<Matcher> = ms.into_iter().cloned().collect();
            queried.push(b.id);
            let (b, q) = (b.clone(), q.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let refs: Vec<&Matcher> = ms.iter().collect();
                let r = block_series(&b, &refs, &q);
                (bi, b.id, r)
            }));
        }
        let mut entries: Vec<(Labels, usize, Vec<ChunkMeta>)> = Vec::new();
        let mut warnings = Vec::new();
        for t in tasks {
            let (bi, id, r) = t
                .await
                .map_err(|e| StoreError::Internal(format!("series task: {e}")))?;
            match r {
                Ok(v) => entries.extend(v.into_iter().map(|(l, c)| (l, bi, c))),
                Err(e) if q.partial_response => warnings.push(format!("block {id}: {e}")),
                Err(e) => {
                    return Err(BucketError::Block {
                        block: id,
                        source: Box::new(e),
                    }
                    .into());
                }
            }
        }
        let touched_limit = self.opts.touched_series_limit;
        if touched_limit > 0 && entries.len() as u64 > touched_limit {
            return Err(StoreError::limit(
                "touched series",
                format!(
                    "the query touches {} series in the blocks' indexes, more than --store.grpc.touched-series-limit={touched_limit}",
                    entries.len()
                ),
            ));
        }
        for w in warnings {
            tracing::warn!(warning = %w, "series: skipping unreadable block");
            if sink.warn(w).await? == Flow::Done {
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
        // The whole count is known before any chunk is read.
        sink.expect_series(out.len() as u64)?;
        self.metrics.series_fetched.inc_by(out.len() as u64);

        if q.skip_chunks {
            for s in out {
                let series = Series {
                    labels: into_pb_labels(s.labels),
                    chunks: vec![],
                };
                if sink.send(&series).await? == Flow::Done {
                    break;
                }
            }
            return Ok(());
        }

        // Read chunks batch by batch; the next batch is read while the
        // current one is being sent.
        let batches: Vec<Vec<OutSeries>> = chunked(out, SERIES_PER_BATCH);
        let blocks = Arc::new(blocks);
        let mut fetched = futures::stream::iter(batches.into_iter().map(|batch| {
            let (blocks, q) = (blocks.clone(), q.clone());
            async move {
                self.read_batch(&blocks, batch, &q.aggregates, q.partial_response)
                    .await
            }
        }))
        .buffered(2);
        let bytes_limit = self.opts.downloaded_bytes_limit;
        let mut downloaded = 0u64;
        while let Some(r) = fetched.next().await {
            let (series, warnings, bytes) = r?;
            downloaded += bytes;
            if bytes_limit > 0 && downloaded > bytes_limit {
                return Err(StoreError::limit(
                    "downloaded bytes",
                    format!(
                        "the query downloads more than --store.grpc.downloaded-bytes-limit={bytes_limit} bytes of chunks"
                    ),
                ));
            }
            for w in warnings {
                if sink.warn(w).await? == Flow::Done {
                    return Ok(());
                }
            }
            for s in &series {
                if sink.send(s).await? == Flow::Done {
                    return Ok(());
                }
            }
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
                    let ac = to_aggr_chunk(m, c.encoding, &c.data, aggregates).map_err(|e| {
                        BucketError::Block {
                            block: blocks[*bi].id,
                            source: Box::new(e),
                        }
                    })?;
                    chunks.push(ac);
                }
            }
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            out.push(Series {
                labels: into_pb_labels(s.labels),
                chunks,
            });
        }
        Ok((out, warnings, bytes_read))
    }

    /// Label names, or values of one label, of the series matching the
    /// query (all series when there are no matchers), external labels
    /// included. The StoreAPI server sorts, dedups and limits them.
    async fn labels_common(
        &self,
        q: LabelsQuery,
    ) -> Result<(Vec<String>, Vec<ulid::Ulid>), BucketError> {
        let value_of = match &q.kind {
            LabelsKind::Names => None,
            LabelsKind::Values(name) => Some(name.clone()),
        };
        if !self.is_ready() {
            return Err(BucketError::NotReady);
        }
        let blocks: Vec<Arc<Block>> = self
            .blocks()
            .values()
            .filter(|b| overlaps(b, q.start, q.end) && block_hinted(b, &q.block_matchers))
            .cloned()
            .collect();
        let ids: Vec<ulid::Ulid> = blocks.iter().map(|b| b.id).collect();
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
        Ok((set.into_iter().collect(), ids))
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

/// Turns a stored chunk into the wire's AggrChunk: raw chunks go in `raw`,
/// downsampled (0xFF) chunks are split into the requested aggregates.
/// Returns the chunk and its sample count (for the samples limit).
fn to_aggr_chunk(
    m: &ChunkMeta,
    encoding: u8,
    data: &Bytes,
    aggregates: &[Aggr],
) -> Result<AggrChunk, BlockError> {
    let mut ac = AggrChunk {
        min_time: m.min_time,
        max_time: m.max_time,
        ..Default::default()
    };
    if encoding != Encoding::Aggr as u8 {
        ac.raw = Some(pb_chunk(encoding, data.clone())?);
        return Ok(ac);
    }
    let parts = decode_aggr(data).map_err(|source| BlockError::Format {
        what: "aggregate chunk",
        source,
    })?;
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
    Ok(ac)
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
}
