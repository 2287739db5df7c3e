//! The bounded, disk-backed store-and-forward queue every report passes
//! through before it is published.
//!
//! Why it exists: the WAN and the broker go away, the agent restarts, gets
//! `kill -9`ed, and the gateway loses power. Reports must survive all of that
//! as the contract promises (events and inventory always, health up to the
//! last fsync interval), on a router with little flash and RAM.
//!
//! # Why a home-made log and not redb or SQLite
//!
//! Measured (docs/queue.md has the table and the commands): redb adds about
//! 600 KiB to the stripped binary, SQLite about 1 MiB; a prototype of this log
//! with CRC32 40 KiB (this whole module, deflate included, 126 KiB). For one durable commit per record (what a router doing less
//! than one report a second does with a 1 s fsync interval) redb wrote 30 KiB
//! per record and 31 KiB per delete (B-tree pages, random rewrites: flash
//! wear), SQLite 9.6 KiB, the log 4.5 KiB (one tail page). redb refused to
//! open a file whose last 4 KiB were cut ("File truncated below stored
//! layout"), so a torn file would lose the whole queue, and returned silently
//! damaged values for flipped bytes in data pages (its checksums are checked
//! only on repair). Neither database shrinks its file when records are
//! deleted. A queue needs none of what they offer beyond an append, an in-order
//! read and a delete of the oldest, which an append-only log does with
//! sequential writes.
//!
//! # Files (in `<state_dir>/queue/`)
//!
//! - `health-<id>.seg`, `events-<id>.seg`: segments. Records live in two
//!   streams: health (`Health`, `AgentHealth`, which may be dropped) and events
//!   (`Event`, `Inventory`, which never are). Dropping the oldest health is
//!   then deleting the oldest health segment, with no compaction and no
//!   rewrite. `<id>` is 16 hex digits: the seq of the record that the segment
//!   was created for, so ids are never reused (seqs are not) and sort in seq
//!   order. A segment is about `max_bytes / 64` bytes, clamped to 4 KiB..1 MiB,
//!   so one dropped segment is at most 1/64 of the budget. A segment starts with
//!   the 8-byte magic `CPEQSEG1`, followed by frames:
//!
//!   ```text
//!   body_len u32 LE | crc32(body) u32 LE | body
//!   body = seq u64 | enqueued_at_ms u64 | class u8 | flags u8 | topic_len u16 | topic | payload
//!   ```
//!
//!   Integers are little-endian. class: 1 Health, 2 Event, 3 Inventory,
//!   4 AgentHealth. flags: bit 0 retain, bit 1 payload is raw deflate
//!   (`miniz_oxide`, level 6; used when it is smaller, which for JSON health
//!   reports is always: 1.65 KB of JSON becomes about 400 B, 472 B on disk with
//!   topic and framing). Per-record compression
//!   keeps records independent, so recovery and random access stay simple.
//! - `<stream>-<id>.ack`: the acks for the records of that segment, appended
//!   as 12-byte entries `seq u64 LE | crc32(seq bytes) u32 LE`. A segment whose
//!   records are all acknowledged is deleted with its ack file. The ack file
//!   is only written for a segment that still has records to keep, so in the
//!   steady state (broker online) it stays small.
//! - `state`: a small text file (written to `state.tmp`, fsynced, renamed, the
//!   directory fsynced): the seq high-water mark and `dropped_health` (written
//!   by `sync`, and by `flush_due` at most once a minute when it changed),
//!   with a CRC. Seqs are reserved in blocks of 1024: before a seq at or above the
//!   persisted mark is issued, the mark moves 1024 ahead, durably. So after a
//!   crash or power loss no seq is ever reused; [`Queue::sync`] (clean
//!   shutdown) writes the exact next seq with `exact 1`, so a clean restart
//!   leaves no gap.
//! - `issued`: one fixed-length line, `cpe-agent issued 1 <boot id> <next
//!   seq> <crc32>`, rewritten in place at every push with no fsync. A process
//!   crash (`kill -9`) loses no page cache, so when the boot id is still the
//!   kernel's the marker is exact and seqs go on with no gap. After a power
//!   cut or a kernel crash (another boot id, or no readable marker) seqs go on
//!   above the reserved block, and [`OpenReport::skipped`] names the seqs
//!   skipped (from the marker or the highest seq on disk up to the block's
//!   end), which the birth status tells the NOC.
//!
//! # fsync policy and what a power loss can lose
//!
//! Event and Inventory pushes are written and `fdatasync`ed before `push`
//! returns, whatever the policy. Health pushes are written to the page cache
//! and synced by [`Queue::flush_due`] once the interval has passed
//! ([`FsyncPolicy::Interval`], default 1 s) or at once ([`FsyncPolicy::Always`]).
//! A new segment is fsynced with its directory before it is used. So a power
//! loss loses at most the health pushed during the last interval and never an
//! event or inventory record once `push` returned. Acks are synced on the same
//! schedule as health; an ack lost to a power cut only means that record is
//! delivered again (at-least-once, the broker sees a duplicate seq). A process
//! crash or `kill -9` loses nothing: the data is in the page cache.
//!
//! # When the queue is full (`max_bytes`, on-disk bytes)
//!
//! Before a record is added, if it would not fit, the oldest health segments
//! are deleted, whole, oldest first, and their unacknowledged records counted
//! in `dropped_health` (persisted). Events and inventory are never dropped: if
//! only they are left and a health record still does not fit, the health push
//! is refused ([`QueueError::Full`], counted as dropped); an event or inventory
//! push is still accepted beyond `max_bytes`, until the disk itself fails
//! ([`QueueError::DiskFull`]: nothing queued is lost, pushes work again once
//! space returns). A gap in seq therefore means a dropped health report (or a
//! crash, above).
//!
//! # Recovery
//!
//! [`Queue::open`] reads every segment front to back and checks each frame:
//! length in bounds, CRC, known class for that stream, known flags, UTF-8
//! topic, seq increasing. The first bad frame ends the segment: the rest is cut
//! (the file truncated) and reported in [`OpenReport`] (`truncated_bytes`, a
//! warning naming the file and offset). A torn tail after a power cut is the
//! common case; a bad record in the middle of an older segment costs only the
//! rest of that segment, later segments are kept. A damaged segment header is
//! reported and rewritten if the frames behind it check out. Nothing on disk
//! makes `open` fail or panic; only failing to create or list the directory
//! does. A record that turns out unreadable later (flash bit rot) is skipped by
//! `peek` with a log line and removed.
//!
//! # RAM
//!
//! No payload is kept in memory: each record costs a 12-byte index entry (seq
//! delta, offset, length and flags), kept per segment, plus about 100 bytes
//! per segment. `peek` reads records back with `pread`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{FsyncSetting, StorageConfig};
use crate::files;

/// What a record is, which decides what may be dropped when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Health,
    Event,
    Inventory,
    AgentHealth,
}

impl Class {
    /// Health and AgentHealth may be dropped when the queue is full; events and
    /// inventory never are.
    pub fn droppable(self) -> bool {
        matches!(self, Class::Health | Class::AgentHealth)
    }

    fn stream(self) -> usize {
        if self.droppable() {
            HEALTH
        } else {
            EVENTS
        }
    }

    fn code(self) -> u8 {
        match self {
            Class::Health => 1,
            Class::Event => 2,
            Class::Inventory => 3,
            Class::AgentHealth => 4,
        }
    }

    fn from_code(code: u8) -> Option<Class> {
        match code {
            1 => Some(Class::Health),
            2 => Some(Class::Event),
            3 => Some(Class::Inventory),
            4 => Some(Class::AgentHealth),
            _ => None,
        }
    }
}

/// One queued report, as `peek` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub class: Class,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// Unix time in milliseconds when it was pushed.
    pub enqueued_at_ms: u64,
}

/// When health records and acks reach the disk. Events and inventory are
/// synced before `push` returns in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// The most disk the queue may use (default 64 MiB).
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_bytes: 64 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
        }
    }
}

impl QueueOptions {
    /// The options that `[storage]` asks for.
    pub fn from_storage(storage: &StorageConfig) -> QueueOptions {
        QueueOptions {
            max_bytes: storage.queue_max_bytes.0,
            fsync: match storage.queue_fsync {
                FsyncSetting::Always => FsyncPolicy::Always,
                FsyncSetting::Interval(d) => FsyncPolicy::Interval(d.0),
            },
        }
    }
}

/// What `open` found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenReport {
    /// Unacknowledged records recovered.
    pub records: usize,
    /// Bytes on disk after recovery.
    pub bytes: u64,
    /// Bytes cut from damaged or torn segments.
    pub truncated_bytes: u64,
    /// One line per problem found, naming the file: log them.
    pub warnings: Vec<String>,
    /// Seqs (first, last) this start skips: the agent stopped without
    /// saying where its seqs ended (a power cut, a crash of the kernel), so
    /// it goes on above the reserved block. None of them is assigned from
    /// now on; the NOC counts them as skipped, not lost (docs/mqtt.md).
    pub skipped: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Unacknowledged records.
    pub records: usize,
    /// Bytes on disk (segments and ack files).
    pub bytes: u64,
    pub oldest_enqueued_at_ms: Option<u64>,
    /// Health records dropped to make room, since the queue was created
    /// (persisted).
    pub dropped_health: u64,
    /// The seq the next push will get.
    pub next_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot use the queue directory {}: {cause}; check that the state directory exists, is on a mounted filesystem and is writable by the agent", path.display())]
    Dir { path: PathBuf, cause: io::Error },
    #[error("state directory {} is full ({cause}) while writing {}: queued data is kept; new reports are refused until space returns", dir.display(), path.display())]
    DiskFull {
        dir: PathBuf,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("cannot {action} {}: {cause}; queued data already on disk is kept and is recovered at the next start", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("the report queue in {} is full of events and inventory ({bytes} bytes, limit {max_bytes}): health report seq {seq} was dropped; health is queued again once the broker acknowledges queued reports (or raise storage.queue_max_bytes)", dir.display())]
    Full {
        dir: PathBuf,
        seq: u64,
        bytes: u64,
        max_bytes: u64,
    },
    #[error("report for {topic} is too large to queue ({len} bytes, the limit is {max}); it was not queued")]
    TooLarge {
        topic: String,
        len: usize,
        max: usize,
    },
}

/// Largest payload `push` accepts (before compression).
pub const MAX_PAYLOAD: usize = 16 << 20;

