//! Classification: what kind of device answered, who made it, and which model.
//!
//! The knowledge is data, not code: an ordered list of rules
//! (src/discover/rules.toml, compiled in, plus an optional operator file) and a
//! list of probe subtrees.
//! The collector gathers [`Evidence`] (system group, which probe subtrees
//! answer, ENTITY-MIB chassis facts, and the vendor scalars the rules ask for
//! via [`Rules::extra_oids`]); [`Rules::classify`] tries the rules in order and
//! the first whose conditions all hold decides the [`Kind`]. The format is
//! documented in docs/classification.md.
//!
//! Nothing here trusts the device: every value may be missing, empty, padded
//! with NULs or the literal `<private>` of sanitised recordings, and all of
//! those count as absent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;

use super::evidence::{Facts, Model, RawModel, IP_FORWARDING_OID};
use super::vendor::{is_unix, longest_digit_run, VendorFacts};
use crate::config::{Config, ConfigError};
use crate::message::{kind_names, Classification, EntityFacts, Kind};

/// The rules compiled into the binary.
const EMBEDDED_RULES: &str = include_str!("rules.toml");
const EMBEDDED_ORIGIN: &str = "embedded rules.toml";
/// sysObjectID prefix of private enterprise numbers.
const ENTERPRISES: &str = "1.3.6.1.4.1.";
/// How sanitised recordings (and some agents) spell a withheld value.
const PRIVATE: &str = "<private>";
/// The id reported when neither a rule nor the evidence decided.
pub const FALLBACK_RULE: &str = "fallback";
/// The id reported when the weighed evidence decided the kind.
pub const EVIDENCE_RULE: &str = "evidence";
/// The `kind` of a rule that names vendor, model and firmware but leaves the
/// kind to the weighed evidence.
const BY_EVIDENCE: &str = "by-evidence";

/// What the collector learned about a device that classification can use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Dotted numeric, no leading dot, e.g. "1.3.6.1.4.1.14988.1".
    pub sys_object_id: Option<String>,
    pub sys_descr: Option<String>,
    pub sys_name: Option<String>,
    pub sys_services: Option<u64>,
    /// Names of the probe subtrees (from the rules' `[probes]` table) in which
    /// the device has at least one object.
    pub subtrees: BTreeSet<String>,
    /// ENTITY-MIB facts of the first chassis (entPhysicalClass 3) or else the
    /// first entity, when present.
    pub entity: Option<EntityFacts>,
    /// Values of the extra scalar OIDs the rules asked for (see
    /// [`Rules::extra_oids`]), by dotted OID.
    pub extra: BTreeMap<String, String>,
    /// ifType of every interface (IANAifType numbers; 0 where the device
    /// gives none), in the order of `if_names`.
    pub if_types: Vec<u64>,
    /// Interface MACs, `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    /// How many IPv4 addresses the device has, loopback excluded.
    pub ip_addresses: usize,
    /// How many ENTITY-MIB entities are ports.
    pub entity_ports: usize,
    /// Interface names (ifName, else ifDescr; empty where neither), in the
    /// order of `if_types`.
    pub if_names: Vec<String>,
    /// Ethernet-like interfaces with a connector (ifConnectorPresent =
    /// true), when the device says for any interface: physical ports, not
    /// VLANs, bridges and virtual access points.
    pub physical_ethernet: Option<usize>,
}

/// A rules file that cannot be used: where it came from, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {location}: {message}")]
pub struct RulesError {
    /// The file name (or "embedded rules.toml").
    pub origin: String,
    /// e.g. `rule #3 "arris-docsis-modem" (line 52)`, `[probes] "docsis"`, `file`.
    pub location: String,
    pub message: String,
}

/// A compiled, ordered rule set and its probe list.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    probes: Vec<(String, String)>,
    /// Probe names an operator file removes (`name = ""`).
    removed_probes: Vec<String>,
    /// Shared: every config without operator rules uses the embedded list
    /// as it is (each rule holds compiled regexes: the list is ~400 KiB).
    rules: Arc<Vec<Rule>>,
    /// The weighed evidence, for devices no rule decides. Shared: the
    /// embedded model is built once per process, and copied only when an
    /// operator file changes it.
    evidence: Arc<Model>,
    /// Keep every weighed signal's votes in `Classification::evidence`
    /// (`discover --explain`); otherwise only the scores and the verdict,
    /// which is what the inventory reports carry.
    explain: bool,
}

impl Rules {
    /// The rules compiled into the binary (src/discover/rules.toml). Never
    /// panics: if they were broken (a unit test makes sure they are not) the
    /// result is empty and every device classifies as `other`.
    pub fn embedded() -> Rules {
        embedded_shared()
    }

    /// Parses a rules file. Errors name the origin (file name), the rule (index
    /// and id) or probe, and what is wrong: TOML syntax, unknown field, unknown
    /// kind, bad regex, bad OID, unknown probe name, duplicate id.
    ///
    /// Probe names may refer to this file's `[probes]` or the embedded ones.
    pub fn from_toml(text: &str, origin: &str) -> Result<Rules, RulesError> {
        let embedded = embedded_shared().probes();
        let names: Vec<&str> = embedded.iter().map(|(name, _)| name.as_str()).collect();
        parse_rules(text, origin, &names)
    }

    /// Operator rules first: a rule with the same id as an embedded one
    /// replaces it in place (keeping its position; `disabled = true` switches
    /// it off); rules with new ids are tried before all of `self`'s, in the
    /// operator file's order. Probes merge by name likewise; an operator probe
    /// with an empty root removes that probe.
    pub fn with_overrides(self, operator: Rules) -> Rules {
        let mut probes = self.probes;
        for (name, root) in operator.probes {
            match probes.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = root,
                None => probes.push((name, root)),
            }
        }
        probes.retain(|(name, _)| !operator.removed_probes.contains(name));

        let rules = if operator.rules.is_empty() {
            self.rules
        } else {
            let mut base = Arc::unwrap_or_clone(self.rules);
            let operator_rules = Arc::unwrap_or_clone(operator.rules);
            let mut rules = Vec::with_capacity(base.len() + operator_rules.len());
            for rule in operator_rules {
                match base.iter_mut().find(|r| r.id == rule.id) {
                    Some(slot) => *slot = rule,
                    None => rules.push(rule),
                }
            }
            rules.append(&mut base);
            Arc::new(rules)
        };
        let evidence = if operator.evidence.is_empty() {
            self.evidence
        } else {
            let mut merged = Model::clone(&self.evidence);
            merged.overlay(Model::clone(&operator.evidence));
            Arc::new(merged)
        };
        let known: BTreeSet<&str> = probes
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(evidence.probes().map(|p| p.name.as_str()))
            .collect();
        for rule in rules.iter().filter(|r| !r.disabled) {
            for name in rule.probe_names().filter(|n| !known.contains(n)) {
                tracing::warn!(rule = %rule.id, probe = %name, "rule refers to a probe that is not in the merged probe list; it cannot match");
            }
        }
        let mut removed_probes = self.removed_probes;
        removed_probes.extend(operator.removed_probes);
        Rules {
            probes,
            removed_probes,
            rules,
            evidence,
            explain: self.explain,
        }
    }

    /// The same rules, keeping every weighed signal's votes in the
    /// classification's evidence (for `discover --explain`).
    pub fn explaining(mut self) -> Rules {
        self.explain = true;
        self
    }

    /// The probe subtrees to check on each device: (name, dotted root OID),
    /// e.g. ("docsis", "1.3.6.1.2.1.10.127"): the rules' and then the
    /// evidence layer's (a name both use is asked about once, at the rules'
    /// root). One GETNEXT varbind each; they fit in a single request.
    pub fn probes(&self) -> Vec<(String, String)> {
        let mut probes = self.probes.clone();
        for probe in self.evidence.probes() {
            if !probes.iter().any(|(name, _)| *name == probe.name)
                && !self.removed_probes.contains(&probe.name)
            {
                probes.push((probe.name.clone(), probe.root.clone()));
            }
        }
        probes
    }

    /// Extra scalar OIDs to GET before [`Rules::classify`], with their values
    /// going into [`Evidence::extra`]: the vendor-specific model / serial /
    /// firmware OIDs and `extra_match` OIDs of every enabled rule that could
    /// still match. Conditions on the system group are evaluated; conditions on
    /// subtrees and ENTITY-MIB are evaluated only when the evidence already has
    /// them (an empty subtree set or no entity counts as unknown), and
    /// `extra_match` conditions count as unknown. Dotted numeric OIDs,
    /// deduplicated, in rule order.
    pub fn extra_oids(&self, evidence: &Evidence) -> Vec<String> {
        let view = View::new(evidence);
        // ipForwarding tells a router from a host: the evidence weighs it.
        let mut out: Vec<String> = vec![IP_FORWARDING_OID.to_string()];
        for rule in self.rules.iter().filter(|r| !r.disabled) {
            if rule.matches(&view, Phase::BeforeExtra).is_none() {
                continue;
            }
            for oid in rule.extra_oids() {
                if !out.iter().any(|o| o == oid) {
                    out.push(oid.to_string());
                }
            }
        }
        out
    }

    /// Classifies a device: the first enabled rule whose conditions all hold
    /// decides the kind (unless its kind is `by-evidence`); vendor, model,
    /// firmware and serial come from that rule's extraction, else from the
    /// vendor tables and ENTITY-MIB. A kind no rule decides is weighed from
    /// the general evidence ([`Model::weigh`]); with too little evidence it
    /// is `other`, rule "fallback".
    pub fn classify(&self, evidence: &Evidence) -> Classification {
        let view = View::new(evidence);
        let matched = self
            .rules
            .iter()
            .filter(|r| !r.disabled)
            .find_map(|rule| Some((rule, rule.matches(&view, Phase::Final)?)));
        let (rule, mut reasons) = match matched {
            Some((rule, reasons)) => (Some(rule), reasons),
            None => (None, vec!["no rule matched".to_string()]),
        };
        if let Some(rule) = rule.filter(|r| r.kind.is_none()) {
            reasons.push(format!(
                "rule {} names the device; the evidence decides the kind",
                rule.id
            ));
        }
        let mut result = build(rule, reasons, &view, &self.evidence);
        match rule.and_then(|r| r.kind.map(|k| (r, k))) {
            Some((rule, kind)) => {
                result.kind = kind;
                result.rule = rule.id.clone();
                result.confidence = 100;
            }
            None => self.weigh(evidence, &view, &mut result),
        }
        tracing::debug!(rule = %result.rule, kind = %result.kind, "classified");
        result
    }

    /// Decides the kind of `result` from the weighed evidence.
    fn weigh(&self, evidence: &Evidence, view: &View<'_>, result: &mut Classification) {
        let entity_texts: Vec<&str> = [EntityField::Descr, EntityField::Name, EntityField::Model]
            .into_iter()
            .filter_map(|f| view.entity_field(f))
            .collect();
        let sys_descr = view.sys_descr.map(without_host_name);
        let weighed = self.evidence.weigh(&Facts {
            enterprise: view.enterprise,
            sys_descr: sys_descr.as_deref(),
            sys_services: view.sys_services,
            subtrees: view.subtrees,
            entity_texts,
            if_types: &evidence.if_types,
            if_names: &evidence.if_names,
            physical_ethernet: evidence.physical_ethernet,
            ip_addresses: evidence.ip_addresses,
            entity_ports: evidence.entity_ports,
            ip_forwarding: view.extra(IP_FORWARDING_OID).and_then(|v| v.parse().ok()),
            vendor: result.vendor.as_deref(),
        });
        if self.explain {
            result
                .evidence
                .extend(weighed.reasons.iter().map(|r| format!("evidence {r}")));
        }
        let scores: Vec<String> = weighed
            .scores
            .iter()
            .map(|(kind, score)| format!("{kind} {score}"))
            .collect();
        result.evidence.push(if scores.is_empty() {
            "scores: none".to_string()
        } else {
            format!("scores: {}", scores.join(", "))
        });
        match weighed.kind {
            Some(kind) => {
                result.kind = kind;
                result.rule = EVIDENCE_RULE.to_string();
                result.confidence = weighed.confidence;
                result.evidence.push(format!(
                    "kind {kind} from the weighed evidence (confidence {})",
                    weighed.confidence
                ));
            }
            None => {
                result.kind = Kind::Other;
                result.rule = FALLBACK_RULE.to_string();
                result.confidence = 0;
                result
                    .evidence
                    .push("too little evidence for a kind: other".to_string());
            }
        }
    }

    /// The ids of the rules, in the order they are tried (disabled ones included).
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// Number of rules (disabled ones included).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rules {
    /// The rules a config asks for: the operator's (if any) before the
    /// built-in ones. The operator's were checked when the config was
    /// loaded ([`crate::discover::load_config`]); should they still fail,
    /// the built-in rules are used and the error is logged.
    pub fn for_config(config: &Config) -> Rules {
        let embedded = Rules::embedded();
        let Some(text) = &config.operator_rules else {
            return embedded;
        };
        match Rules::from_toml(text, &operator_origin(config)) {
            Ok(operator) => embedded.with_overrides(operator),
            Err(e) => {
                tracing::error!(error = %e, "operator rules unusable; using the built-in rules");
                embedded
            }
        }
    }

    /// Checks the operator's rules a loaded config carries, as a config error
    /// about the rules file.
    pub fn check_operator(config: &Config) -> Result<(), ConfigError> {
        let Some(text) = &config.operator_rules else {
            return Ok(());
        };
        let origin = operator_origin(config);
        Rules::from_toml(text, &origin)
            .map(drop)
            .map_err(|e| ConfigError {
                file: origin,
                position: None,
                key: None,
                message: e.to_string(),
            })
    }
}

