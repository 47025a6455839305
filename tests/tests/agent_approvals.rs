//! Approvals through `slipway-agent`: a merge of a root that requires approval waits
//! as `awaiting_approval`; its author's approval is refused (and recorded); an
//! approver's (the CLI, or a GitHub review by a mapped login) lets it run, with the
//! approver in the agent's audit record, in the job's credential and in the
//! platform's record; a newer merge supersedes a waiting one; and the platform refuses
//! a STAGING change from a merge job whose credential carries no approval.
//!
//! The real agent binary, real git, real Terraform (the newest found, as the other
//! agent tests: they use `terraform_data`), GitHub's payloads signed here, the
//! recording fake GitHub, and for the STAGING test the local runtime's platform.

use std::time::Duration;

use serde_json::Value;
use slipway_tests::agent_support::*;
use slipway_tests::preview_support::*;

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

/// The ids of the jobs a webhook's answer says it stored.
fn job_ids(r: &Response) -> Vec<i64> {
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{}", r.body));
    v["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {}", r.body))
        .iter()
        .map(|j| j.as_i64().unwrap())
        .collect()
}

/// Waits until job `id` is held for approval (the agent logs it).
fn wait_until_held(agent: &Agent, id: i64) {
    wait_for(
        "the job to await approval",
        Duration::from_secs(180),
        || {
            agent
                .log_text()
                .contains(&format!("`slipway-agent approve {id}`"))
                .then_some(())
        },
    );
}

