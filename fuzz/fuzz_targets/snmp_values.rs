//! What devices on the LAN answer, as the agent decodes it: OIDs in text
//! (`Oid::from_str`, as rules, bundles and the journal carry them), values
//! (`Value::as_text`/`as_u64`, `snmp::display_value`,
//! `SetValue::from_value`/`matches`/`to_json` and back through
//! `bundle::parse_set_value`, the rollback journal's path), the tables of an
//! inventory and its classification as the agent assembles them
//! (`sweep::system_from`, `inventory::subtrees_from`, `evidence`, `assemble`,
//! with `walk::rows_from` for the tables),
//! the device id (`inventory::device_id`) and the health arithmetic on
//! successive readings (`health::rebooted`, `counter_delta`, `rate`).
//!
//! The SNMP wire decoding itself is the snmp2 crate's, reached only through
//! a network client (`snmp::Client`); it is not fuzzed here.
//!
//! Input: snmprec lines as snmpsim records them (`OID|TYPE|VALUE`, TYPE the
//! ASN.1 tag: 2 Integer, 4 OctetString (4x: hex), 5 Null, 6 OID,
//! 64 IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 68 Opaque,
//! 70 Counter64, 128-130 the SNMPv2 exceptions), i.e. a device's walk. Lines
//! that do not parse are skipped.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use cpe_agent::collect::health::{self, Counter};
use cpe_agent::discover::classify::Rules;
use cpe_agent::discover::{inventory, sweep};
use cpe_agent::provision::bundle;
use cpe_agent::snmp::{display_value, walk, Oid, SetValue, Value};
use libfuzzer_sys::fuzz_target;

const SYSTEM: [u64; 7] = [1, 3, 6, 1, 2, 1, 1];
const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const ENT_PHYSICAL_ENTRY: [u64; 11] = [1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1];
const IP_ADDR_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 4, 20, 1];

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(Rules::embedded)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn value(tag: &str, text: &str) -> Option<Value> {
    let (tag, is_hex) = match tag.strip_suffix('x') {
        Some(t) => (t, true),
        None => (tag.split(':').next()?, false),
    };
    // snmpsim's variation modules ("67:numeric|initial=N,...").
    let text = text
        .strip_prefix("initial=")
        .map_or(text, |t| t.split(',').next().unwrap_or(t));
    let bytes = || {
        if is_hex {
            hex(text)
        } else {
            Some(text.as_bytes().to_vec())
        }
    };
    Some(match tag {
        "2" => Value::Integer(text.trim().parse().ok()?),
        "4" => Value::OctetString(bytes()?),
        "5" => Value::Null,
        "6" => Value::ObjectId(text.parse().ok()?),
        "64" => Value::IpAddress(match hex(text) {
            Some(b) if is_hex && b.len() == 4 => [b[0], b[1], b[2], b[3]],
            _ => text.trim().parse::<std::net::Ipv4Addr>().ok()?.octets(),
        }),
        "65" => Value::Counter32(text.trim().parse().ok()?),
        "66" => Value::Gauge32(text.trim().parse().ok()?),
        "67" => Value::TimeTicks(text.trim().parse().ok()?),
        "68" => Value::Opaque(bytes()?),
        "70" => Value::Counter64(text.trim().parse().ok()?),
        "128" => Value::NoSuchObject,
        "129" => Value::NoSuchInstance,
        "130" => Value::EndOfMibView,
        _ => Value::Other,
    })
}

