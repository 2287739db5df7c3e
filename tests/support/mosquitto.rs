//! A private Mosquitto broker per test (Debian package `mosquitto`), plus
//! `mosquitto_sub` / `mosquitto_pub` helpers (package `mosquitto-clients`).
//!
//! * Listeners: plain MQTT on `127.0.0.1:<free port>` always; optionally TLS
//!   on a second port, with a CA and server certificate (SANs `127.0.0.1`
//!   and `localhost`) generated at test time by [`TestCa`] (rcgen), and
//!   optionally `require_certificate true` for mutual TLS. The CA is exposed
//!   so a test can mint more client certificates, including expired ones.
//! * Optional username/password authentication: the password file is made
//!   with `mosquitto_passwd -b` and `allow_anonymous false` is set. The
//!   settings are global (`per_listener_settings false`), so they apply to
//!   the plain listener too; [`Mosquitto::subscribe`] and
//!   [`Mosquitto::publish`] then log in as the first configured user.
//! * Mosquitto 2 denies anonymous clients unless told otherwise, so
//!   `allow_anonymous true` is written explicitly when no user is set.
//! * Everything (config, password file, certificates, persistence database,
//!   log) lives in one temp dir. Started as root, mosquitto would switch to
//!   the `mosquitto` user and then be unable to read files in that private
//!   (0700, root-owned) dir; the config says `user root` instead, which keeps
//!   the key files private and has no effect when the tests run unprivileged.
//! * Persistence is off unless asked for ([`MosquittoOptions::persistence`]),
//!   so a restart loses retained messages exactly like a fresh broker would.
//! * Readiness: a raw MQTT 3.1.1 CONNECT on the plain port must get a
//!   CONNACK (any return code, so it works with authentication on too).
//!   Mosquitto opens every listener before it serves its first client, so
//!   that also covers the TLS port.
//! * [`Mosquitto::stop`] / [`Mosquitto::start_again`] take the broker down and
//!   bring it back on the same ports, for outage tests.
//! * A [`Subscriber`] is live when `subscribe` returns: `mosquitto_sub`
//!   subscribes to the test's filter *and* to a private probe topic in the
//!   same SUBSCRIBE packet; `subscribe` publishes to the probe topic until a
//!   probe message comes back. Probe messages are never handed to the test.
//!   Output uses `-F '%r %x %t'` (retain flag, payload as hex, topic), so a
//!   payload with spaces, newlines or binary bytes still fits on one line.
//! * A [`Subscriber`] checks the MQTT contract: every message it hands to a
//!   test on a topic of the agent's tree (`cpe/v1/{agent_id}/...`, see
//!   [`super::schema::schema_for_topic`]) is first validated against its
//!   JSON Schema in `docs/schemas/`, and a violation panics with the topic,
//!   the schema and each violation's JSON pointer. Other topics (the
//!   harness's own, the probes) are handed out unchecked.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use super::{
    free_tcp_port, log_tail, looks_like_port_clash, require_tool, temp_dir, wait_for_child,
    ChildGuard, LOCALHOST, START_ATTEMPTS,
};

/// How long the broker may take to answer its first CONNECT.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new subscription may take to become live.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Topic prefix of the subscription-readiness probes.
const PROBE_PREFIX: &str = "cpe-agent-test-harness/probe";

/// Builder for a [`Mosquitto`] broker; `MosquittoOptions::default().start()`
/// is the same as [`Mosquitto::start`].
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    tls: bool,
    require_client_cert: bool,
    users: Vec<(String, String)>,
    persistence: bool,
    server_cert_expires_in: Option<Duration>,
}

