//! Inventory: what a device is and what it has, read once per sweep.
//!
//! For each device that answered the system-group probe, the collector:
//! 1. checks which MIB subtrees the device has (the rules' and the
//!    evidence layer's probes: multi-varbind GETNEXTs of 12 roots), which is
//!    evidence for classification and also decides what later polls ask for;
//! 2. reads the vendor-specific scalars the matching rules ask for;
//! 3. walks ENTITY-MIB's entPhysicalTable, IF-MIB's ifTable and ifXTable,
//!    and the IP address table;
//! 4. classifies the device and derives its stable id.
//!
//! Real agents return holes: trimmed walks, tables without an index column,
//! `<private>` strings. Rows are inferred from whichever columns exist, and a
//! missing table is simply empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::classify::{Evidence, Rules};
use crate::message::{
    Classification, Entity, EntityFacts, Interface, Inventory, IpAddress, System,
};
use crate::oid;
use crate::snmp::walk::{self, Rows};
use crate::snmp::{display_value, Client, Oid, Value, WalkOptions};

const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const ENT_PHYSICAL_ENTRY: [u64; 11] = [1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1];
const IP_ADDR_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 4, 20, 1];

/// Reads the inventory of a device that answered with `system`.
pub async fn collect(
    client: &mut Client,
    system: System,
    rules: &Rules,
    options: &WalkOptions,
) -> Inventory {
    let mut options = options.clone();
    let subtrees = probe_subtrees(client, rules).await;
    let extra = read_extra(client, &rules.extra_oids(&evidence(&system, &subtrees))).await;
    let entities = if subtrees.contains("entity") {
        walk::rows(client, &Oid::from_arcs(&ENT_PHYSICAL_ENTRY), &mut options).await
    } else {
        Rows::new()
    };
    // A device with many interfaces has ~22 ifEntry cells per interface:
    // the walk cap (a guard against endless agents) grows with ifNumber.
    let if_number = if_number(client).await;
    options.max_oids = options.max_oids.max(
        if_number
            .saturating_mul(CELLS_PER_INTERFACE)
            .min(MAX_INTERFACE_CELLS),
    );
    let interfaces = walk::rows(client, &Oid::from_arcs(&IF_ENTRY), &mut options).await;
    let interfaces_x = walk::rows(client, &Oid::from_arcs(&IFX_ENTRY), &mut options).await;
    let ip_addresses = walk::rows(client, &Oid::from_arcs(&IP_ADDR_ENTRY), &mut options).await;
    let read = Read {
        subtrees,
        extra,
        entities,
        interfaces,
        interfaces_x,
        ip_addresses,
        bulk_ok: options.use_bulk,
    };
    assemble(system, read, rules)
}

/// What the reads of one device returned, before anything is made of it.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The probe subtrees that have an object ([`subtrees_from`]).
    pub subtrees: BTreeSet<String>,
    /// The vendor scalars the rules asked for, as text, by dotted OID.
    pub extra: BTreeMap<String, String>,
    pub entities: Rows,
    pub interfaces: Rows,
    pub interfaces_x: Rows,
    pub ip_addresses: Rows,
    pub bulk_ok: bool,
}

/// The classification evidence of the system group and the probe subtrees:
/// what decides which vendor scalars to read ([`Rules::extra_oids`]).
pub fn evidence(system: &System, subtrees: &BTreeSet<String>) -> Evidence {
    Evidence {
        sys_object_id: system.sys_object_id.clone(),
        sys_descr: system.sys_descr.clone(),
        sys_name: system.sys_name.clone(),
        sys_services: system.sys_services,
        subtrees: subtrees.clone(),
        ..Evidence::default()
    }
}

/// The inventory made of what was read, classified. Pure, so that it is
/// tested and fuzzed without a device.
pub fn assemble(system: System, read: Read, rules: &Rules) -> Inventory {
    assemble_with(system, read, |evidence| rules.classify(evidence))
}

