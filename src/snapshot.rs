//! The immutable view of the pool that every pick reads.
//!
//! Membership and health changes are rare and picks are constant, so the two are split: a
//! change builds a whole new [`Snapshot`] (eligible endpoints, endpoints on probation, and the
//! policy's precomputed table) under the membership lock and publishes it with `arc-swap`; a
//! pick loads the current snapshot without a lock and never sees a half-applied change.

use crate::{policy::Policy, EndpointStats};
use std::sync::Arc;

pub(crate) struct Snapshot<K, S, T> {
    /// Eligible endpoints first (`..eligible`), then endpoints on probation.
    pub(crate) keys: Box<[K]>,
    pub(crate) services: Box<[S]>,
    pub(crate) stats: Box<[Arc<EndpointStats>]>,
    pub(crate) eligible: usize,
    /// `None` exactly when no endpoint is eligible: policies are never asked about an empty set.
    pub(crate) table: Option<T>,
    /// Endpoints in the pool, eligible or not (draining ones aside).
    pub(crate) members: usize,
}

impl<K, S, T> Snapshot<K, S, T> {
    pub(crate) fn build<'a, P>(
        policy: &P,
        eligible: Vec<(&'a K, &'a S, &'a Arc<EndpointStats>)>,
        probation: Vec<(&'a K, &'a S, &'a Arc<EndpointStats>)>,
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
