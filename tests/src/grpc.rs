//! StoreAPI client helpers: collect a whole Series stream (both `series` and `batch` frames), decode every XOR
//! chunk, and record every breach of the wire contract (`../shared/specs/thanos-storeapi.md` §1.4, §1.10) so a
//! test can assert there were none.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use sluice_proto::thanos::store_client::StoreClient;
use sluice_proto::thanos::{
    self, LabelNamesRequest, LabelValuesRequest, SeriesRequest, chunk, series_response,
};
use tonic::transport::Channel;

use crate::model::{Labels, Matcher, Sample, SeriesMap, fmt_labels, sort_samples};

/// One chunk as received: its advertised time range and its decoded samples.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub min_time: i64,
    pub max_time: i64,
    pub samples: Vec<Sample>,
    pub data: Vec<u8>,
}

impl Chunk {
    /// Whether `[min_time, max_time]` overlaps `[mint, maxt]` (both inclusive).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt && self.max_time >= mint
    }
}

/// One series: consecutive frames with the same label set merged.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub chunks: Vec<Chunk>,
}

/// A whole Series response.
#[derive(Clone, Debug, Default)]
pub struct SeriesResult {
    pub series: Vec<Series>,
    /// Number of `series` frames and of `batch` frames received.
    pub series_frames: usize,
    pub batch_frames: usize,
    pub warnings: Vec<String>,
    /// Breaches of the wire contract seen while collecting (empty when all is well).
    pub problems: Vec<String>,
}

impl SeriesResult {
    /// Fails listing every contract breach.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = self.problems.iter().take(20).map(String::as_str).collect();
        bail!(
            "{what}: {} wire-contract problem(s):\n  {}",
            self.problems.len(),
            shown.join("\n  ")
        )
    }

    /// Label sets in received order.
    pub fn label_sets(&self) -> Vec<Labels> {
        self.series.iter().map(|s| s.labels.clone()).collect()
    }

    /// Every decoded sample per series, sorted (samples of overlapping chunks are all kept).
    pub fn samples(&self) -> SeriesMap {
        self.samples_in(i64::MIN, i64::MAX)
    }

    /// Decoded samples in `[mint, maxt]` per series; series with none are left out.
    pub fn samples_in(&self, mint: i64, maxt: i64) -> SeriesMap {
        let mut out = SeriesMap::new();
        for s in &self.series {
            let v: Vec<Sample> = s
                .chunks
                .iter()
                .flat_map(|c| c.samples.iter().copied())
                .filter(|x| x.t >= mint && x.t <= maxt)
                .collect();
            if v.is_empty() {
                continue;
            }
            out.entry(s.labels.clone()).or_default().extend(v);
        }
        for v in out.values_mut() {
            sort_samples(v);
        }
        out
    }

    /// Total number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.series.iter().map(|s| s.chunks.len()).sum()
    }

    /// The series with exactly these labels.
    pub fn get(&self, l: &Labels) -> Option<&Series> {
        self.series.iter().find(|s| &s.labels == l)
    }
}

/// A SeriesRequest for `matchers` over `[mint, maxt]`.
pub fn series_request(matchers: &[Matcher], mint: i64, maxt: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: matchers.iter().map(Matcher::to_proto).collect(),
        ..Default::default()
    }
}

/// Calls Series and collects the whole stream. A gRPC error (at the start or mid-stream) is returned as is.
pub async fn series(
    client: &mut StoreClient<Channel>,
    req: SeriesRequest,
) -> Result<SeriesResult, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut res = SeriesResult::default();
    while let Some(frame) = stream.message().await? {
        match frame.result {
            Some(series_response::Result::Series(s)) => {
                res.series_frames += 1;
                add_frame(&mut res, s);
            }
            Some(series_response::Result::Batch(b)) => {
                res.batch_frames += 1;
                for s in b.series {
                    add_frame(&mut res, s);
                }
            }
            Some(series_response::Result::Warning(w)) => res.warnings.push(w),
            Some(series_response::Result::Hints(_)) => {}
            None => res
                .problems
                .push("a SeriesResponse frame with no result set".to_owned()),
        }
    }
    let mut seen = BTreeSet::new();
    for w in res.series.windows(2) {
        if w[0].labels >= w[1].labels {
            res.problems.push(format!(
                "series out of order (labels.Compare): {} sent before {}",
                fmt_labels(&w[0].labels),
                fmt_labels(&w[1].labels)
            ));
        }
    }
    for s in &res.series {
        if !seen.insert(s.labels.clone()) {
            res.problems.push(format!(
                "series {} sent in non-consecutive frames",
                fmt_labels(&s.labels)
            ));
        }
    }
    Ok(res)
}

