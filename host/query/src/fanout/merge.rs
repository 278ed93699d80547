//! Fan-out of one request to every matching endpoint and a streaming k-way
//! merge of their answers into one stream sorted by labels.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use futures::FutureExt;
use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{
    Label as PbLabel, PartialResponseStrategy, Series, SeriesRequest, series_response,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::endpoints::{Endpoint, EndpointSet};
use super::raw::{self, ChunkRef, FrameCodec, RawFrame, SeriesRun, SeriesView, cmp_bytes};
use sluice_model::Matcher;
use sluice_storeapi::{LabelsAnswer, LabelsKind, LabelsQuery};

/// Prometheus `labels.Compare` over wire labels.
pub fn compare_pb_labels(a: &[PbLabel], b: &[PbLabel]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cmp_bytes(x.name.as_bytes(), y.name.as_bytes())
            .then_with(|| cmp_bytes(x.value.as_bytes(), y.value.as_bytes()))
        {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// A fan-out request.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// Forwarded to every endpoint (matchers, range, hints, replica labels...).
    pub request: SeriesRequest,
    /// The same matchers, parsed, for pruning endpoints.
    pub matchers: Vec<Matcher>,
    /// WARN: endpoint failures become warnings; ABORT: they fail the call.
    pub partial_response: bool,
    /// The caller's tenant, forwarded to every endpoint as `thanos-tenant`.
    pub tenant: Option<String>,
}

/// What the merged stream yields.
#[derive(Debug)]
pub enum FanoutItem {
    /// The next run of merged series, in label order (a batch, so the
    /// consumer is woken once per run rather than once per series).
    Series(SeriesRun),
    Warning(String),
}

/// What a pump hands the merge: one response frame's series at a time,
/// warnings and the error that ended the stream, in stream order.
enum Frame {
    /// One or more frames, in order (a pump sends what its stream has ready
    /// in one message, so the merge is woken once per burst).
    Series(Vec<Arc<RawFrame>>),
    Warning(String),
    Error(String),
}

/// Frames buffered per endpoint between its pump and the merge. With batching
/// stores (64 series a frame) that bounds the buffer at a few hundred series.
const PUMP_BUFFER_FRAMES: usize = 8;

/// Series per frame when a pump re-sends a buffered response.
const PUMP_RESEND_BATCH: usize = 64;

/// Most frames a pump sends in one message.
const PUMP_BURST: usize = 16;

/// Series per [`FanoutItem::Series`] message. A run is also sent early
/// whenever the merge is about to wait for an endpoint.
const OUT_BATCH: usize = 512;

/// Decrements an endpoint's open-stream count when the stream task ends.
struct OpenStream(Arc<Endpoint>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

/// Calls `Series` on `ep` with the frame codec: the stream's messages
/// arrive as bytes, indexed by [`RawFrame::parse`] rather than decoded.
async fn call_series(
    ep: &Endpoint,
    req: SeriesRequest,
    tenant: Option<&str>,
) -> Result<tonic::Streaming<bytes::Bytes>, Status> {
    let mut grpc = tonic::client::Grpc::new(ep.channel.clone())
        .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("endpoint not ready: {e}")))?;
    let mut req = tonic::Request::new(req);
    with_tenant(&mut req, tenant);
    req.extensions_mut()
        .insert(tonic::GrpcMethod::new("thanos.Store", "Series"));
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/thanos.Store/Series");
    grpc.server_streaming(req, path, FrameCodec)
        .await
        .map(|r| r.into_inner())
}

/// Names the caller's tenant in a call's metadata (`thanos-tenant`).
pub(crate) fn with_tenant<T>(req: &mut tonic::Request<T>, tenant: Option<&str>) {
    if let Some(v) = tenant.and_then(|t| tonic::metadata::MetadataValue::try_from(t).ok()) {
        req.metadata_mut()
            .insert(sluice_storeapi::TENANT_METADATA, v);
    }
}

/// Series of a response buffered for stripping, encoded again as frames of
/// `PUMP_RESEND_BATCH`.
fn reencode(series: Vec<Series>) -> Vec<Arc<RawFrame>> {
    let mut frames = Vec::new();
    let mut rest = series.into_iter();
    loop {
        let chunk: Vec<Series> = rest.by_ref().take(PUMP_RESEND_BATCH).collect();
        if chunk.is_empty() {
            return frames;
        }
        let msg = sluice_proto::thanos::SeriesResponse {
            result: Some(series_response::Result::Batch(
                sluice_proto::thanos::SeriesBatch { series: chunk },
            )),
        };
        // We encoded it ourselves: parsing cannot fail.
        if let Ok(p) = RawFrame::parse(bytes::Bytes::from(prost::Message::encode_to_vec(&msg))) {
            frames.push(Arc::new(p.frame));
        }
    }
}

/// Ends a pump: sends the frames it still holds, then the error.
async fn fail(tx: &mpsc::Sender<Frame>, held: Vec<Arc<RawFrame>>, error: String) {
    if !held.is_empty() && tx.send(Frame::Series(held)).await.is_err() {
        return;
    }
    let _ = tx.send(Frame::Error(error)).await;
}

/// Reads one endpoint's Series stream into `tx`, one message per burst of
/// response frames.
async fn pump(
    ep: Arc<Endpoint>,
    mut req: SeriesRequest,
    tenant: Option<String>,
    response_timeout: Duration,
    tx: mpsc::Sender<Frame>,
) {
    ep.open_streams.fetch_add(1, AtomicOrdering::Relaxed);
    let _open = OpenStream(ep.clone());
    let addr = ep.address.clone();
    let strip =
        if !ep.state().supports_without_replica_labels && !req.without_replica_labels.is_empty() {
            std::mem::take(&mut req.without_replica_labels)
        } else {
            Vec::new()
        };
    let wait = |d: Duration| {
        if d.is_zero() {
            Duration::from_secs(365 * 86_400)
        } else {
            d
        }
    };
    // Every wait below also ends when the merge is gone (its consumer hung up
    // or the call failed): returning drops the stream, which cancels the
    // endpoint's Series call instead of holding it until the endpoint answers.
    let call = tokio::select! {
        _ = tx.closed() => return,
        r = tokio::time::timeout(wait(response_timeout), call_series(&ep, req, tenant.as_deref())) => r,
    };
    let mut stream = match call {
        Ok(Ok(s)) => s,
        Ok(Err(s)) => {
            return fail(
                &tx,
                Vec::new(),
                format!("endpoint {addr}: {}", status_text(&s)),
            )
            .await;
        }
        Err(_) => {
            let e = format!("endpoint {addr}: no response within {response_timeout:?}");
            return fail(&tx, Vec::new(), e).await;
        }
    };
    // Stores that cannot strip replica labels: buffer, strip, re-sort (Thanos does the same).
    let mut buffered: Vec<Series> = Vec::new();
    if !strip.is_empty() {
        tracing::warn!(endpoint = %addr, "endpoint does not support without_replica_labels; buffering its whole response to strip and re-sort");
    }
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            r = tokio::time::timeout(wait(response_timeout), stream.message()) => r,
        };
        let msg = match next {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Ok(Err(s)) => {
                return fail(
                    &tx,
                    Vec::new(),
                    format!("endpoint {addr}: {}", status_text(&s)),
                )
                .await;
            }
            Err(_) => {
                let e = format!(
                    "endpoint {addr}: no frame within {response_timeout:?} (--store.response-timeout)"
                );
                return fail(&tx, Vec::new(), e).await;
            }
        };
        // This message and whatever else the stream has ready, up to a burst.
        let mut burst: Vec<Arc<RawFrame>> = Vec::new();
        let mut next = Some(msg);
        let mut ended = false;
        while let Some(msg) = next.take() {
            let parsed = match RawFrame::parse(msg) {
                Ok(p) => p,
                Err(e) => {
                    let e = format!("endpoint {addr}: cannot decode Series response: {e}");
                    return fail(&tx, burst, e).await;
                }
            };
            if let Some(w) = parsed.warning {
                if !burst.is_empty()
                    && tx
                        .send(Frame::Series(std::mem::take(&mut burst)))
                        .await
                        .is_err()
                {
                    return;
                }
                if tx
                    .send(Frame::Warning(format!("endpoint {addr}: {w}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if !parsed.frame.is_empty() {
                burst.push(Arc::new(parsed.frame));
            }
            if burst.len() < PUMP_BURST {
                // Cancel-safe: a message not ready yet stays in the stream.
                match stream.message().now_or_never() {
                    Some(Ok(Some(m))) => next = Some(m),
                    Some(Ok(None)) => ended = true,
                    Some(Err(s)) => {
                        let e = format!("endpoint {addr}: {}", status_text(&s));
                        return fail(&tx, burst, e).await;
                    }
                    // Not ready: the outer loop waits for it.
                    None => {}
                }
            }
        }
        if !strip.is_empty() {
            for frame in burst {
                for i in 0..frame.len() {
                    let mut s = SeriesView::new(&frame, i).to_series();
                    s.labels.retain(|l| !strip.contains(&l.name));
                    buffered.push(s);
                }
            }
        } else if !burst.is_empty() && tx.send(Frame::Series(burst)).await.is_err() {
            return;
        }
        if ended {
            break;
        }
    }
    if !strip.is_empty() {
        buffered.sort_by(|a, b| compare_pb_labels(&a.labels, &b.labels));
        for frame in reencode(buffered) {
            if tx.send(Frame::Series(vec![frame])).await.is_err() {
                return;
            }
        }
    }
}

pub(crate) fn status_text(s: &Status) -> String {
    format!("{}: {}", sluice_storeapi::code_name(s.code()), s.message())
}

/// One endpoint's side of the merge: its channel (None once drained) and
/// the frame being consumed, at `pos`.
struct Source {
    rx: Option<mpsc::Receiver<Frame>>,
    frame: Arc<RawFrame>,
    pos: usize,
    /// Frames received after `frame`, in order.
    queued: std::collections::VecDeque<Arc<RawFrame>>,
    /// Slot of `frame` in the run being built, once added.
    slot: Option<u32>,
}

impl Source {
    fn has_head(&self) -> bool {
        self.pos < self.frame.len()
    }
}

/// The merged series being assembled: where its first part is (a slot of
/// the run being built) and, if other parts were merged in, its chunks.
struct Cur {
    slot: u32,
    idx: usize,
    merged: Option<Vec<ChunkRef>>,
}

/// The merge's state: sources, a binary min-heap of the indexes of the
/// sources that have a head series (ordered by that series' labels, ties by
/// index), the run of merged series not sent yet, and the series being
/// assembled.
struct Merge<'a> {
    src: Vec<Source>,
    heap: Vec<usize>,
    run: SeriesRun,
    cur: Option<Cur>,
    partial: bool,
    out: &'a mpsc::Sender<Result<FanoutItem, Status>>,
}

impl Merge<'_> {
    /// Whether source `a`'s head sorts before source `b`'s.
    #[inline]
    fn less(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.src[a], &self.src[b]);
        raw::cmp_at(&x.frame, x.pos, &y.frame, y.pos)
            .then(a.cmp(&b))
            .is_lt()
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && self.less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if !self.less(self.heap[i], self.heap[p]) {
                return;
            }
            self.heap.swap(i, p);
            i = p;
        }
    }

    /// The run slot of source `i`'s current frame, adding it if needed.
    fn slot(&mut self, i: usize) -> u32 {
        match self.src[i].slot {
            Some(s) => s,
            None => {
                let s = self.run.add_frame(self.src[i].frame.clone());
                self.src[i].slot = Some(s);
                s
            }
        }
    }

    /// Sends the finished series of the run. A series being assembled moves
    /// to the next run.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.run.is_empty() {
            return Ok(());
        }
        let keep = self.cur.as_ref().map(|c| self.run.frame(c.slot).clone());
        let run = std::mem::replace(&mut self.run, SeriesRun::with_capacity(OUT_BATCH));
        for s in &mut self.src {
            s.slot = None;
        }
        if let (Some(c), Some(f)) = (self.cur.as_mut(), keep) {
            c.slot = self.run.add_frame(f);
        }
        self.out
            .send(Ok(FanoutItem::Series(run)))
            .await
            .map_err(drop)
    }

    /// Makes source `i` have a head series again (a new frame) or marks it
    /// drained, forwarding warnings and errors. Sends the pending run first
    /// if it has to wait.
    async fn refill(&mut self, i: usize) -> Result<(), ()> {
        loop {
            if self.src[i].has_head() {
                return Ok(());
            }
            if let Some(f) = self.src[i].queued.pop_front() {
                let s = &mut self.src[i];
                (s.frame, s.pos, s.slot) = (f, 0, None);
                continue;
            }
            let Some(rx) = self.src[i].rx.as_mut() else {
                return Ok(());
            };
            let frame = match rx.try_recv() {
                Ok(f) => Some(f),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.flush().await?;
                    let Some(rx) = self.src[i].rx.as_mut() else {
                        return Ok(());
                    };
                    // The consumer hanging up ends the merge even while an
                    // endpoint is silent, so the pumps see their channels
                    // close and cancel.
                    tokio::select! {
                        _ = self.out.closed() => return Err(()),
                        f = rx.recv() => f,
                    }
                }
            };
            match frame {
                Some(Frame::Series(frames)) => self.src[i].queued.extend(frames),
                Some(Frame::Warning(w)) | Some(Frame::Error(w)) if self.partial => {
                    self.flush().await?;
                    if self.out.send(Ok(FanoutItem::Warning(w))).await.is_err() {
                        return Err(());
                    }
                }
                Some(Frame::Warning(w)) | Some(Frame::Error(w)) => {
                    let _ = self.out.send(Err(Status::aborted(w))).await;
                    return Err(());
                }
                None => {
                    self.src[i].rx = None;
                    return Ok(());
                }
            }
        }
    }

    /// Takes source `i`'s head into the series being assembled (starting
    /// it, or merging into it when the labels are the same) and moves the
    /// source on.
    async fn take(&mut self, i: usize) -> Result<(), ()> {
        match &self.cur {
            None => {
                let slot = self.slot(i);
                self.cur = Some(Cur {
                    slot,
                    idx: self.src[i].pos,
                    merged: None,
                });
            }
            Some(c) => {
                let first = self.run.frame(c.slot).clone();
                let s = &self.src[i];
                let (frame, pos) = (s.frame.clone(), s.pos);
                if let Some(c) = self.cur.as_mut() {
                    let chunks = c
                        .merged
                        .get_or_insert_with(|| raw::chunk_refs(&first, c.idx));
                    raw::absorb(chunks, &frame, pos);
                }
            }
        }
        self.src[i].pos += 1;
        self.refill(i).await
    }

    async fn run(mut self) {
        for i in 0..self.src.len() {
            if self.refill(i).await.is_err() {
                return;
            }
            if self.src[i].has_head() {
                self.heap.push(i);
                let n = self.heap.len() - 1;
                self.sift_up(n);
            }
        }
        while let Some(&top) = self.heap.first() {
            // The smallest head, then whatever has the same labels: the same
            // series continuing in the source's next frame, or another
            // source's copy. Either sorts first among the heads then (equal
            // to the series taken, which was the smallest), so one look at
            // the heap's top finds them all.
            let mut from = top;
            loop {
                if self.take(from).await.is_err() {
                    return;
                }
                if self.src[from].has_head() {
                    self.sift_down(0);
                } else {
                    let last = self.heap.len() - 1;
                    self.heap.swap(0, last);
                    self.heap.pop();
                    if !self.heap.is_empty() {
                        self.sift_down(0);
                    }
                }
                let Some(&next) = self.heap.first() else {
                    break;
                };
                let (s, c) = (&self.src[next], self.cur.as_ref());
                let same =
                    c.is_some_and(|c| raw::eq_at(self.run.frame(c.slot), c.idx, &s.frame, s.pos));
                if !same {
                    break;
                }
                from = next;
            }
            if let Some(c) = self.cur.take() {
                self.run.push(c.slot, c.idx, c.merged);
            }
            if self.run.len() >= OUT_BATCH && self.flush().await.is_err() {
                return;
            }
        }
        let _ = self.flush().await;
    }
}

