//! Conformance runner: Prometheus' own PromQL test scripts (the `promqltest`
//! corpus) evaluated by `sluice::promql::Engine`.
//!
//! The scripts are read at test time from `$SLUICE_PROMQLTEST_DIR`, else from
//! `<CARGO_MANIFEST_DIR>/../../shared/promqltest`; they are never copied into
//! this tree. That directory's `FORMAT.md` describes the script language and
//! `SOURCE.md` says which files are "core" (the conformance target), which
//! are native-histogram files and which are experimental.
//!
//! The file is laid out in four sections:
//!
//! * [`script`]: the script parser (commands, durations, the expanding value
//!   notation, series descriptions, `expect` lines).
//! * [`exec`]: runs a parsed file against a `MemStorage`, each eval on its own
//!   worker thread so that a panic or a hang fails that case only; instant
//!   evals are re-run as range queries the way the reference harness does.
//! * [`compare`]: checks a result against the expectation and explains the
//!   first difference.
//! * [`report`]: per-file counts, the failure list, and the regression guard
//!   against `tests/promqltest/known_failures.txt`.
//!
//! Environment:
//!
//! * `SLUICE_PROMQLTEST_DIR`: where the corpus is. If it is missing the test
//!   passes with a message, unless `CI` is set, in which case it fails.
//! * `SLUICE_PROMQLTEST_FILE=functions[,operators…]`: run only these files.
//! * `SLUICE_PROMQLTEST_UPDATE=1`: rewrite `known_failures.txt` from this run
//!   (for the files that ran) instead of checking against it.
//! * `SLUICE_PROMQLTEST_TIMEOUT_SECS`: per-eval time limit (default 10).
//!
//! The full report (every failure and skip) is always written to
//! `<workspace>/target/promqltest-report.txt`; `cargo test -p sluice --test
//! promqltest -- --nocapture` prints the per-file counts, the failures and
//! the skip categories.
//!
//! Known differences from the reference harness:
//!
//! * The reference also re-runs every instant eval with `@ <t>` pinned onto
//!   each selector at several other evaluation times; that variant is not run.
//! * Native histograms cannot be loaded into `MemStorage`. Series written with
//!   `{{…}}` values, and the custom-bucket histograms that `load_with_nhcb`
//!   derives from classic ones, are not loaded. An eval is skipped, with the
//!   reason, when one of its selectors (found with `promql-parser`) matches
//!   such a series, or when its expected result holds a histogram. Queries
//!   `promql-parser` cannot parse fall back to a name check. The classic
//!   (float) series of a `load_with_nhcb` block are loaded and the evals
//!   reading only them run normally.
//! * Start timestamps (`metric@st …` lines) cannot be stored either; evals
//!   reading those series are skipped the same way.
//! * Instant-vector results must not hold the same label set twice (the
//!   reference does not check this).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::promql::{Engine, EngineOpts};

/// Files of the conformance target, per `SOURCE.md`.
const CORE_FILES: &[&str] = &[
    "aggregators",
    "at_modifier",
    "collision",
    "functions",
    "histograms",
    "literals",
    "operators",
    "range_queries",
    "selectors",
    "staleness",
    "subquery",
    "trig_functions",
];

/// Native-histogram files, per `SOURCE.md`: reported, never fail the test.
const NATIVE_HISTOGRAM_FILES: &[&str] = &["native_histograms"];

/// Files behind Prometheus feature flags, per `SOURCE.md`: reported, never
/// fail the test.
const EXPERIMENTAL_FILES: &[&str] = &[
    "duration_expression",
    "extended_vectors",
    "fill-modifier",
    "info",
    "limit",
    "name_label_dropping",
    "start_timestamps",
    "type_and_unit",
];

// ---------------------------------------------------------------------------
// Script parser
// ---------------------------------------------------------------------------

mod script {
    //! Parser for the promqltest script language (see `FORMAT.md`).
    //!
    //! Lines are trimmed and `#` comment lines blanked first; a command's block
    //! runs from its header line to the next blank line. Problems that make
    //! the stored data unknowable (an unknown directive, a malformed `load`)
    //! are fatal for the file; problems in one eval make only that eval
    //! skipped.

    use sluice::model::Labels;
    use sluice::promql::STALE_NAN_BITS;

    /// Milliseconds since the Unix epoch (or a duration in milliseconds).
    pub type Millis = i64;