fn add_frame(res: &mut SeriesResult, s: thanos::Series) {
    let raw_labels: Vec<(String, String)> =
        s.labels.into_iter().map(|l| (l.name, l.value)).collect();
    if raw_labels.windows(2).any(|w| w[0].0 >= w[1].0) {
        res.problems.push(format!(
            "labels not sorted by name or not unique: {raw_labels:?}"
        ));
    }
    if raw_labels.is_empty() {
        res.problems.push("a series with no labels".to_owned());
    }
    let mut labels = raw_labels;
    labels.sort();
    let name = fmt_labels(&labels);
    let mut chunks = Vec::with_capacity(s.chunks.len());
    let mut prev_min = i64::MIN;
    for (i, c) in s.chunks.into_iter().enumerate() {
        let at = format!("series {name} chunk {i} [{}, {}]", c.min_time, c.max_time);
        if c.min_time < prev_min {
            res.problems.push(format!(
                "{at}: chunks not ascending by min_time within the frame"
            ));
        }
        prev_min = c.min_time;
        if c.count.is_some()
            || c.sum.is_some()
            || c.min.is_some()
            || c.max.is_some()
            || c.counter.is_some()
        {
            res.problems
                .push(format!("{at}: aggregate sub-chunks set on raw data"));
        }
        let Some(raw) = c.raw else {
            res.problems.push(format!("{at}: no raw chunk"));
            continue;
        };
        if raw.r#type != chunk::Encoding::Xor as i32 {
            res.problems
                .push(format!("{at}: encoding {} is not XOR (0)", raw.r#type));
        }
        if raw.hash != 0 {
            let h = xxhash_rust::xxh64::xxh64(&raw.data, 0);
            if h != raw.hash {
                res.problems.push(format!(
                    "{at}: hash {:#x} is not XXH64(data) {h:#x}",
                    raw.hash
                ));
            }
        }
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        if let Err(e) = sluice_tsdb::xor::decode_into(&raw.data, &mut ts, &mut vs) {
            res.problems.push(format!("{at}: XOR decode failed: {e}"));
            continue;
        }
        if ts.len() != vs.len() {
            res.problems.push(format!(
                "{at}: decoder gave {} timestamps and {} values",
                ts.len(),
                vs.len()
            ));
            continue;
        }
        let samples: Vec<Sample> = ts
            .iter()
            .zip(vs.iter())
            .map(|(t, v)| Sample::new(*t, *v))
            .collect();
        match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => {
                if first.t != c.min_time || last.t != c.max_time {
                    res.problems.push(format!(
                        "{at}: decoded samples span [{}, {}], not the advertised range",
                        first.t, last.t
                    ));
                }
            }
            _ => res.problems.push(format!("{at}: chunk holds no samples")),
        }
        if samples.windows(2).any(|w| w[0].t >= w[1].t) {
            res.problems
                .push(format!("{at}: timestamps not strictly increasing"));
        }
        chunks.push(Chunk {
            min_time: c.min_time,
            max_time: c.max_time,
            samples,
            data: raw.data.to_vec(),
        });
    }
    match res.series.last_mut() {
        Some(last) if last.labels == labels => last.chunks.extend(chunks),
        _ => res.series.push(Series { labels, chunks }),
    }
}

