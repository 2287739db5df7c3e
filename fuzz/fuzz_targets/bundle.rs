//! Pushed bundles and commands as they arrive from MQTT, unsigned or signed
//! by whoever: `bundle::verify`, `bundle::verify_command` and
//! `bundle::peek_version` on the raw message, and `bundle::check_bundle` on
//! the same bytes taken as the bundle itself (the JSON behind a signature).
//!
//! Input: the message bytes (an envelope `{"bundle","key_id","signature"}`,
//! or a bundle/command JSON).
//!
//! With `CPE_FUZZ_WRITE_SEEDS=DIR` set, the first run writes envelopes signed
//! with the fixed test key (`bundle::sign`) into DIR, as seeds.
#![no_main]

#[path = "common.rs"]
mod common;

use cpe_agent::provision::bundle;
use libfuzzer_sys::fuzz_target;

const BUNDLE: &str = r#"{"schema":"cpe-agent/bundle/1","target":{"agent":"gw-000123"},"version":42,"not_after":"2026-12-01T00:00:00Z","desired":{"agent":{"polling":{"interval":"30s"}},"devices":{"a1b2c3d4":[{"oid":"1.3.6.1.2.1.1.5.0","type":"string","value":"ap"}]}}}"#;
const COMMAND: &str = r#"{"schema":"cpe-agent/command/1","target":{"agent":"gw-000123"},"request_id":"r-2026-11-23-0001","not_after":"2026-11-23T19:00:00Z","command":"poll-now","device":"sn-arris-1234"}"#;

fn write_seeds(out: &std::path::Path) {
    std::fs::create_dir_all(out).expect("seed dir");
    let key = common::key();
    let write = |name: &str, text: String| std::fs::write(out.join(name), text).expect("seed");
    write(
        "seed-envelope-bundle.json",
        bundle::sign(BUNDLE.as_bytes(), &key),
    );
    write(
        "seed-envelope-command.json",
        bundle::sign(COMMAND.as_bytes(), &key),
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    write(
        "seed-envelope-unknown-key.json",
        bundle::sign(BUNDLE.as_bytes(), &other),
    );
    eprintln!("wrote seeds to {}", out.display());
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        if let Some(out) = std::env::var_os("CPE_FUZZ_WRITE_SEEDS") {
            write_seeds(std::path::Path::new(&out));
        }
    });
    let trust = common::trust(Some(41));
    let now = common::now();

    // The envelope path: size, JSON, key id, base64, signature.
    match bundle::verify(data, &trust, now) {
        Ok(b) => common::use_bundle(&b),
        Err(rejection) => {
            let _ = (rejection.code(), rejection.reason(), rejection.to_string());
        }
    }
    let _ = bundle::peek_version(data);
    match bundle::verify_command(data, common::REQUEST_ID, &trust, &[], now) {
        Ok(c) => {
            let _ = c.kind.name();
        }
        Err(rejection) => {
            let _ = (rejection.code(), rejection.reason());
        }
    }

    // The bundle bytes themselves (what the signature covers).
    match bundle::check_bundle(data) {
        Ok(b) => {
            assert_eq!(b.bytes, data);
            let _ = bundle::check_expiry(&b, now);
            let _ = trust.check_target(&b.target);
            common::use_bundle(&b);
        }
        Err(rejection) => {
            let _ = (rejection.code(), rejection.reason());
        }
    }
});