    /// One item of an expanded value sequence.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum SeqValue {
        /// `_`: no sample at this position.
        Omitted,
        /// A float sample (a staleness marker is a float with
        /// `STALE_NAN_BITS`).
        Float(f64),
    }

    /// Why a value sequence could not be expanded.
    #[derive(Debug, Clone, PartialEq)]
    pub enum ValuesError {
        /// The sequence holds native histograms (`{{…}}`).
        NativeHistogram,
        /// The sequence is malformed.
        Invalid(String),
    }

    /// A parsed script file.
    #[derive(Debug, Clone, Default)]
    pub struct Script {
        pub commands: Vec<Command>,
        /// The first problem that makes the whole file unrunnable.
        pub fatal: Option<ScriptError>,
    }

    /// A problem at a (1-based) line.
    #[derive(Debug, Clone)]
    pub struct ScriptError {
        pub line: usize,
        pub message: String,
    }

    #[derive(Debug, Clone)]
    pub enum Command {
        Load(Load),
        Clear,
        Eval(Box<EvalCase>),
    }

    /// A `load` block.
    #[derive(Debug, Clone)]
    pub struct Load {
        pub line: usize,
        pub interval: Millis,
        pub with_nhcb: bool,
        /// Float series to store, sample `i` at `i × interval`.
        pub series: Vec<(sluice::model::Labels, Vec<SeqValue>)>,
        /// Series whose data cannot be stored faithfully, with why.
        pub unsupported: Vec<(Labels, Unloadable)>,
    }

    /// Why a metric's data could not be loaded into `MemStorage`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Unloadable {
        /// The skip category (`native histograms`, `start timestamps`).
        pub category: &'static str,
        pub detail: &'static str,
    }

    pub const HISTOGRAM_SAMPLES: Unloadable = Unloadable {
        category: "native histograms",
        detail: "{{…}} samples",
    };
    pub const NHCB_SERIES: Unloadable = Unloadable {
        category: "native histograms",
        detail: "custom-bucket histogram made by load_with_nhcb",
    };
    pub const START_TIMESTAMPS: Unloadable = Unloadable {
        category: "start timestamps",
        detail: "@st start timestamps",
    };

    /// An instant or range evaluation.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum EvalKind {
        Instant {
            at: Millis,
        },
        Range {
            start: Millis,
            end: Millis,
            step: Millis,
        },
    }

    /// A time window `start..=end` sampled every `step`.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Window {
        pub start: Millis,
        pub end: Millis,
        pub step: Millis,
    }

    /// How an expected error or annotation message is matched.
    #[derive(Debug, Clone)]
    pub enum MessageMatch {
        Any,
        Exact(String),
        Regex(regex::Regex),
    }

    impl MessageMatch {
        pub fn matches(&self, msg: &str) -> bool {
            match self {
                MessageMatch::Any => true,
                MessageMatch::Exact(m) => m == msg,
                MessageMatch::Regex(r) => r.is_match(msg),
            }
        }
    }

    impl std::fmt::Display for MessageMatch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                MessageMatch::Any => f.write_str("any message"),
                MessageMatch::Exact(m) => write!(f, "msg {m:?}"),
                MessageMatch::Regex(r) => write!(f, "regex {:?}", r.as_str()),
            }
        }
    }

    /// Expectations about one kind of annotation (warnings or infos).
    #[derive(Debug, Clone, Default)]
    pub struct AnnotationExpect {
        /// `eval_warn` / `eval_info`: at least one is required.
        pub required: bool,
        /// `expect warn …` lines: each must match one annotation, and (when
        /// there are any) each annotation must match one of them.
        pub rules: Vec<MessageMatch>,
        /// `expect no_warn` / `expect no_info`.
        pub forbidden: bool,
    }

    /// One `{labels} values…` line of an expected result.
    #[derive(Debug, Clone)]
    pub struct ExpectedSeries {
        pub labels: Labels,
        pub values: Vec<SeqValue>,
    }

    /// An `eval` command with everything its block expects.
    #[derive(Debug, Clone)]
    pub struct EvalCase {
        /// Line of the `eval` header.
        pub line: usize,
        pub query: String,
        pub kind: EvalKind,
        /// `expect fail …` / `eval_fail`.
        pub fail: Option<MessageMatch>,
        /// `expect ordered` / `eval_ordered`.
        pub ordered: bool,
        pub warn: AnnotationExpect,
        pub info: AnnotationExpect,
        /// A bare number line: a scalar result.
        pub scalar: Option<f64>,
        /// `expect string "…"`.
        pub string: Option<String>,
        /// `expect range vector from … to … step …` (instant evals).
        pub range_vector: Option<Window>,
        /// Expected series in file order (position = index + 1).
        pub series: Vec<ExpectedSeries>,
        /// Set when the runner cannot run this case, with why.
        pub skip: Option<String>,
    }

    impl EvalCase {
        fn new(line: usize, query: String, kind: EvalKind) -> Self {
            EvalCase {
                line,
                query,
                kind,
                fail: None,
                ordered: false,
                warn: AnnotationExpect::default(),
                info: AnnotationExpect::default(),
                scalar: None,
                string: None,
                range_vector: None,
                series: Vec::new(),
                skip: None,
            }
        }
    }

    /// The staleness marker value.
    pub fn stale_nan() -> f64 {
        f64::from_bits(STALE_NAN_BITS)
    }

    /// Parses a whole script. Never fails: problems are recorded in
    /// [`Script::fatal`] or in the affected case's `skip`.
    pub fn parse_script(text: &str) -> Script {
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| {
                let l = l.trim();
                if l.starts_with('#') { "" } else { l }
            })
            .collect();
        let mut script = Script::default();
        let mut i = 0;
        while i < lines.len() {
            let header = lines[i];
            if header.is_empty() {
                i += 1;
                continue;
            }
            let lineno = i + 1;
            let directive = split_word(header).0.to_ascii_lowercase();
            if directive == "clear" {
                script.commands.push(Command::Clear);
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < lines.len() && !lines[end].is_empty() {
                end += 1;
            }
            let body: Vec<(usize, &str)> = (i + 1..end).map(|j| (j + 1, lines[j])).collect();
            let parsed = if directive.starts_with("load") {
                parse_load(lineno, header, &body).map(Command::Load)
            } else if directive.starts_with("eval") {
                Ok(Command::Eval(Box::new(parse_eval(lineno, header, &body))))
            } else {
                Err(format!("unknown directive {directive:?}"))
            };
            match parsed {
                Ok(cmd) => script.commands.push(cmd),
                Err(message) => {
                    if script.fatal.is_none() {
                        script.fatal = Some(ScriptError {
                            line: lineno,
                            message,
                        });
                    }
                }
            }
            i = end;
        }
        script
    }

    /// Splits off the first whitespace-delimited word; the rest is trimmed.
    pub fn split_word(s: &str) -> (&str, &str) {
        let s = s.trim_start();
        match s.find(char::is_whitespace) {
            Some(i) => (&s[..i], s[i..].trim_start()),
            None => (s, ""),
        }
    }

    /// Parses a Prometheus duration (`1h30m`, `10s`, `500ms`, `0`) to ms.
    pub fn parse_duration(s: &str) -> Result<Millis, String> {
        const UNITS: [(&str, i64); 7] = [
            ("y", 365 * 24 * 3_600_000),
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        if s == "0" {
            return Ok(0);
        }
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let bad = || format!("invalid duration {s:?}");
        let mut rest = s;
        let mut total: i64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
            if idx < next_unit {
                return Err(bad());
            }
            next_unit = idx + 1;
            total = n
                .checked_mul(UNITS[idx].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            rest = &rest[unit_len..];
        }
        Ok(total)
    }

    fn parse_load(lineno: usize, header: &str, body: &[(usize, &str)]) -> Result<Load, String> {
        let (word, rest) = split_word(header);
        let with_nhcb = match word {
            "load" => false,
            "load_with_nhcb" => true,
            other => return Err(format!("unknown load directive {other:?}")),
        };
        let interval = parse_duration(rest.trim())?;
        // A series given twice in one block keeps its last definition.
        let mut series: Vec<(Labels, Vec<SeqValue>)> = Vec::new();
        let mut unsupported: Vec<(Labels, Unloadable)> = Vec::new();
        let mut block_has_default_st = false;
        for &(ln, text) in body {
            let first = split_word(text).0;
            if let Some(selector) = first.strip_suffix("@st") {
                // `metric{…}@st <offsets>`: start timestamps for the next line.
                if selector.is_empty() {
                    block_has_default_st = true;
                } else {
                    let (labels, _) =
                        parse_series_desc(selector).map_err(|e| format!("line {ln}: {e}"))?;
                    unsupported.push((labels, START_TIMESTAMPS));
                }
                continue;
            }
            let (labels, values) =
                parse_series_desc(text).map_err(|e| format!("line {ln}: {e}"))?;
            match parse_values(values) {
                Ok(vals) => {
                    series.retain(|(l, _)| *l != labels);
                    series.push((labels, vals));
                }
                Err(ValuesError::NativeHistogram) => {
                    unsupported.push((labels, HISTOGRAM_SAMPLES));
                }
                Err(ValuesError::Invalid(e)) => return Err(format!("line {ln}: {e}")),
            }
        }
        if with_nhcb {
            // The classic `x_bucket{le=…}`, `x_count`, `x_sum` series also
            // become one native histogram series `x` without `le`.
            for (labels, _) in &series {
                let name = metric_name(labels);
                if let Some(base) = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                {
                    let converted = Labels::from_pairs(
                        labels
                            .iter()
                            .filter(|l| l.name != "le" && l.name != "__name__")
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .chain([("__name__".to_string(), base.to_string())]),
                    );
                    if !unsupported.iter().any(|(l, _)| *l == converted) {
                        unsupported.push((converted, NHCB_SERIES));
                    }
                }
            }
        }
        if block_has_default_st {
            for (labels, _) in &series {
                unsupported.push((labels.clone(), START_TIMESTAMPS));
            }
        }
        Ok(Load {
            line: lineno,
            interval,
            with_nhcb,
            series,
            unsupported,
        })
    }

    /// The `__name__` of a label set, or `""`.
    pub fn metric_name(labels: &Labels) -> &str {
        labels.get("__name__").unwrap_or("")
    }

    /// Parses an eval block. Problems become the case's `skip` reason.
    fn parse_eval(lineno: usize, header: &str, body: &[(usize, &str)]) -> EvalCase {
        let (kind, modifier, query) = match parse_eval_header(header) {
            Ok(h) => h,
            Err(e) => {
                let mut case =
                    EvalCase::new(lineno, header.to_string(), EvalKind::Instant { at: 0 });
                case.skip = Some(format!("script: unparseable eval line: {e}"));
                return case;
            }
        };
        let mut case = EvalCase::new(lineno, query.to_string(), kind);
        match modifier {
            "" => {}
            "fail" => case.fail = Some(MessageMatch::Any),
            "warn" => case.warn.required = true,
            "info" => case.info.required = true,
            "ordered" => case.ordered = true,
            _ => unreachable!("filtered by parse_eval_header"),
        }
        for &(ln, text) in body {
            if let Err(e) = parse_eval_line(&mut case, text) {
                case.skip
                    .get_or_insert(if e.starts_with("native histograms:") {
                        e
                    } else {
                        format!("script: {e} (line {ln})")
                    });
            }
        }
        if case.skip.is_none()
            && let Err(e) = validate(&case)
        {
            case.skip = Some(format!("script: {e}"));
        }
        case
    }

    /// `eval[_mod] instant at <t> <expr>` or
    /// `eval[_mod] range from <t> to <t> step <d> <expr>`.
    fn parse_eval_header(header: &str) -> Result<(EvalKind, &str, &str), String> {
        let (word, rest) = split_word(header);
        let modifier = match word.strip_prefix("eval") {
            Some("") => "",
            Some(m @ ("_fail" | "_warn" | "_info" | "_ordered")) => &m[1..],
            _ => return Err(format!("unknown eval directive {word:?}")),
        };
        let (mode, rest) = split_word(rest);
        let expect_kw = |rest: &'_ str, kw: &str| -> Result<(), String> {
            if split_word(rest).0 == kw {
                Ok(())
            } else {
                Err(format!("expected {kw:?}"))
            }
        };
        let (kind, query) = match mode {
            "instant" => {
                expect_kw(rest, "at")?;
                let (at, query) = split_word(split_word(rest).1);
                (
                    EvalKind::Instant {
                        at: parse_duration(at)?,
                    },
                    query,
                )
            }
            "range" => {
                expect_kw(rest, "from")?;
                let (start, rest) = split_word(split_word(rest).1);
                expect_kw(rest, "to")?;
                let (end, rest) = split_word(split_word(rest).1);
                expect_kw(rest, "step")?;
                let (step, query) = split_word(split_word(rest).1);
                let (start, end, step) = (
                    parse_duration(start)?,
                    parse_duration(end)?,
                    parse_duration(step)?,
                );
                if end < start {
                    return Err("end before start".into());
                }
                (EvalKind::Range { start, end, step }, query)
            }
            other => return Err(format!("expected `instant` or `range`, got {other:?}")),
        };
        if query.is_empty() {
            return Err("no query".into());
        }
        Ok((kind, modifier, query))
    }

    /// One line of an eval block: an `expect` line or an expected value.
    fn parse_eval_line(case: &mut EvalCase, text: &str) -> Result<(), String> {
        if case.scalar.is_some() {
            return Err("lines after a scalar result".into());
        }
        if let Some(rest) = text.strip_prefix("expected_fail_message") {
            if case.fail.is_some() {
                case.fail = Some(MessageMatch::Exact(rest.trim().to_string()));
            }
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("expected_fail_regexp") {
            if case.fail.is_some() {
                case.fail = Some(MessageMatch::Regex(compile(rest.trim())?));
            }
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("expect range vector") {
            case.range_vector = Some(parse_window(rest)?);
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix("expect string") {
            case.string = Some(unquote(rest.trim())?);
            return Ok(());
        }
        if text.split(' ').next() == Some("expect") {
            return parse_expect(case, text);
        }
        if let Some(v) = parse_number(text) {
            case.scalar = Some(v);
            return Ok(());
        }
        let (labels, values) = parse_series_desc(text)?;
        let values = match parse_values(values) {
            Ok(v) => v,
            Err(ValuesError::NativeHistogram) => {
                return Err("native histograms: expected result holds histograms".into());
            }
            Err(ValuesError::Invalid(e)) => return Err(e),
        };
        case.series.push(ExpectedSeries { labels, values });
        Ok(())
    }

    /// ` from <t> to <t> step <d>` of `expect range vector`.
    fn parse_window(s: &str) -> Result<Window, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["from", start, "to", end, "step", step] => {
                let w = Window {
                    start: parse_duration(start)?,
                    end: parse_duration(end)?,
                    step: parse_duration(step)?,
                };
                if w.end < w.start {
                    return Err("expect range vector: end before start".into());
                }
                Ok(w)
            }
            _ => Err(format!("invalid range vector definition {s:?}")),
        }
    }

    /// `expect <type>[ msg: <text> | regex: <re>]`.
    fn parse_expect(case: &mut EvalCase, text: &str) -> Result<(), String> {
        let (_, rest) = split_word(text);
        let (kind, tail) = split_word(rest);
        let matcher = if tail.is_empty() {
            MessageMatch::Any
        } else if let Some(m) = tail.strip_prefix("msg:").filter(|m| !m.trim().is_empty()) {
            MessageMatch::Exact(m.trim().to_string())
        } else if let Some(r) = tail.strip_prefix("regex:").filter(|r| !r.trim().is_empty()) {
            MessageMatch::Regex(compile(r.trim())?)
        } else {
            return Err(format!("invalid expect line {text:?}"));
        };
        let plain = matches!(matcher, MessageMatch::Any);
        match kind {
            "ordered" if plain => case.ordered = true,
            "fail" => {
                if case
                    .fail
                    .as_ref()
                    .is_some_and(|f| !matches!(f, MessageMatch::Any))
                {
                    return Err("several `expect fail` lines".into());
                }
                case.fail = Some(matcher);
            }
            "warn" => case.warn.rules.push(matcher),
            "info" => case.info.rules.push(matcher),
            "no_warn" if plain => case.warn.forbidden = true,
            "no_info" if plain => case.info.forbidden = true,
            _ => return Err(format!("invalid expect line {text:?}")),
        }
        Ok(())
    }

    fn compile(pattern: &str) -> Result<regex::Regex, String> {
        regex::Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
    }

    /// Script-level consistency of a case, as the reference harness checks it.
    fn validate(case: &EvalCase) -> Result<(), String> {
        if !case.warn.rules.is_empty() && case.warn.forbidden {
            return Err("invalid case: `expect warn` with `expect no_warn`".into());
        }
        if !case.info.rules.is_empty() && case.info.forbidden {
            return Err("invalid case: `expect info` with `expect no_info`".into());
        }
        let instant = matches!(case.kind, EvalKind::Instant { .. });
        if instant && case.range_vector.is_none() && case.series.iter().any(|s| s.values.len() > 1)
        {
            return Err("invalid case: several values for an instant eval".into());
        }
        Ok(())
    }

    // --- numbers and value sequences ---------------------------------------

    /// A bare-number line, the way Go's `ParseInt(s, 0, 64)` then
    /// `ParseFloat(s, 64)` read it: decimal, `0x`/`0o`/`0b`/leading-`0`
    /// integers, floats with exponents, `Inf`, `NaN` (any case).
    pub fn parse_number(s: &str) -> Option<f64> {
        parse_go_int(s)
            .map(|i| i as f64)
            .or_else(|| parse_go_float(s))
    }

    fn parse_go_int(s: &str) -> Option<i64> {
        let (neg, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = body.to_ascii_lowercase();
        let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
            (16, d)
        } else if let Some(d) = lower.strip_prefix("0o") {
            (8, d)
        } else if let Some(d) = lower.strip_prefix("0b") {
            (2, d)
        } else if lower.len() > 1 && lower.starts_with('0') {
            (8, &lower[1..])
        } else {
            (10, lower.as_str())
        };
        if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
            return None;
        }
        let digits = digits.replace('_', "");
        if !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let magnitude = i128::from_str_radix(&digits, radix).ok()?;
        i64::try_from(if neg { -magnitude } else { magnitude }).ok()
    }

    fn parse_go_float(s: &str) -> Option<f64> {
        // Rust's float syntax is Go's minus hex floats and underscores, which
        // the corpus does not use in result lines.
        if s.contains('_') {
            return None;
        }
        s.parse::<f64>().ok()
    }

    /// Scans a signed float at the start of `s` (digits with optional
    /// fraction and exponent, or `Inf`/`NaN` in any case). Returns it and the
    /// rest. `x` is never part of a number here (`0x5` is "0, 5 more times").
    pub fn scan_number(s: &str) -> Option<(f64, &str)> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let word = s.get(i..i + 3).map(str::to_ascii_lowercase);
        let (magnitude, end) = if word.as_deref() == Some("inf") {
            (f64::INFINITY, i + 3)
        } else if word.as_deref() == Some("nan") {
            (f64::NAN, i + 3)
        } else {
            let start = i;
            let int_digits = count_digits(&b[i..]);
            i += int_digits;
            let mut frac_digits = 0;
            if b.get(i) == Some(&b'.') {
                frac_digits = count_digits(&b[i + 1..]);
                i += 1 + frac_digits;
            }
            if int_digits + frac_digits == 0 {
                return None;
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                let exp_digits = count_digits(&b[j.min(b.len())..]);
                if exp_digits > 0 {
                    i = j + exp_digits;
                }
            }
            (s[start..i].parse::<f64>().ok()?, i)
        };
        Some((if neg { -magnitude } else { magnitude }, &s[end..]))
    }

    fn count_digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }

    /// Expands a value sequence in the notation of `promtool test rules`:
    /// `a`, `axN` (N+1 times), `a+bxN` / `a-bxN` (N+1 values stepping by b),
    /// `_`, `_xN` (N missing), `stale`.
    pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, ValuesError> {
        if s.contains("{{") {
            return Err(ValuesError::NativeHistogram);
        }
        let mut out = Vec::new();
        for item in s.split_whitespace() {
            expand_item(item, &mut out)?;
        }
        Ok(out)
    }

    fn expand_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), ValuesError> {
        let invalid = || ValuesError::Invalid(format!("invalid value {item:?}"));
        let count = |n: &str| n.parse::<usize>().map_err(|_| invalid());
        if item == "_" {
            out.push(SeqValue::Omitted);
            return Ok(());
        }
        if let Some(n) = item.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(SeqValue::Omitted, count(n)?));
            return Ok(());
        }
        if item == "stale" {
            out.push(SeqValue::Float(stale_nan()));
            return Ok(());
        }
        let (first, rest) = scan_number(item).ok_or_else(invalid)?;
        if rest.is_empty() {
            out.push(SeqValue::Float(first));
        } else if let Some(n) = rest.strip_prefix('x') {
            out.extend(std::iter::repeat_n(SeqValue::Float(first), count(n)? + 1));
        } else if let Some(sign @ ('+' | '-')) = rest.chars().next() {
            let (delta, rest) = scan_number(&rest[1..]).ok_or_else(invalid)?;
            let n = count(rest.strip_prefix('x').ok_or_else(invalid)?)?;
            let delta = if sign == '-' { -delta } else { delta };
            // Accumulated like the reference, not first + i·delta.
            let mut v = first;
            for _ in 0..=n {
                out.push(SeqValue::Float(v));
                v += delta;
            }
        } else {
            return Err(invalid());
        }
        Ok(())
    }

    // --- series descriptions ----------------------------------------------

    fn is_name_start(c: u8, colon: bool) -> bool {
        c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':')
    }

    fn is_name_char(c: u8, colon: bool) -> bool {
        is_name_start(c, colon) || c.is_ascii_digit()
    }

    fn skip_ws(b: &[u8], pos: &mut usize) {
        while *pos < b.len() && b[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    }

    /// Parses `metric{a="b", …}`, `{__name__="m", …}` or `{"my.metric", …}`
    /// at the start of a line; returns the label set (with `__name__`) and
    /// the rest of the line. Labels with empty values are dropped (an empty
    /// label is an absent label).
    pub fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
        let s = s.trim_start();
        let b = s.as_bytes();
        let mut pos = 0;
        let mut name: Option<String> = None;
        let mut pairs: Vec<(String, String)> = Vec::new();
        if b.first().is_some_and(|&c| is_name_start(c, true)) {
            while pos < b.len() && is_name_char(b[pos], true) {
                pos += 1;
            }
            name = Some(s[..pos].to_string());
        }
        let mut brace = pos;
        skip_ws(b, &mut brace);
        let has_block = b.get(brace) == Some(&b'{') && b.get(brace + 1) != Some(&b'{');
        if has_block {
            pos = brace + 1;
            loop {
                skip_ws(b, &mut pos);
                match b.get(pos) {
                    None => return Err(format!("unterminated label set in {s:?}")),
                    Some(b'}') => {
                        pos += 1;
                        break;
                    }
                    _ => {}
                }
                let (label, quoted) = if matches!(b[pos], b'"' | b'\'' | b'`') {
                    (read_quoted(s, &mut pos)?, true)
                } else if is_name_start(b[pos], false) {
                    let start = pos;
                    while pos < b.len() && is_name_char(b[pos], false) {
                        pos += 1;
                    }
                    (s[start..pos].to_string(), false)
                } else {
                    return Err(format!("expected a label name at {:?}", &s[pos..]));
                };
                skip_ws(b, &mut pos);
                match b.get(pos) {
                    Some(b'=') if b.get(pos + 1) != Some(&b'~') => {
                        pos += 1;
                        skip_ws(b, &mut pos);
                        let value = read_quoted(s, &mut pos)?;
                        pairs.push((label, value));
                    }
                    Some(b',' | b'}') if quoted => {
                        if name.replace(label).is_some() {
                            return Err(format!("metric name given twice in {s:?}"));
                        }
                    }
                    _ => return Err(format!("expected `=\"value\"` after label {label:?}")),
                }
                skip_ws(b, &mut pos);
                match b.get(pos) {
                    Some(b',') => pos += 1,
                    Some(b'}') => {}
                    _ => return Err(format!("expected `,` or `}}` in {s:?}")),
                }
            }
        } else if name.is_none() {
            return Err(format!("expected a series description, got {s:?}"));
        }
        let rest = &s[pos..];
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return Err(format!("unexpected {rest:?} after series description"));
        }
        if let Some(n) = name {
            pairs.insert(0, ("__name__".to_string(), n));
        }
        pairs.retain(|(_, v)| !v.is_empty());
        Ok((Labels::from_pairs(pairs), rest.trim()))
    }

    /// Decodes a whole quoted string (`"…"`, `'…'` or `` `…` ``).
    pub fn unquote(s: &str) -> Result<String, String> {
        let mut pos = 0;
        let v = read_quoted(s, &mut pos)?;
        if pos != s.len() {
            return Err(format!("trailing characters after string in {s:?}"));
        }
        Ok(v)
    }

    /// Reads a quoted string with Go escapes starting at `*pos`; advances
    /// `*pos` past the closing quote.
    pub fn read_quoted(s: &str, pos: &mut usize) -> Result<String, String> {
        let rest = &s[*pos..];
        let mut chars = rest.char_indices();
        let quote = match chars.next() {
            Some((_, q @ ('"' | '\'' | '`'))) => q,
            _ => return Err(format!("expected a quoted string at {rest:?}")),
        };
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                *pos += i + c.len_utf8();
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let (_, e) = chars.next().ok_or("unterminated escape")?;
            let mut hex = |n: usize| -> Result<u32, String> {
                let digits: String = (0..n)
                    .filter_map(|_| chars.next().map(|(_, c)| c))
                    .collect();
                u32::from_str_radix(&digits, 16).map_err(|_| format!("bad escape in {rest:?}"))
            };
            let decoded = match e {
                'a' => '\u{7}',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\u{b}',
                '\\' | '\'' | '"' => e,
                'x' => char::from(u8::try_from(hex(2)?).map_err(|e| e.to_string())?),
                'u' => char::from_u32(hex(4)?).ok_or("bad \\u escape")?,
                'U' => char::from_u32(hex(8)?).ok_or("bad \\U escape")?,
                '0'..='7' => {
                    let more: String = (0..2)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let v = u32::from_str_radix(&format!("{e}{more}"), 8)
                        .map_err(|_| format!("bad octal escape in {rest:?}"))?;
                    char::from_u32(v).ok_or("bad octal escape")?
                }
                other => return Err(format!("unknown escape \\{other} in {rest:?}")),
            };
            out.push(decoded);
        }
        Err(format!("unterminated string {rest:?}"))
    }
}

