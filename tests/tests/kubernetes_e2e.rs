//! The Slipway provider on the kubernetes runtime, driven by the real `terraform`
//! against the fake API server (`slipway_tests::fake_kube`), on every Terraform version
//! on the machine: apply, an empty plan after it, an update with a rollout, a failed
//! rollout, drift, import, a Deployment deleted out of band, and destroy. The provider
//! reaches the cluster only through a platform (`runtime serve --backend kubernetes`,
//! [`ServedPlatform::kubernetes`]) that holds the kubeconfig, as the local user (its
//! admin), with STAGING opened to admins in the platform's own configuration.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use slipway_tests::fake_kube::{FakeKube, Options, RolloutMode, Timing};
use slipway_tests::served_platform::ServedPlatform;
use slipway_tests::terraform::{self, TerraformBinary, Workspace};

const SOURCE: &str = "registry.terraform.io/slipway/slipway";

/// The directory holding the provider binary, built once per test run.
fn provider_dir() -> PathBuf {
    let provider = terraform::provider_binary();
    provider.parent().expect("bin dir").to_path_buf()
}

fn config(image: &str, replicas: u32) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
}}

provider "slipway" {{
  runtime = "kubernetes"
}}

resource "slipway_environment" "dev" {{
  name      = "dev"
  mode      = "STAGING"
  variables = {{ REGION = "eu-west" }}
}}

resource "slipway_application" "web" {{
  environment_id = slipway_environment.dev.id
  name           = "web"
  image          = "{image}"
  replicas       = {replicas}
  ports = [
    {{ name = "http", port = 8080, public = true }},
  ]
  variables = {{ LOG_LEVEL = "info" }}
  secrets   = {{ DB_PASSWORD = "e2e-secret-value" }}
  healthcheck = {{
    type     = "http"
    path     = "/healthz"
    port     = 8080
    interval = "5s"
    timeout  = "2s"
  }}
  resources = {{ cpu = "250m", memory = "128Mi" }}
  timeouts  = {{ create = "2m", update = "2m", delete = "2m" }}
}}

output "app_id" {{
  value = slipway_application.web.id
}}
"#
    )
}

/// What the operator's platform allows here: STAGING changes by its admin (the local
/// user), beside the default policy.
const PLATFORM_TOML: &str = "[policy.STAGING]\nroles = [\"admin\"]\njobs = [\"merge\"]\n";

/// A platform for the fake API server, holding its kubeconfig (written in `dir`), and
/// `ws` pointed at it.
fn platform_for(fake: &FakeKube, ws: &mut Workspace) -> ServedPlatform {
    let kubeconfig = ws.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    let platform = ServedPlatform::kubernetes(&kubeconfig, PLATFORM_TOML);
    ws.set_env("SLIPWAY_HOME", &platform.home.path().display().to_string());
    platform
}

async fn kube_client(fake: &FakeKube) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&fake.kubeconfig()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// A fake API server (with controller steps slow enough to watch) on its own runtime,
/// which must outlive it.
fn start_fake() -> (tokio::runtime::Runtime, FakeKube) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fake = rt
        .block_on(FakeKube::start_with(Options {
            timing: Timing {
                step: Duration::from_millis(100),
                namespace_termination: Duration::from_millis(500),
            },
            ..Options::default()
        }))
        .expect("start the fake API server");
    (rt, fake)
}

#[test]
fn lifecycle_on_every_terraform() {
    let dir = provider_dir();
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        lifecycle(&tf, &dir);
    }
}

