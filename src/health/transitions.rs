//! Passive health transitions, applied to the member list under the membership lock.
//!
//! Pure state changes with the time passed in, so that ejection timing, the ejection cap and
//! probation are unit-tested on a paused clock; the driver decides when to call them.

use super::{ActiveChecks, EndpointState, Outlier};
use crate::membership::Members;
use crate::EndpointStats;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use tokio::time::Instant;

impl<K: Eq + Hash + Debug, S> Members<K, S> {
    fn position(&self, stats: &Arc<EndpointStats>) -> Option<usize> {
        self.active
            .iter()
            .position(|m| Arc::ptr_eq(&m.stats, stats))
    }

    /// Endpoints out of rotation for passive-health reasons (ejected or on probation).
    fn ejected(&self) -> usize {
        self.active
            .iter()
            .filter(|m| {
                matches!(
                    m.health.state,
                    EndpointState::Ejected { .. } | EndpointState::Probation
                )
            })
            .count()
    }

    /// An endpoint reached the consecutive-failure threshold: ejects it, unless the cap on
    /// ejected endpoints is reached. Returns whether anything changed.
    pub(crate) fn outlier(
        &mut self,
        stats: &Arc<EndpointStats>,
        outlier: &Outlier,
        now: Instant,
        jitter: f64,
    ) -> bool {
        let Some(i) = self.position(stats) else {
            return false; // removed meanwhile
        };
        if !self.active[i].health.is_healthy() {
            return false;
        }
        if self.ejected() >= outlier.max_ejected(self.active.len()) {
            tracing::info!(endpoint = ?self.active[i].key, failures = stats.consecutive_failures(),
                "outlier not ejected: the cap on ejected endpoints is reached");
            stats.clear_health(); // count again from zero
            return false;
        }
        self.eject(i, outlier, now, jitter, "consecutive failures");
        true
    }

    fn eject(&mut self, i: usize, outlier: &Outlier, now: Instant, jitter: f64, reason: &str) {
        let member = &mut self.active[i];
        member.health.ejections = member.health.ejections.saturating_add(1);
        member.health.ejections_changed = now;
        let base = outlier.ejection_time(member.health.ejections);
        let until = now + base + base.mul_f64(outlier.jitter * jitter.clamp(0.0, 1.0));
        member.health.state = EndpointState::Ejected {
            until,
            ejections: member.health.ejections,
        };
        member.stats.clear_health();
        tracing::warn!(endpoint = ?member.key, ejections = member.health.ejections,
            for_ms = until.saturating_duration_since(now).as_millis() as u64, reason, "endpoint ejected");
    }

