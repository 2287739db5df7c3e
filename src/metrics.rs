//! The agent's own counters, for `{prefix}/agent/health`.
//!
//! Plain atomics in one place: tasks bump them where things happen, the
//! reporter reads them when it publishes the agent's health. Gauges (devices
//! known, reachable, lost) are set by the poller; `poll_lag` keeps the worst
//! lag since it was last taken. The loops' heartbeats live here too: the
//! poller and the reporter beat them, and the systemd watchdog
//! (`ops::systemd`) reads them, so neither loop imports the service manager.

use std::time::{Duration, Instant};

use portable_atomic::{AtomicU64, Ordering};

pub static SNMP_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub static SNMP_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
pub static MQTT_RECONNECTS: AtomicU64 = AtomicU64::new(0);
pub static MQTT_PUBLISHED: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_KNOWN: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_REACHABLE: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_LOST: AtomicU64 = AtomicU64::new(0);
/// SNMP replies dropped as unusable, across all clients.
pub static BAD_REPLIES: AtomicU64 = AtomicU64::new(0);
/// Reports that could not be queued (disk failure) or kept (poller far ahead of the reporter).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Devices not tracked because discovery.max_devices was reached.
pub static DEVICES_REFUSED: AtomicU64 = AtomicU64::new(0);
/// Sockets that could not be opened for want of file descriptors.
pub static FD_EXHAUSTED: AtomicU64 = AtomicU64::new(0);
/// Reports set aside because they could not be published at any size.
pub static DEAD_LETTERED: AtomicU64 = AtomicU64::new(0);
static POLL_LAG_MS: AtomicU64 = AtomicU64::new(0);

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Records how late a poll started against its schedule.
pub fn record_poll_lag(lag: std::time::Duration) {
    let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
    POLL_LAG_MS.fetch_max(ms, Ordering::Relaxed);
}

/// The worst poll lag since the last call, in seconds.
pub fn take_poll_lag_s() -> f64 {
    POLL_LAG_MS.swap(0, Ordering::Relaxed) as f64 / 1000.0
}

/// The process's resident set size, from /proc/self/statm.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()?;
    Some(pages * u64::try_from(page_size).ok()?)
}

/// How often each watched loop beats, at least.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// The loops whose progress the watchdog requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    Polling,
    Reporting,
}

const LOOPS: [Loop; 2] = [Loop::Polling, Loop::Reporting];

/// Milliseconds since [`epoch`] of each loop's last beat (0: never).
static BEATS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Records that `which` loop went round.
pub fn beat(which: Loop) {
    BEATS[which as usize].store(now_ms().max(1), Ordering::Relaxed);
}

/// The loops that have not beaten within `limit` (or never).
pub fn silent_loops(limit: Duration) -> Vec<Loop> {
    let now = now_ms();
    let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    LOOPS
        .into_iter()
        .filter(|l| {
            let last = BEATS[*l as usize].load(Ordering::Relaxed);
            last == 0 || now.saturating_sub(last) > limit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_and_lag_keeps_the_worst() {
        assert!(rss_bytes().is_some_and(|b| b > 0));
        record_poll_lag(std::time::Duration::from_millis(300));
        record_poll_lag(std::time::Duration::from_millis(100));
        assert_eq!(take_poll_lag_s(), 0.3);
        assert_eq!(take_poll_lag_s(), 0.0);
    }

    #[test]
    fn a_loop_that_never_beat_or_fell_silent_is_reported() {
        beat(Loop::Reporting);
        let silent = silent_loops(Duration::from_secs(60));
        assert!(silent.contains(&Loop::Polling) || BEATS[0].load(Ordering::Relaxed) > 0);
        assert!(!silent.contains(&Loop::Reporting));
        beat(Loop::Polling);
        assert!(silent_loops(Duration::from_secs(60)).is_empty());
    }
}