impl MosquittoOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TLS listener on a second port, with a test CA and a server
    /// certificate for `127.0.0.1` and `localhost`.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Mutual TLS: the TLS listener requires a client certificate signed by
    /// the test CA (`require_certificate true`). Implies [`Self::tls`].
    pub fn require_client_cert(mut self) -> Self {
        self.tls = true;
        self.require_client_cert = true;
        self
    }

    /// Adds a user; with at least one user, anonymous clients are refused.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// TLS with a server certificate that expires `valid_for` from now
    /// (instead of in a year). Implies [`Self::tls`].
    pub fn server_cert_expires_in(mut self, valid_for: Duration) -> Self {
        self.tls = true;
        self.server_cert_expires_in = Some(valid_for);
        self
    }

    /// Keeps retained messages and sessions across [`Mosquitto::stop`] /
    /// [`Mosquitto::start_again`] (`persistence true`).
    pub fn persistence(mut self) -> Self {
        self.persistence = true;
        self
    }

    /// Starts the broker; panics (with its log) if it does not come up.
    pub fn start(self) -> Mosquitto {
        Mosquitto::start_with(self)
    }
}

/// TLS material of a broker started with [`MosquittoOptions::tls`].
#[derive(Debug)]
pub struct TlsListener {
    pub port: u16,
    pub ca: TestCa,
    pub server_cert_path: PathBuf,
    pub server_key_path: PathBuf,
}

/// A running mosquitto broker; stopped when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    // Declared first so it is dropped (broker stopped) before the temp dir.
    child: Option<ChildGuard>,
    options: MosquittoOptions,
    port: u16,
    tls: Option<TlsListener>,
    config_path: PathBuf,
    log_path: PathBuf,
    startup_time: Duration,
    dir: TempDir,
}

impl Mosquitto {
    /// A plain, anonymous, non-persistent broker on a free port.
    pub fn start() -> Mosquitto {
        MosquittoOptions::default().start()
    }

    /// Shorthand for [`MosquittoOptions::new`].
    pub fn options() -> MosquittoOptions {
        MosquittoOptions::new()
    }

