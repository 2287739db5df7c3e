//! What a device sends back to a v1/v2c request, as the agent reads it:
//! `snmp::decode_response` (snmp2's BER decoder, then our checks of the PDU
//! type, request id and community, and the conversion of every varbind into
//! owned `Oid`s and `Value`s), on raw datagrams.
//!
//! Input: the first 4 bytes are the request id the agent expects (big
//! endian); the rest is the datagram. The community expected is "public".
//!
//! Checked: never a panic; an accepted answer is a Response to that request
//! id with that community, every OID it yields prints and parses back to
//! itself, and re-encoding the answer's OIDs as a request (`wire`) decodes
//! back to the same OIDs.
#![no_main]

use cpe_agent::snmp::{decode_response, Oid};
use cpe_agent::snmp::wire::{encode_request, PduKind, Version, WireValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((id, datagram)) = data.split_first_chunk::<4>() else {
        return;
    };
    let request_id = i32::from_be_bytes(*id);
    let Ok(varbinds) = decode_response(datagram, request_id, b"public") else {
        return;
    };
    let mut contents = Vec::new();
    for (oid, _value) in &varbinds {
        let text = oid.to_string();
        assert_eq!(text.parse::<Oid>().ok().as_ref(), Some(oid), "{text}");
        if let Ok(encoded) = snmp2::Oid::from(oid.arcs()) {
            contents.push(encoded.as_bytes().to_vec());
        }
    }
    let binds: Vec<_> = contents
        .iter()
        .map(|c| (c.as_slice(), WireValue::Null))
        .collect();
    let request = encode_request(Version::V2c, b"public", request_id, PduKind::Get, &binds);
    let decoded = snmp2::Pdu::from_bytes(&request).expect("our own request decodes");
    assert_eq!(decoded.req_id, request_id);
    let back: Vec<Vec<u8>> = decoded
        .varbinds
        .map(|(oid, _)| oid.as_bytes().to_vec())
        .collect();
    assert_eq!(back, contents);
});