fn lifecycle(tf: &TerraformBinary, provider_dir: &std::path::Path) {
    let (rt, fake) = start_fake();
    let mut ws = Workspace::new(tf, &[(SOURCE, provider_dir)]);
    let _platform = platform_for(&fake, &mut ws);
    let deployment = || {
        fake.object("apps", "deployments", "dev", "web")
            .expect("the Deployment dev/web exists")
    };

    // Create.
    ws.write_config(&config("nginx:1.27", 2));
    ws.apply().success();
    let d = deployment();
    assert_eq!(d["spec"]["replicas"], json!(2));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nginx:1.27")
    );
    assert_eq!(
        d["metadata"]["annotations"]["slipway.dev/trigger"],
        json!("terraform-apply"),
        "provenance annotations: {}",
        d["metadata"]["annotations"]
    );
    assert!(!d.to_string().contains("e2e-secret-value"));
    let ns = fake
        .object("", "namespaces", "", "dev")
        .expect("namespace dev");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("slipway")
    );
    let resources = ws.resources();
    assert_eq!(
        resources["slipway_application.web"]["status"],
        json!("running")
    );
    let app_id = resources["slipway_application.web"]["id"]
        .as_str()
        .expect("application id")
        .to_owned();
    let plan = ws.plan_exit_code();
    assert_eq!(
        plan.code,
        0,
        "plan after apply is not empty:\n{}",
        plan.all_output()
    );

    // Update, with a rollout that takes several controller steps.
    fake.set_rollout_mode("dev", "web", RolloutMode::Slow);
    ws.write_config(&config("nginx:1.28", 3));
    ws.apply().success();
    let d = deployment();
    assert_eq!(d["metadata"]["generation"], json!(2));
    assert_eq!(d["status"]["observedGeneration"], json!(2));
    assert_eq!(d["status"]["availableReplicas"], json!(3));
    assert_eq!(ws.plan_exit_code().code, 0);

    // A rollout that fails: the error names the condition.
    fake.set_rollout_mode("dev", "web", RolloutMode::Fail);
    ws.write_config(&config("nginx:broken", 3));
    let failed = ws.apply();
    assert_ne!(failed.code, 0, "the failed rollout must fail the apply");
    let output = failed.all_output();
    assert!(output.contains("ProgressDeadlineExceeded"), "{output}");
    assert!(output.contains("dev/web"), "{output}");
    assert!(!output.contains("e2e-secret-value"), "{output}");
    // An image that cannot be pulled: the apply fails as soon as a pod shows it, with
    // its cause, not after the resource's timeout.
    fake.set_rollout_mode("dev", "web", RolloutMode::Normal);
    fake.make_image_unpullable("nginx:no-such-tag");
    ws.write_config(&config("nginx:no-such-tag", 3));
    let failed = ws.apply();
    assert_ne!(failed.code, 0, "the stuck rollout must fail the apply");
    let output = failed.all_output();
    assert!(output.contains("ImagePullBackOff"), "{output}");
    assert!(!output.contains("did not finish within"), "{output}");
    // Fixed: the next apply rolls the good image out.
    ws.write_config(&config("nginx:1.28", 3));
    ws.apply().success();
    assert_eq!(ws.plan_exit_code().code, 0);

    // Drift: scaled behind Terraform's back, shown by a plan, reverted by an apply.
    rt.block_on(async {
        let client = kube_client(&fake).await;
        let api: Api<Deployment> = Api::namespaced(client, "dev");
        let params = PatchParams {
            field_manager: Some("kubectl".into()),
            ..PatchParams::default()
        };
        api.patch(
            "web",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("scale the Deployment");
    });
    let plan = ws.plan_exit_code();
    assert_eq!(
        plan.code,
        2,
        "drift must show in a plan:\n{}",
        plan.all_output()
    );
    assert!(plan.stdout.contains("replicas"), "{}", plan.stdout);
    ws.apply().success();
    assert_eq!(deployment()["spec"]["replicas"], json!(3));
    assert_eq!(ws.plan_exit_code().code, 0);

    // Import by id.
    ws.run(&["state", "rm", "slipway_application.web"])
        .success();
    ws.run(&["import", "-no-color", "slipway_application.web", &app_id])
        .success();
    // Only `timeouts` can differ: it is configuration, which no runtime stores, so an
    // import cannot know it (as with every provider's timeouts). And, before Terraform
    // 1.11, `secrets`: the platform gives an import only their digests, which such a
    // Terraform keeps in the state (sensitive) until the next apply writes the values.
    let mut may_change = vec!["+ timeouts", "+ create", "+ update", "+ delete"];
    if !tf.has_write_only_attributes() {
        may_change.push("~ secrets");
    }
    let plan = ws.plan_exit_code();
    let actions = plan
        .stdout
        .split("Terraform will perform the following actions:")
        .nth(1)
        .unwrap_or_default();
    // Terraform 1.0 also lists output changes after the plan line; only resources count.
    let actions = actions.split("\nPlan:").next().unwrap_or_default();
    let changed: Vec<&str> = actions
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(['+', '-', '~']))
        .filter(|l| !l.starts_with("~ resource \"slipway_application\" \"web\""))
        .collect();
    assert!(
        changed
            .iter()
            .all(|l| may_change.iter().any(|p| l.starts_with(p))),
        "the plan after import changes more than timeouts:\n{}",
        plan.all_output()
    );
    ws.apply().success();
    let plan = ws.plan_exit_code();
    assert_eq!(
        plan.code,
        0,
        "plan after import and apply is not empty:\n{}",
        plan.all_output()
    );

    // A Deployment deleted out of band: the plan creates it again, the apply takes over
    // the Service and Secret it left behind, and the plan after is empty.
    rt.block_on(async {
        let client = kube_client(&fake).await;
        let api: Api<Deployment> = Api::namespaced(client, "dev");
        api.delete("web", &Default::default())
            .await
            .expect("delete the Deployment");
    });
    let plan = ws.plan_exit_code();
    assert_eq!(plan.code, 2, "{}", plan.all_output());
    ws.apply().success();
    let new_id = ws.resources()["slipway_application.web"]["id"]
        .as_str()
        .expect("application id")
        .to_owned();
    assert_eq!(
        deployment()["metadata"]["annotations"]["slipway.dev/application-id"],
        json!(new_id)
    );
    let service = fake
        .object("", "services", "dev", "web")
        .expect("the Service dev/web");
    assert_eq!(
        service["metadata"]["annotations"]["slipway.dev/application-id"],
        json!(new_id)
    );
    assert_eq!(ws.plan_exit_code().code, 0);

    // Destroy: everything goes, the namespace after terminating.
    ws.destroy().success();
    assert!(fake.object("apps", "deployments", "dev", "web").is_none());
    assert!(fake.object("", "namespaces", "", "dev").is_none());
    drop(fake);
}

