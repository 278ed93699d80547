//! A dedup plugin built with plain wit-bindgen against the repository's WIT
//! (`sluice:policy@0.1.0`, so its exports link), whose `info()` reports ABI
//! "9.0". The SDK always reports its own ABI, so this needs raw bindings.
//! The host must refuse it at load with an ABI error.

#![allow(unsafe_code)] // wit-bindgen's generated glue

wit_bindgen::generate!({
    world: "dedup-policy",
    path: "../../../../sdk/wit",
});

use exports::sluice::policy::dedup::{Guest, PluginInfo, QueryHints};

struct AbiNine;

impl Guest for AbiNine {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "abi-nine".into(),
            version: "0.1.0".into(),
            abi: "9.0".into(),
        }
    }

    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn dedup(groups: Vec<u8>, _hints: QueryHints) -> Result<Vec<u8>, String> {
        Ok(groups)
    }
}

export!(AbiNine);
