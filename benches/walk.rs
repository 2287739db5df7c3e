//! Walk benchmark: `cpe_agent::snmp::walk` against net-snmp's `snmpbulkwalk` and
//! `snmpwalk`, on net-snmp's `snmpd` (a whole `.1`) and on `snmpsimd`
//! serving the project's soho-router recording, both on loopback.
//!
//! ```text
//! cargo bench --bench walk              # 5 runs per row, median
//! cargo bench --bench walk -- --quick   # 1 run per row (CI: keeps it working)
//! WALK_BENCH_QUICK=1 cargo bench --bench walk
//! ```
//!
//! Timings include everything a caller pays: a fresh client (socket) per
//! walk for us, a process start for the net-snmp tools (the `snmpget` row
//! shows that fixed cost). Nothing is asserted about speed; the run is
//! bounded to about a minute (later runs are skipped past the deadline).

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cpe_agent::config::{Credential, Secret};
use cpe_agent::snmp::walk::{walk, WalkOptions};
use cpe_agent::snmp::{Client, Oid, Timing};

use support::snmpd::Snmpd;
use support::snmpsim::SnmpSim;

const TIMING: Timing = Timing {
    timeout: Duration::from_secs(3),
    retries: 1,
};

/// Past this, rows get fewer runs than asked (at least one each).
const DEADLINE: Duration = Duration::from_secs(50);

struct Target {
    name: String,
    addr: SocketAddr,
    community: String,
    root: &'static str,
}

/// One timed run: OIDs read, seconds, requests (ours only).
#[derive(Clone, Copy)]
struct Run {
    oids: usize,
    seconds: f64,
    requests: Option<u32>,
}

/// One row of a table: what was run, and each run.
struct Row {
    tool: String,
    runs: Vec<Run>,
}

