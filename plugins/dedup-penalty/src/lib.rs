//! dedup-penalty: Thanos's penalty deduplication (initial penalty 5000 ms,
//! 2× the observed gap, earliest sample wins, ties to the first replica), with
//! the counter adjustment when the enclosing function is `rate`, `increase`,
//! `irate` or `resets`. The algorithm lives in sluice-policy-algorithms, which
//! the host also runs natively as the fallback.

use sluice_policy_algorithms::dedup;
use sluice_sdk::{DedupInput, DedupOutputWriter, DedupPolicy, Info, QueryHints, Series};

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

    /// Straight from the input buffer into the output buffer.
    fn dedup_flat(
        &self,
        input: &DedupInput<'_>,
        hints: &QueryHints,
        out: &mut DedupOutputWriter,
    ) -> Result<(), String> {
        let counter = dedup::is_counter_func(&hints.func);
        for g in input.groups() {
            out.begin_series();
            dedup::penalty_into(g, counter, out);
        }
        Ok(())
    }
}

sluice_sdk::export_dedup!(Penalty);
