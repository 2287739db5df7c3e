//! SNMP's value types, owned: what a device answers ([`Value`] under an
//! [`Oid`]) and what a provider may SET ([`SetValue`]).
//!
//! Kept apart from the client so that the layers above (inventory, health,
//! bundles) can name values without reaching into the socket code.

use std::fmt;
use std::str::FromStr;

/// An object identifier, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(Vec<u64>);

impl Oid {
    pub fn arcs(&self) -> &[u64] {
        &self.0
    }

    /// True when `self` lies inside the subtree rooted at `root` (or is it).
    pub fn starts_with(&self, root: &Oid) -> bool {
        self.0.starts_with(&root.0)
    }

    /// The arcs after `root`, e.g. the row index of a table column.
    pub fn suffix_after(&self, root: &Oid) -> Option<&[u64]> {
        self.starts_with(root).then(|| &self.0[root.0.len()..])
    }
}

impl From<Vec<u64>> for Oid {
    fn from(arcs: Vec<u64>) -> Oid {
        Oid(arcs)
    }
}

impl FromStr for Oid {
    type Err = String;
    fn from_str(s: &str) -> Result<Oid, String> {
        let arcs: Result<Vec<u64>, _> = s
            .trim_start_matches('.')
            .split('.')
            .map(str::parse)
            .collect();
        match arcs {
            Ok(arcs) if arcs.len() >= 2 => Ok(Oid(arcs)),
            _ => Err(format!("{s:?} is not a numeric OID like 1.3.6.1.2.1.1.1.0")),
        }
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arc) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{arc}")?;
        }
        Ok(())
    }
}

/// `oid!(1, 3, 6, 1, 2, 1, 1, 1, 0)`: an [`Oid`] from literal arcs.
#[macro_export]
macro_rules! oid {
    ($($arc:expr),+ $(,)?) => { $crate::snmp::Oid::from_arcs(&[$($arc),+]) };
}

impl Oid {
    pub fn from_arcs(arcs: &[u64]) -> Oid {
        Oid(arcs.to_vec())
    }

    /// This OID with more arcs appended.
    pub fn child(&self, arcs: &[u64]) -> Oid {
        let mut all = self.0.clone();
        all.extend_from_slice(arcs);
        Oid(all)
    }
}

/// An SNMP value, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    ObjectId(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Counter64(u64),
    Opaque(Vec<u8>),
    Null,
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    /// A type we do not use; kept so that a walk can step over it.
    Other,
}

impl Value {
    /// True for the three "no value here" exceptions of SNMPv2.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// The value as text, for strings that devices fill with printable bytes.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::OctetString(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                Some(text.to_string())
            }
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Integer(n) => u64::try_from(n).ok(),
            Value::Counter32(n) | Value::Gauge32(n) | Value::TimeTicks(n) => Some(u64::from(n)),
            Value::Counter64(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_oid(&self) -> Option<&Oid> {
        match self {
            Value::ObjectId(oid) => Some(oid),
            _ => None,
        }
    }
}

/// A value to SET, with its SNMP type (as a pushed bundle names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    Integer(i32),
    String(String),
    Oid(String),
    IpAddress(std::net::Ipv4Addr),
    Unsigned(u32),
    Counter32(u32),
    TimeTicks(u32),
    Hex(Vec<u8>),
}

impl SetValue {
    /// The value a GET returned, as something that can be SET back (for
    /// rollback); None for types a SET cannot carry.
    pub fn from_value(value: &Value) -> Option<SetValue> {
        Some(match value {
            Value::Integer(n) => SetValue::Integer(i32::try_from(*n).ok()?),
            Value::OctetString(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) if !text.contains('\0') => SetValue::String(text.to_string()),
                _ => SetValue::Hex(bytes.clone()),
            },
            // Only what a bundle could carry: 2 to 128 arcs of 32 bits, the first 0 to 2.
            Value::ObjectId(oid)
                if (2..=128).contains(&oid.arcs().len())
                    && oid.arcs().iter().all(|a| u32::try_from(*a).is_ok())
                    && oid.arcs().first().is_some_and(|a| *a <= 2) =>
            {
                SetValue::Oid(oid.to_string())
            }
            Value::IpAddress(ip) => SetValue::IpAddress((*ip).into()),
            Value::Gauge32(n) => SetValue::Unsigned(*n),
            Value::Counter32(n) => SetValue::Counter32(*n),
            Value::TimeTicks(n) => SetValue::TimeTicks(*n),
            _ => return None,
        })
    }

    /// True when a GET's answer shows this value in place.
    pub fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (SetValue::Integer(a), Value::Integer(b)) => i64::from(*a) == *b,
            (SetValue::String(a), Value::OctetString(b)) => a.as_bytes() == b.as_slice(),
            (SetValue::Hex(a), Value::OctetString(b)) => a == b,
            (SetValue::Oid(a), Value::ObjectId(b)) => *a == b.to_string(),
            (SetValue::IpAddress(a), Value::IpAddress(b)) => a.octets() == *b,
            (SetValue::Unsigned(a), Value::Gauge32(b))
            | (SetValue::Counter32(a), Value::Counter32(b))
            | (SetValue::TimeTicks(a), Value::TimeTicks(b)) => a == b,
            _ => false,
        }
    }

    /// The (type, value) pair of the bundle format, e.g. ("string", "lab").
    pub fn to_json(&self) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        match self {
            SetValue::Integer(n) => ("integer", json!(n)),
            SetValue::String(s) => ("string", json!(s)),
            SetValue::Oid(s) => ("oid", json!(s)),
            SetValue::IpAddress(ip) => ("ipaddress", json!(ip.to_string())),
            SetValue::Unsigned(n) => ("unsigned", json!(n)),
            SetValue::Counter32(n) => ("counter32", json!(n)),
            SetValue::TimeTicks(n) => ("timeticks", json!(n)),
            SetValue::Hex(bytes) => (
                "hex",
                json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            ),
        }
    }
}

