//! The config file (TOML), the operator's classification rules file (TOML,
//! named by `discovery.rules_file`), and the provider's pushed settings laid
//! over the file (`config::load_with_overlay`).
//!
//! Input: UTF-8 text. Up to the first NUL byte it is the TOML file; after the
//! NUL, if anything, a JSON object used as the pushed overlay.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use cpe_agent::discover::classify::Rules;
use cpe_agent::config::{self, Config, Overlay};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("cpe-fuzz-config-")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .expect("temp dir")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml_text, overlay_text) = match text.split_once('\0') {
        Some((t, o)) => (t, Some(o)),
        None => (text, None),
    };

    // The config file as `config check` and a reload read it.
    let parsed = config::parse(toml_text, "fuzz");
    if let Ok(config) = &parsed {
        // A valid config must survive the checks pushed settings get.
        assert!(config.check().is_ok(), "parse accepted what check refuses");
        let _ = config.credentials_or_default();
        let _ = config.provisioning.verifying_keys();
    }
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }

    // The same text as an operator rules file.
    match Rules::from_toml(toml_text, "fuzz-rules") {
        Ok(rules) => {
            let merged = Rules::embedded().with_overrides(rules);
            let _ = merged.rule_ids();
            let _ = merged.probes();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    // The pushed overlay: only when the file itself is valid (as the agent
    // requires) and the overlay is a JSON object.
    let (Ok(_), Some(overlay_text)) = (&parsed, overlay_text) else {
        return;
    };
    let Ok(overlay) = serde_json::from_str::<Overlay>(overlay_text) else {
        return;
    };
    // load_with_overlay reads the rules file a config names; the fuzzer must
    // not make it read arbitrary paths (/dev/zero). Work out the merged
    // rules_file the same way the library does, and skip those inputs.
    let Ok(table) = toml_text.parse::<toml::Table>() else {
        return;
    };
    let Ok(mut value) = serde_json::to_value(table) else {
        return;
    };
    config::merge_json(&mut value, &overlay);
    if let Ok(merged) = serde_json::from_value::<Config>(value) {
        if merged.discovery.rules_file.is_some() {
            return;
        }
    }
    let path = scratch().path().join("agent.toml");
    let mut file = std::fs::File::create(&path).expect("write config");
    file.write_all(toml_text.as_bytes()).expect("write config");
    drop(file);
    if let Ok(config) = config::load_with_overlay(&path, Some(&overlay)) {
        assert!(config.check().is_ok(), "overlay result refused by check");
    }
});
