//! End-to-end tests of TLS: real `sluice store` and `sluice query` processes on 127.0.0.1 with certificates made by
//! rcgen, one CA per simulated cluster. Cross-cluster mutual TLS with per-endpoint client TLS and dedup across the
//! clusters, an observer querier reaching an observee querier over mutual TLS, each kind of rejected handshake
//! reported on both sides and on `/api/v1/stores`, certificate rotation under a query loop, and outside clients:
//! Python's grpcio and curl with client certificates (basic auth and the admin API's client-certificate identity).
//!
//! Needs `promtool` (`apt-get install prometheus`), `curl`, and Python with grpcio (`pip install -r
//! tests/requirements.txt`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sluice_e2e::bucket::{fs_objstore_yaml, put_block};
use sluice_e2e::certs::{Ca, Leaf, LeafFiles, Validity, write_atomic, write_bundle};
use sluice_e2e::fixture::{HaReplica, ha_openmetrics};
use sluice_e2e::model::{expected_store, label_value, without_labels};
use sluice_e2e::process::eventually;
use sluice_e2e::{
    Fixture, HttpsAccess, Labels, SeriesMap, SluiceProcess, SluiceQuery, SluiceStore,
};
use sluice_e2e::{labels, tls, tools};
use sluice_proto::thanos::info::InfoRequest;
use tempfile::TempDir;
use tokio::time::Instant;

const REPLICA: &str = "replica";
const RELOAD: &str = "--tls.reload-interval=200ms";
const FIXTURE_PREFIX: &str = "sluice-e2e-tls-";

// --- fixtures ---------------------------------------------------------------------------------------------------

/// The two replicas of an HA pair, made once per test process by promtool. Cluster A's store serves replica A,
/// cluster B's store replica B: the querier must reach both over mutual TLS to dedup them.
struct Fixtures {
    a: Fixture,
    b: Fixture,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(FIXTURE_PREFIX)
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("{FIXTURE_PREFIX}{}", std::process::id()));
        let make = |name: &str, r| {
            ha_openmetrics(r)
                .and_then(|om| Fixture::from_openmetrics(om, &dir.join(name)))
                .unwrap_or_else(|e| panic!("creating the promtool fixture {name} failed: {e:#}"))
        };
        Fixtures {
            a: make("a", HaReplica::A),
            b: make("b", HaReplica::B),
        }
    })
}

fn ext(replica: &str) -> Labels {
    labels(&[("cluster", "ha"), (REPLICA, replica)])
}

fn held(fx: &Fixture, ext: &Labels) -> SeriesMap {
    let served: Vec<_> = fx.blocks.iter().map(|b| b.served(ext)).collect();
    expected_store(&fx.dump, &served)
}

/// Label sets both replicas hold, with and without the replica label.
fn expected_sets() -> (Vec<Labels>, Vec<Labels>) {
    let f = fixtures();
    let mut all = held(&f.a, &ext("A"));
    all.extend(held(&f.b, &ext("B")));
    let raw: Vec<Labels> = all.keys().cloned().collect();
    let dedup: BTreeSet<Labels> = all.keys().map(|l| without_labels(l, &[REPLICA])).collect();
    (dedup.into_iter().collect(), raw)
}

/// A filesystem bucket holding `fx`'s blocks with external labels `ext`.
fn bucket(fx: &Fixture, ext: &Labels) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("sluice-bucket-")
        .tempdir()?;
    for b in &fx.blocks {
        put_block(dir.path(), b, Some(ext))?;
    }
    Ok(dir)
}