fn operator_origin(config: &Config) -> String {
    config
        .discovery
        .rules_file
        .as_ref()
        .map_or_else(|| "rules".to_string(), |p| p.display().to_string())
}

/// The embedded rules, shared while any copy is alive and built again
/// when none is. Between sweeps the daemon holds none: the rules and the
/// evidence model (~700 KiB of heap, regexes mostly) are not resident while
/// it only polls, and a sweep builds them in a few milliseconds.
fn embedded_shared() -> Rules {
    /// The probe lists (small) kept; the rule list and the model only
    /// while someone holds them.
    type Cache = (
        Vec<(String, String)>,
        Vec<String>,
        Weak<Vec<Rule>>,
        Weak<Model>,
    );
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((probes, removed_probes, list, model)) = cache.as_ref() {
        if let (Some(rules), Some(evidence)) = (list.upgrade(), model.upgrade()) {
            return Rules {
                probes: probes.clone(),
                removed_probes: removed_probes.clone(),
                rules,
                evidence,
                explain: false,
            };
        }
    }
    let text = crate::embedded::text(EMBEDDED_RULES);
    let mut rules = match parse_rules(&text, EMBEDDED_ORIGIN, &[]) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::error!(error = %e, "embedded classification rules are invalid; only the evidence classifies");
            Rules::default()
        }
    };
    rules.evidence = Arc::new(Model::embedded());
    *cache = Some((
        rules.probes.clone(),
        rules.removed_probes.clone(),
        Arc::downgrade(&rules.rules),
        Arc::downgrade(&rules.evidence),
    ));
    rules
}

// ---------------------------------------------------------------------------
// Compiled rules
// ---------------------------------------------------------------------------

/// A regex with its source text (for explanations).
#[derive(Debug, Clone)]
struct Pattern {
    src: String,
    re: Regex,
}

impl Pattern {
    fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntityField {
    Descr,
    Name,
    Model,
    Mfg,
    Serial,
    HardwareRev,
    FirmwareRev,
    SoftwareRev,
}

impl EntityField {
    const ALL: [(&'static str, EntityField); 8] = [
        ("descr", EntityField::Descr),
        ("name", EntityField::Name),
        ("model", EntityField::Model),
        ("mfg", EntityField::Mfg),
        ("serial", EntityField::Serial),
        ("hardware_rev", EntityField::HardwareRev),
        ("firmware_rev", EntityField::FirmwareRev),
        ("software_rev", EntityField::SoftwareRev),
    ];

    /// The ENTITY-MIB column name, for explanations.
    fn mib_name(self) -> &'static str {
        match self {
            EntityField::Descr => "entPhysicalDescr",
            EntityField::Name => "entPhysicalName",
            EntityField::Model => "entPhysicalModelName",
            EntityField::Mfg => "entPhysicalMfgName",
            EntityField::Serial => "entPhysicalSerialNum",
            EntityField::HardwareRev => "entPhysicalHardwareRev",
            EntityField::FirmwareRev => "entPhysicalFirmwareRev",
            EntityField::SoftwareRev => "entPhysicalSoftwareRev",
        }
    }
}

/// Where an extracted value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    SysDescr,
    SysName,
    SysObjectId,
    Entity(EntityField),
    /// A scalar OID the rule asks the collector to GET.
    Extra(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::SysDescr => f.write_str("sysDescr"),
            Source::SysName => f.write_str("sysName"),
            Source::SysObjectId => f.write_str("sysObjectID"),
            Source::Entity(field) => f.write_str(field.mib_name()),
            Source::Extra(oid) => write!(f, "OID {oid}"),
        }
    }
}

/// One way of getting a value for vendor / model / firmware / serial.
#[derive(Debug, Clone)]
enum Extract {
    Fixed(String),
    Read {
        source: Source,
        regex: Option<Pattern>,
        format: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    /// `None`: the rule names the device but the evidence decides the kind.
    kind: Option<Kind>,
    disabled: bool,
    oid_prefixes: Vec<String>,
    enterprises: Vec<u64>,
    sys_descr: Vec<Pattern>,
    sys_descr_not: Vec<Pattern>,
    sys_name: Vec<Pattern>,
    subtrees_all: Vec<String>,
    subtrees_any: Vec<String>,
    subtrees_none: Vec<String>,
    services_set: Vec<u8>,
    services_clear: Vec<u8>,
    entity_model: Vec<Pattern>,
    entity_mfg: Vec<Pattern>,
    extra_match: Vec<(String, Pattern)>,
    vendor: Vec<Extract>,
    model: Vec<Extract>,
    firmware: Vec<Extract>,
    serial: Vec<Extract>,
}

/// Which conditions [`Rule::matches`] can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// For [`Rules::extra_oids`]: extras are not read yet; subtrees and entity
    /// only when present.
    BeforeExtra,
    Final,
}

impl Rule {
    fn probe_names(&self) -> impl Iterator<Item = &str> {
        self.subtrees_all
            .iter()
            .chain(&self.subtrees_any)
            .chain(&self.subtrees_none)
            .map(String::as_str)
    }

    fn has_conditions(&self) -> bool {
        !(self.oid_prefixes.is_empty()
            && self.enterprises.is_empty()
            && self.sys_descr.is_empty()
            && self.sys_descr_not.is_empty()
            && self.sys_name.is_empty()
            && self.subtrees_all.is_empty()
            && self.subtrees_any.is_empty()
            && self.subtrees_none.is_empty()
            && self.services_set.is_empty()
            && self.services_clear.is_empty()
            && self.entity_model.is_empty()
            && self.entity_mfg.is_empty()
            && self.extra_match.is_empty())
    }

