//! The reloader (spec §1.10): watches Prometheus' config file (optionally
//! gunzipped and `$(VAR)`-expanded into an output file) and rule
//! directories, and reloads Prometheus when their content changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sha2::Digest;

use crate::SidecarError;
use crate::prom::Prometheus;

/// How Prometheus is told to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadMethod {
    /// `POST /-/reload`.
    Http,
    /// SIGHUP to the process with this executable name, then wait for
    /// `/api/v1/status/runtimeinfo` to show the new config.
    Signal { process_name: String },
}

/// Reloader flags.
#[derive(Debug, Clone)]
pub struct ReloaderOptions {
    pub config_file: Option<PathBuf>,
    pub config_envsubst_file: Option<PathBuf>,
    pub rule_dirs: Vec<PathBuf>,
    pub watch_interval: Duration,
    pub retry_interval: Duration,
    pub method: ReloadMethod,
}

impl ReloaderOptions {
    fn is_empty(&self) -> bool {
        self.config_file.is_none() && self.rule_dirs.is_empty()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Default)]
struct ReloaderMetrics {
    reloads: Counter,
    reloads_failed: Counter,
    last_successful: Gauge,
    last_success_time: Gauge,
    apply: Counter,
    apply_failed: Counter,
    env_errors: Gauge,
    watches: Gauge,
    watch_events: Counter,
    watch_errors: Counter,
    info: Family<MethodLabel, Gauge>,
}

/// Watches the files and reloads Prometheus.
pub struct Reloader {
    prom: Prometheus,
    opts: ReloaderOptions,
    metrics: ReloaderMetrics,
    last_hash: Option<Vec<u8>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("opts", &self.opts)
            .finish()
    }
}

impl Reloader {
    pub fn new(
        prom: Prometheus,
        opts: ReloaderOptions,
        registry: &sluice_metrics::Metrics,
    ) -> Self {
        let metrics = ReloaderMetrics::default();
        let m = metrics.clone();
        let p = "thanos_sidecar_reloader_";
        registry.register(|r| {
            r.register(format!("{p}reloads"), "Total number of reload requests.", m.reloads);
            r.register(format!("{p}reloads_failed"), "Total number of reload requests that failed.", m.reloads_failed);
            r.register(format!("{p}last_reload_successful"), "Whether the last reload attempt was successful", m.last_successful);
            r.register(
                format!("{p}last_reload_success_timestamp_seconds"),
                "Timestamp of the last successful reload",
                m.last_success_time,
            );
            r.register(format!("{p}config_apply_operations"), "Total number of config apply operations.", m.apply);
            r.register(
                format!("{p}config_apply_operations_failed"),
                "Total number of config apply operations that failed.",
                m.apply_failed,
            );
            r.register(
                format!("{p}config_environment_variable_expansion_errors"),
                "Number of environment variable expansions that failed during the last operation.",
                m.env_errors,
            );
            r.register(format!("{p}watches"), "Number of resources watched by the reloader.", m.watches);
            r.register(format!("{p}watch_events"), "Total number of events received by the reloader from the watcher.", m.watch_events);
            r.register(format!("{p}watch_errors"), "Total number of errors received by the reloader from the watcher.", m.watch_errors);
            r.register(format!("{p}info"), "A metric with a constant '1' value labeled by reload method (either 'http' or 'signal').", m.info);
        });
        let method = match opts.method {
            ReloadMethod::Http => "http",
            ReloadMethod::Signal { .. } => "signal",
        };
        metrics
            .info
            .get_or_create(&MethodLabel {
                method: method.into(),
            })
            .set(1);
        Reloader {
            prom,
            opts,
            metrics,
            last_hash: None,
        }
    }

