//! Per-plugin metrics: calls, errors by kind, call duration, series in/out,
//! fallbacks, reloads, and an info metric with name, version and digest.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::plugin::{CallError, FailureKind, Plugin};
use sluice_metrics::Metrics;

type L = Vec<(&'static str, String)>;

/// Metric families shared by every plugin of a registry.
#[derive(Clone)]
pub struct PolicyMetrics {
    calls: Family<L, Counter>,
    errors: Family<L, Counter>,
    duration: Family<L, Histogram>,
    series_in: Family<L, Counter>,
    series_out: Family<L, Counter>,
    fallbacks: Family<L, Counter>,
    pub(crate) info: Family<L, Gauge>,
    pub(crate) reloads: Family<L, Counter>,
}

impl std::fmt::Debug for PolicyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyMetrics")
    }
}

impl PolicyMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let m = PolicyMetrics {
            calls: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_01, 4.0, 12))
            }),
            series_in: Family::default(),
            series_out: Family::default(),
            fallbacks: Family::default(),
            info: Family::default(),
            reloads: Family::default(),
        };
        metrics.register(|r| {
            r.register("sluice_policy_calls", "Calls into policy plugins.", m.calls.clone());
            r.register("sluice_policy_errors", "Failed plugin calls by kind (trap, timeout, oom, invalid_output, plugin_error, instantiate).", m.errors.clone());
            r.register("sluice_policy_call_duration_seconds", "Duration of plugin calls.", m.duration.clone());
            r.register("sluice_policy_series_in", "Series (or label sets, blocks) passed into plugins.", m.series_in.clone());
            r.register("sluice_policy_series_out", "Series (or label sets, decisions) returned by plugins.", m.series_out.clone());
            r.register("sluice_policy_fallbacks", "Calls served by the native built-in after a plugin failure.", m.fallbacks.clone());
            r.register("sluice_policy_plugin_info", "Loaded plugins: slot, name, version, ABI and sha256 (value 1).", m.info.clone());
            r.register("sluice_policy_reloads", "Policy set reloads by result (success, failure).", m.reloads.clone());
        });
        m
    }

    fn labels(p: &Plugin) -> L {
        vec![("slot", p.slot.clone()), ("plugin", p.display_name())]
    }

    /// Records one call; `result` carries (items in, items out) on success.
    pub(crate) fn record(
        &self,
        p: &Plugin,
        seconds: f64,
        result: &Result<(usize, usize), CallError>,
    ) {
        let l = Self::labels(p);
        self.calls.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(seconds);
        match result {
            Ok((i, o)) => {
                self.series_in.get_or_create(&l).inc_by(*i as u64);
                self.series_out.get_or_create(&l).inc_by(*o as u64);
            }
            Err(e) => {
                let mut l = l;
                l.push(("kind", e.kind.as_str().to_string()));
                self.errors.get_or_create(&l).inc();
            }
        }
    }

    /// Calls, failed calls by kind (only kinds that happened) and fallbacks of `p` so far.
    pub(crate) fn counts(&self, p: &Plugin) -> serde_json::Value {
        let l = Self::labels(p);
        let get = |f: &Family<L, Counter>, l: &L| f.get(l).map(|c| c.get()).unwrap_or(0);
        let mut errors = serde_json::Map::new();
        for kind in FailureKind::ALL {
            let mut lk = l.clone();
            lk.push(("kind", kind.as_str().to_string()));
            let n = get(&self.errors, &lk);
            if n > 0 {
                errors.insert(kind.as_str().to_string(), n.into());
            }
        }
        serde_json::json!({
            "calls": get(&self.calls, &l),
            "errors": errors,
            "fallbacks": get(&self.fallbacks, &l),
        })
    }

    pub(crate) fn fallback(&self, p: &Plugin) {
        self.fallbacks.get_or_create(&Self::labels(p)).inc();
    }

    pub(crate) fn set_info(&self, p: &Plugin, on: bool) {
        let l = vec![
            ("slot", p.slot.clone()),
            ("name", p.info.name.clone()),
            ("version", p.info.version.clone()),
            ("abi", p.info.abi.clone()),
            ("sha256", p.sha256.clone()),
        ];
        self.info.get_or_create(&l).set(i64::from(on));
    }
}
