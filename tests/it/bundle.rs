//! Signed config bundles from the provider's side: keygen, sign, verify, and
//! interoperability with openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::agent;
use crate::support;

const BUNDLE: &str = r#"{"schema":"cpe-agent/bundle/1","target":{"agent":"gw-1"},"version":7,"desired":{"agent":{"polling":{"interval":"30s"}},"devices":{"gw-modem":[{"oid":"1.3.6.1.2.1.1.5.0","type":"string","value":"modem"}]}}}"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn cpe(args: &[&str]) -> Output {
    agent::run(args)
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let tool = support::require_tool("openssl", "openssl");
    let out = Command::new(tool).args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    out.stdout
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

#[test]
fn keygen_sign_verify_round_trip_and_tampering_fails() {
    let dir = support::temp_dir("bundle-roundtrip");
    let prefix = dir.path().join("provider");
    let out = ok("keygen", &cpe(&["keygen", "--out", path_str(&prefix)]));
    assert!(out.contains("key id:"), "{out}");
    assert!(out.contains("public_keys = [\""), "{out}");
    assert!(
        !out.contains("PRIVATE KEY"),
        "keygen printed the private key: {out}"
    );
    let private = dir.path().join("provider.key");
    let public = dir.path().join("provider.pub");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key mode {mode:o}");
    }
    // A second keygen to the same place never overwrites the key.
    let again = cpe(&["keygen", "--out", path_str(&prefix)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));

    let bundle = write(dir.path(), "bundle.json", BUNDLE.as_bytes());
    let envelope = dir.path().join("bundle.signed.json");
    ok(
        "sign",
        &cpe(&[
            "config",
            "sign",
            path_str(&bundle),
            "--key",
            path_str(&private),
            "--out",
            path_str(&envelope),
        ]),
    );
    let verified = ok(
        "verify",
        &cpe(&[
            "config",
            "verify",
            path_str(&envelope),
            "--pubkey",
            path_str(&public),
        ]),
    );
    assert!(
        verified.starts_with("valid: version 7, target agent \"gw-1\", key id "),
        "{verified}"
    );
    assert!(out.contains(verified.trim().rsplit(' ').next().expect("key id")));

    // The same envelope with other bundle bytes (version 8) no longer verifies.
    let message: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&envelope).expect("envelope")).expect("json");
    let mut tampered = message.clone();
    tampered["bundle"] = BASE64
        .encode(BUNDLE.replace("\"version\":7", "\"version\":8"))
        .into();
    let tampered_path = write(dir.path(), "tampered.json", tampered.to_string().as_bytes());
    let out = cpe(&[
        "config",
        "verify",
        path_str(&tampered_path),
        "--pubkey",
        path_str(&public),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("bad signature"),
        "{}",
        text(&out.stderr)
    );

    // An invalid bundle is refused before signing, naming the place.
    let bad = write(
        dir.path(),
        "bad.json",
        BUNDLE.replace("1.3.6.1.2.1.1.5.0", "1.3.x").as_bytes(),
    );
    let out = cpe(&[
        "config",
        "sign",
        path_str(&bad),
        "--key",
        path_str(&private),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("desired.devices.gw-modem[0].oid"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bundles_signed_with_openssl_verify() {
    let dir = support::temp_dir("bundle-openssl");
    let private = dir.path().join("provider.pem");
    let public = dir.path().join("provider.pub.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        path_str(&private),
    ]);
    openssl(&[
        "pkey",
        "-in",
        path_str(&private),
        "-pubout",
        "-out",
        path_str(&public),
    ]);
    let bundle = write(dir.path(), "bundle.json", BUNDLE.as_bytes());
    let signature = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        path_str(&private),
        "-rawin",
        "-in",
        path_str(&bundle),
    ]);
    assert_eq!(signature.len(), 64, "an Ed25519 signature is 64 bytes");
    // The key id: the first 8 bytes of SHA-256 of the raw public key (the
    // last 32 bytes of the SPKI DER).
    let der = openssl(&[
        "pkey",
        "-pubin",
        "-in",
        path_str(&public),
        "-outform",
        "DER",
    ]);
    let raw = der.get(der.len().saturating_sub(32)..).expect("raw key");
    let raw_path = write(dir.path(), "raw.bin", raw);
    let digest = openssl(&["dgst", "-sha256", "-binary", path_str(&raw_path)]);
    let key_id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let envelope = serde_json::json!({
        "bundle": BASE64.encode(BUNDLE),
        "key_id": key_id,
        "signature": BASE64.encode(&signature),
    });
    let envelope_path = write(dir.path(), "signed.json", envelope.to_string().as_bytes());
    let out = ok(
        "verify",
        &cpe(&[
            "config",
            "verify",
            path_str(&envelope_path),
            "--pubkey",
            path_str(&public),
        ]),
    );
    assert!(out.contains(&format!("key id {key_id}")), "{out}");
    // And the agent's own signature over the same bytes with the openssl key is identical.
    let ours = ok(
        "sign",
        &cpe(&[
            "config",
            "sign",
            path_str(&bundle),
            "--key",
            path_str(&private),
        ]),
    );
    let ours: serde_json::Value = serde_json::from_str(&ours).expect("envelope json");
    assert_eq!(ours, envelope);
    // The base64 raw key is accepted in the config, as `provisioning.public_keys`.
    let config = write(
        dir.path(),
        "agent.toml",
        format!(
            "[provisioning]\nenabled = true\npublic_keys = [\"{}\"]\n",
            BASE64.encode(raw)
        )
        .as_bytes(),
    );
    ok(
        "config check",
        &cpe(&["config", "check", path_str(&config)]),
    );
}

#[test]
fn config_check_rejects_a_bad_provisioning_key_with_its_place() {
    let dir = support::temp_dir("bundle-config");
    let good = "pWE2RbjBQfv/D70jztpwd4qa0UH1T2tz/yCTh+PeY1U=";
    let config = write(
        dir.path(),
        "agent.toml",
        format!("[provisioning]\npublic_keys = [\n  \"{good}\",\n  \"not-a-key\",\n]\n").as_bytes(),
    );
    let out = cpe(&["config", "check", path_str(&config)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent.toml:4:3: provisioning.public_keys[1]: expected the base64 of a raw 32-byte Ed25519 public key"),
        "{err}"
    );
}
