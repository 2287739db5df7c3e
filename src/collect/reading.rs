//! What one poll asks a device for, and how the answers become a [`Reading`].
//!
//! A device is asked only for what its inventory says it has: interface
//! counters when it has interfaces, HOST-RESOURCES when that subtree answered,
//! DOCSIS levels for cable modems, ADSL-LINE-MIB for DSL gateways, UPS-MIB or
//! APC PowerNet for UPSs. The arithmetic (rates, reboots, events) is in
//! [`crate::collect::health`]; this module is the SNMP side only.

use std::collections::BTreeMap;

use super::health::{round2, Counter, InterfaceReading, Reading};
use crate::message::{Docsis, DocsisChannel, Dsl, Inventory, Storage, Ups};
use crate::snmp::walk::{self, WalkOptions};
use crate::snmp::{display_value, Rows};
use crate::snmp::{Client, Oid, SnmpError, Value};

const SYS_UPTIME: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
/// ifEntry has 22 columns, ifXEntry 19: room for either table of a device.
const CELLS_PER_INTERFACE: usize = 24;
const HR_PROCESSOR_LOAD: [u64; 11] = [1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2];
const HR_STORAGE_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 25, 2, 3, 1];
const HR_STORAGE_TYPES: [u64; 9] = [1, 3, 6, 1, 2, 1, 25, 2, 1];
const DOCS_DOWN_POWER: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 127, 1, 1, 1, 1];
const DOCS_SIGNAL_QUALITY: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 127, 1, 1, 4, 1];
const DOCS_CM_STATUS: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 127, 1, 2, 2, 1];
/// docsIf3CmStatusUsEntry; column 1 is the transmit power.
const DOCS3_US_STATUS: [u64; 13] = [1, 3, 6, 1, 4, 1, 4491, 2, 1, 20, 1, 2, 1];
const ADSL_ATUC_PHYS: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 94, 1, 1, 2, 1];
const ADSL_ATUR_PHYS: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 94, 1, 1, 3, 1];
const ADSL_ATUC_CHAN: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 94, 1, 1, 4, 1];
const ADSL_ATUR_CHAN: [u64; 12] = [1, 3, 6, 1, 2, 1, 10, 94, 1, 1, 5, 1];
const UPS_BATTERY: [u64; 9] = [1, 3, 6, 1, 2, 1, 33, 1, 2];
const UPS_OUTPUT_SOURCE: [u64; 10] = [1, 3, 6, 1, 2, 1, 33, 1, 4, 1];
const APC_UPS: [u64; 10] = [1, 3, 6, 1, 4, 1, 318, 1, 1, 1];

/// Reads what the device has. Fails only when the device does not answer
/// sysUpTime (it is then unreachable); a table that fails is left out.
pub async fn read(
    client: &mut Client,
    inventory: &Inventory,
    options: &mut WalkOptions,
) -> Result<Reading, SnmpError> {
    let started = std::time::Instant::now();
    let uptime = client.get(&[Oid::from_arcs(&SYS_UPTIME)]).await?;
    let mut reading = Reading {
        response_time: Some(started.elapsed()),
        uptime_ticks: uptime.first().and_then(|(_, v)| v.as_u64()),
        ..Reading::default()
    };
    if !inventory.interfaces.is_empty() {
        reading.interfaces = interfaces(client, inventory, options).await;
    }
    if inventory.subtrees.contains("host-resources") {
        host_resources(client, options, &mut reading).await;
    }
    if inventory.subtrees.contains("docsis") {
        docsis(client, options, &mut reading).await;
    }
    if inventory.subtrees.contains("adsl") {
        reading.dsl = Some(adsl(client, options).await);
    }
    if inventory.subtrees.contains("ups") {
        reading.ups = ups_mib(client).await;
    } else if inventory.subtrees.contains("apc-ups") {
        reading.ups = apc_ups(client).await;
    }
    Ok(reading)
}

/// Walk settings for a device's polls: GETNEXT only for devices that
/// mishandled GETBULK when discovered (and v1 devices, which have none).
pub fn walk_options(inventory: &Inventory) -> WalkOptions {
    WalkOptions {
        use_bulk: inventory.bulk_ok,
        ..WalkOptions::default()
    }
}

async fn table(client: &mut Client, entry: &[u64], options: &mut WalkOptions) -> Rows {
    walk::rows(client, &Oid::from_arcs(entry), options).await
}

/// A single-column walk as `index → value`, for columns indexed by one number.
async fn column(
    client: &mut Client,
    column: &[u64],
    options: &mut WalkOptions,
) -> BTreeMap<u64, Value> {
    let root = Oid::from_arcs(column);
    let Ok(walk) = walk::walk(client, &root, options).await else {
        return BTreeMap::new();
    };
    walk.varbinds
        .into_iter()
        .filter(|(_, v)| !v.is_exception())
        .filter_map(|(oid, v)| match oid.suffix_after(&root) {
            Some([index]) => Some((*index, v)),
            _ => None,
        })
        .collect()
}

