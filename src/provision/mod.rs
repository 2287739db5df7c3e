//! Provision: push → verify → apply → acknowledge. Signed configuration
//! bundles and commands from the provider, applied all or nothing.
//!
//! - [`bundle`]: the signed formats and their verification, pure;
//! - [`journal`]: the crash journal and the committed state on disk;
//! - [`provisioner`]: the task that owns the running config and takes each
//!   push through its steps, and runs the signed commands.
//!
//! Its answers ([`crate::message::ConfigAck`] and friends) go out through
//! the report queue like every other message.

pub mod bundle;
pub mod journal;
pub mod provisioner;

pub use provisioner::{run, show, startup_config, Wiring, KILL_AT_ENV, STEPS};