/// Calls LabelNames.
pub async fn label_names(
    client: &mut StoreClient<Channel>,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Result<Vec<String>, tonic::Status> {
    let req = LabelNamesRequest {
        start,
        end,
        matchers: matchers.iter().map(Matcher::to_proto).collect(),
        ..Default::default()
    };
    Ok(client.label_names(req).await?.into_inner().names)
}

/// Calls LabelValues.
pub async fn label_values(
    client: &mut StoreClient<Channel>,
    label: &str,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Result<Vec<String>, tonic::Status> {
    let req = LabelValuesRequest {
        label: label.to_owned(),
        start,
        end,
        matchers: matchers.iter().map(Matcher::to_proto).collect(),
        ..Default::default()
    };
    Ok(client.label_values(req).await?.into_inner().values)
}

/// Label sets of an Info answer, sorted, empty sets left out.
pub fn info_label_sets(sets: &[thanos::ZLabelSet]) -> Vec<Labels> {
    let mut out: Vec<Labels> = sets
        .iter()
        .map(|s| {
            let mut l: Labels = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            l.sort();
            l
        })
        .filter(|l| !l.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Parses an OpenMetrics/Prometheus text exposition and sums the samples of `name` (any labels). `None` when
/// the metric has no sample line.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let after = if rest.starts_with('{') {
            match rest.find("} ") {
                Some(i) => &rest[i + 2..],
                None => continue,
            }
        } else if let Some(r) = rest.strip_prefix(' ') {
            r
        } else {
            continue;
        };
        let Some(v) = after.split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = crate::fixture::parse_go_float(v) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_reads_labelled_and_plain_lines() {
        let text = "# TYPE x counter\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3.5\nx_total_created 9\ny 1\n# EOF\n";
        assert_eq!(metric_sum(text, "x_total"), Some(5.5));
        assert_eq!(metric_sum(text, "y"), Some(1.0));
        assert_eq!(metric_sum(text, "z"), None);
    }
}

/// What [`series_snappy`] saw.
#[derive(Debug, Default)]
pub struct SnappyAnswer {
    /// The response's `grpc-encoding` header.
    pub encoding: Option<String>,
    /// Messages with the compressed flag set, and without.
    pub compressed_messages: usize,
    pub plain_messages: usize,
    /// The trailers' `grpc-status`.
    pub grpc_status: Option<String>,
    pub responses: Vec<thanos::SeriesResponse>,
}

/// Calls `thanos.Store/Series` on `addr` over plain HTTP/2 with the request compressed as Thanos' snappy
/// compressor does (one snappy framed stream per message, compressed flag set, `grpc-encoding: snappy`) and
/// `grpc-accept-encoding: snappy`; decodes the answer by hand. Independent of tonic's and Sluice's codecs.
pub async fn series_snappy(addr: &str, req: &SeriesRequest) -> anyhow::Result<SnappyAnswer> {
    use std::io::{Read, Write};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut client, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/thanos.Store/Series"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "snappy")
        .header("grpc-accept-encoding", "snappy")
        .body(())?;
    let mut enc = snap::write::FrameEncoder::new(Vec::new());
    enc.write_all(&prost::Message::encode_to_vec(req))?;
    let payload = enc
        .into_inner()
        .map_err(|e| anyhow::anyhow!("snappy: {e}"))?;
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    msg.extend_from_slice(&payload);
    let (resp, mut send) = client.send_request(request, false)?;
    send.send_data(bytes::Bytes::from(msg), true)?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(30), resp).await??;
    let mut out = SnappyAnswer {
        encoding: resp
            .headers()
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Default::default()
    };
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(chunk) =
        tokio::time::timeout(std::time::Duration::from_secs(30), body.data()).await?
    {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    if let Some(t) = body.trailers().await? {
        out.grpc_status = t
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 5, "truncated gRPC message header");
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        anyhow::ensure!(rest.len() >= 5 + len, "truncated gRPC message");
        let data = &rest[5..5 + len];
        let plain = if rest[0] == 1 {
            out.compressed_messages += 1;
            let mut v = Vec::new();
            snap::read::FrameDecoder::new(data).read_to_end(&mut v)?;
            v
        } else {
            out.plain_messages += 1;
            data.to_vec()
        };
        out.responses
            .push(<thanos::SeriesResponse as prost::Message>::decode(
                &plain[..],
            )?);
        rest = &rest[5 + len..];
    }
    Ok(out)
}
