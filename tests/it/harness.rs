//! Self-tests of the harness in `tests/support`: each service really starts,
//! answers on its own loopback port(s), enforces what it is configured to
//! enforce, and goes away again. The checks use the services' own command
//! line clients (`mosquitto_pub`, net-snmp's `snmpget`/`snmpset`), so a harness
//! bug cannot hide behind a bug in the agent's client code.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::support::mosquitto::{Mosquitto, TestCa};
use crate::support::snmpd::Snmpd;
use crate::support::snmpsim::SnmpSim;
use crate::support::{self, net_snmp, net_snmp_ok, require_tool};

const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(24 * 3600);

const SYS_DESCR: &str = "1.3.6.1.2.1.1.1.0";
const SYS_OBJECT_ID: &str = "1.3.6.1.2.1.1.2.0";
const SYS_CONTACT: &str = "1.3.6.1.2.1.1.4.0";
const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";
const SYS_LOCATION: &str = "1.3.6.1.2.1.1.6.0";

// ---------------------------------------------------------------- mosquitto

#[test]
fn harness_mosquitto_plain_publish_subscribe_and_retained() {
    let broker = Mosquitto::start();
    let mut live = broker.subscribe("harness/plain/#");

    broker.publish("harness/plain/greeting", "hello world\nline two", false);
    let message = live
        .next_message(MESSAGE_TIMEOUT)
        .expect("the published message");
    assert_eq!(message.topic, "harness/plain/greeting");
    assert_eq!(message.text(), "hello world\nline two");
    assert!(!message.retained);

    broker.publish("harness/plain/state", r#"{"online":true}"#, true);
    let message = live
        .next_message(MESSAGE_TIMEOUT)
        .expect("the retained publish, live");
    assert_eq!(message.topic, "harness/plain/state");
    assert!(!message.retained, "live delivery carries no retain flag");

    let mut later = broker.subscribe("harness/plain/state");
    let message = later
        .next_message(MESSAGE_TIMEOUT)
        .expect("the retained message for a later subscriber");
    assert!(
        message.retained,
        "a later subscriber gets it from the retained store"
    );
    assert_eq!(message.json()["online"], true);

    broker.publish("harness/plain/binary", [0u8, 0xff, b' ', b'\n'], false);
    broker.publish("harness/plain/last", "", false);
    let all = live.messages_until(MESSAGE_TIMEOUT, |m| m.topic.ends_with("/last"));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].payload, [0u8, 0xff, b' ', b'\n']);
    assert!(all[1].payload.is_empty());
}

/// `mosquitto_pub` over TLS to the broker's TLS port, with an optional
/// client certificate.
fn publish_tls(broker: &Mosquitto, host: &str, client: Option<&(PathBuf, PathBuf)>) -> Output {
    let mut command = Command::new(require_tool("mosquitto_pub", "mosquitto-clients"));
    command
        .args(["-h", host, "-p", &broker.tls_port().to_string()])
        .arg("--cafile")
        .arg(broker.ca().cert_path())
        .args(["-q", "1", "-t", "harness/tls", "-m", host]);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.output().expect("run mosquitto_pub")
}

#[test]
fn harness_mosquitto_mutual_tls() {
    let broker = Mosquitto::options().require_client_cert().start();
    assert_ne!(broker.tls_port(), broker.port());
    let mut subscriber = broker.subscribe("harness/tls");

    let valid = broker.ca().issue_valid_client_cert("gateway-0001");
    for host in ["127.0.0.1", "localhost"] {
        let output = publish_tls(&broker, host, Some(&valid));
        assert!(
            output.status.success(),
            "valid client certificate via {host} refused: {}\n--- broker log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            broker.log()
        );
        let message = subscriber
            .next_message(MESSAGE_TIMEOUT)
            .expect("message sent over TLS");
        assert_eq!(message.text(), host);
    }

    let now = SystemTime::now();
    let expired = broker
        .ca()
        .issue_client_cert("gateway-expired", now - 30 * DAY, now - DAY);
    let output = publish_tls(&broker, "127.0.0.1", Some(&expired));
    assert!(
        !output.status.success(),
        "an expired client certificate was accepted"
    );

    let output = publish_tls(&broker, "127.0.0.1", None);
    assert!(
        !output.status.success(),
        "a client without certificate was accepted"
    );

    let stranger = TestCa::new().issue_valid_client_cert("gateway-0001");
    let output = publish_tls(&broker, "127.0.0.1", Some(&stranger));
    assert!(
        !output.status.success(),
        "a certificate from another CA was accepted"
    );

    assert!(subscriber
        .next_message(Duration::from_millis(300))
        .is_none());
}

