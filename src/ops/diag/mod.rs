//! `cpe-agent diag`: the field technician's checks.
//!
//! Each check gives PASS, WARN or FAIL with one line of reason and one line of
//! what to do. The exit code is 0 when all pass, 1 with warnings only, 2 with
//! any failure. The checks, in order: the config file, the system clock, the
//! LAN interfaces and the default route, the broker (DNS, TCP, TLS, MQTT
//! CONNECT), each known device over SNMP, optionally a sweep of the LAN, and
//! the daemon (running, last report, queue, config, recent errors) from the
//! status file it keeps (see [`crate::report::status_file`]).
//!
//! Nothing here can hang: every network step has its own timeout and the
//! whole run ends by `--timeout`; a check still running then is a FAIL.
//! Secrets (MQTT password, communities, SNMPv3 passphrases) are masked in
//! every line printed.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{self, Config, Credential, MqttConfig, SnmpVersion, TargetSet};
use crate::discover::{self, lan, Plan, Progress};
use crate::message::{Device, Kind};
use crate::report::status_file::{self, AgentStatus, KnownDevice};
use crate::snmp::{Client, Oid, Timing};
use crate::text::clip;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub reason: String,
    pub action: String,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            reason: reason.into(),
            action: "none".into(),
        }
    }

    fn pass(name: impl Into<String>, reason: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, reason)
    }

    fn warn(
        name: impl Into<String>,
        reason: impl Into<String>,
        action: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, reason).action(action)
    }

    fn fail(
        name: impl Into<String>,
        reason: impl Into<String>,
        action: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, reason).action(action)
    }

    fn action(mut self, action: impl Into<String>) -> Check {
        self.action = action.into();
        self
    }
}

/// What `cpe-agent diag` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    pub json: bool,
    /// The whole run ends by then.
    pub timeout: Duration,
    /// Also sweep the LAN and compare with the daemon's known devices.
    pub sweep: bool,
}

/// The longest any single network step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: u64 = 30;
/// 2025-01-01T00:00:00Z: no clock showing an earlier time can be right.
const CLOCK_FLOOR: u64 = 1_735_689_600;
/// 2100-01-01T00:00:00Z: later than any plausible clock.
const CLOCK_CEILING: u64 = 4_102_444_800;
/// A status file older than this means the daemon stopped updating it.
const STATUS_STALE_S: u64 = 120;
/// No acknowledged report for this long is a warning.
const REPORT_STALE_S: u64 = 15 * 60;
/// Records queued for longer than this are not getting through.
const QUEUE_STALE_S: u64 = 10 * 60;
const MASK: &str = "********";

/// Runs the checks, prints them, and returns the exit code.
pub fn run(options: &Options) -> i32 {
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cpe-agent diag: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let (checks, secrets) = runtime.block_on(run_checks(options, started + options.timeout));
    // Blocking helpers (TLS handshakes, systemctl) are bounded by their own timeouts.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let checks = mask(checks, &secrets);
    let worst = worst(&checks);
    if options.json {
        println!("{}", render_json(&checks, started.elapsed()));
    } else {
        print!(
            "{}",
            render(
                &checks,
                started.elapsed(),
                colour_wanted(std::io::stdout().is_terminal())
            )
        );
    }
    exit_code(worst)
}

fn worst(checks: &[Check]) -> Status {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass)
}

