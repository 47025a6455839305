//! tfplug against the real `terraform`: the demo provider (built from
//! `src/bin/terraform-provider-tfplugdemo.rs`) through a whole resource lifecycle, on
//! every Terraform version on the machine.

use std::path::Path;

use slipway_tests::terraform::{self, TerraformBinary, Workspace};

const SOURCE: &str = "slipway/tfplugdemo";

fn config(store: &Path, name: &str, tags: &str, port: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    tfplugdemo = {{ source = "{SOURCE}" }}
  }}
}}

provider "tfplugdemo" {{
  directory = "{store}"
}}

resource "tfplugdemo_server" "web" {{
  name     = "{name}"
  password = "hunter2"
  tags     = {{ {tags} }}
  ports = [
    {{ port = {port} }},
    {{ port = 53, protocol = "udp" }},
  ]
  settings = {{ debug = true }}
  aliases  = {{ www = {{ target = "web" }} }}
  label {{
    key   = "tier"
    value = "frontend"
  }}
}}

data "tfplugdemo_server" "web" {{
  name       = tfplugdemo_server.web.name
  depends_on = [tfplugdemo_server.web]
}}

output "id" {{
  value = tfplugdemo_server.web.id
}}

output "looked_up_size" {{
  value = data.tfplugdemo_server.web.size
}}
"#,
        store = store.display()
    )
}

fn workspace(tf: &TerraformBinary) -> Workspace {
    let bin = terraform::binaries_dir();
    assert!(
        bin.join("terraform-provider-tfplugdemo").exists(),
        "build the demo provider first (cargo test builds it)"
    );
    Workspace::new(tf, &[(SOURCE, &bin)])
}

fn stored_objects(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn lifecycle_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        lifecycle(&tf);
    }
}

