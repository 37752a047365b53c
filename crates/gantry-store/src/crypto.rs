//! Secrets at rest: XChaCha20-Poly1305 under a key file in the data directory.
//!
//! SigV4 verification recomputes the signature from the secret, so a secret
//! access key cannot be hashed like a password: it must come back in clear.
//! It is encrypted instead, under a 32-byte key kept in a file beside the
//! database (created with mode 0600 on first start). A copy of the database
//! alone does not reveal any secret; a copy of the data directory does, so
//! back the key file up separately and guard it like the secrets themselves.

use std::fmt;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Why a key file could not be used, or a secret not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or creating the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("key file {0} must hold exactly 32 bytes")]
    BadKeyFile(String),
    /// A secret did not decrypt: the wrong key file, or a tampered row.
    #[error(
        "a stored secret does not decrypt with this key file (wrong key file, or the row was altered)"
    )]
    Decrypt,
}

/// The key that encrypts secrets at rest.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads the key file at `path`, or creates it (mode 0600, 32 random
    /// bytes) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => MasterKey::from_bytes(&bytes)
                .ok_or_else(|| CryptoError::BadKeyFile(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(MasterKey(XChaCha20Poly1305::new(&key)))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        XChaCha20Poly1305::new_from_slice(bytes).ok().map(MasterKey)
    }

    /// Encrypts `plain`, bound to `context` (e.g. the access key id):
    /// returns (nonce, ciphertext).
    pub(crate) fn seal(&self, context: &str, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages larger than the cipher's limit
        // (256 GiB); a secret access key is 40 bytes.
        let cipher = self.0.encrypt(&nonce, payload).unwrap_or_default();
        (nonce.to_vec(), cipher)
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub(crate) fn open(
        &self,
        context: &str,
        nonce: &[u8],
        cipher: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if nonce.len() != 24 {
            return Err(CryptoError::Decrypt);
        }
        let payload = Payload {
            msg: cipher,
            aad: context.as_bytes(),
        };
        self.0
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let a = MasterKey::load_or_create(&path).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = MasterKey::load_or_create(&path).expect("reload");
        let (nonce, sealed) = a.seal("AKID", b"secret");
        assert_eq!(b.open("AKID", &nonce, &sealed).expect("open"), b"secret");
        assert!(b.open("OTHER", &nonce, &sealed).is_err());
        assert!(!format!("{a:?}").contains("0x"));
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(CryptoError::BadKeyFile(_))
        ));
    }
}
