//! The immutable view of the pool that every pick reads.
//!
//! Membership and health changes are rare and picks are constant, so the two are split: a
//! change builds a whole new [`Snapshot`] (eligible endpoints, endpoints on probation, and the
//! policy's precomputed table) under the membership lock and publishes it with `arc-swap`; a
//! pick loads the current snapshot without a lock and never sees a half-applied change.

use super::members::{Member, Members};
use super::state::EndpointState;
use crate::endpoint::EndpointStats;
use crate::policy::Policy;
use std::sync::Arc;

pub(crate) struct Snapshot<K, S, T> {
    /// Eligible endpoints first (`..eligible`), then endpoints on probation (in panic mode
    /// these are eligible as well, and listed twice).
    pub(crate) keys: Box<[K]>,
    pub(crate) services: Box<[S]>,
    pub(crate) stats: Box<[Arc<EndpointStats>]>,
    pub(crate) eligible: usize,
    /// `None` exactly when no endpoint is eligible: policies are never asked about an empty set.
    pub(crate) table: Option<T>,
    /// Endpoints in the pool, eligible or not (draining ones aside).
    pub(crate) members: usize,
}

type Entry<'a, K, S> = (&'a K, &'a S, &'a Arc<EndpointStats>);

impl<K, S, R> Member<K, S, R> {
    fn entry(&self) -> Entry<'_, K, S> {
        (self.key(), &self.service, self.stats())
    }
}

impl<K: Clone + std::fmt::Debug, S: Clone, R> Members<K, S, R> {
    /// The snapshot of the current members: healthy ones are eligible, others are not, ones
    /// on probation are offered for their one probe. When fewer than `panic_threshold` of the
    /// members are healthy, all of them are eligible (panic mode). Excluded members are never
    /// eligible and do not count towards the threshold: an exclusion is a decision, not a
    /// health signal that might be wrong.
    pub(super) fn snapshot<P: Policy>(
        &mut self,
        policy: &P,
        panic_threshold: f64,
    ) -> Snapshot<K, S, P::Table> {
        let members = self.active().len();
        let in_play = || self.active().iter().filter(|m| m.excluded().is_none());
        let total = in_play().count();
        let healthy = in_play().filter(|m| m.is_healthy()).count();
        let panicking = total > 0 && (healthy as f64) < panic_threshold * total as f64;
        if panicking != self.panicking {
            self.panicking = panicking;
            if panicking {
                self.panics += 1;
                tracing::warn!(
                    healthy,
                    total,
                    panic_threshold,
                    "panic mode: too few healthy endpoints, balancing over all of them"
                );
            } else {
                tracing::info!(healthy, total, "panic mode over");
            }
        }
        let in_play = self.active().iter().filter(|m| m.excluded().is_none());
        // Endpoints on probation are offered their one probe before any pick, in panic mode
        // too: there they are also eligible, but a latency-aware policy may shun them (the
        // failure penalty) and leave them on probation indefinitely.
        let probation = in_play
            .clone()
            .filter(|m| m.state() == EndpointState::Probation)
            .map(Member::entry)
            .collect();
        let eligible = match panicking {
            true => in_play.map(Member::entry).collect(),
            false => in_play
                .filter(|m| m.is_healthy())
                .map(Member::entry)
                .collect(),
        };
        Snapshot::build(policy, eligible, probation, members)
    }
}

impl<K, S, T> Snapshot<K, S, T> {
    fn build<'a, P>(
        policy: &P,
        eligible: Vec<Entry<'a, K, S>>,
        probation: Vec<Entry<'a, K, S>>,
        members: usize,
    ) -> Self
    where
        P: Policy<Table = T>,
        K: Clone + 'a,
        S: Clone + 'a,
    {
        let eligible_count = eligible.len();
        let n = eligible_count + probation.len();
        let (mut keys, mut services, mut stats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (key, service, stat) in eligible.into_iter().chain(probation) {
            keys.push(key.clone());
            services.push(service.clone());
            stats.push(Arc::clone(stat));
        }
        let table = (eligible_count > 0).then(|| policy.table(&stats[..eligible_count]));
        Snapshot {
            keys: keys.into(),
            services: services.into(),
            stats: stats.into(),
            eligible: eligible_count,
            table,
            members,
        }
    }
}
