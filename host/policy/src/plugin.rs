//! One loaded plugin: its compiled component behind a pre-instantiated
//! template for its kind, and sessions that instantiate it, enforce the
//! per-call deadline, memory cap and output cap, and classify failures.
//! A trapped instance is discarded, never called again.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, ComponentExportIndex, Func, Linker};
use wasmtime::{ResourceLimiter, Store, Trap};

use super::PolicyError;
use super::config::{FailurePolicy, Grants, Limits, PluginSource, PolicyKind};
use super::engine::{CompileSource, EPOCH_TICK, PolicyEngine};
use super::metrics::PolicyMetrics;

/// Host bindings generated from `sdk/wit/policy.wit`, one module per world.
pub(crate) mod wit {
    pub mod dedup {
        wasmtime::component::bindgen!({ world: "dedup-policy", path: "../../sdk/wit" });
    }
    pub mod relabel {
        wasmtime::component::bindgen!({ world: "relabel-policy", path: "../../sdk/wit" });
    }
    pub mod retention {
        wasmtime::component::bindgen!({ world: "retention-policy", path: "../../sdk/wit" });
    }
    pub mod downsample {
        wasmtime::component::bindgen!({ world: "downsample-policy", path: "../../sdk/wit" });
    }
}

/// The dedup interface's export name.
const DEDUP_INTERFACE: &str = "sluice:policy/dedup@0.1.0";

/// The index of the dedup interface's bulk `dedup` function.
fn dedup_export(component: &Component) -> Option<ComponentExportIndex> {
    let (_, iface) = component.get_export(None, DEDUP_INTERFACE)?;
    let (_, func) = component.get_export(Some(&iface), "dedup")?;
    Some(func)
}

/// The WIT package version this host implements.
pub const WIT_PACKAGE_VERSION: &str = "0.1.0";

/// Interfaces a `wasm32-wasip2` Rust guest imports through std even when it
/// never uses them. They are linked as traps: calling one fails the call
/// (for a slot with `grants:`, WASI serves them with nothing behind them:
/// empty stdin, discarded stdout and stderr, only the granted variables).
/// Two more are allowed: our own type-only `sluice:policy/types` interface,
/// and `wasi:random/insecure-seed`, which std's `HashMap` asks for and which
/// gets a fixed seed (it grants nothing). Anything else a plugin imports
/// (filesystem, sockets, clocks, random, ...) is a capability no slot grants,
/// and the plugin is rejected at load.
const ALLOWED_IMPORTS: [&str; 9] = [
    "sluice:policy/types@",
    "wasi:random/insecure-seed@",
    "wasi:io/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
];

/// Why one call into a plugin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, out-of-bounds, a denied import).
    Trap,
    /// The call ran past the slot's deadline.
    Timeout,
    /// The instance tried to grow memory past the slot's cap.
    Oom,
    /// The output was malformed, too large, or inconsistent with the input.
    InvalidOutput,
    /// The guest returned an error value.
    PluginError,
    /// No instance could be created (pool exhausted, configure failed).
    Instantiate,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::Oom,
        FailureKind::InvalidOutput,
        FailureKind::PluginError,
        FailureKind::Instantiate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Oom => "oom",
            FailureKind::InvalidOutput => "invalid_output",
            FailureKind::PluginError => "plugin_error",
            FailureKind::Instantiate => "instantiate",
        }
    }
}

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy plugin {plugin} (slot {slot}): {} : {message}", kind.as_str())]
pub struct CallError {
    pub slot: String,
    pub plugin: String,
    pub kind: FailureKind,
    pub message: String,
}

/// Per-store state: the memory limiter.
pub(crate) struct HostState {
    memory_cap: usize,
    oom: Option<usize>,
    /// WASI state of a plugin whose slot grants capabilities.
    wasi: Option<Box<WasiState>>,
}

pub(crate) struct WasiState {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime_wasi::ResourceTable,
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        // Only linked for slots with grants, whose stores always carry a
        // context; an empty one (no variables, no directories, no network)
        // would answer otherwise.
        let w = self.wasi.get_or_insert_with(|| {
            Box::new(WasiState {
                ctx: wasmtime_wasi::WasiCtx::builder().build(),
                table: wasmtime_wasi::ResourceTable::new(),
            })
        });
        wasmtime_wasi::WasiCtxView {
            ctx: &mut w.ctx,
            table: &mut w.table,
        }
    }
}

