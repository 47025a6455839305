//! Drift detection through `slipway-agent`: a root deployed by a merge is planned on
//! its drift schedule with a read-only credential; a change made by hand outside Git
//! shows in the next scheduled plan (the commit status `slipway/drift/<root>` fails on
//! the deployed commit, the metric, the audit record) and changes nothing while
//! `remediate` is off; with `remediate = true` the deployed commit is applied again as
//! a merge job (trigger `drift-remediation`) and the next check is clean.
//!
//! The real agent binary, real git, real Terraform (the newest found, as the other
//! agent tests), a signed `push` delivery, the recording fake GitHub, and the local
//! runtime's platform, whose PRODUCTION rule lets the machine's admin change things by
//! hand (the drift) and jobs only from merges.

use std::time::Duration;

use serde_json::Value;
use slipway_tests::agent_support::*;
use slipway_tests::local_harness::{set_variable_by_hand, status_of};
use slipway_tests::preview_support::*;

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

/// A drift check's record that planned: its (add, change, destroy).
fn counts(r: &Value) -> (u64, u64, u64) {
    let p = &r["plan_summary"];
    let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r}"));
    (n("add"), n("change"), n("destroy"))
}

/// The `slipway/drift/prod` statuses posted on `commit`, oldest first: (state,
/// description).
fn drift_statuses(s: &PreviewSetup, commit: &str) -> Vec<(String, String)> {
    s.fake
        .api_requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.ends_with(&format!("/statuses/{commit}"))
                && r.body["context"] == "slipway/drift/prod"
        })
        .map(|r| {
            (
                r.body["state"].as_str().unwrap_or("").to_owned(),
                r.body["description"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The prod application's id and URL, from the runtime.
fn prod_app(s: &PreviewSetup) -> (String, String) {
    let status = status_of(s.home.path()).expect("the runtime's status");
    let app = status
        .applications
        .iter()
        .find(|a| a.name == "web")
        .unwrap_or_else(|| panic!("no application web in {status:?}"));
    let url = app.endpoints.get("http").expect("an http endpoint").clone();
    let url = if url.starts_with("http://") {
        url
    } else {
        format!("http://{url}")
    };
    (app.id.clone(), url)
}

fn metrics(addr: std::net::SocketAddr) -> String {
    http(addr, "GET", "/metrics", &[("Accept", "*/*")], b"").body
}

#[test]
fn drift_made_by_hand_shows_in_the_next_scheduled_plan_and_remediation_repairs_it() {
    let roots = r#"
[[repository.root]]
name = "prod"
path = "prod"
plan_pull_requests = false
modes = ["PRODUCTION"]
drift_interval_secs = 10
variables = { demo_app = "DEMO_APP", preview_name = "drift" }
"#;
    let mut s = preview_setup("false", roots, "");
    // The machine's admin may change PRODUCTION by hand; jobs only from merges.
    let platform_toml = s.home.path().join("platform.toml");
    let mut policy = std::fs::read_to_string(&platform_toml).unwrap();
    policy.push_str("\n[policy.PRODUCTION]\nroles = [\"admin\"]\njobs = [\"merge\"]\n");
    std::fs::write(&platform_toml, policy).unwrap();
    let addr = s.agent.start();

    // A merge deploys the root: the application answers v1.
    let state = s.tmp.path().join("prod-state");
    let deployed = s.origin.merge(
        "deploy-prod",
        &[("prod/main.tf", preview_root(&state, "PRODUCTION", "v1"))],
    );
    let r = deliver(
        addr,
        "push",
        "d-push-prod",
        &push_to_main(&deployed, "octocat"),
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let applied = s.agent.wait_for_record("the merge of prod", |r| {
        r["root"] == "prod" && r["kind"].is_null() && outcome(r) != "superseded"
    });
    assert_eq!(outcome(&applied), "succeeded", "{applied}");
    let (app_id, url) = prod_app(&s);
    assert_eq!(answers(&url).as_deref(), Some("v1"));

    // The first scheduled check: no drift, and GitHub hears so on the deployed commit.
    let clean = s.agent.wait_for_record("a drift check", |r| {
        r["kind"] == "drift" && r["root"] == "prod"
    });
    assert_eq!(outcome(&clean), "succeeded", "{clean}");
    assert_eq!(clean["trigger"], "drift");
    assert_eq!(clean["commit_sha"], deployed.as_str());
    assert_eq!(counts(&clean), (0, 0, 0));
    wait_for("the clean drift status", Duration::from_secs(60), || {
        drift_statuses(&s, &deployed)
            .iter()
            .any(|(state, _)| state == "success")
            .then_some(())
    });

    // An admin changes the application by hand, outside Git.
    set_variable_by_hand(s.home.path(), &app_id, "APP_VERSION", "hotfix").unwrap();
    wait_for("the hand-made change", Duration::from_secs(60), || {
        (answers(&url).as_deref() == Some("hotfix")).then_some(())
    });
    let after_change = s
        .agent
        .audit()
        .last()
        .map_or(0, |r| r["seq"].as_i64().unwrap());

    // The next scheduled plan shows it: the audit record, a failed status with the
    // counts on the deployed commit, the metric, a log line.
    let drift = s.agent.wait_for_record("the drift", |r| {
        r["kind"] == "drift" && r["seq"].as_i64() > Some(after_change) && outcome(r) == "succeeded"
    });
    assert_eq!(counts(&drift), (0, 1, 0), "{drift}");
    assert_eq!(
        drift["plan_summary"]["to_change"],
        serde_json::json!(["slipway_application.web"])
    );
    assert_eq!(drift["commit_sha"], deployed.as_str());
    wait_for("the drift status", Duration::from_secs(60), || {
        drift_statuses(&s, &deployed)
            .contains(&(
                "failure".to_owned(),
                "Drift: 0 to add, 1 to change, 0 to destroy".to_owned(),
            ))
            .then_some(())
    });
    let scrape = metrics(addr);
    assert!(
        scrape.contains("slipway_drift_detected{repository=\"hello\",root=\"prod\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("slipway_drift_checks_total{result=\"drift\"}")),
        "{scrape}"
    );
    assert!(s.agent.log_text().contains("drift detected"));

    // Without `remediate`, checks change nothing: another check, the change stays.
    let seq = drift["seq"].as_i64().unwrap();
    let again = s.agent.wait_for_record("another drift check", |r| {
        r["kind"] == "drift" && r["seq"].as_i64() > Some(seq) && outcome(r) == "succeeded"
    });
    assert_eq!(counts(&again), (0, 1, 0), "{again}");
    assert_eq!(answers(&url).as_deref(), Some("hotfix"));
    assert!(
        s.agent
            .audit()
            .iter()
            .all(|r| r["trigger"] != "drift-remediation"),
        "remediated without remediate = true"
    );
    // The platform saw the checks end, and refused nothing: they only planned.
    let platform = s.home.audit();
    assert!(
        platform
            .iter()
            .any(|r| r["action"] == "end-job" && r["how"] == "drift"),
        "{platform:#?}"
    );
    assert!(
        !platform
            .iter()
            .any(|r| r["how"] == "drift" && r["action"] != "end-job"),
        "a drift check changed something: {platform:#?}"
    );

    // With `remediate = true`: the drift is repaired by applying the deployed commit
    // again, as a merge job, and the next check is clean.
    assert!(s.agent.terminate().success());
    let config = std::fs::read_to_string(&s.agent.config).unwrap();
    std::fs::write(
        &s.agent.config,
        config.replace(
            "drift_interval_secs = 10\n",
            "drift_interval_secs = 10\nremediate = true\n",
        ),
    )
    .unwrap();
    let restarted = s
        .agent
        .audit()
        .last()
        .map_or(0, |r| r["seq"].as_i64().unwrap());
    let addr = s.agent.start();
    let repaired = s.agent.wait_for_record("the remediation", |r| {
        r["trigger"] == "drift-remediation"
            && r["seq"].as_i64() > Some(restarted)
            && outcome(r) != "superseded"
    });
    assert_eq!(outcome(&repaired), "succeeded", "{repaired}");
    assert!(repaired["kind"].is_null(), "a merge job: {repaired}");
    assert_eq!(repaired["commit_sha"], deployed.as_str());
    assert_eq!(counts(&repaired), (0, 1, 0), "{repaired}");
    assert_eq!(answers(&prod_app(&s).1).as_deref(), Some("v1"));
    // Exactly one remediation for that drift.
    let remediations = s
        .agent
        .audit()
        .iter()
        .filter(|r| r["trigger"] == "drift-remediation")
        .count();
    assert_eq!(remediations, 1);
    let seq = repaired["seq"].as_i64().unwrap();
    let clean = s
        .agent
        .wait_for_record("a clean check after the repair", |r| {
            r["kind"] == "drift" && r["seq"].as_i64() > Some(seq) && outcome(r) == "succeeded"
        });
    assert_eq!(counts(&clean), (0, 0, 0), "{clean}");
    let scrape = metrics(addr);
    assert!(
        scrape.contains("slipway_drift_detected{repository=\"hello\",root=\"prod\"} 0"),
        "{scrape}"
    );
    wait_for(
        "the clean status after the repair",
        Duration::from_secs(60),
        || {
            (drift_statuses(&s, &deployed)
                .last()
                .map(|(state, _)| state.as_str())
                == Some("success"))
            .then_some(())
        },
    );
    // The platform applied the repair from a merge job (PRODUCTION takes nothing
    // else), recorded as a drift remediation.
    let platform = s.home.audit();
    assert!(
        platform.iter().any(|r| r["outcome"] == "applied"
            && r["how"] == "drift-remediation"
            && r["action"] == "update"),
        "{platform:#?}"
    );
    assert!(s.agent.cli(&["audit", "verify"]).status.success());
}
