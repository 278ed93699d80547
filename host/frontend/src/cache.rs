//! The results cache: per key (one split piece of one query), the extents
//! of it already answered. Backends from Thanos' `--query-range.response-cache-config`
//! YAML: `IN-MEMORY` (FIFO within `max_size` bytes and `max_size_items`,
//! entries older than `validity` dropped), `MEMCACHED` and `REDIS` (their
//! text protocols over TCP, written here). A remote backend that fails or
//! times out is a miss (logged, counted), never an error of the query; an
//! item over memcached's `max_item_size` is skipped, counted and logged.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::response::Matrix;

/// One answered part of a piece.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    /// Inclusive, ms, on the query's step grid.
    pub start: i64,
    pub end: i64,
    /// The downstream's store set when it was answered.
    pub stores: u64,
    pub answer: Matrix,
}

/// What is cached under one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A range-query piece's answered extents.
    Extents(Vec<Extent>),
    /// A whole answer (a label or series piece).
    Value(Value),
}

impl Entry {
    fn size(&self) -> usize {
        match self {
            Entry::Extents(e) => e.iter().map(|e| e.answer.size()).sum(),
            Entry::Value(v) => v.to_string().len(),
        }
    }
}

/// What a remote backend stores: the full key (checked on read, as hashed
/// keys may collide) and the entry.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    key: String,
    entry: Entry,
}

/// Thanos' cache config: `type` and `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheYaml {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
}

/// Parses Thanos' byte sizes: a number, or with a KB/MB/GB (KiB…) suffix.
fn parse_bytes(v: &Value, what: &str) -> Result<u64, String> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("{what} must be a number or a size like 256MB"))?
        .trim();
    let upper = s.to_ascii_uppercase();
    let split = upper
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(upper.len());
    let (num, unit) = upper.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{what}: cannot parse {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        u => return Err(format!("{what}: unknown unit {u:?}")),
    };
    Ok((n * mult as f64) as u64)
}

fn duration(v: Option<&Value>, what: &str, default: Duration) -> Result<Duration, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => {
            sluice_config::parse_duration(s).map_err(|e| format!("{what}: {e}"))
        }
        Some(Value::Number(n)) => Ok(Duration::from_nanos(n.as_u64().unwrap_or(0))),
        Some(other) => Err(format!("{what}: not a duration: {other}")),
    }
}

/// Reads a backend's `config:` map: every key must be one Thanos knows;
/// the ones Sluice does not use are returned to be named in the log.
fn config_map(
    config: Option<Value>,
    kind: &str,
    used: &[&str],
    ignored: &[&str],
) -> Result<(serde_json::Map<String, Value>, Vec<String>), String> {
    let map = match config {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "response cache config ({kind}): config is not a map: {other}"
            ));
        }
    };
    let mut noop = Vec::new();
    for k in map.keys() {
        if ignored.contains(&k.as_str()) {
            noop.push(k.clone());
        } else if !used.contains(&k.as_str()) {
            return Err(format!("response cache config ({kind}): unknown key {k:?}"));
        }
    }
    Ok((map, noop))
}

/// A results cache.
#[derive(Debug)]
pub struct ResultsCache {
    backend: Backend,
    /// Items not written because they were too large.
    pub skipped_too_large: AtomicU64,
    /// Operations of a remote backend that failed (treated as misses).
    pub failures: AtomicU64,
}

#[derive(Debug)]
enum Backend {
    Memory(Memory),
    Memcached(Memcached),
    Redis(Redis),
}

