//! The sidecar's StoreAPI source: one Prometheus server's data over remote
//! read (spec §1.5–1.8), with its external labels, kept fresh by the
//! metadata loop.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prost::Message;
use sluice_model::{Labels, MatchOp, Matcher};
use sluice_proto::prometheus::{self as prompb, ChunkedReadResponse};
use sluice_proto::thanos::{AggrChunk, Chunk, Series, chunk::Encoding};
use sluice_storeapi::{
    Component, Flow, LabelsAnswer, LabelsKind, LabelsQuery, SeriesQuery, SeriesSink, SourceInfo,
    StoreError, StoreSource, TsdbInfo, into_pb_labels,
};

use crate::SidecarError;
use crate::frames::FrameReader;
use crate::order::{Merge, Reorder};
use crate::prom::{Prometheus, read_request};

/// Largest SAMPLES (non-streamed) answer accepted, compressed or not.
const MAX_SAMPLES_BODY: usize = 1 << 30;
/// Samples per chunk when re-encoding a SAMPLES answer.
const SAMPLES_PER_CHUNK: usize = 120;

/// What the metadata loop last learnt from Prometheus.
#[derive(Debug, Clone)]
pub struct PromState {
    /// External labels of the loaded configuration (empty until loaded).
    pub external: Labels,
    /// Lowest timestamp of Prometheus' TSDB (ms).
    pub lowest: i64,
    /// `version` of its build info.
    pub version: String,
    /// Labels were loaded once: Series may be served.
    pub loaded: bool,
    /// The last refresh succeeded.
    pub up: bool,
    /// Why the last refresh failed.
    pub last_error: Option<String>,
}

/// Options of the source.
pub struct SourceOptions {
    /// `--min-time` (ms), evaluated at each call (it may be relative to now).
    pub min_time: Box<dyn Fn() -> i64 + Send + Sync>,
    /// `--label` values that set or override Prometheus' external labels.
    pub extra_labels: Labels,
}

/// One Prometheus server as a StoreAPI source.
pub struct PromSource {
    prom: Prometheus,
    opts: SourceOptions,
    state: RwLock<PromState>,
    up_gauge: Gauge,
    frames: Histogram,
}

impl std::fmt::Debug for PromSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromSource")
            .field("prometheus", &self.prom.url())
            .finish()
    }
}

impl PromSource {
    pub fn new(
        prom: Prometheus,
        opts: SourceOptions,
        metrics: &sluice_metrics::Metrics,
    ) -> Arc<Self> {
        let up_gauge = Gauge::default();
        let frames = Histogram::new([1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]);
        metrics.register(|r| {
            r.register(
                "thanos_sidecar_prometheus_up",
                "Boolean indicator whether the sidecar can reach its Prometheus peer.",
                up_gauge.clone(),
            );
            r.register(
                "prometheus_store_received_frames",
                "Number of frames received per streamed response.",
                frames.clone(),
            );
        });
        Arc::new(PromSource {
            prom,
            opts,
            state: RwLock::new(PromState {
                external: Labels::empty(),
                lowest: i64::MIN,
                version: String::new(),
                loaded: false,
                up: false,
                last_error: None,
            }),
            up_gauge,
            frames,
        })
    }

    pub fn prometheus(&self) -> &Prometheus {
        &self.prom
    }

