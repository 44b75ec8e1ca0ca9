//! IPv4 ranges as the cluster's flags write them (`10.43.0.0/16`): the service range, the pod
//! range and a node's podCIDR.

use std::net::Ipv4Addr;

/// An IPv4 range; parsing masks off host bits (`10.42.1.2/16` is `10.42.0.0/16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub Ipv4Addr, pub u8);

impl Cidr {
    /// The `n`-th address of the range (`nth(1)` of 10.43.0.0/16 is 10.43.0.1).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0).wrapping_add(n))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR such as 10.43.0.0/16"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s:?}: bad prefix length"))?;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        Ok(Cidr(Ipv4Addr::from(u32::from(ip) & mask), len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masks_and_counts() {
        let c: Cidr = "10.42.1.2/16".parse().unwrap();
        assert_eq!(c, Cidr(Ipv4Addr::new(10, 42, 0, 0), 16));
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(c.nth(10), Ipv4Addr::new(10, 42, 0, 10));
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
