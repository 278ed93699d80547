//! Process metrics: one `prometheus-client` registry per process, served as
//! OpenMetrics text on `/metrics`. Metric names follow Thanos where a Thanos
//! metric means the same thing, so existing dashboards and alerts keep working.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The process registry, shared by the modules that register metrics in it.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the registry to register metrics.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
    }

    /// OpenMetrics text of every registered metric.
    pub fn encode(&self) -> String {
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}

/// Content type of [`Metrics::encode`] output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
