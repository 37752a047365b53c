//! CIDR ranges (`192.0.2.0/24`, `2001:db8::/32`) for IP authentication.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network in CIDR notation.
///
/// Host bits set in the address are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
/// An IPv4-mapped IPv6 caller (`::ffff:192.0.2.7`, as a dual-stack socket
/// reports an IPv4 peer) is compared as the IPv4 address it maps.
///
/// ```
/// use gantry_triggers::codepipeline::IpRange;
///
/// let range: IpRange = "192.0.2.0/24".parse()?;
/// assert!(range.contains("192.0.2.200".parse()?));
/// assert!(range.contains("::ffff:192.0.2.7".parse()?));
/// assert!(!range.contains("198.51.100.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a CIDR range: {reason}")]
pub struct CidrError {
    text: String,
    reason: &'static str,
}

impl IpRange {
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

impl FromStr for IpRange {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<IpRange, CidrError> {
        let fail = |reason| CidrError {
            text: text.chars().take(100).collect(),
            reason,
        };
        let (address, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| fail("expected an address, `/` and a prefix length"))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| fail("the address is neither IPv4 nor IPv6"))?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("the prefix length must be a number"));
        }
        let prefix: u16 = prefix
            .parse()
            .map_err(|_| fail("the prefix length must be a number"))?;
        let max: u8 = if network.is_ipv4() { 32 } else { 128 };
        let Some(prefix) = u8::try_from(prefix).ok().filter(|p| *p <= max) else {
            return Err(fail(if max == 32 {
                "an IPv4 prefix length is at most 32"
            } else {
                "an IPv6 prefix length is at most 128"
            }));
        };
        Ok(IpRange { network, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> IpRange {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges() {
        let r = range("192.0.2.0/24");
        assert!(r.contains(ip("192.0.2.0")));
        assert!(r.contains(ip("192.0.2.255")));
        assert!(!r.contains(ip("192.0.3.0")));
        assert!(
            range("10.1.2.3/8").contains(ip("10.200.0.1")),
            "host bits ignored"
        );
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(range("203.0.113.9/32").contains(ip("203.0.113.9")));
        assert!(!range("203.0.113.9/32").contains(ip("203.0.113.8")));
    }

    #[test]
    fn ipv6_ranges_and_mapped_ipv4_callers() {
        let r = range("2001:db8::/32");
        assert!(r.contains(ip("2001:db8:ffff::1")));
        assert!(!r.contains(ip("2001:db9::1")));
        assert!(range("::/0").contains(ip("fe80::1")));
        assert!(
            !range("::/0").contains(ip("192.0.2.1")),
            "families do not mix"
        );
        assert!(!range("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(range("192.0.2.0/24").contains(ip("::ffff:192.0.2.7")));
        assert!(range("2001:db8::1/128").contains(ip("2001:db8::1")));
    }

    #[test]
    fn malformed_ranges_say_why() {
        for (text, reason) in [
            ("192.0.2.0", "expected an address, `/` and a prefix length"),
            ("192.0.2/24", "the address is neither IPv4 nor IPv6"),
            ("192.0.2.0/33", "an IPv4 prefix length is at most 32"),
            ("2001:db8::/129", "an IPv6 prefix length is at most 128"),
            ("192.0.2.0/", "the prefix length must be a number"),
            ("192.0.2.0/+8", "the prefix length must be a number"),
            ("192.0.2.0/0008", "the prefix length must be a number"),
            ("192.0.2.0/999", "an IPv4 prefix length is at most 32"),
            ("any", "expected an address, `/` and a prefix length"),
        ] {
            let err = text.parse::<IpRange>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("`{text}` is not a CIDR range: {reason}")
            );
        }
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(range("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(range("2001:db8::/32").to_string(), "2001:db8::/32");
    }
}
