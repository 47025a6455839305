//! Plugin start-up: from process start to the handshake line Terraform waits for,
//! including AutoMTLS certificate generation. The baseline, measured in the same run,
//! is starting a trivial process (`true`) and waiting for it, so the figure reads as
//! "how many process starts' worth of time the handshake costs".
//!
//! Run with `cargo bench -p slipway-tests --bench handshake`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 40;

fn main() {
    let provider = env!("CARGO_BIN_EXE_terraform-provider-tfplugdemo");
    let client_cert = client_certificate_pem();

    let baseline = measure(|| {
        Command::new("true").status().expect("run true");
    });
    let handshake = measure(|| {
        let mut child = Command::new(provider)
            .env(
                "TF_PLUGIN_MAGIC_COOKIE",
                tfplug::handshake::MAGIC_COOKIE_VALUE,
            )
            .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
            .env("PLUGIN_CLIENT_CERT", &client_cert)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read handshake");
        assert!(line.starts_with("1|6|tcp|127.0.0.1:"), "{line}");
        let _ = child.kill();
        let _ = child.wait();
    });

    println!("process start to handshake line, {RUNS} runs each (median, p90):");
    println!(
        "  baseline `true`:     {:>8.2} ms  {:>8.2} ms",
        ms(baseline.0),
        ms(baseline.1)
    );
    println!(
        "  provider handshake:  {:>8.2} ms  {:>8.2} ms",
        ms(handshake.0),
        ms(handshake.1)
    );
    println!(
        "  ratio (median):      {:>8.1}x the baseline",
        handshake.0.as_secs_f64() / baseline.0.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and 90th percentile of `RUNS` timed runs, after two warm-up runs.
fn measure(mut run: impl FnMut()) -> (Duration, Duration) {
    run();
    run();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[RUNS / 2], times[RUNS * 9 / 10])
}

/// A P-521 certificate like the one Terraform passes in `PLUGIN_CLIENT_CERT`.
fn client_certificate_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.self_signed(&key).expect("certificate").pem()
}