/// [`assemble`] with the classification step given: what the classify
/// bench uses to time classification apart from the tables' assembly.
pub fn assemble_with(
    system: System,
    read: Read,
    classify: impl FnOnce(&Evidence) -> Classification,
) -> Inventory {
    let entities = entities_from(&read.entities);
    let interfaces = interfaces_from(&read.interfaces, &read.interfaces_x);
    let ip_addresses = ip_addresses_from(&read.ip_addresses);
    let mut evidence = evidence(&system, &read.subtrees);
    evidence.extra = read.extra;
    evidence.entity = chassis(&entities);
    // One entry per interface in both lists, in the same order (0: no type).
    evidence.if_types = interfaces.iter().map(|i| i.if_type.unwrap_or(0)).collect();
    evidence.macs = interfaces.iter().filter_map(|i| i.mac.clone()).collect();
    evidence.ip_addresses = ip_addresses
        .iter()
        .filter(|a| !a.address.starts_with("127."))
        .count();
    evidence.entity_ports = entities
        .iter()
        .filter(|e| e.class.as_deref() == Some("port"))
        .count();
    evidence.if_names = interfaces
        .iter()
        .map(|i| i.name.clone().unwrap_or_default())
        .collect();
    evidence.physical_ethernet = physical_ethernet(&interfaces, &read.interfaces_x);
    Inventory {
        classification: classify(&evidence),
        system,
        interfaces,
        entities,
        ip_addresses,
        subtrees: read.subtrees,
        bulk_ok: read.bulk_ok,
    }
}

/// ifXTable's ifConnectorPresent: true(1) for an interface with a jack.
const IF_CONNECTOR_PRESENT: u64 = 17;

/// Ethernet-like interfaces with a connector, if the device reports
/// ifConnectorPresent for any interface at all.
fn physical_ethernet(interfaces: &[Interface], ifx_rows: &Rows) -> Option<usize> {
    let connector = |index: u64| {
        ifx_rows
            .get(&vec![index])
            .and_then(|row| number(row, IF_CONNECTOR_PRESENT))
    };
    if !interfaces.iter().any(|i| connector(i.index).is_some()) {
        return None;
    }
    Some(
        interfaces
            .iter()
            .filter(|i| i.if_type.is_some_and(|t| [6, 62, 69, 117].contains(&t)))
            .filter(|i| connector(i.index) == Some(1))
            .count(),
    )
}

/// The rules' probe subtrees that can be asked about: name and root.
pub fn probe_roots(rules: &Rules) -> Vec<(String, Oid)> {
    rules
        .probes()
        .into_iter()
        .filter_map(|(name, root)| root.parse().ok().map(|oid| (name, oid)))
        .collect()
}

/// Which probe subtrees have at least one object, from the answers to one
/// GETNEXT per root (in the same order).
pub fn subtrees_from(probes: &[(String, Oid)], answers: &[(Oid, Value)]) -> BTreeSet<String> {
    probes
        .iter()
        .zip(answers)
        .filter(|((_, root), (next, value))| next.starts_with(root) && !value.is_exception())
        .map(|((name, _), _)| name.clone())
        .collect()
}

/// Varbinds per probe request: small enough for an agent that answers at
/// most 484-byte messages (the least SNMP allows) to fit its reply.
const PROBES_PER_REQUEST: usize = 12;

/// Which probe subtrees have at least one object: GETNEXT on each root, a
/// few roots per request. A request that fails costs only its own probes.
async fn probe_subtrees(client: &mut Client, rules: &Rules) -> BTreeSet<String> {
    let probes = probe_roots(rules);
    let mut found = BTreeSet::new();
    for chunk in probes.chunks(PROBES_PER_REQUEST) {
        let roots: Vec<Oid> = chunk.iter().map(|(_, root)| root.clone()).collect();
        match client.get_next_many(&roots).await {
            Ok(answers) => found.extend(subtrees_from(chunk, &answers)),
            Err(e) => {
                tracing::debug!(addr = %client.addr(), error = %e, "subtree probe failed");
            }
        }
    }
    found
}

/// ifEntry has 22 columns, ifXEntry 19.
const CELLS_PER_INTERFACE: usize = 24;
/// However many interfaces a device claims, a table walk stops here (about
/// 4,000 interfaces; a few MB while the walk lasts).
const MAX_INTERFACE_CELLS: usize = 100_000;

