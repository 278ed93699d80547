//! downsample: Thanos 5m and 1h aggregates (count, sum, min, max, counter)
//! with Thanos's window and counter semantics. The algorithm lives in
//! sluice-policy-algorithms.

use sluice_policy_algorithms::downsample as alg;
use sluice_sdk::{Aggregates, DownsamplePolicy, Info, NoConfig, Series, parse_config};

struct Downsample;

fn from_alg(a: alg::Aggregates) -> Aggregates {
    Aggregates { count: a.count, sum: a.sum, min: a.min, max: a.max, counter: a.counter }
}

impl DownsamplePolicy for Downsample {
    fn info() -> Info {
        Info::new("downsample", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        parse_config::<NoConfig>(config)?;
        Ok(Downsample)
    }

    fn downsample(&self, raw: &Series, resolution_ms: i64) -> Result<Aggregates, String> {
        alg::check_resolution(resolution_ms)?;
        Ok(from_alg(alg::downsample_raw(raw, resolution_ms)))
    }

    fn downsample_aggregates(&self, input: &Aggregates, resolution_ms: i64) -> Result<Aggregates, String> {
        alg::check_resolution(resolution_ms)?;
        let input = alg::Aggregates {
            count: input.count.clone(),
            sum: input.sum.clone(),
            min: input.min.clone(),
            max: input.max.clone(),
            counter: input.counter.clone(),
        };
        Ok(from_alg(alg::downsample_aggregates(&input, resolution_ms)))
    }
}

sluice_sdk::export_downsample!(Downsample);
