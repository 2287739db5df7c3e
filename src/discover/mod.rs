//! Discover: which devices answer on the LAN, what they are, and what they
//! are made of. The first stage of discover → collect → report.
//!
//! - [`lan`]: the gateway's interfaces, LAN subnets and WAN side;
//! - [`sweep`]: one [`Plan`] from the config, probed by [`sweep_once`]
//!   (the daemon's task [`run`], `cpe-agent discover` and `diag` share it);
//! - [`inventory`]: the walk of a device that answered, and its stable id;
//! - [`classify`]: the rules (`rules.toml` plus the operator's) that name
//!   the kind, vendor and model, and decide what they can;
//! - [`evidence`]: the general evidence, weighed, for the kind of every
//!   device no rule decides;
//! - [`vendor`] and [`registry`]: the vendor from enterprise numbers, ENTITY
//!   manufacturers and MACs (IANA and IEEE registries, compiled in).
//!
//! Its output is [`crate::message::Device`]; the poller takes it from here.

pub mod classify;
pub mod evidence;
pub mod inventory;
pub mod lan;
pub mod registry;
pub mod sweep;
pub mod table;
pub mod vendor;

use std::path::Path;

pub use classify::Rules;
pub use sweep::{probe, reprobe, run, sweep_once, Plan, Progress, Sweep};

use crate::config::{self, Config, ConfigError, Overlay};

/// The config as the agent runs with it: the file (with the provider's
/// pushed settings laid over it, when there are any) read and checked by
/// [`config`], and the operator's classification rules it names, which only
/// this stage can parse. Every place that loads the config goes through here.
pub fn load_config(path: &Path, overlay: Option<&Overlay>) -> Result<Config, ConfigError> {
    let config = config::load_with_overlay(path, overlay)?;
    Rules::check_operator(&config)?;
    Ok(config)
}