    fn start_with(options: MosquittoOptions) -> Mosquitto {
        require_tool("mosquitto", "mosquitto");
        let dir = temp_dir("mosquitto");
        let tls = options.tls.then(|| {
            let ca = TestCa::generate(&dir.path().join("tls"));
            let (server_cert_path, server_key_path) = match options.server_cert_expires_in {
                Some(valid_for) => ca.issue_server_cert_until(
                    &["127.0.0.1", "localhost"],
                    SystemTime::now() + valid_for,
                ),
                None => ca.issue_server_cert(&["127.0.0.1", "localhost"]),
            };
            TlsListener {
                port: 0,
                ca,
                server_cert_path,
                server_key_path,
            }
        });
        if !options.users.is_empty() {
            write_password_file(&dir.path().join("passwords"), &options.users);
        }
        let mut broker = Mosquitto {
            child: None,
            options,
            port: 0,
            tls,
            config_path: dir.path().join("mosquitto.conf"),
            log_path: dir.path().join("mosquitto.log"),
            startup_time: Duration::ZERO,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            broker.port = free_tcp_port();
            if let Some(tls) = broker.tls.as_mut() {
                tls.port = free_tcp_port();
            }
            broker.write_config();
            match broker.launch() {
                Ok(()) => return broker,
                Err(message) if attempt < START_ATTEMPTS && looks_like_port_clash(&message) => {
                    eprintln!("[harness] mosquitto lost a port race, retrying: {message}");
                }
                Err(message) => panic!("{message}"),
            }
        }
        unreachable!("the last start attempt returns or panics")
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut config = format!(
            "# Generated by tests/support/mosquitto.rs for one test.\n\
             user root\n\
             per_listener_settings false\n\
             log_dest file {log}\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n",
            log = self.log_path.display()
        );
        if self.options.persistence {
            // A durable subscriber's session keeps everything: mosquitto's
            // default queue limit (1000) would drop messages during a long
            // drain, which is the broker's loss, not the agent's.
            config += &format!(
                "persistence true\npersistence_location {}/\nmax_queued_messages 0\n",
                dir.display()
            );
        } else {
            config += "persistence false\n";
        }
        if self.options.users.is_empty() {
            config += "allow_anonymous true\n";
        } else {
            config += &format!(
                "allow_anonymous false\npassword_file {}\n",
                dir.join("passwords").display()
            );
        }
        config += &format!("\nlistener {} {LOCALHOST}\n", self.port);
        if let Some(tls) = &self.tls {
            config += &format!(
                "\nlistener {port} {LOCALHOST}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                 require_certificate {require}\n",
                port = tls.port,
                ca = tls.ca.cert_path().display(),
                cert = tls.server_cert_path.display(),
                key = tls.server_key_path.display(),
                require = self.options.require_client_cert,
            );
        }
        fs::write(&self.config_path, config)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config_path.display()));
    }

    /// Spawns the broker and waits until it answers a CONNECT; on failure
    /// stops it and returns a message that quotes its log.
    fn launch(&mut self) -> Result<(), String> {
        let binary = require_tool("mosquitto", "mosquitto");
        let mut command = Command::new(binary);
        command.arg("-c").arg(&self.config_path);
        let mut child = ChildGuard::spawn(
            "mosquitto",
            &mut command,
            &self.dir.path().join("mosquitto.out"),
        );
        let addr = self.addr();
        let waited = wait_for_child(
            &mut child,
            STARTUP_TIMEOUT,
            &format!("mosquitto to answer CONNECT on {addr}"),
            || mqtt_connack(addr, Duration::from_millis(500)),
        );
        match waited {
            Ok(elapsed) => {
                self.startup_time = elapsed;
                eprintln!(
                    "[harness] mosquitto ready on {addr}{} in {} ms",
                    self.tls
                        .as_ref()
                        .map(|t| format!(" (TLS on port {})", t.port))
                        .unwrap_or_default(),
                    elapsed.as_millis()
                );
                self.child = Some(child);
                Ok(())
            }
            Err(reason) => {
                child.stop();
                Err(format!(
                    "mosquitto did not come up: {reason}\n--- {} ---\n{}\n--- mosquitto stdout/stderr ---\n{}\n--- config ---\n{}",
                    self.log_path.display(),
                    log_tail(&self.log_path, 8192),
                    child.output(),
                    fs::read_to_string(&self.config_path).unwrap_or_default()
                ))
            }
        }
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The plain MQTT port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<plain port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The TLS port. Panics if the broker was started without TLS.
    pub fn tls_port(&self) -> u16 {
        self.tls().port
    }

    /// The TLS listener's material. Panics if started without TLS.
    pub fn tls(&self) -> &TlsListener {
        self.tls
            .as_ref()
            .expect("this broker has no TLS listener: start it with MosquittoOptions::tls()")
    }

    /// The test CA that signed the server certificate (and that the broker
    /// trusts for client certificates). Panics if started without TLS.
    pub fn ca(&self) -> &TestCa {
        &self.tls().ca
    }

    /// The first configured user's name and password, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.options
            .users
            .first()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// How long the last (re)start took until the broker answered.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The broker's private directory (config, certificates, database, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of the broker's log file.
    pub fn log(&self) -> String {
        log_tail(&self.log_path, 16 * 1024)
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.exit_status().is_none())
    }

    /// Takes the broker down (SIGTERM; persistence, if on, is saved) while
    /// keeping its configuration, data and ports for [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }

    /// Restarts a stopped broker on the same ports with the same
    /// configuration. Panics (with the log) if it does not come up, e.g.
    /// because another process took the port during the outage.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again() on a running broker: call stop() first"
        );
        if let Err(message) = self.launch() {
            panic!("restart on the same ports failed: {message}");
        }
    }

    /// The arguments `mosquitto_sub` / `mosquitto_pub` need to reach the
    /// plain listener (host, port and, with authentication on, the first
    /// user's credentials).
    pub fn client_args(&self) -> Vec<String> {
        let mut args = vec![
            "-h".to_owned(),
            self.host().to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if let Some((user, password)) = self.credentials() {
            args.extend([
                "-u".to_owned(),
                user.to_owned(),
                "-P".to_owned(),
                password.to_owned(),
            ]);
        }
        args
    }

    /// Publishes one message at QoS 1 with `mosquitto_pub`; when this
    /// returns the broker has acknowledged it. An empty payload is sent as
    /// a zero-length message (which clears a retained message).
    pub fn publish(&self, topic: &str, payload: impl AsRef<[u8]>, retain: bool) {
        if let Err(message) = self.try_publish(topic, payload.as_ref(), retain) {
            panic!("{message}\n--- broker log ---\n{}", self.log());
        }
    }

    /// [`Self::publish`] that reports failure instead of panicking (for
    /// outage tests).
    pub fn try_publish(&self, topic: &str, payload: &[u8], retain: bool) -> Result<(), String> {
        let binary = require_tool("mosquitto_pub", "mosquitto-clients");
        let mut command = Command::new(binary);
        command
            .args(self.client_args())
            .args(["-q", "1", "-t", topic]);
        if retain {
            command.arg("-r");
        }
        if payload.is_empty() {
            command.arg("-n");
        } else {
            command.arg("-s");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn mosquitto_pub: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        if !payload.is_empty() {
            stdin
                .write_all(payload)
                .unwrap_or_else(|e| panic!("write payload to mosquitto_pub: {e}"));
        }
        drop(stdin);
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for mosquitto_pub: {e}"));
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mosquitto_pub to {topic:?} on port {} failed ({}): {}{}",
                self.port,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Subscribes to `topic_filter` with `mosquitto_sub`; the subscription
    /// is live (retained messages already on their way) when this returns.
    pub fn subscribe(&self, topic_filter: &str) -> Subscriber {
        Subscriber::start(self, topic_filter)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a mosquitto password file with `mosquitto_passwd -b`.
fn write_password_file(path: &Path, users: &[(String, String)]) {
    let binary = require_tool("mosquitto_passwd", "mosquitto");
    for (index, (user, password)) in users.iter().enumerate() {
        let mut command = Command::new(&binary);
        if index == 0 {
            command.arg("-c");
        }
        let output = command
            .arg("-b")
            .arg(path)
            .args([user, password])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run mosquitto_passwd: {e}"));
        assert!(
            output.status.success(),
            "mosquitto_passwd -b for user {user:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Sends an MQTT 3.1.1 CONNECT and reports whether a CONNACK came back.
fn mqtt_connack(addr: SocketAddr, timeout: Duration) -> bool {
    const CLIENT_ID: &[u8] = b"cpe-agent-harness-probe";
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let mut packet = vec![0x10, (12 + CLIENT_ID.len()) as u8];
    // Protocol name "MQTT", level 4, clean session, keep-alive 10 s.
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10]);
    packet.extend_from_slice(&[0, CLIENT_ID.len() as u8]);
    packet.extend_from_slice(CLIENT_ID);
    if stream.write_all(&packet).is_err() {
        return false;
    }
    let mut connack = [0u8; 4];
    if stream.read_exact(&mut connack).is_err() || connack[0] != 0x20 {
        return false;
    }
    // DISCONNECT, so the broker logs a clean goodbye.
    let _ = stream.write_all(&[0xe0, 0x00]);
    true
}

/// One message as seen by a [`Subscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Set when the broker delivered it from its retained store.
    pub retained: bool,
}

impl Message {
    /// The payload as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The payload parsed as JSON; panics with the payload if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {}",
                self.topic,
                self.text()
            )
        })
    }

    /// Parses a `mosquitto_sub -F '%r %x %t'` line.
    fn parse(line: &str) -> Option<Message> {
        let mut parts = line.splitn(3, ' ');
        let retained = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let hex = parts.next()?;
        let topic = parts.next()?.to_owned();
        if hex.len() % 2 != 0 {
            return None;
        }
        let payload = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Message {
            topic,
            payload,
            retained,
        })
    }
}

