//! Fault injection: what happens to the agent when things break. After each
//! fault the agent must not panic, must lose nothing the contract promises
//! (every seq from the first to the last, in order), and must recover by
//! itself.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_agent::config::MqttConfig;
use cpe_agent::message::HealthSample;
use cpe_agent::message::Report;
use cpe_agent::report::contract::Contract;
use cpe_agent::report::queue::{Class, Queue, QueueOptions};

use crate::agent::Daemon;
use crate::durable::{self, Durable};
use crate::mqtt::{self as harness, Setup, AGENT};
use crate::support;
use crate::support::mosquitto::{Mosquitto, MosquittoOptions};
use crate::support::rogue::{self, Behaviour, Rogue};

fn no_panic(daemon: &mut Daemon) {
    assert!(daemon.is_running(), "the agent stopped:\n{}", daemon.log());
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
}

/// A backlog as a long WAN outage leaves it, written with the library.
fn prefill(state_dir: &Path, records: u64) {
    let (mut queue, _) = Queue::open(state_dir, QueueOptions::default()).expect("open the queue");
    let contract = Contract::new(AGENT, &MqttConfig::default());
    for i in 0..records {
        let sample = HealthSample {
            device_id: format!("sn-backlog-{:03}", i % 50),
            reachable: true,
            latency_ms: Some(1.0),
            uptime_s: Some(100.0),
            missed_polls: 0,
            body: Default::default(),
        };
        let report = Report::Health(sample);
        let (topic, retain) = contract.placement(&report);
        queue
            .push(Class::Health, &topic, retain, |seq| {
                contract
                    .report(&report, seq)
                    .payload
                    .to_string()
                    .into_bytes()
            })
            .expect("push");
    }
    queue.sync().expect("sync");
}

