//! How well classification generalises, scored as a provider would: every
//! recording of `../shared/devices-dev/` (351 real devices of 119 vendors,
//! labelled with the kinds that count as right) and of `../shared/devices/`
//! (26 customer-LAN devices with hand-written expectations) is served by
//! snmpsimd on its own loopback address, `cpe-agent discover --json` sweeps
//! them, and the answers are scored.
//!
//! The floors below are what the agent reached; they may only go up. The
//! test fails (it does not skip) when `../shared` is missing: CI has it.
//! `scripts/classification-score.sh` prints the whole table.
//!
//! The labels' vendor column is LibreNMS's icon name (`junos`, `hpe`,
//! `extremeboss`); [`vendor_matches`] is the one small, visible rule that
//! matches the agent's brand to such a label. It lives here, not in the agent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value as Json;

use crate::agent;
use crate::support;
use crate::support::snmpsim::SnmpSim;

/// Floors on `../shared/devices-dev/`, in percent (kind right, recognised =
/// a definite kind that is right where `other` is not accepted, vendor right):
/// one device below what the agent reached (319/351, 221/241, 318/351), so
/// that a device a loaded CI machine's simulator answers too late for does
/// not turn CI red, while any real regression does.
const DEV_KIND_FLOOR: f64 = 90.5;
const DEV_RECOGNISED_FLOOR: f64 = 91.2;
const DEV_VENDOR_FLOOR: f64 = 90.3;

/// One labelled recording of the dev set.
struct Label {
    stem: String,
    accepted: Vec<String>,
    vendor: String,
    group: String,
}

/// What the agent said about one device.
#[derive(Default)]
struct Answer {
    kind: String,
    vendor: String,
    model: String,
    confidence: String,
    rule: String,
}

fn shared_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: the classification score needs the shared recordings beside the \
         repository (CI has them)",
        dir.display()
    );
    dir
}

fn read_labels(dir: &Path) -> Vec<Label> {
    let text = std::fs::read_to_string(dir.join("labels.tsv")).expect("read labels.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("labels.tsv has a header")
        .trim_start_matches("# ")
        .split('\t')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("labels.tsv has no column {name:?}"))
    };
    let (stem, accepted, vendor, group) = (
        column("stem"),
        column("accepted_kinds"),
        column("vendor"),
        column("group"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_string();
            Label {
                stem: field(stem),
                accepted: field(accepted).split(',').map(str::to_string).collect(),
                vendor: field(vendor),
                group: field(group),
            }
        })
        .collect()
}

/// A kind the agent gained counts as right where the label's group clearly
/// means it (the dev set's README says so).
fn group_kinds(group: &str) -> &'static [&'static str] {
    match group {
        "pdu-ats-meter" | "type:power" => &["pdu"],
        "backhaul-radio" | "type:wireless" | "wireless-network-typed" => &["radio"],
        "wlan-controller" => &["wlc"],
        _ => &[],
    }
}

