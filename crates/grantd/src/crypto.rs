//! Encryption at rest: AES-256-GCM with a random 96-bit nonce per value. Every ciphertext is stored
//! beside the id of the key that sealed it, so keys can rotate: the current key seals, any
//! configured key opens. This is the only module that sees key bytes.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "encryption key must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error(
        "no configured encryption key has id {0}; add the key that sealed this data to GRANTD_ENCRYPTION_KEYS_OLD"
    )]
    UnknownKey(String),
    #[error("ciphertext failed authentication (wrong key or tampered data)")]
    Tampered,
}

/// A sealed value: `nonce || ciphertext+tag`, plus the id of the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub struct Cipher {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("current_key_id", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The key id: the first 8 bytes of SHA-256 over the key, hex. Not secret, stable.
fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

fn decode_key(b64: &str) -> Result<Vec<u8>, Error> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| Error::BadKey)?;
    if bytes.len() != 32 {
        return Err(Error::BadKey);
    }
    Ok(bytes)
}

impl Cipher {
    /// `current` seals new data; `old` keys (base64) only open data sealed before a rotation.
    pub fn new(current_b64: &str, old_b64: &[String]) -> Result<Self, Error> {
        let cur = decode_key(current_b64)?;
        let current = key_id(&cur);
        let mut keys = BTreeMap::new();
        keys.insert(
            current.clone(),
            Aes256Gcm::new_from_slice(&cur).expect("32-byte key"),
        );
        for k in old_b64 {
            let bytes = decode_key(k)?;
            keys.insert(
                key_id(&bytes),
                Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            );
        }
        Ok(Self { current, keys })
    }

    /// The cipher the configuration names: `GRANTD_ENCRYPTION_KEY` seals, the keys in
    /// `GRANTD_ENCRYPTION_KEYS_OLD` still open.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, Error> {
        use secrecy::ExposeSecret;
        let old: Vec<String> = config
            .old_encryption_keys
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        Self::new(config.encryption_key.expose_secret(), &old)
    }

    /// A fresh random key, base64 (used by `grantd dev` and tests).
    pub fn generate_key() -> String {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        STANDARD.encode(k)
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Seals `plaintext`. `context` (e.g. the column name) is bound as associated data, so a value
    /// cannot be moved to another column and still open.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Sealed {
        let cipher = &self.keys[&self.current];
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ct);
        Sealed {
            key_id: self.current.clone(),
            bytes,
        }
    }

    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<Vec<u8>, Error> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| Error::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < 12 + 16 {
            return Err(Error::Tampered);
        }
        let (nonce, ct) = sealed.bytes.split_at(12);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let c = Cipher::new(&Cipher::generate_key(), &[]).unwrap();
        let s = c.seal("credentials", b"hello");
        assert_ne!(&s.bytes[12..], b"hello");
        assert_eq!(c.open("credentials", &s).unwrap(), b"hello");
        assert!(matches!(c.open("client_secret", &s), Err(Error::Tampered)));
    }

    #[test]
    fn rotation_opens_old_data() {
        let old = Cipher::generate_key();
        let sealed = Cipher::new(&old, &[]).unwrap().seal("x", b"v");
        let rotated = Cipher::new(&Cipher::generate_key(), &[old]).unwrap();
        assert_eq!(rotated.open("x", &sealed).unwrap(), b"v");
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        let without = Cipher::new(&Cipher::generate_key(), &[]).unwrap();
        assert!(matches!(
            without.open("x", &sealed),
            Err(Error::UnknownKey(_))
        ));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(Cipher::new("not base64!", &[]).is_err());
        assert!(Cipher::new(&STANDARD.encode([0u8; 16]), &[]).is_err());
    }
}
