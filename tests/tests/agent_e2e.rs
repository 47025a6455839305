//! End-to-end tests of `slipway-agent`: the real binary, real git repositories (a bare
//! origin and a clone that merges and pushes), the real `terraform`, and webhook
//! deliveries built from GitHub's own payloads and signed here.
//!
//! Run with `cargo test --workspace` (which builds the agent binary first) or
//! `cargo test -p slipway-tests --test agent_e2e` (which builds it on first use).
//!
//! Terraform: these configurations use the built-in `terraform_data` resource, which
//! needs no provider download (there is no network here) but exists only in
//! Terraform >= 1.4. So these tests run against the newest Terraform >= 1.4 that
//! `slipway_tests::terraform::available()` finds, not against 1.0.3.
//!
//! Every wait is on a condition with a generous deadline; no test asserts a duration.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::Value;
use slipway_tests::agent_support::*;

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

fn verify(agent: &Agent) -> (bool, String) {
    let out = agent.cli(&["audit", "verify"]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_merge_is_applied_with_its_sha_in_the_audit_and_tampering_is_named() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(7, &sha, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "delivery-merge-1",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);

    let record = agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["trigger"], "webhook");
    assert_eq!(record["delivery_id"], "delivery-merge-1");
    assert_eq!(record["repository"], "hello");
    assert_eq!(record["root"], "infra");
    assert_eq!(record["branch"], "main");
    assert_eq!(record["pull_request"], 7);
    assert_eq!(record["merged_by"], "octocat");
    assert_eq!(record["author"], "Mona Lisa <mona@example.com>");
    assert_eq!(record["terraform_version"], tf.version.as_str());
    assert_eq!(record["plan_summary"]["add"], 1);
    assert_eq!(
        record["plan_summary"]["to_add"][0],
        "terraform_data.release"
    );
    assert!(record["covered_commits"]
        .as_array()
        .unwrap()
        .contains(&Value::from(sha.as_str())));
    for t in ["started_at", "ended_at"] {
        let s = record[t].as_str().unwrap();
        assert!(
            s.ends_with('Z') && s.len() == 24,
            "{t} = {s}: UTC with milliseconds"
        );
    }
    // Terraform really applied the merge commit's configuration.
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v1");

    // The job's labels reached Terraform, unsigned (what the job may change is its
    // credential's, in a file), and the agent's own secrets did not.
    let env = std::fs::read_to_string(&agent.provenance_log).unwrap();
    let vars: std::collections::BTreeMap<String, String> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(vars["SLIPWAY_COMMIT_SHA"], sha);
    assert_eq!(vars["SLIPWAY_PULL_REQUEST"], "7");
    assert_eq!(vars["SLIPWAY_ACTOR"], "octocat");
    assert_eq!(vars["SLIPWAY_TRIGGER"], "webhook");
    for old_gate in [
        "SLIPWAY_PROVENANCE_SIGNATURE",
        "SLIPWAY_PROVENANCE_TIMESTAMP",
    ] {
        assert!(!vars.contains_key(old_gate), "{old_gate} reached terraform");
    }
    assert!(
        env.lines().any(|l| l == "0"),
        "the webhook secret's variable reached terraform:\n{env}"
    );
    assert!(!agent.log_text().contains(WEBHOOK_SECRET));

    let (ok, text) = verify(&agent);
    assert!(ok, "verify failed on an untouched log: {text}");

    // Edit one row of the audit database, as someone covering their tracks would.
    agent.kill9();
    let seq = record["seq"].as_i64().unwrap();
    let conn = rusqlite::Connection::open(agent.data_dir.join("slipway.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE audit SET merged_by = 'mallory' WHERE seq = ?1",
            [seq],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let (ok, text) = verify(&agent);
    assert!(!ok, "verify passed after a row was edited: {text}");
    assert!(
        text.contains(&format!("record {seq}:")),
        "verify did not name record {seq}: {text}"
    );
}

#[test]
fn bad_signatures_redeliveries_and_unmerged_pull_requests_run_nothing() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(8, &sha, "octocat");

    // Forged, missing and stale-secret signatures: 401, and no job exists.
    let forged = format!("sha256={}", "0".repeat(64));
    let r = http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "forged"),
            ("X-Hub-Signature-256", &forged),
        ],
        &body,
    );
    assert_eq!(r.status, 401, "forged: {}", r.body);
    assert_eq!(
        deliver(addr, "pull_request", "unsigned", &body, None).status,
        401
    );
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "stale",
            &body,
            Some("last-years-secret")
        )
        .status,
        401
    );
    // A body altered after signing.
    let mut tampered = body.clone();
    let sig = signature(WEBHOOK_SECRET, &body);
    tampered.extend_from_slice(b" ");
    let r = http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "tampered"),
            ("X-Hub-Signature-256", &sig),
        ],
        &tampered,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        agent.counts(addr),
        (0, 0, 0),
        "a refused delivery stored a job"
    );

    // GitHub's own closed-but-not-merged payload, correctly signed: acknowledged,
    // ignored, nothing queued.
    let mut closed = fixture("pull_request/closed.payload.json");
    closed["pull_request"]["base"]["ref"] = "main".into();
    let closed = serde_json::to_vec(&closed).unwrap();
    let r = deliver(
        addr,
        "pull_request",
        "closed-unmerged",
        &closed,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ignored"), "{}", r.body);
    // A ping, and an event octocrab has no model for, are acknowledged too.
    let ping = serde_json::to_vec(&fixture("ping/payload.json")).unwrap();
    assert_eq!(
        deliver(addr, "ping", "ping-1", &ping, Some(WEBHOOK_SECRET)).status,
        200
    );
    let future = br#"{"action":"teleported","repository":{"full_name":"Codertocat/Hello-World"}}"#;
    assert_eq!(
        deliver(
            addr,
            "merge_queue_v9",
            "future-1",
            future,
            Some(WEBHOOK_SECRET)
        )
        .status,
        200
    );
    assert_eq!(
        agent.counts(addr),
        (0, 0, 0),
        "an ignored delivery stored a job"
    );

    // The real merge, then its redelivery (same X-GitHub-Delivery id).
    let r = deliver(addr, "pull_request", "merge-8", &body, Some(WEBHOOK_SECRET));
    assert_eq!(r.status, 202, "{}", r.body);
    agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    let before = agent.counts(addr);
    let r = deliver(addr, "pull_request", "merge-8", &body, Some(WEBHOOK_SECRET));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("duplicate"), "{}", r.body);
    assert_eq!(agent.counts(addr), before, "a redelivery stored a job");
    assert_eq!(before, (0, 0, 1));

    let log = agent.audit();
    assert_eq!(log.len(), 1, "exactly one record: {log:#?}");
    let applies = std::fs::read_to_string(&agent.provenance_log).unwrap();
    assert_eq!(
        applies.matches("--- apply").count(),
        1,
        "terraform apply ran more than once"
    );
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_burst_of_twenty_merges_ends_with_the_last_deployed_and_every_commit_audited() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    let shas: Vec<String> = (1..=20)
        .map(|i| origin.merge_release(&format!("feature-{i}"), &format!("v{i}")))
        .collect();
    // Deliver them quickly, with some out of order, as a congested network would.
    let mut order: Vec<usize> = (0..20).collect();
    order.swap(3, 4);
    order.swap(10, 15);
    order.swap(18, 19);
    for i in order {
        let body = merged_pull_request(100 + i as u64, &shas[i], "octocat");
        let r = deliver(
            addr,
            "pull_request",
            &format!("burst-{i}"),
            &body,
            Some(WEBHOOK_SECRET),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let last = shas.last().unwrap().clone();
    agent.wait_for_record("the last merge to be applied", |r| {
        r["commit_sha"] == last.as_str() && outcome(r) == "succeeded"
    });
    // Wait until every job is finished (late ones are recorded as skipped).
    wait_for("the queue to drain", Duration::from_secs(240), || {
        let (q, r, _) = agent.counts(addr);
        (q == 0 && r == 0).then_some(())
    });
    let log = agent.audit();
    let covered: BTreeSet<String> = log
        .iter()
        .flat_map(|r| r["covered_commits"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for (i, sha) in shas.iter().enumerate() {
        assert!(
            covered.contains(sha),
            "merge {i} ({sha}) is missing from the audit: {log:#?}"
        );
    }
    // Applied in order: each successful apply's commit descends from the previous one.
    let applied: Vec<&str> = log
        .iter()
        .filter(|r| outcome(r) == "succeeded")
        .map(|r| r["commit_sha"].as_str().unwrap())
        .collect();
    assert!(!applied.is_empty());
    for pair in applied.windows(2) {
        assert!(
            origin.is_ancestor(pair[0], pair[1]),
            "applied out of order: {applied:?}"
        );
    }
    assert_eq!(*applied.last().unwrap(), last.as_str());
    assert!(log.iter().all(|r| outcome(r) != "failed"), "{log:#?}");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v20");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_roots_init_is_kept_between_merges_and_redone_when_the_commit_needs_it() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();
    // Delivers the merge of `sha`, waits for it to succeed; its record and job log.
    let apply = |n: u64, sha: &str| -> (Value, String) {
        let body = merged_pull_request(n, sha, "octocat");
        let r = deliver(
            addr,
            "pull_request",
            &format!("kept-{n}"),
            &body,
            Some(WEBHOOK_SECRET),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let record = agent.wait_for_record("the merge", |r| r["commit_sha"] == sha);
        let log = std::fs::read_to_string(
            agent
                .data_dir
                .join(format!("jobs/{}/output.log", record["job_id"])),
        )
        .unwrap();
        assert_eq!(outcome(&record), "succeeded", "{record:#?}\n{log}");
        (record, log)
    };

    // The first merge initialises; the second plans with that init, kept.
    let (_, log) = apply(1, &origin.merge_release("feature-1", "v1"));
    assert!(log.contains("$ terraform init"), "{log}");
    let (record, log) = apply(2, &origin.merge_release("feature-2", "v2"));
    assert!(!log.contains("$ terraform init"), "{log}");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v2");
    // The summary and the version come from the plan's own stream.
    assert_eq!(record["plan_summary"]["change"], 1, "{record:#?}");
    assert_eq!(
        record["plan_summary"]["to_change"][0],
        "terraform_data.release"
    );
    assert_eq!(record["terraform_version"], tf.version.as_str());
    assert!(
        log.contains("terraform_data.release: Plan to update"),
        "{log}"
    );

    // A module the kept init has not installed: Terraform refuses to plan with it,
    // and the job initialises afresh.
    let with_module = format!(
        "{}\nmodule \"extra\" {{\n  source = \"./extra\"\n}}\n",
        origin.main_tf("v3")
    );
    let third = origin.merge(
        "feature-3",
        &[
            ("infra/main.tf", with_module),
            (
                "infra/extra/main.tf",
                "output \"x\" {\n  value = 1\n}\n".into(),
            ),
        ],
    );
    let (_, log) = apply(3, &third);
    let (refused, init) = (
        log.find("initialising afresh"),
        log.find("$ terraform init"),
    );
    assert!(refused.is_some() && refused < init, "{log}");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v3");

    // A local module's init is kept too.
    let fourth = origin.merge(
        "feature-4",
        &[(
            "infra/main.tf",
            format!(
                "{}\nmodule \"extra\" {{\n  source = \"./extra\"\n}}\n",
                origin.main_tf("v4")
            ),
        )],
    );
    let (_, log) = apply(4, &fourth);
    assert!(!log.contains("$ terraform init"), "{log}");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v4");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn sigkill_during_apply_then_restart_applies_the_merge_exactly_once() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    // Hold the apply open after Terraform finished writing state, so the agent is
    // killed after the change was made but before it could record it: the hardest
    // moment for exactly-once.
    std::fs::write(&agent.hold_file, "").unwrap();
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(9, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "merge-9", &body, Some(WEBHOOK_SECRET)).status,
        202
    );

    wait_for(
        "terraform apply to finish under the agent",
        Duration::from_secs(240),
        || agent.applied_marker.exists().then_some(()),
    );
    let applied = origin.release_state().expect("state after the first apply");
    assert_eq!(applied["input"]["value"], "v1");
    // Meanwhile the job's work tree (the root's variables, the saved plan) is private.
    let work = agent.data_dir.join("work");
    let trees: Vec<std::path::PathBuf> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [&work, &trees[0]] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
    agent.kill9();
    assert!(
        trees[0].exists(),
        "the killed job's work tree is left behind"
    );
    // The orphaned wrapper would otherwise hold on; the state lock is already free.
    let pid = std::fs::read_to_string(&agent.wrapper_pid).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status();
    std::fs::remove_file(&agent.hold_file).unwrap();
    assert!(
        agent.audit().is_empty(),
        "nothing was recorded before the kill"
    );

    agent.start();
    let done = agent.wait_for_record("the interrupted job to run again", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    let log = agent.audit();
    let outcomes: Vec<&str> = log.iter().map(outcome).collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"], "{log:#?}");
    assert_eq!(log[0]["commit_sha"], sha.as_str());
    assert_eq!(log[0]["job_id"], done["job_id"]);
    // The re-run planned against the state the killed apply left: nothing to do, so the
    // resource was created once and kept its identity.
    let summary = &done["plan_summary"];
    assert_eq!(
        (
            summary["add"].as_u64(),
            summary["change"].as_u64(),
            summary["destroy"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{done:#?}"
    );
    let after = origin.release_state().unwrap();
    assert_eq!(
        after["id"], applied["id"],
        "terraform_data.release was recreated"
    );
    // The restart removed what the killed job left, and the re-run cleaned up after
    // itself.
    assert!(
        agent
            .log_text()
            .contains("removed work trees a previous agent process left"),
        "{}",
        agent.log_text()
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_merge_whose_webhook_never_came_is_applied_by_the_poller() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(
        tmp.path(),
        &origin,
        &tf,
        AgentOptions {
            poller: true,
            ..AgentOptions::default()
        },
    );
    agent.start();
    let initial = origin.is_ancestor("HEAD", "HEAD");
    assert!(initial);
    // The poller deploys the branch as it finds it at start-up...
    agent.wait_for_record("the initial commit to be applied by the poller", |r| {
        outcome(r) == "succeeded" && r["trigger"] == "poll"
    });
    // ...and then a merge nobody sent a webhook for.
    let sha = origin.merge_release("feature-1", "v2");
    let record = agent.wait_for_record("the poller to apply the merge", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["trigger"], "poll");
    assert_eq!(record["delivery_id"], Value::Null);
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v2");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn manual_deploy_and_the_api_queue_jobs_and_bad_config_names_the_key() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    // `slipway-agent deploy` with no commit deploys the branch tip.
    let tip = origin.merge_release("feature-1", "v1");
    let out = agent.cli(&["deploy", "--repository", "hello", "--actor", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = agent.wait_for_record("the manual deploy", |r| {
        r["commit_sha"] == tip.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["trigger"], "manual");
    assert_eq!(record["merged_by"], "alice");

    // The API needs its token.
    let sha = origin.merge_release("feature-2", "v2");
    let body = format!(r#"{{"repository":"hello","commit":"{sha}"}}"#);
    let r = http(
        addr,
        "POST",
        "/api/v1/deploy",
        &[("Authorization", "Bearer wrong")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let auth = format!("Bearer {API_TOKEN}");
    // Who asked is the token's identity, never a field the caller sends.
    let claimed = format!(r#"{{"repository":"hello","commit":"{sha}","actor":"bob"}}"#);
    let r = http(
        addr,
        "POST",
        "/api/v1/deploy",
        &[("Authorization", &auth)],
        claimed.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("actor: not accepted"), "{}", r.body);
    let r = http(
        addr,
        "POST",
        "/api/v1/deploy",
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the API deploy", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["trigger"], "api");
    assert_eq!(record["merged_by"], "api-token");

    // An unknown key fails at start, naming it.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        text.replace("path = \"infra\"", "path = \"../outside\""),
    )
    .unwrap();
    let out = agent.cli(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("repository[0].root[0].path"), "{err}");
}

#[test]
fn late_deliveries_and_changes_outside_the_root_are_recorded_as_skipped() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    let first = origin.merge_release("feature-1", "v1");
    let second = origin.merge_release("feature-2", "v2");
    let body = merged_pull_request(2, &second, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-second",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    agent.wait_for_record("the second merge", |r| {
        r["commit_sha"] == second.as_str() && outcome(r) == "succeeded"
    });

    // The first merge's webhook arrives late: its commit is an ancestor of the one
    // deployed, so it must not roll the infrastructure back.
    let body = merged_pull_request(1, &first, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-first-late",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    let late = agent.wait_for_record("the late delivery", |r| r["commit_sha"] == first.as_str());
    assert_eq!(outcome(&late), "skipped", "{late:#?}");
    assert!(
        late["error"].as_str().unwrap().contains("ancestor"),
        "{late:#?}"
    );

    // A merge that touches only the README does not run the `infra` root. This one
    // arrives as GitHub's `push` event rather than `pull_request`.
    let docs = origin.merge("docs", &[("README.md", "docs only\n".to_owned())]);
    let body = push_to_main(&docs, "mona");
    let r = deliver(addr, "push", "d-docs", &body, Some(WEBHOOK_SECRET));
    assert_eq!(r.status, 202, "{}", r.body);
    let skipped =
        agent.wait_for_record("the docs-only merge", |r| r["commit_sha"] == docs.as_str());
    assert_eq!(outcome(&skipped), "skipped", "{skipped:#?}");
    assert_eq!(skipped["trigger"], "webhook");
    assert_eq!(skipped["merged_by"], "mona");
    assert_eq!(skipped["pull_request"], Value::Null);
    assert!(skipped["error"]
        .as_str()
        .unwrap()
        .contains("no change under infra"));

    // Terraform applied exactly once, and the state is still the second merge's.
    let applies = std::fs::read_to_string(&agent.provenance_log).unwrap();
    assert_eq!(applies.matches("--- apply").count(), 1);
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v2");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_job_past_its_timeout_is_stopped_and_sigterm_waits_for_it() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        job_timeout_secs: 3,
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    // The wrapper hangs after `apply` (as a stuck provider would).
    std::fs::write(&agent.hold_file, "").unwrap();
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(4, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-slow", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    wait_for("terraform apply to hang", Duration::from_secs(240), || {
        agent.applied_marker.exists().then_some(())
    });
    // An orderly stop while the job runs: the agent stops taking work but waits for
    // the job, which its timeout ends, and records it before exiting.
    let status = agent.terminate();
    assert!(
        status.success(),
        "agent exited with {status}: {}",
        agent.log_text()
    );
    let log = agent.audit();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(outcome(&log[0]), "failed");
    let error = log[0]["error"].as_str().unwrap();
    assert!(error.contains("timed out after 3 s"), "{error}");
    // Its output was kept, and the agent's secrets are not in it.
    let output = std::fs::read_to_string(
        agent
            .data_dir
            .join("jobs")
            .join(log[0]["job_id"].to_string())
            .join("output.log"),
    )
    .unwrap();
    assert!(output.contains("terraform plan"), "{output}");
    assert!(!output.contains(WEBHOOK_SECRET) && !output.contains(API_TOKEN));
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_force_push_rollback_is_deployed_and_a_commit_it_removed_never_is() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();
    let first = origin.merge_release("feature-1", "v1");
    let second = origin.merge_release("feature-2", "v2");
    for (n, sha) in [(1, &first), (2, &second)] {
        let body = merged_pull_request(n, sha, "octocat");
        let delivery = format!("d-merge-{n}");
        assert_eq!(
            deliver(addr, "pull_request", &delivery, &body, Some(WEBHOOK_SECRET)).status,
            202
        );
        agent.wait_for_record("the merge", |r| {
            r["delivery_id"] == delivery.as_str() && !outcome(r).is_empty()
        });
    }
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v2");

    // The second merge was bad: main is reset to the first and force-pushed. GitHub
    // sends a forced push whose `after` is the older, already deployed commit.
    origin.force_push(&first);
    let mut push: Value = serde_json::from_slice(&push_to_main(&first, "mona")).unwrap();
    push["forced"] = true.into();
    let body = serde_json::to_vec(&push).unwrap();
    assert_eq!(
        deliver(addr, "push", "d-rollback", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    let rollback = agent.wait_for_record("the rollback", |r| r["delivery_id"] == "d-rollback");
    assert_eq!(outcome(&rollback), "succeeded", "{rollback:#?}");
    assert_eq!(rollback["commit_sha"], first.as_str());
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v1");

    // The bad merge's signed delivery sent again under a new delivery id: its commit is
    // no longer on main, so it is skipped, and the audit says why.
    let body = merged_pull_request(2, &second, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-stale", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    let stale = agent.wait_for_record("the stale delivery", |r| r["delivery_id"] == "d-stale");
    assert_eq!(outcome(&stale), "skipped", "{stale:#?}");
    let why = stale["error"].as_str().unwrap();
    assert!(
        why.contains("not on branch main") && why.contains(&first),
        "{why}"
    );

    // A late delivery of the rollback's commit now that main is there and it runs: a
    // repeated delivery, skipped.
    let body = merged_pull_request(1, &first, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-first-again",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    let again = agent.wait_for_record("the repeated delivery", |r| {
        r["delivery_id"] == "d-first-again"
    });
    assert_eq!(outcome(&again), "skipped", "{again:#?}");

    let applies = std::fs::read_to_string(&agent.provenance_log).unwrap();
    assert_eq!(applies.matches("--- apply").count(), 3);
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v1");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

#[test]
fn a_rollback_without_a_webhook_is_deployed_by_the_poller() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let initial = git(&origin.clone, &["rev-parse", "HEAD"]);
    let mut agent = Agent::new(
        tmp.path(),
        &origin,
        &tf,
        AgentOptions {
            poller: true,
            ..AgentOptions::default()
        },
    );
    agent.start();
    agent.wait_for_record("the initial commit", |r| {
        r["commit_sha"] == initial.as_str() && outcome(r) == "succeeded"
    });
    let bad = origin.merge_release("feature-1", "v1");
    agent.wait_for_record("the merge", |r| {
        r["commit_sha"] == bad.as_str() && outcome(r) == "succeeded"
    });
    origin.force_push(&initial);
    agent.wait_for_record("the rollback", |r| {
        r["commit_sha"] == initial.as_str()
            && outcome(r) == "succeeded"
            && r["seq"].as_i64() > Some(2)
    });
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "initial");
    // The poller queued the rolled-back tip once, not at every round: while the next
    // merge runs, many rounds see it, and no job besides these four is made.
    let next = origin.merge_release("feature-2", "v2");
    agent.wait_for_record("the next merge", |r| {
        r["commit_sha"] == next.as_str() && outcome(r) == "succeeded"
    });
    let log = agent.audit();
    let outcomes: Vec<&str> = log.iter().map(outcome).collect();
    assert_eq!(outcomes, ["succeeded"; 4], "{log:#?}");
}

#[test]
fn a_form_encoded_delivery_is_applied_and_an_unknown_content_type_is_refused() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    // A hook created through GitHub's API defaults to content_type=form.
    let ping = serde_json::to_vec(&fixture("ping/payload.json")).unwrap();
    let r = deliver_form(addr, "ping", "d-form-ping", &ping, WEBHOOK_SECRET);
    assert_eq!(r.status, 200, "{}", r.body);
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(3, &sha, "octocat");
    let r = deliver_form(addr, "pull_request", "d-form", &body, WEBHOOK_SECRET);
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the form-encoded merge", |r| {
        r["delivery_id"] == "d-form" && !outcome(r).is_empty()
    });
    assert_eq!(outcome(&record), "succeeded", "{record:#?}");
    assert_eq!(record["pull_request"], 3);
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v1");

    // A signature over anything but the raw form body is refused.
    let mut tampered = deliver_form_body(&body);
    tampered.push(b'&');
    let sig = signature(WEBHOOK_SECRET, &deliver_form_body(&body));
    let r = http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "d-form-tampered"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", &sig),
        ],
        &tampered,
    );
    assert_eq!(r.status, 401, "{}", r.body);

    // A content type GitHub never sends is refused at once, saying how to fix the hook.
    let xml = b"<push/>";
    let sig = signature(WEBHOOK_SECRET, xml);
    let r = http(
        addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-xml"),
            ("Content-Type", "text/xml"),
            ("X-Hub-Signature-256", &sig),
        ],
        xml,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.body.contains("application/json"), "{}", r.body);
    assert!(
        !agent.log_text().contains('\u{1b}'),
        "colour codes in a log file"
    );
}

#[test]
fn terraform_outlives_a_kill_9_of_the_agent_and_the_change_is_made_once() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();
    // A resource whose creation is seen outside Terraform: its provisioner appends a
    // line to `creations`, then takes a while before Terraform can save the state.
    // The agent's whole process group is killed meanwhile: a Terraform in that group
    // (or dying of SIGPIPE on its output pipe) would leave the resource created but
    // not in the state, and the re-run would create it again.
    let started = tmp.path().join("creating");
    let creations = tmp.path().join("creations");
    let finished = tmp.path().join("finished");
    let observed = format!(
        r#"resource "terraform_data" "observed" {{
  provisioner "local-exec" {{
    command = "echo created >> '{creations}'; touch '{started}'; sleep 8; touch '{finished}'"
  }}
}}
"#,
        started = started.display(),
        creations = creations.display(),
        finished = finished.display()
    );
    let sha = origin.merge("observed", &[("infra/observed.tf", observed)]);
    let body = merged_pull_request(21, &sha, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-observed",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    wait_for(
        "the resource's creation to start",
        Duration::from_secs(240),
        || started.exists().then_some(()),
    );
    agent.kill9_group();

    // Terraform carries on without the agent, and saves the state.
    agent.start();
    let done = agent.wait_for_record("the interrupted job to run again", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    // Terraform (and the provisioner it ran) lived through the kill, and the agent
    // waited for it before running the job again.
    assert!(finished.exists(), "terraform died with the agent");
    assert!(
        agent
            .log_text()
            .contains("waiting for the Terraform a previous agent process started"),
        "{}",
        agent.log_text()
    );
    let created = std::fs::read_to_string(&creations).unwrap_or_default();
    assert_eq!(
        created.lines().count(),
        1,
        "created {} times",
        created.lines().count()
    );
    let summary = &done["plan_summary"];
    assert_eq!(summary["add"], 0, "{done:#?}");
    let log = agent.audit();
    let outcomes: Vec<&str> = log.iter().map(outcome).collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"], "{log:#?}");
    let (ok, text) = verify(&agent);
    assert!(ok, "{text}");
}

/// Named identities from `slipway-agent token`: the role decides what a token may do,
/// the identity's name is the audit's "who", a revoked token stops at once, and no
/// token is kept or listed.
#[test]
fn api_tokens_are_named_identities_with_roles() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(tmp.path(), &origin, &tf, AgentOptions::default());
    let addr = agent.start();

    let create = |name: &str, role: &str| -> String {
        let out = agent.cli(&["token", "create", "--name", name, "--role", role]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(token.starts_with("slw_"), "{token}");
        token
    };
    let alice = create("alice", "developer");
    let ops = create("ops", "admin");
    let viewer = create("dashboard", "viewer");

    // A bad name or role is refused, naming the fix.
    let out = agent.cli(&[
        "token",
        "create",
        "--name",
        "bad name",
        "--role",
        "developer",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("claude-code@alice"));
    let out = agent.cli(&["token", "create", "--name", "x", "--role", "root"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("admin, developer, agent, viewer or approver"));
    // Names are unique among live identities.
    let out = agent.cli(&["token", "create", "--name", "alice", "--role", "viewer"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let sha = origin.merge_release("feature-1", "v1");
    let body = format!(r#"{{"repository":"hello","commit":"{sha}"}}"#);
    let deploy = |token: &str| {
        let auth = format!("Bearer {token}");
        http(
            addr,
            "POST",
            "/api/v1/deploy",
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
    };

    // A developer cannot re-apply the branch (production included): told what to do.
    let r = deploy(&alice);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("open a pull request"), "{}", r.body);
    let r = deploy(&viewer);
    assert_eq!(r.status, 403, "{}", r.body);

    // An admin can; the audit names the identity.
    let r = deploy(&ops);
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the admin's deploy", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["merged_by"], "ops");
    assert_eq!(record["trigger"], "api");

    // Any identity reads job logs.
    let job = record["job_id"].to_string().trim_matches('"').to_owned();
    let auth = format!("Bearer {viewer}");
    let r = http(
        addr,
        "GET",
        &format!("/api/v1/jobs/{job}/log"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Revoked: refused at once, by the running agent.
    let out = agent.cli(&["token", "revoke", "ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = deploy(&ops);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);
    assert!(!r.body.contains(&ops), "the refusal echoes the token");

    // The list shows names and roles, never a token; the database holds none either.
    let out = agent.cli(&["token", "list"]);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    for name in ["alice", "ops", "dashboard"] {
        assert!(listed.contains(name), "{listed}");
    }
    let db = agent.data_dir.join("platform.db");
    let mode_of = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&db), 0o600);
    assert_eq!(mode_of(&agent.data_dir.join("slipway.db")), 0o600);
    assert_eq!(mode_of(&agent.data_dir), 0o700);
    let mut stored = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(agent.data_dir.join("platform.db-wal")) {
        stored.extend(wal);
    }
    for token in [&alice, &ops, &viewer] {
        assert!(!listed.contains(token.as_str()));
        assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

/// 10,000 hostile connections from one address (half idle, half sending headers a byte
/// at a time and never finishing) while a merge is delivered from another: the
/// delivery is taken, the merge applied, `/healthz` answers, and the attacker's
/// connections beyond its share are closed rather than held.
#[test]
fn ten_thousand_idle_and_slowloris_connections_do_not_stop_a_merge() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // This test holds 10,000 sockets itself: raise its own soft limit to the hard one.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 12_000,
        "this test needs a hard RLIMIT_NOFILE of at least 12000 (it is {hard}): raise it (ulimit -Hn) for the test run"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    // A limit well below the attack, as a default `LimitNOFILE=1024` would be: the
    // agent must keep descriptors for its database, git and Terraform.
    let options = AgentOptions {
        max_open_files: Some(2048),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The attack, from 127.0.0.2 (loopback answers the whole 127/8).
    let attackers = runtime.block_on(async {
        let mut streams = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let Ok(mut stream) = socket.connect(addr).await else {
                continue;
            };
            if i % 2 == 1 {
                let _ = stream
                    .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: a")
                    .await;
            }
            streams.push(stream);
        }
        streams
    });
    assert!(
        attackers.len() > 9_000,
        "only {} connected",
        attackers.len()
    );

    // The merge, delivered while the attack holds.
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(11, &sha, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "under-attack-1",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    agent.wait_for_record("the merge to be applied under attack", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(
        origin.release_state().expect("state")["input"]["value"],
        "v1"
    );
    let health = http(addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);

    // Past its share, the attacker's connections were closed by the agent.
    let closed = runtime.block_on(async {
        let mut closed = 0;
        for mut stream in attackers {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
                _ => {}
            }
        }
        closed
    });
    assert!(
        closed >= 9_000,
        "only {closed} attacker connections were closed"
    );
    agent.terminate();
}
