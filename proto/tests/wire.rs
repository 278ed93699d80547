//! Guards wire compatibility with Thanos and Prometheus: every message is
//! encoded with all fields set, and the field numbers and wire types on the
//! wire are checked against the tables in shared/specs/thanos-storeapi.md §1
//! and shared/specs/prometheus-tsdb.md §4.5; enum values likewise.

use bytes::Bytes;
use prost::Message;
use sluice_proto::hintspb;
use sluice_proto::prometheus as prom;
use sluice_proto::thanos::{self, info};

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

/// (field number, wire type) of every top-level field on the wire, in order.
fn fields(buf: &[u8]) -> Vec<(u32, u8)> {
    let mut out = Vec::new();
    let mut i = 0;
    let uvarint = |b: &[u8], i: &mut usize| -> u64 {
        let (mut x, mut s) = (0u64, 0);
        loop {
            let c = b[*i];
            *i += 1;
            x |= u64::from(c & 0x7f) << s;
            if c < 0x80 {
                return x;
            }
            s += 7;
        }
    };
    while i < buf.len() {
        let key = uvarint(buf, &mut i);
        let (num, wt) = ((key >> 3) as u32, (key & 7) as u8);
        match wt {
            VARINT => {
                uvarint(buf, &mut i);
            }
            I64 => i += 8,
            LEN => {
                let n = uvarint(buf, &mut i) as usize;
                i += n;
            }
            5 => i += 4,
            other => panic!("unexpected wire type {other}"),
        }
        out.push((num, wt));
    }
    out
}

fn check<M: Message>(m: &M, want: &[(u32, u8)]) {
    let got = fields(&m.encode_to_vec());
    let mut got_unique = got.clone();
    got_unique.dedup();
    assert_eq!(got_unique, want, "{}", std::any::type_name::<M>());
}

fn label() -> thanos::Label {
    thanos::Label {
        name: "a".into(),
        value: "b".into(),
    }
}

fn matcher() -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Re as i32,
        name: "n".into(),
        value: "v".into(),
    }
}

fn any() -> Option<prost_types::Any> {
    Some(prost_types::Any {
        type_url: "type.googleapis.com/hintspb.SeriesRequestHints".into(),
        value: vec![1],
    })
}

fn chunk() -> thanos::Chunk {
    thanos::Chunk {
        r#type: thanos::chunk::Encoding::Histogram as i32,
        data: Bytes::from_static(b"x"),
        hash: 7,
    }
}

#[test]
fn series_request_fields() {
    let r = thanos::SeriesRequest {
        min_time: 1,
        max_time: 2,
        matchers: vec![matcher()],
        max_resolution_window: 3,
        aggregates: vec![thanos::Aggr::Count as i32, thanos::Aggr::Counter as i32],
        partial_response_disabled: true,
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        skip_chunks: true,
        hints: any(),
        step: 4,
        range: 5,
        query_hints: Some(thanos::QueryHints {
            step_millis: 1,
            func: Some(thanos::Func {
                name: "rate".into(),
            }),
            grouping: Some(thanos::Grouping {
                by: true,
                labels: vec!["a".into()],
            }),
            range: Some(thanos::Range { millis: 2 }),
            projection_labels: vec!["p".into()],
            projection_include: true,
            series_hash_label_name: "h".into(),
        }),
        shard_info: Some(thanos::ShardInfo {
            shard_index: 1,
            total_shards: 2,
            by: true,
            labels: vec!["a".into()],
        }),
        without_replica_labels: vec!["replica".into()],
        limit: 6,
        response_batch_size: 64,
    };
    check(
        &r,
        &[
            (1, VARINT),
            (2, VARINT),
            (3, LEN),
            (4, VARINT),
            (5, LEN),
            (6, VARINT),
            (7, VARINT),
            (8, VARINT),
            (9, LEN),
            (10, VARINT),
            (11, VARINT),
            (12, LEN),
            (13, LEN),
            (14, LEN),
            (15, VARINT),
            (16, VARINT),
        ],
    );
    let qh = r.query_hints.as_ref().expect("hints");
    check(
        qh,
        &[
            (1, VARINT),
            (2, LEN),
            (4, LEN),
            (5, LEN),
            (6, LEN),
            (7, VARINT),
            (8, LEN),
        ],
    );
    check(
        qh.grouping.as_ref().expect("grouping"),
        &[(1, VARINT), (3, LEN)],
    );
    check(qh.func.as_ref().expect("func"), &[(1, LEN)]);
    check(qh.range.as_ref().expect("range"), &[(1, VARINT)]);
    check(
        r.shard_info.as_ref().expect("shard"),
        &[(1, VARINT), (2, VARINT), (3, VARINT), (4, LEN)],
    );
    check(&matcher(), &[(1, VARINT), (2, LEN), (3, LEN)]);
    // Repeated enums are packed, as Go emits them.
    assert_eq!(
        fields(&r.encode_to_vec())
            .iter()
            .filter(|f| f.0 == 5)
            .count(),
        1
    );
}

