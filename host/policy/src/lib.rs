//! policy owns the WebAssembly policy plugins: the wasmtime engine, loading
//! and validating plugins, the active policy set and its atomic hot swap,
//! per-call limits and failure policies, and per-plugin metrics.
//!
//! Invariants: a plugin gets no filesystem, network, clock, random or
//! environment access; a trapped instance is never called again; a new set
//! is published only after every plugin in it instantiated, accepted its
//! config and matched the ABI, otherwise the old set keeps serving; a query
//! holds the set it started with until it ends.

pub mod config;
pub mod engine;
mod metrics;
pub mod native;
pub mod plugin;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

pub use config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
pub use engine::{CompileSource, PolicyEngine, sha256_hex};
pub use metrics::PolicyMetrics;
pub use native::Native;
pub use plugin::{CallError, FailureKind, ImportLink, Plugin, PluginInfo, import_link};
pub use session::{DEDUP_CALL_BYTES, DedupBatch, DedupHints, Outcome, Session};

use sluice_metrics::Metrics;

/// Built-in plugins compiled from `plugins/` by the build script.
mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// The module bytes of a built-in plugin.
pub fn builtin_module(name: &str) -> Option<&'static [u8]> {
    builtin::BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// Names of the built-in plugins.
pub fn builtin_names() -> Vec<&'static str> {
    builtin::BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect()
}

/// Errors of loading plugins and policy sets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("wasm engine: {0}")]
    Engine(String),
    #[error("invalid plugin: {0}")]
    Invalid(String),
    #[error("plugin needs a capability that is not granted: {0}")]
    Capability(String),
    #[error("ABI mismatch: {0}")]
    Abi(String),
    #[error("plugin rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Config(String),
    #[error("no slot named {0:?} is loaded")]
    NoSuchSlot(String),
    #[error("slot {slot} holds a {actual} plugin, not a {wanted} plugin")]
    WrongKind {
        slot: String,
        actual: PolicyKind,
        wanted: PolicyKind,
    },
}

/// A slot of the active set.
#[derive(Debug)]
pub struct LoadedSlot {
    pub config: SlotConfig,
    pub plugin: Arc<Plugin>,
    pub native: Option<Arc<Native>>,
}

/// An immutable set of loaded slots. Queries take one at admission.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub generation: u64,
    /// Unix seconds when the set was published.
    pub loaded_at: i64,
    pub slots: BTreeMap<String, Arc<LoadedSlot>>,
}

impl PolicySet {
    /// A session on slot `name`, which must hold a plugin of `kind`.
    pub fn session(&self, name: &str, kind: PolicyKind) -> Result<Session, PolicyError> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| PolicyError::NoSuchSlot(name.to_string()))?;
        if slot.plugin.kind != kind {
            return Err(PolicyError::WrongKind {
                slot: name.to_string(),
                actual: slot.plugin.kind,
                wanted: kind,
            });
        }
        Ok(Session::new(slot.plugin.clone(), slot.native.clone()))
    }

    /// Names of the slots holding dedup plugins.
    pub fn dedup_slots(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.plugin.kind == PolicyKind::Dedup)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Holds the active policy set and swaps it atomically.