    /// Runs until the task is dropped: applies and reloads at start, on
    /// every file event and every watch interval.
    pub async fn run(mut self) {
        if self.opts.is_empty() {
            tracing::info!("nothing to be watched by the reloader");
            std::future::pending::<()>().await;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = self.watch(tx);
        loop {
            if let Err(e) = self.apply_and_reload().await {
                tracing::error!(error = %e, "reloader: applying the configuration or reloading Prometheus failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.opts.watch_interval) => {}
                Some(()) = rx.recv() => {
                    // Let a burst of writes settle.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                }
            }
        }
    }

    /// Watches the config file's directory and the rule directories;
    /// events only wake the loop, which re-reads everything.
    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let events = self.metrics.watch_events.clone();
        let errors = self.metrics.watch_errors.clone();
        let mut w = match notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
            match r {
                Ok(_) => {
                    events.inc();
                    let _ = tx.try_send(());
                }
                Err(_) => {
                    errors.inc();
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "reloader: no file watcher; checking every watch interval only");
                return None;
            }
        };
        let mut n = 0;
        let mut dirs: Vec<(PathBuf, notify::RecursiveMode)> = Vec::new();
        if let Some(cfg) = &self.opts.config_file {
            let dir = cfg
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            dirs.push((dir.to_path_buf(), notify::RecursiveMode::NonRecursive));
        }
        for d in &self.opts.rule_dirs {
            dirs.push((d.clone(), notify::RecursiveMode::Recursive));
        }
        for (d, mode) in dirs {
            match w.watch(&d, mode) {
                Ok(()) => n += 1,
                Err(e) => {
                    self.metrics.watch_errors.inc();
                    tracing::warn!(dir = %d.display(), error = %e, "reloader: cannot watch; checking every watch interval");
                }
            }
        }
        self.metrics.watches.set(n);
        Some(w)
    }

    /// Writes the output config, and reloads Prometheus if the config or a
    /// rule file changed since the last successful reload.
    pub async fn apply_and_reload(&mut self) -> Result<bool, SidecarError> {
        let mut h = sha2::Sha256::new();
        if let Some(cfg) = &self.opts.config_file {
            self.metrics.apply.inc();
            let applied = apply_config(cfg, self.opts.config_envsubst_file.as_deref());
            match &applied {
                Ok(_) => {
                    self.metrics.env_errors.set(0);
                }
                Err(ApplyError::Env(n, _, _)) => {
                    self.metrics.env_errors.set(*n as i64);
                }
                Err(_) => {}
            }
            let content = applied.map_err(|e| {
                self.metrics.apply_failed.inc();
                SidecarError::Config(e.to_string())
            })?;
            hash_file(&mut h, cfg, &content);
        }
        for d in &self.opts.rule_dirs {
            let mut files = Vec::new();
            walk(d, &mut files, 0);
            files.sort();
            for f in files {
                if let Ok(content) = std::fs::read(&f) {
                    hash_file(&mut h, &f, &content);
                }
            }
        }
        let hash = h.finalize().to_vec();
        if self.last_hash.as_ref() == Some(&hash) {
            return Ok(false);
        }
        let deadline = Instant::now() + self.opts.watch_interval;
        loop {
            self.metrics.reloads.inc();
            match self.reload().await {
                Ok(()) => {
                    self.metrics.last_successful.set(1);
                    self.metrics.last_success_time.set(unix_seconds());
                    self.last_hash = Some(hash);
                    tracing::info!(
                        cfg = ?self.opts.config_file, out = ?self.opts.config_envsubst_file, dirs = ?self.opts.rule_dirs,
                        "Reload triggered"
                    );
                    return Ok(true);
                }
                Err(e) => {
                    self.metrics.reloads_failed.inc();
                    self.metrics.last_successful.set(0);
                    if Instant::now() + self.opts.retry_interval > deadline {
                        // `last_hash` stays: the next check reloads again.
                        return Err(e);
                    }
                    tracing::warn!(error = %e, retry_in = ?self.opts.retry_interval, "reloading Prometheus failed; retrying");
                    tokio::time::sleep(self.opts.retry_interval).await;
                }
            }
        }
    }

    async fn reload(&self) -> Result<(), SidecarError> {
        match &self.opts.method {
            ReloadMethod::Http => self.prom.reload().await,
            ReloadMethod::Signal { process_name } => {
                let before = self.prom.config_reload_state().await.ok();
                let pid = find_process(process_name)?;
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .map_err(|e| SidecarError::io("running kill -HUP", e))?;
                if !status.success() {
                    return Err(SidecarError::Config(format!(
                        "kill -HUP {pid} failed: {status}"
                    )));
                }
                let until = Instant::now() + self.opts.retry_interval.max(Duration::from_secs(5));
                while Instant::now() < until {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok((ok, at)) = self.prom.config_reload_state().await {
                        let advanced = before.as_ref().is_none_or(|(_, t)| *t != at);
                        if advanced && ok {
                            return Ok(());
                        }
                        if advanced && !ok {
                            return Err(SidecarError::Config(
                                "Prometheus reports the reloaded configuration as failed".into(),
                            ));
                        }
                    }
                }
                Err(SidecarError::Config(format!(
                    "sent SIGHUP to {process_name} ({pid}) but its runtimeinfo did not show a new configuration"
                )))
            }
        }
    }
}

/// Why the config could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("gunzipping {0}: {1}")]
    Gunzip(PathBuf, std::io::Error),
    #[error("expanding environment variables in {1}: {n} not set: {names}", n = .0, names = .2)]
    Env(usize, PathBuf, String),
    #[error("writing {0}: {1}")]
    Write(PathBuf, String),
}