/// IF-MIB ifNumber.0, or 0 when the device does not say.
async fn if_number(client: &mut Client) -> usize {
    let oid = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 2, 1, 0]);
    match client.get(std::slice::from_ref(&oid)).await {
        Ok(varbinds) => varbinds
            .first()
            .and_then(|(_, v)| v.as_u64())
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn read_extra(client: &mut Client, oids: &[String]) -> BTreeMap<String, String> {
    let parsed: Vec<Oid> = oids.iter().filter_map(|o| o.parse().ok()).collect();
    if parsed.is_empty() {
        return BTreeMap::new();
    }
    match client.get(&parsed).await {
        Ok(varbinds) => varbinds
            .into_iter()
            .filter_map(|(oid, value)| Some((oid.to_string(), display_value(&value)?)))
            .collect(),
        Err(e) => {
            tracing::debug!(addr = %client.addr(), error = %e, "vendor scalars not read");
            BTreeMap::new()
        }
    }
}

fn text(row: &BTreeMap<u64, Value>, column: u64) -> Option<String> {
    row.get(&column).and_then(display_value)
}

fn number(row: &BTreeMap<u64, Value>, column: u64) -> Option<u64> {
    row.get(&column).and_then(Value::as_u64)
}

fn status(code: Option<u64>) -> Option<String> {
    let name = match code? {
        1 => "up",
        2 => "down",
        3 => "testing",
        4 => "unknown",
        5 => "dormant",
        6 => "not-present",
        7 => "lower-layer-down",
        _ => "unknown",
    };
    Some(name.to_string())
}

fn mac(row: &BTreeMap<u64, Value>, column: u64) -> Option<String> {
    let Some(Value::OctetString(bytes)) = row.get(&column) else {
        return None;
    };
    (bytes.len() == 6).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Interfaces from ifTable and ifXTable rows, keyed by ifIndex (the row index).
pub fn interfaces_from(if_rows: &Rows, ifx_rows: &Rows) -> Vec<Interface> {
    let indexes: BTreeSet<u64> = if_rows
        .keys()
        .chain(ifx_rows.keys())
        .filter_map(|index| match index.as_slice() {
            [i] => Some(*i),
            _ => None,
        })
        .collect();
    let empty = BTreeMap::new();
    indexes
        .into_iter()
        .map(|index| {
            let row = if_rows.get(&vec![index]).unwrap_or(&empty);
            let x = ifx_rows.get(&vec![index]).unwrap_or(&empty);
            let descr = text(row, 2);
            // ifHighSpeed is a Gauge32 of Mb/s; a device that sends a wider
            // type with an absurd value gets no speed rather than a wrapped one.
            let high = number(x, 15).and_then(|h| h.checked_mul(1_000_000));
            let speed = match (high, number(row, 5)) {
                (Some(high), Some(low))
                    if low >= u64::from(u32::MAX) || high / 1_000_000 > low / 1_000_000 =>
                {
                    Some(high)
                }
                (Some(high), None) => Some(high),
                (_, low) => low,
            };
            Interface {
                index,
                name: text(x, 1).or_else(|| descr.clone()),
                descr,
                alias: text(x, 18),
                if_type: number(row, 3),
                mac: mac(row, 6),
                mtu: number(row, 4),
                speed_bps: speed,
                admin_status: status(number(row, 7)),
                oper_status: status(number(row, 8)),
                hc_counters: x.contains_key(&6) && x.contains_key(&10),
            }
        })
        .collect()
}

fn entity_class(code: Option<u64>) -> Option<String> {
    let name = match code? {
        1 => "other",
        2 => "unknown",
        3 => "chassis",
        4 => "backplane",
        5 => "container",
        6 => "power-supply",
        7 => "fan",
        8 => "sensor",
        9 => "module",
        10 => "port",
        11 => "stack",
        12 => "cpu",
        _ => "unknown",
    };
    Some(name.to_string())
}

pub fn entities_from(rows: &Rows) -> Vec<Entity> {
    rows.iter()
        .filter_map(|(index, row)| {
            let [index] = index.as_slice() else {
                return None;
            };
            Some(Entity {
                index: *index,
                class: entity_class(number(row, 5)),
                facts: EntityFacts {
                    descr: text(row, 2),
                    name: text(row, 7),
                    hardware_rev: text(row, 8),
                    firmware_rev: text(row, 9),
                    software_rev: text(row, 10),
                    serial: text(row, 11),
                    mfg: text(row, 12),
                    model: text(row, 13),
                },
            })
        })
        .collect()
}

/// The chassis (or else the first entity) as classification evidence.
fn chassis(entities: &[Entity]) -> Option<EntityFacts> {
    let e = entities
        .iter()
        .find(|e| e.class.as_deref() == Some("chassis"))
        .or_else(|| entities.first())?;
    Some(e.facts.clone())
}

pub fn ip_addresses_from(rows: &Rows) -> Vec<IpAddress> {
    rows.iter()
        .filter_map(|(index, row)| {
            let address = match row.get(&1) {
                Some(Value::IpAddress(ip)) => std::net::Ipv4Addr::from(*ip).to_string(),
                _ if index.len() == 4 => index
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
                _ => return None,
            };
            let netmask = match row.get(&3) {
                Some(Value::IpAddress(ip)) => Some(std::net::Ipv4Addr::from(*ip).to_string()),
                _ => None,
            };
            Some(IpAddress {
                address,
                if_index: number(row, 2),
                netmask,
            })
        })
        .collect()
}

/// The device's stable id, in this order of preference:
/// 1. `sn-{vendor}-{serial}` when the device reports a serial number (from its
///    rule or ENTITY-MIB): survives address changes, reboots and NIC swaps;
/// 2. `mac-{mac}`: the lowest globally administered MAC among its interfaces
///    (not all-zero, not broadcast), or else the lowest locally administered
///    one (virtual machines, e.g. a PBX on KVM with 52:54:00:…, have only those,
///    and they are as stable as the VM's definition);
/// 3. `ip-{a}-{b}-{c}-{d}-{port}`: the address, when the device tells nothing
///    else (stable only for statically addressed gear and DHCP reservations).
pub fn device_id(inventory: &Inventory, addr: SocketAddr) -> String {
    let classification = &inventory.classification;
    if let Some(serial) = classification.serial.as_deref().and_then(id_safe) {
        let vendor = classification
            .vendor
            .as_deref()
            .and_then(id_safe)
            .unwrap_or_else(|| "unknown".into());
        return format!("sn-{}-{}", vendor.to_ascii_lowercase(), serial);
    }
    let macs = || {
        inventory
            .interfaces
            .iter()
            .filter_map(|i| i.mac.as_deref())
            .filter(|m| usable_mac(m))
    };
    let base_mac = macs()
        .filter(|m| globally_unique(m))
        .min()
        .or_else(|| macs().min());
    if let Some(mac) = base_mac {
        return format!("mac-{}", mac.replace(':', ""));
    }
    address_id(addr)
}

/// The id of a device that tells nothing better than its address and port.
pub(crate) fn address_id(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("ip-{a}-{b}-{c}-{d}-{}", addr.port())
        }
        IpAddr::V6(ip) => {
            format!("ip6-{}-{}", ip.to_string().replace(':', "_"), addr.port())
        }
    }
}

