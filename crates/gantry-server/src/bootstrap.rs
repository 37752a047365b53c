//! The first admin key of a new database.

use std::fmt;

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use gantry_store::{NewAccessKey, Store, StoreError};

use crate::{Config, ServerError};

/// The admin key created when the database was new.
#[derive(Clone)]
pub struct AdminKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key. Shown once; the store keeps it encrypted.
    pub secret: String,
    /// True when Gantry made it up, false when the environment gave it.
    pub generated: bool,
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("generated", &self.generated)
            .finish()
    }
}

/// Creates the first admin key when the store has none.
pub(crate) async fn first_admin_key<S: Store>(
    store: &S,
    config: &Config,
) -> Result<Option<AdminKey>, ServerError> {
    if store.count_access_keys().await? > 0 {
        return Ok(None);
    }
    let key = match &config.admin_key {
        Some((id, secret)) => {
            if id.is_empty() || secret.is_empty() {
                return Err(ServerError::Config(
                    "the admin access key id and secret must not be empty".into(),
                ));
            }
            AdminKey {
                access_key_id: id.clone(),
                secret: secret.clone(),
                generated: false,
            }
        }
        None => AdminKey {
            access_key_id: format!("GKIA{}", random_string(16, ID_ALPHABET)),
            secret: random_string(40, SECRET_ALPHABET),
            generated: true,
        },
    };
    let new = NewAccessKey {
        access_key_id: key.access_key_id.clone(),
        secret: key.secret.clone(),
        is_admin: true,
    };
    match store.create_access_key(&new, "system").await {
        Ok(()) => Ok(Some(key)),
        // Another server sharing the database, started at the same moment
        // with the same configured key, created it first.
        Err(StoreError::Conflict(_)) if !key.generated => Ok(None),
        Err(e) => Err(e.into()),
    }
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `len` characters drawn uniformly from `alphabet` (whose length divides
/// 256, so taking a byte modulo it is unbiased).
fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_use_the_alphabet() {
        let s = random_string(40, SECRET_ALPHABET);
        assert_eq!(s.len(), 40);
        assert!(s.bytes().all(|b| SECRET_ALPHABET.contains(&b)));
        assert_ne!(s, random_string(40, SECRET_ALPHABET));
    }
}
