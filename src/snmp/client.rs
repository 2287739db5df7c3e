//! An SNMP client for one device: what real networks need around the protocol.
//!
//! `snmp2` decodes every answer and speaks SNMPv3 (USM crypto) for us; v1/v2c
//! requests are encoded by [`super::wire`] and sent on a socket of ours, so a
//! device costs a socket, not snmp2's two 64 KiB buffers (see `wire` for the
//! measurement). `snmp2` leaves timeouts, retries and stale replies to its
//! caller. This module adds them:
//! - every request has a timeout and a bounded number of retries;
//! - after a timeout, a garbled reply or a reply to an older request, the UDP
//!   socket is replaced: otherwise a late answer to request N would be read as
//!   the answer to request N+1, and every later request would fail the same way;
//! - values are copied out of the session's receive buffer into [`Value`], so
//!   callers hold results without borrowing the session.
//!
//! Secrets go into the session and nowhere else; errors name the credential,
//! never its community or passphrases.

use std::net::SocketAddr;
use std::time::Duration;

use portable_atomic::{AtomicU64, Ordering};
use snmp2::AsyncSession;
use tokio::net::UdpSocket;

use super::value::{Oid, SetValue, Value};
use super::wire;
use crate::config::{AuthProtocol, Credential, PrivProtocol, SnmpVersion};

// Between our owned values and snmp2's borrowed ones: only the client
// speaks snmp2, so the value types above it do not depend on it.
impl Oid {
    /// The OID as snmp2 encodes it; an arc snmp2 cannot carry is a bad OID.
    fn to_snmp2(&self) -> Result<snmp2::Oid<'static>, SnmpError> {
        snmp2::Oid::from(self.arcs()).map_err(|_| SnmpError::BadOid(self.to_string()))
    }

    fn from_snmp2(oid: &snmp2::Oid<'_>) -> Option<Oid> {
        let arcs: Vec<u64> = oid.iter()?.collect();
        // BER packs the first two arcs into one; asn1-rs reads zeroDotZero's
        // single 0x00 byte as the one arc [0]. An empty OID (no content
        // octets, which BER does not allow) is not an OID (found by fuzzing).
        match arcs.as_slice() {
            [] => None,
            [0] => Some(Oid::from(vec![0, 0])),
            _ => Some(Oid::from(arcs)),
        }
    }
}

impl Value {
    fn from_snmp2(value: &snmp2::Value<'_>) -> Value {
        use snmp2::Value as V;
        match value {
            V::Integer(n) => Value::Integer(*n),
            V::Boolean(b) => Value::Integer(i64::from(*b)),
            V::OctetString(bytes) => Value::OctetString(bytes.to_vec()),
            V::ObjectIdentifier(oid) => Oid::from_snmp2(oid).map_or(Value::Other, Value::ObjectId),
            V::IpAddress(ip) => Value::IpAddress(*ip),
            V::Counter32(n) => Value::Counter32(*n),
            V::Unsigned32(n) => Value::Gauge32(*n),
            V::Timeticks(n) => Value::TimeTicks(*n),
            V::Counter64(n) => Value::Counter64(*n),
            V::Opaque(bytes) => Value::Opaque(bytes.to_vec()),
            V::Null => Value::Null,
            V::NoSuchObject => Value::NoSuchObject,
            V::NoSuchInstance => Value::NoSuchInstance,
            V::EndOfMibView => Value::EndOfMibView,
            _ => Value::Other,
        }
    }
}

/// What went wrong talking to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot open a UDP socket: {0}")]
    Socket(String),
    #[error("the agent answered with error-status {status} at varbind {index}")]
    ErrorStatus { status: u32, index: u32 },
    #[error("unusable reply: {0}")]
    BadReply(String),
    #[error("SNMPv3 authentication failed: {0}")]
    Auth(String),
    #[error("invalid OID {0}")]
    BadOid(String),
}

impl SnmpError {
    /// True when the device said something: it is alive, even if unhelpful.
    pub fn device_answered(&self) -> bool {
        matches!(self, SnmpError::ErrorStatus { .. } | SnmpError::Auth(_))
    }
}

