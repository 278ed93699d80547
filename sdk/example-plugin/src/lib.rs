//! dedup-max: merges the replicas of a series by keeping every timestamp any
//! replica has; where several replicas have a sample at the same timestamp,
//! keeps the largest value (or the smallest, with `prefer: min`).

use serde::Deserialize;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

/// The slot's `config:` in policies.yml, e.g. `config: { prefer: min }`.
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
    Max,
    Min,
}

/// The configured policy; the SDK keeps it between calls.
struct DedupMax {
    prefer: Prefer,
}

impl DedupPolicy for DedupMax {
    fn info() -> Info {
        Info::new("dedup-max", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = sluice_sdk::parse_config(config)?;
        Ok(DedupMax { prefer: config.prefer })
    }

    fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        let mut next = vec![0usize; replicas.len()]; // per replica: index of its next sample
        let mut out = Series::default();
        // Each round takes the smallest pending timestamp across replicas.
        while let Some(t) = replicas.iter().zip(&next).filter_map(|(r, &i)| r.timestamps.get(i).copied()).min() {
            let mut best: Option<f64> = None;
            for (r, i) in replicas.iter().zip(next.iter_mut()) {
                if r.timestamps.get(*i) == Some(&t) {
                    let v = r.values[*i];
                    best = Some(match best {
                        Some(b) if self.prefer == Prefer::Min => b.min(v),
                        Some(b) => b.max(v),
                        None => v,
                    });
                    *i += 1;
                }
            }
            if let Some(v) = best {
                out.timestamps.push(t);
                out.values.push(v);
            }
        }
        Ok(out)
    }
}

sluice_sdk::export_dedup!(DedupMax);