fn exit_code(worst: Status) -> i32 {
    match worst {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

/// Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
fn colour_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn run_checks(options: &Options, deadline: Instant) -> (Vec<Check>, Vec<String>) {
    let mut checks = Vec::new();
    let loaded = check_config(&options.config_path);
    checks.push(loaded.0);
    let config = loaded.1;
    let secrets = config.as_ref().map(secrets_of).unwrap_or_default();
    checks.push(check_clock(
        SystemTime::now(),
        std::env::current_exe()
            .and_then(std::fs::metadata)
            .and_then(|m| m.modified())
            .ok(),
    ));
    let settings = config.clone().unwrap_or_default();
    checks.push(check_lan(&settings.discovery));
    checks.push(check_route(&lan::default_route_interfaces()));
    let status = status_file::read(&settings.storage.state_dir);
    if let Some(config) = &config {
        let config = Arc::new(config.clone());
        let known = status
            .as_ref()
            .map(|s| s.known_devices.clone())
            .unwrap_or_default();
        let (broker, devices, sweep) = tokio::join!(
            bounded(
                "broker",
                deadline,
                check_broker(Arc::clone(&config), deadline)
            ),
            bounded(
                "devices",
                deadline,
                check_devices(Arc::clone(&config), known.clone(), status.is_ok())
            ),
            async {
                if options.sweep {
                    let show_bar = !options.json && std::io::stderr().is_terminal();
                    bounded(
                        "sweep",
                        deadline,
                        check_sweep(Arc::clone(&config), known.clone(), show_bar),
                    )
                    .await
                } else {
                    Vec::new()
                }
            }
        );
        checks.extend(broker);
        checks.extend(devices);
        checks.extend(sweep);
    } else {
        checks.push(Check::fail(
            "broker",
            "not checked: the config file could not be read",
            "fix the config file first",
        ));
    }
    checks.extend(check_daemon(&settings.storage.state_dir, &status, deadline));
    (checks, secrets)
}

/// Runs a group of checks until the deadline; a group still running then is a FAIL.
async fn bounded(
    what: &str,
    deadline: Instant,
    checks: impl std::future::Future<Output = Vec<Check>>,
) -> Vec<Check> {
    match tokio::time::timeout_at(deadline.into(), checks).await {
        Ok(checks) => checks,
        Err(_) => vec![Check::fail(
            what,
            "not finished within --timeout",
            "run again with a longer --timeout to see where it stalls",
        )],
    }
}

/// The earlier of the deadline and `STEP_TIMEOUT` from now, as a duration.
fn step(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(STEP_TIMEOUT)
}

// ---------------------------------------------------------------- config

fn check_config(path: &Path) -> (Check, Option<Config>) {
    match crate::discover::load_config(path, None) {
        Ok(config) => (
            Check::pass("config", format!("{} is valid", path.display())),
            Some(config),
        ),
        Err(e) => (
            Check::fail(
                "config",
                e.to_string(),
                format!(
                    "fix the file, then run: cpe-agent config check {}",
                    path.display()
                ),
            ),
            None,
        ),
    }
}

/// Every secret in the config, to be masked wherever it might appear.
fn secrets_of(config: &Config) -> Vec<String> {
    let mut secrets: Vec<String> = config
        .mqtt
        .password
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    for c in &config.credentials {
        for s in [&c.community, &c.auth_password, &c.priv_password]
            .into_iter()
            .flatten()
        {
            secrets.push(s.expose().to_string());
        }
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn mask(mut checks: Vec<Check>, secrets: &[String]) -> Vec<Check> {
    for check in &mut checks {
        for secret in secrets {
            check.reason = check.reason.replace(secret.as_str(), MASK);
            check.action = check.action.replace(secret.as_str(), MASK);
        }
    }
    checks
}

// ---------------------------------------------------------------- clock

fn check_clock(now: SystemTime, binary_built: Option<SystemTime>) -> Check {
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let shown = rfc3339(now_s);
    let action = "set the clock (check NTP: timedatectl status, or ntpd/chrony); TLS to the broker fails with a wrong clock";
    if now_s < CLOCK_FLOOR {
        return Check::fail(
            "clock",
            format!("the clock says {shown}, before 2025: it is wrong"),
            action,
        );
    }
    if let Some(built) = binary_built
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
    {
        // A day's slack for time zones and clock skew of the build machine.
        if now_s + 86_400 < built {
            return Check::fail(
                "clock",
                format!(
                    "the clock says {shown}, before this binary was installed ({})",
                    rfc3339(built)
                ),
                action,
            );
        }
    }
    if now_s > CLOCK_CEILING {
        return Check::fail(
            "clock",
            format!("the clock says {shown}, absurdly far in the future"),
            action,
        );
    }
    Check::pass("clock", format!("{shown} (plausible)"))
}

fn rfc3339(unix_s: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_s)).to_string()
}

// ---------------------------------------------------------------- LAN and route

fn check_lan(settings: &config::DiscoveryConfig) -> Check {
    let wan = lan::default_route_interfaces();
    let interfaces: Vec<String> = lan::ipv4_interfaces()
        .unwrap_or_default()
        .into_iter()
        .map(|ifa| {
            let role = if wan.contains(&ifa.name) {
                " (WAN)"
            } else if settings.exclude_interfaces.contains(&ifa.name) {
                " (excluded)"
            } else {
                ""
            };
            format!("{} {}/{}{role}", ifa.name, ifa.address, ifa.prefix)
        })
        .collect();
    let shown = if interfaces.is_empty() {
        "no IPv4 interface up".to_string()
    } else {
        interfaces.join(", ")
    };
    let targets: Vec<String> = settings.targets.iter().map(ToString::to_string).collect();
    if !settings.lan_subnets {
        return Check::pass(
            "lan",
            format!(
                "discovery.lan_subnets is off; targets: {}; interfaces: {shown}",
                if targets.is_empty() {
                    "none".to_string()
                } else {
                    targets.join(", ")
                }
            ),
        );
    }
    let subnets: Vec<String> = lan::lan_subnets(settings)
        .iter()
        .map(ToString::to_string)
        .collect();
    if subnets.is_empty() && targets.is_empty() {
        return Check::warn(
            "lan",
            format!("no LAN subnet to sweep; interfaces: {shown}"),
            "check that the LAN interface (bridge) is up and has an address, or set discovery.targets",
        );
    }
    Check::pass(
        "lan",
        format!(
            "sweeping {}; interfaces: {shown}",
            subnets
                .into_iter()
                .chain(targets)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn check_route(default_interfaces: &[String]) -> Check {
    if default_interfaces.is_empty() {
        Check::fail(
            "route",
            "no default route: the gateway has no way to the provider",
            "check the WAN link (cable, DSL/DOCSIS sync) and that it got an address (DHCP/PPPoE)",
        )
    } else {
        Check::pass(
            "route",
            format!("default route via {}", default_interfaces.join(", ")),
        )
    }
}

// ---------------------------------------------------------------- broker

async fn check_broker(config: Arc<Config>, deadline: Instant) -> Vec<Check> {
    let mqtt = &config.mqtt;
    let mut checks = Vec::new();
    let endpoint = format!("{}:{}", mqtt.host, mqtt.port);

    // DNS
    let lookup = tokio::time::timeout(
        step(deadline),
        tokio::net::lookup_host((mqtt.host.as_str(), mqtt.port)),
    )
    .await;
    let addrs: Vec<SocketAddr> = match lookup {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            checks.push(Check::fail(
                "broker.dns",
                format!("cannot resolve {}: {e}", mqtt.host),
                "check mqtt.host, and the gateway's DNS servers (/etc/resolv.conf); with the WAN down, nothing resolves",
            ));
            return checks;
        }
        Err(_) => {
            checks.push(Check::fail(
                "broker.dns",
                format!("resolving {} took longer than {STEP_TIMEOUT:?}", mqtt.host),
                "check the gateway's DNS servers (/etc/resolv.conf) and the WAN link",
            ));
            return checks;
        }
    };
    if addrs.is_empty() {
        checks.push(Check::fail(
            "broker.dns",
            format!("{} resolves to no address", mqtt.host),
            "check mqtt.host and the provider's DNS records",
        ));
        return checks;
    }
    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    checks.push(Check::pass(
        "broker.dns",
        format!("{} resolves to {}", mqtt.host, shown.join(", ")),
    ));

    // TCP
    let mut connected = None;
    let mut last_error = String::new();
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(step(deadline), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                connected = Some((*addr, started.elapsed()));
                break;
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no answer within {STEP_TIMEOUT:?}"),
        }
    }
    let Some((addr, took)) = connected else {
        checks.push(Check::fail(
            "broker.tcp",
            format!("cannot connect to {endpoint} ({}): {last_error}", shown.join(", ")),
            "is the broker running, is mqtt.port right, does a firewall block it? (the WAN may be down)",
        ));
        return checks;
    };
    checks.push(Check::pass(
        "broker.tcp",
        format!("connected to {addr} in {} ms", took.as_millis()),
    ));

    // TLS
    if mqtt.tls.enabled {
        let tls = {
            let mqtt = mqtt.clone();
            let timeout = step(deadline);
            tokio::task::spawn_blocking(move || check_tls(addr, &mqtt, timeout, SystemTime::now()))
                .await
                .unwrap_or_else(|e| {
                    Check::fail(
                        "broker.tls",
                        format!("the TLS check failed: {e}"),
                        "report this as a bug",
                    )
                })
        };
        let failed = tls.status == Status::Fail;
        checks.push(tls);
        if failed {
            return checks;
        }
    } else {
        checks.push(Check::pass(
            "broker.tls",
            "TLS is off (mqtt.tls.enabled = false): nothing to check",
        ));
    }

    // MQTT CONNECT
    checks.push(check_mqtt_connect(&config, deadline).await);
    checks
}

/// A TLS handshake as the agent makes it: the broker's chain against
/// `mqtt.tls.ca_file`, its name against `mqtt.host`, and its expiry.
fn check_tls(addr: SocketAddr, mqtt: &MqttConfig, timeout: Duration, now: SystemTime) -> Check {
    const NAME: &str = "broker.tls";
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let Some(ca_path) = &mqtt.tls.ca_file else {
        return Check::fail(
            NAME,
            "mqtt.tls.enabled is on but mqtt.tls.ca_file is not set",
            "set mqtt.tls.ca_file to the CA that signs the broker's certificate",
        );
    };
    let read_certs = |path: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>, Check> {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
            .map_err(|e| e.to_string())
            .and_then(|it| it.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string()));
        match certs {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            Ok(_) => Err(Check::fail(
                NAME,
                format!("{what} {} holds no PEM certificate", path.display()),
                format!("put the right PEM file in {what}"),
            )),
            Err(e) => Err(Check::fail(
                NAME,
                format!("cannot read {what} {}: {e}", path.display()),
                format!("check {what} (path, permissions, PEM format)"),
            )),
        }
    };
    let ca = match read_certs(ca_path, "mqtt.tls.ca_file") {
        Ok(ca) => ca,
        Err(check) => return check,
    };
    let mut roots = rustls::RootCertStore::empty();
    let (_added, ignored) = roots.add_parsable_certificates(ca);
    if roots.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "mqtt.tls.ca_file {} holds no usable CA certificate ({ignored} ignored)",
                ca_path.display()
            ),
            "put the provider's broker CA (PEM) in mqtt.tls.ca_file",
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots),
        Err(e) => {
            return Check::fail(
                NAME,
                format!("TLS set-up failed: {e}"),
                "report this as a bug",
            )
        }
    };
    let mut client_cert_expiry = None;
    let tls_config = match (&mqtt.tls.cert_file, &mqtt.tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = match read_certs(cert, "mqtt.tls.cert_file") {
                Ok(chain) => chain,
                Err(check) => return check,
            };
            client_cert_expiry = chain.first().and_then(|c| not_after(c.as_ref()));
            let key = match PrivateKeyDer::from_pem_file(key) {
                Ok(key) => key,
                Err(e) => {
                    return Check::fail(
                        NAME,
                        format!("cannot read mqtt.tls.key_file {}: {e}", key.display()),
                        "check mqtt.tls.key_file (path, permissions, PEM format)",
                    )
                }
            };
            match builder.with_client_auth_cert(chain, key) {
                Ok(c) => c,
                Err(e) => {
                    return Check::fail(
                        NAME,
                        format!("the client certificate and key do not fit: {e}"),
                        "check that mqtt.tls.cert_file and mqtt.tls.key_file belong together",
                    )
                }
            }
        }
        _ => builder.with_no_client_auth(),
    };
    let Ok(server_name) = ServerName::try_from(mqtt.host.clone()) else {
        return Check::fail(
            NAME,
            format!("{:?} is not a valid TLS server name", mqtt.host),
            "set mqtt.host to the broker's DNS name",
        );
    };
    let mut conn = match rustls::ClientConnection::new(Arc::new(tls_config), server_name) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("TLS set-up failed: {e}"),
                "report this as a bug",
            )
        }
    };
    let mut sock = match std::net::TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot connect to {addr} for the TLS handshake: {e}"),
                "is the broker running, and is mqtt.port its TLS port?",
            )
        }
    };
    let _ = sock.set_read_timeout(Some(timeout.max(Duration::from_millis(100))));
    let _ = sock.set_write_timeout(Some(timeout.max(Duration::from_millis(100))));
    let started = Instant::now();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return describe_tls_failure(&e, mqtt, ca_path);
        }
    }
    // TLS 1.3: a broker that rejects the client certificate says so just
    // after the handshake; give it a moment to.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    if let Err(e) = conn.complete_io(&mut sock) {
        if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut {
            if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return describe_tls_failure_text(
                    &format!("{inner:?}"),
                    &inner.to_string(),
                    mqtt,
                    ca_path,
                );
            }
        }
    }
    let took = started.elapsed();
    let leaf_expiry = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| not_after(c.as_ref()));
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "TLS".into());
    let days_left = |expiry: u64| expiry.saturating_sub(now_s) / 86_400;
    if let Some(expiry) = leaf_expiry {
        if expiry < now_s + EXPIRY_WARNING_DAYS * 86_400 {
            return Check::warn(
                NAME,
                format!(
                    "the broker's certificate expires in {} days ({}); after that the agent cannot connect",
                    days_left(expiry),
                    rfc3339(expiry)
                ),
                "tell the provider's NOC to renew the broker's certificate",
            );
        }
    }
    if let Some(expiry) = client_cert_expiry {
        if expiry < now_s + EXPIRY_WARNING_DAYS * 86_400 {
            return Check::warn(
                NAME,
                format!(
                    "the agent's client certificate (mqtt.tls.cert_file) expires in {} days ({})",
                    days_left(expiry),
                    rfc3339(expiry)
                ),
                "install a renewed client certificate in mqtt.tls.cert_file",
            );
        }
    }
    Check::pass(
        NAME,
        format!(
            "{version} handshake in {} ms; certificate valid for {}{}",
            took.as_millis(),
            mqtt.host,
            leaf_expiry
                .map(|e| format!(" until {} ({} days)", rfc3339(e), days_left(e)))
                .unwrap_or_default()
        ),
    )
}

