//! What health keeps about each member, beside it in the pool.

use crate::pool;
use tokio::time::Instant;

/// Health's counters and timers for one member. The member's state itself is the pool's
/// (see [`pool::Members::set_state`]); this is what health needs to decide when to change it.
#[derive(Debug, Clone)]
pub(crate) struct MemberHealth {
    /// Ejections so far; decays by one per base ejection time spent healthy.
    pub(crate) ejections: u32,
    /// When `ejections` last changed.
    pub(crate) ejections_changed: Instant,
    /// Active checks passed and failed in a row.
    pub(crate) checks_passed: u32,
    pub(crate) checks_failed: u32,
    /// When the next active check is due, and whether one is running.
    pub(crate) next_check: Instant,
    pub(crate) checking: bool,
    /// Calls completed and failed at the last statistical sweep.
    pub(crate) swept: (u64, u64),
}

impl Default for MemberHealth {
    fn default() -> Self {
        MemberHealth {
            ejections: 0,
            ejections_changed: Instant::now(),
            checks_passed: 0,
            checks_failed: 0,
            next_check: Instant::now(),
            checking: false,
            swept: (0, 0),
        }
    }
}

/// The pool's member list, with health's record beside each member.
pub(crate) type Members<K, S> = pool::Members<K, S, MemberHealth>;

/// A pool of `n` members with health on, and the receiving end of its health reports.
#[cfg(test)]
pub(crate) fn test_members(
    n: usize,
) -> (
    Members<usize, ()>,
    tokio::sync::mpsc::UnboundedReceiver<crate::endpoint::HealthEvent>,
) {
    use crate::endpoint::{Accounting, HealthSink};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let accounting = Accounting::new(
        None,
        false,
        Some(HealthSink {
            consecutive_failures: 5,
            events: tx,
        }),
    );
    let mut members = Members::new(accounting, None);
    for i in 0..n {
        members.insert(i, (), 1);
    }
    (members, rx)
}

/// Member `i`'s state.
#[cfg(test)]
pub(crate) fn state(members: &Members<usize, ()>, i: usize) -> crate::pool::EndpointState {
    members.active()[i].state()
}
