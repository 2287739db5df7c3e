//! Integration-test harness: real brokers and SNMP agents on loopback.
//!
//! Every integration test that needs a peer starts its *own* real process —
//! Debian's `mosquitto`, `snmpsimd` (package `snmpsim`) or net-snmp's `snmpd` —
//! on ports picked at run time, and the guard it gets back stops the process
//! when dropped. Nothing is shared between tests, so they run in parallel under
//! cargo's default test threads, and nothing outlives the test binary's
//! normal exit (including a failing test: guards are dropped while a panic
//! unwinds).
//!
//! Design rules, and why:
//!
//! * **A missing tool is a failure, not a skip.** [`require_tool`] panics with
//!   the `apt-get install` line to run, so a CI image that lost a package
//!   goes red instead of silently testing nothing.
//! * **Only 127.0.0.0/8.** Every listener is bound to a loopback address; the
//!   SNMP "LAN" simulation uses several 127.x.y.z addresses, which Linux
//!   routes to `lo` without any set-up.
//! * **Readiness is probed, never slept for.** Each start-up polls the
//!   service with a real protocol exchange (MQTT CONNECT/CONNACK, SNMP GET)
//!   under a deadline via [`wait_for_child`]; if the service does not answer,
//!   or exits, the panic message carries its log so the cause is visible in
//!   the test output.
//! * **Ports are picked by binding port 0 and releasing it.** The small window
//!   before the service binds is covered twice: ports handed out are
//!   remembered so two tests in this process never get the same one, and the
//!   service modules retry with fresh ports when a start-up fails with
//!   "address in use" (another process grabbed it meanwhile).
//! * **Each service gets a private temp dir** for its configuration, data,
//!   logs and persistent state, so nothing under `/etc`, `/var/lib` or `$HOME`
//!   is read or written. The net-snmp command-line tools are run the same way
//!   through [`net_snmp`].
//! * **Child output goes to files, not pipes**, so a chatty process can never
//!   block on a full pipe, and the log survives to be quoted in a panic.

pub mod mosquitto;
pub mod rogue;
pub mod schema;
pub mod snmpd;
pub mod snmpsim;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The loopback address every single-address service listens on.
pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long a stopped process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// How many times a service start is retried when its port was taken between
/// picking it and the service binding it.
pub(crate) const START_ATTEMPTS: usize = 3;

/// Finds `binary` on `PATH` or in `/usr/sbin` / `/usr/bin` (daemons live in
/// `sbin`, which a non-root `PATH` often lacks).
///
/// Panics, naming the Debian package to install, when it is not there: a
/// missing tool must fail the test run, never skip it.
pub fn require_tool(binary: &str, debian_package: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("{binary} not found: apt-get install -y {debian_package}"))
}

/// Ports handed out by this process; never handed out twice, so parallel
/// tests cannot pick the same port even after its first user released it.
static CLAIMED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn claim_port(port: u16) -> bool {
    CLAIMED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(port)
}

/// A TCP port that is free on 127.0.0.1 right now and that no other caller
/// in this process has been given.
pub fn free_tcp_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0/tcp");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound TCP listener")
            .port();
        drop(listener);
        if claim_port(port) {
            return port;
        }
    }
    panic!("no free TCP port found on 127.0.0.1 after 1000 tries");
}

/// A UDP port that is free on `ip` (a 127.x.y.z address) right now.
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    free_udp_port_on(&[ip])
}

/// A UDP port that is free on *every* address in `ips` at once, for
/// simulators that serve several addresses on the same port.
pub fn free_udp_port_on(ips: &[Ipv4Addr]) -> u16 {
    let (first, rest) = ips.split_first().expect("at least one address");
    for ip in ips {
        assert!(
            ip.is_loopback(),
            "{ip} is not a loopback (127.0.0.0/8) address"
        );
    }
    for _ in 0..1000 {
        let probe =
            UdpSocket::bind((*first, 0)).unwrap_or_else(|e| panic!("bind {first}:0/udp: {e}"));
        let port = probe
            .local_addr()
            .expect("local_addr of a UDP socket")
            .port();
        let all_free = rest.iter().all(|ip| UdpSocket::bind((*ip, port)).is_ok());
        drop(probe);
        if all_free && claim_port(port) {
            return port;
        }
    }
    panic!("no UDP port free on all of {ips:?} after 1000 tries");
}

/// Polls `f` (backing off from 5 ms to 50 ms) until it returns true.
///
/// Returns how long it took, or an error naming `what` once `timeout` has
/// passed; callers turn the error into a panic that includes the service log.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if f() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Like [`wait_until`], but fails at once (with the exit status) if `child`
/// exits while we wait: a daemon that died on a bad config or a taken port
/// should not cost the whole timeout.
pub fn wait_for_child(
    child: &mut ChildGuard,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let mut exited = None;
    let result = wait_until(timeout, what, || {
        if let Some(status) = child.exit_status() {
            exited = Some(status);
            return true;
        }
        ready()
    });
    match exited {
        Some(status) => Err(format!(
            "{} exited while waiting for {what}: {status}",
            child.name()
        )),
        None => result,
    }
}

