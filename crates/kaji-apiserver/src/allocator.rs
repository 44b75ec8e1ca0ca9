//! Service ClusterIP (10.43.0.0/16) and NodePort (30000-32767) allocation. The in-memory maps are
//! rebuilt from the stored Services at start; the API server is their only writer.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

pub struct Allocators {
    pub service_cidr: (Ipv4Addr, u8),
    pub node_ports: (u16, u16),
    ips: Mutex<HashSet<u32>>,
    ports: Mutex<HashSet<u16>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    InUse,
    OutOfRange(String),
    Full,
}

impl Allocators {
    pub fn new(service_cidr: (Ipv4Addr, u8), node_ports: (u16, u16)) -> Self {
        Allocators { service_cidr, node_ports, ips: Mutex::new(HashSet::new()), ports: Mutex::new(HashSet::new()) }
    }

    fn ip_range(&self) -> (u32, u32) {
        let base = u32::from(self.service_cidr.0);
        let size = 1u32 << (32 - u32::from(self.service_cidr.1));
        // network and broadcast addresses are never handed out
        (base + 1, base + size - 2)
    }

    pub fn cidr_string(&self) -> String {
        format!("{}/{}", self.service_cidr.0, self.service_cidr.1)
    }

    pub fn allocate_ip(&self, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
        let (lo, hi) = self.ip_range();
        let mut ips = self.ips.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ip) = want {
            let n = u32::from(ip);
            if n < lo || n > hi {
                return Err(AllocError::OutOfRange(format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    self.cidr_string()
                )));
            }
            if !ips.insert(n) {
                return Err(AllocError::InUse);
            }
            return Ok(ip);
        }
        // Dynamic allocation avoids the lower band (the first 16 addresses or so) that upstream
        // keeps for static assignment such as the DNS service at .10.
        let span = hi - lo + 1;
        let static_band = (span / 16).clamp(16, 256);
        let dyn_lo = lo + static_band;
        let dyn_span = hi - dyn_lo + 1;
        let start = rand::random::<u32>() % dyn_span;
        for i in 0..dyn_span {
            let n = dyn_lo + (start + i) % dyn_span;
            if ips.insert(n) {
                return Ok(Ipv4Addr::from(n));
            }
        }
        Err(AllocError::Full)
    }

    pub fn release_ip(&self, ip: Ipv4Addr) {
        self.ips.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&u32::from(ip));
    }

    pub fn allocate_port(&self, want: Option<u16>) -> Result<u16, AllocError> {
        let (lo, hi) = self.node_ports;
        let mut ports = self.ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = want {
            if p < lo || p > hi {
                return Err(AllocError::OutOfRange(format!(
                    "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                )));
            }
            if !ports.insert(p) {
                return Err(AllocError::InUse);
            }
            return Ok(p);
        }
        let span = u32::from(hi - lo) + 1;
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let p = lo + ((start + i) % span) as u16;
            if ports.insert(p) {
                return Ok(p);
            }
        }
        Err(AllocError::Full)
    }

    pub fn release_port(&self, p: u16) {
        self.ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_ports() {
        let a = Allocators::new(("10.43.0.0".parse().unwrap(), 16), (30000, 32767));
        assert_eq!(a.allocate_ip(Some("10.43.0.1".parse().unwrap())), Ok("10.43.0.1".parse().unwrap()));
        assert_eq!(a.allocate_ip(Some("10.43.0.1".parse().unwrap())), Err(AllocError::InUse));
        assert!(matches!(a.allocate_ip(Some("10.44.0.1".parse().unwrap())), Err(AllocError::OutOfRange(_))));
        let ip = a.allocate_ip(None).unwrap();
        assert!(u32::from(ip) > u32::from("10.43.0.255".parse::<Ipv4Addr>().unwrap()));
        assert_eq!(a.allocate_port(Some(30080)), Ok(30080));
        assert_eq!(a.allocate_port(Some(30080)), Err(AllocError::InUse));
        a.release_port(30080);
        assert_eq!(a.allocate_port(Some(30080)), Ok(30080));
        assert!(matches!(a.allocate_port(Some(80)), Err(AllocError::OutOfRange(_))));
        let p = a.allocate_port(None).unwrap();
        assert!((30000..=32767).contains(&p));
    }
}
