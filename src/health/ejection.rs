//! Passive health transitions: outlier ejection, the statistical sweep, probation and the
//! decay of ejection counts.
//!
//! Health's own functions over the pool's members, with the time passed in, so that
//! ejection timing, the ejection cap and probation are unit-tested on a paused clock; the
//! driver decides when to call them, and every change of state goes through
//! [`Members::set_state`](crate::pool::Members::set_state).

use super::record::Members;
use super::Outlier;
use crate::endpoint::EndpointStats;
use crate::pool::EndpointState;
use crate::time::{deadline, scaled};
use std::fmt::Debug;
use std::sync::Arc;
use tokio::time::Instant;

/// Endpoints out of rotation for passive-health reasons (ejected or on probation).
fn ejected<K, S>(members: &Members<K, S>) -> usize {
    members
        .active()
        .iter()
        .filter(|m| {
            matches!(
                m.state(),
                EndpointState::Ejected { .. } | EndpointState::Probation
            )
        })
        .count()
}

/// An endpoint reached the consecutive-failure threshold: ejects it, unless the cap on
/// ejected endpoints is reached. Returns whether anything changed.
pub(crate) fn eject_outlier<K: Eq + Debug, S>(
    members: &mut Members<K, S>,
    stats: &Arc<EndpointStats>,
    outlier: &Outlier,
    now: Instant,
    jitter: f64,
) -> bool {
    let Some(i) = members.index_of(stats) else {
        return false; // removed meanwhile
    };
    if !members.active()[i].is_healthy() {
        return false;
    }
    if ejected(members) >= outlier.max_ejected(members.active().len()) {
        tracing::info!(endpoint = ?members.active()[i].key(), failures = stats.consecutive_failures(),
            "outlier not ejected: the cap on ejected endpoints is reached");
        stats.clear_health(); // count again from zero
        return false;
    }
    eject(members, i, outlier, now, jitter, "consecutive failures")
}

/// An endpoint asked for no calls for `span` (`Retry-After`): holds it out of rotation for
/// that long, at most the longest ejection, within the cap on ejected endpoints. Not an
/// outlier: its ejection count (which lengthens later ejections) stays as it is. Returns
/// whether anything changed.
pub(crate) fn hold_off<K: Eq + Debug, S>(
    members: &mut Members<K, S>,
    stats: &Arc<EndpointStats>,
    span: std::time::Duration,
    outlier: &Outlier,
    now: Instant,
) -> bool {
    let Some(i) = members.index_of(stats) else {
        return false;
    };
    if !members.active()[i].is_healthy() || span.is_zero() {
        return false;
    }
    if ejected(members) >= outlier.max_ejected(members.active().len()) {
        tracing::info!(endpoint = ?members.active()[i].key(), ?span,
            "Retry-After not honoured: the cap on ejected endpoints is reached");
        return false;
    }
    let ejections = members.active()[i].record.ejections;
    let until = deadline(now, span.min(outlier.ejection_time(u32::MAX)));
    members.set_state(
        i,
        EndpointState::Ejected { until, ejections },
        "Retry-After",
        now,
    )
}

fn eject<K: Eq + Debug, S>(
    members: &mut Members<K, S>,
    i: usize,
    outlier: &Outlier,
    now: Instant,
    jitter: f64,
    reason: &'static str,
) -> bool {
    let record = &mut members.active_mut()[i].record;
    record.ejections = record.ejections.saturating_add(1);
    record.ejections_changed = now;
    let ejections = record.ejections;
    let base = outlier.ejection_time(ejections);
    let span = base.saturating_add(scaled(base, outlier.jitter * jitter.clamp(0.0, 1.0)));
    let until = deadline(now, span);
    members.set_state(i, EndpointState::Ejected { until, ejections }, reason, now)
}

