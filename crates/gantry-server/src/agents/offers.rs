//! Offers of queued jobs to polling agents: signed, not stored.
//!
//! A poll that finds a job for its agent answers with a nonce; the agent
//! acknowledges with it, and the acknowledgement leases the job. The nonce
//! says which job attempt it offers, to which agent, until when, and is
//! signed with a key every server of a database shares:
//!
//! ```text
//! {attempts}.{until_ms}.{hex HMAC-SHA256(key, job \n attempts \n agent \n until_ms)}
//! ```
//!
//! Why not a row: storing the offer was one write transaction per build on
//! the store's busiest path (docs/benchmarks.md), for something the
//! acknowledgement can check from the nonce itself. What still holds:
//! - **one acknowledgement wins**: the lease is one conditional `UPDATE`
//!   of the job while it is QUEUED with `attempts` leases behind it
//!   (gantry-store's `ack_job`), so of two acknowledgements of one offer,
//!   or of two offers of one attempt, one takes the job and the other gets
//!   409; an offer made before a lease that later ran out names an old
//!   attempt and takes nothing;
//! - **only the agent offered it, only while the offer lasts**: the MAC
//!   covers the agent's id and the expiry, and is checked in constant time;
//! - **polls of one server do not race for one job**: the hub remembers
//!   the offers this server made until they lapse
//!   ([`super::AgentHub::claim_offer`]). Two servers may offer one job at
//!   once; the first acknowledgement takes it, the other agent polls again.
//!
//! The key is kept in the database (`server_state`, created by the first
//! server to need it), so every server sharing the database checks every
//! other's offers — an agent behind a load balancer may poll one server and
//! acknowledge on another. It is worth nothing beyond offers: an agent
//! still needs its token for every request.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `server_state` document holding the key.
pub(crate) const KEY_DOCUMENT: &str = "agent-offer-key";

/// Signs and checks offers.
#[derive(Clone)]
pub(crate) struct OfferKey(Hmac<Sha256>);

impl std::fmt::Debug for OfferKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OfferKey(<redacted>)")
    }
}

/// Why an acknowledgement's nonce was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a nonce this server family made for this job and agent.
    Forged,
    /// Made, but its time is up.
    Lapsed,
}

impl OfferKey {
    pub(crate) fn new(key: &[u8]) -> OfferKey {
        // HMAC takes keys of any length.
        OfferKey(Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    fn mac(&self, job_id: &str, attempts: u32, agent_id: &str, until_ms: i64) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        // Newlines cannot occur in ids (they are generated), and the
        // numbers are last but one and last: the fields cannot run into
        // each other.
        mac.update(format!("{job_id}\n{attempts}\n{agent_id}\n{until_ms}").as_bytes());
        mac
    }

    /// The nonce offering attempt `attempts + 1` of `job_id` to `agent_id`
    /// until `until_ms`.
    pub(crate) fn nonce(
        &self,
        job_id: &str,
        attempts: u32,
        agent_id: &str,
        until_ms: i64,
    ) -> String {
        let tag = self
            .mac(job_id, attempts, agent_id, until_ms)
            .finalize()
            .into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{attempts}.{until_ms}.{hex}")
    }

    /// The attempt count `nonce` offers, when it is this key's offer of
    /// `job_id` to `agent_id` and has not lapsed at `now_ms`.
    pub(crate) fn check(
        &self,
        nonce: &str,
        job_id: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> Result<u32, Refused> {
        let mut parts = nonce.splitn(3, '.');
        let (Some(attempts), Some(until), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Forged);
        };
        let (Ok(attempts), Ok(until_ms)) = (attempts.parse::<u32>(), until.parse::<i64>()) else {
            return Err(Refused::Forged);
        };
        let Some(tag) = decode_hex(tag) else {
            return Err(Refused::Forged);
        };
        // Checked before the expiry, so a lapsed forgery is still a forgery.
        self.mac(job_id, attempts, agent_id, until_ms)
            .verify_slice(&tag)
            .map_err(|_| Refused::Forged)?;
        if now_ms > until_ms {
            return Err(Refused::Lapsed);
        }
        Ok(attempts)
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new random key, as the document stored under [`KEY_DOCUMENT`].
pub(crate) fn new_key_document() -> Result<serde_json::Value, String> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| format!("no randomness for a key: {e}"))?;
    Ok(serde_json::json!({ "key": encode_hex(&key) }))
}

/// The key in a stored document.
pub(crate) fn key_from_document(doc: &serde_json::Value) -> Result<OfferKey, String> {
    doc.get("key")
        .and_then(|k| k.as_str())
        .and_then(decode_hex)
        .filter(|k| k.len() >= 16)
        .map(|k| OfferKey::new(&k))
        .ok_or_else(|| format!("the stored `{KEY_DOCUMENT}` is not a key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OfferKey {
        OfferKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn an_offer_is_taken_by_its_agent_for_its_job_until_it_lapses() {
        let k = key();
        let nonce = k.nonce("job-1", 2, "agent-a", 10_000);
        assert_eq!(k.check(&nonce, "job-1", "agent-a", 9_000), Ok(2));
        assert_eq!(k.check(&nonce, "job-1", "agent-a", 10_000), Ok(2));
        assert_eq!(
            k.check(&nonce, "job-1", "agent-a", 10_001),
            Err(Refused::Lapsed)
        );
        assert_eq!(
            k.check(&nonce, "job-2", "agent-a", 9_000),
            Err(Refused::Forged)
        );
        assert_eq!(
            k.check(&nonce, "job-1", "agent-b", 9_000),
            Err(Refused::Forged)
        );
    }

    #[test]
    fn a_changed_or_foreign_nonce_is_refused() {
        let k = key();
        let nonce = k.nonce("job-1", 2, "agent-a", 10_000);
        let (_, tag) = nonce.rsplit_once('.').expect("three parts");
        // Another attempt or a later expiry under the same tag.
        for forged in [format!("3.10000.{tag}"), format!("2.99999.{tag}")] {
            assert_eq!(
                k.check(&forged, "job-1", "agent-a", 9_000),
                Err(Refused::Forged)
            );
        }
        // One flipped hex digit.
        let mut flipped = nonce.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            k.check(&flipped, "job-1", "agent-a", 9_000),
            Err(Refused::Forged)
        );
        // Another server family's key.
        let other = OfferKey::new(b"another key, another database!!!");
        assert_eq!(
            other.check(&nonce, "job-1", "agent-a", 9_000),
            Err(Refused::Forged)
        );
        // Not a nonce at all (what an agent of an older server holds).
        for junk in [
            "",
            "abc",
            "1.2",
            "1.2.zz",
            "x.10000.00",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(
                k.check(junk, "job-1", "agent-a", 9_000),
                Err(Refused::Forged),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_stored_key_document_round_trips_and_a_bad_one_is_refused() {
        let doc = new_key_document().expect("random");
        let k = key_from_document(&doc).expect("key");
        let nonce = k.nonce("j", 0, "a", 5);
        assert_eq!(
            key_from_document(&doc)
                .expect("again")
                .check(&nonce, "j", "a", 1),
            Ok(0)
        );
        assert_ne!(doc, new_key_document().expect("random"), "each key is new");
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"key": "zz"}),
            serde_json::json!({"key": "00"}),
        ] {
            assert!(key_from_document(&bad).is_err(), "{bad}");
        }
    }
}
