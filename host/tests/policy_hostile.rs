//! Hostile plugins, built from source by this test (host/tests/guests): an
//! infinite loop, a memory bomb, a panic, an `unreachable`, a huge output, an
//! error, a plugin importing capabilities no slot grants, and two wrong ABI
//! versions. Each runtime failure gives the slot's failure policy's outcome
//! (`fail-closed`: the right error kind; `fallback`: the native result and a
//! warning), is counted in `sluice_policy_errors_total{kind=...}`, and leaves
//! the registry serving: good slots keep answering, and the bad slot fails
//! again cleanly on a fresh instance. Load-time refusals keep the old set.

#[path = "support/wasm_build.rs"]
mod wasm_build;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::metrics::Metrics;
use sluice::policy::config::{FailurePolicy, Limits, PluginSource, PolicyKind, SlotConfig};
use sluice::policy::{
    CallError, DedupBatch, DedupHints, FailureKind, PolicyEngine, PolicyRegistry,
};
use sluice_policy_abi::Series;
use sluice_policy_algorithms::dedup;
use wasm_build::guest;

fn slot(
    name: &str,
    source: PluginSource,
    config: serde_json::Value,
    limits: Limits,
    policy: FailurePolicy,
) -> SlotConfig {
    SlotConfig {
        name: name.into(),
        kind: PolicyKind::Dedup,
        source,
        sha256: None,
        config,
        limits,
        failure_policy: policy,
        grants: Default::default(),
    }
}

fn good_slot() -> SlotConfig {
    slot(
        "good",
        PluginSource::Builtin("dedup-penalty".into()),
        json!({}),
        Limits::default(),
        FailurePolicy::FailClosed,
    )
}

/// Two replicas of two series with a gap each, so penalty dedup has work to do.
fn groups() -> Vec<Vec<Series>> {
    let replica = |offset: i64, gap: (i64, i64)| {
        let ts: Vec<i64> = (0..40)
            .map(|i| offset + i * 15_000)
            .filter(|t| !(gap.0..gap.1).contains(t))
            .collect();
        let vs = ts.iter().map(|t| (*t / 1000) as f64).collect();
        Series::new(ts, vs)
    };
    vec![
        vec![
            replica(0, (100_000, 200_000)),
            replica(1_000, (400_000, 500_000)),
        ],
        vec![replica(500, (0, 0)), replica(0, (0, 100_000))],
    ]
}

fn batch(groups: &[Vec<Series>]) -> DedupBatch {
    let mut b = DedupBatch::new();
    for g in groups {
        b.push_group(
            g.iter()
                .map(|s| (s.timestamps.as_slice(), s.values.as_slice())),
        );
    }
    b
}

fn hints() -> DedupHints {
    DedupHints {
        func: "rate".into(),
        ..Default::default()
    }
}

fn native(groups: &[Vec<Series>]) -> Vec<Series> {
    groups.iter().map(|g| dedup::penalty(g, true)).collect()
}

fn call(
    reg: &PolicyRegistry,
    slot: &str,
) -> Result<sluice::policy::Outcome<Vec<Series>>, CallError> {
    let set = reg.snapshot();
    let mut session = set
        .session(slot, PolicyKind::Dedup)
        .expect("slot is loaded");
    session.dedup(&batch(&groups()), &hints())
}

/// The value of one sample line of the OpenMetrics text, 0 if absent.
fn metric(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = metrics.encode();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((lbls, value)) = rest.split_once("} ") else {
            continue;
        };
        if labels
            .iter()
            .all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\"")))
        {
            return value.trim().parse().unwrap_or(f64::NAN);
        }
    }
    0.0
}

struct Case {
    mode: &'static str,
    limits: Limits,
    expect: FailureKind,
    message: &'static str,
}

