//! Ops: the agent as the people who run it see it.
//!
//! - [`diag`]: `cpe-agent diag`, the field technician's checks (also run by
//!   the provider's signed `diag` command);
//! - [`systemd`]: readiness, status lines and the watchdog, without libsystemd;
//! - [`privileges`]: dropping root once the state directory is ready.
//!
//! Above report (it reads the status file and opens a broker session of its
//! own) and below provision (whose `diag` command runs these checks).

pub mod diag;
pub mod privileges;
pub mod systemd;
