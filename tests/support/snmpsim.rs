//! A private SNMP simulator per test: `snmpsimd` (Debian package `snmpsim`,
//! version 0.4.x on Debian 12) serving `.snmprec` recordings.
//!
//! Two modes:
//!
//! * [`SnmpSim::start_communities`]: one endpoint, `127.0.0.1:<free port>`;
//!   each recording is a community named after its file stem (snmpsimd's
//!   default SNMP-engine architecture, so SNMPv1/v2c by community work, and
//!   SNMPv3 with snmpsimd's built-in user `simulator`, the stem being the
//!   context name).
//! * [`SnmpSim::start_lan`]: a simulated LAN. With `--v2c-arch`, snmpsimd
//!   picks a recording from the community, the *transport ID* of the
//!   endpoint a request arrived on (`1.3.6.1.6.1.1.K` for the K-th
//!   `--agent-udpv4-endpoint`, counting from 0) and the source address, in
//!   that order of specificity. Laying the files out as
//!   `DATA/public/1.3.6.1.6.1.1.K.snmprec` therefore gives every device its
//!   own address (`<prefix>.<first_host + K>`), all on one port, all
//!   answering community `public` — what a discovery sweep expects to see.
//!
//! Quirks handled here:
//!
//! * Run as root, snmpsimd refuses to keep root and must be told a user
//!   (`--process-user=nobody --process-group=nogroup`). It binds its sockets
//!   *after* dropping privileges (fine for ports above 1024) and reads data
//!   and writes its index cache as `nobody`, so the private temp dir is
//!   opened up: dirs 0755, files 0644, the cache dir 0777. Unprivileged runs
//!   get no user options (snmpsimd would fail to switch user).
//! * snmpsimd also scans `$HOME/.snmpsim/data` and its variation-module dirs;
//!   `HOME` points into the temp dir so a developer's own snmpsim data can
//!   never leak into a test.
//! * The index cache (`--cache-dir`) is private too: snmpsimd keys it by the
//!   data file's path, and parallel instances sharing `/tmp/snmpsim` would
//!   race on rebuilding it.
//! * Readiness: snmpsimd indexes every recording before it binds, and stays
//!   silent for communities it does not know, so "every endpoint answers a
//!   GET of sysDescr.0" (see [`super::snmp_get_answers`]) means every device
//!   is ready.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{
    chmod, free_udp_port, free_udp_port_on, looks_like_port_clash, require_tool, running_as_root,
    snmp_get_answers, temp_dir, wait_for_child, ChildGuard, LOCALHOST, START_ATTEMPTS,
};

/// Python start-up plus indexing 26 recordings takes well under a second
/// here; the margin is for a loaded 2-core CI machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The community every device answers in LAN mode.
pub const LAN_COMMUNITY: &str = "public";

/// One simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// The recording's file stem, e.g. `openwrt`.
    pub name: String,
    /// Where it answers.
    pub addr: SocketAddr,
    /// The community it answers to.
    pub community: String,
    /// The recording it serves (the original path, not the private copy).
    pub recording: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Communities,
    Lan,
}

/// A running snmpsimd; stopped when dropped.
#[derive(Debug)]
pub struct SnmpSim {
    // Declared first so the simulator stops before its temp dir goes.
    child: ChildGuard,
    mode: Mode,
    port: u16,
    devices: Vec<SimDevice>,
    startup_time: Duration,
    dir: TempDir,
}

impl SnmpSim {
    /// Serves every recording on `127.0.0.1:<port>`, with community = the
    /// recording's file stem (stems must be unique).
    pub fn start_communities<P: AsRef<Path>>(recordings: &[P]) -> SnmpSim {
        assert!(
            !recordings.is_empty(),
            "start_communities needs at least one recording"
        );
        let dir = prepare_dir();
        let data = dir.path().join("data");
        let mut names = BTreeSet::new();
        let mut devices = Vec::new();
        for recording in recordings {
            let recording = recording.as_ref();
            let name = file_stem(recording);
            assert!(
                names.insert(name.clone()),
                "two recordings share the stem {name:?}, so they would share a community"
            );
            copy_recording(recording, &data.join(format!("{name}.snmprec")));
            devices.push(SimDevice {
                community: name.clone(),
                name,
                addr: SocketAddr::from((LOCALHOST, 0)),
                recording: recording.to_owned(),
            });
        }
        SnmpSim::launch(dir, Mode::Communities, devices, |_| {
            free_udp_port(LOCALHOST)
        })
    }

