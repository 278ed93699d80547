//! Glue between the generated `Guest` traits and the SDK's policy traits:
//! keeps the configured policy in a single-threaded static, decodes the flat
//! payloads of sdk/ABI.md, calls the author's trait, checks and encodes the
//! result. Public only so the `export_*!` macros can name it.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use sluice_policy_abi as abi;

use crate::bindings::dedup::exports::sluice::policy::dedup as wit_dedup;
use crate::bindings::downsample::exports::sluice::policy::downsample as wit_downsample;
use crate::bindings::relabel::exports::sluice::policy::relabel as wit_relabel;
use crate::bindings::retention::exports::sluice::policy::retention as wit_retention;
use crate::policy::{
    Aggregates, BlockMeta, Decision, DedupPolicy, DownsamplePolicy, Info, Labels, QueryHints,
    RelabelPolicy, RetentionPolicy, Series,
};

thread_local! {
    /// The policy built by the last successful `configure`. A component
    /// instance is single-threaded and exports exactly one policy kind, so one
    /// slot suffices; `thread_local!` compiles to a plain static on wasm32.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs the author's `configure`; the old policy is dropped first, so a
/// failed `configure` leaves the plugin unconfigured rather than stale.
fn configure<P: 'static>(make: impl FnOnce() -> Result<P, String>) -> Result<(), String> {
    STATE.with(|s| *s.borrow_mut() = None);
    let policy = make()?;
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(policy)));
    Ok(())
}

fn with_policy<P: 'static, R>(f: impl FnOnce(&P) -> Result<R, String>) -> Result<R, String> {
    STATE.with(|s| {
        let state = s.borrow();
        match state.as_ref().and_then(|b| b.downcast_ref::<P>()) {
            Some(p) => f(p),
            None => Err("policy is not configured: the host must call configure first".to_string()),
        }
    })
}

fn plugin_info<T>(info: Info, make: impl FnOnce(String, String, String) -> T) -> T {
    make(info.name, info.version, abi::ABI_VERSION.to_string())
}

fn check_series(s: &Series, what: impl Fn() -> String) -> Result<(), String> {
    if s.timestamps.len() != s.values.len() {
        return Err(format!(
            "{} has {} timestamps but {} values",
            what(),
            s.timestamps.len(),
            s.values.len()
        ));
    }
    if let Some(i) = s.timestamps.windows(2).position(|w| w[0] >= w[1]) {
        return Err(format!(
            "{} timestamps do not strictly ascend at index {}: {} then {}",
            what(),
            i + 1,
            s.timestamps[i],
            s.timestamps[i + 1]
        ));
    }
    Ok(())
}

/// Sorts a label set by name and rejects duplicate names.
fn normalize_labels(mut set: Labels, index: usize) -> Result<Labels, String> {
    set.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = set.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "relabel output set {index} has label {:?} twice",
            w[0].0
        ));
    }
    Ok(set)
}

/// Exports a [`DedupPolicy`] as the `sluice:policy/dedup` interface.
pub struct Dedup<P>(PhantomData<P>);

impl<P: DedupPolicy> wit_dedup::Guest for Dedup<P> {
    fn info() -> wit_dedup::PluginInfo {
        plugin_info(P::info(), |name, version, abi| wit_dedup::PluginInfo {
            name,
            version,
            abi,
        })
    }

    fn configure(config: String) -> Result<(), String> {
        configure(|| P::configure(&config))
    }

    fn dedup(groups: Vec<u8>, hints: wit_dedup::QueryHints) -> Result<Vec<u8>, String> {
        // The input is read in place and the output written in place: no
        // copy of the samples besides the policy's own reads and writes.
        let input =
            abi::DedupInput::parse(&groups).map_err(|e| format!("malformed dedup input: {e}"))?;
        let hints = QueryHints {
            func: hints.func,
            step_ms: hints.step_ms,
            range_ms: hints.range_ms,
            start_ms: hints.start_ms,
            end_ms: hints.end_ms,
        };
        // Merged replicas are usually about one replica's size.
        let mut out = abi::DedupOutputWriter::with_capacity(groups.len() / 2 + 64);
        with_policy(|p: &P| p.dedup_flat(&input, &hints, &mut out))?;
        if out.series() != input.len() {
            return Err(format!(
                "dedup returned {} series for {} groups",
                out.series(),
                input.len()
            ));
        }
        Ok(out.finish())
    }
}

