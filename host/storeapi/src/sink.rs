//! Where a source puts its series: the [`SeriesSink`] counts them against the
//! limits, stops the source at the request's `limit` or when the client has
//! gone, and packs them into `SeriesResponse` frames (single `series` frames,
//! or `SeriesBatch` frames of `response_batch_size`) that go on the wire as
//! they are.

use bytes::Bytes;
use prost::Message;
use sluice_proto::thanos::{AggrChunk, Series};
use tokio::sync::mpsc;
use tonic::Status;

use crate::StoreError;

/// `SeriesResponse.series` (1), `.warning` (2) and `.batch` (4) keys, and
/// `SeriesBatch.series` (1).
const RESPONSE_SERIES: u8 = 0x0a;
const RESPONSE_WARNING: u8 = 0x12;
const RESPONSE_HINTS: u8 = 0x1a;
const RESPONSE_BATCH: u8 = 0x22;
const BATCH_SERIES: u8 = 0x0a;

/// Most series in one batch frame, whatever the client asks for: a client
/// that asks for `1<<60` gets frames of this many.
pub const MAX_BATCH_SERIES: usize = 4096;
/// A batch frame is closed once its series take this many bytes, so one
/// frame never holds more than about this much memory.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The server's per-call limits (0 = unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesLimits {
    /// Series per call (`--store.limits.request-series`).
    pub series: u64,
    /// Samples per call, counted from chunk headers
    /// (`--store.limits.request-samples`).
    pub samples: u64,
}

/// Whether the source should go on producing.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep sending.
    More,
    /// Stop: the request's `limit` is reached or the client has gone.
    Done,
}

/// Frames of one Series call, encoded.
pub type FrameSender = mpsc::Sender<Result<Bytes, Status>>;

/// Receives one Series call's series from its source.
#[derive(Debug)]
pub struct SeriesSink {
    tx: FrameSender,
    batch: usize,
    body: Vec<u8>,
    in_body: usize,
    sent: u64,
    samples: u64,
    limits: SeriesLimits,
    request_limit: u64,
    done: bool,
}

impl SeriesSink {
    /// A sink sending frames to `tx`. `batch_size` is the request's
    /// `response_batch_size` (≤ 1: single-series frames), clamped to
    /// [`MAX_BATCH_SERIES`]; `request_limit` its `limit` (0 = none).
    pub fn new(
        tx: FrameSender,
        batch_size: i64,
        request_limit: usize,
        limits: SeriesLimits,
    ) -> Self {
        let batch = usize::try_from(batch_size)
            .unwrap_or(1)
            .clamp(1, MAX_BATCH_SERIES);
        SeriesSink {
            tx,
            batch,
            body: Vec::new(),
            in_body: 0,
            sent: 0,
            samples: 0,
            limits,
            request_limit: request_limit as u64,
            done: false,
        }
    }

    /// Series sent so far.
    pub fn series_sent(&self) -> u64 {
        self.sent
    }

    /// Samples sent so far (from chunk headers).
    pub fn samples_sent(&self) -> u64 {
        self.samples
    }

    /// Whether samples are counted (a samples limit is set): a source that
    /// forwards encoded series only needs to count them then.
    pub fn counts_samples(&self) -> bool {
        self.limits.samples > 0
    }

    /// Whether the source may stop: limit reached or client gone.
    pub fn is_done(&self) -> bool {
        self.done || self.tx.is_closed()
    }

    /// Fails early when a source knows how many series it is about to send
    /// and that is over the series limit (before any chunk is read). Series
    /// beyond the request's `limit` are not counted.
    pub fn expect_series(&self, n: u64) -> Result<(), StoreError> {
        let n = if self.request_limit > 0 {
            n.min(self.request_limit)
        } else {
            n
        };
        self.check_series(n)
    }

    fn check_series(&self, n: u64) -> Result<(), StoreError> {
        let max = self.limits.series;
        if max > 0 && n > max {
            return Err(StoreError::limit(
                "series",
                format!(
                    "the query selects {n} series, more than --store.limits.request-series={max}"
                ),
            ));
        }
        Ok(())
    }

    fn admit(&mut self, samples: u64) -> Result<Flow, StoreError> {
        if self.is_done() {
            return Ok(Flow::Done);
        }
        if self.request_limit > 0 && self.sent >= self.request_limit {
            self.done = true;
            return Ok(Flow::Done);
        }
        self.check_series(self.sent + 1)?;
        let total = self.samples.saturating_add(samples);
        let max = self.limits.samples;
        if max > 0 && total > max {
            return Err(StoreError::limit(
                "samples",
                format!("the query reads more than --store.limits.request-samples={max} samples"),
            ));
        }
        self.samples = total;
        self.sent += 1;
        Ok(Flow::More)
    }

