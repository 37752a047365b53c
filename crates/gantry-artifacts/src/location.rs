//! Where an artifact store lives, as `--artifact-store` spells it: a local
//! directory, or `s3://bucket/prefix` in any S3-compatible store.
//!
//! The S3 client is `object_store`'s own (the one the Rust ecosystem uses
//! against AWS S3, MinIO, Ceph and the rest), configured from the standard
//! AWS variables, so what works against a test server here works against
//! AWS unchanged.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;

use crate::{ArtifactStore, Error, Result};

/// Where an artifact store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory on local disk.
    Local(PathBuf),
    /// A bucket (and a key prefix inside it, possibly empty) of an
    /// S3-compatible store.
    S3 {
        /// The bucket's name.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl StoreLocation {
    /// Reads `s3://bucket[/prefix]`, `file:///dir` or a plain directory path.
    pub fn parse(input: &str) -> Result<StoreLocation> {
        let invalid = |reason: &str| Error::InvalidLocation {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = input.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket_name(bucket) {
                return Err(invalid(
                    "expected s3://BUCKET/PREFIX with a bucket name of 3 to 63 lowercase letters, digits, dots and hyphens",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "." || part == "..") {
                return Err(invalid("the prefix must not contain . or .. segments"));
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(path) = input.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("a file:// location needs an absolute path"));
            }
            return Ok(StoreLocation::Local(PathBuf::from(path)));
        }
        if input.is_empty() {
            return Err(invalid("expected a directory or s3://BUCKET/PREFIX"));
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(invalid(&format!(
                "unsupported scheme {scheme}://; expected s3:// or a directory"
            )));
        }
        Ok(StoreLocation::Local(PathBuf::from(input)))
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Local(dir) => write!(f, "{}", dir.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3's bucket naming rules, the part that matters for a URL: 3–63
/// characters of lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// How to reach an S3-compatible store: the standard AWS settings.
///
/// [`S3Settings::from_env`] reads them the way the AWS SDKs and CLI do, so
/// a deployment configures Gantry like any other AWS client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The endpoint URL (e.g. `http://minio:9000`); `None` is AWS S3 itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset).
    pub region: Option<String>,
    /// The access key id; `None` leaves credentials to the instance's or
    /// container's role, as the SDKs do.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the token never reach a log.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// From the environment: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or
    /// `AWS_ENDPOINT`; `AWS_REGION` or `AWS_DEFAULT_REGION`;
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> S3Settings {
        S3Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`S3Settings::from_env`], from any lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> S3Settings {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.is_empty()))
        };
        S3Settings {
            endpoint: first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: first(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: first(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: first(&["AWS_SESSION_TOKEN"]),
        }
    }
}

impl ArtifactStore {
    /// Opens the store at `location`: a local directory (created when
    /// missing) or an S3 bucket reached with `s3`. Nothing is sent to S3
    /// until the store is used.
    pub fn open(location: &StoreLocation, s3: &S3Settings) -> Result<ArtifactStore> {
        let (bucket, prefix) = match location {
            StoreLocation::Local(dir) => return ArtifactStore::local(dir),
            StoreLocation::S3 { bucket, prefix } => (bucket, prefix),
        };
        let store_error = |source| Error::Store {
            key: location.to_string(),
            source,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(s3.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &s3.endpoint {
            // Whoever names an http:// endpoint means it (a MinIO on a
            // private network, a test server); AWS itself is always https.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // Path-style requests work against every S3-compatible
                // server; virtual-hosted ones need DNS per bucket.
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &s3.session_token {
                builder = builder.with_token(token);
            }
        }
        // Without explicit keys object_store falls back to the instance's or
        // container's credentials, as the SDKs do.
        let s3_store = builder.build().map_err(store_error)?;
        let objects: Arc<dyn object_store::ObjectStore> = if prefix.is_empty() {
            Arc::new(s3_store)
        } else {
            Arc::new(PrefixStore::new(s3_store, prefix.as_str()))
        };
        Ok(ArtifactStore::new(objects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_a_prefix() {
        assert_eq!(
            StoreLocation::parse("s3://my-bucket/ci/artifacts/").unwrap(),
            StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "ci/artifacts".into()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://my-bucket").unwrap(),
            StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://b.example/x")
                .unwrap()
                .to_string(),
            "s3://b.example/x"
        );
    }

    #[test]
    fn directories_are_local() {
        assert_eq!(
            StoreLocation::parse("/var/lib/gantry/artifacts").unwrap(),
            StoreLocation::Local("/var/lib/gantry/artifacts".into())
        );
        assert_eq!(
            StoreLocation::parse("file:///srv/a").unwrap(),
            StoreLocation::Local("/srv/a".into())
        );
        assert_eq!(
            StoreLocation::parse("relative/dir").unwrap(),
            StoreLocation::Local("relative/dir".into())
        );
    }

    #[test]
    fn bad_locations_say_what_was_expected() {
        for (input, expected) in [
            ("s3://", "bucket name"),
            ("s3://UPPER/x", "bucket name"),
            ("s3://ab", "bucket name"),
            ("s3://-bucket", "bucket name"),
            ("s3://bucket/a/../b", ".."),
            ("gs://bucket/x", "unsupported scheme gs://"),
            ("file://relative", "absolute path"),
            ("", "expected a directory"),
        ] {
            let message = StoreLocation::parse(input).unwrap_err().to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(message.contains(&format!("{input:?}")), "{message}");
        }
    }

    #[test]
    fn settings_follow_the_sdks_precedence_and_hide_the_secret() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = S3Settings::from_lookup(env(&[
            ("AWS_ENDPOINT", "http://old:1"),
            ("AWS_ENDPOINT_URL", "http://generic:2"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-specific:3"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ]));
        assert_eq!(s.endpoint.as_deref(), Some("http://s3-specific:3"));
        assert_eq!(s.region.as_deref(), Some("eu-central-1"));
        assert!(!format!("{s:?}").contains("very-secret"));
        let s = S3Settings::from_lookup(env(&[("AWS_ENDPOINT_URL", "")]));
        assert_eq!(s.endpoint, None, "an empty variable is unset");
    }

    #[test]
    fn opening_an_s3_store_sends_nothing() {
        let location = StoreLocation::parse("s3://bucket/prefix").unwrap();
        let settings = S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            ..S3Settings::default()
        };
        let store = ArtifactStore::open(&location, &settings).unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains("PrefixObjectStore"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
