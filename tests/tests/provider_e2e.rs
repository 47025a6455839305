//! The Slipway provider against the real `terraform`, on the local runtime, with the
//! quickstart example (`examples/quickstart`: an environment with two applications
//! running `slipway-demo-app`), on every Terraform version on the machine.
//!
//! Proves: apply answers at the endpoints; a variable change rolls out under load with
//! no failed request; a killed replica is restarted; a restarted daemon brings the
//! applications back; every plan after an apply is empty; import gives the same state;
//! destroy leaves no process and no listening port; bad input names the attribute.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_tests::local_harness::{
    body, collapse, get, refuses, wait_for, Harness, HEADER, SOURCE,
};
use slipway_tests::terraform::{self, provider_binary, TerraformBinary};

fn quickstart() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/main.tf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Hits `url` in a loop until stopped; counts answers that are not 200.
struct LoadGenerator {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u32, Vec<String>)>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl LoadGenerator {
    fn start(url: String) -> LoadGenerator {
        let stop = Arc::new(AtomicBool::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (s, b) = (stop.clone(), bodies.clone());
        let thread = std::thread::spawn(move || {
            let mut ok = 0;
            let mut failures = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match get(&url) {
                    Ok((200, body)) => {
                        ok += 1;
                        b.lock().unwrap().push(body);
                    }
                    other => failures.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failures)
        });
        LoadGenerator {
            stop,
            thread,
            bodies,
        }
    }

    fn finish(self) -> (u32, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failures) = self.thread.join().expect("load generator");
        let bodies = self.bodies.lock().unwrap().clone();
        (ok, failures, bodies)
    }
}

#[test]
fn quickstart_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        quickstart_lifecycle(&tf);
    }
}

