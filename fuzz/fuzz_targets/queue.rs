//! The queue's on-disk records: what `Queue::open` recovers from whatever a
//! crash, a power cut or flash damage left in `<state_dir>/queue/`.
//!
//! Input: up to five files separated by the line `==cpeq==` (bytes
//! `\n==cpeq==\n`): the health segment, the events segment, the health ack
//! file, the events ack file, the `state` file. A missing part means the file
//! is absent. Each run writes them into a fresh queue directory (on /dev/shm
//! when it exists), opens the queue, and checks:
//!
//! - `open` succeeds and never panics;
//! - it recovers exactly the records an independent reading of the segment
//!   format (src/queue.rs module doc) finds: frames with a valid length and
//!   CRC, a known class for the stream, known flags, a UTF-8 topic and an
//!   increasing seq, up to the first bad one, minus those acknowledged by a
//!   valid ack entry;
//! - `peek` returns those records, in seq order, with their topic, class,
//!   retain flag and payload (inflated), skipping only payloads that do not
//!   inflate;
//! - after acking all of them and pushing one event, a reopened queue holds
//!   exactly that event, and issues a higher seq.
//!
//! libFuzzer cannot forge a CRC32, so without help every mutation inside a
//! frame only cuts the segment there. A part may therefore ask the harness
//! to fix its checksums before writing it: a segment starting with
//! `CPEQFIX1` gets the real magic and every frame (walked by its length
//! field) its CRC recomputed; an ack file or state file starting with
//! `FIX!` loses that prefix and gets valid entry CRCs / a valid `crc32`
//! line. The seeds include such parts, so both the damaged-checksum paths
//! and what lies behind the checksums are explored.
//!
//! With `CPE_FUZZ_WRITE_SEEDS=DIR` set, the first run instead writes seed
//! inputs made by the library itself (a real queue directory) into DIR.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cpe_agent::report::queue::{Class, FsyncPolicy, Queue, QueueOptions, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

const SEP: &[u8] = b"\n==cpeq==\n";
const MAGIC: &[u8] = b"CPEQSEG1";
const SEG_NAMES: [&str; 2] = ["health-0000000000000001.seg", "events-0000000000000001.seg"];
const ACK_NAMES: [&str; 2] = ["health-0000000000000001.ack", "events-0000000000000001.ack"];
const BODY_HEAD: usize = 20;
const MAX_BODY: usize = BODY_HEAD + u16::MAX as usize + MAX_PAYLOAD;

fn options() -> QueueOptions {
    QueueOptions {
        max_bytes: 1 << 20,
        fsync: FsyncPolicy::Always,
    }
}