// ---------------------------------------------------------------------------
// Executor
// ---------------------------------------------------------------------------

mod exec {
    //! Runs a parsed script: loads series, runs each eval on a worker thread
    //! (a panic or a hang fails that case only), and checks it.

    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::time::Duration;

    use promql_parser::label::Matcher;
    use promql_parser::parser::{Expr, VectorSelector};
    use sluice::model::Labels;
    use sluice::promql::{Engine, MemStorage, PromqlError, QueryResult, Sample, Value};

    use crate::compare::{check_sorted, compare_result};
    use crate::script::{
        AnnotationExpect, Command, EvalCase, EvalKind, Millis, Script, SeqValue, Unloadable, Window,
    };

    /// How one case ended.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Outcome {
        Pass,
        Fail(String),
        Skip(String),
    }

    /// One eval's outcome.
    #[derive(Debug, Clone)]
    pub struct CaseResult {
        pub line: usize,
        pub query: String,
        pub outcome: Outcome,
    }

    /// What every case runs with.
    pub struct Runner {
        pub engine: Engine,
        pub runtime: tokio::runtime::Handle,
        pub timeout: Duration,
    }

    /// The range-mode re-run of an instant eval spans `t-1m .. t+1m`.
    const RANGE_MODE_STEP: Millis = 60_000;

    impl Runner {
        /// Runs every command of `script` in order and returns one result per
        /// eval (skipped ones included).
        pub fn run_script(&self, script: &Script) -> Vec<CaseResult> {
            let mut storage = Arc::new(MemStorage::new());
            // Series whose data was not (fully) loaded, with why.
            let mut unsupported: Vec<(Labels, Unloadable)> = Vec::new();
            let mut results = Vec::new();
            for cmd in &script.commands {
                match cmd {
                    Command::Clear => {
                        storage = Arc::new(MemStorage::new());
                        unsupported.clear();
                    }
                    Command::Load(load) => {
                        let st = Arc::make_mut(&mut storage);
                        for (labels, values) in &load.series {
                            st.add(labels.clone(), &samples(values, load.interval));
                        }
                        unsupported.extend(load.unsupported.iter().cloned());
                    }
                    Command::Eval(case) => {
                        let outcome = if let Some(f) = &script.fatal {
                            Outcome::Skip(format!(
                                "script: file not runnable: line {}: {}",
                                f.line, f.message
                            ))
                        } else if let Some(why) = &case.skip {
                            Outcome::Skip(why.clone())
                        } else if let Some(why) = touches_unsupported(&case.query, &unsupported) {
                            Outcome::Skip(why)
                        } else {
                            self.run_guarded(Arc::clone(&storage), case)
                        };
                        results.push(CaseResult {
                            line: case.line,
                            query: case.query.clone(),
                            outcome,
                        });
                    }
                }
            }
            results
        }

        /// Runs one case on its own thread: a panic is caught and a hang is
        /// abandoned after the time limit, both counted as failures.
        fn run_guarded(&self, storage: Arc<MemStorage>, case: &EvalCase) -> Outcome {
            let engine = self.engine.clone();
            let runtime = self.runtime.clone();
            let case_owned = case.clone();
            guarded(
                &format!("promqltest-line-{}", case.line),
                self.timeout,
                move || runtime.block_on(execute(&engine, &storage, &case_owned)),
            )
        }
    }

    /// Runs `work` on a new thread named `name`: `Ok` passes, `Err` fails
    /// with its message, a panic fails with the panic message, and work still
    /// running after `timeout` fails (its thread is abandoned).
    pub fn guarded<F>(name: &str, timeout: Duration, work: F) -> Outcome
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .stack_size(16 << 20)
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(work));
                // The receiver is gone only if the work timed out.
                let _ = tx.send(result.map_err(|p| panic_message(p.as_ref())));
            });
        let worker = match spawned {
            Ok(w) => w,
            Err(e) => return Outcome::Fail(format!("could not start a worker thread: {e}")),
        };
        match rx.recv_timeout(timeout) {
            Ok(result) => {
                let _ = worker.join();
                match result {
                    Ok(Ok(())) => Outcome::Pass,
                    Ok(Err(diff)) => Outcome::Fail(diff),
                    Err(panic) => Outcome::Fail(format!("engine panicked: {panic}")),
                }
            }
            Err(RecvTimeoutError::Timeout) => Outcome::Fail(format!(
                "timed out after {:?} (worker thread abandoned)",
                timeout
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Outcome::Fail("worker thread ended without a result".into())
            }
        }
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".into()
        }
    }

    /// Sample `i` of a loaded sequence sits at `i × interval`.
    pub fn samples(values: &[SeqValue], interval: Millis) -> Vec<(Millis, f64)> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                SeqValue::Float(f) => Some((i as Millis * interval, *f)),
                SeqValue::Omitted => None,
            })
            .collect()
    }

    /// Why `query` reads data the runner could not load, if it does: one of
    /// its selectors matches such a series. Queries that `promql-parser`
    /// cannot parse (experimental syntax) fall back to [`names_unsupported`].
    pub fn touches_unsupported(query: &str, unloaded: &[(Labels, Unloadable)]) -> Option<String> {
        if unloaded.is_empty() {
            return None;
        }
        let Ok(expr) = promql_parser::parser::parse(query) else {
            return names_unsupported(query, unloaded);
        };
        let mut selectors = Vec::new();
        collect_selectors(&expr, &mut selectors);
        selectors.iter().find_map(|vs| {
            let (labels, why) = unloaded.iter().find(|(l, _)| selector_matches(vs, l))?;
            Some(format!("{}: reads {labels} ({})", why.category, why.detail))
        })
    }

    fn collect_selectors<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
        match expr {
            Expr::Aggregate(a) => {
                collect_selectors(&a.expr, out);
                if let Some(p) = &a.param {
                    collect_selectors(p, out);
                }
            }
            Expr::Unary(u) => collect_selectors(&u.expr, out),
            Expr::Binary(b) => {
                collect_selectors(&b.lhs, out);
                collect_selectors(&b.rhs, out);
            }
            Expr::Paren(p) => collect_selectors(&p.expr, out),
            Expr::Subquery(s) => collect_selectors(&s.expr, out),
            Expr::VectorSelector(vs) => out.push(vs),
            Expr::MatrixSelector(ms) => out.push(&ms.vs),
            Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn selector_matches(vs: &VectorSelector, labels: &Labels) -> bool {
        let value = |name: &str| labels.get(name).unwrap_or("");
        let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(value(&m.name)));
        vs.name.as_deref().is_none_or(|n| value("__name__") == n)
            && all(&vs.matchers.matchers)
            && (vs.matchers.or_matchers.is_empty()
                || vs.matchers.or_matchers.iter().any(|g| all(g)))
    }

    /// The fallback of [`touches_unsupported`]: the query names such a
    /// metric (as an identifier or a quoted string), or has a selector
    /// without a metric name.
    fn names_unsupported(query: &str, unloaded: &[(Labels, Unloadable)]) -> Option<String> {
        let b = query.as_bytes();
        let mut words: Vec<&str> = Vec::new();
        let mut nameless_selector = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if matches!(c, b'"' | b'\'' | b'`') {
                let end = b[i + 1..]
                    .iter()
                    .enumerate()
                    .find(|&(k, &ch)| ch == c && (c == b'`' || b[i + k] != b'\\'))
                    .map_or(b.len(), |(k, _)| i + 1 + k);
                words.push(&query[i + 1..end]);
                i = end + 1;
            } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                words.push(&query[start..i]);
            } else if c.is_ascii_digit() || c == b'.' {
                // A number or duration: never a metric name.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            } else {
                if c == b'{' {
                    let before = query[..i].trim_end().as_bytes().last().copied();
                    let named =
                        before.is_some_and(|p| p.is_ascii_alphanumeric() || p == b'_' || p == b':');
                    // `{"name", …}` names its metric with a leading string.
                    let after = query[i + 1..].trim_start();
                    let quoted_name = after.starts_with('"') && {
                        let mut pos = 0;
                        crate::script::read_quoted(after, &mut pos).is_ok()
                            && matches!(after[pos..].trim_start().chars().next(), Some(',' | '}'))
                    };
                    nameless_selector |= !named && !quoted_name;
                }
                i += 1;
            }
        }
        let name_of = |l: &Labels| l.get("__name__").unwrap_or("").to_string();
        if let Some((labels, why)) = unloaded
            .iter()
            .find(|(l, _)| words.contains(&name_of(l).as_str()))
        {
            let name = name_of(labels);
            return Some(format!("{}: reads `{name}` ({})", why.category, why.detail));
        }
        if nameless_selector {
            let (labels, why) = unloaded.first()?;
            let name = name_of(labels);
            return Some(format!(
                "{}: a selector without a metric name may read `{name}` ({})",
                why.category, why.detail
            ));
        }
        None
    }

    /// Runs one case and checks it; `Err` carries the first difference.
    async fn execute(engine: &Engine, storage: &MemStorage, case: &EvalCase) -> Result<(), String> {
        match case.kind {
            EvalKind::Instant { at } => execute_instant(engine, storage, case, at).await,
            EvalKind::Range { start, end, step } => {
                let res = engine.range(storage, &case.query, start, end, step).await;
                let Some(res) = check_outcome(case, res)? else {
                    return Ok(());
                };
                check_annotations(case, &res)?;
                compare_result(case, &res.value, Some(Window { start, end, step }))
            }
        }
    }

    /// An instant eval, then (as the reference harness does) the same query
    /// as a range query over `t-1m .. t+1m` step 1m, whose middle step must
    /// give the same answer. The reference's further re-runs with `@ t`
    /// pinned onto every selector are not done.
    async fn execute_instant(
        engine: &Engine,
        storage: &MemStorage,
        case: &EvalCase,
        at: Millis,
    ) -> Result<(), String> {
        // With `expect range vector` the query is evaluated at the window's end.
        let t = case.range_vector.map_or(at, |w| w.end);
        let res = engine.instant(storage, &case.query, t).await;
        let Some(res) = check_outcome(case, res)? else {
            return Ok(());
        };
        check_annotations(case, &res)?;
        compare_result(case, &res.value, case.range_vector)?;

        // Range vectors and strings cannot be range queries; start(), end(),
        // range() and step() depend on the query's range.
        let context_dependent = ["start()", "end()", "range()", "step()"]
            .iter()
            .any(|f| case.query.contains(f));
        if case.range_vector.is_some() || case.string.is_some() || context_dependent {
            return Ok(());
        }
        let ranged = engine
            .range(
                storage,
                &case.query,
                t - RANGE_MODE_STEP,
                t + RANGE_MODE_STEP,
                RANGE_MODE_STEP,
            )
            .await
            .map_err(|e| format!("range mode: query failed: {e}"))?;
        if case.ordered {
            // Range results are always sorted by labels.
            return Ok(());
        }
        let Value::Matrix(matrix) = ranged.value else {
            return Err(format!(
                "range mode: expected a matrix, got a {}",
                ranged.value.type_name()
            ));
        };
        check_sorted(&matrix).map_err(|e| format!("range mode: {e}"))?;
        let at_t: Vec<Sample> = matrix
            .iter()
            .filter_map(|s| {
                let &(pt, v) = s.points.iter().find(|p| p.0 == t)?;
                Some(Sample {
                    labels: s.labels.clone(),
                    t: pt,
                    v,
                })
            })
            .collect();
        let value = if matches!(res.value, Value::Scalar { .. }) {
            match at_t.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => return Err("range mode: no point at the eval time for a scalar".into()),
            }
        } else {
            Value::Vector(at_t)
        };
        compare_result(case, &value, None).map_err(|e| format!("range mode: {e}"))
    }

    /// Applies the case's failure expectation: `Ok(None)` when an expected
    /// failure happened, `Ok(Some(result))` to go on checking the result.
    fn check_outcome(
        case: &EvalCase,
        res: Result<QueryResult, PromqlError>,
    ) -> Result<Option<QueryResult>, String> {
        match (res, &case.fail) {
            (Err(e), Some(m)) if m.matches(&e.to_string()) => Ok(None),
            (Err(e), Some(m)) => Err(format!("expected an error matching {m}, got: {e}")),
            (Err(e), None) => Err(format!("query failed: {e}")),
            (Ok(_), Some(m)) => Err(format!("expected the query to fail ({m}), it succeeded")),
            (Ok(r), None) => Ok(Some(r)),
        }
    }

    fn check_annotations(case: &EvalCase, res: &QueryResult) -> Result<(), String> {
        check_annotation_kind("warn", &case.warn, &res.warnings)?;
        check_annotation_kind("info", &case.info, &res.infos)
    }

    /// Every rule must match an annotation; when there are rules, every
    /// annotation must match a rule; `no_*` forbids any.
    fn check_annotation_kind(
        kind: &str,
        expect: &AnnotationExpect,
        got: &[String],
    ) -> Result<(), String> {
        if (expect.required || !expect.rules.is_empty()) && got.is_empty() {
            return Err(format!("expected {kind} annotations, got none"));
        }
        if let Some(rule) = expect
            .rules
            .iter()
            .find(|r| !got.iter().any(|g| r.matches(g)))
        {
            return Err(format!(
                "expected a {kind} annotation matching {rule}, got {got:?}"
            ));
        }
        if !expect.rules.is_empty()
            && let Some(g) = got
                .iter()
                .find(|g| !expect.rules.iter().any(|r| r.matches(g)))
        {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
        if expect.forbidden && !got.is_empty() {
            return Err(format!("expected no {kind} annotations, got {got:?}"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Comparer
// ---------------------------------------------------------------------------

mod compare {
    //! Result comparison per `FORMAT.md`: floats equal when both NaN, equal,
    //! or within 1e-6 relative (exact when either is 0); labels exact; order
    //! ignored unless the eval is ordered. Errors name the first difference.

    use std::collections::BTreeMap;

    use sluice::model::Labels;
    use sluice::promql::{RangeSeries, Value, is_stale};

    use crate::script::{EvalCase, EvalKind, ExpectedSeries, Millis, SeqValue, Window};

    const EPSILON: f64 = 1e-6;

    /// Float equality of the reference harness.
    pub fn almost_equal(a: f64, b: f64) -> bool {
        if is_stale(a) || is_stale(b) {
            return is_stale(a) && is_stale(b);
        }
        if (a.is_nan() && b.is_nan()) || a == b {
            return true;
        }
        let sum = a.abs() + b.abs();
        let diff = (a - b).abs();
        if a == 0.0 || b == 0.0 || sum < f64::MIN_POSITIVE {
            return diff < EPSILON * f64::MIN_POSITIVE;
        }
        diff / sum.min(f64::MAX) < EPSILON
    }

    /// A float as the scripts write it.
    pub fn fmt_f(v: f64) -> String {
        if is_stale(v) {
            "stale".into()
        } else if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else if v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
            format!("{v:e}")
        } else {
            format!("{v}")
        }
    }

    /// A timestamp as a duration since the epoch (`1m30s`, `10s500ms`).
    pub fn fmt_t(ms: Millis) -> String {
        if ms == 0 {
            return "0s".into();
        }
        let (sign, mut rest) = if ms < 0 { ("-", -ms) } else { ("", ms) };
        let mut out = String::from(sign);
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= size {
                out.push_str(&format!("{}{unit}", rest / size));
                rest %= size;
            }
        }
        out
    }

    fn fmt_points(points: &[(Millis, f64)]) -> String {
        const SHOWN: usize = 6;
        let mut parts: Vec<String> = points
            .iter()
            .take(SHOWN)
            .map(|&(t, v)| format!("{}@{}", fmt_f(v), fmt_t(t)))
            .collect();
        if points.len() > SHOWN {
            parts.push(format!("… {} more", points.len() - SHOWN));
        }
        format!("[{}]", parts.join(" "))
    }

    /// Range results must be sorted by labels.
    pub fn check_sorted(matrix: &[RangeSeries]) -> Result<(), String> {
        match matrix.windows(2).find(|w| w[0].labels > w[1].labels) {
            Some(w) => Err(format!(
                "matrix not sorted by labels: {} comes before {}",
                w[0].labels, w[1].labels
            )),
            None => Ok(()),
        }
    }

    /// Checks `value` against the case's expectation. `window` gives the
    /// timestamps of expected range values (a range eval's range, or
    /// `expect range vector`).
    pub fn compare_result(
        case: &EvalCase,
        value: &Value,
        window: Option<Window>,
    ) -> Result<(), String> {
        match value {
            Value::Scalar { v, .. } => match case.scalar {
                Some(exp) if almost_equal(exp, *v) => Ok(()),
                Some(exp) => Err(format!("expected scalar {}, got {}", fmt_f(exp), fmt_f(*v))),
                None => Err(format!(
                    "expected {}, got scalar {}",
                    describe_expected(case),
                    fmt_f(*v)
                )),
            },
            Value::String { v, .. } => {
                let exp = case.string.as_deref().unwrap_or("");
                if exp == v {
                    Ok(())
                } else {
                    Err(format!("expected string {exp:?}, got string {v:?}"))
                }
            }
            Value::Vector(samples) => {
                if case.scalar.is_some() || case.string.is_some() {
                    return Err(format!(
                        "expected {}, got a vector of {} samples",
                        describe_expected(case),
                        samples.len()
                    ));
                }
                let got: Vec<(&Labels, f64)> = samples.iter().map(|s| (&s.labels, s.v)).collect();
                compare_vector(case, &got)
            }
            Value::Matrix(series) => {
                if case.ordered {
                    return Err("expected an ordered result, got a matrix".into());
                }
                if case.scalar.is_some() || case.string.is_some() {
                    return Err(format!(
                        "expected {}, got a matrix of {} series",
                        describe_expected(case),
                        series.len()
                    ));
                }
                let Some(window) = window else {
                    return Err(format!(
                        "got a range vector ({} series) but the case has no `expect range vector`",
                        series.len()
                    ));
                };
                check_sorted(series)?;
                compare_matrix(case, series, window)
            }
        }
    }

    fn describe_expected(case: &EvalCase) -> String {
        if let Some(v) = case.scalar {
            format!("scalar {}", fmt_f(v))
        } else if let Some(s) = &case.string {
            format!("string {s:?}")
        } else {
            match case.kind {
                EvalKind::Range { .. } => "a matrix".into(),
                EvalKind::Instant { .. } if case.range_vector.is_some() => "a range vector".into(),
                EvalKind::Instant { .. } => format!("a vector of {} samples", case.series.len()),
            }
        }
    }

    /// Expected series by labels, with their 1-based position in the file.
    fn expected_by_labels(case: &EvalCase) -> BTreeMap<&Labels, (usize, &ExpectedSeries)> {
        let mut map = BTreeMap::new();
        for (i, s) in case.series.iter().enumerate() {
            map.entry(&s.labels).or_insert((i + 1, s));
        }
        map
    }

    fn compare_vector(case: &EvalCase, got: &[(&Labels, f64)]) -> Result<(), String> {
        let expected = expected_by_labels(case);
        let mut seen: BTreeMap<&Labels, usize> = BTreeMap::new();
        for (pos, &(labels, v)) in got.iter().enumerate() {
            let Some(&(exp_pos, exp)) = expected.get(labels) else {
                return Err(format!("unexpected series {labels} = {}", fmt_f(v)));
            };
            if let Some(first) = seen.insert(labels, pos + 1) {
                return Err(format!(
                    "series {labels} appears twice in the result (positions {first} and {})",
                    pos + 1
                ));
            }
            if case.ordered && exp_pos != pos + 1 {
                return Err(format!(
                    "ordering: {labels} is at position {}, expected at {exp_pos}",
                    pos + 1
                ));
            }
            let exp_v = match exp.values.first() {
                Some(SeqValue::Float(f)) => *f,
                _ => return Err(format!("{labels}: the case gives no value to compare with")),
            };
            if !almost_equal(exp_v, v) {
                return Err(format!(
                    "{labels}: expected {}, got {}",
                    fmt_f(exp_v),
                    fmt_f(v)
                ));
            }
        }
        if let Some((labels, (_, exp))) = expected.iter().find(|(l, _)| !seen.contains_key(*l)) {
            let v = exp.values.first().map_or("?".into(), |v| match v {
                SeqValue::Float(f) => fmt_f(*f),
                SeqValue::Omitted => "_".into(),
            });
            return Err(format!(
                "missing series {labels} (expected {v}); got {} series",
                got.len()
            ));
        }
        Ok(())
    }

    fn compare_matrix(case: &EvalCase, got: &[RangeSeries], w: Window) -> Result<(), String> {
        let expected = expected_by_labels(case);
        let mut seen: BTreeMap<&Labels, ()> = BTreeMap::new();
        for s in got {
            let Some(&(_, exp)) = expected.get(&s.labels) else {
                return Err(format!(
                    "unexpected series {} = {}",
                    s.labels,
                    fmt_points(&s.points)
                ));
            };
            if seen.insert(&s.labels, ()).is_some() {
                return Err(format!("series {} appears twice in the result", s.labels));
            }
            let want = expected_points(exp, w)?;
            if let Some(diff) = first_point_difference(&want, &s.points) {
                return Err(format!(
                    "{}: {diff}; expected {} points {}, got {} points {}",
                    s.labels,
                    want.len(),
                    fmt_points(&want),
                    s.points.len(),
                    fmt_points(&s.points)
                ));
            }
        }
        if let Some((labels, (_, exp))) = expected.iter().find(|(l, _)| !seen.contains_key(*l)) {
            let want = expected_points(exp, w)?;
            return Err(format!(
                "missing series {labels} (expected {})",
                fmt_points(&want)
            ));
        }
        Ok(())
    }

    /// Expected value `i` sits at `start + i × step`; `_` means no point.
    fn expected_points(exp: &ExpectedSeries, w: Window) -> Result<Vec<(Millis, f64)>, String> {
        let mut out = Vec::new();
        for (i, v) in exp.values.iter().enumerate() {
            let t = w.start + i as Millis * w.step;
            if t > w.end {
                return Err(format!(
                    "the case expects {} points for {} but the range has only {} steps",
                    exp.values.len(),
                    exp.labels,
                    (w.end - w.start) / w.step.max(1) + 1
                ));
            }
            if let SeqValue::Float(f) = v {
                out.push((t, *f));
            }
        }
        Ok(out)
    }

    /// The first timestamp where the expected and actual points differ.
    fn first_point_difference(want: &[(Millis, f64)], got: &[(Millis, f64)]) -> Option<String> {
        let (mut i, mut j) = (0, 0);
        loop {
            match (want.get(i), got.get(j)) {
                (None, None) => return None,
                (Some(&(t, v)), None) => {
                    return Some(format!(
                        "at {}: expected {}, got no point",
                        fmt_t(t),
                        fmt_f(v)
                    ));
                }
                (None, Some(&(t, v))) => {
                    return Some(format!(
                        "at {}: expected no point, got {}",
                        fmt_t(t),
                        fmt_f(v)
                    ));
                }
                (Some(&(te, ve)), Some(&(tg, vg))) => {
                    if te < tg {
                        return Some(format!(
                            "at {}: expected {}, got no point",
                            fmt_t(te),
                            fmt_f(ve)
                        ));
                    }
                    if tg < te {
                        return Some(format!(
                            "at {}: expected no point, got {}",
                            fmt_t(tg),
                            fmt_f(vg)
                        ));
                    }
                    if !almost_equal(ve, vg) {
                        return Some(format!(
                            "at {}: expected {}, got {}",
                            fmt_t(te),
                            fmt_f(ve),
                            fmt_f(vg)
                        ));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Report and regression guard
// ---------------------------------------------------------------------------

mod report {
    //! Per-file counts, failure and skip listings, and the regression guard
    //! against `known_failures.txt` (`file:line  # reason` lines, core files
    //! only).

    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;

    use crate::exec::{CaseResult, Outcome};

    /// Which group of `SOURCE.md` a file belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Group {
        /// The conformance target: failures outside the known list fail the test.
        Core,
        NativeHistograms,
        Experimental,
        /// Not listed in `SOURCE.md`: reported like an experimental file.
        Unlisted,
    }

    impl Group {
        pub fn of(stem: &str) -> Group {
            if crate::CORE_FILES.contains(&stem) {
                Group::Core
            } else if crate::NATIVE_HISTOGRAM_FILES.contains(&stem) {
                Group::NativeHistograms
            } else if crate::EXPERIMENTAL_FILES.contains(&stem) {
                Group::Experimental
            } else {
                Group::Unlisted
            }
        }

        fn name(self) -> &'static str {
            match self {
                Group::Core => "core",
                Group::NativeHistograms => "native-hist",
                Group::Experimental => "experimental",
                Group::Unlisted => "unlisted",
            }
        }
    }

    /// The results of one file.
    pub struct FileRun {
        /// File name, e.g. `functions.test`.
        pub file: String,
        pub group: Group,
        pub cases: Vec<CaseResult>,
    }

    impl FileRun {
        fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
            self.cases.iter().filter(|c| f(&c.outcome)).count()
        }

        fn key(&self, c: &CaseResult) -> String {
            format!("{}:{}", self.file, c.line)
        }
    }

    /// The checked-in list: `file:line` -> reason.
    pub type KnownFailures = BTreeMap<String, String>;

    /// Parses `known_failures.txt`: `file:line  # reason`, `#` comments.
    pub fn parse_known(text: &str) -> KnownFailures {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (key, reason) = l.split_once('#').unwrap_or((l, ""));
                (key.trim().to_string(), reason.trim().to_string())
            })
            .collect()
    }

    /// What the regression guard found.
    #[derive(Default)]
    pub struct Guard {
        /// Core failures not in the list: these fail the test.
        pub new_failures: Vec<(String, String)>,
        /// Listed cases that pass now.
        pub now_passing: Vec<String>,
        /// Listed cases that were skipped or no longer exist.
        pub stale: Vec<(String, String)>,
    }

    /// Checks the core files' results against the list. Entries for files
    /// that did not run (a `SLUICE_PROMQLTEST_FILE` filter) are ignored.
    pub fn guard(runs: &[FileRun], known: &KnownFailures) -> Guard {
        let mut g = Guard::default();
        let ran: BTreeSet<&str> = runs.iter().map(|r| r.file.as_str()).collect();
        let mut outcomes: BTreeMap<String, &Outcome> = BTreeMap::new();
        for run in runs.iter().filter(|r| r.group == Group::Core) {
            for c in &run.cases {
                let key = run.key(c);
                if let Outcome::Fail(msg) = &c.outcome
                    && !known.contains_key(&key)
                {
                    g.new_failures
                        .push((key.clone(), format!("{}\n      {}", c.query, msg)));
                }
                outcomes.insert(key, &c.outcome);
            }
        }
        for key in known.keys() {
            let file = key.rsplit_once(':').map_or(key.as_str(), |(f, _)| f);
            if !ran.contains(file) {
                continue;
            }
            match outcomes.get(key) {
                Some(Outcome::Pass) => g.now_passing.push(key.clone()),
                Some(Outcome::Fail(_)) => {}
                Some(Outcome::Skip(why)) => g.stale.push((key.clone(), format!("skipped: {why}"))),
                None => g
                    .stale
                    .push((key.clone(), "no core eval at this line".into())),
            }
        }
        g
    }

    /// One line, at most `max` characters.
    pub fn summarize(msg: &str, max: usize) -> String {
        let flat = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.chars().count() <= max {
            flat
        } else {
            let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
            format!("{cut}…")
        }
    }

    /// The new `known_failures.txt`: this run's core failures, plus the
    /// previous entries of core files that did not run. A case that was
    /// listed and still fails keeps its (possibly hand-written) reason; a
    /// new one gets its failure message.
    pub fn render_known(runs: &[FileRun], previous: &KnownFailures) -> String {
        let ran: BTreeSet<&str> = runs.iter().map(|r| r.file.as_str()).collect();
        let mut entries: Vec<(String, usize, String)> = Vec::new();
        for run in runs.iter().filter(|r| r.group == Group::Core) {
            for c in &run.cases {
                if let Outcome::Fail(msg) = &c.outcome {
                    let reason = previous
                        .get(&run.key(c))
                        .filter(|r| !r.is_empty())
                        .cloned()
                        .unwrap_or_else(|| summarize(msg, 140));
                    entries.push((run.file.clone(), c.line, reason));
                }
            }
        }
        for (key, reason) in previous {
            if let Some((file, line)) = key.rsplit_once(':')
                && !ran.contains(file)
            {
                entries.push((file.to_string(), line.parse().unwrap_or(0), reason.clone()));
            }
        }
        entries.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut out = String::new();
        out.push_str(
            "# Core promqltest cases that currently fail: `file:line` of the eval, then why.\n\
             # The promqltest integration test fails on any other failing core case.\n\
             # Regenerate after engine changes:\n\
             #   SLUICE_PROMQLTEST_UPDATE=1 cargo test -p sluice --test promqltest\n",
        );
        for (file, line, reason) in entries {
            let _ = writeln!(out, "{file}:{line}  # {reason}");
        }
        out
    }

    /// The report. `full` adds every skipped case and untruncated messages.
    pub fn render(
        corpus: &str,
        runs: &[FileRun],
        known: &KnownFailures,
        g: &Guard,
        full: bool,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "promqltest conformance: corpus {corpus}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<28} {:<13} {:>6} {:>6} {:>6}",
            "file", "group", "pass", "fail", "skip"
        );
        let mut totals: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for run in runs {
            let counts = [
                run.count(|o| *o == Outcome::Pass),
                run.count(|o| matches!(o, Outcome::Fail(_))),
                run.count(|o| matches!(o, Outcome::Skip(_))),
            ];
            let _ = writeln!(
                out,
                "{:<28} {:<13} {:>6} {:>6} {:>6}",
                run.file,
                run.group.name(),
                counts[0],
                counts[1],
                counts[2]
            );
            let t = totals.entry(run.group.name()).or_default();
            for k in 0..3 {
                t[k] += counts[k];
            }
        }
        for (group, t) in &totals {
            let _ = writeln!(
                out,
                "{:<28} {:<13} {:>6} {:>6} {:>6}",
                "TOTAL", group, t[0], t[1], t[2]
            );
        }

        let limit = if full { usize::MAX } else { 300 };
        for run in runs {
            let failures: Vec<&CaseResult> = run
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
                .collect();
            let skips: Vec<&CaseResult> = run
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Skip(_)))
                .collect();
            if failures.is_empty() && skips.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n== {} ({})", run.file, run.group.name());
            for c in failures {
                let Outcome::Fail(msg) = &c.outcome else {
                    continue;
                };
                let key = run.key(c);
                let tag = if run.group != Group::Core {
                    ""
                } else if known.contains_key(&key) {
                    " [known]"
                } else {
                    " [NEW]"
                };
                let _ = writeln!(out, "  FAIL {key}{tag}  {}", summarize(&c.query, limit));
                let _ = writeln!(out, "       {}", summarize(msg, limit));
            }
            // Skip reasons are `category: detail`; count per category.
            let mut by_category: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for c in &skips {
                if let Outcome::Skip(why) = &c.outcome {
                    let category = why.split_once(':').map_or(why.as_str(), |(c, _)| c);
                    by_category.entry(category).or_default().push(c.line);
                }
            }
            for (category, lines) in by_category {
                let shown: Vec<String> = lines.iter().take(15).map(|l| l.to_string()).collect();
                let more = if lines.len() > shown.len() {
                    format!(" …+{}", lines.len() - shown.len())
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "  SKIP x{:<4} {category} (lines {}{more})",
                    lines.len(),
                    shown.join(",")
                );
            }
            if full {
                for c in &skips {
                    if let Outcome::Skip(why) = &c.outcome {
                        let _ = writeln!(out, "  SKIP {}  {}", run.key(c), c.query);
                        let _ = writeln!(out, "       {why}");
                    }
                }
            }
        }

        let _ = writeln!(
            out,
            "\n== regression guard (core files vs tests/promqltest/known_failures.txt)"
        );
        for key in &g.now_passing {
            let _ = writeln!(out, "  now passing, remove from known_failures.txt: {key}");
        }
        for (key, why) in &g.stale {
            let _ = writeln!(out, "  stale entry in known_failures.txt: {key} ({why})");
        }
        if g.new_failures.is_empty() {
            let _ = writeln!(out, "  no new core failures");
        } else {
            let _ = writeln!(
                out,
                "  {} NEW core failure(s), not in known_failures.txt:",
                g.new_failures.len()
            );
            for (key, msg) in &g.new_failures {
                let _ = writeln!(out, "  NEW {key}  {msg}");
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The corpus directory, or `None` (after saying why) when it is missing
/// outside CI.
fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SLUICE_PROMQLTEST_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/promqltest"),
    };
    if dir.is_dir() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    let msg = format!(
        "promqltest corpus not found at {} (set SLUICE_PROMQLTEST_DIR)",
        dir.display()
    );
    assert!(!env_set("CI"), "{msg}; CI is set, so this is an error");
    println!("{msg}; skipping the conformance run");
    None
}

/// The `.test` files to run, sorted, after the `SLUICE_PROMQLTEST_FILE` filter.
fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let filter: Option<BTreeSet<String>> = std::env::var("SLUICE_PROMQLTEST_FILE")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().trim_end_matches(".test").to_string())
                .filter(|s| !s.is_empty())
                .collect()
        });
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .filter(|p| {
            filter.as_ref().is_none_or(|f| {
                p.file_stem()
                    .is_some_and(|s| f.contains(s.to_string_lossy().as_ref()))
            })
        })
        .collect();
    files.sort();
    if let Some(f) = &filter {
        assert!(
            !files.is_empty(),
            "SLUICE_PROMQLTEST_FILE={f:?} matches no .test file in {}",
            dir.display()
        );
    }
    files
}

