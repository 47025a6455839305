//! The go-plugin start-up handshake.
//!
//! Terraform starts a provider with a few environment variables, then reads exactly one
//! line from its stdout: `CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT`. Everything here turns
//! those variables into that line, and explains itself when a person runs the binary by
//! hand instead.

use std::net::SocketAddr;

use base64::Engine;
use tokio::net::TcpListener;

/// The cookie go-plugin uses to tell a plugin that Terraform started it.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Terraform's cookie value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's own protocol version (the first field of the line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The only Terraform plugin protocol this crate speaks.
pub const PLUGIN_PROTOCOL_VERSION: u32 = 6;

/// Why the handshake could not happen.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandshakeError {
    #[error(
        "this binary is a Terraform provider plugin: it is started by Terraform, not by hand. \
         Use it from a Terraform configuration (see the provider's README), or run it with \
         --debug to attach Terraform to it"
    )]
    NotStartedByTerraform,
    #[error(
        "Terraform offered plugin protocol versions {offered:?}, but this provider speaks only \
         version 6: use Terraform 1.0 or newer"
    )]
    UnsupportedProtocol { offered: String },
    #[error("{name} is {value:?}, which is not a port number")]
    BadPort { name: &'static str, value: String },
    #[error("no free port on 127.0.0.1 between {min} and {max}")]
    NoFreePort { min: u16, max: u16 },
    #[error("PLUGIN_CLIENT_CERT is not set: Terraform always sends it, so this process was not started by a compatible Terraform")]
    MissingClientCertificate,
    #[error("could not listen on 127.0.0.1: {0}")]
    Listen(String),
}

/// The environment as a lookup, so that tests need not touch the process environment.
pub trait Environment {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

/// Fails unless Terraform's magic cookie is present.
pub fn check_magic_cookie(env: &dyn Environment) -> Result<(), HandshakeError> {
    match env.get(MAGIC_COOKIE_KEY) {
        Some(value) if value == MAGIC_COOKIE_VALUE => Ok(()),
        _ => Err(HandshakeError::NotStartedByTerraform),
    }
}

/// Picks protocol 6 from `PLUGIN_PROTOCOL_VERSIONS` (a comma-separated list in any
/// order). When the variable is absent, go-plugin falls back to the plugin's own
/// version, and so do we.
pub fn negotiate_protocol(env: &dyn Environment) -> Result<u32, HandshakeError> {
    let Some(offered) = env.get("PLUGIN_PROTOCOL_VERSIONS") else {
        return Ok(PLUGIN_PROTOCOL_VERSION);
    };
    let speaks_ours = offered
        .split(',')
        .filter_map(|v| v.trim().parse::<u32>().ok())
        .any(|v| v == PLUGIN_PROTOCOL_VERSION);
    if speaks_ours {
        Ok(PLUGIN_PROTOCOL_VERSION)
    } else {
        Err(HandshakeError::UnsupportedProtocol { offered })
    }
}

/// The port range from `PLUGIN_MIN_PORT` and `PLUGIN_MAX_PORT`, when both are set.
pub fn port_range(env: &dyn Environment) -> Result<Option<(u16, u16)>, HandshakeError> {
    let parse = |name: &'static str| -> Result<Option<u16>, HandshakeError> {
        match env.get(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u16>()
                .map(Some)
                .map_err(|_| HandshakeError::BadPort { name, value: v }),
        }
    };
    match (parse("PLUGIN_MIN_PORT")?, parse("PLUGIN_MAX_PORT")?) {
        (Some(min), Some(max)) if min <= max => Ok(Some((min, max))),
        (Some(min), Some(max)) => Err(HandshakeError::NoFreePort { min, max }),
        _ => Ok(None),
    }
}

/// Listens on 127.0.0.1, within the port range when one is given, else on any free
/// port.
pub async fn listen(range: Option<(u16, u16)>) -> Result<TcpListener, HandshakeError> {
    match range {
        None => TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| HandshakeError::Listen(e.to_string())),
        Some((min, max)) => {
            for port in min..=max {
                if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                    return Ok(listener);
                }
            }
            Err(HandshakeError::NoFreePort { min, max })
        }
    }
}