fn describe_tls_failure(e: &std::io::Error, mqtt: &MqttConfig, ca_path: &Path) -> Check {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(inner) => {
            describe_tls_failure_text(&format!("{inner:?}"), &inner.to_string(), mqtt, ca_path)
        }
        None => {
            let (reason, action) = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => (
                    "the broker did not complete the TLS handshake in time".to_string(),
                    "check that mqtt.port is the broker's TLS port",
                ),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => (
                    format!("the broker closed the connection during the TLS handshake: {e}"),
                    "check that mqtt.port is the broker's TLS port, and the client certificate (mqtt.tls.cert_file)",
                ),
                _ => (
                    format!("the TLS handshake failed: {e}"),
                    "check that mqtt.port is the broker's TLS port",
                ),
            };
            Check::fail("broker.tls", reason, action)
        }
    }
}

fn describe_tls_failure_text(debug: &str, shown: &str, mqtt: &MqttConfig, ca_path: &Path) -> Check {
    let (reason, action) = if debug.contains("UnknownIssuer") || debug.contains("BadSignature") {
        (
            format!(
                "the broker's certificate is not signed by the CA in mqtt.tls.ca_file ({}) [{shown}]",
                ca_path.display()
            ),
            "install the provider's broker CA as mqtt.tls.ca_file (or something intercepts the connection)".to_string(),
        )
    } else if debug.contains("NotValidForName") {
        (
            format!(
                "the broker's certificate is not valid for the host name {} [{shown}]",
                mqtt.host
            ),
            "set mqtt.host to the name the broker's certificate was issued for".to_string(),
        )
    } else if debug.contains("NotValidYet") {
        (
            format!("the broker's certificate is not valid yet: the system clock is probably behind [{shown}]"),
            "set the clock (NTP), then run diag again".to_string(),
        )
    } else if debug.contains("Expired") && !debug.contains("AlertReceived") {
        (
            format!("the broker's certificate has expired (or the clock is ahead) [{shown}]"),
            "check the clock; if it is right, the provider must renew the broker's certificate"
                .to_string(),
        )
    } else if debug.contains("AlertReceived") {
        (
            format!("the broker refused the TLS handshake: it rejected the client certificate [{shown}]"),
            "check mqtt.tls.cert_file and mqtt.tls.key_file (signed by the provider's CA, not expired)".to_string(),
        )
    } else {
        (
            format!("the TLS handshake failed: {shown}"),
            "check mqtt.tls.* and that mqtt.port is the broker's TLS port".to_string(),
        )
    };
    Check::fail("broker.tls", reason, action)
}

