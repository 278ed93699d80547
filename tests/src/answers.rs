//! PromQL answers of the Prometheus HTTP API made comparable: a result normalized to its type and a map from label
//! set (sorted JSON) to points, and a comparison that names the first difference.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// Result type, and label set (sorted JSON) → `(time, value)` points.
pub type Normalized = (String, BTreeMap<String, Vec<(f64, f64)>>);

/// A sample value as the API writes it (`"+Inf"`, `"NaN"`, decimal).
pub fn parse_value(v: &Value) -> Result<f64> {
    let s = v.as_str().context("sample value is not a string")?;
    Ok(match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse()?,
    })
}

/// A successful query answer, normalized; `relabel` may change each series' labels first.
pub fn normalize_with(
    body: &Value,
    relabel: impl Fn(&mut BTreeMap<String, String>),
) -> Result<Normalized> {
    ensure!(body["status"] == "success", "not a success: {body}");
    let data = &body["data"];
    let kind = data["resultType"]
        .as_str()
        .context("resultType")?
        .to_owned();
    let mut out = BTreeMap::new();
    let point = |p: &Value| -> Result<(f64, f64)> {
        Ok((p[0].as_f64().context("time")?, parse_value(&p[1])?))
    };
    match kind.as_str() {
        "scalar" | "string" => {
            out.insert(String::new(), vec![point(&data["result"])?]);
        }
        "vector" | "matrix" => {
            for s in data["result"].as_array().context("result")? {
                let mut labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone())?;
                relabel(&mut labels);
                let key = serde_json::to_string(&labels)?;
                let pts = if kind == "vector" {
                    vec![point(&s["value"])?]
                } else {
                    s["values"]
                        .as_array()
                        .context("values")?
                        .iter()
                        .map(point)
                        .collect::<Result<_>>()?
                };
                ensure!(
                    out.insert(key.clone(), pts).is_none(),
                    "duplicate series {key}"
                );
            }
        }
        other => bail!("unknown resultType {other}"),
    }
    Ok((kind, out))
}

/// A successful query answer, normalized as it is.
pub fn normalize(body: &Value) -> Result<Normalized> {
    normalize_with(body, |_| {})
}

/// Equal, both NaN, or within `rel` of each other relative to their magnitude.
pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() / (a.abs() + b.abs())) < rel
}

/// Fails on the first difference between Prometheus' answer `want` and Sluice's `got`: result type, series,
/// point count, timestamps, or a value further apart than `rel`.
pub fn compare(what: &str, want: &Normalized, got: &Normalized, rel: f64) -> Result<()> {
    ensure!(
        want.0 == got.0,
        "{what}: result type {} (Prometheus) vs {} (Sluice)",
        want.0,
        got.0
    );
    let wk: Vec<&String> = want.1.keys().collect();
    let gk: Vec<&String> = got.1.keys().collect();
    ensure!(
        wk == gk,
        "{what}: series differ\n Prometheus: {wk:?}\n Sluice:     {gk:?}"
    );
    for (k, w) in &want.1 {
        let g = &got.1[k];
        ensure!(
            w.len() == g.len(),
            "{what}: {k}: {} points (Prometheus) vs {} (Sluice)\n{w:?}\n{g:?}",
            w.len(),
            g.len()
        );
        for (a, b) in w.iter().zip(g) {
            ensure!(
                a.0 == b.0 && close(a.1, b.1, rel),
                "{what}: {k}: Prometheus {a:?} vs Sluice {b:?}"
            );
        }
    }
    Ok(())
}
