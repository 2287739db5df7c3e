//! SNMP as the agent speaks it: owned values, a client per device that
//! survives real networks, our own v1/v2c encoding, and walks.
//!
//! - [`value`]: [`Oid`], [`Value`], [`SetValue`], and how a value is shown;
//! - [`client`]: timeouts, retries, fresh sockets after bad replies, SETs;
//! - [`wire`]: v1/v2c requests encoded by us (pure BER functions);
//! - [`walk`]: subtree and table walks that cope with what agents get wrong.
//!
//! Everything above this folder names these types through the re-exports
//! below.

pub mod client;
pub mod value;
pub mod walk;
pub mod wire;

pub use client::{decode_response, Client, SnmpError, Timing};
pub use value::{display_value, Oid, SetValue, Value};
pub use walk::{Rows, WalkOptions};
