//! Sluice's processes: the library behind the `sluice` binary. It holds only
//! what is about processes — subcommands and flags (`cli`), the HTTP surface
//! (`api`, the UI) — and wires the mechanism crates below it:
//!
//! `sluice` → `sluice-query` (discovery, fan-out, querier) → `sluice-promql`,
//! `sluice-policy`, `sluice-tls` → `sluice-store` (bucket catalog and read
//! path) → `sluice-storeapi` (source trait, generic gRPC server) →
//! `sluice-tsdb`, `sluice-objstore` → `sluice-model`.
//!
//! The mechanism crates are re-exported under their layer names so that
//! `sluice::policy`, `sluice::promql`, … keep naming them. See ARCHITECTURE.md.

pub mod api;
pub mod cli;

pub use sluice_config as config;
pub use sluice_metrics as metrics;
pub use sluice_model as model;
pub use sluice_objstore as objstore;
pub use sluice_policy as policy;
pub use sluice_promql as promql;
pub use sluice_query::{discovery, fanout, querier};
pub use sluice_sidecar as sidecar;
pub use sluice_store as bucket;
pub use sluice_storeapi as storeapi;
pub use sluice_tls as tls;