impl Row {
    /// The run with the median time (snmpd's OID count varies a little
    /// from run to run, as processes come and go in hrSWRunTable).
    fn median(&self) -> Run {
        let mut runs = self.runs.clone();
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        runs.get(runs.len() / 2).copied().unwrap_or(Run {
            oids: 0,
            seconds: f64::NAN,
            requests: None,
        })
    }
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` (CI) it
    // is absent, and one quick run keeps the harness working without timing.
    let args: Vec<String> = std::env::args().collect();
    let quick = !args.iter().any(|a| a == "--bench")
        || args.iter().any(|a| a == "--quick")
        || std::env::var_os("WALK_BENCH_QUICK").is_some_and(|v| v != "0");
    let runs = if quick { 1 } else { 5 };
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let snmpd = Snmpd::start();
    let snmpd_target = Target {
        name: "net-snmp snmpd".into(),
        addr: snmpd.addr(),
        community: snmpd.ro_community.clone(),
        root: ".1",
    };
    let recording = support::project_data_dir().join("soho-router.snmprec");
    let sim = SnmpSim::start_communities(&[recording]);
    let device = sim.device("soho-router");
    let sim_target = Target {
        name: "snmpsimd soho-router".into(),
        addr: device.addr,
        community: device.community.clone(),
        root: ".1",
    };

    println!(
        "walk benchmark: median of {runs} run(s) per row{}",
        if quick { " (--quick)" } else { "" }
    );
    for target in [&snmpd_target, &sim_target] {
        let rows = bench_target(&runtime, target, runs, started);
        print_table(target, &rows);
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}

fn bench_target(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    runs: usize,
    started: Instant,
) -> Vec<Row> {
    let ours = |max_repetitions: u32, use_bulk: bool| {
        move || {
            let options = WalkOptions {
                max_repetitions,
                use_bulk,
                ..WalkOptions::default()
            };
            let credential = Credential {
                name: "bench".into(),
                community: Some(Secret::new(target.community.clone())),
                ..Credential::default_public()
            };
            let root = Oid::from_arcs(&[1]);
            runtime.block_on(async {
                let mut client = Client::new(target.addr, credential, TIMING);
                let walk = walk(&mut client, &root, &options)
                    .await
                    .unwrap_or_else(|e| panic!("walk of {}: {e}", target.name));
                assert!(walk.is_complete(), "{}: {:?}", target.name, walk.stopped);
                (walk.varbinds.len(), Some(walk.requests))
            })
        }
    };
    let tool = |name: &'static str, extra: &'static [&'static str]| {
        move || {
            let agent = target.addr.to_string();
            let mut args = vec!["-v2c", "-c", &target.community, "-On", "-Ox", "-t", "3"];
            args.extend_from_slice(extra);
            args.extend([agent.as_str(), target.root]);
            let output = support::net_snmp(name, &args);
            assert!(
                output.status.success(),
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let oids = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.starts_with('.') && !l.contains("= No more variables"))
                .count();
            (oids, None)
        }
    };
    type Job<'a> = Box<dyn Fn() -> (usize, Option<u32>) + 'a>;
    let plan: Vec<(&str, Job)> = vec![
        ("cpe_agent walk r25", Box::new(ours(25, true))),
        ("cpe_agent walk r50", Box::new(ours(50, true))),
        ("cpe_agent walk GETNEXT", Box::new(ours(25, false))),
        (
            "snmpbulkwalk -Cr25",
            Box::new(tool("snmpbulkwalk", &["-Cr25"])),
        ),
        (
            "snmpbulkwalk -Cr50",
            Box::new(tool("snmpbulkwalk", &["-Cr50"])),
        ),
        ("snmpwalk (GETNEXT)", Box::new(tool("snmpwalk", &[]))),
        ("snmpget (1 OID)", Box::new(snmpget(target))),
    ];
    let mut rows: Vec<Row> = plan
        .iter()
        .map(|(name, _)| Row {
            tool: (*name).to_owned(),
            runs: Vec::new(),
        })
        .collect();
    // Untimed: snmpd fills its table caches (processes, ...) on a first walk.
    let _ = plan[3].1();
    // Round-robin, so a slow phase of the machine hits every row alike.
    for round in 0..runs {
        if round > 0 && started.elapsed() > DEADLINE {
            eprintln!(
                "[bench] deadline: {round} run(s) per row for {}",
                target.name
            );
            break;
        }
        for ((_, run), row) in plan.iter().zip(&mut rows) {
            let start = Instant::now();
            let (oids, requests) = run();
            let seconds = start.elapsed().as_secs_f64();
            row.runs.push(Run {
                oids,
                seconds,
                requests,
            });
        }
    }
    rows
}

fn snmpget(target: &Target) -> impl Fn() -> (usize, Option<u32>) + '_ {
    move || {
        let agent = target.addr.to_string();
        let args = [
            "-v2c",
            "-c",
            &target.community,
            "-On",
            &agent,
            ".1.3.6.1.2.1.1.1.0",
        ];
        let output = support::net_snmp("snmpget", &args);
        assert!(output.status.success(), "snmpget {args:?}");
        (1, None)
    }
}

fn print_table(target: &Target, rows: &[Row]) {
    let reference = rows
        .iter()
        .find(|r| r.tool == "snmpbulkwalk -Cr25")
        .map(|r| r.median().seconds)
        .unwrap_or(f64::NAN);
    println!();
    println!(
        "{} ({}), walk of {}:",
        target.name, target.addr, target.root
    );
    println!(
        "  {:<24} {:>6} {:>9} {:>10} {:>10} {:>9}",
        "tool", "OIDs", "seconds", "OIDs/s", "requests", "vs r25"
    );
    for row in rows {
        let Run {
            oids,
            seconds,
            requests,
        } = row.median();
        let requests = requests.map_or("-".to_owned(), |r| r.to_string());
        println!(
            "  {:<24} {:>6} {:>9.4} {:>10.0} {:>10} {:>8.2}x",
            row.tool,
            oids,
            seconds,
            oids as f64 / seconds,
            requests,
            seconds / reference
        );
    }
    println!("  (vs r25: time relative to snmpbulkwalk -Cr25; below 1 is faster)");
}