const DIR_NAME: &str = "queue";
const STATE_FILE: &str = "state";
/// The next seq to issue, rewritten in place at every push (no fsync) with
/// the kernel's boot id: exact after `kill -9`, which loses no page cache.
const ISSUED_FILE: &str = "issued";
const ISSUED_MAGIC: &str = "cpe-agent issued 1";
const STATE_TMP: &str = "state.tmp";
const STATE_MAGIC: &str = "cpe-agent queue state 1";
const SEGMENT_MAGIC: &[u8; 8] = b"CPEQSEG1";
const HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
const FRAME_HEAD: usize = 8;
const BODY_HEAD: usize = 20;
const MAX_BODY: usize = BODY_HEAD + u16::MAX as usize + MAX_PAYLOAD;
const ACK_ENTRY: usize = 12;
const SEQ_BLOCK: u64 = 1024;
/// `flush_due` rewrites `state` for a changed `dropped_health` at most this
/// often: a queue full of events refuses health every poll, and a state
/// write is three fsyncs.
const STATE_INTERVAL: Duration = Duration::from_secs(60);
const MIN_SEGMENT: u64 = 4 << 10;
const MAX_SEGMENT: u64 = 1 << 20;
const FLAG_RETAIN: u8 = 1;
const FLAG_DEFLATE: u8 = 2;
const COMPRESS_MIN: usize = 64;
const DEFLATE_LEVEL: u8 = 6;
const HEALTH: usize = 0;
const EVENTS: usize = 1;
const STREAM_NAMES: [&str; 2] = ["health", "events"];
/// Index entry `meta`: frame length in the low 28 bits, then flags.
const LEN_MASK: u32 = (1 << 28) - 1;
const CLASS_SHIFT: u32 = 28;
const ACKED_BIT: u32 = 1 << 31;

/// One record in the in-memory index: 12 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// seq - segment.base_seq
    delta: u32,
    /// Offset of the frame in the segment file.
    offset: u32,
    /// Frame length | (class code - 1) << 28 | acked << 31.
    meta: u32,
}

impl Entry {
    fn new(delta: u32, offset: u32, len: u32, class: Class) -> Entry {
        Entry {
            delta,
            offset,
            meta: (len & LEN_MASK) | (u32::from(class.code() - 1) << CLASS_SHIFT),
        }
    }
    fn len(self) -> u32 {
        self.meta & LEN_MASK
    }
    fn acked(self) -> bool {
        self.meta & ACKED_BIT != 0
    }
}

struct Segment {
    id: u64,
    /// seq of the first entry (the id while the segment is empty).
    base_seq: u64,
    entries: Vec<Entry>,
    /// Entries not yet acknowledged.
    live: usize,
    /// Valid bytes in the segment file.
    size: u64,
    /// Bytes in the ack file.
    ack_size: u64,
    ack_file: Option<File>,
    ack_dirty: bool,
    /// No more appends: not the newest segment of its stream, or rotated.
    sealed: bool,
}

impl Segment {
    fn new(id: u64) -> Segment {
        Segment {
            id,
            base_seq: id,
            entries: Vec::new(),
            live: 0,
            size: HEADER_LEN,
            ack_size: 0,
            ack_file: None,
            ack_dirty: false,
            sealed: false,
        }
    }

    fn seq(&self, e: Entry) -> u64 {
        self.base_seq + u64::from(e.delta)
    }

    fn last_seq(&self) -> Option<u64> {
        self.entries.last().map(|&e| self.seq(e))
    }

    fn find(&self, seq: u64) -> Option<usize> {
        let delta = u32::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.entries.binary_search_by_key(&delta, |e| e.delta).ok()
    }
}

#[derive(Default)]
struct Stream {
    segments: VecDeque<Segment>,
    /// Append handle of `segments.back()`, while it is not sealed.
    active: Option<File>,
    /// `active` has writes not yet synced.
    dirty: bool,
}

/// Test hook: the next writes fail as if the disk were full, after writing
/// `partial` bytes of the buffer.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
struct Fault {
    partial: usize,
}

/// The queue. Not shared between processes: one agent owns its state
/// directory.
pub struct Queue {
    dir: PathBuf,
    options: QueueOptions,
    segment_size: u64,
    streams: [Stream; 2],
    next_seq: u64,
    /// Persisted in `state`: every seq ever issued is below it.
    seq_ceiling: u64,
    /// The `issued` file, open for the queue's life; `None` where it could
    /// not be opened (then a crash costs a gap, as a power cut does).
    issued: Option<fs::File>,
    boot_id: String,
    /// What [`OpenReport::skipped`] said, for the birth status.
    skipped: Option<(u64, u64)>,
    dropped_health: u64,
    persisted_dropped: u64,
    records: usize,
    bytes: u64,
    last_sync: Instant,
    last_state_write: Instant,
    /// Seqs `peek` found unreadable; removed by the next `&mut` call.
    unreadable: Mutex<Vec<u64>>,
    fault: Option<Fault>,
}

impl Queue {
    /// Opens (creating) the queue in `dir/queue/` and recovers what a crash
    /// left. Damage on disk is cut and reported in the [`OpenReport`], never
    /// an error; only failing to create or list the directory is.
    pub fn open(dir: &Path, options: QueueOptions) -> Result<(Queue, OpenReport), QueueError> {
        let qdir = dir.join(DIR_NAME);
        let dir_err = |cause| QueueError::Dir {
            path: qdir.clone(),
            cause,
        };
        fs::create_dir_all(&qdir).map_err(dir_err)?;
        let mut report = OpenReport::default();
        let mut seg_ids: [Vec<u64>; 2] = Default::default();
        let mut ack_ids: [Vec<u64>; 2] = Default::default();
        let mut have_state = false;
        for entry in fs::read_dir(&qdir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            match name.to_str().and_then(parse_name) {
                Some(Name::Segment(s, id)) => seg_ids[s].push(id),
                Some(Name::Ack(s, id)) => ack_ids[s].push(id),
                Some(Name::State) => have_state = true,
                Some(Name::Issued) => {}
                Some(Name::StateTmp) => {
                    let _ = fs::remove_file(entry.path());
                }
                None => report.warnings.push(format!(
                    "{}: not a queue file; ignored",
                    entry.path().display()
                )),
            }
        }

        let state = if have_state {
            read_state(&qdir.join(STATE_FILE), &mut report)
        } else {
            if seg_ids.iter().any(|ids| !ids.is_empty()) {
                report.warnings.push(format!(
                    "{}: missing; seqs continue above the highest queued one, and seqs of reports already delivered may be issued again",
                    qdir.join(STATE_FILE).display()
                ));
            }
            None
        };
        let state = state.unwrap_or(QueueState {
            ceiling: 1,
            dropped: 0,
            exact: true,
        });
        let (ceiling, dropped) = (state.ceiling, state.dropped);

        let mut queue = Queue {
            segment_size: (options.max_bytes / 64).clamp(MIN_SEGMENT, MAX_SEGMENT),
            dir: qdir,
            options,
            streams: Default::default(),
            next_seq: 1,
            seq_ceiling: ceiling,
            issued: None,
            boot_id: boot_id(),
            skipped: None,
            dropped_health: dropped,
            persisted_dropped: dropped,
            records: 0,
            bytes: 0,
            last_sync: Instant::now(),
            last_state_write: Instant::now(),
            unreadable: Mutex::new(Vec::new()),
            fault: None,
        };
        let mut max_seq = 0;
        for (s, ids) in seg_ids.iter_mut().enumerate() {
            ids.sort_unstable();
            let mut last_seq = 0;
            for &id in ids.iter() {
                if let Some(seg) = queue.recover_segment(s, id, &mut last_seq, &mut report) {
                    queue.streams[s].segments.push_back(seg);
                }
            }
            max_seq = max_seq.max(last_seq);
        }
        for (s, ids) in ack_ids.iter().enumerate() {
            for &id in ids {
                // An ack names a seq that was issued, even when its record
                // was cut since (a torn tail): never issue it again, or the
                // stale ack would remove the new record at the next start.
                let acked = queue.recover_acks(s, id, &mut report);
                max_seq = max_seq.max(acked);
            }
        }
        for s in 0..2 {
            for seg in queue.streams[s].segments.iter() {
                queue.records += seg.live;
                queue.bytes += seg.size + seg.ack_size;
            }
            // Everything acknowledged: nothing left to deliver.
            let mut i = 0;
            while i < queue.streams[s].segments.len() {
                if queue.streams[s].segments[i].live == 0 && queue.delete_segment(s, i) {
                    continue;
                }
                i += 1;
            }
            let segments = &mut queue.streams[s].segments;
            let n = segments.len();
            for (i, seg) in segments.iter_mut().enumerate() {
                seg.sealed |= i + 1 < n;
            }
        }
        let known = max_seq.saturating_add(1).max(1);
        let issued = read_issued(&queue.dir.join(ISSUED_FILE));
        let same_boot = |boot: &str| !boot.is_empty() && boot == queue.boot_id;
        queue.next_seq = match issued {
            _ if state.exact => ceiling.max(known),
            // Killed in this boot: the page cache is whole, the marker exact.
            Some((boot, next)) if same_boot(&boot) && next >= known && next <= ceiling => next,
            // A power cut or a kernel crash: the marker may be stale; go on
            // above the reserved block and say which seqs are skipped.
            _ => {
                let next = ceiling.max(known);
                let from = issued.map_or(known, |(_, i)| i.max(known));
                if from < next {
                    report.skipped = Some((from, next - 1));
                }
                next
            }
        };
        queue.skipped = report.skipped;
        queue.open_issued(&mut report);
        report.records = queue.records;
        report.bytes = queue.bytes;
        Ok((queue, report))
    }

