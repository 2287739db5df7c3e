//! Comparison benchmark (issue 8): cpe-agent against net-snmp, collectd and
//! prometheus-snmp-exporter on the same data in the same run. One command,
//! one table per measurement on stdout, and `target/bench/compare.json`.
//!
//! ```text
//! cargo bench --bench compare              # the full run (about 13 min; needs root)
//! cargo bench --bench compare -- --quick   # every part, small and short (CI, ~30 s)
//! COMPARE_ONLY=walk,sweep cargo bench --bench compare   # some sections only
//! COMPARE_SMAPS_OUT=/tmp/smaps COMPARE_ONLY=daemons …   # and keep the agent's
//!                                    # /proc/PID/smaps at the end of its window
//! ```
//!
//! Sections (docs/benchmarks.md says what each row measures and how):
//!
//! 1. **walk**: a net-snmp `snmpd` in a network namespace the bench creates,
//!    with 1000 `ifb` interfaces; the agent's poll walk of ifTable + ifXTable
//!    against `snmpbulkwalk -Cr50` / `-Cr25` and `snmpwalk`, all run inside
//!    that namespace (the bench re-executes itself there under
//!    `ip netns exec`). The namespace is deleted on exit and on panic.
//! 2. **sweep**: `cpe-agent discover` of 127.0.2.0/24 with the 26 real
//!    recordings live on 127.0.2.1–26 (snmpsimd, LAN mode).
//! 3. **daemons**: 10, 50 and 200 simulated devices (up to 1,000 with
//!    COMPARE_DEVICES, 250 a /24 from 127.0.2.x) (the real
//!    recordings and the project's, repeated, each copy with its own serial
//!    and MACs), polled every interval by the release `cpe-agent run`,
//!    collectd (snmp + mqtt plugins) and prometheus-snmp-exporter (scraped by
//!    the bench), one at a time, with a local mosquitto: VmHWM, RSS, CPU per
//!    poll cycle, messages published, cycle wall time.
//! 4. **publish**: a queue of health reports as an outage leaves it, drained
//!    by the agent's reporter into mosquitto (as benches/publish.rs).
//! 5. **sizes**: the `cpe-agent` binaries present per target.
//!
//! Nothing is asserted about timing; the targets of the issue are printed
//! with a verdict. A missing tool fails with the package to install.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "shared/backlog.rs"]
#[allow(dead_code)] // the queue's disk and index sizes are publish.rs's
mod backlog;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use cpe_agent::config::{Credential, Secret};
use cpe_agent::snmp::walk::{walk, StopReason, WalkOptions};
use cpe_agent::snmp::{Client, Oid, Timing};

use support::mosquitto::Mosquitto;
use support::snmpd::Snmpd;
use support::snmpsim::SnmpSim;
use support::{require_tool, ChildGuard};

/// The bench re-executes itself inside the namespace with this variable set.
const NETNS_CHILD_ENV: &str = "CPE_COMPARE_NETNS_CHILD";
/// Prefix of the namespaces this bench creates (`cpe-compare-<pid>`).
const NETNS_PREFIX: &str = "cpe-compare-";
/// The addresses reserved for this bench's simulated devices.
const LAN_PREFIX: &str = "127.0.2";

/// The k-th (0-based) simulated device's /24 and host: 250 a /24 from
/// 127.0.2.1, so that a fleet of 1,000 fits (127.0.2–127.0.5).
fn lan_place(k: usize) -> (String, u8) {
    let host = u8::try_from(1 + k % 250).unwrap_or(1);
    (format!("127.0.{}", 2 + k / 250), host)
}
const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
const AGENT_ID: &str = "bench-agent";
const MIB: f64 = 1024.0 * 1024.0;
/// Devices per snmpsimd process in the daemon section.
const SIM_CHUNK: usize = 50;

/// What a run does: the full run or the quick one.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    interfaces: usize,
    walk_runs: usize,
    sweep_runs: usize,
    device_counts: Vec<usize>,
    interval: Duration,
    /// The interval for more than 50 devices: one Python snmpsimd per 50
    /// devices on 2 cores cannot answer 200 devices' polls every 10 s.
    large_interval: Duration,
    cycles: u32,
    publish_records: u64,
    only: Option<Vec<String>>,
    /// Which daemons the daemon section runs (all three by default).
    daemons: Option<Vec<String>>,
}

