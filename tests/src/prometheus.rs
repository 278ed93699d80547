//! A real Prometheus (Debian's `prometheus`, 2.42) on 127.0.0.1: started from a config, stopped and restarted on the
//! same port and data directory, killed (by its own PID) when its handle is dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::{eventually, free_port};
use crate::tools;

/// The `prometheus` binary: `$PROMETHEUS` or the one in `PATH`.
pub fn prometheus_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        return Ok(PathBuf::from(p));
    }
    tools::which("prometheus").context("prometheus not found in PATH: `apt-get install prometheus`")
}

/// A running (or stopped) Prometheus with its own directory: `prometheus.yml`, `data/`, `prometheus.log`.
pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("port", &self.port)
            .finish()
    }
}

impl Prometheus {
    /// Writes `config` (in which `$PORT` stands for the port it will listen on, so it can scrape itself) and starts
    /// Prometheus with `--web.enable-lifecycle` plus `extra` flags; waits until `/-/ready` answers 200.
    pub async fn start(config: &str, extra: &[&str]) -> Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-prometheus-")
            .tempdir()?;
        let port = free_port()?;
        fs::write(
            dir.path().join("prometheus.yml"),
            config.replace("$PORT", &port.to_string()),
        )?;
        fs::create_dir_all(dir.path().join("data"))?;
        let mut p = Prometheus {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        p.resume().await?;
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.yml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Stops the process (SIGKILL) and waits for it; the data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory and waits until it is ready.
    pub async fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("prometheus is already running");
        }
        let bin = prometheus_bin()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("prometheus.log"))?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", self.config_path().display()))
            .arg(format!("--storage.tsdb.path={}", self.data_dir().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-lifecycle")
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        self.child = Some(child);
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", self.url());
        let waited = eventually(Duration::from_secs(60), "prometheus /-/ready", || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let ok = client
                    .get(&ready)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok((ok.then_some(()), String::new()))
            }
        })
        .await;
        if let Err(e) = waited {
            bail!("{e:#}\nprometheus log:\n{}", self.log());
        }
        Ok(())
    }

    /// `GET <url><path_and_query>` as JSON.
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path_and_query}", self.url()))
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("prometheus {path_and_query}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ({}) ---\n{}", self.url(), self.log());
        }
    }
}