    /// Simulates a LAN: the recording at position K answers community
    /// `public` on `<ip_prefix>.<first_host + K>:<port>` (one port for all),
    /// e.g. `start_lan(&files, "127.0.1", 1)` puts the first device on
    /// 127.0.1.1. `ip_prefix` must be three octets inside 127.0.0.0/8.
    pub fn start_lan<P: AsRef<Path>>(recordings: &[P], ip_prefix: &str, first_host: u8) -> SnmpSim {
        assert!(
            !recordings.is_empty(),
            "start_lan needs at least one recording"
        );
        let last_host = usize::from(first_host) + recordings.len() - 1;
        assert!(
            first_host >= 1 && last_host <= 254,
            "hosts {first_host}..={last_host} do not fit in {ip_prefix}.1 - {ip_prefix}.254"
        );
        let dir = prepare_dir();
        let community_dir = dir.path().join("data").join(LAN_COMMUNITY);
        fs::create_dir(&community_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", community_dir.display()));
        chmod(&community_dir, 0o755);
        let mut devices = Vec::new();
        for (index, recording) in recordings.iter().enumerate() {
            let recording = recording.as_ref();
            let host = usize::from(first_host) + index;
            let ip: Ipv4Addr = format!("{ip_prefix}.{host}")
                .parse()
                .unwrap_or_else(|e| panic!("{ip_prefix}.{host} is not an IPv4 address: {e}"));
            assert!(ip.is_loopback(), "{ip} is outside 127.0.0.0/8");
            copy_recording(
                recording,
                &community_dir.join(format!("1.3.6.1.6.1.1.{index}.snmprec")),
            );
            devices.push(SimDevice {
                name: file_stem(recording),
                addr: SocketAddr::from((ip, 0)),
                community: LAN_COMMUNITY.to_owned(),
                recording: recording.to_owned(),
            });
        }
        SnmpSim::launch(dir, Mode::Lan, devices, |devices| {
            let ips: Vec<Ipv4Addr> = devices
                .iter()
                .map(|d| match d.addr {
                    SocketAddr::V4(v4) => *v4.ip(),
                    SocketAddr::V6(_) => unreachable!("LAN devices are IPv4"),
                })
                .collect();
            free_udp_port_on(&ips)
        })
    }

    fn launch(
        dir: TempDir,
        mode: Mode,
        mut devices: Vec<SimDevice>,
        pick_port: impl Fn(&[SimDevice]) -> u16,
    ) -> SnmpSim {
        let binary = require_tool("snmpsimd", "snmpsim");
        let output_path = dir.path().join("snmpsimd.log");
        for attempt in 1..=START_ATTEMPTS {
            let port = pick_port(&devices);
            for device in &mut devices {
                device.addr.set_port(port);
            }
            let mut command = snmpsimd_command(&binary, dir.path(), mode, &devices);
            let endpoints = endpoints(mode, &devices);
            let mut child = ChildGuard::spawn("snmpsimd", &mut command, &output_path);

            let mut ready = 0;
            let waited = wait_for_child(
                &mut child,
                STARTUP_TIMEOUT,
                &format!("all {} snmpsimd device(s) to answer", devices.len()),
                || {
                    while let Some(device) = devices.get(ready) {
                        if !snmp_get_answers(
                            device.addr,
                            &device.community,
                            Duration::from_millis(250),
                        ) {
                            return false;
                        }
                        ready += 1;
                    }
                    true
                },
            );
            match waited {
                Ok(startup_time) => {
                    eprintln!(
                        "[harness] snmpsimd ready with {} recording(s) on {} endpoint(s), port {port}, in {} ms",
                        devices.len(),
                        endpoints.len(),
                        startup_time.as_millis()
                    );
                    return SnmpSim {
                        child,
                        mode,
                        port,
                        devices,
                        startup_time,
                        dir,
                    };
                }
                Err(reason) => {
                    child.stop();
                    let log = child.output();
                    if attempt < START_ATTEMPTS && looks_like_port_clash(&log) {
                        eprintln!("[harness] snmpsimd lost a port race, retrying: {reason}");
                        let _ = fs::remove_file(&output_path);
                        continue;
                    }
                    let stuck = devices
                        .get(ready)
                        .map(|d| {
                            format!(
                                " (first silent device: {} on {} community {:?})",
                                d.name, d.addr, d.community
                            )
                        })
                        .unwrap_or_default();
                    panic!(
                        "snmpsimd did not come up: {reason}{stuck}\n--- {} ---\n{log}",
                        output_path.display()
                    );
                }
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    /// Every address a device answers on (one per device in LAN mode; the
    /// single shared endpoint in communities mode).
    /// Stops the simulator: every device falls silent. Files and port are kept.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Starts the simulator again on the same port after [`SnmpSim::stop`]:
    /// the devices come back, their counters and uptime started over, as after
    /// a reboot.
    pub fn start_again(&mut self) {
        let binary = require_tool("snmpsimd", "snmpsim");
        let output_path = self.dir.path().join("snmpsimd-again.log");
        let mut command = snmpsimd_command(&binary, self.dir.path(), self.mode, &self.devices);
        let mut child = ChildGuard::spawn("snmpsimd", &mut command, &output_path);
        let devices = self.devices.clone();
        wait_for_child(
            &mut child,
            STARTUP_TIMEOUT,
            "snmpsimd to answer again",
            || {
                devices
                    .iter()
                    .all(|d| snmp_get_answers(d.addr, &d.community, Duration::from_millis(250)))
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "snmpsimd did not come back on port {}: {e}\n{}",
                self.port,
                child.output()
            )
        });
        self.child = child;
    }

    pub fn endpoints(&self) -> Vec<SocketAddr> {
        match self.mode {
            Mode::Communities => vec![self.devices[0].addr],
            Mode::Lan => self.devices.iter().map(|d| d.addr).collect(),
        }
    }

    /// The UDP port (shared by all endpoints).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The communities served: the file stems in communities mode, just
    /// `public` in LAN mode.
    pub fn communities(&self) -> Vec<&str> {
        let mut communities: Vec<&str> =
            self.devices.iter().map(|d| d.community.as_str()).collect();
        communities.dedup();
        communities
    }

    /// The simulated devices, in the order the recordings were given.
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// The device serving the recording with file stem `name`.
    pub fn device(&self, name: &str) -> &SimDevice {
        self.devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no simulated device named {name:?}"))
    }

    /// How long start-up took until every device answered.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The tail of snmpsimd's log (it logs every request).
    pub fn log(&self) -> String {
        self.child.output()
    }

    /// The simulator's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A temp dir that `nobody` can read (data) and write (cache).
fn prepare_dir() -> TempDir {
    let dir = temp_dir("snmpsim");
    chmod(dir.path(), 0o755);
    for (sub, mode) in [("data", 0o755), ("cache", 0o777), ("home", 0o755)] {
        let path = dir.path().join(sub);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        chmod(&path, mode);
    }
    dir
}

fn copy_recording(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy recording {} to {}: {e}", from.display(), to.display()));
    chmod(to, 0o644);
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("recording {} has no UTF-8 file stem", path.display()))
        .to_owned()
}

/// The endpoints snmpsimd listens on: one for communities mode, one per device for LAN mode.
fn endpoints(mode: Mode, devices: &[SimDevice]) -> Vec<SocketAddr> {
    match mode {
        Mode::Communities => vec![devices[0].addr],
        Mode::Lan => devices.iter().map(|d| d.addr).collect(),
    }
}

/// The snmpsimd command line for this data dir, mode and devices.
fn snmpsimd_command(binary: &Path, dir: &Path, mode: Mode, devices: &[SimDevice]) -> Command {
    let mut command = Command::new(binary);
    command.env("HOME", dir.join("home"));
    if running_as_root() {
        command.args(["--process-user=nobody", "--process-group=nogroup"]);
    }
    if mode == Mode::Lan {
        command.arg("--v2c-arch");
    }
    command
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--cache-dir={}", dir.join("cache").display()));
    for endpoint in endpoints(mode, devices) {
        command.arg(format!("--agent-udpv4-endpoint={endpoint}"));
    }
    command
}
