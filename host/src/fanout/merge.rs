//! Fan-out of one request to every matching endpoint and a streaming k-way
//! merge of their answers into one stream sorted by labels.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use sluice_proto::MAX_GRPC_MESSAGE_SIZE;
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{
    AggrChunk, Label as PbLabel, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy,
    Series, SeriesRequest, series_response,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::endpoints::{Endpoint, EndpointSet};
use crate::model::Matcher;

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

/// `compare_pb_labels(a, b) == Equal`, checking lengths before bytes.
fn pb_labels_eq(a: &[PbLabel], b: &[PbLabel]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            eq_bytes(x.name.as_bytes(), y.name.as_bytes())
                && eq_bytes(x.value.as_bytes(), y.value.as_bytes())
        })
}

/// Byte equality, inlined like [`cmp_bytes`].
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && cmp_bytes(a, b) == Ordering::Equal
}

/// Byte-wise lexicographic order (what `str::cmp` gives), inlined: label
/// names and values are short, and the merge compares millions of them, so
/// eight bytes at a time beats a call into the C library's `memcmp`.
#[inline]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let (mut x, mut y) = (&a[..n], &b[..n]);
    while let (Some((xw, xr)), Some((yw, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        if xw != yw {
            return u64::from_be_bytes(*xw).cmp(&u64::from_be_bytes(*yw));
        }
        (x, y) = (xr, yr);
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
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
}

/// What the merged stream yields.
#[derive(Debug)]
pub enum FanoutItem {
    Series(Series),
    Warning(String),
}

/// What a pump hands the merge: the series of one response frame at a time
/// (a whole `SeriesBatch`, not one channel message per series), warnings and
/// the error that ended the stream, in stream order.
enum Frame {
    Series(Vec<Series>),
    Warning(String),
    Error(String),
}

/// Frames buffered per endpoint between its pump and the merge. With batching
/// stores (64 series a frame) that bounds the buffer at a few hundred series.
const PUMP_BUFFER_FRAMES: usize = 2;

/// Series per channel message when a pump re-sends a buffered response.
const PUMP_RESEND_BATCH: usize = 64;

/// Decrements an endpoint's open-stream count when the stream task ends.
struct OpenStream(Arc<Endpoint>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

/// Reads one endpoint's Series stream into `tx`, one message per response frame.
async fn pump(
    ep: Arc<Endpoint>,
    mut req: SeriesRequest,
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
    let mut client =
        StoreClient::new(ep.channel.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
    // Every wait below also ends when the merge is gone (its consumer hung up
    // or the call failed): returning drops the stream, which cancels the
    // endpoint's Series call instead of holding it until the endpoint answers.
    let call = tokio::select! {
        _ = tx.closed() => return,
        r = tokio::time::timeout(wait(response_timeout), client.series(req)) => r,
    };
    let mut stream = match call {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            let _ = tx
                .send(Frame::Error(format!(
                    "endpoint {addr}: {}",
                    status_text(&s)
                )))
                .await;
            return;
        }
        Err(_) => {
            let _ = tx
                .send(Frame::Error(format!(
                    "endpoint {addr}: no response within {response_timeout:?}"
                )))
                .await;
            return;
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
                let _ = tx
                    .send(Frame::Error(format!(
                        "endpoint {addr}: {}",
                        status_text(&s)
                    )))
                    .await;
                return;
            }
            Err(_) => {
                let _ = tx.send(Frame::Error(format!("endpoint {addr}: no frame within {response_timeout:?} (--store.response-timeout)"))).await;
                return;
            }
        };
        let series: Vec<Series> = match msg.result {
            Some(series_response::Result::Series(s)) => vec![s],
            Some(series_response::Result::Batch(b)) => b.series,
            Some(series_response::Result::Warning(w)) => {
                if tx
                    .send(Frame::Warning(format!("endpoint {addr}: {w}")))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(series_response::Result::Hints(_)) | None => continue,
        };
        if !strip.is_empty() {
            for mut s in series {
                s.labels.retain(|l| !strip.contains(&l.name));
                buffered.push(s);
            }
            continue;
        }
        if series.is_empty() {
            continue;
        }
        if tx.send(Frame::Series(series)).await.is_err() {
            return;
        }
    }
    if !strip.is_empty() {
        buffered.sort_by(|a, b| compare_pb_labels(&a.labels, &b.labels));
        let mut rest = buffered.into_iter();
        loop {
            let chunk: Vec<Series> = rest.by_ref().take(PUMP_RESEND_BATCH).collect();
            if chunk.is_empty() || tx.send(Frame::Series(chunk)).await.is_err() {
                return;
            }
        }
    }
}

fn status_text(s: &Status) -> String {
    format!("{}: {}", crate::metrics::code_name(s.code()), s.message())
}

/// Heap entry: the head series of one endpoint.
struct Head {
    series: Series,
    idx: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_pb_labels(&self.series.labels, &other.series.labels).then(self.idx.cmp(&other.idx))
    }
}

/// Identity of a chunk for "already seen": its range and sub-chunk hashes.
fn chunk_key(c: &AggrChunk) -> (i64, i64, [u64; 6]) {
    let h = |x: &Option<sluice_proto::thanos::Chunk>| {
        x.as_ref()
            .map(|c| {
                if c.hash != 0 {
                    c.hash
                } else {
                    xxhash_rust::xxh64::xxh64(&c.data, 0)
                }
            })
            .unwrap_or(0)
    };
    (
        c.min_time,
        c.max_time,
        [
            h(&c.raw),
            h(&c.count),
            h(&c.sum),
            h(&c.min),
            h(&c.max),
            h(&c.counter),
        ],
    )
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
    let mut rxs = Vec::with_capacity(eps.len());
    for ep in eps {
        let (tx, rx) = mpsc::channel(PUMP_BUFFER_FRAMES);
        tokio::spawn(pump(ep, forwarded.clone(), timeout, tx));
        rxs.push(Source {
            rx: Some(rx),
            buf: Vec::new().into_iter(),
        });
    }

    /// One endpoint's side of the merge: its channel (None once drained)
    /// and the rest of the frame being consumed.
    struct Source {
        rx: Option<mpsc::Receiver<Frame>>,
        buf: std::vec::IntoIter<Series>,
    }

    // Pulls the next series of endpoint `i`, forwarding warnings and errors.
    async fn next(
        rxs: &mut [Source],
        i: usize,
        partial: bool,
        out: &mpsc::Sender<Result<FanoutItem, Status>>,
    ) -> Result<Option<Series>, ()> {
        let src = &mut rxs[i];
        if let Some(s) = src.buf.next() {
            return Ok(Some(s));
        }
        loop {
            let Some(rx) = src.rx.as_mut() else {
                return Ok(None);
            };
            // The consumer hanging up ends the merge even while an endpoint
            // is silent, so the pumps see their channels close and cancel.
            let frame = tokio::select! {
                _ = out.closed() => return Err(()),
                f = rx.recv() => f,
            };
            match frame {
                Some(Frame::Series(batch)) => {
                    src.buf = batch.into_iter();
                    if let Some(s) = src.buf.next() {
                        return Ok(Some(s));
                    }
                }
                Some(Frame::Warning(w)) | Some(Frame::Error(w)) if partial => {
                    if out.send(Ok(FanoutItem::Warning(w))).await.is_err() {
                        return Err(());
                    }
                }
                Some(Frame::Warning(w)) | Some(Frame::Error(w)) => {
                    let _ = out.send(Err(Status::aborted(w))).await;
                    return Err(());
                }
                None => {
                    src.rx = None;
                    return Ok(None);
                }
            }
        }
    }

    let mut heap = BinaryHeap::new();
    for i in 0..rxs.len() {
        match next(&mut rxs, i, req.partial_response, &out).await {
            Ok(Some(series)) => heap.push(Reverse(Head { series, idx: i })),
            Ok(None) => {}
            Err(()) => return,
        }
    }
    // Endpoints whose head was taken for the current series (reused).
    let mut refill: Vec<usize> = Vec::with_capacity(rxs.len());
    while let Some(Reverse(Head { mut series, idx })) = heap.pop() {
        refill.clear();
        refill.push(idx);
        let mut seen: Option<HashSet<(i64, i64, [u64; 6])>> = None;
        // Merge every head with the same label set into this series.
        while heap
            .peek()
            .is_some_and(|Reverse(h)| pb_labels_eq(&h.series.labels, &series.labels))
        {
            let Some(Reverse(other)) = heap.pop() else {
                break;
            };
            let seen = seen.get_or_insert_with(|| series.chunks.iter().map(chunk_key).collect());
            for c in other.series.chunks {
                if seen.insert(chunk_key(&c)) {
                    series.chunks.push(c);
                }
            }
            refill.push(other.idx);
        }
        // A series may also continue in the next frames of the same endpoint.
        let mut i = 0;
        while i < refill.len() {
            let e = refill[i];
            i += 1;
            loop {
                // Most series come from the frame already in hand.
                let head = match rxs[e].buf.next() {
                    Some(s) => Ok(Some(s)),
                    None => next(&mut rxs, e, req.partial_response, &out).await,
                };
                match head {
                    Ok(Some(s)) if pb_labels_eq(&s.labels, &series.labels) => {
                        let seen = seen
                            .get_or_insert_with(|| series.chunks.iter().map(chunk_key).collect());
                        for c in s.chunks {
                            if seen.insert(chunk_key(&c)) {
                                series.chunks.push(c);
                            }
                        }
                    }
                    Ok(Some(s)) => {
                        heap.push(Reverse(Head { series: s, idx: e }));
                        break;
                    }
                    Ok(None) => break,
                    Err(()) => return,
                }
            }
        }
        if seen.is_some() {
            series.chunks.sort_by_key(|c| (c.min_time, c.max_time));
        }
        // Fast path without the send future when the consumer keeps up.
        match out.try_send(Ok(FanoutItem::Series(series))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                if out.send(item).await.is_err() {
                    return;
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Sorted, unique label names over every matching endpoint, plus warnings.
pub async fn label_names(
    set: &EndpointSet,
    req: LabelNamesRequest,
    matchers: &[Matcher],
    partial: bool,
) -> Result<(Vec<String>, Vec<String>), Status> {
    let (start, end, limit) = (req.start, req.end, req.limit);
    fan_strings(set, start, end, matchers, partial, limit, move |mut c| {
        let req = req.clone();
        async move {
            c.label_names(req)
                .await
                .map(|r| r.into_inner())
                .map(|r| (r.names, r.warnings))
        }
    })
    .await
}

/// Sorted, unique values of one label over every matching endpoint.
pub async fn label_values(
    set: &EndpointSet,
    req: LabelValuesRequest,
    matchers: &[Matcher],
    partial: bool,
) -> Result<(Vec<String>, Vec<String>), Status> {
    let (start, end, limit) = (req.start, req.end, req.limit);
    fan_strings(set, start, end, matchers, partial, limit, move |mut c| {
        let req = req.clone();
        async move {
            c.label_values(req)
                .await
                .map(|r| r.into_inner())
                .map(|r| (r.values, r.warnings))
        }
    })
    .await
}

/// Calls every endpoint matching the range and matchers concurrently and
/// merges their string lists (names or values) with their warnings.
async fn fan_strings<F, Fut>(
    set: &EndpointSet,
    start: i64,
    end: i64,
    matchers: &[Matcher],
    partial: bool,
    limit: i64,
    call: F,
) -> Result<(Vec<String>, Vec<String>), Status>
where
    F: Fn(StoreClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<String>, Vec<String>), Status>>,
{
    let calls = set
        .queryable()
        .into_iter()
        .filter(|e| e.matches(start, end, matchers))
        .map(|ep| {
            let c = StoreClient::new(ep.channel.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE);
            let fut = call(c);
            async move { (ep.address.clone(), fut.await) }
        });
    collect_strings(
        futures::future::join_all(calls).await.into_iter(),
        partial,
        limit,
    )
}

fn collect_strings(
    results: impl Iterator<Item = (String, Result<(Vec<String>, Vec<String>), Status>)>,
    partial: bool,
    limit: i64,
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
    let mut v: Vec<String> = all.into_iter().collect();
    if limit > 0 {
        v.truncate(limit as usize);
    }
    Ok((v, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sluice_proto::thanos::info::info_server::{Info, InfoServer};
    use sluice_proto::thanos::info::{InfoRequest as InfoReq, InfoResponse as InfoResp, StoreInfo};
    use sluice_proto::thanos::store_server::{Store, StoreServer};
    use sluice_proto::thanos::{
        Chunk, InfoRequest, InfoResponse, LabelNamesResponse, LabelValuesResponse, SeriesBatch,
        SeriesResponse,
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
        };
        let set2 = set.clone();
        tokio::spawn(async move { super::series(&set2, req, tx).await });
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            match item.expect("no error") {
                FanoutItem::Series(s) => got.push((
                    s.labels[1].value.clone(),
                    s.chunks
                        .iter()
                        .map(|c| (c.min_time, c.max_time))
                        .collect::<Vec<_>>(),
                )),
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

    proptest! {
        #[test]
        fn compare_matches_reference(
            a in prop::collection::vec(("[a-c_]{0,10}", "[\\x00-\\x7f\u{e9}\u{100}]{0,20}"), 0..4),
            b in prop::collection::vec(("[a-c_]{0,10}", "[\\x00-\\x7f\u{e9}\u{100}]{0,20}"), 0..4),
        ) {
            let (a, b) = (labels(&a), labels(&b));
            prop_assert_eq!(compare_pb_labels(&a, &b), reference(&a, &b));
            prop_assert_eq!(pb_labels_eq(&a, &b), reference(&a, &b) == Ordering::Equal);
            prop_assert_eq!(compare_pb_labels(&a, &a), Ordering::Equal);
            prop_assert!(pb_labels_eq(&a, &a));
        }
    }
}
