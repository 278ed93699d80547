//! Sessions: a query's (or a compaction's) use of one slot. The instance is
//! created from the template on first use, reused for the session's further
//! calls, and discarded after any failure; failures follow the slot's policy.

use std::sync::Arc;
use std::time::Instant;

use sluice_policy_abi::{DedupInputWriter, LabelPairs, Series};
use sluice_policy_algorithms::{downsample::Aggregates, retention};

use super::config::FailurePolicy;
use super::native::Native;
use super::plugin::{CallError, Inst, Instance, Plugin, wit};

/// A result plus the warning to show when a fallback produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    pub value: T,
    pub warning: Option<String>,
}

/// PromQL context passed to dedup plugins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupHints {
    pub func: String,
    pub step_ms: i64,
    pub range_ms: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Default input size of one dedup call, see [`DedupBatch`].
pub const DEDUP_CALL_BYTES: usize = 128 << 10;

/// A batch of replica groups, encoded once for the plugin.
///
/// A large batch is sent in several calls on the same instance, each with
/// about [`DEDUP_CALL_BYTES`] of input (whole groups; a larger group goes
/// alone). The guest then reuses the same few MiB of its memory instead of
/// growing and faulting in a copy of the whole query: 10,000 groups × 2
/// replicas × 120 samples took ~75 ms in one call, ~35 ms in calls of
/// 4 MiB and ~26 ms in calls of 128–512 KiB, where 128 KiB was never worse
/// (native penalty: ~14.5 ms; `cargo bench -p sluice --bench policy` with
/// mimalloc; with glibc malloc, as the binary ships: ~37.5 ms vs ~16 ms). The
/// slot's deadline and output cap apply per call.
#[derive(Debug)]
pub struct DedupBatch {
    /// Finished calls: (input, groups, series).
    calls: Vec<(Vec<u8>, usize, usize)>,
    writer: DedupInputWriter,
    writer_series: usize,
    call_bytes: usize,
    groups: usize,
}

impl Default for DedupBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl DedupBatch {
    pub fn new() -> Self {
        Self::with_call_bytes(DEDUP_CALL_BYTES)
    }

    /// A batch that starts a new call once one reaches `bytes` of input
    /// (`usize::MAX`: everything in one call).
    pub fn with_call_bytes(bytes: usize) -> Self {
        DedupBatch {
            calls: Vec::new(),
            writer: DedupInputWriter::new(),
            writer_series: 0,
            call_bytes: bytes.max(1),
            groups: 0,
        }
    }

    /// Adds one group: the replicas of one series.
    pub fn push_group<'a>(&mut self, replicas: impl IntoIterator<Item = (&'a [i64], &'a [f64])>) {
        self.writer.begin_group();
        for (ts, vs) in replicas {
            self.writer.add_replica(ts, vs);
            self.writer_series += 1;
        }
        self.groups += 1;
        if self.writer.len() >= self.call_bytes {
            // A batch that filled one call will likely fill the next: size
            // its buffer once instead of growing it by doubling (which also
            // left each call's buffer about half empty).
            let next = self
                .call_bytes
                .saturating_add(self.call_bytes / 8)
                .min(64 << 20);
            self.finish_call(DedupInputWriter::with_capacity(next));
        }
    }

    /// Closes the current call; `next` is the writer of the one after.
    fn finish_call(&mut self, next: DedupInputWriter) {
        let w = std::mem::replace(&mut self.writer, next);
        let groups = w.groups() as usize;
        self.calls
            .push((w.finish(), groups, std::mem::take(&mut self.writer_series)));
    }

    /// The calls to make, in order; at least one (an empty batch is one call
    /// with no groups).
    fn into_calls(mut self) -> Vec<(Vec<u8>, usize, usize)> {
        if !self.writer.is_empty() || self.calls.is_empty() {
            self.finish_call(DedupInputWriter::with_capacity(0));
        }
        self.calls
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }
}

/// One slot's plugin for the duration of a query.
pub struct Session {
    plugin: Arc<Plugin>,
    native: Option<Arc<Native>>,
    instance: Option<Instance>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("plugin", &self.plugin)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(plugin: Arc<Plugin>, native: Option<Arc<Native>>) -> Self {
        Session {
            plugin,
            native,
            instance: None,
        }
    }

    /// The plugin serving this session.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Instantiates (and configures) the session's instance now, so the
    /// first call does not pay for it. Calls instantiate on demand anyway.
    pub fn prepare(&mut self) -> Result<(), CallError> {
        if self.instance.is_none() {
            self.instance = Some(self.plugin.instantiate()?);
        }
        Ok(())
    }

    /// Runs `f` against a live instance; any failure discards the instance.
    fn run<R>(
        &mut self,
        f: impl FnOnce(&Plugin, &mut Instance) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let instance = match self.instance.take() {
            Some(i) => i,
            None => self.plugin.instantiate()?,
        };
        let mut instance = instance;
        let r = f(&self.plugin, &mut instance);
        if r.is_ok() {
            self.instance = Some(instance);
        }
        r
    }

