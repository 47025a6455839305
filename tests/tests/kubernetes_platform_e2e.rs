//! Kubernetes through the platform, driven by the real `terraform` on every version
//! found: `runtime serve --backend kubernetes` holds the fake API server's kubeconfig,
//! and the provider reaches only the platform (its socket), so every change on the
//! cluster goes through the platform's identities, policy per mode, job credentials and
//! audit log, as on the local runtime.
//!
//! Proves: a developer's token changes a DEVELOPMENT and a PREVIEW environment on
//! Kubernetes; PRODUCTION is refused at `terraform plan` without a merge job's
//! credential (nothing reaches the cluster, and the refusal is in the platform's audit
//! log), and a provider block can neither name a cluster (`kubeconfig`,
//! `kube_context`) nor turn the gate off; a merge job's credential applies it and its
//! destroy; the record on the cluster names who the platform says, never what the
//! client sent.

use std::path::Path;
use std::time::Duration;

use slipway_platform::{JobKind, Mode};
use slipway_tests::fake_kube::{FakeKube, Options, Timing};
use slipway_tests::job_credentials::{claims, credential_file, COMMIT};
use slipway_tests::local_harness::collapse;
use slipway_tests::served_platform::ServedPlatform;
use slipway_tests::terraform::{self, TerraformBinary, Workspace};

const SOURCE: &str = "registry.terraform.io/slipway/slipway";

/// An environment of `mode` named `name` with one application.
fn environment(name: &str, mode: &str) -> String {
    format!(
        r#"
resource "slipway_environment" "{name}" {{
  name = "{name}"
  mode = "{mode}"
}}

resource "slipway_application" "{name}_web" {{
  environment_id = slipway_environment.{name}.id
  name           = "web"
  image          = "nginx:1.27"
  replicas       = 1
  ports          = [{{ name = "http", port = 8080 }}]
  secrets        = {{ API_KEY = "{name}-secret-value" }}
  timeouts       = {{ create = "2m", update = "2m", delete = "2m" }}
}}
"#
    )
}

fn config(environments: &[(&str, &str)]) -> String {
    let mut hcl = r#"
terraform {
  required_providers {
    slipway = { source = "slipway/slipway" }
  }
}

provider "slipway" {
  runtime = "kubernetes"
}
"#
    .to_owned();
    for (name, mode) in environments {
        hcl.push_str(&environment(name, mode));
    }
    hcl
}

/// The fake API server, on a runtime that must outlive it.
fn start_fake() -> (tokio::runtime::Runtime, FakeKube) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt
        .block_on(FakeKube::start_with(Options {
            timing: Timing {
                step: Duration::from_millis(50),
                namespace_termination: Duration::from_millis(200),
            },
            ..Options::default()
        }))
        .unwrap();
    (rt, fake)
}

#[test]
fn kubernetes_changes_go_through_the_platform_on_every_terraform() {
    let provider = terraform::provider_binary();
    let dir = provider.parent().unwrap().to_path_buf();
    for tf in terraform::required() {
        through_the_platform(&tf, &dir);
    }
}

