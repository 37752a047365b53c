//! Webhook authenticity: which git host sent a request, and whether it was
//! signed with the webhook's secret.
//!
//! | Sender | Header | Value |
//! |---|---|---|
//! | GitHub | `X-Hub-Signature-256` | `sha256=` + hex HMAC-SHA256(secret, raw body) |
//! | GitHub (legacy) | `X-Hub-Signature` | `sha1=` + hex HMAC-SHA1; only when the -256 header is absent |
//! | GitLab | `X-Gitlab-Token` | the secret itself |
//! | Gitea | `X-Gitea-Signature` | hex HMAC-SHA256, no prefix |
//! | Forgejo | `X-Forgejo-Signature` | hex HMAC-SHA256, no prefix |
//! | Gantry's generic webhook | `X-Gantry-Signature-256` | `sha256=` + hex HMAC-SHA256 |
//! | Slack (interactive messages) | `X-Slack-Signature` | `v0=` + hex HMAC-SHA256(secret, `v0:<X-Slack-Request-Timestamp>:<raw body>`); the timestamp must be recent |
//!
//! Every comparison takes the same time whatever the bytes: signatures through
//! the MAC's own constant-time check, GitLab's token by comparing SHA-256
//! digests of both sides with [`subtle`], so that neither the content nor the
//! length of the secret leaks. Errors name the header and what was expected,
//! never the value received (for GitLab that value is a secret) and never
//! where a comparison failed.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::headers::{Headers, Lookup};

/// GitHub's signature header (HMAC-SHA256).
pub const GITHUB_SIGNATURE_256: &str = "X-Hub-Signature-256";
/// GitHub's legacy signature header (HMAC-SHA1).
pub const GITHUB_SIGNATURE_SHA1: &str = "X-Hub-Signature";
/// GitLab's secret-token header.
pub const GITLAB_TOKEN: &str = "X-Gitlab-Token";
/// Gitea's signature header.
pub const GITEA_SIGNATURE: &str = "X-Gitea-Signature";
/// Forgejo's signature header.
pub const FORGEJO_SIGNATURE: &str = "X-Forgejo-Signature";
/// The signature header of Gantry's own generic webhook.
pub const GANTRY_SIGNATURE_256: &str = "X-Gantry-Signature-256";
/// Slack's signature header on interaction callbacks.
pub const SLACK_SIGNATURE: &str = "X-Slack-Signature";
/// The signing time Slack's signature covers (Unix seconds).
pub const SLACK_TIMESTAMP: &str = "X-Slack-Request-Timestamp";
/// How far a Slack request's timestamp may be from now: Slack's own advice.
pub const SLACK_MAX_SKEW_SECONDS: i64 = 300;

const SHA256_HEX: &str = "`sha256=` followed by 64 lowercase hexadecimal digits";
const SHA1_HEX: &str = "`sha1=` followed by 40 lowercase hexadecimal digits";
const BARE_SHA256_HEX: &str = "64 lowercase hexadecimal digits";
const SLACK_HEX: &str = "`v0=` followed by 64 lowercase hexadecimal digits";
const UNIX_SECONDS: &str = "the signing time in Unix seconds";

/// A git host that sends webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise).
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea.
    Gitea,
    /// Forgejo.
    Forgejo,
}

impl Provider {
    /// The sender of a request, from its event header.
    ///
    /// Forgejo also sends Gitea's headers, and both also send GitHub's
    /// `X-GitHub-Event` for compatibility, so the most specific header wins:
    /// `X-Forgejo-Event`, then `X-Gitea-Event`, then `X-Gitlab-Event`, then
    /// `X-GitHub-Event`.
    pub fn detect(headers: &Headers) -> Option<Provider> {
        [
            Provider::Forgejo,
            Provider::Gitea,
            Provider::GitLab,
            Provider::GitHub,
        ]
        .into_iter()
        .find(|p| headers.contains(p.event_header()))
    }