fn quickstart_lifecycle(tf: &TerraformBinary) {
    let h = Harness::new(tf);
    h.ws.write_config(&quickstart());

    // Apply: both applications answer at their endpoints.
    let run = h.ws.apply().success();
    assert!(
        !run.all_output().contains("change-me"),
        "a secret was printed"
    );
    let web = h.output("web_endpoint");
    let api = h.output("api_endpoint");
    assert_eq!(body(&web), "v1");
    assert_eq!(body(&api), "api-v1");
    assert_eq!(
        body(&format!("{web}/env/GREETING")),
        "hello",
        "environment variables reach replicas"
    );
    assert_eq!(
        body(&format!("{web}/env/DATABASE_PASSWORD")),
        "change-me",
        "secrets reach replicas"
    );
    let provenance = &h.outputs()["web_provenance"]["value"];
    assert_eq!(provenance["trigger"], "terraform-apply");
    assert_eq!(provenance["verified"], false);
    let resources = h.ws.resources();
    assert_eq!(resources["slipway_application.web"]["status"], "running");
    assert_eq!(resources["slipway_application.web"]["replicas"], 2);
    // Secrets are write-only: Terraform 1.11 keeps none in the state.
    let state_file =
        std::fs::read_to_string(h.ws.path().join("terraform.tfstate")).expect("the state file");
    assert_eq!(resources["slipway_environment.demo"]["secrets_version"], 1);
    if tf.has_write_only_attributes() {
        assert!(
            !state_file.contains("change-me"),
            "terraform {}: a secret is in the state file",
            tf.version
        );
        assert!(resources["slipway_environment.demo"]["secrets"].is_null());
    } else {
        assert!(state_file.contains("change-me"), "terraform {}", tf.version);
    }
    h.assert_plan_empty("the first apply");

    // A new version rolls out while a load generator hits the endpoint.
    let load = LoadGenerator::start(web.clone());
    std::thread::sleep(Duration::from_millis(300));
    let run =
        h.ws.run(&[
            "apply",
            "-auto-approve",
            "-no-color",
            "-var",
            "web_version=v2",
        ])
        .success();
    assert!(run.stdout.contains("1 changed"), "{}", run.stdout);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures, bodies) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 20, "the load generator made only {ok} requests");
    assert_eq!(bodies.first().map(String::as_str), Some("v1"));
    assert_eq!(bodies.last().map(String::as_str), Some("v2"));
    assert_eq!(body(&web), "v2");
    assert_eq!(
        h.output("web_endpoint"),
        web,
        "the endpoint survives updates"
    );
    let plan = h.ws.run(&[
        "plan",
        "-detailed-exitcode",
        "-no-color",
        "-var",
        "web_version=v2",
    ]);
    assert_eq!(
        plan.code,
        0,
        "plan after the rollout must be empty\n{}",
        plan.all_output()
    );
    // From here on the configuration says v2.
    std::fs::write(
        h.ws.path().join("terraform.tfvars"),
        "web_version = \"v2\"\n",
    )
    .expect("write tfvars");
    h.assert_plan_empty("the rollout");

    // Kill a replica: it is restarted, and the endpoint keeps answering.
    let victim: u32 = body(&format!("{web}/pid")).parse().expect("pid");
    let status = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_for(
        "the killed replica is replaced",
        Duration::from_secs(60),
        || {
            let mut pids = std::collections::BTreeSet::new();
            for _ in 0..10 {
                if let Ok((200, pid)) = get(&format!("{web}/pid")) {
                    pids.insert(pid);
                }
            }
            pids.len() == 2 && !pids.contains(&victim.to_string())
        },
    );
    assert_eq!(body(&web), "v2");
    h.assert_plan_empty("a replica was restarted");

    // Restart the daemon: the next Terraform run starts it again, and the applications
    // come back at the same endpoints.
    h.stop_daemon();
    assert!(refuses(&web), "the daemon stopped its replicas and proxies");
    assert!(
        h.demo_processes().is_empty(),
        "no replica outlives the stopped daemon"
    );
    h.assert_plan_empty("the daemon restarted");
    wait_for(
        "the applications answer again",
        Duration::from_secs(60),
        || {
            matches!(get(&web), Ok((200, b)) if b == "v2")
                && matches!(get(&api), Ok((200, b)) if b == "api-v1")
        },
    );
    h.assert_plan_empty("the applications came back");

    // Import gives the same state.
    let before = h.ws.resources();
    for (address, id) in [
        (
            "slipway_application.web",
            before["slipway_application.web"]["id"].clone(),
        ),
        (
            "slipway_application.api",
            before["slipway_application.api"]["id"].clone(),
        ),
        (
            "slipway_environment.demo",
            before["slipway_environment.demo"]["id"].clone(),
        ),
    ] {
        h.ws.run(&["state", "rm", "-no-color", address]).success();
        h.ws.run(&["import", "-no-color", address, id.as_str().expect("id")])
            .success();
    }
    h.ws.run(&["refresh", "-no-color"]).success();
    if tf.has_write_only_attributes() {
        // The digests match the configuration's secrets: nothing to change.
        h.assert_plan_empty("an import of objects with secrets");
    }
    let after = h.ws.resources();
    let addresses = [
        "slipway_application.web",
        "slipway_application.api",
        "slipway_environment.demo",
    ];
    for address in addresses {
        // Secrets are write-only: an import learns only their digests.
        let mut expected = before[address].clone();
        let id = expected["id"].as_str().unwrap_or_default().to_owned();
        if let Some(secrets) = expected["secrets"].as_object_mut() {
            for (key, value) in secrets.iter_mut() {
                let plain = value.as_str().unwrap_or_default();
                *value = slipway_provider::runtime::secrets::digest(&id, key, plain).into();
            }
        }
        assert_eq!(after[address], expected, "{address} after import");
        let text = serde_json::to_string(&after[address]).unwrap();
        assert!(
            !text.contains("change-me"),
            "a secret came back from import: {text}"
        );
    }
    // The first apply takes the configuration's secrets back into the state, and
    // restarts nothing: the runtime already runs them.
    let mut running = h.demo_processes();
    h.ws.apply().success();
    let mut still = h.demo_processes();
    running.sort_unstable();
    still.sort_unstable();
    assert_eq!(running, still, "the apply after import restarted replicas");
    let again = h.ws.resources();
    for address in addresses {
        assert_eq!(
            again[address], before[address],
            "{address} after import and apply"
        );
    }
    h.assert_plan_empty("import and the apply after it");

    // Destroy leaves no process and no listening port.
    h.ws.destroy().success();
    wait_for("every replica has exited", Duration::from_secs(30), || {
        h.demo_processes().is_empty()
    });
    assert!(
        refuses(&web),
        "{web} still accepts connections after destroy"
    );
    assert!(
        refuses(&api),
        "{api} still accepts connections after destroy"
    );
    assert!(h.ws.resources().is_empty());
}

