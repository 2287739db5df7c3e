//! Kind from general evidence, weighed: what a device's interfaces, MIBs,
//! services, words and maker say about it, when no product rule decides.
//!
//! Product rules ([`super::classify`]) name the devices someone wrote a rule
//! for; most of a customer's LAN is devices nobody did. Those still show
//! what they are: a cable modem has DOCSIS interfaces, a switch many
//! Ethernet ports and a bridge, a printer the Printer-MIB, a UPS maker
//! mostly makes UPSs. Each such signal votes for kinds with a weight; the
//! best-supported kind wins, with a confidence, and `other` is left for
//! devices whose evidence is really absent.
//!
//! The weights and vocabularies are data: `evidence.toml` (interface types,
//! probes, services, computed features), `vocabulary.toml` (words) and
//! `vendors.toml` (enterprise numbers, brands, what a vendor mostly makes),
//! all compiled in, and an operator's `[evidence]` table laid over them
//! (docs/classification.md).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::table::Table;
pub use super::table::Votes;
use super::vendor::{Enterprise, Vendors};
use crate::message::Kind;
use crate::snmp::Oid;

const EMBEDDED: [(&str, &str); 3] = [
    ("embedded evidence.toml", include_str!("evidence.toml")),
    ("embedded vocabulary.toml", include_str!("vocabulary.toml")),
    ("embedded vendors.toml", include_str!("vendors.toml")),
];

/// Interface types that are Ethernet-like ports (ethernetCsmacd,
/// fastEther, fastEtherFX, gigabitEthernet).
const ETHERNET_TYPES: [u64; 4] = [6, 62, 69, 117];
/// DSL line interface types: adsl, radsl, sdsl, vdsl, shdsl, adsl2,
/// adsl2plus, vdsl2, gfast.
const DSL_LINE_TYPES: [u64; 9] = [94, 95, 96, 97, 169, 230, 238, 251, 279];
/// PON interface types: gpon, pon155, pon622.
const PON_TYPES: [u64; 3] = [250, 207, 208];
/// docsCableUpstream.
const DOCSIS_UPSTREAM: u64 = 129;
/// ipForwarding.0 (IP-MIB): 1 = the device routes, 2 = it is a host.
pub const IP_FORWARDING_OID: &str = "1.3.6.1.2.1.4.1.0";
/// A sysDescr or ENTITY text is looked at up to this many words.
const MAX_WORDS: usize = 400;
/// The score the best kind needs when no `[settings]` says otherwise.
const DEFAULT_MIN_SCORE: i32 = 3;
/// Equal scores go to the kind a LAN holds more of: the general network
/// kinds first, the specialised ones after.
const TIE_ORDER: [Kind; 15] = [
    Kind::Router,
    Kind::Switch,
    Kind::Ap,
    Kind::Firewall,
    Kind::DslGateway,
    Kind::Modem,
    Kind::Ont,
    Kind::Printer,
    Kind::Ups,
    Kind::Pdu,
    Kind::Pbx,
    Kind::Radio,
    Kind::Nas,
    Kind::Camera,
    Kind::Phone,
];
/// Votes are clamped so no single data entry can swamp the rest.
const MAX_WEIGHT: i32 = 20;

/// The facts the weighing looks at, already cleaned by the caller.
#[derive(Debug)]
pub struct Facts<'a> {
    pub enterprise: Option<u64>,
    pub sys_descr: Option<&'a str>,
    pub sys_services: Option<u64>,
    pub subtrees: &'a BTreeSet<String>,
    /// Chassis descr, name and model.
    pub entity_texts: Vec<&'a str>,
    pub if_types: &'a [u64],
    pub if_names: &'a [String],
    /// Ethernet-like interfaces with a connector, when the device says.
    pub physical_ethernet: Option<usize>,
    pub ip_addresses: usize,
    pub entity_ports: usize,
    /// ipForwarding.0 when the device answered it.
    pub ip_forwarding: Option<u64>,
    /// The vendor as resolved (brand), whose "mostly makes" votes count.
    pub vendor: Option<&'a str>,
}

static NO_SUBTREES: BTreeSet<String> = BTreeSet::new();

