//! The platform's trust boundary, tried as an attacker would: the real `terraform`
//! (every version found), the real provider and its runtime daemon (the embedded
//! platform), job credentials as slipway-agent mints them, and a bare gRPC client on the
//! daemon's socket.
//!
//! Proves: PRODUCTION changes only with a merge job's credential, refused at
//! `terraform plan` otherwise, whatever the provider block says; a credential for
//! another mode, a read-only one, one signed with another key, or one whose job ended
//! is refused, and only the engine's signed ending ends a job (recorded with the
//! job's outcome); a replica's process (even one that double-forked, or one that
//! relays a connection its exited parent opened) cannot use the socket;
//! a bare client gets digests instead of secrets and cannot change production; a
//! developer cannot import a production application; every refusal and change is in
//! the audit log, which verifies, and deleting its newest record is caught.

use std::process::Command;
use std::time::Duration;

use slipway_platform::job_ending::{self, JobEnding, JobOutcome, SignedEnding};
use slipway_platform::{JobKind, Mode};
use slipway_proto::runtime as pb;
use slipway_proto::runtime::local_runtime_client::LocalRuntimeClient;
use slipway_provenance::SigningKey;
use slipway_tests::job_credentials::{claims, credential_file, COMMIT};
use slipway_tests::local_harness::{collapse, wait_for, Harness, HEADER};
use slipway_tests::terraform::{self, provider_binary, TerraformBinary};

/// A PRODUCTION environment with one application that has a secret, and a PREVIEW one.
fn production_config() -> String {
    r#"
resource "slipway_environment" "prod" {
  name = "prod"
  mode = "PRODUCTION"
}
resource "slipway_application" "web" {
  environment_id = slipway_environment.prod.id
  name           = "web"
  command        = var.demo_app
  replicas       = 1
  ports          = [{ name = "http", port = 8080, public = true }]
  secrets        = { API_KEY = "prod-secret-value" }
  healthcheck    = { type = "tcp", port = 8080, interval = "1s" }
}
"#
    .to_owned()
}

/// The operator's configuration of the embedded platform: it trusts `engine`.
fn configure_platform(h: &Harness, engine: &SigningKey) {
    std::fs::write(
        h.home.path().join("platform.toml"),
        format!(
            "engine_public_key = \"{}\"\n",
            slipway_provenance::encode_verifying_key(&engine.verifying_key())
        ),
    )
    .unwrap();
}

fn runtime_cli(h: &Harness, args: &[&str]) -> std::process::Output {
    Command::new(provider_binary())
        .arg("runtime")
        .args(args)
        .env("SLIPWAY_HOME", h.home.path())
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_JOB_CREDENTIAL_FILE")
        .output()
        .unwrap()
}

