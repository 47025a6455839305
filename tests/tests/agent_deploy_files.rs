//! The files an operator runs `slipway-agent` from: `--help` of every command, the
//! documented example configuration, and the Kubernetes manifests, checked with the
//! real binary and Kubernetes' own types.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use serde_json::Value;
use slipway_tests::agent_support::agent_binary;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn agent(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(agent_binary());
    cmd.args(args).env_remove("SLIPWAY_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run slipway-agent")
}

/// A fresh signing key, as `slipway-agent keygen` writes it.
fn keygen(dir: &Path) -> String {
    let out = agent(&["keygen", "--out", dir.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("slipway-agent.key"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["deploy", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "list", "--help"],
        vec!["audit", "show", "--help"],
        vec!["audit", "export", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["keygen", "--help"],
        vec!["check-config", "--help"],
    ] {
        let out = agent(&args, &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage: slipway-agent"), "{args:?}: {text}");
        assert!(
            text.contains("--config"),
            "{args:?} lacks the global --config: {text}"
        );
    }
    let run = String::from_utf8_lossy(&agent(&["run", "--help"], &[]).stdout).into_owned();
    for needle in ["/metrics", "/readyz", "shutdown_grace_secs", "SIGTERM"] {
        assert!(
            run.contains(needle),
            "run --help does not mention {needle}: {run}"
        );
    }
    let bad = agent(&["--log-format", "xml", "check-config"], &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("[possible values: text, json]"));
}

#[test]
fn the_example_configuration_passes_check_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("slipway-agent.toml");
    std::fs::copy(repo_root().join("deploy/slipway-agent.toml"), &config).unwrap();
    keygen(tmp.path());
    let path = config.to_str().unwrap();
    let envs = [
        ("SLIPWAY_WEBHOOK_SECRET", "example-webhook-secret"),
        ("SLIPWAY_API_TOKEN", "example-api-token"),
        ("GITHUB_TOKEN", "ghp_example"),
    ];
    let out = agent(&["--config", path, "check-config"], &envs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 repositories, 1 roots)"));
    // A missing secret is named, with its variable.
    let out = agent(&["--config", path, "check-config"], &envs[1..]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secrets.webhook_secret.env") && err.contains("SLIPWAY_WEBHOOK_SECRET"),
        "{err}"
    );
}

fn yaml_documents() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/slipway-agent.yaml")).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).expect("the manifests are YAML")
}

fn one<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

#[test]
fn the_kubernetes_manifests_fit_together_and_their_configuration_is_valid() {
    let docs = yaml_documents();
    let deployment: Deployment = one(&docs, "Deployment");
    let pvc: PersistentVolumeClaim = one(&docs, "PersistentVolumeClaim");
    let secret: Secret = one(&docs, "Secret");
    let config_map: ConfigMap = one(&docs, "ConfigMap");
    let service: Service = one(&docs, "Service");
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "no {kind}");
    }

    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1), "one agent per database");
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    let container = &pod.containers[0];
    let volumes = pod.volumes.unwrap();
    let mounts = container.volume_mounts.clone().unwrap();
    let data_volume = volumes
        .iter()
        .find(|v| v.persistent_volume_claim.is_some())
        .unwrap();
    assert_eq!(
        data_volume
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        pvc.metadata.name.clone().unwrap()
    );
    let data_mount = mounts.iter().find(|m| m.name == data_volume.name).unwrap();
    let config_volume = volumes.iter().find(|v| v.config_map.is_some()).unwrap();
    assert_eq!(
        config_volume.config_map.as_ref().unwrap().name,
        config_map.metadata.name.clone().unwrap()
    );
    let config_mount = mounts
        .iter()
        .find(|m| m.name == config_volume.name)
        .unwrap();

    // The configuration the pod reads: its data_dir is the volume, its port the probes'.
    let toml_text = &config_map.data.as_ref().unwrap()["slipway-agent.toml"];
    let toml: toml::Value = toml::from_str(toml_text).unwrap();
    assert_eq!(
        toml["data_dir"].as_str(),
        Some(data_mount.mount_path.as_str())
    );
    let args = container.args.clone().unwrap();
    assert!(args.contains(&format!("{}/slipway-agent.toml", config_mount.mount_path)));
    let port = toml["server"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert_eq!(
        container.ports.as_ref().unwrap()[0]
            .container_port
            .to_string(),
        port
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    let grace = toml["shutdown_grace_secs"].as_integer().unwrap();
    assert!(pod.termination_grace_period_seconds.unwrap() > grace + 30);
    assert_eq!(
        service.spec.unwrap().selector.unwrap(),
        spec.selector.match_labels.unwrap()
    );

    // Every secret the configuration names comes from the Secret, and with real
    // values in it the configuration passes check-config.
    let secret_data = secret.string_data.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path());
    let mut envs: Vec<(String, String)> = Vec::new();
    for var in container.env.clone().unwrap() {
        let Some(from) = var.value_from.and_then(|f| f.secret_key_ref) else {
            continue;
        };
        assert_eq!(from.name, secret.metadata.name.clone().unwrap());
        assert!(
            secret_data.contains_key(&from.key),
            "Secret has no {}",
            from.key
        );
        let value = if var.name == "SLIPWAY_SIGNING_KEY" {
            key.clone()
        } else {
            format!("value-of-{}", from.key)
        };
        envs.push((var.name, value));
    }
    for needle in [
        "SLIPWAY_WEBHOOK_SECRET",
        "SLIPWAY_API_TOKEN",
        "SLIPWAY_SIGNING_KEY",
        "GITHUB_TOKEN",
    ] {
        assert!(
            toml_text.contains(needle),
            "the configuration does not use {needle}"
        );
        assert!(
            envs.iter().any(|(k, _)| k == needle),
            "the pod does not set {needle}"
        );
    }
    let config = tmp.path().join("slipway-agent.toml");
    std::fs::write(&config, toml_text).unwrap();
    let env_refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = agent(
        &["--config", config.to_str().unwrap(), "check-config"],
        &env_refs,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_runs_the_agent_with_time_to_stop() {
    let unit =
        std::fs::read_to_string(repo_root().join("deploy/systemd/slipway-agent.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
            .to_owned()
    };
    assert!(value("ExecStart").ends_with("slipway-agent run"));
    assert!(value("ExecStartPre").ends_with("slipway-agent check-config"));
    assert_eq!(value("KillSignal"), "SIGTERM");
    let example: toml::Value = toml::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/slipway-agent.toml")).unwrap(),
    )
    .unwrap();
    let grace = example["shutdown_grace_secs"].as_integer().unwrap();
    assert!(value("TimeoutStopSec").parse::<i64>().unwrap() > grace + 30);
    // Room for the HTTP server's connection cap (4,096) and the descriptors it keeps
    // back for the rest of the agent: the cap is lowered to fit a smaller limit.
    assert!(value("LimitNOFILE").parse::<usize>().unwrap() >= 8192);
    // Every section systemd needs is there.
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.contains(section));
    }
}