/// Exports a [`RelabelPolicy`] as the `sluice:policy/relabel` interface.
pub struct Relabel<P>(PhantomData<P>);

impl<P: RelabelPolicy> wit_relabel::Guest for Relabel<P> {
    fn info() -> wit_relabel::PluginInfo {
        plugin_info(P::info(), |name, version, abi| wit_relabel::PluginInfo {
            name,
            version,
            abi,
        })
    }

    fn configure(config: String) -> Result<(), String> {
        configure(|| P::configure(&config))
    }

    fn relabel(batch: Vec<u8>) -> Result<Vec<u8>, String> {
        let sets = abi::decode_relabel_input(&batch)
            .map_err(|e| format!("malformed relabel input: {e}"))?;
        let out = with_policy(|p: &P| p.relabel_batch(&sets))?;
        if out.len() != sets.len() {
            return Err(format!(
                "relabel returned {} results for {} label sets",
                out.len(),
                sets.len()
            ));
        }
        let out = out
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(|s| normalize_labels(s, i)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(abi::encode_relabel_output(&out))
    }
}

/// Exports a [`RetentionPolicy`] as the `sluice:policy/retention` interface.
pub struct Retention<P>(PhantomData<P>);

impl<P: RetentionPolicy> wit_retention::Guest for Retention<P> {
    fn info() -> wit_retention::PluginInfo {
        plugin_info(P::info(), |name, version, abi| wit_retention::PluginInfo {
            name,
            version,
            abi,
        })
    }

    fn configure(config: String) -> Result<(), String> {
        configure(|| P::configure(&config))
    }

    fn retain(
        blocks: Vec<wit_retention::BlockMeta>,
        now_ms: i64,
    ) -> Result<Vec<wit_retention::Decision>, String> {
        let blocks: Vec<BlockMeta> = blocks
            .into_iter()
            .map(|b| BlockMeta {
                ulid: b.ulid,
                min_time: b.min_time,
                max_time: b.max_time,
                resolution: b.resolution,
                labels: b.labels,
                level: b.level,
            })
            .collect();
        let decisions = with_policy(|p: &P| p.decide_batch(&blocks, now_ms))?;
        if decisions.len() != blocks.len() {
            return Err(format!(
                "retention returned {} decisions for {} blocks",
                decisions.len(),
                blocks.len()
            ));
        }
        Ok(decisions
            .into_iter()
            .map(|Decision { delete, reason }| wit_retention::Decision { delete, reason })
            .collect())
    }
}

/// Exports a [`DownsamplePolicy`] as the `sluice:policy/downsample` interface.
pub struct Downsample<P>(PhantomData<P>);

fn series_in(s: wit_downsample::Samples, what: &str) -> Result<Series, String> {
    if s.timestamps.len() != s.values.len() {
        return Err(format!(
            "{what} has {} timestamps but {} values",
            s.timestamps.len(),
            s.values.len()
        ));
    }
    Ok(Series::new(s.timestamps, s.values))
}

fn series_out(s: Series, what: &str) -> Result<wit_downsample::Samples, String> {
    check_series(&s, || format!("downsample output {what}"))?;
    Ok(wit_downsample::Samples {
        timestamps: s.timestamps,
        values: s.values,
    })
}

fn aggregates_in(a: wit_downsample::Aggregates) -> Result<Aggregates, String> {
    Ok(Aggregates {
        count: series_in(a.count, "input count")?,
        sum: series_in(a.sum, "input sum")?,
        min: series_in(a.min, "input min")?,
        max: series_in(a.max, "input max")?,
        counter: series_in(a.counter, "input counter")?,
    })
}

fn aggregates_out(a: Aggregates) -> Result<wit_downsample::Aggregates, String> {
    Ok(wit_downsample::Aggregates {
        count: series_out(a.count, "count")?,
        sum: series_out(a.sum, "sum")?,
        min: series_out(a.min, "min")?,
        max: series_out(a.max, "max")?,
        // The counter aggregate may repeat the last window's timestamp for
        // the trailing raw value (Thanos layout), so only lengths are checked.
        counter: {
            if a.counter.timestamps.len() != a.counter.values.len() {
                return Err(format!(
                    "downsample output counter has {} timestamps but {} values",
                    a.counter.timestamps.len(),
                    a.counter.values.len()
                ));
            }
            wit_downsample::Samples {
                timestamps: a.counter.timestamps,
                values: a.counter.values,
            }
        },
    })
}

impl<P: DownsamplePolicy> wit_downsample::Guest for Downsample<P> {
    fn info() -> wit_downsample::PluginInfo {
        plugin_info(P::info(), |name, version, abi| wit_downsample::PluginInfo {
            name,
            version,
            abi,
        })
    }

