//! What the platform's identity and policy checks cost per call, each printed as a
//! ratio to a baseline measured in the same run (never against a fixed threshold):
//!
//! 1. a named token (`Authority::authenticate`: SHA-256, then an indexed SQLite read
//!    of a file database), against what the agent's API did before identities: hash
//!    the presented and the configured token and compare the digests;
//! 2. a job credential the first time (Ed25519 verification, JSON claims) and again
//!    (the verified-credential cache, the lifetime check, the ledger read), against
//!    the Ed25519 verification alone;
//! 3. a policy decision (`Authority::authorize`), against cloning its target.
//!
//! Run: `cargo bench -p slipway-platform --bench authority`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slipway_platform::credential::{mint, JobClaims, JobKind};
use slipway_platform::{Action, Authority, Mode, Policy, Role, SqliteStore, Target};
use subtle::ConstantTimeEq;

/// The median time per call of `f` over several rounds of `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn report(what: &str, measured: Duration, baseline_what: &str, baseline: Duration) {
    let ratio = measured.as_secs_f64() / baseline.as_secs_f64().max(1e-12);
    println!(
        "{what:<44} {:>9.2} µs/call   {baseline_what:<36} {:>9.2} µs/call   ratio {ratio:>6.1}x",
        measured.as_secs_f64() * 1e6,
        baseline.as_secs_f64() * 1e6,
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("platform.db")).expect("store");
    let engine = slipway_provenance::SigningKey::from_bytes(&[5; 32]);
    let authority = Authority::new(store, Policy::default(), Some(engine.verifying_key()));
    // A realistic table: a hundred identities.
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(
            authority
                .create_identity(&format!("user-{i}"), Role::Developer, now_ms())
                .expect("identity"),
        );
    }
    let token = tokens[57].expose().to_owned();
    let header = format!("Bearer {token}");

    // 1. Named tokens.
    let configured = Sha256::digest(token.as_bytes());
    let shared_token = per_call(20_000, || {
        let given = header.strip_prefix("Bearer ").unwrap_or("");
        let a = Sha256::digest(given.trim().as_bytes());
        black_box(bool::from(a.ct_eq(&configured)));
    });
    let named = per_call(20_000, || {
        let bearer = slipway_platform::authority::bearer(Some(&header));
        black_box(
            authority
                .authenticate(bearer, now_ms())
                .expect("known token"),
        );
    });
    report(
        "named token (digest + SQLite read)",
        named,
        "one shared token (digest compare)",
        shared_token,
    );

    // 2. Job credentials.
    let now = now_ms();
    let claims = JobClaims {
        job_id: "bench-1".into(),
        kind: JobKind::Merge,
        repository: "acme/infra".into(),
        root: "prod".into(),
        commit: "a".repeat(40),
        branch: Some("main".into()),
        actor: "alice".into(),
        modes: vec![Mode::Production],
        environments: vec!["prod".into()],
        merge_modes: vec![],
        approved_by: None,
        teardown: None,
        drift_remediation: false,
        issued_at_ms: now,
        expires_at_ms: now + 3_600_000,
        requested_by: None,
    };
    let credential = mint(&claims, &engine).expect("mint");
    let message = b"slipway-job-credential/v1\n{}";
    let signature = ed25519_dalek::Signer::sign(&engine, message);
    let vk = engine.verifying_key();
    let verify_only = per_call(5_000, || {
        black_box(vk.verify_strict(message, &signature).is_ok());
    });
    let job = per_call(5_000, || {
        black_box(
            authority
                .authenticate(Some(credential.expose()), now_ms())
                .expect("credential"),
        );
    });
    report(
        "job credential, again (cache + claims + ledger)",
        job,
        "Ed25519 verification alone",
        verify_only,
    );
    let first = per_call(5_000, || {
        black_box(
            slipway_platform::credential::verify(credential.expose(), &vk, now_ms())
                .expect("credential"),
        );
    });
    report(
        "job credential, first time (verify + claims)",
        first,
        "Ed25519 verification alone",
        verify_only,
    );

    // 3. Policy.
    let caller = authority
        .authenticate(Some(&token), now_ms())
        .expect("caller");
    let target = Target {
        environment: "pr-7".into(),
        mode: Mode::Preview,
    };
    let clone = per_call(200_000, || {
        black_box(target.clone());
    });
    let decide = per_call(200_000, || {
        black_box(
            authority
                .authorize(&caller, Action::Update, &target)
                .is_ok(),
        );
    });
    report("policy decision", decide, "cloning the target", clone);
}
