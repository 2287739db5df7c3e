//! The agent's vocabulary: every message that crosses from one stage to
//! another, below both the stage that produces it and the one that consumes
//! it.
//!
//! Discovery produces [`Device`]s, the poller [`HealthSample`]s and
//! [`DeviceEvent`]s, the provisioner [`ConfigAck`]s, [`ConfigState`] and
//! [`CommandResult`]s; the reporter turns each [`Report`] into an MQTT
//! message and hands [`Inbound`] messages back. Because the types live here,
//! the contract never imports a producer, and a tool on the NOC's side can
//! read the same payloads without the agent's I/O (as thin-edge's `tedge_api`
//! does for its actors).
//!
//! Depends on nothing of ours but [`crate::config`] (the broker settings in
//! [`LinkState`]).

mod device;
mod health;
mod provision;

pub use device::{
    kind_names, Classification, Device, Entity, EntityFacts, Interface, Inventory, IpAddress, Kind,
    System,
};
pub use health::{
    Body, DeviceEvent, Docsis, DocsisChannel, Dsl, HealthSample, InterfaceHealth, Storage,
    ThresholdChange, Ups,
};
pub use provision::{
    AckStatus, CommandResult, CommandStatus, ConfigAck, ConfigState, MAX_PUSH_BYTES,
};

use crate::config::MqttConfig;

/// One thing to report: about a device, or about provisioning.
#[derive(Debug, Clone)]
pub enum Report {
    Inventory(Device),
    Lost(Device),
    Health(HealthSample),
    Event(DeviceEvent),
    /// A per-push acknowledgement.
    ConfigAck(ConfigAck),
    /// The provisioning state (retained).
    ConfigState(ConfigState),
    /// The result of a remote command.
    CommandResult(CommandResult),
}

impl Report {
    pub fn kind(&self) -> &'static str {
        match self {
            Report::Inventory(_) | Report::Lost(_) => "inventory",
            Report::Health(_) => "health",
            Report::Event(_) => "event",
            Report::ConfigAck(_) => "config-ack",
            Report::ConfigState(_) => "config-state",
            Report::CommandResult(_) => "command-result",
        }
    }
}

/// A message on a subscribed topic, handed over by the reporter.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The broker session as provisioning sees it: which settings it uses,
/// whether the broker accepted them, and the last error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkState {
    pub settings: Option<MqttConfig>,
    pub connected: bool,
    pub error: Option<String>,
}
