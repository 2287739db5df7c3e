//! The gateway's own side of the LAN: its interfaces, the subnets directly
//! attached to them, and which of them is the WAN (the default route).
//!
//! Discovery sweeps the LAN subnets when `discovery.lan_subnets` is on, and
//! `diag` shows the same view to a technician, so both read it here.

use crate::config::{DiscoveryConfig, TargetSpec};

/// An IPv4 address on an interface that is up (loopback left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Interface {
    pub name: String,
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Interface {
    pub fn network(&self) -> std::net::Ipv4Addr {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        std::net::Ipv4Addr::from(u32::from(self.address) & mask)
    }
}

/// The gateway's IPv4 addresses on interfaces that are up, loopback left out.
pub fn ipv4_interfaces() -> Result<Vec<Ipv4Interface>, nix::Error> {
    use nix::net::if_::InterfaceFlags;
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK)
            || !ifa.flags.contains(InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let ipv4 = |a: &Option<nix::sys::socket::SockaddrStorage>| {
            a.as_ref().and_then(|a| a.as_sockaddr_in().map(|s| s.ip()))
        };
        let (Some(address), Some(mask)) = (ipv4(&ifa.address), ipv4(&ifa.netmask)) else {
            continue;
        };
        out.push(Ipv4Interface {
            name: ifa.interface_name.clone(),
            address,
            prefix: u32::from(mask).count_ones() as u8,
        });
    }
    Ok(out)
}

/// The directly attached IPv4 subnets, without loopback, the default-route
/// (WAN) interface, excluded interfaces, and subnets larger than `max_prefix`.
pub fn lan_subnets(settings: &DiscoveryConfig) -> Vec<TargetSpec> {
    let wan = default_route_interfaces();
    let Ok(interfaces) = ipv4_interfaces() else {
        tracing::warn!("cannot list network interfaces; sweeping configured targets only");
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in interfaces {
        if wan.contains(&ifa.name) || settings.exclude_interfaces.contains(&ifa.name) {
            continue;
        }
        if ifa.prefix < settings.max_prefix {
            tracing::warn!(interface = %ifa.name, prefix = ifa.prefix, max_prefix = settings.max_prefix, "LAN subnet larger than discovery.max_prefix; not sweeping it");
            continue;
        }
        if let Ok(spec) = format!("{}/{}", ifa.network(), ifa.prefix).parse() {
            out.push(spec);
        }
    }
    out
}

/// Interfaces that carry a default route (from /proc/net/route): the WAN side.
pub fn default_route_interfaces() -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let iface = fields.next()?;
            let destination = fields.next()?;
            (destination == "00000000").then(|| iface.to_string())
        })
        .collect()
}
