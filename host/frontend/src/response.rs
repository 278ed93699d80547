//! Range-query answers (Prometheus' `matrix` JSON) taken apart and put
//! together without touching a value: samples keep the exact strings the
//! querier wrote, series are ordered as Prometheus orders them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value, json};

/// The warning a Thanos or Sluice querier gives when no store covers a
/// query's time range: true of a piece of a split query without being true
/// of the whole.
pub const NO_STORE_MATCHED: &str = "No StoreAPIs matched for this query";

/// The warnings of answers of parts of one request, as the answer to the
/// whole request would carry them: each once, in order, and
/// [`NO_STORE_MATCHED`] only when every part has it.
pub fn merge_warnings<'a>(parts: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let (mut out, mut n, mut unmatched) = (Vec::<String>::new(), 0usize, 0usize);
    for ws in parts {
        n += 1;
        if ws.iter().any(|w| w == NO_STORE_MATCHED) {
            unmatched += 1;
        }
        for w in ws {
            if !out.contains(w) {
                out.push(w.clone());
            }
        }
    }
    if unmatched < n {
        out.retain(|w| w != NO_STORE_MATCHED);
    }
    out
}

/// A label set (a JSON object of strings) as pairs sorted by name: the
/// merge key and Prometheus' order.
pub fn label_key(metric: &Value) -> Vec<(String, String)> {
    let mut key: Vec<(String, String)> = metric
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    key.sort();
    key
}

/// One float sample: its time (ms) and the value exactly as the querier
/// wrote it (shared, so copies of an answer cost no allocation per sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: Arc<str>,
}

impl serde::Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.t, &*self.v).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (t, v): (i64, String) = serde::Deserialize::deserialize(d)?;
        Ok(Point { t, v: Arc::from(v) })
    }
}

/// Writes a time (ms) as Prometheus writes API times: whole seconds as an
/// integer, else the shortest decimal.
fn write_time(out: &mut String, t: i64) {
    if t % 1000 == 0 {
        let _ = write!(out, "{}", t / 1000);
    } else {
        let _ = write!(out, "{}", t as f64 / 1000.0);
    }
}

/// One series of a matrix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// Label pairs sorted by name: the merge key and the sort order.
    pub key: Vec<(String, String)>,
    pub metric: Value,
    /// Float samples, ascending.
    pub values: Vec<Point>,
    /// `[t, {histogram}]` pairs, ascending.
    pub histograms: Vec<Value>,
}

