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

use wasmtime::component::WasmList;
use wit::dedup::exports::sluice::policy::dedup::QueryHints as WitHints;

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

/// A batch of replica groups for one dedup session call.
///
/// The batch owns the decoded replicas (a query moves them in, nothing is
/// copied) and is encoded for the plugin call by call: each call's input —
/// about [`DEDUP_CALL_BYTES`] of whole groups (a larger group goes alone) —
/// is written into one reused buffer just before the call, so the encode,
/// the copy into guest memory and the guest's reads all stay in cache and
/// the guest reuses the same few hundred KiB of its memory; the merged
/// series are decoded straight from guest memory. With 10,000 groups × 2
/// replicas × 120 samples (`cargo bench -p sluice --bench policy`) that takes
/// ~21 ms against ~15–17 ms for the native penalty (1.2–1.4×); encoding the
/// whole query up front, as this did before, touched tens of MiB of fresh
/// memory twice and took ~32 ms (2.0–2.3×). Calls of 128–512 KiB are
/// fastest; one call for everything is 4–5× native. The slot's deadline and
/// output cap apply per call.
#[derive(Debug)]
pub struct DedupBatch {
    replicas: Vec<Series>,
    /// End (exclusive) in `replicas` of each group.
    ends: Vec<usize>,
    call_bytes: usize,
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

    /// A batch whose calls carry about `bytes` of input each (`usize::MAX`:
    /// everything in one call).
    pub fn with_call_bytes(bytes: usize) -> Self {
        DedupBatch {
            replicas: Vec::new(),
            ends: Vec::new(),
            call_bytes: bytes.max(1),
        }
    }

    /// Adds one group, taking ownership of its replicas.
    pub fn push_owned_group(&mut self, replicas: impl IntoIterator<Item = Series>) {
        self.replicas.extend(replicas);
        self.ends.push(self.replicas.len());
    }

    /// Adds one group, copying its replicas' columns (extra items of the
    /// longer column are ignored).
    pub fn push_group<'a>(&mut self, replicas: impl IntoIterator<Item = (&'a [i64], &'a [f64])>) {
        self.push_owned_group(replicas.into_iter().map(|(ts, vs)| {
            let n = ts.len().min(vs.len());
            Series::new(ts[..n].to_vec(), vs[..n].to_vec())
        }));
    }

    /// The replicas of group `i`.
    fn group(&self, i: usize) -> &[Series] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.replicas[start..self.ends[i]]
    }

    /// The groups, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[Series]> + '_ {
        (0..self.ends.len()).map(|i| self.group(i))
    }

    /// Encoded size of group `i` in the dedup input layout (sdk/ABI.md).
    fn group_bytes(&self, i: usize) -> usize {
        4 + self
            .group(i)
            .iter()
            .map(|s| 4 + 16 * s.timestamps.len().min(s.values.len()))
            .sum::<usize>()
    }

    /// The calls to make, as ranges of groups; at least one (an empty batch
    /// is one call with no groups).
    fn calls(&self) -> Vec<std::ops::Range<usize>> {
        let mut calls = Vec::new();
        let (mut start, mut bytes) = (0, 4usize);
        for i in 0..self.ends.len() {
            bytes += self.group_bytes(i);
            if bytes >= self.call_bytes {
                calls.push(start..i + 1);
                (start, bytes) = (i + 1, 4);
            }
        }
        if start < self.ends.len() || calls.is_empty() {
            calls.push(start..self.ends.len());
        }
        calls
    }

    pub fn groups(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
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
        batch: &DedupBatch,
        hints: &DedupHints,
    ) -> Result<Outcome<Vec<Series>>, CallError> {
        let wit_hints = WitHints {
            func: hints.func.clone(),
            step_ms: hints.step_ms,
            range_ms: hints.range_ms,
            start_ms: hints.start_ms,
            end_ms: hints.end_ms,
        };
        let calls = batch.calls();
        let largest = calls
            .iter()
            .map(|c| 4 + c.clone().map(|i| batch.group_bytes(i)).sum::<usize>())
            .max()
            .unwrap_or(4);
        let mut writer = DedupInputWriter::with_capacity(largest);
        let mut value = Vec::with_capacity(batch.groups());
        for call in calls {
            writer.clear();
            let mut series_in = 0;
            for g in call.clone() {
                writer.begin_group();
                for s in batch.group(g) {
                    writer.add_replica(&s.timestamps, &s.values);
                    series_in += 1;
                }
            }
            let input = writer.bytes();
            let groups = call.len();
            let start = Instant::now();
            let r = self.run(|p, inst| {
                let out = p.call(inst, |store, i| match i {
                    Inst::Dedup(_, f) => {
                        // The merged series are decoded where the guest
                        // left them, before anything else runs in it.
                        let f = f.typed::<(&[u8], &WitHints), (Result<WasmList<u8>, String>,)>(
                            &*store,
                        )?;
                        let (out,) = f.call(&mut *store, (input, &wit_hints))?;
                        Ok(out.map(|list| {
                            let bytes = list.as_le_slice(&*store);
                            p.check_output(bytes.len())?;
                            sluice_policy_abi::decode_dedup_output(bytes, groups)
                                .map_err(|e| p.invalid_output(e.0))
                        }))
                    }
                    _ => Err(wasmtime::format_err!("slot does not hold a dedup plugin")),
                })?;
                out.map_err(|m| p.plugin_error(m))?
            });
            self.plugin.record(
                start,
                &r.as_ref()
                    .map(|v| (series_in, v.len()))
                    .map_err(Clone::clone),
            );
            match r {
                Ok(v) => value.extend(v),
                Err(e) => return self.fail(e, |n| n.dedup(batch.iter(), &hints.func)),
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
