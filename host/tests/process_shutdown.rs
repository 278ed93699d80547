//! A process's tasks end with it: after `sluice query` (started in-process, with a policies file watched) and
//! `sluice store` shut down, none of their background threads or tasks is left — the policy engine's epoch
//! thread included, which stops only when the last owner of the engine (the registry held by the watch and
//! refresh tasks) is gone.

use std::time::Duration;

use sluice::cli::query::{QueryArgs, start};
use sluice::metrics::Metrics;

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn epoch_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("sluice-epoch"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_shutdown_ends_every_task_and_the_epoch_thread() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let policies = tmp.path().join("policies.yml");
    std::fs::write(&policies, "slots:\n  dedup:\n    builtin: dedup-penalty\n")
        .expect("policies.yml");
    assert_eq!(epoch_threads(), 0, "no engine yet");
    let mut args = QueryArgs::local(
        vec!["127.0.0.1:1".into()],
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    args.policies_config_file = Some(policies);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (running, handle) = start(&args, Metrics::new(), async move {
        let _ = stop_rx.await;
    })
    .await
    .expect("start query");
    assert_eq!(
        epoch_threads(),
        1,
        "the policy engine ticks while the querier runs"
    );
    drop(running);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the querier stops")
        .expect("join")
        .expect("clean stop");
    let mut left = epoch_threads();
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = epoch_threads();
    }
    assert_eq!(left, 0, "threads after shutdown: {:?}", thread_names());
}