/// Secrets are write-only: on Terraform 1.11 and later no value is in the state file or
/// a plan, yet a changed secret still plans a change (as `secrets_version`), an
/// unchanged one nothing, and a refresh sees no drift; older Terraform keeps the value
/// in the state as a sensitive attribute and plans the same.
#[test]
fn secrets_stay_out_of_state_and_still_plan_their_changes_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let config = |token: &str| {
            format!(
                r#"
resource "slipway_environment" "vault" {{
  name    = "vault"
  secrets = {{ TOKEN = "{token}" }}
}}

output "version" {{
  value = slipway_environment.vault.secrets_version
}}
"#
            )
        };
        let h = Harness::with_config(&tf, &config("first-secret-value"));
        let run = h.ws.apply().success();
        assert!(!run.all_output().contains("first-secret-value"));
        let state = || std::fs::read_to_string(h.ws.path().join("terraform.tfstate")).unwrap();
        assert_eq!(
            state().contains("first-secret-value"),
            !tf.has_write_only_attributes(),
            "terraform {}: the secret in the state file",
            tf.version
        );
        assert_eq!(h.outputs()["version"]["value"], 1);
        h.assert_plan_empty("an apply with a secret");
        let refresh =
            h.ws.run(&["plan", "-refresh-only", "-detailed-exitcode", "-no-color"]);
        assert_eq!(
            refresh.code,
            0,
            "terraform {}: {}",
            tf.version,
            refresh.all_output()
        );

        h.ws.write_config(&format!("{}{}", HEADER, config("second-secret-value")));
        let plan = h.ws.plan_exit_code();
        assert_eq!(
            plan.code, 2,
            "terraform {}: a changed secret plans a change",
            tf.version
        );
        assert!(
            plan.all_output().contains("secrets_version"),
            "{}",
            plan.all_output()
        );
        assert!(!plan.all_output().contains("second-secret-value"));
        h.ws.apply().success();
        assert_eq!(h.outputs()["version"]["value"], 2);
        assert!(!state().contains("first-secret-value"));
        h.assert_plan_empty("an apply that changed a secret");
        h.ws.destroy().success();
    }
}

/// A configuration of one environment and one application with `app` spliced into the
/// application's block.
fn bad_config(env_name: &str, app: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "{SOURCE}" }}
  }}
}}

variable "demo_app" {{
  type = string
}}

resource "slipway_environment" "bad" {{
  name = "{env_name}"
}}

resource "slipway_application" "app" {{
  environment_id = slipway_environment.bad.id
  name           = "app"
{app}
}}
"#
    )
}

#[test]
fn bad_input_names_the_attribute_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let h = Harness::new(&tf);
        let cases: [(&str, &str, &str, &str, &str); 5] = [
            // (environment name, application body, summary, detail, quoted line)
            (
                "Bad_Env",
                "  command = var.demo_app",
                "Invalid name",
                "\"Bad_Env\" is not a valid name",
                "name = \"Bad_Env\"",
            ),
            (
                "ok",
                "  command = var.demo_app\n  ports   = [{ name = \"http\", port = 70000 }]",
                "Value out of range",
                "ports[0].port: 70000 is out of range",
                "ports   = [{ name = \"http\", port = 70000 }]",
            ),
            (
                "ok",
                "  command = \"/no/such/program\"",
                "Command not found",
                "/no/such/program does not exist",
                "command = \"/no/such/program\"",
            ),
            (
                "ok",
                "  command = var.demo_app\n  healthcheck = { type = \"tcp\", port = 80, interval = \"soon\" }",
                "Invalid duration",
                "\"soon\" is not a duration",
                "healthcheck = { type = \"tcp\", port = 80, interval = \"soon\" }",
            ),
            (
                "ok",
                "  image = \"nginx:1.27\"",
                "The local runtime needs a command",
                "`image` is used only by the kubernetes runtime",
                "",
            ),
        ];
        for (env_name, app, summary, detail, line) in cases {
            h.ws.write_config(&bad_config(env_name, app));
            let run = h.ws.run(&["plan", "-no-color"]);
            let output = run.all_output();
            assert_eq!(run.code, 1, "terraform {}: {output}", tf.version);
            // Terraform wraps long details: compare with whitespace collapsed.
            let flat = collapse(&output);
            for expected in [summary, detail, line] {
                assert!(
                    flat.contains(&collapse(expected)),
                    "terraform {}: expected {expected:?} in {output}",
                    tf.version
                );
            }
        }

        // A health check that never passes fails the apply at `healthcheck`, and
        // leaves no application behind.
        h.ws.write_config(&bad_config(
            "sick",
            r#"  command   = var.demo_app
  ports     = [{ name = "http", port = 8080 }]
  variables = { DEMO_UNHEALTHY = "1" }
  healthcheck = {
    type                = "http"
    path                = "/healthz"
    port                = 8080
    interval            = "500ms"
    timeout             = "1s"
    unhealthy_threshold = 1
  }
  timeouts = { create = "20s" }"#,
        ));
        let run = h.ws.apply();
        let output = run.all_output();
        assert_eq!(run.code, 1, "terraform {}: {output}", tf.version);
        assert!(output.contains("with slipway_application.app"), "{output}");
        assert!(
            output.contains("healthcheck"),
            "terraform {}: {output}",
            tf.version
        );
        assert!(
            output.contains("removed again"),
            "terraform {}: {output}",
            tf.version
        );
        wait_for(
            "the unhealthy replicas have exited",
            Duration::from_secs(30),
            || h.demo_processes().is_empty(),
        );
        h.ws.destroy().success();
    }
}