fn cases() -> Vec<Case> {
    let d = Limits::default();
    vec![
        Case {
            mode: "spin",
            limits: Limits {
                timeout: Duration::from_millis(100),
                ..d
            },
            expect: FailureKind::Timeout,
            message: "deadline",
        },
        Case {
            mode: "bomb",
            limits: Limits {
                memory_bytes: 16 << 20,
                ..d
            },
            expect: FailureKind::Oom,
            message: "memory cap",
        },
        Case {
            mode: "trap",
            limits: d,
            expect: FailureKind::Trap,
            message: "",
        },
        Case {
            mode: "unreachable",
            limits: d,
            expect: FailureKind::Trap,
            message: "",
        },
        Case {
            mode: "huge",
            limits: Limits {
                max_output_bytes: 1 << 20,
                ..d
            },
            expect: FailureKind::InvalidOutput,
            message: "exceeds the slot's max_output",
        },
        Case {
            mode: "unordered",
            limits: d,
            expect: FailureKind::InvalidOutput,
            message: "timestamps do not strictly ascend at index 2 (3000 then 2000)",
        },
        Case {
            mode: "error",
            limits: d,
            expect: FailureKind::PluginError,
            message: "refuses on purpose",
        },
    ]
}

#[test]
fn runtime_failures_follow_the_failure_policy_and_the_registry_keeps_serving() {
    let hostile = PluginSource::File(guest("hostile"));
    let metrics = Metrics::new();
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &metrics);
    let mut slots = vec![good_slot()];
    for c in cases() {
        for (suffix, policy) in [
            ("closed", FailurePolicy::FailClosed),
            ("fallback", FailurePolicy::Fallback),
        ] {
            slots.push(slot(
                &format!("{}-{suffix}", c.mode),
                hostile.clone(),
                json!({"mode": c.mode}),
                c.limits,
                policy,
            ));
        }
    }
    reg.apply(slots)
        .expect("the hostile plugin loads: it misbehaves only when called");
    let expected = native(&groups());

    for c in cases() {
        let closed = format!("{}-closed", c.mode);
        // fail-closed: the error names the failure; the same session and a new
        // session both fail again the same way, on a fresh instance.
        let set = reg.snapshot();
        let mut session = set.session(&closed, PolicyKind::Dedup).expect("session");
        for attempt in 0..2 {
            let started = Instant::now();
            let e = session
                .dedup(&batch(&groups()), &hints())
                .expect_err(c.mode);
            assert_eq!(e.kind, c.expect, "{}: attempt {attempt}: {e}", c.mode);
            assert!(e.message.contains(c.message), "{}: {e}", c.mode);
            assert_eq!(e.plugin, "hostile");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}: took {:?}",
                c.mode,
                started.elapsed()
            );
        }
        let e = call(&reg, &closed).expect_err(c.mode);
        assert_eq!(e.kind, c.expect, "{}: new session: {e}", c.mode);
        assert_eq!(
            metric(
                &metrics,
                "sluice_policy_errors_total",
                &[("slot", &closed), ("kind", c.expect.as_str())]
            ),
            3.0,
            "{}: errors counted by kind\n{}",
            c.mode,
            metrics.encode()
        );

        // fallback: the native built-in's result, with a warning naming the failure.
        let fallback = format!("{}-fallback", c.mode);
        let o =
            call(&reg, &fallback).unwrap_or_else(|e| panic!("{}: fallback failed: {e}", c.mode));
        assert_eq!(
            o.value, expected,
            "{}: fallback result is the native one",
            c.mode
        );
        let w = o
            .warning
            .unwrap_or_else(|| panic!("{}: no warning", c.mode));
        assert!(
            w.contains(c.expect.as_str()) && w.contains("native dedup-penalty"),
            "{}: {w}",
            c.mode
        );
        assert_eq!(
            metric(
                &metrics,
                "sluice_policy_errors_total",
                &[("slot", &fallback), ("kind", c.expect.as_str())]
            ),
            1.0
        );
        assert_eq!(
            metric(
                &metrics,
                "sluice_policy_fallbacks_total",
                &[("slot", &fallback)]
            ),
            1.0
        );

        // The good slot is unaffected.
        let o = call(&reg, "good").expect("good slot serves");
        assert_eq!(o.value, expected);
        assert!(o.warning.is_none());
    }

    // Discarded instances give their pool slots back: many more failed calls
    // than the pool holds instances, and both slots still instantiate.
    for _ in 0..300 {
        assert_eq!(
            call(&reg, "trap-closed").expect_err("traps").kind,
            FailureKind::Trap
        );
    }
    assert_eq!(
        call(&reg, "good").expect("good slot serves").value,
        expected
    );
    assert_eq!(
        reg.snapshot().generation,
        1,
        "failures never reload the set"
    );
}

