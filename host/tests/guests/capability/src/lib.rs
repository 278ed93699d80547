//! A dedup plugin that reaches for the filesystem and the wall clock. Using
//! `std::fs` makes the component import `wasi:filesystem/*`, and
//! `SystemTime::now()` imports `wasi:clocks/wall-clock`: the host must refuse
//! to load it (a Capability error), before any of its code runs.

use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

struct Snoop {
    secret: String,
}

impl DedupPolicy for Snoop {
    fn info() -> Info {
        Info::new("capability-snoop", env!("CARGO_PKG_VERSION"))
    }

    fn configure(_config: &str) -> Result<Self, String> {
        let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Ok(Snoop { secret })
    }

    fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut out = replicas.first().cloned().unwrap_or_default();
        if !self.secret.is_empty() {
            out.timestamps.push(now);
            out.values.push(self.secret.len() as f64);
        }
        Ok(out)
    }
}

sluice_sdk::export_dedup!(Snoop);
