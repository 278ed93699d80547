//! Native built-ins: the same algorithms as the built-in plugins, run
//! in-process when a slot's failure policy is `fallback`.

use sluice_policy_abi::{LabelPairs, Series};
use sluice_policy_algorithms::{dedup, downsample, relabel, retention};

use super::config::{PluginSource, PolicyKind, SlotConfig};

/// A native implementation for a slot.
pub enum Native {
    Penalty,
    Chain,
    Relabel(relabel::Relabeler),
    Retention(retention::RetentionPolicy),
    Downsample,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Native {
    /// The native built-in for a slot. Dedup slots fall back to chain when
    /// their plugin is the chain built-in and to penalty otherwise; relabel
    /// and retention use the slot's own config, which must then be one the
    /// built-in accepts.
    pub fn for_slot(slot: &SlotConfig) -> Result<Native, String> {
        let config = slot.config.to_string();
        Ok(match slot.kind {
            PolicyKind::Dedup => match &slot.source {
                PluginSource::Builtin(b) if b == "dedup-chain" => Native::Chain,
                _ => Native::Penalty,
            },
            PolicyKind::Relabel => Native::Relabel(relabel::Relabeler::from_json(&config)?),
            PolicyKind::Retention => {
                Native::Retention(retention::RetentionPolicy::from_json(&config)?)
            }
            PolicyKind::Downsample => Native::Downsample,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Native::Penalty => "dedup-penalty",
            Native::Chain => "dedup-chain",
            Native::Relabel(_) => "relabel",
            Native::Retention(_) => "retention",
            Native::Downsample => "downsample",
        }
    }

    pub fn dedup<'a>(
        &self,
        groups: impl IntoIterator<Item = &'a [Series]>,
        func: &str,
    ) -> Vec<Series> {
        let counter = dedup::is_counter_func(func);
        groups
            .into_iter()
            .map(|g| match self {
                Native::Chain => dedup::chain(g),
                _ => dedup::penalty(g, counter),
            })
            .collect()
    }

    pub fn relabel(&self, sets: &[LabelPairs]) -> Vec<Option<LabelPairs>> {
        match self {
            Native::Relabel(r) => sets.iter().map(|s| r.relabel(s)).collect(),
            _ => sets.iter().cloned().map(Some).collect(),
        }
    }

    pub fn retain(&self, blocks: &[retention::BlockInfo], now_ms: i64) -> Vec<retention::Decision> {
        match self {
            Native::Retention(r) => blocks.iter().map(|b| r.decide(b, now_ms)).collect(),
            _ => blocks
                .iter()
                .map(|_| retention::Decision {
                    delete: false,
                    reason: String::new(),
                })
                .collect(),
        }
    }

    pub fn downsample(&self, raw: &Series, resolution: i64) -> downsample::Aggregates {
        downsample::downsample_raw(raw, resolution)
    }

    pub fn downsample_aggregates(
        &self,
        input: &downsample::Aggregates,
        resolution: i64,
    ) -> downsample::Aggregates {
        downsample::downsample_aggregates(input, resolution)
    }
}