impl Default for Facts<'_> {
    fn default() -> Self {
        Facts {
            enterprise: None,
            sys_descr: None,
            sys_services: None,
            subtrees: &NO_SUBTREES,
            entity_texts: Vec::new(),
            if_types: &[],
            if_names: &[],
            physical_ethernet: None,
            ip_addresses: 0,
            entity_ports: 0,
            ip_forwarding: None,
            vendor: None,
        }
    }
}

/// The outcome of weighing.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighed {
    /// The best-supported kind, or `None` when the evidence is too thin.
    pub kind: Option<Kind>,
    /// 0–100: how far the winner stands above the rest.
    pub confidence: u8,
    /// Every kind with a score, best first.
    pub scores: Vec<(Kind, i32)>,
    /// One line per signal that voted.
    pub reasons: Vec<String>,
}

/// A probe subtree of the evidence layer: asked about along with the rules'.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub name: String,
    pub root: String,
}

/// The compiled evidence model.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The score the best kind needs; [`DEFAULT_MIN_SCORE`] unless set.
    min_score: Option<i32>,
    if_types: Table<u64, Votes>,
    probes: Vec<(Probe, Votes)>,
    /// Single-word vocabulary.
    words: Table<Box<str>, Votes>,
    /// Multi-word vocabulary: the words joined by single spaces.
    phrases: Table<Box<str>, Votes>,
    services: Table<u8, Votes>,
    features: Table<Box<str>, Votes>,
    pub vendors: Vendors,
}

/// The data files' shape; an operator's `[evidence]` table has the same.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(default)]
    settings: Option<RawSettings>,
    #[serde(default)]
    if_type: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    probe: BTreeMap<String, RawProbe>,
    #[serde(default)]
    vocabulary: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    services: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    feature: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    enterprise: BTreeMap<String, RawEnterprise>,
    #[serde(default)]
    brand: BTreeMap<String, String>,
    #[serde(default)]
    not_vendor: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    min_score: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    root: String,
    #[serde(default)]
    votes: BTreeMap<String, i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnterprise {
    vendor: Option<String>,
    #[serde(default)]
    makes: BTreeMap<String, i64>,
    #[serde(default)]
    generic: bool,
    #[serde(default)]
    oem: bool,
    /// Documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// The computed features an operator can weigh (docs/classification.md).
pub const FEATURES: [&str; 16] = [
    "no-interfaces",
    "ethernet-ports-1",
    "ethernet-ports-4",
    "ethernet-ports-8",
    "ethernet-ports-24",
    "ip-addresses-3",
    "ip-forwarding",
    "no-ip-forwarding",
    "entity-ports-8",
    "services-host-only",
    "wireless-interface-names",
    "dsl-lines-8",
    "pon-ports-4",
    "docsis-upstreams-12",
    "stated-ports-8",
    "stated-ports-24",
];

/// Interface names of virtual interfaces: VLANs and sub-interfaces,
/// bridges, bonds, tunnels, loopbacks.
fn is_virtual_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    name.contains('.')
        || [
            "vlan", "br", "bond", "veth", "tap", "tun", "vap", "gre", "ipsec", "ppp", "lo",
            "dummy", "imq", "ifb", "sit", "ip6tnl", "team", "virbr", "docker",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Interface names Wi-Fi drivers give radios and virtual APs (ath0, wlan1,
/// wifi0, wl0.1, ra0, rai0, wds0, radio0), whatever ifType the device
/// reports for them (often ethernetCsmacd).
fn is_radio_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    [
        "wlan", "wifi", "ath", "wl", "rai", "ra", "wds", "radio", "apcli",
    ]
    .iter()
    .any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    })
}

impl Model {
    /// The model compiled into the binary. The files are checked by a unit
    /// test; were one broken, the rest would still be used.
    pub fn embedded() -> Model {
        let mut model = Model::default();
        for (origin, text) in EMBEDDED {
            if let Err(e) = model.merge_text(&crate::embedded::text(text)) {
                tracing::error!(origin, error = %e, "embedded evidence data is invalid");
            }
        }
        model
    }

