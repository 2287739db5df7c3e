//! Who made a device, in the name a NOC uses.
//!
//! A device says who made it in several ways, none of them reliable alone:
//! the enterprise number of its sysObjectID (registered to a legal name,
//! sometimes of a company since acquired, sometimes of the OEM platform it
//! runs), ENTITY-MIB's manufacturer field (sometimes the contract
//! manufacturer or the chip vendor), and its MACs (registered to whoever
//! bought the block, often the maker). [`Vendors::resolve`] weighs them in
//! that order of trust, with the public facts of `vendors.toml`: aliases of
//! enterprise numbers, brands of legal names, and names that are never a
//! device's vendor.

use super::registry;
use super::table::Table;
pub use super::table::Votes;

/// Facts about one enterprise number, from `vendors.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enterprise {
    /// The brand the number stands for, when the registry's name is not it.
    pub vendor: Option<Box<str>>,
    /// What this vendor mostly makes.
    pub makes: Votes,
    /// The arc says nothing about the maker (net-snmp's own).
    pub generic: bool,
    /// The arc belongs to a platform many brands ship: prefer the MAC or the
    /// device's own words.
    pub oem: bool,
}

/// The vendor tables.
#[derive(Debug, Clone, Default)]
pub struct Vendors {
    pub(super) enterprises: Table<u64, Enterprise>,
    /// Name key (see [`name_key`]) → brand.
    brands: Table<Box<str>, Box<str>>,
    /// Name keys that are never a vendor (prefixes).
    not_vendor: Vec<Box<str>>,
    /// Name key of every brand the tables know (enterprise vendors and
    /// `[brand]` values) → the brand, and what it mostly makes if the
    /// enterprise table says: rebuilt by [`Vendors::reindex`].
    known: Table<Box<str>, Known>,
}

/// Where a known brand's name and "mostly makes" are: references into the
/// tables rather than copies (this index has an entry per brand).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Known {
    brand: BrandAt,
    /// The enterprise whose `makes` are the brand's.
    makes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BrandAt {
    /// The `vendor` of this enterprise number.
    Enterprise(u64),
    /// The value at this position of the `[brand]` table.
    Brand(usize),
}

/// What the device said that names its maker.
#[derive(Debug, Default)]
pub struct VendorFacts<'a> {
    pub enterprise: Option<u64>,
    /// An enterprise number inside the sysObjectID after its own (an OEM
    /// platform's arc carrying the brand's): used where the first says
    /// nothing of the maker.
    pub embedded: Option<u64>,
    pub sys_descr: Option<&'a str>,
    pub entity_mfg: Option<&'a str>,
    /// ENTITY-MIB chassis description and model: the device's own words.
    pub entity_texts: Vec<&'a str>,
    /// Interface MACs as reported (`aa:bb:cc:dd:ee:ff`).
    pub macs: &'a [String],
}

/// Legal forms and filler that are not part of a brand, dropped from the end
/// of an organisation's name.
const FILLER: &[&str] = &[
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "lp",
    "gmbh",
    "mbh",
    "ag",
    "kg",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "ab",
    "oy",
    "oyj",
    "as",
    "asa",
    "aps",
    "pty",
    "plc",
    "kk",
    "se",
    "pte",
    "pvt",
    "sdn",
    "bhd",
    "cv",
    "de",
    "technologies",
    "technology",
    "tech",
    "systems",
    "system",
    "networks",
    "network",
    "networking",
    "communications",
    "communication",
    "electronics",
    "electronic",
    "industrial",
    "industries",
    "industry",
    "international",
    "intl",
    "group",
    "holdings",
    "holding",
    "solutions",
    "products",
    "manufacturing",
    "mfg",
    "labs",
    "laboratories",
    "computer",
    "computers",
    "telecom",
    "telecommunications",
    "the",
    "and",
    "of",
];
/// Places Chinese companies put before their name ("Shenzhen Foo Co., Ltd").
const PLACES: &[&str] = &[
    "shenzhen",
    "guangzhou",
    "guangdong",
    "beijing",
    "shanghai",
    "hangzhou",
    "zhejiang",
    "xiamen",
    "fujian",
    "wuhan",
    "chengdu",
    "nanjing",
    "suzhou",
    "dongguan",
    "jiangsu",
    "shandong",
    "qingdao",
    "tianjin",
    "zhuhai",
    "fuzhou",
    "hunan",
    "sichuan",
    "anhui",
    "hefei",
    "ningbo",
    "foshan",
    "zhongshan",
    "huizhou",
];

