//! The two reads the throughput benchmarks time: `thanos.Store/Series` against a StoreAPI server and Prometheus'
//! streamed remote read (`STREAMED_XOR_CHUNKS`), both decoding every message and counting series, chunks and
//! samples (the first two bytes of each XOR chunk).

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use prost::Message;
use sluice_proto::prometheus::{self as prompb, ChunkedReadResponse, ReadRequest, read_request};
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{self, SeriesRequest, label_matcher, series_response};
use tonic::transport::Channel;

use crate::fixture::METRIC;
use crate::frames::FrameReader;
use crate::xor_samples;

/// What one read returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    /// Protobuf bytes of all messages (gRPC: counted only when asked).
    pub bytes: u64,
    pub frames: u64,
    /// When the first message with data arrived.
    pub first_data: Option<Instant>,
    /// When the last message with data arrived (the stream may end later).
    pub last_data: Option<Instant>,
}

pub fn count_thanos_series(s: &thanos::Series, c: &mut Count) -> anyhow::Result<()> {
    c.series += 1;
    for ac in &s.chunks {
        let raw = ac.raw.as_ref().context("AggrChunk without a raw chunk")?;
        ensure!(
            raw.r#type == thanos::chunk::Encoding::Xor as i32,
            "chunk encoding {} is not XOR",
            raw.r#type
        );
        c.chunks += 1;
        c.samples += xor_samples(&raw.data);
    }
    Ok(())
}

/// One `Series` call over `[mint, maxt]` of every `bench_metric` series, streamed and counted.
pub async fn sluice_read(
    client: &mut StoreClient<Channel>,
    (mint, maxt): (i64, i64),
    batch: i64,
    measure_bytes: bool,
) -> anyhow::Result<Count> {
    let req = SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: vec![thanos::LabelMatcher {
            r#type: label_matcher::Type::Eq as i32,
            name: "__name__".into(),
            value: METRIC.into(),
        }],
        response_batch_size: batch,
        ..Default::default()
    };
    let mut stream = client
        .series(req)
        .await
        .context("Series call")?
        .into_inner();
    let mut c = Count::default();
    while let Some(resp) = stream.message().await.context("Series stream")? {
        c.frames += 1;
        if measure_bytes {
            c.bytes += resp.encoded_len() as u64;
        }
        c.last_data = Some(Instant::now());
        c.first_data = c.first_data.or(c.last_data);
        match resp.result {
            Some(series_response::Result::Series(s)) => count_thanos_series(&s, &mut c)?,
            Some(series_response::Result::Batch(b)) => {
                for s in &b.series {
                    count_thanos_series(s, &mut c)?;
                }
            }
            Some(series_response::Result::Warning(w)) => {
                bail!("the StoreAPI server sent a warning: {w}")
            }
            Some(series_response::Result::Hints(_)) | None => {}
        }
    }
    Ok(c)
}

/// A snappy-compressed streamed remote-read request for every `bench_metric` series over `[mint, maxt]`.
pub fn remote_read_body((mint, maxt): (i64, i64)) -> anyhow::Result<Vec<u8>> {
    let req = ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: mint,
            end_timestamp_ms: maxt,
            matchers: vec![prompb::LabelMatcher {
                r#type: prompb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: METRIC.into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![read_request::ResponseType::StreamedXorChunks as i32],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .context("snappy")
}

/// One streamed remote read, decoded frame by frame and counted.
pub async fn prometheus_read(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
) -> anyhow::Result<Count> {
    let mut resp = http
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body.to_vec())
        .send()
        .await
        .context("remote read request")?;
    if resp.status() != reqwest::StatusCode::OK {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        bail!("remote read answered {status}: {text}");
    }
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    ensure!(
        ctype.starts_with("application/x-streamed-protobuf"),
        "remote read answered Content-Type {ctype:?}, not a streamed response"
    );
    let mut frames = FrameReader::new();
    let mut c = Count::default();
    let mut last_labels: Vec<prompb::Label> = Vec::new();
    while let Some(piece) = resp.chunk().await.context("remote read body")? {
        c.bytes += piece.len() as u64;
        frames.push(&piece);
        while let Some(msg) = frames.next_frame()? {
            c.last_data = Some(Instant::now());
            c.first_data = c.first_data.or(c.last_data);
            let m = ChunkedReadResponse::decode(msg).context("decoding ChunkedReadResponse")?;
            ensure!(m.query_index == 0, "frame for query {}", m.query_index);
            for cs in m.chunked_series {
                // A series may be split over consecutive frames.
                if cs.labels != last_labels {
                    c.series += 1;
                    last_labels = cs.labels;
                }
                for ch in &cs.chunks {
                    ensure!(
                        ch.r#type == prompb::chunk::Encoding::Xor as i32,
                        "chunk encoding {} is not XOR",
                        ch.r#type
                    );
                    c.chunks += 1;
                    c.samples += xor_samples(&ch.data);
                }
            }
        }
    }
    frames.finish()?;
    c.frames = frames.frames();
    Ok(c)
}