/// MQTT CONNECT with the configured credentials, as `{agent_id}-diag` so the
/// running daemon's session is left alone.
async fn check_mqtt_connect(config: &Config, deadline: Instant) -> Check {
    const NAME: &str = "broker.mqtt";
    let agent_id = crate::identity::agent_id(config.agent.id.as_deref())
        .unwrap_or_else(|_| "cpe-agent".to_string());
    let client_id = format!("{agent_id}-diag");
    let prefix = config.mqtt.topic_prefix.replace("{agent_id}", &agent_id);
    // An empty retained will on a topic of our own: harmless if it fires.
    let will = crate::report::mqtt::Will {
        topic: format!("{prefix}/diag"),
        payload: Vec::new(),
    };
    let mut session = match crate::report::mqtt::Session::open(&client_id, &config.mqtt, will, 10) {
        Ok(s) => s,
        Err(e) => return Check::fail(NAME, e, "fix mqtt.tls.* in the config"),
    };
    let started = Instant::now();
    let timeout = step(deadline).max(Duration::from_millis(100));
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            match session.next().await {
                Ok(crate::report::mqtt::Happening::Connected) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let check = match outcome {
        Ok(Ok(())) => Check::pass(
            NAME,
            format!(
                "CONNECT accepted for client id {client_id}{} in {} ms",
                config
                    .mqtt
                    .username
                    .as_ref()
                    .map(|u| format!(" as user {u}"))
                    .unwrap_or_default(),
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => {
            let action = if e.contains("refused the connection") {
                "check mqtt.username and mqtt.password with the provider, and that this agent id may connect"
            } else {
                "see the reason; check mqtt.* in the config"
            };
            Check::fail(NAME, format!("CONNECT failed: {e}"), action)
        }
        Err(_) => Check::fail(
            NAME,
            format!("no CONNACK within {} ms", timeout.as_millis()),
            "the broker accepts connections but does not answer MQTT: check mqtt.port and mqtt.protocol",
        ),
    };
    if check.status == Status::Pass {
        session.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(h) = session.next().await {
                if h == crate::report::mqtt::Happening::DisconnectSent {
                    break;
                }
            }
        })
        .await;
    }
    check
}

// ---------------------------------------------------------------- devices

/// The devices to check: the daemon's known devices, else the single hosts
/// in `discovery.targets`.
fn devices_to_check(
    config: &Config,
    known: Vec<KnownDevice>,
    have_status: bool,
) -> Vec<(String, SocketAddr, Option<String>)> {
    if have_status && !known.is_empty() {
        return known
            .into_iter()
            .map(|d| (d.id.clone(), d.socket_addr(), Some(d.credential)))
            .collect();
    }
    config
        .discovery
        .targets
        .iter()
        .filter_map(|t| match &t.set {
            TargetSet::Host(_) => t.addresses().next().map(|ip| {
                let addr = SocketAddr::new(ip.into(), t.port);
                (addr.to_string(), addr, None)
            }),
            _ => None,
        })
        .collect()
}

async fn check_devices(
    config: Arc<Config>,
    known: Vec<KnownDevice>,
    have_status: bool,
) -> Vec<Check> {
    let devices = devices_to_check(&config, known, have_status);
    if devices.is_empty() {
        return vec![Check::warn(
            "devices",
            "no known devices: no daemon status file with devices, and no single hosts in discovery.targets",
            "start the daemon and let it sweep, or run: cpe-agent diag --sweep",
        )];
    }
    let credentials: Arc<[Credential]> = config.credentials_or_default().into();
    let timing = Timing {
        timeout: config.discovery.timeout.get().min(STEP_TIMEOUT),
        retries: config.discovery.retries.min(1),
    };
    let mut set = tokio::task::JoinSet::new();
    for (index, (id, addr, credential)) in devices.into_iter().enumerate() {
        let credentials = Arc::clone(&credentials);
        set.spawn(async move {
            (
                index,
                check_device(&id, addr, credential.as_deref(), &credentials, timing).await,
            )
        });
    }
    let mut results = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(result) = done {
            results.push(result);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, c)| c).collect()
}