    /// Sends one series.
    pub async fn send(&mut self, s: &Series) -> Result<Flow, StoreError> {
        if self.admit(series_samples(s))? == Flow::Done {
            return Ok(Flow::Done);
        }
        let len = s.encoded_len();
        if self.batch <= 1 {
            let mut frame = Vec::with_capacity(len + 6);
            put_key_len(&mut frame, RESPONSE_SERIES, len);
            s.encode_raw(&mut frame);
            return Ok(self.emit(Bytes::from(frame)).await);
        }
        put_key_len(&mut self.body, BATCH_SERIES, len);
        s.encode_raw(&mut self.body);
        self.after_push().await
    }

    /// Sends one series given as the bytes of an encoded `thanos.Series`
    /// message (a proxy forwarding what its endpoint sent), with the number
    /// of samples its chunks hold.
    pub async fn send_encoded(&mut self, series: &[u8], samples: u64) -> Result<Flow, StoreError> {
        if self.admit(samples)? == Flow::Done {
            return Ok(Flow::Done);
        }
        if self.batch <= 1 {
            let mut frame = Vec::with_capacity(series.len() + 6);
            put_key_len(&mut frame, RESPONSE_SERIES, series.len());
            frame.extend_from_slice(series);
            return Ok(self.emit(Bytes::from(frame)).await);
        }
        put_key_len(&mut self.body, BATCH_SERIES, series.len());
        self.body.extend_from_slice(series);
        self.after_push().await
    }

    /// Sends a warning (partial response). It goes out after the series
    /// already batched.
    pub async fn warn(&mut self, warning: impl Into<String>) -> Result<Flow, StoreError> {
        if self.is_done() {
            return Ok(Flow::Done);
        }
        if self.flush().await == Flow::Done {
            return Ok(Flow::Done);
        }
        let w = warning.into();
        let mut frame = Vec::with_capacity(w.len() + 6);
        put_key_len(&mut frame, RESPONSE_WARNING, w.len());
        frame.extend_from_slice(w.as_bytes());
        Ok(self.emit(Bytes::from(frame)).await)
    }

    /// Sends a `hints` frame (store gateways: the blocks queried), after
    /// the series already batched.
    pub async fn hints(&mut self, any: &prost_types::Any) -> Flow {
        if self.is_done() || self.flush().await == Flow::Done {
            return Flow::Done;
        }
        let len = any.encoded_len();
        let mut frame = Vec::with_capacity(len + 6);
        put_key_len(&mut frame, RESPONSE_HINTS, len);
        any.encode_raw(&mut frame);
        self.emit(Bytes::from(frame)).await
    }

    async fn after_push(&mut self) -> Result<Flow, StoreError> {
        self.in_body += 1;
        if self.in_body >= self.batch || self.body.len() >= MAX_BATCH_BYTES {
            return Ok(self.flush().await);
        }
        Ok(Flow::More)
    }

    /// Sends the open batch, if any.
    pub async fn flush(&mut self) -> Flow {
        if self.in_body == 0 {
            return Flow::More;
        }
        let mut frame = Vec::with_capacity(self.body.len() + 6);
        put_key_len(&mut frame, RESPONSE_BATCH, self.body.len());
        frame.extend_from_slice(&self.body);
        self.body.clear();
        self.in_body = 0;
        self.emit(Bytes::from(frame)).await
    }

    async fn emit(&mut self, frame: Bytes) -> Flow {
        if self.tx.send(Ok(frame)).await.is_err() {
            self.done = true;
            return Flow::Done;
        }
        Flow::More
    }