/// Fans `req` out to every matching endpoint and sends the merged stream to
/// `out`. Under ABORT the first endpoint failure (or warning) ends the call
/// with an error; under WARN it becomes a warning and the others continue.
pub async fn series(
    set: &EndpointSet,
    req: ProxyRequest,
    out: mpsc::Sender<Result<FanoutItem, Status>>,
) {
    let r = &req.request;
    let eps: Vec<Arc<Endpoint>> = set
        .queryable()
        .into_iter()
        .filter(|e| e.matches(r.min_time, r.max_time, &req.matchers))
        .collect();
    if eps.is_empty() {
        let _ = out
            .send(Ok(FanoutItem::Warning(
                "No StoreAPIs matched for this query".into(),
            )))
            .await;
        return;
    }
    let mut forwarded = req.request.clone();
    forwarded.response_batch_size = 64;
    forwarded.partial_response_strategy = if req.partial_response {
        PartialResponseStrategy::Warn as i32
    } else {
        PartialResponseStrategy::Abort as i32
    };
    let timeout = set.options().response_timeout;
    let mut src = Vec::with_capacity(eps.len());
    for ep in eps {
        let (tx, rx) = mpsc::channel(PUMP_BUFFER_FRAMES);
        tokio::spawn(pump(ep, forwarded.clone(), req.tenant.clone(), timeout, tx));
        src.push(Source {
            rx: Some(rx),
            frame: Arc::new(RawFrame::default()),
            pos: 0,
            queued: Default::default(),
            slot: None,
        });
    }
    let heap = Vec::with_capacity(src.len());
    Merge {
        src,
        heap,
        run: SeriesRun::with_capacity(OUT_BATCH),
        cur: None,
        partial: req.partial_response,
        out: &out,
    }
    .run()
    .await;
}

