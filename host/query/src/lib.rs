//! The querier's read path: endpoint discovery (`discovery`), the endpoint
//! set and the streaming fan-out merge (`fanout`), selection with the relabel
//! and dedup policy slots (`querier`), and the PromQL engine's storage over it
//! (`storage`). Knows gRPC (it is a StoreAPI client) but not HTTP.

pub mod discovery;
pub mod fanout;
pub mod querier;
pub mod storage;

pub use storage::{QuerierStorage, ReadOptions};
