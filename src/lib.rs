//! cpe-agent: discovers the devices on a customer's LAN over SNMP, collects
//! their inventory and health, and reports both to the provider over MQTT.
//!
//! Data flows one way: discover → poll → report; and push → verify → apply →
//! acknowledge ([`provisioning`]). Each concern has its own
//! module with a narrow API; [`daemon`] wires the tasks together and owns their
//! lifecycle, and [`shutdown`] is the one signal every task obeys.

pub mod agent_status;
pub mod bundle;
pub mod classify;
pub mod cli;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod diag;
pub mod discovery;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod polling;
pub mod privileges;
pub mod provisioning;
pub mod queue;
pub mod reading;
pub mod report;
pub mod shutdown;
pub mod snmp;
pub mod systemd;
pub mod target;
pub mod walk;
pub mod wire;