#[test]
fn series_response_and_payload_fields() {
    use thanos::series_response::Result as R;
    let series = thanos::Series {
        labels: vec![label()],
        chunks: vec![thanos::AggrChunk {
            min_time: 1,
            max_time: 2,
            raw: Some(chunk()),
            count: Some(chunk()),
            sum: Some(chunk()),
            min: Some(chunk()),
            max: Some(chunk()),
            counter: Some(chunk()),
        }],
    };
    check(&series, &[(1, LEN), (2, LEN)]);
    check(
        &series.chunks[0],
        &[
            (1, VARINT),
            (2, VARINT),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, LEN),
        ],
    );
    check(&chunk(), &[(1, VARINT), (2, LEN), (3, VARINT)]);
    check(&label(), &[(1, LEN), (2, LEN)]);
    for (r, n) in [
        (R::Series(series.clone()), 1),
        (R::Warning("w".into()), 2),
        (R::Hints(any().expect("any")), 3),
        (
            R::Batch(thanos::SeriesBatch {
                series: vec![series.clone()],
            }),
            4,
        ),
    ] {
        check(&thanos::SeriesResponse { result: Some(r) }, &[(n, LEN)]);
    }
    check(
        &thanos::SeriesBatch {
            series: vec![series],
        },
        &[(1, LEN)],
    );
    check(
        &thanos::ZLabelSet {
            labels: vec![label()],
        },
        &[(1, LEN)],
    );
    check(
        &thanos::LabelSet {
            labels: vec![label()],
        },
        &[(1, LEN)],
    );
}

#[test]
fn label_api_fields() {
    let r = thanos::LabelNamesRequest {
        partial_response_disabled: true,
        partial_response_strategy: 1,
        start: 1,
        end: 2,
        hints: any(),
        matchers: vec![matcher()],
        without_replica_labels: vec!["r".into()],
        limit: 3,
    };
    check(
        &r,
        &[
            (1, VARINT),
            (2, VARINT),
            (3, VARINT),
            (4, VARINT),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, VARINT),
        ],
    );
    check(
        &thanos::LabelNamesResponse {
            names: vec!["a".into()],
            warnings: vec!["w".into()],
            hints: any(),
        },
        &[(1, LEN), (2, LEN), (3, LEN)],
    );
    let r = thanos::LabelValuesRequest {
        label: "l".into(),
        partial_response_disabled: true,
        partial_response_strategy: 1,
        start: 1,
        end: 2,
        hints: any(),
        matchers: vec![matcher()],
        without_replica_labels: vec!["r".into()],
        limit: 3,
    };
    check(
        &r,
        &[
            (1, LEN),
            (2, VARINT),
            (3, VARINT),
            (4, VARINT),
            (5, VARINT),
            (6, LEN),
            (7, LEN),
            (8, LEN),
            (9, VARINT),
        ],
    );
    check(
        &thanos::LabelValuesResponse {
            values: vec!["a".into()],
            warnings: vec!["w".into()],
            hints: any(),
        },
        &[(1, LEN), (2, LEN), (3, LEN)],
    );
}