/// `../shared/devices` next to the crate (the 26 real device recordings and
/// `expected.toml`), or `None` with a notice on stderr when it is absent, in
/// which case the calling test should return early.
pub fn shared_devices_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/devices");
    if dir.is_dir() {
        Some(dir.canonicalize().unwrap_or(dir))
    } else {
        eprintln!(
            "skipping: ../shared/devices not present (looked for {})",
            dir.display()
        );
        None
    }
}

/// The sorted `*.snmprec` files in `dir`.
pub fn snmprec_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "snmprec"))
        .collect();
    files.sort();
    files
}

/// The project's own test data folder, `tests/data`.
pub fn project_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A fresh temp dir named after `what`, for a service's private files.
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cpe-agent-{what}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("create temp dir for {what}: {e}"))
}

/// Sets `path`'s permission bits (used to open private temp dirs to daemons
/// that drop root privileges).
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// True when the tests run as root (then daemons are told which user to run
/// as, and file permissions must suit that user).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The last `max_bytes` of a log file (or a note that it is missing), for
/// panic messages.
pub fn log_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("<{} not created>", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return format!("<cannot seek in {}>", path.display());
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        return format!("<cannot read {}: {e}>", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    if start > 0 {
        format!("[... first {start} bytes cut ...]\n{text}")
    } else {
        text.into_owned()
    }
}

/// Whether a start-up failure looks like a lost race for the port.
pub(crate) fn looks_like_port_clash(log: &str) -> bool {
    // mosquitto and snmpsimd quote the OS error; snmpd only says which
    // endpoint it could not open.
    log.contains("Address already in use")
        || log.contains("address already in use")
        || log.contains("Error opening specified endpoint")
}

/// A running child process that is stopped (SIGTERM, then SIGKILL after
/// [`TERM_GRACE`]) and reaped when the guard is dropped.
///
/// Its stdout and stderr go to one file (see [`ChildGuard::spawn`]).
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    output_path: PathBuf,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed and stdout + stderr appended to
    /// `output_path`; `name` is used in messages.
    pub fn spawn(name: &str, command: &mut Command, output_path: &Path) -> ChildGuard {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", output_path.display()));
        let err = out.try_clone().expect("clone output file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({command:?}): {e}"));
        ChildGuard::adopt(name, child, output_path)
    }

    /// Wraps an already spawned child (e.g. one whose stdout is piped).
    pub fn adopt(name: &str, child: Child, output_path: &Path) -> ChildGuard {
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
            output_path: output_path.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file holding the child's stdout and stderr.
    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    /// The tail of the child's stdout/stderr.
    pub fn output(&self) -> String {
        log_tail(&self.output_path, 16 * 1024)
    }

    /// `Some(status)` once the child has exited (or was stopped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => Some(ExitStatus::default()),
        }
    }

    /// Stops the child: SIGTERM, up to [`TERM_GRACE`] to exit, then SIGKILL;
    /// always reaps it. Idempotent, and never panics (it runs in `Drop`).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        if kill(pid, Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            eprintln!(
                "[harness] {} (pid {pid}) ignored SIGTERM for {TERM_GRACE:?}; sending SIGKILL",
                self.name
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a net-snmp command-line tool (`snmpget`, `snmpset`, `snmpwalk`, ...)
/// with `args` and returns its output.
///
/// The tool gets a private, empty configuration and persistent directory (so
/// it neither reads `/etc/snmp/snmp.conf` or `~/.snmp` nor writes to
/// `/var/lib/snmp`) and no MIBs (`MIBS=`), so output is numeric and the same
/// on every machine. Pass `-On -Oqv` to get just the value.
pub fn net_snmp(tool: &str, args: &[&str]) -> Output {
    let binary = require_tool(tool, "snmp");
    let scratch = temp_dir("net-snmp-client");
    Command::new(&binary)
        .args(args)
        .env("MIBS", "")
        .env("SNMPCONFPATH", scratch.path())
        .env("SNMP_PERSISTENT_DIR", scratch.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool} {args:?}: {e}"))
}

/// [`net_snmp`] that must succeed; returns trimmed stdout, or panics with
/// the command line, status and stderr.
pub fn net_snmp_ok(tool: &str, args: &[&str]) -> String {
    let output = net_snmp(tool, args);
    assert!(
        output.status.success(),
        "{tool} {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Sends one SNMPv2c GET for sysDescr.0 to `addr` and reports whether any
/// SNMP message came back within `timeout`.
///
/// Used as a readiness probe: it needs no external tool, costs one datagram,
/// and (unlike a bare port check, which UDP does not have) proves the agent
/// has loaded its data, since snmpsimd and snmpd stay silent for a community
/// they do not serve.
pub fn snmp_get_answers(addr: SocketAddr, community: &str, timeout: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind((LOCALHOST, 0)) else {
        return false;
    };
    let request_id = (std::process::id() & 0x3fff) as i32 * 0x1_0000 + 0x4321;
    let sys_descr = cpe_agent::snmp::Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 1, 0]);
    let packet = rogue::encode_v2c_get(community, request_id, &sys_descr);
    if socket.send_to(&packet, addr).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match socket.recv_from(&mut buf) {
            Ok((len, from)) if from == addr && len > 0 && buf[0] == 0x30 => return true,
            Ok(_) => continue,
            // ICMP port unreachable surfaces as ECONNREFUSED: not up yet.
            Err(_) => return false,
        }
    }
}
