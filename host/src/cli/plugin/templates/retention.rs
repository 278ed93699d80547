//! __PLUGIN_NAME__: a Sluice retention plugin, scaffolded by `sluice plugin new`.
//!
//! It marks a block for deletion once all of its data is older than
//! `max_age_days` (30 by default), or `team_max_age_days` for blocks whose
//! external label `team` is named there. Replace the body of `decide` with
//! your rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_sdk::{BlockMeta, Decision, Info, RetentionPolicy};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The slot's `config:` in policies.yml, e.g.
/// `config: { max_age_days: 30, team_max_age_days: { payments: 400 } }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_age_days")]
    max_age_days: u32,
    #[serde(default)]
    team_max_age_days: BTreeMap<String, u32>,
}

fn default_max_age_days() -> u32 {
    30
}

/// The configured policy; the SDK keeps it between calls.
struct Policy {
    config: Config,
}

impl RetentionPolicy for Policy {
    fn info() -> Info {
        Info::new("__PLUGIN_NAME__", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = sluice_sdk::parse_config(config)?;
        Ok(Policy { config })
    }

    /// One block's metadata and the host's clock (plugins have none).
    fn decide(&self, block: &BlockMeta, now_ms: i64) -> Result<Decision, String> {
        let team = block.labels.iter().find(|(n, _)| n == "team").map(|(_, v)| v);
        let (days, why) = match team.and_then(|t| self.config.team_max_age_days.get(t).map(|d| (t, d))) {
            Some((t, &d)) => (d, format!("team {t}")),
            None => (self.config.max_age_days, "default".to_string()),
        };
        // `max_time` is exclusive: the newest sample is at max_time - 1.
        let age_ms = now_ms.saturating_sub(block.max_time);
        if age_ms > i64::from(days) * DAY_MS {
            Ok(Decision::delete(format!("older than {days}d ({why} retention)")))
        } else {
            Ok(Decision::keep(format!("within {days}d ({why} retention)")))
        }
    }
}

sluice_sdk::export_retention!(Policy);