#[test]
fn promqltest_corpus() {
    let Some(dir) = corpus_dir() else { return };
    let files = corpus_files(&dir);
    let timeout_secs = std::env::var("SLUICE_PROMQLTEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let runner = exec::Runner {
        // The reference harness' settings (FORMAT.md); no corpus file overrides them.
        engine: Engine::new(EngineOpts {
            lookback_delta: 5 * 60_000,
            max_samples: 10_000,
            default_subquery_step: 60_000,
            ..Default::default()
        }),
        runtime: runtime.handle().clone(),
        timeout: Duration::from_secs(timeout_secs),
    };

    let mut runs = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = script::parse_script(&text);
        runs.push(report::FileRun {
            file: format!("{stem}.test"),
            group: report::Group::of(&stem),
            cases: runner.run_script(&parsed),
        });
    }
    // Abandoned (hung) workers must not block the runtime's shutdown.
    runtime.shutdown_background();

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known_path = manifest.join("tests/promqltest/known_failures.txt");
    let known = std::fs::read_to_string(&known_path)
        .map(|t| report::parse_known(&t))
        .unwrap_or_default();
    let guard = report::guard(&runs, &known);
    let corpus = dir.display().to_string();

    let target = manifest.join("../target");
    let report_path = target
        .canonicalize()
        .unwrap_or(target)
        .join("promqltest-report.txt");
    let full = report::render(&corpus, &runs, &known, &guard, true);
    if let Some(parent) = report_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::write(&report_path, &full) {
        Ok(()) => println!("full report: {}", report_path.display()),
        Err(e) => println!("could not write {}: {e}", report_path.display()),
    }
    println!("{}", report::render(&corpus, &runs, &known, &guard, false));

    if env_set("SLUICE_PROMQLTEST_UPDATE") {
        let text = report::render_known(&runs, &known);
        std::fs::write(&known_path, text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", known_path.display()));
        println!("rewrote {}", known_path.display());
        return;
    }
    assert!(
        guard.new_failures.is_empty(),
        "{} core promqltest case(s) fail that are not in tests/promqltest/known_failures.txt \
         (first: {}); see the report above or {}",
        guard.new_failures.len(),
        guard.new_failures.first().map_or("", |f| f.0.as_str()),
        report_path.display()
    );
}