#[test]
fn info_fields() {
    let set = thanos::ZLabelSet {
        labels: vec![label()],
    };
    let r = info::InfoResponse {
        label_sets: vec![set.clone()],
        component_type: "store".into(),
        store: Some(info::StoreInfo {
            min_time: 1,
            max_time: 2,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: vec![info::TsdbInfo {
                labels: Some(set.clone()),
                min_time: 1,
                max_time: 2,
            }],
            supports_projections: true,
        }),
        rules: Some(info::RulesInfo {}),
        metric_metadata: Some(info::MetricMetadataInfo {}),
        targets: Some(info::TargetsInfo {}),
        exemplars: Some(info::ExemplarsInfo {
            min_time: 1,
            max_time: 2,
        }),
        query: Some(info::QueryApiInfo {}),
        status: Some(info::StatusInfo {}),
    };
    check(
        &r,
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, LEN),
            (9, LEN),
        ],
    );
    check(
        r.store.as_ref().expect("store"),
        &[
            (1, VARINT),
            (2, VARINT),
            (3, VARINT),
            (5, VARINT),
            (6, LEN),
            (7, VARINT),
        ],
    );
    check(
        &r.store.as_ref().expect("store").tsdb_infos[0],
        &[(1, LEN), (2, VARINT), (3, VARINT)],
    );
    check(
        r.exemplars.as_ref().expect("ex"),
        &[(1, VARINT), (2, VARINT)],
    );
    // The field is literally named `ComponentType` in Thanos' proto; only its number matters on the wire.
    let legacy = thanos::InfoResponse {
        labels: vec![label()],
        min_time: 1,
        max_time: 2,
        store_type: thanos::StoreType::Store as i32,
        label_sets: vec![set],
    };
    check(
        &legacy,
        &[(1, LEN), (2, VARINT), (3, VARINT), (4, VARINT), (5, LEN)],
    );
}

#[test]
fn hints_fields() {
    check(
        &hintspb::SeriesRequestHints {
            block_matchers: vec![matcher()],
            enable_query_stats: true,
        },
        &[(1, LEN), (2, VARINT)],
    );
    let stats = hintspb::QueryStats {
        blocks_queried: 1,
        merged_series_count: 1,
        merged_chunks_count: 1,
        postings_touched: 1,
        postings_touched_size_sum: 1,
        postings_to_fetch: 1,
        postings_fetched: 1,
        postings_fetched_size_sum: 1,
        postings_fetch_count: 1,
        series_touched: 1,
        series_touched_size_sum: 1,
        series_fetched: 1,
        series_fetched_size_sum: 1,
        series_fetch_count: 1,
        chunks_touched: 1,
        chunks_touched_size_sum: 1,
        chunks_fetched: 1,
        chunks_fetched_size_sum: 1,
        chunks_fetch_count: 1,
        data_downloaded_size_sum: 1,
        get_all_duration: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        merge_duration: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    };
    let mut want: Vec<(u32, u8)> = (1..=20).map(|n| (n, VARINT)).collect();
    want.extend([(21, LEN), (22, LEN)]);
    check(&stats, &want);
    check(
        &hintspb::SeriesResponseHints {
            queried_blocks: vec![hintspb::Block { id: "x".into() }],
            query_stats: Some(stats),
        },
        &[(1, LEN), (2, LEN)],
    );
    check(
        &hintspb::LabelNamesRequestHints {
            block_matchers: vec![matcher()],
        },
        &[(1, LEN)],
    );
    check(
        &hintspb::LabelValuesResponseHints {
            queried_blocks: vec![hintspb::Block { id: "x".into() }],
        },
        &[(1, LEN)],
    );
}

#[test]
fn enum_values() {
    use thanos::{
        Aggr, PartialResponseStrategy as P, StoreType as S, chunk::Encoding as E,
        label_matcher::Type as T,
    };
    assert_eq!(
        [E::Xor as i32, E::Histogram as i32, E::FloatHistogram as i32],
        [0, 1, 2]
    );
    assert_eq!(
        [T::Eq as i32, T::Neq as i32, T::Re as i32, T::Nre as i32],
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            Aggr::Raw,
            Aggr::Count,
            Aggr::Sum,
            Aggr::Min,
            Aggr::Max,
            Aggr::Counter
        ]
        .map(|a| a as i32),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!([P::Warn as i32, P::Abort as i32], [0, 1]);
    assert_eq!(
        [
            S::Unknown,
            S::Query,
            S::Rule,
            S::Sidecar,
            S::Store,
            S::Receive,
            S::Debug
        ]
        .map(|s| s as i32),
        [0, 1, 2, 3, 4, 5, 6]
    );
    use prom::read_request::ResponseType as RT;
    assert_eq!([RT::Samples as i32, RT::StreamedXorChunks as i32], [0, 1]);
    use prom::chunk::Encoding as PE;
    assert_eq!(
        [
            PE::Unknown as i32,
            PE::Xor as i32,
            PE::Histogram as i32,
            PE::FloatHistogram as i32
        ],
        [0, 1, 2, 3]
    );
    use prom::label_matcher::Type as PT;
    assert_eq!(
        [PT::Eq as i32, PT::Neq as i32, PT::Re as i32, PT::Nre as i32],
        [0, 1, 2, 3]
    );
}

