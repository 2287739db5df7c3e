//! What discovery tells the NOC about a device: who it is and what it is
//! made of.
//!
//! The payload of the retained `{prefix}/devices/{id}/inventory`, and the
//! classification's vocabulary ([`Kind`]). Producing these (the sweep, the
//! inventory walk, the rules) is [`crate::discover`]'s work; the poller, the
//! contract and the provisioner only read them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// What a sweep learned about one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub address: IpAddr,
    pub port: u16,
    /// A stable id: see [`crate::discover::inventory::device_id`].
    pub id: String,
    /// The name of the credential that answered (never the secret).
    pub credential: String,
    /// The id the device claimed, when it is tracked under another (two
    /// devices claimed one id, or it keeps changing who it says it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_id: Option<String>,
    #[serde(flatten)]
    pub inventory: Inventory,
    /// sysUpTime in hundredths of a second, as read during the sweep.
    #[serde(skip)]
    pub sys_uptime: Option<u64>,
}

impl Device {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// One interface, from ifTable and ifXTable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interface {
    pub index: u64,
    /// ifName, else ifDescr.
    pub name: Option<String>,
    pub descr: Option<String>,
    pub alias: Option<String>,
    #[serde(rename = "type")]
    pub if_type: Option<u64>,
    pub mac: Option<String>,
    pub mtu: Option<u64>,
    /// From ifHighSpeed when the device has it (ifSpeed saturates at 4.29 Gbit/s).
    pub speed_bps: Option<u64>,
    pub admin_status: Option<String>,
    pub oper_status: Option<String>,
    /// True when ifXTable has 64-bit octet counters for this interface.
    pub hc_counters: bool,
}

/// One physical entity from ENTITY-MIB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub index: u64,
    pub class: Option<String>,
    #[serde(flatten)]
    pub facts: EntityFacts,
}

/// An IPv4 address of the device, from ipAddrTable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpAddress {
    pub address: String,
    pub if_index: Option<u64>,
    pub netmask: Option<String>,
}

/// The system group, as read by the discovery probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct System {
    pub sys_descr: Option<String>,
    pub sys_object_id: Option<String>,
    pub sys_name: Option<String>,
    pub sys_contact: Option<String>,
    pub sys_location: Option<String>,
    pub sys_services: Option<u64>,
}

/// Everything read about a device's make-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    #[serde(flatten)]
    pub classification: Classification,
    #[serde(flatten)]
    pub system: System,
    pub interfaces: Vec<Interface>,
    pub entities: Vec<Entity>,
    pub ip_addresses: Vec<IpAddress>,
    /// The probe subtrees the device has (e.g. "docsis", "host-resources").
    pub subtrees: BTreeSet<String>,
    /// False when the device mishandled GETBULK: later walks use GETNEXT.
    pub bulk_ok: bool,
}

/// ENTITY-MIB entPhysicalTable facts of one entity.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EntityFacts {
    pub descr: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub mfg: Option<String>,
    pub serial: Option<String>,
    pub hardware_rev: Option<String>,
    pub firmware_rev: Option<String>,
    pub software_rev: Option<String>,
}

/// The kinds of device the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Cable modems, including DOCSIS residential gateways.
    Modem,
    DslGateway,
    Ont,
    /// IP PBXs and VoIP gateways / ATAs.
    Pbx,
    Router,
    Firewall,
    Switch,
    Ap,
    Ups,
    Printer,
    /// Power distribution: PDUs, transfer switches, power meters.
    Pdu,
    /// Fixed-wireless CPEs and point-to-point / multipoint backhaul radios.
    Radio,
    /// Network-attached storage.
    Nas,
    /// IP cameras and video recorders.
    Camera,
    /// IP desk phones.
    Phone,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::Modem,
        Kind::DslGateway,
        Kind::Ont,
        Kind::Pbx,
        Kind::Router,
        Kind::Firewall,
        Kind::Switch,
        Kind::Ap,
        Kind::Ups,
        Kind::Printer,
        Kind::Pdu,
        Kind::Radio,
        Kind::Nas,
        Kind::Camera,
        Kind::Phone,
        Kind::Other,
    ];

    /// The kebab-case name, as in rules files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Modem => "modem",
            Kind::DslGateway => "dsl-gateway",
            Kind::Ont => "ont",
            Kind::Pbx => "pbx",
            Kind::Router => "router",
            Kind::Firewall => "firewall",
            Kind::Switch => "switch",
            Kind::Ap => "ap",
            Kind::Ups => "ups",
            Kind::Printer => "printer",
            Kind::Pdu => "pdu",
            Kind::Radio => "radio",
            Kind::Nas => "nas",
            Kind::Camera => "camera",
            Kind::Phone => "phone",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind `{s}`, expected one of {}", kind_names()))
    }
}

/// Every kind's name, comma-separated, for error messages.
pub fn kind_names() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

/// The outcome of classifying one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub kind: Kind,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    /// The id of the rule that decided the kind (e.g. "arris-docsis-modem"),
    /// "evidence" when the weighed evidence did, or "fallback".
    pub rule: String,
    /// 0–100: 100 when a rule decided, the margin of the winning kind when
    /// the evidence did, 0 for `fallback`.
    pub confidence: u8,
    /// Human-readable reasons, for `cpe-agent discover --explain`.
    pub evidence: Vec<String>,
}
