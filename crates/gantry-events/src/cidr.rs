//! The `cidr` operator: IPv4 and IPv6 networks, compared as 128-bit ranges.

use std::net::IpAddr;

use crate::error::PatternReason;

/// A network: addresses whose first `bits` bits equal `network`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    v6: bool,
    network: u128,
    mask: u128,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Cidr, PatternReason> {
        let mut parts = text.split('/');
        let (Some(addr), Some(bits), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PatternReason::CidrSlash);
        };
        let bits: u32 = bits.parse().map_err(|_| PatternReason::CidrMask)?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| PatternReason::CidrAddress(addr.to_string()))?;
        let (v6, width, value) = match ip {
            IpAddr::V4(v4) => (false, 32, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (true, 128, u128::from(v6)),
        };
        if bits > width {
            return Err(PatternReason::CidrMask);
        }
        let mask = if bits == 0 {
            0
        } else {
            (u128::MAX << (width - bits)) & (u128::MAX >> (128 - width))
        };
        Ok(Cidr {
            v6,
            network: value & mask,
            mask,
        })
    }

    /// Whether `text` is an address of the same family inside the network.
    pub(crate) fn contains(&self, text: &str) -> bool {
        text.parse::<IpAddr>().is_ok_and(|ip| self.contains_ip(ip))
    }

    /// (IPv6?, network, mask): networks with equal family and mask can share
    /// one hash table keyed by `network`.
    pub(crate) fn parts(&self) -> (bool, u128, u128) {
        (self.v6, self.network, self.mask)
    }

    /// Whether a parsed address is of the same family and inside the network.
    pub(crate) fn contains_ip(&self, ip: IpAddr) -> bool {
        let value = match (ip, self.v6) {
            (IpAddr::V4(v4), false) => u128::from(u32::from(v4)),
            (IpAddr::V6(v6), true) => u128::from(v6),
            _ => return false,
        };
        value & self.mask == self.network
    }
}

/// An address as (IPv6?, bits), the form [`Cidr::parts`] compares with.
pub(crate) fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6() {
        let net = Cidr::parse("10.0.0.0/24").expect("valid");
        assert!(net.contains("10.0.0.255"));
        assert!(!net.contains("10.0.1.0"));
        assert!(!net.contains("10.0.0.256"));
        let net6 = Cidr::parse("2001:db8:1234:1a00::/64").expect("valid");
        assert!(net6.contains("2001:0db8:1234:1a00:0000:0000:0000:0001"));
        assert!(!net6.contains("2001:0db8:123f:1a01::"));
        assert!(!net6.contains("10.0.0.1"));
        assert!(Cidr::parse("0.0.0.0/0").expect("valid").contains("1.2.3.4"));
    }

    #[test]
    fn errors() {
        assert_eq!(Cidr::parse("bad-filter"), Err(PatternReason::CidrSlash));
        assert_eq!(Cidr::parse("10.0.0.0/x"), Err(PatternReason::CidrMask));
        assert_eq!(Cidr::parse("10.0.0.0/33"), Err(PatternReason::CidrMask));
        assert!(matches!(
            Cidr::parse("xx.11.xx/8"),
            Err(PatternReason::CidrAddress(_))
        ));
    }
}