fn alnum(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Does the agent's vendor name the label's vendor? Both are reduced to
/// lower-case letters and digits; either may be a prefix of the other
/// (`hp` ~ `hpe`, `extremeboss` ~ `extreme`) or a label of four characters
/// or more may stand inside the vendor; a few labels are the name of an OS
/// or a brand line rather than of the company.
fn vendor_matches(label: &str, vendor: &str) -> bool {
    let (label, vendor) = (alnum(label), alnum(vendor));
    if label == "generic" {
        return true;
    }
    if vendor.is_empty() {
        return false;
    }
    let aliases: &[&str] = match label.as_str() {
        "junos" => &["juniper"],
        "hp" | "hpe" => &["hp", "hewlettpackard", "aruba"],
        "alcatellucent" => &["alcatel", "nokia"],
        "extremeboss" | "extremevoss" => &["extreme"],
        "brocade" | "foundry" => &["brocade", "foundry", "ruckus", "extreme"],
        "picos" => &["pica8"],
        "siteboss" => &["asentria"],
        "opnsense" => &["opnsense", "deciso"],
        "sophosxg" => &["sophos"],
        "socomecpdu" => &["socomec"],
        // Companies renamed or bought, and the brand lines they sold under:
        // the label names one, the agent may name the other.
        "emerson" => &["emerson", "vertiv"],
        "mellanox" => &["mellanox", "nvidia"],
        "ribbon" => &["ribbon", "sonus"],
        "thomson" => &["thomson", "technicolor"],
        "motorola" => &["motorola", "netopia", "arris"],
        "deliberant" => &["deliberant", "ligowave"],
        "peplink" => &["peplink", "pepwave"],
        "vyos" => &["vyos", "vyatta"],
        "nrg" => &["nrg", "ricoh"],
        "radware" => &["radware", "alteon"],
        _ => &[],
    };
    // Either a prefix of the other, or a label of 4 letters or more inside
    // the vendor ("meraki" in "Cisco Meraki", "bktel" in "HUBER+SUHNER BKtel").
    let matches =
        |a: &str, b: &str| a.starts_with(b) || b.starts_with(a) || (a.len() >= 4 && b.contains(a));
    matches(&label, &vendor) || aliases.iter().any(|alias| matches(alias, &vendor))
}

/// Serves `recordings` on consecutive loopback /24s from `127.0.<first>.1`
/// and sweeps them; answers by stem.
fn sweep(recordings: &[PathBuf], first_net: u8) -> (BTreeMap<String, Answer>, f64) {
    let sims: Vec<SnmpSim> = recordings
        .chunks(250)
        .zip(first_net..)
        .map(|(chunk, net)| SnmpSim::start_lan(chunk, &format!("127.0.{net}"), 1))
        .collect();
    let mut args = vec!["discover".to_string(), "--json".to_string()];
    for (sim, net) in sims.iter().zip(first_net..) {
        args.push("--target".into());
        args.push(format!("127.0.{net}.0/24:{}", sim.port()));
    }
    let started = Instant::now();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent::run(&args);
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "discover failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Json> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let text = |d: &Json, key: &str| match &d[key] {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    let mut answers = BTreeMap::new();
    for device in sims.iter().flat_map(SnmpSim::devices) {
        let address = device.addr.ip().to_string();
        let answer = found
            .iter()
            .find(|d| d["address"].as_str() == Some(address.as_str()))
            .map(|d| Answer {
                kind: text(d, "kind"),
                vendor: text(d, "vendor"),
                model: text(d, "model"),
                confidence: text(d, "confidence"),
                rule: text(d, "rule"),
            })
            .unwrap_or_else(|| Answer {
                kind: "(not found)".into(),
                ..Answer::default()
            });
        answers.insert(device.name.clone(), answer);
    }
    (answers, seconds)
}

/// The labels have no model column, and expected.toml's models are prose
/// ("DG1660A Touchstone residential gateway"): a model agrees when its
/// letters and digits stand in the expected text, or one of its words with
/// a digit in it does ("Smart-UPS X 750" has none: it does not).
fn model_agrees(got: &str, want: &str) -> bool {
    let want = alnum(want);
    !got.is_empty()
        && (want.contains(&alnum(got))
            || got
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| w.len() >= 3 && w.chars().any(|c| c.is_ascii_digit()))
                .any(|w| want.contains(&alnum(w))))
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn report_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/score");
    std::fs::create_dir_all(&dir).expect("create target/score");
    dir.join("classification.txt")
}

