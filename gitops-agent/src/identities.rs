//! The platform's identities as the agent hosts them: `<data_dir>/platform.db` (mode
//! 0600), read by the HTTP API's [`crate::api::ApiCaller`] and managed with
//! `slipway-agent token create|list|revoke`.

use anyhow::Context as _;
use slipway_platform::{Authority, Policy, Role, SqliteStore};
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

/// `slipway-agent token create`: the token alone on stdout, what it is on stderr.
pub fn create(config: &Config, name: &str, role: Role) -> anyhow::Result<i32> {
    open(config, None)?;
    slipway_platform::tokens::create(
        &config.platform_database_path(),
        name,
        role,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(0)
}

/// `slipway-agent token list`: names, roles and dates; never a token.
pub fn list(config: &Config) -> anyhow::Result<i32> {
    open(config, None)?;
    slipway_platform::tokens::list(
        &config.platform_database_path(),
        &mut std::io::stdout().lock(),
    )?;
    Ok(0)
}

/// `slipway-agent token revoke NAME`: the token stops working at once.
pub fn revoke(config: &Config, name: &str) -> anyhow::Result<i32> {
    open(config, None)?;
    slipway_platform::tokens::revoke(
        &config.platform_database_path(),
        name,
        &mut std::io::stderr().lock(),
    )?;
    Ok(0)
}