fn assert_refused(reg: &PolicyRegistry, metrics: &Metrics, bad: SlotConfig, needles: &[&str]) {
    let before = reg.snapshot();
    let failures = metric(
        metrics,
        "sluice_policy_reloads_total",
        &[("result", "failure")],
    );
    let errors = reg
        .apply(vec![good_slot(), bad.clone()])
        .expect_err("the set must be refused");
    let text = errors.join("; ");
    for n in needles {
        assert!(text.contains(n), "{n:?} missing from: {text}");
    }
    assert!(
        text.contains(&format!("slot {}", bad.name)),
        "the error names the slot: {text}"
    );
    let after = reg.snapshot();
    assert!(Arc::ptr_eq(&before, &after), "the old set keeps serving");
    assert_eq!(reg.last_error().as_deref(), Some(text.as_str()));
    assert_eq!(
        metric(
            metrics,
            "sluice_policy_reloads_total",
            &[("result", "failure")]
        ),
        failures + 1.0
    );
    assert_eq!(
        call(reg, "good").expect("old set serves").value,
        native(&groups())
    );
}

#[test]
fn capabilities_and_wrong_abi_versions_are_refused_at_load() {
    let metrics = Metrics::new();
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &metrics);
    reg.apply(vec![good_slot()]).expect("good set");
    let file = |name: &str| PluginSource::File(guest(name));
    for policy in [FailurePolicy::FailClosed, FailurePolicy::Fallback] {
        // Reads a file and the clock: std then imports wasi:filesystem and wasi:clocks.
        assert_refused(
            &reg,
            &metrics,
            slot(
                "snoop",
                file("capability"),
                json!({}),
                Limits::default(),
                policy,
            ),
            &[
                "plugin needs a capability that is not granted",
                "wasi:filesystem/",
                "wasi:clocks/wall-clock@",
            ],
        );
        // Exports sluice:policy/dedup@9.0.0.
        assert_refused(
            &reg,
            &metrics,
            slot(
                "wit9",
                file("abi-wit9"),
                json!({}),
                Limits::default(),
                policy,
            ),
            &["ABI mismatch", "sluice:policy/dedup@9.0.0"],
        );
        // Exports @0.1.0 but its info() says ABI 9.0.
        assert_refused(
            &reg,
            &metrics,
            slot(
                "info9",
                file("abi-info9"),
                json!({}),
                Limits::default(),
                policy,
            ),
            &["ABI mismatch", "plugin ABI 9.0 is not compatible"],
        );
    }
    // A config the plugin rejects is refused too, with the plugin's reason.
    assert_refused(
        &reg,
        &metrics,
        slot(
            "hostile",
            file("hostile"),
            json!({"mode": "sideways"}),
            Limits::default(),
            FailurePolicy::FailClosed,
        ),
        &["configure rejected the slot's config", "sideways"],
    );
    assert_eq!(reg.snapshot().generation, 1);
}

