//! Health arithmetic: rates from counters, reboots from uptime.
//!
//! Kept apart from SNMP I/O so that every edge case is tested without a
//! socket. The rules, as a NOC needs them to trust a graph:
//! - a rate needs two readings of the same counter width; 64-bit (HC)
//!   counters are preferred wherever the device has them;
//! - a 32-bit counter that went backwards wrapped once (2^32 is added), unless
//!   the interface is fast enough to wrap more than once between polls, in
//!   which case no rate is given rather than a wrong one;
//! - a 64-bit counter that went backwards is a discontinuity: no rate;
//! - after a reboot (uptime went backwards, and not by its own 497-day wrap)
//!   every counter restarted: no rates for that poll, and no "spike";
//! - a rate above the interface's speed (plus 10 % slack) is a counter glitch
//!   and is dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::message::{Body, Docsis, Dsl, InterfaceHealth, Storage, ThresholdChange, Ups};

/// TimeTicks and Counter32 wrap at 2^32.
const WRAP_32: u64 = 1 << 32;

/// A counter as read: its value and whether it is 32- or 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    C32(u32),
    C64(u64),
}

/// The increase between two readings of one counter, if it can be trusted.
pub fn counter_delta(previous: Counter, now: Counter) -> Option<u64> {
    match (previous, now) {
        (Counter::C32(a), Counter::C32(b)) => {
            let (a, b) = (u64::from(a), u64::from(b));
            Some(if b >= a { b - a } else { b + WRAP_32 - a })
        }
        (Counter::C64(a), Counter::C64(b)) => b.checked_sub(a),
        // The device switched between HC and 32-bit columns: not comparable.
        _ => None,
    }
}

/// A per-second rate from two readings `elapsed` apart.
///
/// `ceiling_per_s` is the largest believable rate (e.g. the interface speed
/// in bytes/s with slack); above it the reading is a glitch. For a 32-bit
/// counter, a ceiling high enough to wrap the counter within `elapsed` makes
/// the wrap ambiguous, and no rate is given.
pub fn rate(
    previous: Counter,
    now: Counter,
    elapsed: Duration,
    ceiling_per_s: Option<f64>,
) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let delta = counter_delta(previous, now)?;
    if let (Counter::C32(a), Counter::C32(b)) = (previous, now) {
        let wrapped = b < a;
        let could_wrap_twice = ceiling_per_s.is_some_and(|c| c * seconds >= WRAP_32 as f64);
        if wrapped && could_wrap_twice {
            return None;
        }
    }
    let per_second = delta as f64 / seconds;
    match ceiling_per_s {
        Some(ceiling) if per_second > ceiling => None,
        _ => Some(per_second),
    }
}

/// The believable ceiling for an octet counter: the interface speed in
/// bytes/s plus 10 %, or none when the device does not say its speed.
pub fn octet_ceiling(speed_bps: Option<u64>) -> Option<f64> {
    speed_bps.filter(|s| *s > 0).map(|s| s as f64 / 8.0 * 1.1)
}

/// True when the device rebooted between two sysUpTime readings `elapsed`
/// apart. Uptime is in hundredths of a second and wraps after ~497 days; a
/// decrease that matches that wrap is not a reboot.
pub fn rebooted(previous_ticks: u64, now_ticks: u64, elapsed: Duration) -> bool {
    if now_ticks >= previous_ticks {
        return false;
    }
    // Uptime comes from the device: saturate rather than overflow on nonsense.
    let expected =
        previous_ticks.saturating_add(u64::try_from(elapsed.as_millis() / 10).unwrap_or(u64::MAX));
    if expected >= WRAP_32 {
        let after_wrap = expected - WRAP_32;
        // Agents and clocks drift: accept a wrap within 10 % of the interval (at least 5 s).
        let slack = ((elapsed.as_millis() / 100) as u64).max(500);
        if now_ticks.abs_diff(after_wrap) <= slack {
            return false;
        }
    }
    true
}

/// Rounds for reporting: two decimals are plenty for rates and levels.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// One interface as read at one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterfaceReading {
    pub name: Option<String>,
    pub admin_up: Option<bool>,
    pub oper_status: Option<u64>,
    pub speed_bps: Option<u64>,
    pub in_octets: Option<Counter>,
    pub out_octets: Option<Counter>,
    pub in_errors: Option<Counter>,
    pub out_errors: Option<Counter>,
    pub in_discards: Option<Counter>,
    pub out_discards: Option<Counter>,
}