    /// Merges a data file a few statements at a time. Parsed whole, the TOML
    /// parser's document of a 50 KB file peaks at about 2 MiB of heap (more
    /// than the whole agent may grow); in pieces it stays small.
    pub fn merge_text(&mut self, text: &str) -> Result<(), String> {
        for (line, piece) in pieces(text, STATEMENTS_PER_PIECE) {
            let raw: RawModel = toml::from_str(&piece)
                .map_err(|e| format!("near line {line}: {}", e.message().trim()))?;
            self.merge(raw)?;
        }
        Ok(())
    }

    /// Lays `raw` over the model: entries with the same key replace the
    /// model's, new ones are added; `not_vendor` grows.
    pub fn merge(&mut self, raw: RawModel) -> Result<(), String> {
        if let Some(min) = raw.settings.and_then(|s| s.min_score) {
            self.min_score = Some(clamp(min));
        }
        for (key, votes) in raw.if_type {
            let number = key
                .parse::<u64>()
                .map_err(|_| format!("[if_type] \"{key}\": not an ifType number"))?;
            self.if_types
                .insert(number, votes_of(&format!("[if_type] {key}"), votes)?);
        }
        for (name, probe) in raw.probe {
            let root = probe_root(&probe.root).map_err(|m| format!("[probe.{name}] root: {m}"))?;
            let votes = votes_of(&format!("[probe.{name}]"), probe.votes)?;
            self.probes.retain(|(p, _)| p.name != name);
            self.probes.push((Probe { name, root }, votes));
            self.probes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        }
        for (key, votes) in raw.vocabulary {
            let words: Vec<String> = tokens(&key).collect();
            let votes = votes_of(&format!("[vocabulary] \"{key}\""), votes)?;
            match words.as_slice() {
                [] => return Err(format!("[vocabulary] \"{key}\": no word in it")),
                [word] => self.words.insert(word.as_str().into(), votes),
                _ => self.phrases.insert(words.join(" ").into(), votes),
            }
        }
        for (key, votes) in raw.services {
            let layer = key
                .parse::<u8>()
                .ok()
                .filter(|l| (1..=7).contains(l))
                .ok_or_else(|| format!("[services] \"{key}\": a layer is 1 to 7"))?;
            self.services
                .insert(layer, votes_of(&format!("[services] {key}"), votes)?);
        }
        for (key, votes) in raw.feature {
            if !FEATURES.contains(&key.as_str()) {
                return Err(format!(
                    "[feature] \"{key}\": unknown feature (known: {})",
                    FEATURES.join(", ")
                ));
            }
            let votes = votes_of(&format!("[feature] {key}"), votes)?;
            self.features.insert(key.into(), votes);
        }
        for (key, raw) in raw.enterprise {
            let number = key
                .parse::<u64>()
                .map_err(|_| format!("[enterprise] \"{key}\": not an enterprise number"))?;
            let makes = votes_of(&format!("[enterprise] {key} makes"), raw.makes)?;
            self.vendors.enterprises.insert(
                number,
                Enterprise {
                    vendor: raw.vendor.map(String::into_boxed_str),
                    makes,
                    generic: raw.generic,
                    oem: raw.oem,
                },
            );
        }
        for (key, brand) in raw.brand {
            self.vendors.add_brand(&key, brand);
        }
        for name in raw.not_vendor {
            self.vendors.add_not_vendor(&name);
        }
        self.vendors.reindex();
        self.shrink();
        Ok(())
    }

    /// Gives back the tables' spare capacity once they are built.
    fn shrink(&mut self) {
        self.if_types.shrink();
        self.words.shrink();
        self.phrases.shrink();
        self.services.shrink();
        self.features.shrink();
        self.probes.shrink_to_fit();
    }

    /// The evidence layer's probe subtrees.
    pub fn probes(&self) -> impl Iterator<Item = &Probe> {
        self.probes.iter().map(|(p, _)| p)
    }

