//! Active-check transitions: which checks are due, and what a result does to its endpoint
//! (rise and fall counts).

use super::record::Members;
use super::ActiveChecks;
use crate::endpoint::EndpointStats;
use crate::pool::EndpointState;
use crate::time::deadline;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::time::Instant;

/// An active check completed. Returns whether the pool changed.
pub(crate) fn check_done<K: Eq + Debug, S, C>(
    members: &mut Members<K, S>,
    stats: &Arc<EndpointStats>,
    passed: bool,
    checks: &ActiveChecks<C>,
    now: Instant,
) -> bool {
    let Some(i) = members.index_of(stats) else {
        return false;
    };
    let member = &mut members.active_mut()[i];
    let state = member.state();
    let record = &mut member.record;
    record.checking = false;
    if passed {
        record.checks_passed = record.checks_passed.saturating_add(1);
        record.checks_failed = 0;
        let restore = match state {
            EndpointState::Failing => record.checks_passed >= checks.rise,
            EndpointState::Ejected { .. } | EndpointState::Probation => true,
            _ => false,
        };
        restore && members.set_state(i, EndpointState::Healthy, "health check passed", now)
    } else {
        record.checks_failed = record.checks_failed.saturating_add(1);
        record.checks_passed = 0;
        let fail = record.checks_failed >= checks.fall && state != EndpointState::Failing;
        fail && members.set_state(i, EndpointState::Failing, "health checks failing", now)
    }
}

/// The endpoints whose check is due, marked as being checked and rescheduled.
pub(crate) fn due_checks<K: Clone, S, C>(
    members: &mut Members<K, S>,
    now: Instant,
    checks: &ActiveChecks<C>,
) -> Vec<(K, Arc<EndpointStats>)> {
    members
        .active_mut()
        .iter_mut()
        .filter(|m| !m.record.checking && m.record.next_check <= now)
        .map(|m| {
            m.record.checking = true;
            m.record.next_check = deadline(now, checks.next_interval(fastrand::f64()));
            (m.key().clone(), Arc::clone(m.stats()))
        })
        .collect()
}

/// When the next active check is due.
pub(crate) fn next_check<K, S>(members: &Members<K, S>) -> Option<Instant> {
    members
        .active()
        .iter()
        .filter(|m| !m.record.checking)
        .map(|m| m.record.next_check)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ejection::eject_outlier;
    use crate::health::record::{state, test_members as members};
    use crate::health::Outlier;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn checks_fall_after_three_failures_and_rise_after_two_passes() {
        let (mut m, _rx) = members(3);
        let checks = ActiveChecks::new(crate::health::check_fn(|_: &usize| async {
            Ok::<_, std::io::Error>(())
        }));
        let stats = Arc::clone(m.active()[1].stats());
        assert!(!check_done(&mut m, &stats, false, &checks, Instant::now()));
        assert!(!check_done(&mut m, &stats, false, &checks, Instant::now()));
        assert_eq!(state(&m, 1), EndpointState::Healthy);
        assert!(
            check_done(&mut m, &stats, false, &checks, Instant::now()),
            "the third failure takes it out"
        );
        assert_eq!(state(&m, 1), EndpointState::Failing);
        assert!(!check_done(&mut m, &stats, true, &checks, Instant::now()));
        assert!(
            !check_done(&mut m, &stats, false, &checks, Instant::now()),
            "a failure resets the rise count"
        );
        assert!(!check_done(&mut m, &stats, true, &checks, Instant::now()));
        assert!(
            check_done(&mut m, &stats, true, &checks, Instant::now()),
            "two passes in a row bring it back"
        );
        assert_eq!(state(&m, 1), EndpointState::Healthy);

        // A passed check ends an outlier ejection early.
        let now = Instant::now();
        assert!(eject_outlier(&mut m, &stats, &Outlier::default(), now, 0.0));
        assert!(check_done(&mut m, &stats, true, &checks, Instant::now()));
        assert_eq!(state(&m, 1), EndpointState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn checks_are_scheduled_with_jitter_and_never_overlap() {
        let (mut m, _rx) = members(4);
        let checks = ActiveChecks::new(crate::health::check_fn(|_: &usize| async {
            Ok::<_, std::io::Error>(())
        }))
        .every(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(
            due_checks(&mut m, now, &checks).len(),
            4,
            "new endpoints are checked at once"
        );
        assert!(
            due_checks(&mut m, now + Duration::from_secs(60), &checks).is_empty(),
            "not while running"
        );
        let stats: Vec<_> = m.active().iter().map(|m| Arc::clone(m.stats())).collect();
        for s in &stats {
            check_done(&mut m, s, true, &checks, now);
        }
        let next = next_check(&m).unwrap();
        assert!(
            next >= now + Duration::from_secs(9) && next <= now + Duration::from_secs(11),
            "{:?}",
            next - now
        );
    }
}