/// The statistical detectors: looks at the calls each endpoint completed since the last
/// sweep and ejects the outliers (within the ejection cap). Returns whether any was.
pub(crate) fn sweep<K: Eq + Debug, S>(
    members: &mut Members<K, S>,
    outlier: &Outlier,
    now: Instant,
    jitter: f64,
) -> bool {
    // Calls and failures per endpoint since the last sweep; only healthy endpoints count.
    let mut window = Vec::with_capacity(members.active().len());
    for (i, member) in members.active_mut().iter_mut().enumerate() {
        let totals = (member.stats().ended(), member.stats().failures());
        let swept = member.record.swept;
        let (calls, failures) = (
            totals.0.saturating_sub(swept.0),
            totals.1.saturating_sub(swept.1),
        );
        member.record.swept = totals;
        if member.is_healthy() {
            window.push((i, calls, failures.min(calls)));
        }
    }
    let mut outliers = Vec::new();
    if let Some(detector) = &outlier.failure_percentage {
        let judged: Vec<_> = window
            .iter()
            .filter(|(_, calls, _)| *calls >= detector.request_volume)
            .collect();
        if judged.len() >= detector.minimum_hosts {
            outliers.extend(
                judged
                    .iter()
                    .filter(|(_, calls, failures)| {
                        *failures as f64 >= detector.threshold * *calls as f64
                    })
                    .map(|(i, ..)| (*i, "failure percentage")),
            );
        }
    }
    if let Some(detector) = &outlier.success_rate {
        let rates: Vec<(usize, f64)> = window
            .iter()
            .filter(|(_, calls, _)| *calls >= detector.request_volume && *calls > 0)
            .map(|&(i, calls, failures)| (i, 1.0 - failures as f64 / calls as f64))
            .collect();
        if !rates.is_empty() && rates.len() >= detector.minimum_hosts {
            let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / rates.len() as f64;
            let variance =
                rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
            let floor = mean - detector.stdev_factor * variance.sqrt();
            outliers.extend(
                rates
                    .iter()
                    .filter(|(_, r)| *r < floor)
                    .map(|(i, _)| (*i, "success rate")),
            );
        }
    }
    let mut changed = false;
    for (i, reason) in outliers {
        if members.active()[i].is_healthy()
            && ejected(members) < outlier.max_ejected(members.active().len())
        {
            changed |= eject(members, i, outlier, now, jitter, reason);
        }
    }
    changed
}

/// Ejections that have ended become probation. Returns whether anything changed.
pub(crate) fn end_ejections<K: Eq + Debug, S>(members: &mut Members<K, S>, now: Instant) -> bool {
    let mut changed = false;
    for i in 0..members.active().len() {
        if let EndpointState::Ejected { until, .. } = members.active()[i].state() {
            if until <= now {
                changed |= members.set_state(i, EndpointState::Probation, "ejection over", now);
            }
        }
    }
    changed
}

/// The probation request completed: back in rotation, or ejected again for longer.
pub(crate) fn probe_done<K: Eq + Debug, S>(
    members: &mut Members<K, S>,
    stats: &Arc<EndpointStats>,
    succeeded: bool,
    outlier: &Outlier,
    now: Instant,
    jitter: f64,
) -> bool {
    let Some(i) = members.index_of(stats) else {
        return false;
    };
    if members.active()[i].state() != EndpointState::Probation {
        return false;
    }
    if succeeded {
        // The count decays from now on, while it stays healthy.
        members.active_mut()[i].record.ejections_changed = now;
        members.set_state(i, EndpointState::Healthy, "probation passed", now)
    } else {
        eject(members, i, outlier, now, jitter, "probation request failed")
    }
}

/// Healthy endpoints' ejection counts fall by one per base ejection time spent healthy.
pub(crate) fn decay_ejections<K, S>(members: &mut Members<K, S>, outlier: &Outlier, now: Instant) {
    for member in members.active_mut() {
        let healthy = member.is_healthy();
        let record = &mut member.record;
        if healthy
            && record.ejections > 0
            && now.saturating_duration_since(record.ejections_changed) >= outlier.base_ejection
        {
            record.ejections -= 1;
            record.ejections_changed = now;
        }
    }
}

