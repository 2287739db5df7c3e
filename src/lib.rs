//! cpe-agent: discovers the devices on a customer's LAN over SNMP, collects
//! their inventory and health, and reports both to the provider over MQTT;
//! and takes the provider's signed pushes and commands.
//!
//! # Layout
//!
//! Two flows, each a row of folders, data moving one way:
//! discover → collect → report, and push → verify → apply → acknowledge.
//!
//! ```text
//! main.rs, cli.rs   the command line: run, discover, diag, config, keygen
//! daemon.rs         wires the tasks together and owns their lifecycle
//! ops/              diag (the technician's checks), systemd, privileges
//! provision/        bundle (signed formats) → provisioner (push state machine, commands) → journal
//! report/           contract (topics, payloads) → queue (disk) → delivery (pure) → reporter (task), mqtt, status_file
//! collect/          reading (SNMP) → health (pure arithmetic) → poller (task per device)
//! discover/         lan → sweep (one Plan, sweep_once) → inventory → classify (rules.toml; evidence, vendor, registry)
//! snmp/             value, client, wire (v1/v2c encoding), walk
//! message/          the vocabulary: Device, HealthSample, DeviceEvent, ConfigAck, ..., Report, Inbound
//! config.rs, config/target.rs, keys.rs, identity.rs, metrics.rs, shutdown.rs, logging.rs, text.rs, files.rs, embedded.rs
//! ```
//!
//! The folders are floors, bottom to top: the base files and [`message`] <
//! [`snmp`] < [`discover`] < [`collect`] < [`report`] < [`ops`] <
//! [`provision`] < [`daemon`], [`cli`]. A module imports only from its own
//! floor or below (`scripts/layers.py` checks it in `scripts/test.sh`), so
//! the message types sit below both the stage that produces them and the one
//! that consumes them, and no stage knows who reads its output.
//!
//! [`daemon`] starts the tasks; [`shutdown`] is the one signal every task
//! obeys.

pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod embedded;
pub mod files;
pub mod identity;
pub mod keys;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod provision;
pub mod report;
pub mod shutdown;
pub mod snmp;
pub mod text;