/// Everything one poll read from a device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// How long the poll's first request (sysUpTime) took to be answered.
    pub response_time: Option<Duration>,
    pub uptime_ticks: Option<u64>,
    pub interfaces: std::collections::BTreeMap<u64, InterfaceReading>,
    pub cpu_loads: Vec<u64>,
    pub memory_percent: Option<f64>,
    pub storage: Vec<Storage>,
    pub docsis: Option<Docsis>,
    /// Downstream codewords: (unerrored+corrected+uncorrectable, uncorrectable), summed.
    pub codewords: Option<(Counter, Counter)>,
    pub dsl: Option<Dsl>,
    pub ups: Option<Ups>,
}

/// Something that changed between two polls.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Rebooted {
        uptime_ticks: u64,
    },
    InterfaceUp {
        index: u64,
        name: Option<String>,
    },
    InterfaceDown {
        index: u64,
        name: Option<String>,
    },
    /// A value went outside its limit (told once, until it clears).
    ThresholdCrossed(Breach),
    /// A value that was outside its limit is back inside.
    ThresholdCleared(Breach),
}

/// Compares a poll with the one before (`elapsed` earlier): rates, reboot, changes.
pub fn evaluate(
    previous: Option<&Reading>,
    now: &Reading,
    elapsed: Duration,
) -> (Body, Vec<Change>) {
    let mut changes = Vec::new();
    let rebooted = match (previous.and_then(|p| p.uptime_ticks), now.uptime_ticks) {
        (Some(before), Some(after)) => rebooted(before, after, elapsed),
        _ => false,
    };
    if rebooted {
        changes.push(Change::Rebooted {
            uptime_ticks: now.uptime_ticks.unwrap_or(0),
        });
    }
    // After a reboot every counter restarted: comparing would give garbage.
    let comparable = previous.filter(|_| !rebooted);
    let interfaces = now
        .interfaces
        .iter()
        .map(|(index, reading)| {
            let before = comparable.and_then(|p| p.interfaces.get(index));
            if let Some(change) = oper_change(
                *index,
                previous.and_then(|p| p.interfaces.get(index)),
                reading,
            ) {
                changes.push(change);
            }
            interface_health(*index, before, reading, elapsed)
        })
        .collect();
    let cpu_percent = (!now.cpu_loads.is_empty())
        .then(|| round2(now.cpu_loads.iter().sum::<u64>() as f64 / now.cpu_loads.len() as f64));
    let mut docsis = now.docsis.clone();
    if let (Some(d), Some((total_now, bad_now)), Some((total_before, bad_before))) = (
        docsis.as_mut(),
        now.codewords,
        comparable.and_then(|p| p.codewords),
    ) {
        let total = counter_delta(total_before, total_now);
        let bad = counter_delta(bad_before, bad_now);
        if let (Some(total), Some(bad)) = (total, bad) {
            d.uncorrectable_ratio = (total > 0).then(|| bad as f64 / total as f64);
        }
    }
    let body = Body {
        rebooted,
        interfaces,
        cpu_percent,
        memory_percent: now.memory_percent,
        storage: now.storage.clone(),
        docsis,
        dsl: now.dsl.clone(),
        ups: now.ups.clone(),
    };
    (body, changes)
}

fn oper_change(
    index: u64,
    before: Option<&InterfaceReading>,
    now: &InterfaceReading,
) -> Option<Change> {
    let was = before?.oper_status?;
    let is = now.oper_status?;
    let name = now.name.clone();
    match (was == 1, is == 1) {
        (false, true) => Some(Change::InterfaceUp { index, name }),
        // An interface the operator shut down is not an outage.
        (true, false) if now.admin_up != Some(false) => Some(Change::InterfaceDown { index, name }),
        _ => None,
    }
}

fn interface_health(
    index: u64,
    before: Option<&InterfaceReading>,
    now: &InterfaceReading,
    elapsed: Duration,
) -> InterfaceHealth {
    let ceiling = octet_ceiling(now.speed_bps);
    let per_s = |pick: fn(&InterfaceReading) -> Option<Counter>, ceiling: Option<f64>| {
        let (a, b) = (pick(before?)?, pick(now)?);
        rate(a, b, elapsed, ceiling).map(round2)
    };
    let bits = |v: Option<f64>| v.map(|bytes| round2(bytes * 8.0));
    InterfaceHealth {
        index,
        name: now.name.clone(),
        admin_status: now.admin_up.map(|up| if up { "up" } else { "down" }),
        oper_status: now.oper_status.map(oper_name),
        in_bps: bits(per_s(|r| r.in_octets, ceiling)),
        out_bps: bits(per_s(|r| r.out_octets, ceiling)),
        in_errors_per_s: per_s(|r| r.in_errors, None),
        out_errors_per_s: per_s(|r| r.out_errors, None),
        in_discards_per_s: per_s(|r| r.in_discards, None),
        out_discards_per_s: per_s(|r| r.out_discards, None),
    }
}

