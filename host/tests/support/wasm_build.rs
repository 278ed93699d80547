//! Builds guest crates into WebAssembly components from a test, the way a
//! plugin author does: `cargo build --release --target wasm32-wasip2`, with a
//! target directory of its own under the outer one (so the nested cargo never
//! waits on the outer build's lock) and none of the outer cargo's settings.
//! Include with `#[path = "support/wasm_build.rs"] mod wasm_build;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The outer cargo target directory (`target/`).
pub fn target_root() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or(tmp.clone(), Path::to_path_buf)
}

/// Variables the nested cargo keeps although they start with `CARGO_`: where
/// the registry and its credentials live and how to reach it.
const KEEP: &[&str] = &[
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRY_",
    "CARGO_REGISTRIES_",
    "CARGO_TERM_",
];

/// Variables of the outer build that must not leak into the guests.
const DROP: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_BOOTSTRAP",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Runs `cargo build --release --target wasm32-wasip2` on `manifest` into
/// `target_dir`; returns the directory holding the `.wasm` files. Fails with
/// cargo's output, and with the fix when the target is not installed.
pub fn cargo_build_wasm(manifest: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_setting = (key.starts_with("CARGO_") || key.starts_with("__CARGO"))
            && !KEEP.iter().any(|k| key.starts_with(k));
        if cargo_setting || DROP.contains(&key) {
            cmd.env_remove(key);
        }
    }
    let started = std::time::Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo for {}: {e}", manifest.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            format!("\nfix: rustup target add {WASM_TARGET}")
        } else {
            String::new()
        };
        return Err(format!(
            "`cargo build --release --target {WASM_TARGET} --manifest-path {}` failed{hint}\n{stderr}",
            manifest.display()
        ));
    }
    eprintln!(
        "built {} for {WASM_TARGET} in {:.1?}",
        manifest.display(),
        started.elapsed()
    );
    Ok(target_dir.join(WASM_TARGET).join("release"))
}

/// host/tests/guests, built once per test binary into `target/test-guests`.
pub fn guests_dir() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests/Cargo.toml");
        cargo_build_wasm(&manifest, &target_root().join("test-guests"))
    });
    match built {
        Ok(dir) => dir,
        Err(e) => panic!("building the test guests failed: {e}"),
    }
}

/// Path of a test guest's component, e.g. `guest("hostile")`.
pub fn guest(name: &str) -> PathBuf {
    let file = format!("sluice_guest_{}.wasm", name.replace('-', "_"));
    let path = guests_dir().join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