/// Label names, or values of one label, over every endpoint matching the
/// range and matchers, called concurrently: their answers unioned with their
/// warnings. Under ABORT an endpoint failure fails the call. The one fan-out
/// of the label APIs, for the HTTP API and the querier's StoreAPI alike.
pub async fn labels(set: &EndpointSet, q: &LabelsQuery) -> Result<LabelsAnswer, Status> {
    let calls = set
        .queryable()
        .into_iter()
        .filter(|e| e.matches(q.start, q.end, &q.matchers))
        .map(|ep| {
            let mut c = StoreClient::new(ep.channel.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
            async move {
                let r = match &q.kind {
                    LabelsKind::Names => c
                        .label_names({
                            let mut r = tonic::Request::new(q.to_names_request());
                            with_tenant(&mut r, q.tenant.as_deref());
                            r
                        })
                        .await
                        .map(|r| r.into_inner())
                        .map(|r| (r.names, r.warnings)),
                    LabelsKind::Values(name) => c
                        .label_values({
                            let mut r = tonic::Request::new(q.to_values_request(name));
                            with_tenant(&mut r, q.tenant.as_deref());
                            r
                        })
                        .await
                        .map(|r| r.into_inner())
                        .map(|r| (r.values, r.warnings)),
                };
                (ep.address.clone(), r)
            }
        });
    let (values, warnings) = collect_strings(
        futures::future::join_all(calls).await.into_iter(),
        q.partial_response,
    )?;
    Ok(LabelsAnswer {
        values: q.finish(values),
        warnings,
        hints: None,
    })
}

fn collect_strings(
    results: impl Iterator<Item = (String, Result<(Vec<String>, Vec<String>), Status>)>,
    partial: bool,
) -> Result<(Vec<String>, Vec<String>), Status> {
    let mut all = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for (addr, r) in results {
        match r {
            Ok((v, w)) => {
                all.extend(v);
                warnings.extend(w.into_iter().map(|w| format!("endpoint {addr}: {w}")));
            }
            Err(s) if partial => warnings.push(format!("endpoint {addr}: {}", status_text(&s))),
            Err(s) => {
                return Err(Status::aborted(format!(
                    "endpoint {addr}: {}",
                    status_text(&s)
                )));
            }
        }
    }
    Ok((all.into_iter().collect(), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_proto::thanos::info::info_server::{Info, InfoServer};
    use sluice_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
    use sluice_proto::thanos::store_server::{Store, StoreServer};
    use sluice_proto::thanos::{
        AggrChunk, Chunk, InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse,
        LabelValuesRequest, LabelValuesResponse, SeriesBatch, SeriesResponse,
    };

    fn labels(pairs: &[(String, String)]) -> Vec<PbLabel> {
        pairs
            .iter()
            .map(|(n, v)| PbLabel {
                name: n.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// The obvious definition the inlined comparison must agree with.
    fn reference(a: &[PbLabel], b: &[PbLabel]) -> Ordering {
        for (x, y) in a.iter().zip(b) {
            match x.name.cmp(&y.name).then_with(|| x.value.cmp(&y.value)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        a.len().cmp(&b.len())
    }

    #[test]
    fn cmp_bytes_edges() {
        for (a, b) in [
            ("", ""),
            ("", "a"),
            ("a", "a\0"),
            ("__name__", "__name__"),
            ("__name__", "__name_"),
            ("0000001", "0000002"),
            ("abcdefgh1", "abcdefgh2"),
            ("abcdefghijklmnopq", "abcdefghijklmnopr"),
            ("abcdefgz", "abcdefgha"),
            ("é", "e"),
            ("\u{ff}", "\u{100}"),
        ] {
            assert_eq!(
                cmp_bytes(a.as_bytes(), b.as_bytes()),
                a.cmp(b),
                "{a:?} vs {b:?}"
            );
            assert_eq!(
                cmp_bytes(b.as_bytes(), a.as_bytes()),
                b.cmp(a),
                "{b:?} vs {a:?}"
            );
        }
    }

    /// A scripted StoreAPI endpoint: `Info` covers all time, `Series`
    /// streams `frames` as they are.
    #[derive(Clone)]
    struct Scripted {
        frames: Vec<SeriesResponse>,
    }

    #[tonic::async_trait]
    impl Store for Scripted {
        async fn info(
            &self,
            _r: tonic::Request<InfoRequest>,
        ) -> Result<tonic::Response<InfoResponse>, Status> {
            Err(Status::unimplemented("legacy info"))
        }
        type SeriesStream =
            std::pin::Pin<Box<dyn futures::Stream<Item = Result<SeriesResponse, Status>> + Send>>;
        async fn series(
            &self,
            _r: tonic::Request<SeriesRequest>,
        ) -> Result<tonic::Response<Self::SeriesStream>, Status> {
            let frames = self.frames.clone();
            Ok(tonic::Response::new(Box::pin(futures::stream::iter(
                frames.into_iter().map(Ok),
            ))))
        }
        async fn label_names(
            &self,
            _r: tonic::Request<LabelNamesRequest>,
        ) -> Result<tonic::Response<LabelNamesResponse>, Status> {
            Err(Status::unimplemented("label names"))
        }
        async fn label_values(
            &self,
            _r: tonic::Request<LabelValuesRequest>,
        ) -> Result<tonic::Response<LabelValuesResponse>, Status> {
            Err(Status::unimplemented("label values"))
        }
    }

    #[tonic::async_trait]
    impl Info for Scripted {
        async fn info(
            &self,
            _r: tonic::Request<InfoReq>,
        ) -> Result<tonic::Response<InfoResp>, Status> {
            Ok(tonic::Response::new(InfoResp {
                component_type: "store".into(),
                store: Some(StoreInfo {
                    min_time: i64::MIN,
                    max_time: i64::MAX,
                    supports_without_replica_labels: true,
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
    }

    async fn serve(frames: Vec<SeriesResponse>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let s = Scripted { frames };
        let router = tonic::transport::Server::builder()
            .add_service(InfoServer::new(s.clone()))
            .add_service(StoreServer::new(s));
        tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(l)));
        addr
    }

    fn series(x: &str, chunks: &[(i64, i64, u8)]) -> Series {
        Series {
            labels: labels(&[("__name__".into(), "m".into()), ("x".into(), x.into())]),
            chunks: chunks
                .iter()
                .map(|&(min_time, max_time, byte)| AggrChunk {
                    min_time,
                    max_time,
                    raw: Some(Chunk {
                        r#type: 0,
                        data: bytes::Bytes::from(vec![byte]),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn batch(s: Vec<Series>) -> SeriesResponse {
        SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series: s })),
        }
    }

    /// Identical label sets are merged across endpoints and across the frame
    /// boundaries of one endpoint (in a batch and between batches), repeated
    /// chunks are dropped, and the merged chunks end up sorted by time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merges_across_endpoints_and_frames() {
        let a = serve(vec![
            batch(vec![series("a", &[(0, 1, 1)]), series("b", &[(0, 10, 10)])]),
            batch(vec![
                series("b", &[(11, 20, 11)]),
                series("d", &[(0, 1, 4)]),
            ]),
            SeriesResponse {
                result: Some(series_response::Result::Series(series("e", &[(0, 1, 5)]))),
            },
        ])
        .await;
        let b = serve(vec![
            batch(vec![
                series("b", &[(0, 10, 10)]),
                series("b", &[(5, 15, 12)]),
                series("c", &[(0, 1, 3)]),
            ]),
            batch(vec![]),
        ])
        .await;
        let sources = [a, b]
            .iter()
            .map(|s| crate::discovery::Source {
                spec: crate::discovery::EndpointSpec::parse(s).expect("spec"),
                strict: false,
                client: None,
            })
            .collect();
        let set = EndpointSet::new(
            crate::discovery::Discovery::new(sources, vec![], None, None),
            Default::default(),
        );
        set.refresh().await;
        assert_eq!(set.queryable().len(), 2);
        let (tx, mut rx) = mpsc::channel(4);
        let req = ProxyRequest {
            request: SeriesRequest {
                min_time: 0,
                max_time: 100,
                ..Default::default()
            },
            matchers: vec![],
            partial_response: false,
            tenant: None,
        };
        let set2 = set.clone();
        tokio::spawn(async move { super::series(&set2, req, tx).await });
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            match item.expect("no error") {
                FanoutItem::Series(run) => {
                    for s in run.iter() {
                        let s = s.to_series();
                        got.push((
                            s.labels[1].value.clone(),
                            s.chunks
                                .iter()
                                .map(|c| (c.min_time, c.max_time))
                                .collect::<Vec<_>>(),
                        ));
                    }
                }
                FanoutItem::Warning(w) => panic!("warning {w}"),
            }
        }
        let want: Vec<(String, Vec<(i64, i64)>)> = vec![
            ("a".into(), vec![(0, 1)]),
            ("b".into(), vec![(0, 10), (5, 15), (11, 20)]),
            ("c".into(), vec![(0, 1)]),
            ("d".into(), vec![(0, 1)]),
            ("e".into(), vec![(0, 1)]),
        ];
        assert_eq!(got, want);
        assert_eq!(set.open_streams(), 0);
    }

    fn raw_frame(msg: SeriesResponse) -> Arc<RawFrame> {
        let bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&msg));
        Arc::new(RawFrame::parse(bytes).expect("parse").frame)
    }

    /// A series that continues in a frame that has not arrived yet: the
    /// merge sends what it has before it waits, and the series being
    /// assembled moves to the next run intact.
    #[tokio::test]
    async fn a_series_split_across_a_wait_stays_whole() {
        let (tx0, rx0) = mpsc::channel(4);
        let (tx1, rx1) = mpsc::channel(4);
        let (out, mut got) = mpsc::channel(16);
        let src = [rx0, rx1]
            .into_iter()
            .map(|rx| Source {
                rx: Some(rx),
                frame: Arc::new(RawFrame::default()),
                pos: 0,
                queued: Default::default(),
                slot: None,
            })
            .collect();
        let merge = tokio::spawn(async move {
            Merge {
                src,
                heap: Vec::new(),
                run: SeriesRun::default(),
                cur: None,
                partial: true,
                out: &out,
            }
            .run()
            .await;
        });
        let f = |s: Vec<Series>| Frame::Series(vec![raw_frame(batch(s))]);
        tx0.send(f(vec![
            series("a", &[(0, 1, 1)]),
            series("b", &[(0, 9, 2)]),
        ]))
        .await
        .expect("send");
        tx1.send(f(vec![
            series("b", &[(0, 9, 2)]),
            series("c", &[(0, 1, 3)]),
        ]))
        .await
        .expect("send");
        // "a" comes out before the merge waits for endpoint 0's next frame.
        let first = got.recv().await.expect("a run").expect("no error");
        let FanoutItem::Series(run) = first else {
            panic!("expected series")
        };
        let names: Vec<String> = run
            .iter()
            .map(|s| {
                s.labels()
                    .nth(1)
                    .map(|l| l.1.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["a"]);
        tx0.send(f(vec![
            series("b", &[(10, 19, 4)]),
            series("d", &[(0, 1, 5)]),
        ]))
        .await
        .expect("send");
        drop((tx0, tx1));
        let mut rest = Vec::new();
        while let Some(item) = got.recv().await {
            if let Ok(FanoutItem::Series(run)) = item {
                for s in run.iter() {
                    let s = s.to_series();
                    let ranges: Vec<(i64, i64)> =
                        s.chunks.iter().map(|c| (c.min_time, c.max_time)).collect();
                    rest.push((s.labels[1].value.clone(), ranges));
                }
            }
        }
        merge.await.expect("merge task");
        assert_eq!(
            rest,
            [
                ("b".to_string(), vec![(0, 9), (10, 19)]),
                ("c".to_string(), vec![(0, 1)]),
                ("d".to_string(), vec![(0, 1)]),
            ]
        );
    }

    proptest! {
        #[test]
        fn compare_matches_reference(
            a in prop::collection::vec(("[a-c_]{0,10}", "[\\x00-\\x7f\u{e9}\u{100}]{0,20}"), 0..4),
            b in prop::collection::vec(("[a-c_]{0,10}", "[\\x00-\\x7f\u{e9}\u{100}]{0,20}"), 0..4),
        ) {
            let (a, b) = (labels(&a), labels(&b));
            prop_assert_eq!(compare_pb_labels(&a, &b), reference(&a, &b));
            prop_assert_eq!(compare_pb_labels(&a, &a), Ordering::Equal);
        }
    }
}
