//! A real Azure Blob Storage emulator for the object storage tests: Microsoft's Azurite (npm `azurite`), its blob
//! service on a free loopback port, in-memory, filled with Microsoft's Python SDK (`az_helper.py`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::free_port;
use crate::tools;

/// Azurite's well-known development account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `azurite-blob`: env `AZURITE`, else the copy `.ci/run` installs under `~/.cache/sluice-e2e/node`, else `PATH`.
pub fn azurite_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AZURITE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/sluice-e2e/node/node_modules/.bin/azurite-blob");
        if p.is_file() {
            return Ok(p);
        }
    }
    tools::which("azurite-blob").context(
        "azurite-blob not found: `npm install --prefix ~/.cache/sluice-e2e/node azurite@3` (as .ci/run does), \
         or set AZURITE=/path/to/azurite-blob",
    )
}

/// A running Azurite blob service; killed on drop.
pub struct Azurite {
    child: Child,
    port: u16,
    dir: TempDir,
    python: PathBuf,
    helper: PathBuf,
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azurite").field("port", &self.port).finish()
    }
}

impl Azurite {
    /// Starts `azurite-blob` on a free port and waits until it answers.
    pub async fn start() -> Result<Azurite> {
        let bin = azurite_bin()?;
        let python = tools::python()?;
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-azurite-")
            .tempdir()?;
        let helper = dir.path().join("az_helper.py");
        fs::write(&helper, include_str!("az_helper.py"))?;
        let log = File::create(dir.path().join("azurite.log"))?;
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut a = Azurite {
            child,
            port,
            dir,
            python,
            helper,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = a.child.try_wait() {
                bail!("azurite exited ({status}):\n{}", a.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                bail!("azurite not listening on {port} after 60 s:\n{}", a.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The connection string of the development account, blob endpoint path-style on loopback.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};\
             BlobEndpoint=http://127.0.0.1:{}/{ACCOUNT};",
            self.port
        )
    }

    /// objstore.yml for `container` (and an optional `prefix`), as a Thanos user writes it for Azurite.
    pub fn objstore_yaml(&self, container: &str, prefix: Option<&str>) -> String {
        let mut y = format!(
            "type: AZURE\nconfig:\n  container: {container}\n  storage_connection_string: \"{}\"\n",
            self.connection_string()
        );
        if let Some(p) = prefix {
            y.push_str(&format!("prefix: {p}\n"));
        }
        y
    }

    /// The emulator's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    fn helper(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.python)
            .arg(&self.helper)
            .arg(self.connection_string())
            .args(args)
            .output()
            .context("run az_helper.py")?;
        if !out.status.success() {
            bail!(
                "az_helper.py {args:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a container.
    pub fn make_container(&self, container: &str) -> Result<()> {
        self.helper(&["mkcontainer", container]).map(|_| ())
    }

    /// Uploads a local directory tree under `prefix` (meta.json files last).
    pub fn put_dir(&self, container: &str, local: &Path, prefix: &str) -> Result<()> {
        let local = local.to_str().context("non-UTF-8 path")?;
        self.helper(&["put-dir", container, local, prefix])
            .map(|_| ())
    }

    /// Lists every blob name in a container.
    pub fn list(&self, container: &str) -> Result<Vec<String>> {
        Ok(self
            .helper(&["ls", container])?
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- azurite :{} log ----\n{}", self.port, self.log());
        }
    }
}
