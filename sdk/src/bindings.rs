//! Generated component-model bindings for the four `sluice:policy` worlds.
//! Hidden from plugin authors: the glue in `glue.rs` implements the generated
//! `Guest` traits on top of the SDK traits, and the `export_*!` macros expand
//! the generated export macros in the plugin crate.
//!
//! Each world gets its own module and its own export macro name, so the four
//! can live in one library crate; the custom section describing a world's
//! exports is emitted by its export macro, i.e. only into the plugin that
//! exports that world.

// The generated lifting/lowering code is `unsafe` by nature (raw pointers into
// the canonical ABI return area); it is wit-bindgen's, not ours.
#![allow(unsafe_code, missing_docs, clippy::all)]

pub mod dedup {
    wit_bindgen::generate!({
        world: "dedup-policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_dedup_policy",
        default_bindings_module: "sluice_sdk::__private::bindings::dedup",
        runtime_path: "sluice_sdk::__private::wit_bindgen::rt",
    });
}

pub mod relabel {
    wit_bindgen::generate!({
        world: "relabel-policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_relabel_policy",
        default_bindings_module: "sluice_sdk::__private::bindings::relabel",
        runtime_path: "sluice_sdk::__private::wit_bindgen::rt",
    });
}

pub mod retention {
    wit_bindgen::generate!({
        world: "retention-policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_retention_policy",
        default_bindings_module: "sluice_sdk::__private::bindings::retention",
        runtime_path: "sluice_sdk::__private::wit_bindgen::rt",
    });
}

pub mod downsample {
    wit_bindgen::generate!({
        world: "downsample-policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_downsample_policy",
        default_bindings_module: "sluice_sdk::__private::bindings::downsample",
        runtime_path: "sluice_sdk::__private::wit_bindgen::rt",
    });
}
