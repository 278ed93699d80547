//! retention: per-resolution retention (raw / 5m / 1h, Thanos flag
//! semantics) plus rules by external-label selector. The policy lives in
//! sluice-policy-algorithms; "now" comes from the host.

use sluice_policy_algorithms::retention::{BlockInfo, RetentionPolicy as Policy};
use sluice_sdk::{BlockMeta, Decision, Info, RetentionPolicy};

struct Retention(Policy);

impl RetentionPolicy for Retention {
    fn info() -> Info {
        Info::new("retention", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        Policy::from_json(config).map(Retention)
    }

    fn decide(&self, block: &BlockMeta, now_ms: i64) -> Result<Decision, String> {
        let info = BlockInfo {
            ulid: block.ulid.clone(),
            min_time: block.min_time,
            max_time: block.max_time,
            resolution: block.resolution,
            labels: block.labels.clone(),
            level: block.level,
        };
        let d = self.0.decide(&info, now_ms);
        Ok(Decision { delete: d.delete, reason: d.reason })
    }
}

sluice_sdk::export_retention!(Retention);
