//! The health driver: a task on the tokio runtime that applies passive-health events and
//! timers to the pool, with or without traffic.

use crate::balance::Shared;
use crate::policy::Policy;
use crate::EndpointStats;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, watch};
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
    mut events: mpsc::UnboundedReceiver<HealthEvent>,
    mut stop: watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug,
    P: Policy,
    L: Layer<S>,
    L::Service: Clone,
{
    let mut next_decay = Instant::now();
    loop {
        let Some(deadline) = shared.upgrade().map(|shared| {
            let ejection_end = shared.inspect(|members| members.next_ejection_end());
            ejection_end.map_or(next_decay, |end| end.min(next_decay))
        }) else {
            return;
        };
        tokio::select! {
            _ = stop.changed() => return,
            event = events.recv() => {
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
            _ = tokio::time::sleep_until(deadline) => {
                let Some(shared) = shared.upgrade() else { return };
                let outlier = &shared.health.outlier;
                let now = Instant::now();
                if now >= next_decay {
                    next_decay = now + outlier.base_ejection.max(std::time::Duration::from_millis(1));
                }
                shared.update(|members| {
                    members.decay_ejections(outlier, now);
                    members.end_ejections(now)
                });
            }
        }
    }
}
