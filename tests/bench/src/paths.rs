//! Where things are and how to get them: the workspace, its target
//! directory, the release `sluice` binary, peers' versions, block copies.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `<tool> --version`'s first line, or a clear error when the tool is missing.
pub fn tool_version(tool: &str) -> anyhow::Result<String> {
    let out = Command::new(tool).arg("--version").output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run `{tool}` ({e}); install Prometheus 2.42: apt-get install prometheus"
        )
    })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "`{tool} --version` failed: {text}");
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The `sluice` binary to benchmark: `explicit` if given, else the release
/// build, built first when missing or when `build` asks for it.
pub fn sluice_binary(
    explicit: Option<&Path>,
    build: bool,
    log: impl Fn(&str),
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(p.is_file(), "--sluice {} does not exist", p.display());
        return Ok(p.to_path_buf());
    }
    let bin = target_dir().join("release").join("sluice");
    if build || !bin.is_file() {
        log("building sluice: cargo build --release -p sluice --bin sluice");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "sluice", "--bin", "sluice"])
            .current_dir(workspace_root())
            .status()
            .context("running cargo build")?;
        ensure!(
            status.success(),
            "cargo build --release -p sluice --bin sluice failed ({status})"
        );
    }
    ensure!(bin.is_file(), "{} missing after build", bin.display());
    Ok(bin)
}

/// Copies a directory tree; returns the bytes copied.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut bytes = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            bytes += copy_dir(&e.path(), &dst)?;
        } else {
            bytes += std::fs::copy(e.path(), &dst)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(bytes)
}

/// Block directories (those with a meta.json) under `dir`, sorted.
pub fn block_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e?.path();
        if p.join("meta.json").is_file() {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}