/// Words that begin many sysDescrs without naming a maker: what a device
/// is, not who made it ([`Vendors::leading_name`] stops at them).
const GENERIC_WORDS: &[&str] = &[
    "access",
    "agent",
    "base",
    "broadband",
    "business",
    "cable",
    "camera",
    "card",
    "console",
    "controller",
    "device",
    "digital",
    "dual",
    "embedded",
    "enterprise",
    "ethernet",
    "fast",
    "fiber",
    "firmware",
    "gateway",
    "gigabit",
    "hardware",
    "high",
    "home",
    "host",
    "industrial",
    "integrated",
    "intelligent",
    "layer",
    "managed",
    "management",
    "media",
    "modem",
    "module",
    "multi",
    "network",
    "networks",
    "office",
    "optical",
    "point",
    "port",
    "power",
    "printer",
    "radio",
    "rack",
    "remote",
    "router",
    "server",
    "single",
    "smart",
    "snmp",
    "software",
    "standard",
    "station",
    "storage",
    "switch",
    "switching",
    "system",
    "terminal",
    "the",
    "this",
    "unit",
    "universal",
    "version",
    "video",
    "web",
    "wireless",
];

/// sysDescr words looked at for a brand.
const MAX_DESCR_WORDS: usize = 64;

/// Systems whose sysDescr (net-snmp's default) is "<OS> <host name> ...".
const UNIXES: [&str; 6] = ["Linux", "FreeBSD", "NetBSD", "OpenBSD", "Darwin", "SunOS"];

/// A Unix sysDescr: "Linux <host name> <kernel> ...".
pub(super) fn is_unix(descr: &str) -> bool {
    descr
        .split_once(' ')
        .is_some_and(|(os, _)| UNIXES.contains(&os))
}

/// The longest run of ASCII digits in `text`: a serial or part number has
/// a long one, a name or a model a short one.
pub(super) fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Lower-case words of a name: letters and digits only, legal forms kept.
fn words(name: &str) -> Vec<String> {
    let name = name.split('(').next().unwrap_or_default();
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !w.starts_with("http") && w != "www" && w != "com")
        .collect()
}

/// The key a name is known by: its words without trailing legal forms and
/// filler, nor a leading place name, joined by spaces ("TP-LINK
/// TECHNOLOGIES CO.,LTD." → "tp link").
pub fn name_key(name: &str) -> String {
    let mut words = words(name);
    while words.len() > 1 && words.last().is_some_and(|w| FILLER.contains(&w.as_str())) {
        words.pop();
    }
    if words.len() > 1 && PLACES.contains(&words[0].as_str()) {
        words.remove(0);
    }
    words.join(" ")
}

/// The words of `name` as it is written, cut where [`name_key`] cuts.
fn trimmed_name(name: &str) -> String {
    let key_len = name_key(name).split(' ').count();
    let original = name.split('(').next().unwrap_or_default();
    let written: Vec<&str> = original
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '&' && c != '+'))
        .filter(|w| !w.is_empty())
        .collect();
    // Skip a leading place name the key dropped.
    let skip = usize::from(
        written
            .first()
            .is_some_and(|w| PLACES.contains(&w.to_lowercase().as_str()))
            && name_key(name).split(' ').next()
                != written.first().map(|w| w.to_lowercase()).as_deref(),
    );
    // Hyphenated words count as several key words.
    let mut taken = Vec::new();
    let mut count = 0;
    for w in written.iter().skip(skip) {
        if count >= key_len {
            break;
        }
        count += w
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty())
            .count();
        taken.push(*w);
    }
    taken.join(" ")
}

impl Vendors {
    pub(super) fn add_brand(&mut self, key: &str, brand: String) {
        self.brands.insert(name_key(key).into(), brand.into());
    }

    /// Lays an operator's tables over these (same key: replaced).
    pub(super) fn overlay(&mut self, other: Vendors) {
        self.enterprises.extend(other.enterprises);
        self.brands.extend(other.brands);
        for name in other.not_vendor {
            if !self.not_vendor.contains(&name) {
                self.not_vendor.push(name);
            }
        }
        self.reindex();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.enterprises.is_empty() && self.brands.is_empty() && self.not_vendor.is_empty()
    }

