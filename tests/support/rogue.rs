//! A deliberately misbehaving SNMPv1/v2c agent, for walk tests.
//!
//! Real agents (snmpsimd, snmpd) are the rule in these tests, but none of
//! them misbehaves on demand, so this is a small agent of our own: a std UDP
//! socket on `127.0.0.1:<port picked by the OS>` served by a background
//! thread, stopped (and joined) when the [`Rogue`] is dropped. It has its own
//! minimal BER encoder and decoder, so that no bug in `snmp2` can hide a bug
//! in the client or the other way round.
//!
//! It serves a table of `(Oid, Value)` (sorted; see [`load_snmprec`] for a
//! recording) to community [`COMMUNITY`], answering GET, GETNEXT and GETBULK
//! (v2c; v1 gets GET/GETNEXT and noSuchName past the end of the MIB) in the
//! version it was asked in, and misbehaves as told by a list of
//! [`Behaviour`]s, which combine. Requests for another community, other
//! versions and undecodable datagrams are dropped, as real agents do.
//!
//! Every datagram is counted by PDU type ([`Rogue::counts`]), so a test can
//! assert that, say, a walk fell back from GETBULK to GETNEXT.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cpe_agent::snmp::{Oid, Value};

/// The only community the rogue answers.
pub const COMMUNITY: &str = "public";

const GET: u8 = 0xa0;
const GET_NEXT: u8 = 0xa1;
const RESPONSE: u8 = 0xa2;
const GET_BULK: u8 = 0xa5;
const TOO_BIG: i64 = 1;
const NO_SUCH_NAME: i64 = 2;
const GEN_ERR: i64 = 5;
/// Replies stay under this many bytes (GETBULK stops adding varbinds).
const MAX_REPLY: usize = 60_000;

/// How the rogue misbehaves. Several can be combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// A correct agent (the same as an empty list).
    Normal,
    /// Never answers GETBULK (an agent that only knows v1 PDUs).
    IgnoreBulk,
    /// Answers GETBULK with error-status genErr.
    BulkGenErr,
    /// Answers GETBULK with an empty varbind list.
    BulkEmpty,
    /// Answers GETBULK with random bytes (GET/GETNEXT are fine).
    BulkGarbage,
    /// Answers GETBULK with tooBig when max-repetitions is above this.
    BulkTooBig(u32),
    /// A GETBULK reaching the end of the MIB ends with this many rows of
    /// endOfMibView (a correct agent here sends one).
    PadEndOfMibView(usize),
    /// The successor of the OID in the middle of the table is the first OID
    /// again: a walk that does not check would loop forever.
    NonIncreasing,
    /// Answers everything with random bytes that are not BER.
    Garbage,
    /// Answers with a correct reply cut in half.
    Truncated,
    /// The very first reply carries a wrong request-id; later ones are right.
    WrongRequestId,
    /// Every reply is preceded by a copy with the previous request-id, like
    /// a late answer to an earlier request.
    StaleReplyFirst,
    /// Replies carry another community.
    WrongCommunity,
    /// Never answers (but counts what it gets).
    Silent,
    /// Answers this many requests, then falls silent: a device that goes
    /// away in mid-walk.
    SilentAfter(u32),
    /// Waits this long before each reply.
    SlowReplies(Duration),
    /// Drops SNMPv2c requests: a v1-only agent.
    V1Only,
    /// Pads the first OctetString of every reply so that the datagram is as
    /// large as UDP allows (a device with a 64 KB sysDescr).
    Oversize,
    /// Answers with text that is not SNMP at all (another service on the port).
    NonSnmp,
    /// Answers whatever community it is asked with: an impostor that read
    /// the community off the LAN.
    AnyCommunity,
    /// The chassis serial (entPhysicalSerialNum.1) is new in every reply:
    /// a device that makes up who it is.
    ChurnSerial,
    /// ifDescr never ends: after the table's last row comes row N+1, and so
    /// on, for ever (a walk that never reaches the next column).
    EndlessTable,
}

/// Datagrams the rogue received, by PDU type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub get: u32,
    pub get_next: u32,
    pub get_bulk: u32,
    /// Other PDU types (SET, ...).
    pub other: u32,
    /// Datagrams that did not decode as SNMPv1/v2c.
    pub undecodable: u32,
    /// Datagrams sent back (a stale copy counts too).
    pub replies: u32,
}

