//! Secret keys and the SigV4 signing-key derivation, with a cache.
//!
//! The signing key is `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
//! service), "aws4_request")`: four HMACs that depend only on the secret and
//! the credential scope, not on the request. A client signs thousands of
//! requests under one scope each day, so [`SigningKeyCache`] keeps derived keys
//! per (access key id, date, region, service) and checks, in constant time,
//! that the secret it was derived from is still the one the lookup returns —
//! a rotated secret never reuses a stale key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// A secret access key. Its `Debug` output is redacted, and it has no
/// `Display`, so it cannot reach a log by accident.
#[derive(Clone)]
pub struct SecretKey(Box<[u8]>);

impl SecretKey {
    /// Wraps a secret access key.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretKey(secret.into().into_bytes().into_boxed_slice())
    }

    /// The secret's bytes, for the signing-key derivation and for storage.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey {}

/// An access key id and its secret, as a client signs with them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public half, e.g. `AKIDEXAMPLE`.
    pub access_key_id: String,
    /// The secret half.
    pub secret: SecretKey,
}

impl Credentials {
    /// Credentials from an id and a secret.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret: SecretKey::new(secret),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &self.secret)
            .finish()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A derived signing key: secret material, redacted in `Debug`.
#[derive(Clone, Copy)]
pub(crate) struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Derives the key for `date` (`YYYYMMDD`), `region` and `service`.
    pub(crate) fn derive(secret: &SecretKey, date: &str, region: &str, service: &str) -> Self {
        let mut k_secret = Vec::with_capacity(4 + secret.expose().len());
        k_secret.extend_from_slice(b"AWS4");
        k_secret.extend_from_slice(secret.expose());
        let k_date = hmac(&k_secret, date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, service.as_bytes());
        SigningKey(hmac(&k_service, b"aws4_request"))
    }

    /// The hex signature of a string to sign.
    pub(crate) fn sign(&self, string_to_sign: &[u8]) -> [u8; 32] {
        hmac(&self.0, string_to_sign)
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The scope as one string, each part length-prefixed so no two scopes
/// share a key: one allocation per lookup instead of four.
type CacheKey = String;

/// Derived signing keys, shared by every verification on a server.
///
/// Bounded: when it holds `capacity` entries it is emptied and refilled,
/// which is cheap (a miss costs four HMACs) and keeps memory flat however
/// many keys, regions or days a server sees.
pub struct SigningKeyCache {
    entries: Mutex<HashMap<CacheKey, (SecretKey, SigningKey)>>,
    capacity: usize,
}

impl fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("SigningKeyCache")
            .field("entries", &len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for SigningKeyCache {
    fn default() -> Self {
        SigningKeyCache::with_capacity(4096)
    }
}

impl SigningKeyCache {
    /// A cache holding at most `capacity` derived keys.
    pub fn with_capacity(capacity: usize) -> Self {
        SigningKeyCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The signing key for the scope, derived once per secret and scope.
    pub(crate) fn get(
        &self,
        access_key_id: &str,
        secret: &SecretKey,
        date: &str,
        region: &str,
        service: &str,
    ) -> SigningKey {
        let mut key = CacheKey::with_capacity(
            access_key_id.len() + date.len() + region.len() + service.len() + 16,
        );
        for part in [access_key_id, date, region, service] {
            key.push_str(&part.len().to_string());
            key.push(':');
            key.push_str(part);
        }
        // A poisoned lock only means another thread panicked mid-insert of a
        // value that is still valid; carry on with what is there.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_secret, signing_key)) = entries.get(&key)
            && cached_secret == secret
        {
            return *signing_key;
        }
        let signing_key = SigningKey::derive(secret, date, region, service);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, (secret.clone(), signing_key));
        signing_key
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_matches_the_documented_example() {
        // The AWS General Reference's signing-key example: 20120215/us-east-1/iam.
        let secret = SecretKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let key = SigningKey::derive(&secret, "20120215", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key.bytes()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let shown = format!("{creds:?} {:?}", SigningKey([7; 32]));
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(!shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn cache_rederives_when_the_secret_changes() {
        let cache = SigningKeyCache::with_capacity(2);
        let a = SecretKey::new("a");
        let b = SecretKey::new("b");
        let ka = cache.get("AK", &a, "20150830", "us-east-1", "svc");
        let kb = cache.get("AK", &b, "20150830", "us-east-1", "svc");
        assert_ne!(ka.bytes(), kb.bytes());
        assert_eq!(cache.len(), 1);
        cache.get("AK", &b, "20150831", "us-east-1", "svc");
        cache.get("AK", &b, "20150901", "us-east-1", "svc");
        assert!(cache.len() <= 2);
    }
}