    fn configure(config: String) -> Result<(), String> {
        configure(|| P::configure(&config))
    }

    fn downsample(
        raw: wit_downsample::Samples,
        resolution_ms: i64,
    ) -> Result<wit_downsample::Aggregates, String> {
        let raw = series_in(raw, "raw samples")?;
        aggregates_out(with_policy(|p: &P| p.downsample(&raw, resolution_ms))?)
    }

    fn downsample_aggregates(
        input: wit_downsample::Aggregates,
        resolution_ms: i64,
    ) -> Result<wit_downsample::Aggregates, String> {
        let input = aggregates_in(input)?;
        aggregates_out(with_policy(|p: &P| {
            p.downsample_aggregates(&input, resolution_ms)
        })?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The glue exercised natively through the generated `Guest` traits, as
    //! the host would call it, with the payloads encoded by the host's codec.

    use super::*;
    use crate::parse_config;

    #[derive(serde::Deserialize)]
    struct Conf {
        offset: i64,
    }

    /// Shifts the first replica's timestamps by the configured offset, or
    /// returns a broken series when the hints ask for it.
    struct Shift(i64);

    impl DedupPolicy for Shift {
        fn info() -> Info {
            Info::new("shift", "1.2.3")
        }
        fn configure(config: &str) -> Result<Self, String> {
            Ok(Shift(parse_config::<Conf>(config)?.offset))
        }
        fn dedup(&self, replicas: &[Series], hints: &QueryHints) -> Result<Series, String> {
            if hints.func == "broken" {
                return Ok(Series::new(vec![2, 1], vec![0.0, 0.0]));
            }
            let first = replicas.first().cloned().unwrap_or_default();
            Ok(Series::new(
                first.timestamps.iter().map(|t| t + self.0).collect(),
                first.values,
            ))
        }
    }

    fn hints(func: &str) -> wit_dedup::QueryHints {
        wit_dedup::QueryHints {
            func: func.into(),
            step_ms: 0,
            range_ms: 0,
            start_ms: 0,
            end_ms: 0,
        }
    }

    type G = Dedup<Shift>;

    #[test]
    fn dedup_roundtrip_through_the_flat_layout() {
        use wit_dedup::Guest;
        let info = G::info();
        assert_eq!(
            (info.name.as_str(), info.version.as_str(), info.abi.as_str()),
            ("shift", "1.2.3", abi::ABI_VERSION)
        );

        let mut w = abi::DedupInputWriter::new();
        w.begin_group();
        w.add_replica(&[1, 2], &[1.0, 2.0]);
        w.add_replica(&[1], &[9.0]);
        w.begin_group();
        let input = w.finish();

        let e = G::dedup(input.clone(), hints("")).unwrap_err();
        assert!(e.contains("not configured"), "{e}");
        assert!(
            G::configure(r#"{"nope": 1}"#.into())
                .unwrap_err()
                .contains("invalid config")
        );
        G::configure(r#"{"offset": 10}"#.into()).unwrap();

        let out = G::dedup(input.clone(), hints("rate")).unwrap();
        let out = abi::decode_dedup_output(&out, 2).unwrap();
        assert_eq!(out[0], Series::new(vec![11, 12], vec![1.0, 2.0]));
        assert!(out[1].is_empty());

        // Out-of-order output passes the SDK; the host rejects it on read.
        let out = G::dedup(input, hints("broken")).unwrap();
        let e = abi::decode_dedup_output(&out, 2).unwrap_err().0;
        assert!(e.contains("series 0") && e.contains("ascend"), "{e}");
        assert!(
            G::dedup(vec![1, 2, 3], hints(""))
                .unwrap_err()
                .contains("malformed dedup input")
        );
    }

    struct Upper;

    impl RelabelPolicy for Upper {
        fn info() -> Info {
            Info::new("upper", "0")
        }
        fn configure(_: &str) -> Result<Self, String> {
            Ok(Upper)
        }
        fn relabel(&self, labels: &[(String, String)]) -> Result<Option<Labels>, String> {
            if labels.iter().any(|(n, _)| n == "drop") {
                return Ok(None);
            }
            // Reversed on purpose: the SDK sorts.
            Ok(Some(
                labels
                    .iter()
                    .rev()
                    .map(|(n, v)| (n.clone(), v.to_uppercase()))
                    .collect(),
            ))
        }
    }

    #[test]
    fn relabel_sorts_output_and_keeps_drops() {
        use wit_relabel::Guest;
        type R = Relabel<Upper>;
        R::configure(String::new()).unwrap();
        let sets: Vec<Labels> = vec![
            vec![("a".into(), "x".into()), ("b".into(), "y".into())],
            vec![("drop".into(), "1".into())],
        ];
        let out = R::relabel(abi::encode_relabel_input(&sets)).unwrap();
        let out = abi::decode_relabel_output(&out, 2).unwrap();
        assert_eq!(
            out[0],
            Some(vec![("a".into(), "X".into()), ("b".into(), "Y".into())])
        );
        assert_eq!(out[1], None);
    }

    #[test]
    fn duplicate_output_labels_are_an_error() {
        let e = normalize_labels(vec![("a".into(), "1".into()), ("a".into(), "2".into())], 3)
            .unwrap_err();
        assert!(e.contains("set 3") && e.contains("\"a\""), "{e}");
    }

    struct OlderThan(i64);

    impl RetentionPolicy for OlderThan {
        fn info() -> Info {
            Info::new("older-than", "0")
        }
        fn configure(config: &str) -> Result<Self, String> {
            config
                .trim()
                .parse()
                .map(OlderThan)
                .map_err(|e| format!("{e}"))
        }
        fn decide(&self, block: &BlockMeta, now_ms: i64) -> Result<Decision, String> {
            Ok(if now_ms - block.max_time > self.0 {
                Decision::delete("old")
            } else {
                Decision::keep("young")
            })
        }
    }

    #[test]
    fn retention_one_decision_per_block() {
        use wit_retention::Guest;
        type R = Retention<OlderThan>;
        R::configure("100".into()).unwrap();
        let block = |max_time| wit_retention::BlockMeta {
            ulid: "01J".into(),
            min_time: 0,
            max_time,
            resolution: 0,
            labels: vec![("team".into(), "a".into())],
            level: 1,
        };
        let d = R::retain(vec![block(0), block(950)], 1000).unwrap();
        assert_eq!(
            d.iter()
                .map(|d| (d.delete, d.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![(true, "old"), (false, "young")]
        );
    }

    struct CountOnly;

    impl DownsamplePolicy for CountOnly {
        fn info() -> Info {
            Info::new("count-only", "0")
        }
        fn configure(_: &str) -> Result<Self, String> {
            Ok(CountOnly)
        }
        fn downsample(&self, raw: &Series, _resolution_ms: i64) -> Result<Aggregates, String> {
            let t = raw.timestamps.last().copied().unwrap_or(0);
            Ok(Aggregates {
                count: Series::new(vec![t], vec![raw.len() as f64]),
                ..Aggregates::default()
            })
        }
        fn downsample_aggregates(
            &self,
            input: &Aggregates,
            _resolution_ms: i64,
        ) -> Result<Aggregates, String> {
            Ok(input.clone())
        }
    }

    #[test]
    fn downsample_checks_columns() {
        use wit_downsample::Guest;
        type D = Downsample<CountOnly>;
        D::configure(String::new()).unwrap();
        let raw = wit_downsample::Samples {
            timestamps: vec![1, 2, 3],
            values: vec![1.0, 2.0, 3.0],
        };
        let a = D::downsample(raw, 300_000).unwrap();
        assert_eq!((a.count.timestamps, a.count.values), (vec![3], vec![3.0]));
        let bad = wit_downsample::Samples {
            timestamps: vec![1, 2],
            values: vec![1.0],
        };
        assert!(
            D::downsample(bad, 300_000)
                .unwrap_err()
                .contains("2 timestamps but 1 values")
        );
    }
}
