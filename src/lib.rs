//! cpe-agent: discovers the devices on a customer's LAN over SNMP, collects
//! their inventory and health, and reports both to the provider over MQTT.
//!
//! Data flows one way: discover → poll → report. Each concern has its own
//! module with a narrow API; [`daemon`] wires the tasks together and owns their
//! lifecycle, and [`shutdown`] is the one signal every task obeys.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod discovery;
pub mod identity;
pub mod logging;
pub mod polling;
pub mod report;
pub mod shutdown;
pub mod snmp;
pub mod target;