/// The broker restarts while the agent is draining a backlog of 20,000
/// reports: every seq still arrives, in order.
#[test]
fn a_broker_restart_in_the_middle_of_a_drain_loses_nothing() {
    let setup = Setup::new(201);
    let mut broker = MosquittoOptions::new().persistence().start();
    prefill(&setup.state_dir(), 20_000);
    let noc = Durable::connect(broker.port(), "noc-drain", &harness::stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    // Part of the backlog is through: restart the broker under the drain.
    let mut count = 0;
    let before = noc.until(Duration::from_secs(30), |_| {
        count += 1;
        count >= 2_000
    });
    assert!(before.len() >= 2_000, "the drain did not start");
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start_again();
    let all = harness::assert_delivered_after_return(&noc, before);
    let seqs = durable::seqs(&all);
    assert!(
        seqs.iter().filter(|s| **s <= 20_000).count() >= 20_000,
        "not all of the backlog arrived"
    );
    no_panic(&mut daemon);
}

/// A listener that accepts TCP connections and never says a word.
struct MuteBroker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MuteBroker {
    fn start(port: u16) -> MuteBroker {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the mute broker");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        MuteBroker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for MuteBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A broker that accepts TCP but never answers CONNECT: the agent times
/// out, keeps queueing, backs off, and delivers everything once a real
/// broker is there.
#[test]
fn a_broker_that_never_answers_connect_is_survived() {
    let setup = Setup::new(202);
    let mut broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-mute", &harness::stream_filter());
    broker.stop();
    let mute = MuteBroker::start(broker.port());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    daemon.wait_log("cannot connect to the broker", 1, Duration::from_secs(30));
    no_panic(&mut daemon);
    drop(mute);
    broker.start_again();
    let all = harness::assert_delivered_after_return(&noc, Vec::new());
    assert!(all.iter().any(harness::is_device_health));
    no_panic(&mut daemon);
}

/// Misbehaving devices beside a healthy one: one goes silent in the middle
/// of its walk, one answers each request after 2 s, and others answer with
/// truncated, oversize, wrong-request-id and non-SNMP datagrams. The healthy
/// device is polled on time throughout and the agent stays up.
#[test]
fn misbehaving_devices_never_disturb_a_healthy_one() {
    let setup = Setup::new(203);
    let broker = Mosquitto::start();
    // Each rogue has no serial or MAC, so each is its own device (ip-127-0-0-1-PORT).
    let table = rogue::sample_table(40);
    let rogues: Vec<Rogue> = [
        vec![Behaviour::SilentAfter(12)],
        vec![Behaviour::Truncated],
        vec![Behaviour::Oversize],
        vec![Behaviour::WrongRequestId, Behaviour::StaleReplyFirst],
        vec![Behaviour::NonSnmp],
        vec![Behaviour::Garbage],
    ]
    .into_iter()
    .map(|b| Rogue::start(table.clone(), &b))
    .chain(std::iter::once(Rogue::start(
        rogue::sample_table(1),
        &[Behaviour::SlowReplies(Duration::from_secs(2))],
    )))
    .collect();
    let addrs: Vec<SocketAddr> = rogues.iter().map(Rogue::addr).collect();
    let mut watch = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/health"));
    let config = setup.config_with(&format!("port = {}", broker.port()), &addrs, "");
    let mut daemon = setup.daemon(&config, "agent.log");
    // Wait for the healthy device's first health (the one not on a rogue's
    // 127.0.0.1 port), then time ten seconds of it.
    let first = watch.expect_message(Duration::from_secs(30), |m| {
        !m.json()["device_id"]
            .as_str()
            .unwrap_or("ip-127-0-0-1-")
            .starts_with("ip-127-0-0-1-")
    });
    let device = first.topic.clone();
    let started = Instant::now();
    let mut arrivals = vec![Duration::ZERO];
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(m) = watch.next_message(Duration::from_millis(200)) {
            if m.topic == device {
                arrivals.push(started.elapsed());
            }
        }
    }
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(
        arrivals.len() >= 8,
        "only {} polls in 10 s at 1 s",
        arrivals.len()
    );
    assert!(
        gaps.iter().all(|g| *g < 2.5),
        "the healthy device's polls were delayed: gaps {gaps:?}"
    );
    // The misbehaving ones were each talked to, and nothing broke.
    for r in &rogues {
        assert!(r.counts().requests() > 0, "{} never asked", r.addr());
    }
    no_panic(&mut daemon);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(6));
    assert!(status.is_some_and(|s| s.success()), "{}", daemon.log());
}

/// The wall clock jumps two days back, then a month forward (libfaketime):
/// the agent keeps polling on its monotonic schedule and its stream stays
/// complete; only the `ts` of its messages follows the clock.
#[test]
fn the_clock_jumping_back_and_forth_changes_nothing_but_timestamps() {
    let library = faketime_library();
    let setup = Setup::new(204);
    let broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-clock", &harness::stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let offset = setup.dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("write the offset");
    let mut daemon = Daemon::start_with_env(
        &config,
        setup.dir.path().join("agent.log"),
        &[
            ("LD_PRELOAD", library.to_str().expect("utf-8")),
            ("FAKETIME_TIMESTAMP_FILE", offset.to_str().expect("utf-8")),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let mut all = noc.until(Duration::from_secs(15), harness::is_device_health);
    let year = |m: &durable::Received| {
        m.json["ts"]
            .as_str()
            .and_then(|ts| humantime::parse_rfc3339(ts).ok())
    };
    for (jump, expect_past) in [("-2d\n", true), ("+30d\n", false)] {
        std::fs::write(&offset, jump).expect("jump the clock");
        let jumped_at = std::time::SystemTime::now();
        let seen = noc.until(Duration::from_secs(10), |m| {
            harness::is_device_health(m)
                && year(m).is_some_and(|t| {
                    if expect_past {
                        t < jumped_at - Duration::from_secs(86_400)
                    } else {
                        t > jumped_at + Duration::from_secs(20 * 86_400)
                    }
                })
        });
        assert!(
            seen.last().is_some_and(harness::is_device_health),
            "no health after the jump {jump:?}"
        );
        all.extend(seen);
    }
    // Polling goes on at its pace after the jumps.
    let after = noc.until(Duration::from_secs(4), |_| false);
    assert!(
        after
            .iter()
            .filter(|m| harness::is_device_health(m))
            .count()
            >= 2,
        "polling stopped after the clock jumped"
    );
    all.extend(after);
    durable::assert_complete_and_ordered(&durable::seqs(&all));
    no_panic(&mut daemon);
}

fn faketime_library() -> PathBuf {
    support::require_tool("faketime", "faketime");
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime.so.1 not found in {candidates:?}: apt-get install faketime")
        })
}

/// A tmpfs of a fixed size, mounted for one test and unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: PathBuf, size: &str) -> SmallDisk {
        assert!(
            support::running_as_root(),
            "mounting a small tmpfs needs root: run the suite as root (CI does)"
        );
        std::fs::create_dir_all(&dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    /// Fills what is left with one file; returns it.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 64 << 10];
        use std::io::Write as _;
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// The state directory fills up during an outage: a clear error, the
/// reports already queued are kept and delivered, and queueing resumes by
/// itself when space returns.
#[test]
fn a_full_state_directory_keeps_what_was_queued_and_recovers() {
    let setup = Setup::new(205);
    let disk = SmallDisk::mount(setup.state_dir(), "4m");
    let mut broker = MosquittoOptions::new().persistence().start();
    let noc = Durable::connect(broker.port(), "noc-full", &harness::stream_filter());
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    let before = noc.until(Duration::from_secs(15), harness::is_device_health);
    // Outage: reports are queued on disk.
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    // The disk fills up.
    let filler = disk.fill();
    daemon.wait_log("cannot queue reports", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    no_panic(&mut daemon);
    // Space returns, then the broker.
    std::fs::remove_file(&filler).expect("remove filler");
    daemon.wait_log(
        "the report queue accepts reports again",
        1,
        Duration::from_secs(10),
    );
    broker.start_again();
    let back = std::time::SystemTime::now();
    let after = noc.until(Duration::from_secs(30), |m| {
        harness::is_device_health(m)
            && m.json["ts"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t > back)
    });
    // What was queued before the disk filled arrived, in order; the reports
    // the agent could not queue are a gap it reports as drops.
    let seqs: Vec<u64> = durable::seqs(&before)
        .into_iter()
        .chain(durable::seqs(&after))
        .collect();
    let outage_health = after
        .iter()
        .filter(|m| harness::is_device_health(m))
        .count();
    assert!(
        outage_health >= 3,
        "the reports queued during the outage were lost"
    );
    // In order: anything not above the newest seen so far is a repeat.
    let mut seen = std::collections::BTreeSet::new();
    for seq in &seqs {
        let newest = seen.last().copied().unwrap_or(0);
        assert!(
            *seq > newest || seen.contains(seq),
            "seq {seq} out of order: {seqs:?}"
        );
        seen.insert(*seq);
    }
    let dropped = after
        .iter()
        .filter(|m| m.topic.ends_with("/agent/health"))
        .filter_map(|m| m.json["mqtt"]["dropped"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "the drops were not reported in the agent's health"
    );
    no_panic(&mut daemon);
}

/// A push published (retained) while the agent is down is applied when it
/// comes back, and acknowledged.
#[test]
fn a_config_push_made_during_an_outage_is_applied_on_return() {
    use ed25519_dalek::SigningKey;
    let key = SigningKey::from_bytes(&[11; 32]);
    let setup = Setup::new(206);
    let broker = Mosquitto::start();
    let config = setup.config(
        &format!("port = {}", broker.port()),
        &format!(
            "[provisioning]\nenabled = true\npublic_keys = [\"{}\"]\n",
            cpe_agent::keys::public_key_base64(&key.verifying_key())
        ),
    );
    let bundle = serde_json::json!({
        "schema": "cpe-agent/bundle/1",
        "target": {"agent": AGENT},
        "version": 3,
        "desired": {"agent": {"thresholds": {"cpu_percent": {"max": 90}}}},
    });
    let envelope = cpe_agent::provision::bundle::sign(bundle.to_string().as_bytes(), &key);
    // The agent is away (a WAN outage); the provider pushes, retained.
    broker.publish(&format!("cpe/v1/{AGENT}/config/push"), envelope, true);
    let mut acks = broker.subscribe(&format!("cpe/v1/{AGENT}/config/ack/3"));
    let mut daemon = setup.daemon(&config, "agent.log");
    acks.expect_message(Duration::from_secs(20), |m| m.json()["status"] == "applied");
    no_panic(&mut daemon);
}

/// A switch with `n` interfaces: the system group and ifTable.
fn switch_with_interfaces(dir: &Path, n: u32) -> PathBuf {
    let mut text = String::from(
        "1.3.6.1.2.1.1.1.0|4|Big Switch\n1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.1\n\
         1.3.6.1.2.1.1.3.0|67|12345\n1.3.6.1.2.1.1.5.0|4|big\n",
    );
    let columns: [(u32, &dyn Fn(u32) -> String); 8] = [
        (1, &|i| format!("2|{i}")),
        (2, &|i| {
            format!("4|GigabitEthernet{}/0/{}", i / 48 + 1, i % 48 + 1)
        }),
        (3, &|_| "2|6".into()),
        (4, &|_| "2|1500".into()),
        (5, &|_| "66|1000000000".into()),
        (6, &|i| format!("4x|0011220{:05x}", i)),
        (7, &|_| "2|1".into()),
        (8, &|_| "2|2".into()),
    ];
    for (column, value) in columns {
        for i in 1..=n {
            text.push_str(&format!("1.3.6.1.2.1.2.2.1.{column}.{i}|{}\n", value(i)));
        }
    }
    let path = dir.join("big-switch.snmprec");
    std::fs::write(&path, text).expect("write the recording");
    path
}

/// A report larger than the broker takes never blocks the stream:
/// - a live inventory and health of a 400-interface switch are cut to
///   `mqtt.max_message_bytes` (16 KiB here) and say what they left out;
/// - a record queued under a larger limit (an older agent's 2 MiB health) is
///   cut when it is sent;
/// - a record that fits no size (not JSON) is set aside, counted in agent
///   health and kept in `dead-letter/`, and the records behind it arrive.
#[test]
fn oversized_reports_are_cut_to_fit_and_an_unsendable_one_is_set_aside() {
    let dir = support::temp_dir("oversized");
    let recording = switch_with_interfaces(dir.path(), 400);
    let setup = Setup {
        sim: crate::support::snmpsim::SnmpSim::start_lan(&[recording], "127.0.1", 171),
        dir,
    };
    let broker = MosquittoOptions::new().persistence().start();
    // The queue as an older agent left it: a 2 MiB health record, a record
    // nothing can send, then an ordinary one.
    let (mut queue, _) = Queue::open(&setup.state_dir(), QueueOptions::default()).expect("open");
    let loose = MqttConfig {
        max_message_bytes: cpe_agent::config::ByteSize(16 << 20),
        ..MqttConfig::default()
    };
    let old = Contract::new(AGENT, &loose);
    let mut big = HealthSample {
        device_id: "sn-old-1".into(),
        reachable: true,
        latency_ms: Some(1.0),
        uptime_s: Some(100.0),
        missed_polls: 0,
        body: Default::default(),
    };
    big.body.interfaces = (1..=20_000)
        .map(|i| cpe_agent::message::InterfaceHealth {
            index: i,
            name: Some(format!("port{i}")),
            admin_status: Some("up"),
            oper_status: Some("up"),
            in_bps: Some(1.0),
            out_bps: Some(2.0),
            in_errors_per_s: Some(0.0),
            out_errors_per_s: Some(0.0),
            in_discards_per_s: Some(0.0),
            out_discards_per_s: Some(0.0),
        })
        .collect();
    let report = Report::Health(big);
    let (topic, retain) = old.placement(&report);
    let big_seq = queue
        .push(Class::Health, &topic, retain, |seq| {
            let bytes = old.report(&report, seq).payload.to_string().into_bytes();
            assert!(bytes.len() > 2 << 20, "{}", bytes.len());
            bytes
        })
        .expect("push the big record");
    let junk_seq = queue
        .push(
            Class::Event,
            &format!("cpe/v1/{AGENT}/devices/x/events"),
            false,
            |_| vec![b'x'; 1 << 20],
        )
        .expect("push the junk record");
    queue.sync().expect("sync");
    drop(queue);

    let noc = Durable::connect(broker.port(), "noc-oversized", &harness::stream_filter());
    let config = setup.config(
        &format!("port = {}\nmax_message_bytes = \"16KiB\"", broker.port()),
        "",
    );
    let mut daemon = setup.daemon(&config, "agent.log");
    let mut inventory = None;
    let mut health = None;
    let mut refitted = None;
    let mut dead = None;
    let all = noc.until(Duration::from_secs(30), |m| {
        assert!(
            m.payload.len() <= 16 * 1024,
            "{} bytes on {}",
            m.payload.len(),
            m.topic
        );
        let seq = m.json["seq"].as_u64();
        if seq == Some(big_seq) {
            refitted = Some(m.json.clone());
        } else if m.topic.ends_with("/inventory") && m.json["device_id"] != "sn-old-1" {
            inventory = Some(m.json.clone());
        } else if harness::is_device_health(m) && m.json["device_id"] != "sn-old-1" {
            health = Some(m.json.clone());
        } else if m.topic.ends_with("/agent/health") && m.json["mqtt"]["dead_lettered"] == 1 {
            dead = Some(m.json.clone());
        }
        inventory.is_some() && health.is_some() && refitted.is_some() && dead.is_some()
    });
    let log = daemon.log();
    let seen: Vec<String> = all
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m.topic,
                m.json["seq"],
                m.payload.len(),
                m.json["state"]
            )
        })
        .collect();
    let log = format!("{log}\nreceived:\n{}", seen.join("\n"));
    let inventory = inventory.unwrap_or_else(|| panic!("no inventory:\n{log}"));
    let kept = inventory["interfaces"]
        .as_array()
        .expect("interfaces")
        .len() as u64;
    assert!(kept > 10, "{kept}");
    assert_eq!(inventory["truncated"]["interfaces"], 400 - kept);
    let health = health.unwrap_or_else(|| panic!("no health:\n{log}"));
    assert!(
        health["truncated"]["interfaces"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{health}"
    );
    let refitted = refitted.unwrap_or_else(|| panic!("the old record never arrived:\n{log}"));
    let now = refitted["interfaces"].as_array().expect("interfaces").len() as u64;
    assert_eq!(refitted["truncated"]["interfaces"], 20_000 - now);
    assert!(
        dead.is_some(),
        "agent health never counted the dead letter:\n{log}"
    );
    assert!(
        durable::seqs(&all).iter().all(|&s| s != junk_seq),
        "the unsendable record was sent"
    );
    let kept_letter = setup
        .state_dir()
        .join("dead-letter")
        .join(format!("{junk_seq:020}.json"));
    assert!(kept_letter.exists(), "{} missing", kept_letter.display());
    assert_eq!(log.matches("set aside (dead letter)").count(), 1, "{log}");
    no_panic(&mut daemon);
}

/// `count` devices that say only who they are (their id is their address)
/// on `prefix`.1.., swept and polled every second by an agent.
fn plain_devices_polled(count: usize, prefix: &str) -> (Setup, Mosquitto, Daemon) {
    let dir = support::temp_dir("plain-devices");
    let recording = dir.path().join("plain.snmprec");
    std::fs::write(
        &recording,
        "1.3.6.1.2.1.1.1.0|4|Plain device\n1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.2\n\
         1.3.6.1.2.1.1.3.0|67|4242\n",
    )
    .expect("write the recording");
    let setup = Setup {
        sim: crate::support::snmpsim::SnmpSim::start_lan(&vec![recording; count], prefix, 1),
        dir,
    };
    let broker = MosquittoOptions::new().start();
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(60));
    (setup, broker, daemon)
}

/// Idle devices hold no descriptor: with 200 devices polled every second,
/// the agent's open files stay far below one per device.
#[test]
fn idle_devices_hold_no_sockets() {
    const DEVICES: usize = 200;
    let (_setup, _broker, mut daemon) = plain_devices_polled(DEVICES, "127.0.8");
    // A few poll rounds of every device.
    std::thread::sleep(Duration::from_secs(4));
    let open = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .expect("the agent's descriptors")
        .count();
    println!("{DEVICES} devices polled every second: {open} open descriptors");
    assert!(
        open < DEVICES / 2,
        "{open} descriptors for {DEVICES} devices"
    );
    assert!(daemon.log().contains("found=200"), "{}", daemon.log());
    no_panic(&mut daemon);
}

/// Two devices with one serial (a clone, or an impostor copying a real
/// device): each is tracked under its own id, both get an
/// `identity_collision` event, and the contested id's stream ends `lost`.
#[test]
fn devices_that_claim_one_id_each_keep_their_own() {
    let setup = Setup::with(&["soho-router", "soho-router"], 181);
    let broker = MosquittoOptions::new().start();
    let mut events = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/events"));
    let mut inventories = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/inventory"));
    let config = setup.config(&format!("port = {}", broker.port()), "");
    let mut daemon = setup.daemon(&config, "agent.log");
    let mut collisions = Vec::new();
    events.messages_until(Duration::from_secs(20), |m| {
        let json = m.json();
        if json["event"] == "identity_collision" {
            collisions.push(json);
        }
        collisions.len() >= 2
    });
    assert_eq!(collisions.len(), 2, "{}", daemon.log());
    let claimed = collisions[0]["claimed_id"]
        .as_str()
        .expect("claimed_id")
        .to_string();
    let ids: std::collections::BTreeSet<String> = collisions
        .iter()
        .map(|c| c["device_id"].as_str().expect("device_id").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{collisions:?}");
    for id in &ids {
        assert!(id.starts_with(&format!("{claimed}.at-127-0-1-18")), "{id}");
    }
    // Both present under their own ids; the contested one lost.
    let mut present = std::collections::BTreeSet::new();
    let mut contested_lost = false;
    inventories.messages_until(Duration::from_secs(20), |m| {
        let json = m.json();
        let id = json["device_id"].as_str().unwrap_or_default().to_string();
        contested_lost |= id == claimed && json["state"] == "lost";
        if ids.contains(&id) && json["state"] == "present" {
            assert_eq!(json["claimed_id"], claimed.as_str(), "{json}");
            present.insert(id);
        }
        present.len() == 2 && contested_lost
    });
    assert_eq!(present.len(), 2, "{present:?}");
    assert!(
        contested_lost,
        "the contested id's inventory was not marked lost"
    );
    assert!(
        daemon.log().contains("two devices claim one id"),
        "{}",
        daemon.log()
    );
    // The ids are kept for the next start.
    let saved = std::fs::read_to_string(setup.state_dir().join("identities")).expect("identities");
    assert!(saved.contains(&format!("contested\t{claimed}")), "{saved}");
    no_panic(&mut daemon);
}

/// A device that makes up a new serial at every request mints at most two
/// ids over many sweeps, and is reported (`identity_churn`).
#[test]
fn a_device_that_changes_who_it_is_is_held_to_one_id() {
    let setup = Setup::new(183);
    let mut table = rogue::sample_table(2);
    let entity = cpe_agent::snmp::Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1]);
    table.extend([
        (
            entity.child(&[2, 1]),
            cpe_agent::snmp::Value::OctetString(b"Chassis".to_vec()),
        ),
        (entity.child(&[5, 1]), cpe_agent::snmp::Value::Integer(3)),
        (
            entity.child(&[11, 1]),
            cpe_agent::snmp::Value::OctetString(b"FIRST".to_vec()),
        ),
        (
            entity.child(&[12, 1]),
            cpe_agent::snmp::Value::OctetString(b"Acme".to_vec()),
        ),
    ]);
    let liar = Rogue::start(table, &[Behaviour::ChurnSerial]);
    let broker = MosquittoOptions::new().start();
    let mut events = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/events"));
    let config = setup.config_with(&format!("port = {}", broker.port()), &[liar.addr()], "");
    let mut daemon = setup.daemon(&config, "agent.log");
    daemon.wait_log("discovery sweep finished", 1, Duration::from_secs(20));
    for sweep in 2..=8 {
        daemon.signal(nix::sys::signal::Signal::SIGUSR1);
        daemon.wait_log("discovery sweep finished", sweep, Duration::from_secs(20));
    }
    let mut found = std::collections::BTreeSet::new();
    let mut churn = 0;
    events.messages_until(Duration::from_secs(3), |m| {
        let json = m.json();
        let address = json["address"].as_str().unwrap_or_default();
        if address == liar.addr().to_string() {
            if json["event"] == "found" {
                found.insert(json["device_id"].as_str().unwrap_or_default().to_string());
            }
            churn += usize::from(json["event"] == "identity_churn");
        }
        false
    });
    assert!(
        !found.is_empty() && found.len() <= 2,
        "ids minted: {found:?}\n{}",
        daemon.log()
    );
    assert!(churn >= 1, "no identity_churn event\n{}", daemon.log());
    println!(
        "8 sweeps of a churning serial: {} id(s), {churn} churn event(s)",
        found.len()
    );
    no_panic(&mut daemon);
}