impl Plan {
    fn from_env() -> Plan {
        let args: Vec<String> = std::env::args().collect();
        let quick = !args.iter().any(|a| a == "--bench")
            || args.iter().any(|a| a == "--quick")
            || std::env::var_os("COMPARE_BENCH_QUICK").is_some_and(|v| v != "0");
        let env_num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let mut plan = if quick {
            Plan {
                quick,
                interfaces: 100,
                walk_runs: 1,
                sweep_runs: 1,
                device_counts: vec![2, 4],
                interval: Duration::from_secs(2),
                large_interval: Duration::from_secs(2),
                cycles: 1,
                publish_records: 2_000,
                only: None,
                daemons: None,
            }
        } else {
            Plan {
                quick,
                interfaces: 1000,
                walk_runs: 5,
                sweep_runs: 3,
                device_counts: vec![10, 50, 200],
                interval: Duration::from_secs(10),
                large_interval: Duration::from_secs(30),
                cycles: 4,
                publish_records: 20_000,
                only: None,
                daemons: None,
            }
        };
        if let Some(s) = env_num("COMPARE_INTERVAL_S") {
            plan.interval = Duration::from_secs(s.max(1));
        }
        if let Some(s) = env_num("COMPARE_LARGE_INTERVAL_S") {
            plan.large_interval = Duration::from_secs(s.max(1));
        } else if let Some(s) = env_num("COMPARE_INTERVAL_S") {
            plan.large_interval = plan.large_interval.max(Duration::from_secs(s.max(1)));
        }
        if let Some(c) = env_num("COMPARE_CYCLES") {
            plan.cycles = c.max(1) as u32;
        }
        if let Some(n) = env_num("COMPARE_INTERFACES") {
            plan.interfaces = n.max(1) as usize;
        }
        if let Ok(counts) = std::env::var("COMPARE_DEVICES") {
            plan.device_counts = counts
                .split(',')
                .filter_map(|c| c.trim().parse().ok())
                .filter(|&c: &usize| (1..=1000).contains(&c))
                .collect();
            plan.device_counts.sort_unstable();
        }
        let list = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        };
        plan.only = list("COMPARE_ONLY");
        plan.daemons = list("COMPARE_DAEMONS");
        plan
    }

    fn runs_daemon(&self, daemon: &str) -> bool {
        self.daemons
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == daemon))
    }

    /// The plan for one device count: the interval it is polled at.
    fn for_count(&self, count: usize) -> Plan {
        let mut plan = self.clone();
        if count > 50 {
            plan.interval = self.large_interval;
        }
        plan
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn main() {
    if std::env::var_os(NETNS_CHILD_ENV).is_some() {
        netns_walk_child();
        return;
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    cpe_agent::logging::init(tracing::Level::WARN);
    // COMPARE_AGENT_BIN measures another build (the musl one the routers run).
    let agent_binary = std::env::var_os("COMPARE_AGENT_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_cpe-agent")),
        PathBuf::from,
    );
    println!(
        "comparison benchmark{}: cpe-agent {} ({}), {} CPU(s), load average {}",
        if plan.quick { " (--quick)" } else { "" },
        env!("CARGO_PKG_VERSION"),
        agent_binary.display(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut report = serde_json::Map::new();
    report.insert(
        "run".into(),
        json!({
            "quick": plan.quick,
            "started_unix_s": unix_now(),
            "agent_binary": agent_binary.display().to_string(),
            "agent_binary_profile": if agent_binary.components().any(|c| c.as_os_str() == "debug") { "debug" } else { "release" },
            "cpus": thread::available_parallelism().map_or(0, |n| n.get()),
            "loadavg": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "interval_s": plan.interval.as_secs_f64(),
            "cycles": plan.cycles,
        }),
    );

    let mut verdicts = Vec::new();
    if plan.runs("walk") {
        let walk = section_walk(&plan);
        verdicts.extend(walk_verdict(&plan, &walk));
        report.insert("walk".into(), walk);
    }
    // The sweep also learns each recording's serial, to give every copy of a
    // recording its own identity in the daemon section.
    let pool = DevicePool::new();
    if plan.runs("sweep") || plan.runs("daemons") {
        let sweep = section_sweep(&plan, &agent_binary, &pool);
        report.insert("sweep".into(), sweep);
    }
    if plan.runs("daemons") {
        let daemons = section_daemons(&plan, &agent_binary, &pool);
        verdicts.extend(daemon_verdicts(&plan, &daemons));
        report.insert("daemons".into(), daemons);
    }
    if plan.runs("publish") {
        report.insert("publish".into(), section_publish(&plan));
    }
    if plan.runs("sizes") {
        report.insert("binary_sizes".into(), section_sizes());
    }

    println!();
    println!(
        "targets (issue 8){}:",
        if plan.quick {
            " — quick run: small counts, not judged"
        } else {
            ""
        }
    );
    println!(
        "  {:<44} {:>24} {:>12} {:>8}",
        "target", "measured", "limit", "verdict"
    );
    for v in &verdicts {
        println!(
            "  {:<44} {:>24} {:>12} {:>8}",
            v["target"].as_str().unwrap_or(""),
            v["measured"].as_str().unwrap_or(""),
            v["limit"].as_str().unwrap_or(""),
            v["verdict"].as_str().unwrap_or("")
        );
    }
    report.insert("verdicts".into(), Json::Array(verdicts));
    report.insert(
        "total_s".into(),
        json!(round(started.elapsed().as_secs_f64(), 1)),
    );
    // The quick run (cargo test) never overwrites a full run's report.
    let out = target_dir().join("bench").join(if plan.quick {
        "compare-quick.json"
    } else {
        "compare.json"
    });
    fs::create_dir_all(out.parent().expect("a parent")).expect("create target/bench");
    if plan.only.is_some() {
        // A partial run updates its sections of the last report.
        if let Ok(Json::Object(mut previous)) =
            serde_json::from_str::<Json>(&fs::read_to_string(&out).unwrap_or_default())
        {
            let old_verdicts = previous.remove("verdicts");
            let judged: Vec<String> = report["verdicts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["target"].as_str().map(str::to_owned))
                .collect();
            let mut verdicts: Vec<Json> = old_verdicts
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter(|v| {
                    !v["target"]
                        .as_str()
                        .is_some_and(|t| judged.iter().any(|j| j == t))
                })
                .collect();
            verdicts.extend(report["verdicts"].as_array().cloned().unwrap_or_default());
            previous.extend(report);
            previous.insert("verdicts".into(), Json::Array(verdicts));
            report = previous;
        }
    }
    fs::write(
        &out,
        serde_json::to_string_pretty(&Json::Object(report)).expect("JSON"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    println!(
        "\nwrote {} in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 1. walk: snmpd with N ifb interfaces in a network namespace
// ---------------------------------------------------------------------------

fn section_walk(plan: &Plan) -> Json {
    require_root("the walk section creates a network namespace (ip netns)");
    require_tool("ip", "iproute2");
    require_tool("snmpd", "snmpd");
    require_tool("snmpbulkwalk", "snmp");
    NetNs::remove_stale();
    let created = Instant::now();
    let netns = NetNs::create(plan.interfaces);
    let setup_s = created.elapsed().as_secs_f64();
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(require_tool("ip", "iproute2"))
        .args(["netns", "exec", &netns.name])
        .arg(&exe)
        .env(NETNS_CHILD_ENV, "walk")
        .env("COMPARE_WALK_RUNS", plan.walk_runs.to_string())
        .env("COMPARE_EXPECT_IFACES", plan.interfaces.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the walk helper under ip netns exec");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the walk helper in {} failed ({}): {stdout}",
        netns.name,
        output.status
    );
    let result: Json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COMPARE-RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result from the walk helper: {stdout}"));
    drop(netns);

    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    let reference = |tool: &str| {
        rows.iter()
            .find(|r| r["tool"] == tool)
            .and_then(|r| r["oids_per_s"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let bulk50 = reference("snmpbulkwalk -Cr50");
    println!();
    println!(
        "walk: ifTable + ifXTable of net-snmp snmpd with {} ifb interfaces (ifNumber {}), in netns; median of {} run(s); namespace set-up {:.1} s",
        plan.interfaces,
        result["if_number"],
        plan.walk_runs,
        setup_s
    );
    println!(
        "  {:<40} {:>7} {:>9} {:>10} {:>9} {:>9} {:>13}",
        "tool", "OIDs", "wall s", "OIDs/s", "CPU s", "requests", "vs bulkwalk50"
    );
    for row in &rows {
        let per_s = row["oids_per_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {:<40} {:>7} {:>9.3} {:>10.0} {:>9.3} {:>9} {:>12.2}x",
            row["tool"].as_str().unwrap_or(""),
            row["oids"],
            row["wall_s"].as_f64().unwrap_or(f64::NAN),
            per_s,
            row["cpu_s"].as_f64().unwrap_or(f64::NAN),
            row["requests"]
                .as_u64()
                .map_or("-".into(), |r| r.to_string()),
            per_s / bulk50
        );
    }
    println!("  (vs bulkwalk50: OIDs/s relative to snmpbulkwalk -Cr50; above 1 is faster. CPU: the walker's own, not snmpd's)");
    json!({
        "interfaces": plan.interfaces,
        "if_number": result["if_number"],
        "runs": plan.walk_runs,
        "netns_setup_s": round(setup_s, 2),
        "rows": rows,
    })
}

fn walk_verdict(plan: &Plan, walk: &Json) -> Vec<Json> {
    let rows = walk["rows"].as_array().cloned().unwrap_or_default();
    let per_s = |tool: &str| {
        rows.iter()
            .find(|r| r["tool"] == tool)
            .and_then(|r| r["oids_per_s"].as_f64())
    };
    let (Some(ours), Some(bulk)) = (per_s(POLL_ROW), per_s("snmpbulkwalk -Cr50")) else {
        return Vec::new();
    };
    let ratio = ours / bulk;
    vec![json!({
        "target": "walk throughput vs snmpbulkwalk -Cr50",
        "measured": format!("{ratio:.2}x"),
        "value": round(ratio, 3),
        "limit": ">= 1.00x",
        "verdict": if plan.quick { "n/a".into() } else { pass(ratio >= 1.0) },
    })]
}

/// The agent's poll walk (reading::interfaces: ifEntry then ifXEntry, one
/// client, r25), without the poll's 10 000-value cap per walk.
const POLL_ROW: &str = "cpe-agent poll walk r25 (no cap)";

/// One walk: OIDs, wall seconds, CPU seconds, requests (ours only).
type Sample = (usize, f64, f64, Option<u32>);

/// Inside the namespace: start snmpd, walk, print one JSON line.
fn netns_walk_child() {
    let runs: usize = std::env::var("COMPARE_WALK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let snmpd = Snmpd::start();
    let addr = snmpd.addr();
    let community = snmpd.ro_community.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let if_number: u64 = support::net_snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            &community,
            "-On",
            "-Oqv",
            &addr.to_string(),
            ".1.3.6.1.2.1.2.1.0",
        ],
    )
    .parse()
    .unwrap_or(0);
    eprintln!("[compare] snmpd in the namespace on {addr}: ifNumber {if_number}");

    let ours = |max_repetitions: u32, use_bulk: bool, max_oids: usize| {
        let runtime = &runtime;
        let community = community.clone();
        move || -> (usize, Option<u32>) {
            let options = WalkOptions {
                max_repetitions,
                use_bulk,
                max_oids,
            };
            let credential = Credential {
                name: "bench".into(),
                community: Some(Secret::new(community.clone())),
                ..Credential::default_public()
            };
            runtime.block_on(async {
                // As reading::interfaces: one client, ifEntry then ifXEntry.
                let mut client = Client::new(
                    addr,
                    credential,
                    Timing {
                        timeout: Duration::from_secs(5),
                        retries: 1,
                    },
                );
                let mut oids = 0;
                let mut requests = 0;
                for entry in [&IF_ENTRY[..], &IFX_ENTRY[..]] {
                    let walked = walk(&mut client, &Oid::from_arcs(entry), &options)
                        .await
                        .unwrap_or_else(|e| panic!("walk of {entry:?}: {e}"));
                    // The poll's own cap (max_oids) may end it: counted as read.
                    assert!(
                        walked.is_complete() || walked.stopped == StopReason::Cap,
                        "{entry:?}: {:?}",
                        walked.stopped
                    );
                    oids += walked.varbinds.len();
                    requests += walked.requests;
                }
                (oids, Some(requests))
            })
        }
    };
    let tool = |name: &'static str, extra: &'static [&'static str]| {
        let community = community.clone();
        move || -> (usize, Option<u32>) {
            let agent = addr.to_string();
            let mut oids = 0;
            for root in [".1.3.6.1.2.1.2.2.1", ".1.3.6.1.2.1.31.1.1.1"] {
                let mut args = vec!["-v2c", "-c", &community, "-On", "-Ox", "-t", "5"];
                args.extend_from_slice(extra);
                args.extend([agent.as_str(), root]);
                let output = support::net_snmp(name, &args);
                assert!(
                    output.status.success(),
                    "{name} {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                oids += String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter(|l| l.starts_with('.') && !l.contains("= No more variables"))
                    .count();
            }
            (oids, None)
        }
    };
    type Job<'a> = Box<dyn Fn() -> (usize, Option<u32>) + 'a>;
    // (name, job, whether the work is in this process or in a child)
    let uncapped = usize::MAX;
    let plan: Vec<(&str, Job, bool)> = vec![
        (POLL_ROW, Box::new(ours(25, true, uncapped)), true),
        (
            "cpe-agent poll walk, default cap 10000",
            Box::new(ours(25, true, WalkOptions::default().max_oids)),
            true,
        ),
        (
            "cpe-agent walk r50",
            Box::new(ours(50, true, uncapped)),
            true,
        ),
        (
            "snmpbulkwalk -Cr50",
            Box::new(tool("snmpbulkwalk", &["-Cr50"])),
            false,
        ),
        (
            "snmpbulkwalk -Cr25",
            Box::new(tool("snmpbulkwalk", &["-Cr25"])),
            false,
        ),
        (
            "cpe-agent walk GETNEXT",
            Box::new(ours(25, false, uncapped)),
            true,
        ),
        ("snmpwalk (GETNEXT)", Box::new(tool("snmpwalk", &[])), false),
    ];
    // Untimed: snmpd fills its interface caches on a first walk.
    let _ = plan[3].1();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); plan.len()];
    // Round-robin, so a slow phase of the machine hits every row alike.
    for _ in 0..runs {
        for ((_, job, in_process), samples) in plan.iter().zip(&mut samples) {
            let cpu_before = if *in_process {
                thread_cpu_s()
            } else {
                children_cpu_s()
            };
            let start = Instant::now();
            let (oids, requests) = job();
            let wall = start.elapsed().as_secs_f64();
            let cpu = if *in_process {
                thread_cpu_s()
            } else {
                children_cpu_s()
            } - cpu_before;
            samples.push((oids, wall, cpu, requests));
        }
    }
    let rows: Vec<Json> = plan
        .iter()
        .zip(samples)
        .map(|((name, _, _), mut samples)| {
            samples.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (oids, wall, cpu, requests) = samples[samples.len() / 2];
            json!({
                "tool": name,
                "oids": oids,
                "wall_s": round(wall, 4),
                "oids_per_s": round(oids as f64 / wall, 1),
                "cpu_s": round(cpu, 4),
                "requests": requests,
                "wall_s_all": samples.iter().map(|s| round(s.1, 4)).collect::<Vec<_>>(),
            })
        })
        .collect();
    drop(snmpd);
    println!(
        "COMPARE-RESULT {}",
        json!({ "if_number": if_number, "rows": rows })
    );
}

/// A network namespace with `ifb` interfaces; deleted (its processes
/// stopped first) when dropped, including while a panic unwinds.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create(interfaces: usize) -> NetNs {
        let name = format!("{NETNS_PREFIX}{}", std::process::id());
        ip(&["netns", "add", &name]);
        let netns = NetNs { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        let scratch = support::temp_dir("compare-netns");
        let batch = scratch.path().join("ifb.batch");
        let mut lines = String::new();
        for i in 0..interfaces {
            let _ = writeln!(lines, "link add ifb{i} type ifb");
            let _ = writeln!(lines, "link set ifb{i} up");
        }
        fs::write(&batch, lines).expect("write the ip batch file");
        ip(&["-n", &netns.name, "-batch", &batch.display().to_string()]);
        netns
    }

    /// Namespaces left by an earlier run of this bench that was killed
    /// (SIGKILL, Ctrl-C) before it could clean up: its pid is gone.
    fn remove_stale() {
        let output = Command::new("ip").args(["netns", "list"]).output();
        let Ok(output) = output else { return };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(pid) = name.strip_prefix(NETNS_PREFIX) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                eprintln!("[compare] removing stale namespace {name}");
                drop(NetNs {
                    name: name.to_owned(),
                });
            }
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let pids = || -> Vec<i32> {
            Command::new("ip")
                .args(["netns", "pids", &self.name])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        for signal in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGKILL,
        ] {
            let left = pids();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while !pids().is_empty() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "[compare] could not delete namespace {}: run `ip netns del {}`",
                self.name, self.name
            );
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new(require_tool("ip", "iproute2"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// 2. sweep, and the device pool for the daemon section
// ---------------------------------------------------------------------------

/// The recordings the daemon section repeats, and what the sweep learnt of
/// each (its serial number, when it reports one).
struct DevicePool {
    recordings: Vec<PathBuf>,
    serials: Mutex<BTreeMap<PathBuf, Option<String>>>,
}

impl DevicePool {
    fn new() -> DevicePool {
        let shared = support::shared_devices_dir()
            .map(|d| support::snmprec_files(&d))
            .unwrap_or_default();
        let project = support::snmprec_files(&support::project_data_dir());
        DevicePool {
            recordings: shared.into_iter().chain(project).collect(),
            serials: Mutex::new(BTreeMap::new()),
        }
    }

    fn shared(&self) -> Vec<PathBuf> {
        let project = support::project_data_dir();
        let shared: Vec<PathBuf> = self
            .recordings
            .iter()
            .filter(|p| !p.starts_with(&project))
            .cloned()
            .collect();
        if shared.is_empty() {
            // Without ../shared/devices, the project's recordings stand in.
            self.recordings.clone()
        } else {
            shared
        }
    }

    fn learn(&self, recordings: &[PathBuf], devices: &[Json]) {
        let mut serials = self.serials.lock().expect("serials");
        for (k, recording) in recordings.iter().enumerate() {
            let (prefix, host) = lan_place(k);
            let address = format!("{prefix}.{host}");
            let serial = devices
                .iter()
                .find(|d| d["address"] == address.as_str())
                // Device flattens its inventory and classification.
                .and_then(|d| d["serial"].as_str())
                .map(str::to_owned);
            serials.insert(recording.clone(), serial);
        }
    }

    fn unknown(&self) -> Vec<PathBuf> {
        let serials = self.serials.lock().expect("serials");
        self.recordings
            .iter()
            .filter(|r| !serials.contains_key(*r))
            .cloned()
            .collect()
    }

    /// `count` recordings: the pool repeated, copy c > 0 of a recording
    /// rewritten in `dir` with its own serial and MAC addresses.
    fn devices(&self, count: usize, dir: &Path) -> Vec<PathBuf> {
        let serials = self.serials.lock().expect("serials");
        (0..count)
            .map(|i| {
                let recording = &self.recordings[i % self.recordings.len()];
                let copy = i / self.recordings.len();
                if copy == 0 {
                    return recording.clone();
                }
                let serial = serials.get(recording).cloned().flatten();
                let text = fs::read_to_string(recording)
                    .unwrap_or_else(|e| panic!("read {}: {e}", recording.display()));
                let path = dir.join(format!("copy{copy}-{i}.snmprec"));
                fs::write(&path, uniquify(&text, serial.as_deref(), copy))
                    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
                path
            })
            .collect()
    }
}

/// Copy `copy` of a recording: the serial's last digits replaced by the copy
/// number (in plain and hex-encoded strings), and every 6-byte hex string (a
/// MAC) changed in its 4th and 5th bytes, so the agent sees a new device.
fn uniquify(text: &str, serial: Option<&str>, copy: usize) -> String {
    let new_serial = serial.filter(|s| s.len() >= 3).map(|s| {
        let keep = s.len() - 3;
        let mut tag = format!("{:03}", copy % 1000);
        if s.ends_with(&tag) {
            tag = format!("{:03}", (copy + 500) % 1000);
        }
        format!("{}{tag}", &s[..keep])
    });
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let mut parts = line.splitn(3, '|');
        let (Some(oid), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let mut value = value.to_owned();
        if let (Some(old), Some(new)) = (serial, new_serial.as_deref()) {
            if tag == "4" {
                value = value.replace(old, new);
            } else if tag == "4x" {
                value = value.to_ascii_lowercase().replace(&hex(old), &hex(new));
            }
        }
        if tag == "4x" && value.len() == 12 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes: Vec<u8> = (0..6)
                .map(|i| u8::from_str_radix(&value[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            bytes[3] ^= ((copy >> 8) & 0xff) as u8;
            bytes[4] ^= (copy & 0xff) as u8;
            value = bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
        let _ = writeln!(out, "{oid}|{tag}|{value}");
    }
    out
}

fn section_sweep(plan: &Plan, agent: &Path, pool: &DevicePool) -> Json {
    let recordings = pool.shared();
    let sim = SnmpSim::start_lan(&recordings, LAN_PREFIX, 1);
    let target = format!("{LAN_PREFIX}.0/24:{}", sim.port());
    let mut samples = Vec::new();
    let mut devices = Vec::new();
    for _ in 0..plan.sweep_runs {
        let (output, wall, cpu) = timed_child(
            Command::new(agent).args(["discover", "--target", &target, "--json", "-q"]),
        );
        assert!(
            output.status.success(),
            "cpe-agent discover failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        devices = serde_json::from_slice::<Vec<Json>>(&output.stdout)
            .unwrap_or_else(|e| panic!("discover --json output: {e}"));
        samples.push((wall, cpu, devices.len()));
    }
    pool.learn(&recordings, &devices);
    drop(sim);
    // The project's recordings too (not part of the timed /24).
    let rest = pool.unknown();
    if !rest.is_empty() {
        let sim = SnmpSim::start_lan(&rest, LAN_PREFIX, 1);
        let target = format!("{LAN_PREFIX}.1-{}:{}", rest.len(), sim.port());
        let (output, _, _) = timed_child(
            Command::new(agent).args(["discover", "--target", &target, "--json", "-q"]),
        );
        let found: Vec<Json> = serde_json::from_slice(&output.stdout).unwrap_or_default();
        pool.learn(&rest, &found);
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, cpu, found) = samples[samples.len() / 2];
    println!();
    println!(
        "discovery sweep: cpe-agent discover of {LAN_PREFIX}.0/24 (254 addresses), {} live (snmpsimd), median of {} run(s)",
        recordings.len(),
        samples.len()
    );
    println!(
        "  {:<40} {:>7} {:>9} {:>9} {:>12}",
        "tool", "found", "wall s", "CPU s", "addresses/s"
    );
    println!(
        "  {:<40} {:>7} {:>9.2} {:>9.3} {:>12.0}",
        "cpe-agent discover (process)",
        found,
        wall,
        cpu,
        254.0 / wall
    );
    json!({
        "addresses": 254,
        "live": recordings.len(),
        "found": found,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "wall_s_all": samples.iter().map(|s| round(s.0, 3)).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// 3. daemons: cpe-agent, collectd, prometheus-snmp-exporter
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Window {
    daemon: &'static str,
    devices: usize,
    interval_s: f64,
    hwm_kb: u64,
    rss_kb: u64,
    /// The part of VmRSS that is file pages (the binary and its libraries,
    /// shared with the page cache).
    rss_file_kb: u64,
    /// Open file descriptors at the end of the window.
    fds: usize,
    cpu_per_cycle_s: f64,
    messages_per_cycle: f64,
    health_per_cycle: f64,
    cycle_wall_s: Option<f64>,
    distinct_devices: Option<usize>,
    startup_cpu_s: f64,
    note: String,
}

impl Window {
    fn json(&self) -> Json {
        json!({
            "daemon": self.daemon,
            "devices": self.devices,
            "interval_s": self.interval_s,
            "vmhwm_kb": self.hwm_kb,
            "vmrss_kb": self.rss_kb,
            "rss_file_kb": self.rss_file_kb,
            "open_fds": self.fds,
            "cpu_per_cycle_ms": round(self.cpu_per_cycle_s * 1000.0, 2),
            "messages_per_cycle": round(self.messages_per_cycle, 1),
            "health_messages_per_cycle": round(self.health_per_cycle, 1),
            "cycle_wall_s": self.cycle_wall_s.map(|s| round(s, 3)),
            "distinct_devices": self.distinct_devices,
            "startup_cpu_s": round(self.startup_cpu_s, 3),
            "note": self.note,
        })
    }
}

fn section_daemons(plan: &Plan, agent: &Path, pool: &DevicePool) -> Json {
    let collectd = require_tool("collectd", "collectd-core");
    let exporter = require_tool("prometheus-snmp-exporter", "prometheus-snmp-exporter");
    require_tool("mosquitto_sub", "mosquitto-clients");
    let max = *plan.device_counts.iter().max().expect("device counts");
    let copies = support::temp_dir("compare-recordings");
    let recordings = pool.devices(max, copies.path());
    let sim_started = Instant::now();
    // One snmpsimd (single-threaded Python) per SIM_CHUNK devices, each on
    // its own port, so the simulator can use every core.
    let sims: Vec<SnmpSim> = recordings
        .chunks(SIM_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let (prefix, first) = lan_place(i * SIM_CHUNK);
            SnmpSim::start_lan(chunk, &prefix, first)
        })
        .collect();
    let all: Vec<SocketAddr> = sims
        .iter()
        .flat_map(|s| s.devices().iter().map(|d| d.addr))
        .collect();
    eprintln!(
        "[compare] {max} simulated devices up in {:.1} s ({} snmpsimd)",
        sim_started.elapsed().as_secs_f64(),
        sims.len()
    );
    let identities = check_identities(agent, &all, &recordings);
    let broker = Mosquitto::start();
    let mut windows = Vec::new();
    for &count in &plan.device_counts {
        let plan = plan.for_count(count);
        let addrs = &all[..count];
        let before = windows.len();
        if plan.runs_daemon("agent") {
            windows.push(run_agent(&plan, agent, &broker, addrs));
        }
        if plan.runs_daemon("collectd") {
            windows.push(run_collectd(&plan, &collectd, &broker, addrs));
        }
        if plan.runs_daemon("exporter") {
            windows.push(run_exporter(&plan, &exporter, addrs));
        }
        print_daemon_rows(&plan, &windows[before..]);
    }
    drop(broker);
    drop(sims);
    let agent_rows: Vec<&Window> = windows.iter().filter(|w| w.daemon == "cpe-agent").collect();
    println!();
    println!(
        "poll cycle (cpe-agent): wall = first to last health report of a cycle, at the subscriber"
    );
    println!(
        "  {:<10} {:>10} {:>10} {:>12} {:>14} {:>14} {:>10}",
        "devices", "interval s", "wall s", "CPU ms", "health msgs", "all msgs", "distinct"
    );
    for w in &agent_rows {
        println!(
            "  {:<10} {:>10} {:>10} {:>12.1} {:>14.1} {:>14.1} {:>10}",
            w.devices,
            w.interval_s,
            w.cycle_wall_s.map_or("-".into(), |s| format!("{s:.3}")),
            w.cpu_per_cycle_s * 1000.0,
            w.health_per_cycle,
            w.messages_per_cycle,
            w.distinct_devices.map_or("-".into(), |d| d.to_string())
        );
    }
    json!({
        "interval_s": plan.interval.as_secs_f64(),
        "large_interval_s": plan.large_interval.as_secs_f64(),
        "cycles": plan.cycles,
        "simulator": format!("snmpsimd (LAN mode), one process per {SIM_CHUNK} devices"),
        "identities": identities,
        "windows": windows.iter().map(Window::json).collect::<Vec<_>>(),
    })
}

fn print_daemon_rows(plan: &Plan, rows: &[Window]) {
    let Some(first) = rows.first() else { return };
    println!();
    println!(
        "daemons monitoring {} device(s), polling every {} s, {} cycle(s) measured after the first:",
        first.devices,
        plan.interval.as_secs(),
        plan.cycles
    );
    println!(
        "  {:<26} {:>10} {:>10} {:>9} {:>6} {:>12} {:>10} {:>12} {:>9}  note",
        "daemon",
        "VmHWM MiB",
        "VmRSS MiB",
        "file MiB",
        "fds",
        "CPU/cycle ms",
        "msgs/cycle",
        "cycle wall s",
        "vs agent"
    );
    let agent_cpu = rows
        .iter()
        .find(|w| w.daemon == "cpe-agent")
        .map_or(f64::NAN, |w| w.cpu_per_cycle_s);
    for w in rows {
        println!(
            "  {:<26} {:>10.2} {:>10.2} {:>9.2} {:>6} {:>12.1} {:>10.1} {:>12} {:>8.2}x  {}",
            w.daemon,
            w.hwm_kb as f64 / 1024.0,
            w.rss_kb as f64 / 1024.0,
            w.rss_file_kb as f64 / 1024.0,
            w.fds,
            w.cpu_per_cycle_s * 1000.0,
            w.messages_per_cycle,
            w.cycle_wall_s.map_or("-".into(), |s| format!("{s:.3}")),
            w.cpu_per_cycle_s / agent_cpu,
            w.note
        );
    }
}

/// The subscriber: `mosquitto_sub` writing "unix-time topic" lines to a file.
struct Sub {
    _child: ChildGuard,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sub {
    fn start(broker: &Mosquitto, filter: &str) -> Sub {
        let dir = support::temp_dir("compare-sub");
        let path = dir.path().join("messages.txt");
        let probe = format!("bench-probe/{}", std::process::id());
        let mut command = Command::new(require_tool("mosquitto_sub", "mosquitto-clients"));
        command
            .args(broker.client_args())
            .args(["-q", "1", "-t", filter, "-t", &probe, "-F", "%U %t"]);
        let child = ChildGuard::spawn("mosquitto_sub", &mut command, &path);
        let sub = Sub {
            _child: child,
            path,
            _dir: dir,
        };
        support::wait_until(Duration::from_secs(15), "the subscriber to be live", || {
            broker.publish(&probe, "probe", false);
            // lines() leaves the probes out: look at the raw file.
            fs::read_to_string(&sub.path)
                .unwrap_or_default()
                .lines()
                .any(|l| l.ends_with(&probe))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        sub
    }

    fn lines(&self) -> Vec<(f64, String)> {
        fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, topic) = l.split_once(' ')?;
                Some((t.parse().ok()?, topic.to_owned()))
            })
            .filter(|(_, t): &(f64, String)| !t.starts_with("bench-probe/"))
            .collect()
    }
}

/// One sweep of all simulated devices: every copy must be a device of its
/// own (distinct id), or the daemons would monitor fewer devices than asked.
fn check_identities(agent: &Path, devices: &[SocketAddr], recordings: &[PathBuf]) -> Json {
    let mut command = Command::new(agent);
    command.arg("discover");
    for target in target_ranges(devices) {
        command.args(["--target", &target]);
    }
    let (output, wall, _) = timed_child(command.args(["--json", "-q"]));
    let found: Vec<Json> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for device in &found {
        let address = device["address"].as_str().unwrap_or("?").to_owned();
        let host: usize = address
            .rsplit('.')
            .next()
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        let name = recordings
            .get(host.wrapping_sub(1))
            .and_then(|r| r.file_name())
            .map_or(address.clone(), |n| n.to_string_lossy().into_owned());
        by_id
            .entry(device["id"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(format!("{address} ({name})"));
    }
    let collisions: Vec<String> = by_id
        .iter()
        .filter(|(_, addrs)| addrs.len() > 1)
        .map(|(id, addrs)| format!("{id}: {}", addrs.join(", ")))
        .collect();
    eprintln!(
        "[compare] identity check: {} device(s) answered, {} distinct id(s), in {wall:.1} s",
        found.len(),
        by_id.len()
    );
    for c in &collisions {
        eprintln!("[compare]   same id: {c}");
    }
    json!({
        "devices": devices.len(),
        "answered": found.len(),
        "distinct_ids": by_id.len(),
        "collisions": collisions,
    })
}

/// Target specs (`A-B:PORT`) covering `devices`: consecutive addresses on
/// one port make one range.
fn target_ranges(devices: &[SocketAddr]) -> Vec<String> {
    let mut ranges: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for &addr in devices {
        match ranges.last_mut() {
            Some((_, last)) if last.port() == addr.port() => *last = addr,
            _ => ranges.push((addr, addr)),
        }
    }
    ranges
        .iter()
        .map(|(a, b)| format!("{}-{}:{}", a.ip(), b.ip(), a.port()))
        .collect()
}

/// Samples a daemon: start-up, one warm-up cycle, then `plan.cycles` cycles.
/// VmRSS at the end of a window, and how much of it is file pages.
struct Resident {
    total_kb: u64,
    file_kb: u64,
    fds: usize,
}

fn measure_window(
    plan: &Plan,
    child: &mut ChildGuard,
    log: &Path,
    mut warmed_up: impl FnMut() -> bool,
    mut tick: impl FnMut(),
) -> (f64, f64, u64, Resident, f64, f64) {
    let deadline = plan.interval * 3 + Duration::from_secs(90);
    let name = child.name().to_owned();
    let pid = child.pid().expect("a running daemon");
    support::wait_for_child(
        child,
        deadline,
        &format!("{name}'s first poll cycle"),
        || {
            tick();
            warmed_up()
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- output ---\n{}\n--- {} ---\n{}",
            child.output(),
            log.display(),
            support::log_tail(log, 4096)
        )
    });
    let startup_cpu = process_cpu_s(pid);
    let t0 = Instant::now();
    let wall0 = unix_now();
    let window = plan.interval * plan.cycles;
    while t0.elapsed() < window {
        tick();
        thread::sleep(Duration::from_millis(20));
    }
    let cpu = process_cpu_s(pid) - startup_cpu;
    if let Some(out) = std::env::var_os("COMPARE_SMAPS_OUT") {
        // Where the resident set is (the binary's pages, heap, libraries).
        if let Err(e) = std::fs::copy(format!("/proc/{pid}/smaps"), &out) {
            eprintln!("COMPARE_SMAPS_OUT: {e}");
        }
    }
    let hwm = status_kb(pid, "VmHWM");
    let rss = Resident {
        total_kb: status_kb(pid, "VmRSS"),
        file_kb: status_kb(pid, "RssFile"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
    };
    (startup_cpu, cpu, hwm, rss, wall0, unix_now())
}

fn run_agent(plan: &Plan, agent: &Path, broker: &Mosquitto, addrs: &[SocketAddr]) -> Window {
    let count = addrs.len();
    let dir = support::temp_dir("compare-agent");
    let targets = target_ranges(addrs)
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "[agent]\nid = \"{AGENT_ID}\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
         [discovery]\ninterval = \"1h\"\nlan_subnets = false\nmax_devices = 2000\n\
         targets = [{targets}]\nconcurrency = 32\ntimeout = \"1s\"\nretries = 1\n\n\
         [[credentials]]\nname = \"lan-public\"\nversion = \"v2c\"\ncommunity = \"public\"\n\n\
         [polling]\ninterval = \"{interval}s\"\ntimeout = \"2s\"\nretries = 1\n\n\
         [storage]\nstate_dir = \"{state}\"\n",
        port = broker.port(),
        interval = plan.interval.as_secs(),
        state = dir.path().join("state").display(),
    );
    let config_path = dir.path().join("agent.toml");
    fs::write(&config_path, config).expect("write agent.toml");
    let sub = Sub::start(broker, &format!("cpe/v1/{AGENT_ID}/#"));
    let mut command = Command::new(agent);
    command
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("-q");
    let mut child = ChildGuard::spawn("cpe-agent", &mut command, &dir.path().join("agent.log"));
    let health = |lines: &[(f64, String)]| -> Vec<(f64, String)> {
        lines
            .iter()
            .filter(|(_, t)| t.ends_with("/health") && t.contains("/devices/"))
            .cloned()
            .collect()
    };
    let agent_log = dir.path().join("agent.log");
    let (startup_cpu, cpu, hwm, rss, from, to) = measure_window(
        plan,
        &mut child,
        &agent_log,
        || health(&sub.lines()).len() >= count,
        || {},
    );
    assert!(
        child.exit_status().is_none(),
        "cpe-agent exited:\n{}",
        child.output()
    );
    child.stop();
    let lines = sub.lines();
    let in_window = |t: f64| t >= from && t < to;
    let all = lines.iter().filter(|(t, _)| in_window(*t)).count();
    let health_all = health(&lines);
    let health_window: Vec<f64> = health_all
        .iter()
        .filter(|(t, _)| in_window(*t))
        .map(|(t, _)| *t)
        .collect();
    let distinct = health_all
        .iter()
        .map(|(_, topic)| topic.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let cycles = f64::from(plan.cycles);
    let wall = cycle_spread(&health_all, count);
    Window {
        daemon: "cpe-agent",
        devices: count,
        interval_s: plan.interval.as_secs_f64(),
        hwm_kb: hwm,
        rss_kb: rss.total_kb,
        rss_file_kb: rss.file_kb,
        fds: rss.fds,
        cpu_per_cycle_s: cpu / cycles,
        messages_per_cycle: all as f64 / cycles,
        health_per_cycle: health_window.len() as f64 / cycles,
        cycle_wall_s: wall,
        distinct_devices: Some(distinct),
        startup_cpu_s: startup_cpu,
        note: if distinct < count {
            format!("only {distinct} distinct device ids")
        } else {
            "QoS 1, disk queue".into()
        },
    }
}

/// The median over cycles of the time from the first to the last report of
/// a cycle: each device's k-th report belongs to cycle k (all devices' polls
/// start together), counted over the cycles every device reported in.
fn cycle_spread(reports: &[(f64, String)], count: usize) -> Option<f64> {
    let mut by_device: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (t, device) in reports {
        by_device.entry(device).or_default().push(*t);
    }
    if by_device.len() < count {
        return None;
    }
    for times in by_device.values_mut() {
        times.sort_by(f64::total_cmp);
    }
    let cycles = by_device.values().map(Vec::len).min()?;
    let mut spreads: Vec<f64> = (0..cycles)
        .map(|k| {
            let ts = by_device.values().map(|times| times[k]);
            ts.clone().fold(f64::MIN, f64::max) - ts.fold(f64::MAX, f64::min)
        })
        .collect();
    spreads.sort_by(f64::total_cmp);
    spreads.get(spreads.len() / 2).copied()
}

fn run_collectd(plan: &Plan, binary: &Path, broker: &Mosquitto, addrs: &[SocketAddr]) -> Window {
    let count = addrs.len();
    let dir = support::temp_dir("compare-collectd");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare");
    let read = |name: &str| {
        fs::read_to_string(templates.join(name))
            .unwrap_or_else(|e| panic!("read benches/compare/{name}: {e}"))
    };
    let interval = plan.interval.as_secs().to_string();
    let host_template = read("collectd-host.conf.in");
    let hosts: String = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            host_template
                .replace("@NAME@", &format!("dev{:03}", i + 1))
                .replace("@ADDRESS@", &addr.to_string())
                .replace("@INTERVAL@", &interval)
        })
        .collect();
    let config = read("collectd.conf.in")
        .replace("@DIR@", &dir.path().display().to_string())
        .replace("@INTERVAL@", &interval)
        .replace("@MQTT_PORT@", &broker.port().to_string())
        .replace("@HOSTS@", &hosts);
    let config_path = dir.path().join("collectd.conf");
    fs::write(&config_path, config).expect("write collectd.conf");
    let sub = Sub::start(broker, "collectd/#");
    let mut command = Command::new(binary);
    command.arg("-f").arg("-C").arg(&config_path);
    let mut child = ChildGuard::spawn("collectd", &mut command, &dir.path().join("collectd.out"));
    let collectd_log = dir.path().join("collectd.log");
    let uptime_topic = |t: &str| t.ends_with("/uptime");
    let (startup_cpu, cpu, hwm, rss, from, to) = measure_window(
        plan,
        &mut child,
        &collectd_log,
        || sub.lines().iter().filter(|(_, t)| uptime_topic(t)).count() >= count,
        || {},
    );
    let alive = child.exit_status().is_none();
    child.stop();
    assert!(
        alive,
        "collectd exited:\n{}\n{}",
        child.output(),
        support::log_tail(&dir.path().join("collectd.log"), 4096)
    );
    let lines = sub.lines();
    let in_window: Vec<&(f64, String)> = lines
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect();
    let uptimes: Vec<(f64, String)> = lines
        .iter()
        .filter(|(_, t)| uptime_topic(t))
        .cloned()
        .collect();
    let distinct = lines
        .iter()
        .filter(|(_, t)| uptime_topic(t))
        .map(|(_, t)| t.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let cycles = f64::from(plan.cycles);
    let errors = support::log_tail(&dir.path().join("collectd.log"), 100_000)
        .lines()
        .filter(|l| l.contains("[error]"))
        .count();
    Window {
        daemon: "collectd 5.12 (snmp+mqtt)",
        devices: count,
        interval_s: plan.interval.as_secs_f64(),
        hwm_kb: hwm,
        rss_kb: rss.total_kb,
        rss_file_kb: rss.file_kb,
        fds: rss.fds,
        cpu_per_cycle_s: cpu / cycles,
        messages_per_cycle: in_window.len() as f64 / cycles,
        health_per_cycle: in_window.iter().filter(|(_, t)| uptime_topic(t)).count() as f64 / cycles,
        cycle_wall_s: cycle_spread(&uptimes, count),
        distinct_devices: Some(distinct),
        startup_cpu_s: startup_cpu,
        note: format!("QoS 1, one msg per value; {errors} log errors"),
    }
}

fn run_exporter(plan: &Plan, binary: &Path, addrs: &[SocketAddr]) -> Window {
    let count = addrs.len();
    let dir = support::temp_dir("compare-exporter");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/snmp_exporter.yml");
    let port = support::free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--log.level=warn");
    let mut child = ChildGuard::spawn(
        "prometheus-snmp-exporter",
        &mut command,
        &dir.path().join("exporter.log"),
    );
    let exporter_log = dir.path().join("exporter.log");
    support::wait_for_child(
        &mut child,
        Duration::from_secs(30),
        "snmp_exporter to listen",
        || TcpStream::connect(&listen).is_ok(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The scraper: every interval, every device, 8 at a time (its own CPU is
    // not counted: it stands in for Prometheus).
    let rounds: Rounds = Arc::default();
    let mut next_round = Instant::now();
    let scrape_round = |rounds: &Rounds| {
        let start_unix = unix_now();
        let start = Instant::now();
        let next = AtomicUsize::new(0);
        let samples = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..count.min(8) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(addr) = addrs.get(i) else { break };
                    match scrape(&listen, *addr) {
                        Some(n) => samples.fetch_add(n, Ordering::Relaxed),
                        None => failures.fetch_add(1, Ordering::Relaxed),
                    };
                });
            }
        });
        rounds.lock().expect("rounds").push((
            start_unix,
            start.elapsed().as_secs_f64(),
            samples.into_inner(),
            failures.into_inner(),
        ));
    };
    let (startup_cpu, cpu, hwm, rss, from, _) = measure_window(
        plan,
        &mut child,
        &exporter_log,
        || !rounds.lock().expect("rounds").is_empty(),
        || {
            if Instant::now() >= next_round {
                next_round += plan.interval;
                scrape_round(&rounds);
            }
        },
    );
    child.stop();
    let rounds = rounds.lock().expect("rounds").clone();
    let measured: Vec<&(f64, f64, usize, usize)> =
        rounds.iter().filter(|r| r.0 >= from - 0.5).collect();
    let mut walls: Vec<f64> = measured.iter().map(|r| r.1).collect();
    walls.sort_by(f64::total_cmp);
    let failures: usize = rounds.iter().map(|r| r.3).sum();
    let samples_per_round =
        measured.iter().map(|r| r.2).sum::<usize>() as f64 / measured.len().max(1) as f64;
    Window {
        daemon: "prometheus-snmp-exporter 0.21",
        devices: count,
        interval_s: plan.interval.as_secs_f64(),
        hwm_kb: hwm,
        rss_kb: rss.total_kb,
        rss_file_kb: rss.file_kb,
        fds: rss.fds,
        cpu_per_cycle_s: cpu / measured.len().max(1) as f64,
        messages_per_cycle: count as f64,
        health_per_cycle: count as f64,
        cycle_wall_s: walls.get(walls.len() / 2).copied(),
        distinct_devices: None,
        startup_cpu_s: startup_cpu,
        note: format!(
            "{} rounds; scrapes (not MQTT), {samples_per_round:.0} samples/round, {failures} failed",
            measured.len()
        ),
    }
}

/// Scrape rounds: unix start, wall seconds, samples, failed scrapes.
type Rounds = Arc<Mutex<Vec<(f64, f64, usize, usize)>>>;

/// One scrape: the number of samples, or None on failure.
fn scrape(listen: &str, target: SocketAddr) -> Option<usize> {
    let mut stream = TcpStream::connect(listen).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET /snmp?target={target}&module=cpe_poll HTTP/1.0\r\nHost: {listen}\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    if !body.starts_with("HTTP/1.0 200") && !body.starts_with("HTTP/1.1 200") {
        return None;
    }
    let samples = body
        .split("\r\n\r\n")
        .nth(1)?
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    Some(samples)
}

fn daemon_verdicts(plan: &Plan, daemons: &Json) -> Vec<Json> {
    let windows = daemons["windows"].as_array().cloned().unwrap_or_default();
    let get = |daemon: &str, devices: usize| {
        windows
            .iter()
            .find(|w| {
                w["daemon"].as_str().is_some_and(|d| d.starts_with(daemon))
                    && w["devices"] == devices
            })
            .cloned()
    };
    let mut verdicts = Vec::new();
    let counts = &plan.device_counts;
    // The issue's points are 50 and 200; the quick run judges its own counts.
    let (mid, top) = if counts.contains(&50) && counts.contains(&200) {
        (50, 200)
    } else {
        (
            counts[counts.len().saturating_sub(2)],
            counts[counts.len() - 1],
        )
    };
    let judge = |ok: bool| {
        if plan.quick {
            "n/a".to_owned()
        } else {
            pass(ok)
        }
    };
    if let Some(w) = get("cpe-agent", mid) {
        let mib = w["vmhwm_kb"].as_f64().unwrap_or(f64::NAN) * 1024.0 / MIB;
        verdicts.push(json!({
            "target": format!("agent VmHWM at {mid} devices"),
            "measured": format!("{mib:.2} MiB"),
            "value": round(mib, 3),
            "limit": "<= 10 MiB",
            // The budget is at 50 devices; another count is shown, not judged.
            "verdict": if mid == 50 { judge(mib <= 10.0) } else { "n/a".to_owned() },
        }));
    }
    if let (Some(a), Some(b)) = (get("cpe-agent", mid), get("cpe-agent", top)) {
        if top > mid {
            let per = (b["vmhwm_kb"].as_f64().unwrap_or(f64::NAN)
                - a["vmhwm_kb"].as_f64().unwrap_or(f64::NAN))
                / (top - mid) as f64;
            verdicts.push(json!({
                "target": format!("agent VmHWM growth {mid}->{top} devices"),
                "measured": format!("{per:.1} KiB/device"),
                "value": round(per, 2),
                "limit": "< 50 KiB",
                "verdict": judge(per < 50.0),
            }));
        }
    }
    for &count in counts {
        if plan.quick || count == mid || count == top {
            if let (Some(a), Some(c)) = (get("cpe-agent", count), get("collectd", count)) {
                let ours = a["cpu_per_cycle_ms"].as_f64().unwrap_or(f64::NAN);
                let theirs = c["cpu_per_cycle_ms"].as_f64().unwrap_or(f64::NAN);
                verdicts.push(json!({
                    "target": format!("CPU per cycle at {count} devices vs collectd"),
                    "measured": format!("{ours:.1} vs {theirs:.1} ms"),
                    "value": round(ours / theirs, 3),
                    "limit": "< collectd",
                    "verdict": judge(ours < theirs),
                }));
            }
        }
    }
    verdicts
}

// ---------------------------------------------------------------------------
// 4. publish throughput and queue drain (as benches/publish.rs)
// ---------------------------------------------------------------------------

fn section_publish(plan: &Plan) -> Json {
    let records = plan.publish_records;
    let broker = Mosquitto::start();
    let dir = support::temp_dir("compare-publish");
    let backlog = backlog::fill(AGENT_ID, broker.port(), dir.path(), records);
    let (payload_bytes, fill_s) = (backlog.payload_bytes, backlog.fill_time.as_secs_f64());
    let cpu_before = thread_cpu_s();
    let drain = backlog::drain(backlog).as_secs_f64();
    let cpu = thread_cpu_s() - cpu_before;
    let per_s = records as f64 / drain;
    let mean = payload_bytes as f64 / records as f64;
    println!();
    println!(
        "MQTT publish and queue drain: {records} queued health reports (50 devices) after an outage, QoS 1 to mosquitto on loopback"
    );
    println!("  {:<44} {:>14}", "measure", "value");
    println!("  {:<44} {:>14.0}", "mean JSON payload (bytes)", mean);
    println!(
        "  {:<44} {:>14.0}",
        "enqueue rate (reports/s)",
        records as f64 / fill_s
    );
    println!("  {:<44} {:>14.2}", "drain time (s)", drain);
    println!(
        "  {:<44} {:>14.0}",
        "publish throughput = drain rate (reports/s)", per_s
    );
    println!(
        "  {:<44} {:>14.2}",
        "publish throughput (MB/s of JSON)",
        per_s * mean / 1e6
    );
    println!(
        "  {:<44} {:>14.1}",
        "reporter CPU per 1000 reports (ms)",
        cpu * 1e6 / records as f64
    );
    json!({
        "records": records,
        "mean_payload_bytes": round(mean, 1),
        "enqueue_per_s": round(records as f64 / fill_s, 1),
        "drain_s": round(drain, 3),
        "publish_per_s": round(per_s, 1),
        "publish_mb_per_s": round(per_s * mean / 1e6, 3),
        "cpu_ms_per_1000": round(cpu * 1e6 / records as f64, 2),
    })
}

// ---------------------------------------------------------------------------
// 5. binary sizes
// ---------------------------------------------------------------------------

fn section_sizes() -> Json {
    let mut dirs = vec![target_dir(), PathBuf::from("/work/cross-target")];
    if let Some(extra) = std::env::var_os("COMPARE_CROSS_DIRS") {
        dirs.extend(std::env::split_paths(&extra));
    }
    dirs.dedup();
    let mut found: Vec<(String, PathBuf, u64, String)> = Vec::new();
    for dir in &dirs {
        let host = dir.join("release/cpe-agent");
        let mut candidates = vec![("host".to_owned(), host)];
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path().join("release/cpe-agent");
                if name.contains('-') && path.is_file() {
                    candidates.push((name, path));
                }
            }
        }
        for (target, path) in candidates {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if found.iter().any(|f| f.1 == path) {
                continue;
            }
            found.push((target, path.clone(), meta.len(), elf_machine(&path)));
        }
    }
    found.sort();
    println!();
    println!("binary size (release, stripped) per target present:");
    println!(
        "  {:<34} {:>10} {:>9}  {:<9} path",
        "target", "bytes", "MiB", "machine"
    );
    for (target, path, size, machine) in &found {
        println!(
            "  {:<34} {:>10} {:>9.2}  {:<9} {}",
            target,
            size,
            *size as f64 / MIB,
            machine,
            path.display()
        );
    }
    if found.is_empty() {
        println!("  (none built: cargo build --release, or the cross builds)");
    }
    Json::Array(
        found
            .iter()
            .map(|(target, path, size, machine)| {
                json!({"target": target, "path": path.display().to_string(), "bytes": size, "machine": machine})
            })
            .collect(),
    )
}

/// The ELF e_machine of a binary, by name.
fn elf_machine(path: &Path) -> String {
    let mut header = [0u8; 20];
    let ok = fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok();
    if !ok || &header[..4] != b"\x7fELF" {
        return "?".into();
    }
    let machine = if header[5] == 1 {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    match machine {
        0x3e => "x86-64",
        0xb7 => "aarch64",
        0x28 => "arm",
        0x08 => "mips",
        0xf3 => "riscv",
        0x03 => "x86",
        _ => "other",
    }
    .into()
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn require_root(why: &str) {
    assert!(
        support::running_as_root(),
        "{why}: run the benchmark as root (CAP_NET_ADMIN and CAP_SYS_ADMIN are needed)"
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn pass(ok: bool) -> String {
    if ok { "PASS" } else { "FAIL" }.to_owned()
}

/// Clock ticks per second for /proc/PID/stat (USER_HZ: 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields of /proc/PID/stat after the command name (field 3 first).
fn stat_fields(pid: &str) -> Vec<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// A process's CPU time in seconds: the sum of its threads' schedstat run
/// times (nanoseconds; threads that have exited are not counted, which the
/// daemons measured here do not do in steady state), or utime + stime from
/// /proc/PID/stat (10 ms ticks) when schedstat is missing.
fn process_cpu_s(pid: u32) -> f64 {
    let schedstat: Option<u64> = fs::read_dir(format!("/proc/{pid}/task")).ok().map(|tasks| {
        tasks
            .flatten()
            .filter_map(|task| {
                fs::read_to_string(task.path().join("schedstat"))
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    });
    match schedstat {
        Some(ns) if ns > 0 => ns as f64 / 1e9,
        _ => {
            let f = stat_fields(&pid.to_string());
            (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / clock_ticks()
        }
    }
}

/// cutime + cstime of this process: the CPU of the children it has waited for.
fn children_cpu_s() -> f64 {
    let f = stat_fields("self");
    (f.get(13).unwrap_or(&0) + f.get(14).unwrap_or(&0)) as f64 / clock_ticks()
}

/// This thread's CPU time in nanosecond resolution (schedstat).
fn thread_cpu_s() -> f64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// A `VmHWM:`-style line of /proc/PID/status, in kB.
fn status_kb(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs a command to completion: output, wall seconds, CPU seconds (its
/// rusage, through this process's cutime + cstime).
fn timed_child(command: &mut Command) -> (std::process::Output, f64, f64) {
    let cpu_before = children_cpu_s();
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let wall = start.elapsed().as_secs_f64();
    (output, wall, children_cpu_s() - cpu_before)
}