#[test]
fn remote_read_fields() {
    let pl = prom::Label {
        name: "a".into(),
        value: "b".into(),
    };
    let pm = prom::LabelMatcher {
        r#type: 2,
        name: "n".into(),
        value: "v".into(),
    };
    let hints = prom::ReadHints {
        step_ms: 1,
        func: "f".into(),
        start_ms: 1,
        end_ms: 2,
        grouping: vec!["g".into()],
        by: true,
        range_ms: 3,
    };
    check(
        &hints,
        &[
            (1, VARINT),
            (2, LEN),
            (3, VARINT),
            (4, VARINT),
            (5, LEN),
            (6, VARINT),
            (7, VARINT),
        ],
    );
    let q = prom::Query {
        start_timestamp_ms: 1,
        end_timestamp_ms: 2,
        matchers: vec![pm.clone()],
        hints: Some(hints),
    };
    check(&q, &[(1, VARINT), (2, VARINT), (3, LEN), (4, LEN)]);
    check(
        &prom::ReadRequest {
            queries: vec![q],
            accepted_response_types: vec![1],
        },
        &[(1, LEN), (2, LEN)],
    );
    check(&pm, &[(1, VARINT), (2, LEN), (3, LEN)]);
    let sample = prom::Sample {
        value: 1.5,
        timestamp: 3,
    };
    check(&sample, &[(1, I64), (2, VARINT)]);
    let ts = prom::TimeSeries {
        labels: vec![pl.clone()],
        samples: vec![sample],
        exemplars: vec![prom::Exemplar {
            labels: vec![pl.clone()],
            value: 1.0,
            timestamp: 2,
        }],
        histograms: vec![prom::Histogram {
            sum: 1.0,
            schema: 1,
            ..Default::default()
        }],
    };
    check(&ts, &[(1, LEN), (2, LEN), (3, LEN), (4, LEN)]);
    check(
        &prom::Exemplar {
            labels: vec![pl.clone()],
            value: 1.0,
            timestamp: 2,
        },
        &[(1, LEN), (2, I64), (3, VARINT)],
    );
    check(
        &prom::ReadResponse {
            results: vec![prom::QueryResult {
                timeseries: vec![ts],
            }],
        },
        &[(1, LEN)],
    );
    let c = prom::Chunk {
        min_time_ms: 1,
        max_time_ms: 2,
        r#type: 1,
        data: Bytes::from_static(b"d"),
    };
    check(&c, &[(1, VARINT), (2, VARINT), (3, VARINT), (4, LEN)]);
    check(
        &prom::ChunkedReadResponse {
            chunked_series: vec![prom::ChunkedSeries {
                labels: vec![pl],
                chunks: vec![c],
            }],
            query_index: 1,
        },
        &[(1, LEN), (2, VARINT)],
    );
    let h = prom::Histogram {
        count: Some(prom::histogram::Count::CountInt(1)),
        sum: 1.0,
        schema: -1,
        zero_threshold: 1.0,
        zero_count: Some(prom::histogram::ZeroCount::ZeroCountFloat(1.0)),
        negative_spans: vec![prom::BucketSpan {
            offset: -1,
            length: 1,
        }],
        negative_deltas: vec![-1],
        negative_counts: vec![1.0],
        positive_spans: vec![prom::BucketSpan {
            offset: 1,
            length: 1,
        }],
        positive_deltas: vec![1],
        positive_counts: vec![1.0],
        reset_hint: 3,
        timestamp: 5,
    };
    check(
        &h,
        &[
            (1, VARINT),
            (3, I64),
            (4, VARINT),
            (5, I64),
            (7, I64),
            (8, LEN),
            (9, LEN),
            (10, LEN),
            (11, LEN),
            (12, LEN),
            (13, LEN),
            (14, VARINT),
            (15, VARINT),
        ],
    );
    // schema is sint32: -1 zigzags to 1.
    let enc = prom::Histogram {
        schema: -1,
        ..Default::default()
    }
    .encode_to_vec();
    assert_eq!(enc, vec![4 << 3, 1]);
}

