extern crate self as sluice_sdk;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;
pub mod dedup {
    wit_bindgen::generate!({
        world: "dedup-policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_dedup_policy",
        default_bindings_module: "sluice_sdk::dedup",
        runtime_path: "sluice_sdk::__wit_bindgen",
        debug: true,
    });
}
