//! `token create|list|revoke`: managing a platform's named identities from a command
//! line. The agent (`slipway-agent token ...`, over its own database) and the embedded
//! platform (`terraform-provider-slipway runtime token ...`, over the Slipway home's)
//! run the same code.

use std::io::Write;
use std::path::Path;

use crate::authority::AuthError;
use crate::identity::Role;
use crate::policy::Policy;
use crate::store::{SqliteStore, Store as _};
use crate::{now_ms, Authority};

fn open(database: &Path) -> Result<Authority<SqliteStore>, AuthError> {
    Ok(Authority::new(
        SqliteStore::open(database)?,
        Policy::default(),
        None,
    ))
}

/// Creates an identity; prints its token alone on `out` (so that a script can capture
/// it) and what it is on `note`. The token is never shown again.
pub fn create(
    database: &Path,
    name: &str,
    role: Role,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), TokenCliError> {
    let token = open(database)?.create_identity(name, role, now_ms())?;
    writeln!(
        note,
        "created identity `{name}` with role {role}; its token follows, shown this once \
         (store it now: only its digest is kept)"
    )?;
    writeln!(out, "{}", token.expose())?;
    Ok(())
}

/// Lists names, roles and dates; never a token.
pub fn list(database: &Path, out: &mut dyn Write) -> Result<(), TokenCliError> {
    let authority = open(database)?;
    writeln!(
        out,
        "{:<32} {:<10} {:<25} REVOKED",
        "NAME", "ROLE", "CREATED"
    )?;
    for record in authority.store().list_identities()? {
        writeln!(
            out,
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
    Ok(())
}

/// Revokes the live identity `name`: its token stops working at once.
pub fn revoke(database: &Path, name: &str, note: &mut dyn Write) -> Result<(), TokenCliError> {
    open(database)?.store().revoke_identity(name, now_ms())?;
    writeln!(note, "revoked identity `{name}`: its token no longer works")?;
    Ok(())
}

/// Why a token command failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenCliError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