fn check_value(v: &Value) {
    let _ = (v.as_text(), v.as_u64(), v.as_oid(), v.is_exception());
    if let Some(text) = display_value(v) {
        assert!(!text.is_empty());
    }
    // A value read before a SET is kept for rollback as (type, JSON) and
    // parsed back from the journal.
    if let Some(set) = SetValue::from_value(v) {
        assert!(
            set.matches(v),
            "{set:?} does not match the value it came from"
        );
        let (kind, json) = set.to_json();
        let back = bundle::parse_set_value(kind, &json);
        match (&set, back) {
            (_, Ok(back)) => assert_eq!(back, set, "rollback value changed"),
            // Known gap (see docs/fuzzing.md): an OID value outside the
            // bundle format's numeric OID rules, or a string over 65535
            // bytes, is kept but cannot be restored.
            (SetValue::Oid(_), Err(_)) => {}
            (SetValue::String(s), Err(_)) if s.len() > 65535 => {}
            (_, Err(e)) => panic!("{set:?} kept for rollback cannot be parsed back: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut varbinds: Vec<(Oid, Value)> = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, '|');
        let (Some(oid), Some(tag), Some(val)) = (fields.next(), fields.next(), fields.next())
        else {
            // A bare OID string: as rules files and bundles carry them.
            if let Ok(oid) = line.parse::<Oid>() {
                assert_eq!(oid.to_string().parse::<Oid>().as_ref(), Ok(&oid));
            }
            continue;
        };
        let Ok(oid) = oid.parse::<Oid>() else {
            continue;
        };
        // Display and FromStr agree.
        assert_eq!(oid.to_string().parse::<Oid>().as_ref(), Ok(&oid));
        if let Some(v) = value(tag, val) {
            check_value(&v);
            varbinds.push((oid, v));
        }
    }

    // The system group, as discovery's probe reads it (a GET of its scalars).
    let system_oid = Oid::from_arcs(&SYSTEM);
    let scalars: Vec<(Oid, Value)> = varbinds
        .iter()
        .filter(|(o, _)| o.suffix_after(&system_oid).is_some_and(|s| s.len() == 2 && s[1] == 0))
        .cloned()
        .collect();
    let addr: std::net::SocketAddr = "192.0.2.1:161".parse().unwrap();
    let system = sweep::system_from(addr, &scalars)
        .map(|(system, _uptime)| system)
        .unwrap_or_default();

    // What the inventory's reads would return from a device whose whole
    // walk this is: GETNEXT on each probe root, a GET of the vendor scalars,
    // a walk of each table.
    let rules = rules();
    let probes = inventory::probe_roots(rules);
    let answers: Vec<(Oid, Value)> = probes
        .iter()
        .map(|(_, root)| {
            varbinds
                .iter()
                .filter(|(o, _)| o > root)
                .min_by(|a, b| a.0.cmp(&b.0))
                .cloned()
                .unwrap_or((root.clone(), Value::EndOfMibView))
        })
        .collect();
    let subtrees = inventory::subtrees_from(&probes, &answers);
    let extra: BTreeMap<String, String> = rules
        .extra_oids(&inventory::evidence(&system, &subtrees))
        .iter()
        .filter_map(|o| {
            let oid = o.parse::<Oid>().ok()?;
            let (_, v) = varbinds.iter().find(|(x, _)| *x == oid)?;
            Some((o.clone(), display_value(v)?))
        })
        .collect();
    let table = |entry: &[u64]| {
        let root = Oid::from_arcs(entry);
        let cells: Vec<(Oid, Value)> = varbinds
            .iter()
            .filter(|(o, _)| o.starts_with(&root))
            .cloned()
            .collect();
        walk::rows_from(&root, cells)
    };
    let read = inventory::Read {
        subtrees,
        extra,
        entities: table(&ENT_PHYSICAL_ENTRY),
        interfaces: table(&IF_ENTRY),
        interfaces_x: table(&IFX_ENTRY),
        ip_addresses: table(&IP_ADDR_ENTRY),
        bulk_ok: true,
    };
    // The same assembly and classification the agent runs.
    let inventory = inventory::assemble(system, read, rules);
    let id = inventory::device_id(&inventory, addr);
    assert!(!id.is_empty());
    let _ = serde_json::to_string(&inventory).expect("inventory serializes");

    // Health arithmetic on successive answers: every sysUpTime.0 in the walk
    // is taken as the next poll's, every counter as the next reading of the
    // one before it.
    let uptime = inventory::sys_uptime_oid();
    let ticks: Vec<u64> = varbinds
        .iter()
        .filter(|(o, _)| *o == uptime)
        .filter_map(|(_, v)| v.as_u64())
        .collect();
    for pair in ticks.windows(2) {
        let _ = health::rebooted(pair[0], pair[1], Duration::from_secs(60));
    }
    let counters: Vec<Counter> = varbinds
        .iter()
        .filter_map(|(_, v)| match v {
            Value::Counter32(n) => Some(Counter::C32(*n)),
            Value::Counter64(n) => Some(Counter::C64(*n)),
            _ => None,
        })
        .collect();
    let speed = inventory.interfaces.first().and_then(|i| i.speed_bps);
    for pair in counters.windows(2) {
        let _ = health::counter_delta(pair[0], pair[1]);
        let _ = health::rate(
            pair[0],
            pair[1],
            Duration::from_secs(60),
            health::octet_ceiling(speed),
        );
    }
});