    /// Weighs the facts. Deterministic: ties go to the kind listed first in
    /// [`TIE_ORDER`] (router, switch, ap, firewall, ...).
    pub fn weigh(&self, facts: &Facts<'_>) -> Weighed {
        let mut tally = Tally::default();
        self.weigh_interfaces(facts, &mut tally);
        for (probe, votes) in &self.probes {
            if facts.subtrees.contains(&probe.name) {
                tally.add(&format!("{} MIB answers", probe.name), *votes);
            }
        }
        self.weigh_services(facts, &mut tally);
        self.weigh_words(facts, &mut tally);
        self.weigh_stated_ports(facts, &mut tally);
        if let Some(votes) = facts
            .vendor
            .and_then(|v| self.vendors.makes(facts.enterprise, v))
        {
            tally.add(
                &format!("what {} mostly makes", facts.vendor.unwrap_or("?")),
                *votes,
            );
        }
        tally.finish(self.min_score.unwrap_or(DEFAULT_MIN_SCORE))
    }

    /// True when the model has nothing in it (an operator file without an
    /// `[evidence]` table).
    pub fn is_empty(&self) -> bool {
        self.min_score.is_none()
            && self.if_types.is_empty()
            && self.probes.is_empty()
            && self.words.is_empty()
            && self.phrases.is_empty()
            && self.services.is_empty()
            && self.features.is_empty()
            && self.vendors.is_empty()
    }

    /// Lays an operator's model over this one (same key: replaced).
    pub fn overlay(&mut self, other: Model) {
        if other.min_score.is_some() {
            self.min_score = other.min_score;
        }
        self.if_types.extend(other.if_types);
        for (probe, votes) in other.probes {
            self.probes.retain(|(p, _)| p.name != probe.name);
            self.probes.push((probe, votes));
        }
        self.words.extend(other.words);
        self.phrases.extend(other.phrases);
        self.services.extend(other.services);
        self.features.extend(other.features);
        self.vendors.overlay(other.vendors);
    }

    fn feature(&self, name: &str, tally: &mut Tally) {
        if let Some(votes) = self.features.get(name) {
            tally.add(name, *votes);
        }
    }

    fn weigh_interfaces(&self, facts: &Facts<'_>, tally: &mut Tally) {
        let distinct: BTreeSet<u64> = facts.if_types.iter().copied().collect();
        for if_type in &distinct {
            if let Some(votes) = self.if_types.get(if_type) {
                tally.add(&format!("ifType {if_type}"), *votes);
            }
        }
        // Without ifConnectorPresent, an Ethernet-typed interface counts as
        // a port unless its name says it is virtual (a VLAN, a bridge, a
        // Wi-Fi radio or virtual AP that reports itself as Ethernet).
        let ethernet = facts.physical_ethernet.unwrap_or_else(|| {
            facts
                .if_types
                .iter()
                .enumerate()
                .filter(|(_, t)| ETHERNET_TYPES.contains(t))
                .filter(|(i, _)| {
                    facts
                        .if_names
                        .get(*i)
                        .is_none_or(|n| !is_radio_name(n) && !is_virtual_name(n))
                })
                .count()
        });
        let radios = facts.if_names.iter().filter(|n| is_radio_name(n)).count();
        if radios > 0 {
            self.feature("wireless-interface-names", tally);
        }
        if facts.if_types.is_empty() {
            self.feature("no-interfaces", tally);
        }
        for (threshold, name) in [
            (1, "ethernet-ports-1"),
            (4, "ethernet-ports-4"),
            (8, "ethernet-ports-8"),
            (24, "ethernet-ports-24"),
        ] {
            let fires = if threshold == 1 {
                ethernet == 1
            } else {
                ethernet >= threshold
            };
            if fires {
                self.feature(name, tally);
            }
        }
        if facts.ip_addresses >= 3 {
            self.feature("ip-addresses-3", tally);
        }
        match facts.ip_forwarding {
            Some(1) => self.feature("ip-forwarding", tally),
            Some(2) => self.feature("no-ip-forwarding", tally),
            _ => {}
        }
        if facts.entity_ports >= 8 {
            self.feature("entity-ports-8", tally);
        }
        // A subscriber's box has one or two lines; the access node at the
        // other end (a DSLAM, an OLT, a CMTS) has many, of the same types.
        let count = |types: &[u64]| facts.if_types.iter().filter(|t| types.contains(t)).count();
        if count(&DSL_LINE_TYPES) >= 8 {
            self.feature("dsl-lines-8", tally);
        }
        if count(&PON_TYPES) >= 4 {
            self.feature("pon-ports-4", tally);
        }
        if count(&[DOCSIS_UPSTREAM]) >= 12 {
            self.feature("docsis-upstreams-12", tally);
        }
    }