fn lifecycle(tf: &TerraformBinary) {
    let ws = workspace(tf);
    let store = ws.path().join("store");

    // Create: defaults fill in, computed attributes are set, the data source reads it.
    ws.write_config(&config(&store, "web", r#"team = "platform""#, "8080"));
    let run = ws.apply().success();
    assert!(run.stdout.contains("(sensitive value)"), "{}", run.stdout);
    let resources = ws.resources();
    let web = &resources["tfplugdemo_server.web"];
    let first_id = web["id"].as_str().expect("id").to_owned();
    assert!(first_id.starts_with("web-"), "{first_id}");
    assert_eq!(web["size"], 1, "default applied");
    assert_eq!(web["ports"][0]["protocol"], "tcp", "nested default applied");
    assert_eq!(web["ports"][1]["protocol"], "udp");
    assert_eq!(web["revision"], 1);
    assert_eq!(web["password"], "hunter2");
    assert_eq!(
        web["settings"]["region"], "eu-west",
        "default inside a single nested attribute"
    );
    assert_eq!(web["settings"]["debug"], true);
    assert_eq!(
        web["aliases"]["www"]["target"], "web",
        "map nested attribute"
    );
    assert_eq!(web["label"][0]["key"], "tier", "set nested block");
    assert_eq!(
        resources["data.tfplugdemo_server.web"]["label"],
        web["label"]
    );
    assert_eq!(resources["data.tfplugdemo_server.web"]["size"], 1);
    assert_eq!(stored_objects(&store), vec![format!("{first_id}.json")]);

    // No perpetual diff.
    assert_eq!(
        ws.plan_exit_code().code,
        0,
        "plan after apply must be empty"
    );
    // Nor drift where nothing changed: Terraform before 1.15 compares the refreshed and
    // the prior state structurally, numbers' precision included.
    let refresh_only = || ws.run(&["plan", "-refresh-only", "-detailed-exitcode", "-no-color"]);
    let run = refresh_only();
    assert_eq!(
        run.code,
        0,
        "terraform {}: a refresh-only plan after apply must be empty\n{}",
        tf.version,
        run.all_output()
    );

    // An in-place update keeps the id (UseStateForUnknown) and recomputes the revision.
    ws.write_config(&config(&store, "web", r#"team = "web""#, "8080"));
    let run = ws.plan_exit_code();
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stdout.contains("update in-place"), "{}", run.stdout);
    ws.apply().success();
    let web = ws.resources()["tfplugdemo_server.web"].clone();
    assert_eq!(web["id"], first_id.as_str());
    assert_eq!(web["revision"], 2);
    assert_eq!(web["tags"]["team"], "web");
    assert_eq!(ws.plan_exit_code().code, 0);

    // Changing a RequiresReplace attribute replaces the object.
    ws.write_config(&config(&store, "api", r#"team = "web""#, "8080"));
    let run = ws.plan_exit_code();
    assert_eq!(run.code, 2);
    assert!(run.stdout.contains("must be replaced"), "{}", run.stdout);
    assert!(run.stdout.contains("forces replacement"), "{}", run.stdout);
    ws.apply().success();
    let web = ws.resources()["tfplugdemo_server.web"].clone();
    let second_id = web["id"].as_str().expect("id").to_owned();
    assert!(second_id.starts_with("api-"), "{second_id}");
    assert_eq!(stored_objects(&store), vec![format!("{second_id}.json")]);
    assert_eq!(ws.plan_exit_code().code, 0);

    // Drift: an object deleted behind Terraform's back is planned again.
    let object_file = store.join(format!("{second_id}.json"));
    let saved = std::fs::read(&object_file).expect("object file");
    std::fs::remove_file(&object_file).expect("remove object");
    let run = ws.plan_exit_code();
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stdout.contains("will be created"), "{}", run.stdout);
    // ...and a refresh-only plan sees the drift too. (Terraform 1.0 fails such a plan
    // with "Invalid refresh-only plan", its own bug hashicorp/terraform#29638.)
    if !tf.version.starts_with("1.0.") {
        let run = refresh_only();
        assert_eq!(
            run.code,
            2,
            "terraform {}: {}",
            tf.version,
            run.all_output()
        );
    }
    std::fs::write(&object_file, saved).expect("restore object");
    assert_eq!(refresh_only().code, 0, "terraform {}", tf.version);

    // Import into a fresh workspace gives the same state, and an empty plan.
    let imported = workspace(tf);
    // Outputs are not part of an import, so the fresh workspace leaves them out (Terraform
    // 1.0 would otherwise plan to add them).
    let full = config(&store, "api", r#"team = "web""#, "8080");
    let without_outputs = full.split("output \"id\"").next().unwrap_or_default();
    imported.write_config(without_outputs);
    imported
        .run(&["import", "-no-color", "tfplugdemo_server.web", &second_id])
        .success();
    let imported_web = imported.resources()["tfplugdemo_server.web"].clone();
    assert_eq!(imported_web, web, "import must reproduce the applied state");
    let run = imported.plan_exit_code();
    assert_eq!(run.code, 0, "{}", run.all_output());

    // Destroy leaves nothing.
    ws.destroy().success();
    assert!(
        stored_objects(&store).is_empty(),
        "{:?}",
        stored_objects(&store)
    );
    assert!(ws.resources().is_empty());
}

#[test]
fn bad_configuration_names_the_attribute() {
    for tf in terraform::required() {
        let ws = workspace(&tf);
        let store = ws.path().join("store");
        let cases = [
            // (name, tags, port, expected summary, expected detail, offending line)
            (
                "Web_1",
                "",
                "80",
                "Invalid name",
                "\"Web_1\" is not a valid name",
                "name     = \"Web_1\"",
            ),
            (
                "web",
                "",
                "70000",
                "Value out of range",
                "ports[0].port: 70000 is out of range",
                "{ port = 70000 }",
            ),
        ];
        for (name, tags, port, summary, detail, line) in cases {
            ws.write_config(&config(&store, name, tags, port));
            let run = ws.run(&["validate", "-no-color"]);
            let output = run.all_output();
            assert_eq!(run.code, 1, "terraform {}: {output}", tf.version);
            assert!(
                output.contains(summary),
                "terraform {}: {output}",
                tf.version
            );
            assert!(
                output.contains(detail),
                "terraform {}: {output}",
                tf.version
            );
            // The diagnostic points at the attribute, so Terraform quotes its line.
            assert!(output.contains(line), "terraform {}: {output}", tf.version);
        }
        assert!(stored_objects(&store).is_empty());
    }
}