/// Bad variable and secret names fail `terraform plan` (from the schema, in
/// ValidateResourceConfig: before anything exists), each error quoting the very line of
/// the bad key, for the environment's maps and the application's alike.
#[test]
fn variable_names_are_checked_at_plan_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let h = Harness::new(&tf);
        let config = &format!(
            "{HEADER}{}",
            r#"
resource "slipway_environment" "bad" {
  name = "names"
  variables = {
    "A=B" = "1"
  }
  secrets = {
    "BAD NAME" = "hidden-value"
  }
}

resource "slipway_environment" "good" {
  name = "good"
}

resource "slipway_application" "app" {
  environment_id = slipway_environment.good.id
  name           = "app"
  command        = var.demo_app
  ports          = [{ name = "http", port = 8080 }]
  variables = {
    "1ABC" = "x"
    PORT   = "80"
    ""     = "y"
    GOOD   = "z"
  }
}
"#
        );
        h.ws.write_config(config);
        let run = h.ws.run(&["plan", "-no-color"]);
        let output = run.all_output();
        let v = &tf.version;
        assert_eq!(run.code, 1, "terraform {v}: {output}");
        let flat = collapse(&output);
        for expected in [
            "\"A=B\" = \"1\"",
            "\"A=B\" is not a variable name",
            "\"BAD NAME\" = \"hidden-value\"",
            "\"BAD NAME\" is not a variable name",
            "\"1ABC\" = \"x\"",
            "not starting with a digit",
            "PORT = \"80\"",
            "\"PORT\" is set by the runtime itself",
            "\"\" = \"y\"",
            "a variable name cannot be empty",
        ] {
            assert!(
                flat.contains(&collapse(expected)),
                "terraform {v}: expected {expected:?} in {output}"
            );
        }
        assert_eq!(
            output.matches("Invalid variable name").count(),
            5,
            "terraform {v}: one error per bad name, none for GOOD: {output}"
        );
        assert!(
            !output.contains("GOOD   = \"z\""),
            "terraform {v}: {output}"
        );
        assert!(h.ws.resources().is_empty());
    }
}

