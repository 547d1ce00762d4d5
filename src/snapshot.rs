//! The immutable view of the pool that every pick reads.
//!
//! Membership changes are rare and picks are constant, so the two are split: a change builds a
//! whole new [`Snapshot`] (endpoints plus the policy's precomputed table) under the membership
//! lock and publishes it with `arc-swap`; a pick loads the current snapshot without a lock and
//! without touching a shared reference count, and never sees a half-applied change.

use crate::{policy::Policy, EndpointStats};
use std::sync::Arc;

pub(crate) struct Snapshot<K, S, T> {
    pub(crate) keys: Box<[K]>,
    pub(crate) services: Box<[S]>,
    pub(crate) stats: Box<[Arc<EndpointStats>]>,
    /// `None` exactly when the snapshot is empty: policies are never asked about an empty pool.
    pub(crate) table: Option<T>,
}

impl<K, S, T> Snapshot<K, S, T> {
    pub(crate) fn build<'a, P>(
        policy: &P,
        members: impl ExactSizeIterator<Item = (&'a K, &'a S, &'a Arc<EndpointStats>)>,
    ) -> Self
    where
        P: Policy<Table = T>,
        K: Clone + 'a,
        S: Clone + 'a,
    {
        let n = members.len();
        let (mut keys, mut services, mut stats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (key, service, stat) in members {
            keys.push(key.clone());
            services.push(service.clone());
            stats.push(Arc::clone(stat));
        }
        let table = (!stats.is_empty()).then(|| policy.table(&stats));
        Snapshot {
            keys: keys.into(),
            services: services.into(),
            stats: stats.into(),
            table,
        }
    }
}
