//! Inventory: what a device is and what it has, read once per sweep.
//!
//! For each device that answered the system-group probe, the collector:
//! 1. checks which MIB subtrees the device has (the rules' probes: one
//!    multi-varbind GETNEXT), which is evidence for classification and also
//!    decides what later polls ask for;
//! 2. reads the vendor-specific scalars the matching rules ask for;
//! 3. walks ENTITY-MIB's entPhysicalTable, IF-MIB's ifTable and ifXTable,
//!    and the IP address table;
//! 4. classifies the device and derives its stable id.
//!
//! Real agents return holes: trimmed walks, tables without an index column,
//! `<private>` strings. Rows are inferred from whichever columns exist, and a
//! missing table is simply empty.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::classify::{Classification, EntityFacts, Evidence, Rules};
use crate::oid;
use crate::snmp::{Client, Oid, Value};
use crate::walk::{self, WalkOptions};

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
    let mut evidence = Evidence {
        sys_object_id: system.sys_object_id.clone(),
        sys_descr: system.sys_descr.clone(),
        sys_name: system.sys_name.clone(),
        sys_services: system.sys_services,
        subtrees: subtrees.clone(),
        ..Evidence::default()
    };
    evidence.extra = read_extra(client, &rules.extra_oids(&evidence)).await;

    let mut bulk_ok = options.use_bulk;
    let entities = if subtrees.contains("entity") {
        let rows = walk_table(
            client,
            &Oid::from_arcs(&ENT_PHYSICAL_ENTRY),
            &mut options,
            &mut bulk_ok,
        )
        .await;
        entities_from(&rows)
    } else {
        Vec::new()
    };
    // A device with many interfaces has ~22 ifEntry cells per interface:
    // the walk cap (a guard against endless agents) grows with ifNumber.
    let if_number = if_number(client).await;
    options.max_oids = options.max_oids.max(
        if_number
            .saturating_mul(CELLS_PER_INTERFACE)
            .min(MAX_INTERFACE_CELLS),
    );
    let if_rows = walk_table(
        client,
        &Oid::from_arcs(&IF_ENTRY),
        &mut options,
        &mut bulk_ok,
    )
    .await;
    let ifx_rows = walk_table(
        client,
        &Oid::from_arcs(&IFX_ENTRY),
        &mut options,
        &mut bulk_ok,
    )
    .await;
    let interfaces = interfaces_from(&if_rows, &ifx_rows);
    let ip_rows = walk_table(
        client,
        &Oid::from_arcs(&IP_ADDR_ENTRY),
        &mut options,
        &mut bulk_ok,
    )
    .await;
    let ip_addresses = ip_addresses_from(&ip_rows);

    evidence.entity = chassis(&entities);
    let classification = rules.classify(&evidence);
    Inventory {
        classification,
        system,
        interfaces,
        entities,
        ip_addresses,
        subtrees,
        bulk_ok,
    }
}

/// Which probe subtrees have at least one object: GETNEXT on each root.
async fn probe_subtrees(client: &mut Client, rules: &Rules) -> BTreeSet<String> {
    let probes: Vec<(String, Oid)> = rules
        .probes()
        .iter()
        .filter_map(|(name, root)| root.parse().ok().map(|oid| (name.clone(), oid)))
        .collect();
    let roots: Vec<Oid> = probes.iter().map(|(_, root)| root.clone()).collect();
    let answers = match client.get_next_many(&roots).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::debug!(addr = %client.addr(), error = %e, "subtree probe failed");
            return BTreeSet::new();
        }
    };
    probes
        .iter()
        .zip(answers)
        .filter(|((_, root), (next, value))| next.starts_with(root) && !value.is_exception())
        .map(|((name, _), _)| name.clone())
        .collect()
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

/// Rows of a table keyed by index, then column number.
pub type Rows = BTreeMap<Vec<u64>, BTreeMap<u64, Value>>;

/// Walks a table entry and groups the cells into rows; a device that lacks
/// the table, or fails part-way, gives what was read.
pub async fn walk_table(
    client: &mut Client,
    entry: &Oid,
    options: &mut WalkOptions,
    bulk_ok: &mut bool,
) -> Rows {
    match walk::walk(client, entry, options).await {
        Ok(walk) => {
            if walk.bulk_failed {
                *bulk_ok = false;
                options.use_bulk = false;
            }
            rows_from(entry, walk.varbinds)
        }
        Err(e) => {
            tracing::debug!(addr = %client.addr(), table = %entry, error = %e, "table not read");
            Rows::new()
        }
    }
}

/// Groups `entry.column.index...` cells into rows (inferred from any column).
pub fn rows_from(entry: &Oid, varbinds: Vec<(Oid, Value)>) -> Rows {
    let mut rows = Rows::new();
    for (oid, value) in varbinds {
        if value.is_exception() {
            continue;
        }
        let Some([column, index @ ..]) = oid.suffix_after(entry) else {
            continue;
        };
        if index.is_empty() {
            continue;
        }
        rows.entry(index.to_vec())
            .or_default()
            .insert(*column, value);
    }
    rows
}

fn text(row: &BTreeMap<u64, Value>, column: u64) -> Option<String> {
    row.get(&column).and_then(display_value)
}

fn number(row: &BTreeMap<u64, Value>, column: u64) -> Option<u64> {
    row.get(&column).and_then(Value::as_u64)
}

/// A value as reportable text; `<private>` placeholders and empty strings are absent.
pub fn display_value(value: &Value) -> Option<String> {
    let text = match value {
        // Some agents pad fixed-size fields with NULs: the value ends at the first one.
        Value::OctetString(bytes) => {
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            Value::OctetString(bytes[..end].to_vec()).as_text()?
        }
        Value::Integer(n) => n.to_string(),
        Value::ObjectId(oid) => oid.to_string(),
        other => other.as_u64()?.to_string(),
    };
    let printable = text
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t');
    (!text.is_empty() && text != "<private>" && printable).then_some(text)
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
pub fn device_id(inventory: &Inventory, addr: std::net::SocketAddr) -> String {
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
    crate::discovery::address_id(addr)
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

    fn cell(entry: &[u64], column: u64, index: u64, value: Value) -> (Oid, Value) {
        (Oid::from_arcs(entry).child(&[column, index]), value)
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