#[test]
fn harness_mosquitto_password_authentication() {
    let broker = Mosquitto::options().user("agent", "s3cret-pass").start();
    assert_eq!(broker.credentials(), Some(("agent", "s3cret-pass")));
    let mut subscriber = broker.subscribe("harness/auth");

    let publish = |args: &[&str]| {
        Command::new(require_tool("mosquitto_pub", "mosquitto-clients"))
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-q", "1", "-t", "harness/auth", "-m", "x"])
            .args(args)
            .output()
            .expect("run mosquitto_pub")
    };
    let right = publish(&["-u", "agent", "-P", "s3cret-pass"]);
    assert!(
        right.status.success(),
        "right password refused: {}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(subscriber.next_message(MESSAGE_TIMEOUT).is_some());

    let wrong = publish(&["-u", "agent", "-P", "wrong-pass"]);
    assert!(!wrong.status.success(), "wrong password accepted");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("not authorised"),
        "unexpected refusal: {stderr}"
    );

    let anonymous = publish(&[]);
    assert!(!anonymous.status.success(), "anonymous client accepted");
}

#[test]
fn harness_mosquitto_stop_and_start_again_on_the_same_ports() {
    let mut broker = Mosquitto::options().persistence().tls().start();
    let (port, tls_port) = (broker.port(), broker.tls_port());
    broker.publish("harness/outage/state", "before", true);

    broker.stop();
    assert!(!broker.is_running());
    assert!(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
        "port {port} still accepts connections after stop()"
    );
    assert!(broker
        .try_publish("harness/outage/x", b"lost", false)
        .is_err());

    broker.start_again();
    assert!(broker.is_running());
    assert_eq!((broker.port(), broker.tls_port()), (port, tls_port));
    let mut subscriber = broker.subscribe("harness/outage/#");
    let message = subscriber
        .next_message(MESSAGE_TIMEOUT)
        .expect("the retained message survives a restart with persistence");
    assert_eq!(
        (message.text().as_str(), message.retained),
        ("before", true)
    );

    // Without persistence a restart forgets retained messages.
    let mut volatile = Mosquitto::start();
    volatile.publish("harness/outage/state", "before", true);
    volatile.stop();
    volatile.start_again();
    let mut subscriber = volatile.subscribe("harness/outage/#");
    assert_eq!(subscriber.next_message(Duration::from_millis(300)), None);
}

// ------------------------------------------------------------------ snmpsim

/// Three tiny recordings written at test time: (name, sysDescr, sysObjectID).
const TINY_DEVICES: [(&str, &str, &str); 3] = [
    ("alpha", "Alpha test router", "1.3.6.1.4.1.8072.3.2.10"),
    ("bravo", "Bravo test switch", "1.3.6.1.4.1.9.1.2000"),
    ("charlie", "Charlie test printer", "1.3.6.1.4.1.11.2.3.9.1"),
];

fn write_tiny_recordings(dir: &std::path::Path) -> Vec<PathBuf> {
    TINY_DEVICES
        .iter()
        .map(|(name, descr, object_id)| {
            let path = dir.join(format!("{name}.snmprec"));
            let body = format!(
                "{SYS_DESCR}|4|{descr}\n{SYS_OBJECT_ID}|6|{object_id}\n\
                 1.3.6.1.2.1.1.3.0|67|123456\n{SYS_NAME}|4|{name}\n"
            );
            fs::write(&path, body).expect("write a tiny recording");
            path
        })
        .collect()
}

/// `snmpget -v2c` of one OID; the bare value (quotes stripped, OIDs
/// without the leading dot).
fn snmpget_v2c(addr: SocketAddr, community: &str, oid: &str) -> String {
    let value = net_snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            community,
            "-On",
            "-Oqv",
            "-t",
            "2",
            "-r",
            "1",
            &addr.to_string(),
            oid,
        ],
    );
    value.trim_matches('"').trim_start_matches('.').to_owned()
}

#[test]
fn harness_snmpsim_communities_mode() {
    let recordings_dir = tempfile::tempdir().expect("temp dir for recordings");
    let recordings = write_tiny_recordings(recordings_dir.path());
    let sim = SnmpSim::start_communities(&recordings);

    assert_eq!(sim.communities(), ["alpha", "bravo", "charlie"]);
    assert_eq!(
        sim.endpoints(),
        [SocketAddr::from(([127, 0, 0, 1], sim.port()))]
    );
    for (name, descr, object_id) in TINY_DEVICES {
        let addr = sim.device(name).addr;
        assert_eq!(snmpget_v2c(addr, name, SYS_DESCR), descr);
        assert_eq!(snmpget_v2c(addr, name, SYS_OBJECT_ID), object_id);
    }
    let unknown = net_snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-t",
            "0.5",
            "-r",
            "0",
            &sim.endpoints()[0].to_string(),
            SYS_DESCR,
        ],
    );
    assert!(
        !unknown.status.success(),
        "an unknown community got an answer"
    );
}

#[test]
fn harness_snmpsim_lan_mode_with_written_recordings() {
    let recordings_dir = tempfile::tempdir().expect("temp dir for recordings");
    let recordings = write_tiny_recordings(recordings_dir.path());
    let sim = SnmpSim::start_lan(&recordings, "127.0.2", 10);

    let endpoints = sim.endpoints();
    let expected: Vec<SocketAddr> = (10..=12)
        .map(|host| SocketAddr::from(([127, 0, 2, host], sim.port())))
        .collect();
    assert_eq!(endpoints, expected);
    for ((name, descr, _), addr) in TINY_DEVICES.iter().zip(&endpoints) {
        assert_eq!(&snmpget_v2c(*addr, "public", SYS_NAME), name);
        assert_eq!(&snmpget_v2c(*addr, "public", SYS_DESCR), descr);
    }
}