fn through_the_platform(tf: &TerraformBinary, provider_dir: &Path) {
    let v = tf.version.clone();
    let (_rt, fake) = start_fake();
    let engine = slipway_provenance::generate_signing_key().unwrap();
    let mut ws = Workspace::new(tf, &[(SOURCE, provider_dir)]);
    let kubeconfig = ws.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let platform = ServedPlatform::kubernetes(
        &kubeconfig,
        &format!(
            "engine_public_key = \"{}\"\n",
            slipway_provenance::encode_verifying_key(&engine.verifying_key())
        ),
    );
    let developer = platform.token("alice", "developer");
    ws.set_env("SLIPWAY_HOME", &platform.home.path().display().to_string());
    ws.set_env("SLIPWAY_TOKEN", &developer);
    // Terraform and the provider never see the cluster's credentials.
    ws.remove_env("KUBECONFIG");

    // 1. A developer changes DEVELOPMENT and PREVIEW environments on the cluster.
    let open = [("dev", "DEVELOPMENT"), ("pr7", "PREVIEW")];
    ws.write_config(&config(&open));
    ws.apply().success();
    for (name, _) in open {
        let deployment = fake
            .object("apps", "deployments", name, "web")
            .unwrap_or_else(|| panic!("terraform {v}: no Deployment {name}/web"));
        let annotations = &deployment["metadata"]["annotations"];
        assert_eq!(
            annotations["slipway.dev/actor"], "alice",
            "terraform {v}: the record names the token's identity: {annotations}"
        );
    }
    let plan = ws.plan_exit_code();
    assert_eq!(plan.code, 0, "terraform {v}: {}", plan.all_output());

    // 2. PRODUCTION: refused at plan for the developer, and nothing reaches the cluster.
    let all = [
        ("dev", "DEVELOPMENT"),
        ("pr7", "PREVIEW"),
        ("prod", "PRODUCTION"),
    ];
    ws.write_config(&config(&all));
    let run = ws.run(&["plan", "-no-color", "-input=false"]);
    let output = collapse(&run.all_output());
    assert_ne!(run.code, 0, "terraform {v}: a developer planned PRODUCTION");
    assert!(
        output.contains("Production changes come through a merge: open a pull request"),
        "terraform {v}: {output}"
    );
    let apply = ws.apply();
    assert_ne!(
        apply.code, 0,
        "terraform {v}: a developer applied PRODUCTION"
    );
    assert!(
        fake.object("", "namespaces", "", "prod").is_none(),
        "terraform {v}: the PRODUCTION namespace was created"
    );

    // A provider block can neither bring its own way to the cluster nor loosen the
    // policy: the first fails at plan naming the platform's flag; the second (the
    // provider's former gate) is ignored with a warning, and the platform still refuses.
    let with_block = |setting: &str| {
        config(&all).replace(
            "runtime = \"kubernetes\"",
            &format!("runtime = \"kubernetes\"\n  {setting}"),
        )
    };
    for (setting, expected) in [
        (
            format!("kubeconfig = \"{}\"", kubeconfig.display()),
            &["Remove `kubeconfig` from the provider block"][..],
        ),
        (
            "kube_context = \"fake\"".to_owned(),
            &["Remove `kube_context` from the provider block"][..],
        ),
        (
            "production_requires_signed_provenance = false".to_owned(),
            &[
                "`production_requires_signed_provenance` is ignored",
                "Production changes come through a merge: open a pull request",
            ][..],
        ),
    ] {
        ws.write_config(&with_block(&setting));
        let run = ws.run(&["plan", "-no-color", "-input=false"]);
        assert_ne!(run.code, 0, "terraform {v}: planned with `{setting}`");
        let output = collapse(&run.all_output());
        for expected in expected {
            assert!(
                output.contains(expected),
                "terraform {v}: {setting}: expected {expected:?} in {output}"
            );
        }
    }
    assert!(
        fake.object("", "namespaces", "", "prod").is_none(),
        "terraform {v}: the PRODUCTION namespace was created"
    );

    // 3. A merge job's credential applies it; the record is the job's.
    let (credential, _) = credential_file(
        ws.path(),
        &claims("7.1.a1b2", JobKind::Merge, &Mode::ALL),
        &engine,
    );
    ws.set_env(
        "SLIPWAY_JOB_CREDENTIAL_FILE",
        &credential.display().to_string(),
    );
    ws.apply().success();
    let deployment = fake
        .object("apps", "deployments", "prod", "web")
        .unwrap_or_else(|| panic!("terraform {v}: no Deployment prod/web"));
    let annotations = &deployment["metadata"]["annotations"];
    assert_eq!(
        annotations["slipway.dev/job-id"], "7.1.a1b2",
        "terraform {v}: {annotations}"
    );
    assert_eq!(
        annotations["slipway.dev/commit-sha"], COMMIT,
        "terraform {v}: {annotations}"
    );
    assert_eq!(
        annotations["slipway.dev/actor"], "octocat",
        "terraform {v}: {annotations}"
    );
    let plan = ws.plan_exit_code();
    assert_eq!(plan.code, 0, "terraform {v}: {}", plan.all_output());
    ws.destroy().success();
    assert!(fake.object("apps", "deployments", "prod", "web").is_none());

    // 4. The platform's audit log has all of it, and no secret value.
    let records = platform.audit();
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("secret-value"), "a secret in the audit log");
    let has = |outcome: &str, who: &str, object: &str| {
        records.iter().any(|r| {
            r["outcome"] == outcome
                && r["who"] == who
                && r["object"].as_str().is_some_and(|o| o.contains(object))
        })
    };
    assert!(has("applied", "alice", "application dev/web"), "{text}");
    assert!(has("applied", "alice", "environment pr7"), "{text}");
    assert!(
        records.iter().any(|r| r["outcome"] == "refused"
            && r["who"] == "alice"
            && r["mode"] == "PRODUCTION"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.contains("mode-closed-to-role"))),
        "terraform {v}: no refusal of alice's PRODUCTION change in {text}"
    );
    assert!(
        has("applied", "job:7.1.a1b2", "application prod/web"),
        "{text}"
    );
    assert!(
        records.iter().any(|r| r["who"] == "job:7.1.a1b2"
            && r["action"] == "delete"
            && r["commit"] == COMMIT),
        "{text}"
    );
    let verify = platform.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}