    /// The header that names the event (`X-GitHub-Event`, ...).
    pub fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-GitHub-Event",
            Provider::GitLab => "X-Gitlab-Event",
            Provider::Gitea => "X-Gitea-Event",
            Provider::Forgejo => "X-Forgejo-Event",
        }
    }

    /// The event name this provider's event header carries (`push`,
    /// `Merge Request Hook`, ...), when present and text.
    pub fn event_kind(self, headers: &Headers) -> Option<&str> {
        headers.text(self.event_header())
    }

    /// The provider's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Gitea => "Gitea",
            Provider::Forgejo => "Forgejo",
        }
    }

    /// Checks the request the way this provider signs it: [`verify_github`],
    /// [`verify_gitlab`] or [`verify_gitea`] (for Gitea and Forgejo alike).
    pub fn verify(
        self,
        headers: &Headers,
        body: &[u8],
        secret: impl AsRef<[u8]>,
    ) -> Result<(), SignatureError> {
        match self {
            Provider::GitHub => verify_github(headers, body, secret),
            Provider::GitLab => verify_gitlab(headers, secret),
            Provider::Gitea | Provider::Forgejo => verify_gitea(headers, body, secret),
        }
    }
}

/// Why a request is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The webhook has an empty secret: anyone could sign with it.
    #[error("the webhook has no secret configured, so `{header}` cannot be checked")]
    NoSecret {
        /// The header that would have been checked.
        header: &'static str,
    },
    /// The header that carries the signature is absent.
    #[error("header `{header}` is missing; expected {expected}")]
    Missing {
        /// The header (or headers, joined with "or") looked for.
        header: &'static str,
        /// What its value should look like.
        expected: &'static str,
    },
    /// The header appears more than once, so which one counts is ambiguous.
    #[error("header `{header}` appears more than once; expected it once")]
    Repeated {
        /// The header.
        header: &'static str,
    },
    /// The header's value does not have the expected shape.
    #[error("header `{header}` is malformed; expected {expected}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What its value should look like.
        expected: &'static str,
    },
    /// The request was signed too long ago (or in the future): a replay.
    #[error(
        "header `{header}` is {seconds} seconds away from now; expected at most {max} (an old request replayed?)"
    )]
    Stale {
        /// The timestamp header.
        header: &'static str,
        /// How far it is from now.
        seconds: i64,
        /// The most allowed.
        max: i64,
    },
    /// Well-formed, but not made with this webhook's secret.
    #[error(
        "header `{header}` does not match: the request was not signed with this webhook's secret"
    )]
    Mismatch {
        /// The header.
        header: &'static str,
    },
}

/// Checks a GitHub request: `X-Hub-Signature-256` when present, otherwise
/// the legacy `X-Hub-Signature` (HMAC-SHA1).
pub fn verify_github(
    headers: &Headers,
    body: &[u8],
    secret: impl AsRef<[u8]>,
) -> Result<(), SignatureError> {
    let secret = secret.as_ref();
    if headers.contains(GITHUB_SIGNATURE_256) || !headers.contains(GITHUB_SIGNATURE_SHA1) {
        check_sha256(
            headers,
            GITHUB_SIGNATURE_256,
            Prefix::Required,
            body,
            secret,
        )
    } else {
        non_empty(secret, GITHUB_SIGNATURE_SHA1)?;
        let value = single(headers, GITHUB_SIGNATURE_SHA1, SHA1_HEX)?;
        let mut signature = [0u8; 20];
        decode(value, "sha1=", Prefix::Required, &mut signature)
            .ok_or(malformed(GITHUB_SIGNATURE_SHA1, SHA1_HEX))?;
        let mut mac =
            <Hmac<Sha1>>::new_from_slice(secret).map_err(|_| SignatureError::NoSecret {
                header: GITHUB_SIGNATURE_SHA1,
            })?;
        mac.update(body);
        mac.verify_slice(&signature)
            .map_err(|_| SignatureError::Mismatch {
                header: GITHUB_SIGNATURE_SHA1,
            })
    }
}

