//! Sweep targets: what `--target SPEC` and `discovery.targets` mean.
//!
//! A SPEC is a CIDR (`192.168.1.0/24`), an address range (`192.168.1.10-192.168.1.40`
//! or the short form `192.168.1.10-40`), or a single host (an IPv4 address or a
//! name), each with an optional `:PORT` (default 161). Parsing is kept apart
//! from sweeping so that a bad SPEC is reported when the config is loaded or the
//! CLI is parsed, never half-way through a sweep.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The widest `max_prefix` there is: a /8 (16.7 million addresses).
pub const MIN_PREFIX: u8 = 8;

/// The standard SNMP agent port.
pub const SNMP_PORT: u16 = 161;

/// Which addresses a SPEC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSet {
    /// A network; the network and broadcast addresses are left out for prefixes up to /30.
    Cidr { network: Ipv4Addr, prefix: u8 },
    /// An inclusive range of addresses.
    Range { first: Ipv4Addr, last: Ipv4Addr },
    /// One host, by address or by name (resolved at sweep time).
    Host(String),
}

/// One parsed SPEC: a set of addresses and the UDP port to ask them on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub set: TargetSet,
    pub port: u16,
}

/// Why a SPEC did not parse; the message says what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {spec:?}: {reason} (expected a CIDR like \"192.168.1.0/24\", a range like \"192.168.1.10-192.168.1.40\" or a host, each with an optional \":PORT\")")]
pub struct TargetError {
    spec: String,
    reason: String,
}

impl TargetSpec {
    /// How many addresses the SPEC covers (hosts count as one).
    pub fn len(&self) -> u64 {
        match &self.set {
            TargetSet::Cidr { prefix, .. } => cidr_host_count(*prefix),
            TargetSet::Range { first, last } => u64::from(u32::from(*last) - u32::from(*first)) + 1,
            TargetSet::Host(_) => 1,
        }
    }

    /// True when the SPEC covers no address at all (never, for a parsed SPEC).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prefix length of a CIDR SPEC, for the `max_prefix` guard.
    pub fn prefix(&self) -> Option<u8> {
        match self.set {
            TargetSet::Cidr { prefix, .. } => Some(prefix),
            _ => None,
        }
    }

    /// Refuses a SPEC that covers more addresses than a /`max_prefix`
    /// network: the guard of `discovery.max_prefix` and `discover --target`,
    /// so that a typo never sweeps the internet.
    /// `raise` names the knob in the error ("discovery.max_prefix = ").
    pub fn check_size(&self, max_prefix: u8, raise: &str) -> Result<(), String> {
        let limit = 1u64 << (32 - u32::from(max_prefix.min(32)));
        if self.len() <= limit {
            return Ok(());
        }
        let needed = 32 - (64 - (self.len() - 1).leading_zeros()).min(32) as u8;
        let way_out = if needed < MIN_PREFIX {
            format!("split it: the widest sweep allowed is a /{MIN_PREFIX}")
        } else {
            format!("split it, or raise the limit with {raise}{needed}")
        };
        Err(format!(
            "{self} covers {} addresses, more than a /{max_prefix}; {way_out}",
            self.len()
        ))
    }

