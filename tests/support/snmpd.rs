//! A private net-snmp agent per test: `snmpd` (Debian package `snmpd`,
//! net-snmp 5.9), for what snmpsimd cannot do — real SNMPv3 USM
//! authentication/privacy and writable objects.
//!
//! What the agent offers:
//!
//! * `udp:127.0.0.1:<free port>` only;
//! * a read-only and a read-write v1/v2c community (`ro_community`,
//!   `rw_community`), both limited to source 127.0.0.1;
//! * an SNMPv3 authPriv user with SHA auth and AES privacy (`priv_user`) and
//!   an authNoPriv user with SHA-256 (`auth_user`; net-snmp ≥ 5.8 built with
//!   OpenSSL supports SHA-224..512, which `snmpd -H` lists for createUser);
//! * sysLocation and sysContact writable through the rw community: the
//!   config deliberately has no `syslocation` / `syscontact` line, since a
//!   configured value makes the object read-only.
//!
//! How it is run, and why:
//!
//! * `-f` (foreground, so the guard owns the real process), `-Lf <file>`
//!   (log to the temp dir), `-p <pidfile>`, `-C -c <conf>` (read *only* our
//!   config, not `/etc/snmp`).
//! * `-C` also stops snmpd from reading the persistent `snmpd.conf`, so the
//!   `createUser` lines go into the main config, which is read at every
//!   start. The persistent dir (`SNMP_PERSISTENT_DIR` plus `[snmp]
//!   persistentDir`) is in the temp dir, so `/var/lib/snmp` is never touched;
//!   snmpd stores set values and derived user keys there.
//! * `-I -smux`: Debian's snmpd otherwise opens the SMUX port, TCP
//!   *0.0.0.0*:199 — off loopback, and a clash between parallel agents.
//! * `-m ''`: no MIB loading; without `/etc/snmp/snmp.conf`'s `mibs :` the
//!   agent would fill its log with hundreds of missing-MIB warnings.
//! * Readiness: a v2c GET of sysDescr.0 with the ro community answers.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{
    free_udp_port, log_tail, looks_like_port_clash, require_tool, snmp_get_answers, temp_dir,
    wait_for_child, ChildGuard, LOCALHOST, START_ATTEMPTS,
};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// An SNMPv3 USM user configured in the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3User {
    pub name: String,
    /// net-snmp spelling: `SHA`, `SHA-256`, ...
    pub auth_protocol: String,
    pub auth_passphrase: String,
    /// `AES`, or `None` for an authNoPriv user.
    pub priv_protocol: Option<String>,
    pub priv_passphrase: Option<String>,
}

impl V3User {
    /// `authPriv` or `authNoPriv`.
    pub fn security_level(&self) -> &'static str {
        if self.priv_protocol.is_some() {
            "authPriv"
        } else {
            "authNoPriv"
        }
    }

    /// The net-snmp CLI options for this user (`-v3 -l ... -u ... -a ...`).
    pub fn net_snmp_args(&self) -> Vec<String> {
        let mut args = vec![
            "-v3".to_owned(),
            "-l".to_owned(),
            self.security_level().to_owned(),
            "-u".to_owned(),
            self.name.clone(),
            "-a".to_owned(),
            self.auth_protocol.clone(),
            "-A".to_owned(),
            self.auth_passphrase.clone(),
        ];
        if let (Some(protocol), Some(passphrase)) = (&self.priv_protocol, &self.priv_passphrase) {
            args.extend([
                "-x".to_owned(),
                protocol.clone(),
                "-X".to_owned(),
                passphrase.clone(),
            ]);
        }
        args
    }

    fn create_user_line(&self) -> String {
        let mut line = format!(
            "createUser {} {} \"{}\"",
            self.name, self.auth_protocol, self.auth_passphrase
        );
        if let (Some(protocol), Some(passphrase)) = (&self.priv_protocol, &self.priv_passphrase) {
            line += &format!(" {protocol} \"{passphrase}\"");
        }
        line
    }
}

/// A running snmpd; stopped when dropped.
#[derive(Debug)]
pub struct Snmpd {
    // Declared first so the agent stops before its temp dir goes.
    child: ChildGuard,
    port: u16,
    /// Read-only v1/v2c community.
    pub ro_community: String,
    /// Read-write v1/v2c community (sysLocation, sysContact, sysName, ...).
    pub rw_community: String,
    /// SNMPv3 authPriv user: SHA + AES.
    pub priv_user: V3User,
    /// SNMPv3 authNoPriv user: SHA-256.
    pub auth_user: V3User,
    startup_time: Duration,
    log_path: std::path::PathBuf,
    dir: TempDir,
}

