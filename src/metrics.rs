//! The agent's own counters, for `{prefix}/agent/health`.
//!
//! Plain atomics in one place: tasks bump them where things happen, the
//! reporter reads them when it publishes the agent's health. Gauges (devices
//! known, reachable, lost) are set by the poller; `poll_lag` keeps the worst
//! lag since it was last taken.

use portable_atomic::{AtomicU64, Ordering};

pub static SNMP_REQUESTS: AtomicU64 = AtomicU64::new(0);
pub static SNMP_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
pub static MQTT_RECONNECTS: AtomicU64 = AtomicU64::new(0);
pub static MQTT_PUBLISHED: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_KNOWN: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_REACHABLE: AtomicU64 = AtomicU64::new(0);
pub static DEVICES_LOST: AtomicU64 = AtomicU64::new(0);
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
}