fn describe_credential(c: &Credential) -> String {
    match c.version {
        SnmpVersion::V3 => format!(
            "\"{}\" (v3 user {})",
            c.name,
            c.user.as_deref().unwrap_or("-")
        ),
        v => format!(
            "\"{}\" ({} community {MASK})",
            c.name,
            format!("{v:?}").to_lowercase()
        ),
    }
}

async fn snmp_system(
    addr: SocketAddr,
    credential: &Credential,
    timing: Timing,
) -> Result<(Duration, String), String> {
    let mut client = Client::new(addr, credential.clone(), timing);
    let sys_descr: Oid = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1, 1, 0]);
    let started = Instant::now();
    let varbinds = client.get(&[sys_descr]).await.map_err(|e| match e {
        crate::snmp::SnmpError::Socket(why) if why.contains("Receive") => {
            "no SNMP agent listens there: port unreachable".to_string()
        }
        e => e.to_string(),
    })?;
    let descr = varbinds
        .first()
        .and_then(|(_, v)| crate::snmp::display_value(v))
        .unwrap_or_else(|| "-".into());
    Ok((started.elapsed(), descr))
}

async fn check_device(
    id: &str,
    addr: SocketAddr,
    credential: Option<&str>,
    credentials: &[Credential],
    timing: Timing,
) -> Check {
    let name = format!("device {id}");
    let known = credential.and_then(|n| credentials.iter().find(|c| c.name == n));
    if let (Some(n), None) = (credential, known) {
        return Check::fail(
            name,
            format!("{addr}: the daemon reached it with credential \"{n}\", which is no longer in the config"),
            "add the credential back, or let the daemon sweep again",
        );
    }
    let first: Vec<&Credential> = match known {
        Some(c) => vec![c],
        None => credentials.iter().collect(),
    };
    let mut errors = Vec::new();
    for c in &first {
        match snmp_system(addr, c, timing).await {
            Ok((latency, descr)) => {
                return Check::pass(
                    name,
                    format!(
                        "{addr} answers to {} in {} ms: {}",
                        describe_credential(c),
                        latency.as_millis(),
                        clip(&descr, 60)
                    ),
                )
            }
            Err(e) => errors.push(format!("{}: {e}", describe_credential(c))),
        }
    }
    // Does it answer to another of the configured credentials?
    if let Some(known) = known {
        for other in credentials.iter().filter(|c| c.name != known.name) {
            if snmp_system(addr, other, timing).await.is_ok() {
                return Check::fail(
                    name,
                    format!(
                        "{addr} does not answer to {} but does to {}",
                        describe_credential(known),
                        describe_credential(other)
                    ),
                    "the device's credentials changed: the daemon will switch at its next sweep (or restart it)",
                );
            }
        }
    }
    Check::fail(
        name,
        format!(
            "{addr} does not answer to {} (a wrong community / v3 user, or the device is off)",
            errors.join("; ")
        ),
        "check the device is on and its SNMP agent enabled, and that the community / v3 user in the config match the device's",
    )
}

