//! SNMPv1/v2c request messages, encoded by us (BER, RFC 3416 / RFC 1157).
//!
//! Why not snmp2's session for these: each `snmp2::AsyncSession` owns two
//! 64 KiB buffers, and a poller keeps one session per device, so on a
//! gateway watching 200 devices the buffers alone took 25 MiB of heap
//! (heaptrack, issue 8). A community request is a few hundred bytes; we
//! encode it here into a buffer of its own size, and [`super::client`] reads
//! the answer into one receive buffer per thread and parses it with snmp2's
//! public decoder. SNMPv3 (USM authentication and privacy) still goes through
//! snmp2's session.
//!
//! Pure functions, no I/O: the encodings are checked byte for byte in the
//! tests below and decoded back with snmp2.

/// Which request, with the two header fields GETBULK reuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduKind {
    Get,
    GetNext,
    GetBulk {
        non_repeaters: u32,
        max_repetitions: u32,
    },
    Set,
}

impl PduKind {
    fn tag(self) -> u8 {
        match self {
            PduKind::Get => 0xa0,
            PduKind::GetNext => 0xa1,
            PduKind::Set => 0xa3,
            PduKind::GetBulk { .. } => 0xa5,
        }
    }
}

/// A varbind's value as it goes on the wire (Null for the reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    Null,
    Integer(i64),
    OctetString(&'a [u8]),
    /// The OID's BER content octets (as `snmp2::Oid::as_bytes` gives them).
    ObjectId(&'a [u8]),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
}

/// One varbind: the OID's BER content octets and the value.
pub type Varbind<'a> = (&'a [u8], WireValue<'a>);

/// The message version field: 0 for SNMPv1, 1 for SNMPv2c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1 = 0,
    V2c = 1,
}