#[test]
fn harness_snmpsim_lan_mode_with_the_shared_recordings() {
    let Some(devices_dir) = support::shared_devices_dir() else {
        return;
    };
    let recordings = support::snmprec_files(&devices_dir);
    assert_eq!(
        recordings.len(),
        26,
        "recordings in {}",
        devices_dir.display()
    );
    let expected_path = devices_dir.join("expected.toml");
    let expected: toml::Table = toml::from_str(
        &fs::read_to_string(&expected_path).expect("read shared/devices/expected.toml"),
    )
    .expect("parse shared/devices/expected.toml");

    let sim = SnmpSim::start_lan(&recordings, "127.0.1", 1);
    eprintln!(
        "[harness] 26 shared recordings answering after {} ms",
        sim.startup_time().as_millis()
    );

    for (index, device) in sim.devices().iter().enumerate() {
        let host = u8::try_from(index + 1).expect("host number");
        assert_eq!(
            device.addr,
            SocketAddr::from(([127, 0, 1, host], sim.port()))
        );
        let want = expected
            .get(&device.name)
            .and_then(|facts| facts.get("sys_object_id"))
            .and_then(|oid| oid.as_str())
            .unwrap_or_else(|| panic!("no sys_object_id for {} in expected.toml", device.name));
        let got = snmpget_v2c(device.addr, "public", SYS_OBJECT_ID);
        assert_eq!(
            got, want,
            "sysObjectID of {} on {}",
            device.name, device.addr
        );
    }
}

// -------------------------------------------------------------------- snmpd

#[test]
fn harness_snmpd_v3_users_and_writable_system_group() {
    let agent = Snmpd::start();
    let addr = agent.addr().to_string();

    let v3_get = |args: Vec<String>| {
        let mut args = args;
        args.extend(["-On", "-Oqv", "-t", "2", "-r", "0", &addr, SYS_OBJECT_ID].map(String::from));
        net_snmp(
            "snmpget",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    let ok = v3_get(agent.priv_user.net_snmp_args());
    assert!(
        ok.status.success(),
        "authPriv SHA/AES get failed: {}\n--- snmpd log ---\n{}",
        String::from_utf8_lossy(&ok.stderr),
        agent.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        ".1.3.6.1.4.1.8072.3.2.10"
    );

    let mut wrong = agent.priv_user.clone();
    wrong.auth_passphrase = "not-the-passphrase".to_owned();
    let refused = v3_get(wrong.net_snmp_args());
    assert!(
        !refused.status.success(),
        "a wrong auth passphrase was accepted"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Authentication failure"),
        "unexpected error: {stderr}"
    );

    let ok = v3_get(agent.auth_user.net_snmp_args());
    assert!(
        ok.status.success(),
        "authNoPriv SHA-256 get failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    for (oid, value) in [
        (SYS_LOCATION, "Harness rack 7"),
        (SYS_CONTACT, "noc@example.invalid"),
    ] {
        net_snmp_ok(
            "snmpset",
            &["-v2c", "-c", &agent.rw_community, &addr, oid, "s", value],
        );
        assert_eq!(snmpget_v2c(agent.addr(), &agent.ro_community, oid), value);
    }
    let read_only = net_snmp(
        "snmpset",
        &[
            "-v2c",
            "-c",
            &agent.ro_community,
            &addr,
            SYS_LOCATION,
            "s",
            "nope",
        ],
    );
    assert!(!read_only.status.success(), "the ro community could write");
}

// ------------------------------------------------------------------ helpers

#[test]
#[should_panic(expected = "no-such-tool-xyz not found: apt-get install -y some-package")]
fn harness_missing_tool_fails_naming_the_package() {
    require_tool("no-such-tool-xyz", "some-package");
}

#[test]
fn harness_free_ports_are_not_handed_out_twice() {
    let tcp: Vec<u16> = (0..50).map(|_| support::free_tcp_port()).collect();
    let udp: Vec<u16> = (0..50)
        .map(|_| support::free_udp_port(std::net::Ipv4Addr::new(127, 0, 3, 1)))
        .collect();
    let mut all: Vec<u16> = tcp.iter().chain(&udp).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 100);
}

#[test]
fn harness_an_early_exit_fails_fast_with_the_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out");
    let mut child = support::ChildGuard::spawn(
        "failing daemon",
        Command::new("sh").args(["-c", "echo 'bind: Address already in use' >&2; exit 3"]),
        &output,
    );
    let started = std::time::Instant::now();
    let error = support::wait_for_child(&mut child, Duration::from_secs(30), "nothing", || false)
        .expect_err("the child exited");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not fail fast"
    );
    assert!(error.contains("failing daemon exited"), "{error}");
    assert!(child.output().contains("Address already in use"));
}