    fn weigh_services(&self, facts: &Facts<'_>, tally: &mut Tally) {
        let Some(services) = facts.sys_services.filter(|s| *s > 0 && *s < 128) else {
            return;
        };
        for layer in 1..=7u8 {
            if services & (1 << (layer - 1)) != 0 {
                if let Some(votes) = self.services.get(&layer) {
                    tally.add(&format!("sysServices layer {layer}"), *votes);
                }
            }
        }
        // Only transport and application layers: a host, not a network box.
        if services & 0b0000_0111 == 0 {
            self.feature("services-host-only", tally);
        }
    }

    /// The port count a device states of itself ("24-Port Gigabit Smart
    /// Switch", "48x1G 2x10G"): a switch says it where its interface table
    /// is missing or thin.
    fn weigh_stated_ports(&self, facts: &Facts<'_>, tally: &mut Tally) {
        let stated = facts
            .sys_descr
            .into_iter()
            .chain(facts.entity_texts.iter().copied())
            .map(stated_ports)
            .max()
            .unwrap_or(0);
        if stated >= 8 {
            self.feature("stated-ports-8", tally);
        }
        if stated >= 24 {
            self.feature("stated-ports-24", tally);
        }
    }

    fn weigh_words(&self, facts: &Facts<'_>, tally: &mut Tally) {
        let words: Vec<String> = facts
            .sys_descr
            .into_iter()
            .chain(facts.entity_texts.iter().copied())
            .flat_map(|text| tokens(text).chain(std::iter::once(String::new())))
            .take(MAX_WORDS)
            .collect();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for word in &words {
            if let Some(votes) = self.words.get(word.as_str()) {
                if seen.insert(word) {
                    tally.add(&format!("word \"{word}\""), *votes);
                }
            }
        }
        for (phrase, votes) in self.phrases.iter() {
            let parts: Vec<&str> = phrase.split(' ').collect();
            if words
                .windows(parts.len())
                .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
            {
                tally.add(&format!("words \"{phrase}\""), *votes);
            }
        }
    }
}

/// How many statements one parsed piece of a data file holds.
const STATEMENTS_PER_PIECE: usize = 40;

/// A TOML file of headers (`[table]`) and `key = value` statements, cut
/// into pieces that are valid documents on their own: each piece repeats
/// the header it is under, and a statement that spans lines (an array, an
/// inline table) stays whole. Yields (first line number, piece).
fn pieces(text: &str, per_piece: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut header = String::new();
    let mut piece = String::new();
    let (mut statements, mut depth, mut first_line) = (0usize, 0i32, 1usize);
    for (number, line) in text.lines().enumerate() {
        let (code, balance) = scan(line);
        let trimmed = code.trim();
        if depth == 0 && trimmed.starts_with('[') {
            if statements > 0 {
                out.push((first_line, std::mem::take(&mut piece)));
            }
            piece.clear();
            header = format!("{trimmed}\n");
            statements = 0;
            continue;
        }
        if depth == 0 && trimmed.is_empty() {
            continue;
        }
        if piece.is_empty() {
            piece.push_str(&header);
            first_line = number + 1;
        }
        piece.push_str(line);
        piece.push('\n');
        depth += balance;
        if depth <= 0 {
            depth = 0;
            statements += 1;
            if statements >= per_piece {
                out.push((first_line, std::mem::take(&mut piece)));
                statements = 0;
            }
        }
    }
    if statements > 0 || depth > 0 {
        out.push((first_line, piece));
    }
    out
}