/// The WASI context of one instance of a plugin granted `grants`.
fn wasi_state(grants: &Grants) -> wasmtime::Result<WasiState> {
    let mut b = wasmtime_wasi::WasiCtx::builder();
    b.insecure_random_seed(INSECURE_SEED);
    for (k, v) in &grants.environment {
        b.env(k, v);
    }
    for (host, guest) in &grants.filesystem {
        b.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)?;
    }
    b.allow_ip_name_lookup(false);
    if grants.network.is_empty() {
        b.allow_tcp(false).allow_udp(false);
    } else {
        let allowed = grants.network.clone();
        b.allow_tcp(true).allow_udp(true);
        b.socket_addr_check(move |addr, usage| {
            use wasmtime_wasi::sockets::SocketAddrUse;
            let ok = match usage {
                // The implicit local bind of an outgoing socket.
                SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                    addr.ip().is_unspecified() && addr.port() == 0
                }
                _ => allowed.contains(&addr),
            };
            Box::pin(async move { ok })
        });
    }
    Ok(WasiState {
        ctx: b.build(),
        table: wasmtime_wasi::ResourceTable::new(),
    })
}

/// The constant `wasi:random/insecure-seed` every plugin gets: std's
/// `HashMap` asks for one, and a constant reveals nothing.
const INSECURE_SEED: u128 = 0x5eed_5eed_5eed_5eed_0000_0000_0000_0051;

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.oom = Some(desired);
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (the instance asked for {desired} bytes)",
                self.memory_cap
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// `info()` as the plugin reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub abi: String,
}

enum Pre {
    /// Dedup also keeps the index of its bulk `dedup` export: the host calls
    /// it as a plain typed function whose result is read in guest memory
    /// (see [`Inst::Dedup`]).
    Dedup(wit::dedup::DedupPolicyPre<HostState>, ComponentExportIndex),
    Relabel(wit::relabel::RelabelPolicyPre<HostState>),
    Retention(wit::retention::RetentionPolicyPre<HostState>),
    Downsample(wit::downsample::DownsamplePolicyPre<HostState>),
}

pub(crate) enum Inst {
    /// The bindings, plus the `dedup` export as an untyped [`Func`], which
    /// the session types with a `WasmList<u8>` result: the merged series are
    /// then decoded straight from guest memory, without first copying the
    /// output into a host buffer.
    Dedup(wit::dedup::DedupPolicy, Func),
    Relabel(wit::relabel::RelabelPolicy),
    Retention(wit::retention::RetentionPolicy),
    Downsample(wit::downsample::DownsamplePolicy),
}

/// A live instance with its store.
pub(crate) struct Instance {
    pub(crate) store: Store<HostState>,
    pub(crate) inst: Inst,
}

/// A plugin ready to serve a slot.
pub struct Plugin {
    pub slot: String,
    pub kind: PolicyKind,
    pub info: PluginInfo,
    pub sha256: String,
    pub source: PluginSource,
    pub limits: Limits,
    pub failure_policy: FailurePolicy,
    pub compile_source: CompileSource,
    pub(crate) config_json: String,
    /// Capabilities granted by the slot.
    pub grants: Grants,
    engine: Arc<PolicyEngine>,
    pre: Pre,
    pub(crate) metrics: PolicyMetrics,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("slot", &self.slot)
            .field("info", &self.info)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Finds the `sluice:policy/<kind>@<version>` export of a component.
pub fn exported_policy(
    engine: &PolicyEngine,
    component: &Component,
) -> Result<(PolicyKind, String), PolicyError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine.engine()) {
        if let Some(rest) = name.strip_prefix("sluice:policy/") {
            found.push(rest.to_string());
        }
    }
    let Some(first) = found.first() else {
        return Err(PolicyError::Invalid("component exports no sluice:policy interface (dedup, relabel, retention or downsample)".into()));
    };
    if found.len() > 1 {
        return Err(PolicyError::Invalid(format!(
            "component exports several policy interfaces: {}",
            found.join(", ")
        )));
    }
    let (iface, version) = first.split_once('@').unwrap_or((first.as_str(), ""));
    let kind = match iface {
        "dedup" => PolicyKind::Dedup,
        "relabel" => PolicyKind::Relabel,
        "retention" => PolicyKind::Retention,
        "downsample" => PolicyKind::Downsample,
        other => {
            return Err(PolicyError::Invalid(format!(
                "unknown policy interface sluice:policy/{other}"
            )));
        }
    };
    Ok((kind, version.to_string()))
}