/// A device silent for `polling.forget_after` is forgotten: a `forgotten`
/// event, its retained inventory cleared (a late subscriber finds none), and
/// no more health for it.
#[test]
fn a_device_silent_past_forget_after_is_forgotten_and_its_inventory_cleared() {
    let mut setup = Setup::new(187);
    let broker = MosquittoOptions::new().start();
    let mut events = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/events"));
    let config = setup.config(&format!("port = {}", broker.port()), "");
    // forget_after goes into [polling]: rewrite the file's polling section.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "[polling]\n",
            "[polling]\nforget_after = \"10s\"\nlost_after = 2\n",
        ),
    )
    .expect("config");
    let mut daemon = setup.daemon(&config, "agent.log");
    let found = events.expect_message(Duration::from_secs(20), |m| m.json()["event"] == "found");
    let id = found.json()["device_id"]
        .as_str()
        .expect("device_id")
        .to_string();
    let inventory_topic = format!("cpe/v1/{AGENT}/devices/{id}/inventory");
    let mut before = broker.subscribe(&inventory_topic);
    before.expect_message(Duration::from_secs(10), |m| m.retained);
    setup.sim.stop();
    let forgotten = events.expect_message(Duration::from_secs(30), |m| {
        m.json()["event"] == "forgotten" && m.json()["device_id"] == id.as_str()
    });
    assert!(
        forgotten.json()["silent_s"]
            .as_u64()
            .is_some_and(|s| s >= 10),
        "{}",
        forgotten.text()
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut late = broker.subscribe(&inventory_topic);
    let retained = late.next_message(Duration::from_secs(2));
    assert!(
        retained.is_none(),
        "the retained inventory was not cleared: {:?}",
        retained.map(|m| m.text())
    );
    assert!(
        daemon
            .log()
            .contains("forgotten after polling.forget_after"),
        "{}",
        daemon.log()
    );
    no_panic(&mut daemon);
}