/// The line without its `#` comment, and its opening minus closing
/// brackets and braces; both outside strings (`"..."` with escapes, `'...'`).
fn scan(line: &str) -> (&str, i32) {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut balance = 0;
    for (at, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return (&line[..at], balance),
            None if c == '[' || c == '{' => balance += 1,
            None if c == ']' || c == '}' => balance -= 1,
            None => {}
        }
    }
    (line, balance)
}

/// Lower-case words: letters, digits, '-' and '+' hold a word together; a
/// hyphenated word also yields its parts ("smart-ups" → smart-ups, smart,
/// ups), and a model code of letters then digits also yields its letters
/// ("AP1321" → ap1321, ap; "ISR4321/K9" → isr4321, isr), the series a
/// maker names after the kind. Pure numbers are not words.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '+'))
        .map(|w| w.trim_matches(|c| c == '-' || c == '+'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| {
            let whole = w.to_lowercase();
            let parts: Vec<String> = if w.contains('-') {
                w.split('-')
                    .filter(|p| !p.is_empty())
                    .map(str::to_lowercase)
                    .collect()
            } else {
                Vec::new()
            };
            let series: Vec<String> = std::iter::once(whole.as_str())
                .chain(parts.iter().map(String::as_str))
                .filter_map(model_series)
                .collect();
            std::iter::once(whole).chain(parts).chain(series)
        })
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
}

/// The letters of a model code that starts with two to five letters and
/// goes on with a digit ("ap1321" → "ap"); `None` for other words.
fn model_series(word: &str) -> Option<String> {
    let letters = word.chars().take_while(char::is_ascii_alphabetic).count();
    let next = word[letters..].chars().next()?;
    ((2..=5).contains(&letters) && next.is_ascii_digit()).then(|| word[..letters].to_string())
}

