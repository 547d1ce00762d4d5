//! The health driver: a task on the tokio runtime that applies passive-health events, runs
//! active checks and fires the health timers, with or without traffic.

use super::ActiveChecks;
use crate::balance::Shared;
use crate::policy::Policy;
use crate::EndpointStats;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_layer::Layer;

/// What the response path reports.
#[derive(Debug)]
pub(crate) enum HealthEvent {
    /// The endpoint reached the consecutive-failure threshold.
    Outlier(Arc<EndpointStats>),
    /// The endpoint's probation request completed.
    ProbeDone {
        endpoint: Arc<EndpointStats>,
        succeeded: bool,
    },
}

/// Runs until the balancer is dropped.
pub(crate) async fn drive<K, S, P, L, C>(
    shared: Weak<Shared<K, S, P, L, C>>,
    mut events: Option<mpsc::UnboundedReceiver<HealthEvent>>,
    checks: Option<ActiveChecks<K>>,
    mut stop: watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug + Send + 'static,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    let mut running: JoinSet<(Arc<EndpointStats>, bool)> = JoinSet::new();
    let mut next_decay = Instant::now();
    let mut next_sweep = Instant::now();
    loop {
        let Some(deadline) = shared.upgrade().map(|shared| {
            let now = Instant::now();
            let (ejection_end, next_check, ramp_step) = shared.inspect(|members| {
                (
                    members.next_ejection_end(),
                    checks.as_ref().and_then(|_| members.next_check()),
                    members.next_ramp_step(now),
                )
            });
            [ejection_end, next_check, ramp_step]
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
                let (Some(event), Some(shared)) = (event, shared.upgrade()) else { return };
                let outlier = &shared.health.outlier;
                let now = Instant::now();
                shared.update(|members| match &event {
                    HealthEvent::Outlier(endpoint) => {
                        members.outlier(endpoint, outlier, now, fastrand::f64())
                    }
                    HealthEvent::ProbeDone { endpoint, succeeded } => {
                        members.probe_done(endpoint, *succeeded, outlier, now, fastrand::f64())
                    }
                });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let (Ok((endpoint, passed)), Some(shared), Some(checks)) = (done, shared.upgrade(), &checks) else {
                    continue;
                };
                shared.update(|members| members.check_done(&endpoint, passed, checks, Instant::now()));
            }
            _ = tokio::time::sleep_until(deadline) => {
                let Some(shared) = shared.upgrade() else { return };
                let outlier = &shared.health.outlier;
                let now = Instant::now();
                if now >= next_decay {
                    next_decay = now + outlier.base_ejection.max(Duration::from_millis(1));
                }
                let sweep = now >= next_sweep;
                if sweep {
                    next_sweep = now + outlier.interval;
                }
                shared.update(|members| {
                    members.decay_ejections(outlier, now);
                    let swept = sweep && outlier.sweeps() && members.sweep(outlier, now, fastrand::f64());
                    let ramped = members.ramp(now);
                    members.end_ejections(now) | ramped | swept
                });
                if let Some(checks) = &checks {
                    for (key, endpoint) in shared.with_members(|members| members.due_checks(now, checks)) {
                        let check = checks.check.check(&key);
                        let timeout = checks.timeout;
                        running.spawn(async move {
                            let passed = match tokio::time::timeout(timeout, check).await {
                                Ok(Ok(())) => true,
                                Ok(Err(error)) => {
                                    tracing::debug!(endpoint = ?key, %error, "health check failed");
                                    false
                                }
                                Err(_) => {
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
