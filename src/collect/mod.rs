//! Collect: the health of every known device, at each poll interval. The
//! second stage of discover → collect → report.
//!
//! - [`reading`]: what one poll asks a device for (SNMP side only);
//! - [`health`]: pure arithmetic from two readings to a health body, the
//!   changes between them, and threshold crossings (tested without sockets);
//! - [`poller`]: a task per device that drives both and hands each
//!   [`crate::message::Report`] to the reporter.

pub mod health;
pub mod identity;
pub mod poller;
pub mod reading;

pub use poller::{run, Request, HANG_ENV};