fn oper_name(code: u64) -> &'static str {
    match code {
        1 => "up",
        2 => "down",
        3 => "testing",
        5 => "dormant",
        6 => "not-present",
        7 => "lower-layer-down",
        _ => "unknown",
    }
}

/// A value outside its configured limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub metric: &'static str,
    /// What it is about, when the device has several (an interface, a channel).
    pub subject: Option<String>,
    pub value: f64,
    pub limit: f64,
}

impl Breach {
    /// Identifies the breach across polls.
    pub fn key(&self) -> (&'static str, Option<String>) {
        (self.metric, self.subject.clone())
    }
}

/// The limits a device has crossed and not yet cleared, so that each
/// crossing is told once: the poller keeps one per device.
#[derive(Debug, Default)]
pub struct Crossed(BTreeMap<(&'static str, Option<String>), Breach>);

impl Crossed {
    /// Takes this poll's breaches; returns the crossings that began (in key
    /// order), then the ones that ended.
    pub fn update(&mut self, now: Vec<Breach>) -> Vec<Change> {
        let now: BTreeMap<_, _> = now.into_iter().map(|b| (b.key(), b)).collect();
        let began = now
            .iter()
            .filter(|(key, _)| !self.0.contains_key(*key))
            .map(|(_, b)| Change::ThresholdCrossed(b.clone()));
        let ended = self
            .0
            .iter()
            .filter(|(key, _)| !now.contains_key(*key))
            .map(|(_, b)| Change::ThresholdCleared(b.clone()));
        let changes = began.chain(ended).collect();
        self.0 = now;
        changes
    }
}

/// Every value of `body` outside its limit in `limits`.
pub fn breaches(body: &Body, limits: &crate::config::Thresholds) -> Vec<Breach> {
    let mut out = Vec::new();
    let mut check = |metric: &'static str,
                     subject: Option<String>,
                     value: Option<f64>,
                     limit: &crate::config::Limit| {
        if let Some(value) = value {
            if let Some(bound) = limit.breached_by(value) {
                out.push(Breach {
                    metric,
                    subject,
                    value,
                    limit: bound,
                });
            }
        }
    };
    check("cpu_percent", None, body.cpu_percent, &limits.cpu_percent);
    check(
        "memory_percent",
        None,
        body.memory_percent,
        &limits.memory_percent,
    );
    for storage in &body.storage {
        check(
            "storage_percent",
            Some(storage.name.clone()),
            Some(storage.used_percent),
            &limits.storage_percent,
        );
    }
    for interface in &body.interfaces {
        let errors = match (interface.in_errors_per_s, interface.out_errors_per_s) {
            (None, None) => None,
            (a, b) => Some(round2(a.unwrap_or(0.0) + b.unwrap_or(0.0))),
        };
        let name = interface
            .name
            .clone()
            .unwrap_or_else(|| interface.index.to_string());
        check(
            "interface_errors_per_s",
            Some(name),
            errors,
            &limits.interface_errors_per_s,
        );
    }
    if let Some(docsis) = &body.docsis {
        for ch in &docsis.downstream {
            let subject = Some(format!("downstream {}", ch.channel));
            check(
                "docsis_downstream_power_dbmv",
                subject.clone(),
                ch.power_dbmv,
                &limits.docsis_downstream_power_dbmv,
            );
            check("docsis_snr_db", subject, ch.snr_db, &limits.docsis_snr_db);
        }
        for ch in &docsis.upstream {
            let subject = Some(format!("upstream {}", ch.channel));
            check(
                "docsis_upstream_power_dbmv",
                subject,
                ch.power_dbmv,
                &limits.docsis_upstream_power_dbmv,
            );
        }
    }
    if let Some(dsl) = &body.dsl {
        check(
            "dsl_snr_margin_db",
            Some("downstream".into()),
            dsl.down_snr_margin_db,
            &limits.dsl_snr_margin_db,
        );
        check(
            "dsl_snr_margin_db",
            Some("upstream".into()),
            dsl.up_snr_margin_db,
            &limits.dsl_snr_margin_db,
        );
    }
    if let Some(ups) = &body.ups {
        check(
            "ups_charge_percent",
            None,
            ups.charge_percent,
            &limits.ups_charge_percent,
        );
    }
    out
}

impl From<&Breach> for ThresholdChange {
    fn from(breach: &Breach) -> ThresholdChange {
        ThresholdChange {
            metric: breach.metric.to_string(),
            subject: breach.subject.clone(),
            value: breach.value,
            limit: breach.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DocsisChannel;

    #[test]
    fn an_absurd_uptime_saturates_instead_of_overflowing() {
        // Found by the snmp_values fuzz target: sysUpTime sent as a Counter64.
        assert!(rebooted(u64::MAX, 5, Duration::from_secs(60)));
        assert!(!rebooted(u64::MAX, u64::MAX, Duration::from_secs(60)));
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn plain_increase() {
        assert_eq!(
            counter_delta(Counter::C32(100), Counter::C32(150)),
            Some(50)
        );
        assert_eq!(
            rate(Counter::C64(0), Counter::C64(6000), MINUTE, None),
            Some(100.0)
        );
    }

    #[test]
    fn counter32_wraps_once() {
        let before = Counter::C32(u32::MAX - 99);
        let after = Counter::C32(400);
        assert_eq!(counter_delta(before, after), Some(500));
        // 100 Mbit/s cannot wrap 2^32 bytes twice in a minute: the wrap is trusted.
        let r = rate(before, after, MINUTE, octet_ceiling(Some(100_000_000)));
        assert_eq!(r.map(round2), Some(8.33));
    }

    #[test]
    fn counter32_wrap_on_a_fast_link_is_ambiguous() {
        // 10 Gbit/s can wrap a 32-bit octet counter in 3.4 s: after a minute, no rate.
        let r = rate(
            Counter::C32(u32::MAX - 10),
            Counter::C32(10),
            MINUTE,
            octet_ceiling(Some(10_000_000_000)),
        );
        assert_eq!(r, None);
    }

    #[test]
    fn counter64_going_backwards_is_a_discontinuity() {
        assert_eq!(counter_delta(Counter::C64(1_000), Counter::C64(10)), None);
        assert_eq!(
            rate(Counter::C64(1_000), Counter::C64(10), MINUTE, None),
            None
        );
    }

    #[test]
    fn mixed_widths_are_not_compared() {
        assert_eq!(counter_delta(Counter::C32(1), Counter::C64(2)), None);
    }

    #[test]
    fn rates_above_the_link_speed_are_glitches() {
        // 1 Gbit/s link: 125 MB/s; 10 GB in a minute is not believable.
        let r = rate(
            Counter::C64(0),
            Counter::C64(10_000_000_000),
            MINUTE,
            octet_ceiling(Some(1_000_000_000)),
        );
        assert_eq!(r, None);
        let r = rate(
            Counter::C64(0),
            Counter::C64(1_000_000_000),
            MINUTE,
            octet_ceiling(Some(1_000_000_000)),
        );
        assert!(r.is_some());
    }

    #[test]
    fn zero_elapsed_gives_no_rate() {
        assert_eq!(
            rate(Counter::C64(0), Counter::C64(5), Duration::ZERO, None),
            None
        );
    }

    #[test]
    fn uptime_going_back_is_a_reboot() {
        assert!(!rebooted(100_000, 106_000, MINUTE));
        assert!(rebooted(100_000, 500, MINUTE));
        // An agent restart that happens to land near the old value still counts.
        assert!(rebooted(100_000, 99_000, MINUTE));
    }

    #[test]
    fn uptime_wrapping_after_497_days_is_not_a_reboot() {
        let near_top = WRAP_32 - 1_000;
        // 60 s later: 6000 ticks on, i.e. 5000 past the wrap.
        assert!(!rebooted(near_top, 5_000, MINUTE));
        assert!(!rebooted(near_top, 5_300, MINUTE));
        // Far from where the wrap would land: a real reboot.
        assert!(rebooted(near_top, 200_000, MINUTE));
    }

    fn link(oper: u64, in_octets: u64) -> InterfaceReading {
        InterfaceReading {
            name: Some("ether1".into()),
            admin_up: Some(true),
            oper_status: Some(oper),
            speed_bps: Some(1_000_000_000),
            in_octets: Some(Counter::C64(in_octets)),
            out_octets: Some(Counter::C32(10)),
            ..InterfaceReading::default()
        }
    }

    fn reading(uptime: u64, interface: InterfaceReading) -> Reading {
        Reading {
            uptime_ticks: Some(uptime),
            interfaces: [(1, interface)].into_iter().collect(),
            ..Reading::default()
        }
    }

    #[test]
    fn evaluate_gives_bit_rates_and_no_rates_on_the_first_poll() {
        let first = reading(1_000, link(1, 0));
        let (body, changes) = evaluate(None, &first, MINUTE);
        assert_eq!(body.interfaces[0].in_bps, None);
        assert!(changes.is_empty());
        let second = reading(7_000, link(1, 750_000));
        let (body, _) = evaluate(Some(&first), &second, MINUTE);
        assert_eq!(body.interfaces[0].in_bps, Some(100_000.0));
        assert_eq!(body.interfaces[0].out_bps, Some(0.0));
        assert!(!body.rebooted);
    }

    #[test]
    fn a_reboot_suppresses_the_counter_spike() {
        let before = reading(9_000_000, link(1, 5_000_000_000));
        let after = reading(3_000, link(1, 1_000));
        let (body, changes) = evaluate(Some(&before), &after, MINUTE);
        assert!(body.rebooted);
        assert_eq!(
            changes,
            vec![Change::Rebooted {
                uptime_ticks: 3_000
            }]
        );
        assert_eq!(body.interfaces[0].in_bps, None, "no rate across a reboot");
    }

    #[test]
    fn interface_transitions_are_events_but_admin_down_is_not_an_outage() {
        let up = reading(1_000, link(1, 0));
        let down = reading(7_000, link(2, 0));
        let (_, changes) = evaluate(Some(&up), &down, MINUTE);
        assert_eq!(
            changes,
            vec![Change::InterfaceDown {
                index: 1,
                name: Some("ether1".into())
            }]
        );
        let (_, changes) = evaluate(Some(&down), &reading(13_000, link(1, 0)), MINUTE);
        assert!(matches!(
            changes[..],
            [Change::InterfaceUp { index: 1, .. }]
        ));
        let mut shut = link(2, 0);
        shut.admin_up = Some(false);
        let (_, changes) = evaluate(Some(&up), &reading(7_000, shut), MINUTE);
        assert!(changes.is_empty());
    }

    #[test]
    fn docsis_codeword_ratio_over_the_interval() {
        let mut before = reading(1_000, link(1, 0));
        before.docsis = Some(Docsis::default());
        before.codewords = Some((Counter::C32(1_000), Counter::C32(10)));
        let mut after = before.clone();
        after.uptime_ticks = Some(7_000);
        after.codewords = Some((Counter::C32(2_000), Counter::C32(15)));
        let (body, _) = evaluate(Some(&before), &after, MINUTE);
        assert_eq!(body.docsis.and_then(|d| d.uncorrectable_ratio), Some(0.005));
    }

    #[test]
    fn a_crossing_is_told_once_and_its_end_once() {
        let breach = |metric, subject: Option<&str>, value| Breach {
            metric,
            subject: subject.map(str::to_string),
            value,
            limit: 90.0,
        };
        let mut crossed = Crossed::default();
        let cpu = breach("cpu_percent", None, 95.0);
        let disk = breach("storage_percent", Some("/"), 97.0);
        assert_eq!(
            crossed.update(vec![cpu.clone()]),
            vec![Change::ThresholdCrossed(cpu.clone())]
        );
        // Still over the limit (at another value): nothing new to tell.
        let cpu_later = breach("cpu_percent", None, 99.0);
        assert_eq!(
            crossed.update(vec![cpu_later.clone(), disk.clone()]),
            vec![Change::ThresholdCrossed(disk.clone())]
        );
        // The CPU comes back: cleared with the last value seen over the limit.
        assert_eq!(
            crossed.update(vec![disk.clone()]),
            vec![Change::ThresholdCleared(cpu_later)]
        );
        assert_eq!(
            crossed.update(Vec::new()),
            vec![Change::ThresholdCleared(disk)]
        );
        assert_eq!(crossed.update(Vec::new()), Vec::new());
    }

    #[test]
    fn breaches_name_metric_subject_and_the_bound() {
        let body = Body {
            cpu_percent: Some(97.0),
            docsis: Some(Docsis {
                downstream: vec![DocsisChannel {
                    channel: 3,
                    power_dbmv: Some(-16.5),
                    snr_db: Some(38.0),
                }],
                upstream: vec![DocsisChannel {
                    channel: 2,
                    power_dbmv: Some(44.0),
                    snr_db: None,
                }],
                uncorrectable_ratio: None,
            }),
            ..Body::default()
        };
        let found = breaches(&body, &crate::config::Thresholds::default());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].metric, found[0].limit), ("cpu_percent", 90.0));
        assert_eq!(found[1].metric, "docsis_downstream_power_dbmv");
        assert_eq!(found[1].subject.as_deref(), Some("downstream 3"));
        assert_eq!(found[1].limit, -15.0);
        let none = crate::config::Thresholds {
            cpu_percent: crate::config::Limit::default(),
            ..Default::default()
        };
        assert_eq!(breaches(&body, &none).len(), 1);
    }
}
