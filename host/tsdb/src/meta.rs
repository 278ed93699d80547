//! `meta.json` (Prometheus block meta with Thanos' `thanos` section) and the
//! Thanos marker files that sit next to a block in object storage
//! (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`).
//!
//! These are outside files written by other versions of Prometheus and Thanos,
//! so parsing is tolerant: unknown fields are ignored (forward compatibility)
//! and `null` collections read as empty. What is validated is what readers
//! upstream reject: meta `version` must be 1, the Thanos section version must
//! be absent/0/1, and ULIDs must parse. Serialization follows Go's field order
//! and `omitempty` rules, tab-indented like Prometheus.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use ulid::Ulid;

use crate::error::{Error, Result};

/// File name of the block meta.
pub const META_FILENAME: &str = "meta.json";
/// File name of the index.
pub const INDEX_FILENAME: &str = "index";
/// Directory holding chunk segment files.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// File name of the tombstones.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Thanos deletion marker.
pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
/// Thanos no-compaction marker.
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";
/// Thanos no-downsampling marker.
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";

/// The only meta.json `version` readers accept.
pub const META_VERSION_1: u32 = 1;
/// The Thanos section version writers emit (0/absent is read as 1).
pub const THANOS_META_VERSION_1: u32 = 1;
/// The only marker file version.
pub const MARKER_VERSION_1: u32 = 1;

/// Downsampling resolutions (ms).
pub const RESOLUTION_RAW: i64 = 0;
pub const RESOLUTION_5M: i64 = 300_000;
pub const RESOLUTION_1H: i64 = 3_600_000;

/// Known values of `thanos.source`.
pub mod source {
    pub const SIDECAR: &str = "sidecar";
    pub const RECEIVE: &str = "receive";
    pub const COMPACTOR: &str = "compactor";
    pub const COMPACTOR_REPAIR: &str = "compactor.repair";
    pub const RULER: &str = "ruler";
    pub const BUCKET_REPAIR: &str = "bucket.repair";
    pub const BUCKET_REWRITE: &str = "bucket.rewrite";
    pub const BUCKET_UPLOAD: &str = "bucket.upload";
    pub const TEST: &str = "test";
}

/// Known `reason` values of [`NoCompactMark`].
pub mod no_compact_reason {
    pub const MANUAL: &str = "manual";
    pub const INDEX_SIZE_EXCEEDING: &str = "index-size-exceeding";
    pub const OUT_OF_ORDER_CHUNK: &str = "block-index-out-of-order-chunk";
    pub const DOWNSAMPLE_VERTICAL_COMPACTION: &str = "downsample-vertical-compaction";
}

/// Reads `null` as the type's default (Go writes nil slices/maps as `null`).
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Tab-indented JSON like Go's `json.MarshalIndent(v, "", "\t")`.
fn to_json_tabs<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Writing to a Vec cannot fail, and every map here has string keys.
    v.serialize(&mut ser)
        .expect("meta types always serialize to JSON");
    out
}

fn from_json<T: DeserializeOwned>(b: &[u8], what: &'static str) -> Result<T> {
    serde_json::from_slice(b).map_err(|source| Error::Json { what, source })
}

/// Block statistics; zero fields are omitted when written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_samples: u64,
    /// Written by Prometheus 3.x only.
    #[serde(
        rename = "numFloatSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_float_samples: u64,
    /// Written by Prometheus 3.x only.
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero_u64")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero_u64")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero_u64")]
    pub num_tombstones: u64,
}

/// A direct compaction input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    pub ulid: Ulid,
    #[serde(rename = "minTime", default)]
    pub min_time: i64,
    #[serde(rename = "maxTime", default)]
    pub max_time: i64,
}

/// Compaction bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMetaCompaction {
    /// 1 = cut from a head or backfill; compacting gives max(level) + 1.
    #[serde(default)]
    pub level: u32,
    /// Level-1 ancestors (the block itself at level 1).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// Direct inputs; empty at level 1.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// e.g. `"from-out-of-order"`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hints: Vec<String>,
}

/// `thanos.downsample`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// Resolution in ms: 0 (raw), 300000 (5m) or 3600000 (1h).
    #[serde(default)]
    pub resolution: i64,
}

