//! Builds the built-in policy plugins (plugins/, a cargo workspace of its own)
//! into WebAssembly components with a nested `cargo build --release --target
//! wasm32-wasip2`, and writes `$OUT_DIR/builtin_plugins.rs`:
//!
//! ```ignore
//! pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[("dedup-penalty", include_bytes!("…")), …];
//! ```
//!
//! The nested cargo gets its own target directory (`<target>/wasm-plugins`):
//! sharing the outer one would deadlock on cargo's build lock. Its
//! environment is stripped of everything the outer cargo set for this build
//! (rustflags for the host target, profile overrides, the outer target and
//! target dir, wrappers), so the guests build the same way as a plugin author's
//! `cargo build --target wasm32-wasip2 --release`.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Built-in plugins: (name in policies.yml, cargo package in plugins/).
const PLUGINS: &[(&str, &str)] = &[
    ("dedup-penalty", "sluice-plugin-dedup-penalty"),
    ("dedup-chain", "sluice-plugin-dedup-chain"),
    ("relabel", "sluice-plugin-relabel"),
    ("retention", "sluice-plugin-retention"),
    ("downsample", "sluice-plugin-downsample"),
];

const WASM_TARGET: &str = "wasm32-wasip2";

/// Overrides where the nested build puts its artifacts (e.g. a CI cache).
const TARGET_DIR_OVERRIDE: &str = "SLUICE_PLUGINS_TARGET_DIR";

/// Environment variables the nested cargo keeps even though they start with
/// `CARGO_`: where the registry and its credentials live and how to reach it,
/// and the outer jobserver (`CARGO_MAKEFLAGS`), which cargo documents as
/// usable by a cargo run from a build script: the nested build then takes its
/// jobs from the outer `-j` budget instead of adding its own.
const KEEP_CARGO_VARS: &[&str] = &[
    "CARGO_MAKEFLAGS",
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRY_",
    "CARGO_REGISTRIES_",
    "CARGO_TERM_",
];

/// Variables that describe the outer build and would leak into the guests.
const DROP_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTC_BOOTSTRAP",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    // A make jobserver of an outer `make` reaches cargo through these; the
    // outer cargo's own is CARGO_MAKEFLAGS, kept above.
    "MAKEFLAGS",
    "MFLAGS",
];