    /// Does the SPEC cover `ip` on `port`? (A named host: only by the
    /// address it was resolved to, see [`TargetSpec::resolved`].)
    pub fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        match &self.set {
            TargetSet::Cidr { .. } | TargetSet::Range { .. } => {
                let (first, last) = self.bounds();
                (first..=last).contains(&u32::from(ip))
            }
            TargetSet::Host(name) => name.parse::<Ipv4Addr>() == Ok(ip),
        }
    }

    /// The same SPEC with a named host replaced by its address.
    pub fn resolved(&self, ip: Ipv4Addr) -> TargetSpec {
        TargetSpec {
            set: TargetSet::Host(ip.to_string()),
            port: self.port,
        }
    }

    /// First and last address swept, as numbers (a CIDR up to /30 without
    /// its network and broadcast addresses).
    fn bounds(&self) -> (u32, u32) {
        match &self.set {
            TargetSet::Cidr { network, prefix } => {
                let base = u32::from(*network);
                let size = 1u64 << (32 - u32::from(*prefix));
                let (first, last) = if *prefix <= 30 {
                    (1, size - 2)
                } else {
                    (0, size - 1)
                };
                (base + first as u32, base + last as u32)
            }
            TargetSet::Range { first, last } => (u32::from(*first), u32::from(*last)),
            TargetSet::Host(name) => {
                let ip = name.parse::<Ipv4Addr>().map_or(0, u32::from);
                (ip, ip)
            }
        }
    }

    /// The literal IPv4 addresses the SPEC covers; a named host yields nothing
    /// here and is resolved by the caller.
    pub fn addresses(&self) -> Box<dyn Iterator<Item = Ipv4Addr> + Send + '_> {
        match &self.set {
            TargetSet::Host(name) if name.parse::<Ipv4Addr>().is_err() => {
                Box::new(std::iter::empty())
            }
            _ => {
                let (first, last) = self.bounds();
                Box::new((first..=last).map(Ipv4Addr::from))
            }
        }
    }

    /// The host name of a SPEC that names one, for resolution at sweep time.
    pub fn host_name(&self) -> Option<&str> {
        match &self.set {
            TargetSet::Host(name) if name.parse::<Ipv4Addr>().is_err() => Some(name),
            _ => None,
        }
    }
}

fn cidr_host_count(prefix: u8) -> u64 {
    let size = 1u64 << (32 - u32::from(prefix));
    if prefix <= 30 {
        size - 2
    } else {
        size
    }
}

impl FromStr for TargetSpec {
    type Err = TargetError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| TargetError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(fail("it is empty"));
        }
        let (body, port) = split_port(trimmed).map_err(|r| fail(&r))?;
        let set = if let Some((addr, prefix)) = body.split_once('/') {
            let network: Ipv4Addr = addr
                .parse()
                .map_err(|_| fail(&format!("{addr:?} is not an IPv4 address")))?;
            let prefix: u8 =
                prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
                    fail(&format!("prefix {prefix:?} is not a number from 0 to 32"))
                })?;
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            if u32::from(network) & !mask != 0 {
                return Err(fail(&format!(
                    "{network} has host bits set for /{prefix}; did you mean {}/{prefix}?",
                    Ipv4Addr::from(u32::from(network) & mask)
                )));
            }
            TargetSet::Cidr { network, prefix }
        } else if let Some((first, last)) = body.split_once('-') {
            let first: Ipv4Addr = first
                .parse()
                .map_err(|_| fail(&format!("{first:?} is not an IPv4 address")))?;
            let last = parse_range_end(first, last).map_err(|r| fail(&r))?;
            if last < first {
                return Err(fail("the range ends before it starts"));
            }
            TargetSet::Range { first, last }
        } else {
            if !body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            {
                return Err(fail(&format!("{body:?} is not an address or host name")));
            }
            // A name's last label is never all digits (RFC 1123): such a
            // SPEC is a mistyped address, not a name to look up.
            let last_label = body.rsplit('.').next().unwrap_or_default();
            if last_label.bytes().all(|b| b.is_ascii_digit()) && body.parse::<Ipv4Addr>().is_err() {
                return Err(fail(&format!(
                    "{body:?} is not an IPv4 address (four numbers from 0 to 255)"
                )));
            }
            TargetSet::Host(body.to_string())
        };
        Ok(TargetSpec { set, port })
    }
}

/// Splits `BODY:PORT`; IPv6 literals are not supported (the LAN sweep is IPv4).
fn split_port(spec: &str) -> Result<(&str, u16), String> {
    match spec.rsplit_once(':') {
        None => Ok((spec, SNMP_PORT)),
        Some((body, port)) => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?;
            if body.contains(':') {
                return Err("IPv6 targets are not supported".to_string());
            }
            Ok((body, port))
        }
    }
}

