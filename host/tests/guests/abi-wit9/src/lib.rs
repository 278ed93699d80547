//! A dedup plugin exporting `sluice:policy/dedup@9.0.0` (wit/policy.wit
//! here): a contract major version this host does not speak. The host must
//! refuse it at load with an ABI error, before instantiating it.

#![allow(unsafe_code)] // wit-bindgen's generated glue

wit_bindgen::generate!({
    world: "dedup-policy",
    path: "wit",
});

use exports::sluice::policy::dedup::{Guest, PluginInfo, QueryHints};

struct WitNine;

impl Guest for WitNine {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "wit-nine".into(),
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

export!(WitNine);
