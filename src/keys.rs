//! Ed25519 keys as the agent and its tools read and write them.
//!
//! The provider signs bundles and commands; the agent trusts the keys in
//! `provisioning.public_keys`. Parsing a key is a config concern (the config
//! is checked when it is loaded) as much as a bundle one, so it sits here,
//! below both. Errors describe the expected form and never show a private
//! key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The key id of a public key: the first 8 bytes of SHA-256 of its 32 raw bytes, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The raw public key in base64: the form `provisioning.public_keys` takes.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

/// Parses a `provisioning.public_keys` entry: the base64 of a raw 32-byte
/// Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let expected =
        "expected the base64 of a raw 32-byte Ed25519 public key, as `cpe-agent keygen` prints it";
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| format!("{expected}; {text:?} is not base64"))?;
    let raw: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{expected}; this decodes to {} bytes", bytes.len()))?;
    let key = VerifyingKey::from_bytes(&raw)
        .map_err(|_| format!("{expected}; these 32 bytes are not an Ed25519 public key"))?;
    if key.is_weak() {
        return Err(format!("{expected}; this is a weak (small-order) key"));
    }
    Ok(key)
}

/// Parses a public key file: SPKI PEM (`openssl pkey -pubout`, `keygen`'s
/// `.pub`) or the base64 raw key.
pub fn parse_public_key_file(text: &str) -> Result<VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    if text.trim_start().starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
            format!("not an Ed25519 public key in SPKI PEM (as `openssl pkey -pubout` writes): {e}")
        })
    } else {
        parse_public_key(text)
    }
}

/// Parses a private key file: PKCS#8 PEM, as `openssl genpkey -algorithm
/// ed25519` and `cpe-agent keygen` write. The error never shows the key.
pub fn parse_private_key(text: &str) -> Result<SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| {
        format!("not an Ed25519 private key in PKCS#8 PEM (as `openssl genpkey -algorithm ed25519` writes): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn public_keys_parse_only_from_32_byte_base64() {
        let k = key(1).verifying_key();
        assert_eq!(parse_public_key(&public_key_base64(&k)), Ok(k));
        assert!(parse_public_key("not base64!").is_err());
        assert!(parse_public_key(&BASE64.encode([1u8; 31])).is_err());
        assert!(parse_public_key(&BASE64.encode([0u8; 32])).is_err());
    }

    #[test]
    fn pem_keys_round_trip() {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
        let k = key(3);
        let private = k.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert_eq!(
            parse_private_key(&private).expect("private").to_bytes(),
            k.to_bytes()
        );
        let public = k
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        assert_eq!(parse_public_key_file(&public), Ok(k.verifying_key()));
        assert!(parse_private_key(&public).is_err());
    }
}