/// Checks a GitLab request: `X-Gitlab-Token` must equal the secret.
///
/// Both sides are hashed with SHA-256 and the digests compared in constant
/// time, so a token of another length fails in the same time as one that
/// differs only in its last byte.
pub fn verify_gitlab(headers: &Headers, secret: impl AsRef<[u8]>) -> Result<(), SignatureError> {
    let secret = secret.as_ref();
    non_empty(secret, GITLAB_TOKEN)?;
    let token = single(headers, GITLAB_TOKEN, "the webhook's secret token")?;
    let given = Sha256::digest(token);
    let wanted = Sha256::digest(secret);
    if bool::from(given.ct_eq(&wanted)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header: GITLAB_TOKEN,
        })
    }
}

/// Checks a Gitea or Forgejo request: `X-Forgejo-Signature` and
/// `X-Gitea-Signature` (hex HMAC-SHA256, no prefix; a `sha256=` prefix is
/// tolerated). At least one must be present, and every one present must
/// match (Forgejo sends both with the same value).
pub fn verify_gitea(
    headers: &Headers,
    body: &[u8],
    secret: impl AsRef<[u8]>,
) -> Result<(), SignatureError> {
    let secret = secret.as_ref();
    let present: Vec<&'static str> = [FORGEJO_SIGNATURE, GITEA_SIGNATURE]
        .into_iter()
        .filter(|h| headers.contains(h))
        .collect();
    if present.is_empty() {
        return Err(SignatureError::Missing {
            header: "X-Gitea-Signature` or `X-Forgejo-Signature",
            expected: BARE_SHA256_HEX,
        });
    }
    for header in present {
        check_sha256(headers, header, Prefix::Optional, body, secret)?;
    }
    Ok(())
}

/// Checks a request to Gantry's generic webhook: `X-Gantry-Signature-256:
/// sha256=<hex HMAC-SHA256(secret, body)>`, GitHub's scheme under Gantry's
/// name. [`sign_sha256`] makes the value.
pub fn verify_generic(
    headers: &Headers,
    body: &[u8],
    secret: impl AsRef<[u8]>,
) -> Result<(), SignatureError> {
    check_sha256(
        headers,
        GANTRY_SIGNATURE_256,
        Prefix::Required,
        body,
        secret.as_ref(),
    )
}

/// Checks a Slack interaction callback: `X-Slack-Request-Timestamp` within
/// [`SLACK_MAX_SKEW_SECONDS`] of `now` (Unix seconds), and `X-Slack-Signature`
/// the HMAC-SHA256 of `v0:<timestamp>:<body>` under the app's signing secret.
///
/// ```
/// use gantry_triggers::Headers;
/// use gantry_triggers::signature::{sign_slack, verify_slack};
///
/// let body = b"payload=%7B%7D";
/// let headers = Headers::new([
///     ("X-Slack-Request-Timestamp", "1700000000".to_string()),
///     ("X-Slack-Signature", sign_slack("8f742231b10e8888abcd99yyyzzz85a5", 1_700_000_000, body)),
/// ]);
/// assert!(verify_slack(&headers, body, "8f742231b10e8888abcd99yyyzzz85a5", 1_700_000_100).is_ok());
/// // Ten minutes later the same request is a replay.
/// assert!(verify_slack(&headers, body, "8f742231b10e8888abcd99yyyzzz85a5", 1_700_000_600).is_err());
/// ```
pub fn verify_slack(
    headers: &Headers,
    body: &[u8],
    secret: impl AsRef<[u8]>,
    now: i64,
) -> Result<(), SignatureError> {
    let secret = secret.as_ref();
    non_empty(secret, SLACK_SIGNATURE)?;
    let stamp = single(headers, SLACK_TIMESTAMP, UNIX_SECONDS)?;
    let seconds: i64 = std::str::from_utf8(stamp)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or(malformed(SLACK_TIMESTAMP, UNIX_SECONDS))?;
    let skew = now.saturating_sub(seconds).saturating_abs();
    if skew > SLACK_MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale {
            header: SLACK_TIMESTAMP,
            seconds: skew,
            max: SLACK_MAX_SKEW_SECONDS,
        });
    }
    let value = single(headers, SLACK_SIGNATURE, SLACK_HEX)?;
    let mut signature = [0u8; 32];
    decode(value, "v0=", Prefix::Required, &mut signature)
        .ok_or(malformed(SLACK_SIGNATURE, SLACK_HEX))?;
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).map_err(|_| SignatureError::NoSecret {
        header: SLACK_SIGNATURE,
    })?;
    mac.update(format!("v0:{seconds}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch {
            header: SLACK_SIGNATURE,
        })
}