/// The ports a text states: the sum of "N-port"/"N port(s)" and of
/// "NxSPEEDG" groups ("48x1G 2x10G" is 50), each N at most 4 digits.
/// Only the first [`MAX_WORDS`] words are looked at.
pub fn stated_ports(text: &str) -> usize {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(str::to_ascii_lowercase)
        .collect();
    let leading_number = |w: &str| -> Option<(usize, usize)> {
        let digits = w.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 4 {
            return None;
        }
        Some((w[..digits].parse().ok()?, digits))
    };
    let mut total = 0;
    for (i, word) in words.iter().enumerate() {
        let Some((n, digits)) = leading_number(word) else {
            continue;
        };
        let rest = &word[digits..];
        let port_follows = rest.trim_start_matches('-').starts_with("port")
            || (rest.is_empty() && words.get(i + 1).is_some_and(|w| w.starts_with("port")));
        let speed_group = rest.strip_prefix('x').is_some_and(|speed| {
            let speed = speed.trim_end_matches(['e', 'b', 's']);
            speed.len() >= 2
                && speed.ends_with('g')
                && speed[..speed.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.')
        });
        if port_follows || speed_group {
            total += n;
        }
    }
    total
}

/// A probe root as dotted numeric, at least two arcs.
fn probe_root(text: &str) -> Result<String, String> {
    let oid: Oid = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a dotted numeric OID"))?;
    let dotted = oid.to_string();
    if dotted.split('.').count() < 2 {
        return Err(format!("`{text}` needs at least two arcs"));
    }
    Ok(dotted)
}

fn clamp(weight: i64) -> i32 {
    weight.clamp(i64::from(-MAX_WEIGHT), i64::from(MAX_WEIGHT)) as i32
}

fn votes_of(location: &str, raw: BTreeMap<String, i64>) -> Result<Votes, String> {
    let pairs = raw
        .into_iter()
        .map(|(kind, weight)| {
            let kind = kind
                .parse::<Kind>()
                .map_err(|e| format!("{location}: {e}"))?;
            Ok((kind, clamp(weight)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Votes::from_pairs(pairs).map_err(|e| format!("{location}: {e}"))
}

#[derive(Default)]
struct Tally {
    scores: BTreeMap<Kind, i32>,
    reasons: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &str, votes: Votes) {
        if votes.is_empty() {
            return;
        }
        let mut line = format!("{what}:");
        for (kind, weight) in votes.iter() {
            *self.scores.entry(kind).or_default() += weight;
            line.push_str(&format!(" {kind} {weight:+}"));
        }
        self.reasons.push(line);
    }

    fn finish(self, min_score: i32) -> Weighed {
        let mut scores: Vec<(Kind, i32)> = TIE_ORDER
            .into_iter()
            .filter_map(|k| self.scores.get(&k).map(|s| (k, *s)))
            .collect();
        // Stable: equal scores keep TIE_ORDER.
        scores.sort_by_key(|s| std::cmp::Reverse(s.1));
        let top = scores.first().map_or(0, |s| s.1);
        let second = scores.get(1).map_or(0, |s| s.1.max(0));
        let kind = scores.first().filter(|_| top >= min_score).map(|s| s.0);
        let confidence = if kind.is_some() {
            let top = f64::from(top);
            (100.0 * (top - f64::from(second)) / (top + 4.0)).clamp(1.0, 99.0) as u8
        } else {
            0
        };
        Weighed {
            kind,
            confidence,
            scores,
            reasons: self.reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(subtrees: &'a BTreeSet<String>, if_types: &'a [u64]) -> Facts<'a> {
        Facts {
            subtrees,
            if_types,
            ..Facts::default()
        }
    }

    #[test]
    fn the_embedded_data_parses_whole_and_in_pieces_alike() {
        for (origin, text) in EMBEDDED {
            let raw: RawModel = toml::from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
            let mut whole = Model::default();
            whole.merge(raw).unwrap_or_else(|e| panic!("{origin}: {e}"));
            let mut pieces = Model::default();
            pieces
                .merge_text(text)
                .unwrap_or_else(|e| panic!("{origin}: {e}"));
            assert_eq!(format!("{whole:?}"), format!("{pieces:?}"), "{origin}");
        }
    }

    #[test]
    fn pieces_keep_headers_and_multi_line_statements() {
        let text =
            "top = [\n  \"a\", # c\n  \"b\",\n]\n[t]\nx = 1 # [\ny = { z = \"]\" }\n[u.v]\nw = 2\n";
        let got = pieces(text, 1);
        let bodies: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(
            bodies,
            [
                "top = [\n  \"a\", # c\n  \"b\",\n]\n",
                "[t]\nx = 1 # [\n",
                "[t]\ny = { z = \"]\" }\n",
                "[u.v]\nw = 2\n"
            ]
        );
        for (_, piece) in &got {
            toml::from_str::<toml::Table>(piece).unwrap_or_else(|e| panic!("{piece}: {e}"));
        }
    }

    #[test]
    fn words_split_on_punctuation_and_hyphens() {
        let words: Vec<String> = tokens("APC Smart-UPS 1500, VDSL2+ (v1.2) 2024").collect();
        assert_eq!(
            words,
            ["apc", "smart-ups", "smart", "ups", "vdsl2", "vdsl", "v1"]
        );
    }

    #[test]
    fn model_codes_yield_their_series() {
        let words: Vec<String> = tokens("OAW-AP1321 ISR4321/K9 v1 11ac cisco1941").collect();
        assert_eq!(
            words,
            [
                "oaw-ap1321",
                "oaw",
                "ap1321",
                "ap",
                "isr4321",
                "isr",
                "k9",
                "v1",
                "11ac",
                "cisco1941",
                "cisco"
            ]
        );
    }

    #[test]
    fn stated_port_counts_are_summed() {
        assert_eq!(stated_ports("24-Port Gigabit Smart Switch with PoE"), 24);
        assert_eq!(stated_ports("LB4M 48x1G 2x10G, *, VxWorks 6.6"), 50);
        assert_eq!(stated_ports("Switch 16 Ports, 4x10GbE"), 20);
        assert_eq!(stated_ports("Linux 4.14 #1 SMP 2x2 MIMO 5x speed"), 0);
        assert_eq!(
            stated_ports("Firmware 12345-port"),
            0,
            "five digits are not a count"
        );
    }

    #[test]
    fn docsis_interfaces_make_a_modem_and_nothing_makes_nothing() {
        let model = Model::embedded();
        let none = BTreeSet::new();
        let weighed = model.weigh(&facts(&none, &[127, 128, 129, 6]));
        assert_eq!(weighed.kind, Some(Kind::Modem), "{weighed:?}");
        assert!(weighed.confidence > 50);
        let weighed = model.weigh(&facts(&none, &[]));
        assert_eq!(weighed.kind, None, "{weighed:?}");
    }

    #[test]
    fn radio_and_virtual_interfaces_are_not_switch_ports() {
        let model = Model::embedded();
        let none = BTreeSet::new();
        let names: Vec<String> = (0..4)
            .map(|i| format!("ath{i}"))
            .chain((0..8).map(|i| format!("br-lan.{i}")))
            .chain(["eth0".to_string()])
            .collect();
        let types = vec![6; names.len()];
        let weighed = model.weigh(&Facts {
            if_names: &names,
            ..facts(&none, &types)
        });
        assert_eq!(weighed.kind, Some(Kind::Ap), "{weighed:?}");
        assert!(
            !weighed
                .reasons
                .iter()
                .any(|r| r.starts_with("ethernet-ports-8")),
            "{weighed:?}"
        );
        // With ifConnectorPresent, the device's own count is believed.
        let weighed = model.weigh(&Facts {
            physical_ethernet: Some(26),
            ..facts(&none, &[6; 2])
        });
        assert!(
            weighed
                .reasons
                .iter()
                .any(|r| r.starts_with("ethernet-ports-24")),
            "{weighed:?}"
        );
        assert!(is_radio_name("wlan1") && is_radio_name("wl0.1") && !is_radio_name("wlanx"));
        assert!(
            is_virtual_name("vlan10") && is_virtual_name("eth0.5") && !is_virtual_name("ge-0/0/1")
        );
    }

    #[test]
    fn many_subscriber_lines_make_an_access_node_not_a_cpe() {
        let model = Model::embedded();
        let none = BTreeSet::new();
        let cpe: Vec<u64> = vec![251, 6, 6];
        assert_eq!(
            model.weigh(&facts(&none, &cpe)).kind,
            Some(Kind::DslGateway)
        );
        let dslam: Vec<u64> = std::iter::repeat_n(251, 24).chain([6, 6]).collect();
        let weighed = model.weigh(&facts(&none, &dslam));
        assert_eq!(weighed.kind, Some(Kind::Switch), "{weighed:?}");
        let cmts: Vec<u64> = std::iter::repeat_n(129, 16).chain([127, 128, 6]).collect();
        let weighed = model.weigh(&facts(&none, &cmts));
        assert_eq!(weighed.kind, Some(Kind::Router), "{weighed:?}");
    }

    #[test]
    fn many_ethernet_ports_and_a_bridge_make_a_switch() {
        let model = Model::embedded();
        let bridge: BTreeSet<String> = ["bridge".to_string()].into();
        let weighed = model.weigh(&facts(&bridge, &[6; 26]));
        assert_eq!(weighed.kind, Some(Kind::Switch), "{weighed:?}");
    }

    #[test]
    fn operator_data_overrides_and_is_checked() {
        let mut model = Model::embedded();
        let raw: RawModel = toml::from_str(
            "[vocabulary]\n\"frobnicator\" = { camera = 9 }\n[if_type]\n\"127\" = { router = 20 }",
        )
        .expect("parses");
        model.merge(raw).expect("merges");
        let none = BTreeSet::new();
        let weighed = model.weigh(&Facts {
            sys_descr: Some("Acme Frobnicator 3000"),
            ..facts(&none, &[])
        });
        assert_eq!(weighed.kind, Some(Kind::Camera));
        assert_eq!(model.weigh(&facts(&none, &[127])).kind, Some(Kind::Router));
        for (bad, why) in [
            ("[vocabulary]\n\"x\" = { toaster = 1 }", "unknown kind"),
            (
                "[feature]\n\"many-toasters\" = { switch = 1 }",
                "unknown feature",
            ),
            ("[services]\n\"9\" = { switch = 1 }", "layer"),
            ("[probe.x]\nroot = \"1.3.x\"", "root"),
        ] {
            let raw: RawModel = toml::from_str(bad).expect("parses as TOML");
            let err = Model::default().merge(raw).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
