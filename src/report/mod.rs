//! Report: every message goes to disk first, then to the broker. The last
//! stage of discover → collect → report, and the carrier of provisioning's
//! answers.
//!
//! - [`contract`]: topics and payload JSON, pure (docs/mqtt.md, docs/schemas/);
//! - [`queue`]: the store-and-forward queue on disk, with the seq stream;
//! - [`mqtt`]: one broker session over rumqttc, MQTT 3.1.1 or 5;
//! - [`delivery`]: what to send next and what an ack releases, pure;
//! - [`reporter`]: the task that drives queue, delivery and session;
//! - [`status_file`]: what `cpe-agent diag` reads of the running daemon.

pub mod contract;
pub mod delivery;
pub mod mqtt;
pub mod queue;
pub mod reporter;
pub mod status_file;

pub use reporter::{open_queue, run, Links};