/// A live `mosquitto_sub` on one topic filter; stopped when dropped.
///
/// Messages on the agent's topics are validated against the MQTT contract
/// before they are handed out (see the module docs).
#[derive(Debug)]
pub struct Subscriber {
    // Declared first so the process stops before its temp dir goes.
    child: ChildGuard,
    topic_filter: String,
    messages: Receiver<Message>,
    pending: VecDeque<Message>,
    _dir: TempDir,
}

static PROBE_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Subscriber {
    fn start(broker: &Mosquitto, topic_filter: &str) -> Subscriber {
        let binary = require_tool("mosquitto_sub", "mosquitto-clients");
        let dir = temp_dir("mosquitto-sub");
        let probe_topic = format!(
            "{PROBE_PREFIX}/{}/{}",
            std::process::id(),
            PROBE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let stderr_path = dir.path().join("mosquitto_sub.err");
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr_path.display()));
        let mut child = Command::new(binary)
            .args(broker.client_args())
            .args(["-q", "1", "-t", topic_filter, "-t", &probe_topic])
            .args(["-F", "%r %x %t"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn mosquitto_sub: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let child = ChildGuard::adopt("mosquitto_sub", child, &stderr_path);

        let (sender, messages) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mosquitto_sub {topic_filter}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match Message::parse(&line) {
                        Some(message) => {
                            if sender.send(message).is_err() {
                                break;
                            }
                        }
                        None => eprintln!("[harness] unparsable mosquitto_sub line: {line:?}"),
                    }
                }
            })
            .expect("spawn mosquitto_sub reader thread");

        let mut subscriber = Subscriber {
            child,
            topic_filter: topic_filter.to_owned(),
            messages,
            pending: VecDeque::new(),
            _dir: dir,
        };
        subscriber.wait_live(broker, &probe_topic);
        subscriber
    }

    /// Publishes probes to the private probe topic until one comes back.
    ///
    /// The first probe usually goes out before `mosquitto_sub` has even
    /// connected and is lost, so the wait per probe starts short and grows.
    /// Any probe coming back proves the subscription is live: the filter and
    /// the probe topic were subscribed in one SUBSCRIBE packet.
    fn wait_live(&mut self, broker: &Mosquitto, probe_topic: &str) {
        let start = Instant::now();
        let mut patience = Duration::from_millis(25);
        loop {
            if let Some(status) = self.child.exit_status() {
                panic!(
                    "mosquitto_sub for {:?} exited ({status}) before its subscription was live:\n{}\n--- broker log ---\n{}",
                    self.topic_filter,
                    self.child.output(),
                    broker.log()
                );
            }
            if start.elapsed() > SUBSCRIBE_TIMEOUT {
                panic!(
                    "subscription to {:?} not live after {SUBSCRIBE_TIMEOUT:?}\n--- mosquitto_sub stderr ---\n{}\n--- broker log ---\n{}",
                    self.topic_filter,
                    self.child.output(),
                    broker.log()
                );
            }
            broker.publish(probe_topic, b"probe", false);
            let probe_deadline = Instant::now() + patience;
            while let Ok(message) = self
                .messages
                .recv_timeout(probe_deadline.saturating_duration_since(Instant::now()))
            {
                if message.topic.starts_with(PROBE_PREFIX) {
                    return;
                }
                self.pending.push_back(message);
            }
            patience = (patience * 2).min(Duration::from_millis(500));
        }
    }

    /// The filter this subscriber listens to.
    pub fn topic_filter(&self) -> &str {
        &self.topic_filter
    }

    /// The next message, or `None` if none arrives within `timeout`.
    ///
    /// A message on a topic of the agent's contract is validated against its
    /// schema first (see [`super::schema`]); a violation panics, naming it.
    pub fn next_message(&mut self, timeout: Duration) -> Option<Message> {
        let message = self.receive(timeout)?;
        if super::schema::schema_for_topic(&message.topic).is_some() {
            super::schema::assert_valid(&message.topic, &message.payload);
        }
        Some(message)
    }

    fn receive(&mut self, timeout: Duration) -> Option<Message> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if message.topic.starts_with(PROBE_PREFIX) => continue,
                Ok(message) => return Some(message),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Collects messages until `done` returns true for one (that message is
    /// the last element) or `timeout` passes (then `done` matched none).
    pub fn messages_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Message) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(message) =
            self.next_message(deadline.saturating_duration_since(Instant::now()))
        {
            let finished = done(&message);
            seen.push(message);
            if finished {
                break;
            }
        }
        seen
    }

    /// The first message for which `matches` is true within `timeout`;
    /// panics listing everything else that arrived if none does.
    pub fn expect_message(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&Message) -> bool,
    ) -> Message {
        let mut seen = self.messages_until(timeout, &mut matches);
        match seen.pop() {
            Some(last) if matches(&last) => last,
            last => {
                seen.extend(last);
                panic!(
                    "no matching message on {:?} within {timeout:?}; got {} other(s):\n{}",
                    self.topic_filter,
                    seen.len(),
                    seen.iter()
                        .map(|m| format!("  {} retained={} {:?}", m.topic, m.retained, m.text()))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            }
        }
    }
}