/// A program that takes its port as an argument needs no shell: `$PORT_<NAME>` in
/// `args` is the replica's port. The application's first port is not the public one, so
/// the endpoint answers only when the named port (not `PORT`) was substituted.
#[test]
fn port_references_in_args_are_substituted_and_refresh_sees_no_drift_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let h = Harness::with_config(
            &tf,
            r#"
resource "slipway_environment" "args" {
  name = "args"
}

resource "slipway_application" "web" {
  environment_id = slipway_environment.args.id
  name           = "web"
  command        = var.demo_app
  args           = ["--port", "$PORT_HTTP"]
  ports = [
    { name = "admin", port = 9000 },
    { name = "http", port = 8080, public = true },
  ]
  healthcheck = { type = "http", path = "/healthz", port = 8080, interval = "500ms" }
  timeouts    = { create = "60s" }
}

output "endpoint" {
  value = slipway_application.web.endpoints["http"]
}
"#,
        );
        h.ws.apply().success();
        let endpoint = h.output("endpoint");
        assert_eq!(body(&endpoint), "v1", "terraform {}", tf.version);
        assert_ne!(
            body(&format!("{endpoint}/env/PORT")),
            body(&format!("{endpoint}/env/PORT_HTTP")),
            "the first port is another one"
        );
        h.assert_plan_empty("an apply with $PORT_HTTP in args");
        // Nothing changed, so a refresh-only plan is empty too (Terraform before 1.15
        // compares refreshed and prior state structurally).
        let run =
            h.ws.run(&["plan", "-refresh-only", "-detailed-exitcode", "-no-color"]);
        assert_eq!(
            run.code,
            0,
            "terraform {}: refresh-only plan\n{}",
            tf.version,
            run.all_output()
        );
        h.ws.destroy().success();
    }
}

/// Import knows only what the runtime has, so defaults written out (`path = "/"`,
/// `args = []`, empty maps and lists) and defaults left out must both come back as the
/// configuration says: the first plan after `terraform import` is empty.
#[test]
fn import_round_trips_written_and_unwritten_defaults_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let h = Harness::with_config(
            &tf,
            r#"
resource "slipway_environment" "imports" {
  name = "imports"
}

resource "slipway_application" "explicit" {
  environment_id = slipway_environment.imports.id
  name           = "explicit"
  command        = var.demo_app
  args           = []
  ports          = [{ name = "http", port = 8080 }]
  variables      = {}
  resources      = {}
  healthcheck    = { type = "http", path = "/", port = 8080, interval = "500ms" }
}

resource "slipway_application" "bare" {
  environment_id = slipway_environment.imports.id
  name           = "bare"
  command        = var.demo_app
  ports          = [{ name = "http", port = 8080 }]
  healthcheck    = { type = "http", port = 8080, interval = "500ms" }
}
"#,
        );
        import_round_trips(
            &h,
            &["slipway_application.explicit", "slipway_application.bare"],
        );
    }
}

/// Applies, then removes each of `addresses` from the state and imports it by its id:
/// the state is as before and the plan empty; then destroys.
fn import_round_trips(h: &Harness, addresses: &[&str]) {
    let v = &h.ws.terraform.version;
    h.ws.apply().success();
    h.assert_plan_empty("the apply");
    let before = h.ws.resources();
    for address in addresses {
        let id = before[*address]["id"].as_str().expect("id").to_owned();
        h.ws.run(&["state", "rm", "-no-color", address]).success();
        h.ws.run(&["import", "-no-color", address, &id]).success();
    }
    // Terraform 1.0 drops the root outputs from the state it rewrites: a refresh puts
    // them back (and changes no resource).
    h.ws.run(&["refresh", "-no-color"]).success();
    let after = h.ws.resources();
    for address in addresses {
        assert_eq!(
            after[*address], before[*address],
            "terraform {v}: {address} after import"
        );
    }
    h.assert_plan_empty("import");
    h.ws.destroy().success();
}

/// `terraform-provider-slipway --help` names every `runtime` subcommand.
#[test]
fn help_names_the_runtime_commands() {
    let run = |args: &[&str]| {
        let out = Command::new(provider_binary())
            .args(args)
            .output()
            .expect("run terraform-provider-slipway");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let help = run(&["--help"]);
    let runtime_help = run(&["runtime", "--help"]);
    let commands: Vec<&str> = runtime_help
        .split("Commands:")
        .nth(1)
        .expect("runtime --help lists commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 3, "{runtime_help}");
    for command in commands {
        assert!(
            help.contains(&format!("terraform-provider-slipway runtime {command}")),
            "--help does not mention `runtime {command}`:\n{help}"
        );
    }
}

/// A PRODUCTION environment and an application in it, with the provider's former
/// production gate settings in the provider block (`gate`).
fn production_config_with(gate: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    slipway = {{ source = "slipway/slipway" }}
  }}
}}
provider "slipway" {{
  {gate}
}}
variable "demo_app" {{
  type = string
}}
resource "slipway_environment" "prod" {{
  name = "prod"
  mode = "PRODUCTION"
}}
resource "slipway_application" "web" {{
  environment_id = slipway_environment.prod.id
  name           = "web"
  command        = var.demo_app
  replicas       = 1
  ports          = [{{ name = "http", port = 8080, public = true }}]
  healthcheck    = {{ type = "tcp", port = 8080, interval = "1s" }}
}}
"#
    )
}

