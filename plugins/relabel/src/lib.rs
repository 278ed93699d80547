//! relabel: Prometheus `relabel_configs` semantics (replace, keep, drop,
//! keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase,
//! uppercase; Prometheus defaults). The rules are compiled once, in
//! `configure`; the engine lives in sluice-policy-algorithms.

use sluice_policy_algorithms::relabel::Relabeler;
use sluice_sdk::{Info, Labels, RelabelPolicy};

struct Relabel(Relabeler);

impl RelabelPolicy for Relabel {
    fn info() -> Info {
        Info::new("relabel", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        Relabeler::from_json(config).map(Relabel)
    }

    fn relabel(&self, labels: &[(String, String)]) -> Result<Option<Labels>, String> {
        Ok(self.0.relabel(labels))
    }
}

sluice_sdk::export_relabel!(Relabel);
