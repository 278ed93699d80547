//! dedup-penalty: Thanos's penalty deduplication (initial penalty 5000 ms,
//! 2× the observed gap, earliest sample wins, ties to the first replica), with
//! the counter adjustment when the enclosing function is `rate`, `increase`,
//! `irate` or `resets`. The algorithm lives in sluice-policy-algorithms, which
//! the host also runs natively as the fallback.

use sluice_policy_algorithms::dedup;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

struct Penalty;

impl DedupPolicy for Penalty {
    fn info() -> Info {
        Info::new("dedup-penalty", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        dedup::PenaltyConfig::from_json(config)?;
        Ok(Penalty)
    }

    fn dedup(&self, replicas: &[Series], hints: &QueryHints) -> Result<Series, String> {
        Ok(dedup::penalty(replicas, dedup::is_counter_func(&hints.func)))
    }

    fn dedup_batch(&self, groups: &[Vec<Series>], hints: &QueryHints) -> Result<Vec<Series>, String> {
        let counter = dedup::is_counter_func(&hints.func);
        Ok(groups.iter().map(|g| dedup::penalty(g, counter)).collect())
    }
}

sluice_sdk::export_dedup!(Penalty);