#[test]
fn a_staging_merge_waits_is_refused_approval_by_its_author_and_runs_after_an_approver_approves() {
    // Two STAGING roots: `staging` requires approval; `unapproved` does not, so its
    // merge job's credential carries no approval and the platform refuses it.
    let roots = r#"
[[repository.root]]
name = "staging"
path = "staging"
plan_pull_requests = false
modes = ["STAGING"]
require_approval = true
variables = { demo_app = "DEMO_APP", preview_name = "staging" }

[[repository.root]]
name = "unapproved"
path = "unapproved"
plan_pull_requests = false
modes = ["STAGING"]
variables = { demo_app = "DEMO_APP", preview_name = "unapproved" }
"#;
    let approvals = "[approvals]\ngithub_logins = { Codertocat = \"alice\", bob-gh = \"bob\" }\n";
    let mut s = preview_setup("true", roots, approvals);
    let alice = s.agent.create_token("alice", "approver");
    let bob = s.agent.create_token("bob", "approver");
    let dev = s.agent.create_token("dave", "developer");
    let addr = s.agent.start();

    // Alice (GitHub `Codertocat`) writes pull request 21; octocat merges it.
    let state = s.tmp.path().join("staging-state");
    let files = [
        ("staging/main.tf", preview_root(&state, "STAGING", "s1")),
        (
            "unapproved/main.tf",
            preview_root(&s.tmp.path().join("unapproved-state"), "STAGING", "u1"),
        ),
    ];
    let pr = s.origin.push_pull_request(21, "feature-21", &files);
    let merge = s.origin.merge_branch("feature-21");
    let body = merged_pull_request_at(21, "feature-21", (&pr.0, &merge, &pr.2), "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "d-21-merged",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    // Roots in configuration order: infra, staging, unapproved; then infra's teardown.
    let staging_job = job_ids(&r)[1];

    // The root without approval: the platform refuses its STAGING change.
    let refused = s.agent.wait_for_record("the unapproved root's merge", |r| {
        r["root"] == "unapproved" && outcome(r) == "failed"
    });
    let error = slipway_tests::local_harness::collapse(
        &refused["error"].as_str().unwrap().replace('│', " "),
    );
    assert!(
        error.contains("STAGING changes need an approval"),
        "{error}"
    );

    wait_until_held(&s.agent, staging_job);
    let id = staging_job.to_string();
    // The author may not approve, nor may a developer.
    let out = s
        .agent
        .cli_env(&["approve", &id], &[("SLIPWAY_TOKEN", alice.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("`alice` authored this change") && said.contains("Codertocat"),
        "{said}"
    );
    let out = s
        .agent
        .cli_env(&["approve", &id], &[("SLIPWAY_TOKEN", dev.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("approver role"));
    let out = s.agent.cli(&["approve", &id]);
    assert!(!out.status.success(), "no token: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLIPWAY_TOKEN: no token"));
    assert!(
        s.agent
            .audit()
            .iter()
            .all(|r| !(r["root"] == "staging" && outcome(r) == "succeeded")),
        "the job ran without an approval"
    );
    assert!(std::fs::metadata(state.join("default.tfstate")).is_err());

    // Bob approves: the job runs, with bob in every record.
    let out = s
        .agent
        .cli_env(&["approve", &id], &[("SLIPWAY_TOKEN", bob.as_str())]);
    assert!(out.status.success(), "{out:?}");
    let applied = s.agent.wait_for_record("the approved merge", |r| {
        r["root"] == "staging" && (outcome(r) == "succeeded" || outcome(r) == "failed")
    });
    assert_eq!(outcome(&applied), "succeeded", "{applied}");
    assert_eq!(applied["approved_by"], "bob");
    assert_eq!(applied["commit_sha"], merge.as_str());
    let log = s.agent.audit();
    let of_job: Vec<&str> = log
        .iter()
        .filter(|r| r["job_id"] == staging_job)
        .map(outcome)
        .collect();
    assert_eq!(
        of_job,
        [
            "approval-refused",
            "approval-refused",
            "approved",
            "succeeded"
        ]
    );
    let refusals: Vec<&str> = log
        .iter()
        .filter(|r| r["job_id"] == staging_job && outcome(r) == "approval-refused")
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert!(refusals[0].starts_with("own-change"), "{refusals:?}");
    assert!(refusals[1].starts_with("not-an-approver"), "{refusals:?}");

    // The platform recorded the STAGING change with its approver, and the refusal.
    let platform = s.home.audit();
    assert!(
        platform.iter().any(|r| r["outcome"] == "applied"
            && r["object"] == "environment staging"
            && r["how"] == "git-merge"
            && r["approved_by"] == "bob"),
        "{platform:#?}"
    );
    assert!(
        platform.iter().any(|r| r["outcome"] == "refused"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("approval-required"))),
        "{platform:#?}"
    );
    assert!(s.agent.cli(&["audit", "verify"]).status.success());
}

#[test]
fn a_newer_merge_supersedes_a_waiting_one_and_a_review_by_an_approver_approves_it() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let extra = "require_approval = true\n\n[approvals]\ngithub_logins = { Codertocat = \"alice\", bob-gh = \"bob\" }\n";
    let options = AgentOptions {
        extra_config: extra.into(),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    agent.create_token("alice", "approver");
    agent.create_token("bob", "approver");
    let addr = agent.start();

    // Pull request 31 merged: its job waits.
    let first =
        origin.push_pull_request(31, "feature-31", &[("infra/main.tf", origin.main_tf("v2"))]);
    let merge_31 = origin.merge_branch("feature-31");
    let body = merged_pull_request_at(31, "feature-31", (&first.0, &merge_31, &first.2), "octocat");
    let r = deliver(addr, "pull_request", "d-31", &body, Some(WEBHOOK_SECRET));
    assert_eq!(r.status, 202, "{}", r.body);
    let job_31 = job_ids(&r)[0];
    wait_until_held(&agent, job_31);

    // Pull request 32 merged on top: it supersedes the waiting job, and waits itself.
    let second =
        origin.push_pull_request(32, "feature-32", &[("infra/main.tf", origin.main_tf("v3"))]);
    let merge_32 = origin.merge_branch("feature-32");
    let body = merged_pull_request_at(
        32,
        "feature-32",
        (&second.0, &merge_32, &second.2),
        "octocat",
    );
    let r = deliver(addr, "pull_request", "d-32", &body, Some(WEBHOOK_SECRET));
    assert_eq!(r.status, 202, "{}", r.body);
    let job_32 = job_ids(&r)[0];
    let superseded = agent.wait_for_record("the waiting job to be superseded", |r| {
        r["job_id"] == job_31 && outcome(r) == "superseded"
    });
    assert!(superseded["error"]
        .as_str()
        .unwrap()
        .contains(&merge_32[..12]));
    wait_until_held(&agent, job_32);
    assert!(origin.release_state().is_none(), "applied without approval");

    // The approval of the superseded job is refused as such, over the API too; the
    // configured API token is an admin, not an approver.
    let auth = format!("Bearer {API_TOKEN}");
    let api = |id: i64| {
        http(
            addr,
            "POST",
            &format!("/api/v1/jobs/{id}/approve"),
            &[("Authorization", auth.as_str())],
            b"",
        )
    };
    let r = api(job_31);
    assert_eq!(r.status, 409, "{}", r.body);
    let r = api(job_32);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("approver role"), "{}", r.body);

    // Reviews: the author's own approval, a comment, a review of an older head: none
    // approves. Then bob's approval of the merged head does.
    let review = |id: u64, who: &str, commit: &str, state: &str, delivery: &str| {
        let body = pull_request_review(32, id, who, commit, state);
        deliver(
            addr,
            "pull_request_review",
            delivery,
            &body,
            Some(WEBHOOK_SECRET),
        )
    };
    let r = review(1, "Codertocat", &second.0, "approved", "d-r1");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"approved\":[]"), "{}", r.body);
    let r = review(2, "bob-gh", &second.0, "commented", "d-r2");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = review(3, "bob-gh", &first.0, "approved", "d-r3");
    assert!(r.body.contains("\"approved\":[]"), "{}", r.body);
    assert!(origin.release_state().is_none(), "applied without approval");
    let r = review(4, "bob-gh", &second.0, "approved", "d-r4");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        r.body.contains(&format!("\"approved\":[{job_32}]")),
        "{}",
        r.body
    );
    // A redelivery changes nothing.
    assert!(review(4, "bob-gh", &second.0, "approved", "d-r4")
        .body
        .contains("duplicate"));

    let applied = agent.wait_for_record("the approved merge", |r| {
        r["job_id"] == job_32 && (outcome(r) == "succeeded" || outcome(r) == "failed")
    });
    assert_eq!(outcome(&applied), "succeeded", "{applied}");
    assert_eq!(applied["approved_by"], "bob");
    assert_eq!(
        applied["covered_commits"],
        serde_json::json!([merge_31, merge_32]),
        "the superseded merge is applied with it"
    );
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v3");
    let refusals: Vec<String> = agent
        .audit()
        .iter()
        .filter(|r| r["job_id"] == job_32 && outcome(r) == "approval-refused")
        .map(|r| r["error"].as_str().unwrap().to_owned())
        .collect();
    for code in ["own-change", "stale-review"] {
        assert!(
            refusals.iter().any(|e| e.starts_with(code)),
            "{code}: {refusals:?}"
        );
    }
    assert!(agent.cli(&["audit", "verify"]).status.success());
}
