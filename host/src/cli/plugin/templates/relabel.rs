//! __PLUGIN_NAME__: a Sluice relabel plugin, scaffolded by `sluice plugin new`.
//!
//! It drops the series of the metrics named in `drop_metrics` and removes
//! the labels named in `drop_labels` from every other series. Replace the
//! body of `relabel` with your rules.

use serde::Deserialize;
use sluice_sdk::{Info, Labels, RelabelPolicy};

/// The slot's `config:` in policies.yml, e.g.
/// `config: { drop_labels: [pod_template_hash], drop_metrics: [go_gc_duration_seconds] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    drop_labels: Vec<String>,
    #[serde(default)]
    drop_metrics: Vec<String>,
}

/// The configured policy; the SDK keeps it between calls.
struct Policy {
    config: Config,
}

impl RelabelPolicy for Policy {
    fn info() -> Info {
        Info::new("__PLUGIN_NAME__", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = sluice_sdk::parse_config(config)?;
        Ok(Policy { config })
    }

    /// `labels` is one series' label set, sorted by name. Return the new
    /// set (in any order, names unique), or `None` to drop the series.
    fn relabel(&self, labels: &[(String, String)]) -> Result<Option<Labels>, String> {
        let metric = labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v);
        if metric.is_some_and(|m| self.config.drop_metrics.contains(m)) {
            return Ok(None);
        }
        Ok(Some(
            labels
                .iter()
                .filter(|(n, _)| !self.config.drop_labels.contains(n))
                .cloned()
                .collect(),
        ))
    }
}

sluice_sdk::export_relabel!(Policy);