/// A throw-away certificate authority for TLS tests (ECDSA P-256 keys).
///
/// Certificates and keys are written as PEM files into the CA's directory;
/// paths are returned so they can be handed to brokers, `mosquitto_pub` or
/// the agent's configuration.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    serial: AtomicUsize,
    _own_dir: Option<TempDir>,
}

impl TestCa {
    /// A CA in its own temp dir (removed when the CA is dropped).
    pub fn new() -> TestCa {
        let dir = temp_dir("test-ca");
        let mut ca = TestCa::generate(dir.path());
        ca._own_dir = Some(dir);
        ca
    }

    /// A CA whose files go into `dir` (created if needed).
    pub fn generate(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "cpe-agent test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(24 * 3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
        let key = KeyPair::generate().expect("generate CA key pair");
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the test CA");
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        write_file(&cert_path, &issuer.pem());
        write_file(&key_path, &key_pem);
        TestCa {
            issuer,
            dir: dir.to_owned(),
            cert_path,
            key_path,
            serial: AtomicUsize::new(1),
            _own_dir: None,
        }
    }

    /// The CA certificate (PEM file).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate as PEM text.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA private key (PEM, PKCS#8), for tools that sign on their own.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// A server certificate for `names` (IP addresses become IP SANs),
    /// valid from yesterday for a year. Returns `(cert_path, key_path)`.
    pub fn issue_server_cert(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_server_cert_until(
            names,
            SystemTime::now() + Duration::from_secs(365 * 24 * 3600),
        )
    }

