use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tfplug::{AnyResource, Context};

use super::*;
use crate::resources::environment::EnvironmentResource;
use crate::resources::leaked_secrets;
use crate::resources::testing::{apply, client, plan, plan_destroy, plan_is_empty, value};
use crate::runtime::local::rules::{check_application, Checks};
use crate::runtime::memory::MemoryRuntime;
use crate::runtime::{PlanProblem, PlannedApplication, RolloutCause, Runtime};

/// The local runtime's rules, as they apply on the replicas' machine.
fn local_rules(planned: &PlannedApplication<'_>) -> Vec<PlanProblem> {
    check_application(planned, Checks::SpecAndMachine)
}

fn resource() -> Arc<dyn AnyResource<SlipwayClient>> {
    tfplug::resource(ApplicationResource)
}

fn config(json: serde_json::Value) -> Value {
    value(&ApplicationResource.schema(), json)
}

async fn environment(client: &SlipwayClient, name: &str, mode: &str) -> String {
    let r = tfplug::resource(EnvironmentResource);
    let cfg = value(
        &EnvironmentResource.schema(),
        json!({"name": name, "mode": mode}),
    );
    let state = apply(&*r, client, &cfg, &Value::Null).await.unwrap();
    state.get("id").as_str().unwrap().to_owned()
}

/// `sh` is on PATH wherever these tests run.
fn web(env: &str) -> serde_json::Value {
    json!({
        "environment_id": env,
        "name": "web",
        "command": "sh",
        "args": ["-c", "exec sleep 1000"],
        "replicas": 2,
        "ports": [{"name": "http", "port": 8080, "public": true}, {"name": "metrics", "port": 9090}],
        "variables": {"GREETING": "hello"},
        "secrets": {"API_KEY": "very-secret-value"},
        "healthcheck": {"type": "http", "port": 8080, "interval": "1m"},
        "resources": {"memory": "256Mi"},
    })
}

#[tokio::test]
async fn lifecycle_create_read_update_import_delete() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let env = environment(&client, "dev", "DEVELOPMENT").await;
    let r = resource();
    let ctx = Context::background();

    let cfg = config(web(&env));
    let change = plan(&*r, &client, &cfg, &Value::Null).await.unwrap();
    assert!(change.planned.get("id").is_unknown());
    assert!(change.planned.get("endpoints").is_unknown());
    assert_eq!(change.planned.get("status"), &Value::from("running"));
    let hc = change.planned.get("healthcheck");
    assert_eq!(
        hc.get("path"),
        &Value::from("/"),
        "the default, known at plan"
    );
    assert_eq!(hc.get("timeout"), &Value::from("5s"));
    assert_eq!(
        change.planned.get("ports").as_elements().unwrap()[1].get("protocol"),
        &Value::from("tcp")
    );

    let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
    let id = state.get("id").as_str().unwrap().to_owned();
    assert_eq!(
        state.get("endpoints").get("http"),
        &Value::from("http://127.0.0.1:8080")
    );
    assert!(state.get("endpoints").get("metrics").is_null());
    assert_eq!(state.get("healthcheck").get("interval"), &Value::from("1m"));
    let app = runtime.get_application(&id).await.unwrap().unwrap();
    assert_eq!(app.spec.replicas, 2);
    assert_eq!(app.spec.secrets["API_KEY"], "very-secret-value");
    assert_eq!(
        app.spec.healthcheck.as_ref().unwrap().interval,
        Duration::from_secs(60)
    );
    assert_eq!(app.change.trigger, "terraform-apply");

    // Steady: read changes nothing, the plan is empty.
    let read = r.read(&ctx, &client, &state).await.unwrap();
    assert_eq!(read, state);
    assert!(plan_is_empty(&*r, &client, &cfg, &read).await);

    // Changing a variable updates in place and keeps id, status and endpoints
    // known in the plan.
    let mut json2 = web(&env);
    json2["variables"]["GREETING"] = json!("bonjour");
    let cfg2 = config(json2);
    let change = plan(&*r, &client, &cfg2, &state).await.unwrap();
    assert!(change.requires_replace.is_empty());
    assert_eq!(change.planned.get("id"), state.get("id"));
    assert_eq!(change.planned.get("endpoints"), state.get("endpoints"));
    assert_eq!(change.planned.get("status"), &Value::from("running"));
    let state2 = apply(&*r, &client, &cfg2, &state).await.unwrap();
    let app = runtime.get_application(&id).await.unwrap().unwrap();
    assert_eq!(app.spec.variables["GREETING"], "bonjour");
    assert!(plan_is_empty(&*r, &client, &cfg2, &state2).await);

    // Changing the ports lets the endpoints be recomputed.
    let mut json3 = web(&env);
    json3["ports"] = json!([{"name": "http", "port": 8081, "public": true}]);
    let change = plan(&*r, &client, &config(json3.clone()), &state2)
        .await
        .unwrap();
    assert!(change.planned.get("endpoints").is_unknown());
    let state3 = apply(&*r, &client, &config(json3.clone()), &state2)
        .await
        .unwrap();
    assert_eq!(
        state3.get("endpoints").get("http"),
        &Value::from("http://127.0.0.1:8081")
    );

    // Scaling to zero stops it.
    let mut json4 = json3.clone();
    json4["replicas"] = json!(0);
    let state4 = apply(&*r, &client, &config(json4.clone()), &state3)
        .await
        .unwrap();
    assert_eq!(state4.get("status"), &Value::from("stopped"));

    // Nested attributes are computed only for Terraform 1.0's sake: removing one
    // from the configuration still removes it.
    let mut without = json4.clone();
    without.as_object_mut().unwrap().remove("healthcheck");
    without.as_object_mut().unwrap().remove("resources");
    let change = plan(&*r, &client, &config(without), &state4).await.unwrap();
    assert!(change.planned.get("healthcheck").is_null());
    assert!(change.planned.get("resources").get("memory").is_null());
    assert!(change.planned.get("timeouts").is_null());

    // Moving to another environment replaces.
    let other = environment(&client, "other", "DEVELOPMENT").await;
    let mut json5 = json4.clone();
    json5["environment_id"] = json!(other);
    let change = plan(&*r, &client, &config(json5), &state4).await.unwrap();
    assert_eq!(change.requires_replace, vec![root("environment_id")]);

    // Import by id, and by names, gives the same state (timeouts aside, which
    // live only in the configuration).
    let imported = r.import(&ctx, &client, &id).await.unwrap();
    let imported = r.read(&ctx, &client, &imported).await.unwrap();
    assert_eq!(imported, state4);
    let by_names = r.import(&ctx, &client, "dev/web").await.unwrap();
    assert_eq!(by_names.get("id"), state4.get("id"));
    assert!(plan_is_empty(&*r, &client, &config(json4.clone()), &imported).await);

    r.delete(&ctx, &client, &state4).await.unwrap();
    assert!(runtime.get_application(&id).await.unwrap().is_none());
    r.delete(&ctx, &client, &state4).await.unwrap();
}

