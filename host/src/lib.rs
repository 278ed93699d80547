//! Sluice host runtime: the library behind the `sluice` binary. Modules are
//! cut by domain; dependencies point down this list and never back up:
//! `cli` → `api` → `storeapi` → `bucket` → (`sluice_tsdb`, `objstore`) → `model`.
//! See ARCHITECTURE.md for the map and invariants.

pub mod api;
pub mod bucket;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod fanout;
pub mod metrics;
pub mod model;
pub mod objstore;
pub mod policy;
pub mod promql;
pub mod querier;
pub mod storeapi;
pub mod tls;