#[test]
fn command_line_mistakes_are_named_with_their_fix() {
    let tmp = tempfile::tempdir().unwrap();
    keygen(tmp.path());
    let stderr = |args: &[&str]| {
        let out = agent(args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = tmp.path().join("nowhere.toml");
    let e = stderr(&["--config", missing.to_str().unwrap(), "check-config"]);
    assert!(e.contains("--config or SLIPWAY_CONFIG"), "{e}");
    assert_eq!(e.matches("No such file").count(), 1, "{e}");

    let write = |name: &str, key: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[secrets]\nsigning_key = {{ file = \"{key}\" }}\n[[repository]]\nname = \"infra\"\nurl = \"does-not-exist\"\n[[repository.root]]\npath = \".\"\n"
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let public = write("public.toml", "slipway-agent.pub");
    let e = stderr(&["--config", &public, "check-config"]);
    assert!(
        e.contains("`secrets.signing_key.file`") && e.contains("is a public key"),
        "{e}"
    );

    let good = write("good.toml", "slipway-agent.key");
    let e = stderr(&["--config", &good, "deploy", "--repository", "infra"]);
    assert!(
        e.contains("no repository there") && e.contains("`url`"),
        "{e}"
    );
    let e = stderr(&["--config", &good, "deploy", "--repository", "web"]);
    assert!(
        e.contains("`web` is not configured (configured: infra)"),
        "{e}"
    );
    let e = stderr(&[
        "--config",
        &good,
        "deploy",
        "--repository",
        "infra",
        "--commit",
        "abc",
    ]);
    assert!(e.contains("not a full 40-character commit SHA"), "{e}");
    let e = stderr(&["--config", &good, "audit", "list"]);
    assert!(
        e.contains("no agent database") && e.contains("data_dir"),
        "{e}"
    );
}
