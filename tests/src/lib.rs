//! End-to-end test support for Sluice: fixtures made by the real `promtool`, real `sluice store`, `sluice query`
//! and moto S3 processes on 127.0.0.1, StoreAPI helpers that decode and check what a store returns, the
//! querier's HTTP API, misbehaving fake StoreAPI servers, a DNS server the test controls, and headless Chromium
//! through WebDriver.

pub mod answers;
pub mod api;
pub mod azurite;
pub mod bucket;
pub mod certs;
pub mod dns;
pub mod fake;
pub mod fixture;
pub mod gcs;
pub mod grpc;
pub mod model;
pub mod process;
pub mod prometheus;
pub mod tls;
pub mod tools;
pub mod webdriver;

pub use fixture::{Block, Fixture};
pub use grpc::{SeriesResult, label_names, label_values, series, series_request};
pub use model::{Labels, Matcher, Sample, SeriesMap, ServedBlock, eq, labels, neq, nre, re};
pub use process::{
    HttpsAccess, Moto, SluiceFrontend, SluiceProcess, SluiceQuery, SluiceSidecar, SluiceStore,
};
pub use prometheus::Prometheus;
