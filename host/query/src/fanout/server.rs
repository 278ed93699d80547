//! The querier as a StoreAPI source (querier of queriers): Info advertises
//! the union of its endpoints; Series and the label APIs pass through the
//! fan-out. Series go on in the bytes their endpoints sent (merged ones are
//! encoded anew); the generic server in `sluice-storeapi` does the rest.

use std::sync::Arc;

use sluice_storeapi::{
    Component, Flow, LabelsAnswer, LabelsQuery, SeriesQuery, SeriesSink, SourceInfo, StoreError,
    StoreSource,
};

use super::raw::SeriesView;
use super::{EndpointSet, FanoutItem, ProxyRequest};

/// The endpoint set as a StoreAPI source.
#[derive(Clone)]
pub struct ProxyStore {
    set: Arc<EndpointSet>,
}

impl std::fmt::Debug for ProxyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyStore")
    }
}

impl ProxyStore {
    pub fn new(set: Arc<EndpointSet>) -> Self {
        ProxyStore { set }
    }
}

/// Sends one series: its bytes as the endpoint sent them, or, for a merged
/// series, encoded anew.
async fn send_view(sink: &mut SeriesSink, s: &SeriesView<'_>) -> Result<Flow, StoreError> {
    match s.encoded() {
        Some(bytes) => {
            let samples = if sink.counts_samples() {
                sluice_storeapi::series_samples(&s.to_series())
            } else {
                0
            };
            sink.send_encoded(bytes, samples).await
        }
        None => sink.send(&s.to_series()).await,
    }
}

impl StoreSource for ProxyStore {
    fn info(&self) -> Result<SourceInfo, StoreError> {
        let (min_time, max_time, sets) = self.set.info();
        Ok(SourceInfo {
            component: Component::Query,
            min_time,
            max_time,
            label_sets: sets,
            tsdb_infos: Vec::new(),
            supports_sharding: false,
            supports_without_replica_labels: true,
        })
    }

    async fn series(&self, q: SeriesQuery, sink: &mut SeriesSink) -> Result<(), StoreError> {
        let preq = ProxyRequest {
            partial_response: q.partial_response,
            matchers: q.matchers,
            request: q.request,
            tenant: q.tenant,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let set = self.set.clone();
        // Dropping `rx` (when this future ends or is dropped) ends the
        // fan-out and cancels the endpoints' streams.
        tokio::spawn(async move { super::series(&set, preq, tx).await });
        while let Some(item) = rx.recv().await {
            match item.map_err(StoreError::Upstream)? {
                FanoutItem::Series(run) => {
                    for s in run.iter() {
                        if send_view(sink, &s).await? == Flow::Done {
                            return Ok(());
                        }
                    }
                }
                FanoutItem::Warning(w) => {
                    if sink.warn(w).await? == Flow::Done {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    async fn labels(&self, q: LabelsQuery) -> Result<LabelsAnswer, StoreError> {
        super::labels(&self.set, &q)
            .await
            .map_err(StoreError::Upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::raw::{self, RawFrame, SeriesRun};
    use bytes::Bytes;
    use sluice_proto::thanos::{
        AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesResponse, series_response,
    };
    use sluice_storeapi::SeriesLimits;

    fn series(v: &str, chunk: (i64, i64)) -> Series {
        Series {
            labels: vec![Label {
                name: "x".into(),
                value: v.into(),
            }],
            chunks: vec![AggrChunk {
                min_time: chunk.0,
                max_time: chunk.1,
                raw: Some(Chunk {
                    r#type: 1,
                    data: Bytes::from(vec![chunk.0 as u8; 300]),
                    hash: 0,
                }),
                ..Default::default()
            }],
        }
    }

    fn frame(s: Vec<Series>) -> Arc<RawFrame> {
        let msg = SeriesResponse {
            result: Some(series_response::Result::Batch(SeriesBatch { series: s })),
        };
        let b = Bytes::from(prost::Message::encode_to_vec(&msg));
        Arc::new(RawFrame::parse(b).expect("parse").frame)
    }

    /// Forwarded series decode to what the views hold: series as their
    /// endpoint sent them (copied bytes, 300-byte chunks so lengths take two
    /// varint bytes) and merged ones re-encoded.
    #[tokio::test]
    async fn forwarded_frames_decode_to_the_merged_series() {
        let f1 = frame(vec![series("a", (0, 9)), series("b", (0, 9))]);
        let f2 = frame(vec![series("b", (10, 19))]);
        let mut run = SeriesRun::default();
        let s1 = run.add_frame(f1.clone());
        run.push(s1, 0, None);
        let mut merged = raw::chunk_refs(&f1, 1);
        raw::absorb(&mut merged, &f2, 0);
        run.push(s1, 1, Some(merged));

        for batch in [0, 8] {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let mut sink = SeriesSink::new(tx, batch, 0, SeriesLimits::default());
            for s in run.iter() {
                assert_eq!(send_view(&mut sink, &s).await.expect("send"), Flow::More);
            }
            let _ = sink.flush().await;
            drop(sink);
            let mut got = Vec::new();
            while let Some(f) = rx.recv().await {
                let f: SeriesResponse = prost::Message::decode(f.expect("frame")).expect("decode");
                match f.result {
                    Some(series_response::Result::Batch(b)) => got.extend(b.series),
                    Some(series_response::Result::Series(s)) => got.push(s),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let want: Vec<Series> = run.iter().map(|s| s.to_series()).collect();
            assert_eq!(got, want, "batch size {batch}");
            assert_eq!(got[1].chunks.len(), 2, "merged chunks");
        }
    }
}
