//! dedup-chain: the union of the replicas' samples, one per timestamp (the
//! first replica wins ties), as Prometheus's chain merge. The algorithm lives
//! in sluice-policy-algorithms.

use sluice_policy_algorithms::dedup;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

struct Chain;

impl DedupPolicy for Chain {
    fn info() -> Info {
        Info::new("dedup-chain", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        dedup::ChainConfig::from_json(config)?;
        Ok(Chain)
    }

    fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        Ok(dedup::chain(replicas))
    }
}

sluice_sdk::export_dedup!(Chain);