/// Where the certificates of one test live.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Result<Pki> {
        Ok(Pki {
            dir: tempfile::Builder::new().prefix("sluice-pki-").tempdir()?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `cas` as the bundle `name` and returns its path as a string.
    fn bundle(&self, name: &str, cas: &[&Ca]) -> Result<String> {
        let p = self.path(name);
        write_bundle(&p, cas)?;
        Ok(p.display().to_string())
    }

    fn leaf(&self, name: &str, leaf: &Leaf) -> Result<LeafFiles> {
        LeafFiles::write(self.dir.path(), name, leaf)
    }
}

/// A server certificate for `name`, valid for `name` and 127.0.0.1.
fn server_leaf(ca: &Ca, name: &str) -> Result<Leaf> {
    ca.leaf(name, &[name, "127.0.0.1"], Validity::Valid)
}

/// The gRPC server flags for mutual TLS.
fn grpc_server_flags(cert: &LeafFiles, client_ca: &str) -> Vec<String> {
    vec![
        format!("--grpc-server-tls-cert={}", cert.cert_str()),
        format!("--grpc-server-tls-key={}", cert.key_str()),
        format!("--grpc-server-tls-client-ca={client_ca}"),
        RELOAD.to_owned(),
    ]
}

/// A `sluice store` with mutual TLS on gRPC.
async fn mtls_store(bucket: &Path, cert: &LeafFiles, client_ca: &str) -> Result<SluiceStore> {
    let flags = grpc_server_flags(cert, client_ca);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    SluiceStore::start_ready(&fs_objstore_yaml(bucket), &flags).await
}

/// One `endpoints:` entry of an sd-config with a `tls_config`.
fn sd_entry(address: &str, tls: &[(&str, &str)]) -> String {
    let mut s = format!("  - address: {address}\n    client_config:\n      tls_config:\n");
    for (k, v) in tls {
        s.push_str(&format!("        {k}: {v}\n"));
    }
    s
}

fn sd_config(entries: &[String]) -> String {
    format!("endpoints:\n{}", entries.concat())
}

/// `/api/v1/series` over everything (dedup per `dedup`).
async fn series_sets(q: &SluiceQuery, dedup: bool) -> Result<Vec<Labels>> {
    let mut p = vec![("match[]", r#"{__name__=~".+"}"#)];
    if !dedup {
        p.push(("dedup", "false"));
    }
    let r = q.api_get("/api/v1/series", &p).await?;
    ensure!(
        r.warnings().is_empty(),
        "series warnings: {:?}",
        r.warnings()
    );
    r.label_sets()
}

/// Waits until the querier lists every address in `healthy` as healthy.
async fn wait_healthy(q: &SluiceQuery, healthy: &[String], timeout: Duration) -> Result<()> {
    eventually(
        timeout,
        &format!("endpoints {healthy:?} healthy"),
        || async {
            let s = q.stores().await?;
            let ok = healthy
                .iter()
                .all(|h| s.iter().any(|e| &e.name == h && e.healthy));
            Ok((ok.then_some(()), format!("{s:?}")))
        },
    )
    .await
}

/// How many lines of the process's logs contain every one of `needles`.
fn log_count(p: &SluiceProcess, needles: &[&str]) -> usize {
    p.logs()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

async fn wait_log(p: &SluiceProcess, needles: &[&str], at_least: usize, what: &str) -> Result<()> {
    eventually(Duration::from_secs(20), what, || async {
        let n = log_count(p, needles);
        Ok((
            (n >= at_least).then_some(()),
            format!("{n} lines with {needles:?}"),
        ))
    })
    .await
}

// --- 1. cross-cluster mutual TLS, dedup, observer → observee ---------------------------------------------------

/// Clusters A and B each run a store behind mutual TLS with their own CA; the observee querier reaches both with
/// per-endpoint TLS from its sd-config file and dedups across them; an observer querier reaches the observee's
/// StoreAPI over mutual TLS with the global `--grpc-client-tls-*` flags and sees the same deduplicated view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_cluster_mtls_dedup_and_observer() -> Result<()> {
    let f = fixtures();
    let pki = Pki::new()?;
    let (ca_a, ca_b, ca_obs) = (
        Ca::new("cluster-a CA")?,
        Ca::new("cluster-b CA")?,
        Ca::new("observer CA")?,
    );
    let ca_a_file = pki.bundle("ca-a.crt", &[&ca_a])?;
    let ca_b_file = pki.bundle("ca-b.crt", &[&ca_b])?;
    let ca_obs_file = pki.bundle("ca-obs.crt", &[&ca_obs])?;
    let store_a_cert = pki.leaf("store-a", &server_leaf(&ca_a, "store.cluster-a")?)?;
    let store_b_cert = pki.leaf("store-b", &server_leaf(&ca_b, "store.cluster-b")?)?;
    let q_a = pki.leaf(
        "querier-a",
        &ca_a.leaf(
            "querier",
            &["URI:spiffe://observee/querier"],
            Validity::Valid,
        )?,
    )?;
    let q_b = pki.leaf(
        "querier-b",
        &ca_b.leaf(
            "querier",
            &["URI:spiffe://observee/querier"],
            Validity::Valid,
        )?,
    )?;
    let observee_leaf = server_leaf(&ca_a, "query.cluster-a")?;
    let observee_cert = pki.leaf("observee", &observee_leaf)?;
    let observer_client = pki.leaf(
        "observer",
        &ca_obs.leaf(
            "observer",
            &["URI:spiffe://observer/querier"],
            Validity::Valid,
        )?,
    )?;

    let (bucket_a, bucket_b) = (bucket(&f.a, &ext("A"))?, bucket(&f.b, &ext("B"))?);
    let (store_a, store_b) = tokio::try_join!(
        mtls_store(bucket_a.path(), &store_a_cert, &ca_a_file),
        mtls_store(bucket_b.path(), &store_b_cert, &ca_b_file),
    )?;
    let (addr_a, addr_b) = (store_a.grpc.to_string(), store_b.grpc.to_string());

    // A plaintext client gets nothing out of a TLS store.
    let plain = store_a.info_client().await;
    let plain_ok = match plain {
        Ok(mut c) => c.info(InfoRequest {}).await.is_ok(),
        Err(_) => false,
    };
    ensure!(
        !plain_ok,
        "a plaintext Info call to the mTLS store succeeded"
    );

    let sd = pki.path("observee-sd.yml");
    write_atomic(
        &sd,
        &sd_config(&[
            sd_entry(
                &addr_a,
                &[
                    ("ca_file", &ca_a_file),
                    ("cert_file", &q_a.cert_str()),
                    ("key_file", &q_a.key_str()),
                    ("server_name", "store.cluster-a"),
                ],
            ),
            sd_entry(
                &addr_b,
                &[
                    ("ca_file", &ca_b_file),
                    ("cert_file", &q_b.cert_str()),
                    ("key_file", &q_b.key_str()),
                    ("server_name", "store.cluster-b"),
                    ("min_version", "TLS13"),
                ],
            ),
        ]),
    )?;
    let mut args = vec![
        format!("--endpoint.sd-config-file={}", sd.display()),
        format!("--query.replica-label={REPLICA}"),
        "--endpoint.info-timeout=1s".to_owned(),
    ];
    args.extend(grpc_server_flags(&observee_cert, &ca_obs_file));
    let observee = SluiceQuery::start(&args).await?;
    wait_healthy(
        &observee,
        &[addr_a.clone(), addr_b.clone()],
        Duration::from_secs(30),
    )
    .await?;

    let (dedup, raw) = expected_sets();
    ensure!(
        raw.len() == 2 * dedup.len() && !dedup.is_empty(),
        "fixture shape: {} raw, {} deduplicated",
        raw.len(),
        dedup.len()
    );
    let got = series_sets(&observee, true).await?;
    ensure!(
        got == dedup,
        "observee dedup:\n got {got:?}\nwant {dedup:?}"
    );
    let got = series_sets(&observee, false).await?;
    ensure!(
        got == raw,
        "observee without dedup:\n got {got:?}\nwant {raw:?}"
    );
    let replicas: BTreeSet<&str> = got.iter().map(|l| label_value(l, REPLICA)).collect();
    ensure!(
        replicas == BTreeSet::from(["A", "B"]),
        "both clusters answered: {replicas:?}"
    );

    // The observer reaches the observee's StoreAPI with the global client flags (mutual TLS, observer CA).
    let observer = SluiceQuery::start(&[
        format!("--endpoint={}", observee.grpc),
        format!("--query.replica-label={REPLICA}"),
        "--endpoint.info-timeout=1s".to_owned(),
        "--grpc-client-tls-secure".to_owned(),
        format!("--grpc-client-tls-ca={ca_a_file}"),
        format!("--grpc-client-tls-cert={}", observer_client.cert_str()),
        format!("--grpc-client-tls-key={}", observer_client.key_str()),
        "--grpc-client-server-name=query.cluster-a".to_owned(),
        RELOAD.to_owned(),
    ])
    .await?;
    wait_healthy(
        &observer,
        &[observee.grpc.to_string()],
        Duration::from_secs(30),
    )
    .await?;
    let got = series_sets(&observer, true).await?;
    ensure!(
        got == dedup,
        "observer dedup:\n got {got:?}\nwant {dedup:?}"
    );

    // The test's own mTLS client (observer CA) reads the observee's StoreAPI; its certificate is from cluster A.
    let cfg = tls::client_config(
        &ca_a.pem(),
        Some((
            &std::fs::read_to_string(&observer_client.cert)?,
            &std::fs::read_to_string(&observer_client.key)?,
        )),
        false,
    )?;
    let presented = tls::presented_cert(observee.grpc, "query.cluster-a", cfg.clone()).await?;
    ensure!(
        presented == observee_leaf.der,
        "the observee presents another certificate"
    );
    let mut info = tls::info_client(observee.grpc, "query.cluster-a", cfg).await?;
    let i = info.info(InfoRequest {}).await?.into_inner();
    ensure!(
        i.store.is_some() && !i.label_sets.is_empty(),
        "observee Info over mTLS: {i:?}"
    );
    println!(
        "cross-cluster: {} deduplicated series from 2 clusters over mTLS; observer sees the same",
        dedup.len()
    );
    Ok(())
}

// --- 2. rejections ----------------------------------------------------------------------------------------------

/// A rejection case: name, `tls_config` settings, expected in the querier's `lastError`, expected in the store's log.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, &'a str);

/// Each way a client can be turned away: no client certificate, a certificate from the other cluster's CA, an
/// expired certificate, a wrong server name, a TLS 1.2-only client against the default minimum of 1.3. Each is a
/// separate store (same CA and settings), so each endpoint's reason on `/api/v1/stores` and each store's log line
/// belong to one case; a correctly configured endpoint beside them stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_handshakes_are_reported_on_both_sides() -> Result<()> {
    let f = fixtures();
    let pki = Pki::new()?;
    let (ca_a, ca_b) = (Ca::new("cluster-a CA")?, Ca::new("cluster-b CA")?);
    let ca_a_file = pki.bundle("ca-a.crt", &[&ca_a])?;
    let store_cert = pki.leaf("store", &server_leaf(&ca_a, "store.cluster-a")?)?;
    let good = pki.leaf("good", &ca_a.leaf("querier", &[], Validity::Valid)?)?;
    let other = pki.leaf("other", &ca_b.leaf("querier", &[], Validity::Valid)?)?;
    let expired = pki.leaf("expired", &ca_a.leaf("querier", &[], Validity::Expired)?)?;
    let b = bucket(&f.a, &ext("A"))?;

    let cases: Vec<Case> = vec![
        (
            "good",
            vec![("cert_file", good.cert_str()), ("key_file", good.key_str())],
            "",
            "",
        ),
        (
            "no client certificate",
            vec![],
            "CertificateRequired",
            "peer sent no certificates",
        ),
        (
            "certificate from the other CA",
            vec![
                ("cert_file", other.cert_str()),
                ("key_file", other.key_str()),
            ],
            "UnknownCA",
            "UnknownIssuer",
        ),
        (
            "expired certificate",
            vec![
                ("cert_file", expired.cert_str()),
                ("key_file", expired.key_str()),
            ],
            "CertificateExpired",
            "xpired",
        ),
        (
            "wrong server name",
            vec![
                ("cert_file", good.cert_str()),
                ("key_file", good.key_str()),
                ("server_name", "wrong.cluster-a".into()),
            ],
            "valid for name",
            "BadCertificate",
        ),
        (
            "TLS 1.2-only client",
            vec![
                ("cert_file", good.cert_str()),
                ("key_file", good.key_str()),
                ("max_version", "TLS12".into()),
            ],
            "ProtocolVersion",
            "incompatible",
        ),
    ];
    let mut stores = Vec::new();
    for _ in &cases {
        stores.push(mtls_store(b.path(), &store_cert, &ca_a_file));
    }
    let stores = futures::future::try_join_all(stores).await?;
    let mut entries = Vec::new();
    for ((_, tls, _, _), s) in cases.iter().zip(&stores) {
        let mut t: Vec<(&str, &str)> =
            vec![("ca_file", &ca_a_file), ("server_name", "store.cluster-a")];
        // Duplicate YAML keys are an error: a case's setting replaces the default.
        for (k, v) in tls {
            t.retain(|(k2, _)| k2 != k);
            t.push((k, v.as_str()));
        }
        entries.push(sd_entry(&s.grpc.to_string(), &t));
    }
    let sd = pki.path("sd.yml");
    write_atomic(&sd, &sd_config(&entries))?;
    let q = SluiceQuery::start(&[
        format!("--endpoint.sd-config-file={}", sd.display()),
        "--endpoint.info-timeout=1s".to_owned(),
    ])
    .await?;

    let addr = |i: usize| stores[i].grpc.to_string();
    let reasons = eventually(
        Duration::from_secs(30),
        "the good endpoint healthy, every other one unhealthy with its reason",
        || async {
            let s = q.stores().await?;
            let mut reasons = Vec::new();
            let mut ok = true;
            for (i, (name, _, want, _)) in cases.iter().enumerate() {
                let e = s.iter().find(|e| e.name == addr(i));
                match e {
                    Some(e) if want.is_empty() => ok &= e.healthy,
                    Some(e) => {
                        let err = e.last_error.clone().unwrap_or_default();
                        ok &= !e.healthy && err.contains(want);
                        reasons.push((*name, err));
                    }
                    None => ok = false,
                }
            }
            Ok((ok.then(|| reasons.clone()), format!("{s:#?}")))
        },
    )
    .await?;
    for (name, r) in &reasons {
        println!("rejected, {name}: querier says: {r}");
    }
    // Each store logged why it refused (the wrong server name is refused by the client, which tells the store).
    for (i, (name, _, _, want)) in cases.iter().enumerate() {
        if want.is_empty() {
            continue;
        }
        wait_log(
            &stores[i],
            &["TLS handshake failed", want],
            1,
            &format!("store log for {name}"),
        )
        .await?;
        let line = stores[i]
            .logs()
            .lines()
            .find(|l| l.contains("TLS handshake failed") && l.contains(want))
            .unwrap_or_default()
            .to_owned();
        println!("rejected, {name}: store says: {}", line.trim());
    }
    // The querier serves the good endpoint's data meanwhile.
    let got = series_sets(&q, false).await?;
    ensure!(!got.is_empty(), "no series from the good endpoint");
    Ok(())
}

// --- 3. rotation ------------------------------------------------------------------------------------------------

/// Every certificate is replaced on disk while queries run: first the trust bundles gain the new CA, then every
/// leaf (store server, querier client, querier server, test client) is replaced by one from the new CA — with a
/// broken file written in between — and finally the old CA leaves the bundles. No query fails, fresh handshakes
/// present the new certificates, and a store that trusts only the new CA is reachable from the querier afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_failed_queries() -> Result<()> {
    let f = fixtures();
    let pki = Pki::new()?;
    let (ca1, ca2) = (Ca::new("CA 2025")?, Ca::new("CA 2026")?);
    let store_trust = pki.bundle("store-trust.crt", &[&ca1])?;
    let querier_trust = pki.bundle("querier-trust.crt", &[&ca1])?;
    let querier_clients = pki.bundle("querier-clients.crt", &[&ca1])?;
    let store_cert = pki.leaf("store", &server_leaf(&ca1, "store.cluster-a")?)?;
    let q_client = pki.leaf(
        "querier-client",
        &ca1.leaf("querier", &[], Validity::Valid)?,
    )?;
    let q_server = pki.leaf("querier-server", &server_leaf(&ca1, "query.cluster-a")?)?;
    let test_old = ca1.leaf("tester", &[], Validity::Valid)?;
    let test_new = ca2.leaf("tester", &[], Validity::Valid)?;
    let both = format!("{}{}", ca1.pem(), ca2.pem());

    let b = bucket(&f.a, &ext("A"))?;
    let store = mtls_store(b.path(), &store_cert, &store_trust).await?;
    let sd = pki.path("sd.yml");
    let entry = |addr: &str| {
        sd_entry(
            addr,
            &[
                ("ca_file", &querier_trust),
                ("cert_file", &q_client.cert_str()),
                ("key_file", &q_client.key_str()),
                ("server_name", "store.cluster-a"),
            ],
        )
    };
    write_atomic(&sd, &sd_config(&[entry(&store.grpc.to_string())]))?;
    let mut args = vec![
        format!("--endpoint.sd-config-file={}", sd.display()),
        "--endpoint.info-timeout=1s".to_owned(),
    ];
    args.extend(grpc_server_flags(&q_server, &querier_clients));
    let q = SluiceQuery::start(&args).await?;
    wait_healthy(&q, &[store.grpc.to_string()], Duration::from_secs(30)).await?;
    let want = series_sets(&q, false).await?;
    ensure!(!want.is_empty(), "no series before rotation");

    let use_new_client = std::sync::atomic::AtomicBool::new(false);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let client_cfg = |new: bool| {
        let l = if new { &test_new } else { &test_old };
        tls::client_config(&both, Some((&l.cert_pem, &l.key_pem)), false)
    };

    // The query loop: each round a series query through the querier (its pooled mTLS connection to the store)
    // and a fresh mTLS handshake with the querier's StoreAPI plus an Info call.
    let query_loop = async {
        let (mut rounds, mut failures) = (0u32, Vec::<String>::new());
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            rounds += 1;
            match series_sets(&q, false).await {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "round {rounds}: {} series, want {}",
                    got.len(),
                    want.len()
                )),
                Err(e) => failures.push(format!("round {rounds}: series: {e:#}")),
            }
            let new = use_new_client.load(std::sync::atomic::Ordering::SeqCst);
            let r = async {
                let mut c = tls::info_client(q.grpc, "query.cluster-a", client_cfg(new)?).await?;
                c.info(InfoRequest {}).await?;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = r {
                failures.push(format!(
                    "round {rounds}: Info over a fresh mTLS connection: {e:#}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (rounds, failures)
    };

    let rotate = async {
        let r = async {
            let reloads =
                |p: &SluiceProcess, what: &str| log_count(p, &["reloaded TLS material", what]);
            let (s0, qc0, qs0) = (
                reloads(&store, "gRPC server"),
                reloads(&q, "gRPC client"),
                reloads(&q, "gRPC server"),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            // 1. Trust both CAs everywhere.
            write_bundle(Path::new(&store_trust), &[&ca1, &ca2])?;
            write_bundle(Path::new(&querier_trust), &[&ca1, &ca2])?;
            write_bundle(Path::new(&querier_clients), &[&ca1, &ca2])?;
            wait_log(
                &store,
                &["reloaded TLS material", "gRPC server"],
                s0 + 1,
                "store trusts both CAs",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC client"],
                qc0 + 1,
                "querier client trusts both",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC server"],
                qs0 + 1,
                "querier server trusts both",
            )
            .await?;
            // A broken certificate file is refused, logged, and the old one keeps serving.
            write_atomic(
                &store_cert.cert,
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            )?;
            wait_log(
                &store,
                &["unusable", "keeping the current certificates"],
                1,
                "store refuses a broken certificate",
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            // 2. New leaves everywhere, from the new CA.
            let (s1, qc1, qs1) = (
                reloads(&store, "gRPC server"),
                reloads(&q, "gRPC client"),
                reloads(&q, "gRPC server"),
            );
            let store_new = server_leaf(&ca2, "store.cluster-a")?;
            let q_server_new = server_leaf(&ca2, "query.cluster-a")?;
            store_cert.replace(&store_new)?;
            q_client.replace(&ca2.leaf("querier", &[], Validity::Valid)?)?;
            q_server.replace(&q_server_new)?;
            use_new_client.store(true, std::sync::atomic::Ordering::SeqCst);
            wait_log(
                &store,
                &["reloaded TLS material", "gRPC server"],
                s1 + 1,
                "store has its new certificate",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC client"],
                qc1 + 1,
                "querier has its new client certificate",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC server"],
                qs1 + 1,
                "querier has its new server certificate",
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            // 3. Drop the old CA.
            let (s2, qc2, qs2) = (
                reloads(&store, "gRPC server"),
                reloads(&q, "gRPC client"),
                reloads(&q, "gRPC server"),
            );
            write_bundle(Path::new(&store_trust), &[&ca2])?;
            write_bundle(Path::new(&querier_trust), &[&ca2])?;
            write_bundle(Path::new(&querier_clients), &[&ca2])?;
            wait_log(
                &store,
                &["reloaded TLS material", "gRPC server"],
                s2 + 1,
                "store trusts the new CA only",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC client"],
                qc2 + 1,
                "querier client trusts the new CA only",
            )
            .await?;
            wait_log(
                &q,
                &["reloaded TLS material", "gRPC server"],
                qs2 + 1,
                "querier server trusts the new CA only",
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            anyhow::Ok((store_new, q_server_new))
        }
        .await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let ((rounds, failures), rotated) = tokio::join!(query_loop, rotate);
    let (store_new, q_server_new) = rotated?;
    ensure!(
        failures.is_empty(),
        "{} of {rounds} rounds failed during rotation:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ensure!(
        rounds >= 20,
        "only {rounds} query rounds ran during rotation"
    );

    // Fresh handshakes present the new certificates.
    let cfg = tls::client_config(
        &ca2.pem(),
        Some((&test_new.cert_pem, &test_new.key_pem)),
        false,
    )?;
    let got = tls::presented_cert(store.grpc, "store.cluster-a", cfg.clone()).await?;
    ensure!(
        got == store_new.der,
        "the store still presents its old certificate"
    );
    let got = tls::presented_cert(q.grpc, "query.cluster-a", cfg.clone()).await?;
    ensure!(
        got == q_server_new.der,
        "the querier still presents its old certificate"
    );
    // The old test client certificate is refused now.
    let old = async {
        let mut c = tls::info_client(
            q.grpc,
            "query.cluster-a",
            tls::client_config(&both, Some((&test_old.cert_pem, &test_old.key_pem)), false)?,
        )
        .await?;
        c.info(InfoRequest {}).await?;
        anyhow::Ok(())
    }
    .await;
    ensure!(
        old.is_err(),
        "the querier still accepts a client certificate of the dropped CA"
    );

    // The querier's client side uses the new material: a store that knows only the new CA is reachable.
    let store2_cert = pki.leaf("store2", &server_leaf(&ca2, "store.cluster-a")?)?;
    let store2_trust = pki.bundle("store2-trust.crt", &[&ca2])?;
    let b2 = bucket(&f.b, &ext("B"))?;
    let store2 = mtls_store(b2.path(), &store2_cert, &store2_trust).await?;
    write_atomic(
        &sd,
        &sd_config(&[
            entry(&store.grpc.to_string()),
            entry(&store2.grpc.to_string()),
        ]),
    )?;
    wait_healthy(
        &q,
        &[store.grpc.to_string(), store2.grpc.to_string()],
        Duration::from_secs(30),
    )
    .await?;
    println!(
        "rotation: {rounds} query rounds (each with a fresh mTLS handshake), 0 failed; new certificates presented; \
         a new-CA-only store reachable"
    );
    Ok(())
}

// --- 4. outside clients -----------------------------------------------------------------------------------------

/// Python's grpcio calls `thanos.info.Info/Info` on a store behind mutual TLS with a hand-encoded empty request
/// (no generated code); without a client certificate it is refused.
const GRPCIO_INFO: &str = r#"
import sys, grpc
ca, cert, key, addr, name = sys.argv[1:6]
read = lambda p: open(p, 'rb').read() if p != '-' else None
creds = grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
ch = grpc.secure_channel(addr, creds, options=[('grpc.ssl_target_name_override', name)])
info = ch.unary_unary('/thanos.info.Info/Info')
try:
    resp = info(b'', timeout=15)
except grpc.RpcError as e:
    print('ERROR', e.code().name, e.details())
    sys.exit(3)
print('OK', len(resp), resp.hex())
"#;

fn grpcio_info(ca: &str, cert: &str, key: &str, addr: &str, name: &str) -> Result<(bool, String)> {
    let py = tools::check_grpcio()?;
    let out = Command::new(py)
        .args(["-c", GRPCIO_INFO, ca, cert, key, addr, name])
        .output()
        .context("run python grpcio")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Runs curl; returns (exit success, HTTP status or 0, body/stderr).
fn curl(args: &[&str], url: &str) -> Result<(bool, u16, String)> {
    let out = Command::new(tools::curl()?)
        .args(["-sS", "--max-time", "15", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .context("run curl")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok((
        out.status.success(),
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_clients_grpcio_and_curl_with_client_certificates() -> Result<()> {
    let f = fixtures();
    let pki = Pki::new()?;
    let (ca_a, ca_b, ca_ops) = (
        Ca::new("cluster-a CA")?,
        Ca::new("cluster-b CA")?,
        Ca::new("ops CA")?,
    );
    let ca_a_file = pki.bundle("ca-a.crt", &[&ca_a])?;
    pki.bundle("ca-ops.crt", &[&ca_ops])?;
    let store_cert = pki.leaf("store", &server_leaf(&ca_a, "store.cluster-a")?)?;
    let client = pki.leaf("client", &ca_a.leaf("grafana", &[], Validity::Valid)?)?;
    let stranger = pki.leaf("stranger", &ca_b.leaf("grafana", &[], Validity::Valid)?)?;
    let admin = pki.leaf(
        "admin",
        &ca_ops.leaf("sluice-admin", &["URI:spiffe://ops/admin"], Validity::Valid)?,
    )?;
    let viewer = pki.leaf(
        "viewer",
        &ca_ops.leaf("viewer", &["URI:spiffe://ops/viewer"], Validity::Valid)?,
    )?;
    let bcrypt_hash = bcrypt::hash("wonderland", 4)?;
    let web_store = pki.path("web-store.yml");
    std::fs::write(
        &web_store,
        format!(
            "tls_server_config:\n  cert_file: store.crt\n  key_file: store.key\n  client_ca_file: ca-a.crt\n  \
             client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  alice: {bcrypt_hash}\n"
        ),
    )?;
    let b = bucket(&f.a, &ext("A"))?;
    let mut flags = grpc_server_flags(&store_cert, &ca_a_file);
    flags.push(format!("--http.config={}", web_store.display()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let client_pem = format!(
        "{}{}",
        std::fs::read_to_string(&client.cert)?,
        std::fs::read_to_string(&client.key)?
    );
    let mut store = SluiceStore::start(&fs_objstore_yaml(b.path()), &flags)?;
    store.use_https(&HttpsAccess {
        ca_pem: ca_a.pem(),
        identity_pem: Some(client_pem),
    })?;
    // /-/ready needs basic auth too (as in Prometheus): wait with curl.
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", store.http.port());
    let with_cert = [
        "--cacert",
        &ca_a_file,
        "--cert",
        &client.cert_str(),
        "--key",
        &client.key_str(),
    ];
    let ready = eventually(
        Duration::from_secs(60),
        "store ready over HTTPS",
        || async {
            let mut a: Vec<&str> = with_cert.to_vec();
            a.extend(["-u", "alice:wonderland"]);
            let r = curl(&a, &url("/-/ready"))?;
            Ok(((r.1 == 200).then_some(()), format!("{r:?}")))
        },
    )
    .await;
    ready?;

    // grpcio: Info with a client certificate answers; the response is a thanos.info.InfoResponse naming "store".
    let addr = store.grpc.to_string();
    let (ok, out) = grpcio_info(
        &ca_a_file,
        &client.cert_str(),
        &client.key_str(),
        &addr,
        "store.cluster-a",
    )?;
    ensure!(
        ok && out.starts_with("OK"),
        "grpcio Info with a client certificate: {out}"
    );
    let hex = out.split_whitespace().nth(2).unwrap_or_default();
    ensure!(
        hex.contains(
            &"store"
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        "grpcio Info response does not name the store component: {out}"
    );
    println!("grpcio with client certificate: {}", out.trim());
    let (ok, out) = grpcio_info(&ca_a_file, "-", "-", &addr, "store.cluster-a")?;
    ensure!(
        !ok && out.contains("ERROR"),
        "grpcio Info without a client certificate succeeded: {out}"
    );
    println!("grpcio without client certificate: {}", out.trim());
    let (ok, out) = grpcio_info(
        &ca_a_file,
        &stranger.cert_str(),
        &stranger.key_str(),
        &addr,
        "store.cluster-a",
    )?;
    ensure!(
        !ok,
        "grpcio Info with the other CA's certificate succeeded: {out}"
    );

    // curl against the store's HTTP: client certificate and basic auth both required.
    let mut a: Vec<&str> = with_cert.to_vec();
    a.extend(["-u", "alice:wonderland"]);
    let (ok, code, body) = curl(&a, &url("/metrics"))?;
    ensure!(
        ok && code == 200 && body.contains("# EOF"),
        "curl --cert -u /metrics: {code} {body}"
    );
    let (_, code, _) = curl(&with_cert, &url("/metrics"))?;
    ensure!(code == 401, "curl --cert without basic auth: HTTP {code}");
    let mut a: Vec<&str> = with_cert.to_vec();
    a.extend(["-u", "alice:wrong"]);
    let (_, code, _) = curl(&a, &url("/metrics"))?;
    ensure!(code == 401, "curl with a wrong password: HTTP {code}");
    let (ok, _, err) = curl(
        &["--cacert", &ca_a_file, "-u", "alice:wonderland"],
        &url("/metrics"),
    )?;
    ensure!(!ok, "curl without a client certificate got through: {err}");
    println!("curl without client certificate: {}", err.trim());
    wait_log(
        &store,
        &["HTTP server", "TLS handshake failed"],
        1,
        "store logs the refused HTTPS client",
    )
    .await?;

    // The querier's HTTP API over TLS; client certificates optional but verified; the admin API accepts the
    // bearer token or a certificate named on the allow list.
    pki.leaf("query", &server_leaf(&ca_a, "query.cluster-a")?)?;
    let web_q = pki.path("web-query.yml");
    std::fs::write(
        &web_q,
        "tls_server_config:\n  cert_file: query.crt\n  key_file: query.key\n  client_ca_file: ca-ops.crt\n  \
         client_auth_type: VerifyClientCertIfGiven\n  min_version: TLS13\n",
    )?;
    let token_file = pki.path("admin-token");
    std::fs::write(&token_file, "t0ken\n")?;
    let q = SluiceQuery::start_https(
        &[
            format!("--http.config={}", web_q.display()),
            "--policies.admin-client-identity=spiffe://ops/admin".to_owned(),
            format!("--policies.admin-token-file={}", token_file.display()),
            format!("--endpoint={addr}"),
            "--grpc-client-tls-secure".to_owned(),
            format!("--grpc-client-tls-ca={ca_a_file}"),
            format!("--grpc-client-tls-cert={}", client.cert_str()),
            format!("--grpc-client-tls-key={}", client.key_str()),
            "--grpc-client-server-name=store.cluster-a".to_owned(),
            "--endpoint.info-timeout=1s".to_owned(),
        ],
        &HttpsAccess {
            ca_pem: ca_a.pem(),
            identity_pem: None,
        },
    )
    .await?;
    wait_healthy(&q, std::slice::from_ref(&addr), Duration::from_secs(30)).await?;
    let qurl = |p: &str| format!("https://127.0.0.1:{}{p}", q.http.port());
    let cert_args = |l: &LeafFiles| {
        vec![
            "--cacert".to_owned(),
            ca_a_file.clone(),
            "--cert".to_owned(),
            l.cert_str(),
            "--key".to_owned(),
            l.key_str(),
        ]
    };
    let run = |args: Vec<String>, path: &str| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&a, &qurl(path))
    };
    let (ok, code, body) = run(cert_args(&admin), "/api/v1/policies")?;
    ensure!(
        ok && code == 200 && body.contains("success"),
        "admin certificate: HTTP {code} {body}"
    );
    let (_, code, body) = run(cert_args(&viewer), "/api/v1/policies")?;
    ensure!(
        code == 401 && body.contains("not on the allow list"),
        "viewer certificate: HTTP {code} {body}"
    );
    let (_, code, _) = run(
        vec!["--cacert".into(), ca_a_file.clone()],
        "/api/v1/policies",
    )?;
    ensure!(code == 401, "no certificate, no token: HTTP {code}");
    let (ok, code, _) = run(
        vec![
            "--cacert".into(),
            ca_a_file.clone(),
            "-H".into(),
            "Authorization: Bearer t0ken".into(),
        ],
        "/api/v1/policies",
    )?;
    ensure!(
        ok && code == 200,
        "bearer token without certificate: HTTP {code}"
    );
    let (ok, code, body) = run(vec!["--cacert".into(), ca_a_file.clone()], "/api/v1/stores")?;
    ensure!(
        ok && code == 200 && body.contains(&addr),
        "curl /api/v1/stores: HTTP {code} {body}"
    );
    let (ok, _, err) = run(cert_args(&stranger), "/api/v1/stores")?;
    ensure!(
        !ok,
        "a certificate of an unknown CA got through VerifyClientCertIfGiven: {err}"
    );
    let (ok, _, err) = run(
        vec![
            "--cacert".into(),
            ca_a_file.clone(),
            "--tls-max".into(),
            "1.2".into(),
        ],
        "/api/v1/stores",
    )?;
    ensure!(
        !ok,
        "a TLS 1.2-only curl got through min_version TLS13: {err}"
    );
    wait_log(
        &q,
        &["policy admin request refused", "viewer"],
        1,
        "querier logs the refused admin request",
    )
    .await?;
    println!(
        "curl: admin certificate 200, viewer certificate 401, bearer token 200, unknown CA refused in the handshake"
    );

    // An allow list without client certificate verification is a startup error.
    let out = Command::new(tools::sluice_bin()?)
        .args([
            "query",
            "--grpc-address=127.0.0.1:0",
            "--http-address=127.0.0.1:0",
            "--policies.admin-client-identity=spiffe://ops/admin",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("--policies.admin-client-identity needs --http.config"),
        "querier started with an unusable admin identity list: {err}"
    );
    Ok(())
}