pub struct PolicyRegistry {
    engine: Arc<PolicyEngine>,
    current: ArcSwap<PolicySet>,
    metrics: PolicyMetrics,
    generation: AtomicU64,
    /// Serialises loads so two reloads never interleave.
    load_lock: Mutex<()>,
    /// sha256 digests pinned by the configuration, per slot.
    pins: Mutex<BTreeMap<String, String>>,
    last_error: Mutex<Option<String>>,
    /// Slot configs of the active set plus modules uploaded through the admin API.
    slot_configs: Mutex<Vec<SlotConfig>>,
    uploaded: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for PolicyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRegistry")
            .field("generation", &self.generation)
            .finish()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl PolicyRegistry {
    /// A registry with an empty set.
    pub fn new(engine: Arc<PolicyEngine>, metrics: &Metrics) -> Arc<Self> {
        Arc::new(PolicyRegistry {
            engine,
            current: ArcSwap::from_pointee(PolicySet::default()),
            metrics: PolicyMetrics::new(metrics),
            generation: AtomicU64::new(0),
            load_lock: Mutex::new(()),
            pins: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            slot_configs: Mutex::new(Vec::new()),
            uploaded: Mutex::new(HashMap::new()),
        })
    }

    /// The active set; hold it for the whole query.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The error of the last rejected load, if the last load failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn module_bytes(&self, slot: &SlotConfig) -> Result<Arc<Vec<u8>>, PolicyError> {
        match &slot.source {
            PluginSource::Builtin(name) => builtin_module(name)
                .map(|b| Arc::new(b.to_vec()))
                .ok_or_else(|| {
                    PolicyError::Config(format!(
                        "slot {}: no built-in plugin named {name:?}",
                        slot.name
                    ))
                }),
            PluginSource::File(path) => std::fs::read(path).map(Arc::new).map_err(|e| {
                PolicyError::Config(format!(
                    "slot {}: reading {}: {e}",
                    slot.name,
                    path.display()
                ))
            }),
            PluginSource::Bytes => self
                .uploaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&slot.name)
                .cloned()
                .ok_or_else(|| {
                    PolicyError::Config(format!("slot {}: no uploaded module", slot.name))
                }),
        }
    }

    /// Loads and validates one slot.
    fn build_slot(&self, slot: &SlotConfig, bytes: &[u8]) -> Result<LoadedSlot, PolicyError> {
        let compiled = self.engine.compile(bytes)?;
        if let Some(pin) = &slot.sha256
            && *pin != compiled.sha256
        {
            return Err(PolicyError::Config(format!(
                "slot {}: sha256 mismatch: pinned {pin}, module is {}",
                slot.name, compiled.sha256
            )));
        }
        let spec = plugin::BuildSpec {
            slot: slot.name.clone(),
            kind: slot.kind,
            source: slot.source.clone(),
            limits: slot.limits,
            failure_policy: slot.failure_policy,
            config_json: slot.config.to_string(),
            grants: slot.grants.clone(),
        };
        let plugin = Plugin::build(
            &self.engine,
            compiled.component,
            compiled.sha256,
            compiled.source,
            spec,
            self.metrics.clone(),
        )
        .map_err(|e| PolicyError::Config(format!("slot {}: {e}", slot.name)))?;
        let native = match Native::for_slot(slot) {
            Ok(n) => Some(Arc::new(n)),
            Err(e) if slot.failure_policy == FailurePolicy::Fallback => {
                return Err(PolicyError::Config(format!(
                    "slot {}: failure_policy fallback needs a config the native built-in accepts: {e}",
                    slot.name
                )));
            }
            Err(_) => None,
        };
        tracing::info!(slot = %slot.name, plugin = %plugin.info.name, version = %plugin.info.version, sha256 = %plugin.sha256,
            compile = ?compiled.source, compile_ms = compiled.duration.as_secs_f64() * 1e3, "policy plugin loaded");
        Ok(LoadedSlot {
            config: slot.clone(),
            plugin: Arc::new(plugin),
            native,
        })
    }

    /// Builds every slot and, only if all succeed, publishes them as the new set.
    pub fn apply(&self, slots: Vec<SlotConfig>) -> Result<Arc<PolicySet>, Vec<String>> {
        let _guard = self.load_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(slots)
    }

    /// [`apply`](Self::apply) with `load_lock` already held by the caller,
    /// so that a read-modify-write of the set is one step.
    fn apply_locked(&self, slots: Vec<SlotConfig>) -> Result<Arc<PolicySet>, Vec<String>> {
        let mut problems = Vec::new();
        let mut loaded = BTreeMap::new();
        for s in &slots {
            match self.module_bytes(s).and_then(|b| self.build_slot(s, &b)) {
                Ok(l) => {
                    loaded.insert(s.name.clone(), Arc::new(l));
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            let msg = problems.join("; ");
            tracing::error!(error = %msg, "policy set rejected; the previous set keeps serving");
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            self.metrics
                .reloads
                .get_or_create(&vec![("result", "failure".to_string())])
                .inc();
            return Err(problems);
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let set = Arc::new(PolicySet {
            generation,
            loaded_at: now_unix(),
            slots: loaded,
        });
        let old = self.current.swap(set.clone());
        for s in old.slots.values() {
            self.metrics.set_info(&s.plugin, false);
        }
        for s in set.slots.values() {
            self.metrics.set_info(&s.plugin, true);
        }
        {
            // Digests pinned by the configuration (not by an upload) bind
            // every later upload to that slot.
            let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
            for s in &slots {
                if s.source != PluginSource::Bytes {
                    match &s.sha256 {
                        Some(d) => pins.insert(s.name.clone(), d.clone()),
                        None => pins.remove(&s.name),
                    };
                }
            }
        }
        *self.slot_configs.lock().unwrap_or_else(|p| p.into_inner()) = slots;
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.metrics
            .reloads
            .get_or_create(&vec![("result", "success".to_string())])
            .inc();
        tracing::info!(generation, slots = set.slots.len(), "policy set published");
        Ok(set)
    }

    /// Loads `policies.yml`; relative module paths resolve against its directory.
    pub fn apply_file(&self, path: &Path) -> Result<Arc<PolicySet>, Vec<String>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let slots = config::parse_policies(&text, &base).map_err(|errs| {
            let msg = errs.join("; ");
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            errs
        })?;
        self.apply(slots)
    }

    /// Replaces (or adds) one slot's module, as the admin API does. The other
    /// slots keep their modules; the new set is validated as a whole.
    ///
    /// The whole read-modify-write holds `load_lock`, so concurrent uploads
    /// (and file reloads) land one after the other and none is lost. An
    /// uploaded module gets no capability grants unless the request restates
    /// them (`grants`), and a digest pinned by the configuration must match.
    pub fn put_module(
        &self,
        slot: &str,
        module: Vec<u8>,
        sha256: &str,
        kind: Option<PolicyKind>,
        grants: Option<config::Grants>,
    ) -> Result<Arc<PolicySet>, Vec<String>> {
        let digest = sha256_hex(&module);
        if !digest.eq_ignore_ascii_case(sha256) {
            return Err(vec![format!(
                "sha256 mismatch: request says {sha256}, module is {digest}"
            )]);
        }
        let _guard = self.load_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pinned) = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(slot)
            && !pinned.eq_ignore_ascii_case(&digest)
        {
            return Err(vec![format!(
                "slot {slot} pins sha256 {pinned} in its configuration; the uploaded module is {digest}"
            )]);
        }
        let mut slots = self
            .slot_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let existing = slots.iter().position(|s| s.name == slot);
        let kind = kind
            .or_else(|| existing.map(|i| slots[i].kind))
            .or_else(|| {
                config::DEFAULT_SLOTS
                    .iter()
                    .find(|(n, _)| *n == slot)
                    .map(|(_, k)| *k)
            });
        let Some(kind) = kind else {
            return Err(vec![format!(
                "slot {slot} does not exist; pass kind= to create it"
            )]);
        };
        let mut cfg = match existing {
            Some(i) => slots.remove(i),
            None => SlotConfig {
                name: slot.to_string(),
                kind,
                source: PluginSource::Bytes,
                sha256: None,
                config: serde_json::Value::Object(Default::default()),
                limits: Limits::default(),
                failure_policy: FailurePolicy::FailClosed,
                grants: Default::default(),
            },
        };
        cfg.source = PluginSource::Bytes;
        cfg.sha256 = Some(digest);
        // The slot's grants were given to the module its configuration
        // named, not to whatever is uploaded next.
        cfg.grants = grants.unwrap_or_default();
        slots.push(cfg);
        let previous = self
            .uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.to_string(), Arc::new(module));
        let r = self.apply_locked(slots);
        if r.is_err() {
            let mut up = self.uploaded.lock().unwrap_or_else(|p| p.into_inner());
            match previous {
                Some(p) => up.insert(slot.to_string(), p),
                None => up.remove(slot),
            };
        }
        r
    }

    /// Watches `path` (debounced) and reloads on change and on SIGHUP.
    pub fn watch_file(
        self: &Arc<Self>,
        path: PathBuf,
    ) -> Result<tokio::task::JoinHandle<()>, PolicyError> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let name = path.file_name().map(|n| n.to_os_string());
        let fs_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::{AccessKind, AccessMode};
            // Only changes count. Opening and reading the file are events too
            // (inotify's IN_OPEN), and the reload itself reads it: reacting to
            // those would reload again and again.
            let changed = |kind: &EventKind| match kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            };
            if let Ok(ev) = ev
                && changed(&ev.kind)
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = fs_tx.send(());
            }
        })
        .map_err(|e| PolicyError::Config(format!("watching {}: {e}", path.display())))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| PolicyError::Config(format!("watching {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            let hup_tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                {
                    while s.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading policies");
                        if hup_tx.send(()).is_err() {
                            break;
                        }
                    }
                }
            });
        }
        let reg = self.clone();
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            while rx.recv().await.is_some() {
                // Editors write files in several steps: wait for quiet.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                let (reg, path) = (reg.clone(), path.clone());
                let r = tokio::task::spawn_blocking(move || reg.apply_file(&path)).await;
                match r {
                    Ok(Ok(set)) => tracing::info!(generation = set.generation, "policies reloaded"),
                    Ok(Err(e)) => {
                        tracing::error!(errors = %e.join("; "), "policies reload rejected; keeping the previous set")
                    }
                    Err(e) => tracing::error!(error = %e, "policies reload task failed"),
                }
            }
        }))
    }

    /// Calls, failed calls by kind and fallbacks of each slot's current plugin.
    pub fn slot_counts(&self) -> BTreeMap<String, serde_json::Value> {
        self.snapshot()
            .slots
            .iter()
            .map(|(name, s)| (name.clone(), self.metrics.counts(&s.plugin)))
            .collect()
    }

    /// `GET /api/v1/policies` payload.
    pub fn status(&self) -> serde_json::Value {
        let set = self.snapshot();
        let slots: Vec<serde_json::Value> = set
            .slots
            .iter()
            .map(|(name, s)| {
                let p = &s.plugin;
                serde_json::json!({
                    "slot": name,
                    "kind": p.kind,
                    "name": p.info.name,
                    "version": p.info.version,
                    "abi": p.info.abi,
                    "sha256": p.sha256,
                    "source": match &p.source {
                        PluginSource::Builtin(b) => format!("builtin:{b}"),
                        PluginSource::File(f) => format!("file:{}", f.display()),
                        PluginSource::Bytes => "uploaded".to_string(),
                    },
                    "failurePolicy": p.failure_policy,
                    "fallback": s.native.as_ref().map(|n| n.name()),
                    "limits": {
                        "timeout": sluice_config::format_duration(p.limits.timeout),
                        "memoryBytes": p.limits.memory_bytes,
                        "maxOutputBytes": p.limits.max_output_bytes,
                    },
                    "grants": p.grants.names(),
                })
            })
            .collect();
        serde_json::json!({
            "generation": set.generation,
            "loadedAt": set.loaded_at,
            "lastError": self.last_error(),
            "slots": slots,
        })
    }
}