/// Request timing for one device.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    pub retries: u32,
}

/// A client for one device with one credential.
pub struct Client {
    addr: SocketAddr,
    credential: Credential,
    timing: Timing,
    session: Option<Session>,
}

/// An open exchange with the device: ours for v1/v2c, snmp2's for v3.
enum Session {
    Community(CommunitySession),
    V3(Box<AsyncSession>),
}

/// A v1/v2c session: a connected socket and the next request id.
struct CommunitySession {
    socket: UdpSocket,
    version: wire::Version,
    community: Vec<u8>,
    next_request_id: i32,
}

/// The largest UDP payload; one receive buffer of this size per thread.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    static RECEIVE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CommunitySession {
    async fn open(
        addr: SocketAddr,
        version: wire::Version,
        community: Vec<u8>,
    ) -> std::io::Result<CommunitySession> {
        let any: SocketAddr = match addr {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any).await?;
        socket.connect(addr).await?;
        Ok(CommunitySession {
            socket,
            version,
            community,
            next_request_id: initial_request_id(),
        })
    }

    /// Sends one request and returns the answer's varbinds. A reply to
    /// another request, with another community or not a Response is an
    /// error: the caller retries on a fresh socket.
    async fn exchange(
        &mut self,
        kind: wire::PduKind,
        varbinds: &[wire::Varbind<'_>],
    ) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let request_id = self.next_request_id;
        self.next_request_id = request_id.wrapping_add(1);
        let message =
            wire::encode_request(self.version, &self.community, request_id, kind, varbinds);
        self.socket
            .send(&message)
            .await
            .map_err(|e| SnmpError::Socket(format!("Send: {e}")))?;
        let reply = self.receive().await?;
        decode_response(&reply, request_id, &self.community)
    }

    /// The next datagram from the device, copied out of the thread's
    /// receive buffer (never held across an await). Waiting includes the
    /// socket's error state, as tokio's own `recv` does: an ICMP
    /// port-unreachable sets no read readiness, and a closed port must fail
    /// at once (a sweep meets hundreds), not after the timeout.
    async fn receive(&self) -> Result<Vec<u8>, SnmpError> {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let failed = |e: std::io::Error| SnmpError::Socket(format!("Receive: {e}"));
        let interest = Interest::READABLE | Interest::ERROR;
        loop {
            let ready = self.socket.ready(interest).await.map_err(failed)?;
            // try_io takes one interest (a combined one masks to nothing).
            let which = if ready.is_readable() {
                Interest::READABLE
            } else {
                Interest::ERROR
            };
            let got = self.socket.try_io(which, || {
                RECEIVE_BUFFER.with_borrow_mut(|buffer| {
                    if buffer.len() < MAX_DATAGRAM {
                        buffer.resize(MAX_DATAGRAM, 0);
                    }
                    let flags = nix::sys::socket::MsgFlags::empty();
                    let len = nix::sys::socket::recv(self.socket.as_raw_fd(), buffer, flags)?;
                    Ok(buffer[..len].to_vec())
                })
            });
            match got {
                Ok(datagram) => return Ok(datagram),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(failed(e)),
            }
        }
    }
}

impl Client {
    pub fn new(addr: SocketAddr, credential: Credential, timing: Timing) -> Client {
        Client {
            addr,
            credential,
            timing,
            session: None,
        }
    }

    pub fn version(&self) -> SnmpVersion {
        self.credential.version
    }

    pub fn credential_name(&self) -> &str {
        &self.credential.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GET several OIDs in one request. Missing objects come back as exceptions.
    pub async fn get(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let oids = oids.iter().map(Oid::to_snmp2).collect::<Result<_, _>>()?;
        self.with_retries(&Request::Get(oids)).await
    }

    /// SET several OIDs in one request (all or none, as the agent applies
    /// a SET PDU). Returns what the agent answered.
    pub async fn set(
        &mut self,
        values: &[(Oid, SetValue)],
    ) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let values = values
            .iter()
            .map(|(oid, value)| {
                let value_oid = match value {
                    SetValue::Oid(text) => {
                        Some(text.parse::<Oid>().map_err(SnmpError::BadOid)?.to_snmp2()?)
                    }
                    _ => None,
                };
                Ok((oid.to_snmp2()?, value.clone(), value_oid))
            })
            .collect::<Result<Vec<_>, SnmpError>>()?;
        self.with_retries(&Request::Set(values)).await
    }

