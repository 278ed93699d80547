//! aggr