    /// Like [`Self::issue_server_cert`], valid from yesterday until `not_after`.
    pub fn issue_server_cert_until(
        &self,
        names: &[&str],
        not_after: SystemTime,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server certificate names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        self.issue(
            params,
            "server",
            now - Duration::from_secs(24 * 3600),
            not_after,
        )
    }

    /// A client certificate with common name `cn`, valid from `not_before`
    /// to `not_after` (both may lie in the past to get an expired one).
    /// Returns `(cert_path, key_path)`.
    pub fn issue_client_cert(
        &self,
        cn: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, "client", not_before, not_after)
    }

    /// A client certificate valid from yesterday for a year.
    pub fn issue_valid_client_cert(&self, cn: &str) -> (PathBuf, PathBuf) {
        let now = SystemTime::now();
        self.issue_client_cert(
            cn,
            now - Duration::from_secs(24 * 3600),
            now + Duration::from_secs(365 * 24 * 3600),
        )
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        kind: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> (PathBuf, PathBuf) {
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate key pair");
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("sign {kind} certificate: {e}"));
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.join(format!("{kind}-{serial}.pem"));
        let key_path = self.dir.join(format!("{kind}-{serial}.key"));
        write_file(&cert_path, &cert.pem());
        write_file(&key_path, &key.serialize_pem());
        (cert_path, key_path)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