    /// Applies the failure policy: the native result with a warning, or the error.
    fn fail<T>(
        &self,
        e: CallError,
        native: impl FnOnce(&Native) -> T,
    ) -> Result<Outcome<T>, CallError> {
        match (self.plugin.failure_policy, &self.native) {
            (FailurePolicy::Fallback, Some(n)) => {
                self.plugin.metrics.fallback(&self.plugin);
                tracing::warn!(error = %e, fallback = n.name(), "policy plugin failed; using the native built-in");
                let warning = format!("{e}; the native {} built-in was used instead", n.name());
                Ok(Outcome {
                    value: native(n),
                    warning: Some(warning),
                })
            }
            _ => Err(e),
        }
    }

    /// Deduplicates each group of `batch` into one series. If any call
    /// fails, the failure policy applies to the whole batch.
    pub fn dedup(
        &mut self,
        batch: DedupBatch,
        hints: &DedupHints,
    ) -> Result<Outcome<Vec<Series>>, CallError> {
        let total = batch.groups();
        let calls = batch.into_calls();
        let wit_hints = wit::dedup::exports::sluice::policy::dedup::QueryHints {
            func: hints.func.clone(),
            step_ms: hints.step_ms,
            range_ms: hints.range_ms,
            start_ms: hints.start_ms,
            end_ms: hints.end_ms,
        };
        let mut value = Vec::with_capacity(total);
        for (input, groups, series_in) in &calls {
            let start = Instant::now();
            let r = self.run(|p, inst| {
                let out = p.call(inst, |store, i| match i {
                    Inst::Dedup(d) => d.sluice_policy_dedup().call_dedup(store, input, &wit_hints),
                    _ => Err(wasmtime::format_err!("slot does not hold a dedup plugin")),
                })?;
                let out = out.map_err(|m| p.plugin_error(m))?;
                p.check_output(out.len())?;
                sluice_policy_abi::decode_dedup_output(&out, *groups)
                    .map_err(|e| p.invalid_output(e.0))
            });
            self.plugin.record(
                start,
                &r.as_ref()
                    .map(|v| (*series_in, v.len()))
                    .map_err(Clone::clone),
            );
            match r {
                Ok(v) => value.extend(v),
                Err(e) => {
                    let func = hints.func.clone();
                    return self.fail(e, |n| {
                        let groups: Vec<Vec<Series>> = calls
                            .iter()
                            .flat_map(|(input, _, _)| {
                                sluice_policy_abi::decode_dedup_input(input).unwrap_or_default()
                            })
                            .collect();
                        n.dedup(&groups, &func)
                    });
                }
            }
        }
        Ok(Outcome {
            value,
            warning: None,
        })
    }

    /// Relabels each label set; `None` means dropped.
    pub fn relabel(
        &mut self,
        sets: &[LabelPairs],
    ) -> Result<Outcome<Vec<Option<LabelPairs>>>, CallError> {
        let input = sluice_policy_abi::encode_relabel_input(sets);
        let start = Instant::now();
        let r = self.run(|p, inst| {
            let out = p.call(inst, |store, i| match i {
                Inst::Relabel(d) => d.sluice_policy_relabel().call_relabel(store, &input),
                _ => Err(wasmtime::format_err!("slot does not hold a relabel plugin")),
            })?;
            let out = out.map_err(|m| p.plugin_error(m))?;
            p.check_output(out.len())?;
            sluice_policy_abi::decode_relabel_output(&out, sets.len())
                .map_err(|e| p.invalid_output(e.0))
        });
        let counts = r
            .as_ref()
            .map(|v| (sets.len(), v.iter().filter(|s| s.is_some()).count()));
        self.plugin.record(start, &counts.map_err(Clone::clone));
        match r {
            Ok(value) => Ok(Outcome {
                value,
                warning: None,
            }),
            Err(e) => self.fail(e, |n| n.relabel(sets)),
        }
    }

    /// One retention decision per block.
    pub fn retain(
        &mut self,
        blocks: &[retention::BlockInfo],
        now_ms: i64,
    ) -> Result<Outcome<Vec<retention::Decision>>, CallError> {
        use wit::retention::exports::sluice::policy::retention::BlockMeta;
        let input: Vec<BlockMeta> = blocks
            .iter()
            .map(|b| BlockMeta {
                ulid: b.ulid.clone(),
                min_time: b.min_time,
                max_time: b.max_time,
                resolution: b.resolution,
                labels: b.labels.clone(),
                level: b.level,
            })
            .collect();
        let start = Instant::now();
        let r = self.run(|p, inst| {
            let out = p.call(inst, |store, i| match i {
                Inst::Retention(d) => d
                    .sluice_policy_retention()
                    .call_retain(store, &input, now_ms),
                _ => Err(wasmtime::format_err!(
                    "slot does not hold a retention plugin"
                )),
            })?;
            let out = out.map_err(|m| p.plugin_error(m))?;
            if out.len() != blocks.len() {
                return Err(p.invalid_output(format!(
                    "{} decisions for {} blocks",
                    out.len(),
                    blocks.len()
                )));
            }
            let size: usize = out.iter().map(|d| d.reason.len() + 1).sum();
            p.check_output(size)?;
            Ok(out
                .into_iter()
                .map(|d| retention::Decision {
                    delete: d.delete,
                    reason: d.reason,
                })
                .collect::<Vec<_>>())
        });
        self.plugin.record(
            start,
            &r.as_ref()
                .map(|v| (blocks.len(), v.len()))
                .map_err(Clone::clone),
        );
        match r {
            Ok(value) => Ok(Outcome {
                value,
                warning: None,
            }),
            Err(e) => self.fail(e, |n| n.retain(blocks, now_ms)),
        }
    }