// ---------------------------------------------------------------- sweep

async fn check_sweep(config: Arc<Config>, known: Vec<KnownDevice>, show_bar: bool) -> Vec<Check> {
    let plan = Plan::new(&config).await;
    if plan.addresses.is_empty() {
        return vec![Check::warn(
            "sweep",
            "nothing to sweep: no LAN subnet and no discovery.targets",
            "set discovery.targets, or check the LAN interface",
        )];
    }
    let (_trigger, mut shutdown) = crate::shutdown::channel();
    let bar = if show_bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(plan.addresses.len() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} probed")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.tick();
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let step = || bar.inc(1);
    let progress = Progress {
        found: None,
        probed: Some(&step),
    };
    let devices = discover::sweep_once(&plan, &config.discovery, progress, &mut shutdown)
        .await
        .devices;
    bar.finish_and_clear();
    let is_known = |d: &Device| {
        known
            .iter()
            .any(|k| k.id == d.id || k.socket_addr() == d.socket_addr())
    };
    let new: Vec<String> = devices
        .iter()
        .filter(|d| !is_known(d))
        .map(|d| {
            format!(
                "{} {}",
                d.socket_addr(),
                d.inventory.classification.kind.as_str()
            )
        })
        .collect();
    let lost: Vec<String> = known
        .iter()
        .filter(|k| {
            !devices
                .iter()
                .any(|d| k.id == d.id || k.socket_addr() == d.socket_addr())
        })
        .map(|k| format!("{} ({})", k.socket_addr(), k.id))
        .collect();
    let unclassified: Vec<String> = devices
        .iter()
        .filter(|d| d.inventory.classification.kind == Kind::Other)
        .map(|d| d.socket_addr().to_string())
        .collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let reason = format!(
        "{} device(s) among {} address(es) in {:.1} s; new: {}; lost: {}; unclassified: {}",
        devices.len(),
        plan.addresses.len(),
        started.elapsed().as_secs_f64(),
        list(&new),
        list(&lost),
        list(&unclassified)
    );
    if !lost.is_empty() {
        vec![Check::warn(
            "sweep",
            reason,
            "check the lost devices are on and connected; the daemon drops them after polling.lost_after missed polls",
        )]
    } else if !unclassified.is_empty() {
        vec![Check::warn(
            "sweep",
            reason,
            "add a rule for the unclassified devices (discovery.rules_file; see cpe-agent discover --explain)",
        )]
    } else {
        vec![Check::pass("sweep", reason)]
    }
}

