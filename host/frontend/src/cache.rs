//! The results cache: per key (one split piece of one query), the extents
//! of it already answered. Backends from Thanos' `--query-range.response-cache-config`
//! YAML; `IN-MEMORY` is here (FIFO within `max_size` bytes and
//! `max_size_items`, entries older than `validity` dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::response::Matrix;

/// One answered part of a piece.
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    /// Inclusive, ms, on the query's step grid.
    pub start: i64,
    pub end: i64,
    /// The downstream's store set when it was answered.
    pub stores: u64,
    pub answer: Matrix,
}

/// Thanos' cache config: `type` and `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheYaml {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// `IN-MEMORY` settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InMemoryYaml {
    #[serde(default)]
    max_size: Option<serde_json::Value>,
    #[serde(default)]
    max_size_items: u64,
    #[serde(default)]
    validity: Option<String>,
}

/// Parses Thanos' byte sizes: a number, or with a KB/MB/GB (KiB…) suffix.
fn parse_bytes(v: &serde_json::Value) -> Result<u64, String> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    let s = v
        .as_str()
        .ok_or("max_size must be a number or a size like 256MB")?
        .trim();
    let upper = s.to_ascii_uppercase();
    let split = upper
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(upper.len());
    let (num, unit) = upper.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("max_size: cannot parse {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        u => return Err(format!("max_size: unknown unit {u:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// A results cache.
#[derive(Debug)]
pub struct ResultsCache {
    max_bytes: u64,
    max_items: u64,
    validity: Option<Duration>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, (Vec<Extent>, Instant, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl ResultsCache {
    /// From `--query-range.response-cache-config(-file)`; `Ok(None)` when
    /// the config makes no cache (Thanos: both size limits 0).
    pub fn from_yaml(yaml: &str) -> Result<Option<ResultsCache>, String> {
        let c: CacheYaml =
            serde_saphyr::from_str(yaml).map_err(|e| format!("response cache config: {e}"))?;
        match c.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let m: InMemoryYaml = match c.config {
                    Some(v) if !v.is_null() => serde_json::from_value(v)
                        .map_err(|e| format!("response cache config (IN-MEMORY): {e}"))?,
                    _ => InMemoryYaml::default(),
                };
                let max_bytes = m
                    .max_size
                    .as_ref()
                    .map(parse_bytes)
                    .transpose()?
                    .unwrap_or(0);
                if max_bytes == 0 && m.max_size_items == 0 {
                    return Ok(None);
                }
                let validity = match m.validity.as_deref() {
                    None | Some("") | Some("0") | Some("0s") => None,
                    Some(v) => Some(
                        sluice_config::parse_duration(v).map_err(|e| format!("validity: {e}"))?,
                    ),
                };
                Ok(Some(ResultsCache::in_memory(
                    max_bytes,
                    m.max_size_items,
                    validity,
                )))
            }
            "MEMCACHED" | "REDIS" => Err(format!(
                "response cache type {} is not supported by this version of sluice query-frontend; use IN-MEMORY",
                c.kind
            )),
            other => Err(format!(
                "response cache config: unknown type {other:?} (IN-MEMORY, MEMCACHED or REDIS)"
            )),
        }
    }

    /// An in-memory cache; a 0 limit is no limit.
    pub fn in_memory(max_bytes: u64, max_items: u64, validity: Option<Duration>) -> Self {
        ResultsCache {
            max_bytes,
            max_items,
            validity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The extents stored under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<Extent>> {
        let g = self.inner.lock().ok()?;
        let (e, at, _) = g.map.get(key)?;
        if self.validity.is_some_and(|v| at.elapsed() > v) {
            return None;
        }
        Some(e.clone())
    }

    /// Stores `extents` under `key`, evicting the oldest entries as the
    /// limits require. An entry larger than the whole cache is not stored.
    pub fn put(&self, key: String, extents: Vec<Extent>) -> bool {
        let size: usize = extents.iter().map(|e| e.answer.size()).sum::<usize>() + key.len();
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
        g.map.insert(key, (extents, Instant::now(), size));
        true
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|g| (g.map.len(), g.bytes))
            .unwrap_or((0, 0))
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

    #[test]
    fn thanos_yaml_and_fifo_limits() {
        let c = ResultsCache::from_yaml(
            "type: in-memory\nconfig:\n  max_size: 1MB\n  max_size_items: 2\n",
        )
        .unwrap()
        .unwrap();
        assert!(c.put("a".into(), vec![ext(1)]));
        assert!(c.put("b".into(), vec![ext(2)]));
        assert!(c.put("c".into(), vec![ext(3)]));
        assert!(c.get("a").is_none(), "oldest evicted at max_size_items");
        assert_eq!(c.get("c").unwrap()[0].start, 3);
        assert!(
            ResultsCache::from_yaml("type: IN-MEMORY\nconfig:\n  max_size: 0\n")
                .unwrap()
                .is_none()
        );
        assert!(ResultsCache::from_yaml("type: MEMCACHED\nconfig:\n  addresses: [x]\n").is_err());
        assert!(ResultsCache::from_yaml("type: IN-MEMORY\nconfig:\n  nope: 1\n").is_err());
        assert_eq!(parse_bytes(&serde_json::json!("256MB")).unwrap(), 256 << 20);
    }
}