fn counter(value: Option<&Value>) -> Option<Counter> {
    match value? {
        Value::Counter32(n) | Value::Gauge32(n) => Some(Counter::C32(*n)),
        Value::Counter64(n) => Some(Counter::C64(*n)),
        _ => None,
    }
}

async fn interfaces(
    client: &mut Client,
    inventory: &Inventory,
    options: &mut WalkOptions,
) -> BTreeMap<u64, InterfaceReading> {
    // The walk cap guards against endless agents; a device with many
    // interfaces legitimately has ~22 ifEntry and ~19 ifXEntry cells per
    // interface, so the cap grows with the interfaces the inventory knows.
    let mut sized = WalkOptions {
        max_oids: options.max_oids.max(
            inventory
                .interfaces
                .len()
                .saturating_mul(CELLS_PER_INTERFACE),
        ),
        ..*options
    };
    let if_rows = table(client, &IF_ENTRY, &mut sized).await;
    let hc = inventory.interfaces.iter().any(|i| i.hc_counters);
    let ifx_rows = if hc {
        table(client, &IFX_ENTRY, &mut sized).await
    } else {
        Rows::new()
    };
    options.use_bulk = sized.use_bulk;
    let empty = BTreeMap::new();
    inventory
        .interfaces
        .iter()
        .filter_map(|known| {
            let row = if_rows.get(&vec![known.index]);
            let x = ifx_rows.get(&vec![known.index]);
            if row.is_none() && x.is_none() {
                return None;
            }
            let (row, x) = (row.unwrap_or(&empty), x.unwrap_or(&empty));
            let reading = InterfaceReading {
                name: known.name.clone(),
                admin_up: row.get(&7).and_then(Value::as_u64).map(|s| s == 1),
                oper_status: row.get(&8).and_then(Value::as_u64),
                speed_bps: known.speed_bps,
                in_octets: counter(x.get(&6)).or_else(|| counter(row.get(&10))),
                out_octets: counter(x.get(&10)).or_else(|| counter(row.get(&16))),
                in_errors: counter(row.get(&14)),
                out_errors: counter(row.get(&20)),
                in_discards: counter(row.get(&13)),
                out_discards: counter(row.get(&19)),
            };
            Some((known.index, reading))
        })
        .collect()
}

async fn host_resources(client: &mut Client, options: &mut WalkOptions, reading: &mut Reading) {
    reading.cpu_loads = column(client, &HR_PROCESSOR_LOAD, options)
        .await
        .values()
        .filter_map(Value::as_u64)
        .filter(|load| *load <= 100)
        .collect();
    let rows = table(client, &HR_STORAGE_ENTRY, options).await;
    let types = Oid::from_arcs(&HR_STORAGE_TYPES);
    for row in rows.values() {
        let kind = match row
            .get(&2)
            .and_then(Value::as_oid)
            .and_then(|t| t.suffix_after(&types))
        {
            Some([2]) => "ram",
            Some([3]) => "virtual-memory",
            Some([4]) => "disk",
            Some([9]) => "flash",
            _ => "other",
        };
        let (Some(units), Some(size), Some(used)) = (
            row.get(&4).and_then(Value::as_u64),
            row.get(&5).and_then(Value::as_u64),
            row.get(&6).and_then(Value::as_u64),
        ) else {
            continue;
        };
        if size == 0 || used > size {
            continue;
        }
        let used_percent = round2(used as f64 * 100.0 / size as f64);
        if kind == "ram" && reading.memory_percent.is_none() {
            reading.memory_percent = Some(used_percent);
        }
        if matches!(kind, "disk" | "flash") {
            reading.storage.push(Storage {
                name: row
                    .get(&3)
                    .and_then(display_value)
                    .unwrap_or_else(|| kind.to_string()),
                kind: kind.to_string(),
                used_percent,
                size_bytes: size.saturating_mul(units),
            });
        }
    }
}

fn tenths(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Integer(n) => Some(*n as f64 / 10.0),
        other => other.as_u64().map(|n| n as f64 / 10.0),
    }
}

async fn docsis(client: &mut Client, options: &mut WalkOptions, reading: &mut Reading) {
    let down = table(client, &DOCS_DOWN_POWER, options).await;
    let quality = table(client, &DOCS_SIGNAL_QUALITY, options).await;
    let downstream = down
        .iter()
        .filter_map(|(index, row)| {
            let [channel] = index.as_slice() else {
                return None;
            };
            Some(DocsisChannel {
                channel: *channel,
                power_dbmv: tenths(row.get(&6)),
                snr_db: quality.get(index).and_then(|q| tenths(q.get(&5))),
            })
        })
        .collect();
    // DOCSIS 3.0 modems report each upstream's power; older ones one value.
    let mut upstream = upstream_power(&table(client, &DOCS3_US_STATUS, options).await, 1);
    if upstream.is_empty() {
        upstream = upstream_power(&table(client, &DOCS_CM_STATUS, options).await, 3);
    }
    let sum = |column: u64| {
        quality
            .values()
            .map(|row| counter(row.get(&column)))
            .try_fold(0u64, |acc, c| match c {
                Some(Counter::C32(n)) => Some(acc + u64::from(n)),
                _ => None,
            })
    };
    if let (Some(unerrored), Some(corrected), Some(bad)) = (sum(2), sum(3), sum(4)) {
        // Sums of 32-bit counters are compared as 64-bit: a wrap of one shows as a discontinuity.
        let total = unerrored + corrected + bad;
        reading.codewords = Some((Counter::C64(total), Counter::C64(bad)));
    }
    reading.docsis = Some(Docsis {
        downstream,
        upstream,
        uncorrectable_ratio: None,
    });
}

