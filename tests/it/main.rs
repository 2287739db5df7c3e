//! Integration tests: one binary so the crate is linked once.
//!
//! Every test here drives real components (mosquitto, snmpsimd, snmpd) that
//! `support` starts on loopback and stops on drop.

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

mod agent;
mod bundle;
mod classification;
mod cli;
mod daemon;
mod diag;
mod discover;
mod durable;
mod faults;
mod harness;
mod mqtt;
mod provisioning;
mod schema;
mod systemd;
mod walk;
