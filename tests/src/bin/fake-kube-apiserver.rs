//! Runs the fake Kubernetes API server (see `slipway_tests::fake_kube`) until killed.
//!
//! ```text
//! fake-kube-apiserver [--port N] [--kubeconfig PATH] [--token T]
//!                     [--rollout-step-ms N] [--namespace-termination-ms N]
//! ```
//!
//! Prints `url=https://127.0.0.1:PORT` and, with `--kubeconfig`, `kubeconfig=PATH` once
//! the kubeconfig is written, each on its own line, so a test can wait for them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use slipway_tests::fake_kube::{FakeKube, Options};

fn usage(problem: &str) -> ExitCode {
    eprintln!("fake-kube-apiserver: {problem}");
    eprintln!("usage: fake-kube-apiserver [--port N] [--kubeconfig PATH] [--token T] [--rollout-step-ms N] [--namespace-termination-ms N]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut options = Options::default();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage(&format!("{flag} needs a value"));
        };
        let millis = || value.parse::<u64>().map(Duration::from_millis);
        match flag.as_str() {
            "--port" => match value.parse() {
                Ok(p) => options.port = p,
                Err(_) => return usage("--port takes a number"),
            },
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(&value)),
            "--token" => options.token = value.clone(),
            "--rollout-step-ms" => match millis() {
                Ok(d) => options.timing.step = d,
                Err(_) => return usage("--rollout-step-ms takes milliseconds"),
            },
            "--namespace-termination-ms" => match millis() {
                Ok(d) => options.timing.namespace_termination = d,
                Err(_) => return usage("--namespace-termination-ms takes milliseconds"),
            },
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let server = match FakeKube::start_with(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-kube-apiserver: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "url={}", server.url());
    if let Some(path) = kubeconfig {
        if let Err(e) = server.write_kubeconfig(&path) {
            eprintln!("fake-kube-apiserver: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        let _ = writeln!(out, "kubeconfig={}", path.display());
    }
    let _ = out.flush();
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