    /// The statistical detectors: looks at the calls each endpoint completed since the last
    /// sweep and ejects the outliers (within the ejection cap). Returns whether any was.
    pub(crate) fn sweep(&mut self, outlier: &Outlier, now: Instant, jitter: f64) -> bool {
        // Calls and failures per endpoint since the last sweep; only healthy endpoints count.
        let mut window = Vec::with_capacity(self.active.len());
        for (i, member) in self.active.iter_mut().enumerate() {
            let totals = (member.stats.ended(), member.stats.failures());
            let (calls, failures) = (
                totals.0 - member.health.swept.0,
                totals.1 - member.health.swept.1,
            );
            member.health.swept = totals;
            if member.health.is_healthy() {
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
                .filter(|(_, calls, _)| *calls >= detector.request_volume)
                .map(|&(i, calls, failures)| (i, 1.0 - failures as f64 / calls as f64))
                .collect();
            if rates.len() >= detector.minimum_hosts {
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
            if self.active[i].health.is_healthy()
                && self.ejected() < outlier.max_ejected(self.active.len())
            {
                self.eject(i, outlier, now, jitter, reason);
                changed = true;
            }
        }
        changed
    }

    /// Ejections that have ended become probation. Returns whether anything changed.
    pub(crate) fn end_ejections(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for member in &mut self.active {
            if let EndpointState::Ejected { until, .. } = member.health.state {
                if until <= now {
                    member.health.state = EndpointState::Probation;
                    member.stats.enter_probation();
                    tracing::info!(endpoint = ?member.key, "ejection over: endpoint on probation");
                    changed = true;
                }
            }
        }
        changed
    }

    /// The probation request completed: back in rotation, or ejected again for longer.
    pub(crate) fn probe_done(
        &mut self,
        stats: &Arc<EndpointStats>,
        succeeded: bool,
        outlier: &Outlier,
        now: Instant,
        jitter: f64,
    ) -> bool {
        let Some(i) = self.position(stats) else {
            return false;
        };
        if self.active[i].health.state != EndpointState::Probation {
            return false;
        }
        if succeeded {
            let member = &mut self.active[i];
            member.health.state = EndpointState::Healthy;
            // The count decays from now on, while it stays healthy.
            member.health.ejections_changed = now;
            member.stats.clear_health();
            tracing::info!(endpoint = ?member.key, "probation passed: endpoint restored");
            self.restored(i, now);
        } else {
            self.eject(i, outlier, now, jitter, "probation request failed");
        }
        true
    }

    /// Healthy endpoints' ejection counts fall by one per base ejection time spent healthy.
    pub(crate) fn decay_ejections(&mut self, outlier: &Outlier, now: Instant) {
        for member in &mut self.active {
            let health = &mut member.health;
            if health.is_healthy()
                && health.ejections > 0
                && now.saturating_duration_since(health.ejections_changed) >= outlier.base_ejection
            {
                health.ejections -= 1;
                health.ejections_changed = now;
            }
        }
    }

    /// An active check completed. Returns whether the pool changed.
    pub(crate) fn check_done<C>(
        &mut self,
        stats: &Arc<EndpointStats>,
        passed: bool,
        checks: &ActiveChecks<C>,
        now: Instant,
    ) -> bool {
        let Some(i) = self.position(stats) else {
            return false;
        };
        let member = &mut self.active[i];
        let health = &mut member.health;
        health.checking = false;
        if passed {
            health.checks_passed = health.checks_passed.saturating_add(1);
            health.checks_failed = 0;
            let restore = match health.state {
                EndpointState::Failing => health.checks_passed >= checks.rise,
                EndpointState::Ejected { .. } | EndpointState::Probation => true,
                _ => false,
            };
            if restore {
                tracing::info!(endpoint = ?member.key, from = ?health.state, "health check passed: endpoint restored");
                health.state = EndpointState::Healthy;
                member.stats.clear_health();
                self.restored(i, now);
            }
            restore
        } else {
            health.checks_failed = health.checks_failed.saturating_add(1);
            health.checks_passed = 0;
            let fail =
                health.checks_failed >= checks.fall && health.state != EndpointState::Failing;
            if fail {
                tracing::warn!(endpoint = ?member.key, failed = health.checks_failed, "health checks failing: endpoint out of rotation");
                health.state = EndpointState::Failing;
                member.stats.clear_health();
            }
            fail
        }
    }

    /// The endpoints whose check is due, marked as being checked and rescheduled.
    pub(crate) fn due_checks<C>(
        &mut self,
        now: Instant,
        checks: &ActiveChecks<C>,
    ) -> Vec<(K, Arc<EndpointStats>)>
    where
        K: Clone,
    {
        self.active
            .iter_mut()
            .filter(|m| !m.health.checking && m.health.next_check <= now)
            .map(|m| {
                m.health.checking = true;
                m.health.next_check = now + checks.next_interval(fastrand::f64());
                (m.key.clone(), Arc::clone(&m.stats))
            })
            .collect()
    }

    /// When the next active check is due.
    pub(crate) fn next_check(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter(|m| !m.health.checking)
            .map(|m| m.health.next_check)
            .min()
    }

    /// Moves slow-start ramps on. Returns whether any effective weight changed.
    pub(crate) fn ramp(&mut self, now: Instant) -> bool {
        let Some(slow) = self.slow_start else {
            return false;
        };
        let mut changed = false;
        for member in &mut self.active {
            let Some(from) = member.health.ramp_from else {
                continue;
            };
            let elapsed = now.saturating_duration_since(from);
            let weight = slow.weight(member.weight, elapsed);
            if weight != member.stats.effective_weight() {
                member.stats.set_effective_weight(weight);
                changed = true;
            }
            if elapsed >= slow.window {
                member.health.ramp_from = None;
                tracing::debug!(endpoint = ?member.key, "slow start over");
            }
        }
        changed
    }

    /// When a ramp next needs a step, if any endpoint is ramping.
    pub(crate) fn next_ramp_step(&self, now: Instant) -> Option<Instant> {
        let slow = self.slow_start?;
        self.active
            .iter()
            .any(|m| m.health.ramp_from.is_some())
            .then(|| now + slow.step())
    }

    /// Back in rotation: restarts the slow-start ramp.
    fn restored(&mut self, i: usize, now: Instant) {
        if let Some(slow) = self.slow_start {
            self.active[i].start_ramp(&slow, true, now);
        }
    }

    /// When the next ejection ends, if any does.
    pub(crate) fn next_ejection_end(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter_map(|m| match m.health.state {
                EndpointState::Ejected { until, .. } => Some(until),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{HealthSink, Pool};
    use std::time::Duration;

    fn members(
        n: usize,
    ) -> (
        Members<usize, ()>,
        tokio::sync::mpsc::UnboundedReceiver<super::super::driver::HealthEvent>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = Pool::new(
            None,
            false,
            Some(HealthSink {
                consecutive_failures: 5,
                events: tx,
            }),
        );
        let mut members = Members::new(pool);
        for i in 0..n {
            members.insert(i, (), 1);
        }
        (members, rx)
    }

    fn state(members: &Members<usize, ()>, i: usize) -> EndpointState {
        members.active[i].health.state
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_each_ejection_and_probation_decides() {
        let (mut m, _rx) = members(10);
        let outlier = Outlier::default();
        let stats = Arc::clone(&m.active[3].stats);
        let t0 = Instant::now();

        assert!(m.outlier(&stats, &outlier, t0, 0.0));
        assert_eq!(
            state(&m, 3),
            EndpointState::Ejected {
                until: t0 + Duration::from_secs(30),
                ejections: 1
            }
        );
        assert_eq!(m.next_ejection_end(), Some(t0 + Duration::from_secs(30)));

        assert!(!m.end_ejections(t0 + Duration::from_secs(29)));
        assert!(m.end_ejections(t0 + Duration::from_secs(30)));
        assert_eq!(state(&m, 3), EndpointState::Probation);
        assert!(stats.try_claim_probe(), "one probation request may go");
        assert!(!stats.try_claim_probe(), "and only one");

        // The probe fails: ejected again, for twice as long.
        let t1 = t0 + Duration::from_secs(31);
        assert!(m.probe_done(&stats, false, &outlier, t1, 0.0));
        assert_eq!(
            state(&m, 3),
            EndpointState::Ejected {
                until: t1 + Duration::from_secs(60),
                ejections: 2
            }
        );

        // Then it passes.
        let t2 = t1 + Duration::from_secs(60);
        assert!(m.end_ejections(t2));
        assert!(m.probe_done(&stats, true, &outlier, t2, 0.0));
        assert_eq!(state(&m, 3), EndpointState::Healthy);

        // Its ejection count decays while it stays healthy: 2 → 1 → 0, one per 30 s.
        m.decay_ejections(&outlier, t2 + Duration::from_secs(10));
        assert_eq!(m.active[3].health.ejections, 2);
        m.decay_ejections(&outlier, t2 + Duration::from_secs(30));
        assert_eq!(m.active[3].health.ejections, 1);
        m.decay_ejections(&outlier, t2 + Duration::from_secs(60));
        assert_eq!(m.active[3].health.ejections, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped_and_jittered() {
        let (mut m, _rx) = members(1);
        let outlier = Outlier::default();
        let stats = Arc::clone(&m.active[0].stats);
        let mut now = Instant::now();
        for _ in 0..12 {
            m.active[0].health.state = EndpointState::Healthy;
            assert!(m.outlier(&stats, &outlier, now, 1.0));
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
        let stats: Vec<_> = five.active.iter().map(|m| Arc::clone(&m.stats)).collect();
        assert!(
            five.outlier(&stats[0], &outlier, now, 0.0),
            "one may always be ejected"
        );
        assert!(
            !five.outlier(&stats[1], &outlier, now, 0.0),
            "10 % of 5 rounds down to the floor of one"
        );

        let (mut twenty, _rx) = members(20);
        let stats: Vec<_> = twenty.active.iter().map(|m| Arc::clone(&m.stats)).collect();
        assert!(twenty.outlier(&stats[0], &outlier, now, 0.0));
        assert!(twenty.outlier(&stats[1], &outlier, now, 0.0));
        assert!(!twenty.outlier(&stats[2], &outlier, now, 0.0));
        // Probation still counts against the cap.
        twenty.end_ejections(now + Duration::from_secs(31));
        assert!(!twenty.outlier(&stats[2], &outlier, now, 0.0));
    }

    /// Completes `calls` calls on member `i`, `failures` of them failed.
    fn complete(m: &Members<usize, ()>, i: usize, calls: u64, failures: u64) {
        let stats = &m.active[i].stats;
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
        assert!(m.sweep(&outlier, Instant::now(), 0.0));
        assert!(matches!(state(&m, 7), EndpointState::Ejected { .. }));
        assert_eq!(
            state(&m, 2),
            EndpointState::Healthy,
            "under the request volume"
        );
        // The next sweep only sees calls made since this one.
        assert!(!m.sweep(&outlier, Instant::now(), 0.0));
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
        assert!(m.sweep(&outlier, Instant::now(), 0.0));
        let ejected: Vec<usize> = (0..8)
            .filter(|&i| state(&m, i) != EndpointState::Healthy)
            .collect();
        assert_eq!(ejected, [4]);

        // Too few endpoints with enough calls: no judgement.
        let (mut few, _rx) = members(4);
        for i in 0..4 {
            complete(&few, i, 200, if i == 0 { 150 } else { 0 });
        }
        assert!(!few.sweep(&outlier, Instant::now(), 0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn checks_fall_after_three_failures_and_rise_after_two_passes() {
        let (mut m, _rx) = members(3);
        let checks = ActiveChecks::new(super::super::check_fn(|_: &usize| async {
            Ok::<_, std::io::Error>(())
        }));
        let stats = Arc::clone(&m.active[1].stats);
        assert!(!m.check_done(&stats, false, &checks, Instant::now()));
        assert!(!m.check_done(&stats, false, &checks, Instant::now()));
        assert_eq!(state(&m, 1), EndpointState::Healthy);
        assert!(
            m.check_done(&stats, false, &checks, Instant::now()),
            "the third failure takes it out"
        );
        assert_eq!(state(&m, 1), EndpointState::Failing);
        assert!(!m.check_done(&stats, true, &checks, Instant::now()));
        assert!(
            !m.check_done(&stats, false, &checks, Instant::now()),
            "a failure resets the rise count"
        );
        assert!(!m.check_done(&stats, true, &checks, Instant::now()));
        assert!(
            m.check_done(&stats, true, &checks, Instant::now()),
            "two passes in a row bring it back"
        );
        assert_eq!(state(&m, 1), EndpointState::Healthy);

        // A passed check ends an outlier ejection early.
        let now = Instant::now();
        assert!(m.outlier(&stats, &Outlier::default(), now, 0.0));
        assert!(m.check_done(&stats, true, &checks, Instant::now()));
        assert_eq!(state(&m, 1), EndpointState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn checks_are_scheduled_with_jitter_and_never_overlap() {
        let (mut m, _rx) = members(4);
        let checks = ActiveChecks::new(super::super::check_fn(|_: &usize| async {
            Ok::<_, std::io::Error>(())
        }))
        .every(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(
            m.due_checks(now, &checks).len(),
            4,
            "new endpoints are checked at once"
        );
        assert!(
            m.due_checks(now + Duration::from_secs(60), &checks)
                .is_empty(),
            "not while running"
        );
        let stats: Vec<_> = m.active.iter().map(|m| Arc::clone(&m.stats)).collect();
        for s in &stats {
            m.check_done(s, true, &checks, now);
        }
        let next = m.next_check().unwrap();
        assert!(
            next >= now + Duration::from_secs(9) && next <= now + Duration::from_secs(11),
            "{:?}",
            next - now
        );
    }
}
