//! The policy admin path's guarantees: concurrent uploads (and file reloads) land one after the other and none
//! is lost; an upload gets no capability grants unless it restates them; a digest pinned by the configuration
//! binds every upload to its slot.

use std::sync::Arc;

use sluice::metrics::Metrics;
use sluice::policy::config::Grants;
use sluice::policy::{PolicyEngine, PolicyKind, PolicyRegistry, builtin_module, sha256_hex};

fn registry(yaml: &str) -> (tempfile::TempDir, Arc<PolicyRegistry>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("policies.yml");
    std::fs::write(&file, yaml).expect("write policies.yml");
    let reg = PolicyRegistry::new(PolicyEngine::new(None).expect("engine"), &Metrics::new());
    reg.apply_file(&file).expect("initial set");
    (tmp, reg)
}

fn module(name: &str) -> (Vec<u8>, String) {
    let m = builtin_module(name).expect("builtin").to_vec();
    let d = sha256_hex(&m);
    (m, d)
}

/// Two uploads to two slots at the same time, ten times over, with a file reload racing them: they land one after
/// the other (distinct generations), and the published set is exactly what applying them in that order gives —
/// no upload that answered success is reverted by an operation that started from an older set.
#[test]
fn concurrent_uploads_all_land() {
    let (tmp, reg) = registry("slots:\n  dedup:\n    builtin: dedup-penalty\n");
    let file = tmp.path().join("policies.yml");
    let (chain, chain_sha) = module("dedup-chain");
    let (penalty, penalty_sha) = module("dedup-penalty");
    for round in 0..10 {
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let up = |slot: &'static str, m: Vec<u8>, sha: String| {
            let (reg, barrier) = (reg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                reg.put_module(slot, m, &sha, Some(PolicyKind::Dedup), None)
            })
        };
        let a = up("dedup", chain.clone(), chain_sha.clone());
        let b = up(
            if round % 2 == 0 { "dedup-b" } else { "dedup-c" },
            penalty.clone(),
            penalty_sha.clone(),
        );
        let reload = {
            let (reg, barrier, file) = (reg.clone(), barrier.clone(), file.clone());
            std::thread::spawn(move || {
                barrier.wait();
                reg.apply_file(&file)
            })
        };
        let ga = a.join().expect("thread").expect("upload a").generation;
        let gb = b.join().expect("thread").expect("upload b").generation;
        let gr = reload.join().expect("thread").expect("reload").generation;
        assert!(
            ga != gb && gb != gr && ga != gr,
            "round {round}: generations {ga} {gb} {gr}"
        );
        let set = reg.snapshot();
        let b_slot = if round % 2 == 0 { "dedup-b" } else { "dedup-c" };
        // The reload re-reads the file, whose `dedup` names the built-in penalty: an upload to `dedup` that
        // landed after it wins, one that landed before it is replaced by the file — in the order they landed.
        let dedup_sha = &set.slots["dedup"].plugin.sha256;
        if ga > gr {
            assert_eq!(
                dedup_sha, &chain_sha,
                "round {round}: the later upload to dedup was lost"
            );
        } else {
            assert_eq!(
                dedup_sha, &penalty_sha,
                "round {round}: the later file reload was lost"
            );
        }
        // The file does not name the uploaded slot: a reload after the upload removes it, one before keeps it.
        let want_b = (gb > gr).then(|| penalty_sha.clone());
        assert_eq!(
            set.slots.get(b_slot).map(|s| s.plugin.sha256.clone()),
            want_b,
            "round {round}: generations upload {gb}, reload {gr}: the set is not what they give in that order"
        );
    }
}

/// A slot configured with grants loses them when a module is uploaded without restating them, and keeps exactly
/// the restated ones when it does.
#[test]
fn uploads_get_no_grants_unless_restated() {
    let (_tmp, reg) = registry(
        "slots:\n  dedup:\n    builtin: dedup-penalty\n    grants: {clock: true, random: true}\n",
    );
    let set = reg.snapshot();
    assert!(
        set.slots["dedup"].plugin.grants.clock,
        "the configured grant"
    );
    let (chain, sha) = module("dedup-chain");
    let set = reg
        .put_module("dedup", chain.clone(), &sha, None, None)
        .expect("upload");
    assert_eq!(
        set.slots["dedup"].plugin.grants,
        Grants::default(),
        "grants inherited by an upload"
    );
    let restated = Grants {
        random: true,
        ..Default::default()
    };
    let set = reg
        .put_module("dedup", chain, &sha, None, Some(restated.clone()))
        .expect("upload with grants");
    assert_eq!(set.slots["dedup"].plugin.grants, restated);
}

/// A digest pinned in the configuration refuses an upload of another module, and accepts the pinned one.
#[test]
fn a_pinned_digest_binds_uploads() {
    let (penalty, penalty_sha) = module("dedup-penalty");
    let (chain, chain_sha) = module("dedup-chain");
    let (_tmp, reg) = registry(&format!(
        "slots:\n  dedup:\n    builtin: dedup-penalty\n    sha256: {penalty_sha}\n"
    ));
    let e = reg
        .put_module("dedup", chain, &chain_sha, None, None)
        .expect_err("upload of another module to a pinned slot");
    assert!(e.join(" ").contains("pins sha256"), "{e:?}");
    assert_eq!(
        reg.snapshot().slots["dedup"].plugin.sha256,
        penalty_sha,
        "the pinned module still serves"
    );
    reg.put_module("dedup", penalty, &penalty_sha, None, None)
        .expect("the pinned module itself may be uploaded");
}
