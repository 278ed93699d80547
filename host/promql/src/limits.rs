//! Limits checked before the work they protect: bracket nesting is measured
//! on the query text before parsing, expression depth on the parsed tree
//! without recursion (and a too-deep tree is taken apart without recursion,
//! since dropping it recursively would overflow the stack), and a flag and
//! a deadline that evaluation checks as it goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use promql_parser::parser::Expr;

use super::engine::PromqlError;

pub use sluice_model::time::MAX_TIME_MS;

/// Parses a query, turning a panic of the parser on hostile input (it
/// builds durations with `Duration::from_secs_f64`, which panics on NaN or
/// overflow) into a parse error.
pub fn parse(query: &str) -> Result<Expr, PromqlError> {
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(r) => r.map_err(PromqlError::BadData),
        Err(_) => Err(PromqlError::BadData(
            "parse error: the query holds a number or duration out of range".into(),
        )),
    }
}

/// Parses a query from outside with every limit of this module: the text is
/// checked before the parser runs, the tree after it. The one way a request's
/// PromQL (a query, a `match[]` selector) becomes an expression.
pub fn parse_checked(query: &str) -> Result<Expr, PromqlError> {
    check_text(query)?;
    check_tree(parse(query)?)
}

/// Most brackets (`(`, `[`, `{`) open at once in a query.
pub const MAX_BRACKET_DEPTH: usize = 256;

/// Deepest expression tree the planner and evaluator walk (a chain of `N`
/// binary operators is `N` deep).
pub const MAX_EXPR_DEPTH: usize = 1_000;

/// Most operator characters (`+ - * / % ^ < > = !`) outside strings,
/// comments and label matchers: an upper bound of the binary operators,
/// checked before the parser (whose time grows fast with them) runs.
pub const MAX_OPERATOR_CHARS: usize = 4 * MAX_EXPR_DEPTH;

/// What the text scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextShape {
    /// Deepest bracket nesting.
    pub depth: usize,
    /// Operator characters outside strings, comments and `{…}`.
    pub operators: usize,
}

/// The deepest bracket nesting of `query`, outside strings and comments.
pub fn bracket_depth(query: &str) -> usize {
    text_shape(query).depth
}

/// Scans `query` once: bracket nesting and operator characters.
pub fn text_shape(query: &str) -> TextShape {
    let b = query.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    let (mut braces, mut operators) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if q != b'`' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            c @ (b'(' | b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
                braces += usize::from(c == b'{');
            }
            c @ (b')' | b']' | b'}') => {
                depth = depth.saturating_sub(1);
                if c == b'}' {
                    braces = braces.saturating_sub(1);
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' if braces == 0 => {
                operators += 1;
            }
            _ => {}
        }
        i += 1;
    }
    TextShape {
        depth: max,
        operators,
    }
}

/// Checks the query text before it is parsed.
pub fn check_text(query: &str) -> Result<(), PromqlError> {
    let TextShape { depth, operators } = text_shape(query);
    if depth > MAX_BRACKET_DEPTH {
        return Err(PromqlError::BadData(format!(
            "query is too complex: brackets nested {depth} deep, more than the limit of {MAX_BRACKET_DEPTH}"
        )));
    }
    if operators > MAX_OPERATOR_CHARS {
        return Err(PromqlError::BadData(format!(
            "query is too complex: {operators} operator characters, more than the limit of {MAX_OPERATOR_CHARS}"
        )));
    }
    Ok(())
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut v = vec![&*a.expr];
            v.extend(a.param.as_deref());
            v
        }
        Expr::Unary(u) => vec![&*u.expr],
        Expr::Binary(b) => vec![&*b.lhs, &*b.rhs],
        Expr::Paren(p) => vec![&*p.expr],
        Expr::Subquery(s) => vec![&*s.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

/// Depth of the expression tree, measured with an explicit stack.
pub fn expr_depth(e: &Expr) -> usize {
    let mut max = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        stack.extend(children(e).into_iter().map(|c| (c, d + 1)));
    }
    max
}

/// Takes a tree apart node by node, so that dropping it never recurses.
pub fn drop_flat(e: Expr) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Aggregate(a) => {
                stack.push(*a.expr);
                if let Some(p) = a.param {
                    stack.push(*p);
                }
            }
            Expr::Unary(u) => stack.push(*u.expr),
            Expr::Binary(b) => {
                stack.push(*b.lhs);
                stack.push(*b.rhs);
            }
            Expr::Paren(p) => stack.push(*p.expr),
            Expr::Subquery(s) => stack.push(*s.expr),
            Expr::Call(c) => stack.extend(c.args.args.into_iter().map(|a| *a)),
            leaf => drop(leaf),
        }
    }
}

/// Checks the parsed tree; a tree over the limit is taken apart here.
pub fn check_tree(e: Expr) -> Result<Expr, PromqlError> {
    let depth = expr_depth(&e);
    if depth > MAX_EXPR_DEPTH {
        drop_flat(e);
        return Err(PromqlError::BadData(format!(
            "query is too complex: expressions nested {depth} deep, more than the limit of {MAX_EXPR_DEPTH}"
        )));
    }
    Ok(e)
}

/// Stops a running query: raised when its client goes away; the deadline is
/// the query timeout. Evaluation checks both as it walks the tree.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Cancel {
    /// A handle that stops the query at `deadline` (if any) or when raised.
    pub fn new(deadline: Option<Instant>) -> Self {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            deadline,
        }
    }

    /// Stops the query (its client went away).
    pub fn raise(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// An error when the query must stop.
    pub fn check(&self, stage: &str) -> Result<(), PromqlError> {
        if self.flag.load(Ordering::Relaxed) {
            return Err(PromqlError::Canceled(stage.to_string()));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PromqlError::Timeout(stage.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_queries_are_refused_before_they_recurse() {
        let nested = format!("{}1{}", "(".repeat(200_000), ")".repeat(200_000));
        let e = check_text(&nested).expect_err("too deep");
        assert!(e.to_string().contains("200000 deep"), "{e}");
        let q = "sum(rate(x{a=\"(((\"}[5m])) # ((((";
        assert_eq!(bracket_depth(q), 3);

        let chain = vec!["up"; 300_000].join("+");
        let e = check_text(&chain).expect_err("too many operators");
        assert!(e.to_string().contains("299999 operator characters"), "{e}");
        assert_eq!(
            text_shape(r#"a{b!="+-"} + c - d"#).operators,
            2,
            "matchers and strings do not count"
        );

        let chain = vec!["up"; 2_000].join("+");
        check_text(&chain).expect("under the operator limit");
        let tree = promql_parser::parser::parse(&chain).expect("parses");
        assert_eq!(expr_depth(&tree), 2_000);
        let e = check_tree(tree).expect_err("too deep");
        assert!(e.to_string().contains("nested 2000 deep"), "{e}");

        let ok = promql_parser::parser::parse("sum(rate(x[5m])) / 2").expect("parses");
        assert_eq!(expr_depth(&ok), 4);
        check_tree(ok).expect("shallow");
    }

    #[test]
    fn cancel_and_deadline_stop_a_query() {
        let c = Cancel::new(None);
        c.check("x").expect("running");
        c.clone().raise();
        assert!(matches!(c.check("x"), Err(PromqlError::Canceled(_))));
        let past = Cancel::new(Some(Instant::now()));
        assert!(matches!(past.check("x"), Err(PromqlError::Timeout(_))));
    }
}
