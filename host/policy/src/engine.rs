//! The wasmtime engine shared by every plugin: Cranelift, the pooling
//! allocator, an epoch ticker for deadlines, and a compile cache keyed by the
//! module's SHA-256 (in memory, and on disk for artifacts we wrote ourselves).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PolicyError;

/// Granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How a component was obtained, for metrics and load logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled with Cranelift now.
    Compiled,
    /// Already compiled in this process.
    Memory,
    /// Loaded from the on-disk cache of artifacts this process family wrote.
    Disk,
}

/// A compiled component with its digest.
#[derive(Clone)]
pub struct Compiled {
    pub component: Component,
    pub sha256: String,
    pub source: CompileSource,
    pub duration: Duration,
}

/// Engine plus caches.
pub struct PolicyEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    compat: String,
    memory: Mutex<HashMap<String, Component>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl PolicyEngine {
    /// Builds the engine; `cache_dir` keeps compiled artifacts across restarts.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Self>, PolicyError> {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(1 << 20);
        // For profiling plugins with `perf`: JIT code gets named symbols
        // (/tmp/perf-<pid>.map) when this is set. Off by default.
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        cfg.wasm_component_model(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(512)
            .total_memories(256)
            .total_tables(512)
            .max_memory_size(1 << 30);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| PolicyError::Engine(e.to_string()))?;
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = format!("{:016x}", h.finish());
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                PolicyError::Engine(format!("plugin cache dir {}: {e}", dir.display()))
            })?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| PolicyError::Engine(format!("epoch thread: {e}")))?;
        Ok(Arc::new(PolicyEngine {
            engine,
            cache_dir,
            compat,
            memory: Mutex::new(HashMap::new()),
            stop,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` once per digest.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, PolicyError> {
        let start = Instant::now();
        let sha256 = sha256_hex(bytes);
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha256)
        {
            return Ok(Compiled {
                component: c.clone(),
                sha256,
                source: CompileSource::Memory,
                duration: start.elapsed(),
            });
        }
        let path = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.compat)));
        if let Some(p) = &path
            && p.exists()
        {
            // Only files this engine configuration wrote into our own cache
            // directory are deserialized; the name carries the module digest
            // and the engine compatibility hash.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, p) };
            match loaded {
                Ok(c) => {
                    self.memory
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sha256.clone(), c.clone());
                    return Ok(Compiled {
                        component: c,
                        sha256,
                        source: CompileSource::Disk,
                        duration: start.elapsed(),
                    });
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "ignoring unusable cached plugin artifact")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            PolicyError::Invalid(format!("not a valid WebAssembly component: {e:#}"))
        })?;
        if let Some(p) = &path {
            match component.serialize() {
                Ok(b) => {
                    let tmp = p.with_extension("tmp");
                    if let Err(e) = std::fs::write(&tmp, b).and_then(|_| std::fs::rename(&tmp, p)) {
                        tracing::warn!(path = %p.display(), error = %e, "cannot write plugin cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialize compiled plugin"),
            }
        }
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256.clone(), component.clone());
        Ok(Compiled {
            component,
            sha256,
            source: CompileSource::Compiled,
            duration: start.elapsed(),
        })
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
