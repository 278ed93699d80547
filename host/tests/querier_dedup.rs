//! The querier's read path over two stores holding an HA pair: replica
//! labels stripped, overlap split, penalty dedup through the sandboxed
//! plugin (checked against a hand-worked expectation), chain dedup picked by
//! name, and dedup=false.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::cli::store::{StoreArgs, start};
use sluice::discovery::{Discovery, EndpointSpec, Source};
use sluice::fanout::{EndpointSet, EndpointSetOptions};
use sluice::metrics::Metrics;
use sluice::model::{MatchOp, Matcher};
use sluice::policy::{PolicyEngine, PolicyRegistry, config::default_slots};
use sluice::querier::{Querier, QuerierConfig, SelectParams};
use sluice_tsdb::block::{BlockWriterOptions, write_block};
use sluice_tsdb::meta::ThanosMeta;

const MIN: i64 = 60_000;

/// Replica A: every 15 s from 0 for an hour, missing [20m, 30m).
/// Replica B: every 15 s from 5 s for an hour, no gap.
fn replica(name: &str) -> Vec<(i64, f64)> {
    let offset = if name == "A" { 0 } else { 5_000 };
    (0..240)
        .map(|i| offset + i * 15_000)
        .filter(|t| name != "A" || !(20 * MIN..30 * MIN).contains(t))
        .map(|t| (t, if name == "A" { 1.0 } else { 2.0 }))
        .collect()
}

async fn store_for(
    dir: &std::path::Path,
    r: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> String {
    let bucket = dir.join(format!("bucket-{r}"));
    std::fs::create_dir_all(&bucket).expect("mkdir");
    let labels: BTreeMap<String, String> = [
        ("cluster".to_string(), "a".to_string()),
        ("replica".to_string(), r.to_string()),
    ]
    .into();
    let series = vec![(
        vec![
            ("__name__".to_string(), "m".to_string()),
            ("job".to_string(), "x".to_string()),
        ],
        replica(r),
    )];
    write_block(
        &bucket,
        series,
        &BlockWriterOptions {
            thanos: Some(ThanosMeta::new(labels, 0, "test")),
            ..Default::default()
        },
    )
    .expect("block");
    let args = StoreArgs {
        objstore_config_file: None,
        objstore_config: Some(format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        )),
        grpc_address: "127.0.0.1:0".parse().expect("addr"),
        http_address: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join(format!("cache-{r}")),
        sync_block_duration: Duration::from_secs(3600),
        ignore_deletion_marks_delay: Duration::from_secs(86_400),
        limit_series: 0,
        limit_samples: 0,
        series_max_concurrency: 20,
        touched_series_limit: 0,
        downloaded_bytes_limit: 0,
        selection: Default::default(),
        ignored: Default::default(),
        block_sync_concurrency: 2,
        tls: Default::default(),
    };
    let mut stop = stop;
    let (running, _) = start(&args, Metrics::new(), async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .expect("store");
    for _ in 0..200 {
        if running.store.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    running.grpc_addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_is_deduplicated_by_the_penalty_plugin() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let a = store_for(dir.path(), "A", stop_rx.clone()).await;
    let b = store_for(dir.path(), "B", stop_rx.clone()).await;
    let sources = [a, b]
        .into_iter()
        .map(|s| Source {
            spec: EndpointSpec::parse(&s).expect("spec"),
            strict: false,
            client: None,
        })
        .collect();
    let set = EndpointSet::new(
        Discovery::new(sources, vec![], None, None),
        EndpointSetOptions::default(),
    );
    set.refresh().await;
    assert_eq!(set.queryable().len(), 2);
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &Metrics::new());
    reg.apply(default_slots()).expect("policies");
    let q = Querier::new(
        set,
        reg,
        QuerierConfig {
            replica_labels: vec!["replica".into()],
            ..Default::default()
        },
    );
    let params = SelectParams {
        matchers: vec![Matcher::new(MatchOp::Eq, "__name__", "m").expect("m")],
        start: 0,
        end: 3_600_000,
        dedup: true,
        ..Default::default()
    };

    let r = q.select(params.clone()).await.expect("select");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.series.len(), 1);
    let s = &r.series[0];
    assert_eq!(
        s.labels.to_string(),
        r#"{__name__="m", cluster="a", job="x"}"#
    );
    // Hand-worked penalty run: A wins from t=0 (earliest); B is sought with
    // the initial 5000 ms and then 2 x 15 s penalties and never comes earlier
    // than A's next sample until A's gap. A's last sample before the gap is
    // 19m45s = 1_185_000; B's next sample after lastT+1+30_000 is 1_220_000,
    // earlier than A's next (30m), so B takes over, A gets a 70 s penalty and
    // then 30 s ones, and B (samples at 5 s offsets) stays ahead to the end.
    let want: Vec<i64> = replica("A")
        .iter()
        .map(|s| s.0)
        .filter(|&t| t <= 1_185_000)
        .chain(replica("B").iter().map(|s| s.0).filter(|&t| t >= 1_220_000))
        .collect();
    assert_eq!(s.timestamps, want);
    assert!(
        s.values
            .iter()
            .take_while(|_| true)
            .zip(&s.timestamps)
            .all(|(v, t)| if *t <= 1_185_000 {
                *v == 1.0
            } else {
                *v == 2.0
            })
    );

    // Chain dedup, chosen by name: the union of both replicas.
    let r = q
        .select(SelectParams {
            dedup_slot: Some("dedup-chain".into()),
            ..params.clone()
        })
        .await
        .expect("chain");
    assert_eq!(
        r.series[0].timestamps.len(),
        replica("A").len() + replica("B").len()
    );

    // dedup=false: both replicas, with their replica label.
    let r = q
        .select(SelectParams {
            dedup: false,
            ..params.clone()
        })
        .await
        .expect("no dedup");
    let names: Vec<String> = r
        .series
        .iter()
        .map(|s| s.labels.get("replica").unwrap_or("").to_string())
        .collect();
    assert_eq!(names, vec!["A", "B"]);
    assert_eq!(r.series[0].timestamps.len(), replica("A").len());
}
