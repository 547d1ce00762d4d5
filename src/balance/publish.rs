//! A balancer's metrics (feature `metrics`): the counts its endpoints keep anyway, published
//! by a background task every interval, so the request path pays nothing.

use crate::policy::Policy;
use crate::pool::{EndpointState, Pool};
use crate::telemetry::{self, Metrics};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Weak;

/// Publishes the pool's counts every `metrics.every` until the pool is dropped or `stop`
/// fires. Pool totals are counted from each endpoint's growth since the last round (so a
/// replaced endpoint, whose counters start afresh, adds what it did and never takes away).
pub(crate) async fn publish<K, S, P, R>(
    pool: Weak<Pool<K, S, P, R>>,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    K: Clone + Eq + Hash + Debug,
    S: Clone,
    P: Policy,
{
    telemetry::describe();
    let (picks, failures) = (
        metrics.counter(telemetry::PICKS, &[]),
        metrics.counter(telemetry::FAILURES, &[]),
    );
    let in_flight = metrics.gauge(telemetry::IN_FLIGHT, &[]);
    let state = |state: &str| metrics.gauge(telemetry::ENDPOINTS, &[("state", state.into())]);
    let (eligible, out_of_rotation) = (state("eligible"), state("out_of_rotation"));
    let panic_mode = metrics.gauge(telemetry::PANIC_MODE, &[]);
    // Each endpoint's picks and failures at the last round.
    let mut last: HashMap<K, (u64, u64)> = HashMap::new();
    let mut ticks = tokio::time::interval(metrics.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => {}
        }
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let endpoints = pool.endpoints();
        let (mut new_picks, mut new_failures, mut calls, mut in_rotation) = (0, 0, 0, 0);
        let mut seen = HashMap::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let (was_picks, was_failures) = last.get(&endpoint.key).copied().unwrap_or((0, 0));
            // Counters below their last value: a new endpoint under the same key.
            new_picks += grown(was_picks, endpoint.picks);
            new_failures += grown(was_failures, endpoint.failures);
            calls += endpoint.in_flight;
            let serving = endpoint.state == EndpointState::Healthy && endpoint.excluded.is_none();
            in_rotation += usize::from(serving);
            seen.insert(endpoint.key.clone(), (endpoint.picks, endpoint.failures));
            if let Some(label) = metrics.endpoint("endpoint", &endpoint.key) {
                let labels = [label];
                metrics
                    .counter(telemetry::PICKS, &labels)
                    .absolute(endpoint.picks);
                (metrics.counter(telemetry::FAILURES, &labels)).absolute(endpoint.failures);
                (metrics.gauge(telemetry::IN_FLIGHT, &labels)).set(endpoint.in_flight as f64);
            }
        }
        last = seen;
        picks.increment(new_picks);
        failures.increment(new_failures);
        in_flight.set(calls as f64);
        eligible.set(in_rotation as f64);
        out_of_rotation.set((endpoints.len() - in_rotation) as f64);
        panic_mode.set(if pool.panicking() { 1.0 } else { 0.0 });
    }
}

/// What a counter added since it read `was`; all of `now` if it started afresh.
fn grown(was: u64, now: u64) -> u64 {
    now.checked_sub(was).unwrap_or(now)
}