    /// GETNEXT from one OID.
    pub async fn get_next(&mut self, oid: &Oid) -> Result<Vec<(Oid, Value)>, SnmpError> {
        self.with_retries(&Request::GetNext(oid.to_snmp2()?)).await
    }

    /// GETBULK from one OID (v2c/v3 only).
    pub async fn get_bulk(
        &mut self,
        oid: &Oid,
        max_repetitions: u32,
    ) -> Result<Vec<(Oid, Value)>, SnmpError> {
        self.with_retries(&Request::GetBulk(oid.to_snmp2()?, max_repetitions))
            .await
    }

    /// GETNEXT of several OIDs at once, one answer per OID in order: a GETBULK
    /// with every OID a non-repeater (v2c/v3), or one GETNEXT per OID for v1
    /// and for agents that mishandle that GETBULK. An OID past the end of the
    /// agent's MIB answers `EndOfMibView`.
    pub async fn get_next_many(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        if self.credential.version != SnmpVersion::V1 && !oids.is_empty() {
            let wanted = oids
                .iter()
                .map(Oid::to_snmp2)
                .collect::<Result<Vec<_>, _>>()?;
            let count = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
            match self
                .with_retries(&Request::GetBulkMany(wanted, count))
                .await
            {
                Ok(answers) if answers.len() == oids.len() => return Ok(answers),
                Ok(_) | Err(SnmpError::ErrorStatus { .. } | SnmpError::BadReply(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut answers = Vec::with_capacity(oids.len());
        for oid in oids {
            match self.get_next(oid).await {
                Ok(mut varbinds) if !varbinds.is_empty() => answers.push(varbinds.swap_remove(0)),
                Ok(_) => answers.push((oid.clone(), Value::EndOfMibView)),
                // v1 says noSuchName (2) past the end of its MIB.
                Err(SnmpError::ErrorStatus { status: 2, .. }) => {
                    answers.push((oid.clone(), Value::EndOfMibView))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers)
    }

    /// Lets go of a v1/v2c session's socket between polls: an idle device
    /// holds no descriptor (the next request opens a fresh socket). A v3
    /// session is kept: it holds the engine's boots and time, which cost a
    /// round trip to learn again.
    pub fn release_idle(&mut self) {
        if matches!(self.session, Some(Session::Community(_))) {
            self.session = None;
        }
    }

    /// Runs one request with the timeout and retries; a failed attempt drops
    /// the session so the next one starts on a fresh socket.
    async fn with_retries(&mut self, request: &Request) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let timeout = self.timing.timeout;
        let mut last = SnmpError::Timeout(timeout);
        for _attempt in 0..=self.timing.retries {
            if self.session.is_none() {
                match tokio::time::timeout(timeout, open(self.addr, &self.credential)).await {
                    Ok(Ok(session)) => self.session = Some(session),
                    Ok(Err(e)) if e.device_answered() => return Err(e),
                    Ok(Err(e)) => {
                        last = e;
                        continue;
                    }
                    Err(_) => {
                        last = SnmpError::Timeout(timeout);
                        continue;
                    }
                }
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            crate::metrics::bump(&crate::metrics::SNMP_REQUESTS);
            match tokio::time::timeout(timeout, request.send(session)).await {
                Ok(Ok(varbinds)) => return Ok(varbinds),
                Ok(Err(e @ SnmpError::ErrorStatus { .. })) => return Err(e),
                Ok(Err(e)) => {
                    if matches!(e, SnmpError::BadReply(_)) {
                        crate::metrics::bump(&crate::metrics::BAD_REPLIES);
                    }
                    self.session = None;
                    last = e;
                }
                Err(_) => {
                    crate::metrics::bump(&crate::metrics::SNMP_TIMEOUTS);
                    self.session = None;
                    last = SnmpError::Timeout(timeout);
                }
            }
        }
        Err(last)
    }
}

/// One request, kept so that a retry sends the same thing again.
enum Request {
    Get(Vec<snmp2::Oid<'static>>),
    GetNext(snmp2::Oid<'static>),
    GetBulk(snmp2::Oid<'static>, u32),
    /// Several OIDs, all non-repeaters: a multi-varbind GETNEXT.
    GetBulkMany(Vec<snmp2::Oid<'static>>, u32),
    /// OID, value, and the value as an snmp2 OID when it is one.
    Set(Vec<(snmp2::Oid<'static>, SetValue, Option<snmp2::Oid<'static>>)>),
}

impl Request {
    /// How many varbinds a well-formed answer carries (None: any number, for bulk walks).
    fn expected_varbinds(&self) -> Option<usize> {
        match self {
            Request::Get(oids) | Request::GetBulkMany(oids, _) => Some(oids.len()),
            Request::Set(values) => Some(values.len()),
            Request::GetNext(_) => Some(1),
            Request::GetBulk(..) => None,
        }
    }

    async fn send(&self, session: &mut Session) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let varbinds = match session {
            Session::Community(session) => self.send_community(session).await?,
            Session::V3(session) => self.send_v3(session).await?,
        };
        // snmp2 stops quietly at a malformed varbind; a short answer is a bad one.
        match self.expected_varbinds() {
            Some(n) if varbinds.len() != n => Err(SnmpError::BadReply(format!(
                "{} varbind(s) in the answer, {n} asked for",
                varbinds.len()
            ))),
            _ => Ok(varbinds),
        }
    }

    async fn send_community(
        &self,
        session: &mut CommunitySession,
    ) -> Result<Vec<(Oid, Value)>, SnmpError> {
        use wire::{PduKind, WireValue};
        fn read<'a>(oids: &'a [snmp2::Oid<'static>]) -> Vec<wire::Varbind<'a>> {
            oids.iter()
                .map(|o| (o.as_bytes(), WireValue::Null))
                .collect()
        }
        match self {
            Request::Get(oids) => session.exchange(PduKind::Get, &read(oids)).await,
            Request::GetNext(oid) => {
                session
                    .exchange(PduKind::GetNext, &read(std::slice::from_ref(oid)))
                    .await
            }
            Request::GetBulk(oid, max_repetitions) => {
                let kind = PduKind::GetBulk {
                    non_repeaters: 0,
                    max_repetitions: *max_repetitions,
                };
                session
                    .exchange(kind, &read(std::slice::from_ref(oid)))
                    .await
            }
            Request::GetBulkMany(oids, non_repeaters) => {
                let kind = PduKind::GetBulk {
                    non_repeaters: *non_repeaters,
                    max_repetitions: 0,
                };
                session.exchange(kind, &read(oids)).await
            }
            Request::Set(values) => {
                let binds: Vec<wire::Varbind<'_>> = values
                    .iter()
                    .map(|(oid, value, value_oid)| {
                        (oid.as_bytes(), to_wire_value(value, value_oid.as_ref()))
                    })
                    .collect();
                session.exchange(PduKind::Set, &binds).await
            }
        }
    }

    async fn send_v3(&self, session: &mut AsyncSession) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let pdu = match self {
            Request::Get(oids) => {
                let refs: Vec<&snmp2::Oid<'_>> = oids.iter().collect();
                session.get_many(&refs).await
            }
            Request::GetNext(oid) => session.getnext(oid).await,
            Request::GetBulk(oid, max_repetitions) => {
                session.getbulk(&[oid], 0, *max_repetitions).await
            }
            Request::GetBulkMany(oids, non_repeaters) => {
                let refs: Vec<&snmp2::Oid<'_>> = oids.iter().collect();
                session.getbulk(&refs, *non_repeaters, 0).await
            }
            Request::Set(values) => {
                let encoded: Vec<(&snmp2::Oid<'_>, snmp2::Value<'_>)> = values
                    .iter()
                    .map(|(oid, value, value_oid)| (oid, to_snmp2_value(value, value_oid.as_ref())))
                    .collect();
                session.set(&encoded).await
            }
        };
        collect(&pdu.map_err(map_error)?)
    }
}

/// Opens a session; for v3 this includes engine discovery and a first
/// authenticated exchange, so a wrong passphrase fails here.
async fn open(addr: SocketAddr, credential: &Credential) -> Result<Session, SnmpError> {
    let request_id = initial_request_id();
    let socket_error = |e: std::io::Error| {
        // Out of descriptors is the agent's problem, not the device's: say
        // so plainly, and count it for agent health and diag.
        if matches!(
            e.raw_os_error(),
            Some(nix::libc::EMFILE | nix::libc::ENFILE)
        ) {
            crate::metrics::bump(&crate::metrics::FD_EXHAUSTED);
            if crate::metrics::get(&crate::metrics::FD_EXHAUSTED) == 1 {
                tracing::error!(error = %e, "out of file descriptors: devices cannot be asked until some are free; raise LimitNOFILE (the unit sets 4096) or lower discovery.concurrency");
            }
            return SnmpError::Socket(format!(
                "{e}: the agent is out of file descriptors (raise LimitNOFILE)"
            ));
        }
        SnmpError::Socket(e.to_string())
    };
    let secret = |s: &Option<crate::config::Secret>| {
        s.as_ref()
            .map(|s| s.expose().as_bytes().to_vec())
            .unwrap_or_default()
    };
    let community = |version| async move {
        CommunitySession::open(addr, version, secret(&credential.community))
            .await
            .map(Session::Community)
            .map_err(socket_error)
    };
    match credential.version {
        SnmpVersion::V1 => community(wire::Version::V1).await,
        SnmpVersion::V2c => community(wire::Version::V2c).await,
        SnmpVersion::V3 => {
            let user = credential.user.as_deref().unwrap_or_default().as_bytes();
            let mut security = snmp2::v3::Security::new(user, &secret(&credential.auth_password));
            security = match (credential.auth_protocol, credential.priv_protocol) {
                (None, _) => security.with_auth(snmp2::v3::Auth::NoAuthNoPriv),
                (Some(auth), None) => security
                    .with_auth_protocol(auth_protocol(auth))
                    .with_auth(snmp2::v3::Auth::AuthNoPriv),
                (Some(auth), Some(privacy)) => security
                    .with_auth_protocol(auth_protocol(auth))
                    .with_auth(snmp2::v3::Auth::AuthPriv {
                        cipher: cipher(privacy),
                        privacy_password: secret(&credential.priv_password),
                    }),
            };
            let mut session = AsyncSession::new_v3(addr, request_id, security)
                .await
                .map_err(socket_error)?;
            session.init().await.map_err(map_error)?;
            Ok(Session::V3(Box::new(session)))
        }
    }
}

fn auth_protocol(p: AuthProtocol) -> snmp2::v3::AuthProtocol {
    use snmp2::v3::AuthProtocol as A;
    match p {
        AuthProtocol::Md5 => A::Md5,
        AuthProtocol::Sha => A::Sha1,
        AuthProtocol::Sha224 => A::Sha224,
        AuthProtocol::Sha256 => A::Sha256,
        AuthProtocol::Sha384 => A::Sha384,
        AuthProtocol::Sha512 => A::Sha512,
    }
}

fn cipher(p: PrivProtocol) -> snmp2::v3::Cipher {
    use snmp2::v3::Cipher as C;
    match p {
        PrivProtocol::Des => C::Des,
        PrivProtocol::Aes => C::Aes128,
        PrivProtocol::Aes192 => C::Aes192,
        PrivProtocol::Aes256 => C::Aes256,
    }
}

/// Request ids start somewhere unpredictable so that two agents (or a restart)
/// do not reuse each other's ids towards the same device.
fn initial_request_id() -> i32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = u64::from(nanos) ^ COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    (mixed & 0x3fff_ffff) as i32
}

fn map_error(e: snmp2::Error) -> SnmpError {
    match e {
        snmp2::Error::Send | snmp2::Error::Receive => SnmpError::Socket(format!("{e:?}")),
        snmp2::Error::AuthFailure(kind) => SnmpError::Auth(format!("{kind:?}")),
        other => SnmpError::BadReply(format!("{other:?}")),
    }
}

/// The varbinds of a v1/v2c answer to request `request_id` sent with
/// `community`. A datagram that does not decode, is not a Response, answers
/// another request or carries another community is a `BadReply`; an
/// error-status is an `ErrorStatus`. Pure, and public for the fuzzer.
pub fn decode_response(
    datagram: &[u8],
    request_id: i32,
    community: &[u8],
) -> Result<Vec<(Oid, Value)>, SnmpError> {
    let pdu = snmp2::Pdu::from_bytes(datagram).map_err(map_error)?;
    if pdu.message_type != snmp2::MessageType::Response {
        return Err(SnmpError::BadReply(format!(
            "a {:?} where a Response was expected",
            pdu.message_type
        )));
    }
    if pdu.req_id != request_id {
        return Err(SnmpError::BadReply(format!(
            "RequestIdMismatch: the answer to request {}, not {request_id}",
            pdu.req_id
        )));
    }
    if pdu.community != community {
        return Err(SnmpError::BadReply(
            "CommunityMismatch: the answer carries another community".into(),
        ));
    }
    collect(&pdu)
}

/// A SET value as [`super::wire`] encodes it.
fn to_wire_value<'a>(
    value: &'a SetValue,
    value_oid: Option<&'a snmp2::Oid<'static>>,
) -> wire::WireValue<'a> {
    use wire::WireValue as W;
    match value {
        SetValue::Integer(n) => W::Integer(i64::from(*n)),
        SetValue::String(s) => W::OctetString(s.as_bytes()),
        SetValue::Hex(bytes) => W::OctetString(bytes),
        SetValue::Oid(_) => value_oid.map_or(W::Null, |oid| W::ObjectId(oid.as_bytes())),
        SetValue::IpAddress(ip) => W::IpAddress(ip.octets()),
        SetValue::Unsigned(n) => W::Gauge32(*n),
        SetValue::Counter32(n) => W::Counter32(*n),
        SetValue::TimeTicks(n) => W::TimeTicks(*n),
    }
}

/// A SET value as snmp2 encodes it (SNMPv3).
fn to_snmp2_value<'a>(
    value: &'a SetValue,
    value_oid: Option<&'a snmp2::Oid<'static>>,
) -> snmp2::Value<'a> {
    use snmp2::Value as V;
    match value {
        SetValue::Integer(n) => V::Integer(i64::from(*n)),
        SetValue::String(s) => V::OctetString(s.as_bytes()),
        SetValue::Hex(bytes) => V::OctetString(bytes),
        SetValue::Oid(_) => value_oid.map_or(V::Null, |oid| V::ObjectIdentifier(oid.clone())),
        SetValue::IpAddress(ip) => V::IpAddress(ip.octets()),
        SetValue::Unsigned(n) => V::Unsigned32(*n),
        SetValue::Counter32(n) => V::Counter32(*n),
        SetValue::TimeTicks(n) => V::Timeticks(*n),
    }
}

fn collect(pdu: &snmp2::Pdu<'_>) -> Result<Vec<(Oid, Value)>, SnmpError> {
    if pdu.error_status != 0 {
        return Err(SnmpError::ErrorStatus {
            status: pdu.error_status,
            index: pdu.error_index,
        });
    }
    pdu.varbinds
        .clone()
        .map(|(oid, value)| {
            let oid = Oid::from_snmp2(&oid)
                .ok_or_else(|| SnmpError::BadReply("an OID that does not decode".into()))?;
            Ok((oid, Value::from_snmp2(&value)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid;

    /// A v2c Response as a device sends it: our GET with the Response tag.
    fn response(request_id: i32, community: &[u8], error_status: u8) -> Vec<u8> {
        use wire::{encode_request, PduKind, Version, WireValue};
        let oid = oid!(1, 3, 6, 1, 2, 1, 1, 5, 0).to_snmp2().expect("valid");
        let value = WireValue::OctetString(b"gw-1");
        let mut bytes = encode_request(
            Version::V2c,
            community,
            request_id,
            PduKind::Get,
            &[(oid.as_bytes(), value)],
        );
        let tag_at = 2 + 3 + 2 + community.len();
        assert_eq!(bytes[tag_at], 0xa0);
        bytes[tag_at] = 0xa2;
        // error-status is the second INTEGER of the PDU: tag, len, id (4 + id bytes).
        let status_at = bytes.windows(3).position(|w| w == [0x02, 0x01, 0x00]);
        if let Some(at) = status_at.filter(|_| error_status != 0) {
            bytes[at + 2] = error_status;
        }
        bytes
    }

    #[test]
    fn answers_are_checked_before_their_values_are_used() {
        let good = response(700, b"public", 0);
        assert_eq!(
            decode_response(&good, 700, b"public"),
            Ok(vec![(
                oid!(1, 3, 6, 1, 2, 1, 1, 5, 0),
                Value::OctetString(b"gw-1".to_vec())
            )])
        );
        let bad = |result: Result<_, SnmpError>, what: &str| match result {
            Err(SnmpError::BadReply(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("expected a bad reply ({what}), got {other:?}"),
        };
        bad(decode_response(&good, 701, b"public"), "RequestIdMismatch");
        bad(decode_response(&good, 700, b"private"), "CommunityMismatch");
        let request = {
            let mut r = good.clone();
            r[2 + 3 + 2 + 6] = 0xa0;
            r
        };
        bad(
            decode_response(&request, 700, b"public"),
            "Response was expected",
        );
        for cut in [0, 1, 5, good.len() / 2, good.len() - 1] {
            assert!(decode_response(&good[..cut], 700, b"public").is_err());
        }
        // A varbind whose OID has no content octets (fuzz/regressions/snmp_reply/empty-oid).
        let empty_oid = [
            0x30, 0x1e, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2,
            0x11, 0x02, 0x01, 0x07, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x06, 0x30, 0x04,
            0x06, 0x00, 0x05, 0x00,
        ];
        bad(decode_response(&empty_oid, 7, b"public"), "does not decode");
        assert_eq!(
            decode_response(&response(9, b"public", 17), 9, b"public"),
            Err(SnmpError::ErrorStatus {
                status: 17,
                index: 0
            })
        );
    }

    /// Loopback answers a closed port with ICMP port-unreachable, which
    /// sets the socket's error and no read readiness: the request must fail
    /// then, not at the timeout (a sweep of a /24 meets hundreds of these).
    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_fails_at_once_not_at_the_timeout() {
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.local_addr().expect("addr")
        };
        let timing = Timing {
            timeout: Duration::from_secs(5),
            retries: 0,
        };
        let mut client = Client::new(closed, Credential::default_public(), timing);
        let started = std::time::Instant::now();
        let result = client.get(&[oid!(1, 3, 6, 1, 2, 1, 1, 1, 0)]).await;
        assert!(
            matches!(&result, Err(SnmpError::Socket(why)) if why.contains("Receive")),
            "{result:?}"
        );
        assert!(
            started.elapsed() < timing.timeout,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn silent_host_times_out_after_retries() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let timing = Timing {
            timeout: Duration::from_millis(50),
            retries: 1,
        };
        let mut client = Client::new(addr, Credential::default_public(), timing);
        let started = std::time::Instant::now();
        let err = client
            .get(&[oid!(1, 3, 6, 1, 2, 1, 1, 1, 0)])
            .await
            .expect_err("silent");
        assert_eq!(err, SnmpError::Timeout(timing.timeout));
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(socket);
    }
}