/// A value as reportable text; `<private>` placeholders and empty strings are absent.
pub fn display_value(value: &Value) -> Option<String> {
    let text = match value {
        // Some agents pad fixed-size fields with NULs: the value ends at the first one.
        Value::OctetString(bytes) => {
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            Value::OctetString(bytes[..end].to_vec()).as_text()?
        }
        Value::Integer(n) => n.to_string(),
        Value::ObjectId(oid) => oid.to_string(),
        other => other.as_u64()?.to_string(),
    };
    // Many agents (Cisco IOS, Huawei VRP, Comware, Dell, TiMOS) end lines
    // with CR LF: a line end, not a control character.
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    };
    let printable = text
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t');
    (!text.is_empty() && text != "<private>" && printable).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_line_ends_are_text_and_other_controls_are_not() {
        let ios = Value::OctetString(
            b"Cisco IOS Software, ISR4300\r\nCopyright (c) 1986-2019\r\n".to_vec(),
        );
        assert_eq!(
            display_value(&ios).as_deref(),
            Some("Cisco IOS Software, ISR4300\nCopyright (c) 1986-2019")
        );
        let lone = Value::OctetString(b"Huawei VRP\rVersion 5".to_vec());
        assert_eq!(
            display_value(&lone).as_deref(),
            Some("Huawei VRP\nVersion 5")
        );
        assert_eq!(
            display_value(&Value::OctetString(b"bell\x07".to_vec())),
            None
        );
    }

    #[test]
    fn oids_parse_print_and_nest() {
        let root: Oid = "1.3.6.1.2.1.2.2.1.2".parse().expect("valid");
        let cell = root.child(&[7]);
        assert_eq!(cell.to_string(), "1.3.6.1.2.1.2.2.1.2.7");
        assert_eq!(cell.suffix_after(&root), Some(&[7u64][..]));
        assert!(".1.3.6".parse::<Oid>().is_ok());
        assert!("1.3.x".parse::<Oid>().is_err());
        assert!(oid!(1, 3, 6, 1, 2, 1, 2, 2, 1, 10) > oid!(1, 3, 6, 1, 2, 1, 2, 2, 1, 9));
    }

    #[test]
    fn only_values_a_bundle_could_set_back_are_kept() {
        let fine = Value::ObjectId(oid!(1, 3, 6, 1, 4, 1, 9));
        assert_eq!(
            SetValue::from_value(&fine),
            Some(SetValue::Oid("1.3.6.1.4.1.9".into()))
        );
        for bad in [
            oid!(1, 3, 4_294_967_296),
            oid!(7, 1),
            Oid::from_arcs(&[1; 129]),
        ] {
            assert_eq!(SetValue::from_value(&Value::ObjectId(bad)), None);
        }
        assert_eq!(SetValue::from_value(&Value::Counter64(1)), None);
        assert_eq!(
            SetValue::from_value(&Value::OctetString(b"lab".to_vec())),
            Some(SetValue::String("lab".into()))
        );
    }

    #[test]
    fn text_values_are_trimmed_of_padding() {
        let v = Value::OctetString(b"RB750Gr3\0\0 ".to_vec());
        assert_eq!(v.as_text().as_deref(), Some("RB750Gr3"));
        assert_eq!(Value::Counter64(5).as_u64(), Some(5));
        assert_eq!(Value::Integer(-1).as_u64(), None);
    }
}
