//! The service manager: readiness, status and the watchdog, over systemd's
//! notify protocol (a datagram to `$NOTIFY_SOCKET`; no libsystemd needed).
//!
//! - `READY=1` once the config is loaded and the first broker connection
//!   attempt has started (so `systemctl start` returns when the agent is
//!   really at work), with `STATUS=` lines as the broker link changes.
//! - `WATCHDOG=1` every half `WatchdogSec`, but only while the main loops make
//!   progress: the poller's and the reporter's loops each beat a heartbeat
//!   ([`crate::metrics::beat`]) at least every [`BEAT_EVERY`]; if either falls
//!   silent the pings stop and systemd restarts the agent. A task that is
//!   merely stuck (not the whole process) is caught this way, which a ping
//!   from a timer alone would hide.
//! - `STOPPING=1` at shutdown.
//!
//! Without `$NOTIFY_SOCKET` (OpenWrt's procd, sysvinit, a shell) all of this
//! is off and costs nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio::sync::watch;

use crate::message::LinkState;
use crate::metrics::{silent_loops, BEAT_EVERY};
use crate::shutdown::Shutdown;

/// A connection to the service manager, when there is one.
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    /// Half of `WatchdogSec`, when the watchdog is on for this process.
    watchdog_every: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and
    /// `$WATCHDOG_USEC`/`$WATCHDOG_PID`; None when not run by systemd.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let address = socket_address(&path)
            .map_err(|e| tracing::warn!(error = %e, "NOTIFY_SOCKET is unusable; no readiness or watchdog notifications"))
            .ok()?;
        let socket = UnixDatagram::unbound()
            .map_err(
                |e| tracing::warn!(error = %e, "cannot open a socket for systemd notifications"),
            )
            .ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(|u| Duration::from_micros(u) / 2);
        Some(Notifier {
            socket,
            address,
            watchdog_every,
        })
    }

    /// Sends one notification, e.g. `READY=1\nSTATUS=…`.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::debug!(error = %e, "a systemd notification was not delivered");
        }
    }
}

fn socket_address(path: &std::ffi::OsStr) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    }
}

/// One line for `systemctl status`.
fn status_line(link: &LinkState) -> String {
    let broker = link
        .settings
        .as_ref()
        .map(|m| format!("{}:{}", m.host, m.port))
        .unwrap_or_default();
    let devices = crate::metrics::get(&crate::metrics::DEVICES_KNOWN);
    match (&link.connected, &link.error) {
        (true, _) => format!("connected to {broker}; {devices} device(s) known"),
        (false, Some(e)) => format!(
            "broker {broker} unreachable ({e}); {devices} device(s) known; reports are queued"
        ),
        (false, None) => format!("connecting to {broker}"),
    }
}

/// Runs until shutdown: readiness, status and the watchdog.
pub async fn run(notifier: Notifier, mut link: watch::Receiver<LinkState>, mut shutdown: Shutdown) {
    // Ready once the first connection attempt has started.
    let ready = tokio::select! {
        _ = shutdown.wait() => false,
        started = link.wait_for(|l| l.settings.is_some()) => started.is_ok(),
    };
    if !ready {
        notifier.notify("STOPPING=1");
        return;
    }
    notifier.notify(&format!(
        "READY=1\nSTATUS={}",
        status_line(&link.borrow_and_update())
    ));
    let every = notifier.watchdog_every.unwrap_or(Duration::from_secs(3600));
    // A loop may be a beat late without being stuck.
    let limit = every.max(BEAT_EVERY * 3);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            changed = link.changed() => {
                if changed.is_err() { break; }
                notifier.notify(&format!("STATUS={}", status_line(&link.borrow_and_update())));
            }
            _ = ticks.tick(), if notifier.watchdog_every.is_some() => {
                let silent = silent_loops(limit);
                if silent.is_empty() {
                    notifier.notify("WATCHDOG=1");
                    warned = false;
                } else if !warned {
                    warned = true;
                    tracing::error!(loops = ?silent, "no progress for {limit:?}; not pinging the watchdog, so systemd will restart the agent");
                }
            }
        }
    }
    notifier.notify("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let address = socket_address(path.as_os_str()).expect("address");
        let notifier = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            address,
            watchdog_every: None,
        };
        notifier.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