    /// A copy of the current state.
    pub fn state(&self) -> PromState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The external labels served (Prometheus' with `--label` laid over).
    pub fn external_labels(&self) -> Labels {
        self.state().external
    }

    /// `/-/ready`: labels loaded and the last refresh succeeded.
    pub fn readiness(&self) -> Result<(), String> {
        let s = self.state();
        if !s.loaded {
            return Err(format!(
                "external labels not loaded from Prometheus yet{}",
                s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        if !s.up {
            return Err(format!(
                "Prometheus {} is not reachable: {}",
                self.prom.url(),
                s.last_error.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// One refresh: build version (first time), lowest timestamp, external
    /// labels. On failure the last good values stay and the sidecar is not
    /// ready.
    pub async fn refresh(&self) -> Result<(), SidecarError> {
        let r = self.fetch().await;
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok((version, lowest, external)) => {
                if s.loaded && s.external != external {
                    tracing::info!(old = %s.external, new = %external, "Prometheus external labels changed");
                }
                s.version = version;
                s.lowest = lowest;
                s.external = external;
                s.up = true;
                s.last_error = None;
                self.up_gauge.set(1);
                Ok(())
            }
            Err(e) => {
                s.up = false;
                s.last_error = Some(e.to_string());
                self.up_gauge.set(0);
                Err(e)
            }
        }
    }

    /// Marks the labels loaded (after the first refresh with non-empty ones).
    pub fn mark_loaded(&self) {
        self.state.write().unwrap_or_else(|p| p.into_inner()).loaded = true;
    }

    async fn fetch(&self) -> Result<(String, i64, Labels), SidecarError> {
        let version = self.prom.build_version().await?;
        let lowest = self.prom.lowest_timestamp().await?;
        let mut external = match self.prom.external_labels().await {
            Ok(l) => l,
            // Unlike Thanos, `--label` alone is enough when the server has
            // no config API (spec §7.17).
            Err(e) if !self.opts.extra_labels.is_empty() => {
                tracing::debug!(error = %e, "no external labels from Prometheus; using --label");
                Labels::empty()
            }
            Err(e) => return Err(e),
        };
        external.extend_overriding(&self.opts.extra_labels);
        Ok((version, lowest, external))
    }

    /// The min time advertised: `--min-time` or Prometheus' lowest timestamp.
    fn min_time(&self, s: &PromState) -> i64 {
        (self.opts.min_time)().max(s.lowest)
    }

    fn ready_state(&self) -> Result<PromState, StoreError> {
        let s = self.state();
        if !s.loaded {
            return Err(StoreError::NotReady(format!(
                "sidecar: external labels of Prometheus {} not loaded yet",
                self.prom.url()
            )));
        }
        Ok(s)
    }
}

/// Splits request matchers into those Prometheus evaluates and a verdict on
/// the external ones: `None` when an external-label matcher rules the
/// source out.
fn split_matchers(matchers: &[Matcher], external: &Labels) -> Option<Vec<Matcher>> {
    let mut kept = Vec::with_capacity(matchers.len());
    for m in matchers {
        match external.get(&m.name) {
            Some(v) if !m.matches(v) => return None,
            Some(_) => {}
            None => kept.push(m.clone()),
        }
    }
    Some(kept)
}

fn to_prom_matchers(ms: &[Matcher]) -> Vec<prompb::LabelMatcher> {
    ms.iter()
        .map(|m| prompb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Eq => prompb::label_matcher::Type::Eq,
                MatchOp::Neq => prompb::label_matcher::Type::Neq,
                MatchOp::Re => prompb::label_matcher::Type::Re,
                MatchOp::Nre => prompb::label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

pub(crate) fn prom_error(e: SidecarError) -> StoreError {
    match e {
        SidecarError::Status { code, what, body } if code == 400 || code == 422 => {
            StoreError::InvalidArgument(format!("Prometheus {what}: {body}"))
        }
        SidecarError::Status { code, what, body } if code == 503 => {
            StoreError::NotReady(format!("Prometheus {what}: {body}"))
        }
        e => StoreError::Unavailable {
            what: "Prometheus".into(),
            detail: e.to_string(),
        },
    }
}

/// The chunks of one series.
#[derive(Debug, Default)]
struct Chunks(Vec<AggrChunk>);

impl Merge for Chunks {
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
        self.0.sort_by_key(|c| (c.min_time, c.max_time));
    }
}

/// A remote-read chunk as a StoreAPI chunk, its bytes as sent; `None` for
/// an encoding StoreAPI has no name for.
fn convert_chunk(c: prompb::Chunk) -> Option<AggrChunk> {
    let encoding = match prompb::chunk::Encoding::try_from(c.r#type).ok()? {
        prompb::chunk::Encoding::Xor => Encoding::Xor,
        prompb::chunk::Encoding::Histogram => Encoding::Histogram,
        prompb::chunk::Encoding::FloatHistogram => Encoding::FloatHistogram,
        prompb::chunk::Encoding::Unknown => return None,
    };
    // Hash 0 = not computed, as Thanos' sidecar sends unless asked: queriers hash the chunks they compare.
    Some(AggrChunk {
        min_time: c.min_time_ms,
        max_time: c.max_time_ms,
        raw: Some(Chunk {
            r#type: encoding as i32,
            data: c.data,
            hash: 0,
        }),
        ..Default::default()
    })
}

/// Samples re-encoded into XOR chunks of at most 120 samples.
fn encode_samples(samples: &[prompb::Sample]) -> Result<Vec<AggrChunk>, StoreError> {
    let mut out = Vec::with_capacity(samples.len().div_ceil(SAMPLES_PER_CHUNK));
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let pairs: Vec<(i64, f64)> = part.iter().map(|s| (s.timestamp, s.value)).collect();
        let data = sluice_tsdb::xor::encode(&pairs)
            .map_err(|e| StoreError::Internal(format!("encoding samples: {e}")))?;
        let hash = xxhash_rust::xxh64::xxh64(&data, 0);
        out.push(AggrChunk {
            min_time: pairs[0].0,
            max_time: pairs[pairs.len() - 1].0,
            raw: Some(Chunk {
                r#type: Encoding::Xor as i32,
                data: data.into(),
                hash,
            }),
            ..Default::default()
        });
    }
    Ok(out)
}

fn labels_of(pb: Vec<prompb::Label>) -> Labels {
    Labels::from_pairs(pb.into_iter().map(|l| (l.name, l.value)))
}

/// Whether a semantic version `v` ("2.42.0+ds") is at least `major.minor`.
fn version_at_least(v: &str, major: u64, minor: u64) -> bool {
    let mut it = v
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Sends every series in `out` with its final labels.
async fn send_all(
    sink: &mut SeriesSink,
    out: &mut Vec<(Labels, Chunks)>,
) -> Result<Flow, StoreError> {
    for (labels, chunks) in out.drain(..) {
        let s = Series {
            labels: into_pb_labels(labels),
            chunks: chunks.0,
        };
        if sink.send(&s).await? == Flow::Done {
            return Ok(Flow::Done);
        }
    }
    Ok(Flow::More)
}

impl PromSource {
    /// `skip_chunks`: label sets from `/api/v1/series`.
    async fn series_labels_only(
        &self,
        q: &SeriesQuery,
        kept: &[Matcher],
        external: &Labels,
        mint: i64,
        sink: &mut SeriesSink,
    ) -> Result<(), StoreError> {
        let sets = self
            .prom
            .series(kept, mint, q.max_time, q.limit)
            .await
            .map_err(prom_error)?;
        let mut finals: Vec<Labels> = sets
            .into_iter()
            .filter_map(|l| q.final_labels(l, external))
            .collect();
        finals.sort();
        finals.dedup();
        for l in finals {
            let s = Series {
                labels: into_pb_labels(l),
                chunks: Vec::new(),
            };
            if sink.send(&s).await? == Flow::Done {
                break;
            }
        }
        Ok(())
    }
}

impl StoreSource for PromSource {
    fn info(&self) -> Result<SourceInfo, StoreError> {
        let s = self.ready_state()?;
        let min_time = self.min_time(&s);
        let mut info = SourceInfo::empty(Component::Sidecar);
        info.min_time = min_time;
        info.max_time = i64::MAX;
        if !s.external.is_empty() {
            info.label_sets = vec![s.external.clone()];
        }
        info.tsdb_infos = vec![TsdbInfo {
            labels: s.external,
            min_time,
            max_time: i64::MAX,
        }];
        Ok(info)
    }

    async fn series(&self, q: SeriesQuery, sink: &mut SeriesSink) -> Result<(), StoreError> {
        let s = self.ready_state()?;
        let Some(kept) = split_matchers(&q.matchers, &s.external) else {
            return Ok(());
        };
        if kept.is_empty() {
            return Err(StoreError::InvalidArgument(
                "no matchers specified (excluding external labels)".into(),
            ));
        }
        let mint = q.min_time.max(self.min_time(&s));
        if mint > q.max_time {
            return Ok(());
        }
        if q.skip_chunks {
            return self
                .series_labels_only(&q, &kept, &s.external, mint, sink)
                .await;
        }

        // The marked parts first (series that store a label named like an
        // external or replica label: rare, buffered), then the plain part
        // (streamed in order; see `order`).
        let mut order: Reorder<Chunks> =
            Reorder::new(s.external.clone(), q.without_replica_labels.clone());
        let mut marks: Vec<String> = s
            .external
            .iter()
            .map(|l| l.name.clone())
            .chain(q.without_replica_labels.iter().cloned())
            .collect();
        marks.sort();
        marks.dedup();
        let mut queries = Vec::with_capacity(marks.len() + 1);
        let absent = |name: &str| Matcher::new(MatchOp::Eq, name, "");
        for (k, name) in marks.iter().enumerate() {
            let mut ms = kept.clone();
            for earlier in &marks[..k] {
                ms.extend(absent(earlier).ok());
            }
            ms.extend(Matcher::new(MatchOp::Neq, name.as_str(), "").ok());
            queries.push(ms);
        }
        let mut plain = kept.clone();
        for name in &marks {
            plain.extend(absent(name).ok());
        }
        queries.push(plain);
        let plain_index = (queries.len() - 1) as i64;
        let req = prompb::ReadRequest {
            queries: queries
                .iter()
                .map(|ms| prompb::Query {
                    start_timestamp_ms: mint,
                    end_timestamp_ms: q.max_time,
                    matchers: to_prom_matchers(ms),
                    hints: None,
                })
                .collect(),
            ..read_request(prompb::Query::default())
        };
        let resp = self.prom.remote_read(&req).await.map_err(prom_error)?;
        let ct = resp.content_type.clone();
        let mut out = Vec::new();
        if ct.starts_with("application/x-streamed-protobuf")
            && ct.contains("proto=prometheus.ChunkedReadResponse")
        {
            let mut response = resp.response;
            let mut reader = FrameReader::new();
            let mut frames = 0u64;
            let mut pending: Option<(i64, Labels, Vec<AggrChunk>)> = None;
            let mut dropped_chunks = 0u64;
            loop {
                let data = response
                    .chunk()
                    .await
                    .map_err(|e| StoreError::Unavailable {
                        what: "Prometheus remote read".into(),
                        detail: crate::prom::error_chain(&e),
                    })?;
                let Some(data) = data else { break };
                reader.push(&data);
                while let Some(frame) = reader.next_frame().map_err(prom_error)? {
                    frames += 1;
                    let msg = ChunkedReadResponse::decode(frame).map_err(|e| {
                        prom_error(SidecarError::Decode(format!("remote read frame: {e}")))
                    })?;
                    for cs in msg.chunked_series {
                        let labels = labels_of(cs.labels);
                        let chunks: Vec<AggrChunk> = cs
                            .chunks
                            .into_iter()
                            .filter_map(|c| {
                                let r = convert_chunk(c);
                                if r.is_none() {
                                    dropped_chunks += 1;
                                }
                                r
                            })
                            .collect();
                        // A series may be split over several frames.
                        if let Some((idx, l, cs)) = &mut pending
                            && *idx == msg.query_index
                            && *l == labels
                        {
                            cs.extend(chunks);
                            continue;
                        }
                        if let Some(p) = pending.replace((msg.query_index, labels, chunks)) {
                            self.place(&q, &mut order, p, plain_index, &mut out);
                        }
                    }
                }
                if send_all(sink, &mut out).await? == Flow::Done {
                    return Ok(());
                }
            }
            if reader.has_partial() {
                return Err(prom_error(SidecarError::Decode(
                    "remote read answer ended inside a frame".into(),
                )));
            }
            if let Some(p) = pending.take() {
                self.place(&q, &mut order, p, plain_index, &mut out);
            }
            self.frames.observe(frames as f64);
            if dropped_chunks > 0 {
                let _ = sink.warn(format!(
                    "sidecar: {dropped_chunks} chunks of an encoding StoreAPI cannot carry were left out"
                ))
                .await?;
            }
            tracing::debug!(peak = order.peak(), frames, "remote read streamed");
        } else if ct.starts_with("application/x-protobuf") {
            let body = crate::prom::read_body(resp.response, MAX_SAMPLES_BODY, "/api/v1/read")
                .await
                .map_err(prom_error)?;
            let len = snap::raw::decompress_len(&body)
                .map_err(|e| prom_error(SidecarError::Decode(format!("snappy: {e}"))))?;
            if len > MAX_SAMPLES_BODY {
                return Err(StoreError::limit(
                    "remote read",
                    format!("SAMPLES answer of {len} bytes is over {MAX_SAMPLES_BODY}"),
                ));
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .map_err(|e| prom_error(SidecarError::Decode(format!("snappy: {e}"))))?;
            drop(body);
            let rr = prompb::ReadResponse::decode(raw.as_slice())
                .map_err(|e| prom_error(SidecarError::Decode(format!("ReadResponse: {e}"))))?;
            let mut skipped = 0u64;
            for result in rr.results {
                for ts in result.timeseries {
                    if ts.samples.is_empty() {
                        skipped += 1;
                        continue;
                    }
                    let fin = order.final_labels(labels_of(ts.labels));
                    order.push_marked(fin, Chunks(encode_samples(&ts.samples)?));
                }
            }
            if skipped > 0 {
                let _ = sink.warn(format!(
                    "sidecar: {skipped} series without float samples (native histograms) were left out: \
                     Prometheus answered remote read with SAMPLES"
                ))
                .await?;
            }
        } else {
            return Err(StoreError::Unavailable {
                what: "Prometheus remote read".into(),
                detail: format!("not supported remote read content type: {ct}"),
            });
        }
        order.finish(&mut out);
        let _ = send_all(sink, &mut out).await?;
        Ok(())
    }

    async fn labels(&self, q: LabelsQuery) -> Result<LabelsAnswer, StoreError> {
        let s = self.ready_state()?;
        let mut answer = LabelsAnswer {
            values: Vec::new(),
            warnings: Vec::new(),
            hints: None,
        };
        let Some(kept) = split_matchers(&q.matchers, &s.external) else {
            return Ok(answer);
        };
        let new_api = version_at_least(&s.version, 2, 24);
        match &q.kind {
            LabelsKind::Names => {
                let mut names = if kept.is_empty() || new_api {
                    self.prom
                        .label_strings(None, &kept, q.start, q.end, q.limit)
                        .await
                        .map_err(prom_error)?
                } else {
                    let sets = self
                        .prom
                        .series(&kept, q.start, q.end, 0)
                        .await
                        .map_err(prom_error)?;
                    sets.iter()
                        .flat_map(|l| l.iter().map(|x| x.name.clone()))
                        .collect()
                };
                if !names.is_empty() {
                    names.extend(
                        s.external
                            .iter()
                            .filter(|l| !q.without_replica_labels.contains(&l.name))
                            .map(|l| l.name.clone()),
                    );
                }
                answer.values = names;
            }
            LabelsKind::Values(name) => {
                if q.without_replica_labels.contains(name) {
                    return Ok(answer);
                }
                if let Some(v) = s.external.get(name) {
                    let present = kept.is_empty()
                        || !self
                            .prom
                            .series(&kept, q.start, q.end, 1)
                            .await
                            .map_err(prom_error)?
                            .is_empty();
                    if present {
                        answer.values = vec![v.to_string()];
                    }
                    return Ok(answer);
                }
                answer.values = if kept.is_empty() || new_api {
                    self.prom
                        .label_strings(Some(name), &kept, q.start, q.end, q.limit)
                        .await
                        .map_err(prom_error)?
                } else {
                    let sets = self
                        .prom
                        .series(&kept, q.start, q.end, 0)
                        .await
                        .map_err(prom_error)?;
                    sets.iter()
                        .filter_map(|l| l.get(name).map(str::to_string))
                        .collect()
                };
            }
        }
        Ok(answer)
    }
}

impl PromSource {
    /// One whole series of the answer into the order: a marked part's
    /// series is buffered, a plain one streams.
    fn place(
        &self,
        q: &SeriesQuery,
        order: &mut Reorder<Chunks>,
        (idx, received, chunks): (i64, Labels, Vec<AggrChunk>),
        plain_index: i64,
        out: &mut Vec<(Labels, Chunks)>,
    ) {
        let served = |fin: &Labels| q.shard.as_ref().is_none_or(|sh| sh.matches(fin));
        if idx == plain_index {
            order.push_plain(received, served, Chunks(chunks), out);
        } else {
            let fin = order.final_labels(received);
            if served(&fin) {
                order.push_marked(fin, Chunks(chunks));
            }
        }
    }
}

/// How often the metadata loop retries and refreshes.
#[derive(Debug, Clone, Copy)]
pub struct MetadataTiming {
    pub interval: Duration,
}

/// The metadata loop (spec §1.3 steps 2–6): retries until external labels
/// are loaded, fails if they are empty, then refreshes every interval.
/// `loaded` fires once when Series may be served.
pub async fn run_metadata(
    source: Arc<PromSource>,
    timing: MetadataTiming,
    loaded: tokio::sync::oneshot::Sender<()>,
) -> Result<(), SidecarError> {
    loop {
        match source.refresh().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, prometheus = source.prom.url(), "failed to fetch initial external labels; retrying");
                tokio::time::sleep(timing.interval).await;
            }
        }
    }
    let external = source.external_labels();
    if external.is_empty() {
        return Err(SidecarError::Config(
            "no external labels configured on Prometheus server, uniquely identifying external labels must be \
             configured; see https://thanos.io/tip/thanos/storage.md#external-labels (or set them with --label)"
                .into(),
        ));
    }
    source.mark_loaded();
    tracing::info!(external_labels = %external, "successfully loaded prometheus external labels");
    let _ = loaded.send(());
    loop {
        tokio::time::sleep(timing.interval).await;
        if let Err(e) = source.refresh().await {
            tracing::warn!(error = %e, "heartbeat failed; the sidecar is not ready until Prometheus answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_minor() {
        assert!(version_at_least("2.42.0+ds", 2, 24));
        assert!(version_at_least("v3.0.1", 2, 24));
        assert!(!version_at_least("2.23.9", 2, 24));
        assert!(!version_at_least("0", 2, 24));
        assert!(!version_at_least("garbage", 2, 24));
    }

    #[test]
    fn external_matchers_decide_or_drop() {
        let ext = Labels::from_pairs([("cluster", "eu"), ("replica", "0")]);
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).expect("matcher");
        let kept = split_matchers(
            &[
                m(MatchOp::Eq, "__name__", "up"),
                m(MatchOp::Re, "cluster", "e.*"),
            ],
            &ext,
        )
        .expect("matches");
        assert_eq!(kept, vec![m(MatchOp::Eq, "__name__", "up")]);
        assert!(split_matchers(&[m(MatchOp::Eq, "cluster", "us")], &ext).is_none());
    }

    #[test]
    fn samples_become_chunks_of_120() {
        let samples: Vec<prompb::Sample> = (0..250)
            .map(|i| prompb::Sample {
                value: i as f64,
                timestamp: i * 1000,
            })
            .collect();
        let chunks = encode_samples(&samples).expect("encodes");
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[2].min_time, chunks[2].max_time), (240_000, 249_000));
        let data = &chunks[1].raw.as_ref().expect("raw").data;
        let back = sluice_tsdb::xor::decode(data).expect("decodes");
        assert_eq!(back.len(), 120);
        assert_eq!(back[0], (120_000, 120.0));
    }
}
