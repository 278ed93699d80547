//! The README walkthrough stays true: its Cargo.toml and src/lib.rs are the
//! files of sdk/example-plugin, and that crate builds, as the README says,
//! into a WebAssembly component.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn readme_shows_the_example_plugin_verbatim() {
    let readme = read(&sdk_dir().join("README.md"));
    let lib = read(&sdk_dir().join("example-plugin/src/lib.rs"));
    assert!(
        readme.contains(&format!("```rust\n{lib}```")),
        "README's src/lib.rs differs from example-plugin/src/lib.rs"
    );

    let manifest = read(&sdk_dir().join("example-plugin/Cargo.toml"));
    let in_repo = r#"sluice-sdk = { path = "../../sdk" }"#;
    assert!(
        manifest.contains(in_repo),
        "example-plugin/Cargo.toml should depend on the SDK by path"
    );
    let shown = manifest.replace(in_repo, r#"sluice-sdk = { path = "/path/to/sluice/sdk" }"#);
    assert!(
        readme.contains(&format!("```toml\n{shown}```")),
        "README's Cargo.toml differs from example-plugin/Cargo.toml"
    );
}

#[test]
fn example_plugin_builds_to_a_component() {
    let example = sdk_dir().join("example-plugin");
    // Next to the outer target dir's other outputs; shared with host/build.rs,
    // which builds the built-in plugins with the same profile.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-plugins"),
        |t| t.join("wasm-plugins"),
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(example.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // Build as an author would: none of the outer build's settings.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = [
            "CARGO_HOME",
            "CARGO_NET_",
            "CARGO_HTTP_",
            "CARGO_REGISTRY_",
            "CARGO_REGISTRIES_",
            "CARGO_TERM_",
        ];
        if (key.starts_with("CARGO_") && !keep.iter().any(|k| key.starts_with(k)))
            || [
                "RUSTFLAGS",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
                "MAKEFLAGS",
                "MFLAGS",
            ]
            .contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("running cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let hint = if stderr.contains("may not be installed") {
            "\nfix: rustup target add wasm32-wasip2"
        } else {
            ""
        };
        panic!("building the example plugin failed{hint}\n{stderr}");
    }

    let wasm = target_dir.join("wasm32-wasip2/release/dedup_max.wasm");
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    // Component magic: "\0asm", then version 0x0d and layer 1 (a core module has layer 0).
    assert_eq!(
        &bytes[..8],
        b"\0asm\x0d\x00\x01\x00",
        "{} is not a component",
        wasm.display()
    );
    let exports = String::from_utf8_lossy(&bytes);
    assert!(
        exports.contains("sluice:policy/dedup@0.1.0"),
        "the component does not export the dedup interface"
    );
}