/// A successful range-query answer.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Matrix {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// The ms timestamp of a `[t, …]` pair.
fn ts(v: &Value) -> Option<i64> {
    let f = v.get(0)?.as_f64()?;
    Some((f * 1000.0).round() as i64)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Matrix {
    /// Reads a downstream answer; anything but a successful matrix is an error.
    pub fn parse(body: &[u8]) -> Result<Matrix, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("downstream answer is not JSON: {e}"))?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            return Err("downstream answer is not a success".into());
        }
        let data = v.get("data").ok_or("downstream answer has no data")?;
        if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
            return Err("downstream answer is not a matrix".into());
        }
        let mut series = Vec::new();
        for s in data
            .get("result")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let metric = s
                .get("metric")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            let key = label_key(&metric);
            let arr = |k: &str| {
                s.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let mut values = Vec::new();
            for p in s
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match (ts(p), p.get(1).and_then(Value::as_str)) {
                    (Some(t), Some(v)) => values.push(Point { t, v: Arc::from(v) }),
                    _ => return Err(format!("downstream answer has a malformed sample: {p}")),
                }
            }
            series.push(Series {
                key,
                metric,
                values,
                histograms: arr("histograms"),
            });
        }
        Ok(Matrix {
            series,
            warnings: strings(v.get("warnings")),
            infos: strings(v.get("infos")),
        })
    }

    /// The samples in `[start, end]` (ms); series left without samples go.
    pub fn extract(&self, start: i64, end: i64) -> Matrix {
        let keep = |v: &Vec<Value>| -> Vec<Value> {
            v.iter()
                .filter(|p| ts(p).is_some_and(|t| t >= start && t <= end))
                .cloned()
                .collect()
        };
        let keep_points = |v: &Vec<Point>| -> Vec<Point> {
            // Ascending: the range is a slice.
            let a = v.partition_point(|p| p.t < start);
            let b = v.partition_point(|p| p.t <= end);
            v[a..b.max(a)].to_vec()
        };
        Matrix {
            series: self
                .series
                .iter()
                .map(|s| Series {
                    key: s.key.clone(),
                    metric: s.metric.clone(),
                    values: keep_points(&s.values),
                    histograms: keep(&s.histograms),
                })
                .filter(|s| !s.values.is_empty() || !s.histograms.is_empty())
                .collect(),
            warnings: self.warnings.clone(),
            infos: self.infos.clone(),
        }
    }

    /// The earliest sample time, if any.
    fn first_ts(&self) -> Option<i64> {
        self.series
            .iter()
            .filter_map(|s| {
                let a = s.values.first().map(|p| p.t);
                let b = s.histograms.first().and_then(ts);
                a.into_iter().chain(b).min()
            })
            .min()
    }

    /// Answers of adjacent or overlapping ranges as one: per series, samples
    /// appended in time order, a sample at or before the last one kept
    /// dropped; series in Prometheus' label order; warnings and infos
    /// concatenated without repeats.
    /// [`NO_STORE_MATCHED`] stays only when every part has it, as the
    /// querier asked for the whole range would say.
    pub fn merge(mut parts: Vec<Matrix>) -> Matrix {
        let warnings = merge_warnings(parts.iter().map(|m| m.warnings.as_slice()));
        parts.sort_by_key(|m| m.first_ts().unwrap_or(i64::MAX));
        let mut by: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
        let mut out = Matrix {
            warnings,
            ..Matrix::default()
        };
        for m in parts {
            for i in m.infos {
                if !out.infos.contains(&i) {
                    out.infos.push(i);
                }
            }
            for s in m.series {
                match by.get_mut(&s.key) {
                    None => {
                        by.insert(s.key.clone(), s);
                    }
                    Some(have) => {
                        append_points(&mut have.values, s.values);
                        append(&mut have.histograms, s.histograms);
                    }
                }
            }
        }
        out.series = by.into_values().collect();
        out
    }

    /// Prometheus' JSON answer.
    pub fn to_json(&self) -> Value {
        let result: Vec<Value> = self
            .series
            .iter()
            .map(|s| {
                let mut o = Map::new();
                o.insert("metric".into(), s.metric.clone());
                if !s.values.is_empty() {
                    let pts = s
                        .values
                        .iter()
                        .map(|p| {
                            let mut t = String::new();
                            write_time(&mut t, p.t);
                            json!([
                                serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
                                &*p.v
                            ])
                        })
                        .collect();
                    o.insert("values".into(), Value::Array(pts));
                }
                if !s.histograms.is_empty() {
                    o.insert("histograms".into(), Value::Array(s.histograms.clone()));
                }
                Value::Object(o)
            })
            .collect();
        let mut v =
            json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
        if !self.warnings.is_empty() {
            v["warnings"] = json!(self.warnings);
        }
        if !self.infos.is_empty() {
            v["infos"] = json!(self.infos);
        }
        v
    }

    /// Prometheus' JSON answer, written straight to text.
    pub fn to_json_string(&self) -> String {
        let mut out = String::with_capacity(64 + self.series.len() * 64);
        out.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
        for (i, s) in self.series.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"metric":"#);
            out.push_str(&s.metric.to_string());
            if !s.values.is_empty() {
                out.push_str(r#","values":["#);
                for (j, p) in s.values.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    write_time(&mut out, p.t);
                    out.push(',');
                    // Sample values are number strings; anything else is escaped as JSON.
                    if p.v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    {
                        out.push('"');
                        out.push_str(&p.v);
                        out.push('"');
                    } else {
                        out.push_str(&Value::String(p.v.to_string()).to_string());
                    }
                    out.push(']');
                }
                out.push(']');
            }
            if !s.histograms.is_empty() {
                out.push_str(r#","histograms":"#);
                out.push_str(&Value::Array(s.histograms.clone()).to_string());
            }
            out.push('}');
        }
        out.push_str("]}");
        if !self.warnings.is_empty() {
            out.push_str(r#","warnings":"#);
            out.push_str(&json!(self.warnings).to_string());
        }
        if !self.infos.is_empty() {
            out.push_str(r#","infos":"#);
            out.push_str(&json!(self.infos).to_string());
        }
        out.push('}');
        out
    }

    /// Rough size in bytes (for the cache's size bound).
    pub fn size(&self) -> usize {
        self.series
            .iter()
            .map(|s| {
                s.key
                    .iter()
                    .map(|(a, b)| a.len() + b.len() + 8)
                    .sum::<usize>()
                    * 2
                    + (s.values.len() + s.histograms.len()) * 48
                    + 64
            })
            .sum::<usize>()
            + 64
    }
}

fn append_points(have: &mut Vec<Point>, more: Vec<Point>) {
    let mut last = have.last().map(|p| p.t);
    for p in more {
        if last.is_none_or(|l| p.t > l) {
            last = Some(p.t);
            have.push(p);
        }
    }
}

fn append(have: &mut Vec<Value>, more: Vec<Value>) {
    let mut last = have.last().and_then(ts);
    for p in more {
        let t = ts(&p);
        if last.is_none_or(|l| t.is_some_and(|t| t > l)) {
            last = t;
            have.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(series: &[(&str, &[(f64, &str)])]) -> Matrix {
        let result: Vec<Value> = series
            .iter()
            .map(|(job, pts)| {
                json!({"metric": {"job": job, "__name__": "up"}, "values": pts.iter().map(|(t, v)| if t.fract() == 0.0 { json!([*t as i64, v]) } else { json!([t, v]) }).collect::<Vec<_>>()})
            })
            .collect();
        let body = json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
        Matrix::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn merge_appends_in_time_order_without_repeats_and_sorts_series() {
        let a = m(&[("b", &[(1.0, "1"), (2.0, "2")]), ("a", &[(2.0, "x")])]);
        let b = m(&[
            ("b", &[(2.0, "2"), (3.0, "3.50")]),
            ("c", &[(3.0, "1e+21")]),
        ]);
        let got = Matrix::merge(vec![b, a]).to_json();
        let want = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"job": "a", "__name__": "up"}, "values": [[2, "x"]]},
            {"metric": {"job": "b", "__name__": "up"}, "values": [[1, "1"], [2, "2"], [3, "3.50"]]},
            {"metric": {"job": "c", "__name__": "up"}, "values": [[3, "1e+21"]]},
        ]}});
        assert_eq!(got, want, "value strings untouched");
        let again = Matrix::merge(vec![
            m(&[("b", &[(1.0, "1"), (2.0, "2")]), ("a", &[(2.0, "x")])]),
            m(&[
                ("b", &[(2.0, "2"), (3.0, "3.50")]),
                ("c", &[(3.0, "1e+21")]),
            ]),
        ]);
        let text: Value = serde_json::from_str(&again.to_json_string()).unwrap();
        assert_eq!(text, want, "the text writer says the same");
    }

    #[test]
    fn no_store_matched_only_when_no_part_had_a_store() {
        let mut a = m(&[("a", &[(1.0, "1")])]);
        let mut b = Matrix::default();
        b.warnings.push(NO_STORE_MATCHED.into());
        assert!(
            Matrix::merge(vec![a.clone(), b.clone()])
                .warnings
                .is_empty()
        );
        a.warnings.push(NO_STORE_MATCHED.into());
        assert_eq!(
            Matrix::merge(vec![a, b]).warnings,
            vec![NO_STORE_MATCHED.to_string()]
        );
    }

    #[test]
    fn extract_keeps_the_range_and_drops_empty_series() {
        let a = m(&[
            ("a", &[(1.0, "1"), (2.5, "2"), (4.0, "3")]),
            ("b", &[(9.0, "1")]),
        ]);
        let e = a.extract(2_000, 4_000);
        assert_eq!(e.series.len(), 1);
        let pts: Vec<(i64, &str)> = e.series[0].values.iter().map(|p| (p.t, &*p.v)).collect();
        assert_eq!(pts, vec![(2_500, "2"), (4_000, "3")]);
        assert!(Matrix::parse(br#"{"status":"error","error":"x"}"#).is_err());
        assert!(
            Matrix::parse(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
                .is_err()
        );
    }
}
