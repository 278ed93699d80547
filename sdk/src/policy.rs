//! The four policy traits plugin authors implement, and the plain Rust types
//! they see. Nothing here mentions WIT or the flat layouts of sdk/ABI.md.

pub use sluice_policy_abi::{DedupInput, DedupOutputWriter, Series, SeriesRef};

/// A label set as `(name, value)` pairs. Input sets arrive sorted by name;
/// the SDK sorts output sets by name before handing them to the host.
pub type Labels = Vec<(String, String)>;

/// What a plugin says about itself. The SDK adds the ABI version
/// ([`ABI_VERSION`](crate::ABI_VERSION)) it was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Plugin name as shown in `GET /api/v1/policies`, metrics and logs.
    pub name: String,
    /// Plugin version, free-form; semver recommended.
    pub version: String,
}

impl Info {
    /// `Info::new("my-dedup", env!("CARGO_PKG_VERSION"))`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
        }
    }
}

/// PromQL context of the selector being deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryHints {
    /// The function enclosing the selector (e.g. `"rate"`), or `""`.
    pub func: String,
    /// Evaluation step in ms (0 for instant queries).
    pub step_ms: i64,
    /// Range of the selector in ms (0 without a range).
    pub range_ms: i64,
    /// Query start in ms.
    pub start_ms: i64,
    /// Query end in ms.
    pub end_ms: i64,
}

/// What a retention policy knows about a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMeta {
    /// Block ULID.
    pub ulid: String,
    /// Half-open time range `[min_time, max_time)` in ms.
    pub min_time: i64,
    /// End of the time range in ms (exclusive).
    pub max_time: i64,
    /// Downsampling resolution in ms: 0 raw, 300000 5m, 3600000 1h.
    pub resolution: i64,
    /// External labels of the block.
    pub labels: Labels,
    /// Compaction level.
    pub level: u32,
}

/// A retention decision for one block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// True to mark the block for deletion.
    pub delete: bool,
    /// Why; shown in logs and in the deletion mark's details.
    pub reason: String,
}

impl Decision {
    /// Keep the block.
    pub fn keep(reason: impl Into<String>) -> Self {
        Decision {
            delete: false,
            reason: reason.into(),
        }
    }

    /// Mark the block for deletion.
    pub fn delete(reason: impl Into<String>) -> Self {
        Decision {
            delete: true,
            reason: reason.into(),
        }
    }
}

/// Per-window downsampling aggregates (Thanos layout). `counter` holds the
/// first raw sample, one reset-corrected running total per window, and a last
/// sample at the last window's timestamp carrying the last raw value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    /// Samples per window.
    pub count: Series,
    /// Sum per window.
    pub sum: Series,
    /// Minimum per window.
    pub min: Series,
    /// Maximum per window.
    pub max: Series,
    /// Counter aggregate (see above).
    pub counter: Series,
}