    /// The OIDs this rule wants the collector to GET.
    fn extra_oids(&self) -> impl Iterator<Item = &str> {
        let from_match = self.extra_match.iter().map(|(oid, _)| oid.as_str());
        let from_extract = [&self.vendor, &self.model, &self.firmware, &self.serial]
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                Extract::Read {
                    source: Source::Extra(oid),
                    ..
                } => Some(oid.as_str()),
                _ => None,
            });
        from_match.chain(from_extract)
    }

    /// All conditions hold: the reasons, for the explanation. Conditions a
    /// phase cannot decide count as holding and give no reason.
    fn matches(&self, v: &View<'_>, phase: Phase) -> Option<Vec<String>> {
        let mut reasons = Vec::new();

        if !self.oid_prefixes.is_empty() {
            let oid = v.sys_object_id?;
            let prefix = self.oid_prefixes.iter().find(|p| oid_has_prefix(oid, p))?;
            reasons.push(format!("sysObjectID {oid} starts with {prefix}"));
        }
        if !self.enterprises.is_empty() {
            let number = v.enterprise?;
            if !self.enterprises.contains(&number) {
                return None;
            }
            reasons.push(format!(
                "enterprise {number} (sysObjectID {})",
                v.sys_object_id.unwrap_or("")
            ));
        }
        for p in &self.sys_descr {
            let descr = v.sys_descr?;
            if !p.is_match(descr) {
                return None;
            }
            reasons.push(format!(
                "sysDescr \"{}\" matches /{}/",
                shorten(descr),
                p.src
            ));
        }
        for p in &self.sys_descr_not {
            if let Some(descr) = v.sys_descr {
                if p.is_match(descr) {
                    return None;
                }
            }
        }
        for p in &self.sys_name {
            let name = v.sys_name?;
            if !p.is_match(name) {
                return None;
            }
            reasons.push(format!("sysName \"{}\" matches /{}/", shorten(name), p.src));
        }
        if !self.services_set.is_empty() || !self.services_clear.is_empty() {
            let services = v.sys_services?;
            let has = |layer: u8| services & (1u64 << (layer - 1)) != 0;
            if !self.services_set.iter().all(|&l| has(l))
                || self.services_clear.iter().any(|&l| has(l))
            {
                return None;
            }
            reasons.push(format!(
                "sysServices {services} has layer {:?} and lacks layer {:?}",
                self.services_set, self.services_clear
            ));
        }

        let subtrees_known = phase == Phase::Final || !v.subtrees.is_empty();
        if subtrees_known {
            for name in &self.subtrees_all {
                if !v.subtrees.contains(name) {
                    return None;
                }
                reasons.push(format!("subtree {name} answered"));
            }
            if !self.subtrees_any.is_empty() {
                let name = self.subtrees_any.iter().find(|n| v.subtrees.contains(*n))?;
                reasons.push(format!("subtree {name} answered"));
            }
            for name in &self.subtrees_none {
                if v.subtrees.contains(name) {
                    return None;
                }
                reasons.push(format!("subtree {name} did not answer"));
            }
        }

        let entity_known = phase == Phase::Final || v.entity.is_some();
        if entity_known {
            for (patterns, field) in [
                (&self.entity_model, EntityField::Model),
                (&self.entity_mfg, EntityField::Mfg),
            ] {
                for p in patterns {
                    let value = v.entity_field(field)?;
                    if !p.is_match(value) {
                        return None;
                    }
                    reasons.push(format!(
                        "{} \"{}\" matches /{}/",
                        field.mib_name(),
                        shorten(value),
                        p.src
                    ));
                }
            }
        }

        if phase == Phase::Final {
            for (oid, p) in &self.extra_match {
                let value = v.extra(oid)?;
                if !p.is_match(value) {
                    return None;
                }
                reasons.push(format!(
                    "OID {oid} = \"{}\" matches /{}/",
                    shorten(value),
                    p.src
                ));
            }
        }
        Some(reasons)
    }
}

/// An ENTITY-MIB model or firmware worth reporting: not a bare part or
/// serial number (a run of eight digits or more, "1078800081-02").
fn plausible(what: &str, value: &str) -> bool {
    what != "model" || (longest_digit_run(value) < 8 && value.chars().any(char::is_alphabetic))
}

/// A model or firmware a sysDescr states in so many words ("Model: X",
/// "Software Version 5.20", "firmware v2.1.3"), where nothing better said
/// it. Only labelled values: a bare number in a sysDescr could be anything.
fn stated_in_descr(what: &str, descr: &str) -> Option<(String, String)> {
    static MODEL: OnceLock<Option<Regex>> = OnceLock::new();
    static FIRMWARE: OnceLock<Option<Regex>> = OnceLock::new();
    let (cell, source) = match what {
        "model" => (
            &MODEL,
            r"(?i)\bmodel(?: name| number)?\s*[:=]\s*([A-Za-z0-9][\w./+-]{1,40})",
        ),
        "firmware" => (
            &FIRMWARE,
            r"(?i)\b(?:firmware|software|sw|fw|os)?\s*(?:version|ver\.|rev(?:ision)?)\s*[:=]?\s*v?([0-9][\w.()+-]{0,39})",
        ),
        _ => return None,
    };
    let regex = cell
        .get_or_init(|| RegexBuilder::new(source).build().ok())
        .as_ref()?;
    let value = regex.captures(descr)?.get(1)?.as_str();
    let value = clean(value.trim_end_matches(['.', ',', ';', ')']))?;
    Some((value.to_string(), format!("/{source}/")))
}

/// A Unix sysDescr ("Linux core-switch 5.10 ...", net-snmp's default) has
/// the host name second: a name someone chose says nothing of the kind.
fn without_host_name(descr: &str) -> std::borrow::Cow<'_, str> {
    if !is_unix(descr) {
        return descr.into();
    }
    let mut words = descr.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some(os), Some(_host), rest) => format!("{os} {}", rest.unwrap_or_default()).into(),
        _ => descr.into(),
    }
}

/// Component-wise prefix: "1.3.6.1.4.1.9" is a prefix of "1.3.6.1.4.1.9.1.1" but not of "1.3.6.1.4.1.99".
fn oid_has_prefix(oid: &str, prefix: &str) -> bool {
    oid == prefix || (oid.starts_with(prefix) && oid.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// Up to 80 characters on one line, for explanations.
fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 80 {
        let cut: String = one_line.chars().take(77).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// A value as the rules see it: cut at the first NUL, trimmed, and absent
/// when empty or `<private>`.
fn clean(value: &str) -> Option<&str> {
    let value = value.split('\0').next().unwrap_or_default();
    let value = value.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if value.is_empty() || value.eq_ignore_ascii_case(PRIVATE) {
        None
    } else {
        Some(value)
    }
}

fn clean_opt(value: &Option<String>) -> Option<&str> {
    value.as_deref().and_then(clean)
}

/// An enterprise number stated inside a sysObjectID after its own: an OEM
/// platform's arc that carries the brand's ("1.3.6.1.4.1.89.1.1.1.3.6.1.4.1.4526.100"
/// is Netgear's 4526 on the platform's 89).
fn embedded_enterprise(sys_object_id: &str) -> Option<u64> {
    const PREFIX: [u64; 6] = [1, 3, 6, 1, 4, 1];
    let arcs: Vec<u64> = sys_object_id
        .split('.')
        .take(128)
        .map(|arc| arc.parse().ok())
        .collect::<Option<_>>()?;
    let rest = arcs.get(PREFIX.len() + 1..)?;
    rest.windows(PREFIX.len() + 1)
        .find(|w| w[..PREFIX.len()] == PREFIX)
        .map(|w| w[PREFIX.len()])
}

/// The evidence, cleaned once.
struct View<'a> {
    sys_object_id: Option<&'a str>,
    enterprise: Option<u64>,
    sys_descr: Option<&'a str>,
    sys_name: Option<&'a str>,
    sys_services: Option<u64>,
    subtrees: &'a BTreeSet<String>,
    entity: Option<&'a EntityFacts>,
    extra: &'a BTreeMap<String, String>,
    macs: &'a [String],
}

impl<'a> View<'a> {
    fn new(e: &'a Evidence) -> View<'a> {
        let sys_object_id = clean_opt(&e.sys_object_id).map(|o| o.trim_start_matches('.'));
        let enterprise = sys_object_id
            .and_then(|o| o.strip_prefix(ENTERPRISES))
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok());
        View {
            sys_object_id,
            enterprise,
            sys_descr: clean_opt(&e.sys_descr),
            sys_name: clean_opt(&e.sys_name),
            sys_services: e.sys_services,
            subtrees: &e.subtrees,
            entity: e.entity.as_ref(),
            extra: &e.extra,
            macs: &e.macs,
        }
    }

    fn entity_field(&self, field: EntityField) -> Option<&'a str> {
        let e = self.entity?;
        let value = match field {
            EntityField::Descr => &e.descr,
            EntityField::Name => &e.name,
            EntityField::Model => &e.model,
            EntityField::Mfg => &e.mfg,
            EntityField::Serial => &e.serial,
            EntityField::HardwareRev => &e.hardware_rev,
            EntityField::FirmwareRev => &e.firmware_rev,
            EntityField::SoftwareRev => &e.software_rev,
        };
        clean_opt(value)
    }

    fn extra(&self, oid: &str) -> Option<&'a str> {
        let value = match self.extra.get(oid) {
            Some(v) => v,
            None => self.extra.get(&format!(".{oid}"))?,
        };
        clean(value)
    }

    fn source(&self, source: &Source) -> Option<&'a str> {
        match source {
            Source::SysDescr => self.sys_descr,
            Source::SysName => self.sys_name,
            Source::SysObjectId => self.sys_object_id,
            Source::Entity(field) => self.entity_field(*field),
            Source::Extra(oid) => self.extra(oid),
        }
    }

    /// The first extraction that gives a value, and a note on where it came from.
    fn extract(&self, specs: &[Extract]) -> Option<(String, String)> {
        specs.iter().find_map(|spec| match spec {
            Extract::Fixed(value) => Some((value.clone(), "the rule".to_string())),
            Extract::Read {
                source,
                regex,
                format,
            } => {
                let text = self.source(source)?;
                let (value, how) = match regex {
                    Some(p) => {
                        let captured = p.re.captures(text)?.get(1)?.as_str();
                        (clean(captured)?, format!("{source} /{}/", p.src))
                    }
                    None => (text, source.to_string()),
                };
                let value = match format {
                    Some(f) => f.replacen("{}", value, 1),
                    None => value.to_string(),
                };
                Some((value, how))
            }
        })
    }
}

