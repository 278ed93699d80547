//! Vertical sharding (`--query-frontend.vertical-shards`): a query whose
//! answer is computed within groups of series — a top-level aggregation
//! `by (labels)` over an expression that never relates series of different
//! groups — is asked as N copies, each with Thanos' `shard_info` selecting
//! the series whose grouping labels hash to its shard. Every group lives in
//! one shard, so the copies' answers are disjoint and their union is the
//! answer.

use promql_parser::parser::{Expr, LabelModifier};

/// Aggregations computed per group.
const GROUPED: &[&str] = &[
    "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
];

/// Functions that relate series across groups, invent series or rename labels.
const NOT_SHARDABLE: &[&str] = &[
    "absent",
    "absent_over_time",
    "scalar",
    "vector",
    "label_replace",
    "label_join",
    "count_values",
];

/// The labels `query` can be sharded by, when it can be.
pub fn shard_labels(query: &str) -> Option<Vec<String>> {
    let expr = sluice_promql::limits::parse_checked(query).ok()?;
    let mut e = &expr;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    let Expr::Aggregate(a) = e else { return None };
    let op = a.op.to_string();
    if !GROUPED.contains(&op.as_str()) {
        return None;
    }
    let Some(LabelModifier::Include(labels)) = &a.modifier else {
        return None;
    };
    if labels.labels.is_empty() {
        return None;
    }
    if let Some(p) = &a.param
        && !matches!(**p, Expr::NumberLiteral(_))
    {
        return None;
    }
    within_series(&a.expr).then(|| labels.labels.clone())
}

/// Whether `e` computes each output series from one input series alone.
fn within_series(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => true,
        Expr::Paren(p) => within_series(&p.expr),
        Expr::Unary(u) => within_series(&u.expr),
        Expr::Subquery(s) => within_series(&s.expr),
        Expr::Call(c) => {
            !NOT_SHARDABLE.contains(&c.func.name) && c.args.args.iter().all(|a| within_series(a))
        }
        Expr::Binary(b) => {
            use promql_parser::parser::value::ValueType;
            // Vector op scalar only: two vectors would be matched across series.
            let scalar = |x: &Expr| matches!(x.value_type(), ValueType::Scalar) && within_series(x);
            (scalar(&b.lhs) && within_series(&b.rhs)) || (scalar(&b.rhs) && within_series(&b.lhs))
        }
        Expr::Aggregate(_) | Expr::Extension(_) => false,
    }
}

/// Thanos' `shard_info` JSON for shard `index` of `total`.
pub fn shard_info(index: usize, total: usize, labels: &[String]) -> String {
    serde_json::json!({"shard_index": index, "total_shards": total, "by": true, "labels": labels})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_aggregations_over_per_series_expressions_shard() {
        assert_eq!(
            shard_labels("sum by (job) (rate(x[5m]))"),
            Some(vec!["job".to_string()])
        );
        assert_eq!(
            shard_labels("(topk by (job, instance) (3, x * 2))"),
            Some(vec!["job".into(), "instance".into()])
        );
        assert!(shard_labels("max by (job) (max_over_time(x[1h:5m]))").is_some());
        for q in [
            "sum(rate(x[5m]))",
            "sum without (job) (x)",
            "sum by (job) (a / b)",
            "sum by (job) (sum by (instance) (x))",
            "sum by (job) (label_replace(x, \"job\", \"$1\", \"i\", \"(.*)\"))",
            "sum by (job) (absent(x))",
            "topk by (job) (scalar(y), x)",
            "rate(x[5m])",
            "sum by (job) (",
        ] {
            assert_eq!(shard_labels(q), None, "{q}");
        }
        assert_eq!(
            shard_info(1, 3, &["job".into()]),
            r#"{"shard_index":1,"total_shards":3,"by":true,"labels":["job"]}"#
        );
    }
}