/// Keeps the characters a topic level and a log line can carry safely.
fn id_safe(text: &str) -> Option<String> {
    let kept: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let meaningful =
        kept.chars().any(|c| c.is_ascii_alphanumeric()) && !kept.chars().all(|c| c == '0');
    meaningful.then_some(kept)
}

/// Not all-zero, not broadcast or multicast.
fn usable_mac(mac: &str) -> bool {
    let first = u8::from_str_radix(mac.get(0..2).unwrap_or("00"), 16).unwrap_or(0);
    let all_zero = mac.chars().all(|c| c == '0' || c == ':');
    !all_zero && first & 0x01 == 0
}

/// Assigned by the manufacturer (the locally administered bit is clear).
fn globally_unique(mac: &str) -> bool {
    let first = u8::from_str_radix(mac.get(0..2).unwrap_or("00"), 16).unwrap_or(0);
    usable_mac(mac) && first & 0x02 == 0
}

/// sysUpTime.0 and friends used by inventory and polls.
pub fn sys_uptime_oid() -> Oid {
    oid!(1, 3, 6, 1, 2, 1, 1, 3, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::walk::rows_from;

    fn cell(entry: &[u64], column: u64, index: u64, value: Value) -> (Oid, Value) {
        (Oid::from_arcs(entry).child(&[column, index]), value)
    }

    #[test]
    fn a_device_without_better_identity_is_named_by_address_and_port() {
        let addr: SocketAddr = "127.0.1.7:16100".parse().expect("addr");
        assert_eq!(address_id(addr), "ip-127-0-1-7-16100");
    }

    #[test]
    fn interface_rows_are_inferred_from_any_column() {
        // No ifIndex column, as in many trimmed recordings.
        let if_cells = vec![
            cell(&IF_ENTRY, 2, 1, Value::OctetString(b"eth0".to_vec())),
            cell(&IF_ENTRY, 2, 3, Value::OctetString(b"wlan0".to_vec())),
            cell(&IF_ENTRY, 5, 1, Value::Gauge32(u32::MAX)),
            cell(
                &IF_ENTRY,
                6,
                1,
                Value::OctetString(vec![0x00, 0x24, 0xa5, 0xf1, 0xc2, 0x03]),
            ),
            cell(&IF_ENTRY, 8, 1, Value::Integer(1)),
            cell(&IF_ENTRY, 8, 3, Value::Integer(2)),
        ];
        let ifx_cells = vec![
            cell(&IFX_ENTRY, 1, 1, Value::OctetString(b"ether1".to_vec())),
            cell(&IFX_ENTRY, 6, 1, Value::Counter64(10)),
            cell(&IFX_ENTRY, 10, 1, Value::Counter64(20)),
            cell(&IFX_ENTRY, 15, 1, Value::Gauge32(10_000)),
            cell(&IFX_ENTRY, 18, 7, Value::OctetString(b"<private>".to_vec())),
        ];
        let interfaces = interfaces_from(
            &rows_from(&Oid::from_arcs(&IF_ENTRY), if_cells),
            &rows_from(&Oid::from_arcs(&IFX_ENTRY), ifx_cells),
        );
        let indexes: Vec<u64> = interfaces.iter().map(|i| i.index).collect();
        assert_eq!(indexes, [1, 3, 7]);
        let eth = &interfaces[0];
        assert_eq!(eth.name.as_deref(), Some("ether1"));
        assert_eq!(eth.speed_bps, Some(10_000_000_000));
        assert_eq!(eth.mac.as_deref(), Some("00:24:a5:f1:c2:03"));
        assert_eq!(eth.oper_status.as_deref(), Some("up"));
        assert!(eth.hc_counters);
        assert_eq!(interfaces[1].oper_status.as_deref(), Some("down"));
        assert_eq!(interfaces[2].alias, None, "<private> is absent");
    }

    #[test]
    fn an_absurd_if_high_speed_is_no_speed_not_an_overflow() {
        // Found by the snmp_values fuzz target: ifHighSpeed sent as a Counter64.
        let if_cells = vec![
            cell(&IF_ENTRY, 1, 1, Value::Integer(1)),
            cell(&IF_ENTRY, 5, 1, Value::Gauge32(1_000)),
        ];
        let ifx_cells = vec![cell(&IFX_ENTRY, 15, 1, Value::Counter64(u64::MAX))];
        let interfaces = interfaces_from(
            &rows_from(&Oid::from_arcs(&IF_ENTRY), if_cells),
            &rows_from(&Oid::from_arcs(&IFX_ENTRY), ifx_cells),
        );
        assert_eq!(interfaces[0].speed_bps, Some(1_000));
    }

    #[test]
    fn ip_addresses_come_from_the_index_when_the_column_is_missing() {
        let entry = Oid::from_arcs(&IP_ADDR_ENTRY);
        let rows = rows_from(
            &entry,
            vec![(entry.child(&[2, 192, 0, 2, 1]), Value::Integer(4))],
        );
        let ips = ip_addresses_from(&rows);
        assert_eq!(ips[0].address, "192.0.2.1");
        assert_eq!(ips[0].if_index, Some(4));
    }

    #[test]
    fn mac_rules_for_the_base_mac() {
        assert!(globally_unique("00:24:a5:f1:c2:03"));
        assert!(
            !globally_unique("52:54:00:12:34:56"),
            "locally administered"
        );
        assert!(usable_mac("52:54:00:12:34:56"));
        assert!(!usable_mac("00:00:00:00:00:00"));
        assert!(!usable_mac("ff:ff:ff:ff:ff:ff"));
        assert!(!usable_mac("01:00:5e:00:00:01"), "multicast");
    }

    #[test]
    fn serials_are_made_topic_safe() {
        assert_eq!(
            id_safe(" C8F2 0B7A/41E3 ").as_deref(),
            Some("C8F2_0B7A_41E3")
        );
        assert_eq!(id_safe("000000"), None);
        assert_eq!(id_safe("  "), None);
    }

    #[test]
    fn display_value_hides_placeholders_and_binary() {
        assert_eq!(
            display_value(&Value::OctetString(b"<private>".to_vec())),
            None
        );
        assert_eq!(
            display_value(&Value::OctetString(vec![0x01, 0x02, 0x41])),
            None
        );
        assert_eq!(display_value(&Value::Integer(-3)).as_deref(), Some("-3"));
    }
}