/// The handshake line, without its newline. The certificate is unpadded standard
/// base64 of its DER, as go-plugin expects; with no certificate (debug mode) the
/// field is left out.
pub fn handshake_line(address: SocketAddr, certificate_der: Option<&[u8]>) -> String {
    let mut line = format!("{CORE_PROTOCOL_VERSION}|{PLUGIN_PROTOCOL_VERSION}|tcp|{address}|grpc");
    if let Some(der) = certificate_der {
        line.push('|');
        line.push_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(der));
    }
    line
}

/// The value of `TF_REATTACH_PROVIDERS` that attaches Terraform to a provider running
/// in debug mode.
pub fn reattach_config(provider_address: &str, address: SocketAddr, pid: u32) -> String {
    serde_json::json!({
        provider_address: {
            "Protocol": "grpc",
            "ProtocolVersion": PLUGIN_PROTOCOL_VERSION,
            "Pid": pid,
            "Test": true,
            "Addr": { "Network": "tcp", "String": address.to_string() }
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Environment {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn cookie_must_match() {
        assert_eq!(
            check_magic_cookie(&env(&[])),
            Err(HandshakeError::NotStartedByTerraform)
        );
        assert_eq!(
            check_magic_cookie(&env(&[(MAGIC_COOKIE_KEY, "wrong")])),
            Err(HandshakeError::NotStartedByTerraform)
        );
        assert!(check_magic_cookie(&env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)])).is_ok());
    }

    #[test]
    fn protocol_versions_in_any_order() {
        for offered in ["5,6", "6,5", "6", " 4, 6 "] {
            assert_eq!(
                negotiate_protocol(&env(&[("PLUGIN_PROTOCOL_VERSIONS", offered)])),
                Ok(6),
                "{offered}"
            );
        }
        assert!(matches!(
            negotiate_protocol(&env(&[("PLUGIN_PROTOCOL_VERSIONS", "4,5")])),
            Err(HandshakeError::UnsupportedProtocol { .. })
        ));
        assert_eq!(negotiate_protocol(&env(&[])), Ok(6));
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(port_range(&env(&[])), Ok(None));
        assert_eq!(
            port_range(&env(&[
                ("PLUGIN_MIN_PORT", "10000"),
                ("PLUGIN_MAX_PORT", "10010")
            ])),
            Ok(Some((10000, 10010)))
        );
        assert!(matches!(
            port_range(&env(&[("PLUGIN_MIN_PORT", "x"), ("PLUGIN_MAX_PORT", "1")])),
            Err(HandshakeError::BadPort {
                name: "PLUGIN_MIN_PORT",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn listens_inside_the_range() {
        let first = listen(Some((20000, 20100))).await.unwrap();
        let port = first.local_addr().unwrap().port();
        assert!((20000..=20100).contains(&port));
        // With that port taken, the next listener moves on within the range.
        let second = listen(Some((port, 20100))).await.unwrap();
        assert_ne!(second.local_addr().unwrap().port(), port);
    }

    #[test]
    fn handshake_line_format() {
        let addr: SocketAddr = "127.0.0.1:12345".parse().unwrap();
        assert_eq!(handshake_line(addr, None), "1|6|tcp|127.0.0.1:12345|grpc");
        // Unpadded base64: 4 bytes would be "AQIDBA==" padded.
        assert_eq!(
            handshake_line(addr, Some(&[1, 2, 3, 4])),
            "1|6|tcp|127.0.0.1:12345|grpc|AQIDBA"
        );
    }

    #[test]
    fn reattach_json() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&reattach_config("registry.terraform.io/x/y", addr, 7)).unwrap();
        assert_eq!(
            json["registry.terraform.io/x/y"]["Addr"]["String"],
            "127.0.0.1:5000"
        );
        assert_eq!(json["registry.terraform.io/x/y"]["ProtocolVersion"], 6);
    }
}