impl Snmpd {
    /// Starts an agent on a free port; panics (with its log) if it does not
    /// answer.
    pub fn start() -> Snmpd {
        let binary = require_tool("snmpd", "snmpd");
        let dir = temp_dir("snmpd");
        let persistent = dir.path().join("persistent");
        fs::create_dir(&persistent)
            .unwrap_or_else(|e| panic!("create {}: {e}", persistent.display()));
        let config_path = dir.path().join("snmpd.conf");
        let log_path = dir.path().join("snmpd.log");
        let output_path = dir.path().join("snmpd.out");

        let ro_community = "harness-ro".to_owned();
        let rw_community = "harness-rw".to_owned();
        let priv_user = V3User {
            name: "harness-priv".to_owned(),
            auth_protocol: "SHA".to_owned(),
            auth_passphrase: "auth-pass-8f2c".to_owned(),
            priv_protocol: Some("AES".to_owned()),
            priv_passphrase: Some("priv-pass-41d7".to_owned()),
        };
        let auth_user = V3User {
            name: "harness-auth".to_owned(),
            auth_protocol: "SHA-256".to_owned(),
            auth_passphrase: "auth256-pass-b3e9".to_owned(),
            priv_protocol: None,
            priv_passphrase: None,
        };

        for attempt in 1..=START_ATTEMPTS {
            let port = free_udp_port(LOCALHOST);
            let addr = SocketAddr::from((LOCALHOST, port));
            let config = format!(
                "# Generated by tests/support/snmpd.rs for one test.\n\
                 [snmp] persistentDir {persistent}\n\
                 agentaddress udp:{addr}\n\
                 rocommunity {ro_community} 127.0.0.1\n\
                 rwcommunity {rw_community} 127.0.0.1\n\
                 {priv_create}\n\
                 {auth_create}\n\
                 rouser {priv_name} priv\n\
                 rouser {auth_name} auth\n",
                persistent = persistent.display(),
                priv_create = priv_user.create_user_line(),
                auth_create = auth_user.create_user_line(),
                priv_name = priv_user.name,
                auth_name = auth_user.name,
            );
            fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));

            let mut command = Command::new(&binary);
            command
                .env("SNMP_PERSISTENT_DIR", &persistent)
                .env("MIBS", "")
                .arg("-f")
                .arg("-Lf")
                .arg(&log_path)
                .args(["-C", "-m", "", "-I", "-smux", "-c"])
                .arg(&config_path)
                .arg("-p")
                .arg(dir.path().join("snmpd.pid"));
            let mut child = ChildGuard::spawn("snmpd", &mut command, &output_path);
            let waited = wait_for_child(
                &mut child,
                STARTUP_TIMEOUT,
                &format!("snmpd to answer a v2c GET on {addr}"),
                || snmp_get_answers(addr, &ro_community, Duration::from_millis(250)),
            );
            match waited {
                Ok(startup_time) => {
                    eprintln!(
                        "[harness] snmpd ready on {addr} in {} ms",
                        startup_time.as_millis()
                    );
                    return Snmpd {
                        child,
                        port,
                        ro_community,
                        rw_community,
                        priv_user,
                        auth_user,
                        startup_time,
                        log_path,
                        dir,
                    };
                }
                Err(reason) => {
                    child.stop();
                    let log = format!(
                        "--- {} ---\n{}\n--- snmpd stdout/stderr ---\n{}",
                        log_path.display(),
                        log_tail(&log_path, 8192),
                        child.output()
                    );
                    if attempt < START_ATTEMPTS && looks_like_port_clash(&log) {
                        eprintln!("[harness] snmpd lost a port race, retrying: {reason}");
                        let _ = fs::remove_file(&log_path);
                        continue;
                    }
                    panic!("snmpd did not come up: {reason}\n{log}");
                }
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    /// The agent's UDP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// How long start-up took until the agent answered.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The tail of the agent's log file.
    pub fn log(&self) -> String {
        log_tail(&self.log_path, 16 * 1024)
    }

    /// The agent's private directory (config, persistent store, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the agent process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.exit_status().is_none()
    }

    /// Stops the agent now (its port is free for another to take).
    pub fn stop(&mut self) {
        self.child.stop();
    }
}
