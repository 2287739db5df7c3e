//! The broker, step by step as a technician would test it: DNS, TCP, TLS
//! (with the certificate's expiry read from its DER), and an MQTT CONNECT
//! with the agent's own settings.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::local::rfc3339;
use super::{step, Check, Status, STEP_TIMEOUT};
use crate::config::{Config, MqttConfig};

/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: u64 = 30;

pub(super) async fn check_broker(config: Arc<Config>, deadline: Instant) -> Vec<Check> {
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
                Ok(crate::report::mqtt::Happening::Connected { .. }) => return Ok(()),
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
pub(super) fn der_time(tag: u8, bytes: &[u8]) -> Option<u64> {
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
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