    /// Ends the call: sends what is batched, then the error if there is one.
    pub(crate) async fn finish(mut self, result: Result<(), StoreError>) {
        match result {
            Ok(()) => {
                let _ = self.flush().await;
            }
            // Series batched before a failure are dropped with it: the
            // call failed, and a client must not take them as complete.
            Err(e) => {
                let _ = self.tx.send(Err(crate::status(&e))).await;
            }
        }
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key_len(buf: &mut Vec<u8>, key: u8, len: usize) {
    buf.push(key);
    put_varint(buf, len as u64);
}

/// Samples in a chunk, from its header (the first two bytes, big endian, of
/// XOR and histogram chunks).
pub fn chunk_samples(data: &[u8]) -> u64 {
    match data {
        [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

/// Samples of one wire chunk: the raw chunk's, or the largest of the
/// aggregates of a downsampled one.
pub fn aggr_chunk_samples(c: &AggrChunk) -> u64 {
    [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter]
        .into_iter()
        .flatten()
        .map(|c| chunk_samples(&c.data))
        .max()
        .unwrap_or(0)
}

/// Samples of a series, from its chunks' headers.
pub fn series_samples(s: &Series) -> u64 {
    s.chunks.iter().map(aggr_chunk_samples).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::thanos::{Chunk, Label, SeriesResponse, series_response};

    fn series(name: &str, samples: u16) -> Series {
        let mut data = samples.to_be_bytes().to_vec();
        data.extend_from_slice(&[0; 300]);
        Series {
            labels: vec![Label {
                name: "n".into(),
                value: name.into(),
            }],
            chunks: vec![AggrChunk {
                min_time: 0,
                max_time: 9,
                raw: Some(Chunk {
                    r#type: 0,
                    data: Bytes::from(data),
                    hash: 0,
                }),
                ..Default::default()
            }],
        }
    }

    async fn collect(
        mut rx: mpsc::Receiver<Result<Bytes, Status>>,
    ) -> Vec<Result<SeriesResponse, Status>> {
        let mut out = Vec::new();
        while let Some(f) = rx.recv().await {
            out.push(f.map(|b| SeriesResponse::decode(b).expect("decodes")));
        }
        out
    }

    #[tokio::test]
    async fn batches_decode_to_the_series_sent() {
        let (tx, rx) = mpsc::channel(16);
        let mut sink = SeriesSink::new(tx, 2, 0, SeriesLimits::default());
        let all: Vec<Series> = (0..5).map(|i| series(&i.to_string(), 10)).collect();
        for s in &all[..3] {
            assert_eq!(sink.send(s).await.expect("send"), Flow::More);
        }
        assert_eq!(sink.warn("careful").await.expect("warn"), Flow::More);
        let encoded = all[3].encode_to_vec();
        assert_eq!(
            sink.send_encoded(&encoded, 10).await.expect("send"),
            Flow::More
        );
        assert_eq!(sink.send(&all[4]).await.expect("send"), Flow::More);
        assert_eq!(sink.samples_sent(), 50);
        sink.finish(Ok(())).await;
        let frames = collect(rx).await;
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        for f in frames {
            match f.expect("ok").result {
                Some(series_response::Result::Batch(b)) => {
                    kinds.push(format!("batch{}", b.series.len()));
                    got.extend(b.series);
                }
                Some(series_response::Result::Warning(w)) => kinds.push(w),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        assert_eq!(got, all);
        assert_eq!(kinds, ["batch2", "batch1", "careful", "batch2"]);
    }

    #[tokio::test]
    async fn limits_stop_or_fail_the_source() {
        let (tx, rx) = mpsc::channel(16);
        let mut sink = SeriesSink::new(tx, 0, 2, SeriesLimits::default());
        assert_eq!(sink.send(&series("a", 1)).await.expect("a"), Flow::More);
        assert_eq!(sink.send(&series("b", 1)).await.expect("b"), Flow::More);
        assert_eq!(
            sink.send(&series("c", 1)).await.expect("c"),
            Flow::Done,
            "request limit 2"
        );
        sink.finish(Ok(())).await;
        assert_eq!(collect(rx).await.len(), 2);

        let (tx, _rx) = mpsc::channel(16);
        let limits = SeriesLimits {
            series: 1,
            samples: 0,
        };
        let mut sink = SeriesSink::new(tx, 0, 0, limits);
        assert!(
            sink.expect_series(2).is_err(),
            "known count over the limit fails early"
        );
        assert_eq!(sink.send(&series("a", 1)).await.expect("a"), Flow::More);
        let e = sink.send(&series("b", 1)).await.expect_err("second series");
        assert!(e.to_string().contains("series"), "{e}");

        let (tx, _rx) = mpsc::channel(16);
        let limits = SeriesLimits {
            series: 0,
            samples: 15,
        };
        let mut sink = SeriesSink::new(tx, 0, 0, limits);
        assert_eq!(sink.send(&series("a", 10)).await.expect("a"), Flow::More);
        let e = sink.send(&series("b", 10)).await.expect_err("20 samples");
        assert!(e.to_string().contains("samples"), "{e}");
    }

    #[tokio::test]
    async fn a_client_that_left_stops_the_source() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut sink = SeriesSink::new(tx, 0, 0, SeriesLimits::default());
        assert!(sink.is_done());
        assert_eq!(sink.send(&series("a", 1)).await.expect("a"), Flow::Done);
    }
}