/// The end of a range: a full address, or just the last octet (`10-40`).
fn parse_range_end(first: Ipv4Addr, last: &str) -> Result<Ipv4Addr, String> {
    if let Ok(ip) = last.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let octet: u8 = last
        .parse()
        .map_err(|_| format!("{last:?} is neither an IPv4 address nor a last octet"))?;
    let [a, b, c, _] = first.octets();
    Ok(Ipv4Addr::new(a, b, c, octet))
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.set {
            TargetSet::Cidr { network, prefix } => write!(f, "{network}/{prefix}")?,
            TargetSet::Range { first, last } => write!(f, "{first}-{last}")?,
            TargetSet::Host(name) => write!(f, "{name}")?,
        }
        if self.port != SNMP_PORT {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for TargetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TargetSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TargetSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cidr_with_port_skips_network_and_broadcast() {
        let t = parse("127.0.1.0/24:16100");
        assert_eq!(t.port, 16100);
        assert_eq!(t.len(), 254);
        let all: Vec<_> = t.addresses().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(127, 0, 1, 254)));
        assert_eq!(all.len(), 254);
    }

    #[test]
    fn slash_32_and_31_cover_every_address() {
        assert_eq!(parse("10.0.0.7/32").addresses().count(), 1);
        assert_eq!(parse("10.0.0.6/31").addresses().count(), 2);
    }

    #[test]
    fn ranges_full_and_short() {
        let t = parse("192.168.1.10-192.168.1.12");
        assert_eq!(t.addresses().count(), 3);
        let t = parse("192.168.1.10-20:1161");
        assert_eq!(t.port, 1161);
        assert_eq!(t.len(), 11);
    }

    #[test]
    fn hosts_by_address_and_name() {
        assert_eq!(parse("127.0.0.1").addresses().count(), 1);
        let named = parse("modem.lan:161");
        assert_eq!(named.host_name(), Some("modem.lan"));
        assert_eq!(named.addresses().count(), 0);
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            ("", "empty"),
            ("10.0.0.0/33", "prefix"),
            ("10.0.0.1/24", "host bits"),
            ("10.0.0.9-10.0.0.1", "ends before"),
            ("10.0.0.1:0", "port"),
            ("10.0.0.1:99999", "port"),
            ("300.1.1.1/24", "not an IPv4"),
            ("bad host!", "not an address"),
            ("256.1.1.1", "not an IPv4 address"),
            ("10.0.0", "not an IPv4 address"),
            ("1.2.3.4.5:161", "not an IPv4 address"),
        ] {
            let err = spec.parse::<TargetSpec>().expect_err(spec).to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn sizes_are_bounded_by_the_prefix_limit() {
        assert!(parse("10.0.0.0/22").check_size(22, "max = ").is_ok());
        assert!(parse("10.0.0.0-10.0.3.255")
            .check_size(22, "max = ")
            .is_ok());
        let err = parse("0.0.0.0/0")
            .check_size(22, "max = ")
            .expect_err("the internet");
        assert!(
            err.contains("more than a /22") && err.contains("/0"),
            "{err}"
        );
        let err = parse("10.0.0.0-10.0.4.0")
            .check_size(22, "max = ")
            .expect_err("one over");
        assert!(err.contains("raise the limit with max = 21"), "{err}");
        assert!(parse("0.0.0.0/0").check_size(0, "max = ").is_ok());
    }

    #[test]
    fn membership_matches_the_addresses() {
        let t = parse("10.0.0.0/30:1161");
        assert!(t.contains(Ipv4Addr::new(10, 0, 0, 1), 1161));
        assert!(
            !t.contains(Ipv4Addr::new(10, 0, 0, 0), 1161),
            "network address"
        );
        assert!(!t.contains(Ipv4Addr::new(10, 0, 0, 1), 161), "other port");
        assert!(parse("gw.lan")
            .resolved(Ipv4Addr::LOCALHOST)
            .contains(Ipv4Addr::LOCALHOST, 161));
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.0/24", "10.0.0.1-10.0.0.9:1161", "gw.lan"] {
            assert_eq!(parse(s).to_string(), s);
        }
    }
}
