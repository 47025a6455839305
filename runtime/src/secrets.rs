//! Secrets are write-only: once written, a runtime gives back only a digest of each
//! value, never the value, to any caller.
//!
//! The provider still plans a change when a secret changed and nothing when it did
//! not: on reading, a digest that matches the value Terraform's state holds keeps that
//! value ([`reconcile`]); a digest that does not (someone changed the secret out of
//! band) stays in the state as the digest, so the next plan shows the secret changing
//! back. The digest is bound to the object and the key, so equal values in two places
//! do not show as equal.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

/// What a digest starts with.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The digest of secret `key` of the object `owner` (an environment or application id).
pub fn digest(owner: &str, key: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["slipway-secret", owner, key, value] {
        hasher.update(part.len().to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{DIGEST_PREFIX}{hex}")
}

/// Every value replaced by its digest.
pub fn digests(owner: &str, secrets: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    secrets
        .iter()
        .map(|(k, v)| (k.clone(), digest(owner, k, v)))
        .collect()
}

/// Whether `value` has the form of a [`digest`].
pub fn is_digest(value: &str) -> bool {
    value.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The digest of each secret a runtime read back: runtimes behind the platform give
/// digests already; one that gives values (the in-memory runtime) gets them computed.
/// A value that has the form of a digest is taken for one: a secret set to such a
/// string by hand only confuses drift detection of itself.
pub fn as_digests(owner: &str, read: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    read.iter()
        .map(|(k, v)| {
            let d = if is_digest(v) {
                v.clone()
            } else {
                digest(owner, k, v)
            };
            (k.clone(), d)
        })
        .collect()
}

/// What the state should hold after a read: for each secret the runtime has, the
/// known value when the runtime's digest is that value's, else what the runtime gave.
pub fn reconcile(
    owner: &str,
    known: &BTreeMap<String, String>,
    read: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    read.iter()
        .map(|(key, value)| {
            let kept = known
                .get(key)
                .filter(|known| *value == **known || *value == digest(owner, key, known));
            (key.clone(), kept.unwrap_or(value).clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_digest_keeps_the_value_and_a_changed_one_shows() {
        let known: BTreeMap<String, String> =
            [("A".into(), "one".into()), ("B".into(), "two".into())].into();
        let mut read = digests("app-1", &known);
        assert!(!read.values().any(|v| v == "one" || v == "two"));
        assert_eq!(reconcile("app-1", &known, &read), known);
        read.insert("B".into(), digest("app-1", "B", "changed"));
        let after = reconcile("app-1", &known, &read);
        assert_eq!(after["A"], "one");
        assert!(after["B"].starts_with(DIGEST_PREFIX));
        // A runtime that returns values (the in-memory one) reconciles too.
        assert_eq!(reconcile("app-1", &known, &known), known);
        // Digests of what is read, whichever a runtime gives.
        assert_eq!(as_digests("app-1", &known), digests("app-1", &known));
        assert_eq!(
            as_digests("app-1", &digests("app-1", &known)),
            digests("app-1", &known)
        );
        assert!(!is_digest("sha256:short") && is_digest(&digest("a", "b", "c")));
        // Bound to the object: the same value elsewhere has another digest.
        assert_ne!(digest("app-1", "A", "one"), digest("app-2", "A", "one"));
    }
}