/// How the sandbox links one import of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportLink {
    /// `sluice:policy/types`: type definitions only, nothing to call.
    Types,
    /// `wasi:random/insecure-seed`: a constant seed (std's `HashMap` asks for one).
    ConstantSeed,
    /// An interface std imports without using it: linked, but calling it traps.
    Trap,
    /// A capability the slot grants (`grants:` in policies.yml): served by WASI.
    Granted,
    /// A capability the slot does not grant: the plugin is refused at load.
    Refused,
}

/// The `grants:` capability an import needs, if it is one.
pub fn capability_of(name: &str) -> Option<&'static str> {
    [
        ("wasi:clocks/", "clock"),
        ("wasi:random/random@", "random"),
        ("wasi:random/insecure@", "random"),
        ("wasi:cli/environment@", "environment"),
        ("wasi:filesystem/", "filesystem"),
        ("wasi:sockets/", "network"),
    ]
    .into_iter()
    .find(|(p, _)| name.starts_with(p))
    .map(|(_, c)| c)
}

/// How the sandbox links the import `name` (a component import name such as
/// `wasi:filesystem/types@0.2.6`) for a slot granted `grants`.
pub fn import_link(name: &str, grants: &Grants) -> ImportLink {
    if name.starts_with("sluice:policy/types@") {
        ImportLink::Types
    } else if name.starts_with("wasi:random/insecure-seed@") {
        ImportLink::ConstantSeed
    } else if capability_of(name).is_some_and(|c| grants.names().contains(&c)) {
        ImportLink::Granted
    } else if ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)) {
        ImportLink::Trap
    } else {
        ImportLink::Refused
    }
}