/// Import knows only what the runtime has; whether the configuration spells out a
/// default (`path = "/"`, `args = []`, empty maps and lists) or leaves it out, the
/// first plan after import is empty.
#[tokio::test]
async fn import_round_trips_defaults_written_or_not() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let env = environment(&client, "dev", "DEVELOPMENT").await;
    let r = resource();
    let ctx = Context::background();
    let bare = json!({
        "environment_id": env,
        "name": "web",
        "command": "sh",
        "healthcheck": {"type": "http", "port": 8080},
    });
    let mut explicit = bare.clone();
    explicit["args"] = json!([]);
    explicit["ports"] = json!([]);
    explicit["variables"] = json!({});
    // Not `secrets = {}`: secrets are write-only, so never computed, and an import
    // (which sees none) plans `{}` and unset alike only on Terraform 1.11 and later.
    explicit["resources"] = json!({});
    explicit["healthcheck"]["path"] = json!("/");
    for json in [bare, explicit] {
        let cfg = config(json.clone());
        let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        assert!(plan_is_empty(&*r, &client, &cfg, &state).await, "{json}");
        let id = state.get("id").as_str().unwrap().to_owned();
        let imported = r.import(&ctx, &client, &id).await.unwrap();
        let imported = r.read(&ctx, &client, &imported).await.unwrap();
        assert_eq!(imported, state, "{json}");
        assert!(plan_is_empty(&*r, &client, &cfg, &imported).await, "{json}");
        r.delete(&ctx, &client, &state).await.unwrap();
    }
}

#[tokio::test]
async fn read_reflects_reality() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let env = environment(&client, "dev", "DEVELOPMENT").await;
    let r = resource();
    let ctx = Context::background();
    let cfg = config(web(&env));
    let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
    let id = state.get("id").as_str().unwrap().to_owned();

    // Scaled outside Terraform: read shows it, the plan changes it back.
    assert!(runtime.scale(&id, 5));
    let read = r.read(&ctx, &client, &state).await.unwrap();
    assert_eq!(read.get("replicas"), &Value::from(5));
    let change = plan(&*r, &client, &cfg, &read).await.unwrap();
    assert_eq!(change.planned.get("replicas"), &Value::from(2));
    let fixed = apply(&*r, &client, &cfg, &read).await.unwrap();
    assert_eq!(fixed.get("replicas"), &Value::from(2));
    assert!(plan_is_empty(&*r, &client, &cfg, &fixed).await);

    // Deleted outside Terraform: read drops it, and it is planned again.
    assert!(runtime.forget_application(&id));
    assert!(r.read(&ctx, &client, &fixed).await.unwrap().is_null());
    let again = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
    assert_ne!(again.get("id"), fixed.get("id"));
}

