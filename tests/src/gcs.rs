//! A GCS emulator for the object storage tests: `gcp-storage-emulator` (PyPI, in tests/requirements.txt) on a free
//! loopback port, in memory, filled over GCS' JSON API by plain HTTP requests (not Sluice's client).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::process::free_port;
use crate::tools;

/// A running emulator; killed on drop.
pub struct GcsEmulator {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl std::fmt::Debug for GcsEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsEmulator")
            .field("port", &self.port)
            .finish()
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl GcsEmulator {
    /// Starts `python3 -m gcp_storage_emulator start` and waits until it answers.
    pub async fn start() -> Result<GcsEmulator> {
        let python: PathBuf = tools::python()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new().prefix("sluice-gcs-").tempdir()?;
        let log = File::create(dir.path().join("gcs.log"))?;
        let child = Command::new(&python)
            .args([
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--in-memory",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawn gcp_storage_emulator (pip install -r tests/requirements.txt)")?;
        let mut g = GcsEmulator { child, port, dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = g.child.try_wait() {
                bail!("gcp_storage_emulator exited ({status}):\n{}", g.log());
            }
            if client
                .get(g.url())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(g);
            }
            if Instant::now() >= deadline {
                bail!(
                    "gcp_storage_emulator not answering on {} after 30 s:\n{}",
                    g.url(),
                    g.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `STORAGE_EMULATOR_HOST` for a process using this emulator.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("gcs.log")).unwrap_or_default()
    }

    pub async fn make_bucket(&self, bucket: &str) -> Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project=sluice", self.url()))
            .header("content-type", "application/json")
            .body(format!("{{\"name\": \"{bucket}\"}}"))
            .send()
            .await?;
        ensure!(r.status().is_success(), "create bucket: {}", r.status());
        Ok(())
    }

    /// Uploads a local directory tree under `prefix` (meta.json files last).
    pub async fn put_dir(&self, bucket: &str, local: &Path, prefix: &str) -> Result<()> {
        let mut files = Vec::new();
        walk(local, local, &mut files)?;
        files.sort_by_key(|(rel, _)| (rel.ends_with("meta.json"), rel.clone()));
        let client = reqwest::Client::new();
        for (rel, path) in files {
            let name = if prefix.is_empty() {
                rel
            } else {
                format!("{}/{rel}", prefix.trim_matches('/'))
            };
            let r = client
                .post(format!(
                    "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
                    self.url(),
                    encode(&name)
                ))
                .header("content-type", "application/octet-stream")
                .body(fs::read(&path)?)
                .send()
                .await?;
            ensure!(r.status().is_success(), "upload {name}: {}", r.status());
        }
        Ok(())
    }

    /// Every object name in a bucket.
    pub async fn list(&self, bucket: &str) -> Result<Vec<String>> {
        let v: serde_json::Value = serde_json::from_str(
            &reqwest::Client::new()
                .get(format!("{}/storage/v1/b/{bucket}/o", self.url()))
                .send()
                .await?
                .text()
                .await?,
        )?;
        Ok(v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            walk(root, &e.path(), out)?;
        } else {
            let rel = e
                .path()
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, e.path()));
        }
    }
    Ok(())
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gcs emulator :{} log ----\n{}", self.port, self.log());
        }
    }
}