/// A table walk that never ends (ifDescr rows for ever): the walk stops at
/// its bound, and the inventory still arrives, cut to the message size with
/// `truncated` counts; the agent keeps reporting.
#[test]
fn an_endless_table_still_reports_a_bounded_inventory() {
    let setup = Setup::new(189);
    let endless = Rogue::start(rogue::sample_table(2), &[Behaviour::EndlessTable]);
    let broker = MosquittoOptions::new().start();
    let mut inventories = broker.subscribe(&format!("cpe/v1/{AGENT}/devices/+/inventory"));
    let config = setup.config_with(
        &format!("port = {}\nmax_message_bytes = \"64KiB\"", broker.port()),
        &[endless.addr()],
        "",
    );
    let mut daemon = setup.daemon(&config, "agent.log");
    let inventory = inventories.expect_message(Duration::from_secs(60), |m| {
        m.json()["address"] == endless.addr().ip().to_string()
    });
    assert!(
        inventory.payload.len() <= 64 * 1024,
        "{} bytes",
        inventory.payload.len()
    );
    let json = inventory.json();
    let kept = json["interfaces"].as_array().expect("interfaces").len() as u64;
    let omitted = json["truncated"]["interfaces"]
        .as_u64()
        .expect("truncated count");
    assert!(
        kept > 0 && kept + omitted > 1_000,
        "kept {kept}, omitted {omitted}"
    );
    println!("endless ifTable: {kept} interfaces sent, {omitted} left out");
    no_panic(&mut daemon);
}

/// Out of descriptors (the agent's open-files limit lowered under it while
/// 200 devices are polled): the error is logged, and diag's recent errors
/// (the status file) say it; the agent keeps running.
#[test]
fn running_out_of_descriptors_is_said_not_silent() {
    let (setup, _broker, mut daemon) = plain_devices_polled(200, "127.0.7");
    let open = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .expect("the agent's descriptors")
        .count();
    let limit = format!("--nofile={}", open + 4);
    let lowered = std::process::Command::new(support::require_tool("prlimit", "util-linux"))
        .args([&limit, "--pid", &daemon.pid().to_string()])
        .status()
        .expect("prlimit");
    assert!(lowered.success());
    daemon.wait_log("out of file descriptors", 1, Duration::from_secs(20));
    let status = setup
        .state_dir()
        .join(cpe_agent::report::status_file::STATUS_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if text.contains("out of file descriptors") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "diag's status file never said it:\n{text}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    no_panic(&mut daemon);
}
