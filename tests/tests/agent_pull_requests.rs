//! Pull requests through `slipway-agent`: a plan on every push, edited in place in one
//! comment per root; and a preview per pull request on the local runtime, with its URL
//! posted, updated on the next push, destroyed when the pull request closes or its
//! time to live passes, and refused when it reaches for PRODUCTION.
//!
//! The real agent binary, real git (a bare origin that publishes `refs/pull/N/head`
//! and `refs/pull/N/merge` as GitHub does), real Terraform, GitHub's own webhook
//! payloads signed here, and the recording fake GitHub. The plan tests use
//! `terraform_data` (Terraform 1.4 and later, so the newest Terraform found), as the
//! other agent tests do; the preview tests use the Slipway provider's local runtime.

use std::time::Duration;

use serde_json::Value;
use slipway_tests::agent_support::*;
use slipway_tests::fake_github::{Auth, FakeGitHub};
use slipway_tests::preview_support::*;

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

#[test]
fn a_pull_request_gets_one_plan_comment_updated_on_every_push_and_the_merge_says_it_matched() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    let origin = Origin::new(tmp.path());
    // A second root the pull request does not touch: it gets no plan.
    let extra = format!(
        "[[repository.root]]\nname = \"docs\"\npath = \"docs\"\n\n{}",
        github_token_config(
            tmp.path(),
            &fake.api_url,
            GITHUB_TOKEN,
            "comment_on_pull_request = true"
        )
    );
    let options = AgentOptions {
        public_url: Some(PUBLIC_URL.into()),
        extra_config: extra,
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();

    // Opened: a plan of the test merge, with a read-only credential: nothing applied.
    let first =
        origin.push_pull_request(5, "feature-5", &[("infra/main.tf", origin.main_tf("v2"))]);
    let opened = pull_request_event("opened", 5, "feature-5", (&first.0, &first.1, &first.2));
    let r = send(addr, &opened, "d-pr-5-opened");
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the plan of pull request 5", |r| {
        r["kind"] == "pr-plan" && r["root"] == "infra" && outcome(r) != "superseded"
    });
    assert_eq!(outcome(&record), "succeeded", "{record}");
    assert_eq!(record["trigger"], "pull-request");
    assert_eq!(record["pull_request"], 5);
    assert_eq!(
        record["commit_sha"],
        first.1.as_str(),
        "GitHub's test merge is planned"
    );
    assert_eq!(
        record["plan_summary"]["to_add"][0],
        "terraform_data.release"
    );
    assert!(
        origin.release_state().is_none(),
        "a pull request's plan changed the state"
    );
    let plan_job = record["job_id"].as_i64().unwrap();
    let (comment_id, body) =
        wait_for_comment(&fake, &agent, 5, "<!-- slipway:plan:infra -->", "1 to add");
    assert!(body.contains("- add `terraform_data.release`"), "{body}");
    assert!(
        body.contains(&format!("{PUBLIC_URL}/api/v1/jobs/{plan_job}/log")),
        "{body}"
    );
    assert!(!body.contains("PRODUCTION"), "{body}");
    fake.wait_for("the plan's commit status", Duration::from_secs(60), |rs| {
        rs.iter().any(|r| {
            r.path.ends_with(&format!("/statuses/{}", first.0))
                && r.body["context"] == "slipway/plan/infra"
                && r.body["state"] == "success"
        })
    });
    let docs = agent.wait_for_record("the untouched root's plan to be skipped", |r| {
        r["kind"] == "pr-plan" && r["root"] == "docs"
    });
    assert_eq!(outcome(&docs), "skipped");
    assert!(docs["error"]
        .as_str()
        .unwrap()
        .contains("changes none of this root's paths"));

    // The comment's id survives a restart: the next push edits it, finding it by id.
    agent.kill9();
    let addr = agent.start();
    let second =
        origin.push_pull_request(5, "feature-5", &[("infra/main.tf", origin.main_tf("v3"))]);
    let pushed = pull_request_event(
        "synchronize",
        5,
        "feature-5",
        (&second.0, &second.1, &second.2),
    );
    assert_eq!(send(addr, &pushed, "d-pr-5-sync").status, 202);
    let short = &second.1[..7];
    let (edited_id, body) = wait_for_comment(
        &fake,
        &agent,
        5,
        "<!-- slipway:plan:infra -->",
        &format!("`{short}`"),
    );
    assert_eq!(edited_id, comment_id, "a new comment instead of an edit");
    assert_eq!(
        marked(&fake, 5, "<!-- slipway:plan:infra -->").len(),
        1,
        "one plan comment per root"
    );
    assert!(marked(&fake, 5, "<!-- slipway:plan:docs -->").is_empty());
    assert!(body.contains("1 to add"), "{body}");
    let requests = fake.api_requests();
    // The second plan's edit, once. (A kill -9 between the first comment and the
    // record of its step makes the restarted agent repeat that step: an edit with
    // the first plan's text again, harmless and not counted here.)
    let edits = requests
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path.ends_with(&format!("/issues/comments/{comment_id}"))
                && r.body["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(&format!("`{short}`")))
        })
        .count();
    assert_eq!(edits, 1, "the second plan edits the first comment");
    let lists = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/issues/5/comments"))
        .count();
    assert_eq!(
        lists, 1,
        "after the restart the stored id was used, not a search"
    );

    // A fork's pull request gets no plan: its code would run here.
    let mut fork = pull_request_event("opened", 6, "evil", (&second.0, &second.1, &second.2));
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World".into();
    let r = send(addr, &fork, "d-pr-6-fork");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ignored"), "{}", r.body);

    // The merge: applied, and the pull request hears that the plan matched.
    let merge = origin.merge_branch("feature-5");
    let body = merged_pull_request(5, &merge, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "d-pr-5-merged",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == merge.as_str() && outcome(r) == "succeeded" && r["root"] == "infra"
    });
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v3");
    let (_, merged) = wait_for_comment(
        &fake,
        &agent,
        5,
        &format!("**Slipway** applied `{}` to `infra`", &merge[..7]),
        "applied plan",
    );
    assert!(
        merged.contains("The applied plan matched the last plan shown on this pull request"),
        "{merged}"
    );
    let out = agent.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_preview_comes_up_is_updated_and_is_destroyed_when_the_pull_request_closes() {
    let attack = "[[repository.root]]\nname = \"attack\"\npath = \"attack\"\nplan_pull_requests = false\npreview = true\nvariables = { demo_app = \"DEMO_APP\" }\n";
    let mut s = preview_setup("true", attack, "");
    let addr = s.agent.start();

    // Opened: the preview comes up with its URL posted, on the comment and as a
    // transient deployment.
    let first = s.push(9, "pr-9-v1");
    let opened = pull_request_event("opened", 9, "feature-9", (&first.0, &first.1, &first.2));
    assert_eq!(send(addr, &opened, "d-pr-9-opened").status, 202);
    let url = s.posted_url(9, &first.0);
    wait_for("the preview to answer", Duration::from_secs(60), || {
        (answers(&url).as_deref() == Some("pr-9-v1")).then_some(())
    });
    s.fake
        .wait_for("the preview's deployment", Duration::from_secs(60), |rs| {
            rs.iter().any(|r| {
                r.path.ends_with("/statuses")
                    && r.body["state"] == "success"
                    && r.body["environment_url"] == url.as_str()
            })
        });
    let created = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/deployments"))
        .expect("a deployment");
    assert_eq!(created.body["transient_environment"], true);
    assert_eq!(created.body["environment"], "infra-pr-9");
    assert_eq!(created.body["ref"], first.0.as_str());

    // The attack: the same pull request's `attack` root, whose code asks for a
    // PRODUCTION environment, is refused at plan by the platform: a preview job's
    // credential covers PREVIEW environments only.
    let refused = s.agent.wait_for_record("the attack root's preview", |r| {
        r["root"] == "attack" && r["kind"] == "preview"
    });
    assert_eq!(outcome(&refused), "failed", "{refused}");
    let error = slipway_tests::local_harness::collapse(
        &refused["error"].as_str().unwrap().replace('│', " "),
    );
    assert!(
        error.contains("PRODUCTION environments are closed to preview jobs"),
        "{error}"
    );
    wait_for_comment(
        &s.fake,
        &s.agent,
        9,
        "<!-- slipway:preview:attack -->",
        "failed (job",
    );
    assert_eq!(s.demo_processes().len(), 1, "only the infra preview runs");
    assert!(s.home.audit().iter().any(|r| r["outcome"] == "refused"
        && r["how"] == "pr-preview"
        && r["reason"]
            .as_str()
            .is_some_and(|x| x.contains("mode-closed-to-job-kind"))));

    // A second push updates it in place: same URL, new version.
    let second = s.push(9, "pr-9-v2");
    let pushed = pull_request_event(
        "synchronize",
        9,
        "feature-9",
        (&second.0, &second.1, &second.2),
    );
    assert_eq!(send(addr, &pushed, "d-pr-9-sync").status, 202);
    let again = s.posted_url(9, &second.0);
    assert_eq!(again, url, "the preview's URL changed");
    wait_for("the update to answer", Duration::from_secs(60), || {
        (answers(&url).as_deref() == Some("pr-9-v2")).then_some(())
    });
    assert_eq!(
        marked(&s.fake, 9, "<!-- slipway:preview:infra -->").len(),
        1,
        "one preview comment, edited"
    );

    // Closed (not merged), and the agent is killed in the middle of the teardown
    // (Terraform destroyed, the workspace not yet deleted): the restarted agent finishes
    // it. Nothing of the preview keeps running, its state is gone, its deployment is
    // inactive, and both audit logs say how.
    std::fs::write(&s.agent.hold_file, "/infra").unwrap();
    let _ = std::fs::remove_file(&s.agent.applied_marker);
    let closed = pull_request_event("closed", 9, "feature-9", (&second.0, &second.1, &second.2));
    assert_eq!(send(addr, &closed, "d-pr-9-closed").status, 202);
    wait_for("the teardown's destroy", Duration::from_secs(180), || {
        s.agent.applied_marker.exists().then_some(())
    });
    s.agent.kill9();
    std::fs::remove_file(&s.agent.hold_file).unwrap();
    s.agent.start();
    let held = std::fs::read_to_string(&s.agent.wrapper_pid).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", held.trim()])
        .status();
    let done = s.agent.wait_for_record("the teardown to finish", |r| {
        r["kind"] == "preview-destroy" && r["root"] == "infra" && outcome(r) == "succeeded"
    });
    assert_eq!(done["trigger"], "pr-closed");
    let log = s.agent.audit();
    assert!(
        log.iter()
            .any(|r| r["kind"] == "preview-destroy" && outcome(r) == "interrupted"),
        "the teardown was not interrupted: {log:#?}"
    );
    wait_for("no replica left", Duration::from_secs(30), || {
        s.demo_processes().is_empty().then_some(())
    });
    assert!(answers(&url).is_none(), "the preview still answers");
    assert!(
        !s.tmp.path().join("preview-state/workspaces/pr-9").exists(),
        "the preview's state was not removed"
    );
    wait_for_comment(
        &s.fake,
        &s.agent,
        9,
        "<!-- slipway:preview:infra -->",
        "destroyed (how: `pr-closed`",
    );
    s.fake.wait_for(
        "the deployment marked inactive",
        Duration::from_secs(60),
        |rs| {
            rs.iter()
                .any(|r| r.path.ends_with("/statuses") && r.body["state"] == "inactive")
        },
    );
    // The platform's record says how the agent decided on the teardown, as the job's
    // credential said: `pr-closed`, not the preview's own `pr-preview`.
    let platform = s.home.audit();
    assert!(
        platform.iter().any(|r| r["how"] == "pr-closed"
            && r["action"] == "delete"
            && r["outcome"] == "applied"
            && r["environment"] == "pr-9"),
        "{platform:#?}"
    );
    assert!(
        !platform
            .iter()
            .any(|r| r["how"] == "pr-preview" && r["action"] == "delete"),
        "{platform:#?}"
    );
    // Each job that ran Terraform also ended in the platform's log, with the ending the
    // agent signed: the preview with its plan, the refused one with its error.
    let ended = |outcome: &str, reason: &str| {
        platform.iter().any(|r| {
            r["action"] == "end-job"
                && r["how"] == "pr-preview"
                && r["outcome"] == outcome
                && r["reason"].as_str().is_some_and(|x| x.starts_with(reason))
        })
    };
    assert!(ended("applied", "succeeded: "), "{platform:#?}");
    assert!(ended("failed", "failed: "), "{platform:#?}");
    let out = s.agent.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn previews_past_their_ttl_or_the_cap_or_of_pull_requests_closed_unseen_do_not_stay_up() {
    let mut s = preview_setup(
        "{ ttl_secs = 10 }",
        "",
        "[previews]\ncheck_interval_secs = 1\nsweep_interval_secs = 3600\n",
    );
    // One preview at a time in this repository.
    let config = std::fs::read_to_string(&s.agent.config).unwrap().replace(
        "[[repository.root]]\nname = \"infra\"",
        "max_previews = 1\n\n[[repository.root]]\nname = \"infra\"",
    );
    std::fs::write(&s.agent.config, config).unwrap();
    let addr = s.agent.start();

    // Up, then idle past its time to live: destroyed, how `ttl`.
    let pr10 = s.push(10, "pr-10");
    let opened = pull_request_event("opened", 10, "feature-10", (&pr10.0, &pr10.1, &pr10.2));
    assert_eq!(send(addr, &opened, "d-pr-10").status, 202);
    let url = s.posted_url(10, &pr10.0);
    assert_eq!(answers(&url).as_deref(), Some("pr-10"));

    // Past the cap meanwhile: pull request 11 gets no preview, and is told why.
    let pr11 = s.push(11, "pr-11");
    let opened = pull_request_event("opened", 11, "feature-11", (&pr11.0, &pr11.1, &pr11.2));
    assert_eq!(send(addr, &opened, "d-pr-11").status, 202);
    let (_, why) = wait_for_comment(
        &s.fake,
        &s.agent,
        11,
        "<!-- slipway:preview:infra -->",
        "max_previews = 1",
    );
    assert!(why.contains("none for this pull request"), "{why}");

    let expired = s
        .agent
        .wait_for_record("the preview's time to live to pass", |r| {
            r["kind"] == "preview-destroy" && r["pull_request"] == 10 && outcome(r) == "succeeded"
        });
    assert_eq!(expired["trigger"], "ttl");
    wait_for(
        "the expired preview to stop",
        Duration::from_secs(30),
        || (s.demo_processes().is_empty() && answers(&url).is_none()).then_some(()),
    );
    wait_for_comment(
        &s.fake,
        &s.agent,
        10,
        "<!-- slipway:preview:infra -->",
        "destroyed (how: `ttl`",
    );
    let platform = s.home.audit();
    assert!(
        platform.iter().any(|r| r["how"] == "ttl"
            && r["action"] == "delete"
            && r["outcome"] == "applied"
            && r["environment"] == "pr-10"),
        "{platform:#?}"
    );

    // A preview whose pull request closed while the agent was down (the webhook never
    // came): the sweep at the next start finds it and destroys it, how `pr-closed`.
    let pr12 = s.push(12, "pr-12");
    let opened = pull_request_event("opened", 12, "feature-12", (&pr12.0, &pr12.1, &pr12.2));
    assert_eq!(send(addr, &opened, "d-pr-12").status, 202);
    let url = s.posted_url(12, &pr12.0);
    s.agent.kill9();
    s.fake.set_pull_request_state(12, "closed");
    s.agent.start();
    let swept = s
        .agent
        .wait_for_record("the sweep to destroy the preview", |r| {
            r["kind"] == "preview-destroy" && r["pull_request"] == 12 && outcome(r) == "succeeded"
        });
    assert_eq!(swept["trigger"], "pr-closed");
    wait_for("the swept preview to stop", Duration::from_secs(30), || {
        (s.demo_processes().is_empty() && answers(&url).is_none()).then_some(())
    });
}