/// Reads the config, gunzips it when it is gzip, expands `$(VAR)` and writes
/// the output file when one is configured. Returns the input's content for
/// hashing.
pub fn apply_config(input: &Path, output: Option<&Path>) -> Result<Vec<u8>, ApplyError> {
    let raw = std::fs::read(input).map_err(|e| ApplyError::Read(input.to_path_buf(), e))?;
    let Some(output) = output else {
        return Ok(raw);
    };
    let plain = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(256 << 20)
            .read_to_end(&mut out)
            .map_err(|e| ApplyError::Gunzip(input.to_path_buf(), e))?;
        out
    } else {
        raw.clone()
    };
    let text = String::from_utf8_lossy(&plain);
    let expanded = expand_env(&text, |k| std::env::var(k).ok()).map_err(|missing| {
        ApplyError::Env(missing.len(), input.to_path_buf(), missing.join(", "))
    })?;
    let current = std::fs::read(output).ok();
    if current.as_deref() != Some(expanded.as_bytes()) {
        crate::shipper::write_atomic(output, expanded.as_bytes())
            .map_err(|e| ApplyError::Write(output.to_path_buf(), e.to_string()))?;
    }
    Ok(raw)
}

/// Replaces every `$(NAME)` (`NAME` of `[a-zA-Z0-9_]+`); the names not set
/// are the error.
pub fn expand_env(text: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with(')') {
            let name = &after[..name_len];
            match get(name) {
                Some(v) => out.push_str(&v),
                None => missing.push(name.to_string()),
            }
            rest = &after[name_len + 1..];
        } else {
            out.push_str("$(");
            rest = after;
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        missing.sort();
        missing.dedup();
        Err(missing)
    }
}

fn hash_file(h: &mut sha2::Sha256, path: &Path, content: &[u8]) {
    h.update([0xff]);
    h.update(path.to_string_lossy().as_bytes());
    h.update([0xff]);
    h.update(content);
}

/// Regular files under `dir`, following symlinks, to a bounded depth.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 32 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, out, depth + 1),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// The pid of the process whose executable name is `name` (from /proc).
fn find_process(name: &str) -> Result<u32, SidecarError> {
    let entries = std::fs::read_dir("/proc").map_err(|e| SidecarError::io("listing /proc", e))?;
    let me = std::process::id();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm"))
            && comm.trim() == name
        {
            return Ok(pid);
        }
    }
    Err(SidecarError::Config(format!(
        "no process named {name} found to send SIGHUP to"
    )))
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let get = |k: &str| match k {
            "POD" => Some("p-0".to_string()),
            "NS" => Some("mon".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_env("replica: $(POD)/$(NS) $POD $( $(x-y) $(", get).expect("expands"),
            "replica: p-0/mon $POD $( $(x-y) $("
        );
        assert_eq!(
            expand_env("a $(NOPE) $(B) $(NOPE)", get),
            Err(vec!["B".into(), "NOPE".into()])
        );
    }

    #[test]
    fn gzip_input_is_expanded_into_the_output() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("prometheus.yml.gz");
        let output = dir.path().join("prometheus.yml");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"global:\n  external_labels:\n    home: $(HOME)\n")
            .expect("gz");
        std::fs::write(&input, gz.finish().expect("gz")).expect("write");
        apply_config(&input, Some(&output)).expect("applies");
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            std::fs::read_to_string(&output).expect("output"),
            format!("global:\n  external_labels:\n    home: {home}\n")
        );
    }
}