fn audit(h: &Harness) -> Vec<serde_json::Value> {
    let out = runtime_cli(h, &["audit", "list", "--json"]);
    assert!(out.status.success(), "audit list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A gRPC client on the daemon's socket, with `bearer` when given.
async fn bare_client(h: &Harness) -> LocalRuntimeClient<tonic::transport::Channel> {
    let channel = slipway_proto::connect_unix(h.home.path().join("runtime.sock"))
        .await
        .unwrap();
    LocalRuntimeClient::new(channel)
}

fn with_bearer<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `EndJob` with the job's credential and `sent` as the ending.
fn end_job(
    h: &Harness,
    credential: &str,
    sent: SignedEnding,
) -> Result<tonic::Response<pb::EndJobResponse>, tonic::Status> {
    block_on(async {
        bare_client(h)
            .await
            .end_job(with_bearer(
                pb::EndJobRequest {
                    ending: sent.ending,
                    signature: sent.signature,
                },
                credential,
            ))
            .await
    })
}

fn plan_fails_with(h: &Harness, what: &str, expected: &str) {
    let v = &h.ws.terraform.version;
    let run = h.ws.run(&["plan", "-no-color", "-input=false"]);
    let output = collapse(&run.all_output());
    assert_ne!(run.code, 0, "terraform {v}: {what}: the plan went through");
    assert!(
        output.contains(expected),
        "terraform {v}: {what}: expected {expected:?} in\n{output}"
    );
}

#[test]
fn production_changes_only_with_a_merge_jobs_credential_on_every_terraform() {
    for tf in terraform::required() {
        merge_credentials(&tf);
    }
}

fn merge_credentials(tf: &TerraformBinary) {
    let v = tf.version.clone();
    let agent = slipway_provenance::generate_signing_key().unwrap();
    let attacker = slipway_provenance::generate_signing_key().unwrap();
    let mut h = Harness::with_config(tf, &production_config());
    configure_platform(&h, &agent);
    let dir = h.ws.path().to_owned();
    let file_var = "SLIPWAY_JOB_CREDENTIAL_FILE";

    // 1. By hand: refused at plan, with what to do instead.
    plan_fails_with(
        &h,
        "a manual plan",
        "Production changes come through a merge: open a pull request",
    );

    // 2. A STAGING root's job, a read-only pull-request plan, a credential the attacker
    //    signed: all refused at plan.
    let attempts = [
        (
            claims("staging.1", JobKind::Merge, &[Mode::Staging]),
            &agent,
            "does not cover this PRODUCTION environment",
        ),
        (
            claims("plan.1", JobKind::PullRequestPlan, &[]),
            &agent,
            "job can only read",
        ),
        (
            claims("forged.1", JobKind::Merge, &Mode::ALL),
            &attacker,
            "signature is not the GitOps engine's",
        ),
    ];
    for (claims, key, expected) in &attempts {
        let (file, _) = credential_file(&dir, claims, key);
        h.ws.set_env(file_var, &file.display().to_string());
        plan_fails_with(&h, &claims.job_id, expected);
    }
    assert!(
        h.demo_processes().is_empty(),
        "terraform {v}: a replica started"
    );

    // 3. A merge job's credential: applied, and the record names the job, not a person.
    let merge = claims("7.1.a1b2", JobKind::Merge, &Mode::ALL);
    let (file, credential) = credential_file(&dir, &merge, &agent);
    h.ws.set_env(file_var, &file.display().to_string());
    h.ws.apply().success();
    assert_eq!(h.demo_processes().len(), 1);
    h.assert_plan_empty("the merge job's apply");

    // 4. Without it, a destroy is refused and nothing stops.
    h.ws.remove_env(file_var);
    let destroy = h.ws.destroy();
    assert_ne!(
        destroy.code, 0,
        "terraform {v}: a manual destroy went through"
    );
    assert!(collapse(&destroy.all_output()).contains("Production changes come through a merge"));
    assert_eq!(
        h.demo_processes().len(),
        1,
        "terraform {v}: a replica stopped"
    );

    // 5. The credential alone cannot end its job (whatever Terraform runs can read
    //    it), nor can an ending the attacker signed or one for another job: only the
    //    engine's signed ending does, and the job's end is in the platform's log.
    let ending = |job: &str, outcome: JobOutcome| JobEnding {
        job_id: job.into(),
        outcome,
        plan: Some("2 to add, 0 to change, 0 to destroy".into()),
        error: None,
        covered_commits: vec![],
    };
    let unsigned = SignedEnding {
        ending: String::new(),
        signature: String::new(),
    };
    let forged = job_ending::sign(&ending("7.1.a1b2", JobOutcome::Failed), &attacker).unwrap();
    let other_job = job_ending::sign(&ending("8.1.c3d4", JobOutcome::Succeeded), &agent).unwrap();
    for (what, sent) in [
        ("unsigned", unsigned),
        ("forged", forged),
        ("other job", other_job),
    ] {
        let refused = end_job(&h, &credential, sent).expect_err(what);
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{what}");
    }
    // The job's credential still works: the ending attempts did not end it.
    h.ws.set_env(file_var, &file.display().to_string());
    h.assert_plan_empty("the job's credential after refused endings");
    end_job(
        &h,
        &credential,
        job_ending::sign(&ending("7.1.a1b2", JobOutcome::Succeeded), &agent).unwrap(),
    )
    .unwrap();
    h.ws.set_env(file_var, &file.display().to_string());
    let destroy = h.ws.destroy();
    assert_ne!(
        destroy.code, 0,
        "terraform {v}: an ended job's credential worked"
    );
    assert!(
        collapse(&destroy.all_output()).contains("job 7.1.a1b2 has ended"),
        "terraform {v}: {}",
        destroy.all_output()
    );

    // 6. The next merge job may.
    let (file, _) = credential_file(
        &dir,
        &claims("8.1.c3d4", JobKind::Merge, &Mode::ALL),
        &agent,
    );
    h.ws.set_env(file_var, &file.display().to_string());
    h.ws.destroy().success();
    wait_for("the replica to stop", Duration::from_secs(30), || {
        h.demo_processes().is_empty()
    });

    // 7. The audit log: the refusals with their reasons, the job's changes with its
    //    commit, no secret value; it verifies.
    let records = audit(&h);
    let text = serde_json::to_string(&records).unwrap();
    assert!(
        !text.contains("prod-secret-value"),
        "a secret in the audit log"
    );
    let refused = |code: &str| {
        records.iter().any(|r| {
            r["outcome"] == "refused" && r["reason"].as_str().is_some_and(|x| x.contains(code))
        })
    };
    for code in [
        "mode-closed-to-role",
        "outside-job-credential",
        "read-only-job",
        "unauthenticated",
    ] {
        assert!(
            refused(code),
            "terraform {v}: no `{code}` refusal in {text}"
        );
    }
    let applied: Vec<_> = records
        .iter()
        .filter(|r| r["outcome"] == "applied")
        .collect();
    assert!(
        applied.iter().any(|r| r["who"] == "job:7.1.a1b2"
            && r["how"] == "git-merge"
            && r["action"] == "create"
            && r["object"] == "application prod/web"
            && r["commit"] == COMMIT
            && r["actor"] == "octocat"),
        "terraform {v}: {text}"
    );
    assert!(applied
        .iter()
        .any(|r| r["who"] == "job:8.1.c3d4" && r["action"] == "delete"));
    // The job's end, from the engine, next to its changes; the refused endings too.
    assert!(
        applied.iter().any(|r| r["who"] == "job:7.1.a1b2"
            && r["action"] == "end-job"
            && r["object"] == "root acme/infra/infra"
            && r["commit"] == COMMIT
            && r["reason"] == "succeeded: 2 to add, 0 to change, 0 to destroy"),
        "terraform {v}: no end-job record in {text}"
    );
    assert!(
        refused("job-ending-refused"),
        "terraform {v}: no refused ending in {text}"
    );
    assert!(runtime_cli(&h, &["audit", "verify"]).status.success());

    // 8. Deleting the newest record leaves a valid chain, but not the checkpoint's.
    let db = rusqlite::Connection::open(h.home.path().join("platform.db")).unwrap();
    db.execute(
        "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
        [],
    )
    .unwrap();
    drop(db);
    let verify = runtime_cli(&h, &["audit", "verify"]);
    assert!(
        !verify.status.success(),
        "terraform {v}: a truncated log verified"
    );
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("newest records were deleted"),
        "{verify:?}"
    );
    h.stop_daemon();
}

/// A pull request's plan: its read-only credential plans exactly what the merge job
/// would be allowed (the PRODUCTION change shows; a mode the merge may not change is
/// refused at plan as it would be after the merge), and an apply with it changes
/// nothing.
#[test]
fn a_pull_request_plan_shows_the_change_and_cannot_apply_it_on_every_terraform() {
    for tf in terraform::required() {
        let v = tf.version.clone();
        let agent = slipway_provenance::generate_signing_key().unwrap();
        let mut h = Harness::with_config(&tf, &production_config());
        configure_platform(&h, &agent);
        let dir = h.ws.path().to_owned();
        let mut plan = claims("plan.9.1", JobKind::PullRequestPlan, &[]);
        plan.merge_modes = vec![Mode::Staging];
        let (file, _) = credential_file(&dir, &plan, &agent);
        h.ws.set_env("SLIPWAY_JOB_CREDENTIAL_FILE", &file.display().to_string());
        plan_fails_with(
            &h,
            "a plan for a STAGING root's merge",
            "does not cover this PRODUCTION environment",
        );
        plan.job_id = "plan.9.2".into();
        plan.merge_modes = Mode::ALL.to_vec();
        let (file, _) = credential_file(&dir, &plan, &agent);
        h.ws.set_env("SLIPWAY_JOB_CREDENTIAL_FILE", &file.display().to_string());
        let run = h.ws.plan_exit_code();
        assert_eq!(run.code, 2, "terraform {v}: {}", run.all_output());
        assert!(run
            .stdout
            .contains("slipway_application.web will be created"));
        let apply = h.ws.apply();
        assert_ne!(apply.code, 0, "terraform {v}: a plan job applied");
        assert!(
            collapse(&apply.all_output()).contains("job can only read"),
            "terraform {v}: {}",
            apply.all_output()
        );
        assert!(
            h.demo_processes().is_empty(),
            "terraform {v}: a replica started"
        );
        assert!(
            h.ws.resources().is_empty(),
            "terraform {v}: something is in the state"
        );
        let records = audit(&h);
        assert!(
            records.iter().any(|r| r["who"] == "job:plan.9.2"
                && r["how"] == "pr-plan"
                && r["outcome"] == "refused"
                && r["reason"]
                    .as_str()
                    .is_some_and(|x| x.contains("read-only-job"))),
            "terraform {v}: {records:#?}"
        );
        h.stop_daemon();
    }
}

/// What a pull request can edit (the provider block) cannot turn the platform's rule
/// off or bring its own key: the provider's former gate settings are ignored, each with
/// a warning at `terraform plan`, and the platform still refuses, records the refusal,
/// and records none of the labels the run claims for itself.
#[test]
fn a_provider_block_cannot_loosen_the_platform_on_every_terraform() {
    for tf in terraform::required() {
        let v = tf.version.clone();
        let agent = slipway_provenance::generate_signing_key().unwrap();
        let attacker = slipway_provenance::generate_signing_key().unwrap();
        let attacker_public = slipway_provenance::encode_verifying_key(&attacker.verifying_key());
        let mut h = Harness::with_config(
            &tf,
            &format!(
                "provider \"slipway\" {{\n  production_requires_signed_provenance = false\n  agent_public_key = \"{attacker_public}\"\n}}\n{}",
                production_config()
            ),
        );
        configure_platform(&h, &agent);
        // The labels of a merge job the attacker would like recorded, the old gate's
        // signature variable, and its switch in the environment as well.
        for (k, value) in [
            (slipway_provenance::ENV_COMMIT_SHA, COMMIT),
            (slipway_provenance::ENV_REPOSITORY, "acme/infra"),
            (slipway_provenance::ENV_ACTOR, "mallory"),
            (slipway_provenance::ENV_TRIGGER, "webhook"),
            (slipway_provenance::ENV_JOB_ID, "7"),
            (
                "SLIPWAY_PROVENANCE_SIGNATURE",
                "c2lnbmVkIGJ5IHRoZSBhdHRhY2tlcg==",
            ),
            ("SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE", "false"),
        ] {
            h.ws.set_env(k, value);
        }
        let run = h.ws.run(&["plan", "-no-color", "-input=false"]);
        let output = collapse(&run.all_output());
        assert_ne!(
            run.code, 0,
            "terraform {v}: the block's own gate and key: the plan went through"
        );
        assert!(
            output.contains("closed to the admin role"),
            "terraform {v}: the platform's refusal is missing:\n{output}"
        );
        for ignored in [
            "`production_requires_signed_provenance` is ignored",
            "Remove `production_requires_signed_provenance` from the provider block",
            "`agent_public_key` is ignored",
            "Remove `agent_public_key` from the provider block",
            "SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE is ignored",
            "PRODUCTION policy lives in the platform's configuration now",
        ] {
            assert!(
                output.contains(ignored),
                "terraform {v}: expected {ignored:?} in\n{output}"
            );
        }
        let records = audit(&h);
        assert!(
            records.iter().any(|r| r["outcome"] == "refused"
                && r["environment"] == "prod"
                && r["mode"] == "PRODUCTION"
                && r["how"] == "terraform-plan"),
            "terraform {v}: no refusal at plan in {records:#?}"
        );
        assert!(
            records
                .iter()
                .all(|r| r["actor"] != "mallory" && r["commit"] != COMMIT && r["job_id"] != "7"),
            "terraform {v}: the run's own labels were believed: {records:#?}"
        );

        let (file, _) = credential_file(
            h.ws.path(),
            &claims("7", JobKind::Merge, &Mode::ALL),
            &attacker,
        );
        h.ws.set_env("SLIPWAY_JOB_CREDENTIAL_FILE", &file.display().to_string());
        plan_fails_with(
            &h,
            "a credential signed with the block's key",
            "signature is not the GitOps engine's",
        );
        let apply = h.ws.apply();
        assert_ne!(apply.code, 0);
        assert!(h.demo_processes().is_empty());
        assert!(h.ws.resources().is_empty());
        h.stop_daemon();
    }
}

/// The socket itself: a replica's process gets nothing; the local user's bare client
/// sees digests, not secrets, and cannot change production; a developer's token cannot
/// import production, and a viewer's cannot change anything.
#[test]
fn the_socket_gives_no_more_than_the_policy_on_every_terraform() {
    for tf in terraform::required() {
        socket(&tf);
    }
}

fn socket(tf: &TerraformBinary) {
    let v = tf.version.clone();
    let agent = slipway_provenance::generate_signing_key().unwrap();
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = probe_dir.path();
    let cli = provider_binary();
    let home_placeholder = "@HOME@";
    // A PREVIEW application whose code tries the socket, directly, from a
    // double-forked process in a session of its own, and through a connection whose
    // connecting process exited at once (its child relays the connection for the CLI,
    // `relay_connection.py`).
    let status = format!("{} runtime --home {home_placeholder} status", cli.display());
    std::fs::write(probe.join("relay.py"), include_str!("relay_connection.py")).unwrap();
    let relay = format!(
        "{} relay.py {home_placeholder}/runtime.sock {}/h {} relayed.txt",
        slipway_tests::local_harness::real_python(),
        probe.display(),
        cli.display()
    );
    let script = format!(
        "{status} > direct.txt 2>&1; echo exit=$? >> direct.txt; \
         (setsid sh -c '{status} > forked.txt 2>&1; echo exit=$? >> forked.txt' &); \
         {relay}; \
         exec sleep 600"
    );
    let mut h = Harness::new(tf);
    let script = script.replace(home_placeholder, &h.home.path().display().to_string());
    h.ws.write_config(&format!(
        r#"{HEADER}{}
resource "slipway_environment" "preview" {{
  name = "pr-1"
  mode = "PREVIEW"
}}
resource "slipway_application" "probe" {{
  environment_id = slipway_environment.preview.id
  name           = "probe"
  command        = "/bin/sh"
  args           = ["-c", {script:?}]
  working_dir    = {probe:?}
}}
"#,
        production_config()
    ));
    configure_platform(&h, &agent);
    let (file, _) = credential_file(
        h.ws.path(),
        &claims("7.1.e5f6", JobKind::Merge, &Mode::ALL),
        &agent,
    );
    h.ws.set_env("SLIPWAY_JOB_CREDENTIAL_FILE", &file.display().to_string());
    h.ws.apply().success();
    h.ws.remove_env("SLIPWAY_JOB_CREDENTIAL_FILE");

    for name in ["direct.txt", "forked.txt", "relayed.txt"] {
        let path = probe.join(name);
        wait_for(
            &format!("the replica to write {name}"),
            Duration::from_secs(30),
            || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("exit=")),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        // The relayed connection is refused either as a replica's (the daemon looked
        // while its connecting process lived) or as one whose process is gone.
        let refused = text.contains("cannot call the platform without a token")
            || text.contains("has exited: the local runtime cannot tell whose");
        assert!(
            refused && !text.contains("exit=0"),
            "terraform {v}: the replica's {name}: {text}"
        );
    }

    let web_id = h.ws.resources()["slipway_application.web"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let prod_id = h.ws.resources()["slipway_environment.prod"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    block_on(async {
        let mut client = bare_client(&h).await;
        // Reads carry digests.
        let app = client
            .get_application(pb::GetApplicationRequest { id: web_id.clone() })
            .await
            .unwrap()
            .into_inner()
            .application
            .unwrap();
        let spec = app.spec.clone().unwrap();
        assert!(
            spec.secrets["API_KEY"].starts_with("sha256:"),
            "{:?}",
            spec.secrets
        );
        assert!(!format!("{app:?}").contains("prod-secret-value"));
        let status = client
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{status:?}").contains("prod-secret-value"));

        // Changes to production are refused with what to do.
        let mut scaled = spec.clone();
        scaled.replicas = 3;
        let refused = client
            .apply_application(pb::ApplyApplicationRequest {
                spec: Some(scaled),
                change: None,
                timeout_ms: 10_000,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("come through a merge"),
            "{refused:?}"
        );
        let demote = client
            .apply_environment(pb::ApplyEnvironmentRequest {
                spec: Some(pb::EnvironmentSpec {
                    id: prod_id.clone(),
                    name: "prod".into(),
                    mode: pb::Mode::Development as i32,
                    variables: Default::default(),
                    secrets: Default::default(),
                }),
                change: None,
            })
            .await
            .unwrap_err();
        assert_eq!(demote.code(), tonic::Code::PermissionDenied);
        let delete = client
            .delete_application(pb::DeleteApplicationRequest {
                id: web_id.clone(),
                change: None,
                timeout_ms: 10_000,
            })
            .await
            .unwrap_err();
        assert_eq!(delete.code(), tonic::Code::PermissionDenied);

        // A token nobody issued is nobody.
        let unknown = client
            .status(with_bearer(pb::StatusRequest {}, "slw_not-a-real-token"))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    });
    assert_eq!(
        h.demo_processes().len(),
        1,
        "terraform {v}: production changed"
    );

    // A developer may work in DEVELOPMENT, not import production; a viewer reads only.
    let token = |name: &str, role: &str| {
        let out = runtime_cli(&h, &["token", "create", "--name", name, "--role", role]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let alice = token("alice", "developer");
    let victor = token("victor", "viewer");
    h.ws.set_env("SLIPWAY_TOKEN", &alice);
    h.ws.run(&["state", "rm", "-no-color", "slipway_application.web"])
        .success();
    let import =
        h.ws.run(&["import", "-no-color", "slipway_application.web", &web_id]);
    assert_ne!(
        import.code, 0,
        "terraform {v}: a developer imported production"
    );
    assert!(
        collapse(&import.all_output()).contains("alice may not import environment `prod`"),
        "terraform {v}: {}",
        import.all_output()
    );
    let with_dev = format!(
        "{}\nresource \"slipway_environment\" \"dev\" {{\n  name = \"alice-dev\"\n}}\n",
        std::fs::read_to_string(h.ws.path().join("main.tf")).unwrap()
    );
    h.ws.write_config(&with_dev);
    h.ws.run(&[
        "apply",
        "-auto-approve",
        "-no-color",
        "-target=slipway_environment.dev",
    ])
    .success();
    h.ws.set_env("SLIPWAY_TOKEN", &victor);
    let viewer = h.ws.run(&[
        "destroy",
        "-auto-approve",
        "-no-color",
        "-target=slipway_environment.dev",
    ]);
    assert_ne!(viewer.code, 0, "terraform {v}: a viewer destroyed");
    assert!(collapse(&viewer.all_output()).contains("a viewer token reads only"));

    let records = audit(&h);
    assert!(records
        .iter()
        .any(|r| r["who"] == "alice" && r["action"] == "create" && r["outcome"] == "applied"));
    assert!(records
        .iter()
        .any(|r| r["who"] == "alice" && r["action"] == "import" && r["outcome"] == "refused"));
    assert!(records.iter().any(
        |r| r["who"].as_str().is_some_and(|w| w.starts_with("local:"))
            && r["action"] == "change-mode"
            && r["outcome"] == "refused"
    ));
    h.stop_daemon();
}

/// A CA and a certificate it signed for 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A team's platform over TCP with TLS: a caller there needs a token (no socket peer
/// vouches for it), the provider never starts a local daemon instead, and the audit
/// names the token's identity.
#[test]
fn a_team_reaches_the_platform_over_tls_with_a_token_on_every_terraform() {
    let config = "\nresource \"slipway_environment\" \"team\" {\n  name = \"team-dev\"\n}\n";
    for tf in terraform::required() {
        let v = tf.version.clone();
        let platform = Harness::with_config(&tf, config);
        let (ca, cert, key) = certificates();
        let home = platform.home.path();
        std::fs::write(home.join("platform.crt"), cert).unwrap();
        std::fs::write(home.join("platform-key.pem"), key).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            home.join("platform.toml"),
            format!(
                "[listen]\naddress = \"127.0.0.1:{port}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
                home.join("platform.crt").display(),
                home.join("platform-key.pem").display()
            ),
        )
        .unwrap();
        // The platform starts with its first local use.
        platform.ws.run(&["plan", "-no-color"]).success();
        let out = runtime_cli(
            &platform,
            &["token", "create", "--name", "ci", "--role", "developer"],
        );
        assert!(out.status.success(), "{out:?}");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();

        let mut team = Harness::with_config(&tf, config);
        let ca_file = team.ws.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        team.ws
            .set_env("SLIPWAY_ENDPOINT", &format!("https://127.0.0.1:{port}"));
        team.ws
            .set_env("SLIPWAY_CA_FILE", &ca_file.display().to_string());
        plan_fails_with(&team, "no token over TCP", "no token");
        team.ws.set_env("SLIPWAY_TOKEN", &token);
        team.ws.apply().success();
        assert!(
            !team.home.path().join("runtime.sock").exists(),
            "terraform {v}: a local daemon was started instead"
        );
        assert!(
            audit(&platform).iter().any(|r| r["who"] == "ci"
                && r["object"] == "environment team-dev"
                && r["outcome"] == "applied"),
            "terraform {v}: the team's change is not in the platform's audit log"
        );
        // The same from the provider block alone.
        for name in ["SLIPWAY_ENDPOINT", "SLIPWAY_CA_FILE", "SLIPWAY_TOKEN"] {
            team.ws.remove_env(name);
        }
        team.ws.write_config(&format!(
            "{HEADER}\nprovider \"slipway\" {{\n  endpoint = \"https://127.0.0.1:{port}\"\n  token    = \"{token}\"\n  ca_file  = \"{}\"\n}}\n{config}",
            ca_file.display()
        ));
        let plan = team.ws.plan_exit_code();
        assert_eq!(plan.code, 0, "terraform {v}: {}", plan.all_output());
        team.ws
            .set_env("SLIPWAY_ENDPOINT", &format!("https://127.0.0.1:{port}"));
        team.ws
            .set_env("SLIPWAY_CA_FILE", &ca_file.display().to_string());
        team.ws.set_env("SLIPWAY_TOKEN", &token);
        // Another CA's certificate is not trusted.
        let (other_ca, _, _) = certificates();
        std::fs::write(&ca_file, other_ca).unwrap();
        plan_fails_with(&team, "another CA", "certificate");
        std::fs::write(&ca_file, &ca).unwrap();
        team.ws.destroy().success();
        platform.stop_daemon();
    }
}

/// `runtime serve` runs the platform in the foreground, as systemd runs it: it answers,
/// a second one for the same home refuses to start, and SIGTERM stops it cleanly.
#[test]
fn runtime_serve_runs_the_platform_in_the_foreground() {
    let home = tempfile::Builder::new()
        .prefix("sws")
        .tempdir_in("/tmp")
        .unwrap();
    let serve = || {
        Command::new(provider_binary())
            .args(["runtime", "--home"])
            .arg(home.path())
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = serve();
    let status = || {
        Command::new(provider_binary())
            .args(["runtime", "--home"])
            .arg(home.path())
            .arg("status")
            .env_remove("SLIPWAY_TOKEN")
            .output()
            .unwrap()
    };
    wait_for("the platform to answer", Duration::from_secs(30), || {
        String::from_utf8_lossy(&status().stdout).contains("Local runtime daemon pid")
    });
    let second = serve().wait_with_output().unwrap();
    assert!(
        !second.status.success(),
        "a second platform started for the same home"
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already serves"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let pid = nix::unistd::Pid::from_raw(first.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = first.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!home.path().join("runtime.sock").exists());
}
