//! Health probes: HTTP, TCP and exec, run by the daemon against each replica.
//!
//! Probes target the replica's own port (the one handed to it in `PORT`), never the
//! stable proxy port, so that one replica's health says nothing about another's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{HealthCheck, HealthProbe};

/// A probe with the spec's port numbers resolved to the replica's own ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http {
        path: String,
        port: u16,
    },
    Tcp {
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
    /// No health check and no port: a replica is healthy while its process runs.
    Running,
}

/// The timing of a replica's health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPolicy {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl CheckPolicy {
    /// Resolves a spec's health check for one replica. A probe's port is the port the
    /// spec declares (`ports[].port`); the runtime maps it to the port it gave this
    /// replica for that entry. Port 0 means the first port. A port that matches no
    /// entry is probed as is. Without a health check, a replica with ports is healthy
    /// once its first port accepts TCP connections; without ports, once it runs.
    pub fn resolve(
        check: Option<&HealthCheck>,
        spec_ports: &[(u16, u16)],
        first_port: Option<u16>,
    ) -> CheckPolicy {
        let map = |port: u16| -> u16 {
            if port == 0 {
                return first_port.unwrap_or(0);
            }
            spec_ports
                .iter()
                .find(|(declared, _)| *declared == port)
                .map(|(_, actual)| *actual)
                .unwrap_or(port)
        };
        match check {
            Some(check) => CheckPolicy {
                probe: match &check.probe {
                    HealthProbe::Http { path, port } => Probe::Http {
                        path: if path.is_empty() {
                            "/".to_string()
                        } else {
                            path.clone()
                        },
                        port: map(*port),
                    },
                    HealthProbe::Tcp { port } => Probe::Tcp { port: map(*port) },
                    HealthProbe::Exec { command } => Probe::Exec {
                        command: command.clone(),
                    },
                },
                interval: check.interval.max(Duration::from_millis(100)),
                timeout: check.timeout.max(Duration::from_millis(100)),
                healthy_threshold: check.healthy_threshold.max(1),
                unhealthy_threshold: check.unhealthy_threshold.max(1),
            },
            None => CheckPolicy {
                probe: match first_port {
                    Some(port) => Probe::Tcp { port },
                    None => Probe::Running,
                },
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
            },
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Http { path, port } => write!(f, "http GET {path} on port {port}"),
            Probe::Tcp { port } => write!(f, "tcp connect to port {port}"),
            Probe::Exec { command } => write!(f, "exec `{}`", command.join(" ")),
            Probe::Running => write!(f, "process running"),
        }
    }
}

/// Runs a probe once. `Err` says why it failed, in a few words.
pub async fn check(
    probe: &Probe,
    timeout: Duration,
    env: &BTreeMap<String, String>,
    working_dir: &PathBuf,
) -> Result<(), String> {
    let run = async {
        match probe {
            Probe::Http { path, port } => http(path, *port).await,
            Probe::Tcp { port } => TcpStream::connect(("127.0.0.1", *port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Probe::Exec { command } => exec(command, env, working_dir).await,
            Probe::Running => Ok(()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}

async fn http(path: &str, port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: slipway-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| "the answer is not HTTP".to_string())?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

async fn exec(
    command: &[String],
    env: &BTreeMap<String, String>,
    working_dir: &PathBuf,
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("the exec health check has an empty command".to_string());
    };
    let output = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or("").trim();
    if last.is_empty() {
        Err(format!("{}", output.status))
    } else {
        Err(format!("{}: {last}", output.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ports_map_to_the_replica_ports() {
        let check = HealthCheck {
            probe: HealthProbe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 0,
            unhealthy_threshold: 2,
        };
        let policy = CheckPolicy::resolve(Some(&check), &[(8080, 41000)], Some(41000));
        assert_eq!(
            policy.probe,
            Probe::Http {
                path: "/healthz".into(),
                port: 41000
            }
        );
        assert_eq!(policy.healthy_threshold, 1);
        let default = CheckPolicy::resolve(None, &[(8080, 41000)], Some(41000));
        assert_eq!(default.probe, Probe::Tcp { port: 41000 });
        assert_eq!(CheckPolicy::resolve(None, &[], None).probe, Probe::Running);
    }

    #[tokio::test]
    async fn probes_report_why_they_fail() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let dir = std::env::temp_dir();
        let env = BTreeMap::new();
        let err = check(&Probe::Tcp { port }, Duration::from_secs(2), &env, &dir)
            .await
            .unwrap_err();
        assert!(err.to_lowercase().contains("refused"), "{err}");
        let ok = check(
            &Probe::Exec {
                command: vec!["true".into()],
            },
            Duration::from_secs(5),
            &env,
            &dir,
        )
        .await;
        assert!(ok.is_ok(), "{ok:?}");
        let err = check(
            &Probe::Exec {
                command: vec!["false".into()],
            },
            Duration::from_secs(5),
            &env,
            &dir,
        )
        .await
        .unwrap_err();
        assert!(err.contains("exit status"), "{err}");
    }
}