/// A hash of a block file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    /// `"SHA256"` or `""`.
    #[serde(rename = "hashFunc", default)]
    pub func: String,
    #[serde(default)]
    pub value: String,
}

/// One entry of `thanos.files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFile {
    pub rel_path: String,
    /// 0 (omitted) for meta.json itself.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

/// A deletion applied by `thanos tools bucket rewrite`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletionRequest {
    /// Kept as raw JSON: Thanos marshals matchers in its own form.
    #[serde(default)]
    pub matchers: serde_json::Value,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub intervals: serde_json::Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// One entry of `thanos.rewrites`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub deletions_applied: Vec<DeletionRequest>,
    /// Relabel configs, kept as raw JSON.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relabels_applied: Vec<serde_json::Value>,
}

/// `thanos.index_stats` (Go always writes the object, possibly `{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

/// The `thanos` section of meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Section version; 0/absent is read as 1 by [`BlockMeta::parse`].
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub version: u32,
    /// External labels of the producer; never null after reading.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub downsample: Downsample,
    /// See [`source`] for known values.
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    /// Deprecated in favour of `files`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segment_files: Vec<String>,
    /// Block files sorted by `rel_path`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub files: Vec<BlockFile>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rewrites: Vec<Rewrite>,
    #[serde(default, deserialize_with = "null_default")]
    pub index_stats: IndexStats,
    /// Free-form JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<serde_json::Value>,
    /// RFC 3339 time, kept as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
}

impl ThanosMeta {
    /// A version-1 section with the given external labels, resolution and source.
    pub fn new(
        labels: BTreeMap<String, String>,
        resolution: i64,
        source: impl Into<String>,
    ) -> Self {
        ThanosMeta {
            version: THANOS_META_VERSION_1,
            labels,
            downsample: Downsample { resolution },
            source: source.into(),
            ..Default::default()
        }
    }
}

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Must equal the block directory name.
    pub ulid: Ulid,
    /// Inclusive start (ms).
    #[serde(rename = "minTime", default)]
    pub min_time: i64,
    /// Exclusive end (ms): last sample + 1 for cut blocks.
    #[serde(rename = "maxTime", default)]
    pub max_time: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub stats: BlockStats,
    #[serde(default, deserialize_with = "null_default")]
    pub compaction: BlockMetaCompaction,
    /// Meta file version; must be 1.
    #[serde(default)]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl BlockMeta {
    /// A level-1 meta for `[min_time, max_time)` whose only source is itself.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: BlockMetaCompaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: META_VERSION_1,
            thanos: None,
        }
    }

    /// Parses and validates meta.json bytes. A Thanos section version of 0 or
    /// absent is normalized to 1.
    pub fn parse(b: &[u8]) -> Result<BlockMeta> {
        let mut m: BlockMeta = from_json(b, "meta.json")?;
        m.validate()?;
        if let Some(t) = &mut m.thanos {
            t.version = THANOS_META_VERSION_1;
        }
        Ok(m)
    }

    /// What upstream readers check: `version == 1`, Thanos section version in
    /// {0, 1}.
    pub fn validate(&self) -> Result<()> {
        if self.version != META_VERSION_1 {
            return Err(Error::BadFormat {
                what: "meta.json version",
                detail: format!(
                    "block {} has version {}, want {META_VERSION_1}",
                    self.ulid, self.version
                ),
            });
        }
        if let Some(t) = &self.thanos
            && t.version > THANOS_META_VERSION_1
        {
            return Err(Error::BadFormat {
                what: "meta.json thanos version",
                detail: format!(
                    "block {} has thanos section version {}, want {THANOS_META_VERSION_1}",
                    self.ulid, t.version
                ),
            });
        }
        Ok(())
    }

    /// Tab-indented JSON like Prometheus writes (no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        to_json_tabs(self)
    }

    /// Downsampling resolution in ms (0 for raw or non-Thanos blocks).
    pub fn resolution(&self) -> i64 {
        self.thanos
            .as_ref()
            .map_or(RESOLUTION_RAW, |t| t.downsample.resolution)
    }

    /// The Thanos external labels (empty without a Thanos section).
    pub fn external_labels(&self) -> &BTreeMap<String, String> {
        self.thanos.as_ref().map_or(&NO_LABELS, |t| &t.labels)
    }

    /// Whether the half-open block range `[min_time, max_time)` overlaps the
    /// inclusive query range `[mint, maxt]`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt && mint < self.max_time
    }
}