/// Assembles a classification's vendor, model, firmware and serial: the
/// rule's extraction first; then the vendor tables (enterprise number,
/// ENTITY-MIB manufacturer, MAC) for the vendor and ENTITY-MIB for the rest.
/// The kind is the caller's to decide.
fn build(
    rule: Option<&Rule>,
    mut evidence: Vec<String>,
    v: &View<'_>,
    model: &Model,
) -> Classification {
    let none: &[Extract] = &[];
    // A vendor a rule read from the device is still a legal name or a
    // contract manufacturer now and then: the brand tables see it too.
    let vendor = match v.extract(rule.map_or(none, |r| &r.vendor)) {
        Some((fixed, how)) if how == "the rule" => {
            evidence.push(format!("vendor \"{}\" from the rule", shorten(&fixed)));
            Some(fixed)
        }
        Some((read, how)) => model.vendors.brand(&read).inspect(|brand| {
            evidence.push(format!("vendor \"{}\" from {how}", shorten(brand)));
        }),
        None => None,
    };
    let mut field = |what: &str, specs: &[Extract], entity: &[EntityField]| -> Option<String> {
        if let Some((value, how)) = v.extract(specs) {
            evidence.push(format!("{what} \"{}\" from {how}", shorten(&value)));
            return Some(value);
        }
        let entity_value = entity.iter().find_map(|&f| {
            let value = v.entity_field(f).filter(|value| plausible(what, value))?;
            Some((value, f.mib_name()))
        });
        if let Some((value, column)) = entity_value {
            evidence.push(format!(
                "{what} \"{}\" from ENTITY-MIB {column}",
                shorten(value)
            ));
            return Some(value.to_string());
        }
        let (value, how) = stated_in_descr(what, v.sys_descr?)?;
        evidence.push(format!(
            "{what} \"{}\" from sysDescr {how}",
            shorten(&value)
        ));
        Some(value)
    };
    let product_model = field(
        "model",
        rule.map_or(none, |r| &r.model),
        &[EntityField::Model],
    );
    let firmware = field(
        "firmware",
        rule.map_or(none, |r| &r.firmware),
        &[EntityField::SoftwareRev, EntityField::FirmwareRev],
    );
    let serial = field(
        "serial",
        rule.map_or(none, |r| &r.serial),
        &[EntityField::Serial],
    );
    let vendor = vendor.or_else(|| {
        let (vendor, how) = model.vendors.resolve(&VendorFacts {
            enterprise: v.enterprise,
            embedded: v.sys_object_id.and_then(embedded_enterprise),
            sys_descr: v.sys_descr,
            entity_mfg: v.entity_field(EntityField::Mfg),
            entity_texts: [EntityField::Descr, EntityField::Model]
                .into_iter()
                .filter_map(|f| v.entity_field(f))
                .collect(),
            macs: v.macs,
        })?;
        evidence.push(format!("vendor \"{}\" from {how}", shorten(&vendor)));
        Some(vendor)
    });
    Classification {
        kind: Kind::Other,
        vendor,
        model: product_model,
        firmware,
        serial,
        rule: FALLBACK_RULE.to_string(),
        confidence: 0,
        evidence,
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    probes: BTreeMap<String, String>,
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
    /// Weights and vocabularies laid over the evidence layer's.
    #[serde(default)]
    evidence: Option<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    /// Parsed by hand for a clearer message than serde's "unknown variant".
    #[serde(default)]
    kind: Option<String>,
    /// Documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    vendor: Option<toml::Value>,
    #[serde(default)]
    sys_object_id_prefix: Option<toml::Value>,
    #[serde(default)]
    enterprise: Option<toml::Value>,
    #[serde(default)]
    sys_descr: Option<toml::Value>,
    #[serde(default)]
    sys_descr_not: Option<toml::Value>,
    #[serde(default)]
    sys_name: Option<toml::Value>,
    #[serde(default)]
    subtree: Option<toml::Value>,
    #[serde(default)]
    subtrees_any: Option<toml::Value>,
    #[serde(default)]
    subtrees_none: Option<toml::Value>,
    #[serde(default)]
    sys_services_bits: Option<Vec<i64>>,
    #[serde(default)]
    sys_services_bits_clear: Option<Vec<i64>>,
    #[serde(default)]
    entity_model: Option<toml::Value>,
    #[serde(default)]
    entity_mfg: Option<toml::Value>,
    #[serde(default)]
    extra_match: Option<BTreeMap<String, String>>,
    #[serde(default)]
    model: Option<toml::Value>,
    #[serde(default)]
    firmware: Option<toml::Value>,
    #[serde(default)]
    serial: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtract {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

fn parse_rules(text: &str, origin: &str, external_probes: &[&str]) -> Result<Rules, RulesError> {
    let err = |location: String, message: String| RulesError {
        origin: origin.to_string(),
        location,
        message,
    };
    let raw: RawFile = toml::from_str(text)
        .map_err(|e| err("file".to_string(), e.to_string().trim().to_string()))?;

    let mut probes = Vec::new();
    let mut removed_probes = Vec::new();
    for (name, root) in raw.probes {
        let location = format!("[probes] \"{name}\"");
        if !valid_name(&name) {
            return Err(err(
                location,
                "probe names may use only letters, digits, '-' and '_'".into(),
            ));
        }
        if root.trim().is_empty() {
            removed_probes.push(name);
            continue;
        }
        let root = parse_oid(&root).map_err(|m| err(location, m))?;
        probes.push((name, root));
    }

    let known_probes: BTreeSet<&str> = probes
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(external_probes.iter().copied())
        .collect();
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
    for (index, spanned) in raw.rule.into_iter().enumerate() {
        let line = text
            .get(..spanned.span().start)
            .map_or(0, |before| before.matches('\n').count() + 1);
        let table = spanned.into_inner();
        let location = match table.get("id").and_then(toml::Value::as_str) {
            Some(id) => format!("rule #{} \"{id}\" (line {line})", index + 1),
            None => format!("rule #{} (line {line})", index + 1),
        };
        let rule = compile_rule(table, &known_probes).map_err(|m| err(location.clone(), m))?;
        if rules.iter().any(|r| r.id == rule.id) {
            return Err(err(location, format!("duplicate rule id `{}`", rule.id)));
        }
        rules.push(rule);
    }
    let mut evidence = Model::default();
    if let Some(raw) = raw.evidence {
        evidence
            .merge(raw)
            .map_err(|m| err("[evidence]".to_string(), m))?;
    }
    Ok(Rules {
        probes,
        removed_probes,
        rules: Arc::new(rules),
        evidence: Arc::new(evidence),
        explain: false,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn compile_rule(table: toml::Table, known_probes: &BTreeSet<&str>) -> Result<Rule, String> {
    let raw: RawRule = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    if !valid_name(&raw.id) {
        return Err("`id` may use only letters, digits, '-' and '_'".into());
    }
    let kind = match (raw.kind, raw.disabled) {
        (Some(kind), _) if kind == BY_EVIDENCE => None,
        (Some(kind), _) => Some(
            kind.parse::<Kind>()
                .map_err(|e| format!("{e}, or {BY_EVIDENCE}"))?,
        ),
        (None, true) => None,
        (None, false) => {
            return Err(format!(
                "missing field `kind` (one of {}, or {BY_EVIDENCE})",
                kind_names()
            ))
        }
    };

    let probe_list = |field: &str, value: Option<toml::Value>| -> Result<Vec<String>, String> {
        let names = strings(field, value)?;
        match names.iter().find(|n| !known_probes.contains(n.as_str())) {
            Some(unknown) => Err(format!(
                "`{field}`: unknown probe `{unknown}` (known: {})",
                known_probes.iter().copied().collect::<Vec<_>>().join(", ")
            )),
            None => Ok(names),
        }
    };

    let rule = Rule {
        id: raw.id,
        kind,
        disabled: raw.disabled,
        oid_prefixes: strings("sys_object_id_prefix", raw.sys_object_id_prefix)?
            .iter()
            .map(|p| parse_oid(p).map_err(|m| format!("`sys_object_id_prefix`: {m}")))
            .collect::<Result<_, _>>()?,
        enterprises: numbers("enterprise", raw.enterprise)?,
        sys_descr: patterns("sys_descr", raw.sys_descr)?,
        sys_descr_not: patterns("sys_descr_not", raw.sys_descr_not)?,
        sys_name: patterns("sys_name", raw.sys_name)?,
        subtrees_all: probe_list("subtree", raw.subtree)?,
        subtrees_any: probe_list("subtrees_any", raw.subtrees_any)?,
        subtrees_none: probe_list("subtrees_none", raw.subtrees_none)?,
        services_set: layers("sys_services_bits", raw.sys_services_bits)?,
        services_clear: layers("sys_services_bits_clear", raw.sys_services_bits_clear)?,
        entity_model: patterns("entity_model", raw.entity_model)?,
        entity_mfg: patterns("entity_mfg", raw.entity_mfg)?,
        extra_match: raw
            .extra_match
            .unwrap_or_default()
            .into_iter()
            .map(|(oid, re)| {
                let oid = parse_oid(&oid).map_err(|m| format!("`extra_match`: {m}"))?;
                let p = pattern("extra_match", &re)?;
                Ok((oid, p))
            })
            .collect::<Result<_, String>>()?,
        vendor: extracts("vendor", raw.vendor, true)?,
        model: extracts("model", raw.model, false)?,
        firmware: extracts("firmware", raw.firmware, false)?,
        serial: extracts("serial", raw.serial, false)?,
    };
    if !rule.disabled && !rule.has_conditions() {
        return Err("the rule has no match conditions, so it would match every device".into());
    }
    Ok(rule)
}

/// A string or a list of strings.
fn strings(field: &str, value: Option<toml::Value>) -> Result<Vec<String>, String> {
    let bad = |v: &toml::Value| {
        format!(
            "`{field}` must be a string or a list of strings, not {}",
            v.type_str()
        )
    };
    match value {
        None => Ok(Vec::new()),
        Some(toml::Value::String(s)) => Ok(vec![s]),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(bad(&other)),
            })
            .collect(),
        Some(other) => Err(bad(&other)),
    }
}

/// An integer or a list of integers (enterprise numbers).
fn numbers(field: &str, value: Option<toml::Value>) -> Result<Vec<u64>, String> {
    let one = |v: &toml::Value| match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        other => Err(format!(
            "`{field}` must be a non-negative integer or a list of them, not {}",
            other.type_str()
        )),
    };
    match value {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items.iter().map(one).collect(),
        Some(other) => Ok(vec![one(&other)?]),
    }
}

fn layers(field: &str, value: Option<Vec<i64>>) -> Result<Vec<u8>, String> {
    value
        .unwrap_or_default()
        .into_iter()
        .map(|l| match u8::try_from(l) {
            Ok(layer @ 1..=7) => Ok(layer),
            _ => Err(format!("`{field}`: layer {l} is not 1..7")),
        })
        .collect()
}

fn pattern(field: &str, src: &str) -> Result<Pattern, String> {
    let re = RegexBuilder::new(src)
        .case_insensitive(true)
        .build()
        .map_err(|e| format!("bad regex in `{field}` /{src}/: {e}"))?;
    Ok(Pattern {
        src: src.to_string(),
        re,
    })
}

fn patterns(field: &str, value: Option<toml::Value>) -> Result<Vec<Pattern>, String> {
    strings(field, value)?
        .iter()
        .map(|s| pattern(field, s))
        .collect()
}

/// `model = "regex"`, `model = { from, regex, format }` or `model = { value }`,
/// or a list of those; for `vendor` a bare string is a literal value.
fn extracts(
    field: &str,
    value: Option<toml::Value>,
    bare_is_literal: bool,
) -> Result<Vec<Extract>, String> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        Some(other) => vec![other],
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(s) if bare_is_literal => Ok(Extract::Fixed(s)),
            toml::Value::String(s) => Ok(Extract::Read {
                source: Source::SysDescr,
                regex: Some(capture_pattern(field, &s)?),
                format: None,
            }),
            toml::Value::Table(t) => {
                let raw: RawExtract = toml::Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| format!("`{field}`: {}", e.message().trim()))?;
                extract(field, raw)
            }
            other => Err(format!(
                "`{field}` must be a string, a table or a list of them, not {}",
                other.type_str()
            )),
        })
        .collect()
}