/// A whole request message: SEQUENCE { version, community, PDU }.
pub fn encode_request(
    version: Version,
    community: &[u8],
    request_id: i32,
    kind: PduKind,
    varbinds: &[Varbind<'_>],
) -> Vec<u8> {
    let (field2, field3) = match kind {
        PduKind::GetBulk {
            non_repeaters,
            max_repetitions,
        } => (i64::from(non_repeaters), i64::from(max_repetitions)),
        _ => (0, 0),
    };
    let mut list = Vec::with_capacity(varbinds.len() * 32);
    for (oid, value) in varbinds {
        let mut bind = Vec::with_capacity(oid.len() + 16);
        tlv(0x06, oid, &mut bind);
        encode_value(*value, &mut bind);
        tlv(0x30, &bind, &mut list);
    }
    let mut pdu = Vec::with_capacity(list.len() + 24);
    integer(0x02, i64::from(request_id), &mut pdu);
    integer(0x02, field2, &mut pdu);
    integer(0x02, field3, &mut pdu);
    tlv(0x30, &list, &mut pdu);
    let mut body = Vec::with_capacity(pdu.len() + community.len() + 16);
    integer(0x02, version as i64, &mut body);
    tlv(0x04, community, &mut body);
    tlv(kind.tag(), &pdu, &mut body);
    let mut message = Vec::with_capacity(body.len() + 4);
    tlv(0x30, &body, &mut message);
    message
}

fn encode_value(value: WireValue<'_>, out: &mut Vec<u8>) {
    match value {
        WireValue::Null => tlv(0x05, &[], out),
        WireValue::Integer(n) => integer(0x02, n, out),
        WireValue::OctetString(bytes) => tlv(0x04, bytes, out),
        WireValue::ObjectId(content) => tlv(0x06, content, out),
        WireValue::IpAddress(ip) => tlv(0x40, &ip, out),
        WireValue::Counter32(n) => integer(0x41, i64::from(n), out),
        WireValue::Gauge32(n) => integer(0x42, i64::from(n), out),
        WireValue::TimeTicks(n) => integer(0x43, i64::from(n), out),
    }
}

/// Tag, definite length (short or long form), content.
fn tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// A two's-complement integer in the fewest octets (the unsigned SNMP types
/// are written the same way, so a value with its top bit set gains a 0x00).
fn integer(tag: u8, n: i64, out: &mut Vec<u8>) {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (this, next) = (bytes[start], bytes[start + 1]);
        let redundant = (this == 0x00 && next & 0x80 == 0) || (this == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    tlv(tag, &bytes[start..], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid_content(arcs: &[u64]) -> Vec<u8> {
        snmp2::Oid::from(arcs)
            .expect("valid OID")
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn a_get_of_sys_descr_matches_net_snmp_byte_for_byte() {
        // snmpget -v2c -c public HOST 1.3.6.1.2.1.1.1.0, request id 0x1234 (tcpdump -X).
        let oid = oid_content(&[1, 3, 6, 1, 2, 1, 1, 1, 0]);
        let message = encode_request(
            Version::V2c,
            b"public",
            0x1234,
            PduKind::Get,
            &[(&oid, WireValue::Null)],
        );
        let expected = [
            0x30, 0x27, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x1a, 0x02, 0x02, 0x12, 0x34, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30,
            0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ];
        assert_eq!(message, expected);
    }

    #[test]
    fn integers_take_the_fewest_octets() {
        let encoded = |n: i64| {
            let mut out = Vec::new();
            integer(0x02, n, &mut out);
            out
        };
        assert_eq!(encoded(0), [0x02, 0x01, 0x00]);
        assert_eq!(encoded(127), [0x02, 0x01, 0x7f]);
        assert_eq!(encoded(128), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(encoded(-1), [0x02, 0x01, 0xff]);
        assert_eq!(encoded(-129), [0x02, 0x02, 0xff, 0x7f]);
        assert_eq!(
            encoded(i64::from(u32::MAX)),
            [0x02, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(encoded(i64::MIN).len(), 10);
    }

    #[test]
    fn long_contents_use_the_long_length_form() {
        let mut out = Vec::new();
        tlv(0x04, &[7; 200], &mut out);
        assert_eq!(&out[..3], &[0x04, 0x81, 200]);
        out.clear();
        tlv(0x04, &[7; 300], &mut out);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(out.len(), 304);
    }

    #[test]
    fn every_request_decodes_back_with_snmp2() {
        let a = oid_content(&[1, 3, 6, 1, 2, 1, 1, 5, 0]);
        let b = oid_content(&[1, 3, 6, 1, 4, 1, 8072, 3, 2, 10]);
        let long_name = vec![b'x'; 300];
        let sets = [
            (&a[..], WireValue::OctetString(&long_name)),
            (&a[..], WireValue::Integer(-5)),
            (&a[..], WireValue::ObjectId(&b)),
            (&a[..], WireValue::IpAddress([192, 0, 2, 1])),
            (&a[..], WireValue::Counter32(u32::MAX)),
            (&a[..], WireValue::Gauge32(1 << 31)),
            (&a[..], WireValue::TimeTicks(4242)),
        ];
        let kinds = [
            (PduKind::Get, snmp2::MessageType::GetRequest),
            (PduKind::GetNext, snmp2::MessageType::GetNextRequest),
            (
                PduKind::GetBulk {
                    non_repeaters: 1,
                    max_repetitions: 25,
                },
                snmp2::MessageType::GetBulkRequest,
            ),
            (PduKind::Set, snmp2::MessageType::SetRequest),
        ];
        for (kind, expected_type) in kinds {
            let message = encode_request(Version::V2c, b"private", -77, kind, &sets);
            let pdu = snmp2::Pdu::from_bytes(&message).expect("decodes");
            assert_eq!(pdu.message_type, expected_type);
            assert_eq!(pdu.req_id, -77);
            assert_eq!(pdu.community, b"private");
            if let PduKind::GetBulk { .. } = kind {
                assert_eq!((pdu.error_status, pdu.error_index), (1, 25));
            }
            let values: Vec<snmp2::Value<'_>> = pdu.varbinds.map(|(_, value)| value).collect();
            use snmp2::Value as V;
            assert!(
                matches!(
                    values.as_slice(),
                    [
                        V::OctetString(name),
                        V::Integer(-5),
                        V::ObjectIdentifier(oid),
                        V::IpAddress([192, 0, 2, 1]),
                        V::Counter32(u32::MAX),
                        V::Unsigned32(0x8000_0000),
                        V::Timeticks(4242),
                    ] if name.len() == 300 && oid.as_bytes() == b.as_slice()
                ),
                "{kind:?}: {values:?}"
            );
        }
        let v1 = encode_request(Version::V1, b"public", 1, PduKind::Get, &sets[..1]);
        let pdu = snmp2::Pdu::from_bytes(&v1).expect("decodes");
        assert_eq!(pdu.version().ok(), Some(snmp2::Version::V1));
    }
}