#[tokio::test]
async fn bad_input_names_the_attribute() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let env = environment(&client, "dev", "DEVELOPMENT").await;
    let r = resource();

    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (json!({"name": "Bad_Name"}), "name", "not a valid name"),
        (
            json!({"ports": [{"name": "http", "port": 70000}]}),
            "ports[0]",
            "ports[0].port: 70000 is out of range",
        ),
        (
            json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            "ports[1]",
            "unique",
        ),
        (json!({"replicas": -1}), "replicas", "out of range"),
        (
            json!({"command": "/definitely/not/here"}),
            "command",
            "/definitely/not/here does not exist",
        ),
        (
            json!({"command": "no-such-program-xyz"}),
            "command",
            "not an executable on PATH",
        ),
        (
            json!({"working_dir": "/definitely/not/a/dir"}),
            "working_dir",
            "not a directory",
        ),
        (
            json!({"healthcheck": {"type": "tcp", "interval": "10s"}}),
            "healthcheck",
            "needs `port`",
        ),
        (
            json!({"healthcheck": {"type": "exec", "port": 80, "command": ["true"]}}),
            "healthcheck",
            "takes no `port`",
        ),
        (
            json!({"healthcheck": {"type": "tcp", "port": 80, "interval": "often"}}),
            "healthcheck",
            "healthcheck.interval: \"often\" is not a duration",
        ),
        (
            json!({"healthcheck": {"type": "exec", "command": []}}),
            "healthcheck",
            "non-empty `command`",
        ),
        (
            json!({"healthcheck": {"type": "http", "port": 80, "command": ["true"]}}),
            "healthcheck",
            "only an exec check runs a command",
        ),
        (
            json!({"timeouts": {"create": "10 minutes"}}),
            "timeouts",
            "is not a duration",
        ),
        (
            json!({"resources": {"memory": "lots"}}),
            "resources",
            "not a memory quantity",
        ),
        (
            json!({"resources": {"cpu": "fast"}}),
            "resources",
            "not a CPU quantity",
        ),
        (
            json!({"variables": {"A=B": "1"}}),
            "variables[\"A=B\"]",
            "\"A=B\" is not a variable name",
        ),
        (
            json!({"variables": {"": "1"}}),
            "variables[\"\"]",
            "cannot be empty",
        ),
        (
            json!({"variables": {"PORT": "80"}}),
            "variables[\"PORT\"]",
            "set by the runtime itself",
        ),
        (
            json!({"secrets": {"1ABC": "never-shown"}}),
            "secrets[\"1ABC\"]",
            "not starting with a digit",
        ),
    ];
    for (overrides, at, text) in cases {
        let mut json = json!({"environment_id": env, "name": "web", "command": "sh", "secrets": {"S": "never-shown"}});
        for (k, v) in overrides.as_object().unwrap() {
            json[k] = v.clone();
        }
        let err = plan(&*r, &client, &config(json), &Value::Null)
            .await
            .unwrap_err();
        let d = &err.0[0];
        assert_eq!(
            d.attribute.as_ref().map(|p| p.to_string()).as_deref(),
            Some(at),
            "{err}"
        );
        assert!(
            err.to_string().contains(text),
            "expected {text:?} in: {err}"
        );
        let secrets = [("S".to_owned(), "never-shown".to_owned())].into();
        assert!(leaked_secrets(&secrets, &err).is_empty());
    }

    // Neither command nor image.
    let err = plan(
        &*r,
        &client,
        &config(json!({"environment_id": env, "name": "x"})),
        &Value::Null,
    )
    .await
    .unwrap_err();
    assert_eq!(err.0[0].attribute, Some(root("command")));
    // An image alone is not enough for the local runtime, and says why.
    let err = plan(
        &*r,
        &client,
        &config(json!({"environment_id": env, "name": "x", "image": "nginx"})),
        &Value::Null,
    )
    .await
    .unwrap_err();
    assert_eq!(err.0[0].attribute, Some(root("command")));
    assert!(
        err.to_string().contains("only by the kubernetes runtime"),
        "{err}"
    );
    // Kubernetes needs the image.
    let kube = super::super::testing::client(Arc::new(MemoryRuntime::with_rules(
        crate::runtime::kubernetes::rules::check_application,
    )));
    let kenv = environment(&kube, "dev", "DEVELOPMENT").await;
    let err = plan(
        &*r,
        &kube,
        &config(json!({"environment_id": kenv, "name": "x", "command": "sh"})),
        &Value::Null,
    )
    .await
    .unwrap_err();
    assert_eq!(err.0[0].attribute, Some(root("image")));
    // A command relative to working_dir, executable or not.
    let dir = crate::resources::testing::ScratchDir::new();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let cfg = config(
        json!({"environment_id": env, "name": "x", "command": "./run.sh", "working_dir": dir.path()}),
    );
    let err = plan(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
    assert!(err.to_string().contains("not an executable file"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    plan(&*r, &client, &cfg, &Value::Null).await.unwrap();
}

#[tokio::test]
async fn a_health_check_that_never_passes() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let env = environment(&client, "dev", "DEVELOPMENT").await;
    let r = resource();
    let cfg = config(web(&env));

    runtime.fail_next_rollout(RolloutCause::Health, "replica 1 never became healthy: GET http://127.0.0.1:8080/ failed 3 times (connection refused)");
    let err = apply(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
    assert_eq!(err.0[0].attribute, Some(root("healthcheck")));
    assert!(err.to_string().contains("never became healthy"), "{err}");
    assert!(err.to_string().contains("removed again"), "{err}");
    assert_eq!(
        runtime.application_count(),
        0,
        "a failed create leaves nothing behind"
    );
    let secrets = [("API_KEY".to_owned(), "very-secret-value".to_owned())].into();
    assert!(leaked_secrets(&secrets, &err).is_empty());

    // A failed update restores the previous version.
    let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
    let id = state.get("id").as_str().unwrap().to_owned();
    let mut json2 = web(&env);
    json2["args"] = json!(["-c", "exit 1"]);
    runtime.fail_next_rollout(
        RolloutCause::Program,
        "replica 1 exited with status 1 before becoming healthy",
    );
    let err = apply(&*r, &client, &config(json2), &state)
        .await
        .unwrap_err();
    assert_eq!(err.0[0].attribute, Some(root("command")));
    assert!(
        err.to_string().contains("previous version was restored"),
        "{err}"
    );
    let app = runtime.get_application(&id).await.unwrap().unwrap();
    assert_eq!(app.spec.args, ["-c", "exec sleep 1000"]);
}

/// Who may change what is the platform's answer, asked at plan: a refusal fails the
/// plan of a create, an update or a destroy at `environment_id`, whatever the provider
/// block says; a plan that changes nothing asks nothing, so that `terraform plan`
/// against production stays useful on a laptop.
#[tokio::test]
async fn the_platforms_refusal_fails_the_plan_and_an_unchanged_plan_asks_nothing() {
    let runtime = Arc::new(MemoryRuntime::with_rules(local_rules));
    let client = client(runtime.clone());
    let prod = environment(&client, "prod", "PRODUCTION").await;
    let r = resource();
    let state = apply(&*r, &client, &config(web(&prod)), &Value::Null)
        .await
        .unwrap();
    runtime.refuse_at_plan(crate::runtime::Mode::Production);

    let asked = runtime.asked().len();
    assert!(plan_is_empty(&*r, &client, &config(web(&prod)), &state).await);
    assert_eq!(runtime.asked().len(), asked, "an unchanged plan asked");

    let mut scaled = web(&prod);
    scaled["replicas"] = json!(3);
    let mut other = web(&prod);
    other["name"] = json!("api");
    for (what, err) in [
        (
            "update",
            plan(&*r, &client, &config(scaled), &state)
                .await
                .unwrap_err(),
        ),
        (
            "create",
            plan(&*r, &client, &config(other), &Value::Null)
                .await
                .unwrap_err(),
        ),
        (
            "destroy",
            plan_destroy(&*r, &client, &state).await.unwrap_err(),
        ),
    ] {
        assert_eq!(err.0[0].attribute, Some(root("environment_id")), "{what}");
        assert!(
            err.0[0]
                .summary
                .contains("refused by the platform's policy"),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains("application prod/"),
            "{what}: {err}"
        );
    }
    let actions: Vec<_> = runtime.asked()[asked..]
        .iter()
        .map(|(action, environment)| (*action, environment.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (slipway_platform::Action::Update, "prod".to_owned()),
            (slipway_platform::Action::Create, "prod".to_owned()),
            (slipway_platform::Action::Delete, "prod".to_owned()),
        ]
    );
}