    /// Appends a record and returns its seq, which `payload` is given to build
    /// the bytes. Seqs increase strictly, across restarts, and are never
    /// reused. An `Err` means the record was not queued.
    pub fn push(
        &mut self,
        class: Class,
        topic: &str,
        retain: bool,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, QueueError> {
        self.purge_unreadable();
        if topic.len() > usize::from(u16::MAX) {
            return Err(QueueError::TooLarge {
                topic: topic.chars().take(80).collect(),
                len: topic.len(),
                max: usize::from(u16::MAX),
            });
        }
        let seq = self.next_seq;
        // Saturating: only a damaged file with a valid CRC gets near u64::MAX.
        if seq >= self.seq_ceiling {
            self.write_state(seq.saturating_add(SEQ_BLOCK))?;
        }
        self.next_seq = seq.saturating_add(1);
        self.write_issued();
        let payload = payload(seq);
        if payload.len() > MAX_PAYLOAD {
            return Err(QueueError::TooLarge {
                topic: topic.to_string(),
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let frame = encode_frame(seq, now_ms(), class, retain, topic, &payload);
        let need = frame.len() as u64 + HEADER_LEN;
        self.make_room(need);
        if class.droppable() && self.bytes + need > self.options.max_bytes {
            self.dropped_health += 1;
            return Err(QueueError::Full {
                dir: self.dir.clone(),
                seq,
                bytes: self.bytes,
                max_bytes: self.options.max_bytes,
            });
        }
        self.append(class, seq, &frame)?;
        Ok(seq)
    }

    /// Up to `limit` unacknowledged records with seq > `after` (`None`: from
    /// the oldest), oldest first. A record that fails its CRC now (damage
    /// since `open`) is skipped with a log line and removed by the next
    /// mutating call.
    pub fn peek(&self, after: Option<u64>, limit: usize) -> Result<Vec<Record>, QueueError> {
        let mut out = Vec::new();
        let after = after.unwrap_or(0);
        let mut cursors = [
            Cursor::new(&self.streams[HEALTH].segments, after),
            Cursor::new(&self.streams[EVENTS].segments, after),
        ];
        let mut open: Option<(usize, u64, File)> = None;
        while out.len() < limit {
            let s = match (cursors[0].current(), cursors[1].current()) {
                (None, None) => break,
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (Some((_, _, a)), Some((_, _, b))) => usize::from(b < a),
            };
            let Some((si, ei, seq)) = cursors[s].current() else {
                break;
            };
            cursors[s].advance();
            let seg = &self.streams[s].segments[si];
            let path = seg_path(&self.dir, s, seg.id);
            let file = match &open {
                Some((os, id, f)) if *os == s && *id == seg.id => f,
                _ => {
                    let f = File::open(&path)
                        .map_err(|cause| io_err(&self.dir, "open", &path, cause))?;
                    &open.insert((s, seg.id, f)).2
                }
            };
            let entry = seg.entries[ei];
            let mut buf = vec![0; entry.len() as usize];
            file.read_exact_at(&mut buf, u64::from(entry.offset))
                .map_err(|cause| io_err(&self.dir, "read", &path, cause))?;
            match decode_frame(&buf, s) {
                Ok(record) if record.seq == seq => match inflate(record) {
                    Ok(record) => out.push(record),
                    Err(reason) => self.note_unreadable(&path, entry.offset, seq, &reason),
                },
                Ok(record) => self.note_unreadable(
                    &path,
                    entry.offset,
                    seq,
                    &format!("holds seq {} instead", record.seq),
                ),
                Err(reason) => self.note_unreadable(&path, entry.offset, seq, &reason),
            }
        }
        Ok(out)
    }

    /// The broker has the record (PUBACK): remove it. Acks may come in any
    /// order; an unknown or already acknowledged seq is a no-op. On `Err` the
    /// ack still holds in memory; only its persistence failed, so the record
    /// may be delivered again after a restart.
    pub fn ack(&mut self, seq: u64) -> Result<(), QueueError> {
        self.purge_unreadable();
        self.ack_inner(seq)
    }

    /// The seqs this start skipped (see [`OpenReport::skipped`]).
    pub fn skipped(&self) -> Option<(u64, u64)> {
        self.skipped
    }

    pub fn stats(&self) -> Stats {
        Stats {
            records: self.records,
            bytes: self.bytes,
            oldest_enqueued_at_ms: self.oldest_enqueued_at_ms(),
            dropped_health: self.dropped_health,
            next_seq: self.next_seq,
        }
    }

    /// Forces every buffered write to disk and records the exact next seq, so
    /// that a clean restart continues without a gap. Call it at shutdown; on
    /// the timer call [`Queue::flush_due`], which is cheaper on flash.
    pub fn sync(&mut self) -> Result<(), QueueError> {
        self.purge_unreadable();
        self.sync_data()?;
        if self.seq_ceiling != self.next_seq || self.persisted_dropped != self.dropped_health {
            self.write_state(self.next_seq)?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs buffered health records and acks if the fsync interval has
    /// passed since the last sync; otherwise does nothing. Cheap: call it on
    /// every tick. A changed `dropped_health` is persisted at most once a
    /// minute here (and always by `sync`).
    pub fn flush_due(&mut self) -> Result<(), QueueError> {
        let interval = match self.options.fsync {
            FsyncPolicy::Always => Duration::from_secs(1),
            FsyncPolicy::Interval(d) => d,
        };
        if self.last_sync.elapsed() < interval {
            return Ok(());
        }
        self.last_sync = Instant::now();
        self.purge_unreadable();
        self.sync_data()?;
        if self.persisted_dropped != self.dropped_health
            && self.last_state_write.elapsed() >= STATE_INTERVAL
        {
            self.write_state(self.seq_ceiling.max(self.next_seq))?;
        }
        Ok(())
    }

    /// Heap bytes held by the in-memory index (entries and segments).
    pub fn index_heap_bytes(&self) -> usize {
        self.streams
            .iter()
            .map(|st| {
                st.segments.capacity() * std::mem::size_of::<Segment>()
                    + st.segments
                        .iter()
                        .map(|g| g.entries.capacity() * std::mem::size_of::<Entry>())
                        .sum::<usize>()
            })
            .sum()
    }

    /// The directory holding the queue's files (`<state_dir>/queue`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---- internals ----

    /// Writes `buf` at the end of `file` (opened for append), through the
    /// test fault hook.
    fn write_through(fault: Option<Fault>, file: &mut File, buf: &[u8]) -> io::Result<()> {
        if let Some(f) = fault {
            file.write_all(&buf[..f.partial.min(buf.len())])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        file.write_all(buf)
    }

    fn append(&mut self, class: Class, seq: u64, frame: &[u8]) -> Result<(), QueueError> {
        let s = class.stream();
        let len = frame.len() as u64;
        let reuse = match self.streams[s].segments.back() {
            Some(b) => {
                !b.sealed
                    && (b.entries.is_empty()
                        || (b.size + len <= self.segment_size
                            && seq - b.base_seq <= u64::from(u32::MAX)))
            }
            None => false,
        };
        if !reuse {
            self.seal_back(s)?;
            self.create_segment(s, seq)?;
        }
        let fault = self.fault;
        let durable = s == EVENTS || self.options.fsync == FsyncPolicy::Always;
        let Some(id) = self.streams[s].segments.back().map(|g| g.id) else {
            return Ok(()); // create_segment pushed one; unreachable
        };
        let path = seg_path(&self.dir, s, id);
        if self.streams[s].active.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|cause| io_err(&self.dir, "open", &path, cause))?;
            self.streams[s].active = Some(f);
        }
        let stream = &mut self.streams[s];
        let (Some(seg), Some(file)) = (stream.segments.back_mut(), stream.active.as_mut()) else {
            return Ok(()); // both set above; unreachable
        };
        let offset = seg.size;
        let written = Self::write_through(fault, file, frame).and_then(|()| {
            if durable {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(cause) = written {
            // Take the partial frame back, so the next append starts clean;
            // if even that fails, never append to this file again (open cuts
            // the torn tail).
            if file.set_len(offset).is_err() {
                seg.sealed = true;
                stream.active = None;
            }
            return Err(io_err(&self.dir, "append to", &path, cause));
        }
        if !durable {
            stream.dirty = true;
        }
        if seg.entries.is_empty() {
            seg.base_seq = seq;
        }
        // Both fit: segments stay far below 4 GiB, frames below 2^28 bytes,
        // and a segment rolls over before its seq span exceeds u32.
        seg.entries.push(Entry::new(
            (seq - seg.base_seq) as u32,
            offset as u32,
            len as u32,
            class,
        ));
        seg.size += len;
        seg.live += 1;
        self.records += 1;
        self.bytes += len;
        Ok(())
    }

    /// No more appends to the newest segment of stream `s`: sync it, and
    /// delete it if nothing in it is left to deliver.
    fn seal_back(&mut self, s: usize) -> Result<(), QueueError> {
        let stream = &mut self.streams[s];
        let Some(seg) = stream.segments.back_mut() else {
            return Ok(());
        };
        if let Some(file) = stream.active.take() {
            if stream.dirty {
                if let Err(cause) = file.sync_data() {
                    stream.active = Some(file);
                    let path = seg_path(&self.dir, s, seg.id);
                    return Err(io_err(&self.dir, "sync", &path, cause));
                }
            }
        }
        stream.dirty = false;
        seg.sealed = true;
        seg.entries.shrink_to_fit();
        let empty = seg.live == 0;
        let last = stream.segments.len() - 1;
        if empty {
            self.delete_segment(s, last);
        }
        Ok(())
    }

    fn create_segment(&mut self, s: usize, id: u64) -> Result<(), QueueError> {
        let path = seg_path(&self.dir, s, id);
        let fault = self.fault;
        let created = (|| {
            let mut f = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)?;
            let written = Self::write_through(fault, &mut f, SEGMENT_MAGIC)
                .and_then(|()| f.sync_data())
                .and_then(|()| files::sync_dir(&self.dir));
            if let Err(e) = written {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            Ok(f)
        })();
        let file = created.map_err(|cause| io_err(&self.dir, "create", &path, cause))?;
        let stream = &mut self.streams[s];
        stream.segments.push_back(Segment::new(id));
        stream.active = Some(file);
        stream.dirty = false;
        self.bytes += HEADER_LEN;
        Ok(())
    }

    /// Deletes segment `i` of stream `s` and its ack file. Returns false (and
    /// keeps it) if the segment file could not be removed.
    fn delete_segment(&mut self, s: usize, i: usize) -> bool {
        let Some(seg) = self.streams[s].segments.get(i) else {
            return false;
        };
        let (id, live, size) = (seg.id, seg.live, seg.size + seg.ack_size);
        let path = seg_path(&self.dir, s, id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a queue segment; it is kept");
                return false;
            }
        }
        let ack = ack_path(&self.dir, s, id);
        if let Err(e) = fs::remove_file(&ack) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %ack.display(), error = %e, "cannot delete a queue ack file");
            }
        }
        let stream = &mut self.streams[s];
        if i + 1 == stream.segments.len() {
            stream.active = None;
            stream.dirty = false;
        }
        stream.segments.remove(i);
        self.records -= live;
        self.bytes -= size;
        true
    }

    /// Drops the oldest health segments, whole, until `need` more bytes fit.
    fn make_room(&mut self, need: u64) {
        while self.bytes + need > self.options.max_bytes {
            let Some(seg) = self.streams[HEALTH].segments.front() else {
                break;
            };
            let live = seg.live as u64;
            if !self.delete_segment(HEALTH, 0) {
                break;
            }
            self.dropped_health += live;
        }
    }

    fn ack_inner(&mut self, seq: u64) -> Result<(), QueueError> {
        let Some((s, i, e)) = self.locate(seq) else {
            return Ok(());
        };
        let seg = &mut self.streams[s].segments[i];
        if seg.entries[e].acked() {
            return Ok(());
        }
        seg.entries[e].meta |= ACKED_BIT;
        seg.live -= 1;
        self.records -= 1;
        if seg.live == 0 && seg.sealed && self.delete_segment(s, i) {
            return Ok(());
        }
        let id = self.streams[s].segments[i].id;
        let path = ack_path(&self.dir, s, id);
        let fault = self.fault;
        let always = self.options.fsync == FsyncPolicy::Always;
        let seg = &mut self.streams[s].segments[i];
        if seg.ack_file.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|cause| io_err(&self.dir, "open", &path, cause))?;
            seg.ack_file = Some(f);
        }
        let Some(file) = seg.ack_file.as_mut() else {
            return Ok(()); // set above; unreachable
        };
        let entry = ack_entry(seq);
        let written = Self::write_through(fault, file, &entry).and_then(|()| {
            if always {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(cause) = written {
            // Keep the file a whole number of entries.
            let _ = file.set_len(seg.ack_size);
            return Err(io_err(&self.dir, "append to", &path, cause));
        }
        seg.ack_size += ACK_ENTRY as u64;
        seg.ack_dirty = !always;
        self.bytes += ACK_ENTRY as u64;
        Ok(())
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize, usize)> {
        (0..2).find_map(|s| {
            let segs = &self.streams[s].segments;
            let i = segs.partition_point(|g| g.base_seq <= seq).checked_sub(1)?;
            segs[i].find(seq).map(|e| (s, i, e))
        })
    }

    fn oldest_enqueued_at_ms(&self) -> Option<u64> {
        let a = Cursor::new(&self.streams[HEALTH].segments, 0).current();
        let b = Cursor::new(&self.streams[EVENTS].segments, 0).current();
        let (s, (i, e, seq)) = match (a, b) {
            (Some(a), Some(b)) if b.2 < a.2 => (EVENTS, b),
            (Some(a), _) => (HEALTH, a),
            (None, Some(b)) => (EVENTS, b),
            (None, None) => return None,
        };
        let seg = &self.streams[s].segments[i];
        let mut head = [0u8; FRAME_HEAD + 16];
        File::open(seg_path(&self.dir, s, seg.id))
            .and_then(|f| f.read_exact_at(&mut head, u64::from(seg.entries[e].offset)))
            .ok()?;
        (le_u64(&head[FRAME_HEAD..]) == seq).then(|| le_u64(&head[FRAME_HEAD + 8..]))
    }

    fn sync_data(&mut self) -> Result<(), QueueError> {
        let mut first_error = None;
        for s in 0..2 {
            let stream = &mut self.streams[s];
            if let (true, Some(f)) = (stream.dirty, &stream.active) {
                match f.sync_data() {
                    Ok(()) => stream.dirty = false,
                    Err(cause) => {
                        let id = stream.segments.back().map_or(0, |g| g.id);
                        first_error.get_or_insert((seg_path(&self.dir, s, id), cause));
                    }
                }
            }
            for seg in self.streams[s].segments.iter_mut() {
                if let (true, Some(f)) = (seg.ack_dirty, &seg.ack_file) {
                    match f.sync_data() {
                        Ok(()) => seg.ack_dirty = false,
                        Err(cause) => {
                            let path = ack_path(&self.dir, s, seg.id);
                            first_error.get_or_insert((path, cause));
                        }
                    }
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((path, cause)) => Err(io_err(&self.dir, "sync", &path, cause)),
        }
    }

    /// Opens (creating) the `issued` file and writes the next seq into it.
    fn open_issued(&mut self, report: &mut OpenReport) {
        let path = self.dir.join(ISSUED_FILE);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => {
                self.issued = Some(file);
                self.write_issued();
            }
            Err(e) => report.warnings.push(format!(
                "{}: cannot open ({e}); a crash of the agent will skip up to {SEQ_BLOCK} seqs",
                path.display()
            )),
        }
    }

    /// Rewrites the `issued` marker in place: one fixed-size write to the
    /// page cache, no fsync (a power cut is what the reserved block is for).
    fn write_issued(&mut self) {
        let Some(file) = &self.issued else { return };
        let line = issued_line(&self.boot_id, self.next_seq);
        if let Err(e) = file.write_all_at(line.as_bytes(), 0) {
            tracing::warn!(file = %self.dir.join(ISSUED_FILE).display(), error = %e, "cannot write the issued-seq marker; a crash of the agent will skip up to {SEQ_BLOCK} seqs");
            self.issued = None;
        }
    }

    /// Persists `state` with the given seq ceiling, atomically (tmp, fsync,
    /// rename, fsync the directory).
    fn write_state(&mut self, ceiling: u64) -> Result<(), QueueError> {
        let exact = if ceiling == self.next_seq {
            "exact 1\n"
        } else {
            ""
        };
        let text = format!(
            "{STATE_MAGIC}\nnext_seq {ceiling}\ndropped_health {}\n{exact}",
            self.dropped_health
        );
        let text = format!("{text}crc32 {:08x}\n", crc32fast::hash(text.as_bytes()));
        let fault = self.fault;
        let written = files::replace(&self.dir.join(STATE_FILE), 0o666, |f| {
            Self::write_through(fault, f, text.as_bytes())
        })
        .and_then(|()| files::sync_dir(&self.dir));
        if let Err(cause) = written {
            return Err(io_err(
                &self.dir,
                "write",
                &self.dir.join(STATE_FILE),
                cause,
            ));
        }
        self.seq_ceiling = ceiling;
        self.persisted_dropped = self.dropped_health;
        self.last_state_write = Instant::now();
        Ok(())
    }

    fn note_unreadable(&self, path: &Path, offset: u32, seq: u64, reason: &str) {
        tracing::warn!(file = %path.display(), offset, seq, reason, "queued record is unreadable (damaged on disk since it was written); it is skipped and removed");
        self.unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seq);
    }

    fn purge_unreadable(&mut self) {
        let seqs = std::mem::take(self.unreadable.get_mut().unwrap_or_else(|e| e.into_inner()));
        for seq in seqs {
            if let Err(e) = self.ack_inner(seq) {
                tracing::warn!(seq, error = %e, "cannot record the removal of an unreadable record");
            }
        }
    }

    /// Reads segment `id` of stream `s`, cutting it at the first bad frame.
    /// Returns None when nothing in it is usable (the file is then deleted)
    /// or it cannot be read (left alone).
    fn recover_segment(
        &self,
        s: usize,
        id: u64,
        last_seq: &mut u64,
        report: &mut OpenReport,
    ) -> Option<Segment> {
        let path = seg_path(&self.dir, s, id);
        let scanned = scan_segment(&path, s, *last_seq);
        let scan = match scanned {
            Ok(scan) => scan,
            Err(e) => {
                report.warnings.push(format!(
                    "{}: cannot read ({e}); its records are not delivered until it can be read",
                    path.display()
                ));
                return None;
            }
        };
        if !scan.header_ok && !scan.entries.is_empty() {
            report.warnings.push(format!(
                "{}: damaged segment header rewritten; its records passed their CRC and are kept",
                path.display()
            ));
            let _ = OpenOptions::new().write(true).open(&path).and_then(|f| {
                f.write_all_at(SEGMENT_MAGIC, 0)
                    .and_then(|()| f.sync_data())
            });
        }
        if let Some(reason) = &scan.cut {
            let cut = scan.file_len - scan.valid_len;
            report.truncated_bytes += cut;
            report.warnings.push(format!(
                "{}: {reason} at offset {}; cut {cut} bytes to the end of the segment (records after that point in this segment are lost)",
                path.display(),
                scan.valid_len
            ));
        }
        if scan.entries.is_empty() {
            if let Err(e) = fs::remove_file(&path) {
                report.warnings.push(format!(
                    "{}: cannot delete the empty segment ({e})",
                    path.display()
                ));
            }
            let _ = fs::remove_file(ack_path(&self.dir, s, id));
            return None;
        }
        let mut sealed = false;
        if scan.cut.is_some() {
            let truncated = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(scan.valid_len).and_then(|()| f.sync_all()));
            if let Err(e) = truncated {
                report.warnings.push(format!(
                    "{}: cannot truncate ({e}); the segment is read-only until it is delivered",
                    path.display()
                ));
                sealed = true;
            }
        }
        *last_seq = scan.last_seq;
        let base_seq = scan.entries.first().map_or(id, |e| e.0);
        let entries: Vec<Entry> = scan
            .entries
            .iter()
            .map(|&(seq, offset, len, class)| {
                Entry::new((seq - base_seq) as u32, offset, len, class)
            })
            .collect();
        Some(Segment {
            id,
            base_seq,
            live: entries.len(),
            entries,
            size: scan.valid_len,
            ack_size: 0,
            ack_file: None,
            ack_dirty: false,
            sealed,
        })
    }

    /// Applies the ack file of segment `id` of stream `s`; returns the
    /// highest seq a valid entry names (0 if none), found or not.
    fn recover_acks(&mut self, s: usize, id: u64, report: &mut OpenReport) -> u64 {
        let path = ack_path(&self.dir, s, id);
        let Some(i) = self.streams[s].segments.iter().position(|g| g.id == id) else {
            let _ = fs::remove_file(&path);
            return 0;
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                report.warnings.push(format!(
                    "{}: cannot read ({e}); acknowledged records of its segment may be delivered again",
                    path.display()
                ));
                return 0;
            }
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = BufReader::new(file);
        let mut entry = [0u8; ACK_ENTRY];
        let (mut bad, mut read, mut highest) = (0u64, 0u64, 0u64);
        let seg = &mut self.streams[s].segments[i];
        while read + ACK_ENTRY as u64 <= len && reader.read_exact(&mut entry).is_ok() {
            read += ACK_ENTRY as u64;
            let seq = le_u64(&entry);
            if ack_entry(seq) != entry {
                bad += 1;
                continue;
            }
            highest = highest.max(seq);
            if let Some(e) = seg.find(seq) {
                if !seg.entries[e].acked() {
                    seg.entries[e].meta |= ACKED_BIT;
                    seg.live -= 1;
                }
            }
        }
        if bad > 0 {
            report.warnings.push(format!(
                "{}: {bad} damaged ack entries ignored; those records may be delivered again",
                path.display()
            ));
        }
        if read < len {
            // A torn last entry: cut it so later appends stay aligned.
            let cut = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(read));
            if cut.is_err() {
                report.warnings.push(format!(
                    "{}: cannot cut its torn last entry; later acks for this segment may be unreadable (those records are delivered again)",
                    path.display()
                ));
            }
        }
        seg.ack_size = read;
        highest
    }

    #[cfg(test)]
    fn set_fault(&mut self, fault: Option<Fault>) {
        self.fault = fault;
    }
}

/// Walks the unacknowledged entries of one stream with seq > `after`.
struct Cursor<'a> {
    segments: &'a VecDeque<Segment>,
    si: usize,
    ei: usize,
}

impl<'a> Cursor<'a> {
    fn new(segments: &'a VecDeque<Segment>, after: u64) -> Cursor<'a> {
        let si = segments.partition_point(|g| g.last_seq().unwrap_or(g.base_seq) <= after);
        let ei = segments
            .get(si)
            .map_or(0, |g| g.entries.partition_point(|&e| g.seq(e) <= after));
        Cursor { segments, si, ei }
    }

    /// (segment index, entry index, seq) of the next unacknowledged entry.
    fn current(&mut self) -> Option<(usize, usize, u64)> {
        loop {
            let seg = self.segments.get(self.si)?;
            match seg.entries.get(self.ei) {
                Some(&e) if !e.acked() => return Some((self.si, self.ei, seg.seq(e))),
                Some(_) => self.ei += 1,
                None => {
                    self.si += 1;
                    self.ei = 0;
                }
            }
        }
    }

    fn advance(&mut self) {
        self.ei += 1;
    }
}

enum Name {
    Issued,
    Segment(usize, u64),
    Ack(usize, u64),
    State,
    StateTmp,
}

fn parse_name(name: &str) -> Option<Name> {
    match name {
        STATE_FILE => return Some(Name::State),
        ISSUED_FILE => return Some(Name::Issued),
        STATE_TMP => return Some(Name::StateTmp),
        _ => {}
    }
    let (stem, ext) = name.rsplit_once('.')?;
    let (stream, id) = stem.split_once('-')?;
    let s = STREAM_NAMES.iter().position(|&n| n == stream)?;
    if id.len() != 16 {
        return None;
    }
    let id = u64::from_str_radix(id, 16).ok()?;
    match ext {
        "seg" => Some(Name::Segment(s, id)),
        "ack" => Some(Name::Ack(s, id)),
        _ => None,
    }
}

/// The kernel's boot id: it changes at every boot, so a marker written
/// under the same one was written to a page cache that still holds it.
/// Empty where the system does not say (then no marker is believed).
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| {
            s.trim()
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(32)
                .collect()
        })
        .unwrap_or_default()
}

/// The marker's one line, always of the same length (so that an in-place
/// rewrite never leaves a tail of an older, longer one).
fn issued_line(boot_id: &str, next_seq: u64) -> String {
    let body = format!("{ISSUED_MAGIC} {boot_id:>32} {next_seq:020}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

/// The boot id and next seq of an `issued` marker; `None` when it is
/// missing or damaged.
fn read_issued(path: &Path) -> Option<(String, u64)> {
    let text = files::read_bounded(path, 256).ok()?;
    let text = String::from_utf8(text).ok()?;
    let line = text.lines().next()?;
    let (body, crc) = line.rsplit_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let rest = body.strip_prefix(ISSUED_MAGIC)?.trim_start();
    let (boot, next) = rest.rsplit_once(' ')?;
    Some((boot.trim().to_string(), next.parse().ok()?))
}

/// What the `state` file says.
struct QueueState {
    /// No seq at or above it was issued.
    ceiling: u64,
    dropped: u64,
    /// The ceiling is the next seq itself: the agent stopped cleanly.
    exact: bool,
}

fn read_state(path: &Path, report: &mut OpenReport) -> Option<QueueState> {
    let parsed = fs::read(path).map_err(|e| e.to_string()).and_then(|bytes| {
        let text = String::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let body_end = text.rfind("crc32 ").ok_or("no crc32 line")?;
        let (body, crc_line) = text.split_at(body_end);
        let crc = crc_line
            .trim()
            .strip_prefix("crc32 ")
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or("bad crc32 line")?;
        if crc != crc32fast::hash(body.as_bytes()) {
            return Err("CRC mismatch".to_string());
        }
        let mut lines = body.lines();
        if lines.next() != Some(STATE_MAGIC) {
            return Err("unknown format".to_string());
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(format!("bad {name} line"))
        };
        let next_seq = field("next_seq ")?;
        let dropped = field("dropped_health ")?;
        // Since the issued marker: "exact 1" when next_seq is the very next
        // seq (written at a clean stop), not a reserved ceiling.
        let exact = lines.next() == Some("exact 1");
        Ok(QueueState {
            ceiling: next_seq,
            dropped,
            exact,
        })
    });
    match parsed {
        Ok(v) => Some(v),
        Err(e) => {
            report.warnings.push(format!(
                "{}: unreadable ({e}); seqs continue above the highest queued one, seqs of reports already delivered may be issued again, and dropped_health restarts at 0",
                path.display()
            ));
            None
        }
    }
}

struct Scan {
    header_ok: bool,
    /// (seq, offset, frame len, class)
    entries: Vec<(u64, u32, u32, Class)>,
    file_len: u64,
    valid_len: u64,
    last_seq: u64,
    cut: Option<String>,
}

fn scan_segment(path: &Path, s: usize, mut last_seq: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(16 << 10, file);
    let mut scan = Scan {
        header_ok: false,
        entries: Vec::new(),
        file_len,
        valid_len: 0,
        last_seq,
        cut: None,
    };
    if file_len < HEADER_LEN {
        // Crashed while creating it: holds no record.
        return Ok(scan);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut header)?;
    scan.header_ok = &header == SEGMENT_MAGIC;
    let mut offset = HEADER_LEN;
    let mut body = Vec::new();
    let mut head = [0u8; FRAME_HEAD];
    let cut = loop {
        if offset == file_len {
            break None;
        }
        if file_len - offset < FRAME_HEAD as u64 {
            break Some("torn record (partial frame header)".to_string());
        }
        reader.read_exact(&mut head)?;
        let len = le_u32(&head) as usize;
        let crc = le_u32(&head[4..]);
        if !(BODY_HEAD..=MAX_BODY).contains(&len) {
            break Some(format!("corrupt record (impossible length {len})"));
        }
        if file_len - offset - (FRAME_HEAD as u64) < len as u64 {
            break Some("torn record (shorter than its length)".to_string());
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            break Some("corrupt record (CRC mismatch)".to_string());
        }
        let (seq, class) = match check_body(&body, s) {
            Ok(v) => v,
            Err(reason) => break Some(format!("corrupt record ({reason})")),
        };
        if seq <= last_seq {
            break Some(format!(
                "corrupt record (seq {seq} does not follow {last_seq})"
            ));
        }
        let frame_len = (FRAME_HEAD + len) as u64;
        let base = scan.entries.first().map_or(seq, |e| e.0);
        if offset > u64::from(u32::MAX) || seq - base > u64::from(u32::MAX) {
            break Some("segment too large for the index".to_string());
        }
        scan.entries
            .push((seq, offset as u32, frame_len as u32, class));
        last_seq = seq;
        offset += frame_len;
    };
    scan.last_seq = last_seq;
    if scan.entries.is_empty() && !scan.header_ok {
        // Nothing checks out: the whole file goes.
        scan.cut = Some(cut.unwrap_or_else(|| "not a queue segment (bad header)".to_string()));
        return Ok(scan);
    }
    scan.cut = cut;
    scan.valid_len = offset;
    scan.last_seq = last_seq;
    Ok(scan)
}

/// Checks a body's header for stream `s`: (seq, class).
fn check_body(body: &[u8], s: usize) -> Result<(u64, Class), String> {
    let seq = le_u64(body);
    let class = Class::from_code(body[16]).ok_or_else(|| format!("unknown class {}", body[16]))?;
    if class.stream() != s {
        return Err(format!("class {class:?} in the {} stream", STREAM_NAMES[s]));
    }
    let flags = body[17];
    if flags & !(FLAG_RETAIN | FLAG_DEFLATE) != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let topic_len = usize::from(u16::from_le_bytes([body[18], body[19]]));
    let topic = body
        .get(BODY_HEAD..BODY_HEAD + topic_len)
        .ok_or("topic longer than the record")?;
    std::str::from_utf8(topic).map_err(|_| "topic is not UTF-8")?;
    Ok((seq, class))
}

fn encode_frame(
    seq: u64,
    at_ms: u64,
    class: Class,
    retain: bool,
    topic: &str,
    payload: &[u8],
) -> Vec<u8> {
    let deflated = (payload.len() >= COMPRESS_MIN)
        .then(|| miniz_oxide::deflate::compress_to_vec(payload, DEFLATE_LEVEL))
        .filter(|d| d.len() < payload.len());
    let mut flags = if retain { FLAG_RETAIN } else { 0 };
    if deflated.is_some() {
        flags |= FLAG_DEFLATE;
    }
    let stored = deflated.as_deref().unwrap_or(payload);
    let body_len = BODY_HEAD + topic.len() + stored.len();
    let mut frame = Vec::with_capacity(FRAME_HEAD + body_len);
    frame.extend_from_slice(&(body_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(&at_ms.to_le_bytes());
    frame.push(class.code());
    frame.push(flags);
    frame.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    frame.extend_from_slice(topic.as_bytes());
    frame.extend_from_slice(stored);
    let crc = crc32fast::hash(&frame[FRAME_HEAD..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// Decodes a whole frame read back from stream `s` (payload still as
/// stored; the deflate flag is kept in `retain`'s place until `inflate`).
fn decode_frame(frame: &[u8], s: usize) -> Result<Stored, String> {
    if frame.len() < FRAME_HEAD + BODY_HEAD {
        return Err("record too short".to_string());
    }
    let len = le_u32(frame) as usize;
    let body = &frame[FRAME_HEAD..];
    if len != body.len() {
        return Err(format!("length {len} does not match the index"));
    }
    if crc32fast::hash(body) != le_u32(&frame[4..]) {
        return Err("CRC mismatch".to_string());
    }
    let (seq, class) = check_body(body, s)?;
    let topic_len = usize::from(u16::from_le_bytes([body[18], body[19]]));
    let topic = String::from_utf8_lossy(&body[BODY_HEAD..BODY_HEAD + topic_len]).into_owned();
    Ok(Stored {
        seq,
        class,
        topic,
        flags: body[17],
        enqueued_at_ms: le_u64(&body[8..]),
        payload: body[BODY_HEAD + topic_len..].to_vec(),
    })
}

struct Stored {
    seq: u64,
    class: Class,
    topic: String,
    flags: u8,
    enqueued_at_ms: u64,
    payload: Vec<u8>,
}

fn inflate(stored: Stored) -> Result<Record, String> {
    let payload = if stored.flags & FLAG_DEFLATE != 0 {
        miniz_oxide::inflate::decompress_to_vec_with_limit(&stored.payload, MAX_PAYLOAD)
            .map_err(|e| format!("cannot inflate the payload: {e}"))?
    } else {
        stored.payload
    };
    Ok(Record {
        seq: stored.seq,
        class: stored.class,
        topic: stored.topic,
        payload,
        retain: stored.flags & FLAG_RETAIN != 0,
        enqueued_at_ms: stored.enqueued_at_ms,
    })
}

fn ack_entry(seq: u64) -> [u8; ACK_ENTRY] {
    let mut e = [0u8; ACK_ENTRY];
    e[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&e[..8]);
    e[8..].copy_from_slice(&crc.to_le_bytes());
    e
}

fn seg_path(dir: &Path, s: usize, id: u64) -> PathBuf {
    dir.join(format!("{}-{id:016x}.seg", STREAM_NAMES[s]))
}

fn ack_path(dir: &Path, s: usize, id: u64) -> PathBuf {
    dir.join(format!("{}-{id:016x}.ack", STREAM_NAMES[s]))
}

/// An I/O error on `path` in the queue directory `dir`; a full disk gets
/// its own variant, naming the state directory.
fn io_err(dir: &Path, action: &'static str, path: &Path, cause: io::Error) -> QueueError {
    if cause.kind() == io::ErrorKind::StorageFull {
        QueueError::DiskFull {
            dir: dir.parent().unwrap_or(dir).to_path_buf(),
            path: path.to_path_buf(),
            cause,
        }
    } else {
        QueueError::Io {
            action,
            path: path.to_path_buf(),
            cause,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    const TOPIC: &str = "cpe/v1/gw-1/health/sn-test";

    fn options(max_bytes: u64) -> QueueOptions {
        QueueOptions {
            max_bytes,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
        }
    }

    fn open(dir: &Path, max_bytes: u64) -> (Queue, OpenReport) {
        Queue::open(dir, options(max_bytes)).expect("open")
    }

    /// Small, compressible JSON that carries its seq.
    fn payload(seq: u64) -> Vec<u8> {
        format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes()
    }

    /// `len` bytes that deflate cannot shrink, starting with the seq.
    fn noise(seq: u64, len: usize) -> Vec<u8> {
        let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v = seq.to_le_bytes().to_vec();
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x as u8);
        }
        v
    }

    fn push(q: &mut Queue, class: Class) -> u64 {
        q.push(class, TOPIC, false, payload).expect("push")
    }

    fn seqs(q: &Queue) -> Vec<u64> {
        q.peek(None, usize::MAX)
            .expect("peek")
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    fn files(q: &Queue, suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(q.dir())
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        v.sort();
        v
    }

    /// Bytes of every segment and ack file, as `Stats::bytes` counts them.
    fn disk_bytes(q: &Queue) -> u64 {
        files(q, ".seg")
            .iter()
            .chain(files(q, ".ack").iter())
            .map(|p| fs::metadata(p).expect("metadata").len())
            .sum()
    }

    /// Offsets of the frames in a segment file.
    fn frame_offsets(path: &Path) -> Vec<u64> {
        let data = fs::read(path).expect("read segment");
        let mut offsets = Vec::new();
        let mut off = HEADER_LEN as usize;
        while off + FRAME_HEAD <= data.len() {
            offsets.push(off as u64);
            off += FRAME_HEAD + le_u32(&data[off..]) as usize;
        }
        offsets
    }

    fn flip_byte(path: &Path, offset: u64) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open for damage");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).expect("read byte");
        b[0] ^= 0x55;
        f.write_all_at(&b, offset).expect("write byte");
    }

    #[test]
    fn push_peek_ack_in_order_with_paging() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report, OpenReport::default());
        let classes = [
            Class::Health,
            Class::Event,
            Class::Inventory,
            Class::AgentHealth,
            Class::Health,
            Class::Event,
            Class::Health,
            Class::Health,
            Class::Inventory,
            Class::Health,
        ];
        let before = now_ms();
        let pushed: Vec<u64> = classes
            .iter()
            .map(|&c| {
                q.push(c, &format!("t/{c:?}"), c == Class::Inventory, payload)
                    .expect("push")
            })
            .collect();
        assert_eq!(pushed[0], 1);
        assert!(pushed.windows(2).all(|w| w[0] < w[1]), "{pushed:?}");
        let records = q.peek(None, 100).expect("peek");
        assert_eq!(records.len(), classes.len());
        for ((r, &seq), &class) in records.iter().zip(&pushed).zip(&classes) {
            assert_eq!(r.seq, seq);
            assert_eq!(r.class, class);
            assert_eq!(r.topic, format!("t/{class:?}"));
            assert_eq!(r.retain, class == Class::Inventory);
            assert_eq!(r.payload, payload(seq));
            assert!(r.enqueued_at_ms >= before && r.enqueued_at_ms <= now_ms());
        }
        // Out of order, twice, and unknown seqs.
        for seq in [pushed[4], pushed[1], pushed[8], pushed[1], 999, 0] {
            q.ack(seq).expect("ack");
        }
        let left: Vec<u64> = pushed
            .iter()
            .copied()
            .filter(|s| ![pushed[4], pushed[1], pushed[8]].contains(s))
            .collect();
        assert_eq!(seqs(&q), left);
        assert_eq!(q.stats().records, 7);
        // Paging with `after`.
        let page = |after, limit| -> Vec<u64> {
            q.peek(after, limit)
                .expect("peek")
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        assert_eq!(page(Some(pushed[0]), 2), vec![pushed[2], pushed[3]]);
        assert_eq!(
            page(Some(pushed[3]), 3),
            vec![pushed[5], pushed[6], pushed[7]]
        );
        assert_eq!(page(Some(pushed[7]), 10), vec![pushed[9]]);
        assert!(page(Some(pushed[9]), 10).is_empty());
        assert!(page(None, 0).is_empty());
    }

    #[test]
    fn restart_restores_unacked_in_order_and_continues_seq() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let classes = [
            Class::Health,
            Class::Event,
            Class::Inventory,
            Class::AgentHealth,
        ];
        let pushed: Vec<u64> = (0..20).map(|i| push(&mut q, classes[i % 4])).collect();
        for i in [7, 3, 12, 0, 19] {
            q.ack(pushed[i]).expect("ack");
        }
        let expected = seqs(&q);
        q.sync().expect("sync");
        drop(q);
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.records, 15);
        assert_eq!(report.truncated_bytes, 0);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(seqs(&q), expected);
        let records = q.peek(None, 100).expect("peek");
        assert!(records.iter().all(|r| r.payload == payload(r.seq)));
        // A clean shutdown (sync) leaves no gap.
        assert_eq!(q.stats().next_seq, 21);
        assert_eq!(push(&mut q, Class::Health), 21);
    }

    #[test]
    fn seq_stays_above_every_issued_seq_after_all_acked_and_after_a_crash() {
        let tmp = TempDir::new().expect("tempdir");
        // Everything acknowledged, then a crash (no sync).
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..5).map(|_| push(&mut q, Class::Health)).collect();
        for &s in pushed.iter().rev() {
            q.ack(s).expect("ack");
        }
        drop(q);
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.records, 0);
        assert!(
            files(&q, ".seg").is_empty(),
            "fully acked segments are deleted"
        );
        let next = push(&mut q, Class::Event);
        assert!(next > 5, "seq {next} reused");
        // Acks written without a sync survive a process crash too.
        let more: Vec<u64> = (0..4).map(|_| push(&mut q, Class::Health)).collect();
        q.ack(more[2]).expect("ack");
        q.ack(more[0]).expect("ack");
        drop(q);
        let (mut q, _) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), vec![next, more[1], more[3]]);
        // Everything acknowledged and a clean shutdown: exact continuation.
        for s in seqs(&q) {
            q.ack(s).expect("ack");
        }
        let last = push(&mut q, Class::Health);
        q.ack(last).expect("ack");
        q.sync().expect("sync");
        drop(q);
        let (mut q, _) = open(tmp.path(), 1 << 20);
        assert_eq!(q.stats().records, 0);
        assert_eq!(push(&mut q, Class::Health), last + 1);
    }

    /// `kill -9` loses no page cache: seqs go on with no gap. A power cut
    /// (the marker of another boot) goes on above the reserved block and
    /// says which seqs it skips; a clean stop never skips.
    #[test]
    fn a_killed_agent_continues_its_seqs_and_a_power_cut_declares_its_skip() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.skipped, None);
        let pushed: Vec<u64> = (0..6).map(|_| push(&mut q, Class::Health)).collect();
        for &s in &pushed {
            q.ack(s).expect("ack"); // delivered: the segments go
        }
        drop(q); // killed: no sync
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.skipped, None, "{:?}", report.warnings);
        assert_eq!(push(&mut q, Class::Event), 7, "no gap after a kill");
        assert_eq!(q.skipped(), None);
        drop(q);

        // The same marker under another boot id: a power cut.
        let issued = tmp.path().join(DIR_NAME).join(ISSUED_FILE);
        fs::write(&issued, issued_line("0123456789abcdef0123456789abcdef", 8)).expect("marker");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        let (first, last) = report.skipped.expect("a declared skip");
        assert_eq!(first, 8);
        assert!((8..8 + SEQ_BLOCK).contains(&last), "{last}");
        assert_eq!(q.skipped(), Some((first, last)));
        let next = push(&mut q, Class::Event);
        assert_eq!(next, last + 1, "goes on right after the skipped seqs");

        // A clean stop is exact, whatever the marker says.
        q.sync().expect("sync");
        drop(q);
        fs::write(&issued, issued_line("0123456789abcdef0123456789abcdef", 3)).expect("marker");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.skipped, None);
        assert_eq!(push(&mut q, Class::Event), next + 1);
        // A damaged marker is not believed.
        drop(q);
        fs::write(&issued, "cpe-agent issued 1 garbage").expect("marker");
        let (_, report) = open(tmp.path(), 1 << 20);
        assert!(
            report.skipped.is_some(),
            "a crash with no readable marker declares its skip"
        );
    }

    #[test]
    fn torn_tail_after_crash_is_cut_and_its_seq_never_reused() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..5).map(|_| push(&mut q, Class::Health)).collect();
        let seg = files(&q, ".seg").pop().expect("segment");
        drop(q); // crash: no sync
        let len = fs::metadata(&seg).expect("metadata").len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(len - 7))
            .expect("truncate");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), pushed[..4].to_vec());
        assert!(report.truncated_bytes > 0);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("torn record"),
            "{:?}",
            report.warnings
        );
        assert!(report.warnings[0].contains(&seg.display().to_string()));
        let next = push(&mut q, Class::Health);
        assert!(next > pushed[4], "seq {next} reused");
        drop(q);
        let (q, report) = open(tmp.path(), 1 << 20);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(seqs(&q), [&pushed[..4], &[next]].concat());
    }

    /// Found by fuzz/fuzz_targets/queue.rs: with the state file lost, a seq
    /// whose record was cut but whose ack survived was issued again, and the
    /// stale ack then removed the new record at the next start.
    #[test]
    fn acked_seq_whose_record_was_cut_is_never_reissued_without_state() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..3).map(|_| push(&mut q, Class::Event)).collect();
        q.ack(pushed[2]).expect("ack");
        q.sync().expect("sync");
        let seg = files(&q, ".seg").pop().expect("segment");
        let dir = q.dir().to_path_buf();
        drop(q);
        // Damage (or, for health, a power cut before the fsync): the last
        // record is cut, its ack survived, and the state file is gone.
        let cut = frame_offsets(&seg)[2];
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(cut))
            .expect("truncate");
        fs::remove_file(dir.join(STATE_FILE)).expect("remove state");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), pushed[..2].to_vec());
        let next = push(&mut q, Class::Event);
        assert!(next > pushed[2], "seq {next} reused");
        q.sync().expect("sync");
        drop(q);
        let (q, _) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), [&pushed[..2], &[next]].concat());
    }

    #[test]
    fn garbage_after_the_last_record_is_cut() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..5).map(|_| push(&mut q, Class::Event)).collect();
        let seg = files(&q, ".seg").pop().expect("segment");
        drop(q);
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(b"garbage garbage").expect("append garbage");
        drop(f);
        let (q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), pushed);
        assert_eq!(report.truncated_bytes, 15);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }

    #[test]
    fn flipped_byte_in_the_last_record_cuts_only_that_record() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..5).map(|_| push(&mut q, Class::Inventory)).collect();
        let seg = files(&q, ".seg").pop().expect("segment");
        drop(q);
        let last = *frame_offsets(&seg).last().expect("frames");
        let len = fs::metadata(&seg).expect("metadata").len();
        flip_byte(&seg, len - 3);
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), pushed[..4].to_vec());
        assert_eq!(report.truncated_bytes, len - last);
        assert!(
            report.warnings[0].contains("CRC mismatch"),
            "{:?}",
            report.warnings
        );
        // The file was cut, so appending after it is clean.
        push(&mut q, Class::Event);
        drop(q);
        let (_, report) = open(tmp.path(), 1 << 20);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn corrupt_record_in_an_older_segment_costs_only_the_rest_of_that_segment() {
        let tmp = TempDir::new().expect("tempdir");
        // 256 KiB budget: 4 KiB segments.
        let (mut q, _) = open(tmp.path(), 256 << 10);
        let pushed: Vec<u64> = (0..40)
            .map(|_| {
                q.push(Class::Health, TOPIC, false, |s| noise(s, 300))
                    .expect("push")
            })
            .collect();
        let segs = files(&q, ".seg");
        assert!(segs.len() >= 3, "{segs:?}");
        drop(q);
        let offsets = frame_offsets(&segs[0]);
        let in_first = offsets.len();
        let seg_len = fs::metadata(&segs[0]).expect("metadata").len();
        flip_byte(&segs[0], offsets[2] + 30);
        let (q, report) = open(tmp.path(), 256 << 10);
        let expected: Vec<u64> = pushed[..2]
            .iter()
            .chain(&pushed[in_first..])
            .copied()
            .collect();
        assert_eq!(seqs(&q), expected);
        assert_eq!(report.truncated_bytes, seg_len - offsets[2]);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].contains(&segs[0].display().to_string()));
        let records = q.peek(None, usize::MAX).expect("peek");
        assert!(records.iter().all(|r| r.payload == noise(r.seq, 300)));
    }

    #[test]
    fn damaged_segment_header_is_rewritten_when_its_records_check_out() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..3).map(|_| push(&mut q, Class::Health)).collect();
        let seg = files(&q, ".seg").pop().expect("segment");
        drop(q);
        flip_byte(&seg, 2);
        let (q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(seqs(&q), pushed);
        assert_eq!(report.truncated_bytes, 0);
        assert!(
            report.warnings[0].contains("header rewritten"),
            "{:?}",
            report.warnings
        );
        drop(q);
        let (_, report) = open(tmp.path(), 1 << 20);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // A file with our name but nothing that checks out goes, reported.
        fs::write(&seg, b"this is not a segment at all").expect("write");
        let (q, report) = open(tmp.path(), 1 << 20);
        assert!(seqs(&q).is_empty());
        assert_eq!(report.truncated_bytes, 28);
        assert!(!seg.exists());
    }

    #[test]
    fn full_queue_drops_oldest_health_first_and_never_events() {
        let tmp = TempDir::new().expect("tempdir");
        let max = 64 << 10;
        let (mut q, _) = open(tmp.path(), max);
        let mut health = Vec::new();
        let mut kept = Vec::new();
        for i in 0..400 {
            let class = match i {
                i if i % 50 == 0 => Class::Inventory,
                i if i % 10 == 0 => Class::Event,
                i if i % 7 == 0 => Class::AgentHealth,
                _ => Class::Health,
            };
            let seq = q
                .push(class, TOPIC, false, |s| noise(s, 200))
                .expect("push");
            if class.droppable() {
                health.push(seq);
            } else {
                kept.push(seq);
            }
            assert!(q.stats().bytes <= max, "over budget at {i}");
        }
        let records = q.peek(None, usize::MAX).expect("peek");
        let present: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert!(
            kept.iter().all(|s| present.contains(s)),
            "an event was dropped"
        );
        let present_health: Vec<u64> = records
            .iter()
            .filter(|r| r.class.droppable())
            .map(|r| r.seq)
            .collect();
        assert!(present_health.len() < health.len());
        // What is left is the newest health: the oldest went first.
        assert_eq!(
            present_health,
            health[health.len() - present_health.len()..]
        );
        let stats = q.stats();
        assert_eq!(
            stats.dropped_health,
            (health.len() - present_health.len()) as u64
        );
        assert_eq!(stats.bytes, disk_bytes(&q));
        q.sync().expect("sync");
        drop(q);
        let (q, report) = open(tmp.path(), max);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(q.stats().dropped_health, stats.dropped_health);
        assert_eq!(seqs(&q), present);
    }

    #[test]
    fn queue_full_of_events_refuses_health_and_still_accepts_events() {
        let tmp = TempDir::new().expect("tempdir");
        let max = 64 << 10;
        let (mut q, _) = open(tmp.path(), max);
        q.push(Class::Health, TOPIC, false, |s| noise(s, 1000))
            .expect("push health");
        let events: Vec<u64> = (0..70)
            .map(|_| {
                q.push(Class::Event, TOPIC, false, |s| noise(s, 1000))
                    .expect("events are always accepted")
            })
            .collect();
        assert!(q.stats().bytes > max);
        assert_eq!(q.stats().dropped_health, 1, "the health record made room");
        let err = q
            .push(Class::Health, TOPIC, false, |s| noise(s, 1000))
            .expect_err("no room for health");
        assert!(matches!(err, QueueError::Full { .. }), "{err}");
        assert!(err.to_string().contains("full of events"), "{err}");
        assert_eq!(q.stats().dropped_health, 2);
        let seq = push(&mut q, Class::Inventory);
        assert_eq!(seqs(&q), [events.as_slice(), &[seq]].concat());
        for s in seqs(&q) {
            q.ack(s).expect("ack");
        }
        push(&mut q, Class::Health);
        assert_eq!(q.stats().records, 1);
    }

    #[test]
    fn disk_full_is_reported_keeps_queued_data_and_recovers() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let mut pushed: Vec<u64> = (0..3).map(|_| push(&mut q, Class::Health)).collect();
        pushed.push(push(&mut q, Class::Event));
        q.set_fault(Some(Fault { partial: 10 }));
        for class in [Class::Health, Class::Event] {
            let err = q
                .push(class, TOPIC, false, payload)
                .expect_err("disk is full");
            assert!(matches!(err, QueueError::DiskFull { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(&tmp.path().display().to_string()), "{text}");
            assert!(text.contains("is full"), "{text}");
            assert!(text.contains("queued data is kept"), "{text}");
        }
        let err = q.ack(pushed[1]).expect_err("ack file cannot grow");
        assert!(matches!(err, QueueError::DiskFull { .. }), "{err}");
        assert_eq!(seqs(&q), vec![pushed[0], pushed[2], pushed[3]]);
        q.set_fault(None);
        pushed.push(push(&mut q, Class::Health));
        pushed.push(push(&mut q, Class::Event));
        assert!(pushed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(q.stats().bytes, disk_bytes(&q));
        q.sync().expect("sync");
        drop(q);
        let (q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.truncated_bytes, 0, "{:?}", report.warnings);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        // The failed ack's record comes back: at-least-once.
        assert_eq!(seqs(&q), pushed);
    }

    #[test]
    fn disk_full_when_a_new_segment_is_needed() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 256 << 10);
        let first = push(&mut q, Class::Health);
        q.set_fault(Some(Fault { partial: 3 }));
        // An event needs the first events segment: creating it fails.
        let err = q
            .push(Class::Event, TOPIC, false, payload)
            .expect_err("full");
        assert!(matches!(err, QueueError::DiskFull { .. }), "{err}");
        assert_eq!(files(&q, ".seg").len(), 1);
        q.set_fault(None);
        let second = push(&mut q, Class::Event);
        drop(q);
        let (q, report) = open(tmp.path(), 256 << 10);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(seqs(&q), vec![first, second]);
    }

    #[test]
    fn stats_count_records_bytes_oldest_and_next_seq() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        assert_eq!(
            q.stats(),
            Stats {
                next_seq: 1,
                ..Stats::default()
            }
        );
        let pushed: Vec<u64> = (0..3)
            .map(|i| push(&mut q, [Class::Event, Class::Health, Class::Health][i]))
            .collect();
        let records = q.peek(None, 10).expect("peek");
        let stats = q.stats();
        assert_eq!(stats.records, 3);
        assert_eq!(stats.bytes, disk_bytes(&q));
        assert_eq!(stats.oldest_enqueued_at_ms, Some(records[0].enqueued_at_ms));
        assert_eq!(stats.next_seq, pushed[2] + 1);
        assert_eq!(stats.dropped_health, 0);
        q.ack(pushed[0]).expect("ack");
        let stats = q.stats();
        assert_eq!(stats.records, 2);
        assert_eq!(stats.oldest_enqueued_at_ms, Some(records[1].enqueued_at_ms));
        assert_eq!(stats.bytes, disk_bytes(&q));
    }

    #[test]
    fn record_damaged_after_open_is_skipped_and_removed() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..3).map(|_| push(&mut q, Class::Health)).collect();
        let seg = files(&q, ".seg").pop().expect("segment");
        flip_byte(&seg, frame_offsets(&seg)[1] + 24);
        assert_eq!(seqs(&q), vec![pushed[0], pushed[2]]);
        assert_eq!(q.stats().records, 3);
        q.flush_due().expect("flush"); // not due: nothing to do
        q.ack(pushed[0]).expect("ack");
        assert_eq!(q.stats().records, 1);
        assert_eq!(seqs(&q), vec![pushed[2]]);
    }

    #[test]
    fn damaged_state_file_is_reported_and_seq_stays_above_queued() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let pushed: Vec<u64> = (0..3).map(|_| push(&mut q, Class::Event)).collect();
        let state = q.dir().join(STATE_FILE);
        drop(q);
        fs::write(&state, "cpe-agent queue state 1\nnext_seq 1\n").expect("damage state");
        let (mut q, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("state"),
            "{:?}",
            report.warnings
        );
        assert!(push(&mut q, Class::Event) > pushed[2]);
    }

    #[test]
    fn acked_segments_are_deleted_and_the_always_policy_works() {
        let tmp = TempDir::new().expect("tempdir");
        let opts = QueueOptions {
            max_bytes: 256 << 10,
            fsync: FsyncPolicy::Always,
        };
        let (mut q, _) = Queue::open(tmp.path(), opts).expect("open");
        let pushed: Vec<u64> = (0..40)
            .map(|_| {
                q.push(Class::Health, TOPIC, false, |s| noise(s, 300))
                    .expect("push")
            })
            .collect();
        assert!(files(&q, ".seg").len() >= 3);
        for &s in &pushed {
            q.ack(s).expect("ack");
        }
        // Only the segment still being appended to is left.
        assert_eq!(files(&q, ".seg").len(), 1);
        assert_eq!(q.stats().records, 0);
        assert_eq!(q.stats().bytes, disk_bytes(&q));
        q.flush_due().expect("flush");
        drop(q);
        let (q, report) = Queue::open(tmp.path(), opts).expect("open");
        assert_eq!(report.records, 0);
        assert!(files(&q, ".seg").is_empty());
    }

    #[test]
    fn payloads_round_trip_compressed_or_not() {
        let tmp = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp.path(), 1 << 20);
        let mut rng = 0x1234_5678_u64;
        let json = health_json(&mut rng, 1, 7);
        let cases = [json.clone(), noise(9, 2000), b"{}".to_vec(), Vec::new()];
        for p in &cases {
            let p = p.clone();
            q.push(Class::Health, TOPIC, true, |_| p).expect("push");
        }
        let first = &files(&q, ".seg")[0];
        let stored = frame_offsets(first)[1] - frame_offsets(first)[0];
        assert!(
            stored * 2 < json.len() as u64,
            "{stored} bytes for {}",
            json.len()
        );
        drop(q);
        let (q, _) = open(tmp.path(), 1 << 20);
        let got: Vec<Vec<u8>> = q
            .peek(None, 10)
            .expect("peek")
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(got, cases);
        let err = QueueError::TooLarge {
            topic: TOPIC.into(),
            len: 1,
            max: 0,
        };
        assert!(err.to_string().contains("not queued"));
    }

    #[test]
    fn unknown_files_are_reported_and_left_alone() {
        let tmp = TempDir::new().expect("tempdir");
        let (q, _) = open(tmp.path(), 1 << 20);
        let stray = q.dir().join("notes.txt");
        fs::write(&stray, "hello").expect("write");
        drop(q);
        let (_, report) = open(tmp.path(), 1 << 20);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(stray.exists());
    }

    /// A realistic health report (about 1.6 KB) like the agent publishes.
    fn health_json(rng: &mut u64, seq: u64, device: u64) -> Vec<u8> {
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let mut f = |max: f64| (next() % 1_000_000) as f64 / 1_000_000.0 * max;
        let ms = 1_795_000_000_000u64 + seq * 1200;
        let mut s = format!(
            "{{\"schema\":\"cpe-agent/health/1\",\"ts\":\"2026-11-23T16:{:02}:{:02}.{:03}Z\",\"agent_id\":\"gw-1\",\"device_id\":\"sn-arris-3914372091842{device:05}\",\"seq\":{seq},\"reachable\":true,\"latency_ms\":{:.1},\"uptime_s\":{:.2},\"rebooted\":false,\"interfaces\":[",
            (ms / 60000) % 60,
            (ms / 1000) % 60,
            ms % 1000,
            f(20.0),
            285_635.57 + seq as f64 * 60.0
        );
        let names = ["eth0", "eth1", "eth2", "eth3", "wlan0", "wlan1", "br0"];
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let up = f(1.0) > 0.2;
            let (inb, outb) = if up { (f(2e6), f(2e7)) } else { (0.0, 0.0) };
            let errs = if f(1.0) < 0.1 { f(3.0) } else { 0.0 };
            s.push_str(&format!(
                "{{\"index\":{},\"name\":\"{name}\",\"admin_status\":\"up\",\"oper_status\":\"{}\",\"in_bps\":{inb:.2},\"out_bps\":{outb:.2},\"in_errors_per_s\":{errs:.1},\"out_errors_per_s\":0.0,\"in_discards_per_s\":0.0,\"out_discards_per_s\":0.0}}",
                i + 1,
                if up { "up" } else { "down" },
            ));
        }
        s.push_str(&format!(
            "],\"cpu_percent\":{:.1},\"memory_percent\":{:.1}}}",
            f(100.0),
            30.0 + f(20.0)
        ));
        s.into_bytes()
    }

    /// Throughput and cost per record with realistic health payloads:
    /// `cargo test --release --lib queue -- --ignored --nocapture queue_bench`
    #[test]
    #[ignore]
    fn queue_bench() {
        let tmp = TempDir::new().expect("tempdir");
        let n = 20_000u64;
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let payloads: Vec<Vec<u8>> = (1..=n).map(|s| health_json(&mut rng, s, s % 50)).collect();
        let raw: usize = payloads.iter().map(Vec::len).sum();
        let topic = "cpe/v1/gw-1/health/sn-arris-391437209184210503";
        println!(
            "payload: {:.0} bytes of JSON on average",
            raw as f64 / n as f64
        );

        for level in [1u8, 6, 9] {
            let t = Instant::now();
            let out: usize = payloads
                .iter()
                .map(|p| miniz_oxide::deflate::compress_to_vec(p, level).len())
                .sum();
            let per = t.elapsed().as_secs_f64() / n as f64;
            println!(
                "deflate level {level}: {:.0} bytes/record, {:.1} us/record",
                out as f64 / n as f64,
                per * 1e6
            );
        }

        let (mut q, _) = open(tmp.path(), 64 << 20);
        let mut it = payloads.iter();
        let t = Instant::now();
        for _ in 0..n {
            let p = it.next().expect("payload").clone();
            q.push(Class::Health, topic, false, |_| p).expect("push");
        }
        q.sync().expect("sync");
        let push_s = t.elapsed().as_secs_f64();
        let stats = q.stats();
        println!(
            "push (health, Interval 1s, one sync at the end): {:.0} records/s; {:.1} bytes/record on disk; index {:.1} bytes/record in RAM",
            n as f64 / push_s,
            stats.bytes as f64 / n as f64,
            q.index_heap_bytes() as f64 / n as f64
        );
        let per_record = stats.bytes as f64 / n as f64;
        let fits = (64u64 << 20) as f64 / per_record;
        println!(
            "64 MiB holds {fits:.0} such records = {:.1} h at 50 devices every 60 s (72,000/day)",
            fits / 3000.0
        );

        let t = Instant::now();
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = q.peek(after, 100).expect("peek");
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            seen += page.len();
        }
        assert_eq!(seen as u64, n);
        println!(
            "peek (pages of 100, inflate): {:.0} records/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        for seq in 1..=n {
            q.ack(seq).expect("ack");
        }
        q.sync().expect("sync");
        println!(
            "ack (in order, segments deleted as they empty): {:.0} records/s; {} bytes left on disk",
            n as f64 / t.elapsed().as_secs_f64(),
            q.stats().bytes
        );

        let m = 500;
        let t = Instant::now();
        for p in payloads.iter().take(m) {
            let p = p.clone();
            q.push(Class::Event, topic, false, |_| p).expect("push");
        }
        println!(
            "push (event: fdatasync before returning): {:.0} records/s",
            m as f64 / t.elapsed().as_secs_f64()
        );

        // Fill the default 64 MiB: how many records fit, and the index at full.
        let tmp2 = TempDir::new().expect("tempdir");
        let (mut q, _) = open(tmp2.path(), 64 << 20);
        let t = Instant::now();
        let mut i = 0usize;
        while q.stats().dropped_health == 0 {
            let p = payloads[i % payloads.len()].clone();
            q.push(Class::Health, topic, false, |_| p).expect("push");
            i += 1;
        }
        let stats = q.stats();
        println!(
            "filled 64 MiB in {:.1} s: {} records held when the first drop happened ({:.1} h of 72,000/day), {} dropped in one segment, index {} KiB ({:.1} bytes/record)",
            t.elapsed().as_secs_f64(),
            i - 1,
            (i - 1) as f64 / 3000.0,
            stats.dropped_health,
            q.index_heap_bytes() / 1024,
            q.index_heap_bytes() as f64 / stats.records as f64
        );
        let t = Instant::now();
        drop(q);
        let (q, report) = open(tmp2.path(), 64 << 20);
        println!(
            "reopen of a full queue: {:.2} s, {} records, {} warnings",
            t.elapsed().as_secs_f64(),
            report.records,
            report.warnings.len()
        );
        assert_eq!(report.records, q.stats().records);
    }

    /// Manual check on a real full filesystem (as root):
    /// `mount -t tmpfs -o size=1m tmpfs /work/scratch-queue/full` then
    /// `QUEUE_FULL_DIR=/work/scratch-queue/full cargo test --lib queue -- --ignored --nocapture queue_on_a_full_tmpfs`
    #[test]
    #[ignore]
    fn queue_on_a_full_tmpfs() {
        let Some(dir) = std::env::var_os("QUEUE_FULL_DIR") else {
            println!("QUEUE_FULL_DIR not set: skipped");
            return;
        };
        let dir = PathBuf::from(dir).join(format!("run-{}", std::process::id()));
        // 256 KiB budget: 4 KiB segments, so acked ones free space.
        let opts = options(256 << 10);
        let (mut q, _) = Queue::open(&dir, opts).expect("open");
        let mut pushed = Vec::new();
        let err = loop {
            match q.push(Class::Event, TOPIC, false, |s| noise(s, 4000)) {
                Ok(seq) => pushed.push(seq),
                Err(e) => break e,
            }
        };
        println!("after {} events: {err}", pushed.len());
        assert!(matches!(err, QueueError::DiskFull { .. }), "{err}");
        let err = q
            .push(Class::Health, TOPIC, false, |s| noise(s, 4000))
            .expect_err("still full");
        println!("health push: {err}");
        assert_eq!(seqs(&q), pushed, "everything queued is still readable");
        let (acked, kept) = pushed.split_at(pushed.len() / 2);
        let mut unpersisted = Vec::new();
        for &s in acked {
            match q.ack(s) {
                Ok(()) => {}
                Err(QueueError::DiskFull { .. }) => unpersisted.push(s),
                Err(e) => panic!("{e}"),
            }
        }
        println!(
            "acked {}: {} of those acks could not be written (disk full) until whole segments were deleted",
            acked.len(),
            unpersisted.len()
        );
        assert_eq!(seqs(&q), kept);
        let seq = push(&mut q, Class::Event);
        println!("push works again (seq {seq})");
        q.sync().expect("sync");
        drop(q);
        let (q, report) = Queue::open(&dir, opts).expect("reopen");
        println!("reopen: {report:?}");
        assert!(report.warnings.is_empty());
        let back = seqs(&q);
        assert!(back.ends_with(&[kept, &[seq]].concat()));
        assert!(back[..back.len() - kept.len() - 1]
            .iter()
            .all(|s| unpersisted.contains(s)));
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