/// The names of every import of a component, in its order.
pub fn import_names(engine: &PolicyEngine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The names of every export of a component, in its order.
pub fn export_names(engine: &PolicyEngine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect()
}

fn check_imports(
    engine: &PolicyEngine,
    component: &Component,
    grants: &Grants,
) -> Result<(), PolicyError> {
    let refused: Vec<String> = import_names(engine, component)
        .into_iter()
        .filter(|n| import_link(n, grants) == ImportLink::Refused)
        .collect();
    if !refused.is_empty() {
        let mut needs: Vec<&str> = refused.iter().filter_map(|n| capability_of(n)).collect();
        needs.sort_unstable();
        needs.dedup();
        let hint = if needs.is_empty() {
            String::new()
        } else {
            format!(
                " (grant it in the slot's `grants:` if you mean to: {})",
                needs.join(", ")
            )
        };
        return Err(PolicyError::Capability(format!(
            "plugin imports {}, which {} not granted: policy plugins run without filesystem, network, clock, random or environment access{hint}",
            refused.join(", "),
            if refused.len() == 1 { "is" } else { "are" }
        )));
    }
    Ok(())
}

/// Everything [`Plugin::build`] needs besides the compiled component.
pub struct BuildSpec {
    pub slot: String,
    pub kind: PolicyKind,
    pub source: PluginSource,
    pub limits: Limits,
    pub failure_policy: FailurePolicy,
    pub config_json: String,
    pub grants: Grants,
}

impl Plugin {
    /// Validates a compiled component for a slot: capabilities, kind, ABI
    /// version, instantiation, `configure` and `info`.
    pub(crate) fn build(
        engine: &Arc<PolicyEngine>,
        component: Component,
        sha256: String,
        compile_source: CompileSource,
        spec: BuildSpec,
        metrics: PolicyMetrics,
    ) -> Result<Plugin, PolicyError> {
        let mut plugin = Self::prepare(engine, component, sha256, compile_source, spec, metrics)?;
        // A trial instance proves the plugin instantiates, accepts its
        // configuration and speaks a compatible ABI.
        let mut inst = plugin
            .instantiate()
            .map_err(|e| PolicyError::Rejected(e.to_string()))?;
        let info = plugin
            .call_info(&mut inst)
            .map_err(|e| PolicyError::Rejected(e.to_string()))?;
        sluice_policy_abi::abi_compatible(&info.abi).map_err(PolicyError::Abi)?;
        plugin.info = info;
        Ok(plugin)
    }

    /// The static checks of [`build`](Self::build) (capabilities, kind,
    /// interface version) and the pre-instantiated template, without running
    /// any of the plugin's code. `info` is left empty.
    pub fn prepare(
        engine: &Arc<PolicyEngine>,
        component: Component,
        sha256: String,
        compile_source: CompileSource,
        spec: BuildSpec,
        metrics: PolicyMetrics,
    ) -> Result<Plugin, PolicyError> {
        check_imports(engine, &component, &spec.grants)?;
        let (kind, version) = exported_policy(engine, &component)?;
        if kind != spec.kind {
            return Err(PolicyError::Invalid(format!(
                "slot {} holds {} plugins but this component is a {kind} plugin",
                spec.slot, spec.kind
            )));
        }
        let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        if version.is_empty() || major_minor(&version) != major_minor(WIT_PACKAGE_VERSION) {
            return Err(PolicyError::Abi(format!(
                "plugin exports sluice:policy/{kind}@{version}; this host speaks sluice:policy@{WIT_PACKAGE_VERSION}"
            )));
        }
        let mut linker: Linker<HostState> = Linker::new(engine.engine());
        let link = |e: wasmtime::Error| PolicyError::Invalid(format!("linking: {e:#}"));
        if !spec.grants.is_empty() {
            // Granted capabilities are served by WASI (which also provides
            // the constant seed); the import check above already refused
            // every capability the slot does not grant.
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
        }
        let seed_imports: Vec<String> = component
            .component_type()
            .imports(engine.engine())
            .map(|(n, _)| n.to_string())
            .filter(|n| n.starts_with("wasi:random/insecure-seed@") && spec.grants.is_empty())
            .collect();
        for name in seed_imports {
            // A constant seed: std's HashMap needs one, and it reveals nothing.
            linker
                .instance(&name)
                .and_then(|mut i| {
                    i.func_wrap("insecure-seed", |_, (): ()| {
                        Ok((((INSECURE_SEED >> 64) as u64, INSECURE_SEED as u64),))
                    })
                })
                .map_err(link)?;
        }
        if spec.grants.is_empty() {
            linker
                .define_unknown_imports_as_traps(&component)
                .map_err(link)?;
        } else {
            // WASI serves every `wasi:` import (by semver-compatible
            // version, which the trap filler does not look up); what is left
            // is our type-only interface.
            for name in import_names(engine, &component) {
                if name.starts_with("sluice:policy/types@") {
                    linker.instance(&name).map_err(link)?;
                }
            }
        }
        let ipre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Invalid(format!("linking: {e:#}")))?;
        let abi = |e: wasmtime::Error| {
            PolicyError::Abi(format!("component does not match the {kind} world: {e:#}"))
        };
        let pre = match kind {
            PolicyKind::Dedup => {
                let func = dedup_export(&component).ok_or_else(|| {
                    PolicyError::Abi(format!(
                        "component does not match the {kind} world: no export {DEDUP_INTERFACE}#dedup"
                    ))
                })?;
                Pre::Dedup(wit::dedup::DedupPolicyPre::new(ipre).map_err(abi)?, func)
            }
            PolicyKind::Relabel => {
                Pre::Relabel(wit::relabel::RelabelPolicyPre::new(ipre).map_err(abi)?)
            }
            PolicyKind::Retention => {
                Pre::Retention(wit::retention::RetentionPolicyPre::new(ipre).map_err(abi)?)
            }
            PolicyKind::Downsample => {
                Pre::Downsample(wit::downsample::DownsamplePolicyPre::new(ipre).map_err(abi)?)
            }
        };
        Ok(Plugin {
            slot: spec.slot,
            kind,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                abi: String::new(),
            },
            sha256,
            source: spec.source,
            limits: spec.limits,
            failure_policy: spec.failure_policy,
            compile_source,
            config_json: spec.config_json,
            grants: spec.grants,
            engine: engine.clone(),
            pre,
            metrics,
        })
    }

    /// `info()` of a fresh instance that was not configured: what the plugin
    /// says about itself, even when it would reject the slot's config.
    pub fn probe_info(&self) -> Result<PluginInfo, CallError> {
        let mut inst = self.instantiate_unconfigured()?;
        self.call_info(&mut inst)
    }

    fn err(&self, kind: FailureKind, message: impl Into<String>) -> CallError {
        CallError {
            slot: self.slot.clone(),
            plugin: self.display_name(),
            kind,
            message: message.into(),
        }
    }

    /// Name for messages: the plugin's own name, or the slot before `info` is known.
    pub fn display_name(&self) -> String {
        if self.info.name.is_empty() {
            self.slot.clone()
        } else {
            self.info.name.clone()
        }
    }

    fn arm(&self, store: &mut Store<HostState>) {
        let ticks = (self.limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store.data_mut().oom = None;
    }

    fn classify(&self, e: wasmtime::Error, store: &Store<HostState>) -> CallError {
        if let Some(n) = store.data().oom {
            return self.err(
                FailureKind::Oom,
                format!(
                    "memory cap of {} bytes exceeded (asked for {n})",
                    self.limits.memory_bytes
                ),
            );
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => self.err(
                FailureKind::Timeout,
                format!("deadline of {:?} exceeded", self.limits.timeout),
            ),
            _ => self.err(FailureKind::Trap, format!("{e:#}")),
        }
    }

    /// A fresh instance from the pre-instantiated template, before `configure`.
    fn instantiate_unconfigured(&self) -> Result<Instance, CallError> {
        let mut store = Store::new(
            self.engine.engine(),
            HostState {
                memory_cap: usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX),
                oom: None,
                wasi: None,
            },
        );
        if !self.grants.is_empty() {
            let w = wasi_state(&self.grants).map_err(|e| {
                self.err(
                    FailureKind::Instantiate,
                    format!("granting capabilities: {e:#}"),
                )
            })?;
            store.data_mut().wasi = Some(Box::new(w));
        }
        store.limiter(|s| s);
        self.arm(&mut store);
        let inst = match &self.pre {
            Pre::Dedup(p, func) => p.instance_pre().instantiate(&mut store).and_then(|i| {
                let bindings = wit::dedup::DedupPolicy::new(&mut store, &i)?;
                let f = i
                    .get_func(&mut store, func)
                    .ok_or_else(|| wasmtime::format_err!("no {DEDUP_INTERFACE}#dedup export"))?;
                Ok(Inst::Dedup(bindings, f))
            }),
            Pre::Relabel(p) => p.instantiate(&mut store).map(Inst::Relabel),
            Pre::Retention(p) => p.instantiate(&mut store).map(Inst::Retention),
            Pre::Downsample(p) => p.instantiate(&mut store).map(Inst::Downsample),
        };
        let inst = inst.map_err(|e| {
            let mut c = self.classify(e, &store);
            if c.kind == FailureKind::Trap {
                c.kind = FailureKind::Instantiate;
            }
            c
        })?;
        Ok(Instance { store, inst })
    }

    /// A fresh, configured instance from the pre-instantiated template.
    pub(crate) fn instantiate(&self) -> Result<Instance, CallError> {
        let mut instance = self.instantiate_unconfigured()?;
        let config = self.config_json.clone();
        let r = self.call(&mut instance, |store, inst| match inst {
            Inst::Dedup(i, _) => i.sluice_policy_dedup().call_configure(store, &config),
            Inst::Relabel(i) => i.sluice_policy_relabel().call_configure(store, &config),
            Inst::Retention(i) => i.sluice_policy_retention().call_configure(store, &config),
            Inst::Downsample(i) => i.sluice_policy_downsample().call_configure(store, &config),
        });
        match r {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(msg)) => Err(self.err(
                FailureKind::Instantiate,
                format!("configure rejected the slot's config: {msg}"),
            )),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` on the instance under the slot's deadline and memory cap.
    pub(crate) fn call<R>(
        &self,
        instance: &mut Instance,
        f: impl FnOnce(&mut Store<HostState>, &Inst) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.arm(&mut instance.store);
        let Instance { store, inst } = instance;
        f(store, inst).map_err(|e| self.classify(e, store))
    }

    fn call_info(&self, instance: &mut Instance) -> Result<PluginInfo, CallError> {
        macro_rules! info {
            ($r:expr) => {
                $r.map(|i| PluginInfo {
                    name: i.name,
                    version: i.version,
                    abi: i.abi,
                })
            };
        }
        self.call(instance, |store, inst| match inst {
            Inst::Dedup(i, _) => info!(i.sluice_policy_dedup().call_info(store)),
            Inst::Relabel(i) => info!(i.sluice_policy_relabel().call_info(store)),
            Inst::Retention(i) => info!(i.sluice_policy_retention().call_info(store)),
            Inst::Downsample(i) => info!(i.sluice_policy_downsample().call_info(store)),
        })
    }

    /// Checks an output's size against the slot's cap.
    pub(crate) fn check_output(&self, len: usize) -> Result<(), CallError> {
        if len as u64 > self.limits.max_output_bytes {
            return Err(self.err(
                FailureKind::InvalidOutput,
                format!(
                    "output of {len} bytes exceeds the slot's max_output of {} bytes",
                    self.limits.max_output_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn invalid_output(&self, message: impl Into<String>) -> CallError {
        self.err(FailureKind::InvalidOutput, message)
    }

    pub(crate) fn plugin_error(&self, message: impl Into<String>) -> CallError {
        self.err(FailureKind::PluginError, message)
    }

    pub(crate) fn record(&self, start: Instant, result: &Result<(usize, usize), CallError>) {
        self.metrics
            .record(self, start.elapsed().as_secs_f64(), result);
    }
}
