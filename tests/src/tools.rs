//! Finding the external programs the tests need. A missing tool is an error that says how to install it;
//! the tests never pass silently without their oracle.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Result, bail};

/// Looks `name` up in `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `promtool` (env `PROMTOOL` overrides).
pub fn promtool() -> Result<PathBuf> {
    if let Some(p) = env::var_os("PROMTOOL") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "PROMTOOL={} does not exist: install promtool with `apt-get install -y prometheus`",
                p.display()
            );
        }
        return Ok(p);
    }
    match which("promtool") {
        Some(p) => Ok(p),
        None => bail!(
            "promtool not found in PATH: install it with `apt-get install -y prometheus` (Debian 12 ships 2.42), \
             or set PROMTOOL=/path/to/promtool"
        ),
    }
}

/// The Python interpreter: env `PYTHON`, else the venv `.ci/run` makes when the system Python cannot take pip
/// packages (`$SLUICE_E2E_VENV`, default `~/.cache/sluice-e2e/venv`), else `python3` from `PATH`.
pub fn python() -> Result<PathBuf> {
    if let Some(p) = env::var_os("PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = env::var_os("SLUICE_E2E_VENV")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice-e2e/venv")));
    if let Some(py) = venv.map(|v| v.join("bin/python3"))
        && py.is_file()
    {
        return Ok(py);
    }
    match which("python3") {
        Some(p) => Ok(p),
        None => bail!(
            "python3 not found in PATH: install it with `apt-get install -y python3 python3-pip`"
        ),
    }
}

/// Checks once that Python can import moto's server and boto3.
pub fn check_moto() -> Result<PathBuf> {
    static CHECK: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| {
        let py = python().map_err(|e| e.to_string())?;
        let out = Command::new(&py)
            .args(["-c", "import moto.server, boto3, flask"])
            .output()
            .map_err(|e| format!("run {}: {e}", py.display()))?;
        if out.status.success() {
            Ok(py)
        } else {
            Err(format!(
                "moto server mode or boto3 is not importable by {}: install them with \
                 `pip install -r tests/requirements.txt` (moto[server], boto3):\n{}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match r {
        Ok(p) => Ok(p.clone()),
        Err(e) => bail!("{e}"),
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// The `sluice` binary. `SLUICE_BIN` overrides. Otherwise `<target>/debug/sluice` is used when it is newer than
/// every source it is built from (`cargo test --workspace` builds it before running the tests); when it is missing
/// or stale, `cargo build -p sluice --bin sluice` is run first, once per test process.
pub fn sluice_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let r = BIN.get_or_init(|| {
        if let Some(p) = env::var_os("SLUICE_BIN") {
            let p = PathBuf::from(p);
            if !p.is_file() {
                return Err(format!("SLUICE_BIN={} does not exist", p.display()));
            }
            return Ok(p);
        }
        let root = workspace_root();
        let target = env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("sluice");
        if let (Ok(built), Some(src)) = (
            bin.metadata().and_then(|m| m.modified()),
            newest_source(&root),
        ) && built >= src
        {
            return Ok(bin);
        }
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "sluice", "--bin", "sluice"])
            .output()
            .map_err(|e| format!("run cargo to build the sluice binary: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`cargo build -p sluice --bin sluice` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("built sluice but {} is missing", bin.display()))
        }
    });
    match r {
        Ok(p) => Ok(p.clone()),
        Err(e) => bail!("{e}"),
    }
}

/// The newest modification time among the sources of the `sluice` binary: `host/`, `proto/`, the workspace
/// manifest and lock file.
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(p: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = fs::metadata(p) else { return };
        if meta.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                return;
            }
            if let Ok(entries) = fs::read_dir(p) {
                for e in entries.flatten() {
                    walk(&e.path(), newest);
                }
            }
        } else if let Ok(m) = meta.modified() {
            *newest = Some(newest.map_or(m, |n| n.max(m)));
        }
    }
    let mut newest = None;
    for p in ["host", "proto", "Cargo.toml", "Cargo.lock"] {
        walk(&root.join(p), &mut newest);
    }
    newest
}

/// Checks once that Python can import `grpc` (grpcio, from tests/requirements.txt) and returns the interpreter.
pub fn check_grpcio() -> Result<PathBuf> {
    static CHECK: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| {
        let py = python().map_err(|e| e.to_string())?;
        let out = Command::new(&py)
            .args(["-c", "import grpc"])
            .output()
            .map_err(|e| format!("run {}: {e}", py.display()))?;
        if out.status.success() {
            Ok(py)
        } else {
            Err(format!(
                "grpcio is not importable by {}: install it with `pip install -r tests/requirements.txt` \
                 (grpcio):\n{}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match r {
        Ok(p) => Ok(p.clone()),
        Err(e) => bail!("{e}"),
    }
}

/// `curl` (env `CURL` overrides).
pub fn curl() -> Result<PathBuf> {
    if let Some(p) = env::var_os("CURL") {
        return Ok(PathBuf::from(p));
    }
    match which("curl") {
        Some(p) => Ok(p),
        None => bail!("curl not found in PATH: install it with `apt-get install -y curl`"),
    }
}