    /// Rebuilds the index of known brands after the tables changed.
    pub(super) fn reindex(&mut self) {
        let mut known: Table<Box<str>, Known> = Table::default();
        let mut add = |key: String, brand: BrandAt, makes: Option<u64>| {
            let key: Box<str> = key.into();
            match known.get(&key).copied() {
                Some(Known { makes: Some(_), .. }) => {}
                Some(first) => {
                    if makes.is_some() {
                        known.insert(key, Known { makes, ..first });
                    }
                }
                None => known.insert(key, Known { brand, makes }),
            }
        };
        for (at, brand) in self.brands.values().enumerate() {
            add(name_key(brand), BrandAt::Brand(at), None);
        }
        for (number, e) in self.enterprises.iter() {
            let Some(vendor) = &e.vendor else { continue };
            let makes = (!e.makes.is_empty()).then_some(*number);
            add(name_key(vendor), BrandAt::Enterprise(*number), makes);
        }
        for (at, (key, _)) in self.brands.iter().enumerate() {
            add(key.to_string(), BrandAt::Brand(at), None);
        }
        known.shrink();
        self.known = known;
    }

    fn brand_at(&self, at: BrandAt) -> Option<&str> {
        match at {
            BrandAt::Enterprise(number) => self.enterprises.get(&number)?.vendor.as_deref(),
            BrandAt::Brand(at) => self.brands.value_at(at).map(|b| &**b),
        }
    }

    pub(super) fn add_not_vendor(&mut self, name: &str) {
        let key: Box<str> = name_key(name).into();
        if !key.is_empty() && !self.not_vendor.contains(&key) {
            self.not_vendor.push(key);
        }
    }

    /// The brand of an organisation or manufacturer name; `None` for names
    /// that are never a device's vendor (contract manufacturers, chip
    /// vendors) and for text that is not a name (serials, part codes).
    pub fn brand(&self, name: &str) -> Option<String> {
        let full = words(name).join(" ");
        let key = name_key(name);
        if key.is_empty() || !looks_like_a_name(name) {
            return None;
        }
        let starts =
            |name: &str, prefix: &str| name == prefix || name.starts_with(&format!("{prefix} "));
        if self
            .not_vendor
            .iter()
            .any(|n| starts(&key, n) || starts(&full, n))
        {
            return None;
        }
        if let Some(brand) = self
            .brands
            .get(full.as_str())
            .or_else(|| self.brands.get(key.as_str()))
        {
            return Some(brand.to_string());
        }
        Some(trimmed_name(name)).filter(|n| !n.is_empty())
    }

    /// What the maker mostly makes: by enterprise number when the table has
    /// the number (a sub-brand's arc says what that arc makes, or nothing),
    /// else by the brand (a vendor found from its MAC or its words).
    pub fn makes(&self, enterprise: Option<u64>, vendor: &str) -> Option<&Votes> {
        match enterprise.and_then(|n| self.enterprises.get(&n)) {
            Some(e) if !e.generic && !e.oem => Some(&e.makes).filter(|m| !m.is_empty()),
            _ => {
                let makes = self.known.get(name_key(vendor).as_str())?.makes?;
                Some(&self.enterprises.get(&makes)?.makes)
            }
        }
    }

