//! The health driver: a task on the tokio runtime that applies passive-health events, runs
//! active checks and fires the health timers, with or without traffic.
//!
//! It holds a `Weak` handle to the pool and a stop signal; the loop decides *when* (an
//! event arrived, a check finished, a timer fired), the transitions in `ejection` and
//! `checking` decide *what*, and the pool publishes.

use super::checking::{check_done, due_checks, next_check};
use super::ejection::{
    decay_ejections, eject_outlier, end_ejections, hold_off, next_ejection_end, probe_done, sweep,
};
use super::{ActiveChecks, MemberHealth, Outlier};
use crate::background::{answer_within, NoAnswer};
use crate::endpoint::{EndpointStats, HealthEvent};
use crate::policy::Policy;
use crate::pool::Pool;
use crate::time::deadline;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The pool the health driver acts on.
pub(crate) type HealthPool<K, S, P> = Pool<K, S, P, MemberHealth>;

/// Runs until the pool is dropped or the stop signal fires.
pub(crate) async fn drive<K, S, P>(
    pool: Weak<HealthPool<K, S, P>>,
    outlier: Outlier,
    mut events: Option<mpsc::UnboundedReceiver<HealthEvent>>,
    checks: Option<ActiveChecks<K>>,
    mut stop: watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug + Send + 'static,
    S: Clone,
    P: Policy,
{
    let mut running: JoinSet<(Arc<EndpointStats>, bool)> = JoinSet::new();
    let mut next_decay = Instant::now();
    let mut next_sweep = Instant::now();
    loop {
        let Some(wake_at) = pool.upgrade().map(|pool| {
            let now = Instant::now();
            let (ejection_end, check, ramp_step) = pool.inspect(|members| {
                (
                    next_ejection_end(members),
                    checks.as_ref().and_then(|_| next_check(members)),
                    members.next_ramp_step(now),
                )
            });
            [ejection_end, check, ramp_step]
                .into_iter()
                .flatten()
                .fold(next_decay, Instant::min)
                .min(next_sweep)
        }) else {
            return;
        };
        let event = async {
            match &mut events {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            event = event => {
                let (Some(event), Some(pool)) = (event, pool.upgrade()) else { return };
                let now = Instant::now();
                pool.update(|members| match &event {
                    HealthEvent::Outlier(endpoint) => {
                        eject_outlier(members, endpoint, &outlier, now, fastrand::f64())
                    }
                    HealthEvent::ProbeDone { endpoint, succeeded } => {
                        probe_done(members, endpoint, *succeeded, &outlier, now, fastrand::f64())
                    }
                    HealthEvent::HoldOff { endpoint, span } => {
                        hold_off(members, endpoint, *span, &outlier, now)
                    }
                });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let (Ok((endpoint, passed)), Some(pool), Some(checks)) = (done, pool.upgrade(), &checks) else {
                    continue;
                };
                pool.update(|members| check_done(members, &endpoint, passed, checks, Instant::now()));
            }
            _ = tokio::time::sleep_until(wake_at) => {
                let Some(pool) = pool.upgrade() else { return };
                let now = Instant::now();
                if now >= next_decay {
                    next_decay = deadline(now, outlier.base_ejection.max(Duration::from_millis(1)));
                }
                let sweeping = now >= next_sweep;
                if sweeping {
                    next_sweep = deadline(now, outlier.interval);
                }
                pool.update(|members| {
                    decay_ejections(members, &outlier, now);
                    let swept = sweeping && outlier.sweeps() && sweep(members, &outlier, now, fastrand::f64());
                    let ramped = members.ramp(now);
                    end_ejections(members, now) | ramped | swept
                });
                if let Some(checks) = &checks {
                    for (key, endpoint) in pool.with_members(|members| due_checks(members, now, checks)) {
                        // A check that panics fails, and the endpoint is checked again:
                        // uncaught, the panic would end the task without its result, and the
                        // endpoint would wait for that result forever.
                        let timeout = checks.timeout;
                        let answer = answer_within(timeout, || checks.check.check(&key));
                        running.spawn(async move {
                            let passed = match answer.await {
                                Ok(Ok(())) => true,
                                Ok(Err(error)) => {
                                    tracing::debug!(endpoint = ?key, %error, "health check failed");
                                    false
                                }
                                Err(NoAnswer::Panicked(panic)) => {
                                    tracing::warn!(endpoint = ?key, %panic, "health check panicked; counted as failed");
                                    false
                                }
                                Err(NoAnswer::TimedOut) => {
                                    tracing::debug!(endpoint = ?key, ?timeout, "health check timed out");
                                    false
                                }
                            };
                            (endpoint, passed)
                        });
                    }
                }
            }
        }
    }
}
