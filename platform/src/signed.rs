//! Ed25519 signatures over JSON documents, each kind of document with its own domain
//! tag so that a signature over one kind is never valid for another (a job credential
//! is never a job ending). Both parts travel as base64url without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use slipway_provenance::{SigningKey, VerifyingKey};

/// Why a signed document was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unsealed {
    Malformed,
    BadSignature,
}

/// `json` signed under `domain`: the document and the signature, base64url.
pub(crate) fn seal(domain: &[u8], json: &[u8], key: &SigningKey) -> (String, String) {
    use ed25519_dalek::Signer as _;
    let signature = key.sign(&tagged(domain, json));
    (
        URL_SAFE_NO_PAD.encode(json),
        URL_SAFE_NO_PAD.encode(signature.to_bytes()),
    )
}

/// The JSON of a document sealed under `domain` by `key`'s owner.
pub(crate) fn open(
    domain: &[u8],
    json_b64: &str,
    signature_b64: &str,
    key: &VerifyingKey,
) -> Result<Vec<u8>, Unsealed> {
    let json = URL_SAFE_NO_PAD
        .decode(json_b64)
        .map_err(|_| Unsealed::Malformed)?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| Unsealed::Malformed)?
        .try_into()
        .map_err(|_| Unsealed::Malformed)?;
    key.verify_strict(
        &tagged(domain, &json),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| Unsealed::BadSignature)?;
    Ok(json)
}

fn tagged(domain: &[u8], json: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(domain.len() + json.len());
    bytes.extend_from_slice(domain);
    bytes.extend_from_slice(json);
    bytes
}
