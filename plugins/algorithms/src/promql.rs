//! Small pieces of Prometheus notation shared by the policies: label-name
//! validity, fully anchored regexes, durations ("30d", "1h30m") and label
//! selectors (`{team="a", env=~"prod|staging"}`).

use regex::Regex;

/// A label name valid under Prometheus's classic (pre-UTF-8) rules, which
/// Thanos and Prometheus 2 use: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Compiles `expr` anchored at both ends, as Prometheus does for relabel
/// regexes and regex label matchers: `^(?s:expr)$`.
pub(crate) fn anchored_regex(expr: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?s:{expr})$")).map_err(|e| format!("invalid regex {expr:?}: {e}"))
}

/// Parses a Prometheus duration (`model.ParseDuration`): one or more
/// `<integer><unit>` with units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`
/// from largest to smallest, each at most once, or a bare `0`. Returns ms.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    // Prometheus durations are nanoseconds in an int64.
    const MAX_MS: i64 = i64::MAX / 1_000_000;
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid =
        || format!("not a valid duration string: {s:?} (want e.g. \"30d\", \"1y\", \"12h30m\")");
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration out of range: {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if last_unit.is_some_and(|l| pos <= l) {
            return Err(invalid());
        }
        last_unit = Some(pos);
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| total.checked_add(v))
            .filter(|&v| v <= MAX_MS)
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Formats non-negative milliseconds as Go's `time.Duration.String` does
/// ("720h0m0s", "1m30s", "1.5s", "500ms", "0s"), as Thanos prints retention.
pub(crate) fn format_go_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        secs.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Match operator of a label matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub(crate) fn parse(op: &str) -> Result<Self, String> {
        match op {
            "=" => Ok(MatchOp::Equal),
            "!=" => Ok(MatchOp::NotEqual),
            "=~" => Ok(MatchOp::Regex),
            "!~" => Ok(MatchOp::NotRegex),
            _ => Err(format!(
                "unknown matcher operator {op:?} (want =, !=, =~ or !~)"
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// A Prometheus label matcher. A missing label matches as the empty value.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    re: Option<Regex>,
}

impl Matcher {
    pub(crate) fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if !is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?} in matcher"));
        }
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(anchored_regex(value)?),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether the label set (name, value pairs) satisfies the matcher.
    pub(crate) fn matches(&self, labels: &[(String, String)]) -> bool {
        let v = labels
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or("", |(_, v)| v.as_str());
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Formats matchers as a selector: `{team="a", env=~"prod"}`.
pub(crate) fn format_selector(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Parses a label selector `{name op "value", ...}` (PromQL syntax without a
/// metric name; strings in double quotes, single quotes or backticks; a
/// trailing comma is allowed; `{}` matches everything).
pub(crate) fn parse_selector(input: &str) -> Result<Vec<Matcher>, String> {
    let mut p = Parser { s: input, pos: 0 };
    let err = |p: &Parser, what: &str| format!("selector {input:?} at byte {}: {what}", p.pos);
    p.skip_ws();
    if !p.eat("{") {
        return Err(err(&p, "expected '{'"));
    }
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        if p.eat("}") {
            break;
        }
        let name = p.ident();
        if name.is_empty() {
            return Err(err(&p, "expected a label name"));
        }
        p.skip_ws();
        let op = ["=~", "!~", "!=", "="].into_iter().find(|op| p.eat(op));
        let Some(op) = op else {
            return Err(err(&p, "expected one of =, !=, =~, !~"));
        };
        p.skip_ws();
        let value = p.string().map_err(|e| err(&p, &e))?;
        out.push(Matcher::new(name, MatchOp::parse(op)?, &value).map_err(|e| err(&p, &e))?);
        p.skip_ws();
        if p.eat(",") {
            continue;
        }
        if p.eat("}") {
            break;
        }
        return Err(err(&p, "expected ',' or '}'"));
    }
    p.skip_ws();
    if p.pos != input.len() {
        return Err(err(&p, "unexpected text after '}'"));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, tok: &str) -> bool {
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> &'a str {
        let r = self.rest();
        let n = r
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        self.pos += n;
        &r[..n]
    }

    /// A quoted string with Go escapes (`strconv.Unquote`); backticks are raw.
    fn string(&mut self) -> Result<String, String> {
        let mut chars = self.rest().char_indices();
        let quote = match chars.next() {
            Some((_, q @ ('"' | '\'' | '`'))) => q,
            _ => return Err("expected a quoted string".into()),
        };
        // Bytes, because \x and octal escapes are bytes of a UTF-8 sequence.
        let mut out: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4];
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + c.len_utf8();
                return String::from_utf8(out).map_err(|_| "string is not valid UTF-8".to_string());
            }
            if c != '\\' || quote == '`' {
                if c == '\n' && quote != '`' {
                    return Err("newline in string".into());
                }
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            let simple = match e {
                'a' => Some(b'\x07'),
                'b' => Some(b'\x08'),
                'f' => Some(b'\x0c'),
                'n' => Some(b'\n'),
                'r' => Some(b'\r'),
                't' => Some(b'\t'),
                'v' => Some(b'\x0b'),
                '\\' => Some(b'\\'),
                '"' => Some(b'"'),
                '\'' => Some(b'\''),
                _ => None,
            };
            if let Some(b) = simple {
                out.push(b);
                continue;
            }
            let (digits, radix) = match e {
                'x' => (2, 16),
                'u' => (4, 16),
                'U' => (8, 16),
                '0'..='7' => (2, 8),
                _ => return Err(format!("unknown escape sequence \\{e}")),
            };
            let mut code = e.to_digit(8).filter(|_| radix == 8).unwrap_or(0);
            for _ in 0..digits {
                let d = chars.next().and_then(|(_, c)| c.to_digit(radix));
                let Some(d) = d else {
                    return Err(format!("invalid escape sequence \\{e}"));
                };
                code = code.saturating_mul(radix).saturating_add(d);
            }
            if matches!(e, 'u' | 'U') {
                let c = char::from_u32(code)
                    .ok_or_else(|| format!("escape \\{e} is not a valid character"))?;
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            } else {
                out.push(u8::try_from(code).map_err(|_| "octal escape above 255".to_string())?);
            }
        }
        Err("unterminated string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_", "__name__", "job_1", "A9"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b", "${1}"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("0", 0),
            ("0d", 0),
            ("30d", 30 * 86_400_000),
            ("1y", 365 * 86_400_000),
            ("2w", 14 * 86_400_000),
            ("1h30m", 5_400_000),
            ("1d2h3m4s5ms", 86_400_000 + 7_200_000 + 180_000 + 4_000 + 5),
            ("720h0m0s", 720 * 3_600_000),
            ("500ms", 500),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in [
            "", "30", "d", "1.5h", "-1d", "30x", "1m1h", "1h1h", "1d ", " 1d", "300y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("30x").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("99999999999999999999d")
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn go_duration_strings() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(500), "500ms");
        assert_eq!(format_go_duration(1500), "1.5s");
        assert_eq!(format_go_duration(90_000), "1m30s");
        assert_eq!(format_go_duration(30 * 86_400_000), "720h0m0s");
        assert_eq!(format_go_duration(3_600_250), "1h0m0.25s");
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#" { team="a", env=~"prod|stag.*" , zone!='eu', tier!~`x\d`, } "#)
            .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            format_selector(&m),
            r#"{team="a", env=~"prod|stag.*", zone!="eu", tier!~"x\\d"}"#
        );
        let all = |set: &[(&str, &str)]| m.iter().all(|m| m.matches(&l(set)));
        assert!(all(&[
            ("team", "a"),
            ("env", "prod"),
            ("zone", "us"),
            ("tier", "y")
        ]));
        assert!(
            all(&[("team", "a"), ("env", "staging")]),
            "absent zone/tier match != and !~"
        );
        assert!(
            !all(&[("team", "a"), ("env", "production")]),
            "regex is anchored"
        );
        assert!(!all(&[("team", "a"), ("env", "prod"), ("zone", "eu")]));
        assert!(!all(&[("team", "a"), ("env", "prod"), ("tier", "x1")]));
        assert!(parse_selector("{}").unwrap().is_empty());
        let e = parse_selector(r#"{team="a\n\"b\" \x41\u00e9\101\xc3\xa9"}"#).unwrap();
        assert!(e[0].matches(&l(&[("team", "a\n\"b\" AéAé")])));
        assert!(parse_selector(r#"{team=""}"#).unwrap()[0].matches(&l(&[("other", "x")])));
    }

    #[test]
    fn bad_selectors() {
        for bad in [
            "",
            "team=\"a\"",
            "{team=\"a\"",
            "{team=a}",
            "{team==\"a\"}",
            "{team=\"a\" env=\"b\"}",
            "{1team=\"a\"}",
            "{team=~\"(\"}",
            "{team=\"a\"} x",
            "{team=\"\\q\"}",
            "{team=\"\\xff\"}",
            "{team=\"abc",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_selector("{team=~\"(\"}")
                .unwrap_err()
                .contains("invalid regex")
        );
    }
}