fn label_set() -> Option<thanos::LabelSet> {
    Some(thanos::LabelSet {
        labels: vec![label()],
    })
}

fn ts() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 2,
    })
}

/// `thanos.Rules` (spec §1.8 and Thanos' rulespb wire facts).
#[test]
fn rules_fields() {
    check(
        &thanos::RulesRequest {
            r#type: thanos::rules_request::Type::Record as i32,
            partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
            matcher_string: vec!["{a=\"b\"}".into()],
            rule_name: vec!["r".into()],
            rule_group: vec!["g".into()],
            file: vec!["f".into()],
        },
        &[
            (1, VARINT),
            (2, VARINT),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, LEN),
        ],
    );
    let instance = thanos::AlertInstance {
        labels: label_set(),
        annotations: label_set(),
        state: thanos::AlertState::Firing as i32,
        active_at: ts(),
        value: "1".into(),
        partial_response_strategy: 1,
    };
    check(
        &instance,
        &[
            (1, LEN),
            (2, LEN),
            (3, VARINT),
            (4, LEN),
            (5, LEN),
            (6, VARINT),
        ],
    );
    let alert = thanos::Alert {
        state: thanos::AlertState::Pending as i32,
        name: "n".into(),
        query: "q".into(),
        duration_seconds: 1.0,
        labels: label_set(),
        annotations: label_set(),
        alerts: vec![instance],
        health: "ok".into(),
        last_error: "e".into(),
        evaluation_duration_seconds: 1.0,
        last_evaluation: ts(),
        keep_firing_for_seconds: 1.0,
    };
    check(
        &alert,
        &[
            (1, VARINT),
            (2, LEN),
            (3, LEN),
            (4, I64),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, LEN),
            (9, LEN),
            (10, I64),
            (11, LEN),
            (12, I64),
        ],
    );
    let recording = thanos::RecordingRule {
        name: "n".into(),
        query: "q".into(),
        labels: label_set(),
        health: "ok".into(),
        last_error: "e".into(),
        evaluation_duration_seconds: 1.0,
        last_evaluation: ts(),
    };
    check(
        &recording,
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, I64),
            (7, LEN),
        ],
    );
    check(
        &thanos::Rule {
            result: Some(thanos::rule::Result::Recording(recording)),
        },
        &[(1, LEN)],
    );
    let group = thanos::RuleGroup {
        name: "g".into(),
        file: "f".into(),
        rules: vec![thanos::Rule {
            result: Some(thanos::rule::Result::Alert(alert)),
        }],
        interval: 1.0,
        evaluation_duration_seconds: 1.0,
        last_evaluation: ts(),
        partial_response_strategy: 1,
        limit: 3,
    };
    check(
        &group,
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, I64),
            (5, I64),
            (6, LEN),
            (8, VARINT),
            (9, VARINT),
        ],
    );
    check(
        &thanos::RulesResponse {
            result: Some(thanos::rules_response::Result::Group(group)),
        },
        &[(1, LEN)],
    );
    check(
        &thanos::RulesResponse {
            result: Some(thanos::rules_response::Result::Warning("w".into())),
        },
        &[(2, LEN)],
    );
    assert_eq!(thanos::AlertState::Inactive as i32, 0);
    assert_eq!(thanos::AlertState::Pending as i32, 1);
    assert_eq!(thanos::AlertState::Firing as i32, 2);
    assert_eq!(thanos::rules_request::Type::Alert as i32, 1);
    assert_eq!(thanos::rules_request::Type::Record as i32, 2);
}