fn check_marker(version: u32, what: &'static str) -> Result<()> {
    if version != MARKER_VERSION_1 {
        return Err(Error::BadFormat {
            what,
            detail: format!("version {version}, want {MARKER_VERSION_1}"),
        });
    }
    Ok(())
}

/// `deletion-mark.json`: the block is scheduled for deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub id: Ulid,
    #[serde(default)]
    pub version: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub details: String,
    /// Unix seconds.
    pub deletion_time: i64,
}

impl DeletionMark {
    pub const FILENAME: &'static str = DELETION_MARK_FILENAME;

    pub fn new(id: Ulid, details: impl Into<String>, deletion_time: i64) -> Self {
        DeletionMark {
            id,
            version: MARKER_VERSION_1,
            details: details.into(),
            deletion_time,
        }
    }

    /// Parses and checks `version == 1`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let m: Self = from_json(b, DELETION_MARK_FILENAME)?;
        check_marker(m.version, "deletion-mark.json version")?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        to_json_tabs(self)
    }
}

/// `no-compact-mark.json`: the compactor must skip the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    pub id: Ulid,
    #[serde(default)]
    pub version: u32,
    /// See [`no_compact_reason`].
    #[serde(default, deserialize_with = "null_default")]
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub details: String,
    /// Unix seconds.
    #[serde(default)]
    pub no_compact_time: i64,
}

impl NoCompactMark {
    pub const FILENAME: &'static str = NO_COMPACT_MARK_FILENAME;

    pub fn new(
        id: Ulid,
        reason: impl Into<String>,
        details: impl Into<String>,
        no_compact_time: i64,
    ) -> Self {
        NoCompactMark {
            id,
            version: MARKER_VERSION_1,
            reason: reason.into(),
            details: details.into(),
            no_compact_time,
        }
    }

    /// Parses and checks `version == 1`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let m: Self = from_json(b, NO_COMPACT_MARK_FILENAME)?;
        check_marker(m.version, "no-compact-mark.json version")?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        to_json_tabs(self)
    }
}

/// `no-downsample-mark.json`: the compactor must not downsample the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    pub id: Ulid,
    #[serde(default)]
    pub version: u32,
    /// `"manual"`.
    #[serde(default, deserialize_with = "null_default")]
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub details: String,
    /// Unix seconds.
    #[serde(default)]
    pub no_downsample_time: i64,
}

impl NoDownsampleMark {
    pub const FILENAME: &'static str = NO_DOWNSAMPLE_MARK_FILENAME;

    pub fn new(
        id: Ulid,
        reason: impl Into<String>,
        details: impl Into<String>,
        no_downsample_time: i64,
    ) -> Self {
        NoDownsampleMark {
            id,
            version: MARKER_VERSION_1,
            reason: reason.into(),
            details: details.into(),
            no_downsample_time,
        }
    }

    /// Parses and checks `version == 1`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let m: Self = from_json(b, NO_DOWNSAMPLE_MARK_FILENAME)?;
        check_marker(m.version, "no-downsample-mark.json version")?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        to_json_tabs(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SPEC_META: &str = r#"{ "ulid": "01M80DVK5DQVJXWMNQJQ4EZ922",
  "minTime": 1704069000000, "maxTime": 1704074385001,
  "stats": { "numSamples": 1800, "numSeries": 5, "numChunks": 15 },
  "compaction": { "level": 1, "sources": ["01M80DVK5DQVJXWMNQJQ4EZ922"] },
  "version": 1 }"#;