    /// The vendor and how it was found.
    pub fn resolve(&self, facts: &VendorFacts<'_>) -> Option<(String, String)> {
        let enterprise = match (facts.enterprise, facts.embedded) {
            (Some(first), Some(embedded)) if self.says_little(first) => Some(embedded),
            (first, _) => first,
        };
        let entry = enterprise.and_then(|n| self.enterprises.get(&n));
        let says_nothing = enterprise.is_none() || entry.is_some_and(|e| e.generic);
        let oem = entry.is_some_and(|e| e.oem);
        let own_words = compact(
            &std::iter::once(facts.sys_descr.unwrap_or_default())
                .chain(facts.entity_mfg)
                .chain(facts.entity_texts.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
        );
        let named = facts.sys_descr.and_then(|d| self.named_first(d));
        let by_enterprise = (!says_nothing && !oem)
            .then(|| self.by_enterprise(enterprise?, entry, &own_words, named.as_ref()))
            .flatten();
        let by_entity = facts
            .entity_mfg
            .and_then(|m| self.brand(m))
            .map(|b| (b, "ENTITY-MIB entPhysicalMfgName".to_string()));
        if let Some((vendor, how)) = by_enterprise {
            // The device's own words win where the registry's owner is not
            // mentioned at all and the stated manufacturer is.
            if let Some((stated, stated_how)) = &by_entity {
                let descr = compact(facts.sys_descr.unwrap_or_default());
                if compact(stated) != compact(&vendor)
                    && descr.contains(&compact(stated))
                    && !descr.contains(&compact(&vendor))
                {
                    return Some((stated.clone(), format!("{stated_how}, named in sysDescr")));
                }
            }
            return Some((vendor, how));
        }
        // A known brand leading the device's own words beats the MAC: a
        // MAC block is often the network module's maker.
        by_entity
            .or(named)
            .or_else(|| self.by_mac(facts.macs))
            .or_else(|| self.named_anywhere(facts.sys_descr?))
            .or_else(|| {
                let vendor = entry.filter(|e| e.oem)?.vendor.as_deref()?;
                let brand = self.brand(vendor)?;
                Some((brand, "the platform's enterprise number".to_string()))
            })
            .or_else(|| self.leading_name(facts.sys_descr?))
    }

    /// An enterprise number that says nothing of the maker: net-snmp's, an
    /// OEM platform's, or one neither the tables nor the registry know.
    fn says_little(&self, number: u64) -> bool {
        match self.enterprises.get(&number) {
            Some(e) => e.generic || e.oem,
            None => registry::enterprise_owner(number).is_none(),
        }
    }

    /// The name a sysDescr begins with, when nothing else names the maker:
    /// up to three capitalised words of letters ("Airconsole 2.80", "West
    /// Mountain Radio RIGrunner"), cut at the first word that is generic
    /// ("Gigabit", "Ethernet", "Switch") or not a name. `None` for a Unix
    /// sysDescr (its first word is the OS) and a generic first word.
    fn leading_name(&self, descr: &str) -> Option<(String, String)> {
        if is_unix(descr) {
            return None;
        }
        let taken: Vec<&str> = descr
            .split_whitespace()
            .take(3)
            .map(|w| w.trim_matches(|c: char| matches!(c, '"' | '\'' | '\\' | ',' | ';' | ':')))
            .take_while(|w| {
                let mut chars = w.chars();
                chars.next().is_some_and(|c| c.is_ascii_uppercase())
                    && chars.all(|c| c.is_ascii_alphabetic())
                    && !GENERIC_WORDS.contains(&w.to_ascii_lowercase().as_str())
            })
            .collect();
        let name = taken.join(" ");
        if name.len() < 3 {
            return None;
        }
        let brand = self.brand(&name)?;
        Some((brand, format!("sysDescr begins with the name \"{name}\"")))
    }

    /// The brand of an enterprise number: the alias table's, else the
    /// registered owner's. Where the device does not mention that brand but
    /// calls itself by another (the registered owner's name where the alias
    /// names an acquirer, "3Com SuperStack"; or a known brand its sysDescr
    /// begins with, an OEM's), the device is believed.
    fn by_enterprise(
        &self,
        number: u64,
        entry: Option<&Enterprise>,
        own_words: &str,
        named: Option<&(String, String)>,
    ) -> Option<(String, String)> {
        let owner = registry::enterprise_owner(number);
        let owner_brand = owner.as_deref().and_then(|o| self.brand(o));
        let mentioned = |brand: &str| {
            let brand = compact(brand);
            brand.len() >= 3 && own_words.contains(&brand)
        };
        let alias = entry.and_then(|e| e.vendor.as_deref()).map(str::to_string);
        let primary = match (&alias, &owner_brand, &owner) {
            (Some(alias), _, _) => (alias.clone(), format!("enterprise {number} (vendors.toml)")),
            (None, Some(brand), Some(owner)) => (
                brand.clone(),
                format!("enterprise {number}, registered to \"{owner}\""),
            ),
            _ => return named.cloned(),
        };
        if mentioned(&primary.0) {
            return Some(primary);
        }
        // The registered name as written, not mapped to a later brand: what
        // an old device still calls itself.
        let registered = owner
            .as_deref()
            .filter(|o| self.brand(o).is_some())
            .map(trimmed_name);
        if let Some(name) = registered.filter(|n| alias.is_some() && mentioned(n)) {
            let how = format!("enterprise {number}, registered to the name the device uses");
            return Some((name, how));
        }
        match named {
            Some((brand, how)) if compact(brand) != compact(&primary.0) => Some((
                brand.clone(),
                format!("{how}, not {} of enterprise {number}", primary.0),
            )),
            _ => Some(primary),
        }
    }

    /// A known brand as the first word(s) of sysDescr ("Apple AirPort",
    /// "Meraki MS"): devices that state nothing else often say this.
    fn named_first(&self, descr: &str) -> Option<(String, String)> {
        let words: Vec<String> = words(descr).into_iter().take(3).collect();
        (1..=words.len().min(2))
            .rev()
            .find_map(|n| {
                let key = words[..n].join(" ");
                let brand = self.known_brand(&key)?;
                Some((brand, format!("sysDescr begins with the brand \"{key}\"")))
            })
            .or_else(|| self.brand_prefix(words.first()?))
    }

    /// A known brand of five letters or more that a first word is made of,
    /// followed by a product name ("ZebraNet" is Zebra's).
    fn brand_prefix(&self, word: &str) -> Option<(String, String)> {
        (5..word.len()).rev().find_map(|len| {
            let key = word.get(..len)?;
            let brand = self.known_brand(key)?;
            Some((
                brand,
                format!("sysDescr's first word begins with the brand \"{key}\""),
            ))
        })
    }

    /// A known brand anywhere in sysDescr, as a whole word of four letters
    /// or more ("SONiC ... Edgecore-SONiC"): the last resort of a device
    /// whose enterprise number and MACs say nothing. A Unix sysDescr's host
    /// name (its second word) is not looked at.
    fn named_anywhere(&self, descr: &str) -> Option<(String, String)> {
        words(descr)
            .iter()
            .enumerate()
            .take(MAX_DESCR_WORDS)
            .filter(|(i, w)| w.len() >= 4 && !(*i == 1 && is_unix(descr)))
            .find_map(|(_, w)| {
                let brand = self.known_brand(w)?;
                Some((brand, format!("sysDescr names the brand \"{w}\"")))
            })
    }

    /// The brand a key stands for, if the tables know it as a brand.
    fn known_brand(&self, key: &str) -> Option<String> {
        let known = self.known.get(key)?;
        self.brand_at(known.brand).map(str::to_string)
    }

    /// The owner of the lowest globally administered MAC's block.
    fn by_mac(&self, macs: &[String]) -> Option<(String, String)> {
        let mac = macs
            .iter()
            .filter_map(|m| registry::parse_mac(m))
            .filter(|m| registry::globally_administered(*m))
            .min()?;
        let owner = registry::mac_owner(mac)?;
        let brand = self.brand(&owner)?;
        let shown = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
        Some((
            brand,
            format!("MAC {} registered to \"{owner}\"", shown.join(":")),
        ))
    }
}

/// Lower-case letters and digits only.
fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A manufacturer name has letters, is short, and is not a serial or part
/// code (a long run of digits, or more digits than letters).
fn looks_like_a_name(text: &str) -> bool {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    letters >= 1
        && digits <= letters + 1
        && longest_digit_run(text) < 5
        && text.chars().count() <= 80
        && !is_code(text.trim())
}

/// One word of capitals then two digits or more ("DNT00", "ABC123"): a
/// part or batch code, not a name.
fn is_code(word: &str) -> bool {
    let capitals = word.chars().take_while(char::is_ascii_uppercase).count();
    let rest = &word[capitals..];
    capitals >= 1 && rest.len() >= 2 && rest.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendors() -> Vendors {
        let mut v = Vendors::default();
        v.add_brand("tp link", "TP-Link".into());
        v.add_brand("hewlett packard", "HP".into());
        v.add_brand("hewlett packard enterprise", "HPE".into());
        v.add_not_vendor("Realtek");
        v.add_not_vendor("Sanmina");
        v.reindex();
        v
    }

    #[test]
    fn legal_names_become_brands() {
        let v = vendors();
        assert_eq!(v.brand("Cisco Systems, Inc.").as_deref(), Some("Cisco"));
        assert_eq!(
            v.brand("TP-LINK TECHNOLOGIES CO.,LTD.").as_deref(),
            Some("TP-Link")
        );
        assert_eq!(
            v.brand("Hewlett Packard Enterprise").as_deref(),
            Some("HPE")
        );
        assert_eq!(v.brand("Hewlett-Packard Company").as_deref(), Some("HP"));
        assert_eq!(
            v.brand("Shenzhen Acme Technology Co., Ltd").as_deref(),
            Some("Acme")
        );
        assert_eq!(
            v.brand("Juniper Networks, Inc. (https://www.juniper.net)")
                .as_deref(),
            Some("Juniper")
        );
    }

    #[test]
    fn contract_manufacturers_serials_and_part_codes_are_not_vendors() {
        let v = vendors();
        for bad in [
            "Realtek Semiconductor Corp.",
            "Sanmina-SCI",
            "FOC12345678",
            "800-12345-01",
            "",
            "-",
        ] {
            assert_eq!(v.brand(bad), None, "{bad}");
        }
    }

    /// The embedded tables and registry: an alias names the later owner, but
    /// a device that still calls itself by the registered name is believed;
    /// a device that states nothing but its brand is named by it.
    #[test]
    fn the_devices_own_words_correct_an_alias_and_name_the_silent() {
        let v = super::super::evidence::Model::embedded().vendors;
        let resolve = |enterprise, descr| {
            v.resolve(&VendorFacts {
                enterprise,
                sys_descr: descr,
                ..VendorFacts::default()
            })
            .map(|(vendor, _)| vendor)
        };
        // 21013 is registered to Xirrus, aliased to Cambium (its owner since 2019).
        assert_eq!(resolve(Some(21013), None).as_deref(), Some("Cambium"));
        assert_eq!(
            resolve(Some(21013), Some("Xirrus XD4-130 WiFi Array")).as_deref(),
            Some("Xirrus")
        );
        assert_eq!(resolve(None, Some("Meraki MS")).as_deref(), Some("Meraki"));
        assert_eq!(
            resolve(None, Some("Linux meraki 5.4")),
            None,
            "a host name is no brand"
        );
        assert_eq!(resolve(Some(8072), Some("Linux box 5.4")), None);
    }

    /// Where the registry and the MACs say nothing, the device's own first
    /// words name it; generic words and a Unix host name do not.
    #[test]
    fn a_silent_device_is_named_by_its_first_words() {
        let v = super::super::evidence::Model::embedded().vendors;
        let resolve = |descr| {
            v.resolve(&VendorFacts {
                sys_descr: Some(descr),
                ..VendorFacts::default()
            })
            .map(|(vendor, _)| vendor)
        };
        assert_eq!(resolve("Airconsole 2.80").as_deref(), Some("Airconsole"));
        assert_eq!(
            resolve("\\\"West Mountain Radio RIGrunner 4005i").as_deref(),
            Some("West Mountain"),
            "cut at a generic word"
        );
        assert_eq!(resolve("ZebraNet Wired PS").as_deref(), Some("Zebra"));
        assert_eq!(resolve("Gigabit Ethernet Switch"), None);
        assert_eq!(resolve("Base Station V3.84"), None);
        assert_eq!(resolve("Linux Acme 5.4"), None);
        assert_eq!(resolve("GS108Tv2"), None);
    }

    /// An OEM platform's sysObjectID that carries the brand's arc.
    #[test]
    fn an_embedded_enterprise_names_the_oem_brand() {
        let v = super::super::evidence::Model::embedded().vendors;
        let (vendor, how) = v
            .resolve(&VendorFacts {
                enterprise: Some(89),
                embedded: Some(4526),
                sys_descr: Some("24-Port Gigabit Smart Switch"),
                ..VendorFacts::default()
            })
            .expect("a vendor");
        assert_eq!(vendor, "Netgear", "{how}");
    }

    #[test]
    fn part_codes_are_not_names() {
        assert!(is_code("DNT00"));
        assert!(is_code("ABC123"));
        assert!(!is_code("3Com"));
        assert!(!is_code("F5"));
        assert!(!is_code("Zyxel"));
    }

    #[test]
    fn a_generic_enterprise_falls_back_to_the_mac() {
        let mut v = vendors();
        v.enterprises.insert(
            8072,
            Enterprise {
                generic: true,
                ..Enterprise::default()
            },
        );
        let macs = [
            "02:00:00:00:00:01".to_string(),
            "00:00:0c:12:34:56".to_string(),
        ];
        let (vendor, how) = v
            .resolve(&VendorFacts {
                enterprise: Some(8072),
                macs: &macs,
                ..VendorFacts::default()
            })
            .expect("a vendor from the MAC");
        assert_eq!(vendor, "Cisco", "{how}");
        assert!(how.contains("00:00:0c:12:34:56"), "{how}");
    }
}