#[test]
fn plugin_inspect_and_test_report_hostile_modules() {
    use sluice::cli::plugin::{TestOptions, inspect, test_plugin};

    let ins = inspect(&guest("capability")).expect("inspect");
    assert_eq!(ins.kind, Some(PolicyKind::Dedup));
    assert!(ins.info.is_none(), "no code of a refused plugin runs");
    assert!(
        ins.problems.iter().any(|p| p.contains("wasi:filesystem/")),
        "{:?}",
        ins.problems
    );
    let refused: Vec<&str> = ins
        .imports
        .iter()
        .filter(|i| i.link == sluice::policy::ImportLink::Refused)
        .map(|i| i.name.as_str())
        .collect();
    assert!(
        refused
            .iter()
            .any(|n| n.starts_with("wasi:clocks/wall-clock@")),
        "{refused:?}"
    );
    assert!(ins.render().contains("REFUSED"));

    let ins = inspect(&guest("abi-wit9")).expect("inspect");
    assert_eq!(ins.interface_version.as_deref(), Some("9.0.0"));
    assert!(
        ins.problems.iter().any(|p| p.contains("ABI mismatch")),
        "{:?}",
        ins.problems
    );

    let ins = inspect(&guest("abi-info9")).expect("inspect");
    assert_eq!(ins.info.as_ref().map(|i| i.abi.as_str()), Some("9.0"));
    assert!(
        ins.problems.iter().any(|p| p.contains("ABI mismatch")),
        "{:?}",
        ins.problems
    );

    let ins = inspect(&guest("hostile")).expect("inspect");
    assert!(ins.problems.is_empty(), "{:?}", ins.problems);
    assert_eq!(ins.info.as_ref().map(|i| i.name.as_str()), Some("hostile"));

    // `plugin test` uses the production limits it is given: the spin loop
    // stops at the deadline.
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config.yaml");
    std::fs::write(&config, "mode: spin\n").expect("write");
    let started = Instant::now();
    let e = test_plugin(&TestOptions {
        module: guest("hostile"),
        kind: None,
        config: Some(config),
        input: None,
        limits: Limits {
            timeout: Duration::from_millis(50),
            ..Limits::default()
        },
        func: None,
        repeat: 1,
        grants: Default::default(),
    })
    .expect_err("spins");
    assert!(started.elapsed() < Duration::from_secs(5));
    match e {
        sluice::cli::plugin::PluginToolError::Call(c) => assert_eq!(c.kind, FailureKind::Timeout),
        other => panic!("expected a timeout, got {other}"),
    }

    // `plugin test --grants`: the capability guest runs with the grants a
    // slot would give it (it reads the clock and the random source here),
    // and is refused without them.
    let grants_file = tmp.path().join("grants.yaml");
    std::fs::write(
        &grants_file,
        "clock: true\nrandom: true\nfilesystem: [{host: ., guest: /data}]\nnetwork: [\"127.0.0.1:9\"]\n",
    )
    .expect("write");
    let opts = |grants| TestOptions {
        module: guest("capability"),
        kind: None,
        config: None,
        input: None,
        limits: Limits::default(),
        func: None,
        repeat: 1,
        grants,
    };
    let e = test_plugin(&opts(Default::default())).expect_err("refused without grants");
    assert!(e.to_string().contains("grants:"), "{e}");
    let grants = sluice::policy::config::parse_policies(
        &format!(
            "slots:\n  dedup:\n    builtin: dedup-penalty\n    grants: {{clock: true, random: true, filesystem: [{{host: {}, guest: /data}}], network: [\"127.0.0.1:9\"]}}\n",
            tmp.path().display()
        ),
        tmp.path(),
    )
    .expect("valid")[0]
        .grants
        .clone();
    let report = test_plugin(&opts(grants)).expect("runs with its grants");
    let values = &report["output"][0]["values"];
    assert_eq!(values[4], 1.0, "random draws differ: {report}");
    assert!(
        values[3].as_f64().is_some_and(|t| t > 1.7e12),
        "wall clock: {report}"
    );
}

