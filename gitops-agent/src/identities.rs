//! The platform's identities as the agent hosts them: `<data_dir>/platform.db` (mode
//! 0600), read by the HTTP API's [`crate::api::ApiCaller`] and managed with
//! `slipway-agent token create|list|revoke`.

use std::io::Write as _;

use anyhow::Context as _;
use slipway_platform::{Authority, Policy, Role, SqliteStore, Store as _};
use slipway_provenance::VerifyingKey;

use crate::config::Config;

/// The authority over the agent's own platform database.
pub type PlatformAuthority = Authority<SqliteStore>;

/// Opens the platform database under `data_dir` (creating both, owner-only).
/// `engine_key` is the agent's own public key: the job credentials it mints.
pub fn open(
    config: &Config,
    engine_key: Option<VerifyingKey>,
) -> anyhow::Result<PlatformAuthority> {
    let dir = &config.data_dir;
    slipway_platform::store::create_private_dir(dir)
        .with_context(|| format!("create data_dir {}", dir.display()))?;
    let path = config.platform_database_path();
    let store = SqliteStore::open(&path)?;
    Ok(Authority::new(store, Policy::default(), engine_key))
}

/// `slipway-agent token create`: prints the token alone on stdout (so a script can
/// capture it) and what it is on stderr. It is never shown again.
pub fn create(config: &Config, name: &str, role: Role) -> anyhow::Result<i32> {
    let authority = open(config, None)?;
    let token = authority.create_identity(name, role, crate::db::now_ms())?;
    eprintln!(
        "created identity `{name}` with role {role}; its token follows, shown this once \
         (store it now: only its digest is kept)"
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", token.expose())?;
    Ok(0)
}

/// `slipway-agent token list`: names, roles and dates; never a token.
pub fn list(config: &Config) -> anyhow::Result<i32> {
    let authority = open(config, None)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{:<32} {:<10} {:<25} REVOKED",
        "NAME", "ROLE", "CREATED"
    )?;
    for record in authority.store().list_identities()? {
        writeln!(
            stdout,
            "{:<32} {:<10} {:<25} {}",
            record.identity.name,
            record.identity.role,
            format_ms(record.created_at_ms),
            record
                .revoked_at_ms
                .map(format_ms)
                .unwrap_or_else(|| "-".into())
        )?;
    }
    Ok(0)
}

/// `slipway-agent token revoke NAME`: the token stops working at once.
pub fn revoke(config: &Config, name: &str) -> anyhow::Result<i32> {
    let authority = open(config, None)?;
    authority
        .store()
        .revoke_identity(name, crate::db::now_ms())?;
    eprintln!("revoked identity `{name}`: its token no longer works");
    Ok(0)
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
