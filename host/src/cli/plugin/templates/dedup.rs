//! __PLUGIN_NAME__: a Sluice dedup plugin, scaffolded by `sluice plugin new`.
//!
//! It merges the replicas of one series by keeping every timestamp any
//! replica has; where several replicas have a sample at the same timestamp it
//! keeps the first replica's value (or the largest, with `prefer: max`).
//! Replace the body of `dedup` with your algorithm.

use serde::Deserialize;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

/// The slot's `config:` in policies.yml, e.g. `config: { prefer: max }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    prefer: Prefer,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Prefer {
    #[default]
    First,
    Max,
}

/// The configured policy; the SDK keeps it between calls.
struct Policy {
    prefer: Prefer,
}

impl DedupPolicy for Policy {
    fn info() -> Info {
        Info::new("__PLUGIN_NAME__", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = sluice_sdk::parse_config(config)?;
        Ok(Policy { prefer: config.prefer })
    }

    /// `replicas` are the same series from several replicas, in the host's
    /// order; `hints.func` is the enclosing PromQL function (e.g. "rate").
    fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        let mut next = vec![0usize; replicas.len()]; // per replica: index of its next sample
        let mut out = Series::default();
        // Each round takes the smallest pending timestamp across replicas.
        while let Some(t) = replicas
            .iter()
            .zip(&next)
            .filter_map(|(r, &i)| r.timestamps.get(i).copied())
            .min()
        {
            let mut picked: Option<f64> = None;
            for (r, i) in replicas.iter().zip(next.iter_mut()) {
                // Skip this replica's samples at or before `t`.
                while r.timestamps.get(*i).is_some_and(|&ts| ts <= t) {
                    if r.timestamps[*i] == t {
                        let v = r.values[*i];
                        picked = Some(match picked {
                            Some(p) if self.prefer == Prefer::Max => p.max(v),
                            Some(p) => p,
                            None => v,
                        });
                    }
                    *i += 1;
                }
            }
            if let Some(v) = picked {
                out.timestamps.push(t);
                out.values.push(v);
            }
        }
        Ok(out)
    }
}

sluice_sdk::export_dedup!(Policy);
