//! Redacting secret values from text that is kept or sent (logs, errors, the audit
//! log, GitHub comments).
//!
//! A multi-line secret (a PEM key) rarely shows up whole: logs and error messages are
//! cut into lines, so each of its lines is a secret of its own here, and is redacted
//! wherever it appears. Longer values go first, so that a secret containing another
//! is redacted whole.

use std::borrow::Cow;

/// What replaces a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// Lines of a multi-line secret shorter than this are not redacted on their own (a
/// lone `-----` or a short word would blank out ordinary text); the whole value still is.
const MIN_LINE: usize = 8;

/// The values to hide.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Values shorter than `min_len` are ignored (a one-character secret would
    /// redact every occurrence of that character).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>, min_len: usize) -> Redactor {
        let mut secrets = Vec::new();
        for value in values {
            if value.len() < min_len.max(1) {
                continue;
            }
            secrets.push(value.to_owned());
            if value.contains('\n') {
                secrets.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|line| line.len() >= MIN_LINE)
                        .map(str::to_owned),
                );
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_longest_first_and_each_line_of_a_multi_line_one() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let r = Redactor::new(["hunter2", "hunter2-extra", pem, "x"], 4);
        assert_eq!(
            r.redact("pw=hunter2-extra and hunter2, x"),
            "pw=[REDACTED] and [REDACTED], x"
        );
        // The key logged line by line, as a program's output would be.
        let logged = "loading key\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7 done";
        let out = r.redact(logged);
        assert!(!out.contains("MIIEvQ") && !out.contains("BKcwgg"), "{out}");
        assert!(out.starts_with("loading key\n"));
        assert_eq!(r.redact(pem).matches(REDACTED).count(), 1);
    }
}