/// `thanos.Targets`.
#[test]
fn targets_fields() {
    check(
        &thanos::TargetsRequest {
            state: thanos::targets_request::State::Dropped as i32,
            partial_response_strategy: 1,
        },
        &[(1, VARINT), (2, VARINT)],
    );
    let active = thanos::ActiveTarget {
        discovered_labels: label_set(),
        labels: label_set(),
        scrape_pool: "p".into(),
        scrape_url: "u".into(),
        global_url: "g".into(),
        last_error: "e".into(),
        last_scrape: ts(),
        last_scrape_duration: 1.0,
        health: thanos::TargetHealth::Unknown as i32,
    };
    check(
        &active,
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, I64),
            (9, VARINT),
        ],
    );
    let d = thanos::TargetDiscovery {
        active_targets: vec![active],
        dropped_targets: vec![thanos::DroppedTarget {
            discovered_labels: label_set(),
        }],
    };
    check(&d, &[(1, LEN), (2, LEN)]);
    check(
        &thanos::TargetsResponse {
            result: Some(thanos::targets_response::Result::Targets(d)),
        },
        &[(1, LEN)],
    );
    assert_eq!(thanos::TargetHealth::Down as i32, 0);
    assert_eq!(thanos::TargetHealth::Up as i32, 1);
    assert_eq!(thanos::TargetHealth::Unknown as i32, 2);
    assert_eq!(thanos::targets_request::State::Active as i32, 1);
}

/// `thanos.Metadata`: the map is repeated entries {1 key, 2 value}.
#[test]
fn metadata_fields() {
    check(
        &thanos::MetricMetadataRequest {
            metric: "m".into(),
            limit: -1,
            partial_response_strategy: 1,
        },
        &[(1, LEN), (2, VARINT), (3, VARINT)],
    );
    let meta = thanos::Meta {
        r#type: "gauge".into(),
        help: "h".into(),
        unit: "u".into(),
    };
    check(&meta, &[(1, LEN), (2, LEN), (3, LEN)]);
    let entry = thanos::MetricMetadataEntry { metas: vec![meta] };
    check(&entry, &[(2, LEN)]);
    let m = thanos::MetricMetadata {
        metadata: [("m".to_string(), entry)].into_iter().collect(),
    };
    check(&m, &[(1, LEN)]);
    let buf = m.encode_to_vec();
    // The map entry: tag 0x0a, length, then {1: "m", 2: entry}.
    assert_eq!(fields(&buf[2..]), vec![(1, LEN), (2, LEN)]);
    check(
        &thanos::MetricMetadataResponse {
            result: Some(thanos::metric_metadata_response::Result::Warning(
                "w".into(),
            )),
        },
        &[(2, LEN)],
    );
}

/// `thanos.Exemplars`: start/end/ts are int64 milliseconds, value a double.
#[test]
fn exemplars_fields() {
    check(
        &thanos::ExemplarsRequest {
            query: "q".into(),
            start: 1,
            end: 2,
            partial_response_strategy: 1,
        },
        &[(1, LEN), (2, VARINT), (3, VARINT), (4, VARINT)],
    );
    let e = thanos::Exemplar {
        labels: label_set(),
        value: 1.5,
        ts: 3,
    };
    check(&e, &[(1, LEN), (2, I64), (3, VARINT)]);
    let d = thanos::ExemplarData {
        series_labels: label_set(),
        exemplars: vec![e],
    };
    check(&d, &[(1, LEN), (2, LEN)]);
    check(
        &thanos::ExemplarsResponse {
            result: Some(thanos::exemplars_response::Result::Data(d)),
        },
        &[(1, LEN)],
    );
}

/// Info advertises the other APIs in fields 4–7.
#[test]
fn info_advertises_other_apis() {
    let r = info::InfoResponse {
        rules: Some(info::RulesInfo {}),
        metric_metadata: Some(info::MetricMetadataInfo {}),
        targets: Some(info::TargetsInfo {}),
        exemplars: Some(info::ExemplarsInfo {
            min_time: 1,
            max_time: 2,
        }),
        ..Default::default()
    };
    check(&r, &[(4, LEN), (5, LEN), (6, LEN), (7, LEN)]);
}