    /// Downsamples one series of one block.
    pub fn downsample(
        &mut self,
        raw: &Series,
        resolution: i64,
    ) -> Result<Outcome<Aggregates>, CallError> {
        use wit::downsample::sluice::policy::types::Samples;
        let input = Samples {
            timestamps: raw.timestamps.clone(),
            values: raw.values.clone(),
        };
        let start = Instant::now();
        let r = self.run(|p, inst| {
            let out = p.call(inst, |store, i| match i {
                Inst::Downsample(d) => d
                    .sluice_policy_downsample()
                    .call_downsample(store, &input, resolution),
                _ => Err(wasmtime::format_err!(
                    "slot does not hold a downsample plugin"
                )),
            })?;
            let out = out.map_err(|m| p.plugin_error(m))?;
            from_wit_aggregates(p, out)
        });
        self.plugin
            .record(start, &r.as_ref().map(|_| (1, 1)).map_err(Clone::clone));
        match r {
            Ok(value) => Ok(Outcome {
                value,
                warning: None,
            }),
            Err(e) => self.fail(e, |n| n.downsample(raw, resolution)),
        }
    }

    /// Re-aggregates downsampled data into coarser windows.
    pub fn downsample_aggregates(
        &mut self,
        input: &Aggregates,
        resolution: i64,
    ) -> Result<Outcome<Aggregates>, CallError> {
        let wit_in = to_wit_aggregates(input);
        let start = Instant::now();
        let r = self.run(|p, inst| {
            let out = p.call(inst, |store, i| match i {
                Inst::Downsample(d) => d
                    .sluice_policy_downsample()
                    .call_downsample_aggregates(store, &wit_in, resolution),
                _ => Err(wasmtime::format_err!(
                    "slot does not hold a downsample plugin"
                )),
            })?;
            let out = out.map_err(|m| p.plugin_error(m))?;
            from_wit_aggregates(p, out)
        });
        self.plugin
            .record(start, &r.as_ref().map(|_| (1, 1)).map_err(Clone::clone));
        match r {
            Ok(value) => Ok(Outcome {
                value,
                warning: None,
            }),
            Err(e) => self.fail(e, |n| n.downsample_aggregates(input, resolution)),
        }
    }
}

type WitAggregates = wit::downsample::exports::sluice::policy::downsample::Aggregates;
type WitSamples = wit::downsample::sluice::policy::types::Samples;

fn to_wit_aggregates(a: &Aggregates) -> WitAggregates {
    let s = |x: &Series| WitSamples {
        timestamps: x.timestamps.clone(),
        values: x.values.clone(),
    };
    WitAggregates {
        count: s(&a.count),
        sum: s(&a.sum),
        min: s(&a.min),
        max: s(&a.max),
        counter: s(&a.counter),
    }
}

fn from_wit_aggregates(p: &Plugin, a: WitAggregates) -> Result<Aggregates, CallError> {
    let size: usize = [&a.count, &a.sum, &a.min, &a.max, &a.counter]
        .iter()
        .map(|s| 16 * s.timestamps.len())
        .sum();
    p.check_output(size)?;
    let conv = |name: &str, s: WitSamples| -> Result<Series, CallError> {
        if s.timestamps.len() != s.values.len() {
            return Err(p.invalid_output(format!(
                "{name}: {} timestamps but {} values",
                s.timestamps.len(),
                s.values.len()
            )));
        }
        // The counter aggregate repeats its last timestamp (the last raw value);
        // every other aggregate strictly ascends.
        let ok = if name == "counter" {
            s.timestamps.windows(2).all(|w| w[0] <= w[1])
        } else {
            s.timestamps.windows(2).all(|w| w[0] < w[1])
        };
        if !ok {
            return Err(p.invalid_output(format!("{name}: timestamps out of order")));
        }
        Ok(Series {
            timestamps: s.timestamps,
            values: s.values,
        })
    };
    Ok(Aggregates {
        count: conv("count", a.count)?,
        sum: conv("sum", a.sum)?,
        min: conv("min", a.min)?,
        max: conv("max", a.max)?,
        counter: conv("counter", a.counter)?,
    })
}