/// A deduplication policy: merges the replicas of one series into one.
///
/// Export it with [`export_dedup!`](crate::export_dedup).
pub trait DedupPolicy: Sized + 'static {
    /// Name and version of the plugin.
    fn info() -> Info;

    /// Builds the policy from the slot's configuration (JSON text, see
    /// [`parse_config`](crate::parse_config)). An error rejects the plugin.
    fn configure(config: &str) -> Result<Self, String>;

    /// Merges one group of replicas (the same series from several replicas,
    /// in the host's order: the first replica wins ties) into one series
    /// whose timestamps strictly ascend.
    fn dedup(&self, replicas: &[Series], hints: &QueryHints) -> Result<Series, String>;

    /// Merges every group of one bulk call, one output per group, in order.
    /// The default calls [`dedup`](Self::dedup) per group; override it to
    /// share work across groups.
    fn dedup_batch(
        &self,
        groups: &[Vec<Series>],
        hints: &QueryHints,
    ) -> Result<Vec<Series>, String> {
        groups.iter().map(|g| self.dedup(g, hints)).collect()
    }

    /// The zero-copy form of [`dedup_batch`](Self::dedup_batch), and what
    /// the SDK actually calls: the groups' series are [`SeriesRef`] views
    /// into the host's input buffer, and each group's merged series is
    /// written straight into the output buffer with
    /// [`out.begin_series()`](DedupOutputWriter::begin_series) followed by
    /// [`out.push(t, v)`](DedupOutputWriter::push) per sample, one series per
    /// group, in order. The SDK then checks the count; the host rejects a
    /// series whose timestamps do not strictly ascend as invalid output.
    ///
    /// The default copies the input into owned [`Series`], calls
    /// [`dedup_batch`](Self::dedup_batch) and copies its result out. Override
    /// it when your algorithm can read the views directly: for large batches
    /// the copies cost as much as a simple merge.
    fn dedup_flat(
        &self,
        input: &DedupInput<'_>,
        hints: &QueryHints,
        out: &mut DedupOutputWriter,
    ) -> Result<(), String> {
        let groups = input.to_owned_groups();
        let merged = self.dedup_batch(&groups, hints)?;
        if merged.len() != groups.len() {
            return Err(format!(
                "dedup returned {} series for {} groups",
                merged.len(),
                groups.len()
            ));
        }
        for (i, s) in merged.iter().enumerate() {
            if s.timestamps.len() != s.values.len() {
                return Err(format!(
                    "dedup output for group {i} has {} timestamps but {} values",
                    s.timestamps.len(),
                    s.values.len()
                ));
            }
            out.push_series(&s.timestamps, &s.values);
        }
        Ok(())
    }
}

/// A relabeling policy: rewrites or drops label sets.
///
/// Export it with [`export_relabel!`](crate::export_relabel).
pub trait RelabelPolicy: Sized + 'static {
    /// Name and version of the plugin.
    fn info() -> Info;

    /// Builds the policy from the slot's configuration (JSON text).
    fn configure(config: &str) -> Result<Self, String>;

    /// The new label set, or `None` to drop the series. The output need not
    /// be sorted (the SDK sorts it) but names must be unique.
    fn relabel(&self, labels: &[(String, String)]) -> Result<Option<Labels>, String>;

    /// Relabels every set of one bulk call, in order. The default calls
    /// [`relabel`](Self::relabel) per set.
    fn relabel_batch(&self, sets: &[Labels]) -> Result<Vec<Option<Labels>>, String> {
        sets.iter().map(|s| self.relabel(s)).collect()
    }
}

/// A retention policy: decides which blocks to mark for deletion.
///
/// Export it with [`export_retention!`](crate::export_retention).
pub trait RetentionPolicy: Sized + 'static {
    /// Name and version of the plugin.
    fn info() -> Info;

    /// Builds the policy from the slot's configuration (JSON text).
    fn configure(config: &str) -> Result<Self, String>;

    /// Keep or delete one block. `now_ms` is the host's wall clock in ms
    /// (plugins have no clock of their own).
    fn decide(&self, block: &BlockMeta, now_ms: i64) -> Result<Decision, String>;

    /// One decision per block, in order. The default calls
    /// [`decide`](Self::decide) per block.
    fn decide_batch(&self, blocks: &[BlockMeta], now_ms: i64) -> Result<Vec<Decision>, String> {
        blocks.iter().map(|b| self.decide(b, now_ms)).collect()
    }
}

/// A downsampling policy: aggregates one series of one block into windows.
///
/// Export it with [`export_downsample!`](crate::export_downsample).
pub trait DownsamplePolicy: Sized + 'static {
    /// Name and version of the plugin.
    fn info() -> Info;

    /// Builds the policy from the slot's configuration (JSON text).
    fn configure(config: &str) -> Result<Self, String>;

    /// Aggregates raw samples into windows of `resolution_ms`.
    fn downsample(&self, raw: &Series, resolution_ms: i64) -> Result<Aggregates, String>;

    /// Re-aggregates already downsampled data into coarser windows (5m → 1h).
    fn downsample_aggregates(
        &self,
        input: &Aggregates,
        resolution_ms: i64,
    ) -> Result<Aggregates, String>;
}