// ---------------------------------------------------------------------------
// Unit tests of the parser and helpers
// ---------------------------------------------------------------------------

mod tests {
    use sluice::model::Labels;
    use sluice::promql::STALE_NAN_BITS;

    use std::time::Duration;

    use crate::compare::almost_equal;
    use crate::exec::{CaseResult, Outcome, guarded, samples, touches_unsupported};
    use crate::report::{FileRun, Group, guard, parse_known, render_known};
    use crate::script::{
        Command, EvalKind, MessageMatch, SeqValue, ValuesError, parse_duration, parse_number,
        parse_script, parse_series_desc, parse_values, unquote,
    };

    fn floats(s: &str) -> Vec<f64> {
        parse_values(s)
            .expect("values parse")
            .into_iter()
            .map(|v| match v {
                SeqValue::Float(f) => f,
                SeqValue::Omitted => -12345.0,
            })
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("20s500ms"), Ok(20_500));
        assert_eq!(parse_duration("10s53ms"), Ok(10_053));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("30s1m").is_err(), "units out of order");
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn value_expansion() {
        assert_eq!(floats("1 2 3"), vec![1.0, 2.0, 3.0]);
        assert_eq!(floats("0+10x3"), vec![0.0, 10.0, 20.0, 30.0]);
        assert_eq!(floats("10-2x2"), vec![10.0, 8.0, 6.0]);
        assert_eq!(floats("-1-1x3"), vec![-1.0, -2.0, -3.0, -4.0]);
        assert_eq!(floats("5x2"), vec![5.0, 5.0, 5.0]);
        // `x` is repetition here, never a hex prefix.
        assert_eq!(floats("0x2"), vec![0.0, 0.0, 0.0]);
        assert_eq!(floats("1e3+1e3x1"), vec![1000.0, 2000.0]);
        assert_eq!(floats("1.5E+2 -2.5e-1 .5 2."), vec![150.0, -0.25, 0.5, 2.0]);
        assert_eq!(floats("Inf -Inf"), vec![f64::INFINITY, f64::NEG_INFINITY]);
        assert!(floats("NaN")[0].is_nan());
        assert_eq!(
            parse_values("1 _ _x2 2").expect("parse"),
            vec![
                SeqValue::Float(1.0),
                SeqValue::Omitted,
                SeqValue::Omitted,
                SeqValue::Omitted,
                SeqValue::Float(2.0)
            ]
        );
        match parse_values("1 stale").expect("parse")[1] {
            SeqValue::Float(f) => assert_eq!(f.to_bits(), STALE_NAN_BITS),
            SeqValue::Omitted => panic!("stale parsed as omitted"),
        }
        assert_eq!(parse_values("").expect("parse"), vec![]);
        assert_eq!(
            parse_values("1 {{schema:0 sum:1 count:1}}"),
            Err(ValuesError::NativeHistogram)
        );
        assert!(matches!(parse_values("1+x3"), Err(ValuesError::Invalid(_))));
        assert!(matches!(parse_values("abc"), Err(ValuesError::Invalid(_))));
        assert!(matches!(parse_values("1x"), Err(ValuesError::Invalid(_))));
    }

    #[test]
    fn series_descriptions() {
        let (l, rest) = parse_series_desc("metric 1 2").expect("parse");
        assert_eq!(l, labels(&[("__name__", "metric")]));
        assert_eq!(rest, "1 2");

        let (l, rest) = parse_series_desc(
            r#"http_requests{job="api-server", instance="0", group="canary"}	0+10x10"#,
        )
        .expect("parse");
        assert_eq!(
            l,
            labels(&[
                ("__name__", "http_requests"),
                ("group", "canary"),
                ("instance", "0"),
                ("job", "api-server")
            ])
        );
        assert_eq!(rest, "0+10x10");

        let (l, rest) = parse_series_desc(r#"{test="three samples",point="a"} 1"#).expect("parse");
        assert_eq!(l, labels(&[("point", "a"), ("test", "three samples")]));
        assert_eq!(rest, "1");

        let (l, _) = parse_series_desc(r#"{"my.metric", "a.b"="c\"d", x='y',} 1"#).expect("parse");
        assert_eq!(
            l,
            labels(&[("__name__", "my.metric"), ("a.b", "c\"d"), ("x", "y")])
        );

        let (l, rest) = parse_series_desc(r#"{__name__="m:rule", le="+Inf"} 3"#).expect("parse");
        assert_eq!(l, labels(&[("__name__", "m:rule"), ("le", "+Inf")]));
        assert_eq!(rest, "3");

        let (l, rest) = parse_series_desc("{} 3").expect("parse");
        assert_eq!(l, Labels::empty());
        assert_eq!(rest, "3");

        let (l, _) = parse_series_desc(r#"m{a="", b="\u00e9\n"} 1"#).expect("parse");
        assert_eq!(
            l,
            labels(&[("__name__", "m"), ("b", "é\n")]),
            "empty labels dropped"
        );

        let (l, rest) = parse_series_desc("m {{count:1}}").expect("parse");
        assert_eq!(l, labels(&[("__name__", "m")]));
        assert_eq!(rest, "{{count:1}}");

        assert!(parse_series_desc(r#"m{a="b" 1"#).is_err());
        assert!(parse_series_desc(r#"m{a=~"b"} 1"#).is_err());
        assert!(parse_series_desc("1 2").is_err());
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(parse_number("12340000"), Some(12_340_000.0));
        assert_eq!(parse_number("-0.0000002"), Some(-0.0000002));
        assert_eq!(parse_number("0x1F"), Some(31.0));
        assert_eq!(parse_number("010"), Some(8.0));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("{} 3"), None);
        assert_eq!(parse_number("metric 3"), None);
        assert_eq!(unquote(r#""Foo""#).as_deref(), Ok("Foo"));
        assert_eq!(unquote("` Foo `").as_deref(), Ok(" Foo "));
        assert_eq!(unquote(r#""a\tb\\""#).as_deref(), Ok("a\tb\\"));
        assert!(unquote(r#""open"#).is_err());
    }

    #[test]
    fn float_comparison() {
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::MAX));
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert!(!almost_equal(stale, f64::NAN));
        assert!(almost_equal(stale, stale));
    }

    #[test]
    fn script_commands() {
        let text = "\
# comment
load 5m
  http_requests{job=\"a\"} 0+10x2 _ stale
  other 1

eval instant at 10m sum(http_requests)
  expect no_warn
  expect info msg: PromQL info: something
  {} 20

eval range from 0 to 10m step 5m http_requests
  expect warn regex: ^PromQL warning
  http_requests{job=\"a\"} 0 10 20

eval_fail instant at 0 foo(
  expected_fail_message boom

eval_ordered instant at 1m sort(x)
  x{a=\"1\"} 1
  x{a=\"2\"} 2

eval instant at 50m \"Foo\"
  expect string \"Foo\"

eval instant at 50m 1 + 1
  2

eval instant at 1m some_metric[1m]
  expect range vector from 10s to 1m step 10s
  some_metric 2 3 4 5 6

eval instant at 1m hist
  {} {{count:1}}

eval instant at 1m two_values
  {} 1 2

clear
";
        let script = parse_script(text);
        assert!(script.fatal.is_none(), "{:?}", script.fatal);
        let cmds = &script.commands;
        assert_eq!(cmds.len(), 11);
        let Command::Load(load) = &cmds[0] else {
            panic!("load expected")
        };
        assert_eq!(
            (load.line, load.interval, load.series.len()),
            (2, 300_000, 2)
        );
        let (l, vals) = &load.series[0];
        assert_eq!(l, &labels(&[("__name__", "http_requests"), ("job", "a")]));
        let pts = samples(vals, load.interval);
        assert_eq!(pts.len(), 4);
        assert_eq!(&pts[..3], &[(0, 0.0), (300_000, 10.0), (600_000, 20.0)]);
        assert_eq!(pts[3].0, 1_200_000);
        assert_eq!(pts[3].1.to_bits(), STALE_NAN_BITS);

        let evals: Vec<_> = cmds
            .iter()
            .filter_map(|c| {
                if let Command::Eval(e) = c {
                    Some(e)
                } else {
                    None
                }
            })
            .collect();
        let e = &evals[0];
        assert_eq!((e.line, e.query.as_str()), (6, "sum(http_requests)"));
        assert_eq!(e.kind, EvalKind::Instant { at: 600_000 });
        assert!(e.warn.forbidden && e.skip.is_none());
        assert!(
            matches!(&e.info.rules[..], [MessageMatch::Exact(m)] if m == "PromQL info: something")
        );
        assert_eq!(e.series.len(), 1);

        let e = &evals[1];
        assert_eq!(
            e.kind,
            EvalKind::Range {
                start: 0,
                end: 600_000,
                step: 300_000
            }
        );
        assert!(matches!(&e.warn.rules[..], [MessageMatch::Regex(_)]));
        assert_eq!(e.series[0].values.len(), 3);

        assert!(matches!(&evals[2].fail, Some(MessageMatch::Exact(m)) if m == "boom"));
        assert!(evals[3].ordered && evals[3].series.len() == 2);
        assert_eq!(evals[4].string.as_deref(), Some("Foo"));
        assert_eq!(evals[5].scalar, Some(2.0));
        let rv = evals[6].range_vector.expect("range vector");
        assert_eq!((rv.start, rv.end, rv.step), (10_000, 60_000, 10_000));
        assert!(
            evals[7]
                .skip
                .as_deref()
                .is_some_and(|s| s.contains("native histograms"))
        );
        assert!(
            evals[8]
                .skip
                .as_deref()
                .is_some_and(|s| s.contains("several values"))
        );
        assert!(matches!(cmds[10], Command::Clear));
    }

    #[test]
    fn unknown_directive_is_fatal_but_cases_are_kept() {
        let script = parse_script("frobnicate 1\n\neval instant at 0 1\n  1\n");
        let fatal = script.fatal.expect("fatal");
        assert_eq!(fatal.line, 1);
        assert_eq!(
            script.commands.len(),
            1,
            "the eval is still listed (to be skipped)"
        );
    }

    #[test]
    fn unloadable_series_and_the_queries_that_read_them() {
        let script = parse_script(
            "load_with_nhcb 5m\n  h_bucket{le=\"1\", j=\"a\"} 1\n  h_bucket{le=\"+Inf\", j=\"a\"} 2\n  \
             h_count{j=\"a\"} 2\n  x{kind=\"float\"} 1\n  x{kind=\"hist\"} {{count:1}}\n  \
             m@st _ -1m\n  m 1 2\n",
        );
        let Command::Load(load) = &script.commands[0] else {
            panic!("load expected")
        };
        assert!(load.with_nhcb);
        assert_eq!(
            load.series.len(),
            5,
            "classic series, x{{kind=float}} and m are loaded"
        );
        let unloaded: Vec<&Labels> = load.unsupported.iter().map(|(l, _)| l).collect();
        assert_eq!(
            unloaded,
            vec![
                &labels(&[("__name__", "x"), ("kind", "hist")]),
                &labels(&[("__name__", "m")]),
                &labels(&[("__name__", "h"), ("j", "a")]),
            ]
        );
        let why = |q: &str| touches_unsupported(q, &load.unsupported);
        assert!(why("histogram_count(h)").is_some_and(|w| w.starts_with("native histograms:")));
        assert!(why("rate(m[5m])").is_some_and(|w| w.starts_with("start timestamps:")));
        assert!(why("x").is_some());
        assert!(why(r#"sum(x{kind!="float"})"#).is_some());
        assert!(why(r#"{kind="hist"}"#).is_some());
        assert!(why(r#"{__name__=~"h|z"}"#).is_some());
        assert!(why(r#"{"h"}"#).is_some());
        assert!(why(r#"x{kind="float"} + on() group_left vector(1)"#).is_none());
        assert!(why(r#"{kind="float"}"#).is_none());
        assert!(why("histogram_quantile(0.5, h_bucket)").is_none());
        assert!(why(r#"sum by (le) (h_bucket{le="1"}) / h_count"#).is_none());
        // Syntax promql-parser rejects falls back to matching names.
        assert!(why("rate(h[1m] anchored)").is_some());
        assert!(why("rate(h_count[1m] anchored)").is_none());
        assert!(touches_unsupported("x", &[]).is_none());
    }

    #[test]
    fn guard_turns_panics_and_hangs_into_failures() {
        let t = Duration::from_secs(5);
        assert_eq!(guarded("ok", t, || Ok(())), Outcome::Pass);
        assert_eq!(
            guarded("diff", t, || Err("d".into())),
            Outcome::Fail("d".into())
        );
        assert_eq!(
            guarded("panics", t, || panic!("boom")),
            Outcome::Fail("engine panicked: boom".into())
        );
        let hang = guarded("hangs", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        });
        assert!(matches!(hang, Outcome::Fail(m) if m.starts_with("timed out")));
    }

    #[test]
    fn known_failures_guard() {
        let known = parse_known(
            "# header\nfunctions.test:10  # query failed: x\nfunctions.test:20 # y\n\
             functions.test:99 # gone\noperators.test:5 # not run\n",
        );
        assert_eq!(known.len(), 4);
        assert_eq!(known["functions.test:10"], "query failed: x");
        let case = |line, outcome| CaseResult {
            line,
            query: format!("q{line}"),
            outcome,
        };
        let runs = vec![
            FileRun {
                file: "functions.test".into(),
                group: Group::Core,
                cases: vec![
                    case(10, Outcome::Fail("still broken".into())),
                    case(20, Outcome::Pass),
                    case(30, Outcome::Fail("new\nbreakage".into())),
                    case(40, Outcome::Skip("native histograms: x".into())),
                ],
            },
            FileRun {
                file: "info.test".into(),
                group: Group::Experimental,
                cases: vec![case(1, Outcome::Fail("never guarded".into()))],
            },
        ];
        let g = guard(&runs, &known);
        assert_eq!(g.new_failures.len(), 1);
        assert_eq!(g.new_failures[0].0, "functions.test:30");
        assert_eq!(g.now_passing, vec!["functions.test:20".to_string()]);
        assert_eq!(
            g.stale.len(),
            1,
            "line 99 has no eval; operators.test did not run"
        );
        let rewritten = parse_known(&render_known(&runs, &known));
        let keys: Vec<&str> = rewritten.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["functions.test:10", "functions.test:30", "operators.test:5"]
        );
        assert_eq!(
            rewritten["functions.test:10"], "query failed: x",
            "old reason kept"
        );
        assert_eq!(rewritten["functions.test:30"], "new breakage");
        assert_eq!(rewritten["operators.test:5"], "not run");
    }
}