/// What the API server would answer 422 to fails `terraform apply` before anything
/// is written, at the attribute to fix: a secret name that is no Secret key (refused by
/// the variable-name rule already, when Terraform validates the configuration), and an
/// application name that is no Service name (DNS-1035: it starts with a letter),
/// refused by the Kubernetes runtime's own rules at plan; while a 63-character name,
/// which a real server accepts, works end to end.
#[test]
fn plan_refuses_what_the_api_server_would_reject_on_every_terraform() {
    let dir = provider_dir();
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let (_rt, fake) = start_fake();
        let mut ws = Workspace::new(&tf, &[(SOURCE, &dir)]);
        let _platform = platform_for(&fake, &mut ws);
        let base = config("nginx:1.27", 1);

        let bad_secret = base.replace(
            "secrets   = { DB_PASSWORD = \"e2e-secret-value\" }",
            "secrets   = { \"MY VAR\" = \"e2e-secret-value\" }",
        );
        assert!(bad_secret.contains("\"MY VAR\""));
        ws.write_config(&bad_secret);
        let run = ws.apply();
        let output = run.all_output();
        assert_ne!(run.code, 0, "{output}");
        assert!(output.contains("Invalid variable name"), "{output}");
        assert!(
            output
                .lines()
                .any(|l| l.contains("secrets") && l.contains("\"MY VAR\"")),
            "{output}"
        );

        let bad_name = base.replace("name           = \"web\"", "name           = \"1web\"");
        assert!(bad_name.contains("\"1web\""));
        ws.write_config(&bad_name);
        let run = ws.apply();
        let output = run.all_output();
        assert_ne!(run.code, 0, "{output}");
        assert!(
            output.contains("Invalid application name for Kubernetes"),
            "{output}"
        );
        assert!(output.contains("DNS-1035"), "{output}");
        // Terraform shows the configuration line of the attribute at fault.
        assert!(
            output
                .lines()
                .any(|l| l.contains("name") && l.contains("= \"1web\"")),
            "{output}"
        );
        assert!(
            fake.object("", "namespaces", "", "dev").is_none(),
            "nothing is written when the plan fails"
        );

        // No length rule a real server lacks: a 63-character name (a Service name's
        // limit) applies, re-plans empty and is destroyed.
        let long = format!("w{}", "e".repeat(62));
        ws.write_config(&base.replace(
            "name           = \"web\"",
            &format!("name           = \"{long}\""),
        ));
        ws.apply().success();
        assert!(fake.object("", "services", "dev", &long).is_some());
        assert!(fake.object("apps", "deployments", "dev", &long).is_some());
        assert_eq!(ws.plan_exit_code().code, 0);
        ws.destroy().success();
        assert!(fake.object("apps", "deployments", "dev", &long).is_none());
    }
}

/// `examples/kubernetes` itself against the fake API server: it applies and re-plans
/// empty; each resource imported by its id comes back as it was once the apply after
/// the import has restored what an import cannot know (secret values, which come back
/// as digests, and `timeouts`), and the plan after that is empty; destroy removes it.
#[test]
fn the_kubernetes_example_applies_imports_and_destroys_on_every_terraform() {
    let dir = provider_dir();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/main.tf"),
    )
    .expect("examples/kubernetes/main.tf");
    let addresses = [
        "slipway_environment.shop",
        "slipway_application.web",
        "slipway_application.echo",
    ];
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let v = tf.version.clone();
        let (_rt, fake) = start_fake();
        let mut ws = Workspace::new(&tf, &[(SOURCE, &dir)]);
        let _platform = platform_for(&fake, &mut ws);
        ws.write_config(&example);
        ws.apply().success();
        let plan = ws.plan_exit_code();
        assert_eq!(plan.code, 0, "terraform {v}: {}", plan.all_output());
        let before = ws.resources();
        for address in addresses {
            let id = before[address]["id"].as_str().expect("id").to_owned();
            ws.run(&["state", "rm", "-no-color", address]).success();
            ws.run(&["import", "-no-color", address, &id]).success();
        }
        ws.apply().success();
        let plan = ws.plan_exit_code();
        assert_eq!(
            plan.code,
            0,
            "terraform {v}: plan after import and apply: {}",
            plan.all_output()
        );
        let after = ws.resources();
        for address in addresses {
            assert_eq!(after[address], before[address], "terraform {v}: {address}");
        }
        ws.destroy().success();
        assert!(fake.object("", "namespaces", "", "shop").is_none());
    }
}
