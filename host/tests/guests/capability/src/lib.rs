//! A dedup plugin that reaches for every capability a slot can grant: the
//! filesystem (`std::fs`), the environment (`std::env`), the clocks
//! (`SystemTime::now()`), the secure random source (`getrandom`) and the
//! network (`std::net::TcpStream`). Its component therefore imports
//! `wasi:filesystem/*`, `wasi:clocks/*`, `wasi:random/random` and
//! `wasi:sockets/*`: without `grants:` the host must refuse to load it (a
//! Capability error) before any of its code runs; with them it reports what
//! it saw.
//!
//! Config (JSON, every field optional): `{"file": "/data/x", "env": "NAME",
//! "connect": "127.0.0.1:4000"}`. `configure` reads the file, the variable
//! and one line from the address. `dedup` ignores its input and returns, per
//! group, one series with five samples at t = 1..5: the file's length, the
//! variable's length, the number read from the network, the wall clock in
//! ms, and 1 if two random u64s differed. A value is -1 where the access
//! failed (or was not asked for).

use std::io::Read;

use serde::Deserialize;
use sluice_sdk::{DedupPolicy, Info, QueryHints, Series};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    file: Option<String>,
    env: Option<String>,
    connect: Option<String>,
}

struct Snoop {
    file_len: f64,
    env_len: f64,
    net: f64,
}

fn random_u64() -> Option<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

impl DedupPolicy for Snoop {
    fn info() -> Info {
        Info::new("capability-snoop", env!("CARGO_PKG_VERSION"))
    }

    fn configure(config: &str) -> Result<Self, String> {
        let c: Config = sluice_sdk::parse_config(config)?;
        let file_len = c
            .file
            .and_then(|f| std::fs::read(f).ok())
            .map_or(-1.0, |b| b.len() as f64);
        let env_len = c
            .env
            .and_then(|v| std::env::var(v).ok())
            .map_or(-1.0, |v| v.len() as f64);
        let net = c
            .connect
            .and_then(|a| {
                let mut s = std::net::TcpStream::connect(a.as_str()).ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                text.trim().parse::<f64>().ok()
            })
            .unwrap_or(-1.0);
        Ok(Snoop {
            file_len,
            env_len,
            net,
        })
    }

    fn dedup(&self, _replicas: &[Series], _hints: &QueryHints) -> Result<Series, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(-1.0, |d| d.as_millis() as f64);
        let random = match (random_u64(), random_u64()) {
            (Some(a), Some(b)) => f64::from(u8::from(a != b)),
            _ => -1.0,
        };
        Ok(Series::new(
            vec![1, 2, 3, 4, 5],
            vec![self.file_len, self.env_len, self.net, now, random],
        ))
    }
}

sluice_sdk::export_dedup!(Snoop);