#[test]
fn classification_generalises_to_the_dev_set_and_holds_on_the_customer_devices() {
    let dev_dir = shared_dir("devices-dev");
    let labels = read_labels(&dev_dir);
    let dev_files: Vec<PathBuf> = labels
        .iter()
        .map(|l| dev_dir.join(format!("{}.snmprec", l.stem)))
        .collect();
    let (dev, dev_seconds) = sweep(&dev_files, 2);

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<34} {:<34} {:<10} {:<10} {:>4} {:<16} {:<22} model / rule",
        "recording", "accepted", "kind", "", "conf", "vendor label", "vendor"
    );
    let (mut kind_right, mut definite, mut definite_right, mut vendor_right) = (0, 0, 0, 0);
    let mut dev_models = 0;
    for label in &labels {
        let answer = &dev[&label.stem];
        dev_models += usize::from(!answer.model.is_empty());
        let kind_ok = label.accepted.contains(&answer.kind)
            || group_kinds(&label.group).contains(&answer.kind.as_str());
        let vendor_ok = vendor_matches(&label.vendor, &answer.vendor);
        kind_right += usize::from(kind_ok);
        vendor_right += usize::from(vendor_ok);
        if !label.accepted.iter().any(|k| k == "other") {
            definite += 1;
            definite_right += usize::from(kind_ok && answer.kind != "other");
        }
        let _ = writeln!(
            table,
            "{:<34} {:<34} {:<10} {:<10} {:>4} {:<16} {:<22} {} / {}",
            label.stem,
            label.accepted.join(","),
            answer.kind,
            if kind_ok { "" } else { "KIND" },
            answer.confidence,
            label.vendor,
            format!(
                "{}{}",
                answer.vendor,
                if vendor_ok { "" } else { " VENDOR" }
            ),
            answer.model,
            answer.rule
        );
    }

    let shared = shared_dir("devices");
    let expected: toml::Table = toml::from_str(
        &std::fs::read_to_string(shared.join("expected.toml")).expect("expected.toml"),
    )
    .expect("expected.toml parses");
    let shared_files = support::snmprec_files(&shared);
    let (customer, customer_seconds) = sweep(&shared_files, 4);
    let (mut customer_kind, mut customer_vendor, mut customer_model) = (0, 0, 0);
    for (stem, answer) in &customer {
        let want = |key: &str| {
            expected
                .get(stem)
                .and_then(|t| t.get(key))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let kind_ok = answer.kind == want("kind");
        let vendor_ok = alnum(&answer.vendor) == alnum(&want("vendor"));
        customer_kind += usize::from(kind_ok);
        customer_vendor += usize::from(vendor_ok);
        customer_model += usize::from(model_agrees(&answer.model, &want("model")));
        if !kind_ok || !vendor_ok {
            let _ = writeln!(
                table,
                "customer {stem}: kind {} (want {}), vendor {:?} (want {:?})",
                answer.kind,
                want("kind"),
                answer.vendor,
                want("vendor")
            );
        }
    }

    let n = labels.len();
    let summary = format!(
        "| recordings | kind right | recognised | vendor right | model | sweep |\n\
         | --- | --- | --- | --- | --- | --- |\n\
         | ../shared/devices-dev ({n}) | {kind_right}/{n} = {:.1} % | {definite_right}/{definite} = {:.1} % | {vendor_right}/{n} = {:.1} % | {dev_models} given | {dev_seconds:.2} s |\n\
         | ../shared/devices ({}) | {customer_kind}/{} | | {customer_vendor}/{} | {customer_model}/{} agree | {customer_seconds:.2} s |\n",
        percent(kind_right, n),
        percent(definite_right, definite),
        percent(vendor_right, n),
        customer.len(),
        customer.len(),
        customer.len(),
        customer.len(),
    );
    table.push('\n');
    table.push_str(&summary);
    std::fs::write(report_path(), &table).expect("write the score table");
    println!("{table}");

    assert_eq!(customer_kind, customer.len(), "customer devices: kind");
    assert_eq!(customer_vendor, customer.len(), "customer devices: vendor");
    assert!(
        percent(kind_right, n) >= DEV_KIND_FLOOR,
        "dev kind below the floor\n{summary}"
    );
    assert!(
        percent(definite_right, definite) >= DEV_RECOGNISED_FLOOR,
        "dev recognised below the floor\n{summary}"
    );
    assert!(
        percent(vendor_right, n) >= DEV_VENDOR_FLOOR,
        "dev vendor below the floor\n{summary}"
    );
}
