//! Access tokens sealed at rest: XChaCha20-Poly1305 under the deployment's key
//! (`SWITCHBOARD_SECRETS_KEY`, 32 random bytes in base64), with a fresh random nonce per seal and
//! the account's slug as associated data — a sealed token copied to another account's row does
//! not open there. What is stored is `nonce (24 bytes) ‖ ciphertext ‖ tag`.
//!
//! A token is opened only where it is used (a Graph request); it is never logged, never
//! answered by the API, and `Debug` of either type prints no byte of it.

use std::fmt;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::AccountSlug;
use crate::config::Secret;

/// Bytes of the nonce at the front of a sealed token.
const NONCE: usize = 24;

/// The deployment's key for sealing access tokens.
#[derive(Clone)]
pub struct SealKey(XChaCha20Poly1305);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

/// An access token as stored: sealed, useless without the key and its account's slug.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken(Vec<u8>);

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedToken({} bytes)", self.0.len())
    }
}

impl SealedToken {
    /// As stored (nonce, ciphertext, tag).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As read back from the database.
    pub fn from_bytes(bytes: Vec<u8>) -> SealedToken {
        SealedToken(bytes)
    }
}

/// Why a key or a sealed token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key is not 32 bytes in base64.
    #[error("not 32 bytes in base64 (openssl rand -base64 32 makes one)")]
    BadKey,
    /// The token does not open: another key, another account, or altered bytes.
    #[error("the sealed token does not open with this key for this account")]
    DoesNotOpen,
}

impl SealKey {
    /// The key from its base64 text.
    pub fn from_base64(text: &str) -> Result<SealKey, SealError> {
        let bytes = BASE64_STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        XChaCha20Poly1305::new_from_slice(&bytes)
            .map(SealKey)
            .map_err(|_| SealError::BadKey)
    }

    /// Seals `token` for the account `slug`.
    pub fn seal(&self, slug: &AccountSlug, token: &Secret) -> SealedToken {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: token.expose().as_bytes(),
            aad: slug.as_str().as_bytes(),
        };
        // Encryption with a valid key and a nonce of the right size cannot fail.
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        SealedToken(out)
    }

    /// Opens a token sealed for the account `slug`.
    pub fn open(&self, slug: &AccountSlug, sealed: &SealedToken) -> Result<Secret, SealError> {
        if sealed.0.len() <= NONCE {
            return Err(SealError::DoesNotOpen);
        }
        let (nonce, body) = sealed.0.split_at(NONCE);
        let payload = Payload {
            msg: body,
            aad: slug.as_str().as_bytes(),
        };
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::from_base64(&BASE64_STANDARD.encode([byte; 32])).unwrap()
    }

    fn slug(s: &str) -> AccountSlug {
        AccountSlug::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn a_token_opens_only_with_its_key_for_its_account_and_unaltered() {
        let token = Secret::new("EAAG-the-access-token");
        let sealed = key(1).seal(&slug("acme"), &token);
        assert_eq!(key(1).open(&slug("acme"), &sealed), Ok(token.clone()));
        // Sealed twice, never the same bytes (a fresh nonce each time).
        assert_ne!(sealed, key(1).seal(&slug("acme"), &token));
        assert_eq!(
            key(2).open(&slug("acme"), &sealed),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            key(1).open(&slug("rival"), &sealed),
            Err(SealError::DoesNotOpen)
        );
        let mut altered = sealed.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            key(1).open(&slug("acme"), &SealedToken::from_bytes(altered)),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            key(1).open(&slug("acme"), &SealedToken::from_bytes(vec![0; 10])),
            Err(SealError::DoesNotOpen)
        );
        // No byte of the token in what is stored or printed.
        let stored = sealed.as_bytes();
        assert!(!stored.windows(5).any(|w| w == b"EAAG-"));
        assert!(!format!("{sealed:?} {:?}", key(1)).contains("EAAG"));
    }

    #[test]
    fn a_key_is_32_bytes_of_base64() {
        assert!(SealKey::from_base64(&BASE64_STANDARD.encode([7u8; 32])).is_ok());
        for bad in ["", "not base64!", &BASE64_STANDARD.encode([7u8; 16])] {
            assert_eq!(SealKey::from_base64(bad).unwrap_err(), SealError::BadKey);
        }
    }
}
