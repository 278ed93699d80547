//! Which blocks a store gateway serves: Thanos' time partitioning
//! (`--min-time`, `--max-time`, absolute or relative to now) and label
//! sharding (`--selector.relabel-config`, a relabel config over each block's
//! external labels plus `__block_id`; a block whose label set is dropped is
//! not served). Several stores with disjoint filters share one bucket.

use std::sync::Arc;

use sluice_model::Labels;
use sluice_policy_algorithms::relabel::{RelabelConfig, Relabeler};
use sluice_tsdb::meta::BlockMeta;

/// A time that is either fixed or relative to the moment it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// Milliseconds since the epoch.
    Absolute(i64),
    /// Milliseconds from now (negative: in the past).
    Relative(i64),
}

impl TimeBound {
    /// The bound as ms since the epoch, `now_ms` being now.
    pub fn at(self, now_ms: i64) -> i64 {
        match self {
            TimeBound::Absolute(t) => t,
            TimeBound::Relative(d) => now_ms.saturating_add(d),
        }
    }
}

/// The relabel rules of `--selector.relabel-config`.
#[derive(Clone)]
pub struct Selector(Arc<Relabeler>);

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Selector({} rules)", self.0.len())
    }
}

impl Selector {
    /// Parses Thanos' selector relabel config: a YAML list of Prometheus
    /// relabel configs. Every problem is reported.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let configs: Vec<RelabelConfig> = if yaml.trim().is_empty() {
            Vec::new()
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| format!("selector relabel config: {e}"))?
        };
        Relabeler::new(configs)
            .map(|r| Selector(Arc::new(r)))
            .map_err(|e| format!("selector relabel config: {e}"))
    }

    /// Whether a block with these external labels is kept.
    pub fn keeps(&self, id: &str, external: &Labels) -> bool {
        let mut l: Vec<(String, String)> = external
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        l.push(("__block_id".into(), id.into()));
        l.sort();
        self.0.relabel(&l).is_some()
    }
}

/// The blocks a store serves.
#[derive(Debug, Clone, Default)]
pub struct BlockFilter {
    pub min_time: Option<TimeBound>,
    pub max_time: Option<TimeBound>,
    pub selector: Option<Selector>,
}

impl BlockFilter {
    /// The time range served, as of `now_ms` (inclusive).
    pub fn range(&self, now_ms: i64) -> (i64, i64) {
        (
            self.min_time.map_or(i64::MIN, |b| b.at(now_ms)),
            self.max_time.map_or(i64::MAX, |b| b.at(now_ms)),
        )
    }

    /// Whether the block is served: it overlaps the time range and its
    /// external labels pass the selector.
    pub fn keeps(&self, meta: &BlockMeta, external: &Labels, now_ms: i64) -> bool {
        let (lo, hi) = self.range(now_ms);
        // Block max times are exclusive.
        if meta.max_time <= lo || meta.min_time > hi {
            return false;
        }
        self.selector
            .as_ref()
            .is_none_or(|s| s.keeps(&meta.ulid.to_string(), external))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    #[test]
    fn time_partitions_and_hashmod_shards_split_the_blocks() {
        let metas: Vec<BlockMeta> = (0..40)
            .map(|i| {
                BlockMeta::new(
                    Ulid::from_parts(i, i as u128),
                    i as i64 * 100,
                    i as i64 * 100 + 100,
                )
            })
            .collect();
        let ext = Labels::from_pairs([("cluster", "a")]);
        let old = BlockFilter {
            max_time: Some(TimeBound::Absolute(1000)),
            ..Default::default()
        };
        let new = BlockFilter {
            min_time: Some(TimeBound::Absolute(1000)),
            ..Default::default()
        };
        let both = metas
            .iter()
            .filter(|m| old.keeps(m, &ext, 0) && new.keeps(m, &ext, 0))
            .count();
        assert_eq!(
            both, 1,
            "only the block straddling t=1000 is in both partitions"
        );
        assert_eq!(
            metas
                .iter()
                .filter(|m| old.keeps(m, &ext, 0) || new.keeps(m, &ext, 0))
                .count(),
            40
        );

        let shard = |i: u64| {
            BlockFilter {
            selector: Some(
                Selector::parse(&format!(
                    "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n\
                     - action: keep\n  source_labels: [shard]\n  regex: \"{i}\"\n"
                ))
                .expect("selector"),
            ),
            ..Default::default()
        }
        };
        let (s0, s1) = (shard(0), shard(1));
        let kept0 = metas.iter().filter(|m| s0.keeps(m, &ext, 0)).count();
        let kept1 = metas.iter().filter(|m| s1.keeps(m, &ext, 0)).count();
        assert_eq!(kept0 + kept1, 40, "every block in exactly one shard");
        assert!(kept0 > 0 && kept1 > 0, "{kept0} / {kept1}");
        assert!(Selector::parse("- action: nope\n").is_err());
    }
}