type Result<T> = std::result::Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: building the built-in policy plugins failed\n\n{e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    // host/policy → the repository root.
    let repo = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("host/policy has no grandparent directory")?
        .to_path_buf();
    let plugins_dir = repo.join("plugins");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    emit_rerun_if_changed(&repo, &plugins_dir);
    println!("cargo:rerun-if-env-changed={TARGET_DIR_OVERRIDE}");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    check_wasm_target()?;

    let target_dir = wasm_target_dir(&out_dir);
    let started = Instant::now();
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in PLUGINS {
        cmd.arg("--package").arg(package);
    }
    clean_env(&mut cmd);
    // The build script's stdout is parsed for `cargo:` directives: keep the
    // nested cargo's output on stderr (shown by cargo when the build fails).
    cmd.stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {cargo:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release --target {WASM_TARGET} --manifest-path {}` exited with {status}; \
             its output is above",
            plugins_dir.join("Cargo.toml").display()
        ));
    }
    eprintln!("nested plugin build took {:.1?}", started.elapsed());

    let artifacts = target_dir.join(WASM_TARGET).join("release");
    let embed_dir = out_dir.join("plugins");
    fs::create_dir_all(&embed_dir).map_err(|e| format!("creating {}: {e}", embed_dir.display()))?;
    let mut src = String::from(
        "/// The built-in policy plugins, compiled from plugins/ by host/build.rs:\n\
         /// (name, WebAssembly component bytes).\n\
         pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in PLUGINS {
        let built = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
        let bytes = fs::read(&built).map_err(|e| format!("reading {}: {e}", built.display()))?;
        // A component starts with the wasm magic and layer 1 (0x0d 0x00 0x01 0x00);
        // a core module (layer 0) means the component linker did not run.
        if !bytes.starts_with(b"\0asm\x0d\x00\x01\x00") {
            return Err(format!(
                "{} is not a WebAssembly component",
                built.display()
            ));
        }
        // Embed a private copy, rewritten only when it changed, so another
        // build refreshing the shared target dir does not touch this one.
        let embedded = embed_dir.join(format!("{name}.wasm"));
        if fs::read(&embedded).ok().as_deref() != Some(&bytes[..]) {
            fs::write(&embedded, &bytes)
                .map_err(|e| format!("writing {}: {e}", embedded.display()))?;
        }
        let path = embedded
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", embedded.display()))?;
        writeln!(src, "    ({name:?}, include_bytes!({path:?})),").map_err(|e| e.to_string())?;
    }
    src.push_str("];\n");
    let dest = out_dir.join("builtin_plugins.rs");
    fs::write(&dest, src).map_err(|e| format!("writing {}: {e}", dest.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<String> {
    env::var(name).map_err(|e| format!("${name}: {e}"))
}

/// Everything the guests are built from. Directories are scanned recursively
/// by cargo. The root Cargo.toml is left out on purpose: it changes often, and
/// the guests' dependency versions are pinned by plugins/Cargo.lock.
fn emit_rerun_if_changed(repo: &Path, plugins_dir: &Path) {
    let mut paths = vec![
        repo.join("sdk/wit"),
        repo.join("sdk/src"),
        repo.join("sdk/Cargo.toml"),
        repo.join("sdk/abi/src"),
        repo.join("sdk/abi/Cargo.toml"),
        plugins_dir.join("Cargo.toml"),
        plugins_dir.join("Cargo.lock"),
        plugins_dir.join("algorithms/src"),
        plugins_dir.join("algorithms/Cargo.toml"),
    ];
    for (name, _) in PLUGINS {
        paths.push(plugins_dir.join(name).join("src"));
        paths.push(plugins_dir.join(name).join("Cargo.toml"));
    }
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// Makes sure the toolchain has the wasm target. rustup installs the targets
/// of `rust-toolchain.toml` only when it installs the toolchain itself, so a
/// machine whose stable toolchain was already there lacks it: when rustup is
/// available the build adds the target to the toolchain this build runs on
/// (and says so); otherwise it fails early with the fix.
fn check_wasm_target() -> Result<()> {
    if wasm_target_installed()? {
        return Ok(());
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok().filter(|t| !t.is_empty());
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = &toolchain {
        cmd.args(["--toolchain", toolchain]);
    }
    println!(
        "cargo:warning=the Rust target {WASM_TARGET} is not installed; running `rustup target add {WASM_TARGET}{}` \
         (rust-toolchain.toml lists it; rustup adds it only when it installs the toolchain itself)",
        toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    );
    let added = match cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).status() {
        Ok(status) if status.success() => wasm_target_installed()?,
        Ok(_) | Err(_) => false,
    };
    if added {
        return Ok(());
    }
    Err(format!(
        "the Rust target {WASM_TARGET} is not installed (needed to build the built-in policy plugins), \
         and adding it with rustup did not work.\nInstall it with:\n\n    rustup target add {WASM_TARGET}\n"
    ))
}

/// Whether the rustc of this build has the standard library for the wasm target.
fn wasm_target_installed() -> Result<bool> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("could not run {rustc:?}: {e}"))?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The libdir exists as a path even without the target; the std rlib does not.
    let has_std = Path::new(&libdir)
        .read_dir()
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false);
    Ok(out.status.success() && !libdir.is_empty() && has_std)
}

/// `<target dir>/wasm-plugins`, next to the outer build's profile dirs, so
/// every profile and `--target` of the outer build shares one nested build.
/// OUT_DIR is `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`;
/// the result is checked against cargo's CACHEDIR.TAG. If the layout is not
/// recognised: the nearest ancestor holding a CACHEDIR.TAG, and failing that a
/// directory inside OUT_DIR (always safe, but not shared between profiles).
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os(TARGET_DIR_OVERRIDE) {
        return PathBuf::from(dir);
    }
    let is_target_dir = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
    let mut root = out_dir.ancestors().nth(4);
    if let (Some(dir), Some(triple)) = (root, env::var_os("TARGET"))
        && dir.file_name() == Some(triple.as_os_str())
    {
        root = dir.parent();
    }
    if let Some(dir) = root.filter(|dir| is_target_dir(dir)) {
        return dir.join("wasm-plugins");
    }
    out_dir
        .ancestors()
        .skip(1)
        .find(|dir| is_target_dir(dir))
        .map_or_else(
            || out_dir.join("wasm-plugins"),
            |dir| dir.join("wasm-plugins"),
        )
}

/// Strips the outer build's settings from the nested cargo's environment.
fn clean_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        // CARGO_ENCODED_RUSTFLAGS, CARGO_TARGET_DIR, CARGO_BUILD_TARGET,
        // CARGO_PROFILE_*, CARGO_CFG_*, CARGO_PKG_*, CARGO_PRIMARY_PACKAGE, …
        let cargo_setting = (key.starts_with("CARGO_") || key.starts_with("__CARGO"))
            && !KEEP_CARGO_VARS.iter().any(|keep| key.starts_with(keep));
        if cargo_setting || DROP_VARS.contains(&key) || key.starts_with("DEP_") {
            cmd.env_remove(key);
        }
    }
}
