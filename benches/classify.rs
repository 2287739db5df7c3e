//! Classification cost: what [`cpe_agent::discover::inventory::assemble`]
//! (tables → inventory, rules, weighed evidence, vendor tables and
//! registries) costs per device, in-process, on every recording of
//! `../shared/devices-dev/` and `../shared/devices/`.
//!
//! ```text
//! cargo bench --bench classify              # 20 rounds
//! cargo bench --bench classify -- --quick   # 2 rounds (CI: keeps it working)
//! CLASSIFY_EXPLAIN=airos,zebra cargo bench --bench classify -- --quick
//!                                            # and the evidence of these recordings
//! CLASSIFY_ONLY=comware,aos7 cargo bench --bench classify   # time just these
//! ```
//!
//! Each recording is read as a device would answer: the system group, the
//! probe subtrees that have an object, the scalars the rules ask for, and the
//! entity, interface and address tables. Only `assemble` is timed. Prints
//! mean, median, 99th percentile and worst per device; nothing is asserted.
//!
//! It also prints the heap the classification data costs (a counting
//! allocator): the rules and evidence model as the agent builds them, and,
//! for comparison, `vendors.toml` parsed whole as a TOML document.

use std::alloc::{GlobalAlloc, Layout, System as SystemAlloc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cpe_agent::discover::inventory::{self, Read};
use cpe_agent::discover::Rules;
use cpe_agent::message::System;
use cpe_agent::snmp::walk::rows_from;
use cpe_agent::snmp::{display_value, Oid, Value};

type Recording = BTreeMap<Oid, Value>;

/// Counts live heap bytes and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { SystemAlloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { SystemAlloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `make` leaves on the heap and the most it held on the way, in KiB.
fn heap<T>(make: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let made = make();
    let live = LIVE.load(Ordering::Relaxed).saturating_sub(base) / 1024;
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base) / 1024;
    (made, live, peak)
}

fn print_heap() {
    let (rules, live, peak) = heap(Rules::embedded);
    let (model, model_live, model_peak) = heap(cpe_agent::discover::evidence::Model::embedded);
    let (whole, whole_live, whole_peak) =
        heap(|| toml::from_str::<toml::Table>(include_str!("../src/discover/vendors.toml")));
    println!("heap of the classification data:");
    println!("| what | live KiB | peak KiB |");
    println!("| --- | --- | --- |");
    println!("| Rules::embedded() (product rules and evidence model) | {live} | {peak} |");
    println!("| evidence::Model::embedded() alone | {model_live} | {model_peak} |");
    println!(
        "| vendors.toml parsed whole as a TOML document (not done) | {whole_live} | {whole_peak} |"
    );
    drop((rules, model, whole));
}

fn parse_value(tag: &str, text: &str) -> Option<Value> {
    let hex = |t: &str| -> Option<Vec<u8>> {
        (0..t.len() / 2)
            .map(|i| u8::from_str_radix(t.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect()
    };
    Some(match tag {
        "2" => Value::Integer(text.parse().ok()?),
        "4" => Value::OctetString(text.as_bytes().to_vec()),
        "4x" => Value::OctetString(hex(text)?),
        "6" => Value::ObjectId(text.parse().ok()?),
        "64" => {
            let ip: std::net::Ipv4Addr = text.parse().ok()?;
            Value::IpAddress(ip.octets())
        }
        "64x" => Value::IpAddress(hex(text)?.try_into().ok()?),
        "65" => Value::Counter32(text.parse().ok()?),
        "66" => Value::Gauge32(text.parse().ok()?),
        "67" => Value::TimeTicks(text.parse().ok()?),
        "70" => Value::Counter64(text.parse().ok()?),
        _ => return None,
    })
}

fn read_recording(path: &Path) -> Recording {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '|');
            let (oid, tag, value) = (parts.next()?, parts.next()?, parts.next()?);
            Some((oid.parse().ok()?, parse_value(tag, value)?))
        })
        .collect()
}

fn under(rec: &Recording, root: &Oid) -> Vec<(Oid, Value)> {
    rec.range(root.clone()..)
        .take_while(|(oid, _)| oid.starts_with(root))
        .map(|(o, v)| (o.clone(), v.clone()))
        .collect()
}