impl ResultsCache {
    /// From `--query-range.response-cache-config(-file)`; `Ok(None)` when
    /// the config makes no cache (Thanos: in-memory with both size limits 0).
    pub fn from_yaml(yaml: &str) -> Result<Option<ResultsCache>, String> {
        let c: CacheYaml =
            serde_saphyr::from_str(yaml).map_err(|e| format!("response cache config: {e}"))?;
        let backend = match c.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let (m, _) = config_map(
                    c.config,
                    "IN-MEMORY",
                    &["max_size", "max_size_items", "validity"],
                    &[],
                )?;
                let max_bytes = m
                    .get("max_size")
                    .map(|v| parse_bytes(v, "max_size"))
                    .transpose()?
                    .unwrap_or(0);
                let max_items = m.get("max_size_items").and_then(Value::as_u64).unwrap_or(0);
                if max_bytes == 0 && max_items == 0 {
                    return Ok(None);
                }
                let validity = duration(m.get("validity"), "validity", Duration::ZERO)?;
                Backend::Memory(Memory::new(
                    max_bytes,
                    max_items,
                    (!validity.is_zero()).then_some(validity),
                ))
            }
            "MEMCACHED" => {
                let (m, noop) = config_map(
                    c.config,
                    "MEMCACHED",
                    &[
                        "addresses",
                        "timeout",
                        "max_idle_connections",
                        "max_item_size",
                        "expiration",
                    ],
                    &[
                        "max_async_concurrency",
                        "max_async_buffer_size",
                        "max_get_multi_concurrency",
                        "max_get_multi_batch_size",
                        "dns_provider_update_interval",
                        "auto_discovery",
                        "set_async_circuit_breaker_config",
                        "tls_enabled",
                        "tls_config",
                    ],
                )?;
                for k in noop {
                    tracing::warn!(key = %k, "memcached cache config key accepted for Thanos compatibility; it has no effect");
                }
                let addresses: Vec<String> = m
                    .get("addresses")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if addresses.is_empty() {
                    return Err("response cache config (MEMCACHED): no addresses".into());
                }
                if let Some(a) = addresses.iter().find(|a| a.starts_with("dns")) {
                    return Err(format!(
                        "response cache config (MEMCACHED): {a}: DNS service discovery of memcached is not supported; list host:port addresses"
                    ));
                }
                Backend::Memcached(Memcached {
                    addresses,
                    timeout: duration(m.get("timeout"), "timeout", Duration::from_millis(500))?,
                    max_idle: m
                        .get("max_idle_connections")
                        .and_then(Value::as_u64)
                        .unwrap_or(100) as usize,
                    max_item_size: m
                        .get("max_item_size")
                        .map(|v| parse_bytes(v, "max_item_size"))
                        .transpose()?
                        .unwrap_or(1 << 20),
                    expiration: nonzero(duration(
                        m.get("expiration"),
                        "expiration",
                        Duration::ZERO,
                    )?),
                    idle: Mutex::new(HashMap::new()),
                })
            }
            "REDIS" => {
                let (m, noop) = config_map(
                    c.config,
                    "REDIS",
                    &[
                        "addr",
                        "username",
                        "password",
                        "db",
                        "read_timeout",
                        "dial_timeout",
                        "write_timeout",
                        "expiration",
                    ],
                    &[
                        "master_name",
                        "pool_size",
                        "min_idle_conns",
                        "idle_timeout",
                        "max_conn_age",
                        "max_get_multi_concurrency",
                        "get_multi_batch_size",
                        "max_set_multi_concurrency",
                        "set_multi_batch_size",
                        "tls_enabled",
                        "tls_config",
                        "cache_size",
                        "max_async_buffer_size",
                        "max_async_concurrency",
                        "set_async_circuit_breaker_config",
                        "prefix",
                    ],
                )?;
                for k in noop {
                    tracing::warn!(key = %k, "redis cache config key accepted for Thanos compatibility; it has no effect");
                }
                let addr = m
                    .get("addr")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if addr.is_empty() {
                    return Err("response cache config (REDIS): no addr".into());
                }
                Backend::Redis(Redis {
                    addr,
                    username: m.get("username").and_then(Value::as_str).map(str::to_owned),
                    password: m.get("password").and_then(Value::as_str).map(str::to_owned),
                    db: m.get("db").and_then(Value::as_u64).unwrap_or(0),
                    timeout: duration(
                        m.get("read_timeout"),
                        "read_timeout",
                        Duration::from_secs(3),
                    )?,
                    expiration: nonzero(duration(
                        m.get("expiration"),
                        "expiration",
                        Duration::ZERO,
                    )?),
                    idle: Mutex::new(Vec::new()),
                })
            }
            other => {
                return Err(format!(
                    "response cache config: unknown type {other:?} (IN-MEMORY, MEMCACHED or REDIS)"
                ));
            }
        };
        Ok(Some(ResultsCache {
            backend,
            skipped_too_large: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// An in-memory cache; a 0 limit is no limit.
    pub fn in_memory(max_bytes: u64, max_items: u64, validity: Option<Duration>) -> Self {
        ResultsCache {
            backend: Backend::Memory(Memory::new(max_bytes, max_items, validity)),
            skipped_too_large: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The backend's name, as in the config.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "IN-MEMORY",
            Backend::Memcached(_) => "MEMCACHED",
            Backend::Redis(_) => "REDIS",
        }
    }

    /// The extents stored under `key` (a miss when a remote backend fails).
    pub async fn get(&self, key: &str) -> Option<Vec<Extent>> {
        match self.get_entry(key).await? {
            Entry::Extents(e) => Some(e),
            Entry::Value(_) => None,
        }
    }

    /// The answer stored under `key`.
    pub async fn get_value(&self, key: &str) -> Option<Value> {
        match self.get_entry(key).await? {
            Entry::Value(v) => Some(v),
            Entry::Extents(_) => None,
        }
    }

    /// Stores extents under `key`.
    pub async fn put(&self, key: String, extents: Vec<Extent>) -> PutOutcome {
        self.put_entry(key, Entry::Extents(extents)).await
    }

    /// Stores an answer under `key`.
    pub async fn put_value(&self, key: String, value: Value) -> PutOutcome {
        self.put_entry(key, Entry::Value(value)).await
    }

    async fn get_entry(&self, key: &str) -> Option<Entry> {
        let raw = match &self.backend {
            Backend::Memory(m) => return m.get(key),
            Backend::Memcached(m) => m.get(&hashed(key)).await,
            Backend::Redis(r) => r.get(&hashed(key)).await,
        };
        let bytes = match raw {
            Ok(b) => b?,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(backend = self.kind(), error = %e, "results cache read failed; answering uncached");
                return None;
            }
        };
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        // A hash collision is a miss, not someone else's answer.
        (stored.key == key).then_some(stored.entry)
    }

    /// Stores `entry` under `key`. An item larger than the backend takes
    /// is skipped, counted and logged; a failing backend is logged.
    async fn put_entry(&self, key: String, entry: Entry) -> PutOutcome {
        let remote = match &self.backend {
            Backend::Memory(m) => {
                return if m.put(key, entry) {
                    PutOutcome::Stored
                } else {
                    PutOutcome::TooLarge
                };
            }
            Backend::Memcached(_) | Backend::Redis(_) => {
                match serde_json::to_vec(&Stored {
                    key: key.clone(),
                    entry,
                }) {
                    Ok(v) => v,
                    Err(_) => return PutOutcome::Failed,
                }
            }
        };
        let outcome = match &self.backend {
            Backend::Memcached(mc) => {
                if remote.len() as u64 > mc.max_item_size {
                    self.skipped_too_large.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        bytes = remote.len(),
                        max_item_size = mc.max_item_size,
                        "results cache item over memcached's max_item_size; not cached"
                    );
                    return PutOutcome::TooLarge;
                }
                mc.set(&hashed(&key), &remote).await
            }
            Backend::Redis(r) => r.set(&hashed(&key), &remote).await,
            Backend::Memory(_) => return PutOutcome::Failed,
        };
        match outcome {
            Ok(()) => PutOutcome::Stored,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(backend = self.kind(), error = %e, "results cache write failed");
                PutOutcome::Failed
            }
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// Over the backend's item size (or the whole in-memory cache).
    TooLarge,
    /// The backend failed; logged.
    Failed,
}

fn nonzero(d: Duration) -> Duration {
    if d.is_zero() {
        Duration::from_secs(24 * 3600)
    } else {
        d
    }
}

/// Thanos' backend key: lower-hex FNV-1a-64 of the full key.
pub fn hashed(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The in-memory backend.
#[derive(Debug)]
struct Memory {
    max_bytes: u64,
    max_items: u64,
    validity: Option<Duration>,
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    map: HashMap<String, (Entry, Instant, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Memory {
    fn new(max_bytes: u64, max_items: u64, validity: Option<Duration>) -> Self {
        Memory {
            max_bytes,
            max_items,
            validity,
            inner: Mutex::new(MemInner::default()),
        }
    }

    fn get(&self, key: &str) -> Option<Entry> {
        let g = self.inner.lock().ok()?;
        let (e, at, _) = g.map.get(key)?;
        if self.validity.is_some_and(|v| at.elapsed() > v) {
            return None;
        }
        Some(e.clone())
    }

    fn put(&self, key: String, entry: Entry) -> bool {
        let size: usize = entry.size() + key.len();
        if self.max_bytes > 0 && size as u64 > self.max_bytes {
            return false;
        }
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        if let Some((_, _, old)) = g.map.remove(&key) {
            g.bytes -= old;
            g.order.retain(|k| k != &key);
        }
        while (self.max_bytes > 0 && (g.bytes + size) as u64 > self.max_bytes)
            || (self.max_items > 0 && g.map.len() as u64 >= self.max_items)
        {
            let Some(k) = g.order.pop_front() else { break };
            if let Some((_, _, s)) = g.map.remove(&k) {
                g.bytes -= s;
            }
        }
        g.bytes += size;
        g.order.push_back(key.clone());
        g.map.insert(key, (entry, Instant::now(), size));
        true
    }
}

/// Most bytes a remote backend may return for one key.
const MAX_VALUE: usize = 256 << 20;

/// memcached over its text protocol; keys spread over the servers by hash.
#[derive(Debug)]
struct Memcached {
    addresses: Vec<String>,
    timeout: Duration,
    max_idle: usize,
    max_item_size: u64,
    expiration: Duration,
    idle: Mutex<HashMap<String, Vec<BufReader<TcpStream>>>>,
}

impl Memcached {
    fn server(&self, key: &str) -> &str {
        let h = u64::from_str_radix(key, 16).unwrap_or(0);
        &self.addresses[(h % self.addresses.len() as u64) as usize]
    }

    async fn conn(&self, addr: &str) -> Result<BufReader<TcpStream>, String> {
        if let Some(c) = self
            .idle
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(addr).and_then(Vec::pop))
        {
            return Ok(c);
        }
        let s = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("memcached {addr}: connect timed out"))?
            .map_err(|e| format!("memcached {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(BufReader::new(s))
    }

    fn release(&self, addr: &str, c: BufReader<TcpStream>) {
        if let Ok(mut m) = self.idle.lock() {
            let v = m.entry(addr.to_owned()).or_default();
            if v.len() < self.max_idle {
                v.push(c);
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let addr = self.server(key).to_owned();
        let mut c = self.conn(&addr).await?;
        let r = tokio::time::timeout(self.timeout, async {
            c.get_mut()
                .write_all(format!("get {key}\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut line = String::new();
            c.read_line(&mut line).await.map_err(|e| e.to_string())?;
            if line.starts_with("END") {
                return Ok(None);
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let len: usize = match parts.as_slice() {
                ["VALUE", _, _, n, ..] => n
                    .parse()
                    .map_err(|_| format!("bad memcached reply {line:?}"))?,
                _ => return Err(format!("bad memcached reply {line:?}")),
            };
            if len > MAX_VALUE {
                return Err(format!("memcached value of {len} bytes"));
            }
            let mut data = vec![0u8; len + 2];
            c.read_exact(&mut data).await.map_err(|e| e.to_string())?;
            data.truncate(len);
            line.clear();
            c.read_line(&mut line).await.map_err(|e| e.to_string())?;
            if !line.starts_with("END") {
                return Err(format!("bad memcached reply {line:?}"));
            }
            Ok(Some(data))
        })
        .await
        .map_err(|_| format!("memcached {addr}: timed out after {:?}", self.timeout))?;
        if r.is_ok() {
            self.release(&addr, c);
        }
        r.map_err(|e| format!("memcached {addr}: {e}"))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let addr = self.server(key).to_owned();
        let mut c = self.conn(&addr).await?;
        let exp = self.expiration.as_secs().min(30 * 24 * 3600);
        let r = tokio::time::timeout(self.timeout, async {
            let mut msg = format!("set {key} 0 {exp} {}\r\n", value.len()).into_bytes();
            msg.extend_from_slice(value);
            msg.extend_from_slice(b"\r\n");
            c.get_mut()
                .write_all(&msg)
                .await
                .map_err(|e| e.to_string())?;
            let mut line = String::new();
            c.read_line(&mut line).await.map_err(|e| e.to_string())?;
            if line.starts_with("STORED") {
                Ok(())
            } else {
                Err(format!("memcached refused the item: {}", line.trim()))
            }
        })
        .await
        .map_err(|_| format!("memcached {addr}: timed out after {:?}", self.timeout))?;
        if r.is_ok() {
            self.release(&addr, c);
        }
        r.map_err(|e| format!("memcached {addr}: {e}"))
    }
}

/// Redis over RESP.
#[derive(Debug)]
struct Redis {
    addr: String,
    username: Option<String>,
    password: Option<String>,
    db: u64,
    timeout: Duration,
    expiration: Duration,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One RESP reply: a bulk string (`None` for nil), or a simple status.
async fn resp_reply(c: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>, String> {
    let mut line = String::new();
    c.read_line(&mut line).await.map_err(|e| e.to_string())?;
    match line.as_bytes().first() {
        Some(b'+') | Some(b':') => Ok(Some(line.trim_end().as_bytes()[1..].to_vec())),
        Some(b'-') => Err(format!("redis: {}", line.trim_end())),
        Some(b'$') => {
            let n: i64 = line[1..]
                .trim()
                .parse()
                .map_err(|_| format!("bad redis reply {line:?}"))?;
            if n < 0 {
                return Ok(None);
            }
            let n = n as usize;
            if n > MAX_VALUE {
                return Err(format!("redis value of {n} bytes"));
            }
            let mut data = vec![0u8; n + 2];
            c.read_exact(&mut data).await.map_err(|e| e.to_string())?;
            data.truncate(n);
            Ok(Some(data))
        }
        _ => Err(format!("bad redis reply {line:?}")),
    }
}

impl Redis {
    async fn conn(&self) -> Result<BufReader<TcpStream>, String> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let s = tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let mut c = BufReader::new(s);
        if let Some(p) = &self.password {
            let cmd = match &self.username {
                Some(u) => resp_command(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => resp_command(&[b"AUTH", p.as_bytes()]),
            };
            c.get_mut()
                .write_all(&cmd)
                .await
                .map_err(|e| e.to_string())?;
            resp_reply(&mut c).await?;
        }
        if self.db != 0 {
            c.get_mut()
                .write_all(&resp_command(&[b"SELECT", self.db.to_string().as_bytes()]))
                .await
                .map_err(|e| e.to_string())?;
            resp_reply(&mut c).await?;
        }
        Ok(c)
    }

    async fn call(&self, cmd: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let r = tokio::time::timeout(self.timeout, async {
            let mut c = self.conn().await?;
            c.get_mut()
                .write_all(&cmd)
                .await
                .map_err(|e| e.to_string())?;
            let r = resp_reply(&mut c).await?;
            if let Ok(mut v) = self.idle.lock()
                && v.len() < 16
            {
                v.push(c);
            }
            Ok(r)
        })
        .await
        .map_err(|_| format!("timed out after {:?}", self.timeout))?;
        r.map_err(|e: String| format!("redis {}: {e}", self.addr))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.call(resp_command(&[b"GET", key.as_bytes()])).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let ttl = self.expiration.as_secs().max(1).to_string();
        self.call(resp_command(&[
            b"SET",
            key.as_bytes(),
            value,
            b"EX",
            ttl.as_bytes(),
        ]))
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(start: i64) -> Extent {
        Extent {
            start,
            end: start + 1,
            stores: 0,
            answer: Matrix::default(),
        }
    }

    #[tokio::test]
    async fn thanos_yaml_and_fifo_limits() {
        let c = ResultsCache::from_yaml(
            "type: in-memory\nconfig:\n  max_size: 1MB\n  max_size_items: 2\n",
        )
        .unwrap()
        .unwrap();
        for (k, s) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(c.put(k.into(), vec![ext(s)]).await, PutOutcome::Stored);
        }
        assert!(
            c.get("a").await.is_none(),
            "oldest evicted at max_size_items"
        );
        assert_eq!(c.get("c").await.unwrap()[0].start, 3);
        assert!(
            ResultsCache::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: 0\n")
                .unwrap()
                .is_none()
        );
        assert!(ResultsCache::from_yaml("type: IN-MEMORY\nconfig:\n  nope: 1\n").is_err());
        assert!(ResultsCache::from_yaml("type: MEMCACHED\nconfig:\n  addresses: []\n").is_err());
        assert!(
            ResultsCache::from_yaml("type: MEMCACHED\nconfig:\n  addresses: [\"dns+x:11211\"]\n")
                .is_err()
        );
        let m = ResultsCache::from_yaml(
            "type: memcached\nconfig:\n  addresses: [\"127.0.0.1:1\"]\n  max_item_size: 2MB\n  max_async_concurrency: 5\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.kind(), "MEMCACHED");
        assert!(
            ResultsCache::from_yaml("type: REDIS\nconfig:\n  addr: 127.0.0.1:1\n  db: 2\n")
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_bytes(&serde_json::json!("256MB"), "x").unwrap(),
            256 << 20
        );
    }

    #[tokio::test]
    async fn a_dead_remote_backend_is_a_miss_not_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = ResultsCache::from_yaml(&format!(
            "type: MEMCACHED\nconfig:\n  addresses: [\"{addr}\"]\n"
        ))
        .unwrap()
        .unwrap();
        assert!(c.get("k").await.is_none());
        assert_eq!(c.put("k".into(), vec![ext(1)]).await, PutOutcome::Failed);
        assert_eq!(c.failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn fnv1a_keys() {
        // FNV-1a 64 of "" is the offset basis; of "a", a published test vector.
        assert_eq!(hashed(""), "cbf29ce484222325");
        assert_eq!(hashed("a"), "af63dc4c8601ec8c");
    }
}