    #[test]
    fn parses_spec_sample() {
        let m = BlockMeta::parse(SPEC_META.as_bytes()).unwrap();
        assert_eq!(m.ulid.to_string(), "01M80DVK5DQVJXWMNQJQ4EZ922");
        assert_eq!(
            (m.min_time, m.max_time),
            (1_704_069_000_000, 1_704_074_385_001)
        );
        assert_eq!(m.stats.num_samples, 1800);
        assert_eq!(m.stats.num_series, 5);
        assert_eq!(m.stats.num_chunks, 15);
        assert_eq!(m.stats.num_tombstones, 0);
        assert_eq!(m.compaction.level, 1);
        assert_eq!(m.compaction.sources, vec![m.ulid]);
        assert!(m.thanos.is_none());
        assert_eq!(m.resolution(), 0);
        assert!(m.external_labels().is_empty());
        // Round trip, tab-indented, zero stats omitted, no thanos key.
        let out = m.to_json();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("{\n\t\"ulid\": \"01M80DVK5DQVJXWMNQJQ4EZ922\",\n\t\"minTime\""),
            "{text}"
        );
        assert!(
            !text.contains("numTombstones")
                && !text.contains("thanos")
                && !text.contains("parents")
        );
        assert_eq!(BlockMeta::parse(&out).unwrap(), m);
    }

    #[test]
    fn parses_thanos_section() {
        let json = r#"{
	"ulid": "01M80DVK5DQVJXWMNQJQ4EZ922",
	"minTime": 1704069000000,
	"maxTime": 1704074385001,
	"stats": {"numSamples": 1800, "numSeries": 5, "numChunks": 15, "numTombstones": 1, "numFloatSamples": 1800},
	"compaction": {"level": 2, "sources": ["01M80DVK5DQVJXWMNQJQ4EZ922"], "parents": [{"ulid": "01M80DVK5DQVJXWMNQJQ4EZ922", "minTime": 1, "maxTime": 2}], "hints": ["from-out-of-order"], "someday": true},
	"version": 1,
	"thanos": {
		"labels": {"replica": "A", "cluster": "eu"},
		"downsample": {"resolution": 300000},
		"source": "compactor",
		"segment_files": ["000001"],
		"files": [{"rel_path": "chunks/000001", "size_bytes": 5971, "hash": {"hashFunc": "SHA256", "value": "ab"}}, {"rel_path": "index", "size_bytes": 1030}, {"rel_path": "meta.json"}],
		"rewrites": [{"sources": ["01M80DVK5DQVJXWMNQJQ4EZ922"], "deletions_applied": [{"matchers": "{a=\"b\"}", "intervals": [{"mint": 1, "maxt": 2}]}]}],
		"index_stats": {"series_max_size": 100, "chunk_max_size": 200},
		"extensions": {"parquet_migrated": true},
		"upload_time": "2024-01-01T00:00:00Z",
		"future_field": [1, 2, 3]
	},
	"also_future": null
}"#;
        let m = BlockMeta::parse(json.as_bytes()).unwrap();
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.version, 1, "absent version normalized to 1");
        assert_eq!(m.resolution(), RESOLUTION_5M);
        assert_eq!(
            m.external_labels().get("replica").map(String::as_str),
            Some("A")
        );
        assert_eq!(t.source, source::COMPACTOR);
        assert_eq!(t.files.len(), 3);
        assert_eq!(t.files[0].hash.as_ref().unwrap().func, "SHA256");
        assert_eq!(t.files[2].size_bytes, 0);
        assert_eq!(t.index_stats.chunk_max_size, 200);
        assert_eq!(t.rewrites[0].deletions_applied.len(), 1);
        assert_eq!(t.extensions.as_ref().unwrap()["parquet_migrated"], true);
        assert_eq!(m.stats.num_tombstones, 1);
        assert_eq!(m.compaction.parents[0].max_time, 2);
        assert_eq!(m.compaction.hints, vec!["from-out-of-order"]);
        let again = BlockMeta::parse(&m.to_json()).unwrap();
        assert_eq!(again, m);
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(
            text.contains("\t\"thanos\": {\n\t\t\"version\": 1,\n\t\t\"labels\": {"),
            "{text}"
        );
    }

    #[test]
    fn null_collections_and_labels_read_as_empty() {
        let json = r#"{"ulid":"01M80DVK5DQVJXWMNQJQ4EZ922","minTime":0,"maxTime":1,"stats":null,
            "compaction":{"level":1,"sources":null,"parents":null},"version":1,
            "thanos":{"version":1,"labels":null,"downsample":{"resolution":0},"source":"sidecar","files":null,"extensions":null}}"#;
        let m = BlockMeta::parse(json.as_bytes()).unwrap();
        assert!(m.external_labels().is_empty());
        assert!(m.thanos.as_ref().unwrap().extensions.is_none());
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(text.contains("\"labels\": {}"), "{text}");
        assert!(text.contains("\"index_stats\": {}"), "{text}");
    }

    #[test]
    fn rejects_bad_versions_and_ulids() {
        let v2 = SPEC_META.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            BlockMeta::parse(v2.as_bytes()),
            Err(Error::BadFormat { .. })
        ));
        let no_version = SPEC_META
            .replace(",\n  \"version\": 1", "")
            .replace("\"version\": 1", "");
        assert!(BlockMeta::parse(no_version.as_bytes()).is_err());
        let thanos2 = SPEC_META.replace(
            "\"version\": 1 }",
            "\"version\": 1, \"thanos\": {\"version\": 2, \"labels\": {}} }",
        );
        assert!(matches!(
            BlockMeta::parse(thanos2.as_bytes()),
            Err(Error::BadFormat { .. })
        ));
        let thanos0 = thanos2.replace("\"version\": 2", "\"version\": 0");
        assert_eq!(
            BlockMeta::parse(thanos0.as_bytes())
                .unwrap()
                .thanos
                .unwrap()
                .version,
            1
        );
        let bad_ulid = SPEC_META.replace(
            "\"ulid\": \"01M80DVK5DQVJXWMNQJQ4EZ922\"",
            "\"ulid\": \"nope\"",
        );
        assert!(matches!(
            BlockMeta::parse(bad_ulid.as_bytes()),
            Err(Error::Json { .. })
        ));
        assert!(BlockMeta::parse(b"").is_err());
        assert!(BlockMeta::parse(b"[]").is_err());
    }

    #[test]
    fn marker_files() {
        let id: Ulid = "01M80DVK5DQVJXWMNQJQ4EZ922".parse().unwrap();
        let d = DeletionMark::new(id, "retention", 1_704_069_000);
        let parsed = DeletionMark::parse(&d.to_json()).unwrap();
        assert_eq!(parsed, d);
        let text = String::from_utf8(d.to_json()).unwrap();
        assert!(text.contains("\"deletion_time\": 1704069000"), "{text}");
        let thanos_written = br#"{"id":"01M80DVK5DQVJXWMNQJQ4EZ922","version":1,"details":"","deletion_time":1704069000,"extra":1}"#;
        assert_eq!(
            DeletionMark::parse(thanos_written).unwrap().deletion_time,
            1_704_069_000
        );
        assert!(
            DeletionMark::parse(
                br#"{"id":"01M80DVK5DQVJXWMNQJQ4EZ922","version":2,"deletion_time":1}"#
            )
            .is_err()
        );
        assert!(
            DeletionMark::parse(br#"{"id":"01M80DVK5DQVJXWMNQJQ4EZ922","deletion_time":1}"#)
                .is_err()
        );
        assert!(DeletionMark::parse(br#"{"id":"x","version":1,"deletion_time":1}"#).is_err());

        let n = NoCompactMark::new(id, no_compact_reason::INDEX_SIZE_EXCEEDING, "", 5);
        assert_eq!(NoCompactMark::parse(&n.to_json()).unwrap(), n);
        assert!(
            NoCompactMark::parse(br#"{"id":"01M80DVK5DQVJXWMNQJQ4EZ922","version":3}"#).is_err()
        );
        let n = NoDownsampleMark::new(id, "manual", "why", 6);
        assert_eq!(NoDownsampleMark::parse(&n.to_json()).unwrap(), n);
        assert_eq!(DeletionMark::FILENAME, "deletion-mark.json");
        assert_eq!(NoCompactMark::FILENAME, "no-compact-mark.json");
        assert_eq!(NoDownsampleMark::FILENAME, "no-downsample-mark.json");
    }
}