impl Counts {
    pub fn requests(&self) -> u32 {
        self.get + self.get_next + self.get_bulk + self.other
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    get: AtomicU32,
    get_next: AtomicU32,
    get_bulk: AtomicU32,
    other: AtomicU32,
    undecodable: AtomicU32,
    replies: AtomicU32,
}

/// A running rogue agent; stopped when dropped.
pub struct Rogue {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Rogue {
    /// Serves `table` (sorted here; duplicates dropped) with `behaviours`.
    pub fn start(table: Vec<(Oid, Value)>, behaviours: &[Behaviour]) -> Rogue {
        Rogue::start_on("127.0.0.1:0".parse().expect("address"), table, behaviours)
    }

    /// [`Rogue::start`] on a given address: an impostor taking the place of
    /// a device that went away.
    pub fn start_on(
        at: SocketAddr,
        mut table: Vec<(Oid, Value)>,
        behaviours: &[Behaviour],
    ) -> Rogue {
        table.sort_by(|a, b| a.0.cmp(&b.0));
        table.dedup_by(|a, b| a.0 == b.0);
        let socket = UdpSocket::bind(at).expect("bind the rogue agent");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set a read timeout");
        let addr = socket.local_addr().expect("the rogue's address");
        let shared = Arc::new(Shared::default());
        let mut agent = Agent {
            table,
            behaviours: behaviours.to_vec(),
            replies: 0,
            random: 0x2545_f491_4f6c_dd1d ^ u64::from(addr.port()),
            asked_community: Vec::new(),
        };
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("rogue-snmp-agent".into())
            .spawn(move || agent.serve(&socket, &thread_shared))
            .expect("start the rogue agent thread");
        Rogue {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has received so far.
    pub fn counts(&self) -> Counts {
        let s = &self.shared;
        let load = |n: &AtomicU32| n.load(Ordering::SeqCst);
        Counts {
            get: load(&s.get),
            get_next: load(&s.get_next),
            get_bulk: load(&s.get_bulk),
            other: load(&s.other),
            undecodable: load(&s.undecodable),
            replies: load(&s.replies),
        }
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Agent {
    table: Vec<(Oid, Value)>,
    behaviours: Vec<Behaviour>,
    replies: u32,
    random: u64,
    /// The community of the request being answered (for AnyCommunity).
    asked_community: Vec<u8>,
}

/// A decoded request.
struct Request {
    version: i64,
    pdu: u8,
    request_id: i64,
    /// error-status, or non-repeaters for GETBULK.
    a: i64,
    /// error-index, or max-repetitions for GETBULK.
    b: i64,
    oids: Vec<Oid>,
}

impl Agent {
    fn serve(&mut self, socket: &UdpSocket, shared: &Shared) {
        let mut buf = vec![0u8; 65_536];
        while !shared.stop.load(Ordering::SeqCst) {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue; // the read timeout: look at the stop flag again
            };
            let Some((community, request)) = decode_request(&buf[..len]) else {
                shared.undecodable.fetch_add(1, Ordering::SeqCst);
                continue;
            };
            let counter = match request.pdu {
                GET => &shared.get,
                GET_NEXT => &shared.get_next,
                GET_BULK => &shared.get_bulk,
                _ => &shared.other,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if community != COMMUNITY.as_bytes() && !self.has(&Behaviour::AnyCommunity) {
                continue;
            }
            self.asked_community = community.clone();
            for datagram in self.answer(&request) {
                if let Some(delay) = self.behaviours.iter().find_map(|b| match b {
                    Behaviour::SlowReplies(delay) => Some(*delay),
                    _ => None,
                }) {
                    thread::sleep(delay);
                }
                if socket.send_to(&datagram, peer).is_ok() {
                    shared.replies.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn has(&self, behaviour: &Behaviour) -> bool {
        self.behaviours.contains(behaviour)
    }

    /// The datagrams that answer `request` (none to stay silent).
    fn answer(&mut self, request: &Request) -> Vec<Vec<u8>> {
        let bulk = request.pdu == GET_BULK;
        let v1 = request.version == 0;
        let gone = self.behaviours.iter().any(|b| match b {
            Behaviour::SilentAfter(n) => self.replies >= *n,
            _ => false,
        });
        if gone
            || self.has(&Behaviour::Silent)
            || (bulk && (v1 || self.has(&Behaviour::IgnoreBulk)))
            || (!v1 && self.has(&Behaviour::V1Only))
            || ![GET, GET_NEXT, GET_BULK].contains(&request.pdu)
        {
            return Vec::new();
        }
        if self.has(&Behaviour::Garbage) || (bulk && self.has(&Behaviour::BulkGarbage)) {
            return vec![self.garbage()];
        }
        if self.has(&Behaviour::NonSnmp) {
            return vec![b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()];
        }
        let (status, index, mut varbinds) = match request.pdu {
            GET => self.get(request, v1),
            GET_NEXT => self.get_next(request, v1),
            _ => self.get_bulk(request),
        };
        let community = if self.has(&Behaviour::WrongCommunity) {
            b"not-public".as_slice()
        } else if self.has(&Behaviour::AnyCommunity) {
            self.asked_community.as_slice()
        } else {
            COMMUNITY.as_bytes()
        };
        if self.has(&Behaviour::Oversize) {
            Agent::pad_first_string(&mut varbinds);
        }
        if self.has(&Behaviour::ChurnSerial) {
            let serial = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1, 11, 1]);
            for (oid, value) in varbinds.iter_mut() {
                if *oid == serial {
                    self.random = self
                        .random
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    *value =
                        Value::OctetString(format!("CHURN{:08X}", self.random >> 32).into_bytes());
                }
            }
        }
        let mut request_id = request.request_id;
        if self.replies == 0 && self.has(&Behaviour::WrongRequestId) {
            request_id += 1000;
        }
        self.replies += 1;
        let reply = |id| encode_reply(request.version, community, id, status, index, &varbinds);
        let mut datagrams = Vec::new();
        if self.has(&Behaviour::StaleReplyFirst) {
            datagrams.push(reply(request_id - 1));
        }
        datagrams.push(reply(request_id));
        if self.has(&Behaviour::Truncated) {
            for datagram in &mut datagrams {
                datagram.truncate(datagram.len() / 2);
            }
        }
        datagrams
    }

    /// The largest datagram UDP over IPv4 carries, less headroom for the SNMP framing.
    const OVERSIZE_STRING: usize = 65_507 - 1_000;

    fn pad_first_string(varbinds: &mut [(Oid, Value)]) {
        if let Some((_, Value::OctetString(bytes))) = varbinds
            .iter_mut()
            .find(|(_, v)| matches!(v, Value::OctetString(_)))
        {
            bytes.resize(Self::OVERSIZE_STRING, b'A');
        }
    }

    /// Request varbinds echoed back with Null values (for error replies).
    fn echo(request: &Request) -> Vec<(Oid, Value)> {
        request
            .oids
            .iter()
            .map(|o| (o.clone(), Value::Null))
            .collect()
    }

    fn get(&self, request: &Request, v1: bool) -> (i64, i64, Vec<(Oid, Value)>) {
        let mut varbinds = Vec::new();
        for (index, oid) in (1..).zip(&request.oids) {
            match self.table.binary_search_by(|(o, _)| o.cmp(oid)) {
                Ok(at) => varbinds.push(self.table[at].clone()),
                Err(_) if v1 => return (NO_SUCH_NAME, index, Agent::echo(request)),
                Err(_) => varbinds.push((oid.clone(), Value::NoSuchInstance)),
            }
        }
        (0, 0, varbinds)
    }

    fn get_next(&self, request: &Request, v1: bool) -> (i64, i64, Vec<(Oid, Value)>) {
        let mut varbinds = Vec::new();
        for (index, oid) in (1..).zip(&request.oids) {
            match self.successor(oid) {
                Some(varbind) => varbinds.push(varbind),
                None if v1 => return (NO_SUCH_NAME, index, Agent::echo(request)),
                None => varbinds.push((oid.clone(), Value::EndOfMibView)),
            }
        }
        (0, 0, varbinds)
    }

    fn get_bulk(&self, request: &Request) -> (i64, i64, Vec<(Oid, Value)>) {
        if self.has(&Behaviour::BulkGenErr) {
            return (GEN_ERR, 1, Agent::echo(request));
        }
        if self.has(&Behaviour::BulkEmpty) {
            return (0, 0, Vec::new());
        }
        let repetitions = usize::try_from(request.b.max(0)).unwrap_or(0).min(10_000);
        for behaviour in &self.behaviours {
            if let Behaviour::BulkTooBig(limit) = behaviour {
                if repetitions > *limit as usize {
                    return (TOO_BIG, 0, Agent::echo(request));
                }
            }
        }
        let non_repeaters = usize::try_from(request.a.max(0))
            .unwrap_or(0)
            .min(request.oids.len());
        let end_rows = self
            .behaviours
            .iter()
            .find_map(|b| match b {
                Behaviour::PadEndOfMibView(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(1);
        let next = |oid: &Oid| {
            self.successor(oid)
                .unwrap_or_else(|| (oid.clone(), Value::EndOfMibView))
        };
        let mut varbinds: Vec<(Oid, Value)> =
            request.oids[..non_repeaters].iter().map(next).collect();
        let mut size: usize = varbinds.iter().map(|v| encode_varbind(v).len()).sum();
        let mut cursors: Vec<Oid> = request.oids[non_repeaters..].to_vec();
        let mut ended_rows = 0;
        'rows: for _ in 0..repetitions {
            if cursors.is_empty() || ended_rows >= end_rows.max(1) {
                break;
            }
            let mut all_ended = true;
            for cursor in &mut cursors {
                let varbind = next(cursor);
                size += encode_varbind(&varbind).len();
                if size > MAX_REPLY {
                    break 'rows;
                }
                if varbind.1 != Value::EndOfMibView {
                    all_ended = false;
                    *cursor = varbind.0.clone();
                }
                varbinds.push(varbind);
            }
            if all_ended {
                ended_rows += 1;
            }
        }
        (0, 0, varbinds)
    }

    /// What GETNEXT of `oid` returns, misbehaviour included.
    fn successor(&self, oid: &Oid) -> Option<(Oid, Value)> {
        if self.has(&Behaviour::EndlessTable) {
            let descr = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2]);
            let last_row = self
                .table
                .iter()
                .filter_map(|(o, _)| o.suffix_after(&descr)?.first().copied())
                .max()
                .unwrap_or(0);
            let row = match oid.suffix_after(&descr) {
                Some(rest) => rest.first().copied().unwrap_or(0),
                None if *oid == descr => 0,
                None => u64::MAX,
            };
            if row != u64::MAX && row >= last_row {
                let next = row + 1;
                let text =
                    format!("endless port {next} with a long description to fill the inventory");
                return Some((descr.child(&[next]), Value::OctetString(text.into_bytes())));
            }
        }
        if self.has(&Behaviour::NonIncreasing) && !self.table.is_empty() {
            let middle = &self.table[self.table.len() / 2].0;
            if oid == middle {
                return self.table.first().cloned();
            }
        }
        let at = self.table.partition_point(|(o, _)| o <= oid);
        self.table.get(at).cloned()
    }

    /// 16 to 79 random bytes that are not a BER SEQUENCE.
    fn garbage(&mut self) -> Vec<u8> {
        let mut next = || {
            // xorshift64
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            self.random
        };
        let len = 16 + (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if bytes[0] == 0x30 {
            bytes[0] = 0x31;
        }
        bytes
    }
}

// ------------------------------------------------------------------ BER

/// An SNMPv2c GetRequest for one OID (the harness's readiness probe uses it too).
pub fn encode_v2c_get(community: &str, request_id: i32, oid: &Oid) -> Vec<u8> {
    let varbind = tlv(0x30, &[object_id(oid), vec![0x05, 0x00]].concat());
    let pdu = tlv(
        0xa0,
        &[
            signed(0x02, i64::from(request_id)),
            signed(0x02, 0),
            signed(0x02, 0),
            tlv(0x30, &varbind),
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[signed(0x02, 1), tlv(0x04, community.as_bytes()), pdu].concat(),
    )
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Two's complement, shortest form.
fn signed(tag: u8, value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0x00 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(tag, &bytes[start..])
}

/// Unsigned (Counter32, Gauge32, TimeTicks, Counter64): a leading zero when
/// the top bit is set.
fn unsigned(tag: u8, value: u64) -> Vec<u8> {
    let mut content: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(tag, &content)
}

fn base128(mut arc: u64, out: &mut Vec<u8>) {
    let mut chunk = vec![(arc & 0x7f) as u8];
    arc >>= 7;
    while arc > 0 {
        chunk.push(0x80 | (arc & 0x7f) as u8);
        arc >>= 7;
    }
    out.extend(chunk.into_iter().rev());
}

fn object_id(oid: &Oid) -> Vec<u8> {
    let arcs = oid.arcs();
    let mut content = Vec::new();
    let first = arcs.first().copied().unwrap_or(0);
    let second = arcs.get(1).copied().unwrap_or(0);
    base128(first * 40 + second, &mut content);
    for &arc in arcs.iter().skip(2) {
        base128(arc, &mut content);
    }
    tlv(0x06, &content)
}

fn encode_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Integer(n) => signed(0x02, *n),
        Value::OctetString(bytes) => tlv(0x04, bytes),
        Value::ObjectId(oid) => object_id(oid),
        Value::IpAddress(ip) => tlv(0x40, ip),
        Value::Counter32(n) => unsigned(0x41, u64::from(*n)),
        Value::Gauge32(n) => unsigned(0x42, u64::from(*n)),
        Value::TimeTicks(n) => unsigned(0x43, u64::from(*n)),
        Value::Opaque(bytes) => tlv(0x44, bytes),
        Value::Counter64(n) => unsigned(0x46, *n),
        Value::NoSuchObject => vec![0x80, 0],
        Value::NoSuchInstance => vec![0x81, 0],
        Value::EndOfMibView => vec![0x82, 0],
        Value::Null | Value::Other => vec![0x05, 0],
    }
}

fn encode_varbind((oid, value): &(Oid, Value)) -> Vec<u8> {
    tlv(0x30, &[object_id(oid), encode_value(value)].concat())
}

fn encode_reply(
    version: i64,
    community: &[u8],
    request_id: i64,
    status: i64,
    index: i64,
    varbinds: &[(Oid, Value)],
) -> Vec<u8> {
    let list: Vec<u8> = varbinds.iter().flat_map(encode_varbind).collect();
    let pdu = [
        signed(0x02, request_id),
        signed(0x02, status),
        signed(0x02, index),
        tlv(0x30, &list),
    ]
    .concat();
    let message = [
        signed(0x02, version),
        tlv(0x04, community),
        tlv(RESPONSE, &pdu),
    ]
    .concat();
    tlv(0x30, &message)
}

/// Reads BER TLVs; every method returns `None` on anything malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next TLV: (tag, content).
    fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        let (content, after) = rest.split_at(len);
        self.0 = after;
        Some((tag, content))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (found, content) = self.any()?;
        (found == tag).then_some(content)
    }

    fn integer(&mut self) -> Option<i64> {
        let content = self.expect(0x02)?;
        if content.is_empty() || content.len() > 8 {
            return None;
        }
        let negative = content[0] & 0x80 != 0;
        let start = if negative { -1i64 } else { 0 };
        Some(content.iter().fold(start, |n, b| (n << 8) | i64::from(*b)))
    }

    fn object_id(&mut self) -> Option<Oid> {
        let content = self.expect(0x06)?;
        let mut arcs = Vec::new();
        let mut arc: u64 = 0;
        for &byte in content {
            arc = arc.checked_mul(128)? | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                if arcs.is_empty() {
                    let first = (arc / 40).min(2);
                    arcs.extend([first, arc - first * 40]);
                } else {
                    arcs.push(arc);
                }
                arc = 0;
            }
        }
        (!arcs.is_empty()).then(|| Oid::from_arcs(&arcs))
    }
}

/// (community, request) from a v1/v2c message; `None` if it is not one.
fn decode_request(datagram: &[u8]) -> Option<(Vec<u8>, Request)> {
    let mut message = Reader(Reader(datagram).expect(0x30)?);
    let version = message.integer()?;
    if version != 0 && version != 1 {
        return None;
    }
    let community = message.expect(0x04)?.to_vec();
    let (pdu, content) = message.any()?;
    let mut fields = Reader(content);
    let request_id = fields.integer()?;
    let a = fields.integer()?;
    let b = fields.integer()?;
    let mut list = Reader(fields.expect(0x30)?);
    let mut oids = Vec::new();
    while !list.is_empty() {
        let mut varbind = Reader(list.expect(0x30)?);
        oids.push(varbind.object_id()?);
    }
    let request = Request {
        version,
        pdu,
        request_id,
        a,
        b,
        oids,
    };
    Some((community, request))
}

// ------------------------------------------------------------ test data

/// The `OID|TAG|VALUE` lines of a `.snmprec` recording as a table; a
/// variation (`65:numeric|initial=N,...`) serves its initial value.
pub fn load_snmprec(path: &Path) -> Vec<(Oid, Value)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            parse_snmprec_line(line)
                .unwrap_or_else(|| panic!("{}: cannot parse {line:?}", path.display()))
        })
        .collect()
}

fn parse_snmprec_line(line: &str) -> Option<(Oid, Value)> {
    let mut parts = line.splitn(3, '|');
    let oid: Oid = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    let raw = parts.next()?;
    let (tag, variation) = tag.split_once(':').unwrap_or((tag, ""));
    let raw = if variation.is_empty() {
        raw.to_owned()
    } else {
        raw.split(',')
            .find_map(|kv| kv.strip_prefix("initial="))
            .unwrap_or("0")
            .to_owned()
    };
    let (tag, hex) = match tag.strip_suffix('x') {
        Some(tag) => (tag, true),
        None => (tag, false),
    };
    let bytes = || -> Option<Vec<u8>> {
        if hex {
            (0..raw.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
                .collect()
        } else {
            Some(raw.as_bytes().to_vec())
        }
    };
    let value = match tag {
        "2" => Value::Integer(raw.parse().ok()?),
        "4" => Value::OctetString(bytes()?),
        "5" => Value::Null,
        "6" => Value::ObjectId(raw.parse().ok()?),
        "64" => Value::IpAddress(match bytes()? {
            b if hex => b.try_into().ok()?,
            _ => raw.parse::<std::net::Ipv4Addr>().ok()?.octets(),
        }),
        "65" => Value::Counter32(raw.parse().ok()?),
        "66" => Value::Gauge32(raw.parse().ok()?),
        "67" => Value::TimeTicks(raw.parse().ok()?),
        "68" => Value::Opaque(bytes()?),
        "70" => Value::Counter64(raw.parse().ok()?),
        _ => return None,
    };
    Some((oid, value))
}

/// A small synthetic device: the system group, an ifTable of `interfaces`
/// rows (ifIndex, ifDescr, ifType, ifMtu, ifSpeed, ifInOctets) and one
/// enterprise scalar after it.
pub fn sample_table(interfaces: u64) -> Vec<(Oid, Value)> {
    let system = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 1]);
    let entry = Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 2, 2, 1]);
    let text = |s: &str| Value::OctetString(s.as_bytes().to_vec());
    let mut table = vec![
        (system.child(&[1, 0]), text("Rogue test agent")),
        (
            system.child(&[2, 0]),
            Value::ObjectId(Oid::from_arcs(&[1, 3, 6, 1, 4, 1, 99999, 1])),
        ),
        (system.child(&[3, 0]), Value::TimeTicks(123_456)),
        (system.child(&[5, 0]), text("rogue")),
        (
            Oid::from_arcs(&[1, 3, 6, 1, 2, 1, 2, 1, 0]),
            Value::Integer(interfaces as i64),
        ),
    ];
    for row in 1..=interfaces {
        table.extend([
            (entry.child(&[1, row]), Value::Integer(row as i64)),
            (entry.child(&[2, row]), text(&format!("eth{row}"))),
            (entry.child(&[3, row]), Value::Integer(6)),
            (entry.child(&[4, row]), Value::Integer(1500)),
            (entry.child(&[5, row]), Value::Gauge32(1_000_000_000)),
            (entry.child(&[10, row]), Value::Counter32(row as u32 * 1000)),
        ]);
    }
    table.push((
        Oid::from_arcs(&[1, 3, 6, 1, 4, 1, 99999, 1, 0]),
        Value::Integer(42),
    ));
    table.sort_by(|a, b| a.0.cmp(&b.0));
    table
}