/// One channel per row, its power (tenths of dBmV) in `column`.
fn upstream_power(rows: &Rows, column: u64) -> Vec<DocsisChannel> {
    rows.iter()
        .filter_map(|(index, row)| {
            let [channel] = index.as_slice() else {
                return None;
            };
            Some(DocsisChannel {
                channel: *channel,
                power_dbmv: tenths(row.get(&column)),
                snr_db: None,
            })
        })
        .collect()
}

async fn adsl(client: &mut Client, options: &mut WalkOptions) -> Dsl {
    let first = |rows: &Rows, column: u64| rows.values().find_map(|row| row.get(&column).cloned());
    let atuc_phys = table(client, &ADSL_ATUC_PHYS, options).await;
    let atur_phys = table(client, &ADSL_ATUR_PHYS, options).await;
    let atuc_chan = table(client, &ADSL_ATUC_CHAN, options).await;
    let atur_chan = table(client, &ADSL_ATUR_CHAN, options).await;
    let kbps = |v: Option<Value>| v.and_then(|v| v.as_u64()).map(|bps| bps as f64 / 1000.0);
    Dsl {
        // The ATU-C (exchange side) transmits downstream; the ATU-R (customer side) upstream.
        down_kbps: kbps(first(&atuc_chan, 2)),
        up_kbps: kbps(first(&atur_chan, 2)),
        // Margin and attenuation as measured by the receiving end.
        down_snr_margin_db: tenths(first(&atur_phys, 4).as_ref()),
        down_attenuation_db: tenths(first(&atur_phys, 5).as_ref()),
        up_snr_margin_db: tenths(first(&atuc_phys, 4).as_ref()),
        up_attenuation_db: tenths(first(&atuc_phys, 5).as_ref()),
    }
}

fn battery_status(code: Option<u64>) -> Option<String> {
    let name = match code? {
        2 => "normal",
        3 => "low",
        4 => "depleted",
        _ => "unknown",
    };
    Some(name.to_string())
}

async fn scalars(client: &mut Client, oids: &[Oid]) -> Option<Vec<Option<Value>>> {
    let answers = client.get(oids).await.ok()?;
    Some(
        oids.iter()
            .map(|oid| {
                answers
                    .iter()
                    .find(|(o, v)| o == oid && !v.is_exception())
                    .map(|(_, v)| v.clone())
            })
            .collect(),
    )
}

async fn ups_mib(client: &mut Client) -> Option<Ups> {
    let battery = Oid::from_arcs(&UPS_BATTERY);
    let oids = [
        battery.child(&[1, 0]),
        battery.child(&[3, 0]),
        battery.child(&[4, 0]),
        Oid::from_arcs(&UPS_OUTPUT_SOURCE).child(&[0]),
    ];
    let values = scalars(client, &oids).await?;
    let number = |i: usize| values.get(i).cloned().flatten().and_then(|v| v.as_u64());
    Some(Ups {
        battery_status: battery_status(number(0)),
        runtime_minutes: number(1).map(|m| m as f64),
        charge_percent: number(2).map(|c| c as f64),
        on_battery: number(3).map(|source| source == 5),
    })
}

async fn apc_ups(client: &mut Client) -> Option<Ups> {
    let apc = Oid::from_arcs(&APC_UPS);
    let oids = [
        apc.child(&[2, 1, 1, 0]),
        apc.child(&[2, 2, 1, 0]),
        apc.child(&[2, 3, 1, 0]),
        apc.child(&[2, 2, 3, 0]),
        apc.child(&[4, 1, 1, 0]),
    ];
    let values = scalars(client, &oids).await?;
    let number = |i: usize| values.get(i).cloned().flatten().and_then(|v| v.as_u64());
    Some(Ups {
        battery_status: battery_status(number(0)),
        // High-precision capacity is in tenths of a percent.
        charge_percent: number(1)
            .map(|c| c as f64)
            .or_else(|| number(2).map(|c| c as f64 / 10.0)),
        runtime_minutes: number(3).map(|ticks| round2(ticks as f64 / 6000.0)),
        on_battery: number(4).map(|status| status == 3),
    })
}