/// When the next ejection ends, if any does.
pub(crate) fn next_ejection_end<K, S>(members: &Members<K, S>) -> Option<Instant> {
    members
        .active()
        .iter()
        .filter_map(|m| match m.state() {
            EndpointState::Ejected { until, .. } => Some(until),
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::record::{state, test_members as members};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_each_ejection_and_probation_decides() {
        let (mut m, _rx) = members(10);
        let outlier = Outlier::default();
        let stats = Arc::clone(m.active()[3].stats());
        let t0 = Instant::now();

        assert!(eject_outlier(&mut m, &stats, &outlier, t0, 0.0));
        assert_eq!(
            state(&m, 3),
            EndpointState::Ejected {
                until: t0 + Duration::from_secs(30),
                ejections: 1
            }
        );
        assert_eq!(next_ejection_end(&m), Some(t0 + Duration::from_secs(30)));

        assert!(!end_ejections(&mut m, t0 + Duration::from_secs(29)));
        assert!(end_ejections(&mut m, t0 + Duration::from_secs(30)));
        assert_eq!(state(&m, 3), EndpointState::Probation);
        assert!(stats.try_claim_probe(), "one probation request may go");
        assert!(!stats.try_claim_probe(), "and only one");

        // The probe fails: ejected again, for twice as long.
        let t1 = t0 + Duration::from_secs(31);
        assert!(probe_done(&mut m, &stats, false, &outlier, t1, 0.0));
        assert_eq!(
            state(&m, 3),
            EndpointState::Ejected {
                until: t1 + Duration::from_secs(60),
                ejections: 2
            }
        );

        // Then it passes.
        let t2 = t1 + Duration::from_secs(60);
        assert!(end_ejections(&mut m, t2));
        assert!(probe_done(&mut m, &stats, true, &outlier, t2, 0.0));
        assert_eq!(state(&m, 3), EndpointState::Healthy);

        // Its ejection count decays while it stays healthy: 2 → 1 → 0, one per 30 s.
        decay_ejections(&mut m, &outlier, t2 + Duration::from_secs(10));
        assert_eq!(m.active()[3].record.ejections, 2);
        decay_ejections(&mut m, &outlier, t2 + Duration::from_secs(30));
        assert_eq!(m.active()[3].record.ejections, 1);
        decay_ejections(&mut m, &outlier, t2 + Duration::from_secs(60));
        assert_eq!(m.active()[3].record.ejections, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped_and_jittered() {
        let (mut m, _rx) = members(1);
        let outlier = Outlier::default();
        let stats = Arc::clone(m.active()[0].stats());
        let mut now = Instant::now();
        for _ in 0..12 {
            m.set_state(0, EndpointState::Healthy, "test", now);
            assert!(eject_outlier(&mut m, &stats, &outlier, now, 1.0));
            now += Duration::from_secs(1);
        }
        let EndpointState::Ejected { until, ejections } = state(&m, 0) else {
            panic!()
        };
        assert_eq!(ejections, 12);
        // 300 s cap, plus the full 10 % jitter drawn here (1.0).
        assert_eq!(
            until - (now - Duration::from_secs(1)),
            Duration::from_secs(330)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_ten_percent_are_ejected_but_always_one() {
        let outlier = Outlier::default();
        let now = Instant::now();

        let (mut five, _rx) = members(5);
        let stats: Vec<_> = five
            .active()
            .iter()
            .map(|m| Arc::clone(m.stats()))
            .collect();
        assert!(
            eject_outlier(&mut five, &stats[0], &outlier, now, 0.0),
            "one may always be ejected"
        );
        assert!(
            !eject_outlier(&mut five, &stats[1], &outlier, now, 0.0),
            "10 % of 5 rounds down to the floor of one"
        );

        let (mut twenty, _rx) = members(20);
        let stats: Vec<_> = twenty
            .active()
            .iter()
            .map(|m| Arc::clone(m.stats()))
            .collect();
        assert!(eject_outlier(&mut twenty, &stats[0], &outlier, now, 0.0));
        assert!(eject_outlier(&mut twenty, &stats[1], &outlier, now, 0.0));
        assert!(!eject_outlier(&mut twenty, &stats[2], &outlier, now, 0.0));
        // Probation still counts against the cap.
        end_ejections(&mut twenty, now + Duration::from_secs(31));
        assert!(!eject_outlier(&mut twenty, &stats[2], &outlier, now, 0.0));
    }

    /// Completes `calls` calls on member `i`, `failures` of them failed.
    fn complete(m: &Members<usize, ()>, i: usize, calls: u64, failures: u64) {
        let stats = m.active()[i].stats();
        for n in 0..calls {
            stats.start_call(|| 0);
            stats.complete_call(0, n >= failures);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failure_percentage_ejects_the_endpoint_that_fails_most() {
        let (mut m, _rx) = members(10);
        let outlier = Outlier::disabled()
            .failure_percentage(50)
            .max_ejected_percent(20);
        for i in 0..10 {
            complete(&m, i, 60, if i == 7 { 40 } else { 3 });
        }
        complete(&m, 2, 10, 10); // fails everything, but too few calls to judge
        assert!(sweep(&mut m, &outlier, Instant::now(), 0.0));
        assert!(matches!(state(&m, 7), EndpointState::Ejected { .. }));
        assert_eq!(
            state(&m, 2),
            EndpointState::Healthy,
            "under the request volume"
        );
        // The next sweep only sees calls made since this one.
        assert!(!sweep(&mut m, &outlier, Instant::now(), 0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_ejects_endpoints_far_below_the_mean() {
        let (mut m, _rx) = members(8);
        let outlier = Outlier::disabled()
            .success_rate(1.9)
            .max_ejected_percent(50);
        for i in 0..8 {
            complete(&m, i, 200, if i == 4 { 60 } else { 2 + i as u64 });
        }
        assert!(sweep(&mut m, &outlier, Instant::now(), 0.0));
        let ejected: Vec<usize> = (0..8)
            .filter(|&i| state(&m, i) != EndpointState::Healthy)
            .collect();
        assert_eq!(ejected, [4]);

        // Too few endpoints with enough calls: no judgement.
        let (mut few, _rx) = members(4);
        for i in 0..4 {
            complete(&few, i, 200, if i == 0 { 150 } else { 0 });
        }
        assert!(!sweep(&mut few, &outlier, Instant::now(), 0.0));
    }
}