/// The `X-Slack-Signature` value for `body` sent at `timestamp`.
pub fn sign_slack(secret: impl AsRef<[u8]>, timestamp: i64, body: impl AsRef<[u8]>) -> String {
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(body.as_ref());
    format!("v0={}", hmac_sha256_hex(secret, message))
}

/// The `sha256=<hex>` value of `X-Hub-Signature-256` and
/// `X-Gantry-Signature-256` for `body` signed with `secret`.
///
/// ```
/// use gantry_triggers::signature::sign_sha256;
///
/// // RFC 4231 test case 2.
/// assert_eq!(
///     sign_sha256("Jefe", "what do ya want for nothing?"),
///     "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
/// );
/// ```
pub fn sign_sha256(secret: impl AsRef<[u8]>, body: impl AsRef<[u8]>) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Hex HMAC-SHA256 of `body` under `secret`: Gitea's and Forgejo's signature.
pub fn hmac_sha256_hex(secret: impl AsRef<[u8]>, body: impl AsRef<[u8]>) -> String {
    hex::encode(hmac_sha256(secret.as_ref(), body.as_ref()))
}

/// The `sha1=<hex>` value of GitHub's legacy `X-Hub-Signature`.
pub fn sign_sha1(secret: impl AsRef<[u8]>, body: impl AsRef<[u8]>) -> String {
    // An HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha1>>::new_from_slice(secret.as_ref()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body.as_ref());
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

fn hmac_sha256(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256>>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Required,
    Optional,
}

fn check_sha256(
    headers: &Headers,
    header: &'static str,
    prefix: Prefix,
    body: &[u8],
    secret: &[u8],
) -> Result<(), SignatureError> {
    let expected = if prefix == Prefix::Required {
        SHA256_HEX
    } else {
        BARE_SHA256_HEX
    };
    non_empty(secret, header)?;
    let value = single(headers, header, expected)?;
    let mut signature = [0u8; 32];
    decode(value, "sha256=", prefix, &mut signature).ok_or(malformed(header, expected))?;
    let mut mac =
        <Hmac<Sha256>>::new_from_slice(secret).map_err(|_| SignatureError::NoSecret { header })?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch { header })
}

fn non_empty(secret: &[u8], header: &'static str) -> Result<(), SignatureError> {
    if secret.is_empty() {
        Err(SignatureError::NoSecret { header })
    } else {
        Ok(())
    }
}

fn single<'h>(
    headers: &'h Headers,
    header: &'static str,
    expected: &'static str,
) -> Result<&'h [u8], SignatureError> {
    match headers.single(header) {
        Lookup::One(value) => Ok(value),
        Lookup::Missing => Err(SignatureError::Missing { header, expected }),
        Lookup::Repeated => Err(SignatureError::Repeated { header }),
    }
}

fn malformed(header: &'static str, expected: &'static str) -> SignatureError {
    SignatureError::Malformed { header, expected }
}

/// Decodes `<prefix><lowercase hex>` (surrounding whitespace ignored) into
/// `out`; `None` unless the hex fills `out` exactly.
///
/// Only the exact spelling the senders use is accepted (GitHub, Gitea and
/// Forgejo all write lowercase hex), so a signature has one spelling and
/// any changed byte makes it another, wrong one.
fn decode(value: &[u8], prefix: &str, rule: Prefix, out: &mut [u8]) -> Option<()> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let hex_part = match text.strip_prefix(prefix) {
        Some(rest) => rest,
        None if rule == Prefix::Optional => text,
        None => return None,
    };
    if !hex_part
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode_to_slice(hex_part, out).ok()
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