fn root() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        tempfile::Builder::new()
            .prefix("cpe-fuzz-queue-")
            .tempdir_in(base)
            .expect("temp dir")
    })
    .path()
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 4 {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + SEP.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

/// The file contents a part asks for, checksums fixed if it says so.
fn materialize(part: &[u8], kind: usize) -> Vec<u8> {
    match kind {
        0 | 1 => {
            let Some(rest) = part.strip_prefix(b"CPEQFIX1") else {
                return part.to_vec();
            };
            let mut out = [MAGIC, rest].concat();
            let mut offset = MAGIC.len();
            while out.len() - offset >= 8 {
                let len = u32::from_le_bytes(out[offset..offset + 4].try_into().unwrap()) as usize;
                if len > out.len() - offset - 8 {
                    break;
                }
                let crc = crc32fast::hash(&out[offset + 8..offset + 8 + len]);
                out[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
                offset += 8 + len;
            }
            out
        }
        2 | 3 => {
            let Some(rest) = part.strip_prefix(b"FIX!") else {
                return part.to_vec();
            };
            let mut out = rest.to_vec();
            for e in out.chunks_exact_mut(12) {
                let crc = crc32fast::hash(&e[..8]);
                e[8..].copy_from_slice(&crc.to_le_bytes());
            }
            out
        }
        _ => {
            let Some(body) = part.strip_prefix(b"FIX!") else {
                return part.to_vec();
            };
            let mut out = body.to_vec();
            out.extend_from_slice(format!("crc32 {:08x}\n", crc32fast::hash(body)).as_bytes());
            out
        }
    }
}

/// One record as the format says it is stored.
#[derive(Debug, Clone)]
struct Expected {
    class: Class,
    topic: String,
    retain: bool,
    /// None: flagged deflate but does not inflate (peek skips it).
    payload: Option<Vec<u8>>,
}

fn class_of(code: u8, stream: usize) -> Option<Class> {
    let class = match code {
        1 => Class::Health,
        2 => Class::Event,
        3 => Class::Inventory,
        4 => Class::AgentHealth,
        _ => return None,
    };
    (usize::from(!class.droppable()) == stream).then_some(class)
}

/// The valid frames of a segment file, read independently of the library.
fn read_segment(bytes: &[u8], stream: usize) -> BTreeMap<u64, Expected> {
    let mut out = BTreeMap::new();
    if bytes.len() < MAGIC.len() {
        return out;
    }
    let mut offset = MAGIC.len();
    let mut last_seq = 0u64;
    while bytes.len() - offset >= 8 {
        let head = &bytes[offset..offset + 8];
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if !(BODY_HEAD..=MAX_BODY).contains(&len) || bytes.len() - offset - 8 < len {
            break;
        }
        let body = &bytes[offset + 8..offset + 8 + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
        let Some(class) = class_of(body[16], stream) else {
            break;
        };
        let flags = body[17];
        if flags & !3 != 0 {
            break;
        }
        let topic_len = usize::from(u16::from_le_bytes([body[18], body[19]]));
        let Some(topic) = body.get(BODY_HEAD..BODY_HEAD + topic_len) else {
            break;
        };
        let Ok(topic) = std::str::from_utf8(topic) else {
            break;
        };
        if seq <= last_seq {
            break;
        }
        // The index keeps seqs as a 32-bit delta from the segment's first.
        if out
            .keys()
            .next()
            .is_some_and(|&first| seq - first > u64::from(u32::MAX))
        {
            break;
        }
        let stored = &body[BODY_HEAD + topic_len..];
        let payload = if flags & 2 != 0 {
            miniz_oxide::inflate::decompress_to_vec_with_limit(stored, MAX_PAYLOAD).ok()
        } else {
            Some(stored.to_vec())
        };
        out.insert(
            seq,
            Expected {
                class,
                topic: topic.to_string(),
                retain: flags & 1 != 0,
                payload,
            },
        );
        last_seq = seq;
        offset += 8 + len;
    }
    out
}

/// Seqs acknowledged by the valid entries of an ack file.
fn read_acks(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(12)
        .filter(|e| crc32fast::hash(&e[..8]) == u32::from_le_bytes(e[8..].try_into().unwrap()))
        .map(|e| u64::from_le_bytes(e[..8].try_into().unwrap()))
        .collect()
}

fn write_seeds(out: &Path) {
    fs::create_dir_all(out).expect("seed dir");
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut q, _) = Queue::open(dir.path(), options()).expect("open");
    let json = |seq: u64| {
        format!("{{\"seq\":{seq},\"device\":\"sn-arris-1234\",\"in_bps\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],\"status\":\"up\"}}")
            .into_bytes()
    };
    q.push(Class::Inventory, "cpe/v1/gw-1/inventory/sn-x", true, json)
        .unwrap();
    q.push(Class::Health, "cpe/v1/gw-1/health/sn-x", false, json)
        .unwrap();
    q.push(Class::Event, "cpe/v1/gw-1/event", false, |_| {
        b"{\"e\":1}".to_vec()
    })
    .unwrap();
    q.push(Class::AgentHealth, "cpe/v1/gw-1/agent/health", true, |_| {
        b"{}".to_vec()
    })
    .unwrap();
    let third = q
        .push(Class::Health, "cpe/v1/gw-1/health/sn-y", false, json)
        .unwrap();
    q.ack(third).unwrap();
    q.push(Class::Event, "e", false, |_| Vec::new()).unwrap();
    q.sync().unwrap();
    let qdir = q.dir().to_path_buf();
    drop(q);
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in fs::read_dir(&qdir).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        );
    }
    let find = |suffix: &str, stream: &str| {
        files
            .iter()
            .find(|(n, _)| n.starts_with(stream) && n.ends_with(suffix))
            .map(|(_, p)| fs::read(p).unwrap())
            .unwrap_or_default()
    };
    let parts = [
        find(".seg", "health"),
        find(".seg", "events"),
        find(".ack", "health"),
        find(".ack", "events"),
        files
            .get("state")
            .map(|p| fs::read(p).unwrap())
            .unwrap_or_default(),
    ];
    let join = |parts: &[Vec<u8>]| parts.join(SEP);
    fs::write(out.join("seed-queue-dir"), join(&parts)).unwrap();
    // Just the events segment, and a torn copy of it.
    fs::write(
        out.join("seed-events-segment"),
        join(&[Vec::new(), parts[1].clone()]),
    )
    .unwrap();
    // The same directory with every checksum left to the harness (zeroed).
    let mut fix = parts.clone();
    for p in fix.iter_mut().take(2) {
        if p.len() >= 8 {
            p[..8].copy_from_slice(b"CPEQFIX1");
        }
    }
    for p in fix.iter_mut().skip(2).take(2) {
        if !p.is_empty() {
            p.splice(0..0, b"FIX!".iter().copied());
        }
    }
    if let Some(at) = fix[4].windows(6).position(|w| w == b"crc32 ") {
        fix[4].truncate(at);
        fix[4].splice(0..0, b"FIX!".iter().copied());
    }
    fs::write(out.join("seed-queue-dir-fix"), join(&fix)).unwrap();
    let torn = &parts[0][..parts[0].len() - 5];
    fs::write(out.join("seed-health-torn"), torn).unwrap();
    eprintln!("wrote seeds to {}", out.display());
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: OnceLock<()> = OnceLock::new();
    SEEDS.get_or_init(|| {
        if let Some(out) = std::env::var_os("CPE_FUZZ_WRITE_SEEDS") {
            write_seeds(Path::new(&out));
        }
    });

    let parts: Vec<Vec<u8>> = split(data)
        .iter()
        .enumerate()
        .map(|(i, p)| materialize(p, i))
        .collect();
    let root = root();
    let qdir = root.join("queue");
    let _ = fs::remove_dir_all(&qdir);
    fs::create_dir_all(&qdir).expect("queue dir");
    for (i, part) in parts.iter().enumerate() {
        let name = match i {
            0 | 1 => SEG_NAMES[i],
            2 | 3 => ACK_NAMES[i - 2],
            _ => "state",
        };
        if i == 0 || !part.is_empty() {
            fs::write(qdir.join(name), part).expect("write");
        }
    }

    // What the format says is there.
    let mut expected: BTreeMap<u64, Expected> = BTreeMap::new();
    for s in 0..2 {
        let Some(seg) = parts.get(s) else { continue };
        let mut records = read_segment(seg, s);
        if let Some(acks) = parts.get(2 + s) {
            for seq in read_acks(acks) {
                records.remove(&seq);
            }
        }
        for (seq, record) in records {
            // The same seq in both streams: the format does not forbid it,
            // keep the first (health) for the count check below.
            expected.entry(seq).or_insert(record);
        }
    }
    let duplicate_seqs = {
        let a = parts
            .first()
            .map(|p| read_segment(p, 0))
            .unwrap_or_default();
        let b = parts.get(1).map(|p| read_segment(p, 1)).unwrap_or_default();
        a.keys().any(|k| b.contains_key(k))
    };

    // Seqs at or above 2^63 exhaust the seq space (2^63 reports): the
    // library saturates there; only its not panicking is checked.
    let huge = (0..2).any(|s| {
        parts
            .get(s)
            .is_some_and(|p| read_segment(p, s).keys().any(|&k| k >= 1 << 63))
            || parts
                .get(2 + s)
                .is_some_and(|p| read_acks(p).iter().any(|&k| k >= 1 << 63))
    });

    let (mut q, report) =
        Queue::open(root, options()).expect("open must not fail on file contents");
    let debug = std::env::var_os("CPE_FUZZ_DEBUG").is_some();
    if debug {
        eprintln!(
            "expected {:?}\nfirst open: {report:?}",
            expected.keys().collect::<Vec<_>>()
        );
    }
    if !duplicate_seqs {
        assert_eq!(
            report.records,
            expected.len(),
            "open recovered {} records, the format says {}: {:?}",
            report.records,
            expected.len(),
            report.warnings
        );
    }
    let records = q.peek(None, usize::MAX).expect("peek");
    let mut last = 0;
    for r in &records {
        assert!(r.seq > last, "peek out of order");
        last = r.seq;
        if duplicate_seqs {
            continue;
        }
        let e = expected
            .get(&r.seq)
            .expect("peek returned a record the format does not have");
        assert_eq!(r.class, e.class);
        assert_eq!(r.topic, e.topic);
        assert_eq!(r.retain, e.retain);
        assert_eq!(Some(&r.payload), e.payload.as_ref(), "payload differs");
    }
    if !duplicate_seqs {
        let readable = expected.values().filter(|e| e.payload.is_some()).count();
        assert_eq!(records.len(), readable, "peek skipped a readable record");
    }
    // Paging from the middle returns the tail.
    if let Some(mid) = records.get(records.len() / 2) {
        let tail = q.peek(Some(mid.seq), usize::MAX).expect("peek");
        assert!(tail.iter().all(|r| r.seq > mid.seq));
    }
    let _ = q.stats();

    // Deliver everything, then queue one event and restart.
    for r in &records {
        q.ack(r.seq).expect("ack");
    }
    q.ack(0).expect("ack unknown");
    q.ack(u64::MAX).expect("ack unknown");
    let pushed = match q.push(Class::Event, "cpe/v1/fuzz/event", false, |seq| {
        format!("{{\"seq\":{seq}}}").into_bytes()
    }) {
        Ok(seq) => seq,
        Err(e) => panic!("push after recovery failed: {e}"),
    };
    if huge {
        return;
    }
    assert!(
        expected.keys().all(|&seq| seq < pushed),
        "seq {pushed} reused"
    );
    q.sync().expect("sync");
    if debug {
        eprintln!("pushed {pushed}, stats {:?}", q.stats());
        for e in fs::read_dir(&qdir).unwrap() {
            let e = e.unwrap();
            eprintln!("  {:?} {}", e.file_name(), e.metadata().unwrap().len());
        }
    }
    drop(q);

    let (q, report) = Queue::open(root, options()).expect("reopen");
    let after = q.peek(None, usize::MAX).expect("peek");
    if debug {
        eprintln!("second open: {report:?}");
    }
    if !duplicate_seqs {
        let seqs: Vec<u64> = after.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            vec![pushed],
            "after acking all and pushing one: {:?}",
            report.warnings
        );
    } else {
        assert!(after.iter().any(|r| r.seq == pushed), "pushed event lost");
    }
    assert!(
        q.stats().next_seq > pushed,
        "next seq not above the pushed one"
    );
});