fn extract(field: &str, raw: RawExtract) -> Result<Extract, String> {
    if let Some(value) = raw.value {
        if raw.from.is_some() || raw.regex.is_some() || raw.format.is_some() {
            return Err(format!(
                "`{field}`: `value` cannot be combined with `from`, `regex` or `format`"
            ));
        }
        return Ok(Extract::Fixed(value));
    }
    let source = match raw.from.as_deref() {
        None | Some("sys_descr") => Source::SysDescr,
        Some("sys_name") => Source::SysName,
        Some("sys_object_id") => Source::SysObjectId,
        Some(name) => match name.strip_prefix("entity.") {
            Some(column) => EntityField::ALL
                .iter()
                .find(|(n, _)| *n == column)
                .map(|(_, f)| Source::Entity(*f))
                .ok_or_else(|| {
                    let names: Vec<&str> = EntityField::ALL.iter().map(|(n, _)| *n).collect();
                    format!("`{field}`: unknown entity field `{column}` (one of {})", names.join(", "))
                })?,
            None => Source::Extra(parse_oid(name).map_err(|m| {
                format!("`{field}`: `from` must be sys_descr, sys_name, sys_object_id, entity.<field> or an OID: {m}")
            })?),
        },
    };
    let regex = raw.regex.map(|r| capture_pattern(field, &r)).transpose()?;
    if let Some(f) = &raw.format {
        if !f.contains("{}") {
            return Err(format!(
                "`{field}`: `format` must contain {{}} where the value goes"
            ));
        }
    }
    if raw.from.is_none() && regex.is_none() {
        return Err(format!("`{field}`: give `value`, `regex` or `from`"));
    }
    Ok(Extract::Read {
        source,
        regex,
        format: raw.format,
    })
}

/// An extraction regex: exactly one capture group, whose text is the value.
fn capture_pattern(field: &str, src: &str) -> Result<Pattern, String> {
    let p = pattern(field, src)?;
    let groups = p.re.captures_len() - 1;
    if groups != 1 {
        return Err(format!(
            "regex in `{field}` /{src}/ must have exactly one capture group (use (?:...) for others), found {groups}"
        ));
    }
    Ok(p)
}

