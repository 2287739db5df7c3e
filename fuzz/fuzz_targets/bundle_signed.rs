//! The parsing behind the signature: the fuzzed bytes are signed with a fixed
//! test key (`bundle::sign`), and the envelope goes through `bundle::verify`
//! and `bundle::verify_command` as if the provider had sent it, so that every
//! check after the signature (bundle JSON, desired.agent settings, SET values,
//! target, expiry, version; command fields, lifetime, replay) is reached.
//!
//! Input: the bundle (or command) JSON bytes.
#![no_main]

#[path = "common.rs"]
mod common;

use cpe_agent::provision::bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = common::key();
    let envelope = bundle::sign(data, &key);
    let trust = common::trust(Some(41));
    let now = common::now();

    let verified = bundle::verify(envelope.as_bytes(), &trust, now);
    let checked = bundle::check_bundle(data);
    match &verified {
        Ok(b) => {
            // A verified bundle is exactly the signed bytes, and valid on its own.
            assert_eq!(b.bytes, data);
            assert_eq!(b.key_id, cpe_agent::keys::key_id(&key.verifying_key()));
            let c = checked
                .as_ref()
                .expect("verify accepted what check_bundle refuses");
            assert_eq!(c.version, b.version);
            assert!(b.version > 41);
            assert_eq!(bundle::peek_version(envelope.as_bytes()), Some(b.version));
            common::use_bundle(b);
        }
        Err(rejection) => {
            let _ = (rejection.code(), rejection.reason());
        }
    }

    match bundle::verify_command(envelope.as_bytes(), common::REQUEST_ID, &trust, &[], now) {
        Ok(c) => {
            assert_eq!(c.request_id, common::REQUEST_ID);
            let _ = c.kind.name();
            // A command that ran once is refused the second time.
            let ran = vec![c.request_id.clone()];
            assert!(bundle::verify_command(
                envelope.as_bytes(),
                common::REQUEST_ID,
                &trust,
                &ran,
                now
            )
            .is_err());
        }
        Err(rejection) => {
            let _ = (rejection.code(), rejection.reason());
        }
    }
});