// ---------------------------------------------------------------- daemon

/// Whether the daemon runs: systemd when it manages this system, else the pid file.
fn daemon_running(state_dir: &Path, deadline: Instant) -> Result<String, String> {
    if Path::new("/run/systemd/system").is_dir() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = std::process::Command::new("systemctl")
                .args(["is-active", "cpe-agent"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output();
            let _ = tx.send(out);
        });
        if let Ok(Ok(out)) = rx.recv_timeout(step(deadline).max(Duration::from_millis(100))) {
            if String::from_utf8_lossy(&out.stdout).trim() == "active" {
                return Ok("running (systemctl is-active cpe-agent: active)".into());
            }
        }
    }
    let pid_path = status_file::pid_path(state_dir);
    match status_file::read_pid_file(state_dir) {
        Some(pid) if process_alive(pid) => Ok(format!("running (pid {pid})")),
        Some(pid) => Err(format!(
            "not running (stale pid file {} names pid {pid})",
            pid_path.display()
        )),
        None => Err(format!(
            "not running (not active in systemd, no pid in {})",
            pid_path.display()
        )),
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn age(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

fn check_daemon(
    state_dir: &Path,
    status: &Result<AgentStatus, String>,
    deadline: Instant,
) -> Vec<Check> {
    let mut checks = vec![match daemon_running(state_dir, deadline) {
        Ok(reason) => Check::pass("daemon", reason),
        Err(reason) => Check::fail(
            "daemon",
            reason,
            "start it (systemctl start cpe-agent, or /etc/init.d/cpe-agent start) and read its log",
        ),
    }];
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            checks.push(Check::warn(
                "daemon.status",
                format!("no status from the daemon: {e}"),
                "start the daemon; it writes this file every few seconds",
            ));
            return checks;
        }
    };
    checks.extend(status_checks(status, status_file::unix_now()));
    checks
}

fn status_checks(status: &AgentStatus, now: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let stale = now.saturating_sub(status.updated_at);
    if stale > STATUS_STALE_S {
        checks.push(Check::warn(
            "daemon.status",
            format!(
                "the status file was last written {} ago: the daemon is stopped or stuck",
                age(stale)
            ),
            "restart the daemon and read its log",
        ));
    }
    checks.push(match status.last_report_at {
        Some(at) if now.saturating_sub(at) <= REPORT_STALE_S => Check::pass(
            "daemon.report",
            format!(
                "last report acknowledged {} ago ({})",
                age(now.saturating_sub(at)),
                rfc3339(at)
            ),
        ),
        Some(at) => Check::warn(
            "daemon.report",
            format!(
                "last report acknowledged {} ago ({})",
                age(now.saturating_sub(at)),
                rfc3339(at)
            ),
            "reports are not getting through: see the broker checks above",
        ),
        None => Check::warn(
            "daemon.report",
            format!(
                "no report acknowledged since the daemon started {} ago",
                age(now.saturating_sub(status.started_at))
            ),
            "see the broker checks above",
        ),
    });
    let oldest = status.queue_oldest_age_s.unwrap_or(0);
    checks.push(if status.queue_records == 0 {
        Check::pass("daemon.queue", "empty")
    } else if oldest > QUEUE_STALE_S {
        Check::warn(
            "daemon.queue",
            format!(
                "{} record(s) queued, the oldest for {}",
                status.queue_records,
                age(oldest)
            ),
            "reports are not getting through: see the broker checks above",
        )
    } else {
        Check::pass(
            "daemon.queue",
            format!(
                "{} record(s) queued, the oldest for {}",
                status.queue_records,
                age(oldest)
            ),
        )
    });
    let version = status.config_version.as_deref().unwrap_or("-");
    checks.push(match status.config_status.as_deref() {
        None | Some("applied") | Some("") => {
            Check::pass("daemon.config", format!("config version {version} applied"))
        }
        Some(other) => Check::warn(
            "daemon.config",
            format!("config version {version}: {other}"),
            "fix the config file (cpe-agent config check), then reload: systemctl reload cpe-agent",
        ),
    });
    checks.push(match status.recent_errors.last() {
        None => Check::pass("daemon.errors", "no recent errors"),
        Some(last) => Check::warn(
            "daemon.errors",
            format!(
                "{} recent error(s); the last: {}",
                status.recent_errors.len(),
                clip(last, 120)
            ),
            "read the daemon's log (journalctl -u cpe-agent, or logread)",
        ),
    });
    checks
}

// ---------------------------------------------------------------- certificates

/// A certificate's notAfter (seconds since the epoch), read from its DER.
pub fn not_after(cert_der: &[u8]) -> Option<u64> {
    let (_, cert, _) = der_item(cert_der)?;
    let (_, tbs, _) = der_item(cert)?;
    let (tag, _, after_version) = der_item(tbs)?;
    let rest = if tag == 0xa0 { after_version } else { tbs };
    let (_, _, rest) = der_item(rest)?; // serialNumber
    let (_, _, rest) = der_item(rest)?; // signature algorithm
    let (_, _, rest) = der_item(rest)?; // issuer
    let (_, validity, _) = der_item(rest)?;
    let (_, _, rest) = der_item(validity)?; // notBefore
    let (tag, time, _) = der_item(rest)?;
    der_time(tag, time)
}