/// The real binary: exit status and output of `sluice plugin inspect|test`.
#[test]
fn the_sluice_binary_exits_non_zero_for_hostile_modules() {
    let sluice = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(&sluice)
            .args(args)
            .output()
            .expect("running sluice")
    };
    let cap = guest("capability");
    let out = run(&["plugin".as_ref(), "inspect".as_ref(), cap.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("REFUSED") && stdout.contains("wasi:filesystem/"),
        "{stdout}"
    );
    assert!(stderr.contains("would be refused"), "{stderr}");

    let hostile = guest("hostile");
    let out = run(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        hostile.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json is JSON");
    assert_eq!(v["info"]["name"], "hostile");
    assert_eq!(v["kind"], "dedup");

    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, r#"{"mode": "trap"}"#).expect("write");
    let out = run(&[
        "plugin".as_ref(),
        "test".as_ref(),
        hostile.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error report is JSON");
    assert_eq!(v["error"]["kind"], "trap", "{v}");

    std::fs::write(&config, r#"{"mode": "ok"}"#).expect("write");
    let out = run(&[
        "plugin".as_ref(),
        "test".as_ref(),
        hostile.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--repeat".as_ref(),
        "3".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report is JSON");
    assert_eq!(v["timing"]["calls"], 3);
    assert_eq!(
        v["output"][0]["timestamps"][0], 0,
        "first replica of the example input: {v}"
    );
}

/// A loopback server that answers each of up to `n` connections with
/// `reply` and closes it; the thread ends after `n` connections or 30 s.
fn one_line_server(reply: &'static str, n: usize) -> std::net::SocketAddr {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < n && Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(reply.as_bytes());
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    addr
}

#[test]
fn granted_capabilities_are_served_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret"), "hello world").expect("write");
    let server = one_line_server("42\n", 10);
    let wasm = guest("capability");
    let policies = |config: &str, grants: &str| {
        format!(
            "slots:\n  snoop:\n    kind: dedup\n    path: {}\n    config: {config}\n    grants:\n{grants}",
            wasm.display()
        )
    };
    let all_grants = format!(
        "      clock: true\n      random: true\n      environment: {{SNOOP_TOKEN: abcd}}\n      filesystem: [{{host: {}, guest: /data}}]\n      network: [\"{server}\"]\n",
        dir.path().display()
    );
    let metrics = Metrics::new();
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &metrics);
    let run = |reg: &PolicyRegistry| {
        let out = call(reg, "snoop").expect("granted plugin answers");
        assert!(out.warning.is_none());
        out.value[0].values.clone()
    };

    // Everything granted: the file under /data, the granted variable, a line
    // from the allowed address, the clock and the random source all work.
    let yaml = policies(
        &format!(r#"{{"file": "/data/secret", "env": "SNOOP_TOKEN", "connect": "{server}"}}"#),
        &all_grants,
    );
    let slots = sluice::policy::config::parse_policies(&yaml, dir.path()).expect("valid policies");
    assert_eq!(
        slots[0].grants.names(),
        ["clock", "random", "environment", "filesystem", "network"]
    );
    reg.apply(slots)
        .expect("a plugin with every capability it needs granted loads");
    let v = run(&reg);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as f64;
    assert_eq!(
        &v[..3],
        &[11.0, 4.0, 42.0],
        "file, variable, network: {v:?}"
    );
    assert!(
        (v[3] - now).abs() < 60_000.0,
        "wall clock {} vs {now}",
        v[3]
    );
    assert_eq!(v[4], 1.0, "two random draws differ");

    // Only what is granted: a path outside the mount, a host variable that
    // was not listed, an address not on the list all fail inside the plugin.
    assert!(std::env::var_os("PATH").is_some(), "the host has a PATH");
    let other = one_line_server("7\n", 1);
    let yaml = policies(
        &format!(r#"{{"file": "/data/../../etc/hostname", "env": "PATH", "connect": "{other}"}}"#),
        &all_grants,
    );
    reg.apply(sluice::policy::config::parse_policies(&yaml, dir.path()).expect("valid"))
        .expect("loads");
    assert_eq!(&run(&reg)[..3], &[-1.0, -1.0, -1.0]);

    // A capability the component imports but the slot does not grant: the
    // plugin is refused at load, naming the import and the grant it needs.
    let without_network = all_grants
        .lines()
        .filter(|l| !l.contains("network"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let yaml = policies("{}", &without_network);
    let errors = reg
        .apply(sluice::policy::config::parse_policies(&yaml, dir.path()).expect("valid"))
        .expect_err("refused");
    let text = errors.join("; ");
    assert!(
        text.contains("wasi:sockets/") && text.contains("grants:") && text.contains("network"),
        "{text}"
    );
    assert!(!text.contains("wasi:clocks/"), "clocks are granted: {text}");

    // Bad grants are configuration errors, all reported at once.
    let bad = policies(
        "{}",
        "      filesystem: [{host: /nonexistent/dir, guest: data}]\n      network: [\"localhost:80\"]\n",
    );
    let problems = sluice::policy::config::parse_policies(&bad, dir.path()).expect_err("invalid");
    let text = problems.join("; ");
    for needle in [
        "is not a directory",
        "must be an absolute path",
        "not an ip:port",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text}");
    }
}
