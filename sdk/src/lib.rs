//! sluice-sdk: write Sluice data policies (dedup, relabel, retention,
//! downsample) as WebAssembly components.
//!
//! Implement one of [`DedupPolicy`], [`RelabelPolicy`], [`RetentionPolicy`] or
//! [`DownsamplePolicy`], export it with the matching macro, and build with
//! `cargo build --target wasm32-wasip2 --release`. The WIT contract
//! (`sluice:policy`, sdk/wit/policy.wit) and the flat data layouts
//! (sdk/ABI.md) stay behind the macro.
//!
//! ```
//! use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};
//!
//! struct KeepFirst;
//!
//! impl DedupPolicy for KeepFirst {
//!     fn info() -> Info {
//!         Info::new("keep-first", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn configure(config: &str) -> Result<Self, String> {
//!         sluice_sdk::parse_config::<sluice_sdk::NoConfig>(config)?;
//!         Ok(KeepFirst)
//!     }
//!     fn dedup(&self, replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
//!         Ok(replicas.first().cloned().unwrap_or_default())
//!     }
//! }
//!
//! sluice_sdk::export_dedup!(KeepFirst);
//! ```
//!
//! The policy value returned by `configure` is kept by the SDK for the life
//! of the component instance and lent to every later call. Panics abort the
//! instance (a trap); return `Err` for anything the host should report.
//!
//! sdk/README.md walks through a complete plugin, from `cargo new` to a
//! `.wasm` file.

#[doc(hidden)]
pub mod bindings;
mod config;
mod glue;
mod policy;

pub use config::{NoConfig, parse_config};
pub use policy::{
    Aggregates, BlockMeta, Decision, DedupInput, DedupOutputWriter, DedupPolicy, DownsamplePolicy,
    Info, Labels, QueryHints, RelabelPolicy, RetentionPolicy, Series, SeriesRef,
};
pub use sluice_policy_abi::ABI_VERSION;

/// Lets the generated code name this crate as `sluice_sdk` from inside it.
extern crate self as sluice_sdk;

/// Used by the `export_*!` macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::glue::{Dedup, Downsample, Relabel, Retention};
    pub use wit_bindgen;
}

/// Exports a [`DedupPolicy`] implementation as this component's
/// `sluice:policy/dedup` interface. Call it once, at the crate's top level:
/// `sluice_sdk::export_dedup!(MyPolicy);`
#[macro_export]
macro_rules! export_dedup {
    ($policy:ty) => {
        const _: () = {
            type __SluiceDedupExport = $crate::__private::Dedup<$policy>;
            $crate::__private::bindings::dedup::__export_dedup_policy!(__SluiceDedupExport with_types_in $crate::__private::bindings::dedup);
        };
    };
}

/// Exports a [`RelabelPolicy`] implementation as this component's
/// `sluice:policy/relabel` interface: `sluice_sdk::export_relabel!(MyPolicy);`
#[macro_export]
macro_rules! export_relabel {
    ($policy:ty) => {
        const _: () = {
            type __SluiceRelabelExport = $crate::__private::Relabel<$policy>;
            $crate::__private::bindings::relabel::__export_relabel_policy!(__SluiceRelabelExport with_types_in $crate::__private::bindings::relabel);
        };
    };
}

/// Exports a [`RetentionPolicy`] implementation as this component's
/// `sluice:policy/retention` interface: `sluice_sdk::export_retention!(MyPolicy);`
#[macro_export]
macro_rules! export_retention {
    ($policy:ty) => {
        const _: () = {
            type __SluiceRetentionExport = $crate::__private::Retention<$policy>;
            $crate::__private::bindings::retention::__export_retention_policy!(
                __SluiceRetentionExport with_types_in $crate::__private::bindings::retention
            );
        };
    };
}

/// Exports a [`DownsamplePolicy`] implementation as this component's
/// `sluice:policy/downsample` interface: `sluice_sdk::export_downsample!(MyPolicy);`
#[macro_export]
macro_rules! export_downsample {
    ($policy:ty) => {
        const _: () = {
            type __SluiceDownsampleExport = $crate::__private::Downsample<$policy>;
            $crate::__private::bindings::downsample::__export_downsample_policy!(
                __SluiceDownsampleExport with_types_in $crate::__private::bindings::downsample
            );
        };
    };
}
