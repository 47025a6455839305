//! The agent's state in PostgreSQL: the store conformance checks against a real
//! server, and the real agent binary deploying a merge with its queue, deliveries and
//! audit log in that database (none of it in its data directory), across a `kill -9`
//! and restart, with `audit verify` naming a record edited in the database.
//!
//! Each test starts a PostgreSQL server of its own from the machine's binaries
//! (`apt-get install postgresql`; `.ci/run` installs it), in a temporary folder,
//! reached on a Unix socket only.

use serde_json::Value;
use slipway_agent::store::postgres::PostgresStore;
use slipway_agent::store::AgentStore;
use slipway_tests::agent_support::*;
use slipway_tests::local_postgres::LocalPostgres;

#[test]
fn the_postgres_store_conforms() {
    let pg = LocalPostgres::start();
    let store = PostgresStore::open(&pg.settings()).unwrap();
    slipway_agent::store_conformance::all(&store);
    // A second agent opening the same database finds its tables and its rows.
    let again = PostgresStore::open(&pg.settings()).unwrap();
    let again: &dyn AgentStore = &again;
    let counts = again.read(|tx| tx.job_counts()).unwrap();
    assert!(counts.done > 0 && counts.queued > 0, "{counts:?}");
}

#[test]
fn a_bad_database_is_named_without_its_settings() {
    let e = PostgresStore::open("host=/nonexistent/socket-dir dbname=slipway user=agent")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("postgres database slipway on /nonexistent/socket-dir"),
        "{e}"
    );
    assert!(!e.contains("user=agent"), "{e}");
}

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

#[test]
fn an_agent_on_postgres_deploys_a_merge_and_keeps_its_log_there() {
    let pg = LocalPostgres::start();
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let mut agent = Agent::new(
        tmp.path(),
        &origin,
        &tf,
        AgentOptions {
            postgres: Some(pg.settings()),
            ..AgentOptions::default()
        },
    );
    let addr = agent.start();

    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(7, &sha, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "pg-delivery-1",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(record["delivery_id"], "pg-delivery-1");
    assert_eq!(record["merged_by"], "octocat");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v1");
    // The state is in PostgreSQL, not in the data directory.
    assert!(!agent.data_dir.join("slipway.db").exists());
    assert_eq!(
        pg.psql("SELECT outcome FROM jobs ORDER BY id").trim(),
        "succeeded"
    );
    assert_eq!(
        pg.psql("SELECT delivery_id FROM deliveries").trim(),
        "pg-delivery-1"
    );

    // Killed and started again: the delivery id is remembered, so GitHub's redelivery
    // runs nothing, and a new merge deploys.
    agent.kill9();
    let addr = agent.start();
    let r = deliver(
        addr,
        "pull_request",
        "pg-delivery-1",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert!(r.status == 200 || r.status == 202, "{}", r.body);
    let sha2 = origin.merge_release("feature-2", "v2");
    let body2 = merged_pull_request(8, &sha2, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "pg-delivery-2",
        &body2,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    agent.wait_for_record("the second merge to be applied", |r| {
        r["commit_sha"] == sha2.as_str() && outcome(r) == "succeeded"
    });
    assert_eq!(pg.psql("SELECT COUNT(*) FROM jobs").trim(), "2");
    assert_eq!(origin.release_state().unwrap()["input"]["value"], "v2");

    let out = agent.cli(&["audit", "verify"]);
    assert!(out.status.success(), "verify: {out:?}");

    // Someone with the database's password edits a record: verify names it.
    agent.kill9();
    let seq = record["seq"].as_i64().unwrap();
    pg.psql(&format!(
        "UPDATE audit SET merged_by = 'mallory' WHERE seq = {seq}"
    ));
    let out = agent.cli(&["audit", "verify"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "verify passed after an edit: {text}");
    assert!(text.contains(&format!("record {seq}:")), "{text}");
}