/// The provider's former production gate is gone, so there is one gate, the
/// platform's. Its settings still parse: each one set (in the block, or the variable)
/// is a warning and changes nothing, whether it turns the old gate on or off or brings
/// a key; the platform refuses the local user's PRODUCTION change either way, and the
/// variables of the old signed record make no difference.
#[test]
fn the_former_production_gate_is_ignored_with_a_warning_on_every_terraform() {
    for tf in terraform::required() {
        former_gate_is_ignored(&tf);
    }
}

fn former_gate_is_ignored(tf: &TerraformBinary) {
    let v = &tf.version;
    let key = slipway_provenance::generate_signing_key().expect("key");
    let public = slipway_provenance::encode_verifying_key(&key.verifying_key());
    let mut h = Harness::new(tf);
    h.ws.set_env("SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE", "true");
    for (k, value) in [
        (slipway_provenance::ENV_ACTOR, "mallory"),
        (slipway_provenance::ENV_TRIGGER, "webhook"),
        ("SLIPWAY_PROVENANCE_SIGNATURE", "bm90IGEgc2lnbmF0dXJl"),
    ] {
        h.ws.set_env(k, value);
    }
    let warnings = [
        "SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE is ignored",
        "PRODUCTION policy lives in the platform's configuration now",
    ];
    for gate in [
        format!("production_requires_signed_provenance = true\n  agent_public_key = \"{public}\""),
        "production_requires_signed_provenance = false".to_owned(),
        "agent_public_key_file = \"slipway-agent.key\"".to_owned(),
    ] {
        h.ws.write_config(&production_config_with(&gate));
        let run = h.ws.run(&["plan", "-no-color", "-input=false"]);
        let output = collapse(&run.all_output());
        assert_ne!(
            run.code, 0,
            "terraform {v}: `{gate}`: PRODUCTION was planned"
        );
        assert!(
            output.contains("Production changes come through a merge"),
            "terraform {v}: `{gate}`: the platform's refusal is missing: {output}"
        );
        let attribute = gate.split_whitespace().next().unwrap_or_default();
        for expected in warnings
            .iter()
            .copied()
            .chain([format!("Remove `{attribute}` from the provider block").as_str()])
        {
            assert!(
                output.contains(expected),
                "terraform {v}: `{gate}`: expected {expected:?} in {output}"
            );
        }
    }
    let run = h.ws.apply();
    assert_ne!(run.code, 0, "terraform {v}: PRODUCTION was applied");
    assert!(
        h.demo_processes().is_empty(),
        "terraform {v}: a replica started"
    );
    assert!(h.ws.resources().is_empty());

    // A warning only: where the platform allows the change, the same block plans it.
    h.ws.write_config(
        &production_config_with("production_requires_signed_provenance = true")
            .replace("\"PRODUCTION\"", "\"DEVELOPMENT\""),
    );
    let run = h.ws.run(&["plan", "-no-color", "-input=false"]);
    let output = collapse(&run.all_output());
    assert_eq!(run.code, 0, "terraform {v}: {output}");
    assert!(
        output.contains("`production_requires_signed_provenance` is ignored"),
        "terraform {v}: {output}"
    );
    h.stop_daemon();
}

/// `examples/production-plus-preview` as a preview, imported resource by resource: the
/// first plan after the import is empty (nothing there is write-only).
#[test]
fn the_production_plus_preview_example_imports_with_an_empty_plan_on_every_terraform() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production-plus-preview/main.tf");
    let text = std::fs::read_to_string(&example).unwrap();
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        let mut h = Harness::new(&tf);
        h.ws.write_config(&text);
        h.ws.set_env("TF_VAR_preview_name", "pr-7");
        h.ws.set_env("TF_VAR_app_command", &h.demo_app.display().to_string());
        import_round_trips(
            &h,
            &["slipway_environment.preview[0]", "slipway_application.web"],
        );
    }
}