/// What the collector would have read from this device.
fn device(rec: &Recording, rules: &Rules) -> (System, Read) {
    let text = |oid: &str| {
        oid.parse::<Oid>()
            .ok()
            .and_then(|o| rec.get(&o))
            .and_then(display_value)
    };
    let system = System {
        sys_descr: text("1.3.6.1.2.1.1.1.0"),
        sys_object_id: text("1.3.6.1.2.1.1.2.0"),
        sys_name: text("1.3.6.1.2.1.1.5.0"),
        sys_services: text("1.3.6.1.2.1.1.7.0").and_then(|s| s.parse().ok()),
        ..System::default()
    };
    let probes = inventory::probe_roots(rules);
    let answers: Vec<(Oid, Value)> = probes
        .iter()
        .map(|(_, root)| {
            rec.range(root.clone()..)
                .next()
                .map(|(o, v)| (o.clone(), v.clone()))
                .unwrap_or((root.clone(), Value::EndOfMibView))
        })
        .collect();
    let subtrees = inventory::subtrees_from(&probes, &answers);
    let extra = rules
        .extra_oids(&inventory::evidence(&system, &subtrees))
        .into_iter()
        .filter_map(|oid| Some((oid.clone(), text(&oid)?)))
        .collect();
    let table = |dotted: &str| {
        let entry: Oid = dotted.parse().expect("entry OID");
        rows_from(&entry, under(rec, &entry))
    };
    let read = Read {
        subtrees,
        extra,
        entities: table("1.3.6.1.2.1.47.1.1.1.1"),
        interfaces: table("1.3.6.1.2.1.2.2.1"),
        interfaces_x: table("1.3.6.1.2.1.31.1.1.1"),
        ip_addresses: table("1.3.6.1.2.1.4.20.1"),
        bulk_ok: true,
    };
    (system, read)
}

fn recordings() -> Vec<PathBuf> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let mut files = Vec::new();
    for dir in ["devices-dev", "devices"] {
        let dir = shared.join(dir);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared recordings sit beside the repository)",
                dir.display()
            )
        });
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "snmprec")),
        );
    }
    files.sort();
    files
}

fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: quick.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let rounds = if quick { 2 } else { 20 };
    print_heap();
    let rules = Rules::embedded();
    // CLASSIFY_ONLY=comware,aos7: time (and profile) just these recordings.
    let only = std::env::var("CLASSIFY_ONLY").unwrap_or_default();
    let files: Vec<PathBuf> = recordings()
        .into_iter()
        .filter(|p| {
            only.is_empty()
                || p.file_stem()
                    .is_some_and(|s| only.split(',').any(|o| s.to_string_lossy() == o))
        })
        .collect();
    let devices: Vec<(System, Read)> = files
        .iter()
        .map(|p| device(&read_recording(p), &rules))
        .collect();
    let explain = std::env::var("CLASSIFY_EXPLAIN").unwrap_or_default();
    let explaining = Rules::embedded().explaining();
    for stem in explain.split(',').filter(|s| !s.is_empty()) {
        let Some(at) = files
            .iter()
            .position(|p| p.file_stem().is_some_and(|s| s == stem))
        else {
            println!("{stem}: no such recording");
            continue;
        };
        let (system, read) = devices[at].clone();
        let c = inventory::assemble(system, read, &explaining).classification;
        println!(
            "{stem}: {} ({}, confidence {}), vendor {:?}",
            c.kind, c.rule, c.confidence, c.vendor
        );
        for line in &c.evidence {
            println!("  - {line}");
        }
    }
    let mut per_device: Vec<Duration> = Vec::new();
    let mut classify_only: Vec<Duration> = Vec::new();
    let mut by_device: Vec<Vec<Duration>> = vec![Vec::new(); devices.len()];
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..rounds {
        for (at, (system, read)) in devices.iter().enumerate() {
            let (system, read) = (system.clone(), read.clone());
            let started = Instant::now();
            let inventory = inventory::assemble_with(system, read, |evidence| {
                let started = Instant::now();
                let classification = rules.classify(evidence);
                classify_only.push(started.elapsed());
                classification
            });
            per_device.push(started.elapsed());
            by_device[at].push(*classify_only.last().unwrap_or(&Duration::ZERO));
            if round == 0 {
                *kinds
                    .entry(inventory.classification.kind.to_string())
                    .or_default() += 1;
            }
        }
    }
    println!(
        "CPU per device, {} devices x {rounds} rounds",
        devices.len()
    );
    println!("| what | mean | median | p99 | worst |");
    println!("| --- | --- | --- | --- | --- |");
    for (what, times) in [
        (
            "Rules::classify (rules, evidence, vendor)",
            &mut classify_only,
        ),
        (
            "inventory::assemble (tables to inventory, classified)",
            &mut per_device,
        ),
    ] {
        times.sort();
        let n = times.len();
        let total: Duration = times.iter().sum();
        let at = |q: f64| times[((n as f64 * q) as usize).min(n - 1)];
        println!(
            "| {what} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            total.as_secs_f64() * 1e6 / n as f64,
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
            times[n - 1].as_secs_f64() * 1e6
        );
    }
    // The devices whose classification costs most (median of their
    // rounds): what to look at when the worst case grows.
    let mut medians: Vec<(Duration, &Path)> = by_device
        .iter_mut()
        .zip(&files)
        .map(|(times, file)| {
            times.sort();
            (times[times.len() / 2], file.as_path())
        })
        .collect();
    medians.sort();
    let slowest: Vec<String> = medians
        .iter()
        .rev()
        .take(5)
        .map(|(t, f)| {
            let stem = f.file_stem().unwrap_or_default().to_string_lossy();
            format!("{stem} {:.0} µs", t.as_secs_f64() * 1e6)
        })
        .collect();
    println!("slowest to classify (median): {}", slowest.join(", "));
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("kinds (first round): {}", kinds.join(", "));
}
