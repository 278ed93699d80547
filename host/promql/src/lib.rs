//! promql evaluates PromQL 3.x over a [`Storage`]: it parses with
//! `promql-parser`, fetches every selector's series up front (concurrently,
//! with hints: matchers, range, step, enclosing function and grouping), then
//! evaluates synchronously over the whole step grid at once.
//!
//! Values are columns: an instant query is a range query with one step. The
//! module knows nothing of gRPC or HTTP; `api` serves it and `querier`
//! backs it (see [`QuerierStorage`]).

mod aggr;
mod binop;
mod engine;
mod eval;
mod functions;
pub mod limits;
mod plan;
pub mod storage;
pub mod value;

pub use engine::{Engine, EngineOpts, PromqlError, QueryResult, QueryStats, TOO_MANY_SAMPLES};
pub use limits::Cancel;
pub use storage::{MemStorage, SelectHints, SeriesSet, Storage};
pub use value::{RangeSeries, Sample, Value};

/// The bit pattern Prometheus writes as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A sample value as Prometheus prints it: Go's
/// `strconv.FormatFloat(f, 'f', -1, 64)` (shortest round-trip, no exponent).
pub fn format_value(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// Whether `v` is a staleness marker.
#[inline]
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::Labels;

    fn storage() -> MemStorage {
        let mut st = MemStorage::new();
        for (inst, slope) in [("a", 1.0), ("b", 2.0)] {
            let samples: Vec<(i64, f64)> = (0..=20)
                .map(|i| (i * 15_000, i as f64 * slope * 15.0))
                .collect();
            st.add(
                Labels::from_pairs([
                    ("__name__", "req_total"),
                    ("job", "api"),
                    ("instance", inst),
                ]),
                &samples,
            );
        }
        st
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn rate_and_sum_by_job() {
        let st = storage();
        let e = Engine::default();
        let r = rt()
            .block_on(e.instant(&st, "sum by (job) (rate(req_total[1m]))", 300_000))
            .unwrap();
        let Value::Vector(v) = r.value else {
            panic!("{:?}", r.value)
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].labels, Labels::from_pairs([("job", "api")]));
        assert!((v[0].v - 3.0).abs() < 1e-9, "{}", v[0].v);
    }

    #[test]
    fn range_query_selector_and_binop() {
        let st = storage();
        let e = Engine::default();
        let r = rt()
            .block_on(e.range(
                &st,
                "req_total{instance=\"b\"} / on(job) group_left req_total{instance=\"a\"}",
                60_000,
                120_000,
                30_000,
            ))
            .unwrap();
        let Value::Matrix(m) = r.value else { panic!() };
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].points,
            vec![(60_000, 2.0), (90_000, 2.0), (120_000, 2.0)]
        );
        assert_eq!(m[0].labels.get("instance"), Some("b"));
        assert_eq!(m[0].labels.get("__name__"), None);
    }

    #[test]
    fn max_samples_is_a_clear_error() {
        let st = storage();
        let e = Engine::new(EngineOpts {
            max_samples: 10,
            ..Default::default()
        });
        let err = rt()
            .block_on(e.range(&st, "req_total", 0, 300_000, 15_000))
            .unwrap_err();
        assert_eq!(err.error_type(), "execution");
        assert!(err.to_string().contains("too many samples"), "{err}");
        // Within the limit the same query answers.
        let e = Engine::new(EngineOpts {
            max_samples: 100,
            ..Default::default()
        });
        assert!(
            rt().block_on(e.range(&st, "req_total", 0, 300_000, 15_000))
                .is_ok()
        );
    }

    #[test]
    fn hints_carry_function_and_grouping() {
        struct Recorder(std::sync::Mutex<Vec<SelectHints>>);
        impl Storage for Recorder {
            fn select(
                &self,
                h: SelectHints,
            ) -> futures::future::BoxFuture<'_, Result<SeriesSet, String>> {
                self.0.lock().unwrap().push(h);
                Box::pin(async { Ok(SeriesSet::default()) })
            }
        }
        let r = Recorder(Default::default());
        let e = Engine::default();
        rt().block_on(e.range(
            &r,
            "sum by (job) (rate(x[5m])) / on(job) y",
            600_000,
            1_200_000,
            60_000,
        ))
        .unwrap();
        let mut hints = r.0.into_inner().unwrap();
        hints.sort_by_key(|h| h.func.clone());
        assert_eq!(hints.len(), 2);
        // `y` sits directly under the binary operation: no function context.
        assert_eq!((hints[0].func.as_str(), hints[0].range), ("", 0));
        assert_eq!(hints[0].start, 600_000 - 300_000 + 1);
        let x = &hints[1];
        assert_eq!(
            (x.func.as_str(), x.range, x.step),
            ("rate", 300_000, 60_000)
        );
        assert_eq!(x.grouping, vec!["job".to_string()]);
        assert!(x.by);
        assert_eq!((x.start, x.end), (600_000 - 300_000 + 1, 1_200_000));
    }
}
