//! SHA-256 digests and the artifact reference (`sha256:<hex>`) built on them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A SHA-256 digest, shown and stored as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hex digits. Upper case is refused so that one
    /// digest has exactly one spelling (it is part of object keys).
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        if hex_digits.len() != 64
            || !hex_digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).ok()?;
        Some(Digest(out))
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        Digest(hasher.finalize().into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a SHA-256 digest of 64 lowercase hex digits, got {text:?}"
            ))
        })
    }
}

/// The reference to a stored artifact: `sha256:` and the digest of its
/// manifest. Equal trees give equal references.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactRef(Digest);

impl ArtifactRef {
    /// The reference whose manifest has this digest.
    pub fn from_digest(digest: Digest) -> Self {
        ArtifactRef(digest)
    }

    /// The digest of the artifact's manifest.
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactRef(sha256:{})", self.0)
    }
}

impl FromStr for ArtifactRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        input
            .strip_prefix("sha256:")
            .and_then(Digest::from_hex)
            .map(ArtifactRef)
            .ok_or_else(|| Error::InvalidRef {
                input: input.to_owned(),
            })
    }
}

impl Serialize for ArtifactRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArtifactRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_known_sha256() {
        assert_eq!(
            Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn reference_round_trips_through_its_text() {
        let r = ArtifactRef::from_digest(Digest::of(b"x"));
        let text = r.to_string();
        assert!(text.starts_with("sha256:"));
        assert_eq!(text.parse::<ArtifactRef>().unwrap(), r);
    }

    #[test]
    fn reference_refuses_other_spellings() {
        let hex = Digest::of(b"x").to_hex();
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha1:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            "sha256:zz".to_owned(),
            String::new(),
        ] {
            let err = bad.parse::<ArtifactRef>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidRef { ref input } if *input == bad),
                "{bad:?} gave {err}"
            );
        }
    }
}
