//! What a poll tells the NOC: a device's health sample and its events.
//!
//! The payloads of `{prefix}/devices/{id}/health` and `.../events`. The
//! arithmetic that produces them (rates, reboots, threshold diffs) is in
//! [`crate::collect`]; only the shapes live here.

use serde::Serialize;

/// One device's health at one poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSample {
    pub device_id: String,
    pub reachable: bool,
    /// Round-trip time of the poll's first request (sysUpTime), when it was answered.
    pub latency_ms: Option<f64>,
    /// sysUpTime in seconds.
    pub uptime_s: Option<f64>,
    /// Polls missed in a row.
    pub missed_polls: u32,
    #[serde(flatten)]
    pub body: Body,
}

/// A change worth telling the NOC about as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceEvent {
    Found {
        device_id: String,
        address: String,
    },
    Lost {
        device_id: String,
        missed_polls: u32,
    },
    Rebooted {
        device_id: String,
        uptime_s: f64,
    },
    InterfaceUp {
        device_id: String,
        if_index: u64,
        name: Option<String>,
    },
    InterfaceDown {
        device_id: String,
        if_index: u64,
        name: Option<String>,
    },
    ThresholdCrossed {
        device_id: String,
        #[serde(flatten)]
        threshold: ThresholdChange,
    },
    ThresholdCleared {
        device_id: String,
        #[serde(flatten)]
        threshold: ThresholdChange,
    },
    /// Two devices claim one id at once (a cloned serial or MAC): each is
    /// tracked under its own id now (docs/mqtt.md, Identifiers).
    IdentityCollision {
        device_id: String,
        address: String,
        claimed_id: String,
        other_address: String,
    },
    /// The device answers at another address (the old one is silent).
    AddressChanged {
        device_id: String,
        address: String,
        previous_address: String,
    },
    /// The address keeps changing who it says it is: it is held to this id.
    IdentityChurn {
        device_id: String,
        address: String,
        claimed_id: String,
    },
    /// Lost for `polling.forget_after`: no longer tracked, its retained
    /// inventory cleared. Found again, it is a new device.
    Forgotten {
        device_id: String,
        silent_s: u64,
    },
}

/// Which limit a value crossed, for the threshold events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdChange {
    pub metric: String,
    /// The interface or channel it is about, when the device has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub value: f64,
    pub limit: f64,
}

impl DeviceEvent {
    pub fn device_id(&self) -> &str {
        match self {
            DeviceEvent::Found { device_id, .. }
            | DeviceEvent::Lost { device_id, .. }
            | DeviceEvent::Rebooted { device_id, .. }
            | DeviceEvent::InterfaceUp { device_id, .. }
            | DeviceEvent::InterfaceDown { device_id, .. }
            | DeviceEvent::ThresholdCrossed { device_id, .. }
            | DeviceEvent::ThresholdCleared { device_id, .. }
            | DeviceEvent::IdentityCollision { device_id, .. }
            | DeviceEvent::AddressChanged { device_id, .. }
            | DeviceEvent::IdentityChurn { device_id, .. }
            | DeviceEvent::Forgotten { device_id, .. } => device_id,
        }
    }
}

/// One storage area (RAM, disk, flash) from hrStorageTable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storage {
    pub name: String,
    /// "ram", "virtual-memory", "disk", "flash", "other".
    pub kind: String,
    pub used_percent: f64,
    pub size_bytes: u64,
}

/// DOCSIS line quality of a cable modem.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Docsis {
    pub downstream: Vec<DocsisChannel>,
    pub upstream: Vec<DocsisChannel>,
    /// Codeword error ratio over the poll interval, across all downstreams.
    pub uncorrectable_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocsisChannel {
    pub channel: u64,
    pub power_dbmv: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_db: Option<f64>,
}

/// DSL line quality of a DSL gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dsl {
    pub down_kbps: Option<f64>,
    pub up_kbps: Option<f64>,
    pub down_snr_margin_db: Option<f64>,
    pub up_snr_margin_db: Option<f64>,
    pub down_attenuation_db: Option<f64>,
    pub up_attenuation_db: Option<f64>,
}

/// A UPS's battery.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ups {
    /// "normal", "low", "depleted", "unknown".
    pub battery_status: Option<String>,
    pub charge_percent: Option<f64>,
    pub runtime_minutes: Option<f64>,
    pub on_battery: Option<bool>,
}

/// One interface's health at one poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceHealth {
    pub index: u64,
    pub name: Option<String>,
    pub admin_status: Option<&'static str>,
    pub oper_status: Option<&'static str>,
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
    pub in_errors_per_s: Option<f64>,
    pub out_errors_per_s: Option<f64>,
    pub in_discards_per_s: Option<f64>,
    pub out_discards_per_s: Option<f64>,
}

/// The measured part of a health sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Body {
    pub rebooted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<Storage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docsis: Option<Docsis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsl: Option<Dsl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ups: Option<Ups>,
}