/// A dotted OID, leading dot allowed. A component in double quotes is a
/// string index and expands to its length and bytes, so
/// `1.3.6.1.4.1.8072.1.3.2.3.1.1."distro"` is nsExtendOutput1Line."distro".
fn parse_oid(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let mut rest = trimmed.strip_prefix('.').unwrap_or(trimmed);
    let mut arcs: Vec<String> = Vec::new();
    let bad = |why: &str| format!("bad OID `{text}`: {why}");
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| bad("unterminated quote"))?;
            let name = &quoted[..end];
            if name.is_empty() {
                return Err(bad("empty quoted index"));
            }
            arcs.push(name.len().to_string());
            arcs.extend(name.bytes().map(|b| b.to_string()));
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let arc = &rest[..end];
            if arc.is_empty()
                || !arc.bytes().all(|b| b.is_ascii_digit())
                || arc.parse::<u32>().is_err()
            {
                return Err(bad(&format!("`{arc}` is not a number")));
            }
            arcs.push(arc.to_string());
            rest = &rest[end..];
        }
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix('.')
            .ok_or_else(|| bad("expected `.` between arcs"))?;
        if rest.is_empty() {
            return Err(bad("trailing dot"));
        }
    }
    if arcs.len() < 2 {
        return Err(bad("needs at least two arcs"));
    }
    Ok(arcs.join("."))
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_enterprise_inside_a_sys_object_id_is_found() {
        assert_eq!(
            embedded_enterprise("1.3.6.1.4.1.89.1.1.1.3.6.1.4.1.4526.100.4.25"),
            Some(4526)
        );
        assert_eq!(embedded_enterprise("1.3.6.1.4.1.9.1.1208"), None);
        assert_eq!(embedded_enterprise("1.3.6.1.4.1.9.x"), None);
        assert_eq!(embedded_enterprise("1.3.6.1.4.1.1.3.6.1.4.1"), None);
    }
    use super::*;
    use std::path::{Path, PathBuf};

    // -----------------------------------------------------------------------
    // A test-only .snmprec reader: OID|TAG|VALUE, hex tags (4x), variation
    // suffixes (65:numeric with initial=N,...).
    // -----------------------------------------------------------------------

    type Recording = BTreeMap<String, String>;

    fn decode_hex(hex: &str) -> Vec<u8> {
        hex.as_bytes()
            .chunks(2)
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect()
    }

    fn read_snmprec(path: &Path) -> Recording {
        let text = std::fs::read_to_string(path).expect("read recording");
        let mut values = Recording::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, '|');
            let (Some(oid), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (tag, variation) = match tag.split_once(':') {
                Some((tag, variation)) => (tag, Some(variation)),
                None => (tag, None),
            };
            let value = if variation.is_some() {
                value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("initial="))
                    .unwrap_or(value)
                    .to_string()
            } else if tag.ends_with('x') {
                String::from_utf8_lossy(&decode_hex(value)).into_owned()
            } else if tag == "6" {
                value.trim_start_matches('.').to_string()
            } else {
                value.to_string()
            };
            values.insert(oid.trim_start_matches('.').to_string(), value);
        }
        values
    }

    /// ENTITY-MIB facts of the first chassis (class 3), else the first entity.
    fn chassis(rec: &Recording) -> Option<EntityFacts> {
        const ENTRY: &str = "1.3.6.1.2.1.47.1.1.1.1.";
        let mut rows: BTreeMap<u64, BTreeMap<u32, String>> = BTreeMap::new();
        for (oid, value) in rec.range(ENTRY.to_string()..) {
            let Some(rest) = oid.strip_prefix(ENTRY) else {
                break;
            };
            let Some((column, index)) = rest.split_once('.') else {
                continue;
            };
            let (Ok(column), Ok(index)) = (column.parse(), index.parse()) else {
                continue;
            };
            rows.entry(index).or_default().insert(column, value.clone());
        }
        let (_, cols) = rows
            .iter()
            .find(|(_, cols)| cols.get(&5).map(String::as_str) == Some("3"))
            .or_else(|| rows.iter().next())?;
        let col = |c: u32| cols.get(&c).cloned();
        Some(EntityFacts {
            descr: col(2),
            name: col(7),
            hardware_rev: col(8),
            firmware_rev: col(9),
            software_rev: col(10),
            serial: col(11),
            mfg: col(12),
            model: col(13),
        })
    }

    /// What the collector would hand to classify: system group, probe
    /// subtrees, chassis facts, then the extra OIDs the rules ask for.
    fn evidence_from(rec: &Recording, rules: &Rules) -> Evidence {
        let get = |oid: &str| rec.get(oid).cloned();
        let mut evidence = Evidence {
            sys_descr: get("1.3.6.1.2.1.1.1.0"),
            sys_object_id: get("1.3.6.1.2.1.1.2.0"),
            sys_name: get("1.3.6.1.2.1.1.5.0"),
            sys_services: get("1.3.6.1.2.1.1.7.0").and_then(|v| v.parse().ok()),
            ..Evidence::default()
        };
        evidence.subtrees = rules
            .probes()
            .iter()
            .filter(|(_, root)| {
                let prefix = format!("{root}.");
                rec.keys().any(|oid| oid.starts_with(&prefix))
            })
            .map(|(name, _)| name.clone())
            .collect();
        evidence.entity = chassis(rec);
        evidence.extra = rules
            .extra_oids(&evidence)
            .into_iter()
            .filter_map(|oid| rec.get(&oid).map(|v| (oid.clone(), v.clone())))
            .collect();
        evidence
    }

    fn shared_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/devices"))
    }

    fn project_recording(stem: &str) -> Recording {
        read_snmprec(
            &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
                .join(format!("{stem}.snmprec")),
        )
    }

    fn classify_recording(rec: &Recording) -> Classification {
        let rules = Rules::embedded();
        rules.classify(&evidence_from(rec, &rules))
    }

    // -----------------------------------------------------------------------
    // The embedded rules
    // -----------------------------------------------------------------------

    #[test]
    fn embedded_rules_parse() {
        let parsed = parse_rules(EMBEDDED_RULES, EMBEDDED_ORIGIN, &[])
            .expect("src/discover/rules.toml must parse");
        assert!(parsed.len() > 50, "only {} rules", parsed.len());
        let rules = Rules::embedded();
        assert_eq!(
            rules.len(),
            parsed.len(),
            "embedded() fell back to an empty rule set"
        );
        for (name, root) in [
            ("docsis", "1.3.6.1.2.1.10.127"),
            ("adsl", "1.3.6.1.2.1.10.94"),
            ("vdsl2", "1.3.6.1.2.1.10.251"),
            ("printer", "1.3.6.1.2.1.43"),
            ("ups", "1.3.6.1.2.1.33"),
            ("host-resources", "1.3.6.1.2.1.25"),
            ("bridge", "1.3.6.1.2.1.17"),
            ("entity", "1.3.6.1.2.1.47"),
            ("dot11", "1.2.840.10036"),
            ("asterisk", "1.3.6.1.4.1.22736"),
            ("apc-ups", "1.3.6.1.4.1.318.1.1.1"),
        ] {
            assert!(
                rules.probes().iter().any(|(n, r)| n == name && r == root),
                "probe {name} = {root} missing"
            );
        }
        assert!(rules.probes().len() <= 40, "keep the probe list short");
        // The by-evidence rules come last, and the ids are what --explain shows.
        assert_eq!(rules.rule_ids().last().copied(), Some("net-snmp-linux"));
        // The same text through the public parser (which also knows the embedded probes).
        Rules::from_toml(EMBEDDED_RULES, "rules.toml")
            .expect("public parser accepts the embedded rules");
    }

    #[test]
    fn kind_text_forms() {
        assert_eq!(Kind::DslGateway.to_string(), "dsl-gateway");
        assert_eq!(
            serde_json::to_string(&Kind::DslGateway).expect("json"),
            "\"dsl-gateway\""
        );
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<Kind>(&json).expect("json"), kind);
        }
        assert!("gateway".parse::<Kind>().is_err());
    }

    // -----------------------------------------------------------------------
    // The 26 shared recordings (real devices, LibreNMS fixtures)
    // -----------------------------------------------------------------------

    #[test]
    fn shared_recordings_classify() {
        let dir = shared_dir();
        let expected_path = dir.join("expected.toml");
        if !expected_path.exists() {
            println!(
                "skipping: ../shared/devices not present ({})",
                dir.display()
            );
            return;
        }
        let expected: toml::Table =
            toml::from_str(&std::fs::read_to_string(&expected_path).expect("read expected.toml"))
                .expect("parse expected.toml");
        let rules = Rules::embedded();
        let (mut total, mut kinds_ok, mut vendors_ok) = (0, 0, 0);
        let mut misses = Vec::new();
        println!(
            "\n{:<22} {:<12} {:<12} {:<4} {:<28} {:<12} {:<24} {:<14} firmware",
            "stem", "expected", "got", "ok", "rule", "vendor", "model", "serial"
        );
        for (stem, facts) in &expected {
            let path = dir.join(format!("{stem}.snmprec"));
            if !path.exists() {
                continue;
            }
            let want_kind = facts
                .get("kind")
                .and_then(toml::Value::as_str)
                .unwrap_or("?");
            let want_vendor = facts
                .get("vendor")
                .and_then(toml::Value::as_str)
                .unwrap_or("?");
            let rec = read_snmprec(&path);
            let got = rules.classify(&evidence_from(&rec, &rules));
            total += 1;
            let kind_ok = got.kind.as_str() == want_kind;
            let vendor_ok = got
                .vendor
                .as_deref()
                .is_some_and(|v| v.to_lowercase().contains(&want_vendor.to_lowercase()));
            kinds_ok += usize::from(kind_ok);
            vendors_ok += usize::from(vendor_ok);
            if !kind_ok || !vendor_ok {
                misses.push(format!("{stem}: {got:#?}"));
            }
            println!(
                "{:<22} {:<12} {:<12} {:<4} {:<28} {:<12} {:<24} {:<14} {}",
                stem,
                want_kind,
                got.kind.as_str(),
                match (kind_ok, vendor_ok) {
                    (true, true) => "ok",
                    (true, false) => "K",
                    (false, true) => "V",
                    (false, false) => "--",
                },
                got.rule,
                got.vendor.as_deref().unwrap_or("-"),
                got.model.as_deref().unwrap_or("-"),
                got.serial.as_deref().unwrap_or("-"),
                got.firmware.as_deref().unwrap_or("-"),
            );
        }
        println!("kind {kinds_ok}/{total}, vendor {vendors_ok}/{total}");
        for miss in &misses {
            println!("MISS {miss}");
        }
        assert_eq!(total, 26, "expected 26 recordings in {}", dir.display());
        assert!(kinds_ok >= 24, "only {kinds_ok}/{total} kinds right");
        assert!(vendors_ok >= 24, "only {vendors_ok}/{total} vendors right");
    }

    #[test]
    fn shared_recordings_details() {
        let dir = shared_dir();
        if !dir.join("expected.toml").exists() {
            println!(
                "skipping: ../shared/devices not present ({})",
                dir.display()
            );
            return;
        }
        // Expected serials and versions are read from the recordings at run
        // time (the data stays out of this file); product names are facts.
        let load = |stem: &str| {
            let rec = read_snmprec(&dir.join(format!("{stem}.snmprec")));
            let c = classify_recording(&rec);
            (rec, c)
        };
        let at = |rec: &Recording, oid: &str| rec.get(oid).map(|v| v.trim().to_string());
        const ENT_SERIAL_1: &str = "1.3.6.1.2.1.47.1.1.1.1.11.1";

        let (rec, c) = load("routeros_rb750gr3");
        assert_eq!(c.model.as_deref(), Some("RB750Gr3"));
        assert_eq!(c.serial, at(&rec, "1.3.6.1.4.1.14988.1.1.7.3.0"));
        assert_eq!(
            c.firmware,
            at(&rec, "1.3.6.1.4.1.14988.1.1.4.4.0").map(|v| format!("RouterOS {v}"))
        );

        let (rec, c) = load("apc_smt750x-nmc2");
        assert_eq!(c.model.as_deref(), Some("Smart-UPS X 750"));
        assert_eq!(c.serial, at(&rec, "1.3.6.1.4.1.318.1.1.1.1.2.3.0"));
        assert_eq!(c.firmware, at(&rec, "1.3.6.1.4.1.318.1.1.1.1.2.1.0"));

        let (rec, c) = load("fortigate_60f");
        assert_eq!(c.model.as_deref(), Some("FortiGate 60F"));
        assert_eq!(c.serial, at(&rec, ENT_SERIAL_1));
        let version = at(&rec, "1.3.6.1.4.1.12356.101.4.1.1.0").expect("fgSysVersion");
        assert!(version.starts_with(&format!("v{},", c.firmware.as_deref().expect("firmware"))));

        let (rec, c) = load("iosxe_isr4321");
        assert_eq!(c.model.as_deref(), Some("ISR4321"));
        assert_eq!(c.serial, at(&rec, ENT_SERIAL_1));
        let descr = at(&rec, "1.3.6.1.2.1.1.1.0").expect("sysDescr");
        assert!(descr.contains(&format!(
            "Version {},",
            c.firmware.as_deref().expect("firmware")
        )));

        // Without a usable sysDescr the ISR is still a router, by its chassis model.
        let rules = Rules::embedded();
        let mut evidence = evidence_from(&rec, &rules);
        evidence.sys_descr = None;
        let c = rules.classify(&evidence);
        assert_eq!(
            (c.kind, c.rule.as_str()),
            (Kind::Router, "cisco-router-entity")
        );
        assert_eq!(c.model.as_deref(), Some("ISR4321"));

        let (rec, c) = load("calix_716ge");
        assert_eq!(c.model.as_deref(), Some("716GE"));
        let descr = at(&rec, "1.3.6.1.2.1.1.1.0").expect("sysDescr");
        assert!(descr.contains(&format!(" {} ", c.firmware.as_deref().expect("firmware"))));

        let (rec, c) = load("openwrt");
        assert_eq!(c.rule, "openwrt-extend");
        assert_eq!(
            c.model,
            at(
                &rec,
                "1.3.6.1.4.1.8072.1.3.2.3.1.1.8.104.97.114.100.119.97.114.101"
            )
        );
        let distro = at(
            &rec,
            "1.3.6.1.4.1.8072.1.3.2.3.1.1.6.100.105.115.116.114.111",
        )
        .expect("distro");
        assert_eq!(Some(distro), c.firmware.map(|f| format!("OpenWrt {f}")));

        let (rec, c) = load("zyxelusg_usgflex100");
        assert_eq!(c.model.as_deref(), Some("USG FLEX 100H"));
        assert_eq!(c.serial, at(&rec, "1.3.6.1.4.1.890.1.15.3.1.12.0"));

        let (rec, c) = load("rutos-2xx");
        assert_eq!(c.model.as_deref(), Some("RUT240"));
        assert_eq!(c.serial, at(&rec, "1.3.6.1.4.1.48690.1.5.0"));

        let (rec, c) = load("audiocodes_mp118");
        assert_eq!(c.model.as_deref(), Some("MP-118"));
        let descr = at(&rec, "1.3.6.1.2.1.1.1.0").expect("sysDescr");
        assert!(descr.ends_with(&format!(
            "SW Version: {}",
            c.firmware.as_deref().expect("firmware")
        )));

        let (_, c) = load("jetdirect_m252dw");
        assert!(
            c.model.as_deref().is_some_and(|m| m.ends_with("M252dw")),
            "{c:?}"
        );
        let (_, c) = load("grandstream-ht_ht802");
        assert_eq!(c.model.as_deref(), Some("HT802"));

        // The explanation says why.
        let (_, c) = load("arris-cm_dg1660a");
        assert!(
            c.evidence.iter().any(|e| e.contains("enterprise 4115")),
            "{:?}",
            c.evidence
        );
    }

    /// The collector (inventory.rs `display_value`) drops ENTITY-MIB and
    /// extra string values with control characters (NUL padding, binary);
    /// the system group is only trimmed. Classification must survive that.
    fn as_strict_collector(mut e: Evidence) -> Evidence {
        let keep = |v: &Option<String>| {
            v.clone()
                .filter(|s| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'))
        };
        let trim = |v: &Option<String>| {
            v.as_deref().map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
        };
        e.sys_descr = trim(&e.sys_descr);
        e.sys_name = trim(&e.sys_name);
        if let Some(ent) = e.entity.as_mut() {
            for field in [
                &mut ent.descr,
                &mut ent.name,
                &mut ent.model,
                &mut ent.mfg,
                &mut ent.serial,
                &mut ent.hardware_rev,
                &mut ent.firmware_rev,
                &mut ent.software_rev,
            ] {
                *field = keep(field);
            }
        }
        e.extra.retain(|_, v| keep(&Some(v.clone())).is_some());
        e
    }

    #[test]
    fn shared_recordings_do_not_need_binary_values() {
        let dir = shared_dir();
        if !dir.join("expected.toml").exists() {
            println!(
                "skipping: ../shared/devices not present ({})",
                dir.display()
            );
            return;
        }
        let rules = Rules::embedded();
        let mut stems: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "snmprec"))
            .collect();
        stems.sort();
        assert_eq!(stems.len(), 26);
        for path in stems {
            let evidence = evidence_from(&read_snmprec(&path), &rules);
            let full = rules.classify(&evidence);
            let strict = rules.classify(&as_strict_collector(evidence));
            assert_eq!(
                (full.kind, &full.rule, &full.vendor),
                (strict.kind, &strict.rule, &strict.vendor),
                "{}",
                path.display()
            );
        }
    }

    // -----------------------------------------------------------------------
    // The project's own recordings
    // -----------------------------------------------------------------------

    #[test]
    fn project_recordings_classify() {
        let c = classify_recording(&project_recording("docsis-modem"));
        assert_eq!(c.kind, Kind::Modem, "{c:#?}");
        assert_eq!(c.rule, "arris-docsis-modem");
        assert_eq!(c.vendor.as_deref(), Some("ARRIS"));
        assert_eq!(c.model.as_deref(), Some("SB6141"));
        assert_eq!(c.serial.as_deref(), Some("391437209184210503"));
        assert_eq!(c.firmware.as_deref(), Some("SB_KOMODO-1.0.7.2-SCM01-NOSH"));
        assert!(c
            .evidence
            .iter()
            .any(|e| e.contains("starts with") || e.contains("enterprise 4115")));

        let c = classify_recording(&project_recording("ip-pbx"));
        assert_eq!(c.kind, Kind::Pbx, "{c:#?}");
        assert_eq!(c.rule, "asterisk-mib");
        assert_eq!(c.vendor.as_deref(), Some("Asterisk"));
        assert_eq!(c.model.as_deref(), Some("Asterisk"));
        assert_eq!(c.firmware.as_deref(), Some("18.21.0"));
        assert!(
            c.evidence.iter().any(|e| e == "subtree asterisk answered"),
            "{:?}",
            c.evidence
        );

        let c = classify_recording(&project_recording("soho-router"));
        assert_eq!(c.kind, Kind::Router, "{c:#?}");
        assert_eq!(c.rule, "mikrotik-router");
        assert_eq!(c.vendor.as_deref(), Some("MikroTik"));
        assert_eq!(c.model.as_deref(), Some("RB750Gr3"));
        assert_eq!(c.serial.as_deref(), Some("C8F20B7A41E3"));
        assert_eq!(c.firmware.as_deref(), Some("RouterOS 7.14.3"));
    }

    // -----------------------------------------------------------------------
    // Rules-file errors
    // -----------------------------------------------------------------------

    fn parse_err(text: &str) -> String {
        match Rules::from_toml(text, "/etc/cpe-agent/rules.toml") {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => {
                assert_eq!(e.origin, "/etc/cpe-agent/rules.toml");
                e.to_string()
            }
        }
    }

    #[test]
    fn bad_regex_names_origin_rule_and_field() {
        let msg =
            parse_err("[[rule]]\nid = \"broken-re\"\nkind = \"router\"\nsys_descr = '(unclosed'\n");
        assert!(
            msg.starts_with("/etc/cpe-agent/rules.toml: rule #1 \"broken-re\" (line 1): "),
            "{msg}"
        );
        assert!(msg.contains("bad regex in `sys_descr`"), "{msg}");
    }

    #[test]
    fn unknown_kind_names_origin_rule_and_kind() {
        let msg = parse_err(
            "[[rule]]\nid = \"ok-one\"\nkind = \"router\"\nenterprise = 9\n\n[[rule]]\nid = \"bad-kind\"\nkind = \"gateway\"\nenterprise = 9\n",
        );
        assert!(msg.contains("rule #2 \"bad-kind\" (line 6)"), "{msg}");
        assert!(
            msg.contains("gateway") && msg.contains("dsl-gateway"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_field_names_origin_rule_and_field() {
        let msg = parse_err("[[rule]]\nid = \"typo\"\nkind = \"switch\"\nsysdescr = 'switch'\n");
        assert!(
            msg.contains("/etc/cpe-agent/rules.toml") && msg.contains("\"typo\""),
            "{msg}"
        );
        assert!(msg.contains("unknown field `sysdescr`"), "{msg}");

        let msg = parse_err("[[rule]]\nid = \"typo2\"\nkind = \"switch\"\nenterprise = 9\nmodel = { form = \"sys_name\" }\n");
        assert!(
            msg.contains("\"typo2\"") && msg.contains("unknown field `form`"),
            "{msg}"
        );

        let msg = parse_err("[probe]\nx = \"1.3.6\"\n");
        assert!(msg.contains("unknown field `probe`"), "{msg}");
    }

    #[test]
    fn other_rule_errors() {
        let msg = parse_err(
            "[[rule]]\nid = \"two-groups\"\nkind = \"switch\"\nenterprise = 9\nmodel = '(a)(b)'\n",
        );
        assert!(msg.contains("exactly one capture group"), "{msg}");
        let msg =
            parse_err("[[rule]]\nid = \"no-probe\"\nkind = \"switch\"\nsubtree = \"nonesuch\"\n");
        assert!(msg.contains("unknown probe `nonesuch`"), "{msg}");
        let msg = parse_err("[[rule]]\nid = \"catch-all\"\nkind = \"switch\"\nvendor = \"X\"\n");
        assert!(msg.contains("no match conditions"), "{msg}");
        let msg = parse_err(
            "[[rule]]\nid = \"bad-oid\"\nkind = \"switch\"\nsys_object_id_prefix = \"1.3.six\"\n",
        );
        assert!(msg.contains("bad OID"), "{msg}");
        let msg = parse_err("[[rule]]\nid = \"dup\"\nkind = \"switch\"\nenterprise = 9\n[[rule]]\nid = \"dup\"\nkind = \"router\"\nenterprise = 9\n");
        assert!(
            msg.contains("rule #2 \"dup\"") && msg.contains("duplicate rule id"),
            "{msg}"
        );
        let msg = parse_err("[[rule]]\nid = \"no-kind\"\nenterprise = 9\n");
        assert!(msg.contains("missing field `kind`"), "{msg}");
        let msg = parse_err("[[rule]\nid = 1\n");
        assert!(msg.contains(": file: "), "{msg}");
        let msg = parse_err("[probes]\ndocsis = \"not an oid\"\n");
        assert!(msg.contains("[probes] \"docsis\""), "{msg}");
    }

    // -----------------------------------------------------------------------
    // Operator overrides
    // -----------------------------------------------------------------------

    #[test]
    fn operator_rules_replace_by_id_and_new_ones_go_first() {
        let operator = Rules::from_toml(
            r#"
[probes]
lab-voip = "1.3.6.1.4.1.99999"

[[rule]]
id = "mikrotik-router"
kind = "firewall"
vendor = "MikroTik (managed)"
enterprise = 14988

[[rule]]
id = "lab-pbx"
kind = "pbx"
vendor = "Lab"
sys_name = '^pbx-lab'
subtree = "lab-voip"
"#,
            "operator.toml",
        )
        .expect("operator rules parse");
        let embedded = Rules::embedded();
        let position = embedded
            .rule_ids()
            .iter()
            .position(|id| *id == "mikrotik-router")
            .expect("embedded rule");
        let merged = embedded.clone().with_overrides(operator);

        assert_eq!(merged.len(), embedded.len() + 1);
        assert_eq!(
            merged.rule_ids()[0],
            "lab-pbx",
            "new operator rules are tried first"
        );
        assert_eq!(
            merged.rule_ids()[position + 1],
            "mikrotik-router",
            "a replaced rule keeps its place"
        );
        assert!(merged
            .probes()
            .iter()
            .any(|(n, r)| n == "lab-voip" && r == "1.3.6.1.4.1.99999"));

        let rec = project_recording("soho-router");
        let c = merged.classify(&evidence_from(&rec, &merged));
        assert_eq!(
            (c.kind, c.rule.as_str()),
            (Kind::Firewall, "mikrotik-router")
        );
        assert_eq!(c.vendor.as_deref(), Some("MikroTik (managed)"));
        // The replacement has no extraction: ENTITY-MIB fills in.
        assert_eq!(c.model.as_deref(), Some("RB750Gr3"));

        let lab = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.9.1.1348".into()),
            sys_name: Some("pbx-lab-01".into()),
            subtrees: ["lab-voip".to_string()].into(),
            ..Evidence::default()
        };
        let c = merged.classify(&lab);
        assert_eq!((c.kind, c.rule.as_str()), (Kind::Pbx, "lab-pbx"));
        // Without the operator rule the same device is a Cisco UC server.
        assert_eq!(embedded.classify(&lab).rule, "cisco-ucos");
    }

    #[test]
    fn model_and_firmware_only_where_stated() {
        assert_eq!(
            stated_in_descr(
                "firmware",
                "Switch 4210G 24-Port Software Version 5.20 Release 2222P01"
            )
            .map(|(v, _)| v),
            Some("5.20".to_string())
        );
        assert_eq!(
            stated_in_descr("model", "Acme box, Model: AB-1200, serial 77").map(|(v, _)| v),
            Some("AB-1200".to_string())
        );
        assert_eq!(stated_in_descr("firmware", "Linux 5.10 x86_64"), None);
        assert_eq!(stated_in_descr("model", "a model citizen"), None);
        assert!(!plausible("model", "1078800081-02"), "a part number");
        assert!(!plausible("model", "12345"));
        assert!(plausible("model", "WS-C2960X-48FPD-L"));
        assert!(plausible("firmware", "20230706"));
    }

    #[test]
    fn operator_evidence_is_laid_over_the_embedded_and_checked() {
        let operator = Rules::from_toml(
            "[evidence.vocabulary]\n\"frobnicator\" = { camera = 9 }\n\
             [evidence.probe.acme]\nroot = \"1.3.6.1.4.1.99999.2\"\nvotes = { pdu = 10 }\n\
             [evidence.enterprise]\n\"99999\" = { vendor = \"Acme\" }\n",
            "operator.toml",
        )
        .expect("parse");
        let merged = Rules::embedded().with_overrides(operator);
        assert!(merged
            .probes()
            .iter()
            .any(|(n, r)| n == "acme" && r == "1.3.6.1.4.1.99999.2"));
        let c = merged.classify(&Evidence {
            sys_object_id: Some("1.3.6.1.4.1.99999.1".into()),
            sys_descr: Some("Frobnicator 3000".into()),
            ..Evidence::default()
        });
        assert_eq!(
            (c.kind, c.rule.as_str()),
            (Kind::Camera, EVIDENCE_RULE),
            "{c:#?}"
        );
        assert_eq!(c.vendor.as_deref(), Some("Acme"));
        let c = merged.classify(&Evidence {
            subtrees: ["acme".to_string()].into(),
            ..Evidence::default()
        });
        assert_eq!(c.kind, Kind::Pdu, "{c:#?}");

        let err = Rules::from_toml(
            "[evidence.vocabulary]\n\"x\" = { toaster = 1 }\n",
            "op.toml",
        )
        .expect_err("unknown kind");
        assert_eq!(err.location, "[evidence]");
        assert!(err.to_string().contains("toaster"), "{err}");
        let err =
            Rules::from_toml("[evidence.colour]\nx = 1\n", "op.toml").expect_err("unknown table");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn operator_can_disable_a_rule_and_remove_a_probe() {
        let operator = Rules::from_toml(
            "[probes]\nbridge = \"\"\n\n[[rule]]\nid = \"mikrotik-router\"\ndisabled = true\n",
            "operator.toml",
        )
        .expect("parse");
        let merged = Rules::embedded().with_overrides(operator);
        assert!(!merged.probes().iter().any(|(n, _)| n == "bridge"));
        let rec = project_recording("soho-router");
        let c = merged.classify(&evidence_from(&rec, &merged));
        assert_ne!(c.rule, "mikrotik-router");
    }

    // -----------------------------------------------------------------------
    // Absent and placeholder values
    // -----------------------------------------------------------------------

    #[test]
    fn private_is_absent() {
        let rules = Rules::embedded();
        let evidence = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.8072.3.2.10".into()),
            sys_descr: Some("<private>".into()),
            sys_name: Some("<PRIVATE>".into()),
            entity: Some(EntityFacts {
                model: Some("  <private>\0\0".into()),
                serial: Some("<private>".into()),
                mfg: Some("".into()),
                ..EntityFacts::default()
            }),
            ..Evidence::default()
        };
        let c = rules.classify(&evidence);
        assert_eq!((c.kind, c.rule.as_str()), (Kind::Other, FALLBACK_RULE));
        assert_eq!(
            (c.vendor, c.model, c.serial, c.firmware),
            (None, None, None, None)
        );

        // A <private> vendor scalar falls through to the next source.
        let evidence = Evidence {
            sys_object_id: Some(".1.3.6.1.4.1.14988.1".into()),
            sys_descr: Some("RouterOS hAP ax2".into()),
            extra: [(
                "1.3.6.1.4.1.14988.1.1.7.3.0".to_string(),
                "<private>".to_string(),
            )]
            .into(),
            entity: Some(EntityFacts {
                serial: Some("HF0123456789\0\0".into()),
                ..EntityFacts::default()
            }),
            ..Evidence::default()
        };
        let c = rules.classify(&evidence);
        assert_eq!((c.kind, c.model.as_deref()), (Kind::Router, Some("hAP")));
        assert_eq!(c.serial.as_deref(), Some("HF0123456789"));
        assert!(
            c.evidence
                .iter()
                .any(|e| e.contains("entPhysicalSerialNum")),
            "{:?}",
            c.evidence
        );
    }

    #[test]
    fn generic_net_snmp_alone_is_other_fallback() {
        let rules = Rules::embedded();
        let c = rules.classify(&Evidence {
            sys_object_id: Some("1.3.6.1.4.1.8072.3.2.10".into()),
            ..Evidence::default()
        });
        assert_eq!(c.kind, Kind::Other);
        assert_eq!(c.rule, "fallback");
        assert_eq!(
            c.evidence.first().map(String::as_str),
            Some("no rule matched")
        );
        assert_eq!(c.confidence, 0);

        let c = rules.classify(&Evidence::default());
        assert_eq!((c.kind, c.rule.as_str()), (Kind::Other, "fallback"));

        // A Linux host name is not evidence of a kind.
        let c = rules.classify(&Evidence {
            sys_object_id: Some("1.3.6.1.4.1.8072.3.2.10".into()),
            sys_descr: Some("Linux core-switch 5.10.0-28-amd64 #1 SMP x86_64".into()),
            ..Evidence::default()
        });
        assert_eq!((c.kind, c.rule.as_str()), (Kind::Other, "fallback"));
        assert!(
            c.evidence
                .iter()
                .any(|e| e.contains("rule net-snmp-linux names the device")),
            "{:?}",
            c.evidence
        );
        assert_eq!(c.firmware.as_deref(), Some("Linux 5.10.0-28-amd64"));

        // Garbage does not crash either.
        let c = rules.classify(&Evidence {
            sys_object_id: Some("1.3.6.1.4.1.".into()),
            sys_descr: Some("\u{0}\u{1}\u{fffd}".into()),
            sys_services: Some(u64::MAX),
            subtrees: ["bridge".to_string()].into(),
            extra: [("1.3.6.1.2.1.4.1.0".to_string(), "x".to_string())].into(),
            ..Evidence::default()
        });
        assert_eq!(c.kind, Kind::Other);
    }

    #[test]
    fn subtree_fallbacks() {
        let rules = Rules::embedded();
        let by = |names: &[&str]| {
            rules.classify(&Evidence {
                sys_object_id: Some("1.3.6.1.4.1.99999.1".into()),
                subtrees: names.iter().map(|n| n.to_string()).collect(),
                ..Evidence::default()
            })
        };
        assert_eq!(by(&["docsis"]).kind, Kind::Modem);
        assert_eq!(by(&["vdsl2"]).kind, Kind::DslGateway);
        assert_eq!(by(&["printer", "host-resources"]).kind, Kind::Printer);
        assert_eq!(by(&["ups"]).kind, Kind::Ups);
        assert_eq!(by(&["dot11", "bridge"]).kind, Kind::Ap);
        assert_eq!(
            by(&["bridge"]).kind,
            Kind::Other,
            "bridge alone is not enough"
        );
        let switch = rules.classify(&Evidence {
            subtrees: ["bridge".to_string()].into(),
            extra: [("1.3.6.1.2.1.4.1.0".to_string(), "2".to_string())].into(),
            ..Evidence::default()
        });
        assert_eq!(
            (switch.kind, switch.rule.as_str()),
            (Kind::Switch, EVIDENCE_RULE)
        );
        let switch = rules.classify(&Evidence {
            subtrees: ["bridge".to_string()].into(),
            sys_services: Some(2),
            ..Evidence::default()
        });
        assert_eq!(switch.kind, Kind::Switch);
        let modem = by(&["docsis"]);
        assert_eq!(modem.rule, EVIDENCE_RULE);
        assert!(
            modem
                .evidence
                .iter()
                .any(|e| e.contains("rule fallback-docsis names the device")),
            "{:?}",
            modem.evidence
        );
    }

    // -----------------------------------------------------------------------
    // Extra OIDs
    // -----------------------------------------------------------------------

    #[test]
    fn extra_oids_follow_the_system_group() {
        let rules = Rules::embedded();
        let mikrotik = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.14988.1".into()),
            sys_descr: Some("RouterOS RB5009UG+S+".into()),
            ..Evidence::default()
        };
        let oids = rules.extra_oids(&mikrotik);
        assert!(
            oids.contains(&"1.3.6.1.4.1.14988.1.1.7.3.0".to_string()),
            "{oids:?}"
        );
        assert!(
            !oids.iter().any(|o| o.starts_with("1.3.6.1.4.1.318.")),
            "{oids:?}"
        );

        let apc = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.318.1.3.27".into()),
            ..Evidence::default()
        };
        let oids = rules.extra_oids(&apc);
        for oid in [
            "1.3.6.1.4.1.318.1.1.1.1.1.1.0",
            "1.3.6.1.4.1.318.1.1.1.1.2.1.0",
            "1.3.6.1.4.1.318.1.1.1.1.2.3.0",
        ] {
            assert!(oids.contains(&oid.to_string()), "{oid} not in {oids:?}");
        }

        // Generic net-snmp: the extend scripts are asked for (quoted indexes expanded)...
        let mut linux = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.8072.3.2.10".into()),
            sys_descr: Some("Linux gw 5.4.0 #1 SMP armv7l".into()),
            ..Evidence::default()
        };
        let oids = rules.extra_oids(&linux);
        assert!(
            oids.contains(&"1.3.6.1.4.1.8072.1.3.2.3.1.1.6.100.105.115.116.114.111".to_string()),
            "{oids:?}"
        );
        assert!(
            oids.contains(&"1.3.6.1.4.1.48690.1.7.0".to_string()),
            "unknown subtrees: Teltonika still possible"
        );
        // ...and once the probes are known, rules that cannot match ask for nothing.
        linux.subtrees = ["host-resources".to_string()].into();
        let oids = rules.extra_oids(&linux);
        assert!(
            !oids.contains(&"1.3.6.1.4.1.48690.1.7.0".to_string()),
            "{oids:?}"
        );
        let mut deduped = oids.clone();
        deduped.sort();
        deduped.dedup();
        assert_eq!(deduped.len(), oids.len(), "no duplicates");
        assert!(
            oids.iter()
                .all(|o| parse_oid(o).as_deref() == Ok(o.as_str())),
            "{oids:?}"
        );
    }

    #[test]
    fn oid_syntax() {
        assert_eq!(parse_oid(".1.3.6.1").as_deref(), Ok("1.3.6.1"));
        assert_eq!(
            parse_oid("1.3.6.1.4.1.8072.1.3.2.4.1.2.\"asterisk\".1").as_deref(),
            Ok("1.3.6.1.4.1.8072.1.3.2.4.1.2.8.97.115.116.101.114.105.115.107.1")
        );
        for bad in [
            "",
            "1",
            "1..3",
            "1.3.",
            "1.x.3",
            "1.\"open",
            "1.3.\"\"",
            "1.3.99999999999",
        ] {
            assert!(parse_oid(bad).is_err(), "{bad:?} accepted");
        }
        assert!(oid_has_prefix("1.3.6.1.4.1.9.1.1348", "1.3.6.1.4.1.9"));
        assert!(!oid_has_prefix("1.3.6.1.4.1.99.1", "1.3.6.1.4.1.9"));
    }
}