/// One DER item: (tag, contents, what follows).
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn der_time(tag: u8, bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(0..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let two = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (two(0)?, two(2)?, two(4)?, two(6)?, two(8)?);
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------- output

/// The checks as the JSON `diag --json` prints, for the remote `diag`
/// command: run inside the daemon, secrets masked the same way.
pub async fn checks_json(options: &Options) -> serde_json::Value {
    let started = Instant::now();
    let (checks, secrets) = run_checks(options, started + options.timeout).await;
    let checks = mask(checks, &secrets);
    json_value(&checks, started.elapsed())
}

fn render_json(checks: &[Check], elapsed: Duration) -> String {
    serde_json::to_string_pretty(&json_value(checks, elapsed)).unwrap_or_default()
}

fn json_value(checks: &[Check], elapsed: Duration) -> serde_json::Value {
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    serde_json::json!({
        "status": worst(checks),
        "exit_code": exit_code(worst(checks)),
        "summary": { "pass": count(Status::Pass), "warn": count(Status::Warn), "fail": count(Status::Fail) },
        "elapsed_ms": elapsed.as_millis() as u64,
        "checks": checks,
    })
}

fn render(checks: &[Check], elapsed: Duration, colour: bool) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let paint = |status: Status, text: &str| -> String {
        if !colour {
            return text.to_string();
        }
        let code = match status {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31",
        };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    };
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:<width$}  {}\n",
            paint(c.status, c.status.label()),
            c.name,
            c.reason
        ));
        if c.status != Status::Pass {
            out.push_str(&format!("      {:<width$}  -> {}\n", "", c.action));
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let summary = format!(
        "{} passed, {} warnings, {} failed in {:.1} s",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        elapsed.as_secs_f64()
    );
    out.push_str(&paint(worst(checks), &summary));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_result() {
        assert_eq!(exit_code(Status::Pass), 0);
        assert_eq!(exit_code(Status::Warn), 1);
        assert_eq!(exit_code(Status::Fail), 2);
    }

    #[test]
    fn a_missing_config_fails_with_what_to_do() {
        let (c, config) = check_config(Path::new("/nonexistent/agent.toml"));
        assert!(config.is_none());
        assert_eq!(c.status, Status::Fail);
        assert!(c.action.contains("cpe-agent config check"));
        assert!(render(&[c], Duration::ZERO, false).contains("0 passed, 0 warnings, 1 failed"));
    }

    #[test]
    fn the_clock_must_be_plausible() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(check_clock(at(1_700_000_000), None).status, Status::Fail);
        assert_eq!(check_clock(at(1_790_000_000), None).status, Status::Pass);
        assert_eq!(
            check_clock(at(1_790_000_000), Some(at(1_800_000_000))).status,
            Status::Fail
        );
        assert_eq!(check_clock(at(5_000_000_000), None).status, Status::Fail);
    }

    #[test]
    fn colour_only_where_wanted() {
        let checks = [
            Check::pass("a", "fine"),
            Check::fail("b", "broken", "fix it"),
        ];
        let plain = render(&checks, Duration::ZERO, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("FAIL  b  broken\n"), "{plain}");
        assert!(plain.contains("-> fix it"), "{plain}");
        let coloured = render(&checks, Duration::ZERO, true);
        assert!(coloured.contains("\x1b[1;31mFAIL\x1b[0m"), "{coloured}");
        assert!(!colour_wanted(false));
    }

    #[test]
    fn secrets_are_masked() {
        let checks = vec![Check::fail("x", "community s3cret refused", "use s3cret")];
        let masked = mask(checks, &["s3cret".to_string()]);
        assert_eq!(masked[0].reason, "community ******** refused");
        assert_eq!(masked[0].action, "use ********");
    }

    #[test]
    fn der_times_are_read() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"250101000000Z"), Some(CLOCK_FLOOR));
        assert_eq!(der_time(0x18, b"21000101000000Z"), Some(CLOCK_CEILING));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn status_file_findings() {
        let now = 2_000_000_000;
        let mut status = AgentStatus {
            started_at: now - 3600,
            updated_at: now - 2,
            last_report_at: Some(now - 30),
            config_version: Some("v7".into()),
            config_status: Some("applied".into()),
            ..AgentStatus::default()
        };
        assert!(status_checks(&status, now)
            .iter()
            .all(|c| c.status == Status::Pass));
        status.queue_records = 12;
        status.queue_oldest_age_s = Some(3600);
        status.last_report_at = Some(now - 3600);
        status.push_error("broker unreachable");
        status.config_status = Some("rejected: bad key".into());
        status.updated_at = now - 600;
        let checks = status_checks(&status, now);
        let warned: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            warned,
            [
                "daemon.status",
                "daemon.report",
                "daemon.queue",
                "daemon.config",
                "daemon.errors"
            ]
        );
    }
}
