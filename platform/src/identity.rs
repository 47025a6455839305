//! Identities: named tokens with a role, and the caller a request resolves to.
//!
//! A token is shown once, when it is created, and stored only as its SHA-256 digest:
//! the platform's database never holds a value that would let anyone call it.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What a named identity is for, and so what the policy lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the platform: manages identities; changes what the policy opens to people.
    Admin,
    /// A person deploying: DEVELOPMENT and PREVIEW (and what the policy adds).
    Developer,
    /// An AI coding agent acting for a person: the same modes as a developer.
    Agent,
    /// Reads only.
    Viewer,
    /// Approves changes that wait for an approval (a STAGING root's merge jobs:
    /// `slipway-agent approve`); changes nothing itself, and never approves a change
    /// it authored.
    Approver,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Developer,
        Role::Agent,
        Role::Viewer,
        Role::Approver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Approver => "approver",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: use admin, developer, agent, viewer or approver")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A named identity: the audit log's "who" for every call made with its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// Why an identity name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "identity name `{0}` is not allowed: use 1 to 64 letters, digits and `.`, `_`, `-`, `@` \
     (for example `alice` or `claude-code@alice`)"
)]
pub struct InvalidName(pub String);

/// Checks an identity name: it appears in the audit log and in refusals, so it must be
/// short, printable and unable to forge a line or a field of its own.
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

/// The prefix of every named token, so that a leaked one is recognisable (secret
/// scanners match on it) and never confused with a job credential.
pub const TOKEN_PREFIX: &str = "slw_";

/// A token's plaintext. It exists only between its creation and the moment it is shown
/// to whoever asked for it, and while a request carrying it is authenticated.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token: 32 bytes from the operating system's generator.
    pub fn generate() -> Result<Token, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Token(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// A token as a caller presented it (a bearer value).
    pub fn from_presented(text: &str) -> Token {
        Token(text.trim().to_owned())
    }

    /// The plaintext, to show once to the person who created the token.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up instead of the token.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

/// Never prints the token, so a `{:?}` in a log or an error cannot leak it.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The SHA-256 digest of a token: the only form in which the platform keeps it.
/// Tokens are 256 random bits, so a plain (unsalted) digest cannot be reversed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub [u8; 32]);

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// The local user's name, for the record of a manual apply: `$USER` (or `$LOGNAME`),
/// else the account of this process's user id, which is what a service without a login
/// environment has.
pub fn local_user() -> String {
    if let Some(name) = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    {
        return name;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
            let account = std::fs::read_to_string("/etc/passwd")
                .ok()
                .and_then(|passwd| {
                    passwd.lines().find_map(|line| {
                        let mut fields = line.split(':');
                        let name = fields.next()?;
                        let id = fields.nth(1)?;
                        (id == uid.to_string()).then(|| name.to_owned())
                    })
                });
            return account.unwrap_or_else(|| format!("uid {uid}"));
        }
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_never_printed() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
        assert!(!format!("{:?}", a.digest()).contains(&a.expose()[4..10]));
    }

    #[test]
    fn a_presented_token_has_the_digest_of_the_created_one() {
        let token = Token::generate().unwrap();
        let presented = Token::from_presented(&format!(" {} \n", token.expose()));
        assert_eq!(presented.digest(), token.digest());
        assert_ne!(Token::from_presented("slw_other").digest(), token.digest());
    }

    #[test]
    fn names_are_checked() {
        for good in ["alice", "claude-code@alice", "ci.main_1"] {
            check_name(good).unwrap();
        }
        for bad in ["", "a b", "x\ny", "alice;rm", &"a".repeat(65)] {
            let err = check_name(bad).unwrap_err();
            assert!(err.to_string().contains("claude-code@alice"), "{err}");
        }
    }

    #[test]
    fn roles_parse_by_name_only() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .to_string()
            .contains("admin, developer"));
    }
}
